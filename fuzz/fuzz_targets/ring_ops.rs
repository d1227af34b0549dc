//! Sequences of ring operations, structure-aware (`arbitrary`), on an SPSC
//! or an MPMC ring in a heap region, while a peer overwrites chosen
//! control words, stamps and owner words between operations.
//!
//! SPSC: push, batch push, conditional push, pop, batch pop, front and
//! release, the counts, and detaching and attaching either side. MPMC
//! (anonymous or owned handles): reserve, commit, claim, release, push,
//! pop, owned handles that die holding slots (their claims are forgotten,
//! as a killed process leaves them) or detach, and the survivors'
//! recovery calls under an honest or a lying liveness oracle.
//!
//! What is checked:
//! - until the peer changes a word, the ring behaves exactly as a model of
//!   it does: every result (value, `Full`, `Empty`, `Busy`, counts) and
//!   every message read is the one the model predicts, so no message is
//!   lost, torn, reordered or invented, and a recovered slot is skipped or
//!   delivered again exactly as the recovery rules say;
//! - after the peer changed a word: every operation returns (a value or an
//!   error), every pointer the ring hands out is the payload of one of its
//!   slots (so a message is never longer than its slot), counts stay
//!   within the capacity, and every message read is one some producer
//!   wrote into a slot (or a slot's initial zeros): the ring can be made
//!   to repeat or drop messages, never to read outside its slots or to
//!   produce bytes nobody wrote.

#![no_main]

use std::collections::{BTreeMap, VecDeque};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shmlane_ring::{mpmc, spsc, HeapRegion, PopError, PushError, RingKind, RingLayout};

/// Held reservations and claims at most (more are let go at once).
const MAX_HELD: usize = 8;
/// MPMC handles in use at once.
const HANDLES: usize = 3;
/// MPMC handles in all: each death or detach attaches a fresh one.
const POOL: usize = 12;

#[derive(Arbitrary, Debug)]
enum Input {
    Spsc(Shape, Vec<SpscOp>),
    Mpmc {
        shape: Shape,
        owned: bool,
        ops: Vec<MpmcOp>,
    },
}

#[derive(Arbitrary, Debug)]
struct Shape {
    capacity: u8,
    words: u8,
}

#[derive(Arbitrary, Debug)]
enum Word {
    Head,
    Tail,
    Stamp(u8),
    Owner(u8),
}

#[derive(Arbitrary, Debug)]
enum Value {
    Raw(u64),
    Add(i8),
    Flip(u8),
}

#[derive(Arbitrary, Debug)]
struct Peer {
    word: Word,
    value: Value,
}

#[derive(Arbitrary, Debug)]
enum SpscOp {
    Push,
    PushBatch(u8),
    PushIf(bool),
    Pop,
    PopBatch(u8),
    Front,
    ReleaseFront,
    Available,
    Refresh,
    Free,
    Len,
    ReattachProducer,
    ReattachConsumer,
    Peer(Peer),
}

#[derive(Arbitrary, Debug)]
enum MpmcOp {
    Reserve { h: u8, spin: bool },
    Commit(u8),
    Claim { h: u8, spin: bool },
    Release(u8),
    PushWith(u8),
    PopWith(u8),
    SkipDead { h: u8, lie: bool },
    AdoptDead { h: u8, lie: bool },
    Die(u8),
    Detach(u8),
    Len(u8),
    Peer(Peer),
}

/// A ring region on the heap, and where things are in it.
struct Region {
    /// The allocation (the ring crate's own heap region).
    heap: HeapRegion,
    base: NonNull<u8>,
    layout: RingLayout,
    /// Offset of slot 0's header (the region's layout puts the slots
    /// after the two control lines).
    slots_offset: usize,
    /// Offset of a payload within its slot.
    payload_offset: usize,
    /// Payload words (8 bytes) per slot.
    words: usize,
}

