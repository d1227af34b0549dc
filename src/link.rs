//! One-way links between two processes over any mechanism, chosen by
//! address, carrying any message kind: the same [`LinkSender`] /
//! [`LinkReceiver`] whether the bytes go through the shared-memory ring
//! (`shm:NAME`, `file:PATH`) or a kernel fallback (`fifo:PATH`,
//! `unix:PATH`, `mq:NAME`, `tcp:HOST:PORT`, `signal:PID`, or an anonymous
//! pipe through [`LinkSender::from_frames`]).
//!
//! The receiver binds (creates the segment, FIFO, socket or queue; removes
//! it when dropped); the sender connects, waiting up to
//! [`LinkOptions::connect_timeout`] for a receiver. Message kinds are those
//! of [`crate::ipc`]: `bytemuck::Pod` types, [`Rkyv<T>`] and [`Bytes`].
//! Over the fallbacks each message is one frame: Pod messages as their
//! bytes, rkyv archives as encoded (validated by the receiver as its
//! [`Trust`] says), bytes as they are. Sends borrow (rkyv, bytes) or copy
//! (Pod) the message; errors are [`SendMsgError`] and [`RecvMsgError`] for
//! every kind and mechanism.
//!
//! Which mechanism to pick: `shm:` whenever both processes share a
//! machine (ten to a thousand times faster: no system call per message);
//! `fifo:`/`unix:` for tools that only speak file descriptors; `mq:` for
//! small messages with kernel-kept boundaries; `tcp:` for another machine;
//! `signal:` only for tiny, rare messages. `shmlane bench` measures them
//! all on the machine at hand.
//!
//! # Examples
//!
//! ```
//! use shmlane::link::{self, LinkOptions};
//! use shmlane::ipc::Rkyv;
//! use shmlane::codec::sample::Order;
//!
//! let dir = std::env::temp_dir();
//! for addr in [
//!     format!("shm:link-doc-{}", std::process::id()),
//!     format!("unix:{}/link-doc-{}.sock", dir.display(), std::process::id()),
//! ] {
//!     let opts = LinkOptions::new();
//!     // Usually two processes; one thread each here.
//!     let mut rx = link::receiver::<Rkyv<Order>>(&addr, &opts)?;
//!     let sender = std::thread::spawn(move || -> Result<(), link::LinkError> {
//!         let mut tx = link::sender::<Rkyv<Order>>(&addr, &LinkOptions::new())?;
//!         tx.send(&Order::sample(7)).unwrap();
//!         Ok(())
//!     });
//!     assert_eq!(rx.recv_ref()?.id, 7);
//!     sender.join().unwrap()?;
//!     assert!(rx.recv().unwrap_err().is_disconnected());
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::ops::Deref;
use std::time::{Duration, Instant};

use bytemuck::Pod;
use shmlane_codec::archive::{self, CopyBuf, Scratch, ALIGN};
use shmlane_codec::{EncodeError, InvalidMessage, Trust};
use shmlane_semaphore::WaitStrategy;

use crate::error::{SendError, SendTimeoutError};
use crate::ipc::{
    self, Builder, Bytes, Channel, Message, MsgRef, RecvMsgError, Rkyv, SendMsgError, SpscReceiver,
    SpscSender,
};
use crate::transport::{self, Address, FrameReceiver, FrameRecvError, FrameSendError, FrameSender};

/// Settings for both ends of a link.
#[derive(Debug, Clone)]
pub struct LinkOptions {
    capacity: usize,
    message_size: Option<usize>,
    trust: Trust,
    wait: WaitStrategy,
    connect_timeout: Duration,
    transport: transport::Options,
}

impl Default for LinkOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl LinkOptions {
    /// Defaults: 1024 messages of up to 4 KiB in a shared-memory ring
    /// (fallbacks: their own buffers, frames up to 1 MiB or the
    /// mechanism's limit), validating trust, a 5 s connect timeout.
    pub fn new() -> Self {
        Self {
            capacity: 1024,
            message_size: None,
            trust: Trust::validate(),
            wait: WaitStrategy::default(),
            connect_timeout: Duration::from_secs(5),
            transport: transport::Options::new(),
        }
    }

