//! The three message kinds and their methods on each handle.

use std::error;
use std::fmt;
use std::marker::PhantomData;
use std::mem::size_of;
use std::ops::Deref;
use std::ptr::NonNull;

use bytemuck::Pod;
use shmlane_codec::archive::{self, CopyBuf, Scratch};
use shmlane_codec::{kind, Codec, EncodeError, Fingerprint, InvalidMessage, Trust};
use shmlane_ring::{mpmc, spsc};

use super::frames::FrameRx;
use super::port::Failed;
use super::Side;
use crate::error::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};
use shmlane_semaphore::exclusive::Guard;

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
///
/// The trait carries what differs between the kinds, so that every method
/// of [`Sender`](super::Sender) and [`Receiver`](super::Receiver) is
/// written once and code generic over the kind compiles:
///
/// | kind | `send` takes | `recv` returns | errors |
/// |---|---|---|---|
/// | `T: Pod` | `T` | `T` | crossbeam-channel's ([`SendError<T>`], [`TryRecvError`]...) |
/// | [`Rkyv<T>`] | `&T` | `T` | [`SendMsgError`], [`RecvMsgError`] |
/// | [`Bytes`] | `&[u8]` | `Vec<u8>` | [`SendMsgError`], [`RecvMsgError`] |
///
/// `recv_ref` lends [`Message::Target`] (`T`, `T::Archived`, `[u8]`) for
/// every kind, with [`RecvMsgError`].
///
/// ```
/// use shmlane::ipc::{Builder, Bytes, Message, Receiver, Sender};
///
/// // Generic over the message kind: one function for every channel.
/// fn send_all<'a, M: Message>(
///     tx: &Sender<M>,
///     msgs: impl IntoIterator<Item = M::Input<'a>>,
/// ) -> usize {
///     let mut sent = 0;
///     for msg in msgs {
///         if tx.send(msg).is_err() {
///             break;
///         }
///         sent += 1;
///     }
///     sent
/// }
///
/// fn drain<M: Message>(rx: &Receiver<M>) -> Vec<M::Output> {
///     rx.try_iter().collect()
/// }
///
/// let pid = std::process::id();
/// let pods = Builder::new(&format!("shm:doc-generic-pod-{pid}"))?.create::<u64>()?;
/// let (tx, rx) = (pods.sender()?, pods.receiver()?);
/// assert_eq!(send_all(&tx, [1, 2, 3]), 3);
/// assert_eq!(drain(&rx), [1, 2, 3]);
///
/// let bytes = Builder::new(&format!("shm:doc-generic-bytes-{pid}"))?.create::<Bytes>()?;
/// let (tx, rx) = (bytes.sender()?, bytes.receiver()?);
/// assert_eq!(send_all(&tx, [&b"ab"[..], b"c"]), 2);
/// assert_eq!(drain(&rx), [b"ab".to_vec(), b"c".to_vec()]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a message kind a channel carries",
    note = "channels carry `bytemuck::Pod` types, `Rkyv<T>` where `T` derives \
            `shmlane::Message` (rkyv's traits and a `Schema`), or `Bytes`"
)]
pub trait Message: Codec + sealed::Sealed {
    /// What a received message reads as where it lies
    /// ([`MsgRef`] derefs to it).
    type Target: ?Sized;
    /// What `send` takes: the value for Pod types, a reference otherwise.
    type Input<'a>;
    /// What `recv` returns.
    type Output;
    /// The error of `try_send`.
    type TrySendError: fmt::Debug;
    /// The error of `send`.
    type SendError: fmt::Debug;
    /// The error of `send_timeout` and `send_deadline`.
    type SendTimeoutError: fmt::Debug;
    /// The error of `try_recv`.
    type TryRecvError: fmt::Debug;
    /// The error of `recv`.
    type RecvError: fmt::Debug;
    /// The error of `recv_timeout` and `recv_deadline`.
    type RecvTimeoutError: fmt::Debug;

