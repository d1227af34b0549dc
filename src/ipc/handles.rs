//! [`Sender`] and [`Receiver`]: one type per side for every address and
//! every message kind, each method written once.
//!
//! Underneath, a private flavor: an MPMC ring end (shared by clones), an
//! SPSC ring end (one per side across processes; its ring state behind an
//! [`Exclusive`], so clones in one process take turns), or a kernel
//! transport's frames (behind an [`Exclusive`] too).

use std::fmt;
use std::marker::PhantomData;
use std::mem::size_of;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytemuck::Pod;
use shmlane_codec::archive::Scratch;
use shmlane_codec::EncodeError;
use shmlane_ring::spsc;

use super::frames::{FramesRx, FramesTx};
use super::kinds::{Message, MsgRef, RecvMsgError, SendMsgError};
use super::port::{self, Failed, Tried};
use super::{MpmcEnd, Side};
use crate::error::{SendError, TryRecvError, TrySendError};
use shmlane_semaphore::exclusive::Exclusive;

/// An SPSC ring's producer end: the side is shared, the ring state taken
/// in turns.
pub(super) struct SpscTxEnd {
    pub(super) side: Side,
    pub(super) ring: Exclusive<SpscProducer>,
}

pub(super) struct SpscProducer {
    pub(super) ring: spsc::Producer,
    pub(super) scratch: Option<Scratch>,
}

/// An SPSC ring's consumer end.
pub(super) struct SpscRxEnd {
    pub(super) side: Side,
    pub(super) ring: Exclusive<spsc::Consumer>,
}

#[derive(Clone)]
pub(super) enum TxFlavor {
    Mpmc(Arc<MpmcEnd>),
    Spsc(Arc<SpscTxEnd>),
    Frames(Arc<FramesTx>),
}

#[derive(Clone)]
pub(super) enum RxFlavor {
    Mpmc(Arc<MpmcEnd>),
    Spsc(Arc<SpscRxEnd>),
    Frames(Arc<FramesRx>),
}

/// The sending side of a cross-process channel, whatever its address,
/// ring kind or message kind: crossbeam-channel's methods, `&self`,
/// `Clone`, `Send` and `Sync`.
///
/// Clones share one attachment. On an SPSC ring (one sender across all
/// processes) clones in this process take turns; a second process gets
/// [`AttachError::RoleTaken`](super::AttachError::RoleTaken) when it asks
/// for a sender.
pub struct Sender<M> {
    pub(super) flavor: TxFlavor,
    pub(super) _msg: PhantomData<fn(M) -> M>,
}

/// The receiving side of a cross-process channel; see [`Sender`].
pub struct Receiver<M> {
    pub(super) flavor: RxFlavor,
    pub(super) _msg: PhantomData<fn(M) -> M>,
}

impl<M> Clone for Sender<M> {
    fn clone(&self) -> Self {
        Self {
            flavor: self.flavor.clone(),
            _msg: PhantomData,
        }
    }
}

impl<M> Clone for Receiver<M> {
    fn clone(&self) -> Self {
        Self {
            flavor: self.flavor.clone(),
            _msg: PhantomData,
        }
    }
}

impl<M> fmt::Debug for Sender<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("flavor", &self.flavor.name())
            .finish_non_exhaustive()
    }
}

impl<M> fmt::Debug for Receiver<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("flavor", &self.flavor.name())
            .finish_non_exhaustive()
    }
}

impl TxFlavor {
    fn name(&self) -> &'static str {
        match self {
            Self::Mpmc(_) => "mpmc ring",
            Self::Spsc(_) => "spsc ring",
            Self::Frames(_) => "frames",
        }
    }

    fn meta(&self) -> Meta<'_> {
        match self {
            Self::Mpmc(end) => Meta::ring(&end.side),
            Self::Spsc(end) => Meta::ring(&end.side),
            Self::Frames(f) => Meta::frames(f.max_frame()),
        }
    }
}

impl RxFlavor {
    fn name(&self) -> &'static str {
        match self {
            Self::Mpmc(_) => "mpmc ring",
            Self::Spsc(_) => "spsc ring",
            Self::Frames(_) => "frames",
        }
    }

    fn side(&self) -> Option<&Side> {
        self.meta().side
    }

    fn meta(&self) -> Meta<'_> {
        match self {
            Self::Mpmc(end) => Meta::ring(&end.side),
            Self::Spsc(end) => Meta::ring(&end.side),
            Self::Frames(f) => Meta::frames(f.max_frame()),
        }
    }
}

/// What either end says about its channel, read without taking the
/// handle's lock (a monitoring thread must not take an SPSC side's bias,
/// nor panic while its owner holds a `recv_ref` guard): ring counts from
/// the segment's shared indices.
struct Meta<'a> {
    side: Option<&'a Side>,
    max_frame: usize,
}

impl<'a> Meta<'a> {
    fn ring(side: &'a Side) -> Self {
        Self {
            side: Some(side),
            max_frame: 0,
        }
    }

    fn frames(max_frame: usize) -> Self {
        Self {
            side: None,
            max_frame,
        }
    }

    fn len(&self) -> usize {
        self.side.map_or(0, |s| s.seg().buffered() as usize)
    }

    fn capacity(&self) -> Option<usize> {
        self.side.map(|s| s.seg().layout().capacity() as usize)
    }

    fn is_full(&self) -> bool {
        self.capacity().is_some_and(|c| self.len() >= c)
    }

    fn max_message_len(&self) -> usize {
        self.side.map_or(self.max_frame, |s| s.cap)
    }

    fn is_corrupted(&self) -> bool {
        self.side.is_some_and(Side::corrupted)
    }
}

fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

fn passed(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| d <= Instant::now())
}

/// How long a send or receive may wait.
#[derive(Clone, Copy)]
pub(super) enum Wait {
    /// One attempt (`try_`): probes for dead peers, never waits.
    Never,
    /// Until the deadline, or for ever.
    Until(Option<Instant>),
}

impl Wait {
    fn deadline(self) -> Option<Instant> {
        match self {
            Self::Never => Some(Instant::now()),
            Self::Until(d) => d,
        }
    }
}

fn settle(tried: Tried<EncodeError>) -> Option<Result<(), SendMsgError>> {
    match tried {
        Tried::Done => Some(Ok(())),
        Tried::Full => None,
        Tried::Gone => Some(Err(SendMsgError::Disconnected)),
        Tried::Rejected(e) => Some(Err(SendMsgError::Encode(e))),
    }
}