    /// Messages a shared-memory ring holds (receiver side; default 1024).
    pub fn capacity(mut self, messages: usize) -> Self {
        self.capacity = messages;
        self
    }

    /// The largest rkyv or byte message (receiver side; default 4 KiB in a
    /// ring, the transport's limit otherwise). Over a fallback it sets the
    /// frame limit, which both sides must agree on.
    pub fn message_size(mut self, bytes: usize) -> Self {
        self.message_size = Some(bytes);
        self.transport = self.transport.max_frame(bytes);
        self
    }

    /// How far the receiver trusts what it is sent (default: validate).
    pub fn trust(mut self, trust: Trust) -> Self {
        self.trust = trust;
        self
    }

    /// How a blocked end of a shared-memory link waits.
    pub fn wait_strategy(mut self, strategy: WaitStrategy) -> Self {
        self.wait = strategy;
        self
    }

    /// How long a sender waits for a receiver to appear (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self.transport = self.transport.connect_timeout(timeout);
        self
    }

    /// Settings of the fallback transports (applied after the above).
    pub fn transport(mut self, options: transport::Options) -> Self {
        self.transport = options;
        self
    }
}

/// Why a link could not be set up.
#[derive(Debug)]
#[non_exhaustive]
pub enum LinkError {
    /// The address does not parse.
    Address(transport::AddressError),
    /// The `shm:` or `file:` address names no valid segment.
    RingAddress(ipc::AddressError),
    /// A fallback transport could not bind or connect.
    Transport(transport::OpenError),
    /// The shared-memory segment could not be created.
    Create(ipc::CreateError),
    /// The shared-memory segment could not be opened.
    Open(ipc::OpenError),
    /// The segment refused this end (its one sender or receiver exists).
    Attach(ipc::AttachError),
    /// No receiver created the shared-memory segment in time.
    NobodyListens {
        /// The address.
        address: String,
        /// How long the sender waited.
        waited: Duration,
    },
    /// `pipe` links are made with [`transport::pipe`] and
    /// [`LinkSender::from_frames`] / [`LinkReceiver::from_frames`].
    PipeNeedsFrames,
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Address(e) => write!(f, "{e}"),
            Self::RingAddress(e) => write!(f, "{e}"),
            Self::Transport(e) => write!(f, "{e}"),
            Self::Create(e) => write!(f, "{e}"),
            Self::Open(e) => write!(f, "{e}"),
            Self::Attach(e) => write!(f, "{e}"),
            Self::NobodyListens { address, waited } => write!(
                f,
                "nobody created {address} within {waited:?}: start the receiver first, or wait longer (LinkOptions::connect_timeout)"
            ),
            Self::PipeNeedsFrames => f.write_str(
                "an anonymous pipe has no name to connect to: create it with transport::pipe() and wrap its ends with LinkSender::from_frames / LinkReceiver::from_frames",
            ),
        }
    }
}

impl std::error::Error for LinkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Address(e) => Some(e),
            Self::RingAddress(e) => Some(e),
            Self::Transport(e) => Some(e),
            Self::Create(e) => Some(e),
            Self::Open(e) => Some(e),
            Self::Attach(e) => Some(e),
            _ => None,
        }
    }
}

enum Parsed {
    Ring(String),
    Frames(Address),
}

fn parse(addr: &str) -> Result<Parsed, LinkError> {
    match Address::parse(addr).map_err(LinkError::Address)? {
        Address::Shm(_) | Address::File(_) => Ok(Parsed::Ring(addr.to_owned())),
        Address::Pipe => Err(LinkError::PipeNeedsFrames),
        other => Ok(Parsed::Frames(other)),
    }
}

