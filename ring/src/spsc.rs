//! Single-producer single-consumer ring (after Rigtorp's SPSCQueue).
//!
//! The producer owns `tail` and the consumer owns `head`, each on its own
//! 128-byte line. Each side keeps its own index in a local and a cached copy
//! of how far it may go.
//!
//! A batch of `n` messages at position `t` is published with one store:
//! the stamp of slot `t` becomes `t + n` (Release). The consumer, once it
//! has read everything it knew of, looks at the stamp of its head slot,
//! which is on the same cache line as that slot's payload (unless the slots
//! are aligned to a line: then the payload starts on the next line); so a
//! small message crosses between cores as one cache line, as in a bare
//! ping-pong. A stamp
//! left from an earlier lap is never greater than its slot's position, so
//! it never reads as news. `tail` is still stored after each batch, for
//! tools, for a consumer that attaches mid-stream, and for
//! [`Consumer::refresh`], but a consumer that keeps up never reads it.

use core::ptr::NonNull;

use crate::layout::{Control, LayoutError, RingKind, RingLayout, SpscSlot};
use crate::sync::Ordering;
use crate::{Corrupted, HeapRegion, PopError, PushError};
use alloc::sync::Arc;

/// The part of a layout both sides need, copied into process-local memory.
#[derive(Clone, Copy)]
struct Geometry {
    base: NonNull<u8>,
    layout: RingLayout,
    mask: u64,
}

impl Geometry {
    /// # Safety
    ///
    /// As for [`Producer::attach`].
    unsafe fn new(base: NonNull<u8>, len: usize, layout: &RingLayout) -> Result<Self, LayoutError> {
        assert_eq!(
            layout.kind(),
            RingKind::Spsc,
            "an SPSC handle needs an SPSC layout"
        );
        layout.check_region(base, len)?;
        Ok(Self {
            base,
            layout: *layout,
            mask: layout.slots() - 1,
        })
    }

    fn control(&self) -> &Control {
        // SAFETY: the region starts with an initialised `Control` (attach's
        // contract) and outlives this handle.
        unsafe { self.base.cast::<Control>().as_ref() }
    }

    /// Messages in the ring now, clamped to the capacity (a snapshot; the
    /// indices come from shared memory and may be garbage).
    fn len(&self) -> u64 {
        let ctrl = self.control();
        // Acquire: a snapshot consistent with each side's last publish.
        let head = ctrl.head.value.load(Ordering::Acquire);
        let tail = ctrl.tail.value.load(Ordering::Acquire);
        (tail.wrapping_sub(head) as i64).clamp(0, self.layout.capacity() as i64) as u64
    }

    /// The slot for the ever-growing `index`, and a pointer to its payload.
    fn slot(&self, index: u64) -> (&SpscSlot, *mut u8) {
        let offset = self.layout.slot_offset(index & self.mask);
        let header = self.base.as_ptr().wrapping_add(offset);
        // SAFETY: `index & mask < slots`, so the header lies inside the region,
        // was initialised by `RingLayout::init`, and is aligned.
        let slot = unsafe { &*header.cast::<SpscSlot>() };
        (slot, header.wrapping_add(self.layout.payload_offset()))
    }
}

/// The writing end of an SPSC ring. `Send` but not `Sync`: there is one.
pub struct Producer {
    geo: Geometry,
    tail: u64,
    cached_head: u64,
    /// Set by a reload of the consumer's index that found the ring full
    /// (in [`free`](Self::free), so in every push); cleared by a reload
    /// that finds room, there or in [`refilled`](Self::refilled).
    found_full: bool,
    /// How many slots past one must be free before [`refilled`](Self::refilled)
    /// says so, after the ring was found full (0: one free slot is enough).
    refill: u64,
    /// The heap region this producer keeps alive, if it lives in one
    /// ([`channel`]).
    _region: Option<Arc<HeapRegion>>,
}

// SAFETY: the producer's state is its own locals plus the region, which the
// attach contract keeps alive and shared only through atomics.
unsafe impl Send for Producer {}

/// One look in this many by a synced consumer also reads the producer's
/// index (see [`Consumer::resync_due`]).
const RESYNC_EVERY: u32 = 64;

