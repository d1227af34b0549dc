//! Opening a segment and validating everything its header says.

use std::fs::{File, OpenOptions as FsOpenOptions};
use std::os::fd::RawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use shmlane_ring::{RingKind, RingLayout, CURSORS};

use super::create::protection;
use super::{map_err_open, Address, Backend, OpenOptions, Segment, CREATOR_LOCK};
use crate::error::OpenError;
use crate::header::{
    Fixed, Header, HEADER_LEN, MAGIC, MAX_SCHEMA_LEN, STATE_INIT, STATE_READY, VERSION,
};
use crate::sys;
use crate::sys::fs::open_flags;
use crate::sys::map::Map;
use crate::sys::Access;

impl Segment {
    /// Opens the segment at `addr`, waits (bounded) for it to be ready,
    /// and validates every header field.
    ///
    /// # Errors
    ///
    /// [`OpenError`] naming what is wrong.
    pub fn open(addr: &Address, opts: &OpenOptions) -> Result<Self, OpenError> {
        let name = addr.to_string();
        let file = match addr {
            Address::Sysv(key) => return Self::open_sysv(key, opts),
            Address::Shm(n) => sys::shm::open(n, access(opts)),
            Address::File(p) => FsOpenOptions::new()
                .read(true)
                .write(!opts.read_only)
                // O_NONBLOCK: opening a FIFO must not hang; no effect on files.
                .custom_flags(open_flags::NOFOLLOW | open_flags::CLOEXEC | open_flags::NONBLOCK)
                .open(p),
        }
        .map_err(|e| map_err_open(&name, e))?;
        let backend = match addr {
            Address::Shm(n) => Backend::Shm(n.clone()),
            Address::File(p) => Backend::File(p.clone()),
            Address::Sysv(_) => unreachable!("opened above"),
        };
        Self::open_file(file, backend, opts)
    }

    /// Opens a memfd segment inherited from a parent as file descriptor
    /// `fd`. It is reopened through `/proc/self/fd`, so this process gets
    /// its own open file description (its own liveness locks).
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn open_inherited(fd: RawFd, opts: &OpenOptions) -> Result<Self, OpenError> {
        // Only a path is formed from the number; nothing is done through it
        // as a descriptor, so any number is safe to pass.
        let path = format!("/proc/self/fd/{fd}");
        let file = FsOpenOptions::new()
            .read(true)
            .write(!opts.read_only)
            // O_NONBLOCK: a number that names a FIFO must not hang the open.
            .custom_flags(open_flags::CLOEXEC | open_flags::NONBLOCK)
            .open(&path)
            .map_err(|e| map_err_open(&path, e))?;
        Self::open_file(file, Backend::Memfd, opts)
    }