impl Region {
    fn new(kind: RingKind, shape: &Shape) -> Self {
        let capacity = u64::from(shape.capacity % 8) + 1;
        let words = usize::from(shape.words % 4) + 1;
        let heap = HeapRegion::new(kind, capacity, words * 8, 8).unwrap();
        let (base, layout) = (heap.base(), *heap.layout());
        let slots_offset = layout.region_len() - layout.slots() as usize * layout.stride();
        // The slot header (a stamp, and for MPMC an owner word) rounded up
        // to the payload alignment (8).
        let payload_offset = match kind {
            RingKind::Mpmc => 16,
            _ => 8,
        };
        Self {
            heap,
            base,
            layout,
            slots_offset,
            payload_offset,
            words,
        }
    }

    fn len(&self) -> usize {
        self.heap.len()
    }

    fn slots(&self) -> u64 {
        self.layout.slots()
    }

    fn capacity(&self) -> u64 {
        self.layout.capacity()
    }

    fn header(&self, slot: u64) -> usize {
        self.slots_offset + (slot % self.slots()) as usize * self.layout.stride()
    }

    fn word(&self, w: &Word) -> &AtomicU64 {
        let offset = match *w {
            Word::Head => 0,
            Word::Tail => 128,
            Word::Stamp(i) => self.header(u64::from(i)),
            Word::Owner(i) if self.layout.kind() == RingKind::Mpmc => self.header(u64::from(i)) + 8,
            Word::Owner(i) => self.header(u64::from(i)),
        };
        // SAFETY: an 8-aligned offset inside the region (a control word or
        // a slot header word), which outlives `self`'s borrow; the ring
        // accesses it only atomically, as the peer does here.
        unsafe { AtomicU64::from_ptr(self.base.as_ptr().add(offset).cast()) }
    }

    /// The peer's write; whether it changed the word.
    fn peer(&self, p: &Peer) -> bool {
        let word = self.word(&p.word);
        let old = word.load(Ordering::Relaxed);
        let new = match p.value {
            Value::Raw(v) => v,
            Value::Add(d) => old.wrapping_add(i64::from(d) as u64),
            Value::Flip(bit) => old ^ 1 << (bit % 64),
        };
        word.store(new, Ordering::Relaxed);
        new != old
    }

    /// The slot whose payload `p` is; panics for any other pointer.
    fn slot_of(&self, p: *const u8) -> u64 {
        let offset = (p as usize)
            .checked_sub(self.base.as_ptr() as usize + self.slots_offset + self.payload_offset)
            .expect("a payload pointer below the slots");
        let stride = self.layout.stride();
        assert_eq!(
            offset % stride,
            0,
            "a pointer inside a slot, not its payload"
        );
        let slot = (offset / stride) as u64;
        assert!(slot < self.slots(), "a payload pointer past the last slot");
        assert!(self.header(slot) + self.payload_offset + self.words * 8 <= self.len());
        slot
    }

    /// Writes message `id` into the payload at `p` (every word holds it).
    fn write(&self, p: *mut u8, id: u64) {
        self.slot_of(p);
        for i in 0..self.words {
            // SAFETY: `p` is a slot payload (checked) of `words * 8` bytes,
            // 8-aligned, that the ring lent this producer.
            unsafe { p.cast::<u64>().add(i).write_volatile(id) };
        }
    }

    /// The message in the payload at `p`: every word must hold the same
    /// id, which some producer wrote (`next` is the first id not written
    /// yet), or zero if no producer ever wrote the slot.
    fn read(&self, p: *const u8, next: u64) -> u64 {
        self.slot_of(p);
        // SAFETY: as in `write`, lent to this consumer.
        let id = unsafe { p.cast::<u64>().read_volatile() };
        for i in 1..self.words {
            // SAFETY: as above.
            let w = unsafe { p.cast::<u64>().add(i).read_volatile() };
            assert_eq!(w, id, "a torn message");
        }
        assert!(id < next, "message {id} was never written (next id {next})");
        id
    }
}

/// What the SPSC ring holds, as the model has it.
struct SpscModel {
    head: u64,
    tail: u64,
    /// Ids at positions `head..tail`.
    msgs: VecDeque<u64>,
    /// Published batches: first position -> one past the last.
    batches: BTreeMap<u64, u64>,
    cached_head: u64,
    cached_tail: u64,
    capacity: u64,
}

impl SpscModel {
    fn free(&mut self) -> u64 {
        let used = self.tail - self.cached_head;
        if used < self.capacity {
            return self.capacity - used;
        }
        self.cached_head = self.head;
        self.capacity - (self.tail - self.head)
    }

