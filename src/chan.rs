//! The in-process channel: an MPMC ring in a heap region, two eventcounts
//! (one per direction) and the handle counts that decide disconnection.

use std::fmt;
use std::marker::PhantomData;
use std::mem::{align_of, size_of};

use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use shmlane_ring::{mpmc, PopError, PushError};
use shmlane_semaphore::{Phase, WaitStrategy};

use crate::event::Event;

use crate::error::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};
use crate::list::{List, ListEmpty};
use crate::sync::{backoff, spin_loop, Arc, AtomicBool, AtomicUsize, Ordering, SAFETY_STEP};
#[cfg(not(shmlane_loom))]
use crate::timers::{At, Tick};
#[cfg(not(shmlane_loom))]
use crate::zero::Zero;

pub(crate) struct Chan<T> {
    /// The ring, in a heap region it keeps alive.
    pub(crate) ring: mpmc::Ring,
    // The eventcounts live only in this process's heap, so `CachePadded`
    // may pad them for this CPU. The ring's control lines stay a fixed 128
    // bytes: the same ring layout is used in shared segments.
    /// Receivers park here; senders notify after each message.
    pub(crate) not_empty: CachePadded<Event>,
    /// Senders park here; receivers notify after each message.
    pub(crate) not_full: CachePadded<Event>,
    senders: AtomicUsize,
    receivers: AtomicUsize,
    /// Set when the last sender or the last receiver is dropped.
    disconnected: AtomicBool,
    pub(crate) strategy: WaitStrategy,
    /// How a streaming receiver keeps its distance from the senders;
    /// `None` where the ring is too small or its slots too large.
    slip: Option<Slip>,
    _marker: PhantomData<T>,
}

/// How a streaming receiver keeps a few cache lines away from the
/// senders: *temporal slipping*, after FastForward's (Giacomoni, Moseley
/// and Vachharajani, PPoPP 2008).
///
/// A receiver that has caught up to within a few lines of a sender reads
/// each line while the sender still writes the next slots in it, and the
/// line crosses between the two cores several times instead of once. The
/// two then settle at that distance, each slowed by the other. Measured
/// with crossbeam's `bounded_spsc` shape (one million `usize` messages
/// through `bounded(1_000_000)`, 2-vCPU Intel VM), sampling `len()`: this
/// channel's receiver settled 8-12 messages behind the sender and a run
/// took 33-40 ms; crossbeam's settled 250-300 behind and took 17-24 ms.
///
/// So one message in [`SLIP_EVERY`], a receiver that has more messages
/// waiting (it streams; it is not answering one message at a time) but
/// finds the slot `near` positions ahead still unpublished, waits up to
/// [`SLIP_CHECKS`] checks a pause apart for the slot `far` ahead before
/// it returns the message it holds. A receiver that keeps up with single
/// messages (the next slot empty) never waits, nor does one that is far
/// enough behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slip {
    /// Closer than this (in positions) counts as caught up: 4 lines.
    near: u64,
    /// How far to fall back before going on: 32 lines.
    far: u64,
}

/// One receive in this many looks at the distance to the senders.
const SLIP_EVERY: u64 = 16;
/// The most checks a receiver waits for the senders to move ahead.
const SLIP_CHECKS: u32 = 16;

impl Slip {
    /// The distances for `ring`, in positions: 256 and 2,048 bytes of
    /// slots (16 and 128 slots of 16 bytes). None for slots larger than a
    /// 64-byte line (not measured), or a capacity below twice `far`, where
    /// the senders cannot get that far ahead.
    fn for_ring(ring: &mpmc::Ring) -> Option<Self> {
        let layout = ring.layout();
        let stride = layout.stride() as u64;
        if stride > 64 {
            return None;
        }
        let slip = Self {
            near: 256 / stride,
            far: 2048 / stride,
        };
        (layout.capacity() >= 2 * slip.far).then_some(slip)
    }

    /// After a receive of position `pos`: wait, if the receiver streams
    /// and has caught up (see the type's docs). Returns the checks made
    /// while waiting (0: it did not wait).
    #[inline]
    fn keep_distance(self, ring: &mpmc::Ring, pos: u64) -> u32 {
        if pos % SLIP_EVERY == 0
            && ring.published(pos.wrapping_add(1))
            && !ring.published(pos.wrapping_add(self.near))
        {
            self.fall_back(ring, pos)
        } else {
            0
        }
    }

    #[cold]
    fn fall_back(self, ring: &mpmc::Ring, pos: u64) -> u32 {
        for checks in 1..=SLIP_CHECKS {
            spin_loop();
            if ring.published(pos.wrapping_add(self.far)) {
                return checks;
            }
        }
        SLIP_CHECKS
    }
}

// SAFETY: the channel moves `T`s between threads (hence `T: Send`); the ring
// and the region are only reached through atomics and owned slots.
unsafe impl<T: Send> Send for Chan<T> {}
// SAFETY: as above; every `&Chan` method synchronises through atomics.
unsafe impl<T: Send> Sync for Chan<T> {}

