//! Publish/subscribe between processes: a [`Topic`] at a `shm:` or
//! `file:` address has one [`Publisher`] and any number of
//! [`Subscriber`]s, and every subscriber receives every message published
//! after it joined (plus, if asked, the last few before). Each message is
//! written once into the segment, whatever the number of subscribers.
//! [`Builder::publisher`] and [`Builder::subscriber`] take the ends at
//! any address, `zenoh:` included (with the `zenoh` feature: across
//! machines, see [`Builder::publisher`] for what Zenoh carries).
//!
//! # Slow subscribers
//!
//! A [`Policy`] chosen at creation:
//!
//! - [`Policy::Block`] (the default): the publisher waits (with `try_`,
//!   `_timeout` and `_deadline` forms) until the slowest live subscriber
//!   has room, so nothing is lost; but a live subscriber that never reads
//!   stalls the publisher (unlike `tokio::sync::broadcast`, whose sender
//!   never waits: that is [`Policy::Overwrite`]). Subscribers read in
//!   place: [`Subscriber::recv_ref`] lends the message where it lies in
//!   the segment.
//! - [`Policy::Overwrite`]: the publisher never waits. A subscriber that
//!   falls a ring behind skips to the oldest message the ring still holds
//!   after the publisher's next write, and gets [`TopicRecvError::Lagged`]
//!   with the number it lost (again if it is lapped again). It never
//!   reads a torn message: each read copies the message out and checks the
//!   slot's stamp before and after, and a copy that raced with an overwrite
//!   is reported as lost, never returned. (So under this policy
//!   `recv_ref` lends a private copy, not the slot. The copy races with
//!   the publisher's writes, as a seqlock's reads do, e.g. crossbeam's
//!   `AtomicCell`: the stamp check, not the copy, decides what is used.)
//!
//! # Forked children
//!
//! A child forked without exec inherits copies of the handles. Dropping
//! them there does nothing; using them is a second publisher, or moves the
//! parent's subscriber cursor: open the topic again in the child.
//!
//! # Crashes and leaving
//!
//! - A subscriber that dies never blocks the publisher: when the publisher
//!   would wait for it, it checks the subscriber's liveness lock and drops
//!   its cursor if it is gone.
//! - When the publisher dies (or drops its handle), subscribers read what
//!   was published and then get [`TopicRecvError::Disconnected`]. Any
//!   process can then take over with [`Topic::publisher`]: the segment
//!   allows one live publisher at a time, and a dead one is found by its
//!   liveness lock. The new publisher continues the numbering; subscribers
//!   that saw `Disconnected` simply receive again.
//! - The number of subscribers is limited by [`Builder::max_subscribers`]
//!   (at most 31: a segment has 32 participant entries and the publisher
//!   takes one); a subscriber past it gets [`AttachError::TooMany`].
//!
//! # Examples
//!
//! ```
//! use shmlane::ipc::{Builder, Policy, TopicRecvError};
//!
//! let name = format!("shm:doc-topic-{}", std::process::id());
//! let topic = Builder::new(&name)?.capacity(4).policy(Policy::Overwrite).create_topic::<u64>()?;
//! let publisher = topic.publisher()?;
//! let (mut a, mut b) = (topic.subscriber()?, topic.subscriber()?);
//! for price in [100, 101, 102] {
//!     publisher.send(price)?;
//! }
//! assert_eq!(a.recv()?, 100);
//! assert_eq!(b.try_iter().collect::<Vec<_>>(), [100, 101, 102]);
//! // Six more through a ring of four: both fall behind.
//! for price in 103..109 {
//!     publisher.send(price)?;
//! }
//! assert!(matches!(a.recv(), Err(TopicRecvError::Lagged(5))));
//! assert_eq!(a.recv()?, 106);
//! assert!(matches!(b.recv(), Err(TopicRecvError::Lagged(3))));
//! drop(publisher);
//! assert_eq!(b.try_iter().collect::<Vec<_>>(), [106, 107, 108]);
//! assert!(matches!(b.recv(), Err(TopicRecvError::Disconnected)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::error;
use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shmlane_codec::archive::{CopyBuf, Scratch};
use shmlane_ring::broadcast::{self, ReadError};
use shmlane_ring::CURSORS;
use shmlane_semaphore::{Phase, WaitStrategy};

use super::builder::{meta_len, Target};
use super::port::{Failed, Tried};
use super::ConnectError;
use super::{
    AttachError, Builder, CreateError, EncodeError, InvalidMessage, Message, OpenError, RingKind,
    Role, Segment, Side, Trust, STEP,
};
use crate::transport::{FrameReceiver, FrameRecvError, FrameSendError, FrameSender};

/// What a topic's publisher does when a subscriber has not read the
/// oldest message the ring holds (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Wait for the slowest live subscriber.
    #[default]
    Block,
    /// Never wait; a lapped subscriber is told how many messages it lost.
    Overwrite,
}

/// The most subscribers a topic allows (a segment's participant table,
/// less the publisher's entry).
pub const MAX_SUBSCRIBERS: usize = CURSORS - 1;

