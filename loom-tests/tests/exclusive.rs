//! Loom models of the biased handle lock (`shmlane_semaphore::exclusive`):
//! the owner's fast path (plain stores and the light fence) and another
//! thread's revocation (the heavy fence, then a compare-and-swap holder)
//! never let two threads in at once, and nothing done inside is lost.
//! Under loom both fences are SeqCst fences, as in a process without
//! membarrier.
//!
//! Shown by mutation, each failing the first model ("two threads inside"):
//! the owner's `revoking` check removed (the fast path taken whatever the
//! revoker says), or the revoker's fences removed (its `revoking` store and
//! the owner's `busy` store then pass each other). Both models pass at
//! `LOOM_MAX_PREEMPTIONS=3`. The `try_lock` model fails ("two threads
//! inside") when a try that gave up on the revocation keeps the lock
//! anyway.

#![cfg(shmlane_loom)]

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use shmlane_semaphore::exclusive::Exclusive;

/// How many threads are inside, checked on the way in, and a count of
/// critical sections, kept in the locked value (a plain integer: a lost
/// update shows as a wrong total).
struct Shared {
    lock: Exclusive<u64>,
    inside: AtomicUsize,
}

fn enter(shared: &Shared) {
    let mut value = shared.lock.lock();
    // Relaxed: the lock orders the critical sections; this only counts.
    assert_eq!(
        shared.inside.fetch_add(1, Ordering::Relaxed),
        0,
        "two threads inside the lock"
    );
    *value += 1;
    shared.inside.fetch_sub(1, Ordering::Relaxed);
}

/// As [`enter`], through `try_lock`: whether it got in.
fn try_enter(shared: &Shared) -> bool {
    let Some(mut value) = shared.lock.try_lock() else {
        return false;
    };
    // Relaxed: as in `enter`.
    assert_eq!(
        shared.inside.fetch_add(1, Ordering::Relaxed),
        0,
        "two threads inside the lock"
    );
    *value += 1;
    shared.inside.fetch_sub(1, Ordering::Relaxed);
    true
}

/// A thread that only tries (an async poll, a `try_recv`) while the owner
/// goes on: a try that gives up mid-revocation (the owner inside) leaves
/// the lock consistent, the owner steps back to the shared path, and a
/// later try or lock finishes the revocation; never two inside, nothing
/// lost.
#[test]
fn a_thread_that_only_tries_and_the_owner_are_never_inside_together() {
    loom::model(|| {
        let shared = Arc::new(Shared {
            lock: Exclusive::new(0),
            inside: AtomicUsize::new(0),
        });
        enter(&shared);
        let other = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || u64::from(try_enter(&shared)) + u64::from(try_enter(&shared)))
        };
        enter(&shared);
        enter(&shared);
        let tried = other.join().unwrap();
        assert_eq!(*shared.lock.lock(), 3 + tried);
    });
}

/// The owner (the thread that used the lock first) goes on using it while
/// a second thread revokes the bias and takes it.
#[test]
fn a_revoker_and_the_owner_are_never_inside_together() {
    loom::model(|| {
        let shared = Arc::new(Shared {
            lock: Exclusive::new(0),
            inside: AtomicUsize::new(0),
        });
        // The model's main thread takes the bias.
        enter(&shared);
        let other = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || enter(&shared))
        };
        enter(&shared);
        other.join().unwrap();
        assert_eq!(*shared.lock.lock(), 3);
    });
}

/// Two threads that are not the owner take turns after the bias is gone,
/// while the owner comes back once more.
#[test]
fn after_a_revocation_every_thread_takes_turns() {
    loom::model(|| {
        let shared = Arc::new(Shared {
            lock: Exclusive::new(0),
            inside: AtomicUsize::new(0),
        });
        enter(&shared);
        let others: Vec<_> = (0..2)
            .map(|_| {
                let shared = Arc::clone(&shared);
                thread::spawn(move || enter(&shared))
            })
            .collect();
        for t in others {
            t.join().unwrap();
        }
        enter(&shared);
        assert_eq!(*shared.lock.lock(), 4);
    });
}
