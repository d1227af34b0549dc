//! shmlane-specific channel behaviour beyond the crossbeam compatibility
//! suite: rendezvous and unbounded details, odd message types, and stress
//! with drops.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use shmlane::{bounded, bounded_with, RecvTimeoutError, TrySendError, WaitStrategy};

#[test]
fn capacity_zero_is_a_rendezvous() {
    let (s, r) = bounded::<u8>(0);
    assert_eq!(s.capacity(), Some(0));
    // Nobody receives: a send cannot complete, so it times out with the
    // message handed back.
    assert_eq!(
        s.send_timeout(7, Duration::from_millis(1)),
        Err(shmlane::SendTimeoutError::Timeout(7))
    );
    assert_eq!(s.try_send(7), Err(TrySendError::Full(7)));
    let t = thread::spawn(move || r.recv());
    s.send(8).unwrap();
    assert_eq!(t.join().unwrap(), Ok(8));
    // The receiver is gone.
    assert_eq!(s.try_send(9), Err(TrySendError::Disconnected(9)));
}

#[test]
#[should_panic(expected = "exceeds the maximum")]
fn absurd_capacity_panics_with_a_clear_message() {
    let _ = bounded::<u8>(usize::MAX);
}

#[test]
fn zero_sized_messages() {
    let (s, r) = bounded(3);
    for _ in 0..3 {
        s.send(()).unwrap();
    }
    assert_eq!(s.try_send(()), Err(TrySendError::Full(())));
    assert_eq!(r.try_iter().count(), 3);
}

#[test]
fn over_aligned_and_large_messages() {
    #[repr(align(256))]
    #[derive(Clone, Copy, PartialEq, Debug)]
    struct Aligned(u64);
    let (s, r) = bounded(3);
    for i in 0..10 {
        s.send(Aligned(i)).unwrap();
        let got = r.recv().unwrap();
        assert_eq!(got, Aligned(i));
    }
    let (s, r) = bounded(2);
    s.send([7u8; 4096]).unwrap();
    assert_eq!(r.recv().unwrap(), [7u8; 4096]);
}

#[test]
fn boxed_and_heap_messages_survive_the_ring() {
    let (s, r) = bounded(4);
    let producer = thread::spawn(move || {
        for i in 0..1000 {
            s.send(vec![i; i % 17]).unwrap();
        }
    });
    for i in 0..1000 {
        assert_eq!(r.recv().unwrap(), vec![i; i % 17]);
    }
    producer.join().unwrap();
}

#[test]
fn every_wait_strategy_delivers() {
    for strategy in [
        WaitStrategy::default(),
        WaitStrategy::busy_poll(),
        WaitStrategy::default().with_spin(0).with_yields(0),
    ] {
        let (s, r) = bounded_with(2, strategy);
        let producer = thread::spawn(move || {
            for i in 0..20_000u64 {
                s.send(i).unwrap();
            }
        });
        let sum: u64 = r.iter().sum();
        assert_eq!(sum, 20_000 * 19_999 / 2, "{strategy:?}");
        producer.join().unwrap();
    }
}

#[test]
fn drops_exactly_once_when_handles_vanish_mid_stream() {
    static LIVE: AtomicUsize = AtomicUsize::new(0);
    struct Tracked;
    impl Tracked {
        fn new() -> Self {
            LIVE.fetch_add(1, Ordering::SeqCst);
            Tracked
        }
    }
    impl Drop for Tracked {
        fn drop(&mut self) {
            LIVE.fetch_sub(1, Ordering::SeqCst);
        }
    }
    for round in 0..20 {
        let (s, r) = bounded(5);
        thread::scope(|scope| {
            for _ in 0..3 {
                let s = s.clone();
                scope.spawn(move || {
                    // Senders stop when the receivers are gone; the refused
                    // message comes back and is dropped here.
                    while s
                        .send_timeout(Tracked::new(), Duration::from_secs(10))
                        .is_ok()
                    {}
                });
            }
            drop(s);
            for _ in 0..2 {
                let r = r.clone();
                scope.spawn(move || {
                    for _ in 0..(100 + round * 10) {
                        match r.recv_timeout(Duration::from_secs(10)) {
                            Ok(msg) => drop(msg),
                            Err(RecvTimeoutError::Disconnected) => break,
                            Err(RecvTimeoutError::Timeout) => panic!("stalled"),
                        }
                    }
                });
            }
            drop(r);
        });
        // Every handle is gone: nothing may be left alive or dropped twice.
        assert_eq!(LIVE.load(Ordering::SeqCst), 0, "round {round}");
    }
}

#[test]
fn stress_more_threads_than_cores_with_timeouts() {
    const THREADS: usize = 8;
    const PER: usize = 5_000;
    let (s, r) = bounded::<usize>(3);
    let total = AtomicUsize::new(0);
    thread::scope(|scope| {
        for t in 0..THREADS {
            let s = s.clone();
            scope.spawn(move || {
                for i in 0..PER {
                    let mut msg = t * PER + i;
                    loop {
                        match s.send_timeout(msg, Duration::from_micros(50)) {
                            Ok(()) => break,
                            Err(e) if e.is_timeout() => msg = e.into_inner(),
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            });
        }
        drop(s);
        for _ in 0..THREADS {
            let (r, total) = (r.clone(), &total);
            scope.spawn(move || loop {
                match r.recv_timeout(Duration::from_micros(50)) {
                    Ok(v) => {
                        total.fetch_add(v, Ordering::Relaxed);
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            });
        }
    });
    let n = THREADS * PER;
    assert_eq!(total.load(Ordering::Relaxed), n * (n - 1) / 2);
}

#[test]
fn a_selected_operation_dropped_unfinished_panics_and_publishes_nothing() {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    // A bounded channel: the select reserved a slot for the send; dropping
    // the operation must not publish that (uninitialised) slot.
    let (s, r) = bounded::<String>(2);
    let dropped = catch_unwind(AssertUnwindSafe(|| {
        let mut sel = shmlane::Select::new();
        sel.send(&s);
        let oper = sel.select();
        drop(oper);
    }));
    assert!(dropped.is_err(), "dropping an unfinished operation panics");
    s.send("after".to_string()).unwrap();
    // The cancelled slot is skipped: the only message is the real one.
    assert_eq!(r.try_recv().as_deref(), Ok("after"));
    assert_eq!(r.try_recv(), Err(shmlane::TryRecvError::Empty));
    // The skipped slot is reusable: the channel still holds 2.
    s.send("a".into()).unwrap();
    s.send("b".into()).unwrap();
    assert_eq!(s.try_send("c".into()), Err(TrySendError::Full("c".into())));
}

#[test]
fn select_completes_on_the_chosen_channel_only() {
    let (s1, r1) = bounded::<u8>(1);
    let (_s2, r2) = bounded::<u8>(1);
    s1.send(1).unwrap();
    let mut sel = shmlane::Select::new();
    let i1 = sel.recv(&r1);
    sel.recv(&r2);
    let oper = sel.select();
    assert_eq!(oper.index(), i1);
    // Completing with the other receiver is a bug the API catches.
    let wrong = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| oper.recv(&r2)));
    assert!(wrong.is_err());
}
