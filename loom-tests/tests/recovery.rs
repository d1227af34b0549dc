//! Loom models of the MPMC ring's recovery paths and of its owned mode.
//!
//! Every model runs the real ring code with owned handles, one per
//! simulated process (`who` 1, 2, 3...), each attached inside the thread
//! that stands for that process. Who is dead is decided by the model: a
//! [`World`] oracle that a "dying" thread sets after it leaks
//! (`mem::forget`s) its reservation or claim, and that `skip_dead_writer`
//! and `adopt_dead_reader` read, as over shared memory they read a
//! process's liveness lock.
//!
//! "More than one lap works afterwards" is how the models check that no
//! stamp was rewound: a slot whose stamp went back reads as full (or busy)
//! for ever, or as corrupted, to the next lap's producer.

#![cfg(shmlane_loom)]

use std::mem;
use std::sync::Arc;

use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use loom::sync::{Condvar, Mutex};
use loom::thread;
use shmlane_loom_tests::{read_u64, write_u64, Region};
use shmlane_ring::mpmc::{Recovered, Ring};
use shmlane_ring::{PopError, PushError, RingKind};

/// The simulated processes' liveness, as the model decides it, and a
/// progress gate that the model threads wait on instead of spinning.
///
/// Two threads spinning with `yield_now` at once let loom alternate
/// between them for ever (a switch away from a yielded thread is not a
/// preemption), so a thread that cannot go on blocks here until another
/// thread reports a change. An attempt is ordered only after the changes
/// whose count it read (a thread that saw the count move must also see
/// the change, or it could wait for ever on a stale look, which loom
/// allows and hardware does not); it still races every change not yet
/// counted, so the ring's own orderings are what the models check.
struct World {
    dead: [AtomicBool; 5],
    changes: AtomicU64,
    lock: Mutex<()>,
    changed: Condvar,
}

impl World {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            dead: std::array::from_fn(|_| AtomicBool::new(false)),
            changes: AtomicU64::new(0),
            lock: Mutex::new(()),
            changed: Condvar::new(),
        })
    }

    /// Marks `who` dead (or, in a model of a wrong verdict, taken for dead).
    fn kill(&self, who: u64) {
        // Release: pairs with the Acquire in `is_dead`. What `who` did
        // before (its payload writes) happens before a recovery that finds
        // it dead, as the kernel orders a dead owner's writes before the
        // release of its liveness lock.
        self.dead[who as usize].store(true, Ordering::Release);
        self.bump();
    }

    /// The oracle the ring's recovery calls take.
    fn is_dead(&self, who: u64) -> bool {
        // Acquire: pairs with the Release in `kill`.
        self.dead[who as usize].load(Ordering::Acquire)
    }

    /// Blocks until `who` is marked dead.
    fn wait_dead(&self, who: u64) {
        loop {
            let seen = self.now();
            if self.is_dead(who) {
                return;
            }
            self.wait_past(seen);
        }
    }

    /// The change count, to take before an attempt that may have to wait.
    fn now(&self) -> u64 {
        // Acquire: pairs with the Release in `bump`, so an attempt made
        // after reading a count sees the changes counted.
        self.changes.load(Ordering::Acquire)
    }

    /// Reports a change to the ring (a commit, release, skip, death).
    fn bump(&self) {
        // Release: pairs with the Acquire in `now`.
        self.changes.fetch_add(1, Ordering::Release);
        drop(self.lock.lock().unwrap());
        self.changed.notify_all();
    }

    /// Blocks until a change after the count `seen`. No wakeup is lost: a
    /// waiter checks the count under the mutex, and `bump` increments it
    /// before it takes the mutex to notify.
    fn wait_past(&self, seen: u64) {
        let mut guard = self.lock.lock().unwrap();
        while self.now() == seen {
            guard = self.changed.wait(guard).unwrap();
        }
    }
}

