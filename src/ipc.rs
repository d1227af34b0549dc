//! Channels between processes, over shared-memory segments.
//!
//! One process creates a channel at an address (`shm:NAME` or
//! `file:PATH`), another opens it; each takes a sender or a receiver. The
//! handles have crossbeam-channel's methods and error types. Messages are
//! plain-old-data (`bytemuck::Pod`) copied in and out of the ring.
//!
//! - MPMC rings give [`Sender`] / [`Receiver`]: `&self` methods, `Clone`,
//!   any number of processes on each side.
//! - SPSC rings give [`SpscSender`] / [`SpscReceiver`]: `&mut self`
//!   methods, not `Clone` or `Sync`, one per side across all processes
//!   (a second is refused at attach time); the fastest path, with batches.
//!
//! When the last sender is dropped, or dies (SIGKILL included), receivers
//! drain what is buffered and then get `Disconnected`; a blocked receiver
//! notices a death within about 10 ms. A slot left half-written by a
//! producer killed mid-send is skipped once every sender is gone; while
//! other producers of an MPMC ring live, it blocks the ring's head (a known
//! limit: the slot has no owner recorded yet), and a consumer killed while
//! reading a slot likewise blocks producers at that slot. Symmetrically, senders get
//! `Disconnected` once every receiver is gone. A peer that writes garbage
//! into the segment makes the channel report `Disconnected` and
//! [`is_corrupted`](Receiver::is_corrupted) true, never crash this process.
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

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytemuck::Pod;
use shmlane_ring::{mpmc, spsc, PopError, PushError};
use shmlane_semaphore::{EventCount, Phase, WaitStrategy};
use shmlane_shm::{Attachment, CreateOptions, OpenOptions, Spec, TypeInfo};

pub use shmlane_ring::RingKind;
pub use shmlane_shm::{
    Address, AddressError, AttachError, Backend, CreateError, OpenError, Role, Segment,
};

use crate::error::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};
use crate::sync::backoff;

/// Codec id of plain-old-data messages in the type fingerprint.
const CODEC_POD: u32 = 1;
/// Slot flag: the slot was abandoned by a dead producer; skip it.
const FLAG_SKIP: u64 = 1 << 32;
/// A parked side wakes at least this often to check on its peers.
const STEP: Duration = Duration::from_millis(10);
/// Lock probes for dead peers happen at most this often per handle.
const PROBE_INTERVAL: Duration = Duration::from_millis(5);
/// Busy-slot retries before a side treats the ring as full or empty and
/// waits in steps instead (the busy peer may be dead).
const BUSY_RETRIES: u32 = 64;

/// Bytes in front of each message: its length (low 32 bits) and flags.
fn meta_size<T>() -> usize {
    align_of::<T>().max(8)
}

/// Slot payload size and alignment for `T`. SPSC slots hold the bare `T`
/// (the producer publishes through the ring's tail, so nothing else is
/// needed, and 64-byte messages fill whole cache lines); MPMC slots put a
/// length word first, which also carries the skip flag for abandoned slots.
fn slot_shape<T>(kind: RingKind) -> (usize, usize) {
    match kind {
        RingKind::Spsc => (size_of::<T>().max(1), align_of::<T>()),
        RingKind::Mpmc => (meta_size::<T>() + size_of::<T>(), meta_size::<T>()),
    }
}

/// Writes a bare `T` into an SPSC slot.
///
/// # Safety
///
/// - `payload` points to an SPSC slot this side owns, made for `T`.
unsafe fn write_bare<T: Pod>(payload: *mut u8, msg: &T) {
    // SAFETY: per the contract (aligned, large enough); volatile: shared.
    unsafe { payload.cast::<T>().write_volatile(*msg) }
}

/// Reads a bare `T` out of an SPSC slot.
///
/// # Safety
///
/// - `payload` points to a published SPSC slot this side reads, made for `T`.
unsafe fn read_bare<T: Pod>(payload: *const u8) -> T {
    // SAFETY: per the contract; every bit pattern is a valid `T: Pod`.
    unsafe { payload.cast::<T>().read_volatile() }
}

/// The fingerprint of `T` as a Pod message.
fn type_info<T: Pod>() -> TypeInfo {
    TypeInfo {
        name: std::any::type_name::<T>().to_owned(),
        size: size_of::<T>() as u64,
        align: align_of::<T>() as u64,
        codec: CODEC_POD,
    }
}