impl Builder {
    /// What the publisher of a topic made by
    /// [`create_topic`](Self::create_topic) does about slow subscribers
    /// (default [`Policy::Block`]).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// How many messages published before a subscriber joined it receives
    /// first, as far as the ring still holds them (default 0; at most the
    /// capacity, and at most one less than the ring's slot count, the
    /// capacity rounded up to a power of two: the publisher may be writing
    /// the oldest slot as the subscriber joins). A subscriber-side setting:
    /// each opener chooses its own.
    pub fn history(mut self, messages: usize) -> Self {
        self.history = messages as u64;
        self
    }

    /// How many subscribers a topic made by
    /// [`create_topic`](Self::create_topic) allows at once (1 to
    /// [`MAX_SUBSCRIBERS`], the default).
    pub fn max_subscribers(mut self, subscribers: usize) -> Self {
        self.max_subscribers = subscribers;
        self
    }

    fn topic_kind(&self) -> RingKind {
        RingKind::Broadcast {
            overwrite: self.policy == Policy::Overwrite,
            max_subscribers: self.max_subscribers.min(MAX_SUBSCRIBERS) as u8,
        }
    }

    /// Creates a publish/subscribe topic for messages of kind `M`. Settings
    /// as for [`create`](Self::create), plus [`policy`](Self::policy) and
    /// [`max_subscribers`](Self::max_subscribers).
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create); a subscriber limit of 0 or past
    /// [`MAX_SUBSCRIBERS`] is [`CreateError::Layout`].
    pub fn create_topic<M: Message>(&self) -> Result<Topic<M>, CreateError> {
        shmlane_semaphore::prepare_barriers();
        if self.max_subscribers == 0 || self.max_subscribers > MAX_SUBSCRIBERS {
            return Err(CreateError::Layout(
                shmlane_ring::LayoutError::CapacityTooLarge {
                    capacity: self.max_subscribers as u64,
                },
            ));
        }
        let kind = self.topic_kind();
        if !matches!(self.target, Target::Address(_) | Target::Memfd) {
            return Err(CreateError::Os(not_a_segment()));
        }
        let seg =
            self.create_segment::<M>(kind, "an inherited topic already exists: use open_topic()")?;
        Ok(Topic::new(seg, self))
    }

    /// Opens an existing topic for messages of kind `M`, adopting its
    /// capacity, policy and message size.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open); a segment that is a channel, not a topic,
    /// is [`OpenError::LayoutMismatch`] on the ring kind.
    pub fn open_topic<M: Message>(&self) -> Result<Topic<M>, OpenError> {
        if let Target::Frames(_) = self.target {
            return Err(OpenError::Os(not_a_segment()));
        }
        let seg = self.open_segment::<M>()?;
        let RingKind::Broadcast { .. } = seg.layout().kind() else {
            return Err(OpenError::LayoutMismatch {
                field: "ring kind",
                detail: "the segment is a channel, not a topic: open it with Builder::open".into(),
            });
        };
        Ok(Topic::new(seg, self))
    }
}

impl Builder {
    /// A publisher at this builder's address, whatever the mechanism (the
    /// topic's counterpart of [`sender`](Self::sender)):
    ///
    /// - `shm:`, `file:`, `sysv:`: opens the topic, or creates it with
    ///   this builder's settings, and takes its publisher;
    /// - `zenoh:KEY` (with the `zenoh` feature): publishes on the key.
    ///   It waits for no subscriber; messages published while none is
    ///   there go nowhere, as on a topic in a segment. It blocks while
    ///   the path to a subscriber is full (Zenoh's congestion control
    ///   `Block`), like [`Policy::Block`]; [`Policy::Overwrite`] and
    ///   [`history`](Self::history) are not carried over Zenoh and are
    ///   refused. A subscriber of another message type stops it
    ///   ([`PublishError::Io`], with the gateway's error inside).
    ///
    /// ```
    /// use shmlane::ipc::Builder;
    ///
    /// let b = Builder::new(&format!("shm:doc-publisher-{}", std::process::id()))?;
    /// let publisher = b.publisher::<u64>()?;
    /// let mut subscriber = b.subscriber::<u64>()?;
    /// publisher.send(42)?;
    /// assert_eq!(subscriber.recv()?, 42);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConnectError`]: as [`create_topic`](Self::create_topic),
    /// [`open_topic`](Self::open_topic) and [`Topic::publisher`]; for a
    /// kernel transport other than `zenoh:`,
    /// [`transport::OpenError::Unsupported`](crate::transport::OpenError::Unsupported).
    pub fn publisher<M: Message>(&self) -> Result<Publisher<M>, ConnectError> {
        match &self.target {
            Target::Frames(addr) => {
                self.zenoh_topic_settings(addr)?;
                let tx = FrameSender::publish(addr, &self.transport_options::<M>())?;
                Ok(Publisher {
                    end: PubEnd::Frames(Mutex::new(FramePub {
                        tx,
                        enc: Vec::new(),
                        scratch: None,
                        published: 0,
                    })),
                    _msg: PhantomData,
                })
            }
            _ => Ok(self.topic::<M>()?.publisher()?),
        }
    }