/// Pushes `v`, waiting while the ring is full or the slot busy.
fn push(world: &World, ring: &Ring, v: u64) {
    loop {
        let seen = world.now();
        match ring.try_reserve() {
            Ok(r) => {
                write_u64(r.as_mut_ptr(), v);
                assert_eq!(r.commit(), Ok(()), "a live producer's commit");
                world.bump();
                return;
            }
            Err(PushError::Full | PushError::Busy) => world.wait_past(seen),
            Err(e) => panic!("push: {e}"),
        }
    }
}

/// Pops the next slot, waiting while there is none: `Some(message)`, or
/// `None` for a skipped slot.
fn pop(world: &World, ring: &Ring) -> Option<u64> {
    loop {
        let seen = world.now();
        match ring.try_claim() {
            Ok(c) => {
                let v = (!c.is_skipped()).then(|| read_u64(c.as_ptr()));
                assert_eq!(c.release(), Ok(()), "a live consumer's release");
                world.bump();
                return v;
            }
            Err(PopError::Empty | PopError::Busy) => world.wait_past(seen),
            Err(e) => panic!("pop: {e}"),
        }
    }
}

/// With every model thread joined: `n` messages through the ring one at a
/// time, each push and pop succeeding at once (no `Full`, `Busy` or
/// `Corrupted` left behind by the recovery), so `n` above the slot count
/// checks that every slot's stamp still moves on lap after lap.
fn laps_go_on(tx: &Ring, rx: &Ring, n: u64) {
    for i in 0..n {
        let r = tx
            .try_reserve()
            .unwrap_or_else(|e| panic!("lap push {i}: {e}"));
        write_u64(r.as_mut_ptr(), 100 + i);
        assert_eq!(r.commit(), Ok(()));
        let c = rx
            .try_claim()
            .unwrap_or_else(|e| panic!("lap pop {i}: {e}"));
        assert!(!c.is_skipped());
        assert_eq!(read_u64(c.as_ptr()), 100 + i);
        assert_eq!(c.release(), Ok(()));
    }
    assert!(matches!(rx.try_claim(), Err(PopError::Empty)));
}

/// Model 1: producer 1 is taken for dead (wrongly: it is alive and about to
/// commit) and a recoverer skips its slot while it commits. Exactly one of
/// the two wins: either the commit returns `Ok` and the consumer gets the
/// message, or the skip succeeds, the commit returns `Err(Recovered)` and
/// the consumer gets a skipped slot. Then the ring goes on for laps.
///
/// Before the rewrite (`dd61a07`) a commit was a plain store of `p + 1`:
/// a late commit after the slot was skipped (`publish_abandoned`) and
/// recycled rewound its stamp, and the next lap's producer saw the slot
/// full for ever. Mutation shown: with `Reservation::publish` a plain
/// store this model fails (both the commit and the skip "succeed").
#[test]
fn a_late_commit_races_the_skip_of_its_slot() {
    loom::model(|| {
        let region = Arc::new(Region::new(RingKind::Mpmc, 2));
        let world = World::new();
        let writer = {
            let (region, world) = (Arc::clone(&region), Arc::clone(&world));
            thread::spawn(move || {
                let a = region.mpmc_owned(1);
                let r = a.try_reserve().unwrap();
                write_u64(r.as_mut_ptr(), 11);
                // Its liveness lock is lost here (a stall the recoverer
                // takes for death), but it goes on to commit.
                world.kill(1);
                let committed = r.commit();
                world.bump();
                committed
            })
        };
        let recoverer = {
            let (region, world) = (Arc::clone(&region), Arc::clone(&world));
            thread::spawn(move || {
                let ring = region.mpmc_owned(2);
                world.wait_dead(1);
                let skipped = ring.skip_dead_writer(|w| world.is_dead(w));
                world.bump();
                skipped
            })
        };
        let rx = region.mpmc_owned(3);
        let got = pop(&world, &rx);
        let committed = writer.join().unwrap();
        let skipped = recoverer.join().unwrap();
        match (committed, skipped, got) {
            (Ok(()), false, Some(11)) | (Err(Recovered), true, None) => {}
            other => panic!("commit, skip and delivery disagree: {other:?}"),
        }
        // The producer taken for dead goes on pushing; 5 messages over 2
        // slots is more than two laps.
        laps_go_on(&region.mpmc_owned(1), &rx, 5);
    });
}

