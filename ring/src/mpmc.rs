//! Multi-producer multi-consumer ring (after Vyukov's bounded MPMC queue),
//! with per-slot ownership so that survivors can recover from a process
//! that died holding a slot.
//!
//! # Stamps
//!
//! Every slot carries a sequence stamp. For the ever-growing position `p`
//! of a slot with `S` slots:
//! - `stamp == p`: empty, waiting for the producer of position `p`;
//! - `stamp == p + 1`: full, waiting for the consumer of position `p`;
//! - `stamp == SKIP | (p + 1)`: "full" but holding no message: a survivor
//!   recovered it from a producer that died while writing it;
//! - `stamp == ADOPTED | (p + 1)` (with or without `SKIP`): a survivor took
//!   over the claim of a consumer that died holding it;
//! - the consumer frees it by setting `p + S`, the next lap's empty stamp.
//!
//! Positions stay below 2^62 (they grow by one per message), so the top
//! two bits of a stamp are free for [`SKIP`] and [`ADOPTED`].
//!
//! # Two modes
//!
//! A handle from [`Ring::attach`] is *anonymous*: producers claim a position
//! with a CAS on the enqueue index and publish with a store, consumers
//! likewise on the dequeue index: Vyukov's queue as it is, for rings whose
//! users all live in one process (nothing there can die alone).
//!
//! A handle given an owner with [`Ring::with_owner`] is *owned*, for rings
//! shared between processes: every in-flight slot records who holds it in
//! its `owner` word, on the slot's own cache line, and the claim *is* the
//! write of that word:
//!
//! - a producer claims position `p` by a CAS of the slot's owner word to
//!   "writing lap(p), me", then moves the enqueue index past `p` (anyone
//!   who finds the owner word set helps move it, so a producer that dies
//!   between the two steps stalls nobody);
//! - it publishes with a CAS of the stamp `p -> p + 1`, which fails if a
//!   survivor has recovered the slot meanwhile (the message is then
//!   reported as not sent, never published over a recycled slot);
//! - a consumer claims a full slot by a CAS of the owner word to "reading
//!   lap(p), me", then moves the dequeue index (helped the same way), and
//!   frees the slot with a CAS of the stamp to `p + S`;
//! - a survivor skips a dead producer's slot with one CAS of its stamp
//!   (`p -> SKIP | (p + 1)`, [`Ring::skip_dead_writer`]), and adopts a dead
//!   consumer's claim with a CAS of its owner word, then one of its stamp
//!   (`+ ADOPTED`, [`Ring::adopt_dead_reader`]), so the message is
//!   delivered again: at least once, never lost. A death between the two
//!   CASes leaves a claim that the next survivor adopts the same way, and
//!   a late release by the claimer taken for dead fails, either before the
//!   stamp CAS (then the adopter backs off) or after it.
//!
//! Who is dead is the caller's question: the ring takes an oracle
//! (`is_dead(who)`), which over shared memory is the owner's liveness lock.
//! A slot is recovered only when its *recorded* owner is dead, so a live
//! process never has its slot taken.
//!
//! When the capacity asked for is below the slot count, producers also keep
//! the enqueue index within `capacity` of the dequeue index, so the
//! capacity is exact.

use core::marker::PhantomData;
use core::ptr::NonNull;

use crate::layout::{Control, LayoutError, MpmcSlot, MpmcStamp, RingKind, RingLayout};
use crate::sync::{AtomicU64, Ordering, Tracker};
use crate::{HeapRegion, PopError, PushError};
use alloc::sync::Arc;

/// The stamp bit of a slot recovered from a dead producer: consumers take
/// and free it like a full slot, but it holds no message.
pub const SKIP: u64 = 1 << 63;

/// The stamp bit of a claim taken over from a dead consumer: set by the
/// adopter's CAS, so a late release by the original claimer (which expects
/// the stamp it claimed) fails instead of freeing the slot under the
/// adopter.
pub const ADOPTED: u64 = 1 << 62;

/// Both flag bits: a stamp's position is `stamp & !FLAGS`.
const FLAGS: u64 = SKIP | ADOPTED;

/// After a lost index CAS, or a slot found already taken (the index read
/// was stale): spin 2^(n+1) pause hints (n = such losses so far, up to 6),
/// so that contending threads stop taking the index's line from each
/// other and the winner gets to finish. Never yields: a loss means another
/// thread made progress, not that one is preempted. (Without the backoff
/// after a stale index, 4 producers on 2 CPUs with nobody receiving took
/// 2.4x crossbeam's time: `mpsc_parts` in the benches. Starting at 2
/// pauses rather than 1, on an Intel VM: `mpsc_parts shmlane 4` 18-19 ms
/// against 25-31 ms, crossbeam's `bounded_mpsc` and `bounded_mpmc` shapes
/// 0.90x and 0.80x the time, at 4 pauses no better; at half a pause
/// `bounded_mpsc` took 1.19x.)
#[inline]
fn contended(lost: &mut u32) {
    for _ in 0..1u32 << ((*lost).min(6) + 1) {
        core::hint::spin_loop();
    }
    *lost += 1;
}

/// The owner word: `lap (24 bits) | READ | who (38 bits)`.
const LAP_SHIFT: u32 = 40;
const LAP_MASK: u64 = (1 << 24) - 1;
const READ: u64 = 1 << 39;
/// The largest `who` an owned handle may have (0 means "nobody").
pub const MAX_WHO: u64 = (1 << 38) - 1;

