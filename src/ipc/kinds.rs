//! The three message kinds and their methods on each handle.

use std::convert::Infallible;
use std::error;
use std::fmt;
use std::marker::PhantomData;
use std::mem::size_of;
use std::ops::Deref;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use bytemuck::Pod;
use shmlane_codec::archive::{self, CopyBuf};
use shmlane_codec::{kind, Codec, EncodeError, Fingerprint, InvalidMessage, Trust};
use shmlane_ring::{mpmc, spsc};

use super::port::{Failed, Tried};
use super::{Receiver, Sender, Side, SpscReceiver, SpscSender};
use crate::error::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};

/// Messages that are rkyv archives of `T`: `send(&T)` serializes into the
/// slot; `recv_ref()` reads the archived `T` in place.
///
/// `T` derives [`shmlane::Message`](macro@crate::Message) (rkyv's
/// `Archive`, `Serialize` and `Deserialize`, and a
/// [`Schema`](crate::schema::Schema) that the segment records; see
/// [`shmlane_codec::archive`] for what is supported).
pub struct Rkyv<T>(PhantomData<fn() -> T>);

/// Messages that are raw bytes: `send(&[u8])`, or a loaned slot; received
/// as a borrowed `[u8]`.
pub enum Bytes {}

impl<T: archive::Message + 'static> Codec for Rkyv<T> {
    const KIND: u32 = kind::RKYV;
    const ALIGN: usize = {
        // Slots (and private copies) are aligned to 16, rkyv's own buffer
        // alignment; an archive that needs more would sit misaligned.
        assert!(
            std::mem::align_of::<T::Archived>() <= archive::ALIGN,
            "shmlane carries rkyv archives aligned to at most 16 bytes"
        );
        archive::ALIGN
    };

    fn fingerprint() -> Fingerprint {
        <T as archive::Message>::fingerprint()
    }

    fn fixed_len() -> Option<usize> {
        None
    }
}

impl Codec for Bytes {
    const KIND: u32 = kind::BYTES;
    const ALIGN: usize = 1;

    fn fingerprint() -> Fingerprint {
        shmlane_codec::bytes_fingerprint()
    }

    fn fixed_len() -> Option<usize> {
        None
    }
}

mod sealed {
    pub trait Sealed {}
    impl<T: bytemuck::Pod> Sealed for T {}
    impl<T> Sealed for super::Rkyv<T> {}
    impl Sealed for super::Bytes {}
}

/// A kind of message a cross-process channel carries: any `bytemuck::Pod`
/// type, [`Rkyv<T>`] or [`Bytes`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a message kind a channel carries",
    note = "channels carry `bytemuck::Pod` types, `Rkyv<T>` where `T` derives \
            `shmlane::Message` (rkyv's traits and a `Schema`), or `Bytes`"
)]
pub trait Message: Codec + sealed::Sealed {
    /// What a received message reads as where it lies
    /// ([`MsgRef`] derefs to it).
    type Target: ?Sized;

    /// The name the segment header records (and errors show).
    #[doc(hidden)]
    fn display_name() -> String;

    /// The message in `bytes`, checked as far as `trust` says.
    #[doc(hidden)]
    fn view(bytes: &[u8], trust: Trust) -> Result<&Self::Target, InvalidMessage>;
}

impl<T: Pod> Message for T {
    type Target = T;

    fn display_name() -> String {
        std::any::type_name::<T>().to_owned()
    }

    fn view(bytes: &[u8], _: Trust) -> Result<&T, InvalidMessage> {
        // Every bit pattern is a valid `T`: only the length (and, for a
        // private copy, the alignment) can be wrong.
        let Some(b) = bytes.get(..size_of::<T>()) else {
            return Err(InvalidMessage::TooShort {
                len: bytes.len(),
                need: size_of::<T>(),
            });
        };
        bytemuck::try_from_bytes(b).map_err(|_| InvalidMessage::Misaligned {
            align: std::mem::align_of::<T>(),
        })
    }
}

impl<T: archive::Message + 'static> Message for Rkyv<T> {
    type Target = T::Archived;

    fn display_name() -> String {
        // The schema's name, not the path: the same type defined in two
        // programs has one name.
        format!("Rkyv<{}>", shmlane_codec::schema::type_expr::<T>())
    }

    fn view(bytes: &[u8], trust: Trust) -> Result<&T::Archived, InvalidMessage> {
        archive::view_in_place::<T>(bytes, trust)
    }
}