/// Model 1b: producer 1 really dies holding a reservation (leaked); a
/// recoverer skips the slot while another producer pushes behind it and a
/// consumer waits at the hole. The consumer gets the skipped slot, then
/// producer 2's message; laps go on.
///
/// Before the rewrite the dead producer's slot could only be published
/// (`publish_abandoned`) once every sender was gone, so with producer 2
/// alive the consumer waited at the hole for ever (a loom deadlock here).
#[test]
fn a_dead_writers_slot_is_skipped_while_another_producer_pushes() {
    loom::model(|| {
        let region = Arc::new(Region::new(RingKind::Mpmc, 2));
        let world = World::new();
        let dying = {
            let (region, world) = (Arc::clone(&region), Arc::clone(&world));
            thread::spawn(move || {
                let a = region.mpmc_owned(1);
                let r = a.try_reserve().unwrap();
                write_u64(r.as_mut_ptr(), 11);
                mem::forget(r);
                world.kill(1);
            })
        };
        let other = {
            let (region, world) = (Arc::clone(&region), Arc::clone(&world));
            thread::spawn(move || push(&world, &region.mpmc_owned(2), 22))
        };
        let rx = region.mpmc_owned(3);
        let mut got = Vec::new();
        while got.len() < 2 {
            let seen = world.now();
            match rx.try_claim() {
                Ok(c) => {
                    got.push((!c.is_skipped()).then(|| read_u64(c.as_ptr())));
                    assert_eq!(c.release(), Ok(()));
                }
                Err(PopError::Empty | PopError::Busy) => {
                    // The consumer is its own recoverer.
                    if !rx.skip_dead_writer(|w| world.is_dead(w)) {
                        world.wait_past(seen);
                    }
                }
                Err(e) => panic!("pop: {e}"),
            }
        }
        dying.join().unwrap();
        other.join().unwrap();
        got.sort_unstable();
        assert_eq!(got, [None, Some(22)], "one hole, one message");
        laps_go_on(&region.mpmc_owned(2), &rx, 5);
    });
}

/// Model 2: consumer 2 claims the oldest message and dies holding it; a
/// world consumer adopts the claim while a producer pushes at the wrap
/// (held at that slot: `Full`, then `Busy`). The adopted message is
/// delivered once more, the producer then gets the slot, and nothing is
/// lost or duplicated beyond the one redelivery.
///
/// Before the rewrite there was no adoption: a consumer that died holding
/// a claim left its slot's stamp at `p + 1` for ever, so the producer at
/// the wrap got `Busy` for ever (a loom deadlock here).
#[test]
fn a_dead_readers_claim_is_adopted_while_a_producer_waits_at_the_wrap() {
    loom::model(|| {
        let region = Arc::new(Region::new(RingKind::Mpmc, 2));
        let world = World::new();
        let tx = region.mpmc_owned(1);
        push(&world, &tx, 10);
        push(&world, &tx, 11);
        let dying = {
            let (region, world) = (Arc::clone(&region), Arc::clone(&world));
            thread::spawn(move || {
                let d = region.mpmc_owned(2);
                let c = d.try_claim().unwrap();
                assert_eq!(read_u64(c.as_ptr()), 10);
                mem::forget(c);
                world.kill(2);
            })
        };
        let producer = {
            let world = Arc::clone(&world);
            thread::spawn(move || push(&world, &tx, 12))
        };
        let rx = region.mpmc_owned(3);
        world.wait_dead(2);
        let again = rx
            .adopt_dead_reader(|w| world.is_dead(w))
            .expect("the dead consumer's claim");
        assert!(!again.is_skipped());
        assert_eq!(read_u64(again.as_ptr()), 10, "redelivered");
        assert_eq!(again.release(), Ok(()));
        world.bump();
        assert!(
            rx.adopt_dead_reader(|w| world.is_dead(w)).is_err(),
            "adopted once only"
        );
        assert_eq!(pop(&world, &rx), Some(11));
        assert_eq!(pop(&world, &rx), Some(12));
        dying.join().unwrap();
        producer.join().unwrap();
        laps_go_on(&region.mpmc_owned(1), &rx, 5);
    });
}

