//! Signals: `SIGPIPE`'s disposition (SIGBUS has [`sigbus`](crate::sigbus)),
//! and queued real-time signals carrying one word each: blocking one,
//! receiving through a `signalfd`, sending with `sigqueue`.
//!
//! Real-time signal numbers are libc's (`SIGRTMIN()`, above the two or
//! three that glibc keeps for its threads), which rustix leaves to a libc
//! wrapper crate and nix's `Signal` cannot name: the set holding one is
//! built with libc's `sigaddset` and handed to nix's `signalfd`. The mask
//! is set with libc's `pthread_sigmask`, because nix's wrapper takes its
//! `-1`-and-`errno` convention while `pthread_sigmask` returns the error
//! number, so a failure would read as success. Neither crate has
//! `sigqueue`: it is libc's.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Once;

use nix::sys::signal::SigSet;
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::errno::{cvt, retry};

/// Sets `SIGPIPE` to ignored, once per process, if it has the default
/// action (a handler someone installed is left alone), so that writing to
/// a pipe whose reader is gone fails with `EPIPE` instead of killing the
/// process. Rust programs already ignore it; C hosts may not.
pub fn ignore_sigpipe() {
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

/// The lowest real-time signal number applications may use
/// (`SIGRTMIN()`: glibc keeps the kernel's first ones for itself).
pub fn rt_min() -> i32 {
    libc::SIGRTMIN()
}

/// The highest real-time signal number (`SIGRTMAX()`).
pub fn rt_max() -> i32 {
    libc::SIGRTMAX()
}

/// The set holding `sig` alone.
fn only(sig: i32) -> io::Result<libc::sigset_t> {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set it is handed; sigaddset
    // then reads and writes only that set.
    unsafe {
        cvt(libc::sigemptyset(set.as_mut_ptr()))?;
        // EINVAL for a number that is not a signal.
        cvt(libc::sigaddset(set.as_mut_ptr(), sig))?;
        Ok(set.assume_init())
    }
}

/// Blocks signal `sig` in the calling thread (`pthread_sigmask`); threads
/// it spawns afterwards inherit the mask.
///
/// # Errors
///
/// `EINVAL` for a number that is not a signal.
pub fn block(sig: i32) -> io::Result<()> {
    let set = only(sig)?;
    // SAFETY: `set` is an initialised set; the old mask is not asked for.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    // The error number is the result, not `errno`.
    match r {
        0 => Ok(()),
        r => Err(io::Error::from_raw_os_error(r)),
    }
}

/// Blocks every real-time signal (`SIGRTMIN..=SIGRTMAX`) in the calling
/// thread: for helper threads a library starts, which must not receive
/// the signals of the `signal:` transport (whose default action kills).
/// Fault signals (`SIGBUS`, `SIGSEGV`) stay unblocked.
///
/// # Errors
///
/// As [`block`].
pub fn block_realtime() -> io::Result<()> {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set; sigaddset then reads and
    // writes only that set, with signal numbers the C library reported.
    let set = unsafe {
        cvt(libc::sigemptyset(set.as_mut_ptr()))?;
        for sig in rt_min()..=rt_max() {
            cvt(libc::sigaddset(set.as_mut_ptr(), sig))?;
        }
        set.assume_init()
    };
    // SAFETY: `set` is an initialised set; the old mask is not asked for.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    match r {
        0 => Ok(()),
        r => Err(io::Error::from_raw_os_error(r)),
    }
}

/// A `signalfd` for signal `sig`, non-blocking and close-on-exec: reading
/// it takes queued `sig`s (see [`read_signals`]). `sig` must be blocked in
/// every thread, or its default action runs instead.
///
/// # Errors
///
/// The OS error (`EMFILE`, `ENOMEM`...); `EINVAL` for a number that is not
/// a signal.
pub fn signalfd(sig: i32) -> io::Result<OwnedFd> {
    // SAFETY: `only` initialised the set with sigemptyset.
    let set = unsafe { SigSet::from_sigset_t_unchecked(only(sig)?) };
    let flags = SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC;
    Ok(SignalFd::with_flags(&set, flags)?.into())
}

/// One signal read from a [`signalfd`] (`struct signalfd_siginfo`).
#[derive(Clone, Copy, Debug)]
#[repr(transparent)]
pub struct SigInfo(libc::signalfd_siginfo);

impl Default for SigInfo {
    fn default() -> Self {
        // SAFETY: signalfd_siginfo is integers and padding: all-zero is a
        // valid value.
        Self(unsafe { std::mem::zeroed() })
    }
}

impl SigInfo {
    /// Whether it was sent by `sigqueue` (`SI_QUEUE`), with a word, rather
    /// than by `kill` or the kernel.
    pub fn is_queued(&self) -> bool {
        self.0.ssi_code == libc::SI_QUEUE
    }

    /// The process that sent it.
    pub fn pid(&self) -> i32 {
        self.0.ssi_pid as i32
    }

    /// The word it carries (`sival_ptr`; see [`queue`]).
    pub fn value(&self) -> u64 {
        self.0.ssi_ptr
    }
}