impl<T> Chan<T> {
    fn new(cap: usize, strategy: WaitStrategy) -> Self {
        // The process's one-time barrier registration, now rather than in
        // the first wait (see `shmlane_semaphore::prepare_barriers`).
        shmlane_semaphore::prepare_barriers();
        let ring = mpmc::Ring::heap(cap as u64, size_of::<T>().max(1), align_of::<T>())
            .unwrap_or_else(|e| panic!("shmlane::bounded({cap}): {e}"));
        Self {
            slip: Slip::for_ring(&ring),
            ring,
            not_empty: CachePadded::new(Event::new()),
            not_full: CachePadded::new(Event::new()),
            senders: AtomicUsize::new(1),
            receivers: AtomicUsize::new(1),
            disconnected: AtomicBool::new(false),
            strategy,
            _marker: PhantomData,
        }
    }

    pub(crate) fn is_disconnected(&self) -> bool {
        // Acquire: pairs with the Release store in `disconnect`; a receiver
        // that sees it also sees every message the last sender pushed.
        self.disconnected.load(Ordering::Acquire)
    }

    fn disconnect(&self) {
        // Release: see `is_disconnected`.
        self.disconnected.store(true, Ordering::Release);
        self.not_empty.notify_all_local();
        self.not_full.notify_all_local();
    }

    /// Sends without waiting. `precise`: tell a slot still being read from
    /// a full ring (needed before parking; costs a read of the receivers'
    /// index line, which spinning checks skip).
    #[inline]
    pub(crate) fn try_send(&self, msg: T, precise: bool) -> Result<(), TrySendError<T>> {
        if self.is_disconnected() {
            return Err(TrySendError::Disconnected(msg));
        }
        let mut step = 0;
        loop {
            let reserved = if precise {
                self.ring.try_reserve()
            } else {
                self.ring.try_reserve_spin()
            };
            match reserved {
                Ok(slot) => {
                    // SAFETY: the reservation owns a slot of `size_of::<T>()`
                    // bytes or more, aligned for `T` (the layout was made for `T`).
                    unsafe { slot.as_mut_ptr().cast::<T>().write(msg) };
                    // Anonymous handles always publish.
                    let _ = slot.commit();
                    self.not_empty.notify_one_local();
                    return Ok(());
                }
                Err(PushError::Full) => return Err(TrySendError::Full(msg)),
                // A receiver is mid-read on the next slot: not full, and its
                // wakeup may already be spent, so never park on this.
                Err(PushError::Busy) => backoff(&mut step),
                Err(e) => unreachable!("in-process ring: {e}"),
            }
        }
    }

    /// Receives without waiting; `precise` as in [`try_send`](Self::try_send).
    #[inline]
    pub(crate) fn try_recv(&self, precise: bool) -> Result<T, TryRecvError> {
        match self.pop(precise) {
            Some(msg) => Ok(msg),
            None if !self.is_disconnected() => Err(TryRecvError::Empty),
            // Every sender is gone: whatever they pushed is visible now, so
            // one more look decides between a last message and the end.
            None => self.pop(true).ok_or(TryRecvError::Disconnected),
        }
    }

    #[inline]
    fn pop(&self, precise: bool) -> Option<T> {
        let mut step = 0;
        loop {
            let claimed = if precise {
                self.ring.try_claim()
            } else {
                self.ring.try_claim_spin()
            };
            match claimed {
                // A select reserved the slot and its operation was dropped
                // unfinished: no message in it.
                Ok(slot) if slot.is_skipped() => {
                    drop(slot);
                    self.not_full.notify_one_local();
                }
                Ok(slot) => {
                    // SAFETY: a claimed slot holds a `T` written by `try_send`
                    // and published by its commit; the claim frees the slot
                    // on drop, so this read moves the value out exactly once.
                    let msg = unsafe { slot.as_ptr().cast::<T>().read() };
                    let pos = slot.position();
                    drop(slot);
                    self.not_full.notify_one_local();
                    if let Some(slip) = self.slip {
                        slip.keep_distance(&self.ring, pos);
                    }
                    return Some(msg);
                }
                Err(PopError::Empty) => return None,
                // A sender is mid-write on the head slot: not empty (see
                // `try_send`).
                Err(PopError::Busy) => backoff(&mut step),
                Err(e) => unreachable!("in-process ring: {e}"),
            }
        }
    }

    fn send_until(&self, msg: T, deadline: Option<Instant>) -> Result<(), SendTimeoutError<T>> {
        let msg = match self.try_send(msg, false) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Disconnected(msg)) => {
                return Err(SendTimeoutError::Disconnected(msg))
            }
            Err(TrySendError::Full(msg)) => msg,
        };
        self.send_slow(msg, deadline)
    }

    #[cold]
    fn send_slow(&self, msg: T, deadline: Option<Instant>) -> Result<(), SendTimeoutError<T>> {
        let mut pending = Some(msg);
        let waited = self
            .not_full
            .wait_phased(&self.strategy, deadline, SAFETY_STEP, |phase| {
                let msg = pending.take()?;
                match self.try_send(msg, phase == Phase::Park) {
                    Ok(()) => Some(Ok(())),
                    Err(TrySendError::Disconnected(msg)) => Some(Err(msg)),
                    Err(TrySendError::Full(msg)) => {
                        pending = Some(msg);
                        None
                    }
                }
            });
        match waited {
            Ok(Ok(())) => Ok(()),
            Ok(Err(msg)) => Err(SendTimeoutError::Disconnected(msg)),
            // The last check before timing out put the message back.
            Err(_) => Err(SendTimeoutError::Timeout(
                pending.expect("message kept on timeout"),
            )),
        }
    }

    fn recv_until(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        match self.try_recv(false) {
            Ok(msg) => Ok(msg),
            Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
            Err(TryRecvError::Empty) => self.recv_slow(deadline),
        }
    }

    #[cold]
    fn recv_slow(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        let waited = self
            .not_empty
            .wait_phased(&self.strategy, deadline, SAFETY_STEP, |phase| {
                match self.try_recv(phase == Phase::Park) {
                    Ok(msg) => Some(Ok(msg)),
                    Err(TryRecvError::Disconnected) => Some(Err(RecvTimeoutError::Disconnected)),
                    Err(TryRecvError::Empty) => None,
                }
            });
        waited.unwrap_or(Err(RecvTimeoutError::Timeout))
    }
}

