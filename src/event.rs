//! The in-process channels' wakeup points: an eventcount for parked
//! threads, and a list of async tasks that the notifier wakes itself (no
//! helper thread between a sender and a waiting task in its process).
//!
//! Protocol for a task (the eventcount's, with the list in place of the
//! futex):
//!
//! ```text
//! task                                   notifier
//! push waker; tasks += 1                 make the condition true
//! barrier (heavy)                        barrier (light)
//! re-check the condition                 if waiters > 0: wake a thread
//! (Pending)                              if tasks > 0: pop and wake a task
//! ```
//!
//! Either the notifier sees the task counted, or the task's re-check sees
//! the condition.

use std::ops::Deref;

use shmlane_semaphore::EventCount;

use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll, Waker};

#[cfg(shmlane_loom)]
use loom::sync::Mutex;
#[cfg(not(shmlane_loom))]
use std::sync::Mutex;

use shmlane_semaphore::WaitStrategy;

use crate::sync::{AtomicUsize, Ordering};

/// An eventcount plus the tasks waiting on the same condition.
pub struct Event {
    ec: EventCount,
    /// How many tasks are listed (read by every notify, so it shares the
    /// eventcount's line).
    tasks: AtomicUsize,
    list: Mutex<Vec<(u64, Waker)>>,
}

impl Deref for Event {
    type Target = EventCount;

    fn deref(&self) -> &EventCount {
        &self.ec
    }
}

impl Default for Event {
    fn default() -> Self {
        Self::new()
    }
}

impl Event {
    /// An event nobody waits on.
    pub fn new() -> Self {
        Self {
            ec: EventCount::new(),
            tasks: AtomicUsize::new(0),
            list: Mutex::new(Vec::new()),
        }
    }

    /// Wakes one parked thread and one listed task, if any (a task and a
    /// thread may both wake for one message; the one that finds it empty
    /// waits again).
    #[inline]
    pub fn notify_one_local(&self) {
        self.ec.notify_one_local();
        // Relaxed: ordered after the condition by the barrier in the
        // eventcount's notify (see the module notes).
        if self.tasks.load(Ordering::Relaxed) != 0 {
            self.wake_tasks(1);
        }
    }

    /// Wakes every parked thread and every listed task.
    #[inline]
    pub fn notify_all_local(&self) {
        self.ec.notify_all_local();
        // Relaxed: as in `notify_one_local`.
        if self.tasks.load(Ordering::Relaxed) != 0 {
            self.wake_tasks(usize::MAX);
        }
    }

    /// Parked threads and listed tasks (a diagnostic, for tests).
    pub fn waiters(&self) -> u32 {
        // Relaxed: a snapshot.
        let tasks = self.tasks.load(Ordering::Relaxed) as u32;
        self.ec.waiters() + tasks
    }
}

impl Event {
    #[cfg(not(shmlane_loom))]
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Waker)>> {
        self.list.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(shmlane_loom)]
    fn lock(&self) -> loom::sync::MutexGuard<'_, Vec<(u64, Waker)>> {
        self.list.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cold]
    fn wake_tasks(&self, n: usize) {
        let woken: Vec<Waker> = {
            let mut list = self.lock();
            let n = n.min(list.len());
            // Oldest first: the list is in registration order.
            let woken: Vec<Waker> = list.drain(..n).map(|(_, w)| w).collect();
            // Relaxed: under the lock, as every change of the count.
            self.tasks.fetch_sub(woken.len(), Ordering::Relaxed);
            woken
        };
        // A waker that panics (a bug of its executor) must not break the
        // channel operation that notifies (a receive whose message is
        // already moved out, a disconnect with a second event to notify,
        // a drop while unwinding): the panic is caught and dropped, and
        // the other tasks are woken all the same.
        for w in woken {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.wake()));
        }
    }

    /// Lists a task (a new id), then makes the waiter's half of the
    /// barrier: the caller re-checks its condition next. Also returns
    /// whether the barrier pair held (see
    /// [`shmlane_semaphore::waiter_barrier`]): if not, the caller must
    /// re-check after a bounded step.
    fn register(&self, waker: &Waker) -> (u64, bool) {
        // (A std atomic under loom too: uniqueness is all it gives.)
        static NEXT: AtomicU64 = AtomicU64::new(1);
        // Relaxed: uniqueness only.
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Cloned outside the lock: a waker's clone is executor code.
        let waker = waker.clone();
        {
            let mut list = self.lock();
            list.push((id, waker));
            // Relaxed: the barrier below orders it before the re-check.
            self.tasks.fetch_add(1, Ordering::Relaxed);
        }
        let ordered = shmlane_semaphore::waiter_barrier();
        (id, ordered)
    }

    /// Whether task `id` is still listed (no notifier took it), and if so
    /// makes `waker` the one to wake (a task polled again by another
    /// wakeup keeps its place and needs no new barrier).
    fn still_listed(&self, id: u64, waker: &Waker) -> bool {
        let mut list = self.lock();
        let Some(entry) = list.iter_mut().find(|(i, _)| *i == id) else {
            return false;
        };
        if entry.1.will_wake(waker) {
            return true;
        }
        // Swapped, and the old one dropped outside the lock (its drop is
        // executor code, which may drop a future that unregisters here).
        let old = std::mem::replace(&mut entry.1, waker.clone());
        drop(list);
        drop(old);
        true
    }

    /// Takes task `id` off the list; whether it was still there (false:
    /// a notifier woke it).
    fn unregister(&self, id: u64) -> bool {
        let removed = {
            let mut list = self.lock();
            let removed = list
                .iter()
                .position(|(i, _)| *i == id)
                .map(|i| list.remove(i));
            if removed.is_some() {
                // Relaxed: under the lock.
                self.tasks.fetch_sub(1, Ordering::Relaxed);
            }
            removed
        };
        // The waker drops here, outside the lock (see `still_listed`).
        removed.is_some()
    }
}

