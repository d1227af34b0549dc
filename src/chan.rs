//! The in-process channel: an MPMC ring in a heap region, two eventcounts
//! (one per direction) and the handle counts that decide disconnection.

use std::fmt;
use std::marker::PhantomData;
use std::mem::{align_of, size_of};

use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use shmlane_ring::{mpmc, PopError, PushError};
use shmlane_semaphore::{EventCount, Phase, WaitStrategy};

use crate::error::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};
use crate::sync::{backoff, Arc, AtomicBool, AtomicUsize, Ordering};

/// Parked waiters re-check at least this often. The eventcount needs no
/// timer to be correct; this bounds the cost of the one case that is not
/// ordered (a membarrier call failing after wakers relied on it; see
/// `shmlane_semaphore`'s barrier notes) to one step instead of a hang.
const SAFETY_STEP: Option<Duration> = Some(Duration::from_millis(100));

struct Chan<T> {
    /// The ring, in a heap region it keeps alive.
    ring: mpmc::Ring,
    // The eventcounts live only in this process's heap, so `CachePadded`
    // may pad them for this CPU. The ring's control lines stay a fixed 128
    // bytes: the same ring layout is used in shared segments.
    /// Receivers park here; senders notify after each message.
    not_empty: CachePadded<EventCount>,
    /// Senders park here; receivers notify after each message.
    not_full: CachePadded<EventCount>,
    senders: AtomicUsize,
    receivers: AtomicUsize,
    /// Set when the last sender or the last receiver is dropped.
    disconnected: AtomicBool,
    strategy: WaitStrategy,
    _marker: PhantomData<T>,
}

// SAFETY: the channel moves `T`s between threads (hence `T: Send`); the ring
// and the region are only reached through atomics and owned slots.
unsafe impl<T: Send> Send for Chan<T> {}
// SAFETY: as above; every `&Chan` method synchronises through atomics.
unsafe impl<T: Send> Sync for Chan<T> {}

impl<T> Chan<T> {
    fn new(cap: usize, strategy: WaitStrategy) -> Self {
        assert!(
            cap > 0,
            "shmlane::bounded(0): zero-capacity (rendezvous) channels are not supported yet; \
             use a capacity of at least 1"
        );
        let ring = mpmc::Ring::heap(cap as u64, size_of::<T>().max(1), align_of::<T>())
            .unwrap_or_else(|e| panic!("shmlane::bounded({cap}): {e}"));
        Self {
            ring,
            not_empty: CachePadded::new(EventCount::new()),
            not_full: CachePadded::new(EventCount::new()),
            senders: AtomicUsize::new(1),
            receivers: AtomicUsize::new(1),
            disconnected: AtomicBool::new(false),
            strategy,
            _marker: PhantomData,
        }
    }

    fn is_disconnected(&self) -> bool {
        // Acquire: pairs with the Release store in `disconnect`; a receiver
        // that sees it also sees every message the last sender pushed.
        self.disconnected.load(Ordering::Acquire)
    }

    fn disconnect(&self) {
        // Release: see `is_disconnected`.
        self.disconnected.store(true, Ordering::Release);
        self.not_empty.notify_all();
        self.not_full.notify_all();
    }

