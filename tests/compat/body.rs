// The body of the compatibility suite. `tests/compat.rs` includes it twice:
// once with `use crossbeam_channel as channel;` and once with
// `use shmlane as channel;`. Nothing else differs, which is the claim.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use channel::{
    bounded, Receiver, RecvError, RecvTimeoutError, SendError, SendTimeoutError, Sender,
    TryRecvError, TrySendError,
};
use channel::{after, never, select, tick, unbounded, Select};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn smoke() {
    let (s, r) = bounded(1);
    s.send(7).unwrap();
    assert_eq!(r.try_recv(), Ok(7));
    s.send(8).unwrap();
    assert_eq!(r.recv(), Ok(8));
    assert_eq!(r.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(r.recv_timeout(ms(1)), Err(RecvTimeoutError::Timeout));
}

#[test]
fn capacity_is_exact() {
    for cap in [1, 2, 3, 5, 7, 100] {
        let (s, r) = bounded::<usize>(cap);
        assert_eq!(s.capacity(), Some(cap));
        assert_eq!(r.capacity(), Some(cap));
        for i in 0..cap {
            assert!(!s.is_full());
            s.try_send(i).unwrap();
            assert_eq!(s.len(), i + 1);
        }
        assert!(s.is_full() && r.is_full());
        assert_eq!(s.try_send(99), Err(TrySendError::Full(99)));
        assert_eq!(s.send_timeout(98, ms(1)), Err(SendTimeoutError::Timeout(98)));
        assert_eq!(r.recv(), Ok(0));
        s.try_send(cap).unwrap();
        for i in 1..=cap {
            assert_eq!(r.try_recv(), Ok(i));
        }
        assert!(s.is_empty() && r.is_empty());
    }
}

#[test]
fn len_and_empty_track_messages() {
    let (s, r) = bounded(10);
    assert_eq!((s.len(), r.len()), (0, 0));
    assert!(s.is_empty() && r.is_empty());
    for i in 0..5 {
        s.send(i).unwrap();
    }
    assert_eq!((s.len(), r.len()), (5, 5));
    assert!(!s.is_empty() && !r.is_full());
    r.recv().unwrap();
    assert_eq!(r.len(), 4);
}

#[test]
fn try_recv_reports_disconnect_after_draining() {
    let (s, r) = bounded(4);
    s.send(1).unwrap();
    s.send(2).unwrap();
    drop(s);
    assert_eq!(r.try_recv(), Ok(1));
    assert_eq!(r.recv(), Ok(2));
    assert_eq!(r.try_recv(), Err(TryRecvError::Disconnected));
    assert_eq!(r.recv(), Err(RecvError));
    assert_eq!(r.recv_timeout(ms(1)), Err(RecvTimeoutError::Disconnected));
}

#[test]
fn send_to_dropped_receiver_hands_message_back() {
    let (s, r) = bounded(4);
    drop(r);
    assert_eq!(s.send(1), Err(SendError(1)));
    assert_eq!(s.send(2).unwrap_err().into_inner(), 2);
    assert_eq!(s.try_send(3), Err(TrySendError::Disconnected(3)));
    assert_eq!(s.send_timeout(4, ms(1)), Err(SendTimeoutError::Disconnected(4)));
    let deadline = Instant::now() + ms(1);
    assert_eq!(s.send_deadline(5, deadline), Err(SendTimeoutError::Disconnected(5)));
}

#[test]
fn timeouts_and_deadlines_wait_long_enough() {
    let (s, r) = bounded(1);
    let start = Instant::now();
    assert_eq!(r.recv_timeout(ms(50)), Err(RecvTimeoutError::Timeout));
    assert!(start.elapsed() >= ms(50));
    let deadline = Instant::now() + ms(50);
    assert_eq!(r.recv_deadline(deadline), Err(RecvTimeoutError::Timeout));
    assert!(Instant::now() >= deadline);
    s.send(0).unwrap();
    let start = Instant::now();
    assert_eq!(s.send_timeout(1, ms(50)), Err(SendTimeoutError::Timeout(1)));
    assert!(start.elapsed() >= ms(50));
    let deadline = Instant::now() + ms(50);
    assert_eq!(s.send_deadline(2, deadline), Err(SendTimeoutError::Timeout(2)));
    assert!(Instant::now() >= deadline);
    // A deadline already past still succeeds when no wait is needed.
    let past = Instant::now() - ms(1);
    assert_eq!(r.recv_deadline(past), Ok(0));
    assert_eq!(s.send_deadline(3, past), Ok(()));
    assert_eq!(r.recv_timeout(Duration::ZERO), Ok(3));
}

#[test]
fn timed_calls_succeed_when_the_peer_acts_in_time() {
    let (s, r) = bounded(1);
    thread::scope(|scope| {
        scope.spawn(|| {
            thread::sleep(ms(20));
            s.send(1).unwrap();
            s.send(2).unwrap();
        });
        assert_eq!(r.recv_timeout(Duration::from_secs(10)), Ok(1));
        assert_eq!(r.recv_deadline(Instant::now() + Duration::from_secs(10)), Ok(2));
    });
    s.send(3).unwrap();
    thread::scope(|scope| {
        scope.spawn(|| {
            thread::sleep(ms(20));
            assert_eq!(r.recv(), Ok(3));
        });
        assert_eq!(s.send_timeout(4, Duration::from_secs(10)), Ok(()));
    });
    assert_eq!(r.recv(), Ok(4));
}

#[test]
fn blocked_receiver_wakes_on_disconnect() {
    let (s, r) = bounded::<i32>(1);
    let waiter = thread::spawn(move || (r.recv(), r.recv_timeout(Duration::from_secs(10))));
    thread::sleep(ms(30));
    drop(s);
    assert_eq!(waiter.join().unwrap(), (Err(RecvError), Err(RecvTimeoutError::Disconnected)));
}

#[test]
fn blocked_sender_wakes_on_disconnect() {
    let (s, r) = bounded(1);
    s.send(0).unwrap();
    let waiter = thread::spawn(move || s.send(1));
    thread::sleep(ms(30));
    drop(r);
    assert_eq!(waiter.join().unwrap(), Err(SendError(1)));
    let (s, r) = bounded(1);
    s.send(0).unwrap();
    let waiter = thread::spawn(move || s.send_timeout(1, Duration::from_secs(10)));
    thread::sleep(ms(30));
    drop(r);
    assert_eq!(waiter.join().unwrap(), Err(SendTimeoutError::Disconnected(1)));
}

#[test]
fn iterators() {
    let (s, r) = bounded(8);
    for i in 0..5 {
        s.send(i).unwrap();
    }
    assert_eq!(r.try_iter().collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
    assert_eq!(r.try_iter().next(), None);
    let producer = thread::spawn(move || {
        for i in 0..100 {
            s.send(i).unwrap();
        }
    });
    assert_eq!(r.iter().take(10).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
    let mut rest = Vec::new();
    for v in &r {
        rest.push(v);
    }
    assert_eq!(rest, (10..100).collect::<Vec<_>>());
    producer.join().unwrap();
    let (s, r) = bounded(4);
    s.send(1).unwrap();
    drop(s);
    assert_eq!(r.into_iter().collect::<Vec<_>>(), [1]);
}

#[test]
fn same_channel_and_clones() {
    let (s1, r1) = bounded::<()>(1);
    let (s2, r2) = bounded::<()>(1);
    assert!(s1.same_channel(&s1.clone()));
    assert!(r1.same_channel(&r1.clone()));
    assert!(!s1.same_channel(&s2));
    assert!(!r1.same_channel(&r2));
    // A clone keeps the channel connected after the original is dropped.
    let s3 = s1.clone();
    drop(s1);
    s3.send(()).unwrap();
    assert_eq!(r1.recv(), Ok(()));
    let r3 = r1.clone();
    drop(r1);
    s3.send(()).unwrap();
    assert_eq!(r3.recv(), Ok(()));
}

#[test]
fn errors_have_the_usual_methods_and_messages() {
    struct NotDebug;
    let e = TrySendError::Full(NotDebug);
    assert!(e.is_full() && !e.is_disconnected());
    let _: NotDebug = e.into_inner();
    assert_eq!(format!("{:?}", SendError(NotDebug)), "\"SendError(..)\"");
    assert_eq!(format!("{:?}", TrySendError::Full(NotDebug)), "\"Full(..)\"");
    assert_eq!(SendError(1).to_string(), "sending on a disconnected channel");
    assert_eq!(TrySendError::Full(1).to_string(), "sending on a full channel");
    assert_eq!(TrySendError::Disconnected(1).to_string(), "sending on a disconnected channel");
    assert_eq!(SendTimeoutError::Timeout(1).to_string(), "timed out waiting on send operation");
    assert!(SendTimeoutError::Timeout(1).is_timeout());
    assert!(SendTimeoutError::Disconnected(1).is_disconnected());
    assert_eq!(SendTimeoutError::Timeout(5).into_inner(), 5);
    assert_eq!(RecvError.to_string(), "receiving on an empty and disconnected channel");
    assert_eq!(TryRecvError::Empty.to_string(), "receiving on an empty channel");
    assert!(TryRecvError::Empty.is_empty() && TryRecvError::Disconnected.is_disconnected());
    assert_eq!(RecvTimeoutError::Timeout.to_string(), "timed out waiting on receive operation");
    assert!(RecvTimeoutError::Timeout.is_timeout());
    assert!(RecvTimeoutError::Disconnected.is_disconnected());
    assert_eq!(TrySendError::from(SendError(1)), TrySendError::Disconnected(1));
    assert_eq!(SendTimeoutError::from(SendError(1)), SendTimeoutError::Disconnected(1));
    assert_eq!(TryRecvError::from(RecvError), TryRecvError::Disconnected);
    assert_eq!(RecvTimeoutError::from(RecvError), RecvTimeoutError::Disconnected);
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(SendError(1u8));
    assert!(!boxed.to_string().is_empty());
    assert_eq!(format!("{:?}", bounded::<NotDebug>(1).0), "Sender { .. }");
    assert_eq!(format!("{:?}", bounded::<NotDebug>(1).1), "Receiver { .. }");
}

#[test]
fn handles_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Sender<String>>();
    assert_send_sync::<Receiver<String>>();
    assert_send_sync::<SendError<String>>();
}

#[test]
fn every_message_dropped_exactly_once() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    struct Counted;
    impl Drop for Counted {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::SeqCst);
        }
    }
    // Buffered messages go when the channel goes.
    DROPS.store(0, Ordering::SeqCst);
    let (s, r) = bounded(5);
    for _ in 0..5 {
        s.send(Counted).unwrap();
    }
    drop(r.recv().unwrap());
    assert_eq!(DROPS.load(Ordering::SeqCst), 1);
    drop(s);
    drop(r);
    assert_eq!(DROPS.load(Ordering::SeqCst), 5);
    // Refused messages are handed back, not dropped or leaked.
    let (s, r) = bounded(1);
    s.send(Counted).unwrap();
    let back = s.try_send(Counted).unwrap_err().into_inner();
    assert_eq!(DROPS.load(Ordering::SeqCst), 5);
    drop(back);
    assert_eq!(DROPS.load(Ordering::SeqCst), 6);
    drop(r);
    let e = s.send(Counted).unwrap_err();
    drop(e);
    assert_eq!(DROPS.load(Ordering::SeqCst), 7);
    // The message still buffered goes with the last handle.
    drop(s);
    assert_eq!(DROPS.load(Ordering::SeqCst), 8);
}

