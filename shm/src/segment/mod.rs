//! Creating, opening, validating and attaching to segments, one concern
//! a file: `address` (where a segment lives), `options` (what to create
//! or open), `create`, `open` (and validation), `participants` (attach,
//! liveness, reaping, detach), and `sysv` (System V segments, whose
//! liveness flags are semaphores).

use std::fmt;
use std::fs::{self, File};
use std::io;

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use shmlane_ring::RingLayout;
use shmlane_semaphore::sigbus;

use crate::error::{CreateError, OpenError};
use crate::header::{Fixed, Header, HEADER_LEN, LOCK_BASE};
use crate::sys;
use crate::sys::errno::Errno;
use crate::sys::map::Map;

mod address;
mod create;
mod open;
mod options;
mod participants;
mod sysv;

pub use address::{shm_path, unlink, Address, SysvKey};
pub use create::{staging_owner, Creator, MAX_SEGMENT_LEN, STAGING_PREFIX};
pub use options::{schema_difference, Backend, CreateOptions, OpenOptions, Role, Spec, TypeInfo};
pub use participants::{Attachment, ParticipantInfo};
pub use sysv::{
    ATTACHED as SYSV_ATTACHED, MARK as SYSV_MARK, MARK_VALUE as SYSV_MARK_VALUE, SEMS as SYSV_SEMS,
};

/// A mapped, validated segment. The layout was copied out of shared memory
/// when it was opened and is never read from there again.
pub struct Segment {
    /// The file and its liveness locks, or a System V segment's
    /// semaphores.
    live: Liveness,
    /// The mapping (registered with the SIGBUS handler unless it is a
    /// sealed memfd, see `create::protection`), or a System V attachment.
    map: Memory,
    /// Set once the file was found shorter than the layout.
    broken: AtomicBool,
    backend: Backend,
    fixed: Fixed,
    layout: RingLayout,
    /// The message type's schema text, as copied when opened (lossy
    /// UTF-8; for messages and tools).
    schema: String,
    unlink_on_drop: bool,
    read_only: bool,
    /// Participant slots this `Segment` holds (bit i = slot i). Locks taken
    /// through our own open file description are invisible to `F_OFD_GETLK`
    /// from it, so our own slots are known here instead.
    held: Mutex<u32>,
    /// The process that created or opened it: a forked child's copy never
    /// unlinks the parent's segment.
    pid: u32,
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("backend", &self.backend)
            .field("layout", &self.layout)
            .field("type", &self.fixed.type_name())
            .finish_non_exhaustive()
    }
}

/// What marks participants alive: byte locks on the segment's file (OFD
/// locks), or `SEM_UNDO` semaphores of a System V segment's set.
#[derive(Debug)]
enum Liveness {
    File(File),
    Sysv(sysv::Sems),
}

impl Liveness {
    /// Takes lock `offset` (`CREATOR_LOCK` or a `lock_offset`) without
    /// waiting; false if someone else holds it.
    fn try_lock(&self, offset: u64) -> io::Result<bool> {
        match self {
            Self::File(f) => sys::lock::try_lock(f, offset),
            Self::Sysv(s) => s.try_take(offset),
        }
    }

    fn unlock(&self, offset: u64) -> io::Result<()> {
        match self {
            Self::File(f) => sys::lock::unlock(f, offset),
            Self::Sysv(s) => s.release(offset),
        }
    }

    /// Whether someone else holds lock `offset` (OFD locks: another open
    /// file description), or it cannot be told.
    fn is_locked_or_unknown(&self, offset: u64) -> bool {
        match self {
            Self::File(f) => sys::lock::is_locked_or_unknown(f, offset),
            Self::Sysv(s) => s.is_held_or_unknown(offset),
        }
    }
}

/// The segment's bytes in this process: their base (taken once, for the
/// per-message paths, which reach the header through it) and what keeps
/// them mapped.
#[derive(Debug)]
struct Memory {
    base: NonNull<u8>,
    owner: Owner,
}

// SAFETY: `base` is the base of the mapping or attachment `owner` holds,
// which are Send and Sync themselves (they hand out only raw pointers);
// the copy of their pointer adds nothing to share.
unsafe impl Send for Memory {}
// SAFETY: as for `Send`.
unsafe impl Sync for Memory {}

#[derive(Debug)]
enum Owner {
    Map(Map),
    /// Held for its drop (`shmdt`).
    Sysv {
        _attached: sys::sysv::Attachment,
    },
}

impl Memory {
    fn map(m: Map) -> Self {
        Self {
            base: NonNull::new(m.as_ptr()).expect("a mapping's base is not null"),
            owner: Owner::Map(m),
        }
    }

    fn sysv(a: sys::sysv::Attachment) -> Self {
        Self {
            base: NonNull::new(a.as_ptr()).expect("an attachment's base is not null"),
            owner: Owner::Sysv { _attached: a },
        }
    }

    #[inline]
    fn as_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    #[inline]
    fn is_broken(&self) -> bool {
        match &self.owner {
            Owner::Map(m) => m.is_broken(),
            // Nobody can shrink a System V segment.
            Owner::Sysv { .. } => false,
        }
    }
}