    /// Sends without waiting. `precise`: tell a slot still being read from
    /// a full ring (needed before parking; costs a read of the receivers'
    /// index line, which spinning checks skip).
    #[inline]
    fn try_send(&self, msg: T, precise: bool) -> Result<(), TrySendError<T>> {
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
                    self.not_empty.notify_one();
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
    fn try_recv(&self, precise: bool) -> Result<T, TryRecvError> {
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
                Ok(slot) => {
                    // SAFETY: a claimed slot holds a `T` written by `try_send`
                    // and published by its commit; the claim frees the slot
                    // on drop, so this read moves the value out exactly once.
                    let msg = unsafe { slot.as_ptr().cast::<T>().read() };
                    drop(slot);
                    self.not_full.notify_one();
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
            .strategy
            .wait_phased(&self.not_full, deadline, SAFETY_STEP, |phase| {
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
            .strategy
            .wait_phased(&self.not_empty, deadline, SAFETY_STEP, |phase| {
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
            // SAFETY: as in `pop`; each buffered `T` is dropped exactly once.
            unsafe { slot.as_ptr().cast::<T>().cast_mut().drop_in_place() };
        }
        // The region goes with the ring handle.
    }
}

/// Creates a channel that holds at most `cap` messages, for any number of
/// senders and receivers in one process. A drop-in for
/// `crossbeam_channel::bounded`.
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
/// # Panics
///
/// If `cap` is 0: zero-capacity (rendezvous) channels are not supported
/// yet. Also if `cap` exceeds 2^32 or `T` is aligned to more than 4096.
pub fn bounded<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    bounded_with(cap, WaitStrategy::default())
}

/// As [`bounded`], with a chosen [`WaitStrategy`] for blocked senders and
/// receivers (for example [`WaitStrategy::busy_poll`] for the lowest
/// latency when cores are to spare).
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
    let chan = Arc::new(Chan::new(cap, strategy));
    (
        Sender {
            chan: Arc::clone(&chan),
        },
        Receiver { chan },
    )
}

/// `len`, `is_empty`, `is_full` and `capacity`, the same on both ends.
macro_rules! size_methods {
    () => {
        /// Whether the channel holds no message.
        pub fn is_empty(&self) -> bool {
            self.chan.ring.is_empty()
        }

        /// Whether the channel holds `capacity` messages.
        pub fn is_full(&self) -> bool {
            self.len() == self.chan.ring.capacity() as usize
        }

        /// The number of messages in the channel.
        pub fn len(&self) -> usize {
            self.chan.ring.len() as usize
        }

        /// The capacity: always `Some` (every shmlane channel is bounded).
        pub fn capacity(&self) -> Option<usize> {
            Some(self.chan.ring.capacity() as usize)
        }
    };
}

/// The sending side of a channel. Clone it for more senders.
pub struct Sender<T> {
    chan: Arc<Chan<T>>,
}

/// The receiving side of a channel. Clone it for more receivers; each
/// message goes to exactly one of them.
pub struct Receiver<T> {
    chan: Arc<Chan<T>>,
}

impl<T> Sender<T> {
    /// Sends a message without blocking.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] if the channel holds `capacity` messages,
    /// [`TrySendError::Disconnected`] if every receiver is gone; both hand
    /// the message back.
    pub fn try_send(&self, msg: T) -> Result<(), TrySendError<T>> {
        self.chan.try_send(msg, true)
    }

    /// Sends a message, blocking while the channel is full.
    ///
    /// # Errors
    ///
    /// [`SendError`] with the message if every receiver is gone.
    pub fn send(&self, msg: T) -> Result<(), SendError<T>> {
        self.chan
            .send_until(msg, None)
            .map_err(|e| SendError(e.into_inner()))
    }

    /// Sends a message, blocking while the channel is full for at most
    /// `timeout`.
    ///
    /// # Errors
    ///
    /// [`SendTimeoutError::Timeout`] or [`SendTimeoutError::Disconnected`],
    /// with the message.
    pub fn send_timeout(&self, msg: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.chan
            .send_until(msg, Instant::now().checked_add(timeout))
    }

    /// Sends a message, blocking while the channel is full until `deadline`.
    ///
    /// # Errors
    ///
    /// As [`send_timeout`](Self::send_timeout).
    pub fn send_deadline(&self, msg: T, deadline: Instant) -> Result<(), SendTimeoutError<T>> {
        self.chan.send_until(msg, Some(deadline))
    }

    size_methods!();

    /// Whether both senders belong to the same channel.
    pub fn same_channel(&self, other: &Sender<T>) -> bool {
        Arc::ptr_eq(&self.chan, &other.chan)
    }

    /// How many receivers are parked waiting for a message (for models and
    /// tests; not part of the crossbeam API).
    #[doc(hidden)]
    pub fn parked_receivers(&self) -> u32 {
        self.chan.not_empty.waiters()
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
        self.chan.try_recv(true)
    }

    /// Receives a message, blocking while the channel is empty. Messages
    /// sent before the last sender was dropped are still received.
    ///
    /// # Errors
    ///
    /// [`RecvError`] if the channel is empty and every sender is gone.
    pub fn recv(&self) -> Result<T, RecvError> {
        self.chan.recv_until(None).map_err(|_| RecvError)
    }

    /// Receives a message, blocking for at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`] or [`RecvTimeoutError::Disconnected`].
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.chan.recv_until(Instant::now().checked_add(timeout))
    }

    /// Receives a message, blocking until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// As [`recv_timeout`](Self::recv_timeout).
    pub fn recv_deadline(&self, deadline: Instant) -> Result<T, RecvTimeoutError> {
        self.chan.recv_until(Some(deadline))
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

    size_methods!();

    /// Whether both receivers belong to the same channel.
    pub fn same_channel(&self, other: &Receiver<T>) -> bool {
        Arc::ptr_eq(&self.chan, &other.chan)
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        // Relaxed: a new handle is made from a live one, so the count cannot
        // reach zero meanwhile (as in `Arc::clone`).
        self.chan.senders.fetch_add(1, Ordering::Relaxed);
        Self {
            chan: Arc::clone(&self.chan),
        }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        // Relaxed: as for `Sender::clone`.
        self.chan.receivers.fetch_add(1, Ordering::Relaxed);
        Self {
            chan: Arc::clone(&self.chan),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        // AcqRel: the last sender sees every other sender's pushes before
        // it publishes the disconnect.
        if self.chan.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.chan.disconnect();
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        // AcqRel: receivers publish nothing the last one needs, but the
        // Release half keeps their last pops before the disconnect.
        if self.chan.receivers.fetch_sub(1, Ordering::AcqRel) == 1 {
            // What is buffered stays until the channel itself goes (when
            // the last sender does), as in crossbeam's bounded channel.
            self.chan.disconnect();
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