/// Before waiting for room: a message that can never fit must not wait.
/// Encoding into nothing measures it (the encoder counts past the end).
fn never_fits<M: Message>(
    msg: &M::Input<'_>,
    max: usize,
    scratch: &mut Option<Scratch>,
) -> Option<SendMsgError> {
    if M::fixed_len().is_some() {
        return None;
    }
    match M::encode(msg, &mut [], scratch) {
        Err(EncodeError::TooLarge { len, .. }) if len > max => {
            Some(SendMsgError::Encode(EncodeError::TooLarge { len, max }))
        }
        Err(EncodeError::Failed(e)) => Some(SendMsgError::Encode(EncodeError::Failed(e))),
        _ => None,
    }
}

impl<M: Message> Sender<M> {
    /// Sends without blocking.
    ///
    /// # Errors
    ///
    /// The kind's `TrySendError`: for Pod types crossbeam-channel's
    /// [`TrySendError`] (`Full` or `Disconnected`, with the message); for
    /// the others [`SendMsgError`] (`Full`, `Disconnected`, `Encode` for a
    /// message too large, `Io` from a kernel transport).
    pub fn try_send(&self, msg: M::Input<'_>) -> Result<(), M::TrySendError> {
        match self.put(&msg, Wait::Never) {
            Ok(()) => Ok(()),
            Err(e) => Err(M::try_send_error(msg, e)),
        }
    }

    /// Sends, blocking while the channel is full.
    ///
    /// # Errors
    ///
    /// The kind's `SendError`: crossbeam-channel's [`SendError`] with the
    /// message for Pod types, once every receiver is gone; [`SendMsgError`]
    /// for the others.
    pub fn send(&self, msg: M::Input<'_>) -> Result<(), M::SendError> {
        match self.put(&msg, Wait::Until(None)) {
            Ok(()) => Ok(()),
            Err(e) => Err(M::send_error(msg, e)),
        }
    }

    /// Sends, blocking for at most `timeout`.
    ///
    /// # Errors
    ///
    /// The kind's `SendTimeoutError`: crossbeam-channel's
    /// [`SendTimeoutError`](crate::SendTimeoutError) for Pod types,
    /// [`SendMsgError`] (`Timeout`, ...) for the others.
    pub fn send_timeout(
        &self,
        msg: M::Input<'_>,
        timeout: Duration,
    ) -> Result<(), M::SendTimeoutError> {
        self.send_until(msg, deadline_after(timeout))
    }

    /// Sends, blocking until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// As [`send_timeout`](Self::send_timeout).
    pub fn send_deadline(
        &self,
        msg: M::Input<'_>,
        deadline: Instant,
    ) -> Result<(), M::SendTimeoutError> {
        self.send_until(msg, Some(deadline))
    }

    fn send_until(
        &self,
        msg: M::Input<'_>,
        deadline: Option<Instant>,
    ) -> Result<(), M::SendTimeoutError> {
        match self.put(&msg, Wait::Until(deadline)) {
            Ok(()) => Ok(()),
            Err(e) => Err(M::send_timeout_error(msg, e)),
        }
    }

    /// The one send path: every flavor, every kind. A Pod value on an SPSC
    /// ring (the per-message hot path) is tried inline; everything else,
    /// and waiting, goes out of line.
    #[inline]
    pub(super) fn put(&self, msg: &M::Input<'_>, wait: Wait) -> Result<(), SendMsgError> {
        if M::BARE {
            if let TxFlavor::Spsc(end) = &self.flavor {
                let side = &end.side;
                let probe = matches!(wait, Wait::Never);
                let Some(mut guard) = port::lock_end(&end.ring, !probe) else {
                    return Err(SendMsgError::Full);
                };
                let ring = &mut guard.ring;
                if let Some(done) = settle(port::spsc_try_put_bare::<M>(ring, side, probe, msg)) {
                    return done;
                }
                return match wait {
                    Wait::Never => Err(SendMsgError::Full),
                    Wait::Until(deadline) => Self::wait_bare(ring, side, msg, deadline),
                };
            }
        }
        self.put_slow(msg, wait)
    }

    /// A Pod value on a full SPSC ring: wait for room.
    #[cold]
    #[inline(never)]
    fn wait_bare(
        ring: &mut spsc::Producer,
        side: &Side,
        msg: &M::Input<'_>,
        deadline: Option<Instant>,
    ) -> Result<(), SendMsgError> {
        side.wait_send(deadline, |probe| {
            if let Some(full) = port::spsc_wait_refill(ring, side, probe) {
                return full;
            }
            port::spsc_try_put_bare::<M>(ring, side, probe, msg)
        })
        .map_err(SendMsgError::from_failed)
    }

    /// Every other send: encoded kinds, MPMC rings, kernel transports.
    #[inline(never)]
    fn put_slow(&self, msg: &M::Input<'_>, wait: Wait) -> Result<(), SendMsgError> {
        let probe_first = matches!(wait, Wait::Never);
        match &self.flavor {
            TxFlavor::Spsc(end) => {
                let side = &end.side;
                let Some(mut guard) = port::lock_end(&end.ring, !probe_first) else {
                    return Err(SendMsgError::Full);
                };
                let state = &mut *guard;
                let (ring, scratch) = (&mut state.ring, &mut state.scratch);
                let tried =
                    port::spsc_try_write(ring, side, probe_first, &mut |buf: &mut [u8]| {
                        M::encode(msg, buf, scratch)
                    });
                if let Some(done) = settle(tried) {
                    return done;
                }
                if let Some(e) = never_fits::<M>(msg, side.cap, scratch) {
                    return Err(e);
                }
                let deadline = wait.deadline();
                if passed(deadline) {
                    // The first try above ignores the refill hint, so its
                    // `Full` means no slot was free (unlike `put_mpmc`, no
                    // precise look is owed).
                    return Err(SendMsgError::Timeout);
                }
                side.wait_send(deadline, |probe| {
                    if let Some(full) = port::spsc_wait_refill(ring, side, probe) {
                        return full;
                    }
                    port::spsc_try_write(ring, side, probe, &mut |buf: &mut [u8]| {
                        M::encode(msg, buf, scratch)
                    })
                })
                .map_err(SendMsgError::from_failed)
            }
            TxFlavor::Mpmc(end) => {
                // A scratch space from the end's pool, for the kinds that
                // use one (none is made or locked for Pod and bytes).
                let mut scratch = M::USES_SCRATCH.then(|| end.take_scratch());
                let sent = Self::put_mpmc(end, msg, wait, &mut scratch);
                if let Some(scratch) = scratch {
                    end.put_scratch(scratch);
                }
                sent
            }
            TxFlavor::Frames(frames) => {
                frames.send::<M>(msg, wait.deadline(), matches!(wait, Wait::Never))
            }
        }
    }