/// Reads the signals queued on `fd` (a [`signalfd`]), as many as `buf`
/// holds, in one `read`, across `EINTR`; returns how many it read.
///
/// # Errors
///
/// The OS error: `EAGAIN` when none is queued (the descriptor is
/// non-blocking), `EINVAL` for an empty `buf`...
pub fn read_signals(fd: impl AsFd, buf: &mut [SigInfo]) -> io::Result<usize> {
    let len = size_of_val(buf);
    // SAFETY: the bytes of `buf`, which this borrows mutably, viewed as
    // possibly uninitialised bytes: the read writes whole signalfd_siginfo
    // records into them, and any bytes make a valid record.
    let bytes =
        unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<MaybeUninit<u8>>(), len) };
    let n = retry(|| Ok(rustix::io::read(fd.as_fd(), &mut *bytes)?.0.len()))?;
    Ok(n / size_of::<SigInfo>())
}

/// Queues signal `sig` carrying the word `value` to process `pid`
/// (`sigqueue`, as `sival_ptr`: 8 bytes on 64-bit targets), across
/// `EINTR`.
///
/// # Errors
///
/// The OS error: `EAGAIN` when the receiver's user has `RLIMIT_SIGPENDING`
/// signals queued, `ESRCH` for no such process, `EPERM` where it may not
/// be signalled, `EINVAL` for a bad signal number.
pub fn queue(pid: i32, sig: i32, value: u64) -> io::Result<()> {
    let value = libc::sigval {
        sival_ptr: std::ptr::without_provenance_mut(value as usize),
    };
    // SAFETY: sigqueue copies the value; no memory is shared.
    retry(|| cvt(unsafe { libc::sigqueue(pid, sig, value) })).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigpipe_ends_up_ignored() {
        // The Rust runtime already ignores SIGPIPE; the call keeps that.
        ignore_sigpipe();
        ignore_sigpipe();
        // SAFETY: an all-zero sigaction is a valid "query" buffer.
        let mut now: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: a null new action only reads the current one into `now`.
        let r = unsafe { libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut now) };
        assert_eq!(r, 0);
        assert_eq!(now.sa_sigaction, libc::SIG_IGN);
    }

    #[test]
    fn real_time_signals_are_libcs() {
        assert!(rt_min() >= 32);
        assert!(rt_max() >= rt_min() + 8);
        assert_eq!(rt_min(), libc::SIGRTMIN());
        assert_eq!(block(0).unwrap_err().raw_os_error(), Some(libc::EINVAL));
        assert_eq!(
            signalfd(rt_max() + 1).unwrap_err().raw_os_error(),
            Some(libc::EINVAL)
        );
    }

    /// Whether `sig` is in this thread's `SigBlk:` mask.
    fn blocked_here(sig: i32) -> bool {
        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        let line = status.lines().find_map(|l| l.strip_prefix("SigBlk:"));
        let mask = u64::from_str_radix(line.unwrap().trim(), 16).unwrap();
        mask & (1 << (sig - 1)) != 0
    }

    #[test]
    fn blocked_signals_are_read_from_a_signalfd() {
        let sig = rt_min() + 9;
        assert!(!blocked_here(sig));
        block(sig).unwrap();
        assert!(blocked_here(sig));
        let fd = signalfd(sig).unwrap();
        let flags = rustix::io::fcntl_getfd(&fd).unwrap();
        assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
        let mut buf = [SigInfo::default(); 4];
        let e = read_signals(&fd, &mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        // To this thread only: another thread of the test binary, where
        // `sig` is not blocked, would die of it.
        for word in [7u64, u64::MAX] {
            let value = libc::sigval {
                sival_ptr: std::ptr::without_provenance_mut(word as usize),
            };
            // SAFETY: queues a signal to the calling thread, which blocks
            // it; the value is copied.
            let r = unsafe { libc::pthread_sigqueue(libc::pthread_self(), sig, value) };
            assert_eq!(r, 0);
        }
        assert_eq!(read_signals(&fd, &mut buf).unwrap(), 2);
        for (info, word) in buf.iter().zip([7u64, u64::MAX]) {
            assert!(info.is_queued());
            assert_eq!(info.pid(), std::process::id() as i32);
            assert_eq!(info.value(), word);
        }
        assert!(!SigInfo::default().is_queued());
        let e = read_signals(&fd, &mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        // Unblocked again, for the tests that run on this thread next.
        let set = only(sig).unwrap();
        // SAFETY: `set` is an initialised set; the old mask is not asked
        // for.
        let r = unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
        assert_eq!(r, 0);
        assert!(!blocked_here(sig));
    }

    #[test]
    fn queued_signals_reach_other_processes() {
        use std::os::unix::process::ExitStatusExt;
        let sig = rt_min() + 9;
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        // The child does not block it: its default action ends the child.
        queue(pid, sig, 7).unwrap();
        assert_eq!(child.wait().unwrap().signal(), Some(sig));
        // Reaped: no such process (barring reuse of the pid meanwhile).
        assert_eq!(
            queue(pid, sig, 7).unwrap_err().raw_os_error(),
            Some(libc::ESRCH)
        );
        assert_eq!(
            queue(std::process::id() as i32, 0x7fff, 7)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::EINVAL)
        );
    }
}
