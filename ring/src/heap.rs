//! A ring in its own heap allocation: the safe way in for rings that live
//! in one process (as rtrb's `RingBuffer::new`), with no pointers, lengths
//! or lifetimes for the caller to vouch for.

use alloc::alloc::{alloc_zeroed, dealloc, handle_alloc_error, Layout};
use core::ptr::NonNull;

use crate::{LayoutError, RingKind, RingLayout};

/// A heap region laid out and initialised for one ring, freed when the last
/// handle that keeps it ([`spsc::channel`](crate::spsc::channel),
/// [`mpmc::Ring::heap`](crate::mpmc::Ring::heap)) or the last owner of it
/// is dropped.
#[derive(Debug)]
pub struct HeapRegion {
    /// The region's first byte, aligned to the layout's `region_align`.
    base: NonNull<u8>,
    /// The allocation, which starts at or before `base`.
    raw: NonNull<u8>,
    /// The allocation's layout.
    mem: Layout,
    layout: RingLayout,
}

/// The alignment the global allocator gives for nothing (glibc's malloc:
/// 16). A region asks for no more: it over-allocates and aligns itself, so
/// that the allocator serves it on its plain path, which gives the same
/// large block back to the next channel of the same size. (An aligned
/// request of 16 MB made glibc's heap grow by a fresh, page-faulting block
/// on every other channel: crossbeam's `bounded_seq` shape ran 0.85x.)
const MALLOC_ALIGN: usize = 16;

/// The stride at which a new region's used part is touched: the smallest
/// page size of the platforms the crate runs on (a larger page is touched
/// more than once, which costs nothing).
const PAGE: usize = 4096;

// SAFETY: the region is plain heap memory owned by this value; the rings
// reach it only through atomics and slots they hold.
unsafe impl Send for HeapRegion {}
// SAFETY: as above; `&HeapRegion` hands out addresses and words only.
unsafe impl Sync for HeapRegion {}

impl HeapRegion {
    /// Allocates and initialises a region for a ring of `kind` holding
    /// `capacity` messages of `slot_size` bytes aligned to `slot_align`.
    ///
    /// # Errors
    ///
    /// [`LayoutError`] for a capacity, size or alignment no ring takes.
    ///
    /// # Panics
    ///
    /// Aborts (as `Vec` does) when the allocation fails.
    pub fn new(
        kind: RingKind,
        capacity: u64,
        slot_size: usize,
        slot_align: usize,
    ) -> Result<Self, LayoutError> {
        Self::with_layout(RingLayout::new(kind, capacity, slot_size, slot_align)?)
    }