    /// A subscriber at this builder's address, whatever the mechanism (the
    /// topic's counterpart of [`receiver`](Self::receiver)): on `shm:`,
    /// `file:`, `sysv:` the topic's, opened or created as
    /// [`publisher`](Self::publisher) does; on `zenoh:KEY` a subscriber
    /// of the key, which gets every message published after it joined and
    /// checks each as a subscriber in a segment does (always validated).
    /// It reports [`TopicRecvError::Disconnected`] once every publisher
    /// that came is gone and its messages are read (not before one came);
    /// a new publisher may come after.
    ///
    /// # Errors
    ///
    /// As [`publisher`](Self::publisher).
    pub fn subscriber<M: Message>(&self) -> Result<Subscriber<M>, ConnectError> {
        match &self.target {
            Target::Frames(addr) => {
                self.zenoh_topic_settings(addr)?;
                let rx = FrameReceiver::subscribe(addr, &self.transport_options::<M>())?;
                Ok(Subscriber {
                    end: SubEnd::Frames(FrameSub {
                        rx,
                        buf: Vec::new(),
                    }),
                    // Frames come from anyone who reaches the key: always
                    // validated.
                    trust: if self.trust.validates() {
                        self.trust
                    } else {
                        Trust::validate()
                    },
                    copy: CopyBuf::new(),
                    _msg: PhantomData,
                })
            }
            _ => Ok(self.topic::<M>()?.subscriber()?),
        }
    }

    /// The topic at this builder's address: opened, or created.
    fn topic<M: Message>(&self) -> Result<Topic<M>, ConnectError> {
        loop {
            match self.open_topic::<M>() {
                Err(OpenError::NotFound(_)) => match self.create_topic::<M>() {
                    // Created meanwhile by another process: open theirs.
                    Err(CreateError::AlreadyExists(_)) => continue,
                    other => return Ok(other?),
                },
                other => return Ok(other?),
            }
        }
    }

    /// Refuses the topic settings Zenoh does not carry.
    fn zenoh_topic_settings(&self, addr: &crate::transport::Address) -> Result<(), ConnectError> {
        let refuse = |setting, hint| ConnectError::Unsupported {
            setting,
            address: addr.to_string(),
            hint,
        };
        if self.policy == Policy::Overwrite {
            return Err(refuse(
                "policy",
                "a zenoh: topic blocks while a subscriber's path is full (Policy::Block)",
            ));
        }
        if self.history > 0 {
            return Err(refuse(
                "history",
                "a zenoh: subscriber gets what is published after it joined",
            ));
        }
        Ok(())
    }
}

fn not_a_segment() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        "a topic lives in shared memory: use a shm: or file: address (or a memfd)",
    )
}

/// A publish/subscribe topic in a segment: makes its [`Publisher`] and
/// [`Subscriber`]s (see the [module docs](self)).
pub struct Topic<M: Message> {
    seg: Arc<Segment>,
    strategy: WaitStrategy,
    trust: Trust,
    history: u64,
    _msg: PhantomData<fn(M) -> M>,
}

impl<M: Message> fmt::Debug for Topic<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Topic").field("segment", &self.seg).finish()
    }
}

impl<M: Message> Topic<M> {
    fn new(seg: Segment, builder: &Builder) -> Self {
        Self {
            seg: Arc::new(seg),
            strategy: builder.strategy,
            trust: builder.trust,
            history: builder.history,
            _msg: PhantomData,
        }
    }

    /// The slow-subscriber policy.
    pub fn policy(&self) -> Policy {
        match self.seg.layout().kind() {
            RingKind::Broadcast {
                overwrite: true, ..
            } => Policy::Overwrite,
            _ => Policy::Block,
        }
    }

    /// How many subscribers the topic allows at once.
    pub fn max_subscribers(&self) -> usize {
        match self.seg.layout().kind() {
            RingKind::Broadcast {
                max_subscribers, ..
            } => usize::from(max_subscribers),
            _ => 0,
        }
    }

    /// How many messages the ring holds for each subscriber.
    pub fn capacity(&self) -> usize {
        self.seg.layout().capacity() as usize
    }

    /// The largest message the topic carries, in encoded bytes.
    pub fn max_message_len(&self) -> usize {
        self.seg.layout().slot_size() - meta_len::<M>(self.seg.layout().kind())
    }

    /// Live subscribers now (a scan of the participant table).
    pub fn subscribers(&self) -> usize {
        self.seg.live_count(Role::Receiver) as usize
    }

    /// The segment underneath (for inspection).
    pub fn segment(&self) -> &Segment {
        &self.seg
    }

