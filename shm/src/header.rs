//! The header page at the start of every segment.
//!
//! Fields a peer could scribble on are either atomics or [`Shared`] cells
//! read with volatile loads into process-local copies; no `&` reference to
//! plain data in shared memory is ever formed.

use core::cell::UnsafeCell;
use core::mem::{offset_of, size_of};

use shmlane_semaphore::EventCount;
use std::sync::atomic::{AtomicU32, AtomicU64};

/// The first eight bytes of every segment.
pub const MAGIC: [u8; 8] = *b"SHMLANE\0";
/// The layout version this build writes and accepts.
/// Version 2: SPSC slots carry a batch stamp in front of the payload.
/// Version 3: MPMC slots carry an owner word; participants tally their
/// parked waiters; the header counts reaped participants.
/// Version 4: the message type's schema text follows the ring region
/// (`schema_offset`, `schema_len`), and `type_hash` covers it in place of
/// the type's name.
pub const VERSION: u32 = 4;
/// The length of the header page; the ring region starts here.
pub const HEADER_LEN: usize = 4096;
/// How many processes (or handles) may be attached at once.
pub const MAX_PARTICIPANTS: usize = 32;
/// `state` before the creator has written every field.
pub const STATE_INIT: u32 = 0;
/// `state` once the segment may be used.
pub const STATE_READY: u32 = 1;
/// Longest readable type name stored (bytes; longer names are cut).
pub const TYPE_NAME_LEN: usize = 96;
/// Longest message type schema a segment stores (bytes); a longer one is
/// refused at creation.
pub const MAX_SCHEMA_LEN: usize = 1 << 20;

/// The byte (beyond the file's end, which POSIX allows) the creator locks
/// while it lives; participant `i` locks `LOCK_BASE + 1 + i`.
pub const LOCK_BASE: u64 = 1 << 40;

/// A plain value in shared memory: read and written only with volatile
/// accesses, copied out before use.
#[repr(transparent)]
pub struct Shared<T: Copy>(UnsafeCell<T>);

// SAFETY: only volatile whole-value copies go through the cell; a torn or
// garbage value is validated by the reader, never trusted.
unsafe impl<T: Copy + Send> Sync for Shared<T> {}

impl<T: Copy> Shared<T> {
    /// Copies the value out.
    pub fn read(&self) -> T {
        // SAFETY: the cell is inside a live mapping and aligned for `T`
        // (compile-time offset checks below); `T: Copy` is plain data for
        // which every bit pattern this crate stores there is valid, and
        // volatile keeps the compiler from assuming it does not change.
        unsafe { self.0.get().read_volatile() }
    }

    /// Overwrites the value (creators, before publishing READY).
    pub(crate) fn write(&self, value: T) {
        // SAFETY: as for `read`; the mapping is writable when a segment is
        // created.
        unsafe { self.0.get().write_volatile(value) }
    }
}

/// The fields that describe a segment, written once by its creator before
/// READY and copied by every opener.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fixed {
    /// 1 = SPSC, 2 = MPMC, 3 = broadcast (block), 4 = broadcast
    /// (overwrite); broadcast rings keep their subscriber limit in bits 8-15.
    pub ring_kind: u32,
    /// The message codec (see the channel crate).
    pub codec: u32,
    /// Messages the ring holds at most.
    pub capacity: u64,
    /// Slots in the ring (a power of two).
    pub slots: u64,
    /// Payload bytes per slot.
    pub slot_size: u64,
    /// Payload alignment.
    pub slot_align: u64,
    /// Offset of the ring region from the segment base.
    pub data_offset: u64,
    /// Total segment length in bytes.
    pub total_len: u64,
    /// Hash (FNV-1a) of the message type's schema text, size, alignment
    /// and codec: the fast comparison; the text decides.
    pub type_hash: u64,
    /// `size_of` the message type.
    pub type_size: u64,
    /// `align_of` the message type.
    pub type_align: u64,
    /// Offset of the message type's schema text from the segment base:
    /// right after the ring region.
    pub schema_offset: u64,
    /// Length of the schema text in bytes (UTF-8, no terminator); the
    /// segment ends where it ends.
    pub schema_len: u64,
    /// The type's readable name, NUL-padded.
    pub type_name: [u8; TYPE_NAME_LEN],
}

/// One slot of the participant table. `state` is `generation << 8 |
/// status`; the generation grows on every change so a stale
/// compare-exchange fails.
#[repr(C)]
pub struct Participant {
    pub(crate) state: AtomicU64,
    pub(crate) role: AtomicU32,
    pub(crate) pid: AtomicU32,
    pub(crate) start_time: AtomicU64,
    /// How many of this participant's threads are parked on `not_empty`
    /// (0) and `not_full` (1): taken back from the eventcounts when the
    /// participant is reaped, so a process killed while parked leaves no
    /// phantom waiter behind.
    pub(crate) waiting: [AtomicU32; 2],
}

pub(crate) const STATUS_FREE: u64 = 0;
/// Published with its role and pid, not yet counted in `live` for sure:
/// alive while its lock is held; reaped without a decrement.
pub(crate) const STATUS_ATTACHING: u64 = 1;
/// Counted in `live`; reaped (or detached) with a decrement.
pub(crate) const STATUS_ATTACHED: u64 = 2;

/// Whether a participant state names a (maybe dead) participant.
pub(crate) fn occupied(state: u64) -> bool {
    matches!(state & 0xff, STATUS_ATTACHING | STATUS_ATTACHED)
}

