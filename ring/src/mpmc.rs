//! Multi-producer multi-consumer ring (after Vyukov's bounded MPMC queue).
//!
//! Every slot carries a sequence stamp. For the ever-growing position `p`
//! of a slot with `S` slots:
//! - `stamp == p`: empty, waiting for the producer of position `p`;
//! - `stamp == p + 1`: full, waiting for the consumer of position `p`;
//! - the consumer frees it by storing `p + S`, the next lap's empty stamp.
//!
//! Producers claim a position with a CAS on the enqueue index, write, then
//! publish the stamp; consumers do the same on the dequeue index. When the
//! capacity asked for is below the slot count, producers also keep the
//! enqueue index within `capacity` of the dequeue index, so the capacity is
//! exact.

use core::marker::PhantomData;
use core::ptr::NonNull;

use crate::layout::{Control, LayoutError, MpmcSlot, RingKind, RingLayout};
use crate::sync::Ordering;
use crate::{PopError, PushError};

/// A handle on an MPMC ring. It is `Sync`: any number of threads (and, over
/// shared memory, processes with their own handles) push and pop at once.
pub struct Ring {
    base: NonNull<u8>,
    layout: RingLayout,
    mask: u64,
    /// Whether `capacity < slots`, so pushes must check the dequeue index.
    limited: bool,
}

// SAFETY: every access to the region goes through atomics or through slots
// a thread owns by a successful CAS; the attach contract keeps it alive.
unsafe impl Send for Ring {}
// SAFETY: as above; `&Ring` methods synchronise through the atomics only.
unsafe impl Sync for Ring {}

