//! Lock-free rings over a caller-provided memory region.
//!
//! A region is a base pointer and a length, typically a shared-memory
//! mapping. Everything in it is an index or a stamp, never a pointer, so
//! the same region may be mapped at different addresses in different
//! processes. This crate is `no_std`, makes no system calls, and runs under
//! loom (`--cfg shmlane_loom`) and Miri.
//!
//! - [`spsc`]: one producer, one consumer, with cached indices and batches.
//! - [`mpmc`]: many producers and consumers, a sequence stamp per slot.
//! - [`broadcast`]: one publisher, many subscribers that each read every
//!   message (block or overwrite when a subscriber is slow).
//!
//! # Examples
//!
//! A ring on the heap, with safe handles that keep it alive:
//!
//! ```
//! use shmlane_ring::spsc;
//!
//! let (mut tx, mut rx) = spsc::channel(4, 8, 8).unwrap();
//! tx.try_push(&42u64.to_ne_bytes()).unwrap();
//! let mut out = [0u8; 8];
//! rx.try_pop(&mut out).unwrap();
//! assert_eq!(u64::from_ne_bytes(out), 42);
//! ```
//!
//! Over a region the caller provides (shared memory, say):
//!
//! ```
//! use std::alloc::{alloc_zeroed, dealloc, Layout};
//! use std::ptr::NonNull;
//! use shmlane_ring::{spsc, RingKind, RingLayout};
//!
//! let layout = RingLayout::new(RingKind::Spsc, 4, 8, 8).unwrap();
//! let mem = Layout::from_size_align(layout.region_len(), layout.region_align()).unwrap();
//! // SAFETY: `mem` has a non-zero size.
//! let base = NonNull::new(unsafe { alloc_zeroed(mem) }).unwrap();
//! // SAFETY: the allocation is `region_len` bytes, aligned, and unused; it
//! // outlives both handles, and there is one producer and one consumer.
//! let (mut tx, mut rx) = unsafe {
//!     layout.init(base, mem.size()).unwrap();
//!     (
//!         spsc::Producer::attach(base, mem.size(), &layout).unwrap(),
//!         spsc::Consumer::attach(base, mem.size(), &layout).unwrap(),
//!     )
//! };
//! tx.try_push(&42u64.to_ne_bytes()).unwrap();
//! let mut out = [0u8; 8];
//! rx.try_pop(&mut out).unwrap();
//! assert_eq!(u64::from_ne_bytes(out), 42);
//! drop((tx, rx));
//! // SAFETY: allocated above with the same layout; no handle is left.
//! unsafe { dealloc(base.as_ptr(), mem) };
//! ```

#![no_std]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod broadcast;
mod heap;
mod layout;
pub mod mpmc;
pub mod spsc;
mod sync;

use core::fmt;

pub use heap::HeapRegion;
pub use layout::{
    LayoutError, RingKind, RingLayout, CACHE_LINE, CURSORS, MAX_SLOTS, MAX_SLOT_ALIGN,
};

/// The number of messages in a ring region, read without attaching (for
/// tools), clamped to the capacity: for a broadcast ring, the most any
/// subscriber has still to read. Loads only.
///
/// # Safety
///
/// - `base` is valid for reads of `layout.region_len()` bytes, aligned,
///   and holds a ring initialised with `layout`.
pub unsafe fn peek_len(base: core::ptr::NonNull<u8>, layout: &RingLayout) -> u64 {
    // SAFETY: the region starts with an initialised `Control` (caller).
    let ctrl = unsafe { base.cast::<layout::Control>().as_ref() };
    if let RingKind::Broadcast { .. } = layout.kind() {
        // SAFETY: as above (the caller's promise).
        return unsafe { broadcast::peek(base, layout) }.unread();
    }
    // Relaxed: a snapshot for display; orders nothing.
    let head = ctrl.head.value.load(sync::Ordering::Relaxed);
    let tail = ctrl.tail.value.load(sync::Ordering::Relaxed);
    (tail.wrapping_sub(head) as i64).clamp(0, layout.capacity() as i64) as u64
}

/// The region's indices or stamps are not in any state the algorithm can
/// reach: a peer wrote garbage into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corrupted;

impl fmt::Display for Corrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ring indices are inconsistent (corrupted by a peer)")
    }
}

/// Why a push did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The ring holds `capacity` messages.
    Full,
    /// MPMC only: the next slot is still being read by the consumer that
    /// claimed it. The ring is not full; retry (without parking: the
    /// consumer's release of the slot may already have sent its wakeup).
    Busy,
    /// The message is larger than a slot.
    TooLarge,
    /// See [`Corrupted`].
    Corrupted,
}

/// Why a pop did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PopError {
    /// No message is ready.
    Empty,
    /// MPMC only: a producer claimed the head slot and is still writing it.
    /// The ring is not empty; retry (without parking, as for
    /// [`PushError::Busy`]).
    Busy,
    /// See [`Corrupted`].
    Corrupted,
}

impl From<Corrupted> for PushError {
    fn from(_: Corrupted) -> Self {
        Self::Corrupted
    }
}

impl From<Corrupted> for PopError {
    fn from(_: Corrupted) -> Self {
        Self::Corrupted
    }
}

impl fmt::Display for PushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full => f.write_str("ring is full"),
            Self::Busy => f.write_str("next slot is still being read"),
            Self::TooLarge => f.write_str("message is larger than a ring slot"),
            Self::Corrupted => Corrupted.fmt(f),
        }
    }
}

impl fmt::Display for PopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("ring is empty"),
            Self::Busy => f.write_str("next message is still being written"),
            Self::Corrupted => Corrupted.fmt(f),
        }
    }
}