/// Every flavor with several producers and consumers: bounded(7),
/// bounded(1), the rendezvous bounded(0) and unbounded.
#[test]
fn many_threads_every_message_once_in_order_per_producer() {
    for make in [
        (|| bounded(7)) as fn() -> Pair,
        || bounded(1),
        || bounded(0),
        unbounded,
    ] {
        many_threads_on(make());
    }
}

type Pair = (Sender<(usize, usize)>, Receiver<(usize, usize)>);

fn many_threads_on((s, r): Pair) {
    const PRODUCERS: usize = 4;
    const CONSUMERS: usize = 4;
    const PER_PRODUCER: usize = 5_000;
    let seen = Arc::new((0..PRODUCERS * PER_PRODUCER).map(|_| AtomicUsize::new(0)).collect::<Vec<_>>());
    thread::scope(|scope| {
        for p in 0..PRODUCERS {
            let s = s.clone();
            scope.spawn(move || {
                for i in 0..PER_PRODUCER {
                    s.send((p, i)).unwrap();
                }
            });
        }
        drop(s);
        for _ in 0..CONSUMERS {
            let (r, seen) = (r.clone(), Arc::clone(&seen));
            scope.spawn(move || {
                let mut last = [None; PRODUCERS];
                for (p, i) in r.iter() {
                    assert!(last[p].is_none_or(|l| l < i), "producer {p} out of order");
                    last[p] = Some(i);
                    assert_eq!(seen[p * PER_PRODUCER + i].fetch_add(1, Ordering::Relaxed), 0);
                }
            });
        }
    });
    assert!(seen.iter().all(|n| n.load(Ordering::Relaxed) == 1));
}