/// The reading end of an SPSC ring. `Send` but not `Sync`: there is one.
pub struct Consumer {
    geo: Geometry,
    head: u64,
    cached_tail: u64,
    /// Whether a look at the producer's index succeeded (see
    /// [`synced`](Self::synced)).
    synced: bool,
    /// Calls of [`resync_due`](Self::resync_due), counted while synced.
    looks: u32,
    /// As [`Producer`]'s.
    _region: Option<Arc<HeapRegion>>,
}

// SAFETY: as for `Producer`.
unsafe impl Send for Consumer {}

/// An SPSC ring of `capacity` messages of up to `slot_size` bytes (aligned
/// to `slot_align`) in its own heap allocation, and its two ends, which
/// keep it alive: the safe way to use the ring within one process.
///
/// # Errors
///
/// [`LayoutError`] for a capacity, size or alignment no ring takes.
pub fn channel(
    capacity: u64,
    slot_size: usize,
    slot_align: usize,
) -> Result<(Producer, Consumer), LayoutError> {
    let region = Arc::new(HeapRegion::new(
        RingKind::Spsc,
        capacity,
        slot_size,
        slot_align,
    )?);
    // SAFETY: the region is initialised for this layout and lives as long as
    // both handles (each keeps the `Arc`); these are its only producer and
    // consumer.
    let (mut tx, mut rx) = unsafe {
        (
            Producer::attach(region.base(), region.len(), region.layout())?,
            Consumer::attach(region.base(), region.len(), region.layout())?,
        )
    };
    tx._region = Some(Arc::clone(&region));
    rx._region = Some(region);
    Ok((tx, rx))
}

impl Producer {
    /// Attaches the producer to an initialised SPSC region.
    ///
    /// # Errors
    ///
    /// [`LayoutError`] if the region is misaligned or too short.
    ///
    /// # Panics
    ///
    /// If `layout` is not an SPSC layout.
    ///
    /// # Safety
    ///
    /// - `base` is valid for reads and writes of `len` bytes for as long as
    ///   the producer lives, and holds a ring initialised by
    ///   [`RingLayout::init`] with this same layout.
    /// - No other producer is attached to the region at the same time.
    pub unsafe fn attach(
        base: NonNull<u8>,
        len: usize,
        layout: &RingLayout,
    ) -> Result<Self, LayoutError> {
        // SAFETY: forwarded from the caller.
        let geo = unsafe { Geometry::new(base, len, layout) }?;
        let ctrl = geo.control();
        // Relaxed: the tail is only ever written by the producer, and the
        // caller guarantees no other producer is attached now.
        let mut tail = ctrl.tail.value.load(Ordering::Relaxed);
        // Acquire: pairs with the consumer's Release store of `head`.
        let head = ctrl.head.value.load(Ordering::Acquire);
        // A previous producer may have stamped a batch and died before
        // storing `tail`: consumers treat that batch as published, so we
        // must too.
        // Acquire: pairs with the dead producer's Release stamp store.
        let stamp = geo.slot(tail).0.stamp.load(Ordering::Acquire);
        let ahead = stamp.wrapping_sub(tail);
        if ahead as i64 > 0 && ahead <= geo.layout.capacity() {
            tail = stamp;
            // Release: record it, so a consumer that stopped inside that
            // batch and is replaced finds it through `tail` (see `look`).
            ctrl.tail.value.store(tail, Ordering::Release);
        }
        Ok(Self {
            geo,
            tail,
            cached_head: head,
            found_full: false,
            refill: 0,
            _region: None,
        })
    }

    /// The number of messages the ring holds at most.
    pub fn capacity(&self) -> u64 {
        self.geo.layout.capacity()
    }

    /// Sets how many slots past one a producer that found the ring full
    /// waits to see free before [`refilled`](Self::refilled) says so
    /// (clamped below the capacity; 0, the default, is one free slot).
    pub fn set_refill(&mut self, slots: u64) {
        self.refill = slots.min(self.capacity().saturating_sub(1));
    }

