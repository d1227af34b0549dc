//! Where everything lives in a ring region, computed from (kind, capacity,
//! slot size, slot alignment) and checked for every way it can go wrong.

use core::fmt;
use core::mem::{align_of, size_of};
use core::ptr::NonNull;

use crate::sync::{AtomicU64, Tracker};

/// The alignment of one control line. Two lines are used (not one 64-byte
/// line) because adjacent-line prefetchers pull pairs of 64-byte lines.
pub const CACHE_LINE: usize = 128;

/// The largest slot alignment a layout accepts.
pub const MAX_SLOT_ALIGN: usize = 4096;

/// The largest number of slots a ring may have (2^32).
pub const MAX_SLOTS: u64 = 1 << 32;

/// Which algorithm runs over the region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RingKind {
    /// One producer, one consumer (Rigtorp: cached indices, batch publish).
    Spsc,
    /// Many producers, many consumers (Vyukov: a sequence stamp per slot).
    Mpmc,
    /// One publisher, many subscribers that each read every message (a
    /// seqlock stamp per slot, a cursor per subscriber; see
    /// [`broadcast`](crate::broadcast)). With `overwrite` the publisher
    /// never waits and a subscriber that falls a ring behind is told how
    /// many messages it lost; without, the publisher waits for the
    /// slowest live subscriber.
    Broadcast {
        /// The slow-subscriber policy: overwrite (true) or block (false).
        overwrite: bool,
        /// How many subscribers may be attached at once (1 to
        /// [`CURSORS`]; the region has a cursor for each of [`CURSORS`]
        /// participants either way: enforcing the limit is the caller's).
        max_subscribers: u8,
    },
}

/// How many subscriber cursors a broadcast region has: one per entry of a
/// segment's participant table.
#[cfg(not(shmlane_loom))]
pub const CURSORS: usize = 32;
/// Under loom, two: every cursor is scanned on each of the publisher's
/// checks, and 32 would multiply the states explored without adding a
/// behaviour.
#[cfg(shmlane_loom)]
pub const CURSORS: usize = 2;

/// Why a layout or a region was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LayoutError {
    /// The capacity was zero.
    ZeroCapacity,
    /// The slot size was zero.
    ZeroSlotSize,
    /// The capacity needs more than [`MAX_SLOTS`] slots.
    CapacityTooLarge {
        /// The capacity asked for.
        capacity: u64,
    },
    /// The slot alignment is not a power of two or exceeds [`MAX_SLOT_ALIGN`].
    BadAlignment {
        /// The alignment asked for.
        align: usize,
    },
    /// Capacity times slot size does not fit in the address space.
    Overflow,
    /// The region's base address is not aligned to [`RingLayout::region_align`].
    Misaligned {
        /// The alignment the layout needs.
        required: usize,
    },
    /// A handle of one ring kind was asked to use a layout of another
    /// (or a broadcast subscriber an entry past the cursor table).
    WrongKind,
    /// The region is shorter than [`RingLayout::region_len`].
    RegionTooSmall {
        /// Bytes the layout needs.
        needed: usize,
        /// Bytes the region has.
        actual: usize,
    },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroCapacity => f.write_str("ring capacity must be at least 1"),
            Self::ZeroSlotSize => f.write_str("ring slot size must be at least 1 byte"),
            Self::CapacityTooLarge { capacity } => {
                write!(
                    f,
                    "ring capacity {capacity} exceeds the maximum of {MAX_SLOTS} slots"
                )
            }
            Self::BadAlignment { align } => write!(
                f,
                "slot alignment {align} is not a power of two no larger than {MAX_SLOT_ALIGN}"
            ),
            Self::Overflow => f.write_str("capacity times slot size overflows the address space"),
            Self::WrongKind => f.write_str("the layout is for another ring kind"),
            Self::Misaligned { required } => {
                write!(f, "ring region is not aligned to {required} bytes")
            }
            Self::RegionTooSmall { needed, actual } => {
                write!(
                    f,
                    "ring region holds {actual} bytes but the layout needs {needed}"
                )
            }
        }
    }
}

