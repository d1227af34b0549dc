//! SPSC ring behaviour through the public API.

mod common;

use common::{read_u64, scaled, write_u64, Region};
use shmlane_ring::{PopError, PushError, RingKind};

#[test]
fn push_pop_wraps_many_times() {
    let region = Region::new(RingKind::Spsc, 2, 8);
    let (mut tx, mut rx) = region.spsc();
    for i in 0..scaled(1000) {
        tx.try_push_with(|p| write_u64(p, i)).unwrap();
        assert_eq!(rx.try_pop_with(read_u64), Ok(i));
    }
    assert_eq!(rx.try_pop_with(read_u64), Err(PopError::Empty));
}

/// After a push found the ring full, `refilled` says no until `refill + 1`
/// slots are free; pushes take any free slot all along.
#[test]
fn refilled_waits_for_a_stretch_after_the_ring_was_full() {
    let region = Region::new(RingKind::Spsc, 8, 8);
    let (mut tx, mut rx) = region.spsc();
    tx.set_refill(2);
    assert_eq!(tx.refilled(), Ok(true), "never full yet");
    for i in 0..8 {
        tx.try_push_with(|p| write_u64(p, i)).unwrap();
    }
    assert_eq!(tx.refilled(), Ok(true), "no push has found it full");
    assert_eq!(tx.try_push_with(|p| write_u64(p, 8)), Err(PushError::Full));
    assert_eq!(tx.refilled(), Ok(false));
    assert_eq!(rx.try_pop_with(read_u64), Ok(0));
    assert_eq!(tx.refilled(), Ok(false), "one free");
    // A push does not look at the hint.
    tx.try_push_with(|p| write_u64(p, 8)).unwrap();
    for want in 1..=3 {
        assert_eq!(rx.try_pop_with(read_u64), Ok(want));
    }
    assert_eq!(tx.refilled(), Ok(true), "three free");
    assert_eq!(tx.refilled(), Ok(true), "and it stays so");
    // Clamped below the capacity: one free slot is a stretch of 7.
    tx.set_refill(100);
    for i in 9..12 {
        tx.try_push_with(|p| write_u64(p, i)).unwrap();
    }
    assert_eq!(tx.try_push_with(|p| write_u64(p, 12)), Err(PushError::Full));
    for want in 4..12 {
        assert_eq!(rx.try_pop_with(read_u64), Ok(want));
    }
    assert_eq!(tx.refilled(), Ok(true), "all eight free");
    // A reload in `free` that finds room clears it too.
    for i in 12..20 {
        tx.try_push_with(|p| write_u64(p, i)).unwrap();
    }
    assert_eq!(tx.free(), Ok(0));
    assert_eq!(tx.refilled(), Ok(false));
    assert_eq!(rx.try_pop_with(read_u64), Ok(12));
    assert_eq!(tx.free(), Ok(1));
    assert_eq!(
        tx.refilled(),
        Ok(true),
        "cleared by the reload that found room"
    );
}

#[test]
fn capacity_is_exact_even_when_not_a_power_of_two() {
    let region = Region::new(RingKind::Spsc, 3, 8);
    let (mut tx, mut rx) = region.spsc();
    for round in 0..5 {
        for i in 0..3 {
            tx.try_push(&(round * 10 + i as u64).to_ne_bytes()).unwrap();
        }
        assert_eq!(tx.try_push(&[0; 8]), Err(PushError::Full));
        assert_eq!(tx.free(), Ok(0));
        for i in 0..3 {
            assert_eq!(rx.try_pop_with(read_u64), Ok(round * 10 + i));
        }
        assert_eq!(rx.available(), Ok(0));
    }
}

#[test]
fn too_large_message_is_refused() {
    let region = Region::new(RingKind::Spsc, 4, 8);
    let (mut tx, _rx) = region.spsc();
    assert_eq!(tx.try_push(&[0; 9]), Err(PushError::TooLarge));
    tx.try_push(&[1, 2, 3]).unwrap();
}