/// A handle on an MPMC ring. It is `Sync`: any number of threads (and, over
/// shared memory, processes with their own handles) push and pop at once.
pub struct Ring {
    base: NonNull<u8>,
    layout: RingLayout,
    mask: u64,
    /// log2 of the slot count: `pos >> shift` is the lap of `pos`.
    shift: u32,
    /// Whether `capacity < slots`, so pushes must check the dequeue index.
    limited: bool,
    /// `mask` for a compact layout, whose stamps are stored less their
    /// slot's index (see [`Stamp`]); 0 otherwise.
    bias_mask: u64,
    /// Who this handle claims slots as; 0 for an anonymous handle.
    who: u64,
    /// The heap region this handle keeps alive, if it lives in one
    /// ([`Ring::heap`]).
    _region: Option<Arc<HeapRegion>>,
}

// SAFETY: every access to the region goes through atomics or through slots
// a thread owns by a successful CAS; the attach contract keeps it alive.
unsafe impl Send for Ring {}
// SAFETY: as above; `&Ring` methods synchronise through the atomics only.
unsafe impl Sync for Ring {}

/// A slot that this handle's owner no longer holds: a survivor recovered it
/// while this process was taken for dead. The message was not published
/// (for a producer) or may be delivered again (for a consumer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovered;

impl core::fmt::Display for Recovered {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("the slot was recovered by a survivor")
    }
}

impl Ring {
    /// Attaches an anonymous handle to an initialised MPMC region: for
    /// rings whose handles all live in one process. See
    /// [`with_owner`](Self::with_owner) for rings shared between processes.
    ///
    /// # Errors
    ///
    /// [`LayoutError`] if the region is misaligned or too short.
    ///
    /// # Panics
    ///
    /// If `layout` is not an MPMC layout.
    ///
    /// # Safety
    ///
    /// - `base` is valid for reads and writes of `len` bytes for as long as
    ///   the handle lives, and holds a ring initialised by
    ///   [`RingLayout::init`] with this same layout.
    /// - Every handle on the region is anonymous, or every one is owned:
    ///   the two modes claim slots differently.
    pub unsafe fn attach(
        base: NonNull<u8>,
        len: usize,
        layout: &RingLayout,
    ) -> Result<Self, LayoutError> {
        assert_eq!(
            layout.kind(),
            RingKind::Mpmc,
            "an MPMC handle needs an MPMC layout"
        );
        layout.check_region(base, len)?;
        Ok(Self {
            base,
            layout: *layout,
            mask: layout.slots() - 1,
            shift: layout.slots().trailing_zeros(),
            limited: layout.capacity() < layout.slots(),
            bias_mask: if layout.is_compact() {
                layout.slots() - 1
            } else {
                0
            },
            who: 0,
            _region: None,
        })
    }

    /// An MPMC ring of `capacity` messages of up to `slot_size` bytes
    /// (aligned to `slot_align`) in its own heap allocation, which this
    /// handle keeps alive: the safe way to use the ring within one process
    /// (share the handle, by reference or in an `Arc`). Anonymous: the
    /// index CAS is the claim.
    ///
    /// # Errors
    ///
    /// [`LayoutError`] for a capacity, size or alignment no ring takes.
    pub fn heap(capacity: u64, slot_size: usize, slot_align: usize) -> Result<Self, LayoutError> {
        // Zeroed: a compact ring's zero stamps are its initial ones (see
        // `Stamp`), so no stamp is written at creation (`with_layout`
        // touches the pages of the first `capacity` slots, nothing more).
        let region = Arc::new(HeapRegion::with_layout(RingLayout::compact_mpmc(
            capacity, slot_size, slot_align,
        )?)?);
        // SAFETY: the region is initialised for this layout and lives as
        // long as the handle, which keeps the `Arc`; every handle on it is
        // anonymous (this is the only one).
        let mut ring = unsafe { Self::attach(region.base(), region.len(), region.layout()) }?;
        ring._region = Some(region);
        Ok(ring)
    }

    /// Makes this an owned handle that claims slots as `who` (for example a
    /// process's index and generation in a participant table): every slot
    /// it holds records `who`, so that survivors can recover it if `who`
    /// dies.
    ///
    /// # Panics
    ///
    /// If `who` is 0 or above [`MAX_WHO`], or the ring is a heap ring
    /// ([`Ring::heap`]), whose slots have no owner words.
    pub fn with_owner(mut self, who: u64) -> Self {
        assert!(who != 0 && who <= MAX_WHO, "owner id out of range");
        assert!(
            !self.layout.is_compact(),
            "a heap ring (`Ring::heap`) has no owner words"
        );
        self.who = who;
        self
    }

    /// The owner word of the slot of `pos`. Only owned handles call it, and
    /// no compact layout has one.
    fn owner(&self, pos: u64) -> &AtomicU64 {
        // Owned handles only: `with_owner` refuses a compact layout, and
        // `skip_dead_writer` returns before looking.
        debug_assert!(!self.layout.is_compact(), "compact ring has no owner words");
        let offset = self.layout.slot_offset(pos & self.mask);
        let header = self.base.as_ptr().wrapping_add(offset);
        // SAFETY: as in `slot`; the layout is not compact (an owned handle
        // never has one, see above), so the header is an `MpmcSlot`.
        unsafe { &(*header.cast::<MpmcSlot>()).owner }
    }

    /// The layout this handle was attached with.
    pub fn layout(&self) -> &RingLayout {
        &self.layout
    }