    /// Allocates and initialises a region for `layout`. The allocation is
    /// zeroed, and slot headers whose empty form is zero bytes are not
    /// written again. The pages of the first `capacity` slots are touched
    /// (one write a page); those of the slots past it (the slot count is a
    /// power of two) are left to the kernel until a later lap reaches them.
    /// A channel of capacity 5M `u64`s then touches 80 MB where writing
    /// all 8.4M stamps took 134 MB and 1.7x crossbeam's time. Touching
    /// nothing at all was worse: pages first met by a waiting consumer's
    /// read and then a producer's write on the other CPU took crossbeam's
    /// `bounded_spsc` shape from 0.92x to 0.30-0.65x at 5M messages.
    pub(crate) fn with_layout(layout: RingLayout) -> Result<Self, LayoutError> {
        let align = layout.region_align();
        let slack = align.saturating_sub(MALLOC_ALIGN);
        let mem = layout
            .region_len()
            .checked_add(slack)
            .and_then(|size| Layout::from_size_align(size, align.min(MALLOC_ALIGN)).ok())
            .ok_or(LayoutError::Overflow)?;
        // SAFETY: `mem` has a non-zero size: a region always holds the
        // control lines.
        let raw = unsafe { alloc_zeroed(mem) };
        let raw = NonNull::new(raw).unwrap_or_else(|| handle_alloc_error(mem));
        // The first `align`-aligned byte: at most `slack` bytes in, since
        // the allocation is `MALLOC_ALIGN`-aligned (or `align` is below it).
        let skip = raw.as_ptr().addr().wrapping_neg() & (align - 1);
        debug_assert!(skip <= slack);
        // SAFETY: `skip <= slack`, inside the allocation.
        let base = unsafe { raw.add(skip) };
        let region = Self {
            base,
            raw,
            mem,
            layout,
        };
        // SAFETY: `region_len` bytes of a fresh, zeroed allocation from
        // `base`, aligned to the region's alignment, used by nobody yet.
        unsafe { layout.init_region(base, layout.region_len(), true) }?;
        // Only where `init` left the slots as the allocator gave them
        // (zero is their empty form): elsewhere (an MPMC ring for shared
        // memory, whose stamps `init` wrote; loom's atomics) the pages
        // are touched already, and a zero byte would change a stamp.
        // (`capacity <= slots`, and at least 1: the last used slot's end
        // lies within `region_len`.)
        let end = if layout.empty_is_zero() {
            layout.slot_offset(layout.capacity() - 1) + layout.stride()
        } else {
            0
        };
        for at in (0..end).step_by(PAGE) {
            // SAFETY: `at < end <= region_len`, inside the region, written
            // by nobody else yet; every byte of a region whose empty form
            // is all zero is zero now, so this writes what is there.
            // Volatile so that the store of a zero to zeroed memory is not
            // left out.
            unsafe { base.as_ptr().add(at).write_volatile(0) };
        }
        Ok(region)
    }

    /// The layout the region was made for.
    pub fn layout(&self) -> &RingLayout {
        &self.layout
    }

    /// The region's first byte (for callers that attach handles
    /// themselves, or inspect the region).
    pub fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// The region's length in bytes.
    pub fn len(&self) -> usize {
        self.layout.region_len()
    }

    /// Always false: a region holds at least its control lines.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The 8-byte word at `offset` as an atomic, for tests and fuzz
    /// targets that play a peer writing to the region.
    ///
    /// # Panics
    ///
    /// If `offset` is not 8-aligned or the word is outside the region.
    #[cfg(not(shmlane_loom))]
    pub fn word(&self, offset: usize) -> &core::sync::atomic::AtomicU64 {
        assert!(
            offset % 8 == 0 && offset + 8 <= self.len(),
            "word {offset} outside the region"
        );
        // SAFETY: in bounds and aligned (checked; the base is at least
        // cache-line aligned); the rings access the same words only
        // through atomics of the same size.
        unsafe { &*self.base.as_ptr().add(offset).cast() }
    }
}

impl Drop for HeapRegion {
    fn drop(&mut self) {
        // SAFETY: allocated in `with_layout` as `self.raw` with `self.mem`; the handles that keep
        // the region hold it in an `Arc`, so none is left.
        unsafe { dealloc(self.raw.as_ptr(), self.mem) }
    }
}

#[cfg(all(test, not(shmlane_loom)))]
mod tests {
    use crate::{mpmc, spsc, HeapRegion, LayoutError, RingKind};

    #[test]
    fn heap_rings_carry_messages_and_outlive_either_end() {
        let (mut tx, mut rx) = spsc::channel(2, 8, 8).unwrap();
        tx.try_push(&7u64.to_ne_bytes()).unwrap();
        // The consumer keeps the region alive after the producer is gone.
        drop(tx);
        let mut out = [0u8; 8];
        rx.try_pop(&mut out).unwrap();
        assert_eq!(u64::from_ne_bytes(out), 7);

        let ring = mpmc::Ring::heap(2, 8, 8).unwrap();
        let r = ring.try_reserve().unwrap();
        // SAFETY: an 8-byte, 8-aligned payload this reservation holds.
        unsafe { r.as_mut_ptr().cast::<u64>().write(9) };
        r.commit().unwrap();
        let c = ring.try_claim().unwrap();
        // SAFETY: the published payload this claim holds.
        assert_eq!(unsafe { c.as_ptr().cast::<u64>().read() }, 9);
        c.release().unwrap();
    }