impl<T> Drop for Chan<T> {
    fn drop(&mut self) {
        // Every handle is gone: drop the messages nobody received.
        while let Ok(slot) = self.ring.try_claim() {
            if !slot.is_skipped() {
                // SAFETY: as in `pop`; each buffered `T` is dropped exactly
                // once.
                unsafe { slot.as_ptr().cast::<T>().cast_mut().drop_in_place() };
            }
        }
        // The region goes with the ring handle.
    }
}

/// Creates a channel that holds at most `cap` messages, for any number of
/// senders and receivers in one process. A drop-in for
/// `crossbeam_channel::bounded`; `bounded(0)` makes a rendezvous channel,
/// where a send completes only when a receiver takes the message.
///
/// A receiver that streams (more messages wait behind the one it takes)
/// but has caught up to within a few cache lines of the senders pauses
/// for a moment, at most 16 pause hints one receive in 16, so that it
/// stops reading the lines the senders are writing (on a 2-vCPU Intel VM,
/// crossbeam's `bounded_spsc` shape took 0.73-0.83x the time it took
/// without). That holds for `recv`, `try_recv`, iterators and async
/// receives alike, whatever the [`WaitStrategy`], on channels where a
/// message and its 8-byte stamp fit one 64-byte line (up to 56 bytes with
/// an alignment of 8 or less) and whose slots take about 4 KiB or more
/// (`cap >= 256` for 8-byte messages, 64 for 56-byte ones). A receiver that keeps
/// up with messages one at a time never pauses.
///
/// # Examples
///
/// ```
/// let (tx, rx) = shmlane::bounded(2);
/// let producer = std::thread::spawn(move || {
///     for i in 0..10 {
///         tx.send(i).unwrap();
///     }
/// });
/// let received: Vec<i32> = rx.iter().collect();
/// assert_eq!(received, (0..10).collect::<Vec<_>>());
/// producer.join().unwrap();
/// ```
///
/// A rendezvous:
///
/// ```
/// let (tx, rx) = shmlane::bounded(0);
/// let t = std::thread::spawn(move || tx.send("handed over").unwrap());
/// assert_eq!(rx.recv(), Ok("handed over"));
/// t.join().unwrap();
/// ```
///
/// # Panics
///
/// If `cap` exceeds 2^32 or `T` is aligned to more than 4096.
pub fn bounded<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    bounded_with(cap, WaitStrategy::default())
}

/// As [`bounded`], with a chosen [`WaitStrategy`] for blocked senders and
/// receivers (for example [`WaitStrategy::busy_poll`] for the lowest
/// latency when cores are to spare). A rendezvous channel (`cap == 0`)
/// always parks.
///
/// # Examples
///
/// ```
/// use shmlane::WaitStrategy;
///
/// let (tx, rx) = shmlane::bounded_with(16, WaitStrategy::busy_poll());
/// tx.send("hello").unwrap();
/// assert_eq!(rx.recv(), Ok("hello"));
/// ```
///
/// # Panics
///
/// As [`bounded`].
pub fn bounded_with<T>(cap: usize, strategy: WaitStrategy) -> (Sender<T>, Receiver<T>) {
    #[cfg(not(shmlane_loom))]
    if cap == 0 {
        let chan = Arc::new(Counted::new(Zero::new(), strategy));
        return (
            Sender {
                flavor: SenderFlavor::Zero(Arc::clone(&chan)),
            },
            Receiver {
                flavor: ReceiverFlavor::Zero(chan),
            },
        );
    }
    let chan = Arc::new(Chan::new(cap, strategy));
    (
        Sender {
            flavor: SenderFlavor::Array(Arc::clone(&chan)),
        },
        Receiver {
            flavor: ReceiverFlavor::Array(chan),
        },
    )
}

/// Creates a channel without a limit on the messages it holds: a send
/// never blocks. Memory grows in blocks of 31 messages and each block is
/// freed once its messages are received. A drop-in for
/// `crossbeam_channel::unbounded`.
///
/// # Examples
///
/// ```
/// let (tx, rx) = shmlane::unbounded();
/// for i in 0..1000 {
///     tx.send(i).unwrap(); // never blocks
/// }
/// drop(tx);
/// assert_eq!(rx.iter().sum::<i32>(), 499_500);
/// ```
pub fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
    unbounded_with(WaitStrategy::default())
}