    /// A hint for a producer that waits by spinning: false from when a
    /// reload of the consumer's index found the ring full (a push that
    /// found it full, or a call of [`free`](Self::free)) until `refill + 1`
    /// slots are free again (it reads the consumer's index each time until
    /// then); true otherwise. A producer that writes each slot the moment the consumer
    /// frees it writes on the cache lines the consumer is reading, and the
    /// two then move at the pace of those lines crossing between their
    /// cores; one that waits for a stretch writes lines apart from them.
    /// Pushes do not look at it: a push succeeds whenever a slot is free.
    ///
    /// # Errors
    ///
    /// [`Corrupted`] as for [`free`](Self::free).
    #[inline]
    pub fn refilled(&mut self) -> Result<bool, Corrupted> {
        if !self.found_full {
            return Ok(true);
        }
        self.refilled_slow()
    }

    #[cold]
    fn refilled_slow(&mut self) -> Result<bool, Corrupted> {
        let used = self.reload_head()?;
        if self.capacity() - used > self.refill {
            self.found_full = false;
            return Ok(true);
        }
        Ok(false)
    }

    /// The size of one slot's payload in bytes.
    pub fn slot_size(&self) -> usize {
        self.geo.layout.slot_size()
    }

    /// Messages in the ring now (a snapshot).
    pub fn len(&self) -> u64 {
        self.geo.len()
    }

    /// Whether the ring is empty now (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many slots can be written now without waiting.
    ///
    /// # Errors
    ///
    /// [`Corrupted`] if the consumer index in the region is not within
    /// `capacity` behind the producer index.
    pub fn free(&mut self) -> Result<u64, Corrupted> {
        let capacity = self.capacity();
        let used = self.tail.wrapping_sub(self.cached_head);
        if used < capacity {
            return Ok(capacity - used);
        }
        let used = self.reload_head()?;
        // Only here, where the consumer's index was read: a full ring
        // found from the cached index alone never gets this far.
        self.found_full = used == capacity;
        Ok(capacity - used)
    }

    /// Reads the consumer's index (once) into the cached copy; returns the
    /// slots in use.
    ///
    /// # Errors
    ///
    /// [`Corrupted`] if that index is not within `capacity` behind the
    /// producer's (it comes from shared memory).
    #[inline]
    fn reload_head(&mut self) -> Result<u64, Corrupted> {
        // Acquire: pairs with the Release store of `head` in
        // `Consumer::read_batch` and `release_front`; the consumer is done
        // with every slot before `head`, so they may be overwritten.
        let head = self.geo.control().head.value.load(Ordering::Acquire);
        let used = self.tail.wrapping_sub(head);
        if used > self.capacity() {
            return Err(Corrupted);
        }
        self.cached_head = head;
        Ok(used)
    }

    /// Writes up to `max` messages and publishes them with one store.
    ///
    /// `write(i, payload)` is called for `i` in `0..n` with a pointer to
    /// `slot_size()` writable bytes, aligned to the layout's slot alignment.
    /// Returns `n`, which is 0 when the ring is full.
    ///
    /// # Errors
    ///
    /// [`Corrupted`] as for [`free`](Self::free).
    pub fn write_batch(
        &mut self,
        max: u64,
        mut write: impl FnMut(u64, *mut u8),
    ) -> Result<u64, Corrupted> {
        let n = self.free()?.min(max);
        for i in 0..n {
            let (slot, payload) = self.geo.slot(self.tail.wrapping_add(i));
            slot.tracker.write();
            write(i, payload);
        }
        if n > 0 {
            let end = self.tail.wrapping_add(n);
            // Release: publishes the `n` payloads written above with one
            // store; pairs with the Acquire stamp load in `Consumer::look`.
            self.geo
                .slot(self.tail)
                .0
                .stamp
                .store(end, Ordering::Release);
            self.tail = end;
            // Release: for readers of `tail` (a consumer attaching or
            // refreshing, tools); pairs with their Acquire loads. A consumer
            // that keeps up never reads it, so this line stays here.
            self.geo
                .control()
                .tail
                .value
                .store(self.tail, Ordering::Release);
        }
        Ok(n)
    }

