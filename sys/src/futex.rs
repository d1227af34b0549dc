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

/// As [`wake`], by address: for a word that may be gone (the kernel
/// answers EFAULT for an unmapped one, and a mapped stale address wakes
/// nobody, or a sleeper that re-checks its condition). Errors are
/// ignored: there is nobody to tell.
pub fn wake_raw(word: *const AtomicU32, count: u32) {
    // SAFETY: FUTEX_WAKE only names the address (the kernel hashes it and
    // wakes sleepers queued on it); it never reads or writes the word.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word as usize,
            libc::FUTEX_WAKE,
            count as libc::c_int,
            std::ptr::null::<libc::timespec>(),
        );
    }
}

/// The most words one [`wait_any`] call can watch (the kernel's limit).
pub const WAITV_MAX: usize = 128;

/// Sleeps until any of `words` is woken, or differs from its expected
/// value, for at most `timeout` (`futex_waitv`, Linux 5.16+). Each word is
/// a shared (not process-private) 32-bit futex. Returns the index of the
/// word that was woken.
///
/// # Errors
///
/// The kernel's answer, unretried: `EAGAIN` when a word already differs,
/// `ETIMEDOUT`, `EINTR` (`ERESTARTSYS`) on a signal, `EFAULT` for a word
/// whose page cannot be faulted in, `ENOSYS` on a kernel without the
/// call (callers fall back to stepped waits), `EINVAL` for more than
/// [`WAITV_MAX`] words or none.
pub fn wait_any(words: &[(&AtomicU32, u32)], timeout: Option<Duration>) -> io::Result<usize> {
    if words.len() > WAITV_MAX {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut raw = [(std::ptr::null::<AtomicU32>(), 0u32); WAITV_MAX];
    for (r, (word, expected)) in raw.iter_mut().zip(words) {
        *r = (*word as *const AtomicU32, *expected);
    }
    wait_any_raw(&raw[..words.len()], timeout)
}

/// As [`wait_any`], with the words as addresses: for a waiter that cannot
/// promise the words stay allocated for the whole call (the kernel only
/// compares and queues on them; a word whose memory is gone gives
/// `EFAULT` or a wait that other words or the timeout end).
///
/// # Errors
///
/// As [`wait_any`].
pub fn wait_any_raw(
    words: &[(*const AtomicU32, u32)],
    timeout: Option<Duration>,
) -> io::Result<usize> {
    /// `struct futex_waitv` of `<linux/futex.h>`.
    #[repr(C)]
    struct FutexWaitv {
        val: u64,
        uaddr: u64,
        flags: u32,
        reserved: u32,
    }
    /// `FUTEX2_SIZE_U32`: a 32-bit word, shared (no `FUTEX2_PRIVATE`).
    const FUTEX2_SIZE_U32: u32 = 0x02;
    if words.is_empty() || words.len() > WAITV_MAX {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut list = [const {
        FutexWaitv {
            val: 0,
            uaddr: 0,
            flags: 0,
            reserved: 0,
        }
    }; WAITV_MAX];
    for (w, (word, expected)) in list.iter_mut().zip(words) {
        w.val = u64::from(*expected);
        w.uaddr = *word as usize as u64;
        w.flags = FUTEX2_SIZE_U32;
    }
    // The timeout is absolute, on the clock named in the last argument.
    let deadline = match timeout {
        None => None,
        Some(t) => {
            let mut now = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: `now` is a valid timespec to fill.
            if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) } != 0 {
                return Err(io::Error::last_os_error());
            }
            let t = t.min(Duration::from_secs(1 << 40));
            let mut sec = now.tv_sec.saturating_add(t.as_secs() as libc::time_t);
            let mut nsec = now.tv_nsec + libc::c_long::from(t.subsec_nanos() as i32);
            if nsec >= 1_000_000_000 {
                sec = sec.saturating_add(1);
                nsec -= 1_000_000_000;
            }
            Some(libc::timespec {
                tv_sec: sec,
                tv_nsec: nsec,
            })
        }
    };
    let ts = deadline
        .as_ref()
        .map_or(std::ptr::null(), |d| d as *const libc::timespec);
    // SAFETY: `list` holds `words.len()` initialised entries (the kernel
    // reads the addresses in them itself and reports EFAULT for any it
    // cannot reach; it never writes them); `ts` is null or a valid
    // timespec; flags 0 is the only defined value.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex_waitv,
            list.as_ptr(),
            words.len() as libc::c_uint,
            0 as libc::c_uint,
            ts,
            libc::CLOCK_MONOTONIC,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as usize)
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

    #[test]
    fn wait_any_sees_a_stale_word_a_timeout_and_a_wake() {
        let a = AtomicU32::new(0);
        let b = AtomicU32::new(5);
        let e = wait_any(&[(&a, 0), (&b, 4)], None).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EAGAIN));
        let e = wait_any(&[(&a, 0), (&b, 5)], Some(Duration::from_millis(1))).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ETIMEDOUT));
        let words = std::sync::Arc::new((AtomicU32::new(0), AtomicU32::new(0)));
        let sleeper = {
            let words = std::sync::Arc::clone(&words);
            std::thread::spawn(move || loop {
                if words.1.load(Ordering::Acquire) != 0 {
                    return;
                }
                if let Ok(i) = wait_any(&[(&words.0, 0), (&words.1, 0)], None) {
                    assert_eq!(i, 1);
                }
            })
        };
        words.1.store(1, Ordering::Release);
        wake(&words.1, u32::MAX).unwrap();
        sleeper.join().unwrap();
    }
}
