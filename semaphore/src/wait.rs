//! How a blocked side waits: spin, then yield, then park on an eventcount.

use std::time::{Duration, Instant};

use crate::eventcount::{EventCount, TimedOut};
use crate::sync::{spin_loop, yield_now};

/// How a blocked sender or receiver waits for the other side.
///
/// First it spins, re-checking the condition with exponentially more CPU
/// pause hints between checks (up to 64), `spin` times; then it gives the
/// CPU away with `sched_yield`, `yields` times; then it parks on the
/// eventcount until woken or until the deadline. The busy-poll strategy
/// never parks: after its spins it keeps yielding, so a waiter stays
/// runnable (lowest latency) yet never holds a core another thread needs.
///
/// # Examples
///
/// ```
/// use shmlane_semaphore::WaitStrategy;
///
/// let low_latency = WaitStrategy::busy_poll();
/// let frugal = WaitStrategy::default().with_spin(0).with_yields(0);
/// assert!(!low_latency.parks() && frugal.parks());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WaitStrategy {
    spin: u32,
    yields: u32,
    park: bool,
}

impl Default for WaitStrategy {
    fn default() -> Self {
        Self::new()
    }
}

impl WaitStrategy {
    /// Spin (about 2-10 us on current CPUs), yield a few times, then park.
    pub const fn new() -> Self {
        Self {
            spin: 16,
            yields: 8,
            park: true,
        }
    }

    /// Spin, then yield for as long as it takes: never sleeps in the kernel.
    pub const fn busy_poll() -> Self {
        Self {
            spin: 64,
            yields: u32::MAX,
            park: false,
        }
    }

    /// Sets how many spinning re-checks come before yielding.
    pub const fn with_spin(mut self, spin: u32) -> Self {
        self.spin = spin;
        self
    }

    /// Sets how many yielding re-checks come before parking.
    pub const fn with_yields(mut self, yields: u32) -> Self {
        self.yields = yields;
        self
    }

    /// The number of spinning re-checks.
    pub const fn spin(&self) -> u32 {
        self.spin
    }

    /// The number of yielding re-checks (`u32::MAX` for busy-poll).
    pub const fn yields(&self) -> u32 {
        self.yields
    }

    /// Whether the waiter ever parks in the kernel.
    pub const fn parks(&self) -> bool {
        self.park
    }

    /// Waits until `cond` returns `Some`, or until `deadline`.
    ///
    /// `cond` is the whole check: it may also report a disconnect or any
    /// other reason to stop. The side that makes it true must call
    /// [`EventCount::notify_one`] or [`EventCount::notify_all`] on `ec`.
    ///
    /// # Errors
    ///
    /// [`TimedOut`] when the deadline passed first.
    pub fn wait<R>(
        &self,
        ec: &EventCount,
        deadline: Option<Instant>,
        cond: impl FnMut() -> Option<R>,
    ) -> Result<R, TimedOut> {
        self.wait_in_steps(ec, deadline, None, cond)
    }

    /// As [`wait`](Self::wait), but a parked waiter wakes at least every
    /// `step` to re-check `cond` (for events that send no wakeup).
    ///
    /// # Errors
    ///
    /// [`TimedOut`] when the deadline passed first.
    pub fn wait_in_steps<R>(
        &self,
        ec: &EventCount,
        deadline: Option<Instant>,
        step: Option<Duration>,
        mut cond: impl FnMut() -> Option<R>,
    ) -> Result<R, TimedOut> {
        // Under loom the spin and yield phases add nothing but states:
        // they only re-run the same check.
        if !cfg!(shmlane_loom) {
            for i in 0..self.spin {
                if let Some(r) = cond() {
                    return Ok(r);
                }
                for _ in 0..1u32 << i.min(6) {
                    spin_loop();
                }
            }
            let mut i = 0;
            while i < self.yields || !self.park {
                if let Some(r) = cond() {
                    return Ok(r);
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return cond().ok_or(TimedOut);
                }
                yield_now();
                i = i.saturating_add(1);
            }
        }
        ec.wait_in_steps(deadline, step, &mut cond)
    }
}
