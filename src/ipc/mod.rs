//! Channels between processes, over shared-memory segments.
//!
//! One process creates a channel at an address (`shm:NAME` or
//! `file:PATH`), another opens it; each takes a sender or a receiver. The
//! handles have crossbeam-channel's methods. A channel carries one kind of
//! message, chosen by its type parameter `M` (a [`Message`]):
//!
//! - a `bytemuck::Pod` type `T` (`Channel<T>`): copied in and out with
//!   crossbeam-channel's error types, or written in place
//!   ([`Sender::send_with`]) and read in place ([`Receiver::recv_ref`]);
//! - [`Rkyv<T>`] for any `T` that derives
//!   [`shmlane::Message`](macro@crate::Message): `send(&T)` serializes straight
//!   into the slot; `recv()` returns an owned `T`; `recv_ref()` returns a
//!   guard that derefs to the archived value where it lies, and frees the
//!   slot when dropped. How far received archives are trusted is the
//!   receiver's [`Trust`] (set with [`Builder::trust`]);
//! - [`Bytes`]: `send(&[u8])`, or loan a slot as `&mut [u8]`
//!   ([`Sender::send_with`]) and commit a length; receive a borrowed
//!   `&[u8]`.
//!
//! Rkyv and byte messages have a length, bounded by the message size fixed
//! at creation ([`Builder::message_size`]); a message that does not fit is
//! refused with [`SendMsgError::Encode`] (sends borrow the message, so the
//! caller still has it), never truncated. Bytes that are
//! not a valid message give [`RecvMsgError::Invalid`], and the channel keeps
//! working.
//!
//! One [`Sender`] and one [`Receiver`] serve every ring kind, address and
//! message kind, with crossbeam-channel's `&self` methods; both are
//! `Clone`, `Send` and `Sync`. Each method is written once, with what
//! differs between the message kinds carried by [`Message`] (what `send`
//! takes, what `recv` returns, the error types), so code generic over the
//! kind compiles.
//!
//! - MPMC rings (the default) take any number of processes on each side.
//! - SPSC rings ([`Builder::spsc`]) take one sender and one receiver
//!   across all processes (another process asking for a second gets
//!   [`AttachError::RoleTaken`]); clones in one process take turns. The
//!   fastest path, with batches.
//! - Any other address (`fifo:`, `unix:`, `tcp:`, `mq:`, `signal:`) carries
//!   each message as one frame of a kernel transport
//!   ([`Builder::sender`] connects, [`Builder::receiver`] binds); `unix:`,
//!   `tcp:` and `mq:` take any number of senders, `signal:` one per
//!   process, `fifo:` one at a time (see [`Builder::sender`]); see
//!   [`crate::transport`] for each mechanism's limits.
//!
//! [`Builder::create`] and [`Builder::open`] give a [`Channel`] (a ring)
//! to take handles from; [`Builder::open_or_create`] lets two programs
//! start in either order; [`Builder::sender`] and [`Builder::receiver`]
//! make one end at any address in one call.
//!
//! When the last sender is dropped, or dies (SIGKILL included), receivers
//! drain what is buffered and then get `Disconnected`; a blocked receiver
//! notices a death within about 10 ms. Symmetrically, senders get
//! `Disconnected` once every receiver is gone. Every in-flight slot of an
//! MPMC ring records the participant that holds it, so a survivor
//! recovers the slots of the dead (and only theirs): a slot left
//! half-written by a producer killed mid-send is skipped while other
//! producers go on, and a message held by a consumer that died is
//! delivered again to a live one (at least once; see the README's table
//! of what a crash of each role does). A peer that breaks the ring itself
//! (its indices or stamps) makes the channel report `Disconnected` and
//! [`is_corrupted`](Receiver::is_corrupted) true, never crash this process.
//!
//! Handles remember the process that made them: a child forked without
//! `exec` may drop its copies (they do nothing there) but must open the
//! channel again to use it.
//!
//! # Examples
//!
//! Two processes (run the same way here, in one):
//!
//! ```
//! use shmlane::ipc::Builder;
//!
//! let name = format!("shm:doc-example-{}", std::process::id());
//! // Process A: create the channel and receive.
//! let chan = Builder::new(&name)?.capacity(64).create::<u64>()?;
//! let rx = chan.receiver()?;
//! // Process B: open it by name and send.
//! let peer = Builder::new(&name)?.open::<u64>()?;
//! let tx = peer.sender()?;
//! tx.send(42)?;
//! assert_eq!(rx.recv()?, 42);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Structured messages with rkyv, read in place:
//!
//! ```
//! use shmlane::ipc::{Builder, Rkyv};
//!
//! #[derive(shmlane::Message, Debug, PartialEq)]
//! struct Order {
//!     id: u64,
//!     symbol: String,
//!     price: f64,
//! }
//!
//! let name = format!("shm:doc-rkyv-{}", std::process::id());
//! let chan = Builder::new(&name)?.message_size(128).create::<Rkyv<Order>>()?;
//! let (tx, rx) = (chan.sender()?, chan.receiver()?);
//! tx.send(&Order { id: 1, symbol: "ACME".into(), price: 9.5 })?;
//! let order = rx.recv_ref()?; // the archived order, where it lies
//! assert_eq!(order.symbol, "ACME");
//! assert_eq!(order.price, 9.5);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod connect;
mod exclusive;
pub(crate) mod frames;
mod handles;
mod kinds;
mod port;

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shmlane_codec::archive::CopyBuf;
use shmlane_ring::{mpmc, spsc};
use shmlane_semaphore::{EventCount, Phase, WaitStrategy};
use shmlane_shm::{Attachment, CreateOptions, OpenOptions, Spec, TypeInfo};