fn lock_offset(index: usize) -> u64 {
    LOCK_BASE + 1 + index as u64
}

const CREATOR_LOCK: u64 = LOCK_BASE;

fn map_err_create(addr: &str, e: io::Error) -> CreateError {
    match e.kind() {
        io::ErrorKind::AlreadyExists => CreateError::AlreadyExists(addr.to_owned()),
        io::ErrorKind::PermissionDenied => CreateError::PermissionDenied(addr.to_owned()),
        _ => CreateError::Os(e),
    }
}

fn map_err_open(addr: &str, e: io::Error) -> OpenError {
    match Errno::from_io_error(&e) {
        Some(Errno::NOENT) => OpenError::NotFound(addr.to_owned()),
        Some(Errno::ACCESS | Errno::PERM) => OpenError::PermissionDenied(addr.to_owned()),
        Some(Errno::LOOP) => OpenError::Symlink(addr.to_owned()),
        Some(Errno::ISDIR) => OpenError::NotRegularFile { found: "directory" },
        Some(Errno::NXIO) => OpenError::NotRegularFile {
            found: "socket or device",
        },
        _ => OpenError::Os(e),
    }
}

impl Segment {
    /// The header in shared memory (atomics and volatile cells only).
    #[inline]
    pub fn header(&self) -> &Header {
        // SAFETY: as in `open_file`: the mapping outlives `self` and holds a
        // header page.
        unsafe { &*self.map.as_ptr().cast::<Header>() }
    }

    /// The ring region: base and length.
    pub fn ring_region(&self) -> (NonNull<u8>, usize) {
        let base = self.map.as_ptr().wrapping_add(HEADER_LEN);
        // SAFETY: an in-bounds offset from a non-null mapping.
        (
            unsafe { NonNull::new_unchecked(base) },
            self.layout.region_len(),
        )
    }

    /// The ring layout, as validated when the segment was opened.
    pub fn layout(&self) -> &RingLayout {
        &self.layout
    }

    /// The header's descriptive fields, as copied when opened.
    pub fn fixed(&self) -> &Fixed {
        &self.fixed
    }

    /// The schema text of the message type the segment carries, as copied
    /// when opened (for tools and messages; see [`TypeInfo::schema`]).
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The message type the segment carries, as its header records it
    /// (for tools that move its messages without knowing the type).
    pub fn type_info(&self) -> TypeInfo {
        TypeInfo {
            name: self.fixed.type_name(),
            schema: self.schema.clone(),
            size: self.fixed.type_size,
            align: self.fixed.type_align,
            codec: self.fixed.codec,
        }
    }

    /// Where the segment came from.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The open file (for a memfd: the descriptor to hand to a child);
    /// `None` for a System V segment, which has none.
    pub fn file(&self) -> Option<&File> {
        match &self.live {
            Liveness::File(f) => Some(f),
            Liveness::Sysv(_) => None,
        }
    }

    /// A System V segment's semaphore set (its liveness flags), as read
    /// when it was opened; `None` for the other backends.
    pub fn sysv_semaphores(&self) -> Option<i32> {
        match &self.live {
            Liveness::Sysv(s) => Some(s.0),
            Liveness::File(_) => None,
        }
    }

    /// Whether the segment was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Whether the segment is known to be broken: another process truncated
    /// its file, and either an access faulted (the SIGBUS handler then put
    /// private zeros in place of the mapping) or
    /// [`check_intact`](Self::check_intact) found the file short. One or two loads; no
    /// system call. A broken segment never becomes whole again.
    #[inline]
    pub fn is_broken(&self) -> bool {
        // Relaxed: a sticky flag; the data it concerns is not trusted anyway.
        self.broken.load(Ordering::Relaxed) || self.map.is_broken()
    }

    /// Checks (one `fstat`) that the file still has the segment's length,
    /// and marks the segment broken if it does not; returns whether it is
    /// intact. A truncation that leaves the pages this process touches in
    /// place faults nowhere, so handles call this now and then while they
    /// wait.
    pub fn check_intact(&self) -> bool {
        if self.is_broken() {
            return false;
        }
        let Liveness::File(file) = &self.live else {
            // A System V segment cannot be resized.
            return true;
        };
        if self.backend != Backend::Memfd
            && sigbus::shorter_than(std::os::fd::AsFd::as_fd(file), self.fixed.total_len)
        {
            // Relaxed: as in `is_broken`.
            self.broken.store(true, Ordering::Relaxed);
            return false;
        }
        true
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if sys::process::pid() != self.pid {
            // A forked child's copy: the segment is the parent's.
            return;
        }
        if let Backend::Sysv { id, .. } = self.backend {
            self.leave_sysv(id);
            return;
        }
        if self.unlink_on_drop {
            let _ = match &self.backend {
                Backend::Shm(n) => sys::shm::unlink(n),
                Backend::File(p) => fs::remove_file(p),
                Backend::Memfd | Backend::Sysv { .. } => Ok(()),
            };
        }
    }
}