/// Model 2b: consumer 2 is taken for dead (wrongly) while it holds a claim,
/// and releases it late, racing the adoption. Never do both releases
/// succeed: if the claim was adopted, exactly one of them returns
/// `Err(Recovered)`. No stamp is rewound: laps go on.
///
/// This checks only what the release CAS guarantees; which of the two
/// releases wins is checked by the model below.
///
/// Before the rewrite a release was a plain store of `p + S`. Mutation
/// shown: with `Claim::free` a plain store both releases return `Ok` and
/// this model fails.
#[test]
fn a_late_release_races_the_adoption_of_its_claim() {
    loom::model(|| {
        let region = Arc::new(Region::new(RingKind::Mpmc, 2));
        let world = World::new();
        let tx = region.mpmc_owned(1);
        push(&world, &tx, 10);
        let late = {
            let (region, world) = (Arc::clone(&region), Arc::clone(&world));
            thread::spawn(move || {
                let d = region.mpmc_owned(2);
                let c = d.try_claim().unwrap();
                assert_eq!(read_u64(c.as_ptr()), 10);
                world.kill(2);
                let released = c.release();
                world.bump();
                released
            })
        };
        let rx = region.mpmc_owned(3);
        world.wait_dead(2);
        let adopted = rx.adopt_dead_reader(|w| world.is_dead(w)).ok().map(|c| {
            assert_eq!(read_u64(c.as_ptr()), 10);
            let released = c.release();
            world.bump();
            released
        });
        let late = late.join().unwrap();
        match (late, adopted) {
            // Released before the adoption looked: nothing to adopt.
            (Ok(()), None) => {}
            (Ok(()), Some(Err(Recovered))) | (Err(Recovered), Some(Ok(()))) => {}
            other => panic!("late release and adoption: {other:?}"),
        }
        laps_go_on(&tx, &rx, 5);
    });
}

/// Model 2c: as 2b, with a producer pushing at the wrap. If the claim was
/// adopted, the adopter must keep the slot until it releases it: its read
/// is of the adopted message, its release succeeds, and the late release
/// fails with `Recovered` (as `Claim::release` documents).
///
/// The ring failed it when adoption changed only the owner word (a release
/// CASes only the stamp, `p + 1 -> p + S`, so the late release still
/// succeeded after the adoption and freed the slot while the adopter read
/// it: the producer wrote the payload under the adopter's read, and the
/// adopter's own release was the one refused). The adopter now also marks
/// the stamp `ADOPTED`, which the late release's CAS does not expect.
#[test]
fn an_adopted_claim_is_not_freed_by_a_late_release() {
    loom::model(|| {
        let region = Arc::new(Region::new(RingKind::Mpmc, 2));
        let world = World::new();
        let tx = region.mpmc_owned(1);
        push(&world, &tx, 10);
        push(&world, &tx, 11);
        let late = {
            let (region, world) = (Arc::clone(&region), Arc::clone(&world));
            thread::spawn(move || {
                let d = region.mpmc_owned(2);
                let c = d.try_claim().unwrap();
                assert_eq!(read_u64(c.as_ptr()), 10);
                world.kill(2);
                let released = c.release();
                world.bump();
                released
            })
        };
        let rx = region.mpmc_owned(3);
        world.wait_dead(2);
        assert_eq!(pop(&world, &rx), Some(11));
        let producer = {
            let world = Arc::clone(&world);
            thread::spawn(move || push(&world, &tx, 12))
        };
        if let Ok(c) = rx.adopt_dead_reader(|w| world.is_dead(w)) {
            assert_eq!(read_u64(c.as_ptr()), 10, "the adopted message");
            assert_eq!(c.release(), Ok(()), "the adopter's release");
            world.bump();
            assert_eq!(late.join().unwrap(), Err(Recovered), "the late release");
        } else {
            assert_eq!(late.join().unwrap(), Ok(()));
        }
        producer.join().unwrap();
        assert_eq!(pop(&world, &rx), Some(12));
    });
}