    /// Writes one message through `write` if there is room.
    ///
    /// # Errors
    ///
    /// [`PushError::Full`] (nothing called) or [`PushError::Corrupted`].
    pub fn try_push_with(&mut self, write: impl FnOnce(*mut u8)) -> Result<(), PushError> {
        let mut write = Some(write);
        match self.write_batch(1, |_, p| {
            if let Some(w) = write.take() {
                w(p)
            }
        })? {
            0 => Err(PushError::Full),
            _ => Ok(()),
        }
    }

    /// Offers one slot to `write`, and publishes it only if `write`
    /// returns true (a message that turned out not to fit is simply not
    /// published; the slot stays this producer's). Returns what `write`
    /// returned.
    ///
    /// # Errors
    ///
    /// [`PushError::Full`] (nothing called) or [`PushError::Corrupted`].
    pub fn try_push_if(&mut self, write: impl FnOnce(*mut u8) -> bool) -> Result<bool, PushError> {
        if self.free()? == 0 {
            return Err(PushError::Full);
        }
        let (slot, payload) = self.geo.slot(self.tail);
        slot.tracker.write();
        if !write(payload) {
            return Ok(false);
        }
        self.tail = self.tail.wrapping_add(1);
        // Release: publishes the payload written above, right after it (a
        // consumer polling this line must not catch it between the two);
        // pairs with the Acquire stamp load in `Consumer::look`.
        slot.stamp.store(self.tail, Ordering::Release);
        // Release: as in `write_batch`.
        self.geo
            .control()
            .tail
            .value
            .store(self.tail, Ordering::Release);
        Ok(true)
    }

    /// Copies `bytes` into one slot.
    ///
    /// # Errors
    ///
    /// [`PushError::TooLarge`] if `bytes` is longer than a slot, else as
    /// [`try_push_with`](Self::try_push_with).
    pub fn try_push(&mut self, bytes: &[u8]) -> Result<(), PushError> {
        if bytes.len() > self.slot_size() {
            return Err(PushError::TooLarge);
        }
        self.try_push_with(|p| {
            // SAFETY: `p` points to `slot_size() >= bytes.len()` writable bytes
            // that nobody else touches until the slot is published, and
            // `bytes` is a separate borrow, so they do not overlap.
            unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len()) }
        })
    }
}

impl Consumer {
    /// Attaches the consumer to an initialised SPSC region.
    ///
    /// # Errors
    ///
    /// [`LayoutError`] if the region is misaligned or too short.
    ///
    /// # Panics
    ///
    /// If `layout` is not an SPSC layout.
    ///
    /// # Safety
    ///
    /// - As for [`Producer::attach`], with "consumer" for "producer".
    pub unsafe fn attach(
        base: NonNull<u8>,
        len: usize,
        layout: &RingLayout,
    ) -> Result<Self, LayoutError> {
        // SAFETY: forwarded from the caller.
        let geo = unsafe { Geometry::new(base, len, layout) }?;
        let ctrl = geo.control();
        // Relaxed: only the consumer writes `head`, and it is not running.
        let head = ctrl.head.value.load(Ordering::Relaxed);
        let mut consumer = Self {
            geo,
            head,
            cached_tail: head,
            synced: false,
            looks: 0,
            _region: None,
        };
        // A previous consumer may have stopped inside a batch, whose stamp
        // is behind us: learn what is published from `tail`. Garbage there is
        // reported by the next call instead.
        let _ = consumer.refresh();
        Ok(consumer)
    }

    /// The number of messages the ring holds at most.
    pub fn capacity(&self) -> u64 {
        self.geo.layout.capacity()
    }

    /// The size of one slot's payload in bytes.
    pub fn slot_size(&self) -> usize {
        self.geo.layout.slot_size()
    }

    /// Messages in the ring now (a snapshot).
    pub fn len(&self) -> u64 {
        self.geo.len()
    }

    /// Whether the ring is empty now (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many messages can be read now without waiting. Once what it
    /// knew of is read, it looks only at the head slot's stamp (the
    /// payload's own cache line); see [`refresh`](Self::refresh).
    ///
    /// # Errors
    ///
    /// [`Corrupted`] if a stamp claims more than `capacity` messages ready.
    pub fn available(&mut self) -> Result<u64, Corrupted> {
        self.look(false, 1)
    }