    fn side(&self, role: Role) -> Result<Side, AttachError> {
        let att = self.seg.attach(role, role == Role::Sender);
        let att = match att {
            Err(AttachError::RoleTaken { .. }) => {
                return Err(AttachError::TooMany {
                    role: "publisher",
                    max: 1,
                })
            }
            other => other?,
        };
        Ok(Side::new(
            att,
            self.strategy,
            self.trust,
            meta_len::<M>(self.seg.layout().kind()),
            self.seg.layout().slot_size(),
        ))
    }

    /// The topic's publisher: one live one at a time, in any process. A
    /// new one continues after a predecessor that died or left.
    ///
    /// # Errors
    ///
    /// [`AttachError::TooMany`] while another publisher lives; a full
    /// participant table.
    pub fn publisher(&self) -> Result<Publisher<M>, AttachError> {
        let side = self.side(Role::Sender)?;
        let (base, len) = self.seg.ring_region();
        // SAFETY: the region is the segment's validated ring region, kept
        // mapped by the attachment in `side` as long as the handle lives;
        // the exclusive attach makes this the only live publisher.
        let ring = unsafe { broadcast::Publisher::attach(base, len, self.seg.layout()) }
            .expect("validated layout");
        Ok(Publisher {
            end: PubEnd::Ring {
                side,
                state: Mutex::new(PubState {
                    ring,
                    scratch: None,
                }),
            },
            _msg: PhantomData,
        })
    }

    /// A new subscriber: it receives every message published from now on
    /// (and the last [`history`](Builder::history) before).
    ///
    /// # Errors
    ///
    /// [`AttachError::TooMany`] past the topic's subscriber limit; a full
    /// participant table.
    pub fn subscriber(&self) -> Result<Subscriber<M>, AttachError> {
        let side = self.side(Role::Receiver)?;
        // Racing joiners may both count each other and both back off,
        // which is safe; neither can slip past the limit.
        if side.seg().live_count(Role::Receiver) as usize > self.max_subscribers() {
            return Err(AttachError::TooMany {
                role: "subscriber",
                max: self.max_subscribers() as u32,
            });
        }
        let (base, len) = self.seg.ring_region();
        let owner = side.att.owner_id();
        // The attachment's participant entry is this subscriber's alone.
        let index = (owner & 0x3f) as usize - 1;
        // SAFETY: as in `publisher`; the participant entry `index` is held
        // by this attachment, so no other subscriber uses its cursor.
        let ring = unsafe {
            broadcast::Subscriber::join(base, len, self.seg.layout(), index, owner, self.history)
        }
        .expect("validated layout");
        Ok(Subscriber {
            trust: side.trust,
            end: SubEnd::Ring(RingSub { side, ring }),
            copy: CopyBuf::new(),
            _msg: PhantomData,
        })
    }
}

struct PubState {
    ring: broadcast::Publisher,
    scratch: Option<Scratch>,
}

/// A publisher over a frame transport (`zenoh:`).
struct FramePub {
    tx: FrameSender,
    /// The encoding buffer: the transport's max frame.
    enc: Vec<u8>,
    scratch: Option<Scratch>,
    published: u64,
}

enum PubEnd {
    /// In a segment: its broadcast ring.
    Ring {
        side: Side,
        state: Mutex<PubState>,
    },
    Frames(Mutex<FramePub>),
}

/// The publishing end of a [`Topic`] (or of a `zenoh:` topic, from
/// [`Builder::publisher`]). `Send` and `Sync`: threads may share it (they
/// take turns).
pub struct Publisher<M: Message> {
    end: PubEnd,
    _msg: PhantomData<fn(M)>,
}

impl<M: Message> fmt::Debug for Publisher<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher").finish_non_exhaustive()
    }
}

/// Why a message was not published.
#[derive(Debug)]
#[non_exhaustive]
pub enum PublishError {
    /// A live subscriber has not read the oldest message the ring holds
    /// (block policy, `try_send` only).
    Full,
    /// The ring stayed full until the deadline (block policy).
    Timeout,
    /// The message could not be encoded into a slot (too large for the
    /// topic's [`message_size`](Builder::message_size), say); nothing was
    /// published.
    Encode(EncodeError),
    /// The segment is broken (truncated by a peer): create a new topic.
    Broken,
    /// The transport failed (`zenoh:`), or refused the message: a
    /// subscriber of another message type is on the key (the gateway's
    /// error inside).
    Io(std::io::Error),
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full => f.write_str(
                "a subscriber has not read the oldest message yet (Policy::Block); \
                 wait with send, or choose Policy::Overwrite",
            ),
            Self::Timeout => f.write_str("timed out waiting for the slowest subscriber"),
            Self::Encode(e) => write!(f, "{e}"),
            Self::Broken => f.write_str("the topic's segment is broken (truncated by a peer)"),
            Self::Io(e) => write!(f, "{e}"),
        }
    }
}

impl error::Error for PublishError {
    fn source(&self) -> Option<&(dyn error::Error + 'static)> {
        match self {
            Self::Encode(e) => Some(e),
            Self::Io(e) => e.source(),
            _ => None,
        }
    }
}

