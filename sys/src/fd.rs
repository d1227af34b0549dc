//! Descriptor flags (non-blocking mode, pipe buffer size) and descriptors
//! for children to inherit.

use std::io;
use std::os::fd::{AsFd, OwnedFd, RawFd};

use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};

/// Sets `O_NONBLOCK` on `fd`'s open file description, keeping its other
/// status flags.
///
/// # Errors
///
/// The OS error of `F_GETFL` or `F_SETFL` (`EBADF`...).
pub fn set_nonblocking(fd: impl AsFd) -> io::Result<()> {
    let flags = fcntl_getfl(&fd)?;
    fcntl_setfl(&fd, flags | OFlags::NONBLOCK)?;
    Ok(())
}

/// Asks for a pipe buffer of `bytes` (`F_SETPIPE_SZ`); best effort: the
/// system caps it at `/proc/sys/fs/pipe-max-size` and per-user limits, and
/// a failure (not a pipe, over the limit) is ignored.
pub fn grow_pipe(fd: impl AsFd, bytes: usize) {
    // The kernel takes an `int`; ask for the most it could give.
    let bytes = bytes.min(i32::MAX as usize);
    let _ = rustix::pipe::fcntl_setpipe_size(fd, bytes);
}

/// A duplicate of `fd` numbered `min` or above, *without* close-on-exec
/// for a child spawned with `exec` to inherit.
///
/// Made as `F_DUPFD_CLOEXEC` then `F_SETFD 0` (rustix has no plain
/// `F_DUPFD` on Linux): the same descriptor as `F_DUPFD` gives.
///
/// # Errors
///
/// The OS error (`EMFILE`, `EINVAL` for a `min` out of range...).
pub fn dup_inheritable(fd: impl AsFd, min: RawFd) -> io::Result<OwnedFd> {
    use rustix::io::{fcntl_dupfd_cloexec, fcntl_setfd, FdFlags};
    let dup = fcntl_dupfd_cloexec(fd, min)?;
    fcntl_setfd(&dup, FdFlags::empty())?;
    Ok(dup)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonblocking_sticks_and_pipes_grow() {
        let (r, w) = rustix::pipe::pipe().unwrap();
        assert!(!fcntl_getfl(&r).unwrap().contains(OFlags::NONBLOCK));
        set_nonblocking(&r).unwrap();
        assert!(fcntl_getfl(&r).unwrap().contains(OFlags::NONBLOCK));
        let before = rustix::pipe::fcntl_getpipe_size(&w).unwrap();
        grow_pipe(&w, 2 * before);
        assert!(rustix::pipe::fcntl_getpipe_size(&w).unwrap() >= before);
        // Not a pipe: ignored.
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        grow_pipe(&file, usize::MAX);
    }

    #[test]
    fn inheritable_duplicates_lack_cloexec() {
        use rustix::io::{fcntl_getfd, FdFlags};
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        assert!(fcntl_getfd(&file).unwrap().contains(FdFlags::CLOEXEC));
        let dup = dup_inheritable(&file, 3).unwrap();
        assert!(dup.as_raw_fd() >= 3);
        assert!(!fcntl_getfd(&dup).unwrap().contains(FdFlags::CLOEXEC));
    }
}
