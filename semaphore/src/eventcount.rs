//! An eventcount: lets a thread sleep until another changes some state,
//! without a lock, and without a system call on the waker's side when
//! nobody sleeps.
//!
//! Protocol (the two barriers form a Dekker pair; see `barrier` for the
//! asymmetric version that keeps the waker's side free of fences):
//!
//! ```text
//! waiter                                 waker
//! waiters += 1                           make the condition true
//! barrier (heavy)                        barrier (light)
//! key = seq                              if waiters > 0:
//! if condition: done                         seq += 1
//! futex_wait(seq, key)                       futex_wake(seq)
//! waiters -= 1
//! ```
//!
//! Either the waker sees the waiter's announcement, or the waiter's
//! re-check sees the condition. If the waker bumps `seq` after the waiter
//! read its key, `futex_wait` returns at once because `seq != key`.

use std::time::{Duration, Instant};

use crate::sync::{AtomicU32, Ordering};
use crate::{barrier, futex};

/// A wakeup word pair that may live in shared memory (`#[repr(C)]`, 8 bytes,
/// no pointers). All-zero bytes are a valid, idle eventcount.
#[repr(C)]
pub struct EventCount {
    seq: AtomicU32,
    waiters: AtomicU32,
    #[cfg(shmlane_loom)]
    model: futex::Model,
}

#[cfg(not(shmlane_loom))]
const _: () = {
    assert!(core::mem::size_of::<EventCount>() == 8);
    assert!(core::mem::align_of::<EventCount>() == 4);
};

/// Whether [`EventCount::wait_until`] returned because its deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut;

impl Default for EventCount {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for EventCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventCount")
            .field("seq", &self.seq.load(Ordering::Relaxed))
            .field("waiters", &self.waiters.load(Ordering::Relaxed))
            .finish()
    }
}

impl EventCount {
    /// An idle eventcount.
    #[cfg(not(shmlane_loom))]
    pub const fn new() -> Self {
        Self {
            seq: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
        }
    }

    /// An idle eventcount.
    #[cfg(shmlane_loom)]
    pub fn new() -> Self {
        Self {
            seq: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
            model: futex::Model::new(),
        }
    }

    /// How many waiters are announced now (a diagnostic).
    pub fn waiters(&self) -> u32 {
        // Relaxed: a snapshot for display and tests; orders nothing.
        self.waiters.load(Ordering::Relaxed)
    }

    /// How many times a waker found an announced waiter and made the wake
    /// system call (a diagnostic).
    pub fn wakeups(&self) -> u32 {
        // Relaxed: as for `waiters`.
        self.seq.load(Ordering::Relaxed)
    }

    /// Wakes one sleeping waiter, if any is announced. Call it after making
    /// the waited-for condition true. Right for any eventcount, in shared
    /// memory too (its waker's half is a fence).
    #[inline]
    pub fn notify_one(&self) {
        barrier::waker_side();
        self.notify(1);
    }

    /// Wakes every sleeping waiter, if any is announced (as
    /// [`notify_one`](Self::notify_one)).
    #[inline]
    pub fn notify_all(&self) {
        barrier::waker_side();
        self.notify(i32::MAX);
    }

    /// As [`notify_one`](Self::notify_one), for an eventcount whose
    /// waiters are all threads of this process (one in private memory):
    /// no fence where the process uses membarrier, only a compiler barrier
    /// (see `barrier`). Calling it on an eventcount that a waiter in
    /// another process sleeps on may lose that waiter's wakeup.
    #[inline]
    pub fn notify_one_local(&self) {
        barrier::waker_side_local();
        self.notify(1);
    }

    /// As [`notify_all`](Self::notify_all), for an eventcount whose
    /// waiters are all threads of this process (see
    /// [`notify_one_local`](Self::notify_one_local)).
    #[inline]
    pub fn notify_all_local(&self) {
        barrier::waker_side_local();
        self.notify(i32::MAX);
    }

    /// The rest of a notify, after the waker's half of the barrier pair,
    /// which orders the caller's store of the condition before the load
    /// of `waiters` and pairs with `waiter_side` in `prepare` (a SeqCst
    /// fence pair, or compiler barrier + membarrier: see `barrier`).
    #[inline]
    fn notify(&self, count: i32) {
        // Relaxed: the barrier pair gives the ordering.
        if self.waiters.load(Ordering::Relaxed) == 0 {
            return;
        }
        self.wake_slow(count);
    }

