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
fn free_ahead_says_when_a_stretch_past_the_enqueue_index_is_free() {
    let region = Region::new(RingKind::Mpmc, 8, 8);
    let ring = region.mpmc();
    // Empty: every slot of the first lap is free.
    assert!(ring.free_ahead(0) && ring.free_ahead(7));
    for i in 0..8 {
        ring.try_push_with(|p| write_u64(p, i)).unwrap();
    }
    // Full: the next slots still hold the first lap's messages.
    assert!(!ring.free_ahead(0) && !ring.free_ahead(3));
    for i in 0..3 {
        assert_eq!(ring.try_pop_with(read_u64), Ok(i));
    }
    // Three freed: the enqueue index and the two past it are free, the
    // third past it is not.
    assert!(ring.free_ahead(0) && ring.free_ahead(2));
    assert!(!ring.free_ahead(3));
}

#[test]
fn published_says_which_positions_hold_a_message_now() {
    let region = Region::new(RingKind::Mpmc, 8, 8);
    let heap = shmlane_ring::mpmc::Ring::heap(8, 8, 8).unwrap();
    // Both layouts: the shared one, and the compact heap one whose stamps
    // are stored less their slot's index.
    for ring in [&region.mpmc(), &heap] {
        assert!(!ring.published(0) && !ring.head_ready());
        for i in 0..3 {
            ring.try_push_with(|p| write_u64(p, i)).unwrap();
        }
        assert!(ring.published(0) && ring.published(2) && ring.head_ready());
        assert!(!ring.published(3));
        // A position one lap on is not published by its slot's older
        // message.
        assert!(!ring.published(8) && !ring.published(10));
        let claim = ring.try_claim().unwrap();
        assert_eq!(claim.position(), 0);
        // Claimed but not freed: still published until the claim drops.
        assert!(ring.published(0));
        drop(claim);
        assert!(!ring.published(0) && ring.published(1));
        // A reservation in progress is not published.
        let reservation = ring.try_reserve().unwrap();
        assert_eq!(reservation.position(), 3);
        assert!(!ring.published(3));
        reservation.commit().unwrap();
        assert!(ring.published(3));
        let positions: Vec<u64> = (0..3)
            .map(|_| ring.try_claim().unwrap().position())
            .collect();
        assert_eq!(positions, [1, 2, 3]);
        assert!(!ring.published(3) && !ring.head_ready());
        // A skipped slot (its stamp carries a flag) is published, and its
        // claim knows its position.
        let reservation = ring.try_reserve().unwrap();
        reservation.cancel();
        assert!(ring.published(4));
        let skipped = ring.try_claim().unwrap();
        assert!(skipped.is_skipped());
        assert_eq!(skipped.position(), 4);
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
    first.commit().unwrap();
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
    exactly_once_in_order(false);
}

#[test]
fn many_owned_handles_exactly_once_and_in_order_per_producer() {
    exactly_once_in_order(true);
}

/// Three producers and three consumers; with `owned`, each thread has its
/// own handle with its own owner id, as processes over shared memory do.
fn exactly_once_in_order(owned: bool) {
    const PRODUCERS: u64 = 3;
    const CONSUMERS: usize = 3;
    let per_producer = scaled(50_000);
    let region = Region::new(RingKind::Mpmc, 6, 8);
    let handle = |who: u64| {
        let ring = region.mpmc();
        if owned {
            ring.with_owner(who)
        } else {
            ring
        }
    };
    let received = AtomicU64::new(0);
    let seen: Vec<Vec<AtomicU64>> = (0..PRODUCERS)
        .map(|_| (0..per_producer).map(|_| AtomicU64::new(0)).collect())
        .collect();
    std::thread::scope(|s| {
        for producer in 0..PRODUCERS {
            let ring = handle(producer + 1);
            s.spawn(move || {
                for i in 0..per_producer {
                    let msg = producer << 32 | i;
                    while ring.try_push_with(|p| write_u64(p, msg)).is_err() {
                        std::thread::yield_now();
                    }
                }
            });
        }
        for c in 0..CONSUMERS {
            let ring = handle(10 + c as u64);
            let (received, seen) = (&received, &seen);
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

/// Owned handles that stand for processes: `who` 1, 2, 3...
fn owned(region: &Region, who: u64) -> shmlane_ring::mpmc::Ring {
    region.mpmc().with_owner(who)
}

#[test]
fn a_dead_producers_slot_is_skipped_while_other_producers_live() {
    let region = Region::new(RingKind::Mpmc, 4, 8);
    let (a, b, rx) = (owned(&region, 1), owned(&region, 2), owned(&region, 3));
    a.try_push_with(|p| write_u64(p, 1)).unwrap();
    // Producer 2 claims position 1 and "dies" (the reservation is leaked).
    std::mem::forget(b.try_reserve().unwrap());
    a.try_push_with(|p| write_u64(p, 3)).unwrap();
    assert_eq!(rx.try_pop_with(read_u64), Ok(1));
    assert!(matches!(rx.try_claim(), Err(PopError::Busy)));
    // Producer 1 is alive: its slots are never taken.
    assert!(!rx.skip_dead_writer(|who| who == 1));
    assert!(rx.skip_dead_writer(|who| who == 2));
    assert!(!rx.skip_dead_writer(|who| who == 2), "only once");
    // The skipped slot is passed over; the live producer's message follows.
    assert_eq!(rx.try_pop_with(read_u64), Ok(3));
    assert!(matches!(rx.try_claim(), Err(PopError::Empty)));
    // The ring goes on for laps after the hole.
    for i in 0..20 {
        a.try_push_with(|p| write_u64(p, i)).unwrap();
        assert_eq!(rx.try_pop_with(read_u64), Ok(i));
    }
}

#[test]
fn a_late_commit_after_a_skip_fails_and_never_rewinds_the_stamp() {
    let region = Region::new(RingKind::Mpmc, 2, 8);
    let (a, b, rx) = (owned(&region, 1), owned(&region, 2), owned(&region, 3));
    let late = b.try_reserve().unwrap();
    // Taken for dead (wrongly): its slot is skipped...
    assert!(rx.skip_dead_writer(|who| who == 2));
    // ...so its commit is refused: the message is reported as not sent.
    write_u64(late.as_mut_ptr(), 99);
    assert_eq!(late.commit(), Err(shmlane_ring::mpmc::Recovered));
    // Laps go on: the slot is reused and never returns Busy for ever.
    for i in 0..10 {
        a.try_push_with(|p| write_u64(p, i)).unwrap();
        assert_eq!(rx.try_pop_with(read_u64), Ok(i));
    }
}

#[test]
fn a_dead_consumers_claim_is_adopted_and_redelivered() {
    let region = Region::new(RingKind::Mpmc, 2, 8);
    let (tx, dead, rx) = (owned(&region, 1), owned(&region, 2), owned(&region, 3));
    tx.try_push_with(|p| write_u64(p, 7)).unwrap();
    tx.try_push_with(|p| write_u64(p, 8)).unwrap();
    // Consumer 2 claims message 7 and dies holding it.
    std::mem::forget(dead.try_claim().unwrap());
    assert_eq!(rx.try_pop_with(read_u64), Ok(8));
    // The producer is held at the dead consumer's slot.
    assert!(matches!(tx.try_reserve(), Err(PushError::Busy)));
    // A live owner's claims are never adopted.
    assert!(rx.adopt_dead_reader(|who| who == 1).is_err());
    let again = rx.adopt_dead_reader(|who| who == 2).unwrap();
    assert_eq!(read_u64(again.as_ptr()), 7, "redelivered");
    assert!(again.release().is_ok());
    assert!(rx.adopt_dead_reader(|who| who == 2).is_err(), "only once");
    tx.try_push_with(|p| write_u64(p, 9)).unwrap();
    assert_eq!(rx.try_pop_with(read_u64), Ok(9));
}

#[test]
fn a_producer_that_dies_before_moving_the_index_is_helped() {
    let region = Region::new(RingKind::Mpmc, 4, 8);
    let (a, rx) = (owned(&region, 1), owned(&region, 3));
    // Claim position 0 by hand the way a producer does, without moving the
    // enqueue index: write the owner word only (lap 0, who 2).
    // (slot 0 starts after the two 128-byte control lines; the owner word
    // follows the 8-byte stamp).
    let owner_word = 256 + 8;
    region.word(owner_word).store(2, Ordering::Relaxed);
    // A consumer sees a claimed head (not empty) and helps the index on.
    assert!(matches!(rx.try_claim(), Err(PopError::Busy)));
    a.try_push_with(|p| write_u64(p, 5)).unwrap();
    assert!(rx.skip_dead_writer(|who| who == 2));
    assert_eq!(rx.try_pop_with(read_u64), Ok(5));
}

#[test]
fn a_late_release_of_an_adopted_claim_fails_and_frees_nothing() {
    let region = Region::new(RingKind::Mpmc, 2, 8);
    let (tx, late, rx) = (owned(&region, 1), owned(&region, 2), owned(&region, 3));
    tx.try_push_with(|p| write_u64(p, 7)).unwrap();
    let held = late.try_claim().unwrap();
    // Taken for dead (wrongly): its claim is adopted...
    let again = rx.adopt_dead_reader(|who| who == 2).unwrap();
    // ...so its release is refused and the slot stays the adopter's.
    assert_eq!(held.release(), Err(shmlane_ring::mpmc::Recovered));
    assert_eq!(read_u64(again.as_ptr()), 7);
    tx.try_push_with(|p| write_u64(p, 8)).unwrap();
    // The next lap of this slot is not free yet: the adopter still reads it.
    assert!(matches!(tx.try_reserve(), Err(PushError::Busy)));
    assert!(again.release().is_ok());
    tx.try_push_with(|p| write_u64(p, 9)).unwrap();
    assert_eq!(rx.try_pop_with(read_u64), Ok(8));
    assert_eq!(rx.try_pop_with(read_u64), Ok(9));
}