    fn look(&mut self, precise: bool, want: u64) -> u64 {
        let mut end = self.cached_tail.max(self.head);
        while end - self.head < want.min(self.capacity) {
            match self.batches.get(&end) {
                Some(&e) => end = e,
                None => break,
            }
        }
        if precise {
            end = end.max(self.tail);
        }
        self.cached_tail = end;
        end - self.head
    }

    fn publish(&mut self, ids: &[u64]) {
        if !ids.is_empty() {
            let end = self.tail + ids.len() as u64;
            self.batches.insert(self.tail, end);
            self.tail = end;
            self.msgs.extend(ids);
        }
    }

    fn pop(&mut self, n: u64) -> Vec<u64> {
        self.head += n;
        (0..n).map(|_| self.msgs.pop_front().unwrap()).collect()
    }
}

fn run_spsc(shape: &Shape, ops: &[SpscOp]) {
    let region = Region::new(RingKind::Spsc, shape);
    let (base, len, layout) = (region.base, region.len(), region.layout);
    // SAFETY: the region outlives both handles; one of each is in use at
    // a time (a side attached again replaces the old handle, which is not
    // used after).
    let attach_tx = || unsafe { spsc::Producer::attach(base, len, &layout) }.unwrap();
    // SAFETY: as above.
    let attach_rx = || unsafe { spsc::Consumer::attach(base, len, &layout) }.unwrap();
    let (mut tx, mut rx) = (attach_tx(), attach_rx());
    let cap = region.capacity();
    let mut m = SpscModel {
        head: 0,
        tail: 0,
        msgs: VecDeque::new(),
        batches: BTreeMap::new(),
        cached_head: 0,
        cached_tail: 0,
        capacity: cap,
    };
    // Whether the model still holds: no peer write changed anything yet.
    let mut exact = true;
    let mut next = 1u64;
    for op in ops {
        match op {
            SpscOp::Push | SpscOp::PushBatch(_) => {
                let max = match op {
                    SpscOp::PushBatch(n) => u64::from(*n % 10),
                    _ => 1,
                };
                let first = next;
                let mut ids = Vec::new();
                let r = tx.write_batch(max, |i, p| {
                    assert_eq!(i, ids.len() as u64);
                    if exact {
                        assert_eq!(region.slot_of(p), (m.tail + i) % region.slots());
                    }
                    region.write(p, first + i);
                    ids.push(first + i);
                });
                next += ids.len() as u64;
                if let Ok(n) = r {
                    assert_eq!(n, ids.len() as u64);
                    assert!(n <= max);
                }
                if exact {
                    let n = m.free().min(max);
                    assert_eq!(r, Ok(n));
                    m.publish(&ids);
                }
            }
            SpscOp::PushIf(publish) => {
                let id = next;
                let mut offered = false;
                let r = tx.try_push_if(|p| {
                    if exact {
                        assert_eq!(region.slot_of(p), m.tail % region.slots());
                    }
                    region.write(p, id);
                    offered = true;
                    *publish
                });
                if offered {
                    next += 1;
                }
                assert_eq!(offered, r.is_ok());
                if exact {
                    if m.free() == 0 {
                        assert_eq!(r, Err(PushError::Full));
                    } else {
                        assert_eq!(r, Ok(*publish));
                        if *publish {
                            m.publish(&[id]);
                        }
                    }
                }
            }
            SpscOp::Pop | SpscOp::PopBatch(_) => {
                let max = match op {
                    SpscOp::PopBatch(n) => u64::from(*n % 10),
                    _ => 1,
                };
                let mut got = Vec::new();
                let r = rx.read_batch(max, |i, p| {
                    assert_eq!(i, got.len() as u64);
                    got.push(region.read(p, next));
                });
                if let Ok(n) = r {
                    assert_eq!(n, got.len() as u64);
                    assert!(n <= max);
                }
                if exact {
                    let n = m.look(false, max).min(max);
                    assert_eq!(r, Ok(n));
                    assert_eq!(got, m.pop(n), "messages lost, reordered or invented");
                }
            }
            SpscOp::Front => {
                let r = rx.front();
                let id = r.map(|p| region.read(p, next));
                if exact {
                    match m.look(false, 1) {
                        0 => assert_eq!(id, Err(PopError::Empty)),
                        _ => assert_eq!(id, Ok(m.msgs[0])),
                    }
                }
            }
            SpscOp::ReleaseFront => {
                let released = rx.release_front();
                if exact {
                    let known = m.cached_tail > m.head;
                    assert_eq!(released, known);
                    if known {
                        m.pop(1);
                    }
                }
            }
            SpscOp::Available | SpscOp::Refresh => {
                let precise = matches!(op, SpscOp::Refresh);
                let r = if precise {
                    rx.refresh()
                } else {
                    rx.available()
                };
                if let Ok(n) = r {
                    assert!(n <= cap);
                }
                if exact {
                    assert_eq!(r, Ok(m.look(precise, 1)));
                }
            }
            SpscOp::Free => {
                let r = tx.free();
                if let Ok(n) = r {
                    assert!(n <= cap);
                }
                if exact {
                    assert_eq!(r, Ok(m.free()));
                }
            }
            SpscOp::Len => {
                let (a, b) = (tx.len(), rx.len());
                assert!(a <= cap && b <= cap);
                if exact {
                    assert_eq!((a, b), (m.msgs.len() as u64, m.msgs.len() as u64));
                    assert_eq!(tx.is_empty(), m.msgs.is_empty());
                }
            }
            SpscOp::ReattachProducer => {
                // Detaching is dropping (no `Drop` impl: nothing is left to
                // do); the old producer is never used again.
                tx = attach_tx();
                m.cached_head = m.head;
            }
            SpscOp::ReattachConsumer => {
                // As for the producer.
                rx = attach_rx();
                m.cached_tail = m.head;
                m.look(true, 1);
            }
            SpscOp::Peer(p) => {
                if region.peer(p) {
                    exact = false;
                }
            }
        }
        if exact {
            // The consumer's attach read a sound index, so it is synced,
            // and the end it knows is where a batch starts (or the
            // producer's next one): the head slot's stamp alone finds what
            // comes next, which is what lets the channel skip `refresh`.
            assert!(rx.synced(), "a consumer that read a sound index is synced");
            let end = m.cached_tail.max(m.head);
            assert!(
                end == m.tail || m.batches.contains_key(&end),
                "a synced consumer's known end {end} is inside a batch"
            );
        }
    }
}