impl Message for Bytes {
    type Target = [u8];

    fn display_name() -> String {
        "Bytes".to_owned()
    }

    fn view(bytes: &[u8], _: Trust) -> Result<&[u8], InvalidMessage> {
        Ok(bytes)
    }
}

/// A received message, read where it lies (in the ring's slot, or in a
/// private copy under [`Trust::hostile`]). Derefs to the message; frees
/// the slot when dropped. Hold it briefly: the slot is not reused until
/// then, so a ring whose messages are all held is full.
pub struct MsgRef<'a, M: Message> {
    target: NonNull<M::Target>,
    _hold: Hold<'a>,
    _msg: PhantomData<Lent<'a, M>>,
}

impl<'a, M: Message> MsgRef<'a, M> {
    pub(super) fn new(target: NonNull<M::Target>, hold: Hold<'a>) -> Self {
        Self {
            target,
            _hold: hold,
            _msg: PhantomData,
        }
    }
}

impl<M: Message> Deref for MsgRef<'_, M> {
    type Target = M::Target;

    fn deref(&self) -> &M::Target {
        // SAFETY: `target` points into the slot or the copy that `hold`
        // keeps ours (and unchanged by us) until this guard is dropped.
        unsafe { self.target.as_ref() }
    }
}

impl<M: Message> fmt::Debug for MsgRef<'_, M>
where
    M::Target: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// A guard borrows the message for `'a` and is tied to `M`.
type Lent<'a, M> = (&'a <M as Message>::Target, fn(M) -> M);

/// What keeps a lent message's bytes in place.
pub(super) enum Hold<'a> {
    /// A claimed MPMC slot, released (and a sender woken) on drop.
    Claim(Option<mpmc::Claim<'a>>, &'a Side),
    /// The SPSC consumer's front slot, released on drop.
    Front(Option<&'a mut spsc::Consumer>, &'a Side),
    /// A private copy, returned to the side's pool on drop.
    Copy(CopyBuf, &'a Side),
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        match self {
            Self::Claim(claim, side) => {
                shmlane_shm::fault::point("recv.read");
                drop(claim.take());
                shmlane_shm::fault::point("recv.released");
                side.not_full().notify_one();
            }
            Self::Front(ring, side) => {
                shmlane_shm::fault::point("recv.read");
                if let Some(ring) = ring.take() {
                    let released = ring.release_front();
                    debug_assert!(released, "a lent front is always ready");
                }
                side.not_full().notify_one();
            }
            Self::Copy(buf, side) => side.put_copy(std::mem::take(buf)),
        }
    }
}

/// Why a send of an [`Rkyv`] or [`Bytes`] message failed. Those sends
/// borrow the message, so it is still the caller's: nothing needs handing
/// back, and the error is `'static` (it converts into `Box<dyn Error>`).
#[derive(Debug)]
#[non_exhaustive]
pub enum SendMsgError {
    /// The channel is full (`try_send` only).
    Full,
    /// The channel stayed full until the deadline (`send_timeout`,
    /// `send_deadline`).
    Timeout,
    /// Every receiver is gone.
    Disconnected,
    /// The message cannot be encoded into a slot: too large, or its
    /// `Serialize` failed. Nothing was sent.
    Encode(EncodeError),
    /// The operating system failed the send (fallback transports of
    /// [`crate::link`] only).
    Io(std::io::Error),
}

impl SendMsgError {
    /// Whether this is [`SendMsgError::Disconnected`].
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Self::Disconnected)
    }

    fn from_failed(failed: Failed<EncodeError>) -> Self {
        match failed {
            Failed::Timeout => Self::Timeout,
            Failed::Gone => Self::Disconnected,
            Failed::Rejected(e) => Self::Encode(e),
        }
    }
}

impl fmt::Display for SendMsgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full => f.write_str("sending on a full channel"),
            Self::Timeout => f.write_str("timed out waiting on send operation"),
            Self::Disconnected => f.write_str("sending on a disconnected channel"),
            Self::Encode(e) => write!(f, "{e}"),
            Self::Io(e) => write!(f, "sending failed: {e}"),
        }
    }
}

