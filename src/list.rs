//! The unbounded channel: a linked list of fixed-size blocks of slots.
//!
//! Senders take positions from `tail` with one compare-and-swap, receivers
//! from `head`; nobody takes a lock. Positions count in steps of
//! `1 << SHIFT`: bit 0 of `tail` says the channel is disconnected (so a
//! sender learns it from the load it makes anyway), bit 0 of `head` says
//! the tail is known to be in a later block (so a receiver skips the load of
//! the senders' line).
//!
//! Each block has `BLOCK_CAP` slots and spans `LAP` positions: the one spare
//! position per block marks "the next block is being linked in"; whoever
//! sees it waits a moment. The sender that takes a block's last slot links
//! the next block in; the receiver that takes it moves `head` on. A block is
//! freed by the last of its readers: a slot's `READ` bit says its reader is
//! done, `DESTROY` says the freeing was handed to that slot's reader
//! because it was not done yet.

use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ptr;

use crossbeam_utils::CachePadded;

use crate::sync::{backoff, AtomicPtr, AtomicUsize, Ordering};

/// Slots per block (3 in loom models, so that they cross blocks with a
/// few messages).
const BLOCK_CAP: usize = if cfg!(shmlane_loom) { 3 } else { 31 };
/// Positions per block: the slots and one spare.
const LAP: usize = BLOCK_CAP + 1;
/// Positions move in steps of `1 << SHIFT`; the bits below are flags.
const SHIFT: usize = 1;
/// In `tail`: disconnected. In `head`: the tail is in a later block.
const MARK: usize = 1;

/// The slot holds a message.
const WRITE: usize = 1;
/// The slot's message was taken.
const READ: usize = 2;
/// The slot's reader must carry on freeing the block.
const DESTROY: usize = 4;

/// After a lost compare-and-swap: another thread made progress, so spin
/// (1, 2, 4... 64 pause hints) and try again at once; never give the CPU
/// away for it (that is for waiting on a thread that may be preempted).
#[inline]
fn contended(step: &mut u32) {
    // Under loom one hint (a yield there) is the same behaviour.
    let spins = if cfg!(shmlane_loom) {
        1
    } else {
        1u32 << (*step).min(6)
    };
    for _ in 0..spins {
        crate::sync::spin_loop();
    }
    *step = step.saturating_add(1);
}

struct Slot<T> {
    msg: UnsafeCell<MaybeUninit<T>>,
    state: AtomicUsize,
}

impl<T> Slot<T> {
    /// Waits until the sender that took this slot has written it.
    fn wait_write(&self) {
        let mut step = 0;
        // Acquire: pairs with the Release `WRITE` in `push`; the message is
        // visible once the bit is.
        while self.state.load(Ordering::Acquire) & WRITE == 0 {
            backoff(&mut step);
        }
    }
}

struct Block<T> {
    next: AtomicPtr<Block<T>>,
    slots: [Slot<T>; BLOCK_CAP],
}

impl<T> Block<T> {
    fn new() -> Box<Self> {
        // Allocated zeroed on the heap, never built on the stack: a block
        // of large messages is larger than a thread's stack.
        #[cfg(not(shmlane_loom))]
        {
            let layout = std::alloc::Layout::new::<Self>();
            // SAFETY: the layout is not zero-sized (a block holds a pointer).
            let p = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<Self>();
            if p.is_null() {
                std::alloc::handle_alloc_error(layout);
            }
            // SAFETY: allocated by the global allocator with `Self`'s layout,
            // and all-zero bytes are a valid block: null `next`, slots with
            // state 0 (empty) and uninitialised messages.
            unsafe { Box::from_raw(p) }
        }
        // loom's atomics are not plain words: build them (the models use
        // small messages).
        #[cfg(shmlane_loom)]
        Box::new(Self {
            next: AtomicPtr::new(ptr::null_mut()),
            slots: std::array::from_fn(|_| Slot {
                msg: UnsafeCell::new(MaybeUninit::uninit()),
                state: AtomicUsize::new(0),
            }),
        })
    }

