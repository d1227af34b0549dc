//! A lock for the state of a side that only one thread may drive at a time
//! (an SPSC ring's producer or consumer, a kernel transport's descriptor
//! and buffers), so that every handle can be `Clone + Sync` with `&self`
//! methods, as crossbeam-channel's are.
//!
//! Uncontended (the normal case: one thread per side), taking it is one
//! compare-and-swap on a line only this process touches, and releasing it
//! one store. A thread that finds it taken waits (spin, yield, then short
//! sleeps: the holder may be lending a message for a while). A thread that
//! takes it again while it holds it (a `recv` while its own `recv_ref`
//! guard of the same receiver is alive, a send from inside its own
//! `send_with` closure) would wait for itself for ever: that panics, with
//! a message saying so, instead.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub(super) struct Exclusive<T> {
    /// 0 when free, else the token of the thread that holds it.
    holder: AtomicUsize,
    value: UnsafeCell<T>,
}

// SAFETY: the value is reached only through a guard, and at most one guard
// exists at a time (the holder word is taken with a compare-and-swap), so
// `T: Send` is enough to share the lock between threads.
unsafe impl<T: Send> Sync for Exclusive<T> {}

/// A number that identifies the calling thread while it lives: the address
/// of one of its thread-locals.
fn token() -> usize {
    thread_local! { static MARK: u8 = const { 0 }; }
    MARK.with(|m| m as *const u8 as usize)
}

impl<T> Exclusive<T> {
    pub(super) fn new(value: T) -> Self {
        Self {
            holder: AtomicUsize::new(0),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the lock, waiting while another thread holds it.
    ///
    /// # Panics
    ///
    /// If the calling thread holds it already (see the module docs).
    #[inline]
    pub(super) fn lock(&self) -> Guard<'_, T> {
        let me = token();
        // Acquire on success: pairs with the Release store in `Guard::drop`,
        // so the previous holder's changes to the value are visible.
        // Relaxed on failure: the slow path looks again.
        if self
            .holder
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_slow(me);
        }
        Guard { lock: self }
    }

    #[cold]
    fn lock_slow(&self, me: usize) {
        let mut step = 0u32;
        loop {
            // Relaxed: only compared with our own token, which no other
            // thread writes; the CAS below orders the value.
            let held_by = self.holder.load(Ordering::Relaxed);
            assert!(
                held_by != me,
                "a shmlane handle was used again by the thread that is using it: \
                 drop the `recv_ref` guard first, or do not send from inside `send_with`"
            );
            // Acquire/Relaxed: as in `lock`.
            if held_by == 0
                && self
                    .holder
                    .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return;
            }
            match step {
                0..=63 => std::hint::spin_loop(),
                64..=127 => std::thread::yield_now(),
                _ => std::thread::sleep(Duration::from_micros(50)),
            }
            step = step.saturating_add(1);
        }
    }
}

/// Holds an [`Exclusive`] and derefs to its value; releases it on drop.
pub(super) struct Guard<'a, T> {
    lock: &'a Exclusive<T>,
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: this guard is the only one (see `Exclusive`).
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes the borrow unique.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        // Release: pairs with the Acquire CAS in `lock`.
        self.lock.holder.store(0, Ordering::Release);
    }
}