    #[test]
    fn empty_headers_written_in_full_are_zero_bytes_where_init_skips_them() {
        use core::sync::atomic::Ordering::Relaxed;
        let broadcast = RingKind::Broadcast {
            overwrite: false,
            max_subscribers: 2,
        };
        let layouts = [
            crate::RingLayout::new(RingKind::Spsc, 4, 8, 8).unwrap(),
            crate::RingLayout::new(broadcast, 4, 8, 8).unwrap(),
            crate::RingLayout::compact_mpmc(4, 8, 8).unwrap(),
        ];
        for layout in layouts {
            assert!(layout.empty_is_zero());
            let region = HeapRegion::with_layout(layout).unwrap();
            // SAFETY: the region is this layout's, used by nobody.
            unsafe { layout.init(region.base(), region.len()) }.unwrap();
            // Every header written by `init` in full is zero bytes, so
            // leaving a zeroed region's headers alone is the same.
            let slots = layout.slot_offset(0);
            assert!(
                (slots..region.len())
                    .step_by(8)
                    .all(|at| region.word(at).load(Relaxed) == 0),
                "{:?}",
                layout.kind()
            );
        }
        assert!(!crate::RingLayout::new(RingKind::Mpmc, 4, 8, 8)
            .unwrap()
            .empty_is_zero());
    }

    #[test]
    fn large_regions_of_every_kind_carry_laps_of_messages() {
        // Capacities past a page of slots: the pages touched at creation
        // must keep every stamp (an MPMC ring for shared memory stores
        // slot i's stamp as i; 256 slots of 24 bytes put slot 160 on the
        // second page, where a touch once zeroed it).
        // (Under Miri, the case that failed only: it interprets slowly.)
        let cases: &[(u64, usize)] = if cfg!(miri) {
            &[(256, 24)]
        } else {
            &[(256, 8), (256, 24), (1000, 8)]
        };
        for &(capacity, size) in cases {
            let region = HeapRegion::new(RingKind::Mpmc, capacity, size, 8).unwrap();
            // SAFETY: the region outlives the handle, its only one.
            let ring = unsafe { mpmc::Ring::attach(region.base(), region.len(), region.layout()) }
                .unwrap();
            let compact = mpmc::Ring::heap(capacity, size, 8).unwrap();
            let (mut tx, mut rx) = spsc::channel(capacity, size, 8).unwrap();
            // One lap and a few more positions: every slot, then a wrap.
            for lap in 0..capacity + 8 {
                for r in [&ring, &compact] {
                    r.try_push_with(|p| {
                        // SAFETY: an 8-aligned payload of at least 8 bytes.
                        unsafe { p.cast::<u64>().write(lap) }
                    })
                    .unwrap();
                    // SAFETY: every published payload starts with a u64.
                    let got = r.try_pop_with(|p| unsafe { p.cast::<u64>().read() });
                    assert_eq!(got, Ok(lap), "capacity {capacity}, size {size}");
                }
                let mut bytes = std::vec![0u8; size];
                bytes[..8].copy_from_slice(&lap.to_ne_bytes());
                tx.try_push(&bytes).unwrap();
                let mut out = std::vec![0u8; size];
                rx.try_pop(&mut out).unwrap();
                assert_eq!(out, bytes);
            }
        }
    }

