//! One publisher, many subscribers: every subscriber reads every message
//! from the one copy in the region.
//!
//! # The protocol
//!
//! - **Positions** count messages from 0. Position `p` lives in slot
//!   `p % slots`. The control line `tail` holds the number published.
//! - **Slot stamps** are a seqlock: `2p + 1` while the publisher writes
//!   position `p` into the slot, `2p + 2` once it holds it (0: never
//!   written). A reader checks the stamp before and after it reads, so a
//!   read that raced with an overwrite is detected, never returned.
//! - **Cursors**: each subscriber has an entry in a table of [`CURSORS`]
//!   lines: the next position it reads (`value`) and who it is (`hint`, an
//!   owner id that the caller can check for death; 0 when free).
//! - **Block** ([`RingKind::Broadcast`] without `overwrite`): the
//!   publisher writes position `p` only while `p - slowest < capacity`,
//!   where `slowest` is the lowest live cursor. It keeps a lower bound of
//!   every cursor (`floor`) and rescans the table only when the bound says
//!   the ring may be full or when a subscriber joined (`joins`, the head
//!   control line, changed). A subscriber that joins bumps `joins` and then
//!   re-reads `tail`; the publisher fences after each publish before it
//!   next reads `joins`. So either the publisher sees the join before its
//!   next write, or the subscriber sees that write's predecessor and starts
//!   past the one slot that write may take (see [`Subscriber::join`]).
//!   A subscriber therefore reads in place: nothing overwrites position
//!   `p` while its cursor is at or below `p`.
//! - **Overwrite**: the publisher never waits. A subscriber more than a
//!   ring behind, or whose slot changed under it, skips to the oldest
//!   position still held and is told how many it lost
//!   ([`ReadError::Lagged`]). Reads must copy out and then validate
//!   ([`Subscriber::try_read`] does both checks around the copy).
//! - **Dead subscribers** are found only when the publisher would block:
//!   it asks its caller about the owners of the cursors that hold it back
//!   and frees the entries of the dead.
//! - **A new publisher** (after the old one died) continues from `tail`:
//!   a position the dead one was writing was never published, and is
//!   written again.
//!
//! Everything read from the region is checked: a peer that scribbles on
//! the cursors, stamps or `tail` can make a subscriber lose messages or a
//! publisher wait (the block policy's promise to a live subscriber), but
//! it cannot make either read outside a slot.

use core::mem::size_of;
use core::ptr::NonNull;

use crate::layout::{Control, CursorLine, LayoutError, SpscSlot, CURSORS};
use crate::sync::{fence, AtomicU64, Ordering};
use crate::{RingKind, RingLayout};

/// A broadcast region: the base and its layout. Copied into each handle.
#[derive(Clone, Copy)]
struct Region {
    base: NonNull<u8>,
    layout: RingLayout,
    overwrite: bool,
}

impl Region {
    /// # Safety
    ///
    /// - `base` is valid for reads and writes of `len` bytes for as long
    ///   as the handle made from it lives, and holds a region initialised
    ///   with `layout` ([`RingLayout::init`]).
    unsafe fn new(base: NonNull<u8>, len: usize, layout: &RingLayout) -> Result<Self, LayoutError> {
        layout.check_region(base, len)?;
        let RingKind::Broadcast { overwrite, .. } = layout.kind() else {
            return Err(LayoutError::WrongKind);
        };
        Ok(Self {
            base,
            layout: *layout,
            overwrite,
        })
    }

    fn control(&self) -> &Control {
        // SAFETY: the region starts with an initialised `Control` and lives
        // as long as the handle (`new`'s caller).
        unsafe { &*self.base.as_ptr().cast::<Control>() }
    }

    /// The number of messages published.
    fn tail(&self) -> &AtomicU64 {
        &self.control().tail.value
    }

    /// Bumped by every subscriber that joins.
    fn joins(&self) -> &AtomicU64 {
        &self.control().head.value
    }