pub use crate::transport::{Address, AddressError};
pub use connect::ConnectError;
pub use handles::{Iter, Receiver, Sender, TryIter};
pub use kinds::{Bytes, Message, MsgRef, RecvMsgError, Rkyv, SendMsgError};
pub use shmlane_codec::{Codec, EncodeError, InvalidMessage, Trust};
pub use shmlane_ring::RingKind;
pub use shmlane_shm::{AttachError, Backend, CreateError, OpenError, Role, Segment};

use handles::{RxFlavor, SpscProducer, SpscRxEnd, SpscTxEnd, TxFlavor};
use port::{Failed, Tried};
use shmlane_codec::archive::Scratch;

/// Slot flag: the slot holds no message (a send whose message did not fit,
/// or whose writer panicked); skip it.
const FLAG_SKIP: u64 = 1 << 32;
/// A parked side wakes at least this often to check on its peers.
const STEP: Duration = Duration::from_millis(10);
/// Lock probes for dead peers happen at most this often per handle.
const PROBE_INTERVAL: Duration = Duration::from_millis(5);
/// Busy-slot retries before a side treats the ring as full or empty and
/// waits in steps instead (the busy peer may be dead).
const BUSY_RETRIES: u32 = 64;
/// Default slot size (length word included) for messages of varying length.
const DEFAULT_SLOT: usize = 256;

/// Bytes in front of each message in a slot: its length (low 32 bits) and
/// flags; 0 for SPSC Pod slots, which hold the bare `T` (the producer
/// publishes through the ring, so nothing else is needed, and 64-byte
/// messages fill whole cache lines).
fn meta_len<M: Message>(kind: RingKind) -> usize {
    if M::KIND == shmlane_codec::kind::POD && kind == RingKind::Spsc {
        0
    } else {
        M::ALIGN.max(8)
    }
}

/// Slot payload size and alignment for messages of up to `len` bytes.
fn slot_shape<M: Message>(kind: RingKind, len: usize) -> (usize, usize) {
    let meta = meta_len::<M>(kind);
    let align = meta.max(M::ALIGN);
    // Saturating: an absurd size is refused by the ring layout, not wrapped.
    (meta.saturating_add(len).max(1), align)
}

