//! Eventcount and wait strategy behaviour with real threads and futexes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use shmlane_semaphore::{EventCount, TimedOut, WaitStrategy};

#[test]
fn notify_without_waiters_makes_no_wake_call() {
    let ec = EventCount::new();
    for _ in 0..1000 {
        ec.notify_one();
        ec.notify_all();
    }
    assert_eq!(ec.wakeups(), 0);
    assert_eq!(ec.waiters(), 0);
}

#[test]
fn parked_waiter_is_woken() {
    let shared = Arc::new((EventCount::new(), AtomicBool::new(false)));
    let waiter = {
        let shared = Arc::clone(&shared);
        thread::spawn(move || {
            let (ec, flag) = &*shared;
            ec.wait_until(None, || flag.load(Ordering::Acquire).then_some(()))
        })
    };
    // Let the waiter park, then check it is announced and still waiting.
    while shared.0.waiters() == 0 {
        thread::sleep(Duration::from_millis(1));
    }
    assert!(!waiter.is_finished());
    shared.1.store(true, Ordering::Release);
    shared.0.notify_one();
    assert_eq!(waiter.join().unwrap(), Ok(()));
    assert_eq!(shared.0.wakeups(), 1);
    assert_eq!(shared.0.waiters(), 0);
}

#[test]
fn wait_times_out_at_the_deadline() {
    let ec = EventCount::new();
    for strategy in [WaitStrategy::default(), WaitStrategy::busy_poll()] {
        let start = Instant::now();
        let deadline = start + Duration::from_millis(30);
        let r: Result<(), _> = strategy.wait(&ec, Some(deadline), || None);
        assert_eq!(r, Err(TimedOut));
        assert!(Instant::now() >= deadline);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{strategy:?} overslept"
        );
    }
    // A deadline in the past still checks the condition once.
    let past = Instant::now() - Duration::from_millis(1);
    assert_eq!(ec.wait_until(Some(past), || Some(7)), Ok(7));
    assert_eq!(ec.waiters(), 0);
}

#[test]
fn stepped_wait_rechecks_without_a_wakeup() {
    let ec = EventCount::new();
    let start = Instant::now();
    let mut checks = 0;
    let r = ec.wait_in_steps(None, Some(Duration::from_millis(2)), &mut || {
        checks += 1;
        (start.elapsed() > Duration::from_millis(20)).then_some(checks)
    });
    assert!(r.unwrap() >= 3);
}

extern "C" fn ignore_signal(_: libc::c_int) {}

#[test]
fn signals_do_not_end_a_wait_early() {
    // SAFETY: installs a handler that does nothing, without SA_RESTART so
    // that the futex wait really returns EINTR.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = ignore_signal as extern "C" fn(libc::c_int) as usize;
        assert_eq!(
            libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()),
            0
        );
    }
    let shared = Arc::new((EventCount::new(), AtomicBool::new(false), AtomicU64::new(0)));
    let waiter = {
        let shared = Arc::clone(&shared);
        thread::spawn(move || {
            // SAFETY: pthread_self has no preconditions.
            shared
                .2
                .store(unsafe { libc::pthread_self() } as u64, Ordering::Release);
            let (ec, flag, _) = &*shared;
            let deadline = Instant::now() + Duration::from_secs(30);
            ec.wait_until(Some(deadline), || {
                flag.load(Ordering::Acquire).then_some(())
            })
        })
    };
    while shared.0.waiters() == 0 {
        thread::sleep(Duration::from_millis(1));
    }
    for _ in 0..20 {
        // SAFETY: the thread is alive (it waits until the flag is set below).
        let rc = unsafe {
            libc::pthread_kill(
                shared.2.load(Ordering::Acquire) as libc::pthread_t,
                libc::SIGUSR1,
            )
        };
        assert_eq!(rc, 0);
        thread::sleep(Duration::from_millis(2));
    }
    assert!(!waiter.is_finished(), "a signal ended the wait");
    shared.1.store(true, Ordering::Release);
    shared.0.notify_all();
    assert_eq!(waiter.join().unwrap(), Ok(()));
}

#[test]
fn no_lost_wakeups_under_contention() {
    // Producers bump a counter and notify; consumers wait for their share.
    const ROUNDS: u64 = 20_000;
    let shared = Arc::new((EventCount::new(), AtomicU64::new(0)));
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            let shared = Arc::clone(&shared);
            thread::spawn(move || {
                let strategy = WaitStrategy::default().with_spin(0).with_yields(0);
                let mut taken = 0;
                while taken < ROUNDS {
                    let (ec, count) = &*shared;
                    strategy.wait(ec, None, || take_token(count)).unwrap();
                    taken += 1;
                }
            })
        })
        .collect();
    for _ in 0..2 * ROUNDS {
        shared.1.fetch_add(1, Ordering::Release);
        shared.0.notify_one();
    }
    for c in consumers {
        c.join().unwrap();
    }
    assert_eq!(shared.1.load(Ordering::Relaxed), 0);
}

/// Takes one token if any is left, retrying a CAS that lost a race.
fn take_token(tokens: &AtomicU64) -> Option<()> {
    let mut t = tokens.load(Ordering::Acquire);
    while t > 0 {
        match tokens.compare_exchange_weak(t, t - 1, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Some(()),
            Err(current) => t = current,
        }
    }
    None
}