impl error::Error for SendMsgError {
    fn source(&self) -> Option<&(dyn error::Error + 'static)> {
        match self {
            Self::Encode(e) => Some(e),
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a receive of an [`Rkyv`] or [`Bytes`] message (or any `recv_ref`)
/// failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum RecvMsgError {
    /// No message is ready, but senders remain (`try_` methods only).
    Empty,
    /// No message came before the deadline (`_timeout`, `_deadline`).
    Timeout,
    /// The channel is empty and every sender is gone.
    Disconnected,
    /// The next message was not a valid message of the channel's type; it
    /// was dropped, and the channel goes on with the one after it.
    Invalid(InvalidMessage),
    /// The operating system failed the receive (fallback transports of
    /// [`crate::link`] only).
    Io(std::io::Error),
}

impl RecvMsgError {
    /// Whether this is [`RecvMsgError::Disconnected`].
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Self::Disconnected)
    }
}

impl fmt::Display for RecvMsgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("receiving on an empty channel"),
            Self::Timeout => f.write_str("timed out waiting on receive operation"),
            Self::Disconnected => f.write_str("receiving on an empty and disconnected channel"),
            Self::Invalid(e) => write!(f, "{e}"),
            Self::Io(e) => write!(f, "receiving failed: {e}"),
        }
    }
}

impl error::Error for RecvMsgError {
    fn source(&self) -> Option<&(dyn error::Error + 'static)> {
        match self {
            Self::Invalid(e) => Some(e),
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// Copies a Pod message into a slot.
fn put_pod<T: Pod>(msg: &T) -> impl FnMut(&mut [u8]) -> Result<usize, Infallible> + '_ {
    move |buf| {
        let bytes = bytemuck::bytes_of(msg);
        buf[..bytes.len()].copy_from_slice(bytes);
        Ok(bytes.len())
    }
}

/// Hands a slot to `fill` as a `&mut T` (once).
fn fill_pod<T: Pod>(
    fill: impl FnOnce(&mut T),
) -> impl FnMut(&mut [u8]) -> Result<usize, Infallible> {
    let mut fill = Some(fill);
    move |buf| {
        let slot: &mut T = bytemuck::from_bytes_mut(&mut buf[..size_of::<T>()]);
        if let Some(f) = fill.take() {
            f(slot);
        }
        Ok(size_of::<T>())
    }
}

/// Copies raw bytes into a slot (their length was checked beforehand).
fn put_bytes(msg: &[u8]) -> impl FnMut(&mut [u8]) -> Result<usize, EncodeError> + '_ {
    move |buf| match buf.get_mut(..msg.len()) {
        Some(dst) => {
            dst.copy_from_slice(msg);
            Ok(msg.len())
        }
        None => Err(EncodeError::TooLarge {
            len: msg.len(),
            max: buf.len(),
        }),
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

/// Methods of every receiving handle, for every message kind.
macro_rules! recv_ref_methods {
    ($($m:ident)?) => {
        /// Receives without blocking, lending the message where it lies.
        ///
        /// # Errors
        ///
        /// [`RecvMsgError::Empty`], [`RecvMsgError::Disconnected`], or
        /// [`RecvMsgError::Invalid`] (the bad message is dropped).
        pub fn try_recv_ref(&$($m)? self) -> Result<MsgRef<'_, M>, RecvMsgError> {
            self.try_ref(true, false)
        }

        /// Receives, blocking while the channel is empty, and lends the
        /// message where it lies.
        ///
        /// # Errors
        ///
        /// [`RecvMsgError::Disconnected`] or [`RecvMsgError::Invalid`].
        pub fn recv_ref(&$($m)? self) -> Result<MsgRef<'_, M>, RecvMsgError> {
            self.ref_until(None)
        }

        /// As [`recv_ref`](Self::recv_ref), for at most `timeout`.
        ///
        /// # Errors
        ///
        /// [`RecvMsgError::Timeout`], [`RecvMsgError::Disconnected`] or
        /// [`RecvMsgError::Invalid`].
        pub fn recv_ref_timeout(
            &$($m)? self,
            timeout: Duration,
        ) -> Result<MsgRef<'_, M>, RecvMsgError> {
            self.ref_until(deadline_after(timeout))
        }

        /// As [`recv_ref`](Self::recv_ref), until `deadline` at the latest.
        ///
        /// # Errors
        ///
        /// As [`recv_ref_timeout`](Self::recv_ref_timeout).
        pub fn recv_ref_deadline(
            &$($m)? self,
            deadline: Instant,
        ) -> Result<MsgRef<'_, M>, RecvMsgError> {
            self.ref_until(Some(deadline))
        }
    };
}