/// The sending end of a link; see the [module docs](self).
pub struct LinkSender<M: Message> {
    inner: TxInner<M>,
}

enum TxInner<M: Message> {
    Ring(SpscSender<M>),
    Frames(FrameTx),
}

struct FrameTx {
    tx: FrameSender,
    /// An aligned buffer rkyv archives are encoded into (max frame long).
    enc: CopyBuf,
    scratch: Option<Scratch>,
}

impl FrameTx {
    fn send(&mut self, frame: &[u8], deadline: Option<Instant>) -> Result<(), SendMsgError> {
        Self::send_on(&mut self.tx, frame, deadline)
    }

    fn send_on(
        tx: &mut FrameSender,
        frame: &[u8],
        deadline: Option<Instant>,
    ) -> Result<(), SendMsgError> {
        tx.send(frame, deadline).map_err(|e| match e {
            FrameSendError::Timeout => SendMsgError::Timeout,
            FrameSendError::Disconnected => SendMsgError::Disconnected,
            FrameSendError::TooLarge { len, max } => {
                SendMsgError::Encode(EncodeError::TooLarge { len, max })
            }
            FrameSendError::Os(e) => SendMsgError::Io(e),
        })
    }
}

/// Connects the sending end of a link to `addr`, where a receiver is (or
/// will be, within the connect timeout) bound.
///
/// # Errors
///
/// [`LinkError`]: a bad address, nobody listening in time, the segment or
/// transport refusing (another type, another sender, permissions...).
pub fn sender<M: Message>(addr: &str, opts: &LinkOptions) -> Result<LinkSender<M>, LinkError> {
    match parse(addr)? {
        Parsed::Ring(addr) => {
            let start = Instant::now();
            let builder = Builder::new(&addr)
                .map_err(LinkError::RingAddress)?
                .wait_strategy(opts.wait)
                .open_timeout(opts.connect_timeout);
            let chan = loop {
                match builder.open::<M>() {
                    Ok(chan) => break chan,
                    Err(ipc::OpenError::NotFound { .. })
                        if start.elapsed() < opts.connect_timeout =>
                    {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(ipc::OpenError::NotFound { .. }) => {
                        return Err(LinkError::NobodyListens {
                            address: addr,
                            waited: start.elapsed(),
                        })
                    }
                    Err(e) => return Err(LinkError::Open(e)),
                }
            };
            let tx = chan.spsc_sender().map_err(LinkError::Attach)?;
            Ok(LinkSender {
                inner: TxInner::Ring(tx),
            })
        }
        Parsed::Frames(addr) => {
            let tx = FrameSender::connect(&addr, &opts.transport).map_err(LinkError::Transport)?;
            Ok(LinkSender::from_frames(tx))
        }
    }
}

/// Binds the receiving end of a link at `addr`: creates the segment, FIFO,
/// socket or queue (removed again when the receiver is dropped).
///
/// # Errors
///
/// [`LinkError`]: a bad address, the address in use, permissions, a
/// message size the mechanism cannot carry...
pub fn receiver<M: Message>(addr: &str, opts: &LinkOptions) -> Result<LinkReceiver<M>, LinkError> {
    match parse(addr)? {
        Parsed::Ring(addr) => {
            let chan = Builder::new(&addr)
                .map_err(LinkError::RingAddress)?
                .spsc()
                .capacity(opts.capacity)
                .message_size(opts.message_size.unwrap_or(4096))
                .trust(opts.trust)
                .wait_strategy(opts.wait)
                .create::<M>()
                .map_err(LinkError::Create)?;
            let rx = chan.spsc_receiver().map_err(LinkError::Attach)?;
            Ok(LinkReceiver {
                inner: RxInner::Ring { rx, _chan: chan },
                trust: opts.trust,
                address: addr,
            })
        }
        Parsed::Frames(addr) => {
            let rx = FrameReceiver::bind(&addr, &opts.transport).map_err(LinkError::Transport)?;
            Ok(LinkReceiver::from_frames(rx, opts.trust))
        }
    }
}

impl<M: Message> LinkSender<M> {
    /// A link over frames already connected (an anonymous pipe's end, say).
    pub fn from_frames(tx: FrameSender) -> Self {
        Self {
            inner: TxInner::Frames(FrameTx {
                tx,
                enc: CopyBuf::new(),
                scratch: None,
            }),
        }
    }

    /// The largest message, in encoded bytes, this link carries.
    pub fn max_message_len(&self) -> usize {
        match &self.inner {
            TxInner::Ring(tx) => tx.max_message_len(),
            TxInner::Frames(f) => f.tx.max_frame(),
        }
    }

    /// Whether messages go through a shared-memory ring.
    pub fn is_shared_memory(&self) -> bool {
        matches!(self.inner, TxInner::Ring(_))
    }
}

macro_rules! link_send_methods {
    ($msg:ty) => {
        /// Sends without blocking.
        ///
        /// # Errors
        ///
        /// [`SendMsgError::Full`], [`SendMsgError::Disconnected`],
        /// [`SendMsgError::Encode`] (too large) or [`SendMsgError::Io`].
        pub fn try_send(&mut self, msg: $msg) -> Result<(), SendMsgError> {
            self.send_until(msg, Some(Instant::now()))
                .map_err(|e| match e {
                    SendMsgError::Timeout => SendMsgError::Full,
                    e => e,
                })
        }

        /// Sends, blocking while the link is full.
        ///
        /// # Errors
        ///
        /// [`SendMsgError::Disconnected`], [`SendMsgError::Encode`] or
        /// [`SendMsgError::Io`].
        pub fn send(&mut self, msg: $msg) -> Result<(), SendMsgError> {
            self.send_until(msg, None)
        }

        /// Sends, blocking for at most `timeout`.
        ///
        /// # Errors
        ///
        /// [`SendMsgError::Timeout`] (nothing was sent), or as
        /// [`send`](Self::send).
        pub fn send_timeout(&mut self, msg: $msg, timeout: Duration) -> Result<(), SendMsgError> {
            self.send_until(msg, Instant::now().checked_add(timeout))
        }

        /// Sends, blocking until `deadline` at the latest.
        ///
        /// # Errors
        ///
        /// As [`send_timeout`](Self::send_timeout).
        pub fn send_deadline(&mut self, msg: $msg, deadline: Instant) -> Result<(), SendMsgError> {
            self.send_until(msg, Some(deadline))
        }
    };
}

fn pod_send_error<T>(e: SendTimeoutError<T>) -> SendMsgError {
    match e {
        SendTimeoutError::Timeout(_) => SendMsgError::Timeout,
        SendTimeoutError::Disconnected(_) => SendMsgError::Disconnected,
    }
}

impl<T: Pod> LinkSender<T> {
    link_send_methods!(T);

    fn send_until(&mut self, msg: T, deadline: Option<Instant>) -> Result<(), SendMsgError> {
        match &mut self.inner {
            TxInner::Ring(tx) => match deadline {
                None => tx
                    .send(msg)
                    .map_err(|SendError(_)| SendMsgError::Disconnected),
                Some(d) => tx.send_deadline(msg, d).map_err(pod_send_error),
            },
            TxInner::Frames(f) => f.send(bytemuck::bytes_of(&msg), deadline),
        }
    }
}

impl<T: archive::Message + 'static> LinkSender<Rkyv<T>> {
    link_send_methods!(&T);

    fn send_until(&mut self, msg: &T, deadline: Option<Instant>) -> Result<(), SendMsgError> {
        match &mut self.inner {
            TxInner::Ring(tx) => match deadline {
                None => tx.send(msg),
                Some(d) => tx.send_deadline(msg, d),
            },
            TxInner::Frames(f) => {
                let max = f.tx.max_frame();
                if f.enc.len() != max {
                    f.enc.resize(max, 0);
                }
                let scratch = f.scratch.get_or_insert_with(Scratch::new);
                let len = msg
                    .encode_into(&mut f.enc, scratch)
                    .map_err(SendMsgError::Encode)?;
                FrameTx::send_on(&mut f.tx, &f.enc[..len], deadline)
            }
        }
    }
}

