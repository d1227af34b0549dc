//! MPMC ring behaviour through the public API.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};

use common::{read_u64, scaled, write_u64, Region};
use shmlane_ring::{PopError, PushError, RingKind};

#[test]
fn capacity_is_exact() {
    for capacity in [1, 2, 3, 5, 8] {
        let region = Region::new(RingKind::Mpmc, capacity, 8);
        let ring = region.mpmc();
        for round in 0..4 {
            for i in 0..capacity {
                ring.try_push_with(|p| write_u64(p, round * 100 + i))
                    .unwrap();
            }
            assert_eq!(ring.len(), capacity);
            assert!(
                matches!(ring.try_reserve(), Err(PushError::Full)),
                "cap {capacity}"
            );
            for i in 0..capacity {
                assert_eq!(ring.try_pop_with(read_u64), Ok(round * 100 + i));
            }
            assert!(ring.is_empty());
            assert!(matches!(ring.try_claim(), Err(PopError::Empty)));
        }
    }
}

#[test]
fn an_open_reservation_hides_later_messages_until_committed() {
    let region = Region::new(RingKind::Mpmc, 4, 8);
    let ring = region.mpmc();
    let first = ring.try_reserve().unwrap();
    ring.try_push_with(|p| write_u64(p, 2)).unwrap();
    // Not empty: a message is being written at the head.
    assert!(matches!(ring.try_claim(), Err(PopError::Busy)));
    write_u64(first.as_mut_ptr(), 1);
    first.commit();
    assert_eq!(ring.try_pop_with(read_u64), Ok(1));
    assert_eq!(ring.try_pop_with(read_u64), Ok(2));
}

#[test]
fn a_claim_holds_its_slot_until_dropped() {
    let region = Region::new(RingKind::Mpmc, 2, 8);
    let ring = region.mpmc();
    ring.try_push_with(|p| write_u64(p, 7)).unwrap();
    ring.try_push_with(|p| write_u64(p, 8)).unwrap();
    let claim = ring.try_claim().unwrap();
    assert_eq!(read_u64(claim.as_ptr()), 7);
    // Not full: the next slot is being read.
    assert!(matches!(ring.try_reserve(), Err(PushError::Busy)));
    drop(claim);
    ring.try_push_with(|p| write_u64(p, 9)).unwrap();
    assert_eq!(ring.try_pop_with(read_u64), Ok(8));
    assert_eq!(ring.try_pop_with(read_u64), Ok(9));
}

#[test]
fn garbage_stamps_are_reported_not_followed() {
    let region = Region::new(RingKind::Mpmc, 4, 8);
    let ring = region.mpmc();
    // Slot 0's stamp (first word after the two control lines) jumps ahead.
    region.word(256).store(1 << 40, Ordering::SeqCst);
    assert!(matches!(ring.try_reserve(), Err(PushError::Corrupted)));
    assert!(matches!(ring.try_claim(), Err(PopError::Corrupted)));
}

#[test]
fn many_threads_exactly_once_and_in_order_per_producer() {
    const PRODUCERS: u64 = 3;
    const CONSUMERS: usize = 3;
    let per_producer = scaled(50_000);
    let region = Region::new(RingKind::Mpmc, 6, 8);
    let ring = region.mpmc();
    let received = AtomicU64::new(0);
    let seen: Vec<Vec<AtomicU64>> = (0..PRODUCERS)
        .map(|_| (0..per_producer).map(|_| AtomicU64::new(0)).collect())
        .collect();
    std::thread::scope(|s| {
        for producer in 0..PRODUCERS {
            let ring = &ring;
            s.spawn(move || {
                for i in 0..per_producer {
                    let msg = producer << 32 | i;
                    while ring.try_push_with(|p| write_u64(p, msg)).is_err() {
                        std::thread::yield_now();
                    }
                }
            });
        }
        for _ in 0..CONSUMERS {
            let (ring, received, seen) = (&ring, &received, &seen);
            s.spawn(move || {
                let mut last = [None::<u64>; PRODUCERS as usize];
                while received.load(Ordering::Relaxed) < PRODUCERS * per_producer {
                    match ring.try_pop_with(read_u64) {
                        Ok(msg) => {
                            let (producer, i) = (msg >> 32, msg & 0xffff_ffff);
                            let prev = last[producer as usize].replace(i);
                            assert!(prev.is_none_or(|p| p < i), "out of order");
                            assert_eq!(
                                seen[producer as usize][i as usize].swap(1, Ordering::Relaxed),
                                0
                            );
                            received.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(PopError::Empty | PopError::Busy) => std::thread::yield_now(),
                        Err(e) => panic!("{e}"),
                    }
                }
            });
        }
    });
    assert!(seen
        .iter()
        .flatten()
        .all(|s| s.load(Ordering::Relaxed) == 1));
}

#[test]
fn an_abandoned_claim_can_be_published_once_by_a_survivor() {
    let region = Region::new(RingKind::Mpmc, 4, 8);
    let ring = region.mpmc();
    // Nothing claimed: nothing to publish.
    assert!(!ring.publish_abandoned(|_| unreachable!()));
    ring.try_push_with(|p| write_u64(p, 1)).unwrap();
    // A producer claims position 1 and "dies" (the reservation is leaked).
    std::mem::forget(ring.try_reserve().unwrap());
    ring.try_push_with(|p| write_u64(p, 3)).unwrap();
    assert_eq!(ring.try_pop_with(read_u64), Ok(1));
    assert!(
        matches!(ring.try_claim(), Err(PopError::Busy)),
        "the hole blocks the head"
    );
    assert!(ring.publish_abandoned(|p| write_u64(p, u64::MAX)));
    assert!(!ring.publish_abandoned(|_| unreachable!()), "only once");
    assert_eq!(ring.try_pop_with(read_u64), Ok(u64::MAX));
    assert_eq!(ring.try_pop_with(read_u64), Ok(3));
}