impl<M: Message> Publisher<M> {
    /// One attempt: publishes `msg` if there is room.
    fn attempt(
        side: &Side,
        st: &mut PubState,
        msg: &M::Input<'_>,
        probe: bool,
    ) -> Tried<EncodeError> {
        if side.corrupted() {
            return Tried::Gone;
        }
        let seg = side.seg();
        // Liveness checks (a lock probe each) at most every probe interval.
        let check = probe && side.probe_due();
        let mut dead = |who| check && seg.owner_is_dead(who);
        if st.ring.room(&mut dead).is_err() {
            if probe && side.truncated() {
                side.poison();
                return Tried::Gone;
            }
            return Tried::Full;
        }
        let (meta, cap) = (side.meta, side.cap);
        let scratch = &mut st.scratch;
        let mut failed = None;
        let published = st.ring.publish_with(|slot| {
            // SAFETY: the slot's payload is `slot_size >= meta + cap` bytes
            // (`side`), aligned to at least 8, and the publisher's to write
            // until it publishes.
            let buf = unsafe { std::slice::from_raw_parts_mut(slot.add(meta), cap) };
            match M::encode(msg, buf, scratch) {
                Ok(len) => {
                    // SAFETY: as above; the length word is the slot's first 8
                    // bytes.
                    unsafe { slot.cast::<u64>().write(len as u64) };
                    true
                }
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        });
        if !published {
            return Tried::Rejected(failed.expect("publish_with failed only if encode did"));
        }
        side.not_empty().notify_all();
        Tried::Done
    }

    fn send_until(&self, msg: M::Input<'_>, deadline: Option<Instant>) -> Result<(), PublishError> {
        let (side, state) = match &self.end {
            PubEnd::Ring { side, state } => (side, state),
            PubEnd::Frames(f) => return Self::send_frame(f, &msg, deadline, false),
        };
        // The lock is held for one attempt at a time, not across the wait:
        // another thread's `try_send` is never stuck behind a waiting send.
        side.wait_send(deadline, |probe| {
            let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
            Self::attempt(side, &mut st, &msg, probe)
        })
        .map_err(|e| match e {
            Failed::Timeout => PublishError::Timeout,
            Failed::Gone => PublishError::Broken,
            Failed::Rejected(e) => PublishError::Encode(e),
        })
    }

    /// Publishes over a frame transport (`try_` with `now` as the
    /// deadline: a full path is `Full`, not `Timeout`).
    fn send_frame(
        f: &Mutex<FramePub>,
        msg: &M::Input<'_>,
        deadline: Option<Instant>,
        is_try: bool,
    ) -> Result<(), PublishError> {
        let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
        let f = &mut *f;
        // Raw bytes and Pod values go as they are (see `FramesTx::send`).
        let sent = match M::as_bytes(msg) {
            Some(bytes) => f.tx.send(bytes, deadline),
            None => {
                let max = f.tx.max_frame();
                if f.enc.len() != max {
                    f.enc.resize(max, 0);
                }
                let len =
                    M::encode(msg, &mut f.enc, &mut f.scratch).map_err(PublishError::Encode)?;
                f.tx.send(&f.enc[..len], deadline)
            }
        };
        match sent {
            Ok(()) => {
                f.published += 1;
                Ok(())
            }
            Err(FrameSendError::Timeout) if is_try => Err(PublishError::Full),
            Err(FrameSendError::Timeout) => Err(PublishError::Timeout),
            Err(FrameSendError::TooLarge { len, max }) => {
                Err(PublishError::Encode(EncodeError::TooLarge { len, max }))
            }
            // A publisher is never disconnected; kept for completeness.
            Err(FrameSendError::Disconnected) => {
                Err(PublishError::Io(std::io::ErrorKind::NotConnected.into()))
            }
            Err(FrameSendError::Os(e)) => Err(PublishError::Io(e)),
        }
    }

    /// Publishes `msg` to every subscriber. Under [`Policy::Block`] waits
    /// while the slowest live subscriber has a ring's worth unread; under
    /// [`Policy::Overwrite`] never waits.
    ///
    /// # Errors
    ///
    /// [`PublishError::Encode`] or [`PublishError::Broken`].
    pub fn send(&self, msg: M::Input<'_>) -> Result<(), PublishError> {
        self.send_until(msg, None)
    }

    /// As [`send`](Self::send), but gives up after `timeout`.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send), and [`PublishError::Timeout`].
    pub fn send_timeout(&self, msg: M::Input<'_>, timeout: Duration) -> Result<(), PublishError> {
        self.send_until(msg, Some(Instant::now() + timeout))
    }

    /// As [`send`](Self::send), but gives up at `deadline`.
    ///
    /// # Errors
    ///
    /// As [`send_timeout`](Self::send_timeout).
    pub fn send_deadline(&self, msg: M::Input<'_>, deadline: Instant) -> Result<(), PublishError> {
        self.send_until(msg, Some(deadline))
    }

    /// Publishes `msg` only if no subscriber has to be waited for.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send), and [`PublishError::Full`].
    pub fn try_send(&self, msg: M::Input<'_>) -> Result<(), PublishError> {
        let (side, state) = match &self.end {
            PubEnd::Ring { side, state } => (side, state),
            PubEnd::Frames(f) => return Self::send_frame(f, &msg, Some(Instant::now()), true),
        };
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        // (Held for one attempt at most by any other thread: see `send_until`.)
        match Self::attempt(side, &mut st, &msg, true) {
            Tried::Done => Ok(()),
            Tried::Full => Err(PublishError::Full),
            Tried::Gone => Err(PublishError::Broken),
            Tried::Rejected(e) => Err(PublishError::Encode(e)),
        }
    }

    /// Messages published on the topic so far (by every publisher it had;
    /// on `zenoh:`, by this one).
    pub fn published(&self) -> u64 {
        match &self.end {
            PubEnd::Ring { state, .. } => state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .ring
                .position(),
            PubEnd::Frames(f) => f.lock().unwrap_or_else(|e| e.into_inner()).published,
        }
    }

    /// Live subscribers now (a scan of the participant table; on `zenoh:`,
    /// the subscribers' liveliness tokens this side has heard of).
    pub fn subscribers(&self) -> usize {
        match &self.end {
            PubEnd::Ring { side, .. } => side.seg().live_count(Role::Receiver) as usize,
            PubEnd::Frames(f) => f
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .tx
                .receivers()
                .unwrap_or(0),
        }
    }
}

/// Why a subscriber received nothing.
#[derive(Debug)]
#[non_exhaustive]
pub enum TopicRecvError {
    /// Nothing new was published (`try_recv` only).
    Empty,
    /// Nothing was published before the deadline.
    Timeout,
    /// This many messages were overwritten before this subscriber read them
    /// ([`Policy::Overwrite`]); it goes on with the oldest one still held.
    Lagged(u64),
    /// Everything published was read and the topic has no live publisher.
    /// Not final: a new publisher may take over.
    Disconnected,
    /// The next message was not a valid message of the topic's type; it
    /// was skipped.
    Invalid(InvalidMessage),
    /// The transport failed (`zenoh:`), or a publisher of another message
    /// type came (the gateway's error inside).
    Io(std::io::Error),
}

impl fmt::Display for TopicRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("no new message on the topic"),
            Self::Timeout => f.write_str("timed out waiting for a message on the topic"),
            Self::Lagged(n) => write!(
                f,
                "this subscriber fell behind and {n} messages were overwritten before it read \
                 them (Policy::Overwrite); a larger capacity keeps more"
            ),
            Self::Disconnected => {
                f.write_str("every message was read and the topic has no live publisher")
            }
            Self::Invalid(e) => write!(f, "{e}"),
            Self::Io(e) => write!(f, "{e}"),
        }
    }
}