    /// The name the segment header records (and errors show).
    #[doc(hidden)]
    fn display_name() -> String;

    /// The message in `bytes`, checked as far as `trust` says.
    #[doc(hidden)]
    fn view(bytes: &[u8], trust: Trust) -> Result<&Self::Target, InvalidMessage>;

    /// Writes `msg` into `buf` and returns its length. `scratch` is made
    /// on first use by the kinds that need one (rkyv), and kept by the
    /// caller for the next message.
    #[doc(hidden)]
    fn encode(
        msg: &Self::Input<'_>,
        buf: &mut [u8],
        scratch: &mut Option<Scratch>,
    ) -> Result<usize, EncodeError>;

    /// Whether [`encode`](Self::encode) uses its scratch space (so a
    /// sender should keep one at hand).
    #[doc(hidden)]
    const USES_SCRATCH: bool = false;

    /// The message's encoded bytes when it needs no encoding (Pod values
    /// and raw bytes), so a kernel transport can send them as they are.
    #[doc(hidden)]
    fn as_bytes<'m>(_msg: &'m Self::Input<'_>) -> Option<&'m [u8]> {
        None
    }

    /// An owned copy of a received message.
    #[doc(hidden)]
    fn decode(target: &Self::Target) -> Result<Self::Output, InvalidMessage>;

    /// Whether SPSC slots hold the bare value (no length word): then
    /// [`write_bare`](Self::write_bare) and [`read_bare`](Self::read_bare)
    /// move it.
    #[doc(hidden)]
    const BARE: bool = false;

    /// Writes `msg` as a bare value.
    ///
    /// # Safety
    ///
    /// - `BARE` is true and `payload` is a slot this side owns, made for
    ///   this kind.
    #[doc(hidden)]
    unsafe fn write_bare(_payload: *mut u8, _msg: &Self::Input<'_>) {
        unreachable!("not a bare kind")
    }

    /// A bare kind's value, copied out of the slot it is lent in: as
    /// [`decode`](Self::decode) without the `Result`, through which a large
    /// value would be moved once more.
    #[doc(hidden)]
    fn bare_copy(_target: &Self::Target) -> Self::Output {
        unreachable!("not a bare kind")
    }

    /// Reads a bare value into `out`.
    ///
    /// # Safety
    ///
    /// - `BARE` is true and `payload` is a published slot this side holds,
    ///   made for this kind.
    /// - `out` is valid for a write of one `Output`.
    #[doc(hidden)]
    unsafe fn read_bare(_payload: *const u8, _out: *mut Self::Output) {
        unreachable!("not a bare kind")
    }

    /// Whether the kind's errors cannot report a bad message (Pod:
    /// crossbeam's errors). Then a message of the wrong length in a ring
    /// means a peer broke the protocol, so the channel stops; over a
    /// kernel transport, where the bad frame (or the sender that broke the
    /// framing) is dropped alone, the receive passes over it.
    #[doc(hidden)]
    const INVALID_IS_FATAL: bool = false;