impl LinkSender<Bytes> {
    link_send_methods!(&[u8]);

    fn send_until(&mut self, msg: &[u8], deadline: Option<Instant>) -> Result<(), SendMsgError> {
        match &mut self.inner {
            TxInner::Ring(tx) => match deadline {
                None => tx.send(msg),
                Some(d) => tx.send_deadline(msg, d),
            },
            TxInner::Frames(f) => f.send(msg, deadline),
        }
    }
}

/// The receiving end of a link; see the [module docs](self).
pub struct LinkReceiver<M: Message> {
    inner: RxInner<M>,
    trust: Trust,
    address: String,
}

enum RxInner<M: Message> {
    Ring {
        rx: SpscReceiver<M>,
        // The creator's handle: the segment's name lives as long as it.
        _chan: Channel<M>,
    },
    Frames {
        rx: FrameReceiver,
        buf: Vec<u8>,
        copy: CopyBuf,
    },
}

/// A received message, read where it lies: in the ring's slot (freed on
/// drop) or in the receiver's private frame buffer.
pub enum LinkRef<'a, M: Message> {
    /// In a shared-memory slot.
    Ring(MsgRef<'a, M>),
    /// In the receiver's own buffer.
    Local(&'a M::Target),
}

impl<M: Message> Deref for LinkRef<'_, M> {
    type Target = M::Target;

    fn deref(&self) -> &M::Target {
        match self {
            Self::Ring(r) => r,
            Self::Local(r) => r,
        }
    }
}

