//! Creating a segment: sized, checked against free space, reserved,
//! built under a private name and published by an atomic rename.

use std::fs::{self, File, OpenOptions as FsOpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;

use shmlane_ring::{RingKind, RingLayout};

use super::{
    map_err_create, shm_path, Address, Backend, CreateOptions, Segment, Spec, TypeInfo,
    CREATOR_LOCK,
};
use crate::error::CreateError;
use crate::header::{
    Fixed, HEADER_LEN, MAGIC, MAX_SCHEMA_LEN, STATE_READY, TYPE_NAME_LEN, VERSION,
};
use crate::sys::errno::Errno;
use crate::sys::fs::open_flags;
use crate::sys::map::{Map, Protection};
use crate::sys::Access;
use crate::{fault, sys};

/// The largest segment this build creates: 128 TiB, the user address space
/// of x86-64 and of most aarch64 kernels (no process could map more).
pub const MAX_SEGMENT_LEN: u64 = 1 << 47;

/// The prefix of the private names segments are built under.
pub const STAGING_PREFIX: &str = ".shmlane-new-";

/// A fresh private name for a segment being built by this process:
/// `.shmlane-new-PID-START-N`, where START is this process's start time
/// (so a reused pid is told apart) and N counts within the process.
fn staging_name() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    // Relaxed: only uniqueness within this process matters.
    let n = N.fetch_add(1, Ordering::Relaxed);
    let pid = sys::process::pid();
    format!(
        "{STAGING_PREFIX}{pid}-{}-{n}",
        sys::process::start_time(pid)
    )
}

/// The process that is building (or was building, and died) a segment
/// under a private name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Creator {
    /// Its process id.
    pub pid: u32,
    /// Its start time (clock ticks since boot), as `/proc/PID/stat` says.
    pub start: u64,
}

impl Creator {
    /// Whether that process still runs: the pid exists and has the same
    /// start time (a reused pid does not count). Unknown counts as alive.
    pub fn is_alive(&self) -> bool {
        match sys::process::start_time(self.pid) {
            0 => std::path::Path::new(&format!("/proc/{}", self.pid)).exists(),
            now => now == self.start,
        }
    }
}

/// If `file_name` is a private name a segment is built under
/// (`.shmlane-new-PID-START-N`), the process building it. A private name
/// whose creator is dead is left over from a crash and safe to remove;
/// one whose creator lives is about to be renamed into place.
pub fn staging_owner(file_name: &str) -> Option<Creator> {
    let rest = file_name.strip_prefix(STAGING_PREFIX)?;
    let mut parts = rest.split('-');
    let pid = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    parts.next()?.parse::<u32>().ok()?;
    parts.next().is_none().then_some(Creator { pid, start })
}

/// The segment's length: header page, ring region, schema text.
pub(super) fn total_len(layout: &RingLayout, ty: &TypeInfo) -> Result<usize, CreateError> {
    if ty.schema.len() > MAX_SCHEMA_LEN {
        return Err(CreateError::SchemaTooLong {
            len: ty.schema.len(),
            max: MAX_SCHEMA_LEN,
        });
    }
    let total = HEADER_LEN
        .checked_add(layout.region_len())
        .and_then(|n| n.checked_add(ty.schema.len()))
        .ok_or(CreateError::Layout(shmlane_ring::LayoutError::Overflow))?;
    if total as u64 > MAX_SEGMENT_LEN || total > isize::MAX as usize {
        return Err(CreateError::TooLarge {
            needed: total as u64,
            limit: MAX_SEGMENT_LEN,
        });
    }
    Ok(total)
}

/// Refuses, before anything is created, a segment the filesystem at `dir`
/// has no room for.
pub(super) fn check_space(dir: &Path, needed: u64) -> Result<(), CreateError> {
    match sys::fs::available_space(dir) {
        Ok(available) if available < needed => Err(CreateError::NoSpace {
            needed,
            available,
            path: dir.to_owned(),
        }),
        // An unknown figure is not a refusal: the reservation decides.
        _ => Ok(()),
    }
}

/// File-backed mappings are registered with the SIGBUS handler: every
/// value read from them is validated, so zeros in place of them are
/// harmless, and the segment reports itself broken from then on. A memfd
/// is sealed against shrinking and needs no protection.
pub(super) fn protection(backend: &Backend) -> Protection {
    if *backend == Backend::Memfd {
        Protection::Sealed
    } else {
        Protection::Sigbus
    }
}