    fn cursor(&self, index: usize) -> &CursorLine {
        // SAFETY: `index < CURSORS` (callers), inside the initialised table.
        unsafe { &*self.layout.cursor_line(self.base, index) }
    }

    /// The stamp and payload of the slot of position `pos`.
    fn slot(&self, pos: u64) -> (&SpscSlot, *mut u8) {
        let index = pos & (self.layout.slots() - 1);
        let header = self
            .base
            .as_ptr()
            .wrapping_add(self.layout.slot_offset(index));
        // SAFETY: `index < slots`, so the header is inside the region and
        // initialised; the payload follows it in the same slot.
        unsafe {
            (
                &*header.cast::<SpscSlot>(),
                header.add(self.layout.payload_offset()),
            )
        }
    }
}

/// A slot's stamp for position `pos`: being written, or holding it.
/// Positions never wrap in practice (2^63 messages); a peer's garbage may
/// make them, which must only lose messages, never panic.
fn stamp(pos: u64, done: bool) -> u64 {
    pos.wrapping_mul(2).wrapping_add(if done { 2 } else { 1 })
}

/// The publisher would overwrite a message a live subscriber has not read
/// (block policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full {
    /// The owner id of the slowest subscriber.
    pub slowest: u64,
}

/// The publishing end of a broadcast region. One at a time: whoever makes
/// one must make sure no other publisher writes the region.
pub struct Publisher {
    r: Region,
    next: u64,
    /// A lower bound of every live subscriber's cursor (block policy).
    floor: u64,
    /// `joins` when the cursors were last scanned.
    joins: u64,
    scanned: bool,
}

// SAFETY: the handle only holds a pointer into a region that its creator
// promised outlives it; all access goes through atomics or the slot
// protocol, from whichever thread holds the handle.
unsafe impl Send for Publisher {}

impl Publisher {
    /// Takes over publishing on a broadcast region, from the position its
    /// last publisher reached.
    ///
    /// # Errors
    ///
    /// As [`RingLayout::check_region`], or
    /// [`LayoutError::WrongKind`] if `layout` is not a broadcast one.
    ///
    /// # Safety
    ///
    /// - `base` is valid for reads and writes of `len` bytes while the
    ///   publisher lives, and holds a region initialised with `layout`.
    /// - No other publisher writes the region while this one lives.
    pub unsafe fn attach(
        base: NonNull<u8>,
        len: usize,
        layout: &RingLayout,
    ) -> Result<Self, LayoutError> {
        // SAFETY: the caller's promise.
        let r = unsafe { Region::new(base, len, layout)? };
        // Acquire: sees the slots the previous publisher wrote.
        let next = r.tail().load(Ordering::Acquire);
        Ok(Self {
            r,
            next,
            floor: 0,
            joins: 0,
            scanned: false,
        })
    }

    /// The position the next message gets (= messages published so far).
    pub fn position(&self) -> u64 {
        self.next
    }

    /// How many messages the ring holds for its slowest reader.
    pub fn capacity(&self) -> u64 {
        self.r.layout.capacity()
    }

    /// The largest payload a slot holds.
    pub fn slot_size(&self) -> usize {
        self.r.layout.slot_size()
    }