/// Writes `msg` and its length into a slot payload.
///
/// # Safety
///
/// - `payload` points to a slot this side owns, `meta_size::<T>() +
///   size_of::<T>()` bytes, aligned to `max(8, align_of::<T>())`.
unsafe fn write_msg<T: Pod>(payload: *mut u8, msg: &T) {
    // SAFETY: per the contract; volatile because a peer may read (or
    // scribble on) the same bytes.
    unsafe {
        payload.cast::<u64>().write_volatile(size_of::<T>() as u64);
        payload
            .add(meta_size::<T>())
            .cast::<T>()
            .write_volatile(*msg);
    }
}

/// Reads a message out of a slot payload: `Ok(None)` for a skipped slot,
/// `Err` for a length no sender of `T` writes.
///
/// # Safety
///
/// - As for [`write_msg`], for a published slot this side has claimed.
unsafe fn read_msg<T: Pod>(payload: *const u8) -> Result<Option<T>, ()> {
    // SAFETY: per the contract. Volatile copies: the bytes may change under
    // us if a peer misbehaves, and every bit pattern is a valid `T: Pod`.
    unsafe {
        let meta = payload.cast::<u64>().read_volatile();
        if meta & FLAG_SKIP != 0 {
            return Ok(None);
        }
        if meta != size_of::<T>() as u64 {
            return Err(());
        }
        Ok(Some(
            payload.add(meta_size::<T>()).cast::<T>().read_volatile(),
        ))
    }
}

fn mark_skipped(payload: *mut u8) {
    // SAFETY: `publish_abandoned` hands us the payload of a slot nobody
    // alive owns; its first 8 bytes are the meta word (every slot has it).
    unsafe { payload.cast::<u64>().write_volatile(FLAG_SKIP) };
}

/// Settings for creating or opening a cross-process channel.
#[derive(Debug, Clone)]
pub struct Builder {
    target: Target,
    capacity: u64,
    slot_size: Option<usize>,
    kind: RingKind,
    mode: u32,
    keep: bool,
    strategy: WaitStrategy,
    open_timeout: Duration,
    allow_group_write: bool,
}

#[derive(Debug, Clone)]
enum Target {
    Address(Address),
    Memfd,
    Inherited(RawFd),
}

impl Builder {
    fn with_target(target: Target) -> Self {
        Self {
            target,
            capacity: 1024,
            slot_size: None,
            kind: RingKind::Mpmc,
            mode: 0o600,
            keep: false,
            strategy: WaitStrategy::default(),
            open_timeout: Duration::from_secs(1),
            allow_group_write: false,
        }
    }

    /// A channel at `shm:NAME` or `file:PATH`.
    ///
    /// # Errors
    ///
    /// [`AddressError`] for an unknown scheme or a bad name or path.
    pub fn new(address: &str) -> Result<Self, AddressError> {
        Ok(Self::with_target(Target::Address(Address::parse(address)?)))
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
        self
    }

    /// Bytes per slot (default: exactly what the message type needs, see
    /// `create`). Larger slots leave room for future, larger message
    /// versions; smaller ones are refused by `create`.
    pub fn slot_size(mut self, bytes: usize) -> Self {
        self.slot_size = Some(bytes);
        self
    }

    /// The ring algorithm (default MPMC).
    pub fn kind(mut self, kind: RingKind) -> Self {
        self.kind = kind;
        self
    }

    /// Shorthand for `kind(RingKind::Spsc)`.
    pub fn spsc(self) -> Self {
        self.kind(RingKind::Spsc)
    }

    /// Permission bits of a created segment (default `0o600`).
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
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