impl error::Error for TopicRecvError {
    fn source(&self) -> Option<&(dyn error::Error + 'static)> {
        match self {
            Self::Invalid(e) => Some(e),
            Self::Io(e) => e.source(),
            _ => None,
        }
    }
}

/// A subscribing end of a [`Topic`] (or of a `zenoh:` topic, from
/// [`Builder::subscriber`]): receives every message published after it
/// joined. `Send`; one thread receives at a time (`&mut self`).
pub struct Subscriber<M: Message> {
    end: SubEnd,
    trust: Trust,
    /// The private copy of the message being read (overwrite policy,
    /// `Trust::hostile`, or a frame transport).
    copy: CopyBuf,
    _msg: PhantomData<fn() -> M>,
}

enum SubEnd {
    Ring(RingSub),
    Frames(FrameSub),
}

/// A subscriber's cursor on a segment's broadcast ring.
struct RingSub {
    side: Side,
    ring: broadcast::Subscriber,
}

/// A subscriber over a frame transport (`zenoh:`).
struct FrameSub {
    rx: FrameReceiver,
    buf: Vec<u8>,
}

impl<M: Message> fmt::Debug for Subscriber<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Subscriber");
        if let SubEnd::Ring(r) = &self.end {
            d.field("position", &r.ring.position());
        }
        d.finish_non_exhaustive()
    }
}

impl<M: Message> Drop for Subscriber<M> {
    fn drop(&mut self) {
        if let SubEnd::Ring(r) = &mut self.end {
            if r.side.att.is_own_process() {
                r.ring.leave();
                // A publisher waiting for this subscriber looks again.
                r.side.not_full().notify_all();
            }
        }
    }
}

/// Where the message just read lies.
enum Found {
    /// In the slot (block policy): the cursor moves when it is released.
    Slot(NonNull<u8>, usize),
    /// In `copy` (already moved past).
    Copy,
}

