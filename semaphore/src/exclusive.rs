//! A lock for the state of a side that only one thread may drive at a time
//! (in the channel crate: an SPSC ring's producer or consumer, a kernel
//! transport's descriptor and buffers), so that every handle can be
//! `Clone + Sync` with `&self` methods, as crossbeam-channel's are. It
//! lives here, beside the asymmetric fences it uses, so that the loom
//! models can check it (`loom-tests/tests/exclusive.rs`).
//!
//! It is biased: the first thread that takes it owns it, and takes it
//! again with no read-modify-write, only plain stores and loads and a
//! compiler barrier. That matters on the SPSC hot path: a locked
//! instruction right after a send would wait for the previous send's store
//! to the line the consumer polls (a cross-core round trip), which
//! measured as half the 8-byte throughput. The owner's half of the Dekker
//! pair is `light_fence` and another thread's half is `heavy_fence`
//! (`membarrier`, as the eventcount's waker and waiter; SeqCst fences on
//! both sides where membarrier is missing).
//!
//! A second thread that wants the lock revokes the bias, once and for
//! good: it tells the owner, waits for it to leave, and from then on every
//! thread (the first one included) takes turns through a compare-and-swap
//! of a holder word, waiting with spin, yield, then short sleeps (a holder
//! may be lending a message for a while).
//!
//! A thread that takes it again while it holds it (a `recv` while its own
//! `recv_ref` guard of the same receiver is alive, a send from inside its
//! own `send_with` closure) would wait for itself for ever: that panics,
//! with a message saying so, instead.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};

use crate::barrier::{waiter_side as heavy_fence, waker_side_local as light_fence};
use crate::sync::{fence, yield_now, AtomicBool, AtomicUsize, Ordering};

/// `owner` once the bias is revoked: nobody owns it any more.
const SHARED: usize = usize::MAX;

pub struct Exclusive<T> {
    /// The thread the lock is biased to: 0 before first use, `SHARED`
    /// after a revocation.
    owner: AtomicUsize,
    /// The owner is inside (taken through the fast path).
    busy: AtomicBool,
    /// Another thread is revoking the bias (never cleared).
    revoking: AtomicBool,
    /// 0 when free, else the token of the thread that holds it through
    /// the slow path.
    holder: AtomicUsize,
    value: UnsafeCell<T>,
}

// SAFETY: the value is reached only through a guard, and at most one guard
// exists at a time: the owner's fast path and the slow path exclude each
// other by the Dekker pair on `busy`/`revoking` (see `lock_slow`), and slow
// paths by the compare-and-swap of `holder`. So `T: Send` is enough.
unsafe impl<T: Send> Sync for Exclusive<T> {}

/// A number that identifies the calling thread while it lives: the address
/// of one of its thread-locals.
#[cfg(not(shmlane_loom))]
#[inline]
fn token() -> usize {
    thread_local! { static MARK: u8 = const { 0 }; }
    MARK.with(|m| m as *const u8 as usize)
}

/// Under loom every model thread runs on one OS thread: a per-model-thread
/// number instead.
#[cfg(shmlane_loom)]
fn token() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
    loom::thread_local! {
        static MINE: usize = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    MINE.with(|m| *m)
}

fn reentered() -> ! {
    panic!(
        "a shmlane handle was used again by the thread that is using it: \
         drop the `recv_ref` guard first, or do not send from inside `send_with`"
    )
}

impl<T> Exclusive<T> {
    /// A lock over `value`, biased to nobody yet.
    pub fn new(value: T) -> Self {
        Self {
            owner: AtomicUsize::new(0),
            busy: AtomicBool::new(false),
            revoking: AtomicBool::new(false),
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
    pub fn lock(&self) -> Guard<'_, T> {
        match self.lock_if(true) {
            Some(guard) => guard,
            None => unreachable!("a lock that may wait always returns a guard"),
        }
    }

    /// Takes the lock if it is free, or comes free within a short spin
    /// (up to 64 pause hints while another thread holds it, and as many
    /// again while the first owner leaves its fast path, the first time
    /// another thread takes it); `None` if another thread keeps
    /// holding it (one blocked in a receive, or lending a message), so
    /// that a non-blocking operation or an async poll never waits on a
    /// clone's blocking call.
    ///
    /// # Panics
    ///
    /// As [`lock`](Self::lock).
    #[inline]
    pub fn try_lock(&self) -> Option<Guard<'_, T>> {
        self.lock_if(false)
    }