    /// Creates the channel for messages of type `T`.
    ///
    /// # Errors
    ///
    /// [`CreateError`]: the address exists, permission denied, a bad
    /// capacity (zero, too large), or an OS error.
    pub fn create<T: Pod>(&self) -> Result<Channel<T>, CreateError> {
        let (needed, slot_align) = slot_shape::<T>(self.kind);
        let slot_size = self.slot_size.unwrap_or(needed);
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
            ty: type_info::<T>(),
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
        };
        Ok(Channel::new(seg, self.strategy))
    }

    /// Opens an existing channel for messages of type `T`, adopting its
    /// capacity and ring kind.
    ///
    /// # Errors
    ///
    /// [`OpenError`]: not found, permission denied, not a shmlane segment,
    /// another message type, not ready, corrupted...
    pub fn open<T: Pod>(&self) -> Result<Channel<T>, OpenError> {
        let opts = OpenOptions {
            ready_timeout: self.open_timeout,
            allow_group_write: self.allow_group_write,
            ty: Some(type_info::<T>()),
            ..OpenOptions::default()
        };
        let seg =
            match &self.target {
                Target::Address(addr) => Segment::open(addr, &opts)?,
                Target::Inherited(fd) => {
                    let seg = Segment::open_inherited(*fd, &opts)?;
                    // The inherited descriptor shares the parent's open file
                    // description, and with it the parent's liveness locks:
                    // kept open here, it would keep a dead parent looking alive.
                    // SAFETY: `Builder::inherited`'s caller handed the descriptor
                    // over to be consumed; it is closed once, here.
                    unsafe { libc::close(*fd) };
                    seg
                }
                Target::Memfd => return Err(OpenError::Os(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a memfd channel has no name to open: use Builder::inherited(fd) in the child",
                ))),
            };
        // The fingerprint says which type the segment carries, but anyone
        // can forge it: the slots must also have exactly the shape this side
        // will read and write, or a hostile creator could make us access
        // memory past a slot (or past the mapping).
        let layout = seg.layout();
        let shape = slot_shape::<T>(layout.kind());
        // Alignments are powers of two, so "at least" means "a multiple".
        if layout.slot_size() < shape.0 || layout.slot_align() < shape.1 {
            return Err(OpenError::LayoutMismatch {
                field: "slot size",
                detail: format!(
                    "{} bytes aligned to {}, but `{}` needs at least {} aligned to {}",
                    layout.slot_size(),
                    layout.slot_align(),
                    std::any::type_name::<T>(),
                    shape.0,
                    shape.1
                ),
            });
        }
        Ok(Channel::new(seg, self.strategy))
    }
}

/// A created or opened channel: take senders and receivers from it.
pub struct Channel<T> {
    seg: Arc<Segment>,
    strategy: WaitStrategy,
    _msg: PhantomData<fn(T) -> T>,
}