    /// Waits until the next block is linked in, and returns it.
    fn wait_next(&self) -> *mut Self {
        let mut step = 0;
        loop {
            // Acquire: pairs with the Release store in `push`.
            let next = self.next.load(Ordering::Acquire);
            if !next.is_null() {
                return next;
            }
            backoff(&mut step);
        }
    }

    /// Frees `this` once the readers of slots `start..` are done with it;
    /// hands the job to the first reader that is not.
    ///
    /// # Safety
    ///
    /// `this` is a block no sender or receiver will take a position in
    /// again, and the readers of slots before `start` are done.
    unsafe fn destroy(this: *mut Self, start: usize) {
        // The last slot's reader starts the freeing, so it need not be
        // asked.
        for i in start..BLOCK_CAP - 1 {
            // SAFETY: the block is alive until the last reader frees it,
            // which is at the earliest us.
            let slot = unsafe { &(*this).slots[i] };
            // Acquire/AcqRel: the reader's use of the slot happens before
            // the free; pairs with the AcqRel `READ` in `read`.
            if slot.state.load(Ordering::Acquire) & READ == 0
                && slot.state.fetch_or(DESTROY, Ordering::AcqRel) & READ == 0
            {
                // That reader is still at work; it frees the block.
                return;
            }
        }
        // SAFETY: every reader is done and nobody else holds the block.
        drop(unsafe { Box::from_raw(this) });
    }
}

struct Position<T> {
    index: AtomicUsize,
    block: AtomicPtr<Block<T>>,
}

/// A slot a receiver took: read it with [`List::read`].
pub(crate) struct ListToken<T> {
    block: *mut Block<T>,
    offset: usize,
}

#[cfg_attr(shmlane_loom, allow(dead_code))] // Used by `select`, not in loom builds.
impl<T> ListToken<T> {
    /// The taken slot with `T` erased (for a select's token).
    pub(crate) fn into_raw(self) -> (*mut u8, usize) {
        (self.block.cast(), self.offset)
    }

    /// A slot erased by [`into_raw`](Self::into_raw).
    pub(crate) fn from_raw(block: *mut u8, offset: usize) -> Self {
        Self {
            block: block.cast(),
            offset,
        }
    }
}

impl<T> Default for ListToken<T> {
    fn default() -> Self {
        Self {
            block: ptr::null_mut(),
            offset: 0,
        }
    }
}

/// An unbounded MPMC queue of `T`.
pub(crate) struct List<T> {
    head: CachePadded<Position<T>>,
    tail: CachePadded<Position<T>>,
    _marker: PhantomData<T>,
}

// SAFETY: the list moves `T`s between threads; every shared access goes
// through the atomics above and slot ownership.
unsafe impl<T: Send> Send for List<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for List<T> {}

/// Why [`List::try_pop`] found no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListEmpty {
    /// No message now.
    Empty,
    /// No message, and the senders are gone.
    Disconnected,
}

impl<T> List<T> {
    pub(crate) fn new() -> Self {
        let first = Box::into_raw(Block::new());
        Self {
            head: CachePadded::new(Position {
                index: AtomicUsize::new(0),
                block: AtomicPtr::new(first),
            }),
            tail: CachePadded::new(Position {
                index: AtomicUsize::new(0),
                block: AtomicPtr::new(first),
            }),
            _marker: PhantomData,
        }
    }