    /// [`lock`](Self::lock) if `wait`, else [`try_lock`](Self::try_lock).
    #[inline]
    pub fn lock_if(&self, wait: bool) -> Option<Guard<'_, T>> {
        let me = token();
        // Relaxed: compared with our own token, which only we (or the
        // one-time CAS below, Acquire) wrote; a stale SHARED or other
        // token sends us to the slow path, which orders everything.
        let mut owner = self.owner.load(Ordering::Relaxed);
        if owner == 0 {
            // The first thread to use it owns it. AcqRel on success: the
            // value as constructed (published with the handle) is ours.
            owner = match self
                .owner
                .compare_exchange(0, me, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => me,
                Err(now) => now,
            };
        }
        if owner == me {
            // Relaxed: only this thread stores `true` into it.
            if self.busy.load(Ordering::Relaxed) {
                reentered();
            }
            // Relaxed, then the light fence: our half of the Dekker pair
            // with a revoker's `revoking` store and heavy fence.
            self.busy.store(true, Ordering::Relaxed);
            light_fence();
            // Relaxed: ordered by the fences (see above).
            if !self.revoking.load(Ordering::Relaxed) {
                return Some(Guard {
                    lock: self,
                    fast: true,
                });
            }
            // Being revoked: step back and queue with everyone else.
            // Release: what we did to the value before is the revoker's.
            self.busy.store(false, Ordering::Release);
        }
        self.lock_slow(me, wait)
    }

    /// Steps of `backoff` a `try_lock` spends before giving up: the pause
    /// hints only (a few microseconds), no yield: an async future retried
    /// every millisecond while a clone blocks must not cost a system call
    /// a step. (Under loom, none: a model's yield lets the other threads
    /// run on, so a try that waited would never be seen giving up while
    /// the owner is inside.)
    #[cfg(not(shmlane_loom))]
    const TRY_STEPS: u32 = 64;
    #[cfg(shmlane_loom)]
    const TRY_STEPS: u32 = 0;

    /// Whether a `try_lock` that took `step` steps gives up.
    // Always true under loom, where `TRY_STEPS` is 0.
    #[allow(clippy::absurd_extreme_comparisons)]
    fn tried_enough(step: u32) -> bool {
        step >= Self::TRY_STEPS
    }

    #[cold]
    fn lock_slow(&self, me: usize, wait: bool) -> Option<Guard<'_, T>> {
        let mut step = 0u32;
        loop {
            // Relaxed: only compared with our own token, which no other
            // thread writes; the CAS below orders the value.
            let held_by = self.holder.load(Ordering::Relaxed);
            if held_by == me {
                reentered();
            }
            // Acquire on success: pairs with the Release store in
            // `Guard::drop`, so the previous holder's changes are visible.
            if held_by == 0
                && self
                    .holder
                    .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                break;
            }
            if !wait && Self::tried_enough(step) {
                return None;
            }
            backoff(&mut step);
        }
        // Relaxed: SHARED is only ever written by a holder (us, now, or an
        // earlier holder whose Release we acquired).
        if self.owner.load(Ordering::Relaxed) != SHARED && !self.revoke(wait) {
            // The owner is inside and we may not wait for it: let go (it
            // steps back at its next lock, since `revoking` stays set).
            // Release: we changed nothing, but pairs as every release does.
            self.holder.store(0, Ordering::Release);
            return None;
        }
        Some(Guard {
            lock: self,
            fast: false,
        })
    }

    /// Ends the bias (holding the slow path's lock): after this the owner
    /// never takes the fast path again, and is not inside it now. Without
    /// `wait`, gives up (false) if the owner stays inside for a short
    /// spin; a later call finishes the revocation.
    #[cold]
    fn revoke(&self, wait: bool) -> bool {
        // Relaxed, then the heavy fence: with the owner's `busy` store and
        // light fence, either the owner sees `revoking` and steps back, or
        // we see its `busy` and wait for it to leave. (A revoker that finds
        // `revoking` set already follows one that made the fence: the
        // owner's every later lock sees it.)
        if self.revoking.swap(true, Ordering::Relaxed) {
            fence(Ordering::SeqCst);
            return self.wait_owner_out(wait);
        }
        let was_asymmetric = crate::barrier::asymmetric();
        heavy_fence();
        // The heavy fence can fail after registration (a seccomp filter
        // installed later, ENOMEM): an owner past its light fence may then
        // have a `busy` store not yet visible. Store buffers drain in well
        // under a microsecond; waiting a millisecond, once per handle,
        // covers that case (and only that case: a fence that held needs
        // no wait). Then a SeqCst fence for our own half.
        #[cfg(not(shmlane_loom))]
        if was_asymmetric && !crate::barrier::asymmetric() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        #[cfg(shmlane_loom)]
        let _ = was_asymmetric;
        fence(Ordering::SeqCst);
        self.wait_owner_out(wait)
    }

    /// Waits for the owner to leave the fast path (without `wait`, a short
    /// spin at most), then ends the bias; whether it did.
    fn wait_owner_out(&self, wait: bool) -> bool {
        let mut step = 0u32;
        // Acquire: pairs with the owner's Release store of `false`, so
        // what it did to the value is visible to us.
        while self.busy.load(Ordering::Acquire) {
            if !wait && Self::tried_enough(step) {
                return false;
            }
            backoff(&mut step);
        }
        // Relaxed: read by threads that then take this slow path, ordered
        // by `holder`; a stale read sends the owner to its `revoking`
        // check, which now fails.
        self.owner.store(SHARED, Ordering::Relaxed);
        true
    }
}