    /// As [`available`](Self::available), but also reads the producer's
    /// index: needed only by a consumer that does not know where the next
    /// batch starts (not [`synced`](Self::synced)), and now and then by
    /// any (see [`resync_due`](Self::resync_due)). Costs a read of the
    /// line the producer writes last.
    ///
    /// # Errors
    ///
    /// [`Corrupted`] if the index or a stamp claims more than `capacity`
    /// messages ready.
    pub fn refresh(&mut self) -> Result<u64, Corrupted> {
        self.look(true, 1)
    }

    /// Whether this consumer has read the producer's index once (at
    /// attach, or in a [`refresh`](Self::refresh) since) and found it
    /// sound. From then on the end it knows is always where a batch starts,
    /// so the head slot's stamp alone tells whether more is published, for
    /// sleeping too (the stamp is stored before the producer's wakeup
    /// check): only a consumer not yet synced needs `refresh` to find
    /// messages.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// Whether a consumer that polls by stamps should also read the
    /// producer's index ([`refresh`](Self::refresh)) on this look: always
    /// while it is not [`synced`](Self::synced), and on one call in
    /// `RESYNC_EVERY` (64) after. The occasional read puts a consumer that
    /// a peer's scribbled stamp sent short of a batch's end back in line;
    /// otherwise it would wait for good for messages published behind it.
    pub fn resync_due(&mut self) -> bool {
        if !self.synced {
            return true;
        }
        self.looks = self.looks.wrapping_add(1);
        self.looks % RESYNC_EVERY == 0
    }

    /// Learns how many messages are ready, following batch stamps from the
    /// known end until at least `want` are known (or no more are
    /// published). Each stamp read is in a slot about to be read anyway.
    fn look(&mut self, precise: bool, want: u64) -> Result<u64, Corrupted> {
        let capacity = self.capacity();
        let mut end = self.cached_tail;
        if end.wrapping_sub(self.head) as i64 <= 0 {
            end = self.head;
        }
        // Whether `end` is known to be where a batch starts (see `synced`).
        let mut boundary = self.synced;
        while end.wrapping_sub(self.head) < want.min(capacity) {
            // `end` is where the next batch starts (or, for a consumer that
            // attached inside a batch, a position whose stamp is stale and
            // reads as nothing; `refresh` covers that case). Acquire: pairs
            // with the Release store of the stamp in `Producer::write_batch`,
            // making the batch's payloads visible.
            let stamp = self.geo.slot(end).0.stamp.load(Ordering::Acquire);
            if stamp.wrapping_sub(end) as i64 <= 0 {
                break;
            }
            if stamp.wrapping_sub(self.head) > capacity {
                return Err(Corrupted);
            }
            end = stamp;
            boundary = true;
        }
        if precise {
            // Acquire: pairs with the Release store of `tail` in
            // `Producer::write_batch` (made after the stamps it covers).
            let tail = self.geo.control().tail.value.load(Ordering::Acquire);
            if tail.wrapping_sub(end) as i64 > 0 {
                if tail.wrapping_sub(self.head) > capacity {
                    return Err(Corrupted);
                }
                end = tail;
                boundary = true;
            } else if tail == end {
                boundary = true;
            } else {
                // `tail` is behind: a producer stamped a batch at `tail` and
                // died before recording it (a consumer may even be inside
                // that batch). The batch's stamp still says where it ends.
                // Acquire: pairs with that producer's Release stamp store.
                let stamp = self.geo.slot(tail).0.stamp.load(Ordering::Acquire);
                let ahead = stamp.wrapping_sub(tail);
                if ahead as i64 > 0 && ahead <= capacity && stamp.wrapping_sub(end) as i64 > 0 {
                    if stamp.wrapping_sub(self.head) > capacity {
                        return Err(Corrupted);
                    }
                    end = stamp;
                    boundary = true;
                }
            }
            // The producer's index and every end a batch's stamp names are
            // where a batch starts; only an end no stamp or index confirmed
            // (garbage at `tail`) leaves the consumer unsynced.
            self.synced = boundary;
        }
        self.cached_tail = end;
        Ok(end.wrapping_sub(self.head))
    }