impl Segment {
    /// Creates a segment at `addr`, atomically: the segment is built under
    /// a private name in the same directory (see [`staging_owner`]) and
    /// renamed to `addr` only once it is READY, so nobody ever sees a
    /// half-made segment under the public name, and a creator killed at
    /// any point leaves either nothing there or a complete segment.
    ///
    /// Before anything is created the exact size is computed (checked
    /// arithmetic) and compared with the filesystem's free space
    /// (`statvfs`); the bytes are then reserved (`posix_fallocate`) so no
    /// page of the segment can fault for lack of space later. The private
    /// file is created with `O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC` and the
    /// mode exactly as asked.
    ///
    /// # Errors
    ///
    /// [`CreateError`]: already exists, permission denied, a bad layout,
    /// [`NoSpace`](CreateError::NoSpace) (nothing is left behind),
    /// [`TooLarge`](CreateError::TooLarge), or the OS error.
    pub fn create(addr: &Address, spec: &Spec, opts: &CreateOptions) -> Result<Self, CreateError> {
        let layout = layout_of(spec)?;
        let total = total_len(&layout, &spec.ty)?;
        let name = addr.to_string();
        let public = match addr {
            Address::Shm(n) => shm_path(n),
            Address::File(p) => p.clone(),
            Address::Sysv(key) => return Self::create_sysv(key, spec, layout, total, opts),
        };
        // Fail fast (the rename below is the real arbiter).
        if fs::symlink_metadata(&public).is_ok() {
            return Err(CreateError::AlreadyExists(name));
        }
        let dir = match public.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        check_space(&dir, total as u64)?;
        let staged = staging_name();
        let staged_path = dir.join(&staged);
        let file = match addr {
            Address::Shm(_) => sys::shm::create(&staged, opts.mode),
            Address::Sysv(_) => unreachable!("created above"),
            Address::File(_) => FsOpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(opts.mode)
                .custom_flags(open_flags::NOFOLLOW | open_flags::CLOEXEC)
                .open(&staged_path),
        }
        .map_err(|e| map_err_create(&name, e))?;
        // Removes the private name if anything below fails.
        let guard = sys::fs::RemoveOnDrop::new(&staged_path);
        fault::point("create.after_open");
        // The umask may have cleared bits the caller asked for.
        file.set_permissions(fs::Permissions::from_mode(opts.mode))
            .map_err(CreateError::Os)?;
        let backend = match addr {
            Address::Shm(n) => Backend::Shm(n.clone()),
            Address::File(p) => Backend::File(p.clone()),
            Address::Sysv(_) => unreachable!("created above"),
        };
        let mut seg = Self::init(file, backend, spec, layout, total, &dir)?;
        fault::point("create.before_rename");
        sys::fs::rename_noreplace(&staged_path, &public).map_err(|e| map_err_create(&name, e))?;
        guard.keep();
        fault::point("create.after_rename");
        seg.unlink_on_drop = !opts.keep;
        Ok(seg)
    }

    /// Creates an anonymous segment in a memfd, sealed against shrinking
    /// and growing. Hand it to a child through [`Segment::file`] (a duplicate without
    /// close-on-exec) and open it there with
    /// [`Segment::open_inherited`].
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    pub fn create_memfd(spec: &Spec) -> Result<Self, CreateError> {
        let layout = layout_of(spec)?;
        let total = total_len(&layout, &spec.ty)?;
        let file = sys::memfd::create("shmlane").map_err(CreateError::Os)?;
        let seg = Self::init(
            file,
            Backend::Memfd,
            spec,
            layout,
            total,
            Path::new("memfd"),
        )?;
        if let Some(file) = seg.file() {
            sys::memfd::seal_size(file).map_err(CreateError::Os)?;
        }
        Ok(seg)
    }

