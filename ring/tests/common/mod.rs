//! A heap region with the alignment a layout asks for, freed on drop.

#![allow(dead_code)]

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;

use shmlane_ring::{mpmc, spsc, RingKind, RingLayout};

pub struct Region {
    pub base: NonNull<u8>,
    pub mem: Layout,
    pub layout: RingLayout,
}

// SAFETY: the region is plain heap memory; the rings synchronise access.
unsafe impl Send for Region {}
// SAFETY: as above.
unsafe impl Sync for Region {}

impl Region {
    pub fn new(kind: RingKind, capacity: u64, slot_size: usize) -> Self {
        let layout = RingLayout::new(kind, capacity, slot_size, 8).unwrap();
        let mem = Layout::from_size_align(layout.region_len(), layout.region_align()).unwrap();
        // SAFETY: `mem` has a non-zero size (a region always holds the control lines).
        let base = NonNull::new(unsafe { alloc_zeroed(mem) }).unwrap();
        // SAFETY: freshly allocated, `region_len` bytes, aligned, unused.
        unsafe { layout.init(base, mem.size()) }.unwrap();
        Self { base, mem, layout }
    }

    pub fn spsc(&self) -> (spsc::Producer, spsc::Consumer) {
        // SAFETY: the region outlives the handles (tests drop them first) and
        // each test attaches one producer and one consumer.
        unsafe {
            (
                spsc::Producer::attach(self.base, self.mem.size(), &self.layout).unwrap(),
                spsc::Consumer::attach(self.base, self.mem.size(), &self.layout).unwrap(),
            )
        }
    }

    pub fn mpmc(&self) -> mpmc::Ring {
        // SAFETY: the region outlives the handle in every test.
        unsafe { mpmc::Ring::attach(self.base, self.mem.size(), &self.layout) }.unwrap()
    }

    /// The u64 at `offset` bytes into the region, for corrupting it.
    pub fn word(&self, offset: usize) -> &std::sync::atomic::AtomicU64 {
        assert!(offset + 8 <= self.mem.size() && offset % 8 == 0);
        // SAFETY: in bounds and aligned (checked above); the ring accesses the
        // same words only through atomics of the same size.
        unsafe { &*self.base.as_ptr().add(offset).cast() }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with `self.mem`.
        unsafe { dealloc(self.base.as_ptr(), self.mem) }
    }
}

/// Message counts scaled down under Miri.
pub fn scaled(n: u64) -> u64 {
    if cfg!(miri) {
        n.min(200)
    } else {
        n
    }
}

pub fn write_u64(p: *mut u8, v: u64) {
    // SAFETY: every test ring has 8-byte, 8-aligned slots and the pointer is
    // a slot payload owned by the caller.
    unsafe { p.cast::<u64>().write(v) }
}

pub fn read_u64(p: *const u8) -> u64 {
    // SAFETY: as for `write_u64`, for a published slot.
    unsafe { p.cast::<u64>().read() }
}