/// As [`unbounded`], with a chosen [`WaitStrategy`] for blocked receivers.
pub fn unbounded_with<T>(strategy: WaitStrategy) -> (Sender<T>, Receiver<T>) {
    let chan = Arc::new(Counted::new(List::new(), strategy));
    (
        Sender {
            flavor: SenderFlavor::List(Arc::clone(&chan)),
        },
        Receiver {
            flavor: ReceiverFlavor::List(chan),
        },
    )
}

/// A receiver that delivers one message, the [`Instant`] it was due, once
/// `duration` has passed. A drop-in for `crossbeam_channel::after`.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
///
/// let start = Instant::now();
/// let timer = shmlane::after(Duration::from_millis(10));
/// let due = timer.recv().unwrap();
/// assert!(due >= start + Duration::from_millis(10));
/// assert!(timer.try_recv().is_err()); // one message only
/// ```
#[cfg(not(shmlane_loom))]
pub fn after(duration: Duration) -> Receiver<Instant> {
    let now = Instant::now();
    at(now
        .checked_add(duration)
        .unwrap_or(now + Duration::from_secs(1 << 40)))
}

/// A receiver that delivers one message, `when`, once `when` has come. A
/// drop-in for `crossbeam_channel::at`.
#[cfg(not(shmlane_loom))]
pub fn at(when: Instant) -> Receiver<Instant> {
    Receiver {
        flavor: ReceiverFlavor::At(Arc::new(At::new(when)), std::convert::identity),
    }
}

/// A receiver that delivers the time every `duration`: the first message
/// is due one `duration` from now, each next one a `duration` after the
/// last was received. A drop-in for `crossbeam_channel::tick`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let ticks = shmlane::tick(Duration::from_millis(5));
/// let first = ticks.recv().unwrap();
/// let second = ticks.recv().unwrap();
/// assert!(second >= first + Duration::from_millis(5));
/// ```
#[cfg(not(shmlane_loom))]
pub fn tick(duration: Duration) -> Receiver<Instant> {
    Receiver {
        flavor: ReceiverFlavor::Tick(Arc::new(Tick::new(duration)), std::convert::identity),
    }
}

/// A receiver that never delivers a message and is never disconnected:
/// a `select!` arm that is switched off. A drop-in for
/// `crossbeam_channel::never`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let rx = shmlane::never::<i32>();
/// assert!(rx.recv_timeout(Duration::from_millis(1)).is_err());
/// ```
#[cfg(not(shmlane_loom))]
pub fn never<T>() -> Receiver<T> {
    Receiver {
        flavor: ReceiverFlavor::Never,
    }
}

/// A channel flavor and its handle counts.
pub(crate) struct Counted<C> {
    pub(crate) chan: C,
    /// Receivers park here (the unbounded flavor).
    pub(crate) not_empty: CachePadded<Event>,
    senders: AtomicUsize,
    receivers: AtomicUsize,
    pub(crate) strategy: WaitStrategy,
}

impl<C> Counted<C> {
    fn new(chan: C, strategy: WaitStrategy) -> Self {
        // As in `Chan::new`.
        shmlane_semaphore::prepare_barriers();
        Self {
            chan,
            not_empty: CachePadded::new(Event::new()),
            senders: AtomicUsize::new(1),
            receivers: AtomicUsize::new(1),
            strategy,
        }
    }
}

impl<T> Counted<List<T>> {
    #[inline]
    pub(crate) fn send(&self, msg: T) -> Result<(), T> {
        self.chan.push(msg)?;
        self.not_empty.notify_one_local();
        Ok(())
    }

    #[inline]
    pub(crate) fn try_recv(&self) -> Result<T, TryRecvError> {
        self.chan.pop().map_err(|e| match e {
            ListEmpty::Empty => TryRecvError::Empty,
            ListEmpty::Disconnected => TryRecvError::Disconnected,
        })
    }

    fn recv_until(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        match self.try_recv() {
            Ok(msg) => Ok(msg),
            Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
            Err(TryRecvError::Empty) => self.recv_slow(deadline),
        }
    }

    #[cold]
    fn recv_slow(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        self.not_empty
            .wait_phased(&self.strategy, deadline, SAFETY_STEP, |_| {
                match self.try_recv() {
                    Ok(msg) => Some(Ok(msg)),
                    Err(TryRecvError::Disconnected) => Some(Err(RecvTimeoutError::Disconnected)),
                    Err(TryRecvError::Empty) => None,
                }
            })
            .unwrap_or(Err(RecvTimeoutError::Timeout))
    }
}

/// The sending side of a channel. Clone it for more senders.
pub struct Sender<T> {
    pub(crate) flavor: SenderFlavor<T>,
}

/// The receiving side of a channel. Clone it for more receivers; each
/// message goes to exactly one of them.
pub struct Receiver<T> {
    pub(crate) flavor: ReceiverFlavor<T>,
}

pub(crate) enum SenderFlavor<T> {
    Array(Arc<Chan<T>>),
    List(Arc<Counted<List<T>>>),
    #[cfg(not(shmlane_loom))]
    Zero(Arc<Counted<Zero<T>>>),
}