/// Model 3: a consumer holding a claim on the slot a producer needs at the
/// wrap makes the producer see `Busy` (retry: not full), never `Full` once
/// the claim is visible and never `Corrupted`; after the release the
/// producer gets the slot. Capacity 2 over 2 slots.
///
/// Before the rewrite this was right too (Vyukov's stamps); it guards the
/// owned mode's claim path, where the head moves after the owner CAS (and
/// may be helped), against reporting a held slot as full, which makes a
/// channel sender park with its wakeup already spent.
#[test]
fn a_held_slot_at_the_wrap_is_busy_not_full() {
    loom::model(|| {
        let region = Arc::new(Region::new(RingKind::Mpmc, 2));
        let world = World::new();
        let tx = region.mpmc_owned(1);
        push(&world, &tx, 10);
        push(&world, &tx, 11);
        let flags = Arc::new((AtomicBool::new(false), AtomicBool::new(false)));
        let consumer = {
            let (region, flags) = (Arc::clone(&region), Arc::clone(&flags));
            thread::spawn(move || {
                let ring = region.mpmc_owned(2);
                let c = ring.try_claim().unwrap();
                assert_eq!(read_u64(c.as_ptr()), 10);
                // Release (both): pair with the Acquire loads below.
                flags.0.store(true, Ordering::Release);
                assert_eq!(c.release(), Ok(()));
                flags.1.store(true, Ordering::Release);
            })
        };
        wait_for_wrap(&tx, &flags.0, &flags.1, true);
        consumer.join().unwrap();
        let rx = region.mpmc_owned(3);
        assert_eq!(pop(&world, &rx), Some(11));
        assert_eq!(pop(&world, &rx), Some(12));
        laps_go_on(&tx, &rx, 3);
    });
}

/// Model 3b: the same at exact capacity 1 over 2 slots, where the slot at
/// the wrap is held while the ring is empty: `Busy`, never `Full`.
#[test]
fn a_held_slot_at_the_wrap_is_busy_at_exact_capacity() {
    loom::model(|| {
        let region = Arc::new(Region::new(RingKind::Mpmc, 1));
        let world = World::new();
        let tx = region.mpmc_owned(1);
        push(&world, &tx, 10);
        let flags = Arc::new((AtomicBool::new(false), AtomicBool::new(false)));
        let consumer = {
            let (region, flags) = (Arc::clone(&region), Arc::clone(&flags));
            thread::spawn(move || {
                let ring = region.mpmc_owned(2);
                let c = ring.try_claim().unwrap();
                assert_eq!(read_u64(c.as_ptr()), 10);
                // Release (both): pair with the Acquire loads in the model.
                flags.0.store(true, Ordering::Release);
                assert_eq!(c.release(), Ok(()));
                flags.1.store(true, Ordering::Release);
            })
        };
        let rx = region.mpmc_owned(3);
        // Acquire: pairs with the consumer's Release; its claim moved the
        // head, so the one message in flight is held, not queued.
        while !flags.0.load(Ordering::Acquire) {
            thread::yield_now();
        }
        let r = tx.try_reserve().expect("capacity 1, nothing queued");
        write_u64(r.as_mut_ptr(), 11);
        assert_eq!(r.commit(), Ok(()));
        assert_eq!(pop(&world, &rx), Some(11));
        wait_for_wrap(&tx, &flags.0, &flags.1, false);
        consumer.join().unwrap();
        assert_eq!(pop(&world, &rx), Some(12));
        laps_go_on(&tx, &rx, 3);
    });
}