    /// The number of messages the ring holds at most.
    pub fn capacity(&self) -> u64 {
        self.layout.capacity()
    }

    #[inline]
    fn control(&self) -> &Control {
        // SAFETY: the region starts with an initialised `Control` (attach's
        // contract) and outlives this handle.
        unsafe { self.base.cast::<Control>().as_ref() }
    }

    #[inline]
    fn slot(&self, pos: u64) -> (Slot<'_>, NonNull<u8>) {
        let index = pos & self.mask;
        let offset = self.layout.slot_offset(index);
        let header = self.base.as_ptr().wrapping_add(offset);
        // SAFETY: `pos & mask < slots`, so the header lies inside the region,
        // is initialised (written by `RingLayout::init`, or for a compact
        // ring zero bytes from the allocator, its empty form), and is
        // 8-aligned; every layout's header starts with the stamp.
        let word = unsafe { &*header.cast::<MpmcStamp>() };
        let payload = header.wrapping_add(self.layout.payload_offset());
        let slot = Slot {
            stamp: Stamp {
                word: &word.stamp,
                bias: index & self.bias_mask,
            },
            tracker: &word.tracker,
        };
        // SAFETY: derived from the non-null base by an in-bounds offset.
        (slot, unsafe { NonNull::new_unchecked(payload) })
    }

    /// The owner-word tag of position `pos`: its lap, cut to 24 bits.
    fn tag(&self, pos: u64) -> u64 {
        ((pos >> self.shift) & LAP_MASK) << LAP_SHIFT
    }

    /// Whether `owner` records a producer's claim of `pos`.
    fn writing(&self, owner: u64, pos: u64) -> bool {
        owner & !MAX_WHO == self.tag(pos) && owner & MAX_WHO != 0
    }

    /// Whether `owner` records a consumer's claim of `pos`.
    fn reading(&self, owner: u64, pos: u64) -> bool {
        owner & !MAX_WHO == self.tag(pos) | READ && owner & MAX_WHO != 0
    }

    /// Moves `index` past `pos` if it is still there, on behalf of an
    /// owner that claimed `pos` and may have died before doing so.
    fn help(index: &crate::sync::AtomicU64, pos: u64) {
        // Release: as the claimer's own CAS (see `reserve` and `claim`).
        // Relaxed on failure: someone already moved it.
        let _ = index.compare_exchange(
            pos,
            pos.wrapping_add(1),
            Ordering::Release,
            Ordering::Relaxed,
        );
    }

    /// Moves `index` past `pos` for whoever claimed `pos`, and returns where
    /// it is now; `None` if it did not move, which no well-formed ring does.
    fn step_past(index: &crate::sync::AtomicU64, pos: u64) -> Option<u64> {
        Self::help(index, pos);
        // Relaxed: a hint for the next look; the stamp decides.
        let current = index.load(Ordering::Relaxed);
        (current != pos).then_some(current)
    }