/// crossbeam-channel's methods, for Pod messages.
macro_rules! pod_methods {
    ($($m:ident)?) => {
        /// Sends without blocking.
        ///
        /// # Errors
        ///
        /// [`TrySendError::Full`] or [`TrySendError::Disconnected`], with the
        /// message.
        pub fn try_send(&$($m)? self, msg: T) -> Result<(), TrySendError<T>> {
            match self.try_put(true, &msg) {
                super::port::Tried::Done => Ok(()),
                super::port::Tried::Full => Err(TrySendError::Full(msg)),
                super::port::Tried::Gone => Err(TrySendError::Disconnected(msg)),
                super::port::Tried::Rejected(never) => match never {},
            }
        }

        /// Sends, blocking while the channel is full.
        ///
        /// # Errors
        ///
        /// [`SendError`] with the message once every receiver is gone.
        pub fn send(&$($m)? self, msg: T) -> Result<(), SendError<T>> {
            self.send_until(msg, None)
                .map_err(|e| SendError(e.into_inner()))
        }

        /// Sends, blocking for at most `timeout`.
        ///
        /// # Errors
        ///
        /// [`SendTimeoutError`] with the message.
        pub fn send_timeout(&$($m)? self, msg: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
            self.send_until(msg, deadline_after(timeout))
        }

        /// Sends, blocking until `deadline` at the latest.
        ///
        /// # Errors
        ///
        /// [`SendTimeoutError`] with the message.
        pub fn send_deadline(&$($m)? self, msg: T, deadline: Instant) -> Result<(), SendTimeoutError<T>> {
            self.send_until(msg, Some(deadline))
        }

        fn send_until(&$($m)? self, msg: T, deadline: Option<Instant>) -> Result<(), SendTimeoutError<T>> {
            match self.put_until(deadline, &msg) {
                Ok(()) => Ok(()),
                Err(Failed::Timeout) => Err(SendTimeoutError::Timeout(msg)),
                Err(Failed::Gone) => Err(SendTimeoutError::Disconnected(msg)),
                Err(Failed::Rejected(never)) => match never {},
            }
        }

        /// Sends a message written in place: `fill` gets the slot as a
        /// `&mut T` and sets it (the slot holds an older message's bytes,
        /// so set every field). Blocks while the channel is full.
        ///
        /// # Errors
        ///
        /// [`SendError`] once every receiver is gone (`fill` was not called).
        pub fn send_with(&$($m)? self, fill: impl FnOnce(&mut T)) -> Result<(), SendError<()>> {
            match self.write_until(None, &mut fill_pod(fill)) {
                Ok(()) => Ok(()),
                Err(Failed::Rejected(never)) => match never {},
                Err(_) => Err(SendError(())),
            }
        }

        /// As [`send_with`](Self::send_with), without blocking.
        ///
        /// # Errors
        ///
        /// [`TrySendError::Full`] or [`TrySendError::Disconnected`] (`fill`
        /// was not called).
        pub fn try_send_with(&$($m)? self, fill: impl FnOnce(&mut T)) -> Result<(), TrySendError<()>> {
            match self.try_write(true, &mut fill_pod(fill)) {
                super::port::Tried::Done => Ok(()),
                super::port::Tried::Full => Err(TrySendError::Full(())),
                super::port::Tried::Gone => Err(TrySendError::Disconnected(())),
                super::port::Tried::Rejected(never) => match never {},
            }
        }
    };
}

