//! Descriptor flags: non-blocking mode and pipe buffer size.

use std::io;
use std::os::fd::AsFd;

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
}