    /// The lowest cursor of the subscribers that still hold entries, or
    /// `next` when none does. With `dead`, the entries of cursors that
    /// would hold the publisher back are checked, and freed when `dead`
    /// says their owner is gone.
    fn scan(&self, mut dead: Option<&mut dyn FnMut(u64) -> bool>) -> u64 {
        let mut lowest = self.next;
        let cap = self.capacity();
        for i in 0..CURSORS {
            let line = self.r.cursor(i);
            // Acquire: pairs with the Release store in `join`, so the cursor
            // read next is at least the one the subscriber started with.
            let who = line.hint.load(Ordering::Acquire);
            if who == 0 {
                continue;
            }
            // Acquire: pairs with the subscriber's Release store after its
            // read, so its reads of a slot happen before we overwrite it.
            let at = line.value.load(Ordering::Acquire);
            // A cursor at or ahead of ours holds nothing back (one ahead is
            // a peer's garbage, ignored).
            if at >= lowest {
                continue;
            }
            if self.next.wrapping_sub(at) >= cap {
                if let Some(dead) = dead.as_deref_mut() {
                    if dead(who) {
                        // AcqRel: frees the entry once; a new owner that took
                        // it meanwhile keeps it.
                        let _ =
                            line.hint
                                .compare_exchange(who, 0, Ordering::AcqRel, Ordering::Relaxed);
                        continue;
                    }
                }
            }
            lowest = at;
        }
        lowest
    }

    /// Whether the next message may be written now. Always, with the
    /// overwrite policy; with block, once every live subscriber is less
    /// than `capacity` messages behind. `dead` is asked about the owner of
    /// each cursor that holds the publisher back, and its entry is freed if
    /// it answers true.
    ///
    /// # Errors
    ///
    /// [`Full`], naming the slowest subscriber.
    pub fn room(&mut self, dead: &mut dyn FnMut(u64) -> bool) -> Result<(), Full> {
        if self.r.overwrite {
            return Ok(());
        }
        // After the previous publish's SeqCst fence (see `publish_with` and
        // the module's protocol). Acquire: a bump seen here comes with the
        // joiner's cursor entry, which the scan below then reads (Relaxed
        // would let the scan's loads be satisfied before this one).
        let joins = self.r.joins().load(Ordering::Acquire);
        let cap = self.capacity();
        if self.scanned && joins == self.joins && self.next.wrapping_sub(self.floor) < cap {
            return Ok(());
        }
        self.joins = joins;
        self.scanned = true;
        self.floor = self.scan(None);
        if self.next.wrapping_sub(self.floor) < cap {
            return Ok(());
        }
        self.floor = self.scan(Some(dead));
        if self.next.wrapping_sub(self.floor) < cap {
            return Ok(());
        }
        let slowest = (0..CURSORS)
            .map(|i| self.r.cursor(i))
            // Relaxed: a name for an error message.
            .find(|l| {
                l.hint.load(Ordering::Relaxed) != 0 && l.value.load(Ordering::Relaxed) == self.floor
            })
            .map_or(0, |l| l.hint.load(Ordering::Relaxed));
        Err(Full { slowest })
    }

    /// Writes the next message with `write`, given the slot's payload
    /// (`slot_size` bytes, aligned to the layout's slot alignment), and
    /// publishes it if `write` returns true. Call [`room`](Self::room)
    /// first under the block policy.
    ///
    /// If `write` returns false nothing is published; under the overwrite
    /// policy the message that slot held before is lost to subscribers
    /// that had not read it yet (they are told, as for any overwrite).
    pub fn publish_with(&mut self, write: impl FnOnce(*mut u8) -> bool) -> bool {
        let pos = self.next;
        let (slot, payload) = self.r.slot(pos);
        // Relaxed + Release fence: readers that see any of the bytes written
        // below also see the odd stamp on their second check.
        slot.stamp.store(stamp(pos, false), Ordering::Relaxed);
        fence(Ordering::Release);
        slot.tracker.write();
        if !write(payload) {
            return false;
        }
        // Release: a reader that sees the even stamp (or the tail below)
        // sees the message.
        slot.stamp.store(stamp(pos, true), Ordering::Release);
        self.r.tail().store(pos.wrapping_add(1), Ordering::Release);
        self.next = pos.wrapping_add(1);
        if !self.r.overwrite {
            // The publisher's half of the join handshake: the next `room`
            // reads `joins` after this fence.
            fence(Ordering::SeqCst);
        }
        true
    }
}

/// Why a subscriber read nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// Nothing new is published.
    Empty,
    /// This many messages were overwritten before this subscriber read
    /// them (or were found scribbled on); it goes on with the oldest one
    /// still held.
    Lagged(u64),
}