    fn put_mpmc(
        end: &MpmcEnd,
        msg: &M::Input<'_>,
        wait: Wait,
        scratch: &mut Option<Scratch>,
    ) -> Result<(), SendMsgError> {
        let probe_first = matches!(wait, Wait::Never);
        let tried = port::mpmc_try_write(end, probe_first, &mut |buf: &mut [u8]| {
            M::encode(msg, buf, scratch)
        });
        if let Some(done) = settle(tried) {
            return done;
        }
        if let Some(e) = never_fits::<M>(msg, end.side.cap, scratch) {
            return Err(e);
        }
        let deadline = wait.deadline();
        if passed(deadline) {
            if probe_first {
                return Err(SendMsgError::Timeout);
            }
            // The first look was a spinning one, which a producer that
            // found the ring full lets wait for a stretch of free slots:
            // one precise look before reporting a timeout.
            let tried = port::mpmc_try_write(end, true, &mut |buf: &mut [u8]| {
                M::encode(msg, buf, scratch)
            });
            return settle(tried).unwrap_or(Err(SendMsgError::Timeout));
        }
        end.side
            .wait_send(deadline, |probe| {
                port::mpmc_try_write(end, probe, &mut |buf: &mut [u8]| {
                    M::encode(msg, buf, scratch)
                })
            })
            .map_err(SendMsgError::from_failed)
    }

    /// Writes a message in place: `fill` gets the slot's bytes (every
    /// flavor lends `max_message_len` bytes, holding stale data) and
    /// returns how many it wrote; blocks while the channel is full.
    fn write_with<E>(
        &self,
        wait: Wait,
        fill: &mut impl FnMut(&mut [u8]) -> Result<usize, E>,
    ) -> Result<(), Failed<E>> {
        let probe_first = matches!(wait, Wait::Never);
        let once = |tried: Tried<E>| match tried {
            Tried::Done => Ok(()),
            Tried::Full => Err(Failed::Timeout),
            Tried::Gone => Err(Failed::Gone),
            Tried::Rejected(e) => Err(Failed::Rejected(e)),
        };
        match &self.flavor {
            TxFlavor::Mpmc(end) => match wait {
                Wait::Never => once(port::mpmc_try_write(end, probe_first, fill)),
                Wait::Until(d) => end
                    .side
                    .wait_send(d, |probe| port::mpmc_try_write(end, probe, fill)),
            },
            TxFlavor::Spsc(end) => {
                let side = &end.side;
                let Some(mut guard) = port::lock_end(&end.ring, !matches!(wait, Wait::Never))
                else {
                    return Err(Failed::Timeout);
                };
                let ring = &mut guard.ring;
                match wait {
                    Wait::Never => once(port::spsc_try_write(ring, side, probe_first, fill)),
                    Wait::Until(d) => {
                        // The first try ignores the refill hint, as a
                        // send's does (`put`); the looks of the wait after
                        // it follow it.
                        let mut first = true;
                        side.wait_send(d, |probe| {
                            if !std::mem::take(&mut first) {
                                if let Some(full) = port::spsc_wait_refill(ring, side, probe) {
                                    return full;
                                }
                            }
                            port::spsc_try_write(ring, side, probe, fill)
                        })
                    }
                }
            }
            TxFlavor::Frames(frames) => {
                frames.send_with(wait.deadline(), matches!(wait, Wait::Never), fill)
            }
        }
    }

    /// The largest message the channel carries, in encoded bytes.
    pub fn max_message_len(&self) -> usize {
        self.flavor.meta().max_message_len()
    }

    /// The number of messages in the channel (a snapshot; 0 over a
    /// kernel transport, which does not say).
    pub fn len(&self) -> usize {
        self.flavor.meta().len()
    }

    /// Whether the channel holds no message (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the channel is full (a snapshot; never over a kernel
    /// transport).
    pub fn is_full(&self) -> bool {
        self.flavor.meta().is_full()
    }

    /// How many messages the channel holds: `Some` for a ring, `None` over
    /// a kernel transport (the kernel decides).
    pub fn capacity(&self) -> Option<usize> {
        self.flavor.meta().capacity()
    }

    /// Whether this handle has seen the segment corrupted by a peer
    /// (after which every call reports `Disconnected`).
    pub fn is_corrupted(&self) -> bool {
        self.flavor.meta().is_corrupted()
    }

    /// Whether messages go through a shared-memory ring.
    pub fn is_shared_memory(&self) -> bool {
        self.flavor.meta().side.is_some()
    }

