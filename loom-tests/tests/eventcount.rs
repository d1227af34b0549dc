//! Loom models of the eventcount: no lost wakeup.

#![cfg(shmlane_loom)]

use loom::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use loom::sync::Arc;
use loom::thread;
use shmlane_semaphore::{EventCount, WaitStrategy};

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