/// An MPMC position as the model has it (positions not in the map are
/// free for their next lap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pos {
    Reserved {
        id: u64,
        who: usize,
    },
    Committed {
        id: u64,
    },
    /// Skipped by a survivor: its producer was taken for dead.
    Skipped,
    Claimed {
        /// `None` for a skipped slot.
        id: Option<u64>,
        who: usize,
        adopted: bool,
    },
}

enum Hold<'a> {
    Res(mpmc::Reservation<'a>),
    /// The claim, and whether its stamp was adopted when it was taken.
    Claim(mpmc::Claim<'a>, bool),
}

struct Held<'a> {
    who: usize,
    pos: u64,
    hold: Hold<'a>,
}

struct MpmcModel {
    head: u64,
    tail: u64,
    slots: u64,
    capacity: u64,
    map: BTreeMap<u64, Pos>,
    dead: [bool; POOL],
}

impl MpmcModel {
    fn reserve(&self, precise: bool) -> Result<u64, PushError> {
        let (tail, head) = (self.tail, self.head);
        if tail >= self.slots && self.map.contains_key(&(tail - self.slots)) {
            return Err(if !precise || tail - head >= self.slots {
                PushError::Full
            } else {
                PushError::Busy
            });
        }
        if self.capacity < self.slots && tail - head >= self.capacity {
            return Err(PushError::Full);
        }
        Ok(tail)
    }

    /// The position claimed, its id and whether it is skipped.
    fn claim(&self, precise: bool) -> Result<(u64, Option<u64>), PopError> {
        if self.head == self.tail {
            return Err(PopError::Empty);
        }
        match self.map[&self.head] {
            Pos::Reserved { .. } if precise => Err(PopError::Busy),
            Pos::Reserved { .. } => Err(PopError::Empty),
            Pos::Committed { id } => Ok((self.head, Some(id))),
            Pos::Skipped => Ok((self.head, None)),
            Pos::Claimed { .. } => unreachable!("a claimed position at the head"),
        }
    }