    pub(super) fn open_file(
        file: File,
        backend: Backend,
        opts: &OpenOptions,
    ) -> Result<Self, OpenError> {
        let meta = file.metadata().map_err(OpenError::Os)?;
        let ft = meta.file_type();
        if !ft.is_file() {
            let found = if ft.is_dir() {
                "directory"
            } else if ft.is_fifo() {
                "FIFO"
            } else if ft.is_socket() {
                "socket"
            } else if ft.is_block_device() || ft.is_char_device() {
                "device"
            } else {
                "special file"
            };
            return Err(OpenError::NotRegularFile { found });
        }
        let expected = opts.owner.unwrap_or_else(sys::process::euid);
        if meta.uid() != expected {
            return Err(OpenError::WrongOwner {
                expected,
                found: meta.uid(),
            });
        }
        let mode = meta.mode() & 0o7777;
        // A memfd is always mode 0777 and has no name: only processes handed
        // its descriptor can reach it, so its mode says nothing.
        if mode & 0o022 != 0 && !opts.allow_group_write && backend != Backend::Memfd {
            return Err(OpenError::InsecureMode { mode });
        }
        let len = wait_ready(&file, opts.ready_timeout)?;
        let len_usize = usize::try_from(len).map_err(|_| OpenError::LayoutMismatch {
            field: "file length",
            detail: len.to_string(),
        })?;
        let map = Map::new(&file, len_usize, access(opts), protection(&backend))
            .map_err(OpenError::Os)?;
        // SAFETY: the mapping is at least HEADER_LEN bytes (wait_ready checked
        // the length), page-aligned, and lives as long as `map`; `Header`
        // holds only atomics and `Shared` cells, valid for any bytes.
        let header = unsafe { &*map.as_ptr().cast::<Header>() };
        let (fixed, layout) = read_header(header, len)?;
        // `validate` bounded the length and placed the text inside the file.
        let mut schema = vec![0u8; fixed.schema_len as usize];
        file.read_exact_at(&mut schema, fixed.schema_offset)
            .map_err(OpenError::Os)?;
        check_wanted(opts, &layout, &fixed, &schema)?;
        if backend == Backend::Memfd && !sys::memfd::is_size_sealed(&file) {
            return Err(OpenError::LayoutMismatch {
                field: "seals",
                detail: "memfd is not sealed against resizing".into(),
            });
        }
        Ok(Self {
            live: super::Liveness::File(file),
            map: super::Memory::map(map),
            broken: AtomicBool::new(false),
            backend,
            fixed,
            layout,
            schema: String::from_utf8_lossy(&schema).into_owned(),
            unlink_on_drop: false,
            read_only: opts.read_only,
            held: Mutex::new(0),
            pid: sys::process::pid(),
        })
    }
}

pub(super) fn access(opts: &OpenOptions) -> Access {
    if opts.read_only {
        Access::ReadOnly
    } else {
        Access::ReadWrite
    }
}

/// Reads a published header: READY, magic and version checked, then every
/// layout field validated against the segment's length `len`.
pub(super) fn read_header(header: &Header, len: u64) -> Result<(Fixed, RingLayout), OpenError> {
    // Acquire: pairs with the creator's Release store of READY, so the
    // fields read below are the ones it wrote.
    if header.state.load(Ordering::Acquire) != STATE_READY {
        return Err(OpenError::Corrupted { field: "state" });
    }
    if header.magic.read() != MAGIC {
        return Err(OpenError::BadMagic);
    }
    let version = header.version.read();
    if version != VERSION {
        return Err(OpenError::VersionMismatch {
            found: version,
            supported: VERSION,
        });
    }
    let fixed = header.fixed.read();
    let layout = validate(&fixed, len)?;
    Ok((fixed, layout))
}

/// Checks what this side needs of a segment: its ring kind and message
/// type (with the schema text copied out of it).
pub(super) fn check_wanted(
    opts: &OpenOptions,
    layout: &RingLayout,
    fixed: &Fixed,
    schema: &[u8],
) -> Result<(), OpenError> {
    if let Some(kind) = opts.kind {
        if kind != layout.kind() {
            return Err(OpenError::LayoutMismatch {
                field: "ring kind",
                detail: format!(
                    "this side needs {kind:?}, the segment is {:?}",
                    layout.kind()
                ),
            });
        }
    }
    if let Some(ty) = &opts.ty {
        if !ty.matches(fixed, schema) {
            return Err(OpenError::TypeMismatch {
                expected: ty.name.clone(),
                found: fixed.type_name(),
                difference: ty.difference(fixed, schema),
            });
        }
    }
    Ok(())
}

