//! Loom models of shmlane's rings, eventcount and channel.
//!
//! The models are in `tests/` and compile only with `--cfg shmlane_loom`:
//!
//! ```text
//! RUSTFLAGS="--cfg shmlane_loom" LOOM_MAX_PREEMPTIONS=2 \
//!     cargo test -p shmlane-loom-tests --release --target-dir target/loom
//! ```
//!
//! This library holds the region helper the models share.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;

use shmlane_ring::{mpmc, spsc, RingKind, RingLayout};

/// A heap region laid out for one ring, freed on drop.
pub struct Region {
    base: NonNull<u8>,
    mem: Layout,
    layout: RingLayout,
}

// SAFETY: plain heap memory; the rings synchronise access to it.
unsafe impl Send for Region {}
// SAFETY: as above.
unsafe impl Sync for Region {}

impl Region {
    /// Allocates and initialises a ring of `capacity` u64 slots.
    pub fn new(kind: RingKind, capacity: u64) -> Self {
        let layout = RingLayout::new(kind, capacity, 8, 8).unwrap();
        let mem = Layout::from_size_align(layout.region_len(), layout.region_align()).unwrap();
        // SAFETY: non-zero size.
        let base = NonNull::new(unsafe { alloc_zeroed(mem) }).unwrap();
        // SAFETY: fresh, aligned, `region_len` bytes, unused by anyone else.
        unsafe { layout.init(base, mem.size()) }.unwrap();
        Self { base, mem, layout }
    }

    /// The producer and consumer of an SPSC region.
    pub fn spsc(&self) -> (spsc::Producer, spsc::Consumer) {
        // SAFETY: the models drop the handles before the region and attach
        // one producer and one consumer.
        unsafe {
            (
                spsc::Producer::attach(self.base, self.mem.size(), &self.layout).unwrap(),
                spsc::Consumer::attach(self.base, self.mem.size(), &self.layout).unwrap(),
            )
        }
    }

    /// A handle on an MPMC region.
    pub fn mpmc(&self) -> mpmc::Ring {
        // SAFETY: the models drop the handles before the region.
        unsafe { mpmc::Ring::attach(self.base, self.mem.size(), &self.layout) }.unwrap()
    }

    /// An owned handle on an MPMC region that claims slots as `who` (one
    /// per simulated process). A region's handles must all be owned or all
    /// anonymous.
    pub fn mpmc_owned(&self, who: u64) -> mpmc::Ring {
        self.mpmc().with_owner(who)
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with `self.mem`.
        unsafe { dealloc(self.base.as_ptr(), self.mem) }
    }
}

/// Writes a u64 message into a slot payload.
pub fn write_u64(p: *mut u8, v: u64) {
    // SAFETY: the models' rings have 8-byte, 8-aligned slots owned by the caller.
    unsafe { p.cast::<u64>().write(v) }
}

/// Reads a u64 message from a slot payload.
pub fn read_u64(p: *const u8) -> u64 {
    // SAFETY: as for `write_u64`, for a published slot.
    unsafe { p.cast::<u64>().read() }
}