#[test]
fn batches_publish_together() {
    let region = Region::new(RingKind::Spsc, 8, 8);
    let (mut tx, mut rx) = region.spsc();
    assert_eq!(tx.write_batch(5, |i, p| write_u64(p, i)), Ok(5));
    assert_eq!(tx.write_batch(5, |i, p| write_u64(p, 100 + i)), Ok(3));
    assert_eq!(tx.write_batch(5, |_, _| unreachable!()), Ok(0));
    let mut seen = Vec::new();
    assert_eq!(rx.read_batch(6, |_, p| seen.push(read_u64(p))), Ok(6));
    assert_eq!(rx.read_batch(10, |_, p| seen.push(read_u64(p))), Ok(2));
    assert_eq!(seen, [0, 1, 2, 3, 4, 100, 101, 102]);
}

#[test]
fn reattached_handles_continue_where_the_old_ones_stopped() {
    let region = Region::new(RingKind::Spsc, 4, 8);
    {
        let (mut tx, mut rx) = region.spsc();
        for i in 0..3 {
            tx.try_push_with(|p| write_u64(p, i)).unwrap();
        }
        assert_eq!(rx.try_pop_with(read_u64), Ok(0));
    }
    let (mut tx, mut rx) = region.spsc();
    assert_eq!(tx.free(), Ok(2));
    assert_eq!(rx.try_pop_with(read_u64), Ok(1));
    assert_eq!(rx.try_pop_with(read_u64), Ok(2));
    assert_eq!(rx.try_pop_with(read_u64), Err(PopError::Empty));
}