impl<T> fmt::Debug for Channel<T> {
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

impl<T: Pod> Channel<T> {
    fn new(seg: Segment, strategy: WaitStrategy) -> Self {
        Self {
            seg: Arc::new(seg),
            strategy,
            _msg: PhantomData,
        }
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
        Ok(Side {
            att: attachment,
            strategy: self.strategy,
            epoch: Instant::now(),
            last_probe: AtomicU64::new(0),
            corrupted: AtomicBool::new(false),
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
        Ok(Arc::new(MpmcEnd { ring, side }))
    }

    /// A sender on an MPMC ring.
    ///
    /// # Errors
    ///
    /// [`AttachError::WrongKind`] on an SPSC ring, or a full participant table.
    pub fn sender(&self) -> Result<Sender<T>, AttachError> {
        Ok(Sender {
            end: self.mpmc_end(Role::Sender)?,
            _msg: PhantomData,
        })
    }

    /// A receiver on an MPMC ring.
    ///
    /// # Errors
    ///
    /// As [`sender`](Self::sender).
    pub fn receiver(&self) -> Result<Receiver<T>, AttachError> {
        Ok(Receiver {
            end: self.mpmc_end(Role::Receiver)?,
            _msg: PhantomData,
        })
    }

    /// The one sender of an SPSC ring.
    ///
    /// # Errors
    ///
    /// [`AttachError::RoleTaken`] if a live sender exists (in any process),
    /// [`AttachError::WrongKind`] on an MPMC ring.
    pub fn spsc_sender(&self) -> Result<SpscSender<T>, AttachError> {
        let side = self.side(Role::Sender, RingKind::Spsc)?;
        let (base, len) = self.region();
        // SAFETY: as in `mpmc_end`; the exclusive attach guarantees no other
        // live producer, and a dead one published nothing half-written.
        let ring = unsafe { spsc::Producer::attach(base, len, self.seg.layout()) }
            .expect("validated layout");
        Ok(SpscSender {
            ring,
            side,
            _msg: PhantomData,
        })
    }

    /// The one receiver of an SPSC ring.
    ///
    /// # Errors
    ///
    /// As [`spsc_sender`](Self::spsc_sender).
    pub fn spsc_receiver(&self) -> Result<SpscReceiver<T>, AttachError> {
        let side = self.side(Role::Receiver, RingKind::Spsc)?;
        let (base, len) = self.region();
        // SAFETY: as in `spsc_sender`, for the consumer side.
        let ring = unsafe { spsc::Consumer::attach(base, len, self.seg.layout()) }
            .expect("validated layout");
        Ok(SpscReceiver {
            ring,
            side,
            _msg: PhantomData,
        })
    }
}

/// What every handle keeps: its attachment (liveness), how it waits, and
/// whether it has seen the segment corrupted.
struct Side {
    att: Attachment,
    strategy: WaitStrategy,
    epoch: Instant,
    last_probe: AtomicU64,
    corrupted: AtomicBool,
}

impl Side {
    fn seg(&self) -> &Segment {
        self.att.segment()
    }

    fn not_empty(&self) -> &EventCount {
        &self.seg().header().not_empty.0
    }

    fn not_full(&self) -> &EventCount {
        &self.seg().header().not_full.0
    }

    fn corrupted(&self) -> bool {
        // Relaxed: a local flag; nothing is published with it.
        self.corrupted.load(Ordering::Relaxed)
    }

    fn poison(&self) {
        // Relaxed: as above.
        self.corrupted.store(true, Ordering::Relaxed);
    }

    /// Whether every `peer` is gone, after at least one attached. One load
    /// when they left cleanly; with `probe`, also looks (at most every
    /// 5 ms) for peers that died holding their slot.
    fn peers_gone(&self, peer: Role, probe: bool) -> bool {
        let seg = self.seg();
        if !seg.ever_attached(peer) {
            return false;
        }
        if seg.live_hint(peer) == 0 {
            return true;
        }
        if !probe {
            return false;
        }
        let now = self.epoch.elapsed().as_nanos() as u64 + 1;
        // Relaxed: a rate limit, local to this handle.
        let last = self.last_probe.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < PROBE_INTERVAL.as_nanos() as u64 {
            return false;
        }
        self.last_probe.store(now, Ordering::Relaxed);
        seg.live_count(peer) == 0
    }

    /// Sends through `try_send(msg, probe)`, waiting while full. `probe`
    /// is false while spinning, so that lock probes for dead peers happen
    /// only after a yield or a park.
    fn send_blocking<T>(
        &self,
        msg: T,
        deadline: Option<Instant>,
        mut try_send: impl FnMut(T, bool) -> Result<(), TrySendError<T>>,
    ) -> Result<(), SendTimeoutError<T>> {
        let msg = match try_send(msg, false) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Disconnected(m)) => return Err(SendTimeoutError::Disconnected(m)),
            Err(TrySendError::Full(m)) => m,
        };
        let mut pending = Some(msg);
        let waited =
            self.strategy.wait_phased(
                self.not_full(),
                deadline,
                Some(STEP),
                |phase| match try_send(pending.take()?, phase != Phase::Spin) {
                    Ok(()) => Some(Ok(())),
                    Err(TrySendError::Disconnected(m)) => Some(Err(m)),
                    Err(TrySendError::Full(m)) => {
                        pending = Some(m);
                        None
                    }
                },
            );
        match waited {
            Ok(Ok(())) => Ok(()),
            Ok(Err(m)) => Err(SendTimeoutError::Disconnected(m)),
            Err(_) => Err(SendTimeoutError::Timeout(
                pending.expect("message kept on timeout"),
            )),
        }
    }

