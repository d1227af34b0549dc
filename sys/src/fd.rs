//! Descriptors: flags (non-blocking mode, close-on-exec, pipe buffer
//! size), pipes, descriptors for children to inherit, what kind of file a
//! descriptor is, and reads and writes.
//!
//! Reads and writes on streams (`read`, `writev`) retry `EINTR`; the
//! positioned ones on a file (`pread`, `pwrite`) pass it on, as do the
//! flag calls (which cannot be interrupted).

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, OwnedFd, RawFd};

use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};

use crate::errno::retry;

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

/// Sets (`true`) or clears (`false`) close-on-exec on `fd` (`F_SETFD`;
/// the descriptor has no other flag). A raw system call that allocates
/// nothing, so a forked child may make it before `exec`.
///
/// # Errors
///
/// The OS error (`EBADF`...).
pub fn set_cloexec(fd: impl AsFd, cloexec: bool) -> io::Result<()> {
    use rustix::io::{fcntl_setfd, FdFlags};
    let flags = if cloexec {
        FdFlags::CLOEXEC
    } else {
        FdFlags::empty()
    };
    Ok(fcntl_setfd(fd, flags)?)
}

/// An anonymous pipe, `(read end, write end)`, both close-on-exec
/// (`pipe2(O_CLOEXEC)`).
///
/// # Errors
///
/// The OS error (`EMFILE`, `ENFILE`...).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    use rustix::pipe::{pipe_with, PipeFlags};
    Ok(pipe_with(PipeFlags::CLOEXEC)?)
}

/// Whether `fd` is a socket (`fstat`, `S_IFSOCK`), rather than a pipe,
/// FIFO or other file.
///
/// # Errors
///
/// The OS error of `fstat` (`EBADF`...).
pub fn is_socket(fd: impl AsFd) -> io::Result<bool> {
    use rustix::fs::{fstat, FileType};
    Ok(FileType::from_raw_mode(fstat(fd)?.st_mode).is_socket())
}

/// One `read` of `fd` into `buf`, across `EINTR`; returns the bytes read,
/// 0 at end of file.
///
/// # Errors
///
/// The OS error (`EAGAIN` on a non-blocking descriptor with nothing to
/// read, `ECONNRESET` on a socket...).
pub fn read(fd: impl AsFd, buf: &mut [u8]) -> io::Result<usize> {
    retry(|| Ok(rustix::io::read(fd.as_fd(), &mut *buf)?))
}

/// One `read` of at most `max` bytes of `fd`, across `EINTR`, appended to
/// `buf` (whose spare capacity is grown to `max` first, whatever the read
/// returns); returns the bytes read, 0 at end of file.
///
/// # Errors
///
/// As [`read`]; `buf` keeps its length then.
pub fn read_append(fd: impl AsFd, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    buf.reserve(max);
    let spare = &mut buf.spare_capacity_mut()[..max];
    let n = retry(|| Ok(rustix::io::read(fd.as_fd(), &mut *spare)?.0.len()))?;
    // SAFETY: the read initialised the first `n` bytes of the spare
    // capacity, which follow the initialised length at once.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// One `writev` of `bufs` to `fd`, across `EINTR`; returns the bytes
/// written, which may be fewer than given (a short write).
///
/// Writing to a pipe whose reader is gone raises `SIGPIPE` unless it is
/// ignored (see [`ignore_sigpipe`](crate::signal::ignore_sigpipe)); a
/// socket should use [`net::send_vectored`](crate::net::send_vectored).
///
/// # Errors
///
/// The OS error (`EAGAIN` on a full non-blocking pipe, `EPIPE`...).
pub fn write_vectored(fd: impl AsFd, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    retry(|| Ok(rustix::io::writev(fd.as_fd(), bufs)?))
}

/// One `pread` of `fd` at `offset` into `buf`; returns the bytes read.
/// `EINTR` is not retried.
///
/// # Errors
///
/// The OS error (`EBADF`, `EINVAL`...).
pub fn read_at(fd: impl AsFd, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    Ok(rustix::io::pread(fd, buf, offset)?)
}

/// One `pwrite` of `buf` to `fd` at `offset`; returns the bytes written.
/// `EINTR` is not retried.
///
/// # Errors
///
/// The OS error (`EBADF`, `ENOSPC`...).
pub fn write_at(fd: impl AsFd, buf: &[u8], offset: u64) -> io::Result<usize> {
    Ok(rustix::io::pwrite(fd, buf, offset)?)
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

    #[test]
    fn pipes_are_close_on_exec_and_carry_bytes() {
        use rustix::io::{fcntl_getfd, FdFlags};
        let (r, w) = pipe().unwrap();
        assert!(fcntl_getfd(&r).unwrap().contains(FdFlags::CLOEXEC));
        assert!(fcntl_getfd(&w).unwrap().contains(FdFlags::CLOEXEC));
        set_cloexec(&w, false).unwrap();
        assert!(!fcntl_getfd(&w).unwrap().contains(FdFlags::CLOEXEC));
        set_cloexec(&w, true).unwrap();
        assert!(fcntl_getfd(&w).unwrap().contains(FdFlags::CLOEXEC));

        let parts = [IoSlice::new(b"ab"), IoSlice::new(b"cde")];
        assert_eq!(write_vectored(&w, &parts).unwrap(), 5);
        let mut two = [0u8; 2];
        assert_eq!(read(&r, &mut two).unwrap(), 2);
        assert_eq!(&two, b"ab");
        let mut buf = b"x".to_vec();
        // At most `max` bytes, appended.
        assert_eq!(read_append(&r, &mut buf, 2).unwrap(), 2);
        assert_eq!(buf, b"xcd");
        assert_eq!(read_append(&r, &mut buf, 8).unwrap(), 1);
        assert_eq!(buf, b"xcde");
        set_nonblocking(&r).unwrap();
        let e = read_append(&r, &mut buf, 8).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(buf, b"xcde");
        drop(w);
        assert_eq!(read(&r, &mut two).unwrap(), 0, "end of file");
    }

    #[test]
    fn sockets_are_told_from_pipes() {
        let (r, _w) = pipe().unwrap();
        assert!(!is_socket(&r).unwrap());
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(is_socket(&a).unwrap());
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        assert!(!is_socket(&file).unwrap());
    }

    #[test]
    fn positioned_reads_and_writes() {
        let name = shmlane_testkit::unique("sys-fd-at");
        let f = crate::shm::create(&name, 0o600).unwrap();
        let _ = crate::shm::unlink(&name);
        crate::fs::set_len(&f, 8).unwrap();
        assert_eq!(write_at(&f, &[7], 1).unwrap(), 1);
        let mut b = [9u8; 2];
        assert_eq!(read_at(&f, &mut b, 0).unwrap(), 2);
        assert_eq!(b, [0, 7]);
        assert_eq!(read_at(&f, &mut b, 8).unwrap(), 0, "past the end");
    }
}