impl<M: Message> fmt::Debug for LinkRef<'_, M>
where
    M::Target: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

fn recv_error(e: FrameRecvError, nonblocking: bool) -> RecvMsgError {
    match e {
        FrameRecvError::Timeout if nonblocking => RecvMsgError::Empty,
        FrameRecvError::Timeout => RecvMsgError::Timeout,
        FrameRecvError::Disconnected => RecvMsgError::Disconnected,
        FrameRecvError::Os(e) => RecvMsgError::Io(e),
    }
}

/// The message in a received frame, as a link receiver reads it: moved to
/// an aligned copy if the frame buffer is not aligned for rkyv, and always
/// validated (a receiver's `unchecked` trust is not honoured for frames).
pub(crate) fn frame_message<'a, M: Message>(
    frame: &'a [u8],
    copy: &'a mut CopyBuf,
    trust: Trust,
) -> Result<&'a M::Target, InvalidMessage> {
    // rkyv reads archives only at aligned addresses; the allocator's
    // usually are, or the frame is copied.
    let bytes: &[u8] = if frame.as_ptr() as usize % ALIGN == 0 {
        frame
    } else {
        archive::copy_into(copy, frame)
    };
    // Frames come from a kernel transport, where anyone who can reach the
    // address can write: always validated.
    let trust = if trust.validates() {
        trust
    } else {
        Trust::validate()
    };
    M::view(bytes, trust)
}

impl<M: Message> LinkReceiver<M> {
    /// A link over frames already bound (an anonymous pipe's end, say).
    pub fn from_frames(rx: FrameReceiver, trust: Trust) -> Self {
        let address = rx.local_address().to_string();
        Self {
            inner: RxInner::Frames {
                rx,
                buf: Vec::new(),
                copy: CopyBuf::new(),
            },
            trust,
            address,
        }
    }

    /// The address the receiver is bound at (for `tcp:HOST:0`, with the
    /// port it got; for `signal:`, with this process's pid).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Whether messages come through a shared-memory ring.
    pub fn is_shared_memory(&self) -> bool {
        matches!(self.inner, RxInner::Ring { .. })
    }