    /// Whether both senders share one attachment (are clones).
    pub fn same_channel(&self, other: &Self) -> bool {
        match (&self.flavor, &other.flavor) {
            (TxFlavor::Mpmc(a), TxFlavor::Mpmc(b)) => Arc::ptr_eq(a, b),
            (TxFlavor::Spsc(a), TxFlavor::Spsc(b)) => Arc::ptr_eq(a, b),
            (TxFlavor::Frames(a), TxFlavor::Frames(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl<T: Pod> Sender<T> {
    /// Sends a message written in place: `fill` gets the slot as a
    /// `&mut T` and sets it (the slot holds an older message's bytes, so
    /// set every field). Blocks while the channel is full.
    ///
    /// # Errors
    ///
    /// [`SendError`] once every receiver is gone (`fill` was not called).
    pub fn send_with(&self, fill: impl FnOnce(&mut T)) -> Result<(), SendError<()>> {
        self.write_with(Wait::Until(None), &mut fill_pod(fill))
            .map_err(|_| SendError(()))
    }

    /// As [`send_with`](Self::send_with), without blocking.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] or [`TrySendError::Disconnected`] (`fill` was
    /// not called).
    pub fn try_send_with(&self, fill: impl FnOnce(&mut T)) -> Result<(), TrySendError<()>> {
        match self.write_with(Wait::Never, &mut fill_pod(fill)) {
            Ok(()) => Ok(()),
            Err(Failed::Timeout) => Err(TrySendError::Full(())),
            Err(_) => Err(TrySendError::Disconnected(())),
        }
    }

    /// Sends as many of `msgs` as fit now and returns how many (0 when
    /// full). On an SPSC ring they are published with one store and one
    /// wakeup.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Disconnected`] holding how many were sent, once
    /// every receiver is gone.
    pub fn try_send_batch(&self, msgs: &[T]) -> Result<usize, TrySendError<usize>> {
        if let TxFlavor::Spsc(end) = &self.flavor {
            let Some(mut guard) = port::lock_end(&end.ring, false) else {
                return Ok(0);
            };
            return port::spsc_try_send_batch(&mut guard.ring, &end.side, msgs);
        }
        let mut sent = 0;
        for msg in msgs {
            match self.try_send(*msg) {
                Ok(()) => sent += 1,
                Err(TrySendError::Full(_)) => break,
                Err(TrySendError::Disconnected(_)) => return Err(TrySendError::Disconnected(sent)),
            }
        }
        Ok(sent)
    }

    /// Sends every message of `msgs`, in batches, blocking while full.
    ///
    /// # Errors
    ///
    /// [`SendError`] holding how many were sent before the receivers went.
    pub fn send_batch(&self, msgs: &[T]) -> Result<(), SendError<usize>> {
        let mut sent = 0;
        while sent < msgs.len() {
            let n = match self.try_send_batch(&msgs[sent..]) {
                Ok(0) => {
                    // Full: wait for room for one, then batch again.
                    self.send(msgs[sent]).map_err(|_| SendError(sent))?;
                    1
                }
                Ok(n) => n,
                Err(TrySendError::Disconnected(n) | TrySendError::Full(n)) => {
                    return Err(SendError(sent + n))
                }
            };
            sent += n;
        }
        Ok(())
    }
}

impl Sender<super::Bytes> {
    /// Sends a message written in place: `fill` gets the whole slot as
    /// `&mut [u8]` ([`max_message_len`](Self::max_message_len) bytes,
    /// holding stale data) and returns how many bytes it wrote. Blocks
    /// while the channel is full.
    ///
    /// # Errors
    ///
    /// [`SendMsgError::Disconnected`] (`fill` was not called), or
    /// [`SendMsgError::Encode`] if `fill` returned more than the slot holds
    /// (nothing is sent).
    pub fn send_with(&self, fill: impl FnOnce(&mut [u8]) -> usize) -> Result<(), SendMsgError> {
        self.write_with(Wait::Until(None), &mut loan_bytes(fill))
            .map_err(SendMsgError::from_failed)
    }

    /// As [`send_with`](Self::send_with), without blocking.
    ///
    /// # Errors
    ///
    /// [`SendMsgError::Full`] or [`SendMsgError::Disconnected`] (`fill`
    /// was not called), or [`SendMsgError::Encode`].
    pub fn try_send_with(&self, fill: impl FnOnce(&mut [u8]) -> usize) -> Result<(), SendMsgError> {
        match self.write_with(Wait::Never, &mut loan_bytes(fill)) {
            Ok(()) => Ok(()),
            Err(Failed::Timeout) => Err(SendMsgError::Full),
            Err(e) => Err(SendMsgError::from_failed(e)),
        }
    }
}

/// Hands a slot to `fill` as a `&mut T` (once).
fn fill_pod<T: Pod>(
    fill: impl FnOnce(&mut T),
) -> impl FnMut(&mut [u8]) -> Result<usize, std::convert::Infallible> {
    let mut fill = Some(fill);
    move |buf| {
        let slot: &mut T = bytemuck::from_bytes_mut(&mut buf[..size_of::<T>()]);
        if let Some(f) = fill.take() {
            f(slot);
        }
        Ok(size_of::<T>())
    }
}

/// Lends a slot to `fill`, which returns the length it wrote (once).
fn loan_bytes(
    fill: impl FnOnce(&mut [u8]) -> usize,
) -> impl FnMut(&mut [u8]) -> Result<usize, EncodeError> {
    let mut fill = Some(fill);
    move |buf| {
        let len = fill.take().map_or(0, |f| f(buf));
        if len > buf.len() {
            return Err(EncodeError::TooLarge {
                len,
                max: buf.len(),
            });
        }
        Ok(len)
    }
}

/// The size from which a by-value receive of a Pod type copies from the
/// lent slot (see `Receiver::take_as`): glibc's `memcpy` moves smaller
/// values with vector loops, larger ones with `rep movsb`.
const LEND_FROM: usize = 2048;

impl<M: Message> Receiver<M> {
    /// Receives without blocking.
    ///
    /// # Errors
    ///
    /// The kind's `TryRecvError`: crossbeam-channel's [`TryRecvError`]
    /// (`Empty`, or `Disconnected` once the channel is empty and every
    /// sender is gone) for Pod types; [`RecvMsgError`] (`Empty`,
    /// `Disconnected`, `Invalid` for a message that does not check, which
    /// is dropped, `Io`) for the others.
    pub fn try_recv(&self) -> Result<M::Output, M::TryRecvError> {
        self.take_as(Wait::Never, M::try_recv_error)
    }

    /// Receives, blocking while the channel is empty.
    ///
    /// # Errors
    ///
    /// The kind's `RecvError`: crossbeam-channel's
    /// [`RecvError`](crate::RecvError) for Pod types, [`RecvMsgError`] for
    /// the others.
    pub fn recv(&self) -> Result<M::Output, M::RecvError> {
        self.take_as(Wait::Until(None), M::recv_error)
    }

    /// Receives, blocking for at most `timeout`.
    ///
    /// # Errors
    ///
    /// The kind's `RecvTimeoutError`: crossbeam-channel's
    /// [`RecvTimeoutError`](crate::RecvTimeoutError) for Pod types,
    /// [`RecvMsgError`] for the others.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<M::Output, M::RecvTimeoutError> {
        self.take_as(Wait::Until(deadline_after(timeout)), M::recv_timeout_error)
    }

    /// Receives, blocking until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// As [`recv_timeout`](Self::recv_timeout).
    pub fn recv_deadline(&self, deadline: Instant) -> Result<M::Output, M::RecvTimeoutError> {
        self.take_as(Wait::Until(Some(deadline)), M::recv_timeout_error)
    }

    /// A blocking iterator that ends when the channel disconnects (or a
    /// receive fails).
    pub fn iter(&self) -> Iter<'_, M> {
        Iter { rx: self }
    }

    /// A non-blocking iterator over the messages ready now.
    pub fn try_iter(&self) -> TryIter<'_, M> {
        TryIter { rx: self }
    }

    /// Receives without blocking, lending the message where it lies.
    ///
    /// # Errors
    ///
    /// [`RecvMsgError::Empty`], [`RecvMsgError::Disconnected`],
    /// [`RecvMsgError::Invalid`] (the bad message is dropped; the channel
    /// goes on) or [`RecvMsgError::Io`].
    pub fn try_recv_ref(&self) -> Result<MsgRef<'_, M>, RecvMsgError> {
        self.lend(Wait::Never, false).map_err(|e| match e {
            RecvMsgError::Timeout => RecvMsgError::Empty,
            e => e,
        })
    }

    /// Receives, blocking while the channel is empty, and lends the
    /// message where it lies. While the guard lives, its slot stays taken
    /// (on an SPSC ring, other receives on this receiver wait, and one from
    /// the same thread panics: drop the guard first).
    ///
    /// # Errors
    ///
    /// [`RecvMsgError::Disconnected`], [`RecvMsgError::Invalid`] or
    /// [`RecvMsgError::Io`].
    pub fn recv_ref(&self) -> Result<MsgRef<'_, M>, RecvMsgError> {
        self.lend(Wait::Until(None), false)
    }

