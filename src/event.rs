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

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use shmlane_semaphore::{Phase, TimedOut, WaitStrategy};

use crate::sync::{AtomicUsize, Ordering};

/// An eventcount plus the tasks waiting on the same condition.
pub struct Event {
    ec: EventCount,
    /// How many tasks are listed (read by every notify, so it shares the
    /// eventcount's line).
    tasks: AtomicUsize,
    list: Mutex<Vec<(u64, Waker)>>,
    /// Threads in the spin phase of a wait on this event. On its own line:
    /// waiters change it, and notifiers must not miss on it.
    spinning: CachePadded<AtomicUsize>,
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
            spinning: CachePadded::new(AtomicUsize::new(0)),
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

    /// Waits for `cond` as `strategy` says ([`WaitStrategy::wait_phased`]),
    /// except that a thread spins only while fewer threads spin on this
    /// event than the process has CPUs. Past that, spinning mostly takes
    /// CPU time from the thread that would make `cond` true: four
    /// producers on a full `bounded(1)` and its consumer, all on one CPU,
    /// took 9.5 s for 200,000 messages with every producer spinning, and
    /// 0.05-0.1 s with one (crossbeam-channel: 3.0 s). The others go
    /// straight to yielding, then parking. (One spinner per CPU less one
    /// cost the two-CPU MPMC rows up to 1.5x.) Busy-poll strategies, which
    /// never park, are not limited.
    ///
    /// The CPU count is read once, by the first thread that waits; if that
    /// thread is pinned to fewer CPUs than the process may use, the limit
    /// is lower than it should be.
    pub fn wait_phased<R>(
        &self,
        strategy: &WaitStrategy,
        deadline: Option<Instant>,
        step: Option<Duration>,
        mut cond: impl FnMut(Phase) -> Option<R>,
    ) -> Result<R, TimedOut> {
        // A strategy that never parks asked to spin: it is not limited.
        if cfg!(shmlane_loom) || strategy.spin() == 0 || !strategy.parks() {
            return strategy.wait_phased(&self.ec, deadline, step, cond);
        }
        // Relaxed: a count for a heuristic; it orders nothing.
        if self.spinning.fetch_add(1, Ordering::Relaxed) >= spinners_allowed() {
            self.spinning.fetch_sub(1, Ordering::Relaxed);
            return strategy
                .with_spin(0)
                .wait_phased(&self.ec, deadline, step, cond);
        }
        // Counted until the first check after the spin phase (or a return
        // or unwind from it).
        let mut counted = Spinning(Some(&self.spinning));
        strategy.wait_phased(&self.ec, deadline, step, |phase| {
            if phase != Phase::Spin {
                counted.end();
            }
            cond(phase)
        })
    }

    /// Parked threads and listed tasks (a diagnostic, for tests).
    pub fn waiters(&self) -> u32 {
        // Relaxed: a snapshot.
        let tasks = self.tasks.load(Ordering::Relaxed) as u32;
        self.ec.waiters() + tasks
    }
}

/// A thread counted in [`Event`]'s `spinning` until `end` or drop.
struct Spinning<'a>(Option<&'a AtomicUsize>);

impl Spinning<'_> {
    fn end(&mut self) {
        if let Some(count) = self.0.take() {
            // Relaxed: see `Event::wait_phased`.
            count.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Spinning<'_> {
    fn drop(&mut self) {
        self.end();
    }
}

/// How many threads may spin on one event at once: one per CPU this
/// process may run on.
fn spinners_allowed() -> usize {
    static ALLOWED: OnceLock<usize> = OnceLock::new();
    *ALLOWED.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
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

#[cfg(all(test, not(shmlane_loom)))]
mod tests {
    use super::*;

    #[test]
    fn spinners_are_counted_out_on_every_way_out_of_a_wait() {
        let event = Event::new();
        let strategy = WaitStrategy::default().with_yields(1);
        // Met while spinning.
        assert_eq!(event.wait_phased(&strategy, None, None, |_| Some(1)), Ok(1));
        // Met after the spin phase.
        let r = event.wait_phased(&strategy, None, None, |p| (p != Phase::Spin).then_some(2));
        assert_eq!(r, Ok(2));
        // Timed out.
        let past = Instant::now();
        assert_eq!(
            event.wait_phased(&strategy, Some(past), None, |_| None::<()>),
            Err(TimedOut)
        );
        // Unwound from the check while spinning.
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = event.wait_phased(&strategy, None, None, |_| -> Option<()> {
                panic!("check failed")
            });
        }));
        assert!(unwound.is_err());
        assert_eq!(event.spinning.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_waiter_past_the_spinner_limit_still_gets_its_condition() {
        let event = Event::new();
        event.spinning.store(spinners_allowed(), Ordering::Relaxed);
        let mut checks = 0;
        let r = event.wait_phased(&WaitStrategy::default(), None, None, |p| {
            checks += 1;
            // It never spins: its first check comes after a yield.
            assert_ne!(p, Phase::Spin);
            (checks == 3).then_some(())
        });
        assert_eq!(r, Ok(()));
        assert_eq!(event.spinning.load(Ordering::Relaxed), spinners_allowed());
    }
}