    fn claimed(&mut self, pos: u64, id: Option<u64>, who: usize) {
        self.map.insert(
            pos,
            Pos::Claimed {
                id,
                who,
                adopted: false,
            },
        );
        self.head += 1;
    }

    /// A commit of the reservation of `pos`: whether it succeeds.
    fn commit(&mut self, pos: u64) -> bool {
        match self.map.get(&pos) {
            Some(&Pos::Reserved { id, .. }) => {
                self.map.insert(pos, Pos::Committed { id });
                true
            }
            _ => false,
        }
    }

    /// A release of a claim of `pos` taken with `adopted`: whether it
    /// succeeds (the slot's stamp is still the one the claim saw).
    fn release(&mut self, pos: u64, adopted: bool) -> bool {
        match self.map.get(&pos) {
            Some(&Pos::Claimed { adopted: a, .. }) if a == adopted => {
                self.map.remove(&pos);
                true
            }
            _ => false,
        }
    }

    /// The liveness oracle, by owner id (pool index + 1): a lying one
    /// calls everyone dead; an honest one the handles that died or
    /// detached, and ids that name no handle (a peer's garbage), as
    /// `Segment::owner_is_dead` does.
    fn is_dead(&self, lie: bool) -> impl Fn(u64) -> bool + '_ {
        move |who| {
            lie || who
                .checked_sub(1)
                .and_then(|i| self.dead.get(usize::try_from(i).ok()?))
                .copied()
                .unwrap_or(true)
        }
    }
}

/// Lets a held slot go as dropping it does: a reservation is published,
/// a claim freed.
fn let_go(m: &mut MpmcModel, exact: bool, held: Held<'_>) {
    match held.hold {
        Hold::Res(r) => {
            drop(r);
            if exact {
                m.commit(held.pos);
            }
        }
        Hold::Claim(c, adopted) => {
            drop(c);
            if exact {
                m.release(held.pos, adopted);
            }
        }
    }
}

