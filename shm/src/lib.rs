//! Shared-memory segments for shmlane.
//!
//! A segment is one channel: a header page, then a ring region laid out by
//! [`shmlane_ring`]. Four backends sit behind [`Segment`]: named POSIX
//! shared memory (`shm:NAME`), a mmapped file (`file:PATH`), an
//! anonymous memfd handed to a child process, and a System V segment
//! (`sysv:KEY`, `shmget`), whose liveness flags are `SEM_UNDO` semaphores
//! in place of file locks and which cannot be truncated (so no SIGBUS).
//!
//! - **Create**: the exact size checked against the filesystem's free
//!   space (`statvfs`), built under a private name with
//!   `O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC`, mode `0600` unless asked
//!   otherwise, every byte reserved (`posix_fallocate`), every header
//!   field written, READY published, then renamed into place without
//!   replacing anything.
//! - **Open**: fstat (regular file, expected owner, no group/other write
//!   unless allowed), a bounded wait for READY, every field validated, the
//!   layout copied into process-local memory and never read again.
//! - **Liveness**: each participant holds an open-file-description lock on
//!   its own byte; the kernel drops it when the process dies, and survivors
//!   notice with `F_OFD_GETLK` and reap the dead entry.
//!
//! Only memfd segments can be sealed against resizing; a peer that
//! truncates a `shm:` or `file:` segment makes the mapping fault, which the
//! [`sigbus`] handler contains: the segment reports
//! [`is_broken`](Segment::is_broken) instead of the process dying.
//!
//! Do not `fork` while a [`Segment`] is open and keep using it on both
//! sides: parent and child would share one open file description, so their
//! liveness locks could not tell them apart. Spawn (fork + exec, where the
//! descriptor is close-on-exec) or open the segment again in the child.

mod error;
pub mod fault;
pub mod header;
mod segment;

pub use error::{AddressError, AttachError, CreateError, OpenError};
pub use header::{Fixed, Header};
#[doc(hidden)]
pub use segment::schema_difference;
pub use segment::{
    shm_path, staging_owner, unlink, Address, Attachment, Backend, CreateOptions, Creator,
    OpenOptions, ParticipantInfo, Role, Segment, Spec, SysvKey, TypeInfo, MAX_SEGMENT_LEN,
    STAGING_PREFIX, SYSV_ATTACHED, SYSV_MARK, SYSV_MARK_VALUE, SYSV_SEMS,
};
pub use shmlane_semaphore::sigbus;

// Every system call goes through the workspace's one syscall layer.
use shmlane_sys as sys;
