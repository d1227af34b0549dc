//! Open-file-description locks on single bytes (`F_OFD_SETLK`,
//! `F_OFD_GETLK`).
//!
//! A lock belongs to the open file description it was taken through, not
//! to a process: the kernel drops it when the last descriptor of that
//! description is closed, which includes the process dying, even by
//! `SIGKILL`. That makes a locked byte a liveness flag another process can
//! test. Two consequences callers must handle:
//!
//! - Locks through one open file description never conflict with each
//!   other: locking a byte the description already holds succeeds, and
//!   [`is_locked`] through it does not see them. Each participant opens
//!   its own description (a separate `open`), and tracks its own locks.
//! - A `fork`ed child shares its parent's descriptions, and so its locks.
//!
//! These are the Linux OFD locks through nix: rustix's `fcntl_lock` takes
//! whole-file, process-owned (`F_SETLK`) locks and cannot query.

use std::io;
use std::os::fd::AsFd;

use nix::fcntl::{fcntl, FcntlArg};

use crate::errno::retry;

/// The lock record for byte `offset`: `kind` is `F_WRLCK`, `F_RDLCK` or
/// `F_UNLCK`.
fn record(kind: libc::c_int, offset: u64) -> io::Result<libc::flock> {
    let start =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `flock` is plain data; all-zero is a valid value (and `l_pid`
    // must be 0 for open-file-description locks).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start;
    fl.l_len = 1;
    Ok(fl)
}

/// Takes an exclusive lock on byte `offset` through `fd`'s open file
/// description, without waiting.
///
/// Returns `Ok(false)` when another open file description holds it.
///
/// # Errors
///
/// The OS error (`EBADF`, `ENOLCK`...); `EINVAL` for an offset past
/// `off_t`.
pub fn try_lock(fd: impl AsFd, offset: u64) -> io::Result<bool> {
    set(fd, libc::F_WRLCK, offset)
}

/// Takes a shared (read) lock on byte `offset` through `fd`'s open file
/// description, without waiting; shared locks of several descriptions
/// coexist.
///
/// Returns `Ok(false)` when another open file description holds an
/// exclusive lock on it. [`is_locked`] sees shared locks too.
///
/// # Errors
///
/// As [`try_lock`].
pub fn try_lock_shared(fd: impl AsFd, offset: u64) -> io::Result<bool> {
    set(fd, libc::F_RDLCK, offset)
}

/// `F_OFD_SETLK` of a `kind` lock; `Ok(false)` on a conflict.
fn set(fd: impl AsFd, kind: libc::c_int, offset: u64) -> io::Result<bool> {
    let fl = record(kind, offset)?;
    match retry(|| Ok(fcntl(fd.as_fd(), FcntlArg::F_OFD_SETLK(&fl))?)) {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Releases a lock taken with [`try_lock`] through the same open file
/// description (unlocking a byte it does not hold does nothing).
///
/// # Errors
///
/// The OS error; an unlock of one byte cannot fail on a valid descriptor.
pub fn unlock(fd: impl AsFd, offset: u64) -> io::Result<()> {
    let fl = record(libc::F_UNLCK, offset)?;
    retry(|| Ok(fcntl(fd.as_fd(), FcntlArg::F_OFD_SETLK(&fl))?)).map(drop)
}

/// Whether an open file description other than `fd`'s holds a lock on
/// byte `offset`. Locks held through `fd`'s own description are not seen.
///
/// # Errors
///
/// The OS error; callers that test liveness usually count an error as
/// "locked" (alive).
pub fn is_locked(fd: impl AsFd, offset: u64) -> io::Result<bool> {
    let mut fl = record(libc::F_WRLCK, offset)?;
    retry(|| Ok(fcntl(fd.as_fd(), FcntlArg::F_OFD_GETLK(&mut fl))?))?;
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

/// [`is_locked`] as a liveness test: whether the byte's holder (another
/// open file description) is alive. An error, which should not happen,
/// counts as alive: nothing is reaped or reused that is not proven dead.
pub fn is_locked_or_unknown(fd: impl AsFd, offset: u64) -> bool {
    is_locked(fd, offset).unwrap_or(true)
}

/// Takes an exclusive `flock` on the whole file of `fd` without waiting;
/// like OFD locks, it belongs to the open file description.
///
/// Returns `Ok(false)` when another open file description holds one.
///
/// # Errors
///
/// The OS error (`EBADF`, `ENOLCK`...).
pub fn try_flock(fd: impl AsFd) -> io::Result<bool> {
    use rustix::fs::FlockOperation;
    match rustix::fs::flock(fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{shm, Access};

    #[test]
    fn locks_are_per_open_file_description() {
        let name = shmlane_testkit::unique("sys-lock");
        let a = shm::create(&name, 0o600).unwrap();
        let b = shm::open(&name, Access::ReadWrite).unwrap();
        let _ = shm::unlink(&name);
        a.set_len(64).unwrap();
        assert!(try_lock(&a, 3).unwrap());
        assert!(try_lock(&a, 3).unwrap(), "own locks never conflict");
        assert!(!is_locked(&a, 3).unwrap(), "own locks are not seen");
        assert!(is_locked(&b, 3).unwrap());
        assert!(!try_lock(&b, 3).unwrap());
        assert!(!is_locked(&b, 4).unwrap(), "one byte only");
        assert!(try_lock(&b, 4).unwrap());
        unlock(&a, 3).unwrap();
        assert!(!is_locked(&b, 3).unwrap());
        assert!(!is_locked_or_unknown(&b, 3));
        assert!(try_lock(&b, 3).unwrap());
        assert!(is_locked_or_unknown(&a, 3));
        drop(b);
        assert!(!is_locked(&a, 3).unwrap(), "closing drops the locks");
        assert_eq!(
            try_lock(&a, u64::MAX).unwrap_err().raw_os_error(),
            Some(libc::EINVAL)
        );
        assert!(
            is_locked_or_unknown(&a, u64::MAX),
            "unknown counts as alive"
        );
    }

    #[test]
    fn shared_locks_coexist_and_flock_excludes() {
        let name = shmlane_testkit::unique("sys-lock-shared");
        let a = shm::create(&name, 0o600).unwrap();
        let b = shm::open(&name, Access::ReadWrite).unwrap();
        let c = shm::open(&name, Access::ReadWrite).unwrap();
        let _ = shm::unlink(&name);
        assert!(try_lock_shared(&a, 1).unwrap());
        assert!(try_lock_shared(&b, 1).unwrap());
        assert!(is_locked(&c, 1).unwrap(), "shared locks are seen");
        assert!(!try_lock(&c, 1).unwrap());
        assert!(try_lock(&c, 0).unwrap());
        assert!(!try_lock_shared(&a, 0).unwrap());
        assert!(try_flock(&a).unwrap());
        assert!(try_flock(&a).unwrap(), "own flock never conflicts");
        assert!(!try_flock(&b).unwrap());
        drop(a);
        assert!(try_flock(&b).unwrap());
    }
}
