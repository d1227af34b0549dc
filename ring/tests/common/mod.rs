//! A heap region with the alignment a layout asks for, freed on drop.

#![allow(dead_code)]

use shmlane_ring::{mpmc, spsc, HeapRegion, RingKind};

/// A ring's heap region (the crate's own `HeapRegion`), with handles
/// attached by hand so that tests can take several on one region.
pub struct Region(pub HeapRegion);

impl Region {
    pub fn new(kind: RingKind, capacity: u64, slot_size: usize) -> Self {
        Self(HeapRegion::new(kind, capacity, slot_size, 8).unwrap())
    }

    pub fn spsc(&self) -> (spsc::Producer, spsc::Consumer) {
        let r = &self.0;
        // SAFETY: the region outlives the handles (tests drop them first) and
        // each test attaches one producer and one consumer.
        unsafe {
            (
                spsc::Producer::attach(r.base(), r.len(), r.layout()).unwrap(),
                spsc::Consumer::attach(r.base(), r.len(), r.layout()).unwrap(),
            )
        }
    }

    pub fn mpmc(&self) -> mpmc::Ring {
        let r = &self.0;
        // SAFETY: the region outlives the handle in every test.
        unsafe { mpmc::Ring::attach(r.base(), r.len(), r.layout()) }.unwrap()
    }

    /// The u64 at `offset` bytes into the region, for corrupting it.
    pub fn word(&self, offset: usize) -> &std::sync::atomic::AtomicU64 {
        self.0.word(offset)
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