    #[cold]
    fn wake_slow(&self, count: i32) {
        // Release: a waiter that reads the new `seq` as its key also sees
        // everything the waker wrote before notifying.
        self.seq.fetch_add(1, Ordering::Release);
        #[cfg(shmlane_loom)]
        self.model.wake(&self.seq, count);
        #[cfg(not(shmlane_loom))]
        futex::wake(&self.seq, count);
    }

    /// The futex word's value now (for the async bridge).
    #[cfg(not(shmlane_loom))]
    pub(crate) fn seq_now(&self, order: Ordering) -> u32 {
        self.seq.load(order)
    }

    /// The futex word wakers bump (for the async bridge).
    #[cfg(not(shmlane_loom))]
    pub(crate) fn word(&self) -> *const AtomicU32 {
        &self.seq
    }

    /// Takes back `n` announcements made by waiters that can no longer
    /// withdraw them (a process that died while parked), never below zero.
    /// Whoever calls it must know those `n` from a per-waiter tally (see
    /// [`wait_tallied`](Self::wait_tallied)) and call it once per death.
    pub fn forget_waiters(&self, n: u32) {
        if n == 0 {
            return;
        }
        // Relaxed: a count only; an announcement forgotten late costs a
        // waker one needless syscall, and the dead never wait again.
        let _ = self
            .waiters
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                Some(w.saturating_sub(n))
            });
    }

    /// Announces a waiter and returns the key to sleep on. The caller must
    /// re-check its condition after this and before [`Self::sleep`].
    pub(crate) fn prepare<'a>(&'a self, tally: Option<&'a AtomicU32>) -> Key<'a> {
        // The global count first, the tally second (and the reverse when
        // withdrawing): a death between the two leaves at most one
        // announcement too many, never one too few, so no wakeup is lost.
        // Relaxed: the barrier below orders it.
        self.waiters.fetch_add(1, Ordering::Relaxed);
        if let Some(t) = tally {
            // Relaxed: read only by whoever reaps this waiter's process.
            t.fetch_add(1, Ordering::Relaxed);
        }
        // Orders the announcement before the caller's re-check of the
        // condition; pairs with the waker's half in `notify_one` and the rest.
        barrier::waiter_side();
        // Acquire: pairs with the Release bump in `wake_slow`.
        let seq = self.seq.load(Ordering::Acquire);
        Key {
            ec: self,
            seq,
            tally,
        }
    }

    /// Sleeps until `cond` returns `Some`, re-checking it after every
    /// wakeup, or until `deadline` passes. Does not spin first; see
    /// [`WaitStrategy`](crate::WaitStrategy) for that.
    ///
    /// # Errors
    ///
    /// [`TimedOut`] when the deadline passed and `cond` still returned `None`
    /// on its last check.
    pub fn wait_until<R>(
        &self,
        deadline: Option<Instant>,
        mut cond: impl FnMut() -> Option<R>,
    ) -> Result<R, TimedOut> {
        self.wait_in_steps(deadline, None, &mut cond)
    }

    /// As [`wait_until`](Self::wait_until), but never sleeps longer than
    /// `step` at a time, so a caller can notice events that come with no
    /// wakeup (a peer process that died) between checks of `cond`.
    ///
    /// # Errors
    ///
    /// As [`wait_until`](Self::wait_until).
    pub fn wait_in_steps<R>(
        &self,
        deadline: Option<Instant>,
        step: Option<Duration>,
        cond: &mut impl FnMut() -> Option<R>,
    ) -> Result<R, TimedOut> {
        self.wait_tallied(deadline, step, None, cond)
    }

    /// As [`wait_in_steps`](Self::wait_in_steps), and while announced also
    /// counts this waiter in `tally`: a word that belongs to the waiter's
    /// process (in shared memory, its participant entry), so that whoever
    /// finds the process dead can take its announcements back with
    /// [`forget_waiters`](Self::forget_waiters) and wakers stop making a
    /// system call for a sleeper that no longer exists.
    ///
    /// # Errors
    ///
    /// As [`wait_until`](Self::wait_until).
    pub fn wait_tallied<R>(
        &self,
        deadline: Option<Instant>,
        step: Option<Duration>,
        tally: Option<&AtomicU32>,
        cond: &mut impl FnMut() -> Option<R>,
    ) -> Result<R, TimedOut> {
        loop {
            if let Some(r) = cond() {
                return Ok(r);
            }
            let key = self.prepare(tally);
            if let Some(r) = cond() {
                return Ok(r);
            }
            let Some(timeout) = sleep_for(deadline, step) else {
                drop(key);
                return cond().ok_or(TimedOut);
            };
            key.sleep(timeout);
        }
    }
}