pub(crate) enum ReceiverFlavor<T> {
    Array(Arc<Chan<T>>),
    List(Arc<Counted<List<T>>>),
    #[cfg(not(shmlane_loom))]
    Zero(Arc<Counted<Zero<T>>>),
    /// The message is the instant; the function turns it into a `T`
    /// (`T` is `Instant`: it is the identity).
    #[cfg(not(shmlane_loom))]
    At(Arc<At>, fn(Instant) -> T),
    #[cfg(not(shmlane_loom))]
    Tick(Arc<Tick>, fn(Instant) -> T),
    #[cfg(not(shmlane_loom))]
    Never,
}

impl<T> Sender<T> {
    /// Sends a message without blocking.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] if the channel holds `capacity` messages (for
    /// a rendezvous channel: if no receiver is waiting),
    /// [`TrySendError::Disconnected`] if every receiver is gone; both hand
    /// the message back.
    pub fn try_send(&self, msg: T) -> Result<(), TrySendError<T>> {
        match &self.flavor {
            SenderFlavor::Array(c) => c.try_send(msg, true),
            SenderFlavor::List(c) => c.send(msg).map_err(TrySendError::Disconnected),
            #[cfg(not(shmlane_loom))]
            SenderFlavor::Zero(c) => c.chan.try_send(msg),
        }
    }

    /// Sends a message, blocking while the channel is full (for a
    /// rendezvous channel: until a receiver takes it).
    ///
    /// # Errors
    ///
    /// [`SendError`] with the message if every receiver is gone.
    pub fn send(&self, msg: T) -> Result<(), SendError<T>> {
        self.send_until(msg, None)
            .map_err(|e| SendError(e.into_inner()))
    }

    #[inline]
    fn send_until(&self, msg: T, deadline: Option<Instant>) -> Result<(), SendTimeoutError<T>> {
        match &self.flavor {
            SenderFlavor::Array(c) => c.send_until(msg, deadline),
            SenderFlavor::List(c) => c.send(msg).map_err(SendTimeoutError::Disconnected),
            #[cfg(not(shmlane_loom))]
            SenderFlavor::Zero(c) => c.chan.send(msg, deadline),
        }
    }

    /// Sends a message, blocking while the channel is full for at most
    /// `timeout`.
    ///
    /// # Errors
    ///
    /// [`SendTimeoutError::Timeout`] or [`SendTimeoutError::Disconnected`],
    /// with the message.
    pub fn send_timeout(&self, msg: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.send_until(msg, Instant::now().checked_add(timeout))
    }

    /// Sends a message, blocking while the channel is full until `deadline`.
    ///
    /// # Errors
    ///
    /// As [`send_timeout`](Self::send_timeout).
    pub fn send_deadline(&self, msg: T, deadline: Instant) -> Result<(), SendTimeoutError<T>> {
        self.send_until(msg, Some(deadline))
    }

    /// Whether the channel holds no message (always, for a rendezvous
    /// channel).
    pub fn is_empty(&self) -> bool {
        match &self.flavor {
            SenderFlavor::Array(c) => c.ring.is_empty(),
            SenderFlavor::List(c) => c.chan.is_empty(),
            #[cfg(not(shmlane_loom))]
            SenderFlavor::Zero(_) => true,
        }
    }

    /// Whether the channel holds `capacity` messages (always, for a
    /// rendezvous channel; never, for an unbounded one).
    pub fn is_full(&self) -> bool {
        match &self.flavor {
            SenderFlavor::Array(c) => c.ring.len() == c.ring.capacity(),
            SenderFlavor::List(_) => false,
            #[cfg(not(shmlane_loom))]
            SenderFlavor::Zero(_) => true,
        }
    }

    /// The number of messages in the channel.
    pub fn len(&self) -> usize {
        match &self.flavor {
            SenderFlavor::Array(c) => c.ring.len() as usize,
            SenderFlavor::List(c) => c.chan.len(),
            #[cfg(not(shmlane_loom))]
            SenderFlavor::Zero(_) => 0,
        }
    }

    /// The capacity: `None` for an unbounded channel.
    pub fn capacity(&self) -> Option<usize> {
        match &self.flavor {
            SenderFlavor::Array(c) => Some(c.ring.capacity() as usize),
            SenderFlavor::List(_) => None,
            #[cfg(not(shmlane_loom))]
            SenderFlavor::Zero(_) => Some(0),
        }
    }

