//! The only place in this crate that names `core::sync::atomic` or `loom`.
//!
//! Under `--cfg shmlane_loom` the atomics come from loom and every slot
//! carries a [`Tracker`], a loom `UnsafeCell` that is "written" by the
//! producer and "read" by the consumer of the slot, so that loom reports a
//! missing happens-before edge between the two as a data race.

#[cfg(shmlane_loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU64, Ordering};

#[cfg(not(shmlane_loom))]
pub(crate) use core::sync::atomic::{fence, AtomicU64, Ordering};

/// Stands for the payload bytes of a slot in loom's race detector.
#[cfg(shmlane_loom)]
pub(crate) struct Tracker(loom::cell::UnsafeCell<()>);

#[cfg(shmlane_loom)]
impl Tracker {
    pub(crate) fn new() -> Self {
        Self(loom::cell::UnsafeCell::new(()))
    }
    pub(crate) fn write(&self) {
        self.0.with_mut(|_| ());
    }
    pub(crate) fn read(&self) {
        self.0.with(|_| ());
    }
}

/// Zero-sized outside loom: costs nothing and changes no layout.
#[cfg(not(shmlane_loom))]
pub(crate) struct Tracker;

#[cfg(not(shmlane_loom))]
impl Tracker {
    pub(crate) const fn new() -> Self {
        Self
    }
    #[inline(always)]
    pub(crate) fn write(&self) {}
    #[inline(always)]
    pub(crate) fn read(&self) {}
}
