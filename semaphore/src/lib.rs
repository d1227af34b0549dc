//! Cross-process wakeups for shmlane.
//!
//! - [`EventCount`]: sleep until another thread or process changes some
//!   shared state; a futex without the private flag, with a waiter count so
//!   that a waker makes no system call when nobody sleeps. Every wait takes
//!   an optional deadline and survives `EINTR` and spurious wakeups.
//! - [`WaitStrategy`]: bounded spin, then yield, then park (or busy-poll).
//! - [`Semaphore`] (Linux): a named counting semaphore shared between
//!   processes, whose permits come back when a holder process dies.
//!
//! Both are plain `#[repr(C)]` data and can live in shared memory. On
//! platforms without futexes a parked waiter polls in 50 us sleeps (correct,
//! but slow); the POSIX-semaphore fallback is not written yet.
//!
//! # Examples
//!
//! ```
//! use std::sync::atomic::{AtomicBool, Ordering};
//! use std::sync::Arc;
//! use shmlane_semaphore::{EventCount, WaitStrategy};
//!
//! let state = Arc::new((EventCount::new(), AtomicBool::new(false)));
//! let waker = {
//!     let state = Arc::clone(&state);
//!     std::thread::spawn(move || {
//!         state.1.store(true, Ordering::Release);
//!         state.0.notify_all();
//!     })
//! };
//! let (ec, flag) = &*state;
//! WaitStrategy::default()
//!     .wait(ec, None, || flag.load(Ordering::Acquire).then_some(()))
//!     .unwrap();
//! waker.join().unwrap();
//! ```

mod barrier;
#[cfg(all(target_os = "linux", not(shmlane_loom)))]
mod bridge;
mod eventcount;
#[doc(hidden)]
pub mod exclusive;
mod futex;
#[cfg(all(target_os = "linux", not(shmlane_loom)))]
mod named;
mod sync;
mod wait;

pub use barrier::asymmetric as uses_membarrier;
pub use barrier::prepare as prepare_barriers;
#[cfg(all(target_os = "linux", not(shmlane_loom)))]
pub use bridge::{AsyncWait, KeepAlive};
#[cfg(not(shmlane_loom))]
pub use eventcount::{wait_any, waits_on_many};
pub use eventcount::{EventCount, TimedOut};
// SIGBUS containment for shared file mappings; it lives in `shmlane-sys`,
// beside the mappings it protects, and keeps its path here.
#[cfg(all(target_os = "linux", not(shmlane_loom)))]
pub use named::{
    AcquireError, Semaphore, SemaphoreError, SemaphoreOptions, SemaphorePermit, TryAcquireError,
    MAX_NAME_LEN, MAX_PERMITS,
};
#[cfg(all(target_os = "linux", not(shmlane_loom)))]
pub use shmlane_sys::sigbus;
pub use wait::{Phase, WaitStrategy};

/// The waiter's half of the eventcounts' barrier pair, for a waiter that
/// announces itself somewhere else than an eventcount (an async task in a
/// channel's own list) and is found by a notifier after its
/// `notify_one_local`/`notify_all_local`: call it after announcing and
/// before re-checking the condition.
///
/// Returns false when the pair may not have held this time: the process's
/// membarrier failed during this call (ENOMEM, a seccomp filter installed
/// later), so a notifier already past its light half is not ordered with
/// this waiter. Such a waiter must re-check after a bounded step, as the
/// eventcount's own waits do.
pub fn waiter_barrier() -> bool {
    let was_asymmetric = barrier::asymmetric();
    barrier::waiter_side();
    !was_asymmetric || barrier::asymmetric()
}

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("timed out")
    }
}

impl std::error::Error for TimedOut {}