    /// Claims a slot for writing. The slot is published when the returned
    /// reservation is committed or dropped.
    ///
    /// # Errors
    ///
    /// [`PushError::Full`] when `capacity` messages are in the ring (or being
    /// written); [`PushError::Busy`] when the next slot is still being read
    /// by a consumer that claimed it (retry soon: it is not full);
    /// [`PushError::Corrupted`] for indices no valid ring can have.
    #[inline]
    pub fn try_reserve(&self) -> Result<Reservation<'_>, PushError> {
        self.reserve(true)
    }

    /// As [`try_reserve`](Self::try_reserve), but reports a slot still
    /// being read as [`PushError::Full`] instead of [`PushError::Busy`]:
    /// it never reads the consumers' index, so a spinning producer does not
    /// pull that cache line away from them. Only for checks that will be
    /// repeated; a check made before parking must use `try_reserve`.
    ///
    /// # Errors
    ///
    /// As [`try_reserve`](Self::try_reserve), without `Busy`.
    #[inline]
    pub fn try_reserve_spin(&self) -> Result<Reservation<'_>, PushError> {
        self.reserve(false)
    }

    /// Whether the slot `ahead` positions past the enqueue index is free
    /// for its lap now: a hint for a producer that found the ring full, so
    /// that it waits until the consumers have freed a stretch of slots
    /// instead of taking each slot the moment it is freed (which puts the
    /// producer's writes on the cache line the consumers are reading).
    /// Reads the enqueue index and that one slot's stamp; orders nothing.
    pub fn free_ahead(&self, ahead: u64) -> bool {
        // Relaxed: hints; a reservation re-checks everything.
        let pos = self
            .control()
            .tail
            .value
            .load(Ordering::Relaxed)
            .wrapping_add(ahead);
        let (slot, _) = self.slot(pos);
        slot.stamp.load(Ordering::Relaxed) & !FLAGS == pos
    }

    /// An anonymous handle's claim of position `pos`: one try at moving
    /// `index` (the enqueue or dequeue index) past it. Release on success
    /// (see where `reserve_any` and `claim_any` use it); Relaxed on
    /// failure, which returns the index found.
    #[inline]
    fn bump(index: &AtomicU64, pos: u64) -> Result<u64, u64> {
        index.compare_exchange_weak(
            pos,
            pos.wrapping_add(1),
            Ordering::Release,
            Ordering::Relaxed,
        )
    }

    /// The dequeue-index hint on the enqueue line (see `reserve_any`),
    /// loaded right after the tail: the line is in this core's cache then,
    /// while after the slot's stamp load another producer may have taken
    /// it (one more miss per send under contention). Any hint once stored
    /// is a safe bound, so an early load is as good as a late one.
    #[inline]
    fn hint(&self, ctrl: &Control) -> u64 {
        // Relaxed: the hint orders nothing; the stamp and the CAS do.
        ctrl.tail.hint.load(Ordering::Relaxed)
    }

    /// Whether an anonymous producer may take `pos` without reading the
    /// consumers' line: `pos` is within `capacity` of `hint`, the
    /// dequeue-index hint. Owned handles never trust the hint.
    #[inline]
    fn room_by_hint(&self, hint: u64, pos: u64) -> bool {
        self.who == 0 && pos.wrapping_sub(hint) < self.layout.capacity()
    }

    /// One attempt of an anonymous handle at the head of the queue's
    /// common case (the next slot empty, room by the hint, no contention),
    /// small enough to inline into the channel; anything else goes to
    /// [`reserve_any`](Self::reserve_any).
    #[inline]
    fn reserve(&self, precise: bool) -> Result<Reservation<'_>, PushError> {
        if self.who == 0 {
            let ctrl = self.control();
            // Orderings as in `reserve_any`.
            let pos = ctrl.tail.value.load(Ordering::Relaxed);
            let hint = self.hint(ctrl);
            let (slot, payload) = self.slot(pos);
            if slot.stamp.load(Ordering::Acquire) == pos
                && (!self.limited || self.room_by_hint(hint, pos))
            {
                match Self::bump(&ctrl.tail.value, pos) {
                    Ok(_) => return Ok(self.reservation(slot, payload, pos)),
                    // Lost to another producer: go on from the index the
                    // CAS returned, with the hint already read (reloading
                    // either would be one more miss on the contended line).
                    Err(current) => return self.reserve_any(precise, Some((current, hint))),
                }
            }
        }
        self.reserve_any(precise, None)
    }

    /// The general reserve; `lost_at` is the index a lost CAS of the fast
    /// path returned, with the dequeue-index hint it had read.
    fn reserve_any(
        &self,
        precise: bool,
        lost_at: Option<(u64, u64)>,
    ) -> Result<Reservation<'_>, PushError> {
        let ctrl = self.control();
        let mut lost = 0;
        // The hint is read once per reserve, not once per try: a hint once
        // seen stays a safe bound (the dequeue index only grows), and
        // between two tries on a contended index, a load of the enqueue
        // line would fetch it shared just before the CAS wants it
        // exclusive (measured: 4 producers without a consumer took 2.4x
        // crossbeam's time with the load in the loop).
        let (mut pos, mut hint) = match lost_at {
            Some((current, hint)) => {
                contended(&mut lost);
                (current, hint)
            }
            // Relaxed: only a hint; the stamp check and the CAS decide.
            None => (ctrl.tail.value.load(Ordering::Relaxed), self.hint(ctrl)),
        };
        loop {
            let (slot, payload) = self.slot(pos);
            // Acquire: pairs with the Release that freed this slot (a
            // consumer's `Claim` release), so its read of the old payload is
            // done before we overwrite it.
            let stamp = slot.stamp.load(Ordering::Acquire);
            let diff = (stamp & !FLAGS).wrapping_sub(pos) as i64;
            if diff == 0 && stamp & FLAGS == 0 {
                // An anonymous producer first checks the capacity against
                // the hint on the enqueue line: the hint is a dequeue index
                // seen earlier and the index only grows, so a position
                // within `capacity` of the hint is within it of the real
                // index too.
                if self.limited && !self.room_by_hint(hint, pos) {
                    // Acquire: pairs with the Release CAS on `head` in
                    // `claim`, so a head past `pos` implies our reload of
                    // the tail sees a producer's claim of `pos`. A stale head
                    // only makes the ring look fuller.
                    let head = ctrl.head.value.load(Ordering::Acquire);
                    if self.who == 0 {
                        // Relaxed: see above. Racing producers may store
                        // an older head; any head once seen is a safe hint.
                        ctrl.tail.hint.store(head, Ordering::Relaxed);
                        hint = head;
                    }
                    let used = pos.wrapping_sub(head) as i64;
                    if used < 0 {
                        // `pos` is stale: consumers are already past it.
                        let current = ctrl.tail.value.load(Ordering::Relaxed);
                        if current == pos {
                            return Err(PushError::Corrupted);
                        }
                        pos = current;
                        continue;
                    }
                    if used as u64 >= self.layout.slots() {
                        return Err(PushError::Corrupted);
                    }
                    if used as u64 >= self.layout.capacity() {
                        return Err(PushError::Full);
                    }
                }
                if self.who == 0 {
                    // Anonymous: the index CAS is the claim.
                    // Release on success: a consumer that Acquire-loads a
                    // tail past `pos` (the Busy check in `claim`) also sees
                    // what this producer did before claiming. The slot's
                    // contents are ordered by its stamp. Relaxed on failure:
                    // nothing is read.
                    match Self::bump(&ctrl.tail.value, pos) {
                        Ok(_) => return Ok(self.reservation(slot, payload, pos)),
                        Err(current) => {
                            pos = current;
                            contended(&mut lost);
                        }
                    }
                    continue;
                }
                // Acquire: pairs with the AcqRel CAS that wrote it, so a
                // claim of `pos` seen here is a claim of this lap.
                let owner_word = self.owner(pos);
                let owner = owner_word.load(Ordering::Acquire);
                if self.writing(owner, pos) {
                    // Claimed by another producer, which may have died
                    // before moving the index: move it for them.
                    pos = Self::step_past(&ctrl.tail.value, pos).ok_or(PushError::Corrupted)?;
                    continue;
                }
                // An empty slot's owner word is the previous lap's consumer
                // (or zero, before the first lap). Anything else means the
                // slot moved on since we looked at its stamp (we are behind:
                // claiming it now would take a later lap's claim), unless
                // the stamp still says empty.
                let prev = pos.wrapping_sub(self.layout.slots());
                let fresh = owner == 0 && pos < self.layout.slots();
                if !fresh && !self.reading(owner, prev) {
                    // Acquire: as the first load.
                    if slot.stamp.load(Ordering::Acquire) == stamp {
                        return Err(PushError::Corrupted);
                    }
                    pos = ctrl.tail.value.load(Ordering::Relaxed);
                    continue;
                }
                // AcqRel on success: Acquire pairs with the previous lap's
                // owner updates; Release orders our claim before the index
                // move and the payload writes, for recoverers that read the
                // owner word. Relaxed on failure: we look again.
                let mine = self.tag(pos) | self.who;
                if owner_word
                    .compare_exchange(owner, mine, Ordering::AcqRel, Ordering::Relaxed)
                    .is_err()
                {
                    continue;
                }
                // The owner tag keeps 24 bits of the lap: check the full
                // stamp again, so a claim can never land on another lap.
                // Acquire: as the first load.
                if slot.stamp.load(Ordering::Acquire) != pos {
                    return Err(PushError::Corrupted);
                }
                // Release: as in the anonymous case. Whether it is ours or a
                // helper's CAS that moves it does not matter.
                Self::help(&ctrl.tail.value, pos);
                return Ok(self.reservation(slot, payload, pos));
            } else if diff < 0 {
                // The slot still holds the message from the previous lap:
                // full if no consumer has claimed it yet, else a consumer is
                // reading it right now.
                if !precise {
                    return Err(PushError::Full);
                }
                // Acquire: as in the limited check above.
                let head = ctrl.head.value.load(Ordering::Acquire);
                return Err(if pos.wrapping_sub(head) >= self.layout.slots() {
                    PushError::Full
                } else {
                    PushError::Busy
                });
            } else {
                // Another producer took `pos`; the enqueue index has moved.
                contended(&mut lost);
                let current = ctrl.tail.value.load(Ordering::Relaxed);
                if current == pos {
                    // A stamp ahead of an index that did not move is
                    // impossible in a well-formed ring.
                    return Err(PushError::Corrupted);
                }
                pos = current;
            }
        }
    }

    #[inline]
    fn reservation<'a>(
        &'a self,
        slot: Slot<'a>,
        payload: NonNull<u8>,
        pos: u64,
    ) -> Reservation<'a> {
        slot.tracker.write();
        Reservation {
            slot,
            payload,
            pos,
            owned: self.who != 0,
            _ring: PhantomData,
        }
    }

    /// Writes one message through `write` if there is room.
    ///
    /// `write` gets a pointer to `slot_size` writable bytes aligned to the
    /// layout's slot alignment; the slot is published when it returns (or
    /// unwinds).
    ///
    /// # Errors
    ///
    /// As [`try_reserve`](Self::try_reserve); `write` is not called then.
    pub fn try_push_with(&self, write: impl FnOnce(*mut u8)) -> Result<(), PushError> {
        let reservation = self.try_reserve()?;
        write(reservation.as_mut_ptr());
        // An owned handle's slot is recovered only if its owner is dead; a
        // caller that pushes is alive, so the commit succeeds.
        let _ = reservation.commit();
        Ok(())
    }

    /// Claims a full slot for reading. The slot is freed when the returned
    /// claim is dropped. The claim may be of a skipped slot
    /// ([`Claim::is_skipped`]), which holds no message.
    ///
    /// # Errors
    ///
    /// [`PopError::Empty`] when no producer has claimed the head slot;
    /// [`PopError::Busy`] when one has but is still writing it (retry soon:
    /// it is not empty); [`PopError::Corrupted`] for impossible stamps.
    #[inline]
    pub fn try_claim(&self) -> Result<Claim<'_>, PopError> {
        self.claim(true)
    }

    /// As [`try_claim`](Self::try_claim), but reports a slot still being
    /// written as [`PopError::Empty`] instead of [`PopError::Busy`]: it
    /// never reads the producers' index (see
    /// [`try_reserve_spin`](Self::try_reserve_spin)).
    ///
    /// # Errors
    ///
    /// As [`try_claim`](Self::try_claim), without `Busy`.
    #[inline]
    pub fn try_claim_spin(&self) -> Result<Claim<'_>, PopError> {
        self.claim(false)
    }

    /// As [`reserve`](Self::reserve), for consumers.
    #[inline]
    fn claim(&self, precise: bool) -> Result<Claim<'_>, PopError> {
        if self.who == 0 {
            let ctrl = self.control();
            // Orderings as in `claim_any`.
            let pos = ctrl.head.value.load(Ordering::Relaxed);
            let (slot, payload) = self.slot(pos);
            let stamp = slot.stamp.load(Ordering::Acquire);
            if stamp == pos.wrapping_add(1) {
                match Self::bump(&ctrl.head.value, pos) {
                    Ok(_) => return Ok(self.claimed(slot, payload, pos, stamp)),
                    // As in `reserve`.
                    Err(current) => return self.claim_any(precise, Some(current)),
                }
            }
        }
        self.claim_any(precise, None)
    }

    /// The general claim; `lost_at` as in [`reserve_any`](Self::reserve_any).
    fn claim_any(&self, precise: bool, lost_at: Option<u64>) -> Result<Claim<'_>, PopError> {
        let ctrl = self.control();
        let mut lost = 0;
        let mut pos = match lost_at {
            Some(current) => {
                contended(&mut lost);
                current
            }
            // Relaxed: a hint; the stamp check and the CAS decide.
            None => ctrl.head.value.load(Ordering::Relaxed),
        };
        loop {
            let (slot, payload) = self.slot(pos);
            // Acquire: pairs with the Release commit of the stamp (or the
            // skip CAS), making the payload visible.
            let stamp = slot.stamp.load(Ordering::Acquire);
            let diff = (stamp & !FLAGS).wrapping_sub(pos.wrapping_add(1)) as i64;
            if diff == 0 {
                if self.who == 0 {
                    // Release on success: a producer that Acquire-loads a
                    // head past `pos` (the limited check in `reserve`) also
                    // sees the claims that led here. Relaxed on failure.
                    match Self::bump(&ctrl.head.value, pos) {
                        Ok(_) => return Ok(self.claimed(slot, payload, pos, stamp)),
                        Err(current) => {
                            pos = current;
                            contended(&mut lost);
                        }
                    }
                    continue;
                }
                // Acquire: as in `reserve`.
                let owner_word = self.owner(pos);
                let owner = owner_word.load(Ordering::Acquire);
                if self.reading(owner, pos) {
                    // Claimed by another consumer: move the index for it.
                    pos = Self::step_past(&ctrl.head.value, pos).ok_or(PopError::Corrupted)?;
                    continue;
                }
                if !self.writing(owner, pos) {
                    // No producer of this lap is recorded: the slot was
                    // taken, freed and claimed for the next lap since we
                    // looked at its stamp (we are behind), unless the stamp
                    // still says published.
                    // Acquire: as the first load.
                    if slot.stamp.load(Ordering::Acquire) == stamp {
                        return Err(PopError::Corrupted);
                    }
                    pos = ctrl.head.value.load(Ordering::Relaxed);
                    continue;
                }
                // AcqRel on success: Acquire pairs with the producer's claim;
                // Release orders our claim before the index move. Relaxed on
                // failure: we look again.
                let mine = self.tag(pos) | READ | self.who;
                if owner_word
                    .compare_exchange(owner, mine, Ordering::AcqRel, Ordering::Relaxed)
                    .is_err()
                {
                    continue;
                }
                // Acquire: as above; only this lap's publish can be there.
                let now = slot.stamp.load(Ordering::Acquire);
                if now != stamp {
                    return Err(PopError::Corrupted);
                }
                Self::help(&ctrl.head.value, pos);
                return Ok(self.claimed(slot, payload, pos, stamp));
            } else if diff < 0 {
                // Not published for this lap: empty if no producer claimed
                // it, else a producer is writing it right now.
                if !precise {
                    return Err(PopError::Empty);
                }
                if self.who != 0 {
                    // Acquire: as in `reserve`.
                    let owner = self.owner(pos).load(Ordering::Acquire);
                    if self.writing(owner, pos) {
                        // Claimed, and being written (if its producer died
                        // before moving the enqueue index, the next producer
                        // or `skip_dead_writer` moves it: not us, so that a
                        // consumer waiting here never pulls the producers'
                        // line away from a live producer).
                        return Err(PopError::Busy);
                    }
                }
                // Acquire: pairs with the Release CAS in `reserve` (see
                // there); the stamp orders the payload.
                let tail = ctrl.tail.value.load(Ordering::Acquire);
                return Err(if tail == pos {
                    PopError::Empty
                } else {
                    PopError::Busy
                });
            } else {
                // Another consumer took `pos`: back off as after a lost
                // CAS (see `reserve_any`).
                contended(&mut lost);
                let current = ctrl.head.value.load(Ordering::Relaxed);
                if current == pos {
                    return Err(PopError::Corrupted);
                }
                pos = current;
            }
        }
    }

    #[inline]
    fn claimed<'a>(
        &'a self,
        slot: Slot<'a>,
        payload: NonNull<u8>,
        pos: u64,
        stamp: u64,
    ) -> Claim<'a> {
        slot.tracker.read();
        Claim {
            slot,
            payload,
            stamp,
            next_lap: pos.wrapping_add(self.layout.slots()),
            owned: self.who != 0,
            _ring: PhantomData,
        }
    }

    /// Reads one message through `read` if there is one; the slot is freed
    /// when `read` returns (or unwinds). Skipped slots are freed and passed
    /// over.
    ///
    /// # Errors
    ///
    /// As [`try_claim`](Self::try_claim); `read` is not called then.
    pub fn try_pop_with<R>(&self, read: impl FnOnce(*const u8) -> R) -> Result<R, PopError> {
        loop {
            let claim = self.try_claim()?;
            if !claim.is_skipped() {
                return Ok(read(claim.as_ptr()));
            }
        }
    }

    /// Owned handles: if the head slot was claimed by a producer for which
    /// `is_dead(who)` holds, marks it skipped (one CAS of its stamp), so
    /// consumers pass over it. Returns whether this call skipped it.
    ///
    /// `is_dead` must answer true only for owners that can never act on the
    /// ring again; a late commit by a producer wrongly taken for dead fails
    /// (its message is reported as not sent) rather than corrupting the
    /// ring.
    pub fn skip_dead_writer(&self, is_dead: impl Fn(u64) -> bool) -> bool {
        if self.layout.is_compact() {
            // No owner words: nobody to take for dead.
            return false;
        }
        let ctrl = self.control();
        // Acquire: pairs with consumers' CAS on `head`.
        let pos = ctrl.head.value.load(Ordering::Acquire);
        let (slot, _) = self.slot(pos);
        // Acquire: as in `claim`.
        if slot.stamp.load(Ordering::Acquire) != pos {
            return false;
        }
        // Acquire: as in `reserve`.
        let owner = self.owner(pos).load(Ordering::Acquire);
        if !self.writing(owner, pos) || !is_dead(owner & MAX_WHO) {
            return false;
        }
        // The dead producer may not have moved the enqueue index: a skipped
        // slot must never be ahead of it.
        Self::help(&ctrl.tail.value, pos);
        // AcqRel on success: Release publishes the skip like a commit (pairs
        // with the Acquire stamp load in `claim`). Relaxed on failure: it was
        // published or skipped by someone else.
        slot.stamp
            .compare_exchange(
                pos,
                SKIP | pos.wrapping_add(1),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// Owned handles: looks through the lap behind the dequeue index for a
    /// slot that a consumer claimed and never freed, whose owner
    /// `is_dead`, and takes the claim over (one CAS of its owner word), so
    /// that its message is delivered again. Call it when a consumer is
    /// known to have died; it reads one owner word per slot.
    ///
    /// # Errors
    ///
    /// [`PopError::Empty`] when there is no such slot.
    pub fn adopt_dead_reader(&self, is_dead: impl Fn(u64) -> bool) -> Result<Claim<'_>, PopError> {
        if self.who == 0 {
            return Err(PopError::Empty);
        }
        let ctrl = self.control();
        // Acquire: pairs with consumers' CAS on `head`.
        let head = ctrl.head.value.load(Ordering::Acquire);
        let from = head.saturating_sub(self.layout.slots());
        for pos in from..head {
            let (slot, payload) = self.slot(pos);
            // Acquire: as in `claim`.
            let stamp = slot.stamp.load(Ordering::Acquire);
            if stamp & !FLAGS != pos.wrapping_add(1) {
                continue;
            }
            // Acquire: as in `reserve`.
            let owner_word = self.owner(pos);
            let owner = owner_word.load(Ordering::Acquire);
            if !self.reading(owner, pos) || !is_dead(owner & MAX_WHO) {
                continue;
            }
            let mine = self.tag(pos) | READ | self.who;
            // AcqRel on success: Acquire pairs with the dead consumer's
            // claim; Release orders the adoption for later recoverers.
            if owner_word
                .compare_exchange(owner, mine, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            // Mark the stamp adopted, so that a late release by the claimer
            // we took for dead fails rather than free the slot under us; if
            // it released between our loads, the slot is not ours.
            // AcqRel on success: Acquire as the loads above; Release orders
            // the adoption before our reads. Relaxed on failure.
            let adopted = stamp | ADOPTED;
            if slot
                .stamp
                .compare_exchange(stamp, adopted, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            return Ok(self.claimed(slot, payload, pos, adopted));
        }
        Err(PopError::Empty)
    }

    /// The consumers' index (a snapshot): where the next message is read.
    pub fn head(&self) -> u64 {
        // Relaxed: a snapshot for progress checks; nothing is read with it.
        self.control().head.value.load(Ordering::Relaxed)
    }

    /// The number of messages in the ring, counting those being written or
    /// read: an approximate snapshot, clamped to `0..=capacity`.
    pub fn len(&self) -> u64 {
        let ctrl = self.control();
        // Relaxed: a snapshot for display and `is_full`; orders nothing.
        // The tail is read first so a concurrent pop cannot make the
        // difference look larger than it ever was.
        let tail = ctrl.tail.value.load(Ordering::Relaxed);
        let head = ctrl.head.value.load(Ordering::Relaxed);
        (tail.wrapping_sub(head) as i64).clamp(0, self.capacity() as i64) as u64
    }

    /// Whether the ring holds no message.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the slot at the dequeue index holds a published message
    /// (or a skipped slot) now: a snapshot, for passing a wakeup on.
    pub fn head_ready(&self) -> bool {
        self.published(self.head())
    }

    /// Whether position `pos` holds a published message (or a skipped
    /// slot) now: a snapshot, for a consumer that wants to know how far
    /// the producers are ahead of it. One load of that slot's stamp;
    /// orders nothing (a claim re-reads the stamp with Acquire).
    #[inline]
    pub fn published(&self, pos: u64) -> bool {
        let (slot, _) = self.slot(pos);
        // Relaxed: a hint (see above).
        slot.stamp.load(Ordering::Relaxed) & !FLAGS == pos.wrapping_add(1)
    }
}

/// A slot's header as the ring's logic sees it: its stamp and (under loom)
/// the payload's access tracker.
#[derive(Clone, Copy)]
struct Slot<'a> {
    stamp: Stamp<'a>,
    tracker: &'a Tracker,
}

/// A slot's stamp word, read and written in the terms of the module docs.
///
/// A compact ring (the in-process channel's, [`Ring::heap`]) stores each
/// stamp minus its slot's index (`bias`), so that a zeroed region is an
/// initialised one: slot `i`'s first empty stamp is `i`, stored as 0. A
/// large channel then costs no stamp write per slot at creation, only a
/// touch of each page its capacity uses (`HeapRegion::with_layout`). Rings shared
/// between processes store stamps as they are (`bias` 0), so the format
/// of a segment is unchanged. The mapping is a bijection applied to every
/// load, store and CAS, so comparisons and CASes mean what they did.
#[derive(Clone, Copy)]
struct Stamp<'a> {
    word: &'a AtomicU64,
    bias: u64,
}