    pub(super) fn init(
        file: File,
        backend: Backend,
        spec: &Spec,
        layout: RingLayout,
        total: usize,
        dir: &Path,
    ) -> Result<Self, CreateError> {
        // Held until this segment is dropped: openers tell "creator still
        // initialising" from "creator died" by it.
        if !sys::lock::try_lock(&file, CREATOR_LOCK).map_err(CreateError::Os)? {
            return Err(CreateError::Os(io::Error::other(
                "creator lock already held",
            )));
        }
        // Reserve every byte before touching any: on a full filesystem this
        // fails here with ENOSPC instead of a SIGBUS on first touch.
        match sys::fs::allocate_or_extend(&file, total as u64) {
            Ok(_) => {}
            Err(e) if Errno::from_io_error(&e) == Some(Errno::NOSPC) => {
                return Err(CreateError::NoSpace {
                    needed: total as u64,
                    available: sys::fs::available_space(dir).unwrap_or(0),
                    path: dir.to_owned(),
                })
            }
            Err(e) if Errno::from_io_error(&e) == Some(Errno::FBIG) => {
                return Err(CreateError::TooLarge {
                    needed: total as u64,
                    limit: MAX_SEGMENT_LEN,
                })
            }
            Err(e) => return Err(CreateError::Os(e)),
        }
        fault::point("create.after_reserve");
        let map = Map::new(&file, total, Access::ReadWrite, protection(&backend))
            .map_err(CreateError::Os)?;
        let fixed = fixed_of(spec, &layout, total);
        // Through the file, not the mapping: no reference into shared
        // memory, and nobody else can see this file before READY.
        file.write_all_at(spec.ty.schema.as_bytes(), fixed.schema_offset)
            .map_err(CreateError::Os)?;
        let seg = Self {
            live: super::Liveness::File(file),
            map: super::Memory::map(map),
            broken: AtomicBool::new(false),
            backend,
            fixed,
            layout,
            schema: spec.ty.schema.clone(),
            unlink_on_drop: false,
            read_only: false,
            held: Mutex::new(0),
            pid: sys::process::pid(),
        };
        seg.publish()?;
        Ok(seg)
    }

    /// Writes every header field, lays out the ring and publishes READY
    /// (the schema text is in place already).
    pub(super) fn publish(&self) -> Result<(), CreateError> {
        let h = self.header();
        h.magic.write(MAGIC);
        h.version.write(VERSION);
        h.fixed.write(self.fixed);
        h.creator_pid.write(sys::process::pid());
        h.creator_start
            .write(sys::process::start_time(sys::process::pid()));
        fault::point("create.after_header");
        let (base, len) = self.ring_region();
        // SAFETY: the region lies inside our fresh mapping (HEADER_LEN +
        // region_len bytes, then the schema), page-aligned plus HEADER_LEN (4096, at least the
        // region alignment), and nobody can use it before READY.
        unsafe { self.layout.init(base, len) }.map_err(CreateError::Layout)?;
        if self.is_broken() {
            return Err(CreateError::Os(io::Error::other(
                "the segment was truncated by another process while it was being created",
            )));
        }
        // Release: publishes every field written above; pairs with the
        // Acquire load of `state` in `open`.
        h.state.store(STATE_READY, Ordering::Release);
        Ok(())
    }
}

/// The header's descriptive fields for a new segment.
pub(super) fn fixed_of(spec: &Spec, layout: &RingLayout, total: usize) -> Fixed {
    let mut type_name = [0u8; TYPE_NAME_LEN];
    let cut = spec.ty.name.len().min(TYPE_NAME_LEN - 1);
    type_name[..cut].copy_from_slice(&spec.ty.name.as_bytes()[..cut]);
    let schema_offset = HEADER_LEN + layout.region_len();
    {
        Fixed {
            ring_kind: kind_to_raw(layout.kind()),
            codec: spec.ty.codec,
            capacity: layout.capacity(),
            slots: layout.slots(),
            slot_size: layout.slot_size() as u64,
            slot_align: layout.slot_align() as u64,
            data_offset: HEADER_LEN as u64,
            total_len: total as u64,
            type_hash: spec.ty.hash(),
            type_size: spec.ty.size,
            type_align: spec.ty.align,
            schema_offset: schema_offset as u64,
            schema_len: spec.ty.schema.len() as u64,
            type_name,
        }
    }
}

pub(super) fn kind_to_raw(kind: RingKind) -> u32 {
    match kind {
        RingKind::Spsc => 1,
        RingKind::Mpmc => 2,
        RingKind::Broadcast {
            overwrite,
            max_subscribers,
        } => (3 + u32::from(overwrite)) | u32::from(max_subscribers) << 8,
    }
}

pub(super) fn layout_of(spec: &Spec) -> Result<RingLayout, CreateError> {
    let layout = RingLayout::new(spec.kind, spec.capacity, spec.slot_size, spec.slot_align)
        .map_err(CreateError::Layout)?;
    if layout.region_align() > HEADER_LEN {
        return Err(CreateError::Layout(
            shmlane_ring::LayoutError::BadAlignment {
                align: spec.slot_align,
            },
        ));
    }
    Ok(layout)
}
