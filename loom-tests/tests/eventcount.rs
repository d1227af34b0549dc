//! Loom models of the eventcount: no lost wakeup.

#![cfg(shmlane_loom)]

use loom::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use loom::sync::Arc;
use loom::thread;
use shmlane_semaphore::{EventCount, WaitStrategy};
use std::time::Instant;

#[test]
fn a_notify_after_the_condition_always_wakes_the_waiter() {
    loom::model(|| {
        let shared = Arc::new((EventCount::new(), AtomicBool::new(false)));
        let notifier = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || {
                shared.1.store(true, Ordering::Release);
                shared.0.notify_one();
            })
        };
        // A lost wakeup parks this thread forever: loom reports a deadlock.
        let (ec, flag) = &*shared;
        WaitStrategy::default()
            .wait(ec, None, || flag.load(Ordering::Acquire).then_some(()))
            .unwrap();
        notifier.join().unwrap();
    });
}

#[test]
fn two_waiters_two_notify_ones() {
    loom::model(|| {
        let shared = Arc::new((EventCount::new(), AtomicU32::new(0)));
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let shared = Arc::clone(&shared);
                thread::spawn(move || {
                    let (ec, tokens) = &*shared;
                    ec.wait_until(None, || take_token(tokens)).unwrap();
                })
            })
            .collect();
        for _ in 0..2 {
            shared.1.fetch_add(1, Ordering::Release);
            shared.0.notify_one();
        }
        for w in waiters {
            w.join().unwrap();
        }
    });
}

/// Takes one token if any is left. A failed CAS retries with the fresh
/// value: giving up on a stale read would sleep while a token is there.
fn take_token(tokens: &AtomicU32) -> Option<()> {
    let mut t = tokens.load(Ordering::Acquire);
    while t > 0 {
        match tokens.compare_exchange_weak(t, t - 1, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Some(()),
            Err(current) => t = current,
        }
    }
    None
}

/// A waiter whose deadline has passed races a notifier: it announces
/// itself (counted in its process's tally), re-checks, times out and
/// withdraws, just as the notifier sets the condition and wakes one
/// waiter. A second, patient waiter must still be woken (the timed-out
/// waiter never spends the wakeup: it never sleeps), and afterwards no
/// announcement is left: `waiters() == 0` and the tally is back to 0.
///
/// Deadlines are real time, which loom does not model (its futex model
/// ignores timeouts), so the waiter's deadline is already past: it takes
/// the time-out path on its first check after announcing. Before the
/// rewrite there was no tally; the announcement itself was withdrawn the
/// same way.
#[test]
fn a_waiter_that_times_out_as_it_is_woken_leaves_no_announcement() {
    loom::model(|| {
        let shared = Arc::new((EventCount::new(), AtomicBool::new(false), AtomicU32::new(0)));
        let hasty = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || {
                let (ec, flag, tally) = &*shared;
                let past = Instant::now();
                ec.wait_tallied(Some(past), None, Some(tally), &mut || {
                    flag.load(Ordering::Acquire).then_some(())
                })
            })
        };
        let patient = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || {
                let (ec, flag, tally) = &*shared;
                // A lost wakeup parks this thread for ever: a loom deadlock.
                ec.wait_tallied(None, None, Some(tally), &mut || {
                    flag.load(Ordering::Acquire).then_some(())
                })
            })
        };
        let (ec, flag, tally) = &*shared;
        // Release: pairs with the waiters' Acquire loads.
        flag.store(true, Ordering::Release);
        ec.notify_one();
        // Either outcome is right for the hasty waiter; what matters is
        // what it leaves behind.
        let _ = hasty.join().unwrap();
        assert_eq!(patient.join().unwrap(), Ok(()));
        assert_eq!(ec.waiters(), 0, "an announcement leaked");
        // Relaxed: both waiters are joined.
        assert_eq!(tally.load(Ordering::Relaxed), 0, "the tally leaked");
    });
}

/// A waiter announced through its tally, then "died" (it is stuck inside
/// its condition check, announced, standing for a process killed while
/// parked). A reaper takes its announcements back with `forget_waiters`
/// (the tally's value, once): a live waiter's wakeup is not lost to the
/// forgetting, and a notify after it is harmless. At
/// the end the stuck waiter is let go (standing for a process taken for
/// dead that was not): its own withdrawal saturates at 0 instead of
/// wrapping.
///
/// Before the rewrite a withdrawal was a plain `fetch_sub`, which wraps
/// to `u32::MAX` here, so every later notify made a wake system call.
/// Shown by mutation: with `Key::drop` a plain `fetch_sub` this model
/// fails (`waiters()` is `u32::MAX`).
#[test]
fn forgetting_a_dead_waiter_saturates_and_loses_no_wakeup() {
    loom::model(|| {
        // (eventcount, condition, stuck waiter announced, let it go, its tally)
        let shared = Arc::new((
            EventCount::new(),
            AtomicBool::new(false),
            AtomicBool::new(false),
            AtomicBool::new(false),
            AtomicU32::new(0),
        ));
        let stuck = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || {
                let (ec, _, announced, go, tally) = &*shared;
                let mut checks = 0;
                ec.wait_tallied(None, None, Some(tally), &mut || {
                    checks += 1;
                    if checks < 2 {
                        return None;
                    }
                    // The second check comes after the announcement.
                    // Release / Acquire: pair with the reaper.
                    announced.store(true, Ordering::Release);
                    while !go.load(Ordering::Acquire) {
                        thread::yield_now();
                    }
                    Some(())
                })
                .unwrap();
            })
        };
        let live = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || {
                let (ec, flag, ..) = &*shared;
                ec.wait_until(None, || flag.load(Ordering::Acquire).then_some(()))
                    .unwrap();
            })
        };
        let (ec, flag, announced, go, tally) = &*shared;
        // Acquire: pairs with the stuck waiter's Release; its tally is
        // counted by then.
        while !announced.load(Ordering::Acquire) {
            thread::yield_now();
        }
        // Relaxed: the Acquire above orders it after the increment.
        let n = tally.load(Ordering::Relaxed);
        assert_eq!(n, 1);
        ec.forget_waiters(n);
        assert!(ec.waiters() <= 1, "only the live waiter may be announced");
        // Release: pairs with the live waiter's Acquire.
        flag.store(true, Ordering::Release);
        ec.notify_one();
        live.join().unwrap();
        assert_eq!(ec.waiters(), 0);
        // Release: pairs with the stuck waiter's Acquire.
        go.store(true, Ordering::Release);
        stuck.join().unwrap();
        assert_eq!(ec.waiters(), 0, "a withdrawal after a forget wrapped");
        assert_eq!(tally.load(Ordering::Relaxed), 0);
    });
}