    /// As [`recv_ref`](Self::recv_ref), for at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvMsgError::Timeout`], or as [`recv_ref`](Self::recv_ref).
    pub fn recv_ref_timeout(&self, timeout: Duration) -> Result<MsgRef<'_, M>, RecvMsgError> {
        self.lend(Wait::Until(deadline_after(timeout)), false)
    }

    /// As [`recv_ref`](Self::recv_ref), until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// As [`recv_ref_timeout`](Self::recv_ref_timeout).
    pub fn recv_ref_deadline(&self, deadline: Instant) -> Result<MsgRef<'_, M>, RecvMsgError> {
        self.lend(Wait::Until(Some(deadline)), false)
    }

    /// The one lending path. `owned`: the message is about to be decoded
    /// into an owned value (see `port::lend`).
    pub(super) fn lend(&self, wait: Wait, owned: bool) -> Result<MsgRef<'_, M>, RecvMsgError> {
        match &self.flavor {
            RxFlavor::Mpmc(end) => match wait {
                Wait::Never => port::mpmc_try_ref(end, true, owned),
                Wait::Until(d) => end
                    .side
                    .wait_recv(d, |probe| port::mpmc_try_ref(end, probe, owned)),
            },
            RxFlavor::Spsc(end) => {
                let side = &end.side;
                let Some(mut ring) = port::lock_end(&end.ring, !matches!(wait, Wait::Never)) else {
                    return Err(RecvMsgError::Empty);
                };
                if let Wait::Until(d) = wait {
                    // Wait until a message is at the front, then lend it:
                    // it stays there, as this is the only consumer.
                    side.wait_recv(d, |probe| {
                        port::spsc_front(&mut ring, side, probe).map(drop)
                    })?;
                }
                port::spsc_try_ref(ring, side, true, owned)
            }
            RxFlavor::Frames(frames) => {
                frames.lend::<M>(wait.deadline(), matches!(wait, Wait::Never))
            }
        }
    }

    /// The one owned-receive path, its errors as they are.
    #[inline]
    pub(super) fn take(&self, wait: Wait) -> Result<M::Output, RecvMsgError> {
        self.take_as(wait, |e| e)
    }

    /// The one owned-receive path, its error mapped by `err`. A Pod value
    /// is copied from its slot once: a small one from an SPSC ring (the
    /// per-message hot path, tried inline) into a place the receive
    /// layers fill through a pointer, passing only a small `Result`; a
    /// large one, or one from an MPMC ring, from the lent slot straight
    /// into the `Ok` returned. Everything else, and waiting, goes out of
    /// line.
    #[inline(always)]
    fn take_as<E>(&self, wait: Wait, err: impl FnOnce(RecvMsgError) -> E) -> Result<M::Output, E> {
        match &self.flavor {
            RxFlavor::Spsc(end) if M::BARE && size_of::<M::Output>() >= LEND_FROM => {
                // A large value is copied from the slot it is lent in
                // straight into the `Ok` returned, the slot freed after.
                // Any move of it between two places on the stack is a
                // `memcpy`, and one between two places about 4 KiB apart
                // hits `rep movsb`'s slow case (a destination a few bytes
                // past the source, modulo 4 KiB): 1.2 us for 4 KiB.
                self.lend_copy(&end.side, wait, err)
            }
            // A Pod value from an MPMC ring, at any size, the same way:
            // decoding it moved it through `Result`s (one thread, send and
            // receive by value: 113 ns at 8 B, 2.1 us at 4 KiB, against 95
            // and 192 ns lent).
            RxFlavor::Mpmc(end) if M::BARE => self.lend_copy(&end.side, wait, err),
            RxFlavor::Spsc(end) if M::BARE => {
                // A small value goes from the slot to `out` in one copy;
                // the receive layers pass only a small `Result`.
                let mut out = std::mem::MaybeUninit::<M::Output>::uninit();
                match Self::take_bare(end, wait, out.as_mut_ptr()) {
                    // SAFETY: `take_bare` wrote a whole value on `Ok`.
                    Ok(()) => Ok(unsafe { out.assume_init() }),
                    Err(e) => Err(err(e)),
                }
            }
            _ => self.take_slow(wait).map_err(err),
        }
    }

    /// A Pod value copied from the slot it is lent in (`side` is the
    /// ring's) into the `Ok` returned.
    #[inline(always)]
    fn lend_copy<E>(
        &self,
        side: &Side,
        wait: Wait,
        err: impl FnOnce(RecvMsgError) -> E,
    ) -> Result<M::Output, E> {
        match self.lend(wait, true) {
            Ok(msg) => Ok(M::bare_copy(&msg)),
            // A Pod slot of the wrong size: a peer broke the protocol (as
            // in `take_slow`).
            Err(RecvMsgError::Invalid(_)) if M::INVALID_IS_FATAL => {
                side.poison();
                Err(err(RecvMsgError::Disconnected))
            }
            Err(e) => Err(err(e)),
        }
    }

    /// A Pod value from an SPSC ring into `out` (written on `Ok` only).
    #[inline]
    fn take_bare(end: &SpscRxEnd, wait: Wait, out: *mut M::Output) -> Result<(), RecvMsgError> {
        let side = &end.side;
        let probe = matches!(wait, Wait::Never);
        let Some(mut ring) = port::lock_end(&end.ring, !probe) else {
            return Err(RecvMsgError::Empty);
        };
        // SAFETY: `out` is the caller's, valid for one `M::Output`.
        match unsafe { port::spsc_try_take_bare::<M>(&mut ring, side, probe, out) } {
            Err(RecvMsgError::Empty) if !probe => {
                Self::wait_bare(&mut ring, side, wait.deadline(), out)
            }
            got => got,
        }
    }

    /// A Pod value from an empty SPSC ring: wait for one.
    #[cold]
    #[inline(never)]
    fn wait_bare(
        ring: &mut spsc::Consumer,
        side: &Side,
        deadline: Option<Instant>,
        out: *mut M::Output,
    ) -> Result<(), RecvMsgError> {
        loop {
            // Wait until a message is there without taking it: a value
            // taken inside the wait is moved out through each of its
            // layers, a copy per layer, which made a 4 KiB round trip
            // four times as long as writing and reading in place.
            side.wait_recv(deadline, |probe| {
                // A spinning check (`probe` false) looks at the head
                // slot's stamp alone: the line the message arrives on,
                // nothing else between two looks. Every other check (each
                // yield, the last before parking) is the thorough one,
                // which also sees senders gone and a broken segment.
                if !probe {
                    match ring.available() {
                        Ok(0) => return Err(RecvMsgError::Empty),
                        Ok(_) => return Ok(()),
                        Err(_) => {}
                    }
                }
                port::spsc_front(ring, side, probe).map(drop)
            })?;
            // SAFETY: `out` is the caller's, valid for one `M::Output`.
            match unsafe { port::spsc_try_take_bare::<M>(ring, side, true, out) } {
                // Only this receiver takes from the ring (it holds the
                // end), so the message found is still there; the loop is
                // for form.
                Err(RecvMsgError::Empty) => continue,
                got => return got,
            }
        }
    }

    /// Every other owned receive: decoded kinds, MPMC rings, kernel
    /// transports.
    #[inline(never)]
    fn take_slow(&self, wait: Wait) -> Result<M::Output, RecvMsgError> {
        loop {
            let got = self.take_once(wait);
            if M::INVALID_IS_FATAL {
                match (&got, self.flavor.side()) {
                    (Err(RecvMsgError::Invalid(_)), Some(side)) => {
                        // A Pod channel has no "invalid message" error: a
                        // message of the wrong length in a ring means a
                        // peer broke the protocol.
                        side.poison();
                        return Err(RecvMsgError::Disconnected);
                    }
                    // Over a kernel transport the bad frame, or the sender
                    // that broke the framing, is already dropped and the
                    // others go on; crossbeam's errors cannot say so, so a
                    // Pod receive passes over it to the next message.
                    (Err(RecvMsgError::Invalid(_)), None) => continue,
                    (Err(RecvMsgError::Io(e)), None)
                        if e.kind() == std::io::ErrorKind::InvalidData =>
                    {
                        continue
                    }
                    _ => {}
                }
            }
            return got;
        }
    }

    fn take_once(&self, wait: Wait) -> Result<M::Output, RecvMsgError> {
        match &self.flavor {
            RxFlavor::Mpmc(end) => {
                let read = |msg: MsgRef<'_, M>| M::decode(&msg).map_err(RecvMsgError::Invalid);
                match wait {
                    Wait::Never => port::mpmc_try_ref::<M>(end, true, true).and_then(read),
                    Wait::Until(d) => end.side.wait_recv(d, |probe| {
                        port::mpmc_try_ref::<M>(end, probe, true).and_then(read)
                    }),
                }
            }
            _ => self
                .lend(wait, true)
                .and_then(|msg| M::decode(&msg).map_err(RecvMsgError::Invalid)),
        }
    }

    /// The number of messages in the channel (a snapshot; 0 over a kernel
    /// transport, which does not say).
    pub fn len(&self) -> usize {
        self.flavor.meta().len()
    }

    /// Whether the channel holds no message (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the channel is full (a snapshot; never over a kernel
    /// transport).
    pub fn is_full(&self) -> bool {
        self.flavor.meta().is_full()
    }

    /// How many messages the channel holds (`None` over a kernel
    /// transport).
    pub fn capacity(&self) -> Option<usize> {
        self.flavor.meta().capacity()
    }

    /// The largest message the channel carries, in encoded bytes.
    pub fn max_message_len(&self) -> usize {
        self.flavor.meta().max_message_len()
    }

    /// Whether this handle has seen the segment corrupted by a peer.
    pub fn is_corrupted(&self) -> bool {
        self.flavor.meta().is_corrupted()
    }

    /// Whether messages come through a shared-memory ring.
    pub fn is_shared_memory(&self) -> bool {
        self.flavor.meta().side.is_some()
    }

    /// The address a kernel transport's receiver is bound at (for
    /// `tcp:HOST:0`, with the port it got; for `signal:`, with this
    /// process's pid); `None` for a ring.
    pub fn local_address(&self) -> Option<&str> {
        match &self.flavor {
            RxFlavor::Frames(f) => Some(f.address()),
            _ => None,
        }
    }

    /// Whether both receivers share one attachment (are clones).
    pub fn same_channel(&self, other: &Self) -> bool {
        match (&self.flavor, &other.flavor) {
            (RxFlavor::Mpmc(a), RxFlavor::Mpmc(b)) => Arc::ptr_eq(a, b),
            (RxFlavor::Spsc(a), RxFlavor::Spsc(b)) => Arc::ptr_eq(a, b),
            (RxFlavor::Frames(a), RxFlavor::Frames(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl<T: Pod> Receiver<T> {
    /// Appends up to `max` ready messages to `out` and returns how many
    /// (0 when empty). On an SPSC ring their slots are freed with one
    /// store and one wakeup.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Disconnected`] once the channel is empty and every
    /// sender is gone.
    pub fn try_recv_batch(&self, out: &mut Vec<T>, max: usize) -> Result<usize, TryRecvError> {
        if max == 0 {
            return Ok(0);
        }
        if let RxFlavor::Spsc(end) = &self.flavor {
            let n = {
                let Some(mut ring) = port::lock_end(&end.ring, false) else {
                    return Ok(0);
                };
                port::spsc_try_recv_batch(&mut ring, &end.side, out, max)?
            };
            if n > 0 {
                return Ok(n);
            }
        }
        let mut n = 0;
        while n < max {
            match self.try_recv() {
                Ok(v) => {
                    out.push(v);
                    n += 1;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) if n > 0 => break,
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    /// Waits for at least one message (blocking while the channel is
    /// empty), then appends up to `max` ready ones to `out`; returns how
    /// many.
    ///
    /// # Errors
    ///
    /// [`RecvError`](crate::RecvError) once the channel is empty and every
    /// sender is gone.
    pub fn recv_batch(&self, out: &mut Vec<T>, max: usize) -> Result<usize, crate::RecvError> {
        if max == 0 {
            return Ok(0);
        }
        match self.try_recv_batch(out, max) {
            Ok(0) => {}
            Ok(n) => return Ok(n),
            Err(_) => return Err(crate::RecvError),
        }
        out.push(self.recv()?);
        let more = self.try_recv_batch(out, max - 1).unwrap_or(0);
        Ok(1 + more)
    }
}

/// A blocking iterator over a [`Receiver`]'s messages; see
/// [`Receiver::iter`].
pub struct Iter<'a, M: Message> {
    rx: &'a Receiver<M>,
}

impl<M: Message> Iterator for Iter<'_, M> {
    type Item = M::Output;

    fn next(&mut self) -> Option<M::Output> {
        self.rx.recv().ok()
    }
}

/// A non-blocking iterator over a [`Receiver`]'s ready messages; see
/// [`Receiver::try_iter`].
pub struct TryIter<'a, M: Message> {
    rx: &'a Receiver<M>,
}

impl<M: Message> Iterator for TryIter<'_, M> {
    type Item = M::Output;

    fn next(&mut self) -> Option<M::Output> {
        self.rx.try_recv().ok()
    }
}

impl<M: Message> fmt::Debug for Iter<'_, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Iter { .. }")
    }
}

impl<M: Message> fmt::Debug for TryIter<'_, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TryIter { .. }")
    }
}