/// The header page.
#[repr(C)]
pub struct Header {
    pub(crate) magic: Shared<[u8; 8]>,
    pub(crate) version: Shared<u32>,
    pub(crate) state: AtomicU32,
    pub(crate) fixed: Shared<Fixed>,
    pub(crate) creator_pid: Shared<u32>,
    _pad0: AtomicU32,
    pub(crate) creator_start: Shared<u64>,
    /// 1 once any sender (index 0) or receiver (index 1) ever attached.
    pub(crate) seen: [AtomicU32; 2],
    /// Attached senders (0) and receivers (1), dead ones until reaped.
    pub(crate) live: [AtomicU32; 2],
    /// How many dead participants have been reaped, ever: a change tells
    /// survivors to look for slots the dead held.
    pub(crate) reaped: AtomicU64,
    _pad1: AtomicU64,
    /// Receivers sleep here; senders notify.
    pub not_empty: Line<EventCount>,
    /// Senders sleep here; receivers notify.
    pub not_full: Line<EventCount>,
    pub(crate) participants: [Participant; MAX_PARTICIPANTS],
    /// A `sysv:` segment's semaphore set id plus one (its liveness flags;
    /// see `segment::sysv`), written by the creator before anything else;
    /// 0 until then, and in other segments, which never read it.
    pub(crate) sysv_sems: Shared<i32>,
}

/// A value alone on a 128-byte line pair.
// A fixed 128, not `CachePadded`: the header is shared memory, and its
// layout must be the same in every process and build, whatever the CPU.
#[repr(C, align(128))]
pub struct Line<T>(pub T);

const _: () = {
    assert!(size_of::<Fixed>() == 192);
    assert!(offset_of!(Header, magic) == 0);
    assert!(offset_of!(Header, version) == 8);
    assert!(offset_of!(Header, state) == 12);
    assert!(offset_of!(Header, fixed) == 16);
    assert!(offset_of!(Header, fixed) % 8 == 0);
    assert!(offset_of!(Header, creator_start) % 8 == 0);
    assert!(offset_of!(Header, not_empty) == 256);
    assert!(offset_of!(Header, not_full) == 384);
    assert!(offset_of!(Header, participants) == 512);
    assert!(size_of::<Participant>() == 32);
    assert!(offset_of!(Header, sysv_sems) == 512 + 32 * 32);
    assert!(size_of::<Header>() <= HEADER_LEN);
    // A broadcast ring's cursor table has an entry per participant
    // (loom models use a smaller table).
    assert!(shmlane_ring::CURSORS == MAX_PARTICIPANTS || cfg!(shmlane_loom));
};

impl Fixed {
    /// The type name as text (lossy; for messages and listings).
    pub fn type_name(&self) -> String {
        let end = self
            .type_name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(TYPE_NAME_LEN);
        String::from_utf8_lossy(&self.type_name[..end]).into_owned()
    }
}

/// Field offsets for tests and tools that build headers by hand.
pub mod offsets {
    use super::*;

    /// Offset of `magic`.
    pub const MAGIC: usize = offset_of!(Header, magic);
    /// Offset of `version`.
    pub const VERSION: usize = offset_of!(Header, version);
    /// Offset of `state`.
    pub const STATE: usize = offset_of!(Header, state);
    /// Offset of a `sysv:` segment's semaphore set id (stored plus one).
    pub const SYSV_SEMS: usize = offset_of!(Header, sysv_sems);
    /// Offset of a field of [`Fixed`] inside the header.
    pub const fn fixed(field_offset: usize) -> usize {
        offset_of!(Header, fixed) + field_offset
    }
    /// Offset of `Fixed::ring_kind`.
    pub const RING_KIND: usize = fixed(offset_of!(Fixed, ring_kind));
    /// Offset of `Fixed::capacity`.
    pub const CAPACITY: usize = fixed(offset_of!(Fixed, capacity));
    /// Offset of `Fixed::slots`.
    pub const SLOTS: usize = fixed(offset_of!(Fixed, slots));
    /// Offset of `Fixed::slot_size`.
    pub const SLOT_SIZE: usize = fixed(offset_of!(Fixed, slot_size));
    /// Offset of `Fixed::slot_align`.
    pub const SLOT_ALIGN: usize = fixed(offset_of!(Fixed, slot_align));
    /// Offset of `Fixed::data_offset`.
    pub const DATA_OFFSET: usize = fixed(offset_of!(Fixed, data_offset));
    /// Offset of `Fixed::total_len`.
    pub const TOTAL_LEN: usize = fixed(offset_of!(Fixed, total_len));
    /// Offset of `Fixed::type_hash`.
    pub const TYPE_HASH: usize = fixed(offset_of!(Fixed, type_hash));
    /// Offset of `Fixed::codec`.
    pub const CODEC: usize = fixed(offset_of!(Fixed, codec));
    /// Offset of `Fixed::type_size`.
    pub const TYPE_SIZE: usize = fixed(offset_of!(Fixed, type_size));
    /// Offset of `Fixed::schema_offset`.
    pub const SCHEMA_OFFSET: usize = fixed(offset_of!(Fixed, schema_offset));
    /// Offset of `Fixed::schema_len`.
    pub const SCHEMA_LEN: usize = fixed(offset_of!(Fixed, schema_len));
}