    /// Appends `msg`, unless the list was disconnected.
    ///
    /// # Errors
    ///
    /// The message back, if [`disconnect`](Self::disconnect) was called.
    pub(crate) fn push(&self, msg: T) -> Result<(), T> {
        let mut step = 0;
        // Acquire: pairs with the Release stores that link a block in.
        let mut tail = self.tail.index.load(Ordering::Acquire);
        let mut block = self.tail.block.load(Ordering::Acquire);
        let mut spare: Option<Box<Block<T>>> = None;
        loop {
            if tail & MARK != 0 {
                return Err(msg);
            }
            let offset = (tail >> SHIFT) % LAP;
            if offset == BLOCK_CAP {
                // Another sender is linking the next block in.
                backoff(&mut step);
                tail = self.tail.index.load(Ordering::Acquire);
                block = self.tail.block.load(Ordering::Acquire);
                continue;
            }
            // About to take the last slot: have the next block ready, so
            // that the others wait for a store, not an allocation.
            if offset + 1 == BLOCK_CAP && spare.is_none() {
                spare = Some(Block::new());
            }
            let next_tail = tail.wrapping_add(1 << SHIFT);
            // SeqCst: a receiver's emptiness check (a SeqCst fence, then a
            // load of `tail`) and `disconnect` are ordered against it.
            match self.tail.index.compare_exchange_weak(
                tail,
                next_tail,
                Ordering::SeqCst,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    if offset + 1 == BLOCK_CAP {
                        let next = Box::into_raw(spare.take().expect("allocated above"));
                        // Release: senders that load the new block see it
                        // initialised.
                        self.tail.block.store(next, Ordering::Release);
                        // Past the spare position; keeps a disconnect mark.
                        self.tail.index.fetch_add(1 << SHIFT, Ordering::Release);
                        // SAFETY: `block` is alive: its last slot (ours) is
                        // not read yet, and its reader frees it.
                        unsafe { (*block).next.store(next, Ordering::Release) };
                    }
                    // SAFETY: the position is ours alone; the block lives
                    // until this slot's reader is done, which needs WRITE.
                    unsafe {
                        let slot = &(*block).slots[offset];
                        slot.msg.get().write(MaybeUninit::new(msg));
                        // Release: publishes the message; pairs with
                        // `wait_write`.
                        slot.state.fetch_or(WRITE, Ordering::Release);
                    }
                    return Ok(());
                }
                Err(now) => {
                    tail = now;
                    block = self.tail.block.load(Ordering::Acquire);
                    contended(&mut step);
                }
            }
        }
    }

    /// Takes the position of the next message, if there is one; read it
    /// with [`read`](Self::read).
    ///
    /// # Errors
    ///
    /// [`ListEmpty`] when there is none.
    pub(crate) fn start_pop(&self, token: &mut ListToken<T>) -> Result<(), ListEmpty> {
        let mut step = 0;
        // Acquire: as in `push`.
        let mut head = self.head.index.load(Ordering::Acquire);
        let mut block = self.head.block.load(Ordering::Acquire);
        loop {
            let offset = (head >> SHIFT) % LAP;
            if offset == BLOCK_CAP {
                // Another receiver is moving to the next block.
                backoff(&mut step);
                head = self.head.index.load(Ordering::Acquire);
                block = self.head.block.load(Ordering::Acquire);
                continue;
            }
            let mut next_head = head.wrapping_add(1 << SHIFT);
            if next_head & MARK == 0 {
                // Orders our view of `head` before the load of `tail`;
                // pairs with the SeqCst CAS in `push` and `disconnect`.
                crate::sync::fence(Ordering::SeqCst);
                // Relaxed: ordered by the fence.
                let tail = self.tail.index.load(Ordering::Relaxed);
                if head >> SHIFT == tail >> SHIFT {
                    return Err(if tail & MARK != 0 {
                        ListEmpty::Disconnected
                    } else {
                        ListEmpty::Empty
                    });
                }
                if (head >> SHIFT) / LAP != (tail >> SHIFT) / LAP {
                    next_head |= MARK;
                }
            }
            // SeqCst: as in `push`.
            match self.head.index.compare_exchange_weak(
                head,
                next_head,
                Ordering::SeqCst,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    if offset + 1 == BLOCK_CAP {
                        // SAFETY: `block` is alive until our slot is read.
                        let next = unsafe { (*block).wait_next() };
                        let mut next_index = (next_head & !MARK).wrapping_add(1 << SHIFT);
                        // SAFETY: `next` was linked in and is alive: none of
                        // its slots is read yet.
                        if !unsafe { (*next).next.load(Ordering::Relaxed) }.is_null() {
                            next_index |= MARK;
                        }
                        // Release: receivers that load the new block see it.
                        self.head.block.store(next, Ordering::Release);
                        self.head.index.store(next_index, Ordering::Release);
                    }
                    token.block = block;
                    token.offset = offset;
                    return Ok(());
                }
                Err(now) => {
                    head = now;
                    block = self.head.block.load(Ordering::Acquire);
                    contended(&mut step);
                }
            }
        }
    }

    /// Reads the message at a position taken by [`start_pop`](Self::start_pop).
    ///
    /// # Safety
    ///
    /// `token` was filled by a successful `start_pop` on this list and is
    /// read once.
    pub(crate) unsafe fn read(&self, token: &mut ListToken<T>) -> T {
        let block = token.block;
        let offset = token.offset;
        token.block = ptr::null_mut();
        // SAFETY: the block is alive until this slot is marked READ.
        let slot = unsafe { &(*block).slots[offset] };
        slot.wait_write();
        // SAFETY: WRITE is set: the slot holds a message, and the position
        // is ours, so it is moved out once.
        let msg = unsafe { slot.msg.get().read().assume_init() };
        if offset + 1 == BLOCK_CAP {
            // The last slot: every position of the block is taken.
            // SAFETY: nobody takes a position in it again.
            unsafe { Block::destroy(block, 0) };
        } else if slot.state.fetch_or(READ, Ordering::AcqRel) & DESTROY != 0 {
            // The freeing was handed to us.
            // SAFETY: as above; readers before us are done.
            unsafe { Block::destroy(block, offset + 1) };
        }
        msg
    }

    /// Takes the next message, if there is one.
    ///
    /// # Errors
    ///
    /// [`ListEmpty`] when there is none.
    #[inline]
    pub(crate) fn pop(&self) -> Result<T, ListEmpty> {
        let mut token = ListToken::default();
        self.start_pop(&mut token)?;
        // SAFETY: the token was just filled.
        Ok(unsafe { self.read(&mut token) })
    }

    /// Marks the list disconnected: pushes fail from now on, and pops
    /// report [`ListEmpty::Disconnected`] once the messages are taken.
    /// Returns whether this call was the one that marked it.
    pub(crate) fn disconnect(&self) -> bool {
        // SeqCst: see `push`.
        self.tail.index.fetch_or(MARK, Ordering::SeqCst) & MARK == 0
    }

    /// The number of messages in the list.
    pub(crate) fn len(&self) -> usize {
        loop {
            // SeqCst: a consistent pair of positions, re-read if `tail`
            // moved in between.
            let tail = self.tail.index.load(Ordering::SeqCst);
            let head = self.head.index.load(Ordering::SeqCst);
            if self.tail.index.load(Ordering::SeqCst) != tail {
                continue;
            }
            let mut t = tail >> SHIFT;
            let mut h = head >> SHIFT;
            // A position at a block's spare counts as the next block's
            // first; the spares crossed between them are not messages.
            if t % LAP == BLOCK_CAP {
                t = t.wrapping_add(1);
            }
            if h % LAP == BLOCK_CAP {
                h = h.wrapping_add(1);
            }
            let spares = (t / LAP).wrapping_sub(h / LAP);
            return t.wrapping_sub(h).wrapping_sub(spares);
        }
    }

    /// Whether the list holds no message.
    pub(crate) fn is_empty(&self) -> bool {
        // SeqCst: as in `len`.
        let head = self.head.index.load(Ordering::SeqCst);
        let tail = self.tail.index.load(Ordering::SeqCst);
        head >> SHIFT == tail >> SHIFT
    }

    /// Whether [`disconnect`](Self::disconnect) was called.
    #[cfg_attr(shmlane_loom, allow(dead_code))] // Used by `select`.
    pub(crate) fn is_disconnected(&self) -> bool {
        // SeqCst: as in `len`.
        self.tail.index.load(Ordering::SeqCst) & MARK != 0
    }

    /// Drops every message in the list now (the receivers are gone).
    pub(crate) fn discard(&self) {
        while self.pop().is_ok() {}
    }
}