/// For messages of varying length, `needed` grown so that each slot (its
/// ring header included) fills whole cache lines: a slot being written
/// then never shares a line with one being read. Pod slots stay exact.
fn whole_lines<M: Message>(kind: RingKind, capacity: u64, needed: usize, align: usize) -> usize {
    if M::fixed_len().is_some() {
        return needed;
    }
    match shmlane_ring::RingLayout::new(kind, capacity, needed, align) {
        Ok(layout) => {
            let line = shmlane_ring::CACHE_LINE;
            needed + (layout.stride().div_ceil(line) * line - layout.stride())
        }
        // `create` reports the bad capacity or size.
        Err(_) => needed,
    }
}

/// The fingerprint of `M` as the segment header stores it.
fn type_info<M: Message>() -> TypeInfo {
    let f = M::fingerprint();
    TypeInfo {
        name: M::display_name(),
        schema: f.schema,
        size: f.size as u64,
        align: f.align as u64,
        codec: f.codec,
    }
}

/// Settings for creating or opening a cross-process channel at an
/// address.
///
/// Settings that only rings have ([`slot_size`](Self::slot_size),
/// [`kind`](Self::kind), [`keep`](Self::keep), [`mode`](Self::mode),
/// [`capacity`](Self::capacity) except on `mq:`) are refused on a kernel
/// transport with [`ConnectError::Unsupported`] naming the setting, never
/// ignored.
#[derive(Debug, Clone)]
pub struct Builder {
    target: Target,
    capacity: u64,
    slot_size: Option<usize>,
    message_size: Option<usize>,
    trust: Trust,
    kind: RingKind,
    mode: u32,
    keep: bool,
    strategy: WaitStrategy,
    open_timeout: Duration,
    allow_group_write: bool,
    /// Which settings were asked for, so that a kernel transport refuses
    /// them rather than ignore them.
    capacity_set: bool,
    kind_set: bool,
    mode_set: bool,
}

#[derive(Debug, Clone)]
enum Target {
    /// `shm:` or `file:`: a ring.
    Address(shmlane_shm::Address),
    /// Any other address: frames over a kernel transport.
    Frames(Address),
    Memfd,
    Inherited(RawFd),
}

impl Builder {
    fn with_target(target: Target) -> Self {
        Self {
            target,
            capacity: 1024,
            slot_size: None,
            message_size: None,
            trust: Trust::validate(),
            kind: RingKind::Mpmc,
            mode: 0o600,
            keep: false,
            strategy: WaitStrategy::default(),
            open_timeout: Duration::from_secs(1),
            allow_group_write: false,
            capacity_set: false,
            kind_set: false,
            mode_set: false,
        }
    }

    /// A channel at `shm:NAME` or `file:PATH`.
    ///
    /// # Errors
    ///
    /// [`AddressError`] for an unknown scheme or a bad name or path.
    pub fn new(address: &str) -> Result<Self, AddressError> {
        Ok(Self::with_target(match Address::parse(address)? {
            Address::Shm(name) => Target::Address(shmlane_shm::Address::Shm(name)),
            Address::File(path) => Target::Address(shmlane_shm::Address::File(path)),
            other => Target::Frames(other),
        }))
    }

    /// An anonymous channel in a memfd, for a child process: create it,
    /// pass [`Channel::inheritable_fd`] to the child, open it there with
    /// [`Builder::inherited`].
    pub fn memfd() -> Self {
        Self::with_target(Target::Memfd)
    }

    /// The memfd channel inherited from a parent as descriptor `fd`.
    /// [`open`](Self::open) reopens it (so this process gets liveness locks
    /// of its own) and then closes `fd`.
    ///
    /// # Safety
    ///
    /// - `fd` is a descriptor this process owns and nothing else uses (as
    ///   one inherited from a parent is); `open` consumes it, so it must be
    ///   opened once at most.
    pub unsafe fn inherited(fd: RawFd) -> Self {
        Self::with_target(Target::Inherited(fd))
    }