    /// Receives through `try_recv(probe)`, waiting while empty (`probe` as
    /// in [`send_blocking`](Self::send_blocking)).
    fn recv_blocking<T>(
        &self,
        deadline: Option<Instant>,
        mut try_recv: impl FnMut(bool) -> Result<T, TryRecvError>,
    ) -> Result<T, RecvTimeoutError> {
        match try_recv(false) {
            Ok(v) => return Ok(v),
            Err(TryRecvError::Disconnected) => return Err(RecvTimeoutError::Disconnected),
            Err(TryRecvError::Empty) => {}
        }
        self.strategy
            .wait_phased(
                self.not_empty(),
                deadline,
                Some(STEP),
                |phase| match try_recv(phase != Phase::Spin) {
                    Ok(v) => Some(Ok(v)),
                    Err(TryRecvError::Disconnected) => Some(Err(RecvTimeoutError::Disconnected)),
                    Err(TryRecvError::Empty) => None,
                },
            )
            .unwrap_or(Err(RecvTimeoutError::Timeout))
    }
}

struct MpmcEnd {
    ring: mpmc::Ring,
    side: Side,
}

impl MpmcEnd {
    fn try_send<T: Pod>(&self, msg: T, probe: bool) -> Result<(), TrySendError<T>> {
        let side = &self.side;
        if side.corrupted() || side.peers_gone(Role::Receiver, false) {
            return Err(TrySendError::Disconnected(msg));
        }
        let mut step = 0;
        loop {
            match self.ring.try_reserve() {
                Ok(slot) => {
                    // SAFETY: a reserved slot of this segment's layout, made
                    // for `T` (the type fingerprint matched at open).
                    unsafe { write_msg(slot.as_mut_ptr(), &msg) };
                    slot.commit();
                    side.not_empty().notify_one();
                    return Ok(());
                }
                Err(PushError::Busy) if step < BUSY_RETRIES => backoff(&mut step),
                Err(PushError::Full | PushError::Busy) => {
                    return Err(if side.peers_gone(Role::Receiver, probe) {
                        TrySendError::Disconnected(msg)
                    } else {
                        TrySendError::Full(msg)
                    });
                }
                Err(PushError::Corrupted | PushError::TooLarge) => {
                    side.poison();
                    return Err(TrySendError::Disconnected(msg));
                }
            }
        }
    }

    fn try_recv<T: Pod>(&self, probe: bool) -> Result<T, TryRecvError> {
        let side = &self.side;
        if side.corrupted() {
            return Err(TryRecvError::Disconnected);
        }
        let mut step = 0;
        let mut senders_gone = false;
        let mut abandon_failures = 0;
        loop {
            match self.ring.try_claim() {
                Ok(slot) => {
                    // SAFETY: a claimed, published slot of this layout.
                    let msg = unsafe { read_msg::<T>(slot.as_ptr()) };
                    drop(slot);
                    side.not_full().notify_one();
                    match msg {
                        Ok(Some(v)) => return Ok(v),
                        Ok(None) => continue,
                        Err(()) => {
                            side.poison();
                            return Err(TryRecvError::Disconnected);
                        }
                    }
                }
                Err(PopError::Empty) => {
                    if senders_gone {
                        return Err(TryRecvError::Disconnected);
                    }
                    if !side.peers_gone(Role::Sender, probe) {
                        return Err(TryRecvError::Empty);
                    }
                    // Every sender is gone: what they sent is visible now;
                    // look once more before reporting the end.
                    senders_gone = true;
                }
                Err(PopError::Busy) => {
                    // A producer claimed the head slot and has not published
                    // it yet. Give it a moment (it may be mid-write).
                    if step < BUSY_RETRIES {
                        backoff(&mut step);
                        continue;
                    }
                    if !side.peers_gone(Role::Sender, probe) {
                        return Err(TryRecvError::Empty);
                    }
                    // Every sender is dead: the slot will never be published,
                    // so skip it. Another receiver may beat us to it (then the
                    // next claim succeeds); if it can never be skipped (its
                    // stamp is neither claimed nor published), the ring is
                    // garbage.
                    if !self.ring.publish_abandoned(mark_skipped) {
                        abandon_failures += 1;
                        if abandon_failures > 3 {
                            side.poison();
                            return Err(TryRecvError::Disconnected);
                        }
                    }
                    step = 0;
                }
                Err(PopError::Corrupted) => {
                    side.poison();
                    return Err(TryRecvError::Disconnected);
                }
            }
        }
    }
}

/// The sending side of an MPMC cross-process channel.
pub struct Sender<T> {
    end: Arc<MpmcEnd>,
    _msg: PhantomData<fn(T) -> T>,
}

/// The receiving side of an MPMC cross-process channel.
pub struct Receiver<T> {
    end: Arc<MpmcEnd>,
    _msg: PhantomData<fn(T) -> T>,
}

macro_rules! common_methods {
    () => {
        /// Whether this handle has seen the segment corrupted by a peer
        /// (after which every call reports `Disconnected`).
        pub fn is_corrupted(&self) -> bool {
            self.side().corrupted()
        }

        /// The number of messages in the channel (a snapshot).
        pub fn len(&self) -> usize {
            self.ring_len() as usize
        }

        /// Whether the channel holds no message (a snapshot).
        pub fn is_empty(&self) -> bool {
            self.ring_len() == 0
        }

        /// Whether the channel is full (a snapshot).
        pub fn is_full(&self) -> bool {
            self.ring_len() as usize == self.capacity().unwrap_or(0)
        }

        /// The capacity: always `Some`.
        pub fn capacity(&self) -> Option<usize> {
            Some(self.side().seg().layout().capacity() as usize)
        }
    };
}

impl<T: Pod> Sender<T> {
    fn side(&self) -> &Side {
        &self.end.side
    }