impl<T> Drop for List<T> {
    fn drop(&mut self) {
        // Every handle is gone: nobody is mid-operation, so every taken
        // position between head and tail was written.
        let mut head = self.head.index.load(Ordering::Relaxed) & !MARK;
        let tail = self.tail.index.load(Ordering::Relaxed) & !MARK;
        let mut block = self.head.block.load(Ordering::Relaxed);
        while head != tail {
            let offset = (head >> SHIFT) % LAP;
            // SAFETY: `block` is the block of `head`, alive (not every slot
            // of it was read); an offset below BLOCK_CAP holds a message.
            unsafe {
                if offset < BLOCK_CAP {
                    let slot = &(*block).slots[offset];
                    (*slot.msg.get()).assume_init_drop();
                } else {
                    let next = (*block).next.load(Ordering::Relaxed);
                    drop(Box::from_raw(block));
                    block = next;
                }
            }
            head = head.wrapping_add(1 << SHIFT);
        }
        if !block.is_null() {
            // SAFETY: the last block, owned by the list alone now.
            drop(unsafe { Box::from_raw(block) });
        }
    }
}

#[cfg(all(test, not(shmlane_loom)))]
mod tests {
    use super::*;

    #[test]
    fn messages_cross_blocks_in_order_and_leftovers_are_dropped() {
        let list = List::new();
        for i in 0..(BLOCK_CAP * 3 + 5) {
            list.push(i.to_string()).unwrap();
        }
        assert_eq!(list.len(), BLOCK_CAP * 3 + 5);
        for i in 0..(BLOCK_CAP * 2 + 1) {
            assert_eq!(list.pop().unwrap(), i.to_string());
        }
        assert_eq!(list.len(), BLOCK_CAP + 4);
        assert!(list.disconnect());
        assert_eq!(list.push("late".into()), Err("late".to_string()));
        // The rest (heap strings) are dropped with the list: Miri checks
        // that nothing leaks and nothing is freed twice.
    }

