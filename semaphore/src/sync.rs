//! The only place in this crate that names `core::sync::atomic` or `loom`.

#[cfg(shmlane_loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicUsize, Ordering};

#[cfg(not(shmlane_loom))]
pub(crate) use core::sync::atomic::{fence, AtomicBool, AtomicU32, Ordering};

/// Process-local and shared-memory atomics of the named semaphore, which
/// loom models do not cover (it lives in a file mapping).
#[cfg(all(target_os = "linux", not(shmlane_loom)))]
pub(crate) use core::sync::atomic::{AtomicU64, AtomicU8};

#[cfg(not(shmlane_loom))]
pub(crate) use core::sync::atomic::AtomicUsize;

#[cfg(shmlane_loom)]
pub(crate) use loom::sync::{Condvar, Mutex};

/// A CPU hint inside a spin loop (a loom yield under loom).
#[inline(always)]
pub(crate) fn spin_loop() {
    #[cfg(shmlane_loom)]
    loom::hint::spin_loop();
    #[cfg(not(shmlane_loom))]
    core::hint::spin_loop();
}

/// Gives the CPU to another runnable thread.
#[inline]
pub(crate) fn yield_now() {
    #[cfg(shmlane_loom)]
    loom::thread::yield_now();
    #[cfg(not(shmlane_loom))]
    std::thread::yield_now();
}
