//! How a blocked side waits: spin, then yield, then park on an eventcount.

use std::time::{Duration, Instant};

use crate::eventcount::{EventCount, TimedOut};
use crate::sync::{spin_loop, yield_now, AtomicU32};

/// Where a waiter is when it re-checks its condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Spinning: checks come tens of nanoseconds apart; keep them cheap.
    Spin,
    /// Just gave the CPU away (or busy-polling between spin rounds).
    Yield,
    /// Woken from the kernel (or a step of a stepped wait ended).
    Park,
}

/// How a blocked sender or receiver waits for the other side.
///
/// First it spins: `spin` re-checks with CPU pause hints between them
/// (one each by default; `with_max_pause` lets the gap double up to a cap;
/// on the order of 10-40 us in all). Then it gives the CPU away with
/// `sched_yield`, `yields` times. Then it parks on the eventcount until
/// woken or until the deadline. Busy-poll never parks: it spins `spin`
/// checks, yields once, and starts over, so it answers within a pause hint
/// yet never holds a core that another runnable thread needs for long.
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
    /// Pause hints between two checks grow 1, 2, 4... up to this.
    max_pause: u32,
}

impl Default for WaitStrategy {
    fn default() -> Self {
        Self::new()
    }
}

/// Spin checks between two looks at the clock (deadline checks).
const CLOCK_EVERY: u32 = 64;

impl WaitStrategy {
    /// Spin 512 checks one pause apart, yield 8 times, then park. (Backing
    /// off between checks, `with_max_pause`, cost latency here and bought
    /// no throughput in the benches.)
    pub const fn new() -> Self {
        Self {
            spin: 512,
            yields: 8,
            park: true,
            max_pause: 1,
        }
    }

    /// Spin 256 checks one pause apart, yield once, spin again...: never
    /// sleeps in the kernel.
    pub const fn busy_poll() -> Self {
        Self {
            spin: 256,
            yields: 0,
            park: false,
            max_pause: 1,
        }
    }

    /// Sets how many spinning re-checks come before yielding.
    ///
    /// A spinning check may be a cheap one: a `shmlane` receive of a
    /// plain-old-data message from an SPSC ring looks only at the slot the
    /// next message arrives in, and notices that every sender left (or a
    /// broken segment) at the first check after the spin, one spin round
    /// later at most. Keep `spin` in the hundreds or thousands, not near
    /// `u32::MAX`, where a receive without a deadline must notice that
    /// soon.
    pub const fn with_spin(mut self, spin: u32) -> Self {
        self.spin = spin;
        self
    }

    /// Sets the most CPU pause hints between two spinning checks (they
    /// start at one and double): fewer means quicker to notice, more means
    /// less traffic on the cache line both sides touch.
    pub const fn with_max_pause(mut self, pauses: u32) -> Self {
        self.max_pause = pauses;
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

    /// The number of yielding re-checks before parking.
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
        mut cond: impl FnMut() -> Option<R>,
    ) -> Result<R, TimedOut> {
        self.wait_phased(ec, deadline, None, |_| cond())
    }

    /// As [`wait`](Self::wait), but a parked waiter wakes at least every
    /// `step` to re-check (for events that send no wakeup, such as a peer
    /// process dying), and `cond` learns which [`Phase`] it is called in, so
    /// that it can keep expensive checks out of the spin.
    ///
    /// # Errors
    ///
    /// [`TimedOut`] when the deadline passed first.
    pub fn wait_phased<R>(
        &self,
        ec: &EventCount,
        deadline: Option<Instant>,
        step: Option<Duration>,
        cond: impl FnMut(Phase) -> Option<R>,
    ) -> Result<R, TimedOut> {
        self.wait_tallied(ec, deadline, step, None, cond)
    }

    /// As [`wait_phased`](Self::wait_phased), counting the parked waiter in
    /// `tally` too (see [`EventCount::wait_tallied`]).
    ///
    /// # Errors
    ///
    /// [`TimedOut`] when the deadline passed first.
    pub fn wait_tallied<R>(
        &self,
        ec: &EventCount,
        deadline: Option<Instant>,
        step: Option<Duration>,
        tally: Option<&AtomicU32>,
        mut cond: impl FnMut(Phase) -> Option<R>,
    ) -> Result<R, TimedOut> {
        let past = |d: Option<Instant>| d.is_some_and(|d| Instant::now() >= d);
        // Under loom the spin and yield phases add nothing but states:
        // they only re-run the same check.
        if !cfg!(shmlane_loom) {
            loop {
                let mut pause = 1;
                for i in 1..=self.spin {
                    if let Some(r) = cond(Phase::Spin) {
                        return Ok(r);
                    }
                    if i % CLOCK_EVERY == 0 && past(deadline) {
                        // The last look before giving up is a thorough one.
                        return cond(Phase::Yield).ok_or(TimedOut);
                    }
                    for _ in 0..pause {
                        spin_loop();
                    }
                    pause = (pause * 2).min(self.max_pause.max(1));
                }
                if self.park {
                    break;
                }
                // Busy-poll: one yield per spin round, then spin again.
                yield_now();
                if let Some(r) = cond(Phase::Yield) {
                    return Ok(r);
                }
                if past(deadline) {
                    return cond(Phase::Yield).ok_or(TimedOut);
                }
            }
            for _ in 0..self.yields {
                yield_now();
                if let Some(r) = cond(Phase::Yield) {
                    return Ok(r);
                }
                if past(deadline) {
                    return cond(Phase::Yield).ok_or(TimedOut);
                }
            }
        }
        ec.wait_tallied(deadline, step, tally, &mut || cond(Phase::Park))
    }
}