    /// How many messages the channel holds (exactly; default 1024).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity as u64;
        self.capacity_set = true;
        self
    }

    /// Bytes per slot, length word included (default: what the message
    /// size needs). Larger slots leave room for future, larger message
    /// versions; smaller ones are refused by `create`.
    pub fn slot_size(mut self, bytes: usize) -> Self {
        self.slot_size = Some(bytes);
        self
    }

    /// The largest encoded message, in bytes, for [`Rkyv`] and [`Bytes`]
    /// channels (default: what fits a 256-byte slot; Pod messages always
    /// have their own size). It is rounded up so that each slot fills
    /// whole cache lines ([`Channel::max_message_len`] tells the size
    /// chosen). Pick it from the largest message the channel
    /// will carry, e.g. with
    /// [`archived_len`](shmlane_codec::archive::archived_len) or, for types
    /// without strings or vectors,
    /// [`fixed_archived_len`](shmlane_codec::archive::fixed_archived_len).
    pub fn message_size(mut self, bytes: usize) -> Self {
        self.message_size = Some(bytes);
        self
    }

    /// How far receivers trust what peers write (default
    /// [`Trust::validate`]): see [`Trust`]. [`Rkyv`] messages are
    /// validated (on a private copy for owned receives, in place for
    /// `recv_ref`); [`Trust::hostile`] copies every [`Rkyv`] and [`Bytes`]
    /// message to private memory before use.
    pub fn trust(mut self, trust: Trust) -> Self {
        self.trust = trust;
        self
    }

    fn message_len<M: Message>(&self, kind: RingKind) -> usize {
        match M::fixed_len() {
            Some(len) => len,
            None => self
                .message_size
                .unwrap_or(DEFAULT_SLOT - meta_len::<M>(kind)),
        }
    }

    /// The ring algorithm (default MPMC).
    pub fn kind(mut self, kind: RingKind) -> Self {
        self.kind = kind;
        self.kind_set = true;
        self
    }

    /// Shorthand for `kind(RingKind::Spsc)`.
    pub fn spsc(self) -> Self {
        self.kind(RingKind::Spsc)
    }

    /// Permission bits of a created segment (default `0o600`).
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self.mode_set = true;
        self
    }

    /// Keep the segment's name or file when the creator drops the channel
    /// (default: unlink it).
    pub fn keep(mut self, keep: bool) -> Self {
        self.keep = keep;
        self
    }

    /// How blocked handles wait (default: spin, yield, then park).
    pub fn wait_strategy(mut self, strategy: WaitStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// How long `open` waits for a creator to finish (default 1 s).
    pub fn open_timeout(mut self, timeout: Duration) -> Self {
        self.open_timeout = timeout;
        self
    }

    /// Accept a segment that group or others may write (default: refuse).
    pub fn allow_group_write(mut self, allow: bool) -> Self {
        self.allow_group_write = allow;
        self
    }

    /// Creates the channel for messages of kind `M`.
    ///
    /// # Errors
    ///
    /// [`CreateError`]: the address exists, permission denied, a bad
    /// capacity (zero, too large), a slot too small, or an OS error.
    pub fn create<M: Message>(&self) -> Result<Channel<M>, CreateError> {
        let (needed, slot_align) = slot_shape::<M>(self.kind, self.message_len::<M>(self.kind));
        let slot_size = self
            .slot_size
            .unwrap_or_else(|| whole_lines::<M>(self.kind, self.capacity, needed, slot_align));
        if slot_size < needed {
            return Err(CreateError::SlotTooSmall {
                asked: slot_size,
                needed,
            });
        }
        let spec = Spec {
            kind: self.kind,
            capacity: self.capacity,
            slot_size,
            slot_align,
            ty: type_info::<M>(),
        };
        let seg = match &self.target {
            Target::Address(addr) => {
                let opts = CreateOptions {
                    mode: self.mode,
                    keep: self.keep,
                };
                Segment::create(addr, &spec, &opts)?
            }
            Target::Memfd => Segment::create_memfd(&spec)?,
            Target::Inherited(_) => {
                return Err(CreateError::Os(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "an inherited channel already exists: use open()",
                )))
            }
            Target::Frames(addr) => return Err(CreateError::Os(frames_only(addr))),
        };
        Ok(Channel::new(seg, self.strategy, self.trust))
    }

    /// Opens an existing channel for messages of kind `M`, adopting its
    /// capacity, ring kind and message size.
    ///
    /// # Errors
    ///
    /// [`OpenError`]: not found, permission denied, not a shmlane segment,
    /// another message type, not ready, corrupted...
    pub fn open<M: Message>(&self) -> Result<Channel<M>, OpenError> {
        let opts = OpenOptions {
            ready_timeout: self.open_timeout,
            allow_group_write: self.allow_group_write,
            ty: Some(type_info::<M>()),
            ..OpenOptions::default()
        };
        let seg =
            match &self.target {
                Target::Address(addr) => Segment::open(addr, &opts)?,
                Target::Inherited(fd) => {
                    let seg = Segment::open_inherited(*fd, &opts);
                    // The inherited descriptor shares the parent's open file
                    // description, and with it the parent's liveness locks:
                    // kept open here, it would keep a dead parent looking
                    // alive. Closed whether or not the open worked.
                    // SAFETY: `Builder::inherited`'s caller handed the descriptor
                    // over to be consumed; it is closed once, here.
                    unsafe { libc::close(*fd) };
                    seg?
                }
                Target::Memfd => return Err(OpenError::Os(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a memfd channel has no name to open: use Builder::inherited(fd) in the child",
                ))),
                Target::Frames(addr) => return Err(OpenError::Os(frames_only(addr))),
            };
        // The fingerprint says which type the segment carries, but anyone
        // can forge it: the slots must also have exactly the shape this side
        // will read and write, or a hostile creator could make us access
        // memory past a slot (or past the mapping).
        let layout = seg.layout();
        // Messages of varying length need room for the length word and at
        // least one byte; fixed-length ones need exactly their size.
        let shape = slot_shape::<M>(layout.kind(), M::fixed_len().unwrap_or(1));
        // Alignments are powers of two, so "at least" means "a multiple".
        if layout.slot_size() < shape.0 || layout.slot_align() < shape.1 {
            return Err(OpenError::LayoutMismatch {
                field: "slot size",
                detail: format!(
                    "{} bytes aligned to {}, but `{}` needs at least {} aligned to {}",
                    layout.slot_size(),
                    layout.slot_align(),
                    M::display_name(),
                    shape.0,
                    shape.1
                ),
            });
        }
        Ok(Channel::new(seg, self.strategy, self.trust))
    }
}