/// Waits for the creator to publish READY; returns the file length.
pub(super) fn wait_ready(file: &File, timeout: Duration) -> Result<u64, OpenError> {
    // A creator that has the file but not yet its lock, its length or its
    // header gets this long before it is judged dead.
    const GRACE: Duration = Duration::from_millis(20);
    let start = Instant::now();
    loop {
        let len = file.metadata().map_err(OpenError::Os)?.len();
        if len >= HEADER_LEN as u64 {
            let mut head = [0u8; 16];
            file.read_exact_at(&mut head, 0).map_err(OpenError::Os)?;
            let magic: [u8; 8] = head[..8].try_into().expect("8 bytes");
            let state = u32::from_ne_bytes(head[12..16].try_into().expect("4 bytes"));
            if magic != MAGIC && magic != [0; 8] {
                return Err(OpenError::BadMagic);
            }
            if magic == MAGIC && state == STATE_READY {
                return Ok(len);
            }
            if state != STATE_INIT && state != STATE_READY {
                return Err(OpenError::Corrupted { field: "state" });
            }
        }
        let creator_alive = sys::lock::is_locked_or_unknown(file, CREATOR_LOCK);
        let waited = start.elapsed();
        if (!creator_alive && waited >= GRACE) || waited >= timeout {
            return Err(if len < HEADER_LEN as u64 && !creator_alive {
                OpenError::TooSmall { len }
            } else {
                OpenError::NotReady { creator_alive }
            });
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Checks every layout field against the others and the file length.
pub(super) fn validate(fixed: &Fixed, file_len: u64) -> Result<RingLayout, OpenError> {
    let kind = match (fixed.ring_kind & 0xff, fixed.ring_kind >> 8) {
        (1, 0) => RingKind::Spsc,
        (2, 0) => RingKind::Mpmc,
        // The publisher takes one participant entry.
        (raw @ (3 | 4), max @ 1..) if (max as usize) < CURSORS => RingKind::Broadcast {
            overwrite: raw == 4,
            max_subscribers: max as u8,
        },
        _ => return Err(OpenError::Corrupted { field: "ring kind" }),
    };
    if fixed.data_offset != HEADER_LEN as u64 {
        return Err(OpenError::LayoutMismatch {
            field: "data offset",
            detail: format!(
                "{} (this build puts the ring at {HEADER_LEN})",
                fixed.data_offset
            ),
        });
    }
    if !fixed.slots.is_power_of_two() {
        return Err(OpenError::LayoutMismatch {
            field: "slot count",
            detail: format!("{} is not a power of two", fixed.slots),
        });
    }
    let to_usize = |v: u64, field| {
        usize::try_from(v).map_err(|_| OpenError::LayoutMismatch {
            field,
            detail: format!("{v} is too large"),
        })
    };
    let layout = RingLayout::new(
        kind,
        fixed.capacity,
        to_usize(fixed.slot_size, "slot size")?,
        to_usize(fixed.slot_align, "slot alignment")?,
    )
    .map_err(|e| OpenError::LayoutMismatch {
        field: "capacity and slot size",
        detail: e.to_string(),
    })?;
    if layout.slots() != fixed.slots {
        return Err(OpenError::LayoutMismatch {
            field: "slot count",
            detail: format!("{} slots for capacity {}", fixed.slots, fixed.capacity),
        });
    }
    let region_end = HEADER_LEN as u64 + layout.region_len() as u64;
    if fixed.schema_len > MAX_SCHEMA_LEN as u64 {
        return Err(OpenError::LayoutMismatch {
            field: "schema length",
            detail: format!(
                "{} bytes (this build reads at most {MAX_SCHEMA_LEN})",
                fixed.schema_len
            ),
        });
    }
    let expected = region_end.checked_add(fixed.schema_len);
    if expected != Some(fixed.total_len) {
        return Err(OpenError::LayoutMismatch {
            field: "total length",
            detail: format!(
                "header says {} bytes, the layout needs {expected:?}",
                fixed.total_len
            ),
        });
    }
    if fixed.schema_offset != region_end {
        return Err(OpenError::LayoutMismatch {
            field: "schema offset",
            detail: format!(
                "{} (the ring region ends at {region_end})",
                fixed.schema_offset
            ),
        });
    }
    if fixed.total_len != file_len {
        return Err(OpenError::LayoutMismatch {
            field: "file length",
            detail: format!("file is {file_len} bytes, header says {}", fixed.total_len),
        });
    }
    Ok(layout)
}
