//! Loom models of the in-process channels' async wakeups
//! (`shmlane::__loom`, the code `recv_async`/`send_async` run): a task
//! that lists itself on an event and a thread that makes the condition
//! true and notifies never miss each other (the task's listing and
//! barrier against the notifier's barrier and count), and a task woken
//! and then dropped unpolled (a future that lost a `select!`) passes the
//! wakeup on. A lost wakeup shows as a loom deadlock: `block_on` never
//! returns. Under loom both barriers are SeqCst fences.
//!
//! Shown by mutation, at `LOOM_MAX_PREEMPTIONS=2`: without the task's
//! re-check after it lists itself, the first model deadlocks; without the
//! waiter's barrier (`waiter_barrier`), both do; without the pass-on in
//! `TaskWait::release`, the second does.

#![cfg(shmlane_loom)]

use std::future::poll_fn;
use std::task::{Context, Waker};

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use shmlane::__loom::{Event, TaskWait};
use shmlane::WaitStrategy;

/// Lists at once (no spin), as a waiting future does after its spin.
fn no_spin() -> WaitStrategy {
    WaitStrategy::new().with_spin(0)
}

/// Takes one token if there is one.
fn take(tokens: &AtomicUsize) -> Option<()> {
    // Relaxed: the event's barriers order the token with the listing.
    tokens
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .ok()
        .map(drop)
}

#[test]
fn a_listed_task_is_woken_by_the_notifier() {
    loom::model(|| {
        let ev = Arc::new(Event::new());
        let ready = Arc::new(AtomicBool::new(false));
        let notifier = {
            let (ev, ready) = (Arc::clone(&ev), Arc::clone(&ready));
            thread::spawn(move || {
                // Relaxed: ordered by the notify's barrier.
                ready.store(true, Ordering::Relaxed);
                ev.notify_one_local();
            })
        };
        let mut wait = TaskWait::new(&no_spin());
        loom::future::block_on(poll_fn(|cx| {
            wait.poll(&ev, cx, false, || {
                ready.load(Ordering::Relaxed).then_some(())
            })
            .0
        }));
        wait.release(&ev);
        notifier.join().unwrap();
        assert_eq!(ev.waiters(), 0, "nothing left listed");
    });
}

#[test]
fn a_woken_task_dropped_unpolled_passes_the_wakeup_on() {
    loom::model(|| {
        let ev = Arc::new(Event::new());
        let tokens = Arc::new(AtomicUsize::new(0));
        // A lists first (the oldest listing: a notify_one picks it), with
        // a waker that does nothing, and is dropped below without being
        // polled again, whether or not the notify picked it.
        let mut loser = TaskWait::new(&no_spin());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(loser
            .poll(&ev, &mut cx, false, || take(&tokens))
            .0
            .is_pending());
        // B must get the one token.
        let winner = {
            let (ev, tokens) = (Arc::clone(&ev), Arc::clone(&tokens));
            thread::spawn(move || {
                let mut wait = TaskWait::new(&no_spin());
                loom::future::block_on(poll_fn(|cx| wait.poll(&ev, cx, false, || take(&tokens)).0));
                wait.release(&ev);
            })
        };
        let producer = {
            let (ev, tokens) = (Arc::clone(&ev), Arc::clone(&tokens));
            thread::spawn(move || {
                tokens.fetch_add(1, Ordering::Relaxed);
                ev.notify_one_local();
            })
        };
        loser.release(&ev);
        winner.join().unwrap();
        producer.join().unwrap();
        assert_eq!(tokens.load(Ordering::Relaxed), 0);
        assert_eq!(ev.waiters(), 0, "nothing left listed");
    });
}
