//! A thread's waiting context: what a counterpart selects when it pairs
//! with a waiting operation (a rendezvous, or an arm of a select), and the
//! eventcount it wakes the thread through.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::event::Event;
use crate::sync::SAFETY_STEP;

/// Nobody has selected the context yet.
pub(crate) const WAITING: usize = 0;
/// Its owner gave up (a timeout, or it found another operation ready).
pub(crate) const ABORTED: usize = 1;
/// A channel it waits on was disconnected: look again.
pub(crate) const DISCONNECTED: usize = 2;
/// Operation `i` of the waiting thread is `FIRST_OPER + i`.
pub(crate) const FIRST_OPER: usize = 3;

/// The source of context ids.
static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

pub struct Context {
    select: AtomicUsize,
    /// Notified once the context is selected (a parked thread, or the
    /// task of an async rendezvous send listed there).
    pub(crate) wake: Event,
    id: usize,
}

thread_local! {
    /// The thread's context while it is not in use.
    static CONTEXT: Cell<Option<Arc<Context>>> = const { Cell::new(None) };
}

impl Context {
    /// A fresh context (a thread's, or one async operation's).
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            select: AtomicUsize::new(WAITING),
            wake: Event::new(),
            // Relaxed: a unique number, nothing more.
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Runs `f` with this thread's context, reset to [`WAITING`]. (A fresh
    /// one where the thread-local is gone, as in a thread-local's
    /// destructor.)
    pub(crate) fn with<R>(f: impl FnOnce(&Arc<Context>) -> R) -> R {
        let cx = CONTEXT
            .try_with(Cell::take)
            .ok()
            .flatten()
            .unwrap_or_else(Self::new);
        cx.reset();
        let r = f(&cx);
        let _ = CONTEXT.try_with(|c| c.set(Some(cx)));
        r
    }

    /// Who owns the context: a counterpart never pairs with its own
    /// thread's operations.
    pub(crate) fn id(&self) -> usize {
        self.id
    }

    fn reset(&self) {
        // Relaxed: only the owner stores WAITING, while no channel lists
        // the context.
        self.select.store(WAITING, Ordering::Relaxed);
    }

    /// Selects the context for `sel`, if nobody has yet.
    pub(crate) fn try_select(&self, sel: usize) -> bool {
        // AcqRel: the winner's claim orders what it writes for the owner
        // (a packet) after the owner's registration; Acquire on failure.
        self.select
            .compare_exchange(WAITING, sel, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// What the context was selected for ([`WAITING`] if not yet).
    pub(crate) fn selected(&self) -> usize {
        // Acquire: pairs with `try_select`.
        self.select.load(Ordering::Acquire)
    }

    /// Wakes the owner after selecting its context.
    pub(crate) fn unpark(&self) {
        self.wake.notify_all_local();
    }

    /// Waits until the context is selected or `deadline` passes; then
    /// makes sure it is selected, for [`ABORTED`] if nobody else did.
    /// Returns the selection.
    pub(crate) fn wait_until(&self, deadline: Option<Instant>) -> usize {
        // A partner usually comes within microseconds: spin 1, 2, 4... 32
        // pause hints, then yield, a few times before parking (which costs
        // a barrier and two system calls).
        let mut step = 0;
        while step < 10 {
            match self.selected() {
                WAITING => crate::sync::backoff(&mut step),
                sel => return sel,
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
        }
        // In steps: a lost wakeup costs one step, never a hang (see
        // `SAFETY_STEP`).
        let sel = self
            .wake
            .wait_in_steps(deadline, SAFETY_STEP, &mut || match self.selected() {
                WAITING => None,
                sel => Some(sel),
            })
            .unwrap_or(WAITING);
        if sel != WAITING {
            return sel;
        }
        if self.try_select(ABORTED) {
            ABORTED
        } else {
            self.selected()
        }
    }
}

/// A cheap per-thread pseudo-random number in `0..n` (xorshift), for the
/// fair order; 0 for `n` 0.
pub(crate) fn random(n: usize) -> usize {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u32> = const { Cell::new(0) };
    }
    let x = STATE
        .try_with(|s| {
            let mut x = s.get();
            if x == 0 {
                // Seeded from a stack address and the clock.
                let seed = &x as *const u32 as usize as u64
                    ^ Instant::now().elapsed().as_nanos() as u64
                    ^ std::process::id() as u64;
                x = (seed as u32 ^ (seed >> 32) as u32) | 1;
            }
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            s.set(x);
            x
        })
        .unwrap_or(1);
    // Into 0..n by a multiply and a shift (no division: a select shuffles
    // with one of these per operation). n is a count of operations, far
    // below 2^32.
    ((u64::from(x) * n as u64) >> 32) as usize
}