/// Pushes 12 at the wrap while a consumer may hold the slot: `Full` only
/// while the claim is not yet visible (and only if `full_before_claim`),
/// `Busy` only while the release is not yet visible.
fn wait_for_wrap(tx: &Ring, held: &AtomicBool, released: &AtomicBool, full_before_claim: bool) {
    loop {
        // Acquire (both): pair with the consumer's Release stores, so the
        // head and stamp moves they follow are visible to the reserve.
        let was_held = held.load(Ordering::Acquire);
        let was_released = released.load(Ordering::Acquire);
        match tx.try_reserve() {
            Ok(r) => {
                write_u64(r.as_mut_ptr(), 12);
                assert_eq!(r.commit(), Ok(()));
                return;
            }
            Err(PushError::Full) => {
                assert!(
                    full_before_claim && !was_held,
                    "Full while the wrap slot is held"
                );
            }
            Err(PushError::Busy) => assert!(!was_released, "Busy after the release"),
            Err(e) => panic!("{e}"),
        }
        thread::yield_now();
    }
}

/// Model 4: two producers race the exact-capacity check (capacity 1 over
/// 2 slots) while a consumer pops: the ring never holds more than its
/// capacity, nothing is `Corrupted`, and every message that was pushed is
/// received once.
///
/// In the owned mode the capacity check comes before the owner CAS and the
/// enqueue index moves after it (maybe helped), so a producer that lost
/// the CAS re-checks against the moved index. Before the rewrite (index
/// CAS right after the check) this was right too.
#[test]
fn two_producers_race_the_exact_capacity_check() {
    exact_capacity(1, 0);
}

/// Model 4b: as model 4 with capacity 3 over 4 slots, two messages queued
/// before the race.
#[test]
fn two_producers_race_the_exact_capacity_check_at_three() {
    exact_capacity(3, 2);
}

fn exact_capacity(capacity: u64, queued: u64) {
    loom::model(move || {
        let region = Arc::new(Region::new(RingKind::Mpmc, capacity));
        let world = World::new();
        for i in 0..queued {
            push(&world, &region.mpmc_owned(4), i);
        }
        // Claims the consumer has begun: a producer's reservation at
        // position `p` needs `p - begun < capacity`.
        let begun = Arc::new(AtomicU64::new(0));
        let producers: Vec<_> = (1..=2u64)
            .map(|who| {
                let (region, begun) = (Arc::clone(&region), Arc::clone(&begun));
                thread::spawn(move || match region.mpmc_owned(who).try_reserve() {
                    Ok(r) => {
                        // SeqCst: a claim whose head move the reserve saw
                        // began before it (its SeqCst increment precedes its
                        // Release head CAS, which the reserve's Acquire head
                        // load read), so this load counts it.
                        let begun = begun.load(Ordering::SeqCst);
                        assert!(
                            r.position() < capacity + begun,
                            "position {} reserved with {begun} claims begun: over capacity {capacity}",
                            r.position()
                        );
                        write_u64(r.as_mut_ptr(), 10 * who);
                        assert_eq!(r.commit(), Ok(()));
                        Some(10 * who)
                    }
                    Err(PushError::Full | PushError::Busy) => None,
                    Err(e) => panic!("{e}"),
                })
            })
            .collect();
        let rx = region.mpmc_owned(3);
        // SeqCst: see the producers.
        begun.fetch_add(1, Ordering::SeqCst);
        let popped = match rx.try_pop_with(read_u64) {
            Ok(v) => Some(v),
            Err(PopError::Empty | PopError::Busy) => None,
            Err(e) => panic!("{e}"),
        };
        let mut pushed: Vec<u64> = (0..queued).collect();
        pushed.extend(producers.into_iter().filter_map(|p| p.join().unwrap()));
        let mut got: Vec<u64> = popped.into_iter().collect();
        let mut left = 0;
        while let Ok(v) = rx.try_pop_with(read_u64) {
            got.push(v);
            left += 1;
        }
        assert!(left <= capacity, "{left} messages in a ring of {capacity}");
        pushed.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, pushed, "each message exactly once");
    });
}