    fn ring_len(&self) -> u64 {
        self.end.ring.len()
    }

    common_methods!();

    /// Sends without blocking.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] or [`TrySendError::Disconnected`], with the
    /// message.
    pub fn try_send(&self, msg: T) -> Result<(), TrySendError<T>> {
        self.end.try_send(msg, true)
    }

    /// Sends, blocking while the channel is full.
    ///
    /// # Errors
    ///
    /// [`SendError`] with the message once every receiver is gone.
    pub fn send(&self, msg: T) -> Result<(), SendError<T>> {
        self.send_until(msg, None)
            .map_err(|e| SendError(e.into_inner()))
    }

    /// Sends, blocking for at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`SendTimeoutError`] with the message.
    pub fn send_timeout(&self, msg: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.send_until(msg, Instant::now().checked_add(timeout))
    }

    /// Sends, blocking until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// [`SendTimeoutError`] with the message.
    pub fn send_deadline(&self, msg: T, deadline: Instant) -> Result<(), SendTimeoutError<T>> {
        self.send_until(msg, Some(deadline))
    }

    fn send_until(&self, msg: T, deadline: Option<Instant>) -> Result<(), SendTimeoutError<T>> {
        self.end
            .side
            .send_blocking(msg, deadline, |m, probe| self.end.try_send(m, probe))
    }

    /// Whether both senders share one attachment (are clones).
    pub fn same_channel(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.end, &other.end)
    }
}

impl<T: Pod> Receiver<T> {
    fn side(&self) -> &Side {
        &self.end.side
    }

    fn ring_len(&self) -> u64 {
        self.end.ring.len()
    }

    common_methods!();

    /// Receives without blocking.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`], or [`TryRecvError::Disconnected`] once the
    /// channel is empty and every sender is gone.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.end.try_recv(true)
    }

    /// Receives, blocking while the channel is empty.
    ///
    /// # Errors
    ///
    /// [`RecvError`] once the channel is empty and every sender is gone.
    pub fn recv(&self) -> Result<T, RecvError> {
        self.recv_until(None).map_err(|_| RecvError)
    }

    /// Receives, blocking for at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError`].
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.recv_until(Instant::now().checked_add(timeout))
    }

    /// Receives, blocking until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError`].
    pub fn recv_deadline(&self, deadline: Instant) -> Result<T, RecvTimeoutError> {
        self.recv_until(Some(deadline))
    }

    fn recv_until(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        self.end
            .side
            .recv_blocking(deadline, |probe| self.end.try_recv(probe))
    }

    /// A blocking iterator that ends when the channel disconnects.
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(move || self.recv().ok())
    }

    /// A non-blocking iterator over the messages ready now.
    pub fn try_iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(move || self.try_recv().ok())
    }

    /// Whether both receivers share one attachment (are clones).
    pub fn same_channel(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.end, &other.end)
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Self {
            end: Arc::clone(&self.end),
            _msg: PhantomData,
        }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        Self {
            end: Arc::clone(&self.end),
            _msg: PhantomData,
        }
    }
}

/// The one sending side of an SPSC cross-process channel.
pub struct SpscSender<T> {
    ring: spsc::Producer,
    side: Side,
    _msg: PhantomData<fn(T) -> T>,
}

/// The one receiving side of an SPSC cross-process channel.
pub struct SpscReceiver<T> {
    ring: spsc::Consumer,
    side: Side,
    _msg: PhantomData<fn(T) -> T>,
}