/// A subscribing end of a broadcast region.
pub struct Subscriber {
    r: Region,
    index: usize,
    next: u64,
}

// SAFETY: as for `Publisher`.
unsafe impl Send for Subscriber {}

impl Subscriber {
    /// Joins as the subscriber in cursor entry `index` (which the caller
    /// owns exclusively: a participant table slot), named `owner` (non-zero)
    /// for the publisher's death checks. It reads the last `history`
    /// messages already published, as far as the ring still holds them,
    /// and everything after.
    ///
    /// # Errors
    ///
    /// As [`Publisher::attach`]; [`LayoutError::WrongKind`] also for an
    /// `index` past the table or a zero `owner`.
    ///
    /// # Safety
    ///
    /// - As [`Publisher::attach`]'s first point.
    /// - No other subscriber uses entry `index` while this one lives.
    pub unsafe fn join(
        base: NonNull<u8>,
        len: usize,
        layout: &RingLayout,
        index: usize,
        owner: u64,
        history: u64,
    ) -> Result<Self, LayoutError> {
        // SAFETY: the caller's promise.
        let r = unsafe { Region::new(base, len, layout)? };
        if index >= CURSORS || owner == 0 {
            return Err(LayoutError::WrongKind);
        }
        let slots = r.layout.slots();
        let line = r.cursor(index);
        // Acquire: as in `try_read`.
        let seen = r.tail().load(Ordering::Acquire);
        let mut start = seen.saturating_sub(history.min(r.layout.capacity()));
        // Relaxed: published by the Release store of `hint`.
        line.value.store(start, Ordering::Relaxed);
        line.hint.store(owner, Ordering::Release);
        // The subscriber's half of the join handshake (SeqCst both): the
        // publisher either sees this bump before its next write, or we see
        // the tail of the write it may be making without us, which can only
        // overwrite position `tail - slots`.
        r.joins().fetch_add(1, Ordering::SeqCst);
        // A fence pair with the publisher's (store; fence || RMW; fence;
        // load): the form of the pattern loom models too.
        fence(Ordering::SeqCst);
        let now = r.tail().load(Ordering::SeqCst);
        let lowest = now.saturating_add(1).saturating_sub(slots);
        if start < lowest {
            start = lowest;
            // Release: as in `advance`.
            line.value.store(start, Ordering::Release);
        }
        Ok(Self {
            r,
            index,
            next: start,
        })
    }

    /// The position this subscriber reads next.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// Messages published and not yet read by this subscriber (at most a
    /// ring's worth are still held).
    pub fn pending(&self) -> u64 {
        // Relaxed: a snapshot.
        self.r
            .tail()
            .load(Ordering::Relaxed)
            .saturating_sub(self.next)
    }

    /// The largest payload a slot holds.
    pub fn slot_size(&self) -> usize {
        self.r.layout.slot_size()
    }

    /// Whether the region uses the overwrite policy.
    pub fn overwrites(&self) -> bool {
        self.r.overwrite
    }

    /// Reads the next message with `read`, given its slot's payload, and
    /// checks that the slot held that message from before the read began
    /// to after it ended; the result of a read that raced with an
    /// overwrite is dropped and reported as [`ReadError::Lagged`]. Under
    /// the block policy the payload stays as it is until
    /// [`advance`](Self::advance), so `read` may return a pointer into it;
    /// under overwrite it must copy what it needs.
    ///
    /// # Errors
    ///
    /// [`ReadError`].
    pub fn try_read<R>(&mut self, read: impl FnOnce(*const u8) -> R) -> Result<R, ReadError> {
        // Acquire: pairs with the publisher's Release store of `tail`.
        let tail = self.r.tail().load(Ordering::Acquire);
        if self.next >= tail {
            return Err(ReadError::Empty);
        }
        if tail - self.next > self.r.layout.slots() {
            return Err(self.skip(tail));
        }
        let want = stamp(self.next, true);
        let (slot, payload) = self.r.slot(self.next);
        // Acquire: pairs with the publisher's Release store of the even stamp.
        if slot.stamp.load(Ordering::Acquire) != want {
            return Err(self.skip(tail));
        }
        slot.tracker.read();
        let out = read(payload);
        // Acquire fence + Relaxed: the stamp is read after the payload.
        fence(Ordering::Acquire);
        if slot.stamp.load(Ordering::Relaxed) != want {
            return Err(self.skip(tail));
        }
        Ok(out)
    }