/// A control word alone on its own [`CACHE_LINE`].
// A fixed 128, not `CachePadded`: the region may be a shared segment, whose
// layout must be the same in every process and build, whatever the CPU.
// The in-process channel uses this same layout on the heap.
#[repr(C, align(128))]
pub(crate) struct Line {
    pub(crate) value: AtomicU64,
    /// MPMC enqueue line only: a dequeue index that anonymous producers
    /// saw (never ahead of the real one), so a producer of a ring whose
    /// capacity is below its slot count checks the capacity on the line it
    /// already holds, and reads the consumers' line only when the hint says
    /// the ring may be full. Owned handles (shared segments) ignore it: a
    /// peer could scribble it. Zero elsewhere.
    pub(crate) hint: AtomicU64,
}

/// The two indices at the start of every region. For SPSC `head` is the
/// consumer index and `tail` the producer index; for MPMC they are the
/// dequeue and enqueue positions.
#[repr(C)]
pub(crate) struct Control {
    pub(crate) head: Line,
    pub(crate) tail: Line,
}

#[cfg(not(shmlane_loom))]
const _: () = {
    assert!(size_of::<Control>() == 2 * CACHE_LINE);
    assert!(align_of::<Control>() == CACHE_LINE);
};

/// One subscriber's entry in a broadcast region's cursor table: `value`
/// is the next position it reads, `hint` who it is (a participant's owner
/// id; 0 for a free entry).
pub(crate) type CursorLine = Line;

/// The header in front of each SPSC slot. `stamp` is written only in the
/// first slot of a batch: the position one past the batch's last message.
/// It sits on the same cache line as the slot's payload (unless the slot
/// is aligned to a line, which puts the payload on the next one), so a
/// consumer waiting for the next message watches one line, not the
/// producer's index.
#[repr(C)]
pub(crate) struct SpscSlot {
    pub(crate) stamp: AtomicU64,
    pub(crate) tracker: Tracker,
}

/// The header in front of each MPMC slot: the sequence stamp and, for
/// rings shared between processes, who holds the slot now (see
/// [`mpmc`](crate::mpmc)). Both sit on the slot's own line, next to its
/// payload (unless the slot is aligned to a line, which puts the payload
/// on the next one).
#[repr(C)]
pub(crate) struct MpmcSlot {
    pub(crate) head: MpmcStamp,
    pub(crate) owner: AtomicU64,
}

/// The part of an MPMC slot's header every ring has: the stamp (and, under
/// loom, the payload's access tracker). A *compact* layout (the in-process
/// channel's heap rings, whose handles are all anonymous) has only this in
/// front of the payload: no owner word, 8 bytes less per slot.
#[repr(C)]
pub(crate) struct MpmcStamp {
    pub(crate) stamp: AtomicU64,
    pub(crate) tracker: Tracker,
}

#[cfg(not(shmlane_loom))]
const _: () = {
    assert!(size_of::<SpscSlot>() == 8 && align_of::<SpscSlot>() == 8);
    assert!(size_of::<MpmcSlot>() == 16 && align_of::<MpmcSlot>() == 8);
    assert!(size_of::<MpmcStamp>() == 8 && align_of::<MpmcStamp>() == 8);
};

/// The computed layout of one ring region. Every offset is relative to the
/// region's base; nothing in the region is a pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingLayout {
    kind: RingKind,
    capacity: u64,
    slots: u64,
    slot_size: usize,
    slot_align: usize,
    payload_offset: usize,
    stride: usize,
    slots_offset: usize,
    region_align: usize,
    region_len: usize,
    /// MPMC without owner words (see [`MpmcStamp`]).
    compact: bool,
}

fn round_up(n: usize, align: usize) -> Option<usize> {
    // `align` is a power of two (checked by every caller).
    Some(n.checked_add(align - 1)? & !(align - 1))
}

impl RingLayout {
    /// Computes the layout of a ring that holds exactly `capacity` messages
    /// of at most `slot_size` bytes, each aligned to `slot_align`.
    ///
    /// The ring has `max(2, capacity.next_power_of_two())` slots; a
    /// producer never gets more than `capacity` of them ahead of the
    /// consumers.
    ///
    /// # Errors
    ///
    /// [`LayoutError`] for a zero capacity or slot size, an alignment that
    /// is not a power of two up to [`MAX_SLOT_ALIGN`], more than
    /// [`MAX_SLOTS`] slots, or a region size that overflows.
    pub fn new(
        kind: RingKind,
        capacity: u64,
        slot_size: usize,
        slot_align: usize,
    ) -> Result<Self, LayoutError> {
        Self::build(kind, capacity, slot_size, slot_align, false)
    }

