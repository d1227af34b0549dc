//! The channels that only receive: [`after`](crate::after) (one message at
//! a time), [`tick`](crate::tick) (a message every period) and
//! [`never`](crate::never) (no message, ever).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{RecvTimeoutError, TryRecvError};
use crate::sync::{AtomicBool, Ordering};

/// Sleeps until `deadline`, or for ever.
pub(crate) fn sleep_until(deadline: Option<Instant>) {
    loop {
        match deadline {
            None => std::thread::sleep(Duration::from_secs(1000)),
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return;
                }
                std::thread::sleep(d - now);
            }
        }
    }
}

/// One message, delivered at a fixed time.
pub(crate) struct At {
    when: Instant,
    taken: AtomicBool,
}

impl At {
    pub(crate) fn new(when: Instant) -> Self {
        Self {
            when,
            taken: AtomicBool::new(false),
        }
    }

    /// When the message is due, unless it was taken.
    pub(crate) fn due(&self) -> Option<Instant> {
        // Relaxed: the flag guards nothing but itself.
        (!self.taken.load(Ordering::Relaxed)).then_some(self.when)
    }

    pub(crate) fn try_recv(&self) -> Result<Instant, TryRecvError> {
        // Relaxed: as in `due`.
        if Instant::now() >= self.when && !self.taken.swap(true, Ordering::Relaxed) {
            Ok(self.when)
        } else {
            Err(TryRecvError::Empty)
        }
    }

    pub(crate) fn recv(&self, deadline: Option<Instant>) -> Result<Instant, RecvTimeoutError> {
        match self.due() {
            Some(when) if deadline.is_none_or(|d| when <= d) => {
                sleep_until(Some(when));
                self.try_recv().map_err(|_| {
                    // Another receiver took it while we slept.
                    sleep_until(deadline);
                    RecvTimeoutError::Timeout
                })
            }
            _ => {
                sleep_until(deadline);
                Err(RecvTimeoutError::Timeout)
            }
        }
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.due().is_some_and(|w| Instant::now() >= w)
    }

    pub(crate) fn len(&self) -> usize {
        usize::from(self.is_ready())
    }
}

/// A message every period; periods missed while nobody received are not
/// made up for.
pub(crate) struct Tick {
    next: Mutex<Instant>,
    period: Duration,
}

impl Tick {
    pub(crate) fn new(period: Duration) -> Self {
        let now = Instant::now();
        Self {
            next: Mutex::new(
                now.checked_add(period)
                    .unwrap_or(now + Duration::from_secs(1 << 40)),
            ),
            period,
        }
    }

    fn next(&self) -> std::sync::MutexGuard<'_, Instant> {
        self.next.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When the next message is due.
    pub(crate) fn due(&self) -> Instant {
        *self.next()
    }

    fn after(&self, t: Instant) -> Instant {
        t.checked_add(self.period)
            .unwrap_or(t + Duration::from_secs(1 << 40))
    }

    pub(crate) fn try_recv(&self) -> Result<Instant, TryRecvError> {
        let now = Instant::now();
        let mut next = self.next();
        if now < *next {
            return Err(TryRecvError::Empty);
        }
        let due = *next;
        *next = self.after(now);
        Ok(due)
    }

    pub(crate) fn recv(&self, deadline: Option<Instant>) -> Result<Instant, RecvTimeoutError> {
        let due = {
            let mut next = self.next();
            let due = *next;
            if deadline.is_some_and(|d| d < due) {
                drop(next);
                sleep_until(deadline);
                return Err(RecvTimeoutError::Timeout);
            }
            *next = self.after(due.max(Instant::now()));
            due
        };
        sleep_until(Some(due));
        Ok(due)
    }

    pub(crate) fn is_ready(&self) -> bool {
        Instant::now() >= self.due()
    }
}