    /// Whether both senders belong to the same channel.
    pub fn same_channel(&self, other: &Sender<T>) -> bool {
        match (&self.flavor, &other.flavor) {
            (SenderFlavor::Array(a), SenderFlavor::Array(b)) => Arc::ptr_eq(a, b),
            (SenderFlavor::List(a), SenderFlavor::List(b)) => Arc::ptr_eq(a, b),
            #[cfg(not(shmlane_loom))]
            (SenderFlavor::Zero(a), SenderFlavor::Zero(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// How many receivers are parked waiting for a message (for models and
    /// tests; not part of the crossbeam API).
    #[doc(hidden)]
    pub fn parked_receivers(&self) -> u32 {
        match &self.flavor {
            SenderFlavor::Array(c) => c.not_empty.waiters(),
            SenderFlavor::List(c) => c.not_empty.waiters(),
            #[cfg(not(shmlane_loom))]
            SenderFlavor::Zero(_) => 0,
        }
    }
}

impl<T> Receiver<T> {
    /// Receives a message without blocking.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`] if no message is ready,
    /// [`TryRecvError::Disconnected`] if the channel is empty and every
    /// sender is gone.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        match &self.flavor {
            ReceiverFlavor::Array(c) => c.try_recv(true),
            ReceiverFlavor::List(c) => c.try_recv(),
            #[cfg(not(shmlane_loom))]
            ReceiverFlavor::Zero(c) => c.chan.try_recv(),
            #[cfg(not(shmlane_loom))]
            ReceiverFlavor::At(c, f) => c.try_recv().map(f),
            #[cfg(not(shmlane_loom))]
            ReceiverFlavor::Tick(c, f) => c.try_recv().map(f),
            #[cfg(not(shmlane_loom))]
            ReceiverFlavor::Never => Err(TryRecvError::Empty),
        }
    }

    #[inline]
    fn recv_until(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        match &self.flavor {
            ReceiverFlavor::Array(c) => c.recv_until(deadline),
            ReceiverFlavor::List(c) => c.recv_until(deadline),
            #[cfg(not(shmlane_loom))]
            ReceiverFlavor::Zero(c) => c.chan.recv(deadline),
            #[cfg(not(shmlane_loom))]
            ReceiverFlavor::At(c, f) => c.recv(deadline).map(f),
            #[cfg(not(shmlane_loom))]
            ReceiverFlavor::Tick(c, f) => c.recv(deadline).map(f),
            #[cfg(not(shmlane_loom))]
            ReceiverFlavor::Never => {
                crate::timers::sleep_until(deadline);
                Err(RecvTimeoutError::Timeout)
            }
        }
    }

    /// Receives a message, blocking while the channel is empty. Messages
    /// sent before the last sender was dropped are still received.
    ///
    /// # Errors
    ///
    /// [`RecvError`] if the channel is empty and every sender is gone.
    pub fn recv(&self) -> Result<T, RecvError> {
        self.recv_until(None).map_err(|_| RecvError)
    }

    /// Receives a message, blocking for at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`] or [`RecvTimeoutError::Disconnected`].
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.recv_until(Instant::now().checked_add(timeout))
    }

    /// Receives a message, blocking until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// As [`recv_timeout`](Self::recv_timeout).
    pub fn recv_deadline(&self, deadline: Instant) -> Result<T, RecvTimeoutError> {
        self.recv_until(Some(deadline))
    }

    /// A blocking iterator over messages; ends when the channel is empty
    /// and every sender is gone.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { receiver: self }
    }

