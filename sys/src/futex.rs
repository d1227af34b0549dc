//! Futex wait and wake on a word that may be shared between processes.
//!
//! The private flag is never used: the word may live in a shared mapping,
//! where the kernel keys waiters by the physical page, not the address.

use std::io;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use rustix::thread::futex::{self, Flags, Timespec};

/// Sleeps while `*word == expected`, for at most `timeout` (`FUTEX_WAIT`).
///
/// # Errors
///
/// The kernel's answer, unretried: `EAGAIN` when the word already
/// differs, `ETIMEDOUT`, `EINTR` on a signal, `EFAULT` when the word's
/// page cannot be faulted in (a truncated shared file mapping). Callers
/// re-check their condition after every return.
pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> io::Result<()> {
    let ts = timeout.map(|t| Timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: i64::from(t.subsec_nanos()),
    });
    Ok(futex::wait(word, Flags::empty(), expected, ts.as_ref())?)
}

/// Wakes up to `count` threads, in any process, sleeping on `word`
/// (`FUTEX_WAKE`); returns how many woke.
///
/// # Errors
///
/// The kernel's answer: `EFAULT` for a truncated shared file mapping
/// (nobody can sleep there), `EINVAL` for a misaligned word (a bug).
pub fn wake(word: &AtomicU32, count: u32) -> io::Result<usize> {
    Ok(futex::wake(word, Flags::empty(), count)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn a_stale_value_does_not_sleep_and_a_timeout_returns() {
        let word = AtomicU32::new(1);
        let e = wait(&word, 0, None).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EAGAIN));
        let e = wait(&word, 1, Some(Duration::from_millis(1))).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ETIMEDOUT));
        assert_eq!(wake(&word, 1).unwrap(), 0);
    }

    #[test]
    fn a_wake_reaches_a_sleeper() {
        let word = std::sync::Arc::new(AtomicU32::new(0));
        let sleeper = {
            let word = std::sync::Arc::clone(&word);
            std::thread::spawn(move || {
                while word.load(Ordering::Acquire) == 0 {
                    let _ = wait(&word, 0, None);
                }
            })
        };
        word.store(1, Ordering::Release);
        wake(&word, u32::MAX).unwrap();
        sleeper.join().unwrap();
    }
}