/// The error of `create`/`open` on an address served by a kernel
/// transport, which has no segment: its ends are made with
/// [`Builder::sender`] and [`Builder::receiver`].
fn frames_only(addr: &Address) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{addr} is a kernel transport, not a shared-memory segment: \
             make its ends with Builder::sender() and Builder::receiver()"
        ),
    )
}

/// A created or opened channel: take senders and receivers from it.
pub struct Channel<M> {
    seg: Arc<Segment>,
    strategy: WaitStrategy,
    trust: Trust,
    _msg: PhantomData<fn(M) -> M>,
}

impl<M> fmt::Debug for Channel<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("segment", &self.seg)
            .finish()
    }
}

fn kind_name(kind: RingKind) -> &'static str {
    match kind {
        RingKind::Spsc => "SPSC",
        RingKind::Mpmc => "MPMC",
    }
}

impl<M: Message> Channel<M> {
    fn new(seg: Segment, strategy: WaitStrategy, trust: Trust) -> Self {
        Self {
            seg: Arc::new(seg),
            strategy,
            trust,
            _msg: PhantomData,
        }
    }

    /// The largest message the channel carries, in encoded bytes.
    pub fn max_message_len(&self) -> usize {
        self.seg.layout().slot_size() - meta_len::<M>(self.kind())
    }

    /// The ring algorithm.
    pub fn kind(&self) -> RingKind {
        self.seg.layout().kind()
    }

    /// How many messages the channel holds.
    pub fn capacity(&self) -> usize {
        self.seg.layout().capacity() as usize
    }

    /// The segment underneath (for inspection).
    pub fn segment(&self) -> &Segment {
        &self.seg
    }

