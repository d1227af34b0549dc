//! The only place in this crate that names `std::sync` atomics or `loom`.

#[cfg(shmlane_loom)]
pub(crate) use loom::sync::{
    atomic::{fence, AtomicBool, AtomicPtr, AtomicUsize, Ordering},
    Arc,
};

#[cfg(not(shmlane_loom))]
pub(crate) use std::sync::{
    atomic::{fence, AtomicBool, AtomicPtr, AtomicUsize, Ordering},
    Arc,
};

/// A CPU hint inside a spin loop (a loom yield under loom).
#[inline(always)]
pub(crate) fn spin_loop() {
    #[cfg(shmlane_loom)]
    loom::hint::spin_loop();
    #[cfg(not(shmlane_loom))]
    std::hint::spin_loop();
}

/// Waits a moment for another thread or process to finish the slot
/// operation it is in the middle of: spin 1, 2, 4... 32 pause hints, then
/// give the CPU away (that thread may be preempted on this very core).
/// `step` counts the calls, so callers can bound their retries.
pub(crate) fn backoff(step: &mut u32) {
    // Under loom the spins would only multiply states: one yield is the
    // same behaviour.
    if *step < 6 && !cfg!(shmlane_loom) {
        for _ in 0..1u32 << *step {
            spin_loop();
        }
    } else {
        yield_now();
    }
    *step = step.saturating_add(1);
}

/// Gives the CPU to another runnable thread.
#[inline]
pub(crate) fn yield_now() {
    #[cfg(shmlane_loom)]
    loom::thread::yield_now();
    #[cfg(not(shmlane_loom))]
    std::thread::yield_now();
}

/// Every in-process wait re-checks its condition at least this often. The
/// eventcount needs no timer to be correct; this bounds the cost of a
/// wakeup that is lost all the same to one step instead of a hang. One
/// was: with the global membarrier as the waiter's half of the fence pair
/// (see `shmlane_sys::membarrier`), crossbeam's select_both shape hung in
/// 5 of 200 runs here without this step, and in none of 280 with the
/// private one.
pub(crate) const SAFETY_STEP: Option<std::time::Duration> =
    Some(std::time::Duration::from_millis(100));