/// Spin, yield, then short sleeps (under loom: yield, which is all a
/// model needs).
fn backoff(step: &mut u32) {
    #[cfg(not(shmlane_loom))]
    match *step {
        0..=63 => core::hint::spin_loop(),
        64..=127 => yield_now(),
        _ => std::thread::sleep(std::time::Duration::from_micros(50)),
    }
    #[cfg(shmlane_loom)]
    yield_now();
    *step = step.saturating_add(1);
}

/// Holds an [`Exclusive`] and derefs to its value; releases it on drop.
pub struct Guard<'a, T> {
    lock: &'a Exclusive<T>,
    /// Taken through the owner's fast path (else through `holder`).
    fast: bool,
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
        if self.fast {
            // Release: pairs with a revoker's Acquire load of `busy`.
            self.lock.busy.store(false, Ordering::Release);
        } else {
            // Release: pairs with the Acquire CAS in `lock_slow`.
            self.lock.holder.store(0, Ordering::Release);
        }
    }
}

#[cfg(all(test, not(shmlane_loom)))]
mod tests {
    use super::Exclusive;
    use std::sync::Arc;

    #[test]
    fn threads_take_turns_after_the_bias_is_revoked() {
        let lock = Arc::new(Exclusive::new(0u64));
        // The first thread owns it.
        for _ in 0..1000 {
            *lock.lock() += 1;
        }
        let others: Vec<_> = (0..3)
            .map(|_| {
                let lock = Arc::clone(&lock);
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        *lock.lock() += 1;
                    }
                })
            })
            .collect();
        // The owner keeps going while the others revoke and queue.
        for _ in 0..10_000 {
            *lock.lock() += 1;
        }
        for t in others {
            t.join().unwrap();
        }
        assert_eq!(*lock.lock(), 1000 + 4 * 10_000);
    }

    #[test]
    #[should_panic(expected = "used again by the thread that is using it")]
    fn taking_it_twice_on_the_owner_thread_panics() {
        let lock = Exclusive::new(());
        let _held = lock.lock();
        let _again = lock.lock();
    }

    #[test]
    #[should_panic(expected = "used again by the thread that is using it")]
    fn taking_it_twice_on_the_slow_path_panics() {
        let lock = Arc::new(Exclusive::new(()));
        let other = Arc::clone(&lock);
        // Another thread becomes the owner first.
        std::thread::spawn(move || drop(other.lock()))
            .join()
            .unwrap();
        let _held = lock.lock();
        let _again = lock.lock();
    }
}