    /// Receives without blocking, lending the message where it lies.
    ///
    /// # Errors
    ///
    /// [`RecvMsgError::Empty`], [`RecvMsgError::Disconnected`],
    /// [`RecvMsgError::Invalid`] (the message is dropped; the link goes
    /// on) or [`RecvMsgError::Io`].
    pub fn try_recv_ref(&mut self) -> Result<LinkRef<'_, M>, RecvMsgError> {
        self.ref_until(Some(Instant::now()), true)
    }

    /// Receives, blocking while nothing has come, and lends the message.
    ///
    /// # Errors
    ///
    /// As [`try_recv_ref`](Self::try_recv_ref), without `Empty`.
    pub fn recv_ref(&mut self) -> Result<LinkRef<'_, M>, RecvMsgError> {
        self.ref_until(None, false)
    }

    /// As [`recv_ref`](Self::recv_ref), for at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvMsgError::Timeout`], or as [`recv_ref`](Self::recv_ref).
    pub fn recv_ref_timeout(&mut self, timeout: Duration) -> Result<LinkRef<'_, M>, RecvMsgError> {
        self.ref_until(Instant::now().checked_add(timeout), false)
    }

    fn ref_until(
        &mut self,
        deadline: Option<Instant>,
        nonblocking: bool,
    ) -> Result<LinkRef<'_, M>, RecvMsgError> {
        let trust = self.trust;
        match &mut self.inner {
            RxInner::Ring { rx, .. } => match (nonblocking, deadline) {
                (true, _) => rx.try_recv_ref(),
                (false, None) => rx.recv_ref(),
                (false, Some(d)) => rx.recv_ref_deadline(d),
            }
            .map(LinkRef::Ring),
            RxInner::Frames { rx, buf, copy } => {
                rx.recv(buf, deadline)
                    .map_err(|e| recv_error(e, nonblocking))?;
                frame_message::<M>(buf, copy, trust)
                    .map(LinkRef::Local)
                    .map_err(RecvMsgError::Invalid)
            }
        }
    }
}

macro_rules! link_recv_methods {
    ($out:ty, $decode:expr) => {
        /// Receives without blocking, into an owned value.
        ///
        /// # Errors
        ///
        /// As [`try_recv_ref`](Self::try_recv_ref).
        pub fn try_recv(&mut self) -> Result<$out, RecvMsgError> {
            let msg = self.ref_until(Some(Instant::now()), true)?;
            $decode(&*msg)
        }

        /// Receives, blocking while nothing has come.
        ///
        /// # Errors
        ///
        /// As [`recv_ref`](Self::recv_ref).
        pub fn recv(&mut self) -> Result<$out, RecvMsgError> {
            let msg = self.ref_until(None, false)?;
            $decode(&*msg)
        }

        /// Receives, blocking for at most `timeout`.
        ///
        /// # Errors
        ///
        /// As [`recv_ref_timeout`](Self::recv_ref_timeout).
        pub fn recv_timeout(&mut self, timeout: Duration) -> Result<$out, RecvMsgError> {
            let msg = self.ref_until(Instant::now().checked_add(timeout), false)?;
            $decode(&*msg)
        }
    };
}

impl<T: Pod> LinkReceiver<T> {
    link_recv_methods!(T, |m: &T| Ok(*m));
}

impl<T: archive::Message + 'static> LinkReceiver<Rkyv<T>> {
    link_recv_methods!(T, |m: &T::Archived| T::decode(m)
        .map_err(RecvMsgError::Invalid));
}

impl LinkReceiver<Bytes> {
    link_recv_methods!(Vec<u8>, |m: &[u8]| Ok(m.to_vec()));
}

impl<M: Message> fmt::Debug for LinkSender<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkSender { .. }")
    }
}

impl<M: Message> fmt::Debug for LinkReceiver<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkReceiver")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}