    /// Reads up to `max` messages and frees their slots with one store.
    ///
    /// `read(i, payload)` is called for `i` in `0..n` with a pointer to the
    /// `slot_size()` bytes of the slot. Returns `n`, 0 when the ring is empty.
    ///
    /// # Errors
    ///
    /// [`Corrupted`] as for [`available`](Self::available).
    pub fn read_batch(
        &mut self,
        max: u64,
        mut read: impl FnMut(u64, *const u8),
    ) -> Result<u64, Corrupted> {
        let n = self.look(false, max)?.min(max);
        // Frees the slots read so far even if `read` unwinds, so a caller
        // that moves values out never sees (and drops) one twice.
        struct Release<'a> {
            consumer: &'a mut Consumer,
            done: u64,
        }
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                if self.done > 0 {
                    let c = &mut *self.consumer;
                    c.head = c.head.wrapping_add(self.done);
                    // Release: the reads are done before the producer may
                    // reuse the slots; pairs with the Acquire load of `head`
                    // in `Producer::free`.
                    c.geo.control().head.value.store(c.head, Ordering::Release);
                }
            }
        }
        let mut guard = Release {
            consumer: self,
            done: 0,
        };
        for i in 0..n {
            let (slot, payload) = guard.consumer.geo.slot(guard.consumer.head.wrapping_add(i));
            slot.tracker.read();
            read(i, payload);
            guard.done = i + 1;
        }
        Ok(n)
    }

    /// Reads one message through `read` if there is one.
    ///
    /// # Errors
    ///
    /// [`PopError::Empty`] (nothing called) or [`PopError::Corrupted`].
    pub fn try_pop_with<R>(&mut self, read: impl FnOnce(*const u8) -> R) -> Result<R, PopError> {
        let mut read = Some(read);
        let mut out = None;
        self.read_batch(1, |_, p| {
            if let Some(r) = read.take() {
                out = Some(r(p));
            }
        })?;
        out.ok_or(PopError::Empty)
    }

    /// The payload of the oldest published message, left in place until
    /// [`release_front`](Self::release_front): for reading a message where
    /// it lies for as long as the caller needs.
    ///
    /// # Errors
    ///
    /// [`PopError::Empty`] or [`PopError::Corrupted`].
    pub fn front(&mut self) -> Result<*const u8, PopError> {
        if self.look(false, 1)? == 0 {
            return Err(PopError::Empty);
        }
        let (slot, payload) = self.geo.slot(self.head);
        slot.tracker.read();
        Ok(payload)
    }

    /// Frees the slot [`front`](Self::front) returned; the producer may
    /// overwrite it from now on. Returns false (and does nothing) when no
    /// message is known to be ready, i.e. without a `front` before it.
    pub fn release_front(&mut self) -> bool {
        if self.cached_tail.wrapping_sub(self.head) as i64 <= 0 {
            return false;
        }
        self.head = self.head.wrapping_add(1);
        // Release: the reads of the slot happen before the producer may
        // reuse it; pairs with the Acquire load of `head` in
        // `Producer::free`.
        self.geo
            .control()
            .head
            .value
            .store(self.head, Ordering::Release);
        true
    }

    /// Copies one message into `out`, which must be `slot_size()` long or
    /// longer.
    ///
    /// # Errors
    ///
    /// As [`try_pop_with`](Self::try_pop_with).
    ///
    /// # Panics
    ///
    /// If `out` is shorter than a slot.
    pub fn try_pop(&mut self, out: &mut [u8]) -> Result<(), PopError> {
        let size = self.slot_size();
        assert!(out.len() >= size, "output buffer shorter than a slot");
        self.try_pop_with(|p| {
            // SAFETY: `p` points to `size` bytes of a published slot that the
            // producer will not touch until `head` moves past it; `out` is a
            // distinct, long enough buffer.
            unsafe { core::ptr::copy_nonoverlapping(p, out.as_mut_ptr(), size) }
        })
    }
}