    /// Moves past the message [`try_read`](Self::try_read) returned: under
    /// the block policy, its slot may be overwritten from now on.
    pub fn advance(&mut self) {
        self.next = self.next.wrapping_add(1);
        // Release: our reads of the slot happen before the publisher, which
        // loads this with Acquire, overwrites it.
        self.r
            .cursor(self.index)
            .value
            .store(self.next, Ordering::Release);
    }

    /// Skips to the oldest position the ring still holds once the
    /// publisher's next write lands (at least one further), and says how
    /// many were lost. Not the very oldest: the publisher's next write
    /// takes that one's slot, and a reader landing there would at once be
    /// lapped again.
    fn skip(&mut self, tail: u64) -> ReadError {
        // Relaxed: any newer tail only makes the skip larger and safer.
        let tail = tail.max(self.r.tail().load(Ordering::Relaxed));
        let to = tail
            .saturating_sub(self.r.layout.slots())
            .saturating_add(1)
            .max(self.next + 1);
        let lost = to - self.next;
        self.next = to - 1;
        self.advance();
        ReadError::Lagged(lost)
    }

    /// Frees this subscriber's cursor entry: the publisher stops waiting
    /// for it. Call it when the subscriber leaves (not from a forked copy).
    pub fn leave(&self) {
        // Release: our last reads happen before the publisher's next
        // overwrite, which sees the entry free.
        self.r.cursor(self.index).hint.store(0, Ordering::Release);
    }
}

const _: () = assert!(size_of::<CursorLine>() == crate::CACHE_LINE);

/// A snapshot of a broadcast region, for tools: what was published and
/// where each subscriber is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peek {
    /// Messages published so far.
    pub published: u64,
    /// Messages the ring holds at most for one subscriber.
    pub capacity: u64,
    /// `(entry, owner id, next position)` of every occupied cursor entry.
    pub cursors: alloc::vec::Vec<(usize, u64, u64)>,
}

impl Peek {
    /// The most messages any subscriber has still to read (clamped to the
    /// capacity).
    pub fn unread(&self) -> u64 {
        self.cursors
            .iter()
            .map(|&(_, _, at)| self.published.saturating_sub(at))
            .max()
            .unwrap_or(0)
            .min(self.capacity)
    }
}

/// Reads a broadcast region's counters without joining it. Loads only.
///
/// # Safety
///
/// - `base` is valid for reads of `layout.region_len()` bytes, aligned,
///   and holds a region initialised with `layout`, a broadcast one.
pub unsafe fn peek(base: NonNull<u8>, layout: &RingLayout) -> Peek {
    let r = Region {
        base,
        layout: *layout,
        overwrite: false,
    };
    let cursors = (0..CURSORS)
        .filter_map(|i| {
            let line = r.cursor(i);
            // Relaxed: a snapshot for display; orders nothing.
            let who = line.hint.load(Ordering::Relaxed);
            (who != 0).then(|| (i, who, line.value.load(Ordering::Relaxed)))
        })
        .collect();
    Peek {
        // Relaxed: as above.
        published: r.tail().load(Ordering::Relaxed),
        capacity: layout.capacity(),
        cursors,
    }
}

#[cfg(all(test, not(shmlane_loom)))]
mod tests {
    use super::*;
    use crate::HeapRegion;