fn spsc_try_send<T: Pod>(
    ring: &mut spsc::Producer,
    side: &Side,
    msg: T,
    probe: bool,
) -> Result<(), TrySendError<T>> {
    if side.corrupted() || side.peers_gone(Role::Receiver, false) {
        return Err(TrySendError::Disconnected(msg));
    }
    // SAFETY: each payload is an SPSC slot of this layout, made for `T`.
    match ring.try_push_with(|p| unsafe { write_bare(p, &msg) }) {
        Ok(()) => {
            side.not_empty().notify_one();
            Ok(())
        }
        Err(PushError::Full | PushError::Busy) => Err(if side.peers_gone(Role::Receiver, probe) {
            TrySendError::Disconnected(msg)
        } else {
            TrySendError::Full(msg)
        }),
        Err(PushError::Corrupted | PushError::TooLarge) => {
            side.poison();
            Err(TrySendError::Disconnected(msg))
        }
    }
}

fn spsc_try_recv<T: Pod>(
    ring: &mut spsc::Consumer,
    side: &Side,
    probe: bool,
) -> Result<T, TryRecvError> {
    if side.corrupted() {
        return Err(TryRecvError::Disconnected);
    }
    let mut senders_gone = false;
    let mut refreshed = false;
    loop {
        // SAFETY: a published SPSC slot of this layout, made for `T`.
        match ring.try_pop_with(|p| unsafe { read_bare::<T>(p) }) {
            Ok(v) => {
                side.not_full().notify_one();
                return Ok(v);
            }
            Err(PopError::Corrupted) => {
                side.poison();
                return Err(TryRecvError::Disconnected);
            }
            Err(PopError::Empty | PopError::Busy) => {
                // Spinning checks look only at the head slot's stamp; any
                // other check (and the last before parking) also reads the
                // producer's index, in case this receiver attached inside
                // a batch.
                if (probe || senders_gone) && !refreshed {
                    refreshed = true;
                    match ring.refresh() {
                        Ok(0) => {}
                        Ok(_) => continue,
                        Err(_) => {
                            side.poison();
                            return Err(TryRecvError::Disconnected);
                        }
                    }
                }
                if senders_gone {
                    return Err(TryRecvError::Disconnected);
                }
                if !side.peers_gone(Role::Sender, probe) {
                    return Err(TryRecvError::Empty);
                }
                senders_gone = true;
                refreshed = false;
            }
        }
    }
}

impl<T: Pod> SpscSender<T> {
    fn side(&self) -> &Side {
        &self.side
    }

    fn ring_len(&self) -> u64 {
        self.ring.len()
    }

    common_methods!();

    /// Sends without blocking.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] or [`TrySendError::Disconnected`], with the
    /// message.
    pub fn try_send(&mut self, msg: T) -> Result<(), TrySendError<T>> {
        spsc_try_send(&mut self.ring, &self.side, msg, true)
    }

    /// Sends, blocking while the channel is full.
    ///
    /// # Errors
    ///
    /// [`SendError`] with the message once the receiver is gone.
    pub fn send(&mut self, msg: T) -> Result<(), SendError<T>> {
        self.send_until(msg, None)
            .map_err(|e| SendError(e.into_inner()))
    }

    /// Sends, blocking for at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`SendTimeoutError`] with the message.
    pub fn send_timeout(&mut self, msg: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.send_until(msg, Instant::now().checked_add(timeout))
    }

    /// Sends, blocking until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// [`SendTimeoutError`] with the message.
    pub fn send_deadline(&mut self, msg: T, deadline: Instant) -> Result<(), SendTimeoutError<T>> {
        self.send_until(msg, Some(deadline))
    }

    fn send_until(&mut self, msg: T, deadline: Option<Instant>) -> Result<(), SendTimeoutError<T>> {
        let (ring, side) = (&mut self.ring, &self.side);
        side.send_blocking(msg, deadline, |m, probe| {
            spsc_try_send(ring, side, m, probe)
        })
    }