    /// A non-blocking iterator over the messages ready now.
    pub fn try_iter(&self) -> TryIter<'_, T> {
        TryIter { receiver: self }
    }

    /// Whether the channel holds no message.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the channel holds `capacity` messages.
    pub fn is_full(&self) -> bool {
        match &self.flavor {
            ReceiverFlavor::Array(c) => c.ring.len() == c.ring.capacity(),
            ReceiverFlavor::List(_) => false,
            #[cfg(not(shmlane_loom))]
            ReceiverFlavor::Zero(_) | ReceiverFlavor::Never => true,
            #[cfg(not(shmlane_loom))]
            ReceiverFlavor::At(c, _) => c.len() == 1,
            #[cfg(not(shmlane_loom))]
            ReceiverFlavor::Tick(c, _) => c.is_ready(),
        }
    }

    /// The number of messages in the channel.
    pub fn len(&self) -> usize {
        match &self.flavor {
            ReceiverFlavor::Array(c) => c.ring.len() as usize,
            ReceiverFlavor::List(c) => c.chan.len(),
            #[cfg(not(shmlane_loom))]
            ReceiverFlavor::Zero(_) | ReceiverFlavor::Never => 0,
            #[cfg(not(shmlane_loom))]
            ReceiverFlavor::At(c, _) => c.len(),
            #[cfg(not(shmlane_loom))]
            ReceiverFlavor::Tick(c, _) => usize::from(c.is_ready()),
        }
    }

    /// The capacity: `None` for an unbounded channel.
    pub fn capacity(&self) -> Option<usize> {
        match &self.flavor {
            ReceiverFlavor::Array(c) => Some(c.ring.capacity() as usize),
            ReceiverFlavor::List(_) => None,
            #[cfg(not(shmlane_loom))]
            ReceiverFlavor::Zero(_) | ReceiverFlavor::Never => Some(0),
            #[cfg(not(shmlane_loom))]
            ReceiverFlavor::At(..) | ReceiverFlavor::Tick(..) => Some(1),
        }
    }

    /// Whether both receivers belong to the same channel.
    pub fn same_channel(&self, other: &Receiver<T>) -> bool {
        match (&self.flavor, &other.flavor) {
            (ReceiverFlavor::Array(a), ReceiverFlavor::Array(b)) => Arc::ptr_eq(a, b),
            (ReceiverFlavor::List(a), ReceiverFlavor::List(b)) => Arc::ptr_eq(a, b),
            #[cfg(not(shmlane_loom))]
            (ReceiverFlavor::Zero(a), ReceiverFlavor::Zero(b)) => Arc::ptr_eq(a, b),
            #[cfg(not(shmlane_loom))]
            (ReceiverFlavor::At(a, _), ReceiverFlavor::At(b, _)) => Arc::ptr_eq(a, b),
            #[cfg(not(shmlane_loom))]
            (ReceiverFlavor::Tick(a, _), ReceiverFlavor::Tick(b, _)) => Arc::ptr_eq(a, b),
            #[cfg(not(shmlane_loom))]
            (ReceiverFlavor::Never, ReceiverFlavor::Never) => true,
            _ => false,
        }
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        // Relaxed: a new handle is made from a live one, so the count cannot
        // reach zero meanwhile (as in `Arc::clone`).
        let flavor = match &self.flavor {
            SenderFlavor::Array(c) => {
                c.senders.fetch_add(1, Ordering::Relaxed);
                SenderFlavor::Array(Arc::clone(c))
            }
            SenderFlavor::List(c) => {
                c.senders.fetch_add(1, Ordering::Relaxed);
                SenderFlavor::List(Arc::clone(c))
            }
            #[cfg(not(shmlane_loom))]
            SenderFlavor::Zero(c) => {
                c.senders.fetch_add(1, Ordering::Relaxed);
                SenderFlavor::Zero(Arc::clone(c))
            }
        };
        Self { flavor }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        // Relaxed: as for `Sender::clone`.
        let flavor = match &self.flavor {
            ReceiverFlavor::Array(c) => {
                c.receivers.fetch_add(1, Ordering::Relaxed);
                ReceiverFlavor::Array(Arc::clone(c))
            }
            ReceiverFlavor::List(c) => {
                c.receivers.fetch_add(1, Ordering::Relaxed);
                ReceiverFlavor::List(Arc::clone(c))
            }
            #[cfg(not(shmlane_loom))]
            ReceiverFlavor::Zero(c) => {
                c.receivers.fetch_add(1, Ordering::Relaxed);
                ReceiverFlavor::Zero(Arc::clone(c))
            }
            #[cfg(not(shmlane_loom))]
            ReceiverFlavor::At(c, f) => ReceiverFlavor::At(Arc::clone(c), *f),
            #[cfg(not(shmlane_loom))]
            ReceiverFlavor::Tick(c, f) => ReceiverFlavor::Tick(Arc::clone(c), *f),
            #[cfg(not(shmlane_loom))]
            ReceiverFlavor::Never => ReceiverFlavor::Never,
        };
        Self { flavor }
    }
}

/// Takes one handle off `count`; whether it was the last.
fn last(count: &AtomicUsize) -> bool {
    // AcqRel: the last handle sees every other handle's operations before
    // it publishes the disconnect.
    count.fetch_sub(1, Ordering::AcqRel) == 1
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        match &self.flavor {
            SenderFlavor::Array(c) => {
                if last(&c.senders) {
                    c.disconnect();
                }
            }
            SenderFlavor::List(c) => {
                if last(&c.senders) {
                    c.chan.disconnect();
                    c.not_empty.notify_all_local();
                }
            }
            #[cfg(not(shmlane_loom))]
            SenderFlavor::Zero(c) => {
                if last(&c.senders) {
                    c.chan.disconnect();
                }
            }
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        match &self.flavor {
            ReceiverFlavor::Array(c) => {
                if last(&c.receivers) {
                    // What is buffered stays until the channel itself goes
                    // (when the last sender does), as in crossbeam's
                    // bounded channel.
                    c.disconnect();
                }
            }
            ReceiverFlavor::List(c) => {
                if last(&c.receivers) {
                    // Nobody can receive them: drop the messages now, as
                    // crossbeam's unbounded channel does.
                    c.chan.disconnect();
                    c.chan.discard();
                }
            }
            #[cfg(not(shmlane_loom))]
            ReceiverFlavor::Zero(c) => {
                if last(&c.receivers) {
                    c.chan.disconnect();
                }
            }
            #[cfg(not(shmlane_loom))]
            ReceiverFlavor::At(..) | ReceiverFlavor::Tick(..) | ReceiverFlavor::Never => {}
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sender { .. }")
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Receiver { .. }")
    }
}

/// A blocking iterator over a [`Receiver`]'s messages.
pub struct Iter<'a, T> {
    receiver: &'a Receiver<T>,
}

/// A non-blocking iterator over a [`Receiver`]'s ready messages.
pub struct TryIter<'a, T> {
    receiver: &'a Receiver<T>,
}

/// A blocking iterator that owns its [`Receiver`].
pub struct IntoIter<T> {
    receiver: Receiver<T>,
}

impl<T> Iterator for Iter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.receiver.recv().ok()
    }
}

impl<T> std::iter::FusedIterator for Iter<'_, T> {}

impl<T> Iterator for TryIter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.receiver.try_recv().ok()
    }
}

impl<T> Iterator for IntoIter<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.receiver.recv().ok()
    }
}

impl<T> std::iter::FusedIterator for IntoIter<T> {}