/// crossbeam-channel's receiving methods, for Pod messages.
macro_rules! pod_recv_methods {
    ($($m:ident)?) => {
        /// Receives without blocking.
        ///
        /// # Errors
        ///
        /// [`TryRecvError::Empty`], or [`TryRecvError::Disconnected`] once the
        /// channel is empty and every sender is gone.
        pub fn try_recv(&$($m)? self) -> Result<T, TryRecvError> {
            match self.try_take(true) {
                Ok(msg) => Ok(msg),
                Err(RecvMsgError::Empty) => Err(TryRecvError::Empty),
                Err(e) => Err(self.pod_fault(e)),
            }
        }

        /// Receives, blocking while the channel is empty.
        ///
        /// # Errors
        ///
        /// [`RecvError`] once the channel is empty and every sender is gone.
        pub fn recv(&$($m)? self) -> Result<T, RecvError> {
            self.recv_until(None).map_err(|_| RecvError)
        }

        /// Receives, blocking for at most `timeout`.
        ///
        /// # Errors
        ///
        /// [`RecvTimeoutError`].
        pub fn recv_timeout(&$($m)? self, timeout: Duration) -> Result<T, RecvTimeoutError> {
            self.recv_until(deadline_after(timeout))
        }

        /// Receives, blocking until `deadline` at the latest.
        ///
        /// # Errors
        ///
        /// [`RecvTimeoutError`].
        pub fn recv_deadline(&$($m)? self, deadline: Instant) -> Result<T, RecvTimeoutError> {
            self.recv_until(Some(deadline))
        }

        fn recv_until(&$($m)? self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
            match self.take_until(deadline) {
                Ok(v) => Ok(v),
                Err(RecvMsgError::Timeout) => Err(RecvTimeoutError::Timeout),
                Err(e) => {
                    self.pod_fault(e);
                    Err(RecvTimeoutError::Disconnected)
                }
            }
        }

        /// A blocking iterator that ends when the channel disconnects.
        pub fn iter(&$($m)? self) -> impl Iterator<Item = T> + '_ {
            std::iter::from_fn(move || self.recv().ok())
        }

        /// A non-blocking iterator over the messages ready now.
        pub fn try_iter(&$($m)? self) -> impl Iterator<Item = T> + '_ {
            std::iter::from_fn(move || self.try_recv().ok())
        }
    };
}

/// Sending methods for rkyv and raw-bytes messages; `$msg` is what `send`
/// borrows, and `send_msg` does the work.
macro_rules! msg_send_methods {
    ($($m:ident)?; $msg:ty) => {
        /// Sends without blocking.
        ///
        /// # Errors
        ///
        /// [`SendMsgError::Full`], [`SendMsgError::Disconnected`] or
        /// [`SendMsgError::Encode`] (too large).
        pub fn try_send(&$($m)? self, msg: $msg) -> Result<(), SendMsgError> {
            self.send_msg(msg, Some(Instant::now()))
                .map_err(|e| match e {
                    SendMsgError::Timeout => SendMsgError::Full,
                    e => e,
                })
        }

        /// Sends, blocking while the channel is full.
        ///
        /// # Errors
        ///
        /// [`SendMsgError::Disconnected`] or [`SendMsgError::Encode`].
        pub fn send(&$($m)? self, msg: $msg) -> Result<(), SendMsgError> {
            self.send_msg(msg, None)
        }

        /// Sends, blocking for at most `timeout`.
        ///
        /// # Errors
        ///
        /// [`SendMsgError::Timeout`], [`SendMsgError::Disconnected`] or
        /// [`SendMsgError::Encode`].
        pub fn send_timeout(&$($m)? self, msg: $msg, timeout: Duration) -> Result<(), SendMsgError> {
            self.send_msg(msg, deadline_after(timeout))
        }

        /// Sends, blocking until `deadline` at the latest.
        ///
        /// # Errors
        ///
        /// As [`send_timeout`](Self::send_timeout).
        pub fn send_deadline(&$($m)? self, msg: $msg, deadline: Instant) -> Result<(), SendMsgError> {
            self.send_msg(msg, Some(deadline))
        }
    };
}

/// Owned receives for rkyv and raw-bytes messages.
macro_rules! msg_recv_methods {
    ($($m:ident)?; $out:ty; $decode:expr) => {
        /// Receives without blocking, into an owned value.
        ///
        /// # Errors
        ///
        /// [`RecvMsgError::Empty`], [`RecvMsgError::Disconnected`] or
        /// [`RecvMsgError::Invalid`].
        pub fn try_recv(&$($m)? self) -> Result<$out, RecvMsgError> {
            let msg = self.try_ref(true, true)?;
            $decode(&*msg).map_err(RecvMsgError::Invalid)
        }

        /// Receives, blocking while the channel is empty.
        ///
        /// # Errors
        ///
        /// [`RecvMsgError::Disconnected`] or [`RecvMsgError::Invalid`].
        pub fn recv(&$($m)? self) -> Result<$out, RecvMsgError> {
            self.read_until(None, $decode)
        }

        /// Receives, blocking for at most `timeout`.
        ///
        /// # Errors
        ///
        /// [`RecvMsgError::Timeout`], [`RecvMsgError::Disconnected`] or
        /// [`RecvMsgError::Invalid`].
        pub fn recv_timeout(&$($m)? self, timeout: Duration) -> Result<$out, RecvMsgError> {
            self.read_until(deadline_after(timeout), $decode)
        }

        /// Receives, blocking until `deadline` at the latest.
        ///
        /// # Errors
        ///
        /// As [`recv_timeout`](Self::recv_timeout).
        pub fn recv_deadline(&$($m)? self, deadline: Instant) -> Result<$out, RecvMsgError> {
            self.read_until(Some(deadline), $decode)
        }
    };
}