fn run_mpmc(shape: &Shape, owned: bool, ops: &[MpmcOp]) {
    let region = Region::new(RingKind::Mpmc, shape);
    let (base, len, layout) = (region.base, region.len(), region.layout);
    let pool: Vec<mpmc::Ring> = (0..POOL)
        .map(|i| {
            // SAFETY: the region outlives every handle; all handles are
            // owned, or all anonymous.
            let ring = unsafe { mpmc::Ring::attach(base, len, &layout) }.unwrap();
            if owned {
                ring.with_owner(i as u64 + 1)
            } else {
                ring
            }
        })
        .collect();
    let mut m = MpmcModel {
        head: 0,
        tail: 0,
        slots: region.slots(),
        capacity: region.capacity(),
        map: BTreeMap::new(),
        dead: [false; POOL],
    };
    let mut active: [usize; HANDLES] = [0, 1, 2];
    let mut fresh = HANDLES;
    let mut exact = true;
    let mut next = 1u64;
    let mut held: Vec<Held<'_>> = Vec::new();
    for op in ops {
        match *op {
            MpmcOp::Reserve { h, spin } => {
                let w = active[usize::from(h) % HANDLES];
                let r = if spin {
                    pool[w].try_reserve_spin()
                } else {
                    pool[w].try_reserve()
                };
                if exact {
                    assert_eq!(
                        r.as_ref().map(|r| r.position()).map_err(|e| *e),
                        m.reserve(!spin)
                    );
                }
                let Ok(r) = r else { continue };
                let pos = r.position();
                if exact {
                    assert_eq!(region.slot_of(r.as_mut_ptr()), pos % m.slots);
                }
                region.write(r.as_mut_ptr(), next);
                if exact {
                    m.map.insert(pos, Pos::Reserved { id: next, who: w });
                    m.tail += 1;
                }
                next += 1;
                let hold = Hold::Res(r);
                keep(&mut held, &mut m, exact, Held { who: w, pos, hold });
            }
            MpmcOp::Commit(k) => {
                let Some(i) = pick(&held, k, |h| matches!(h, Hold::Res(_))) else {
                    continue;
                };
                let Held { pos, hold, .. } = held.remove(i);
                let Hold::Res(r) = hold else { unreachable!() };
                let done = r.commit();
                if exact {
                    assert_eq!(done.is_ok(), m.commit(pos), "commit of position {pos}");
                }
            }
            MpmcOp::Claim { h, spin } => {
                let w = active[usize::from(h) % HANDLES];
                let r = if spin {
                    pool[w].try_claim_spin()
                } else {
                    pool[w].try_claim()
                };
                let want = exact.then(|| m.claim(!spin));
                let c = match r {
                    Ok(c) => c,
                    Err(e) => {
                        if let Some(want) = want {
                            assert_eq!(Err(e), want);
                        }
                        continue;
                    }
                };
                let pos = match want {
                    Some(want) => {
                        let (pos, id) = want.expect("a claim the model does not allow");
                        check_claim(&region, &c, pos, id, next);
                        m.claimed(pos, id, w);
                        pos
                    }
                    None => {
                        if !c.is_skipped() {
                            region.read(c.as_ptr(), next);
                        }
                        0
                    }
                };
                let hold = Hold::Claim(c, false);
                keep(&mut held, &mut m, exact, Held { who: w, pos, hold });
            }
            MpmcOp::Release(k) => {
                let Some(i) = pick(&held, k, |h| matches!(h, Hold::Claim(..))) else {
                    continue;
                };
                let Held { pos, hold, .. } = held.remove(i);
                let Hold::Claim(c, adopted) = hold else {
                    unreachable!()
                };
                let done = c.release();
                if exact {
                    assert_eq!(done.is_ok(), m.release(pos, adopted), "release of {pos}");
                }
            }
            MpmcOp::PushWith(h) => {
                let w = active[usize::from(h) % HANDLES];
                let want = exact.then(|| m.reserve(true));
                let id = next;
                let mut wrote = None;
                let r = pool[w].try_push_with(|p| {
                    wrote = Some(region.slot_of(p));
                    region.write(p, id);
                });
                assert_eq!(wrote.is_some(), r.is_ok());
                if r.is_ok() {
                    next += 1;
                }
                if let Some(want) = want {
                    assert_eq!(r.map(|()| m.tail), want);
                    if let Some(slot) = wrote {
                        assert_eq!(slot, m.tail % m.slots);
                        m.map.insert(m.tail, Pos::Reserved { id, who: w });
                        assert!(m.commit(m.tail));
                        m.tail += 1;
                    }
                }
            }
            MpmcOp::PopWith(h) => {
                let w = active[usize::from(h) % HANDLES];
                let r = pool[w].try_pop_with(|p| region.read(p, next));
                if exact {
                    // Claims until a message, freeing skipped slots.
                    let want = loop {
                        match m.claim(true) {
                            Ok((pos, id)) => {
                                m.claimed(pos, id, w);
                                assert!(m.release(pos, false));
                                if let Some(id) = id {
                                    break Ok(id);
                                }
                            }
                            Err(e) => break Err(e),
                        }
                    };
                    assert_eq!(r, want, "messages lost, reordered or invented");
                }
            }
            MpmcOp::SkipDead { h, lie } => {
                let w = active[usize::from(h) % HANDLES];
                let skipped = pool[w].skip_dead_writer(m.is_dead(lie));
                if exact {
                    let want = match m.map.get(&m.head) {
                        Some(&Pos::Reserved { who, .. }) if owned => m.is_dead(lie)(who as u64 + 1),
                        _ => false,
                    };
                    assert_eq!(skipped, want);
                    if want {
                        m.map.insert(m.head, Pos::Skipped);
                    }
                }
            }
            MpmcOp::AdoptDead { h, lie } => {
                let w = active[usize::from(h) % HANDLES];
                let r = pool[w].adopt_dead_reader(m.is_dead(lie));
                let want = if !exact {
                    None
                } else if !owned {
                    Some(None)
                } else {
                    let from = m.head.saturating_sub(m.slots);
                    Some((from..m.head).find_map(|p| match m.map.get(&p) {
                        Some(&Pos::Claimed { id, who, .. }) if m.is_dead(lie)(who as u64 + 1) => {
                            Some((p, id))
                        }
                        _ => None,
                    }))
                };
                let c = match r {
                    Ok(c) => c,
                    Err(e) => {
                        if let Some(want) = want {
                            assert_eq!((e, want), (PopError::Empty, None));
                        }
                        continue;
                    }
                };
                let pos = match want {
                    Some(want) => {
                        let (pos, id) = want.expect("an adoption the model does not allow");
                        // Delivered again: the same message.
                        check_claim(&region, &c, pos, id, next);
                        let adopted = Pos::Claimed {
                            id,
                            who: w,
                            adopted: true,
                        };
                        m.map.insert(pos, adopted);
                        pos
                    }
                    None => {
                        if !c.is_skipped() {
                            region.read(c.as_ptr(), next);
                        }
                        0
                    }
                };
                let hold = Hold::Claim(c, true);
                keep(&mut held, &mut m, exact, Held { who: w, pos, hold });
            }
            MpmcOp::Die(h) | MpmcOp::Detach(h) => {
                if fresh == POOL {
                    continue;
                }
                let slot = usize::from(h) % HANDLES;
                let w = active[slot];
                let die = matches!(op, MpmcOp::Die(_)) && owned;
                let mut i = 0;
                while i < held.len() {
                    if held[i].who != w {
                        i += 1;
                        continue;
                    }
                    let gone = held.remove(i);
                    if die {
                        // Killed while holding it: nothing is published
                        // or freed; survivors must recover it.
                        std::mem::forget(gone.hold);
                    } else {
                        let_go(&mut m, exact, gone);
                    }
                }
                // Detached or dead, it never acts on the ring again.
                m.dead[w] = true;
                active[slot] = fresh;
                fresh += 1;
            }
            MpmcOp::Len(h) => {
                let ring = &pool[active[usize::from(h) % HANDLES]];
                let n = ring.len();
                assert!(n <= m.capacity);
                if exact {
                    assert_eq!(n, (m.tail - m.head).min(m.capacity));
                    assert_eq!(ring.is_empty(), m.tail == m.head);
                    assert_eq!(ring.head(), m.head);
                    let ready = matches!(
                        m.map.get(&m.head),
                        Some(Pos::Committed { .. } | Pos::Skipped)
                    );
                    assert_eq!(ring.head_ready(), ready);
                }
            }
            MpmcOp::Peer(ref p) => {
                if region.peer(p) {
                    exact = false;
                }
            }
        }
    }
    // Held slots are let go (published or freed) before the handles and
    // the region go.
    drop(held);
}