    /// As [`new`](Self::new) for an MPMC ring whose handles will all be
    /// anonymous (one process; [`mpmc::Ring::heap`](crate::mpmc::Ring::heap)):
    /// its slots have no owner word, so the ring takes 8 bytes less per
    /// slot, and [`mpmc::Ring::with_owner`](crate::mpmc::Ring::with_owner)
    /// refuses it. Under loom, the full layout.
    pub(crate) fn compact_mpmc(
        capacity: u64,
        slot_size: usize,
        slot_align: usize,
    ) -> Result<Self, LayoutError> {
        Self::build(
            RingKind::Mpmc,
            capacity,
            slot_size,
            slot_align,
            cfg!(not(shmlane_loom)),
        )
    }

    fn build(
        kind: RingKind,
        capacity: u64,
        slot_size: usize,
        slot_align: usize,
        compact: bool,
    ) -> Result<Self, LayoutError> {
        if capacity == 0 {
            return Err(LayoutError::ZeroCapacity);
        }
        if slot_size == 0 {
            return Err(LayoutError::ZeroSlotSize);
        }
        if !slot_align.is_power_of_two() || slot_align > MAX_SLOT_ALIGN {
            return Err(LayoutError::BadAlignment { align: slot_align });
        }
        if capacity > MAX_SLOTS {
            return Err(LayoutError::CapacityTooLarge { capacity });
        }
        let slots = capacity.next_power_of_two().max(2);
        let (header_size, header_align) = match kind {
            RingKind::Spsc | RingKind::Broadcast { .. } => {
                (size_of::<SpscSlot>(), align_of::<SpscSlot>())
            }
            RingKind::Mpmc if compact => (size_of::<MpmcStamp>(), align_of::<MpmcStamp>()),
            RingKind::Mpmc => (size_of::<MpmcSlot>(), align_of::<MpmcSlot>()),
        };
        let slot_align_eff = slot_align.max(header_align);
        let payload_offset = round_up(header_size, slot_align).ok_or(LayoutError::Overflow)?;
        let stride = payload_offset
            .checked_add(slot_size)
            .and_then(|n| round_up(n, slot_align_eff))
            .ok_or(LayoutError::Overflow)?;
        let region_align = slot_align_eff.max(CACHE_LINE);
        // A broadcast region keeps its subscribers' cursors between the
        // control lines and the slots.
        let control = match kind {
            RingKind::Broadcast { .. } => size_of::<Control>() + CURSORS * size_of::<CursorLine>(),
            _ => size_of::<Control>(),
        };
        let slots_offset = round_up(control, region_align).ok_or(LayoutError::Overflow)?;
        let region_len = usize::try_from(slots)
            .ok()
            .and_then(|n| n.checked_mul(stride))
            .and_then(|n| n.checked_add(slots_offset))
            .filter(|&n| n <= isize::MAX as usize)
            .ok_or(LayoutError::Overflow)?;
        Ok(Self {
            kind,
            capacity,
            slots,
            slot_size,
            slot_align,
            payload_offset,
            stride,
            slots_offset,
            region_align,
            region_len,
            compact,
        })
    }

    /// Whether MPMC slots lack the owner word (see
    /// [`compact_mpmc`](Self::compact_mpmc)).
    #[inline]
    pub(crate) fn is_compact(&self) -> bool {
        self.compact
    }

    /// The ring algorithm.
    pub fn kind(&self) -> RingKind {
        self.kind
    }
    /// How many messages the ring holds at most (exactly as asked).
    #[inline]
    pub fn capacity(&self) -> u64 {
        self.capacity
    }
    /// How many slots the ring has (a power of two, at least 2).
    #[inline]
    pub fn slots(&self) -> u64 {
        self.slots
    }
    /// The largest message a slot holds, in bytes.
    pub fn slot_size(&self) -> usize {
        self.slot_size
    }
    /// The alignment of every slot's payload.
    pub fn slot_align(&self) -> usize {
        self.slot_align
    }
    /// The distance in bytes between two consecutive slots.
    pub fn stride(&self) -> usize {
        self.stride
    }
    /// The bytes a region for this layout must have.
    pub fn region_len(&self) -> usize {
        self.region_len
    }
    /// The alignment a region's base address must have.
    pub fn region_align(&self) -> usize {
        self.region_align
    }