#[test]
fn garbage_indices_are_reported_not_followed() {
    let region = Region::new(RingKind::Spsc, 4, 8);
    let (mut tx, mut rx) = region.spsc();
    // The producer index (second control line) jumps past the capacity: a
    // consumer that keeps up never reads it, but `refresh` does.
    region
        .word(128)
        .store(1000, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(rx.refresh(), Err(shmlane_ring::Corrupted));
    region
        .word(128)
        .store(0, std::sync::atomic::Ordering::SeqCst);
    // The stamp of the head slot (first word after the control lines)
    // claims far more than the ring holds.
    region
        .word(256)
        .store(1000, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(rx.try_pop_with(read_u64), Err(PopError::Corrupted));
    region
        .word(256)
        .store(0, std::sync::atomic::Ordering::SeqCst);
    // The consumer index (first control line) runs ahead of the producer.
    for i in 0..4 {
        tx.try_push_with(|p| write_u64(p, i)).unwrap();
    }
    region
        .word(0)
        .store(u64::MAX, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(tx.try_push(&[0; 8]), Err(PushError::Corrupted));
}

#[test]
fn two_threads_every_message_in_order() {
    let n = scaled(200_000);
    let region = Region::new(RingKind::Spsc, 64, 8);
    let (mut tx, mut rx) = region.spsc();
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut next = 0;
            while next < n {
                let wrote = tx.write_batch(7.min(n - next), |i, p| write_u64(p, next + i));
                next += wrote.unwrap();
                if next < n {
                    std::thread::yield_now();
                }
            }
        });
        let mut expect = 0;
        while expect < n {
            match rx.try_pop_with(read_u64) {
                Ok(v) => {
                    assert_eq!(v, expect);
                    expect += 1;
                }
                Err(PopError::Empty) => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
    });
}

#[test]
fn a_consumer_attaching_inside_a_batch_sees_the_rest() {
    let region = Region::new(RingKind::Spsc, 8, 8);
    {
        let (mut tx, mut rx) = region.spsc();
        assert_eq!(tx.write_batch(5, |i, p| write_u64(p, i)), Ok(5));
        let mut seen = Vec::new();
        assert_eq!(rx.read_batch(2, |_, p| seen.push(read_u64(p))), Ok(2));
        assert_eq!(seen, [0, 1]);
    }
    // The new consumer's head is inside the batch, past its stamp. Its
    // attach read the producer's index, so it knows where the next batch
    // starts (`synced`) and finds everything from the stamps alone.
    let (mut tx, mut rx) = region.spsc();
    assert!(rx.synced());
    assert_eq!(rx.available(), Ok(3));
    assert_eq!(tx.write_batch(2, |i, p| write_u64(p, 10 + i)), Ok(2));
    let mut seen = Vec::new();
    assert_eq!(rx.read_batch(10, |_, p| seen.push(read_u64(p))), Ok(5));
    assert_eq!(seen, [2, 3, 4, 10, 11]);
}

#[test]
fn a_consumer_is_synced_only_by_a_sound_producer_index() {
    let region = Region::new(RingKind::Spsc, 8, 8);
    {
        let (mut tx, mut rx) = region.spsc();
        assert_eq!(tx.write_batch(5, |i, p| write_u64(p, i)), Ok(5));
        let mut seen = Vec::new();
        assert_eq!(rx.read_batch(2, |_, p| seen.push(read_u64(p))), Ok(2));
    }
    // Garbage in `tail` (a scribbling peer): the consumer inside the batch
    // cannot know where the next one starts, stays unsynced (so the
    // channel layer keeps reading the index), and says so.
    let tail = region.word(128);
    tail.store(1_000, std::sync::atomic::Ordering::SeqCst);
    // SAFETY: the region outlives the handle; it is the only consumer.
    let mut rx = unsafe {
        shmlane_ring::spsc::Consumer::attach(region.0.base(), region.0.len(), region.0.layout())
    }
    .unwrap();
    assert!(!rx.synced());
    assert!(rx.refresh().is_err());
    assert!(!rx.synced());
    // Every probing look reads the index while it is not synced.
    assert!((0..100).all(|_| rx.resync_due()));
    // The stamps alone show nothing from inside the batch.
    assert_eq!(rx.available(), Ok(0));
    // Once the index is sound again, one look at it syncs the consumer.
    tail.store(5, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(rx.refresh(), Ok(3));
    assert!(rx.synced());
    let mut seen = Vec::new();
    assert_eq!(rx.read_batch(10, |_, p| seen.push(read_u64(p))), Ok(3));
    assert_eq!(seen, [2, 3, 4]);
}

/// A peer scribbles a batch's stamp to a smaller, in-range end: a synced
/// consumer that polls by stamps stops short of the batch's end, and the
/// occasional look at the producer's index (`resync_due`) brings it back.
#[test]
fn a_consumer_stranded_by_a_scribbled_stamp_finds_its_way_back() {
    let region = Region::new(RingKind::Spsc, 8, 8);
    let (mut tx, mut rx) = region.spsc();
    assert!(rx.synced());
    assert_eq!(tx.write_batch(3, |i, p| write_u64(p, i)), Ok(3));
    // The head slot's stamp (first word after the control lines) says the
    // batch ends at 2, not 3.
    region
        .word(256)
        .store(2, std::sync::atomic::Ordering::SeqCst);
    let mut seen = Vec::new();
    assert_eq!(rx.read_batch(10, |_, p| seen.push(read_u64(p))), Ok(2));
    assert_eq!(rx.available(), Ok(0), "the stamps alone strand it");
    // A poller asks `resync_due` on each probing look: within
    // `RESYNC_EVERY` looks it reads the index and finds message 2.
    let looks = (1..=64)
        .find(|_| rx.resync_due())
        .expect("due within 64 looks");
    assert_eq!(looks, 64);
    assert_eq!(rx.refresh(), Ok(1));
    assert_eq!(rx.read_batch(10, |_, p| seen.push(read_u64(p))), Ok(1));
    assert_eq!(seen, [0, 1, 2]);
    assert!(rx.synced());
}

#[test]
fn a_batch_stamped_by_a_producer_that_died_before_recording_it_is_not_lost() {
    let region = Region::new(RingKind::Spsc, 8, 8);
    {
        let (mut tx, mut rx) = region.spsc();
        assert_eq!(tx.write_batch(5, |i, p| write_u64(p, i)), Ok(5));
        // The producer "died" between its stamp and its `tail` store.
        region
            .word(128)
            .store(0, std::sync::atomic::Ordering::SeqCst);
        // A consumer reads part of the batch and goes away.
        let mut seen = Vec::new();
        assert_eq!(rx.read_batch(2, |_, p| seen.push(read_u64(p))), Ok(2));
        assert_eq!(seen, [0, 1]);
    }
    // A new consumer alone (no producer has come back to repair `tail`),
    // inside the batch, still finds the rest.
    // SAFETY: the region outlives the handle; it is the only consumer.
    let mut rx = unsafe {
        shmlane_ring::spsc::Consumer::attach(region.0.base(), region.0.len(), region.0.layout())
    }
    .unwrap();
    assert_eq!(rx.refresh(), Ok(3));
    // A new producer adopts the batch (and records it) rather than
    // overwriting it.
    let (mut tx, _) = region.spsc();
    assert_eq!(
        region.word(128).load(std::sync::atomic::Ordering::SeqCst),
        5
    );
    assert_eq!(tx.write_batch(1, |_, p| write_u64(p, 99)), Ok(1));
    let mut seen = Vec::new();
    assert_eq!(rx.read_batch(10, |_, p| seen.push(read_u64(p))), Ok(4));
    assert_eq!(seen, [2, 3, 4, 99]);
}

#[test]
fn conditional_push_publishes_only_when_asked() {
    let region = Region::new(RingKind::Spsc, 2, 8);
    let (mut tx, mut rx) = region.spsc();
    // A write that gives up leaves the slot unpublished and reusable.
    assert_eq!(
        tx.try_push_if(|p| {
            write_u64(p, 99);
            false
        }),
        Ok(false)
    );
    assert_eq!(rx.try_pop_with(read_u64), Err(PopError::Empty));
    for i in 0..scaled(100) {
        assert_eq!(
            tx.try_push_if(|p| {
                write_u64(p, i);
                true
            }),
            Ok(true)
        );
        assert_eq!(rx.try_pop_with(read_u64), Ok(i));
    }
    tx.try_push_if(|p| {
        write_u64(p, 1);
        true
    })
    .unwrap();
    tx.try_push_if(|p| {
        write_u64(p, 2);
        true
    })
    .unwrap();
    assert_eq!(tx.try_push_if(|_| unreachable!()), Err(PushError::Full));
}

#[test]
fn front_is_read_in_place_until_released() {
    let region = Region::new(RingKind::Spsc, 2, 8);
    let (mut tx, mut rx) = region.spsc();
    assert_eq!(rx.front(), Err(PopError::Empty));
    for i in 0..scaled(100) {
        tx.try_push_with(|p| write_u64(p, i)).unwrap();
        tx.try_push_with(|p| write_u64(p, i + 1000)).unwrap();
        let p = rx.front().unwrap();
        // Not released: the producer cannot reuse the slot, and the same
        // message stays at the front.
        assert_eq!(tx.free(), Ok(0));
        assert_eq!(read_u64(p), i);
        assert_eq!(read_u64(rx.front().unwrap()), i);
        assert!(rx.release_front());
        assert_eq!(tx.free(), Ok(1));
        assert_eq!(read_u64(rx.front().unwrap()), i + 1000);
        assert!(rx.release_front());
    }
    assert_eq!(rx.front(), Err(PopError::Empty));
    // Nothing to release: refused, and the ring is unharmed.
    assert!(!rx.release_front());
    tx.try_push_with(|p| write_u64(p, 7)).unwrap();
    assert_eq!(rx.try_pop_with(read_u64), Ok(7));
}