impl<'a, T> IntoIterator for &'a Receiver<T> {
    type Item = T;
    type IntoIter = Iter<'a, T>;
    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

impl<T> IntoIterator for Receiver<T> {
    type Item = T;
    type IntoIter = IntoIter<T>;
    fn into_iter(self) -> IntoIter<T> {
        IntoIter { receiver: self }
    }
}

impl<T> fmt::Debug for Iter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Iter { .. }")
    }
}

impl<T> fmt::Debug for TryIter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TryIter { .. }")
    }
}

impl<T> fmt::Debug for IntoIter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IntoIter { .. }")
    }
}

#[cfg(all(test, not(shmlane_loom)))]
mod tests {
    use super::*;

    fn slip_of<T>(cap: usize) -> Option<Slip> {
        Chan::<T>::new(cap, WaitStrategy::default()).slip
    }

    #[test]
    fn the_slip_distances_are_lines_of_slots_and_need_room() {
        // 16-byte slots (an 8-byte stamp and a `u64`): 4 and 32 lines.
        assert_eq!(slip_of::<u64>(1 << 20), Some(Slip { near: 16, far: 128 }));
        assert_eq!(slip_of::<u64>(256).map(|s| s.far), Some(128));
        // Too small for the senders to get `far` ahead.
        assert_eq!(slip_of::<u64>(255), None);
        assert_eq!(slip_of::<u64>(1), None);
        // 64-byte slots: 4 and 32 positions. Larger slots: none.
        assert_eq!(slip_of::<[u64; 7]>(1024), Some(Slip { near: 4, far: 32 }));
        assert_eq!(slip_of::<[u64; 8]>(1024), None);
    }

    #[test]
    fn a_receiver_falls_back_only_while_it_streams_close_behind() {
        let chan = Chan::<u64>::new(1024, WaitStrategy::default());
        let slip = chan.slip.unwrap();
        let distance = |pos| slip.keep_distance(&chan.ring, pos);
        let send = |n: u64| {
            for i in 0..n {
                chan.try_send(i, true).unwrap();
            }
        };
        // One message waiting: a receiver answering messages one at a time.
        send(1);
        assert_eq!(distance(0), 0);
        // A second behind it, and nothing 16 on: it streams close behind
        // the sender, and waits every check for position 128, which
        // nobody sends meanwhile.
        send(1);
        assert_eq!(distance(0), SLIP_CHECKS);
        // Only one position in 16 looks.
        assert_eq!(distance(1), 0);
        // Position 16 held open by a sender still writing it, 17 to 128
        // published: the wait ends at its first check.
        send(14);
        let hole = chan.ring.try_reserve().unwrap();
        assert_eq!(hole.position(), 16);
        assert!(!chan.ring.published(128));
        send(112);
        assert_eq!(distance(0), 1);
        // 16 on published (a skipped slot counts): far enough behind.
        hole.cancel();
        assert_eq!(distance(0), 0);
    }

    #[test]
    fn several_senders_and_receivers_with_slip_on_get_each_message_once_in_sender_order() {
        const SENDERS: u64 = 4;
        const RECEIVERS: usize = 4;
        const EACH: u64 = 50_000;
        assert!(slip_of::<u64>(1024).is_some());
        let (tx, rx) = bounded::<u64>(1024);
        let got: Vec<Vec<u64>> = std::thread::scope(|s| {
            for id in 0..SENDERS {
                let tx = tx.clone();
                s.spawn(move || {
                    for seq in 0..EACH {
                        tx.send(id << 32 | seq).unwrap();
                    }
                });
            }
            drop(tx);
            let receivers: Vec<_> = (0..RECEIVERS)
                .map(|_| {
                    let rx = rx.clone();
                    s.spawn(move || rx.iter().collect::<Vec<u64>>())
                })
                .collect();
            receivers.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut seen = vec![vec![false; EACH as usize]; SENDERS as usize];
        for mine in &got {
            // Each receiver sees each sender's messages in sending order.
            let mut last = vec![None; SENDERS as usize];
            for &m in mine {
                let (id, seq) = ((m >> 32) as usize, m & 0xffff_ffff);
                assert!(
                    last[id].is_none_or(|l| l < seq),
                    "sender {id}: {seq} after {last:?}"
                );
                last[id] = Some(seq);
                assert!(
                    !std::mem::replace(&mut seen[id][seq as usize], true),
                    "{m} twice"
                );
            }
        }
        assert!(seen.iter().flatten().all(|&s| s), "a message was lost");
    }

    #[test]
    fn a_receiver_that_falls_back_loses_and_reorders_nothing() {
        // One thread: at position 0 the next message is waiting and the
        // 16th is not, so the receive falls back (every check fails, as
        // nobody sends meanwhile) and still returns both in order.
        let (tx, rx) = bounded(1024);
        tx.send(0u64).unwrap();
        tx.send(1).unwrap();
        assert_eq!(rx.recv(), Ok(0));
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        // Two threads streaming through a ring with slip on.
        let (tx, rx) = bounded(4096);
        let n = 200_000u64;
        let sender = std::thread::spawn(move || {
            for i in 0..n {
                tx.send(i).unwrap();
            }
        });
        for i in 0..n {
            assert_eq!(rx.recv(), Ok(i));
        }
        assert_eq!(rx.recv(), Err(RecvError));
        sender.join().unwrap();
    }
}
