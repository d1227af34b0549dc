//! [`Builder`](super::Builder): settings, then `create` or `open` of a ring.

use std::io;

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use std::time::Duration;

use shmlane_semaphore::WaitStrategy;
use shmlane_shm::{CreateOptions, OpenOptions, Spec, TypeInfo};

use shmlane_codec::archive;

use super::{
    Address, AddressError, Bytes, Channel, CreateError, Message, OpenError, RingKind, Segment,
    Trust, DEFAULT_SLOT,
};

/// Bytes in front of each message in a slot: its length (low 32 bits) and
/// flags; 0 for SPSC Pod slots, which hold the bare `T` (the producer
/// publishes through the ring, so nothing else is needed, and 64-byte
/// messages fill whole cache lines).
pub(super) fn meta_len<M: Message>(kind: RingKind) -> usize {
    if M::KIND == shmlane_codec::kind::POD && kind == RingKind::Spsc {
        0
    } else {
        M::ALIGN.max(8)
    }
}

/// Slot payload size and alignment for messages of up to `len` bytes.
pub(super) fn slot_shape<M: Message>(kind: RingKind, len: usize) -> (usize, usize) {
    let meta = meta_len::<M>(kind);
    let align = meta.max(M::ALIGN);
    // Saturating: an absurd size is refused by the ring layout, not wrapped.
    (meta.saturating_add(len).max(1), align)
}

