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

use shmlane_ring::{broadcast, mpmc, spsc, HeapRegion, RingKind};

/// A heap region laid out for one ring (the ring crate's `HeapRegion`),
/// with handles attached by hand so that a model can take several.
pub struct Region(HeapRegion);

impl Region {
    /// Allocates and initialises a ring of `capacity` u64 slots.
    pub fn new(kind: RingKind, capacity: u64) -> Self {
        Self(HeapRegion::new(kind, capacity, 8, 8).unwrap())
    }

    /// The producer and consumer of an SPSC region.
    pub fn spsc(&self) -> (spsc::Producer, spsc::Consumer) {
        let r = &self.0;
        // SAFETY: the models drop the handles before the region and attach
        // one producer and one consumer.
        unsafe {
            (
                spsc::Producer::attach(r.base(), r.len(), r.layout()).unwrap(),
                spsc::Consumer::attach(r.base(), r.len(), r.layout()).unwrap(),
            )
        }
    }

    /// A handle on an MPMC region.
    pub fn mpmc(&self) -> mpmc::Ring {
        let r = &self.0;
        // SAFETY: the models drop the handles before the region.
        unsafe { mpmc::Ring::attach(r.base(), r.len(), r.layout()) }.unwrap()
    }

    /// The publisher of a broadcast region.
    pub fn publisher(&self) -> broadcast::Publisher {
        let r = &self.0;
        // SAFETY: the region outlives the handle (tests keep it in an
        // `Arc`); one publisher per region in every model.
        unsafe { broadcast::Publisher::attach(r.base(), r.len(), r.layout()) }.unwrap()
    }

    /// A subscriber of a broadcast region, in cursor entry `index`.
    pub fn subscriber(&self, index: usize, owner: u64, history: u64) -> broadcast::Subscriber {
        let r = &self.0;
        // SAFETY: as above; each model gives each subscriber its own entry.
        unsafe { broadcast::Subscriber::join(r.base(), r.len(), r.layout(), index, owner, history) }
            .unwrap()
    }

    /// An owned handle on an MPMC region that claims slots as `who` (one
    /// per simulated process). A region's handles must all be owned or all
    /// anonymous.
    pub fn mpmc_owned(&self, who: u64) -> mpmc::Ring {
        self.mpmc().with_owner(who)
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