    /// Maps a failed `try_send`.
    #[doc(hidden)]
    fn try_send_error(msg: Self::Input<'_>, e: SendMsgError) -> Self::TrySendError;
    /// Maps a failed `send`.
    #[doc(hidden)]
    fn send_error(msg: Self::Input<'_>, e: SendMsgError) -> Self::SendError;
    /// Maps a failed `send_timeout`.
    #[doc(hidden)]
    fn send_timeout_error(msg: Self::Input<'_>, e: SendMsgError) -> Self::SendTimeoutError;
    /// Maps a failed `try_recv`.
    #[doc(hidden)]
    fn try_recv_error(e: RecvMsgError) -> Self::TryRecvError;
    /// Maps a failed `recv`.
    #[doc(hidden)]
    fn recv_error(e: RecvMsgError) -> Self::RecvError;
    /// Maps a failed `recv_timeout`.
    #[doc(hidden)]
    fn recv_timeout_error(e: RecvMsgError) -> Self::RecvTimeoutError;
}

impl<T: Pod> Message for T {
    type Target = T;
    type Input<'a> = T;
    type Output = T;
    type TrySendError = TrySendError<T>;
    type SendError = SendError<T>;
    type SendTimeoutError = SendTimeoutError<T>;
    type TryRecvError = TryRecvError;
    type RecvError = RecvError;
    type RecvTimeoutError = RecvTimeoutError;

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

    #[inline]
    fn encode(msg: &T, buf: &mut [u8], _: &mut Option<Scratch>) -> Result<usize, EncodeError> {
        let bytes = bytemuck::bytes_of(msg);
        match buf.get_mut(..bytes.len()) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                Ok(bytes.len())
            }
            None => Err(EncodeError::TooLarge {
                len: bytes.len(),
                max: buf.len(),
            }),
        }
    }

    fn as_bytes(msg: &T) -> Option<&[u8]> {
        Some(bytemuck::bytes_of(msg))
    }

    #[inline]
    fn decode(target: &T) -> Result<T, InvalidMessage> {
        Ok(*target)
    }

    const BARE: bool = true;

    #[inline]
    unsafe fn write_bare(payload: *mut u8, msg: &T) {
        // SAFETY: per the contract, an SPSC slot of a Pod channel: sized and
        // aligned for a bare `T` (checked at open), held by this side until
        // the ring publishes it with a Release store, which keeps this
        // write before it. A plain copy, not a volatile one: a volatile
        // write of a large `T` compiled to one 8-byte move through the
        // stack per word (4 KiB round trips took 14 us against 0.9 us for
        // the same bytes copied between the cores).
        unsafe { payload.cast::<T>().write(*msg) }
    }

    #[inline(always)]
    fn bare_copy(target: &T) -> T {
        *target
    }

    #[inline]
    unsafe fn read_bare(payload: *const u8, out: *mut T) {
        // SAFETY: per the contract; every bit pattern is a valid `T: Pod`.
        // The slot is this side's until the ring frees it with a Release
        // store, so the copy is made before the peer may write the slot
        // again (a peer that writes it anyway breaks the protocol, and can
        // only change which bits arrive). Plain, as in `write_bare`; `out`
        // is the caller's, not the slot's, so the two do not overlap.
        unsafe { out.copy_from_nonoverlapping(payload.cast::<T>(), 1) }
    }

    const INVALID_IS_FATAL: bool = true;

    fn try_send_error(msg: T, e: SendMsgError) -> TrySendError<T> {
        match e {
            SendMsgError::Full | SendMsgError::Timeout => TrySendError::Full(msg),
            _ => TrySendError::Disconnected(msg),
        }
    }

    fn send_error(msg: T, _: SendMsgError) -> SendError<T> {
        SendError(msg)
    }

    fn send_timeout_error(msg: T, e: SendMsgError) -> SendTimeoutError<T> {
        match e {
            SendMsgError::Full | SendMsgError::Timeout => SendTimeoutError::Timeout(msg),
            _ => SendTimeoutError::Disconnected(msg),
        }
    }

    fn try_recv_error(e: RecvMsgError) -> TryRecvError {
        match e {
            RecvMsgError::Empty | RecvMsgError::Timeout => TryRecvError::Empty,
            _ => TryRecvError::Disconnected,
        }
    }

    fn recv_error(_: RecvMsgError) -> RecvError {
        RecvError
    }

    fn recv_timeout_error(e: RecvMsgError) -> RecvTimeoutError {
        match e {
            RecvMsgError::Empty | RecvMsgError::Timeout => RecvTimeoutError::Timeout,
            _ => RecvTimeoutError::Disconnected,
        }
    }
}

/// The error mappings of the kinds whose sends borrow: one vocabulary.
macro_rules! msg_errors {
    () => {
        type TrySendError = SendMsgError;
        type SendError = SendMsgError;
        type SendTimeoutError = SendMsgError;
        type TryRecvError = RecvMsgError;
        type RecvError = RecvMsgError;
        type RecvTimeoutError = RecvMsgError;

        fn try_send_error(_: Self::Input<'_>, e: SendMsgError) -> SendMsgError {
            match e {
                SendMsgError::Timeout => SendMsgError::Full,
                e => e,
            }
        }

        fn send_error(_: Self::Input<'_>, e: SendMsgError) -> SendMsgError {
            e
        }

        fn send_timeout_error(_: Self::Input<'_>, e: SendMsgError) -> SendMsgError {
            e
        }

        fn try_recv_error(e: RecvMsgError) -> RecvMsgError {
            match e {
                RecvMsgError::Timeout => RecvMsgError::Empty,
                e => e,
            }
        }

        fn recv_error(e: RecvMsgError) -> RecvMsgError {
            e
        }

        fn recv_timeout_error(e: RecvMsgError) -> RecvMsgError {
            e
        }
    };
}

impl<T: archive::Message + 'static> Message for Rkyv<T> {
    type Target = T::Archived;
    type Input<'a> = &'a T;
    type Output = T;