/// Holds a reservation or claim, or lets it go if too many are held.
fn keep<'a>(held: &mut Vec<Held<'a>>, m: &mut MpmcModel, exact: bool, h: Held<'a>) {
    if held.len() < MAX_HELD {
        held.push(h);
    } else {
        let_go(m, exact, h);
    }
}

/// Checks a claim of `pos` against the model: its slot, whether it is
/// skipped, and (if not) its message.
fn check_claim(region: &Region, c: &mpmc::Claim<'_>, pos: u64, id: Option<u64>, next: u64) {
    assert_eq!(region.slot_of(c.as_ptr()), pos % region.slots());
    assert_eq!(c.is_skipped(), id.is_none());
    if let Some(id) = id {
        assert_eq!(
            region.read(c.as_ptr(), next),
            id,
            "message at position {pos}"
        );
    }
}

/// The index in `held` of the `k`th holding that `want` accepts, if any.
fn pick(held: &[Held<'_>], k: u8, want: impl Fn(&Hold<'_>) -> bool) -> Option<usize> {
    let matching: Vec<usize> = (0..held.len()).filter(|&i| want(&held[i].hold)).collect();
    (!matching.is_empty()).then(|| matching[usize::from(k) % matching.len()])
}

fuzz_target!(|input: Input| {
    match input {
        Input::Spsc(shape, ops) => run_spsc(&shape, &ops),
        Input::Mpmc { shape, owned, ops } => run_mpmc(&shape, owned, &ops),
    }
});
