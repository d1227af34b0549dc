//! Futex wait and wake on a word that may be shared between processes.
//!
//! The private flag is never used: the word may live in a shared mapping,
//! where the kernel keys waiters by the physical page, not the address.
//! Under loom the futex is replaced by a mutex and condition variable with
//! the kernel's guarantees: a waiter whose expected value is stale does not
//! sleep, and a wake after a change reaches as many sleepers as asked for.

#[cfg(all(target_os = "linux", not(shmlane_loom)))]
mod imp {
    use std::time::Duration;

    use shmlane_sys::errno::Errno;
    use shmlane_sys::futex;

    use crate::sync::AtomicU32;

    /// How long a wait on an unreachable (truncated) word sleeps.
    const FAULT_NAP: Duration = Duration::from_millis(1);

    /// Sleeps while `word == expected`, for at most `timeout`. Returns on a
    /// wake, a timeout, a changed word (EAGAIN) or a signal (EINTR) alike:
    /// the caller re-checks its condition and its deadline either way.
    pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
        if let Err(e) = futex::wait(word, expected, timeout) {
            match Errno::from_io_error(&e) {
                Some(Errno::TIMEDOUT | Errno::AGAIN | Errno::INTR) => {}
                // The word lies in a shared file mapping whose file a peer
                // truncated: the kernel cannot fault the page in. Not a
                // bug of ours; the caller re-checks its condition and finds
                // the segment broken. Sleep a little instead of spinning.
                Some(Errno::FAULT) => {
                    std::thread::sleep(timeout.map_or(FAULT_NAP, |t| t.min(FAULT_NAP)));
                }
                // EINVAL would mean a misaligned address: a bug.
                _ => panic!("futex wait failed: {e}"),
            }
        }
    }

    /// How long one step of a stepped wait on several words lasts, where
    /// `futex_waitv` is missing or the words are too many for it.
    const STEPPED: Duration = Duration::from_millis(1);

    /// Whether `futex_waitv` answered ENOSYS once (a kernel before 5.16).
    static NO_WAITV: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    /// Sleeps while every `word == expected`, for at most `timeout`: one
    /// `futex_waitv` call for up to 128 words; past that, or on a kernel
    /// without it, a wait on the first word in steps of 1 ms (the caller
    /// re-checks every word's condition between steps).
    pub(crate) fn wait_any(words: &[(&AtomicU32, u32)], timeout: Option<Duration>) {
        use std::sync::atomic::Ordering::Relaxed;
        match words {
            [] => std::thread::sleep(timeout.unwrap_or(Duration::from_secs(3600))),
            [(word, expected)] => wait(word, *expected, timeout),
            _ if words.len() <= futex::WAITV_MAX && !NO_WAITV.load(Relaxed) => {
                if let Err(e) = futex::wait_any(words, timeout) {
                    match Errno::from_io_error(&e) {
                        Some(Errno::TIMEDOUT | Errno::AGAIN | Errno::INTR) => {}
                        Some(Errno::FAULT) => {
                            std::thread::sleep(timeout.map_or(FAULT_NAP, |t| t.min(FAULT_NAP)));
                        }
                        Some(Errno::NOSYS) => {
                            NO_WAITV.store(true, Relaxed);
                        }
                        _ => panic!("futex_waitv failed: {e}"),
                    }
                }
            }
            [(word, expected), ..] => {
                wait(
                    word,
                    *expected,
                    Some(timeout.map_or(STEPPED, |t| t.min(STEPPED))),
                );
            }
        }
    }

    /// Whether waits on several words are one system call here (see
    /// [`wait_any`]).
    pub(crate) fn waits_on_many() -> bool {
        !NO_WAITV.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn wake(word: &AtomicU32, count: i32) {
        // The eventcount wakes 1 or i32::MAX (all); never a negative count.
        let count = u32::try_from(count).unwrap_or(0);
        if let Err(e) = futex::wake(word, count) {
            // EFAULT: a truncated shared file mapping (see `wait`); there is
            // nobody to wake through it. EINVAL would be a bug.
            if Errno::from_io_error(&e) != Some(Errno::FAULT) {
                panic!("futex wake failed: {e}");
            }
        }
    }
}

/// Without futexes, sleeping in short steps stands in for parking: slower
/// to react, but never wrong (the caller re-checks its condition).
#[cfg(all(not(target_os = "linux"), not(shmlane_loom)))]
mod imp {
    use std::time::Duration;

    use crate::sync::{AtomicU32, Ordering};

    const STEP: Duration = Duration::from_micros(50);

    pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
        // Acquire: as the kernel's check of the futex word.
        if word.load(Ordering::Acquire) == expected {
            std::thread::sleep(timeout.map_or(STEP, |t| t.min(STEP)));
        }
    }

    pub(crate) fn wake(_word: &AtomicU32, _count: i32) {}

    pub(crate) fn wait_any(words: &[(&AtomicU32, u32)], timeout: Option<Duration>) {
        // Acquire: as in `wait`.
        if words.iter().all(|(w, e)| w.load(Ordering::Acquire) == *e) {
            std::thread::sleep(timeout.map_or(STEP, |t| t.min(STEP)));
        }
    }

    pub(crate) fn waits_on_many() -> bool {
        false
    }
}

/// The loom model: the mutex stands for the kernel's futex bucket lock.
#[cfg(shmlane_loom)]
pub(crate) struct Model {
    lock: crate::sync::Mutex<()>,
    cond: crate::sync::Condvar,
}

#[cfg(shmlane_loom)]
impl Model {
    pub(crate) fn new() -> Self {
        Self {
            lock: crate::sync::Mutex::new(()),
            cond: crate::sync::Condvar::new(),
        }
    }

    /// Timeouts are ignored: in a model, a lost wakeup must show up as a
    /// deadlock rather than be papered over by a timer.
    pub(crate) fn wait(
        &self,
        word: &crate::sync::AtomicU32,
        expected: u32,
        _timeout: Option<std::time::Duration>,
    ) {
        let guard = self.lock.lock().unwrap();
        // Acquire: the lock orders this load after any wake that took the
        // lock before us, like the kernel's bucket lock does.
        if word.load(crate::sync::Ordering::Acquire) == expected {
            drop(self.cond.wait(guard).unwrap());
        }
    }

    /// Wakes one sleeper for `count == 1` (as `FUTEX_WAKE(1)` does, so a
    /// protocol that spends a wakeup on the wrong waiter fails in the
    /// model), else all of them.
    pub(crate) fn wake(&self, _word: &crate::sync::AtomicU32, count: i32) {
        let _guard = self.lock.lock().unwrap();
        if count == 1 {
            self.cond.notify_one();
        } else {
            self.cond.notify_all();
        }
    }
}

#[cfg(not(shmlane_loom))]
pub(crate) use imp::{wait, wait_any, waits_on_many, wake};