    fn display_name() -> String {
        // The schema's name, not the path: the same type defined in two
        // programs has one name.
        format!("Rkyv<{}>", shmlane_codec::schema::type_expr::<T>())
    }

    fn view(bytes: &[u8], trust: Trust) -> Result<&T::Archived, InvalidMessage> {
        archive::view_in_place::<T>(bytes, trust)
    }

    fn encode(
        msg: &&T,
        buf: &mut [u8],
        scratch: &mut Option<Scratch>,
    ) -> Result<usize, EncodeError> {
        msg.encode_into(buf, scratch.get_or_insert_with(Scratch::new))
    }

    const USES_SCRATCH: bool = true;

    fn decode(target: &T::Archived) -> Result<T, InvalidMessage> {
        T::decode(target)
    }

    msg_errors!();
}

impl Message for Bytes {
    type Target = [u8];
    type Input<'a> = &'a [u8];
    type Output = Vec<u8>;

    fn display_name() -> String {
        "Bytes".to_owned()
    }

    fn view(bytes: &[u8], _: Trust) -> Result<&[u8], InvalidMessage> {
        Ok(bytes)
    }

    fn encode(msg: &&[u8], buf: &mut [u8], _: &mut Option<Scratch>) -> Result<usize, EncodeError> {
        match buf.get_mut(..msg.len()) {
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

    fn as_bytes<'m>(msg: &'m &[u8]) -> Option<&'m [u8]> {
        Some(msg)
    }

    fn decode(target: &[u8]) -> Result<Vec<u8>, InvalidMessage> {
        Ok(target.to_vec())
    }

    msg_errors!();
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
    /// The SPSC consumer's front slot, released on drop (with the lock on
    /// the consumer, held until then).
    Front(Option<Guard<'a, spsc::Consumer>>, &'a Side),
    /// A private copy, returned to the side's pool on drop.
    Copy(CopyBuf, &'a Side),
    /// A frame in a kernel transport receiver's buffer, with the lock on
    /// that receiver (held until the guard drops).
    #[allow(dead_code)] // holds the lock; read through the guard's pointer
    Frame(Guard<'a, FrameRx>),
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
                if let Some(mut ring) = ring.take() {
                    let released = ring.release_front();
                    debug_assert!(released, "a lent front is always ready");
                }
                side.not_full().notify_one();
            }
            Self::Copy(buf, side) => side.put_copy(std::mem::take(buf)),
            Self::Frame(_) => {}
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
    /// kernel transports only).
    Io(std::io::Error),
}

impl SendMsgError {
    /// Whether this is [`SendMsgError::Disconnected`].
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Self::Disconnected)
    }

    pub(super) fn from_failed(failed: Failed<EncodeError>) -> Self {
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
    /// kernel transports only).
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