    fn region(overwrite: bool, capacity: u64) -> (HeapRegion, RingLayout) {
        let mem = HeapRegion::new(
            RingKind::Broadcast {
                overwrite,
                max_subscribers: 4,
            },
            capacity,
            8,
            8,
        )
        .unwrap();
        let layout = *mem.layout();
        (mem, layout)
    }

    fn publish(p: &mut Publisher, v: u64) {
        assert!(p.publish_with(|dst| {
            // SAFETY: the payload holds 8 bytes, aligned to 8.
            unsafe { dst.cast::<u64>().write(v) };
            true
        }));
    }

    fn read(s: &mut Subscriber) -> Result<u64, ReadError> {
        // SAFETY: as in `publish`.
        let v = s.try_read(|src| unsafe { src.cast::<u64>().read_volatile() })?;
        s.advance();
        Ok(v)
    }

    #[test]
    fn every_subscriber_reads_every_message_and_block_waits_for_the_slowest() {
        let (mem, layout) = region(false, 4);
        let (base, len) = (mem.base(), mem.len());
        // SAFETY: the region outlives the handles; one publisher; distinct entries.
        let (mut p, mut a, mut b) = unsafe {
            (
                Publisher::attach(base, len, &layout).unwrap(),
                Subscriber::join(base, len, &layout, 0, 1, 0).unwrap(),
                Subscriber::join(base, len, &layout, 1, 2, 0).unwrap(),
            )
        };
        let mut never_dead = |_| false;
        for v in 0..4 {
            p.room(&mut never_dead).unwrap();
            publish(&mut p, v);
        }
        assert_eq!(p.room(&mut never_dead), Err(Full { slowest: 1 }));
        for v in 0..4 {
            assert_eq!(read(&mut a), Ok(v));
        }
        assert_eq!(read(&mut a), Err(ReadError::Empty));
        assert_eq!(p.room(&mut never_dead), Err(Full { slowest: 2 }));
        assert_eq!(read(&mut b), Ok(0));
        p.room(&mut never_dead).unwrap();
        publish(&mut p, 4);
        assert_eq!(read(&mut a), Ok(4));
        for v in 1..5 {
            assert_eq!(read(&mut b), Ok(v));
        }
        // A dead subscriber is dropped when it holds the publisher back.
        for v in 5..9 {
            p.room(&mut never_dead).unwrap();
            publish(&mut p, v);
        }
        for v in 5..9 {
            assert_eq!(read(&mut a), Ok(v));
        }
        assert!(p.room(&mut never_dead).is_err());
        p.room(&mut |who| who == 2).unwrap();
        a.leave();
    }

    #[test]
    fn a_lapped_subscriber_learns_how_many_it_lost() {
        let (mem, layout) = region(true, 4);
        let (base, len) = (mem.base(), mem.len());
        // SAFETY: as above.
        let (mut p, mut s) = unsafe {
            (
                Publisher::attach(base, len, &layout).unwrap(),
                Subscriber::join(base, len, &layout, 0, 1, 0).unwrap(),
            )
        };
        for v in 0..10 {
            p.room(&mut |_| false).unwrap();
            publish(&mut p, v);
        }
        assert_eq!(read(&mut s), Err(ReadError::Lagged(7)));
        for v in 7..10 {
            assert_eq!(read(&mut s), Ok(v));
        }
        // A late joiner with history reads what the ring still holds.
        // SAFETY: as above.
        let mut late = unsafe { Subscriber::join(base, len, &layout, 1, 2, 3).unwrap() };
        assert_eq!(read(&mut late), Ok(7));
        // A slot overwritten during the read is reported, not returned.
        let r = late.try_read(|src| {
            for v in 10..13 {
                publish(&mut p, v);
            }
            // SAFETY: as in `read`.
            unsafe { src.cast::<u64>().read_volatile() }
        });
        assert_eq!(r, Err(ReadError::Lagged(2)));
        assert_eq!(read(&mut late), Ok(10));
    }
}
