//! Loom models of the SPSC and MPMC rings.

#![cfg(shmlane_loom)]

use std::sync::Arc;

use loom::thread;
use shmlane_loom_tests::{read_u64, write_u64, Region};
use shmlane_ring::{PopError, PushError, RingKind};

#[test]
fn spsc_wraps_around_at_capacity_two() {
    loom::model(|| {
        let region = Arc::new(Region::new(RingKind::Spsc, 2));
        let (mut tx, mut rx) = region.spsc();
        let producer = thread::spawn(move || {
            let mut next = 0;
            while next < 3 {
                match tx.try_push_with(|p| write_u64(p, next)) {
                    Ok(()) => next += 1,
                    Err(PushError::Full) => thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            }
        });
        let mut expect = 0;
        while expect < 3 {
            match rx.try_pop_with(read_u64) {
                Ok(v) => {
                    assert_eq!(v, expect);
                    expect += 1;
                }
                Err(PopError::Empty) => thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        producer.join().unwrap();
    });
}

#[test]
fn spsc_batch_publishes_once() {
    loom::model(|| {
        let region = Arc::new(Region::new(RingKind::Spsc, 2));
        let (mut tx, mut rx) = region.spsc();
        let producer = thread::spawn(move || {
            assert_eq!(tx.write_batch(2, |i, p| write_u64(p, 10 + i)), Ok(2));
        });
        let mut got = Vec::new();
        while got.len() < 2 {
            if rx.read_batch(2, |_, p| got.push(read_u64(p))).unwrap() == 0 {
                thread::yield_now();
            }
        }
        assert_eq!(got, [10, 11]);
        producer.join().unwrap();
    });
}

#[test]
fn mpmc_two_producers_two_consumers() {
    loom::model(|| {
        let region = Arc::new(Region::new(RingKind::Mpmc, 2));
        let ring = Arc::new(region.mpmc());
        // The ring has room for both messages, so producers never wait.
        let producers: Vec<_> = (0..2u64)
            .map(|id| {
                let ring = Arc::clone(&ring);
                thread::spawn(move || ring.try_push_with(|p| write_u64(p, id + 1)).unwrap())
            })
            .collect();
        // Consumers race the producers and each other, with a bounded number
        // of tries (an unbounded spin would only add states, not behaviour).
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let ring = Arc::clone(&ring);
                thread::spawn(move || {
                    for _ in 0..2 {
                        match ring.try_pop_with(read_u64) {
                            Ok(v) => return Some(v),
                            Err(PopError::Empty | PopError::Busy) => thread::yield_now(),
                            Err(e) => panic!("{e}"),
                        }
                    }
                    None
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        let mut got: Vec<u64> = consumers
            .into_iter()
            .filter_map(|c| c.join().unwrap())
            .collect();
        // Everything is published now: what the consumers missed is there.
        while let Ok(v) = ring.try_pop_with(read_u64) {
            got.push(v);
        }
        got.sort_unstable();
        assert_eq!(got, [1, 2], "each message exactly once");
        drop(ring);
    });
}

#[test]
fn mpmc_exact_capacity_below_slot_count() {
    // Capacity 1 over 2 slots: a second push must see Full until the pop.
    loom::model(|| {
        let region = Arc::new(Region::new(RingKind::Mpmc, 1));
        let ring = Arc::new(region.mpmc());
        ring.try_push_with(|p| write_u64(p, 1)).unwrap();
        let consumer = {
            let ring = Arc::clone(&ring);
            thread::spawn(move || ring.try_pop_with(read_u64).unwrap())
        };
        match ring.try_push_with(|p| write_u64(p, 2)) {
            Ok(()) => {
                // Only possible once the first message was taken.
                assert_eq!(consumer.join().unwrap(), 1);
                assert_eq!(ring.try_pop_with(read_u64), Ok(2));
            }
            Err(PushError::Full) => assert_eq!(consumer.join().unwrap(), 1),
            Err(e) => panic!("{e}"),
        }
    });
}

#[test]
fn mpmc_capacity_hint_racing_producers() {
    // Capacity 3 over 4 slots, 2 messages in: two producers race for the
    // last place. Each checks the capacity against the dequeue-index hint
    // on the enqueue line first; the one that finds the hint says "maybe
    // full" reads the real index and refreshes the hint. Exactly one push
    // may succeed, with or without a consumer taking the first message.
    for with_consumer in [false, true] {
        loom::model(move || {
            let region = Arc::new(Region::new(RingKind::Mpmc, 3));
            let ring = Arc::new(region.mpmc());
            ring.try_push_with(|p| write_u64(p, 1)).unwrap();
            ring.try_push_with(|p| write_u64(p, 2)).unwrap();
            let producers: Vec<_> = [3, 4]
                .into_iter()
                .map(|v| {
                    let ring = Arc::clone(&ring);
                    thread::spawn(move || match ring.try_push_with(|p| write_u64(p, v)) {
                        Ok(()) => 1,
                        Err(PushError::Full) => 0,
                        Err(e) => panic!("{e}"),
                    })
                })
                .collect();
            let popped = if with_consumer {
                assert_eq!(ring.try_pop_with(read_u64), Ok(1));
                1
            } else {
                0
            };
            let pushed: u64 = producers.into_iter().map(|p| p.join().unwrap()).sum();
            let mut left = Vec::new();
            while let Ok(v) = ring.try_pop_with(read_u64) {
                left.push(v);
            }
            assert!(pushed >= 1 && pushed <= 1 + popped, "pushed {pushed}");
            assert_eq!(left.len() as u64, 2 + pushed - popped);
            assert!(left.len() <= 3, "over capacity: {left:?}");
            drop(ring);
        });
    }
}

/// A synced consumer that parks after looking only at the head slot's
/// stamp (`available`, as the channel's receive does once synced, without
/// reading the producer's index) is always woken: the producer stores the
/// stamp before its wakeup check, and the eventcount's fence pair orders
/// the two sides.
#[test]
fn a_synced_consumer_parking_on_the_stamp_alone_is_woken() {
    use shmlane_semaphore::{EventCount, WaitStrategy};
    loom::model(|| {
        let region = Arc::new(Region::new(RingKind::Spsc, 2));
        let ec = Arc::new(EventCount::new());
        let (mut tx, mut rx) = region.spsc();
        assert!(rx.synced());
        let producer = {
            let ec = Arc::clone(&ec);
            thread::spawn(move || {
                for v in 0..2 {
                    tx.try_push_with(|p| write_u64(p, v)).unwrap();
                    ec.notify_one();
                }
            })
        };
        for expect in 0..2 {
            // A lost wakeup parks this thread forever: loom reports a
            // deadlock.
            WaitStrategy::default()
                .wait(&ec, None, || (rx.available().unwrap() > 0).then_some(()))
                .unwrap();
            assert_eq!(rx.try_pop_with(read_u64), Ok(expect));
        }
        assert!(rx.synced());
        producer.join().unwrap();
    });
}