    /// Sends as many of `msgs` as fit now, publishing them with one store
    /// and one wakeup; returns how many were sent (0 when full).
    ///
    /// # Errors
    ///
    /// [`TrySendError::Disconnected`] (holding how many were sent: 0) once
    /// the receiver is gone.
    pub fn try_send_batch(&mut self, msgs: &[T]) -> Result<usize, TrySendError<usize>> {
        let side = &self.side;
        if side.corrupted() || side.peers_gone(Role::Receiver, false) {
            return Err(TrySendError::Disconnected(0));
        }
        // SAFETY: each payload is an SPSC slot of this layout, holding a bare
        // `T` (see `slot_shape`); `i < msgs.len()` because at most
        // `msgs.len()` slots are asked for.
        let wrote = self.ring.write_batch(msgs.len() as u64, |i, p| unsafe {
            write_bare(p, &msgs[i as usize])
        });
        match wrote {
            Ok(0) if side.peers_gone(Role::Receiver, true) => Err(TrySendError::Disconnected(0)),
            Ok(n) => {
                if n > 0 {
                    side.not_empty().notify_one();
                }
                Ok(n as usize)
            }
            Err(_) => {
                side.poison();
                Err(TrySendError::Disconnected(0))
            }
        }
    }

    /// Sends every message of `msgs`, in batches, blocking while full.
    ///
    /// # Errors
    ///
    /// [`SendError`] holding how many were sent before the receiver went.
    pub fn send_batch(&mut self, msgs: &[T]) -> Result<(), SendError<usize>> {
        let mut sent = 0;
        while sent < msgs.len() {
            let n = match self.try_send_batch(&msgs[sent..]) {
                Ok(0) => {
                    // Full: wait for room for one, then batch again.
                    let (ring, side) = (&mut self.ring, &self.side);
                    side.send_blocking(msgs[sent], None, |m, probe| {
                        spsc_try_send(ring, side, m, probe)
                    })
                    .map_err(|_| SendError(sent))?;
                    1
                }
                Ok(n) => n,
                Err(_) => return Err(SendError(sent)),
            };
            sent += n;
        }
        Ok(())
    }
}

impl<T: Pod> SpscReceiver<T> {
    fn side(&self) -> &Side {
        &self.side
    }

    fn ring_len(&self) -> u64 {
        self.ring.len()
    }

    common_methods!();

    /// Receives without blocking.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`], or [`TryRecvError::Disconnected`] once the
    /// channel is empty and the sender is gone.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        spsc_try_recv(&mut self.ring, &self.side, true)
    }

    /// Receives, blocking while the channel is empty.
    ///
    /// # Errors
    ///
    /// [`RecvError`] once the channel is empty and the sender is gone.
    pub fn recv(&mut self) -> Result<T, RecvError> {
        self.recv_until(None).map_err(|_| RecvError)
    }

    /// Receives, blocking for at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.recv_until(Instant::now().checked_add(timeout))
    }

    /// Receives, blocking until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError`].
    pub fn recv_deadline(&mut self, deadline: Instant) -> Result<T, RecvTimeoutError> {
        self.recv_until(Some(deadline))
    }

    fn recv_until(&mut self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        let (ring, side) = (&mut self.ring, &self.side);
        side.recv_blocking(deadline, |probe| spsc_try_recv(ring, side, probe))
    }

    /// Appends up to `max` ready messages to `out`, freeing their slots with
    /// one store and one wakeup; returns how many (0 when empty).
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Disconnected`] once the channel is empty and the
    /// sender is gone.
    pub fn try_recv_batch(&mut self, out: &mut Vec<T>, max: usize) -> Result<usize, TryRecvError> {
        if max == 0 {
            return Ok(0);
        }
        let side = &self.side;
        if side.corrupted() {
            return Err(TryRecvError::Disconnected);
        }
        let before = out.len();
        // SAFETY: each payload is a published SPSC slot of this layout, made
        // for `T`.
        let read = self
            .ring
            .read_batch(max as u64, |_, p| out.push(unsafe { read_bare::<T>(p) }));
        if read.is_err() {
            out.truncate(before);
            side.poison();
            return Err(TryRecvError::Disconnected);
        }
        let n = out.len() - before;
        if n > 0 {
            side.not_full().notify_one();
            return Ok(n);
        }
        match spsc_try_recv(&mut self.ring, side, true) {
            Ok(v) => {
                out.push(v);
                Ok(1)
            }
            Err(TryRecvError::Empty) => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// A blocking iterator that ends when the channel disconnects.
    pub fn iter(&mut self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(move || self.recv().ok())
    }
}

macro_rules! debug_as {
    ($($ty:ident),*) => {$(
        impl<T> fmt::Debug for $ty<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($ty), " { .. }"))
            }
        }
    )*};
}

debug_as!(Sender, Receiver, SpscSender, SpscReceiver);