    /// A duplicate of a memfd channel's descriptor without close-on-exec,
    /// for a child process to inherit (pass its number to the child, then
    /// drop it here once the child is spawned).
    ///
    /// # Errors
    ///
    /// An OS error, or `InvalidInput` for a channel that is not a memfd.
    pub fn inheritable_fd(&self) -> io::Result<OwnedFd> {
        if *self.seg.backend() != Backend::Memfd {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a memfd channel",
            ));
        }
        // SAFETY: F_DUPFD on our own open descriptor returns a new one (or
        // -1); F_DUPFD never sets close-on-exec.
        let fd = unsafe { libc::fcntl(self.seg.file().as_raw_fd(), libc::F_DUPFD, 3) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn side(&self, role: Role, needs: RingKind) -> Result<Side, AttachError> {
        if self.kind() != needs {
            return Err(AttachError::WrongKind {
                needs: kind_name(needs),
                found: kind_name(self.kind()),
            });
        }
        let attachment = self.seg.attach(role, needs == RingKind::Spsc)?;
        let meta = meta_len::<M>(needs);
        Ok(Side {
            att: attachment,
            strategy: self.strategy,
            trust: self.trust,
            meta,
            // Length words have 32 bits (flags above them).
            cap: (self.seg.layout().slot_size() - meta).min(u32::MAX as usize),
            epoch: Instant::now(),
            last_probe: AtomicU64::new(0),
            last_reap: AtomicU64::new(0),
            corrupted: AtomicBool::new(false),
            copies: Mutex::new(Vec::new()),
        })
    }

    fn region(&self) -> (std::ptr::NonNull<u8>, usize) {
        self.seg.ring_region()
    }

    fn mpmc_end(&self, role: Role) -> Result<Arc<MpmcEnd>, AttachError> {
        let side = self.side(role, RingKind::Mpmc)?;
        let (base, len) = self.region();
        // SAFETY: the region is the segment's validated ring region; the
        // attachment in `side` keeps the segment (and mapping) alive as long
        // as the ring handle.
        let ring =
            unsafe { mpmc::Ring::attach(base, len, self.seg.layout()) }.expect("validated layout");
        // Every slot this end holds records its participant, so survivors
        // can recover it if this process dies.
        let ring = ring.with_owner(side.att.owner_id());
        Ok(Arc::new(MpmcEnd {
            ring,
            side,
            scratch: Mutex::new(Vec::new()),
            // Look once at first: a receiver that attaches after a death
            // may be the one to deliver what the dead held.
            seen_reaped: AtomicU64::new(u64::MAX),
        }))
    }

    /// A sender: on an MPMC ring one more (any number, in any process);
    /// on an SPSC ring the one sender.
    ///
    /// # Errors
    ///
    /// [`AttachError::RoleTaken`] if the ring is SPSC and a live sender
    /// exists (in any process), or a full participant table.
    pub fn sender(&self) -> Result<Sender<M>, AttachError> {
        let flavor = match self.kind() {
            RingKind::Mpmc => TxFlavor::Mpmc(self.mpmc_end(Role::Sender)?),
            RingKind::Spsc => {
                let side = self.side(Role::Sender, RingKind::Spsc)?;
                let (base, len) = self.region();
                // SAFETY: the region is the segment's validated ring region;
                // the attachment in `side` keeps the mapping alive as long as
                // the ring handle; the exclusive attach guarantees no other
                // live producer, and a dead one published nothing
                // half-written.
                let ring = unsafe { spsc::Producer::attach(base, len, self.seg.layout()) }
                    .expect("validated layout");
                TxFlavor::Spsc(Arc::new(SpscTxEnd {
                    side,
                    ring: exclusive::Exclusive::new(SpscProducer {
                        ring,
                        scratch: Scratch::default(),
                    }),
                }))
            }
        };
        Ok(Sender {
            flavor,
            _msg: PhantomData,
        })
    }

    /// A receiver: on an MPMC ring one more; on an SPSC ring the one
    /// receiver.
    ///
    /// # Errors
    ///
    /// As [`sender`](Self::sender).
    pub fn receiver(&self) -> Result<Receiver<M>, AttachError> {
        let flavor = match self.kind() {
            RingKind::Mpmc => RxFlavor::Mpmc(self.mpmc_end(Role::Receiver)?),
            RingKind::Spsc => {
                let side = self.side(Role::Receiver, RingKind::Spsc)?;
                let (base, len) = self.region();
                // SAFETY: as in `sender`, for the consumer side.
                let ring = unsafe { spsc::Consumer::attach(base, len, self.seg.layout()) }
                    .expect("validated layout");
                RxFlavor::Spsc(Arc::new(SpscRxEnd {
                    side,
                    ring: exclusive::Exclusive::new(ring),
                }))
            }
        };
        Ok(Receiver {
            flavor,
            _msg: PhantomData,
        })
    }
}