/// One async wait on an [`Event`], kept in a future across polls: the
/// task spins like the channel's wait strategy (waking itself, so the
/// executor runs other tasks in between), then lists itself on the event,
/// where the notifier wakes it directly. Polled again while still listed
/// (another branch of a `join!` woke it), it keeps its place; woken, it
/// looks again itself. [`release`](Self::release) (the future's drop)
/// withdraws a listing, and passes on a wakeup it took and never used.
#[derive(Debug)]
pub struct TaskWait {
    id: Option<u64>,
    spins: u32,
    busy: bool,
}

impl TaskWait {
    /// A wait that spins like `strategy` before it lists itself (a
    /// strategy that never parks never lists: an async busy-poll).
    pub fn new(strategy: &WaitStrategy) -> Self {
        Self {
            id: None,
            spins: strategy.spin(),
            busy: !strategy.parks(),
        }
    }

    /// Checks `cond` on `ev`'s condition: `Ready` with its answer, or
    /// `Pending` with the task spinning or listed. `recheck` treats a
    /// standing listing as woken (the caller's own timer fired). The
    /// `bool` is true when this poll made a listing whose barrier pair did
    /// not hold (a membarrier that failed, see
    /// [`shmlane_semaphore::waiter_barrier`]): the caller must then
    /// re-check after a bounded step itself.
    pub fn poll<R>(
        &mut self,
        ev: &Event,
        cx: &mut Context<'_>,
        recheck: bool,
        mut cond: impl FnMut() -> Option<R>,
    ) -> (Poll<R>, bool) {
        if let Some(id) = self.id {
            if !recheck && ev.still_listed(id, cx.waker()) {
                // Polled for another reason: the listing stands, so the
                // barrier made at registration still pairs with every
                // later notify; look again, keeping the task's place.
                if let Some(r) = cond() {
                    ev.unregister(id);
                    self.id = None;
                    return (Poll::Ready(r), false);
                }
                return (Poll::Pending, false);
            }
            // Woken (or re-checking): this poll looks again itself.
            ev.unregister(id);
            self.id = None;
        }
        if let Some(r) = cond() {
            return (Poll::Ready(r), false);
        }
        if self.busy || self.spins > 0 {
            self.spins = self.spins.saturating_sub(1);
            cx.waker().wake_by_ref();
            return (Poll::Pending, false);
        }
        let (id, ordered) = ev.register(cx.waker());
        if let Some(r) = cond() {
            ev.unregister(id);
            return (Poll::Ready(r), false);
        }
        self.id = Some(id);
        (Poll::Pending, !ordered)
    }

    /// Withdraws a listing (a future dropped while it waits); a wakeup it
    /// took and never used (a future woken, then dropped unpolled, as one
    /// that lost a `select!`) goes to the next waiter: it may have been
    /// the only one for a message that waiter needs.
    pub fn release(&mut self, ev: &Event) {
        if let Some(id) = self.id.take() {
            if !ev.unregister(id) {
                ev.notify_one_local();
            }
        }
    }
}