    /// Checks that `len` bytes at `base` can hold this layout.
    ///
    /// # Errors
    ///
    /// [`LayoutError::Misaligned`] or [`LayoutError::RegionTooSmall`].
    pub fn check_region(&self, base: NonNull<u8>, len: usize) -> Result<(), LayoutError> {
        if base.as_ptr().addr() % self.region_align != 0 {
            return Err(LayoutError::Misaligned {
                required: self.region_align,
            });
        }
        if len < self.region_len {
            return Err(LayoutError::RegionTooSmall {
                needed: self.region_len,
                actual: len,
            });
        }
        Ok(())
    }

    /// Writes an empty ring into the region: both indices zero and, for
    /// MPMC, the stamp of slot `i` set to `i`.
    ///
    /// # Errors
    ///
    /// As [`check_region`](Self::check_region); nothing is written then.
    ///
    /// # Safety
    ///
    /// - `base` is valid for writes of `len` bytes.
    /// - No handle (producer, consumer, MPMC ring) is using the region
    ///   while it is initialised.
    pub unsafe fn init(&self, base: NonNull<u8>, len: usize) -> Result<(), LayoutError> {
        // SAFETY: the caller's promise.
        unsafe { self.init_region(base, len, false) }
    }

    /// Whether an empty ring of this layout is all zero bytes: true for
    /// SPSC and broadcast rings (zero stamps, zero indices) and compact
    /// MPMC rings (stamps stored less their slot's index, see
    /// `mpmc::Stamp`); false for MPMC rings in shared memory (slot `i`'s
    /// stamp is `i`), and under loom, where every atomic must be made by
    /// its constructor.
    pub(crate) fn empty_is_zero(&self) -> bool {
        (!matches!(self.kind, RingKind::Mpmc) || self.compact) && !cfg!(shmlane_loom)
    }

    /// As [`init`](Self::init); with `zeroed`, the caller promises that
    /// the region's bytes are all zero, and the slot headers are left as
    /// they are when zero bytes already are an empty slot's header (SPSC
    /// and broadcast slots, and compact MPMC slots, whose stamps are
    /// stored relative to the slot's index: see `mpmc::Stamp`); which
    /// pages to touch is then the caller's choice (`HeapRegion`).
    ///
    /// # Safety
    ///
    /// As [`init`](Self::init), and with `zeroed` every byte of the
    /// region's `len` is zero.
    pub(crate) unsafe fn init_region(
        &self,
        base: NonNull<u8>,
        len: usize,
        zeroed: bool,
    ) -> Result<(), LayoutError> {
        self.check_region(base, len)?;
        let ctrl = base.as_ptr().cast::<Control>();
        let control = Control {
            head: Line {
                value: AtomicU64::new(0),
                hint: AtomicU64::new(0),
            },
            tail: Line {
                value: AtomicU64::new(0),
                hint: AtomicU64::new(0),
            },
        };
        // SAFETY: the region is aligned to `region_align >= align_of::<Control>()`
        // and at least `region_len > size_of::<Control>()` bytes long, writable
        // per the caller's promise, and unused by anyone else.
        unsafe { ctrl.write(control) };
        if let RingKind::Broadcast { .. } = self.kind {
            for i in 0..CURSORS {
                let line = Line {
                    value: AtomicU64::new(0),
                    hint: AtomicU64::new(0),
                };
                // SAFETY: the cursor table lies between the control lines and
                // `slots_offset` (see `build`), aligned to `CACHE_LINE`.
                unsafe { self.cursor_line(base, i).write(line) };
            }
        }
        if zeroed && self.empty_is_zero() {
            return Ok(());
        }
        for i in 0..self.slots {
            let header = self.slot_header(base, i);
            match self.kind {
                RingKind::Spsc | RingKind::Broadcast { .. } => {
                    let slot = SpscSlot {
                        stamp: AtomicU64::new(0),
                        tracker: Tracker::new(),
                    };
                    // SAFETY: `slot_header` is in bounds (i < slots) and aligned
                    // to the header's alignment (stride and region alignment
                    // are multiples of it).
                    unsafe { header.cast::<SpscSlot>().write(slot) };
                }
                RingKind::Mpmc => {
                    let stamp = MpmcStamp {
                        // A compact ring stores a stamp less its slot's
                        // index (see `mpmc::Stamp`).
                        stamp: AtomicU64::new(if self.compact { 0 } else { i }),
                        tracker: Tracker::new(),
                    };
                    if self.compact {
                        // SAFETY: as above, for the compact MPMC header.
                        unsafe { header.cast::<MpmcStamp>().write(stamp) };
                    } else {
                        let slot = MpmcSlot {
                            head: stamp,
                            owner: AtomicU64::new(0),
                        };
                        // SAFETY: as above, for the MPMC header.
                        unsafe { header.cast::<MpmcSlot>().write(slot) };
                    }
                }
            }
        }
        Ok(())
    }