impl RingSub {
    /// Reads the next message if one is published.
    fn read(&mut self, copy: &mut CopyBuf) -> Result<Found, TopicRecvError> {
        let (meta, cap) = (self.side.meta, self.side.cap);
        let copies = self.ring.overwrites() || self.side.trust.copies();
        let read = self.ring.try_read(|slot| {
            // SAFETY: the slot's payload holds the length word and `cap`
            // bytes after it (`Topic::side`); under the block policy nobody
            // writes it while our cursor is at it; under overwrite the
            // publisher may, so the length is checked here and the copy is
            // used only if the stamp check after this read passes.
            let len = unsafe { slot.cast::<u64>().read_volatile() };
            if copies && len <= cap as u64 {
                copy.clear();
                // SAFETY: `len <= cap` bytes after the length word are
                // inside the slot.
                let bytes = unsafe { std::slice::from_raw_parts(slot.add(meta), len as usize) };
                copy.extend_from_slice(bytes);
            }
            (slot.wrapping_add(meta).cast_mut(), len)
        });
        match read {
            Ok((at, len)) if len <= cap as u64 => {
                if copies {
                    self.advance();
                    Ok(Found::Copy)
                } else {
                    let at = NonNull::new(at).expect("a slot inside the mapping");
                    Ok(Found::Slot(at, len as usize))
                }
            }
            Ok((_, len)) => {
                self.advance();
                Err(TopicRecvError::Invalid(InvalidMessage::Length {
                    len,
                    max: cap,
                }))
            }
            Err(ReadError::Lagged(n)) => {
                // The cursor moved: a publisher may be waiting for it.
                if !self.ring.overwrites() {
                    self.side.not_full().notify_all();
                }
                Err(TopicRecvError::Lagged(n))
            }
            Err(ReadError::Empty) => Err(TopicRecvError::Empty),
        }
    }

    /// One attempt to read the next message; `Disconnected` once it is
    /// read and the publisher is gone (`probe` as in `Side::wait_send`).
    fn attempt(&mut self, copy: &mut CopyBuf, probe: bool) -> Result<Found, TopicRecvError> {
        match self.read(copy) {
            Err(TopicRecvError::Empty) if self.side.peers_gone(Role::Sender, probe) => {
                // A last message may have come before the publisher left.
                match self.read(copy) {
                    Err(TopicRecvError::Empty) => Err(TopicRecvError::Disconnected),
                    other => other,
                }
            }
            other => other,
        }
    }

    fn advance(&mut self) {
        self.ring.advance();
        if !self.ring.overwrites() {
            self.side.not_full().notify_all();
        }
    }

    /// Reads the next message, waiting until `deadline`.
    fn next(
        &mut self,
        copy: &mut CopyBuf,
        deadline: Option<Instant>,
        wait: bool,
    ) -> Result<Found, TopicRecvError> {
        // A `try_` receive is one attempt, probing for a dead publisher.
        if !wait {
            return self.attempt(copy, true);
        }
        match self.attempt(copy, false) {
            Err(TopicRecvError::Empty) => {}
            done => return done,
        }
        let strategy = self.side.strategy;
        // The wait's condition needs `&mut self`; the eventcount and tally
        // live in the segment, which the attachment keeps mapped.
        let seg = Arc::clone(self.side.att.segment());
        let tally = self.side.att.waiting(false) as *const _;
        let got = strategy.wait_tallied(
            &seg.header().not_empty.0,
            deadline,
            Some(STEP),
            // SAFETY: the tally is in the segment `seg` keeps mapped.
            Some(unsafe { &*tally }),
            |phase| match self.attempt(copy, phase != Phase::Spin) {
                Err(TopicRecvError::Empty) => None,
                done => Some(done),
            },
        );
        got.unwrap_or(Err(TopicRecvError::Timeout))
    }
}

impl FrameSub {
    /// Receives the next frame into `copy`, waiting until `deadline`.
    fn next(
        &mut self,
        copy: &mut CopyBuf,
        deadline: Option<Instant>,
        wait: bool,
    ) -> Result<Found, TopicRecvError> {
        let until = if wait { deadline } else { Some(Instant::now()) };
        match self.rx.recv(&mut self.buf, until) {
            Ok(_) => {
                copy.clear();
                copy.extend_from_slice(&self.buf);
                Ok(Found::Copy)
            }
            Err(FrameRecvError::Timeout) if wait => Err(TopicRecvError::Timeout),
            Err(FrameRecvError::Timeout) => Err(TopicRecvError::Empty),
            Err(FrameRecvError::Disconnected) => Err(TopicRecvError::Disconnected),
            Err(FrameRecvError::Os(e)) => Err(TopicRecvError::Io(e)),
        }
    }
}

impl<M: Message> Subscriber<M> {
    fn next(&mut self, deadline: Option<Instant>, wait: bool) -> Result<Found, TopicRecvError> {
        match &mut self.end {
            SubEnd::Ring(r) => r.next(&mut self.copy, deadline, wait),
            SubEnd::Frames(f) => f.next(&mut self.copy, deadline, wait),
        }
    }

    /// Moves past a message read in its slot.
    fn advance(&mut self) {
        if let SubEnd::Ring(r) = &mut self.end {
            r.advance();
        }
    }