/// What every handle keeps: its attachment (liveness), how it waits, and
/// whether it has seen the segment corrupted.
struct Side {
    att: Attachment,
    strategy: WaitStrategy,
    trust: Trust,
    /// Bytes of length word in front of each message (0: bare Pod).
    meta: usize,
    /// Bytes a slot holds after the length word.
    cap: usize,
    epoch: Instant,
    last_probe: AtomicU64,
    /// When a receiver last looked for dead receivers (see `reap_due`).
    last_reap: AtomicU64,
    corrupted: AtomicBool,
    /// Private buffers for `Trust::hostile` receives, reused.
    copies: Mutex<Vec<CopyBuf>>,
}

impl Side {
    #[inline]
    fn seg(&self) -> &Segment {
        self.att.segment()
    }

    #[inline]
    fn not_empty(&self) -> &EventCount {
        &self.seg().header().not_empty.0
    }

    #[inline]
    fn not_full(&self) -> &EventCount {
        &self.seg().header().not_full.0
    }

    #[inline]
    fn corrupted(&self) -> bool {
        // Relaxed: a local flag; nothing is published with it.
        if self.corrupted.load(Ordering::Relaxed) || self.seg().is_broken() {
            return true;
        }
        // A truncation that spares the pages in use faults nowhere, and a
        // busy side never waits (where `peers_gone` probes): look at the
        // file's length every 1024 operations of this thread, at most every
        // `PROBE_INTERVAL` per handle.
        thread_local! { static OPS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) }; }
        let n = OPS.with(|c| {
            let n = c.get().wrapping_add(1);
            c.set(n);
            n
        });
        n % 1024 == 0 && self.truncated()
    }

    #[cold]
    fn truncated(&self) -> bool {
        self.probe_due() && !self.seg().check_intact()
    }

    fn poison(&self) {
        // Relaxed: as above.
        self.corrupted.store(true, Ordering::Relaxed);
    }

    /// Whether every `peer` is gone, after at least one attached. One load
    /// when they left cleanly; with `probe`, also looks (at most every
    /// 5 ms) for peers that died holding their slot, and for a segment a
    /// peer truncated (then the channel is broken: gone, and corrupted).
    #[inline]
    fn peers_gone(&self, peer: Role, probe: bool) -> bool {
        // The common case in one branch: peers attached and counted, and no
        // reason to look further. (A broken segment is caught by
        // `corrupted`, which every operation checks first, and by the slow
        // path whenever this side probes.)
        if !probe && self.seg().live_hint(peer) != 0 {
            return false;
        }
        self.peers_gone_slow(peer, probe)
    }

    #[cold]
    fn peers_gone_slow(&self, peer: Role, probe: bool) -> bool {
        let seg = self.seg();
        if seg.is_broken() {
            return true;
        }
        if !seg.ever_attached(peer) {
            if !probe || !self.probe_due() {
                return false;
            }
            if !seg.check_intact() {
                return true;
            }
            // A peer that died while attaching never said it was there:
            // the scan reaps it and marks its role seen.
            let live = seg.live_count(peer);
            return seg.ever_attached(peer) && live == 0;
        }
        if seg.live_hint(peer) == 0 {
            // The peers may have left because they found the segment
            // truncated: say so (one `fstat`, only once the channel ended).
            let _ = seg.check_intact();
            // Confirmed by a scan: a peer attaching right now is marked
            // seen before it is counted.
            return seg.live_count(peer) == 0;
        }
        if !probe || !self.probe_due() {
            return false;
        }
        !seg.check_intact() || seg.live_count(peer) == 0
    }

    /// Rate-limits probes to one per `PROBE_INTERVAL` per handle.
    fn probe_due(&self) -> bool {
        self.due(&self.last_probe)
    }

    /// Rate-limits a receiver's look for dead fellow receivers (whose
    /// claims it must deliver again) the same way, on its own clock.
    fn reap_due(&self) -> bool {
        self.due(&self.last_reap)
    }

    fn due(&self, last: &AtomicU64) -> bool {
        let now = self.epoch.elapsed().as_nanos() as u64 + 1;
        // Relaxed: a rate limit, local to this handle.
        let then = last.load(Ordering::Relaxed);
        if then != 0 && now.saturating_sub(then) < PROBE_INTERVAL.as_nanos() as u64 {
            return false;
        }
        last.store(now, Ordering::Relaxed);
        true
    }

    /// A private buffer for a `Trust::hostile` copy.
    fn take_copy(&self) -> CopyBuf {
        self.copies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default()
    }

    /// Gives a copy buffer back for the next message.
    fn put_copy(&self, buf: CopyBuf) {
        self.copies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(buf);
    }

    /// Sends through `attempt(probe)`, waiting while full. `probe` is false
    /// while spinning, so that lock probes for dead peers happen only after
    /// a yield or a park.
    fn wait_send<E>(
        &self,
        deadline: Option<Instant>,
        mut attempt: impl FnMut(bool) -> Tried<E>,
    ) -> Result<(), Failed<E>> {
        let settle = |tried| match tried {
            Tried::Done => Some(Ok(())),
            Tried::Gone => Some(Err(Failed::Gone)),
            Tried::Rejected(e) => Some(Err(Failed::Rejected(e))),
            Tried::Full => None,
        };
        if let Some(done) = settle(attempt(false)) {
            return done;
        }
        self.strategy
            .wait_tallied(
                self.not_full(),
                deadline,
                Some(STEP),
                Some(self.att.waiting(true)),
                |phase| settle(attempt(phase != Phase::Spin)),
            )
            .unwrap_or(Err(Failed::Timeout))
    }

    /// Receives through `attempt(probe)`, waiting while empty (`probe` as
    /// in [`wait_send`](Self::wait_send)).
    fn wait_recv<R>(
        &self,
        deadline: Option<Instant>,
        mut attempt: impl FnMut(bool) -> Result<R, RecvMsgError>,
    ) -> Result<R, RecvMsgError> {
        match attempt(false) {
            Err(RecvMsgError::Empty) => {}
            done => return done,
        }
        loop {
            let got = self.strategy.wait_tallied(
                self.not_empty(),
                deadline,
                Some(STEP),
                Some(self.att.waiting(false)),
                |phase| match attempt(phase != Phase::Spin) {
                    // A live producer is writing the head slot: never park
                    // on it (see `port::busy`); spin and yield instead.
                    Err(RecvMsgError::Empty) => {
                        (phase == Phase::Park && port::busy::take()).then_some(None)
                    }
                    done => Some(Some(done)),
                },
            );
            match got {
                Ok(Some(done)) => return done,
                Ok(None) => std::thread::yield_now(),
                Err(_) => return Err(RecvMsgError::Timeout),
            }
        }
    }
}

struct MpmcEnd {
    ring: mpmc::Ring,
    side: Side,
    /// Serializer scratch spaces for rkyv sends, reused.
    scratch: Mutex<Vec<Scratch>>,
    /// The segment's count of reaped participants when this end last
    /// looked for claims the dead left behind.
    seen_reaped: AtomicU64,
}

impl MpmcEnd {
    fn take_scratch(&self) -> Scratch {
        self.scratch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default()
    }

    fn put_scratch(&self, scratch: Scratch) {
        self.scratch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(scratch);
    }

    /// Whether a participant was reaped since this end last looked for
    /// claims the dead left behind (and notes that it looks now).
    fn orphans_possible(&self) -> bool {
        let now = self.side.seg().reaped();
        // Relaxed: a local note; the segment counter orders the reap.
        self.seen_reaped.swap(now, Ordering::Relaxed) != now
    }

    /// Makes the next [`orphans_possible`](Self::orphans_possible) true.
    fn expect_orphans(&self) {
        // Relaxed: as above.
        self.seen_reaped.store(u64::MAX, Ordering::Relaxed);
    }
}