/// Sleeps until `cond` returns `Some`, on several eventcounts at once: a
/// wake of any of them re-checks `cond`. One `futex_waitv` system call
/// (Linux 5.16+) covers up to 128 of them; where it is missing, or for more,
/// the wait falls back to steps of 1 ms on the first (see
/// [`waits_on_many`]). `step` and `deadline` as in
/// [`EventCount::wait_in_steps`]; each eventcount's optional tally as in
/// [`EventCount::wait_tallied`]. Does not spin first.
///
/// # Errors
///
/// [`TimedOut`] when the deadline passed and `cond` still returned `None`
/// on its last check.
#[cfg(not(shmlane_loom))]
pub fn wait_any<R>(
    ecs: &[(&EventCount, Option<&AtomicU32>)],
    deadline: Option<Instant>,
    step: Option<Duration>,
    cond: &mut impl FnMut() -> Option<R>,
) -> Result<R, TimedOut> {
    /// Withdraws the announcements on every exit.
    struct Announced<'a>(&'a [(&'a EventCount, Option<&'a AtomicU32>)]);
    impl Drop for Announced<'_> {
        fn drop(&mut self) {
            for (ec, tally) in self.0 {
                if let Some(t) = tally {
                    // Relaxed: as in `Key::drop`.
                    t.fetch_sub(1, Ordering::Relaxed);
                }
                // Relaxed: as in `Key::drop`.
                let _ = ec
                    .waiters
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                        Some(w.saturating_sub(1))
                    });
            }
        }
    }
    // Inline up to 8: a parked select allocates nothing (crossbeam's own
    // tests count the bytes a select allocates).
    let mut words: smallvec::SmallVec<[(&AtomicU32, u32); 8]> = smallvec::SmallVec::new();
    loop {
        if let Some(r) = cond() {
            return Ok(r);
        }
        for (ec, tally) in ecs {
            // Relaxed: the barrier below orders it (as in `prepare`): the
            // global count first, the tally second.
            ec.waiters.fetch_add(1, Ordering::Relaxed);
            if let Some(t) = tally {
                t.fetch_add(1, Ordering::Relaxed);
            }
        }
        let announced = Announced(ecs);
        // One barrier for all the announcements; pairs with `waker_side`.
        barrier::waiter_side();
        words.clear();
        // Acquire: pairs with the Release bump in `wake_slow`.
        words.extend(
            ecs.iter()
                .map(|(ec, _)| (&ec.seq, ec.seq.load(Ordering::Acquire))),
        );
        if let Some(r) = cond() {
            return Ok(r);
        }
        let Some(timeout) = sleep_for(deadline, step) else {
            drop(announced);
            return cond().ok_or(TimedOut);
        };
        futex::wait_any(&words, timeout);
        drop(announced);
    }
}

/// Whether [`wait_any`] waits on several eventcounts with one system call
/// here (`futex_waitv`, Linux 5.16+), rather than in steps of 1 ms.
#[cfg(not(shmlane_loom))]
pub fn waits_on_many() -> bool {
    futex::waits_on_many()
}

/// How long to sleep now: `step` at most, never past `deadline` (`None`
/// inside: for ever). `None` once the deadline has passed.
#[allow(clippy::option_option)]
fn sleep_for(deadline: Option<Instant>, step: Option<Duration>) -> Option<Option<Duration>> {
    match deadline {
        None => Some(step),
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            Some(Some(step.map_or(left, |s| s.min(left))))
        }
    }
}

/// An announced waiter; withdraws the announcement when dropped.
pub(crate) struct Key<'a> {
    ec: &'a EventCount,
    pub(crate) seq: u32,
    tally: Option<&'a AtomicU32>,
}

impl Key<'_> {
    /// Sleeps unless `seq` moved since the key was taken; returns on a
    /// wake, a timeout, or a signal alike. Withdraws the announcement.
    fn sleep(self, timeout: Option<Duration>) {
        #[cfg(shmlane_loom)]
        self.ec.model.wait(&self.ec.seq, self.seq, timeout);
        #[cfg(not(shmlane_loom))]
        futex::wait(&self.ec.seq, self.seq, timeout);
    }
}

impl Drop for Key<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.tally {
            // Relaxed: as in `prepare`.
            t.fetch_sub(1, Ordering::Relaxed);
        }
        // Relaxed: a late decrement only costs a waker one needless syscall.
        // (A reaper may have forgotten this announcement already if the
        // process was taken for dead; saturate rather than wrap.)
        let _ = self
            .ec
            .waiters
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                Some(w.saturating_sub(1))
            });
    }
}