/// For messages of varying length, `needed` grown so that each slot (its
/// ring header included) fills whole cache lines: a slot being written
/// then never shares a line with one being read. Pod slots stay exact.
pub(super) fn whole_lines<M: Message>(
    kind: RingKind,
    capacity: u64,
    needed: usize,
    align: usize,
) -> usize {
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

/// Fixed-size messages of at least this many bytes start on a cache line
/// of their own in the slots a creator makes (see [`created_align`]).
const LINE_ALIGNED_FROM: usize = 256;

/// The slot alignment a creator of a `kind` ring asks for, given the
/// least `align` that messages of kind `M` need. On an SPSC ring, whose
/// Pod slots hold the bare value, a large fixed-size message starts on a
/// 64-byte line of its own, past the ring's stamp: each slot then fills
/// whole lines, so no two slots share one, and the copies in and out of a
/// slot run on aligned lines (a 4 KiB ping-pong in threads, capacity 2:
/// median 1,170 ns against 1,300 with the value 8 bytes past a line; see
/// `ring_parts`). The line count per slot stays the same for sizes that
/// are multiples of 64. Other rings put a length word in front of every
/// value, which would sit 8 bytes past the line, for more memory per slot:
/// they keep `align`. Openers need only `align` (the header records the
/// one chosen), so segments of either shape open alike.
pub(super) fn created_align<M: Message>(kind: RingKind, align: usize) -> usize {
    match M::fixed_len() {
        Some(n) if n >= LINE_ALIGNED_FROM && meta_len::<M>(kind) == 0 => align.max(64),
        _ => align,
    }
}

/// The fingerprint of `M` as the segment header stores it.
pub(super) fn type_info<M: Message>() -> TypeInfo {
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
/// transport with [`ConnectError::Unsupported`](super::ConnectError::Unsupported) naming the setting, never
/// ignored.
#[derive(Debug, Clone)]
pub struct Builder {
    pub(super) target: Target,
    pub(super) capacity: u64,
    pub(super) slot_size: Option<usize>,
    pub(super) message_size: Option<usize>,
    pub(super) trust: Trust,
    pub(super) kind: RingKind,
    pub(super) mode: u32,
    pub(super) keep: bool,
    pub(super) strategy: WaitStrategy,
    pub(super) open_timeout: Duration,
    pub(super) allow_group_write: bool,
    /// Topics only: the slow-subscriber policy, a subscriber's history,
    /// and the subscriber limit.
    pub(super) policy: super::Policy,
    pub(super) history: u64,
    pub(super) max_subscribers: usize,
    /// Which settings were asked for, so that a kernel transport refuses
    /// them rather than ignore them.
    pub(super) capacity_set: bool,
    pub(super) kind_set: bool,
    pub(super) mode_set: bool,
    #[cfg(feature = "zenoh")]
    pub(super) zenoh_config: Option<shmlane_zenoh::Config>,
    /// The message type a `zenoh:` end announces, when not its own.
    #[cfg(feature = "zenoh")]
    pub(super) announced_type: Option<TypeInfo>,
}

#[derive(Debug, Clone)]
pub(super) enum Target {
    /// `shm:`, `file:` or `sysv:`: a ring.
    Address(shmlane_shm::Address),
    /// Any other address: frames over a kernel transport.
    Frames(Address),
    Memfd,
    Inherited(RawFd),
}

impl Builder {
    pub(super) fn with_target(target: Target) -> Self {
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
            policy: super::Policy::Block,
            history: 0,
            max_subscribers: super::topic::MAX_SUBSCRIBERS,
            capacity_set: false,
            kind_set: false,
            mode_set: false,
            #[cfg(feature = "zenoh")]
            zenoh_config: None,
            #[cfg(feature = "zenoh")]
            announced_type: None,
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
            Address::Sysv(key) => Target::Address(shmlane_shm::Address::Sysv(key)),
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
    ///
    /// Each message goes to the next slot, so a ring's slots are all
    /// touched in turn even when it never holds more than one message.
    /// Where messages are large and at most one or two are in flight (a
    /// request and its reply, a ping-pong), a small capacity keeps the
    /// slots in the cache: a ping-pong between two processes took 1.6x as
    /// long at 1 KiB, and 1.3x at 4 KiB, on channels of 64 slots as on
    /// channels of 2 (`shmlane bench --peers`, `busy, 64 slots` against
    /// `shmlane busy`).
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

    /// The largest encoded message, in bytes, for [`Rkyv`](super::Rkyv) and [`Bytes`](super::Bytes)
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
    /// [`Trust::validate`]): see [`Trust`]. [`Rkyv`](super::Rkyv) messages are
    /// validated (on a private copy for owned receives, in place for
    /// `recv_ref`); [`Trust::hostile`] copies every [`Rkyv`](super::Rkyv) and [`Bytes`](super::Bytes)
    /// message to private memory before use.
    pub fn trust(mut self, trust: Trust) -> Self {
        self.trust = trust;
        self
    }

    pub(super) fn message_len<M: Message>(&self, kind: RingKind) -> usize {
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

    /// The Zenoh session's configuration for a `zenoh:` address (default:
    /// the JSON5 file named by `ZENOH_CONFIG`, else Zenoh's default peer,
    /// which scouts by multicast).
    #[cfg(feature = "zenoh")]
    pub fn zenoh_config(mut self, config: shmlane_zenoh::Config) -> Self {
        self.zenoh_config = Some(config);
        self
    }

    /// The message type a `zenoh:` sender or receiver made by this builder
    /// announces, instead of its own: for a bridge that forwards a typed
    /// channel's messages as bytes ([`open_as_bytes`](Self::open_as_bytes)),
    /// so that the far side's type is checked against the channel's
    /// ([`Segment::type_info`]).
    #[cfg(feature = "zenoh")]
    pub fn announce_type(mut self, ty: TypeInfo) -> Self {
        self.announced_type = Some(ty);
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
        // The process's one-time barrier registration, at creation rather
        // than in the first wait (see `shmlane_semaphore::prepare_barriers`).
        shmlane_semaphore::prepare_barriers();
        if let RingKind::Broadcast { .. } = self.kind {
            return Err(CreateError::Os(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a broadcast ring is a topic, not a channel: use Builder::create_topic",
            )));
        }
        let seg =
            self.create_segment::<M>(self.kind, "an inherited channel already exists: use open()")?;
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
        let seg = self.open_segment::<M>()?;
        if let RingKind::Broadcast { .. } = seg.layout().kind() {
            return Err(OpenError::LayoutMismatch {
                field: "ring kind",
                detail: "the segment is a topic (publish/subscribe), not a channel: \
                         open it with Builder::open_topic"
                    .into(),
            });
        }
        Ok(Channel::new(seg, self.strategy, self.trust))
    }

    /// Opens an existing channel whatever message type it carries, to move
    /// its messages as their encoded bytes: for bridges and recorders,
    /// which forward or store what a typed channel's senders wrote without
    /// knowing the type. The type stays the channel's own
    /// ([`Segment::type_info`]): receivers of the type still check each
    /// message as their [`Trust`] says, so bytes sent here must be what
    /// the type encodes to (an rkyv archive of it, as a typed sender
    /// writes; a bridge forwards those unchanged).
    ///
    /// Channels of raw bytes and of rkyv archives open this way; Pod
    /// channels do not (their SPSC slots hold the bare value, with no
    /// length).
    ///
    /// ```
    /// use shmlane::ipc::{Builder, Bytes, Rkyv};
    /// use shmlane::codec::sample::Order;
    ///
    /// let name = format!("shm:doc-as-bytes-{}", std::process::id());
    /// let typed = Builder::new(&name)?.create::<Rkyv<Order>>()?;
    /// let (tx, rx) = (typed.sender()?, typed.receiver()?);
    /// tx.send(&Order::sample(7))?;
    /// // A tool that does not know `Order` moves it as bytes...
    /// let raw = Builder::new(&name)?.open_as_bytes()?;
    /// assert_eq!(raw.segment().type_info(), typed.segment().type_info());
    /// let bytes: Vec<u8> = raw.receiver()?.recv()?;
    /// // ...and writes it back, where the typed receiver checks it.
    /// raw.sender()?.send(&bytes)?;
    /// assert_eq!(rx.recv_ref()?.id.to_native(), 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open); a Pod channel is
    /// [`OpenError::TypeMismatch`].
    pub fn open_as_bytes(&self) -> Result<Channel<Bytes>, OpenError> {
        let seg = self.open_any_segment()?;
        let meta = match seg.fixed().codec {
            shmlane_codec::kind::BYTES => meta_len::<Bytes>(seg.layout().kind()),
            shmlane_codec::kind::RKYV => archive::ALIGN.max(8),
            _ => {
                return Err(OpenError::TypeMismatch {
                    expected: "bytes or an rkyv archive".into(),
                    found: seg.fixed().type_name(),
                    difference: Some(
                        "a Pod channel is opened with its type (its SPSC slots hold the bare \
                         value, with no length to move it by)"
                            .into(),
                    ),
                })
            }
        };
        if let RingKind::Broadcast { .. } = seg.layout().kind() {
            return Err(OpenError::LayoutMismatch {
                field: "ring kind",
                detail: "the segment is a topic (publish/subscribe), not a channel".into(),
            });
        }
        // The shape the channel's own type checks on open (see
        // `check_slots`): room for the length word and a byte, aligned for it.
        let layout = seg.layout();
        if layout.slot_size() <= meta || layout.slot_align() < meta {
            return Err(OpenError::LayoutMismatch {
                field: "slot size",
                detail: format!(
                    "{} bytes aligned to {}, but its messages need more than {meta} aligned to \
                     {meta}",
                    layout.slot_size(),
                    layout.slot_align()
                ),
            });
        }
        Ok(Channel::with_meta(seg, self.strategy, self.trust, meta))
    }

    /// Creates the segment of a ring of `kind` for messages of kind `M`
    /// (a channel's or a topic's), at this builder's target. `inherited`
    /// is the error for an inherited target, which already exists.
    pub(super) fn create_segment<M: Message>(
        &self,
        kind: RingKind,
        inherited: &'static str,
    ) -> Result<Segment, CreateError> {
        let (needed, slot_align) = slot_shape::<M>(kind, self.message_len::<M>(kind));
        let slot_align = created_align::<M>(kind, slot_align);
        let slot_size = self
            .slot_size
            .unwrap_or_else(|| whole_lines::<M>(kind, self.capacity, needed, slot_align));
        if slot_size < needed {
            return Err(CreateError::SlotTooSmall {
                asked: slot_size,
                needed,
            });
        }
        let spec = Spec {
            kind,
            capacity: self.capacity,
            slot_size,
            slot_align,
            ty: type_info::<M>(),
        };
        Ok(match &self.target {
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
                    inherited,
                )))
            }
            Target::Frames(addr) => return Err(CreateError::Os(frames_only(addr))),
        })
    }

    /// Opens the segment at this builder's target for messages of kind
    /// `M` (a channel's or a topic's), checking its type and slot shape.
    pub(super) fn open_segment<M: Message>(&self) -> Result<Segment, OpenError> {
        let seg = self.open_typed_segment(Some(type_info::<M>()))?;
        check_slots::<M>(&seg)?;
        Ok(seg)
    }

    /// Opens the segment at this builder's target whatever its type (the
    /// caller checks the slots).
    fn open_any_segment(&self) -> Result<Segment, OpenError> {
        self.open_typed_segment(None)
    }

    fn open_typed_segment(&self, ty: Option<TypeInfo>) -> Result<Segment, OpenError> {
        // The process's one-time barrier registration, at creation rather
        // than in the first wait (see `shmlane_semaphore::prepare_barriers`).
        shmlane_semaphore::prepare_barriers();
        let opts = OpenOptions {
            ready_timeout: self.open_timeout,
            allow_group_write: self.allow_group_write,
            ty,
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
                    // over to be consumed; it is owned (and closed) once, here.
                    drop(unsafe { OwnedFd::from_raw_fd(*fd) });
                    seg?
                }
                Target::Memfd => return Err(OpenError::Os(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a memfd segment has no name to open: use Builder::inherited(fd) in the child",
                ))),
                Target::Frames(addr) => return Err(OpenError::Os(frames_only(addr))),
            };
        Ok(seg)
    }
}

/// Whether `seg`'s slots have the shape messages of kind `M` need.
fn check_slots<M: Message>(seg: &Segment) -> Result<(), OpenError> {
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
    Ok(())
}

/// The error of `create`/`open` on an address served by a kernel
/// transport, which has no segment: its ends are made with
/// [`Builder::sender`] and [`Builder::receiver`].
pub(super) fn frames_only(addr: &Address) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{addr} is a kernel transport, not a shared-memory segment: \
             make its ends with Builder::sender() and Builder::receiver()"
        ),
    )
}
