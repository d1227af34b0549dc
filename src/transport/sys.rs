//! Thin wrappers over the system calls the transports make.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::Once;
use std::time::{Duration, Instant};

/// A raw result that signals failure with `-1` and `errno`.
pub(crate) trait MinusOne: Copy + PartialEq {
    /// The failure value.
    const MINUS_ONE: Self;
}

impl MinusOne for i32 {
    const MINUS_ONE: Self = -1;
}

impl MinusOne for i64 {
    const MINUS_ONE: Self = -1;
}

impl MinusOne for isize {
    const MINUS_ONE: Self = -1;
}

/// Turns a raw `-1`-on-error result into `io::Result`, reading `errno`.
pub(crate) fn cvt<T: MinusOne>(ret: T) -> io::Result<T> {
    if ret == T::MINUS_ONE {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Retries a call while it fails with `EINTR`.
pub(crate) fn cvt_retry<T: MinusOne>(mut f: impl FnMut() -> T) -> io::Result<T> {
    loop {
        match cvt(f()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// Takes ownership of a descriptor a system call just returned.
pub(crate) fn owned(fd: RawFd) -> OwnedFd {
    debug_assert!(fd >= 0);
    // SAFETY: every caller passes a descriptor a successful system call
    // just returned, which nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// A path as a C string; paths with NUL bytes are `InvalidInput`.
pub(crate) fn c_path(path: &Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::ErrorKind::InvalidInput.into())
}

/// A C string for a name; names with NUL bytes are `InvalidInput`.
pub(crate) fn c_name(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::ErrorKind::InvalidInput.into())
}

/// The error number of an `io::Error`, or 0.
pub(crate) fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// Sets `O_NONBLOCK` on `fd`.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL / F_SETFL on a descriptor we borrow; no pointers.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    Ok(())
}

/// Asks for a pipe buffer of `bytes`; best effort (the system caps it at
/// `/proc/sys/fs/pipe-max-size` and per-user limits).
pub(crate) fn grow_pipe(fd: BorrowedFd<'_>, bytes: usize) {
    let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: F_SETPIPE_SZ on a pipe descriptor we borrow; failure is
    // harmless and ignored.
    let _ = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, bytes) };
}

/// Sets `SIGPIPE` to ignored, once per process, if it has the default
/// action (a handler someone installed is left alone), so that writing to
/// a pipe whose reader is gone fails with `EPIPE` instead of killing the
/// process. Rust programs already ignore it; C hosts may not.
pub(crate) fn ignore_sigpipe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: an all-zero sigaction is a valid "query" buffer.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: a null new action only reads the current one into `old`.
        let ok = unsafe { libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) } == 0;
        if ok && old.sa_sigaction == libc::SIG_DFL {
            // SAFETY: as above; SIG_IGN needs no handler code.
            let mut ign: libc::sigaction = unsafe { std::mem::zeroed() };
            ign.sa_sigaction = libc::SIG_IGN;
            // SAFETY: `ign` is a fully initialised sigaction.
            unsafe { libc::sigaction(libc::SIGPIPE, &ign, std::ptr::null_mut()) };
        }
    });
}