#[test]
fn unbounded_never_blocks_and_drops_what_nobody_receives() {
    let (s, r) = unbounded();
    assert_eq!(s.capacity(), None);
    for i in 0..100_000u64 {
        s.try_send(i).unwrap();
    }
    assert_eq!(r.len(), 100_000);
    assert!(!s.is_full());
    assert_eq!(r.iter().take(100_000).sum::<u64>(), (0..100_000u64).sum::<u64>());
    let counted = Arc::new(());
    let (s, r) = unbounded();
    for _ in 0..100 {
        s.send(Arc::clone(&counted)).unwrap();
    }
    drop(r);
    assert_eq!(Arc::strong_count(&counted), 1);
    assert!(s.send(Arc::clone(&counted)).is_err());
}

#[test]
fn rendezvous_completes_only_with_a_partner() {
    let (s, r) = bounded::<u8>(0);
    assert_eq!((s.capacity(), s.len(), s.is_empty(), s.is_full()), (Some(0), 0, true, true));
    assert_eq!(s.try_send(1), Err(TrySendError::Full(1)));
    assert_eq!(s.send_timeout(2, ms(1)), Err(SendTimeoutError::Timeout(2)));
    assert_eq!(r.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(r.recv_timeout(ms(1)), Err(RecvTimeoutError::Timeout));
    thread::scope(|scope| {
        scope.spawn(|| s.send(3).unwrap());
        assert_eq!(r.recv(), Ok(3));
    });
    drop(r);
    assert_eq!(s.send(4), Err(SendError(4)));
}

#[test]
fn select_over_every_flavor_and_the_timers() {
    let (s1, r1) = bounded::<u32>(1);
    let (_s2, r2) = bounded::<u32>(0);
    let (s3, r3) = unbounded::<u32>();
    // Nothing is ready: default.
    let got = select! {
        recv(r1) -> _ => 1,
        recv(r2) -> _ => 2,
        recv(r3) -> _ => 3,
        default => 0,
    };
    assert_eq!(got, 0);
    s3.send(30).unwrap();
    select! {
        recv(r1) -> _ => panic!(),
        recv(r2) -> _ => panic!(),
        recv(r3) -> m => assert_eq!(m, Ok(30)),
        recv(never::<u32>()) -> _ => panic!(),
    }
    // A send arm on a full channel is not ready; on a free one it is.
    s1.send(10).unwrap();
    select! {
        send(s1, 11) -> _ => panic!("full"),
        send(s3, 31) -> res => assert_eq!(res, Ok(())),
    }
    assert_eq!(r3.recv(), Ok(31));
    // A timer decides when nothing else is ready.
    let timer = after(ms(1));
    let mut sel = Select::new();
    let i_timer = sel.recv(&timer);
    sel.recv(&r2);
    let oper = sel.select();
    assert_eq!(oper.index(), i_timer);
    assert!(oper.recv(&timer).is_ok());
    // A disconnected channel's operation is ready and fails.
    drop(s3);
    select! {
        recv(r3) -> m => assert_eq!(m, Err(RecvError)),
        default(ms(1000)) => panic!("a disconnected channel is ready"),
    }
    let ticks = tick(ms(1));
    assert!(ticks.recv().is_ok());
    assert_eq!(r1.recv(), Ok(10));
}
