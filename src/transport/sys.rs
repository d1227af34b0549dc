//! The transports' own helpers around system calls: descriptors,
//! error numbers and deadline steps. The calls they share with
//! the rest of shmlane live in `shmlane-sys`.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// Takes ownership of a descriptor a system call just returned.
pub(crate) fn owned(fd: RawFd) -> OwnedFd {
    debug_assert!(fd >= 0);
    // SAFETY: every caller passes a descriptor a successful system call
    // just returned, which nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// The error number of an `io::Error`, or 0.
pub(crate) fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// The earlier of `until` and `step` from now.
pub(crate) fn step(until: Option<Instant>, step: Duration) -> Instant {
    let next = Instant::now() + step;
    until.map_or(next, |u| u.min(next))
}

/// Whether `until` has passed.
pub(crate) fn passed(until: Option<Instant>) -> bool {
    until.is_some_and(|u| Instant::now() >= u)
}