impl Stamp<'_> {
    #[inline]
    fn load(&self, order: Ordering) -> u64 {
        self.word.load(order).wrapping_add(self.bias)
    }

    #[inline]
    fn store(&self, stamp: u64, order: Ordering) {
        self.word.store(stamp.wrapping_sub(self.bias), order);
    }

    #[inline]
    fn compare_exchange(
        &self,
        current: u64,
        new: u64,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u64, u64> {
        self.word
            .compare_exchange(
                current.wrapping_sub(self.bias),
                new.wrapping_sub(self.bias),
                success,
                failure,
            )
            .map(|found| found.wrapping_add(self.bias))
            .map_err(|found| found.wrapping_add(self.bias))
    }
}

/// A slot owned by one producer until it is committed (or dropped, which
/// commits it too: the ring must never be left with a hole).
#[must_use = "a reservation publishes its slot when dropped"]
pub struct Reservation<'a> {
    slot: Slot<'a>,
    payload: NonNull<u8>,
    pos: u64,
    owned: bool,
    _ring: PhantomData<&'a Ring>,
}

impl Reservation<'_> {
    /// The slot's payload: `slot_size` writable bytes.
    #[inline]
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.payload.as_ptr()
    }

    /// The position of this slot in the ring's history.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Publishes the slot to consumers.
    ///
    /// # Errors
    ///
    /// [`Recovered`] (owned handles only) if a survivor skipped the slot
    /// because it took this handle's owner for dead: the message was not
    /// published.
    #[inline]
    pub fn commit(self) -> Result<(), Recovered> {
        let done = self.publish();
        core::mem::forget(self);
        done
    }

    /// Publishes the slot as holding no message (its claim reports
    /// [`Claim::is_skipped`]): for a producer that reserved a slot and then
    /// had nothing to write.
    pub fn cancel(self) {
        let next = SKIP | self.pos.wrapping_add(1);
        if self.owned {
            // Release: as in `publish`. Relaxed on failure: a survivor
            // skipped it already.
            let _ = self.slot.stamp.compare_exchange(
                self.pos,
                next,
                Ordering::Release,
                Ordering::Relaxed,
            );
        } else {
            // Release: as in `publish`.
            self.slot.stamp.store(next, Ordering::Release);
        }
        core::mem::forget(self);
    }

    #[inline]
    fn publish(&self) -> Result<(), Recovered> {
        let next = self.pos.wrapping_add(1);
        if !self.owned {
            // Release: publishes the payload; pairs with the Acquire stamp
            // load in `Ring::claim`.
            self.slot.stamp.store(next, Ordering::Release);
            return Ok(());
        }
        // Release: as above. Relaxed on failure: the slot is not ours.
        self.slot
            .stamp
            .compare_exchange(self.pos, next, Ordering::Release, Ordering::Relaxed)
            .map(drop)
            .map_err(|_| Recovered)
    }
}