    /// The byte offset of slot `index`'s header from the region base.
    #[inline]
    pub(crate) fn slot_offset(&self, index: u64) -> usize {
        // Cannot overflow: index < slots and slots * stride + slots_offset
        // was checked to fit in `new`.
        self.slots_offset + (index as usize) * self.stride
    }

    fn slot_header(&self, base: NonNull<u8>, index: u64) -> *mut u8 {
        debug_assert!(index < self.slots);
        base.as_ptr().wrapping_add(self.slot_offset(index))
    }

    /// Cursor `index` of a broadcast region's cursor table.
    pub(crate) fn cursor_line(&self, base: NonNull<u8>, index: usize) -> *mut CursorLine {
        debug_assert!(index < CURSORS && matches!(self.kind, RingKind::Broadcast { .. }));
        base.as_ptr()
            .wrapping_add(size_of::<Control>() + index * size_of::<CursorLine>())
            .cast()
    }

    /// The offset of the payload within a slot.
    #[inline]
    pub(crate) fn payload_offset(&self) -> usize {
        self.payload_offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_exact_and_slots_are_powers_of_two() {
        let l = RingLayout::new(RingKind::Mpmc, 3, 8, 8).unwrap();
        assert_eq!((l.capacity(), l.slots()), (3, 4));
        assert_eq!(l.stride(), 24);
        assert_eq!(l.region_len(), 256 + 4 * 24);
        let l = RingLayout::new(RingKind::Spsc, 1, 1, 1).unwrap();
        assert_eq!((l.capacity(), l.slots(), l.stride()), (1, 2, 16));
        let l = RingLayout::new(RingKind::Spsc, 1024, 8, 8).unwrap();
        assert_eq!(l.region_len(), 256 + 1024 * 16);
    }

    #[test]
    fn large_alignment_moves_the_slots() {
        let l = RingLayout::new(RingKind::Mpmc, 2, 1, 256).unwrap();
        assert_eq!(l.region_align(), 256);
        assert_eq!(l.payload_offset(), 256);
        assert_eq!(l.stride(), 512);
        assert_eq!(l.slot_offset(0) % 256, 0);
    }

    #[test]
    fn bad_parameters_are_errors() {
        use LayoutError::*;
        assert_eq!(RingLayout::new(RingKind::Spsc, 0, 8, 8), Err(ZeroCapacity));
        assert_eq!(RingLayout::new(RingKind::Spsc, 8, 0, 8), Err(ZeroSlotSize));
        assert_eq!(
            RingLayout::new(RingKind::Spsc, 8, 8, 3),
            Err(BadAlignment { align: 3 })
        );
        assert_eq!(
            RingLayout::new(RingKind::Spsc, 8, 8, 0),
            Err(BadAlignment { align: 0 })
        );
        assert_eq!(
            RingLayout::new(RingKind::Spsc, 8, 8, 8192),
            Err(BadAlignment { align: 8192 })
        );
        assert_eq!(
            RingLayout::new(RingKind::Mpmc, u64::MAX, 8, 8),
            Err(CapacityTooLarge { capacity: u64::MAX })
        );
        assert_eq!(
            RingLayout::new(RingKind::Mpmc, MAX_SLOTS, usize::MAX / 2, 8),
            Err(Overflow)
        );
        assert_eq!(
            RingLayout::new(RingKind::Spsc, 4, usize::MAX - 2, 1),
            Err(Overflow)
        );
    }
}