    #[test]
    fn bad_shapes_are_errors_and_words_stay_in_bounds() {
        assert!(matches!(
            HeapRegion::new(RingKind::Spsc, 0, 8, 8),
            Err(LayoutError::ZeroCapacity)
        ));
        let region = HeapRegion::new(RingKind::Mpmc, 4, 8, 8).unwrap();
        let last = region.len() - 8;
        region
            .word(last)
            .store(1, core::sync::atomic::Ordering::Relaxed);
        let past = std::panic::catch_unwind(|| {
            region.word(region.len());
        });
        assert!(past.is_err());
    }

    #[test]
    fn compact_regions_are_left_zero_and_store_stamps_less_their_index() {
        use core::sync::atomic::Ordering::Relaxed;
        let region =
            HeapRegion::with_layout(crate::RingLayout::compact_mpmc(4, 8, 8).unwrap()).unwrap();
        // No slot written at creation: zero bytes are empty slots. (The
        // control lines are written, padding and all, so Miri holds their
        // padding uninitialised: not looked at.)
        let slots = region.layout().slot_offset(0);
        assert!((slots..region.len())
            .step_by(8)
            .all(|at| region.word(at).load(Relaxed) == 0));
        // SAFETY: the region lives past the handle, which is its only one.
        let ring =
            unsafe { mpmc::Ring::attach(region.base(), region.len(), region.layout()) }.unwrap();
        let push = |v: u64| {
            ring.try_push_with(|p| {
                // SAFETY: an 8-byte, 8-aligned payload.
                unsafe { p.cast::<u64>().write(v) }
            })
        };
        // SAFETY: every published payload holds a u64.
        let pop = || ring.try_pop_with(|p| unsafe { p.cast::<u64>().read() });
        for lap in 0..5u64 {
            for k in 0..4 {
                push(lap * 4 + k).unwrap();
            }
            assert!(matches!(push(99), Err(crate::PushError::Full)));
            for k in 0..4 {
                assert_eq!(pop(), Ok(lap * 4 + k));
            }
            assert!(matches!(pop(), Err(crate::PopError::Empty)));
        }
        // Slot 1 waits for position 21 (its stamp), stored as 21 - 1.
        let slot1 = region.layout().slot_offset(1);
        assert_eq!(region.word(slot1).load(Relaxed), 20);
        // A scribbled stamp is still reported, not followed.
        region
            .word(region.layout().slot_offset(0))
            .store(1 << 40, Relaxed);
        assert!(matches!(push(1), Err(crate::PushError::Corrupted)));
    }

    #[test]
    fn heap_mpmc_rings_are_compact_exact_and_refuse_owners() {
        // No owner word: 8 bytes of stamp and 8 of payload per slot, where
        // a ring for shared memory takes 24.
        let ring = mpmc::Ring::heap(3, 8, 8).unwrap();
        assert_eq!(ring.layout().stride(), 16);
        let shared = crate::RingLayout::new(RingKind::Mpmc, 3, 8, 8).unwrap();
        assert_eq!(shared.stride(), 24);
        // Capacity 3 over 4 slots stays exact lap after lap (the
        // producers' hint of the dequeue index is refreshed as it moves).
        let push = |v: u64| {
            ring.try_push_with(|p| {
                // SAFETY: an 8-byte, 8-aligned payload.
                unsafe { p.cast::<u64>().write(v) }
            })
        };
        let pop = || {
            // SAFETY: every published payload holds a u64.
            ring.try_pop_with(|p| unsafe { p.cast::<u64>().read() })
        };
        let mut next = 0;
        for lap in 0..10u64 {
            while push(next).is_ok() {
                next += 1;
            }
            assert_eq!(ring.len(), 3, "lap {lap}");
            for k in 0..3 - lap % 3 {
                assert_eq!(pop(), Ok(next - 3 + k));
            }
        }
        // Nothing to recover in a ring with no owners.
        assert!(!ring.skip_dead_writer(|_| true));
        let owned = std::panic::catch_unwind(|| mpmc::Ring::heap(2, 8, 8).unwrap().with_owner(1));
        assert!(owned.is_err(), "a heap ring has no owner words");
    }
}