/// Waits until one of `fds` is ready or `until` passes (`None`: forever).
/// Returns `false` on timeout. A deadline already past polls once.
pub(crate) fn poll(fds: &mut [libc::pollfd], until: Option<Instant>) -> io::Result<bool> {
    loop {
        let ts = until.map(|u| {
            let left = u.saturating_duration_since(Instant::now());
            libc::timespec {
                tv_sec: libc::time_t::try_from(left.as_secs()).unwrap_or(libc::time_t::MAX),
                tv_nsec: libc::c_long::from(left.subsec_nanos() as i32),
            }
        });
        let ts_ptr = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `fds` is a valid slice of pollfd for its length; `ts_ptr`
        // is null or points to a live timespec; a null sigmask keeps ours.
        let n = unsafe {
            libc::ppoll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                ts_ptr,
                std::ptr::null(),
            )
        };
        match cvt(n) {
            Ok(0) => {
                if until.is_some_and(|u| Instant::now() >= u) {
                    return Ok(false);
                }
            }
            Ok(_) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Polls one descriptor for `events`; returns the events that came, or 0
/// on timeout.
pub(crate) fn poll_one(
    fd: BorrowedFd<'_>,
    events: libc::c_short,
    until: Option<Instant>,
) -> io::Result<libc::c_short> {
    let mut p = [libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    }];
    Ok(if poll(&mut p, until)? {
        p[0].revents
    } else {
        0
    })
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

/// Whether some open file description other than ours holds an OFD lock
/// on byte `byte` of `fd`.
pub(crate) fn ofd_held(fd: BorrowedFd<'_>, byte: i64) -> io::Result<bool> {
    let mut fl = flock(libc::F_WRLCK, byte);
    // SAFETY: F_OFD_GETLK reads and writes the flock we pass.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) })?;
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

/// Takes an OFD write lock on byte `byte` of `fd` without waiting;
/// `Ok(false)` when another open file description holds it.
pub(crate) fn ofd_lock(fd: BorrowedFd<'_>, byte: i64) -> io::Result<bool> {
    let fl = flock(libc::F_WRLCK, byte);
    // SAFETY: F_OFD_SETLK reads the flock we pass.
    match cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &fl) }) {
        Ok(_) => Ok(true),
        Err(e) if matches!(errno(&e), libc::EAGAIN | libc::EACCES) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Takes an OFD read lock (shared with other read locks) on byte `byte`
/// of `fd` without waiting; `Ok(false)` when another open file
/// description holds a write lock on it.
pub(crate) fn ofd_lock_shared(fd: BorrowedFd<'_>, byte: i64) -> io::Result<bool> {
    let fl = flock(libc::F_RDLCK, byte);
    // SAFETY: F_OFD_SETLK reads the flock we pass.
    match cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &fl) }) {
        Ok(_) => Ok(true),
        Err(e) if matches!(errno(&e), libc::EAGAIN | libc::EACCES) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Takes an exclusive `flock` on the file of `fd` without waiting;
/// `Ok(false)` when another open file description holds one.
pub(crate) fn flock_exclusive(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: flock on a descriptor we borrow; no pointers.
    match cvt(unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }) {
        Ok(_) => Ok(true),
        Err(e) if errno(&e) == libc::EWOULDBLOCK => Ok(false),
        Err(e) => Err(e),
    }
}

fn flock(kind: libc::c_int, byte: i64) -> libc::flock {
    // SAFETY: flock is plain data; all-zero is valid (l_pid must be 0 for
    // OFD locks).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = byte;
    fl.l_len = 1;
    fl
}

/// A pidfd for `pid` (Linux 5.3+), which polls readable once it exits
/// (zombies included). `Ok(None)` where the kernel lacks pidfds.
pub(crate) fn pidfd_open(pid: libc::pid_t) -> io::Result<Option<OwnedFd>> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    match cvt(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) }) {
        Ok(fd) => Ok(Some(owned(fd as RawFd))),
        Err(e) if errno(&e) == libc::ENOSYS => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether process `pid` (watched by `pidfd` when there is one) is gone.
pub(crate) fn process_gone(pid: libc::pid_t, pidfd: Option<&OwnedFd>) -> bool {
    use std::os::fd::AsFd;
    match pidfd {
        Some(fd) => poll_one(fd.as_fd(), libc::POLLIN, Some(Instant::now())).is_ok_and(|r| r != 0),
        None => {
            // SAFETY: signal 0 only checks that the process exists.
            let r = cvt(unsafe { libc::kill(pid, 0) });
            r.is_err_and(|e| errno(&e) == libc::ESRCH)
        }
    }
}