    #[test]
    fn a_taken_slot_is_read_later_and_the_block_freed_by_its_last_reader() {
        let list = List::new();
        for i in 0..BLOCK_CAP + 2 {
            list.push(Box::new(i)).unwrap();
        }
        let mut first = ListToken::default();
        list.start_pop(&mut first).unwrap();
        // Every other slot of the first block is read before the first.
        for i in 1..BLOCK_CAP + 2 {
            assert_eq!(*list.pop().unwrap(), i);
        }
        // SAFETY: taken above, read once.
        assert_eq!(*unsafe { list.read(&mut first) }, 0);
        assert_eq!(list.pop(), Err(ListEmpty::Empty));
        list.disconnect();
        assert_eq!(list.pop(), Err(ListEmpty::Disconnected));
    }

    #[test]
    fn two_threads() {
        let list = std::sync::Arc::new(List::new());
        let n = if cfg!(miri) { 100 } else { 10_000 };
        let producer = {
            let list = std::sync::Arc::clone(&list);
            std::thread::spawn(move || {
                for i in 0..n {
                    list.push(i).unwrap();
                }
                list.disconnect();
            })
        };
        let mut next = 0;
        loop {
            match list.pop() {
                Ok(v) => {
                    assert_eq!(v, next);
                    next += 1;
                }
                Err(ListEmpty::Empty) => std::thread::yield_now(),
                Err(ListEmpty::Disconnected) => break,
            }
        }
        assert_eq!(next, n);
        producer.join().unwrap();
    }
}