fn decode_rkyv<T: archive::Message>(archived: &T::Archived) -> Result<T, InvalidMessage> {
    T::decode(archived)
}

fn decode_bytes(bytes: &[u8]) -> Result<Vec<u8>, InvalidMessage> {
    Ok(bytes.to_vec())
}

/// The slot-loan method for raw bytes.
macro_rules! bytes_loan_methods {
    ($($m:ident)?) => {
        /// Sends a message written in place: `fill` gets the whole slot as
        /// `&mut [u8]` ([`max_message_len`](Self::max_message_len) bytes,
        /// holding stale data) and returns how many bytes it wrote. Blocks
        /// while the channel is full.
        ///
        /// # Errors
        ///
        /// [`SendMsgError::Disconnected`] (`fill` was not called), or
        /// [`SendMsgError::Encode`] if `fill` returned more than the slot
        /// holds (nothing is sent).
        pub fn send_with(&$($m)? self, fill: impl FnOnce(&mut [u8]) -> usize) -> Result<(), SendMsgError> {
            self.write_until(None, &mut loan_bytes(fill))
                .map_err(SendMsgError::from_failed)
        }

        /// As [`send_with`](Self::send_with), without blocking.
        ///
        /// # Errors
        ///
        /// [`SendMsgError::Full`] or [`SendMsgError::Disconnected`] (`fill`
        /// was not called), or [`SendMsgError::Encode`].
        pub fn try_send_with(&$($m)? self, fill: impl FnOnce(&mut [u8]) -> usize) -> Result<(), SendMsgError> {
            match self.try_write(true, &mut loan_bytes(fill)) {
                super::port::Tried::Done => Ok(()),
                super::port::Tried::Full => Err(SendMsgError::Full),
                super::port::Tried::Gone => Err(SendMsgError::Disconnected),
                super::port::Tried::Rejected(e) => Err(SendMsgError::Encode(e)),
            }
        }
    };
}

/// The first attempt of a send: `Ok(None)` when the channel was full (the
/// caller then waits, unless its deadline has passed: a `try_send` makes
/// one attempt).
fn first_attempt(tried: Tried<EncodeError>) -> Result<Option<()>, SendMsgError> {
    match tried {
        Tried::Done => Ok(Some(())),
        Tried::Full => Ok(None),
        Tried::Gone => Err(SendMsgError::Disconnected),
        Tried::Rejected(e) => Err(SendMsgError::Encode(e)),
    }
}

fn passed(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| d <= Instant::now())
}

macro_rules! rkyv_send_msg {
    ($($m:ident)?) => {
        fn send_msg(&$($m)? self, msg: &T, deadline: Option<Instant>) -> Result<(), SendMsgError> {
            let mut scratch = self.take_scratch();
            let sent = self.send_encoded(msg, deadline, &mut scratch);
            self.put_scratch(scratch);
            sent
        }

        fn send_encoded(
            &$($m)? self,
            msg: &T,
            deadline: Option<Instant>,
            scratch: &mut archive::Scratch,
        ) -> Result<(), SendMsgError> {
            let tried = self.try_write(false, &mut |buf: &mut [u8]| msg.encode_into(buf, scratch));
            if first_attempt(tried)?.is_some() {
                return Ok(());
            }
            // Full. A message that can never fit must not wait for room:
            // measure it (the encoder only counts past the buffer's end).
            let max = self.max_message_len();
            match msg.encode_into(&mut [], scratch) {
                Err(EncodeError::TooLarge { len, .. }) if len > max => {
                    return Err(SendMsgError::Encode(EncodeError::TooLarge { len, max }))
                }
                Err(EncodeError::Failed(e)) => return Err(SendMsgError::Encode(EncodeError::Failed(e))),
                _ => {}
            }
            if passed(deadline) {
                return Err(SendMsgError::Timeout);
            }
            self.write_until(deadline, &mut |buf: &mut [u8]| msg.encode_into(buf, scratch))
                .map_err(SendMsgError::from_failed)
        }
    };
}

