//! Turning raw `-1`-and-`errno` results into `io::Result`, retrying
//! calls that a signal interrupted, and the error numbers callers match.

use std::io;

/// An error number, to match the errors of this crate's calls without
/// naming libc: `Errno::from_io_error(&e)` is `Some(Errno::NOENT)` for an
/// `ENOENT`, `None` for an error without a number.
pub use rustix::io::Errno;

/// A raw result that signals failure with `-1` and `errno`.
pub trait MinusOne: Copy + PartialEq {
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
///
/// # Errors
///
/// The `errno` of the call when `ret` is `-1`.
pub fn cvt<T: MinusOne>(ret: T) -> io::Result<T> {
    if ret == T::MINUS_ONE {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Calls a raw `-1`-on-error function until it does not fail with `EINTR`.
///
/// # Errors
///
/// The `errno` of the last call, when it failed otherwise.
pub fn cvt_retry<T: MinusOne>(mut f: impl FnMut() -> T) -> io::Result<T> {
    retry(|| cvt(f()))
}

/// Calls `f` until it does not fail with `EINTR` (`ErrorKind::Interrupted`).
///
/// # Errors
///
/// The error of the last call, when it failed otherwise.
pub fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minus_one_reads_errno_and_others_pass() {
        assert_eq!(cvt(5i32).unwrap(), 5);
        assert_eq!(cvt(0i64).unwrap(), 0);
        // SAFETY: closing an invalid descriptor only sets errno (EBADF).
        let r = cvt(unsafe { libc::close(-1) });
        assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EBADF));
    }

    #[test]
    fn interrupted_calls_are_retried() {
        let mut left = 3;
        let r = retry(|| {
            if left > 0 {
                left -= 1;
                Err(io::Error::from_raw_os_error(libc::EINTR))
            } else {
                Ok(7)
            }
        });
        assert_eq!(r.unwrap(), 7);
        let r: io::Result<()> = retry(|| Err(io::Error::from_raw_os_error(libc::EAGAIN)));
        assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EAGAIN));
    }
}