/// Why a batch send of rkyv or byte messages stopped: how many of the
/// batch went, and the error of the first that did not.
#[derive(Debug)]
pub struct BatchSendError {
    /// Messages sent (the first `sent` of the batch).
    pub sent: usize,
    /// Why the next one was not.
    pub error: SendMsgError,
}

impl fmt::Display for BatchSendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (after {} of the batch were sent)",
            self.error, self.sent
        )
    }
}

impl std::error::Error for BatchSendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// The batch methods of the kinds whose sends borrow (rkyv and bytes), one
/// body for both.
impl<M: Message<TrySendError = SendMsgError, RecvError = RecvMsgError>> Sender<M> {
    fn try_send_each(&self, msgs: &[M::Input<'_>]) -> Result<usize, BatchSendError>
    where
        for<'a> M::Input<'a>: Copy,
    {
        let mut sent = 0;
        for &msg in msgs {
            match self.put(&msg, Wait::Never) {
                Ok(()) => sent += 1,
                Err(SendMsgError::Full | SendMsgError::Timeout) => break,
                Err(error) => return Err(BatchSendError { sent, error }),
            }
        }
        Ok(sent)
    }

    fn send_each(&self, msgs: &[M::Input<'_>]) -> Result<(), BatchSendError>
    where
        for<'a> M::Input<'a>: Copy,
    {
        for (sent, msg) in msgs.iter().enumerate() {
            self.put(msg, Wait::Until(None))
                .map_err(|error| BatchSendError { sent, error })?;
        }
        Ok(())
    }
}

impl<M: Message<TrySendError = SendMsgError, RecvError = RecvMsgError>> Receiver<M> {
    fn try_recv_each(&self, out: &mut Vec<M::Output>, max: usize) -> Result<usize, RecvMsgError> {
        let mut n = 0;
        while n < max {
            match self.take(Wait::Never) {
                Ok(v) => {
                    out.push(v);
                    n += 1;
                }
                Err(RecvMsgError::Empty | RecvMsgError::Timeout) => break,
                Err(RecvMsgError::Disconnected) if n > 0 => break,
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    fn recv_each(&self, out: &mut Vec<M::Output>, max: usize) -> Result<usize, RecvMsgError> {
        if max == 0 {
            return Ok(0);
        }
        let n = self.try_recv_each(out, max)?;
        if n > 0 {
            return Ok(n);
        }
        out.push(self.take(Wait::Until(None))?);
        Ok(1 + self.try_recv_each(out, max - 1).unwrap_or(0))
    }
}

impl<T: shmlane_codec::archive::Message + 'static> Sender<super::Rkyv<T>> {
    /// Sends as many of `msgs` as fit now, in order; returns how many (0
    /// when full).
    ///
    /// # Errors
    ///
    /// [`BatchSendError`] with how many were sent, when one cannot be
    /// (too large, disconnected).
    pub fn try_send_batch(&self, msgs: &[&T]) -> Result<usize, BatchSendError> {
        self.try_send_each(msgs)
    }

    /// Sends every message of `msgs`, in order, blocking while full.
    ///
    /// # Errors
    ///
    /// As [`try_send_batch`](Self::try_send_batch).
    pub fn send_batch(&self, msgs: &[&T]) -> Result<(), BatchSendError> {
        self.send_each(msgs)
    }
}

impl Sender<super::Bytes> {
    /// Sends as many of `msgs` as fit now, in order; returns how many (0
    /// when full).
    ///
    /// # Errors
    ///
    /// [`BatchSendError`] with how many were sent, when one cannot be
    /// (too large, disconnected).
    pub fn try_send_batch(&self, msgs: &[&[u8]]) -> Result<usize, BatchSendError> {
        self.try_send_each(msgs)
    }

    /// Sends every message of `msgs`, in order, blocking while full.
    ///
    /// # Errors
    ///
    /// As [`try_send_batch`](Self::try_send_batch).
    pub fn send_batch(&self, msgs: &[&[u8]]) -> Result<(), BatchSendError> {
        self.send_each(msgs)
    }
}

impl<T: shmlane_codec::archive::Message + 'static> Receiver<super::Rkyv<T>> {
    /// Appends up to `max` ready messages to `out`; returns how many (0
    /// when empty).
    ///
    /// # Errors
    ///
    /// [`RecvMsgError`]: `Disconnected` once the channel is empty and every
    /// sender is gone, `Invalid` for a message that does not check (it is
    /// dropped; `out` keeps those received before it).
    pub fn try_recv_batch(&self, out: &mut Vec<T>, max: usize) -> Result<usize, RecvMsgError> {
        self.try_recv_each(out, max)
    }

    /// Waits for at least one message, then appends up to `max` ready ones
    /// to `out`; returns how many.
    ///
    /// # Errors
    ///
    /// As [`try_recv_batch`](Self::try_recv_batch).
    pub fn recv_batch(&self, out: &mut Vec<T>, max: usize) -> Result<usize, RecvMsgError> {
        self.recv_each(out, max)
    }
}

impl Receiver<super::Bytes> {
    /// Appends up to `max` ready messages to `out`; returns how many (0
    /// when empty).
    ///
    /// # Errors
    ///
    /// [`RecvMsgError`]: `Disconnected` once the channel is empty and every
    /// sender is gone.
    pub fn try_recv_batch(
        &self,
        out: &mut Vec<Vec<u8>>,
        max: usize,
    ) -> Result<usize, RecvMsgError> {
        self.try_recv_each(out, max)
    }

    /// Waits for at least one message, then appends up to `max` ready ones
    /// to `out`; returns how many.
    ///
    /// # Errors
    ///
    /// As [`try_recv_batch`](Self::try_recv_batch).
    pub fn recv_batch(&self, out: &mut Vec<Vec<u8>>, max: usize) -> Result<usize, RecvMsgError> {
        self.recv_each(out, max)
    }
}

impl<'a, M: Message> IntoIterator for &'a Receiver<M> {
    type Item = M::Output;
    type IntoIter = Iter<'a, M>;

    fn into_iter(self) -> Iter<'a, M> {
        self.iter()
    }
}

/// A cross-process receiver in a [`Select`](crate::Select): a try is one
/// non-blocking receive, whose result the token keeps for the completion;
/// a parked select sleeps on the ring's shared `not_empty` eventcount with
/// the rest (counted in this process's tally, so a crash leaves no stale
/// announcement) and looks again every 10 ms for peers that died, as a
/// blocking receive does. Kernel transports have no eventcount: they are
/// only looked at every 10 ms.
impl<M: Message> crate::select::Handle for Receiver<M> {
    fn try_select<'a>(&'a self, token: &mut crate::select::Token<'a>) -> bool {
        match self.take(Wait::Never) {
            Err(RecvMsgError::Empty) => false,
            got => {
                token.set(crate::select::Taken::Ipc(crate::select::ErasedBox::new(
                    got,
                )));
                true
            }
        }
    }

    fn is_ready(&self, _me: usize) -> bool {
        !self.is_empty()
    }

    fn eventcount(&self) -> Option<&shmlane_semaphore::EventCount> {
        self.flavor.side().map(Side::not_empty)
    }

    fn tally(&self) -> Option<&std::sync::atomic::AtomicU32> {
        self.flavor.side().map(|s| s.att.waiting(false))
    }

    fn channel(&self) -> *const () {
        match &self.flavor {
            RxFlavor::Mpmc(end) => Arc::as_ptr(end).cast(),
            RxFlavor::Spsc(end) => Arc::as_ptr(end).cast(),
            RxFlavor::Frames(end) => Arc::as_ptr(end).cast(),
        }
    }

    fn step(&self) -> Option<Duration> {
        Some(super::STEP)
    }
}

impl<M: Message> crate::select::SelectRecv for Receiver<M> {
    type Output = Result<M::Output, M::RecvError>;

    fn __handle(&self) -> &dyn crate::select::Handle {
        self
    }

    fn __finish(&self, token: &mut crate::select::Token<'_>) -> Self::Output {
        let crate::select::Taken::Ipc(got) = token.take() else {
            unreachable!("a receive token of another flavor");
        };
        // SAFETY: `try_select` above stored exactly this type.
        let got = unsafe { got.into_inner::<Result<M::Output, RecvMsgError>>() };
        got.map_err(M::recv_error)
    }
}

impl<M: Message> Sender<M> {
    /// Whether a send would not wait now: room in the ring, or the
    /// channel broken or without receivers (the send then fails at once).
    /// Kernel transports always say yes: the kernel buffers, and does not
    /// say how much room it has.
    fn ready(&self, probe: bool) -> bool {
        let meta = self.flavor.meta();
        match meta.side {
            None => true,
            Some(side) => {
                !meta.is_full() || side.corrupted() || side.peers_gone(super::Role::Receiver, probe)
            }
        }
    }
}

impl<M: Message> crate::select::Handle for Sender<M> {
    fn try_select<'a>(&'a self, token: &mut crate::select::Token<'a>) -> bool {
        // A probe, as a `try_send` makes: a select's attempts are its only
        // way to notice receivers that died.
        if self.ready(true) {
            token.set(crate::select::Taken::IpcSend);
            return true;
        }
        false
    }

    fn is_ready(&self, _me: usize) -> bool {
        self.ready(false)
    }

    fn eventcount(&self) -> Option<&shmlane_semaphore::EventCount> {
        self.flavor.meta().side.map(Side::not_full)
    }

    fn tally(&self) -> Option<&std::sync::atomic::AtomicU32> {
        self.flavor.meta().side.map(|s| s.att.waiting(true))
    }

    fn channel(&self) -> *const () {
        match &self.flavor {
            TxFlavor::Mpmc(end) => Arc::as_ptr(end).cast(),
            TxFlavor::Spsc(end) => Arc::as_ptr(end).cast(),
            TxFlavor::Frames(end) => Arc::as_ptr(end).cast(),
        }
    }

    fn step(&self) -> Option<Duration> {
        Some(super::STEP)
    }
}

impl<M: Message> crate::select::SelectSend for Sender<M> {
    fn __handle(&self) -> &dyn crate::select::Handle {
        self
    }
}

impl<'m, M: Message> crate::select::SendArm<'m> for Sender<M> {
    type Msg = M::Input<'m>;
    type Output = Result<(), M::SendError>;

    fn __finish(&self, token: &mut crate::select::Token<'_>, msg: Self::Msg) -> Self::Output {
        let crate::select::Taken::IpcSend = token.take() else {
            unreachable!("a send token of another flavor");
        };
        // Ready when chosen; a competing producer may have taken the room
        // since, and then this waits as a blocking send does (see
        // `SendArm`).
        self.send(msg)
    }
}