macro_rules! bytes_send_msg {
    ($($m:ident)?) => {
        fn send_msg(&$($m)? self, msg: &[u8], deadline: Option<Instant>) -> Result<(), SendMsgError> {
            // Checked before a slot is taken, so that nothing is published.
            let max = self.max_message_len();
            if msg.len() > max {
                return Err(SendMsgError::Encode(EncodeError::TooLarge { len: msg.len(), max }));
            }
            if first_attempt(self.try_write(false, &mut put_bytes(msg)))?.is_some() {
                return Ok(());
            }
            if passed(deadline) {
                return Err(SendMsgError::Timeout);
            }
            self.write_until(deadline, &mut put_bytes(msg))
                .map_err(SendMsgError::from_failed)
        }
    };
}

impl<T: Pod> Sender<T> {
    pod_methods!();

    fn try_put(&self, probe: bool, msg: &T) -> Tried<Infallible> {
        self.try_write(probe, &mut put_pod(msg))
    }

    fn put_until(&self, deadline: Option<Instant>, msg: &T) -> Result<(), Failed<Infallible>> {
        self.write_until(deadline, &mut put_pod(msg))
    }
}

impl<T: Pod> SpscSender<T> {
    pod_methods!(mut);

    fn try_put(&mut self, probe: bool, msg: &T) -> Tried<Infallible> {
        super::port::spsc_try_put_bare(&mut self.ring, &self.side, probe, msg)
    }

    fn put_until(&mut self, deadline: Option<Instant>, msg: &T) -> Result<(), Failed<Infallible>> {
        let (ring, side) = (&mut self.ring, &self.side);
        side.wait_send(deadline, |probe| {
            super::port::spsc_try_put_bare(ring, side, probe, msg)
        })
    }
}

impl<T: Pod> Receiver<T> {
    pod_recv_methods!();

    fn try_take(&self, probe: bool) -> Result<T, RecvMsgError> {
        self.try_ref(probe, true).map(|msg| *msg)
    }

    fn take_until(&self, deadline: Option<Instant>) -> Result<T, RecvMsgError> {
        self.read_until(deadline, |msg: &T| Ok(*msg))
    }
}

impl<T: Pod> SpscReceiver<T> {
    pod_recv_methods!(mut);

    fn try_take(&mut self, probe: bool) -> Result<T, RecvMsgError> {
        super::port::spsc_try_take_bare(&mut self.ring, &self.side, probe)
    }

    fn take_until(&mut self, deadline: Option<Instant>) -> Result<T, RecvMsgError> {
        let (ring, side) = (&mut self.ring, &self.side);
        side.wait_recv(deadline, |probe| {
            super::port::spsc_try_take_bare(ring, side, probe)
        })
    }
}

impl<T: archive::Message + 'static> Sender<Rkyv<T>> {
    msg_send_methods!(; &T);
    rkyv_send_msg!();
}

impl<T: archive::Message + 'static> SpscSender<Rkyv<T>> {
    msg_send_methods!(mut; &T);
    rkyv_send_msg!(mut);
}

impl<T: archive::Message + 'static> Receiver<Rkyv<T>> {
    msg_recv_methods!(; T; decode_rkyv::<T>);
}

impl<T: archive::Message + 'static> SpscReceiver<Rkyv<T>> {
    msg_recv_methods!(mut; T; decode_rkyv::<T>);
}

impl Sender<Bytes> {
    msg_send_methods!(; &[u8]);
    bytes_send_msg!();
    bytes_loan_methods!();
}

impl SpscSender<Bytes> {
    msg_send_methods!(mut; &[u8]);
    bytes_send_msg!(mut);
    bytes_loan_methods!(mut);
}

impl Receiver<Bytes> {
    msg_recv_methods!(; Vec<u8>; decode_bytes);
}

impl SpscReceiver<Bytes> {
    msg_recv_methods!(mut; Vec<u8>; decode_bytes);
}

impl<M: Message> Receiver<M> {
    recv_ref_methods!();
}

impl<M: Message> SpscReceiver<M> {
    recv_ref_methods!(mut);
}
