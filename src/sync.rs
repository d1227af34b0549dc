//! The only place in this crate that names `std::sync` atomics or `loom`.

#[cfg(shmlane_loom)]
pub(crate) use loom::sync::{
    atomic::{AtomicBool, AtomicUsize, Ordering},
    Arc,
};

#[cfg(not(shmlane_loom))]
pub(crate) use std::sync::{
    atomic::{AtomicBool, AtomicUsize, Ordering},
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

/// Gives the CPU to another runnable thread.
#[inline]
pub(crate) fn yield_now() {
    #[cfg(shmlane_loom)]
    loom::thread::yield_now();
    #[cfg(not(shmlane_loom))]
    std::thread::yield_now();
}