    /// The message `found` names, checked.
    fn target(&self, found: &Found) -> Result<&M::Target, InvalidMessage> {
        let bytes = match *found {
            // SAFETY: the slot's `len <= cap` bytes stay unchanged until the
            // cursor moves past them (block policy), which only happens
            // after the borrow of `self` this returns ends.
            Found::Slot(at, len) => unsafe { std::slice::from_raw_parts(at.as_ptr(), len) },
            Found::Copy => self.copy.as_slice(),
        };
        M::view(bytes, self.trust)
    }

    fn owned(&mut self, found: Found) -> Result<M::Output, TopicRecvError> {
        let out = self
            .target(&found)
            .and_then(M::decode)
            .map_err(TopicRecvError::Invalid);
        if let Found::Slot(..) = found {
            self.advance();
        }
        out
    }

    fn lent(&mut self, found: Found) -> Result<TopicRef<'_, M>, TopicRecvError> {
        match self.target(&found) {
            Ok(target) => {
                let target = NonNull::from(target);
                Ok(TopicRef {
                    target,
                    release: matches!(found, Found::Slot(..)),
                    sub: self,
                })
            }
            Err(e) => {
                if let Found::Slot(..) = found {
                    self.advance();
                }
                Err(TopicRecvError::Invalid(e))
            }
        }
    }

    /// Waits for the next message and returns an owned copy.
    ///
    /// # Errors
    ///
    /// [`TopicRecvError::Lagged`], [`TopicRecvError::Disconnected`] or
    /// [`TopicRecvError::Invalid`].
    pub fn recv(&mut self) -> Result<M::Output, TopicRecvError> {
        let found = self.next(None, true)?;
        self.owned(found)
    }

    /// As [`recv`](Self::recv), without waiting.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv), and [`TopicRecvError::Empty`].
    pub fn try_recv(&mut self) -> Result<M::Output, TopicRecvError> {
        let found = self.next(None, false)?;
        self.owned(found)
    }

    /// As [`recv`](Self::recv), giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv), and [`TopicRecvError::Timeout`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<M::Output, TopicRecvError> {
        let found = self.next(Some(Instant::now() + timeout), true)?;
        self.owned(found)
    }

    /// As [`recv`](Self::recv), giving up at `deadline`.
    ///
    /// # Errors
    ///
    /// As [`recv_timeout`](Self::recv_timeout).
    pub fn recv_deadline(&mut self, deadline: Instant) -> Result<M::Output, TopicRecvError> {
        let found = self.next(Some(deadline), true)?;
        self.owned(found)
    }

    /// Waits for the next message and lends it where it lies: in the
    /// segment under [`Policy::Block`] (the publisher does not overwrite it
    /// until the guard is dropped), in this subscriber's private copy under
    /// [`Policy::Overwrite`] or [`Trust::hostile`].
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv).
    pub fn recv_ref(&mut self) -> Result<TopicRef<'_, M>, TopicRecvError> {
        let found = self.next(None, true)?;
        self.lent(found)
    }

    /// As [`recv_ref`](Self::recv_ref), without waiting.
    ///
    /// # Errors
    ///
    /// As [`try_recv`](Self::try_recv).
    pub fn try_recv_ref(&mut self) -> Result<TopicRef<'_, M>, TopicRecvError> {
        let found = self.next(None, false)?;
        self.lent(found)
    }

    /// As [`recv_ref`](Self::recv_ref), giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// As [`recv_timeout`](Self::recv_timeout).
    pub fn recv_ref_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<TopicRef<'_, M>, TopicRecvError> {
        let found = self.next(Some(Instant::now() + timeout), true)?;
        self.lent(found)
    }

    /// Every message published and not yet read, without waiting (stops
    /// at the first error, a lag included).
    pub fn try_iter(&mut self) -> impl Iterator<Item = M::Output> + '_ {
        std::iter::from_fn(move || self.try_recv().ok())
    }

    /// Messages published that this subscriber has not read yet (on
    /// `zenoh:`, those that arrived).
    pub fn pending(&self) -> u64 {
        match &self.end {
            SubEnd::Ring(r) => r.ring.pending(),
            SubEnd::Frames(f) => f.rx.queued().unwrap_or(0) as u64,
        }
    }
}

/// A message lent by [`Subscriber::recv_ref`]: derefs to it; under
/// [`Policy::Block`] the subscriber moves past it when this is dropped.
pub struct TopicRef<'a, M: Message> {
    target: NonNull<M::Target>,
    release: bool,
    sub: &'a mut Subscriber<M>,
}

impl<M: Message> std::ops::Deref for TopicRef<'_, M> {
    type Target = M::Target;

    fn deref(&self) -> &M::Target {
        // SAFETY: `target` points into the slot (unchanged until `drop`
        // moves the cursor) or the subscriber's copy (unchanged while this
        // guard borrows the subscriber).
        unsafe { self.target.as_ref() }
    }
}

impl<M: Message> Drop for TopicRef<'_, M> {
    fn drop(&mut self) {
        if self.release {
            self.sub.advance();
        }
    }
}

impl<M: Message> fmt::Debug for TopicRef<'_, M>
where
    M::Target: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