/// Model 5: two owned producers push two messages each through a ring of
/// 2 slots (two laps) to one consumer: every message exactly once, each
/// producer's messages in order, no `Corrupted`.
///
/// It catches a stale producer claiming a later lap's slot: one that read
/// `stamp == p`, was preempted while the slot went round a lap and was
/// claimed for `p + 2`, then took the owner word over that claim. Shown by
/// mutation: without the `fresh` / `reading(owner, prev)` check in
/// `reserve` this model fails (`Corrupted`). Before the rewrite the claim
/// was the index CAS alone, which a stale producer cannot win.
///
/// At `LOOM_MAX_PREEMPTIONS=3` this model did not finish in 50 minutes
/// here; model 5b below is the same race in a shape that does (about 12
/// minutes), and both run at bound 2 in `.ci/run`.
#[test]
fn two_producers_one_consumer_over_two_laps() {
    loom::model(|| {
        let region = Arc::new(Region::new(RingKind::Mpmc, 2));
        let world = World::new();
        let producers: Vec<_> = (1..=2u64)
            .map(|who| {
                let (region, world) = (Arc::clone(&region), Arc::clone(&world));
                thread::spawn(move || {
                    let tx = region.mpmc_owned(who);
                    for i in 0..2 {
                        push(&world, &tx, 10 * who + i);
                    }
                })
            })
            .collect();
        let rx = region.mpmc_owned(3);
        let mut got = Vec::new();
        while got.len() < 4 {
            got.push(pop(&world, &rx).expect("no slot is skipped"));
        }
        for p in producers {
            p.join().unwrap();
        }
        for who in 1..=2u64 {
            let mine: Vec<u64> = got.iter().copied().filter(|v| v / 10 == who).collect();
            assert_eq!(mine, [10 * who, 10 * who + 1], "in order, once");
        }
    });
}

/// Model 5b: the same stale-lap race in its smallest shape, small enough to
/// explore at `LOOM_MAX_PREEMPTIONS=3`: a ring of one slot, producer 1
/// pushes one message and producer 2 two, so the slot goes round a lap
/// while producer 1 may still hold a stale look at its stamp. Every message
/// exactly once, producer 2's in order, no `Corrupted`. Shown by mutation:
/// without the `fresh` / `reading(owner, prev)` check in `reserve` it fails
/// at bound 1 (`Corrupted`: producer 1 takes the owner word over producer
/// 2's claim of the next lap).
#[test]
fn a_stale_producer_races_a_lap_of_a_one_slot_ring() {
    loom::model(|| {
        let region = Arc::new(Region::new(RingKind::Mpmc, 1));
        let world = World::new();
        let producers: Vec<_> = [(1u64, 1u64), (2, 2)]
            .into_iter()
            .map(|(who, count)| {
                let (region, world) = (Arc::clone(&region), Arc::clone(&world));
                thread::spawn(move || {
                    let tx = region.mpmc_owned(who);
                    for i in 0..count {
                        push(&world, &tx, 10 * who + i);
                    }
                })
            })
            .collect();
        let rx = region.mpmc_owned(3);
        let mut got = Vec::new();
        while got.len() < 3 {
            got.push(pop(&world, &rx).expect("no slot is skipped"));
        }
        for p in producers {
            p.join().unwrap();
        }
        let second: Vec<u64> = got.iter().copied().filter(|v| v / 10 == 2).collect();
        assert_eq!(second, [20, 21], "in order, once");
        assert_eq!(got.iter().filter(|&&v| v == 10).count(), 1, "once");
    });
}