impl Ring {
    /// Attaches to an initialised MPMC region.
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
            limited: layout.capacity() < layout.slots(),
        })
    }

    /// The layout this handle was attached with.
    pub fn layout(&self) -> &RingLayout {
        &self.layout
    }

    /// The number of messages the ring holds at most.
    pub fn capacity(&self) -> u64 {
        self.layout.capacity()
    }

    fn control(&self) -> &Control {
        // SAFETY: the region starts with an initialised `Control` (attach's
        // contract) and outlives this handle.
        unsafe { self.base.cast::<Control>().as_ref() }
    }

    fn slot(&self, pos: u64) -> (&MpmcSlot, NonNull<u8>) {
        let offset = self.layout.slot_offset(pos & self.mask);
        let header = self.base.as_ptr().wrapping_add(offset);
        // SAFETY: `pos & mask < slots`, so the header lies inside the region,
        // was initialised by `RingLayout::init`, and is 8-aligned.
        let slot = unsafe { &*header.cast::<MpmcSlot>() };
        let payload = header.wrapping_add(self.layout.payload_offset());
        // SAFETY: derived from the non-null base by an in-bounds offset.
        (slot, unsafe { NonNull::new_unchecked(payload) })
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
    pub fn try_reserve_spin(&self) -> Result<Reservation<'_>, PushError> {
        self.reserve(false)
    }

    fn reserve(&self, precise: bool) -> Result<Reservation<'_>, PushError> {
        let ctrl = self.control();
        // Relaxed: only a hint; the stamp check and the CAS decide.
        let mut pos = ctrl.tail.value.load(Ordering::Relaxed);
        loop {
            let (slot, payload) = self.slot(pos);
            // Acquire: pairs with the Release store of the stamp by the
            // consumer that freed this slot (`Claim::drop`), so its read of
            // the old payload is done before we overwrite it.
            let stamp = slot.stamp.load(Ordering::Acquire);
            let diff = stamp.wrapping_sub(pos) as i64;
            if diff == 0 {
                if self.limited {
                    // Acquire: pairs with the Release CAS on `head` in
                    // `try_claim`, so a head past `pos` implies our reload of
                    // the tail sees a producer's claim of `pos`. A stale head
                    // only makes the ring look fuller.
                    let head = ctrl.head.value.load(Ordering::Acquire);
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
                // Release on success: a consumer that Acquire-loads a tail
                // past `pos` (the Busy check in `claim`) also sees what this
                // producer did before claiming, e.g. attaching to a segment,
                // so it never mistakes a new producer's claim for an
                // abandoned one. The slot's contents are ordered by its
                // stamp. Relaxed on failure: nothing is read.
                match ctrl.tail.value.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::Release,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        slot.tracker.write();
                        return Ok(Reservation {
                            slot,
                            payload,
                            pos,
                            _ring: PhantomData,
                        });
                    }
                    Err(current) => pos = current,
                }
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
        reservation.commit();
        Ok(())
    }

    /// Claims a full slot for reading. The slot is freed when the returned
    /// claim is dropped.
    ///
    /// # Errors
    ///
    /// [`PopError::Empty`] when no producer has claimed the head slot;
    /// [`PopError::Busy`] when one has but is still writing it (retry soon:
    /// it is not empty); [`PopError::Corrupted`] for impossible stamps.
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
    pub fn try_claim_spin(&self) -> Result<Claim<'_>, PopError> {
        self.claim(false)
    }

    fn claim(&self, precise: bool) -> Result<Claim<'_>, PopError> {
        let ctrl = self.control();
        // Relaxed: a hint; the stamp check and the CAS decide.
        let mut pos = ctrl.head.value.load(Ordering::Relaxed);
        loop {
            let (slot, payload) = self.slot(pos);
            // Acquire: pairs with the Release store of the stamp in
            // `Reservation::drop`, making the payload visible.
            let stamp = slot.stamp.load(Ordering::Acquire);
            let diff = stamp.wrapping_sub(pos.wrapping_add(1)) as i64;
            if diff == 0 {
                // Release on success: a producer that Acquire-loads a head past
                // `pos` (the limited check in `try_reserve`) also sees the
                // claims that led here. Relaxed on failure: nothing is read.
                match ctrl.head.value.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::Release,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        slot.tracker.read();
                        let next_lap = pos.wrapping_add(self.layout.slots());
                        return Ok(Claim {
                            slot,
                            payload,
                            next_lap,
                            _ring: PhantomData,
                        });
                    }
                    Err(current) => pos = current,
                }
            } else if diff < 0 {
                // Not published for this lap: empty if no producer claimed
                // it, else a producer is writing it right now.
                if !precise {
                    return Err(PopError::Empty);
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
                let current = ctrl.head.value.load(Ordering::Relaxed);
                if current == pos {
                    return Err(PopError::Corrupted);
                }
                pos = current;
            }
        }
    }

    /// Reads one message through `read` if there is one; the slot is freed
    /// when `read` returns (or unwinds).
    ///
    /// # Errors
    ///
    /// As [`try_claim`](Self::try_claim); `read` is not called then.
    pub fn try_pop_with<R>(&self, read: impl FnOnce(*const u8) -> R) -> Result<R, PopError> {
        let claim = self.try_claim()?;
        Ok(read(claim.as_ptr()))
    }

    /// Publishes, on its producer's behalf, the slot at the head if it was
    /// claimed and never published: its producer died between the two.
    /// `mark` first writes into the slot's payload (a "skip" marker for the
    /// layer above, so the consumer drops it). Returns whether it did so.
    ///
    /// Call it only when no producer that could still publish that slot is
    /// alive: a late publish would overwrite a slot already recycled. It is
    /// not `unsafe` (no memory is misused either way), but it is a contract.
    pub fn publish_abandoned(&self, mark: impl FnOnce(*mut u8)) -> bool {
        let ctrl = self.control();
        // Acquire: pairs with consumers' CAS on `head` (via the stamp chain).
        let pos = ctrl.head.value.load(Ordering::Acquire);
        // Acquire: a tail past `pos` means a producer claimed `pos`.
        let tail = ctrl.tail.value.load(Ordering::Acquire);
        if tail.wrapping_sub(pos) as i64 <= 0 {
            return false;
        }
        let (slot, payload) = self.slot(pos);
        // Acquire: as in `try_claim`.
        if slot.stamp.load(Ordering::Acquire) != pos {
            return false;
        }
        // Take the slot first, so that only the winner ever writes to it: a
        // caller that marked first and lost could scribble over a message a
        // new producer wrote there after the winner skipped it. `pos - 1`
        // reads as "busy" to consumers and as "full" to producers.
        // Acquire on success: this caller now owns the slot; Relaxed on
        // failure: nothing is touched.
        if slot
            .stamp
            .compare_exchange(
                pos,
                pos.wrapping_sub(1),
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return false;
        }
        mark(payload.as_ptr());
        // Release: publishes the marker like a producer's commit; pairs with
        // the Acquire stamp load in `try_claim`.
        slot.stamp.store(pos.wrapping_add(1), Ordering::Release);
        true
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
}

/// A slot owned by one producer until it is committed (or dropped, which
/// commits it too: the ring must never be left with a hole).
#[must_use = "a reservation publishes its slot when dropped"]
pub struct Reservation<'a> {
    slot: &'a MpmcSlot,
    payload: NonNull<u8>,
    pos: u64,
    _ring: PhantomData<&'a Ring>,
}

impl Reservation<'_> {
    /// The slot's payload: `slot_size` writable bytes.
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.payload.as_ptr()
    }

    /// The position of this slot in the ring's history.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Publishes the slot to consumers.
    pub fn commit(self) {}
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        // Release: publishes the payload; pairs with the Acquire stamp load
        // in `Ring::try_claim`.
        self.slot
            .stamp
            .store(self.pos.wrapping_add(1), Ordering::Release);
    }
}

/// A published slot owned by one consumer until it is dropped.
#[must_use = "a claim frees its slot when dropped"]
pub struct Claim<'a> {
    slot: &'a MpmcSlot,
    payload: NonNull<u8>,
    next_lap: u64,
    _ring: PhantomData<&'a Ring>,
}

impl Claim<'_> {
    /// The slot's payload: `slot_size` readable bytes.
    pub fn as_ptr(&self) -> *const u8 {
        self.payload.as_ptr()
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        // Release: our reads of the payload are done before a producer of
        // the next lap may write it; pairs with the Acquire stamp load in
        // `Ring::try_reserve`.
        self.slot.stamp.store(self.next_lap, Ordering::Release);
    }
}