impl Drop for Reservation<'_> {
    #[inline]
    fn drop(&mut self) {
        let _ = self.publish();
    }
}

/// A published slot owned by one consumer until it is dropped.
#[must_use = "a claim frees its slot when dropped"]
pub struct Claim<'a> {
    slot: Slot<'a>,
    payload: NonNull<u8>,
    /// The stamp the slot had when claimed (`p + 1`, maybe with `SKIP` or
    /// `ADOPTED`).
    stamp: u64,
    next_lap: u64,
    owned: bool,
    _ring: PhantomData<&'a Ring>,
}

impl Claim<'_> {
    /// The slot's payload: `slot_size` readable bytes.
    #[inline]
    pub fn as_ptr(&self) -> *const u8 {
        self.payload.as_ptr()
    }

    /// The position of this slot in the ring's history.
    #[inline]
    pub fn position(&self) -> u64 {
        // The claimed stamp is `position + 1`, maybe with flags.
        (self.stamp & !FLAGS).wrapping_sub(1)
    }

    /// Whether the slot holds no message: a survivor skipped it after its
    /// producer died while writing it.
    #[inline]
    pub fn is_skipped(&self) -> bool {
        self.stamp & SKIP != 0
    }

    /// Frees the slot for the next lap.
    ///
    /// # Errors
    ///
    /// [`Recovered`] (owned handles only) if a survivor took the claim over
    /// because it took this handle's owner for dead: the message may be
    /// delivered again.
    #[inline]
    pub fn release(self) -> Result<(), Recovered> {
        let done = self.free();
        core::mem::forget(self);
        done
    }

    #[inline]
    fn free(&self) -> Result<(), Recovered> {
        if !self.owned {
            // Release: our reads of the payload are done before a producer
            // of the next lap may write it; pairs with the Acquire stamp load
            // in `Ring::reserve`.
            self.slot.stamp.store(self.next_lap, Ordering::Release);
            return Ok(());
        }
        // Release: as above. Relaxed on failure: the slot is not ours.
        self.slot
            .stamp
            .compare_exchange(
                self.stamp,
                self.next_lap,
                Ordering::Release,
                Ordering::Relaxed,
            )
            .map(drop)
            .map_err(|_| Recovered)
    }
}

impl Drop for Claim<'_> {
    #[inline]
    fn drop(&mut self) {
        let _ = self.free();
    }
}
