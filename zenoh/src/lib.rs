//! shmlane's Zenoh gateway: frames on a Zenoh key expression, for peers
//! on other machines, with the semantics of shmlane's other frame
//! transports (boundaries, order per sender, deadlines on receive,
//! `Disconnected` once every sender is gone and its frames delivered).
//!
//! A [`ZenohRx`] subscribes to `KEY` and announces itself with a
//! liveliness token `KEY/@shmlane/rx/ID/TAG` (TAG: its message type's
//! [`TypeTag`] hash, or `any`); a [`ZenohTx`] waits (up to its connect
//! timeout) for such a token, refuses to connect when a receiver's tag
//! differs from its own, publishes each frame on `KEY` with
//! `CongestionControl::Block` (a full path slows the sender, nothing is
//! dropped), its 8-byte id as the first frame's attachment, holds a token
//! `KEY/@shmlane/tx/ID/TAG`, and on drop publishes an in-band end marker (a
//! `delete` on `KEY` carrying its id), which travels behind its last
//! frame. A new sender (or publisher) is not returned before each
//! receiver whose token it has seen has heard of it: it asks them on
//! `KEY/@shmlane/known/*` (each receiver answers for itself on
//! `KEY/@shmlane/known/ID`), until all say yes or its connect timeout,
//! counted from the start of `connect`, has passed. So an old sender
//! dropped after a new one is made leaves none of those receivers with
//! no live sender, though its end marker and the new token travel on
//! different links. Not covered: a receiver the new sender had not seen
//! yet (a sender waits for the first receiver's token only; a publisher
//! for none), and one that did not answer in time (it does not run the
//! query, or its reception is blocked by a full queue, or the timeout
//! is short or zero). The receiver counts a sender gone at its end marker, or
//! [`DEATH_GRACE`] after its token disappears (its process died or its
//! link broke: a token may overtake the frames still in flight, as Zenoh
//! sends declarations ahead of data). The receiver's subscriber queues at
//! most `capacity` frames and then blocks Zenoh's reception, which
//! pushes back to the senders. Zenoh closes a link whose blocked
//! publication waited longer than `wait_before_close` (5 s by default),
//! or that heard nothing from its peer for a lease (10 s; a receiver
//! whose queue is full stops Zenoh's reading, keep-alives included),
//! dropping what it had queued. shmlane raises them to an hour and 60 s
//! unless the configuration sets them: a receiver may stop reading for
//! most of a minute and lose nothing (tested with 7 s, which the
//! defaults did not survive); a silent network partition is found within
//! the lease.
//!
//! What Zenoh guarantees, and so this gateway: reliable, ordered delivery
//! per publisher over each hop (TCP links, Block congestion control);
//! nothing end to end: frames a process had queued when it died, or
//! published while no route existed (between a link breaking and Zenoh
//! reconnecting), are lost. Every subscriber under the key gets every
//! frame (a second receiver is a second copy, not a second consumer).
//!
//! Message types: a sender refuses a receiver of another type at connect
//! ([`ZOpenError::TypeMismatch`]), and stops sending while one that came
//! later is on the key ([`ZSendError::TypeMismatch`]); a receiver reports
//! each sender of another type once ([`ZRecvError::TypeMismatch`]) and
//! does not wait for it. A receiver that joins while a sender is
//! publishing can be handed that sender's frames until the sender sees
//! its token (the subscriber is declared first). The channel API
//! validates every frame from a kernel transport, this one included, so
//! such a frame is refused or read as a valid value of the receiver's
//! type, never read out of bounds.
//!
//! Each endpoint opens its own session (sharing one would let a receiver
//! whose queue is full stall every other endpoint of the process, as
//! reception blocks to push back), so a configuration that listens on a
//! fixed port serves one endpoint per process. Sessions are configured
//! by a [`Config`]: the one in [`ZOptions`], else
//! the file named by `ZENOH_CONFIG`, else Zenoh's default (a peer that
//! scouts by multicast). Zenoh's runtime cannot be driven from a Tokio
//! current-thread runtime: make and use these from plain threads.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use zenoh::bytes::ZBytes;
use zenoh::liveliness::LivelinessToken;
use zenoh::pubsub::{Publisher, Subscriber};
use zenoh::qos::CongestionControl;
use zenoh::query::{ConsolidationMode, Query, QueryTarget, Queryable};
use zenoh::sample::{Sample, SampleKind};
use zenoh::{Session, Wait};

pub use zenoh::Config;

/// How long after a sender's token disappears its frames may still be
/// arriving (a token travels ahead of the data); it counts as gone then.
pub const DEATH_GRACE: Duration = Duration::from_millis(500);
/// The default largest frame: 1 MiB, as the stream transports.
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;
/// The default receive queue, in frames.
pub const DEFAULT_CAPACITY: usize = 1024;
/// Waits are cut into steps this long to look at the senders.
const STEP: Duration = Duration::from_millis(10);

/// Settings for a Zenoh endpoint.
#[derive(Debug, Clone)]
pub struct ZOptions {
    /// The session's configuration (`None`: `ZENOH_CONFIG`'s file, else
    /// Zenoh's default).
    pub config: Option<Config>,
    /// The largest frame sent or accepted.
    pub max_frame: usize,
    /// Frames the receiver queues before it pushes back.
    pub capacity: usize,
    /// How long a sender waits for a receiver to appear, and then (the
    /// same budget, counted from the start) for the receivers it has seen
    /// to say they heard of it (see the module docs).
    pub connect_timeout: Duration,
    /// The message type this endpoint carries (`None`: any). Senders and
    /// receivers whose tags differ refuse each other.
    pub type_tag: Option<TypeTag>,
}

/// What a receiver and a sender check they agree on: a hash of the
/// message type's fingerprint, announced in each endpoint's liveliness
/// token, and the type's name for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeTag {
    /// The type's name, as this side knows it.
    pub name: String,
    /// A hash of what both sides must agree on (the structure, size,
    /// alignment and codec; not the name).
    pub hash: u64,
}

impl TypeTag {
    /// A tag from a name and the parts of a fingerprint that must agree,
    /// hashed with FNV-1a.
    pub fn new(name: &str, parts: &[&[u8]]) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for part in parts {
            // The length first, so that parts cannot run into each other.
            for b in (part.len() as u64).to_le_bytes().iter().chain(part.iter()) {
                h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
            }
        }
        Self {
            name: name.to_owned(),
            hash: h,
        }
    }
}

/// A tag as a token's last chunk: 16 hex digits, or `any`.
fn tag_chunk(tag: Option<&TypeTag>) -> String {
    tag.map_or_else(|| "any".to_owned(), |t| format!("{:016x}", t.hash))
}

/// A token's tag: `None` for `any` (or a chunk that is not a tag, which
/// no shmlane endpoint writes).
fn chunk_tag(chunk: &str) -> Option<u64> {
    u64::from_str_radix(chunk, 16).ok()
}

/// A tag's type name for messages (empty for none).
fn tag_name(tag: Option<&TypeTag>) -> String {
    tag.map_or_else(String::new, |t| t.name.clone())
}

/// Whether endpoints with these tags may talk.
fn agree(ours: Option<&TypeTag>, theirs: Option<u64>) -> bool {
    match (ours, theirs) {
        (Some(o), Some(t)) => o.hash == t,
        _ => true,
    }
}

impl Default for ZOptions {
    fn default() -> Self {
        Self {
            config: None,
            max_frame: DEFAULT_MAX_FRAME,
            capacity: DEFAULT_CAPACITY,
            connect_timeout: Duration::from_secs(5),
            type_tag: None,
        }
    }
}

/// Why an endpoint could not be made.
#[derive(Debug)]
#[non_exhaustive]
pub enum ZOpenError {
    /// The key expression is empty, has a wildcard or a `@` chunk, or is
    /// not a valid key expression.
    BadKey {
        /// The key as written.
        key: String,
        /// What is wrong.
        why: String,
    },
    /// The configuration could not be read or used.
    Config(String),
    /// No receiver's token appeared within the connect timeout.
    NobodyListens {
        /// `zenoh:KEY`.
        address: String,
        /// How long the sender waited.
        waited: Duration,
    },
    /// A receiver on the key carries another message type.
    TypeMismatch {
        /// `zenoh:KEY`.
        address: String,
        /// This sender's type.
        ours: String,
        /// The receiver's type hash (its name is not announced).
        theirs: u64,
    },
    /// Zenoh failed.
    Zenoh(String),
}

impl fmt::Display for ZOpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadKey { key, why } => write!(
                f,
                "bad Zenoh key `{key}`: {why}; use a key without wildcards or `@` chunks, as in \
                 `zenoh:factory/line1/orders`"
            ),
            Self::Config(e) => write!(
                f,
                "Zenoh configuration: {e} (a JSON5 file named by ZENOH_CONFIG, or the config \
                 passed in the options)"
            ),
            Self::NobodyListens { address, waited } => write!(
                f,
                "nobody listens on `{address}` (waited {waited:?}): start the receiver first, \
                 check that both sessions reach each other (connect/listen endpoints, \
                 scouting), or raise the connect timeout"
            ),
            Self::TypeMismatch {
                address,
                ours,
                theirs,
            } => write!(
                f,
                "a receiver on `{address}` takes another message type (type hash \
                 {theirs:016x}) than this sender's `{ours}`: build both sides with the same \
                 message type, or use another key"
            ),
            Self::Zenoh(e) => write!(f, "Zenoh: {e}"),
        }
    }
}

impl std::error::Error for ZOpenError {}

/// Why a frame was not sent.
#[derive(Debug)]
#[non_exhaustive]
pub enum ZSendError {
    /// Every receiver that came has gone.
    Disconnected,
    /// The frame is larger than the max frame; nothing was sent.
    TooLarge {
        /// The frame's length.
        len: usize,
        /// The max frame.
        max: usize,
    },
    /// A receiver of another message type is on the key (it came after
    /// this sender connected); nothing was sent.
    TypeMismatch {
        /// This sender's type.
        ours: String,
        /// The receiver's type hash.
        theirs: u64,
    },
    /// Zenoh failed.
    Zenoh(String),
}

impl fmt::Display for ZSendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Disconnected => f.write_str("sending on a disconnected Zenoh key"),
            Self::TooLarge { len, max } => {
                write!(f, "a frame of {len} bytes is larger than the max of {max}")
            }
            Self::TypeMismatch { ours, theirs } => write!(
                f,
                "a receiver of another message type (type hash {theirs:016x}) than this \
                 sender's `{ours}` is on the key; nothing is sent while it is there"
            ),
            Self::Zenoh(e) => write!(f, "Zenoh: {e}"),
        }
    }
}

impl std::error::Error for ZSendError {}

/// Why no frame was received.
#[derive(Debug)]
#[non_exhaustive]
pub enum ZRecvError {
    /// The deadline passed with no frame.
    Timeout,
    /// A sender came, and every sender is gone and its frames delivered.
    Disconnected,
    /// A frame larger than the max frame arrived (and was dropped).
    TooLarge {
        /// Its length.
        len: usize,
        /// The max frame.
        max: usize,
    },
    /// A sender of another message type came (reported once per such
    /// sender; it sends nothing while this receiver is there, and does not
    /// count as a sender for `Disconnected`).
    TypeMismatch {
        /// This receiver's type.
        ours: String,
        /// The sender's type hash.
        theirs: u64,
    },
}

impl fmt::Display for ZRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("timed out receiving on a Zenoh key"),
            Self::Disconnected => f.write_str("receiving on an empty and disconnected Zenoh key"),
            Self::TooLarge { len, max } => write!(
                f,
                "a Zenoh frame of {len} bytes above the max of {max} was dropped"
            ),
            Self::TypeMismatch { ours, theirs } => write!(
                f,
                "a sender of another message type (type hash {theirs:016x}) than this \
                 receiver's `{ours}` came on the key: build both sides with the same message \
                 type"
            ),
        }
    }
}

impl std::error::Error for ZRecvError {}

/// The JSON5 of a peer session on one host: listening on
/// `tcp/127.0.0.1:LISTEN` and connecting to `tcp/127.0.0.1:CONNECT` where
/// given, with no multicast scouting and no gossip (explicit endpoints
/// only). For tests, examples and benchmarks on loopback; two hosts put
/// their addresses where this puts 127.0.0.1.
pub fn loopback_json5(listen: Option<u16>, connect: Option<u16>) -> String {
    let ep = |p: Option<u16>| p.map_or("[]".to_owned(), |p| format!("[\"tcp/127.0.0.1:{p}\"]"));
    format!(
        "{{ mode: \"peer\", listen: {{ endpoints: {} }}, connect: {{ endpoints: {} }}, \
         scouting: {{ multicast: {{ enabled: false }}, gossip: {{ enabled: false }} }} }}",
        ep(listen),
        ep(connect)
    )
}

/// [`loopback_json5`] as a [`Config`].
///
/// # Panics
///
/// Never: the text is a valid configuration.
pub fn loopback_config(listen: Option<u16>, connect: Option<u16>) -> Config {
    Config::from_json5(&loopback_json5(listen, connect)).expect("a valid configuration")
}

/// Checks a key: non-empty, a valid key expression, no wildcards, no
/// `@` chunk (reserved for the gateway's tokens).
pub fn check_key(key: &str) -> Result<(), ZOpenError> {
    let bad = |why: &str| ZOpenError::BadKey {
        key: key.to_owned(),
        why: why.to_owned(),
    };
    if key.is_empty() {
        return Err(bad("it is empty"));
    }
    if key.contains('*') || key.contains('$') {
        return Err(bad("it has a wildcard"));
    }
    if key.split('/').any(|c| c.starts_with('@')) {
        return Err(bad("a chunk starts with `@`"));
    }
    zenoh::key_expr::KeyExpr::try_from(key.to_owned()).map_err(|e| bad(&e.to_string()))?;
    Ok(())
}

fn open_session(opts: &ZOptions) -> Result<Session, ZOpenError> {
    let config = match &opts.config {
        Some(c) => c.clone(),
        None if std::env::var_os("ZENOH_CONFIG").is_some() => {
            Config::from_env().map_err(|e| ZOpenError::Config(e.to_string()))?
        }
        None => Config::default(),
    };
    let config = block_longer(config)?;
    zenoh::open(config)
        .wait()
        .map_err(|e| ZOpenError::Zenoh(e.to_string()))
}

/// Where Zenoh keeps how long a blocked publication may wait for room
/// before it closes the link, in microseconds.
const WAIT_BEFORE_CLOSE: &str =
    "transport/link/tx/queue/congestion_control/block/wait_before_close";
/// Zenoh's default for it: 5 s.
const ZENOH_WAIT_BEFORE_CLOSE_US: u64 = 5_000_000;
/// Ours: an hour. A receiver that stops reading for longer than Zenoh's
/// 5 s would otherwise have its senders' links closed and their queued
/// frames dropped; backpressure should wait instead.
const WAIT_BEFORE_CLOSE_US: u64 = 3_600_000_000;

/// Where Zenoh keeps a link's lease, in milliseconds: a link that hears
/// nothing from its peer that long is closed.
const LEASE: &str = "transport/link/tx/lease";
/// Zenoh's default lease: 10 s.
const ZENOH_LEASE_MS: u64 = 10_000;
/// Ours: 60 s. A receiver whose queue is full stops Zenoh's reading, so
/// the peer's keep-alives go unheard; with 10 s a pause of a few seconds
/// already closed the link (measured: 7 s did), dropping what the
/// senders had queued. A silent network partition is found within it.
const LEASE_MS: u64 = 60_000;

/// Sets `key` to `ours` unless the configuration set it to something
/// other than Zenoh's default `zenoh`.
fn unless_set(config: &mut Config, key: &str, zenoh: u64, ours: u64) -> Result<(), ZOpenError> {
    let now: Option<u64> = config
        .get_json(key)
        .ok()
        .and_then(|v| v.trim().parse().ok());
    if now.is_none_or(|v| v == zenoh) {
        config
            .insert_json5(key, &ours.to_string())
            .map_err(|e| ZOpenError::Config(e.to_string()))?;
    }
    Ok(())
}

/// Raises Zenoh's block `wait_before_close` (5 s) to an hour and its
/// link lease (10 s) to 60 s, unless the configuration set other values:
/// backpressure waits instead of closing links.
fn block_longer(mut config: Config) -> Result<Config, ZOpenError> {
    unless_set(
        &mut config,
        WAIT_BEFORE_CLOSE,
        ZENOH_WAIT_BEFORE_CLOSE_US,
        WAIT_BEFORE_CLOSE_US,
    )?;
    unless_set(&mut config, LEASE, ZENOH_LEASE_MS, LEASE_MS)?;
    Ok(config)
}

/// An id for an endpoint: unique in practice (the pid, a counter and the
/// clock hashed), never 0.
fn new_id() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    // Relaxed: only uniqueness matters.
    let n = N.fetch_add(1, Ordering::Relaxed);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in [u64::from(std::process::id()), n, nanos] {
        for b in v.to_le_bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    h.max(1)
}

/// The id and the tag in the last two chunks of a token's key
/// (`…/ID/TAG`: 16 hex digits, and 16 more or `any`).
fn token_id(sample: &Sample) -> Option<(u64, Option<u64>)> {
    let mut chunks = sample.key_expr().as_str().rsplit('/');
    let tag = chunk_tag(chunks.next()?);
    Some((u64::from_str_radix(chunks.next()?, 16).ok()?, tag))
}

fn attachment_id(sample: &Sample) -> Option<u64> {
    let a = sample.attachment()?.to_bytes();
    Some(u64::from_le_bytes(a.as_ref().try_into().ok()?))
}

/// What the receiver's subscriber hands over, in arrival order.
enum Event {
    Frame(ZBytes),
    /// A sender's end marker.
    End(u64),
}

/// The senders a receiver has seen.
#[derive(Default)]
struct Senders {
    came: bool,
    /// Live senders; `Some(t)`: its token went at `t`.
    live: HashMap<u64, Option<Instant>>,
    /// Senders whose end marker came (a late token does not revive them).
    ended: HashSet<u64>,
    /// Senders of another message type (never live), and the tags of
    /// those not reported yet.
    mismatched: HashSet<u64>,
    unreported: Vec<u64>,
    /// Whether `unreported` has any: read by every receive without the
    /// lock.
    to_report: Arc<AtomicBool>,
}

impl Senders {
    fn seen(&mut self, id: u64) {
        if self.mismatched.contains(&id) {
            return;
        }
        self.came = true;
        if !self.ended.contains(&id) {
            // A token that comes back (a link that broke and was made
            // again) makes its sender live again.
            self.live.insert(id, None);
        }
    }

    /// A sender of another type: reported once, never counted.
    fn mismatch(&mut self, id: u64, tag: u64) {
        if self.mismatched.insert(id) {
            self.unreported.push(tag);
            // Relaxed: a hint; the receive that sees it takes the lock.
            self.to_report.store(true, Ordering::Relaxed);
        }
        self.live.remove(&id);
    }

    fn ended(&mut self, id: u64) {
        self.came = true;
        self.live.remove(&id);
        self.ended.insert(id);
    }

    fn token_gone(&mut self, id: u64) {
        if let Some(t) = self.live.get_mut(&id) {
            t.get_or_insert_with(Instant::now);
        }
    }

    /// Whether sender `id` was heard of (a receiver answers senders'
    /// `known` queries with it).
    fn knows(&self, id: u64) -> bool {
        self.live.contains_key(&id) || self.ended.contains(&id) || self.mismatched.contains(&id)
    }

    /// Whether every sender that came is gone: ended, or its token gone
    /// and no frame arrived for [`DEATH_GRACE`] since (its frames still in
    /// flight when the token left come first; `last_frame` is the latest
    /// arrival of any frame).
    fn all_gone(&mut self, last_frame: Instant) -> bool {
        let now = Instant::now();
        self.live.retain(|_, gone| {
            gone.is_none_or(|t| now.duration_since(t.max(last_frame)) < DEATH_GRACE)
        });
        self.came && self.live.is_empty()
    }
}

fn lock<T>(s: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// The receiving end: a subscriber on `KEY`.
pub struct ZenohRx {
    // First: dropped first, which wakes a callback blocked on a full
    // queue, so that undeclaring the subscriber below cannot wait on it.
    events: mpsc::Receiver<Event>,
    /// Frames in `events` (or being put there).
    queued: Arc<AtomicUsize>,
    senders: Arc<Mutex<Senders>>,
    /// `Senders::to_report`, shared.
    to_report: Arc<AtomicBool>,
    max: usize,
    tag: Option<TypeTag>,
    /// When the last frame was taken (frames are taken after they arrive,
    /// so a sender's grace never ends early by it).
    last_frame: Instant,
    // Dropped in this order: the token, the queryable, the subscribers,
    // the session.
    _token: LivelinessToken,
    _known: Queryable<()>,
    _frames: Subscriber<()>,
    _tokens: Subscriber<()>,
    _session: Session,
}

impl fmt::Debug for ZenohRx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZenohRx").field("max", &self.max).finish()
    }
}

impl ZenohRx {
    /// Subscribes to `key` and announces a receiver there.
    ///
    /// # Errors
    ///
    /// [`ZOpenError`].
    pub fn bind(key: &str, opts: &ZOptions) -> Result<Self, ZOpenError> {
        check_key(key)?;
        let session = open_session(opts)?;
        let z = |e: zenoh::Error| ZOpenError::Zenoh(e.to_string());
        let senders = Arc::new(Mutex::new(Senders::default()));
        let (tx, events) = mpsc::sync_channel(opts.capacity.max(1));
        let queued = Arc::new(AtomicUsize::new(0));
        let q = Arc::clone(&queued);
        let s = Arc::clone(&senders);
        let frames = session
            .declare_subscriber(key.to_owned())
            .callback(move |sample: Sample| {
                let Some(id) = attachment_id(&sample) else {
                    // A sender's later frame (only its first carries its
                    // id), or a plain Zenoh publisher's (which never
                    // counts for disconnection).
                    if sample.kind() == SampleKind::Put {
                        // Relaxed: a count for display only.
                        q.fetch_add(1, Ordering::Relaxed);
                        let _ = tx.send(Event::Frame(sample.payload().clone()));
                    }
                    return;
                };
                let event = match sample.kind() {
                    SampleKind::Put => {
                        lock(&s).seen(id);
                        q.fetch_add(1, Ordering::Relaxed);
                        Event::Frame(sample.payload().clone())
                    }
                    SampleKind::Delete => Event::End(id),
                };
                // Blocks while the queue is full: Zenoh stops reading,
                // which pushes back to the senders. An error means the
                // receiver is gone.
                let _ = tx.send(event);
            })
            .wait()
            .map_err(z)?;
        let s = Arc::clone(&senders);
        let ours = opts.type_tag.clone();
        let tokens = session
            .liveliness()
            .declare_subscriber(format!("{key}/@shmlane/tx/*/*"))
            .history(true)
            .callback(move |sample: Sample| {
                let Some((id, tag)) = token_id(&sample) else {
                    return;
                };
                match (sample.kind(), tag) {
                    (SampleKind::Put, Some(t)) if !agree(ours.as_ref(), tag) => {
                        lock(&s).mismatch(id, t)
                    }
                    (SampleKind::Put, _) => lock(&s).seen(id),
                    (SampleKind::Delete, _) => lock(&s).token_gone(id),
                }
            })
            .wait()
            .map_err(z)?;
        // Answers a sender's "have you heard of me" (see `ZenohTx::open`),
        // declared before the token senders wait for.
        let id = new_id();
        let s = Arc::clone(&senders);
        let known_key = format!("{key}/@shmlane/known/{id:016x}");
        let known = session
            .declare_queryable(known_key.clone())
            .callback(move |query: Query| {
                let knows = query
                    .parameters()
                    .get("tx")
                    .and_then(|tx| u64::from_str_radix(tx, 16).ok())
                    .is_some_and(|tx| lock(&s).knows(tx));
                let answer = if knows { "1" } else { "0" };
                // Under this receiver's own key: the query's is a wildcard.
                let _ = query.reply(known_key.as_str(), answer).wait();
            })
            .wait()
            .map_err(z)?;
        let token = session
            .liveliness()
            .declare_token(format!(
                "{key}/@shmlane/rx/{id:016x}/{}",
                tag_chunk(opts.type_tag.as_ref())
            ))
            .wait()
            .map_err(z)?;
        let to_report = Arc::clone(&lock(&senders).to_report);
        Ok(Self {
            events,
            queued,
            senders,
            to_report,
            max: opts.max_frame,
            tag: opts.type_tag.clone(),
            last_frame: Instant::now(),
            _token: token,
            _known: known,
            _frames: frames,
            _tokens: tokens,
            _session: session,
        })
    }

    /// The largest frame accepted.
    pub fn max_frame(&self) -> usize {
        self.max
    }

    /// Frames that arrived and were not received yet.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Receives one frame into `buf` (cleared first), waiting until
    /// `deadline` (`None`: no limit; `Some(now)`: a try).
    ///
    /// # Errors
    ///
    /// [`ZRecvError`].
    pub fn recv(
        &mut self,
        buf: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<usize, ZRecvError> {
        loop {
            // Relaxed: see `Senders::mismatch`.
            let theirs = if self.to_report.load(Ordering::Relaxed) {
                let mut s = lock(&self.senders);
                let theirs = s.unreported.pop();
                s.to_report
                    .store(!s.unreported.is_empty(), Ordering::Relaxed);
                theirs
            } else {
                None
            };
            if let Some(theirs) = theirs {
                return Err(ZRecvError::TypeMismatch {
                    ours: tag_name(self.tag.as_ref()),
                    theirs,
                });
            }
            let event = match self.events.try_recv() {
                Ok(e) => Some(e),
                Err(mpsc::TryRecvError::Disconnected) => return Err(ZRecvError::Disconnected),
                Err(mpsc::TryRecvError::Empty) => {
                    // Queue empty: every frame of the senders seen so far
                    // that arrived is delivered.
                    if lock(&self.senders).all_gone(self.last_frame) {
                        return Err(ZRecvError::Disconnected);
                    }
                    let now = Instant::now();
                    if deadline.is_some_and(|d| now >= d) {
                        return Err(ZRecvError::Timeout);
                    }
                    let wait = deadline.map_or(STEP, |d| (d - now).min(STEP));
                    match self.events.recv_timeout(wait) {
                        Ok(e) => Some(e),
                        Err(mpsc::RecvTimeoutError::Timeout) => None,
                        Err(mpsc::RecvTimeoutError::Disconnected) => {
                            return Err(ZRecvError::Disconnected)
                        }
                    }
                }
            };
            match event {
                Some(Event::Frame(bytes)) => {
                    self.queued.fetch_sub(1, Ordering::Relaxed);
                    if bytes.len() > self.max {
                        return Err(ZRecvError::TooLarge {
                            len: bytes.len(),
                            max: self.max,
                        });
                    }
                    buf.clear();
                    for slice in bytes.slices() {
                        buf.extend_from_slice(slice);
                    }
                    self.last_frame = Instant::now();
                    return Ok(buf.len());
                }
                Some(Event::End(id)) => lock(&self.senders).ended(id),
                None => {}
            }
        }
    }
}

/// The receivers a sender has seen.
#[derive(Default)]
struct Receivers {
    seen: bool,
    /// Live receivers, with their tags.
    live: HashMap<u64, Option<u64>>,
    /// Whether a send must look here ([`Receivers::calm`] false): every
    /// receiver gone, or one of another type there. Kept beside the map so
    /// that a send in the usual case reads one atomic, not the lock.
    alarm: Arc<AtomicBool>,
}

impl Receivers {
    /// Updates the alarm after a change, for a sender of tag `ours`.
    fn changed(&self, ours: Option<&TypeTag>) {
        let alarm = (self.seen && self.live.is_empty()) || self.disagreeing(ours).is_some();
        // Relaxed: a hint; the send that sees it set takes the lock, which
        // orders the map.
        self.alarm.store(alarm, Ordering::Relaxed);
    }

    /// The tag of a live receiver this sender's tag disagrees with.
    fn disagreeing(&self, ours: Option<&TypeTag>) -> Option<u64> {
        self.live
            .values()
            .find(|t| !agree(ours, **t))
            .copied()
            .flatten()
    }
}

/// The sending end: a publisher on `KEY`.
pub struct ZenohTx {
    publisher: Publisher<'static>,
    /// This sender's id, the attachment of its first frame and of its end
    /// marker (shared, not copied).
    id: ZBytes,
    /// Whether a frame carried the id yet (the receiver learns of the
    /// sender from it, or from its token, whichever comes first).
    introduced: bool,
    receivers: Arc<Mutex<Receivers>>,
    /// `Receivers::alarm`, shared.
    alarm: Arc<AtomicBool>,
    max: usize,
    tag: Option<TypeTag>,
    /// A publisher of a topic: it waits for nobody and is never
    /// disconnected (with no subscriber, its messages go nowhere).
    publishing: bool,
    _token: LivelinessToken,
    _watch: Subscriber<()>,
    _session: Session,
}

impl fmt::Debug for ZenohTx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZenohTx").field("max", &self.max).finish()
    }
}

impl ZenohTx {
    /// Waits (up to the connect timeout) for a receiver on `key`, then
    /// publishes there.
    ///
    /// # Errors
    ///
    /// [`ZOpenError`]; `NobodyListens` when no receiver appeared.
    pub fn connect(key: &str, opts: &ZOptions) -> Result<Self, ZOpenError> {
        Self::open(key, opts, false)
    }

    /// A publisher of a topic on `key`: it does not wait for subscribers
    /// to appear, and publishing with none is not an error (the messages
    /// go nowhere, as Zenoh's own publications do); a subscriber of
    /// another type stops it as it stops a sender. Subscribers whose
    /// tokens it has seen by then are asked whether they heard of it, as a
    /// sender asks (up to the connect timeout).
    ///
    /// # Errors
    ///
    /// [`ZOpenError`].
    pub fn publish(key: &str, opts: &ZOptions) -> Result<Self, ZOpenError> {
        Self::open(key, opts, true)
    }

    /// The receivers (subscribers) live on the key, as far as this side
    /// has heard.
    pub fn receivers(&self) -> usize {
        self.receivers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .live
            .len()
    }

    fn open(key: &str, opts: &ZOptions, publishing: bool) -> Result<Self, ZOpenError> {
        check_key(key)?;
        let start = Instant::now();
        let session = open_session(opts)?;
        let z = |e: zenoh::Error| ZOpenError::Zenoh(e.to_string());
        let receivers = Arc::new(Mutex::new(Receivers::default()));
        let alarm = Arc::clone(&lock(&receivers).alarm);
        let r = Arc::clone(&receivers);
        let ours = opts.type_tag.clone();
        let watch = session
            .liveliness()
            .declare_subscriber(format!("{key}/@shmlane/rx/*/*"))
            .history(true)
            .callback(move |sample: Sample| {
                let Some((id, tag)) = token_id(&sample) else {
                    return;
                };
                let mut r = lock(&r);
                match sample.kind() {
                    SampleKind::Put => {
                        r.seen = true;
                        r.live.insert(id, tag);
                    }
                    SampleKind::Delete => {
                        r.live.remove(&id);
                    }
                }
                r.changed(ours.as_ref());
            })
            .wait()
            .map_err(z)?;
        loop {
            {
                let r = receivers.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(theirs) = r.disagreeing(opts.type_tag.as_ref()) {
                    return Err(ZOpenError::TypeMismatch {
                        address: format!("zenoh:{key}"),
                        ours: tag_name(opts.type_tag.as_ref()),
                        theirs,
                    });
                }
                if r.seen || publishing {
                    break;
                }
            }
            if start.elapsed() >= opts.connect_timeout {
                return Err(ZOpenError::NobodyListens {
                    address: format!("zenoh:{key}"),
                    waited: start.elapsed(),
                });
            }
            std::thread::sleep(STEP);
        }
        let publisher = session
            .declare_publisher(key.to_owned())
            .congestion_control(CongestionControl::Block)
            .wait()
            .map_err(z)?;
        let id = new_id();
        let token = session
            .liveliness()
            .declare_token(format!(
                "{key}/@shmlane/tx/{id:016x}/{}",
                tag_chunk(opts.type_tag.as_ref())
            ))
            .wait()
            .map_err(z)?;
        // No deadline where the timeout overflows an `Instant`: the wait
        // for a receiver above took such a timeout for "forever" too.
        let until = start.checked_add(opts.connect_timeout);
        introduce(&session, key, id, &receivers, until);
        Ok(Self {
            publisher,
            id: ZBytes::from(id.to_le_bytes().to_vec()),
            introduced: false,
            receivers,
            alarm,
            max: opts.max_frame,
            tag: opts.type_tag.clone(),
            publishing,
            _token: token,
            _watch: watch,
            _session: session,
        })
    }

    /// The largest frame sent.
    pub fn max_frame(&self) -> usize {
        self.max
    }

    /// Publishes one frame. It may wait inside Zenoh while the path is
    /// full (Block congestion control), whatever the caller's deadline.
    ///
    /// # Errors
    ///
    /// [`ZSendError`].
    pub fn send(&mut self, frame: &[u8]) -> Result<(), ZSendError> {
        if frame.len() > self.max {
            return Err(ZSendError::TooLarge {
                len: frame.len(),
                max: self.max,
            });
        }
        // Relaxed: see `Receivers::changed`.
        if self.alarm.load(Ordering::Relaxed) {
            let r = lock(&self.receivers);
            if r.seen && r.live.is_empty() && !self.publishing {
                return Err(ZSendError::Disconnected);
            }
            if let Some(theirs) = r.disagreeing(self.tag.as_ref()) {
                return Err(ZSendError::TypeMismatch {
                    ours: tag_name(self.tag.as_ref()),
                    theirs,
                });
            }
        }
        let put = self.publisher.put(frame.to_vec());
        let put = if self.introduced {
            put
        } else {
            self.introduced = true;
            put.attachment(self.id.clone())
        };
        put.wait().map_err(|e| ZSendError::Zenoh(e.to_string()))
    }
}

/// Waits, until `until` (`None`: no limit), for each receiver sender `id`
/// knows of to have heard of it (its token or frame), asking each on
/// `KEY/@shmlane/known/ID`. Then an older sender can end with no such
/// receiver left believing every sender gone: its end marker and this
/// sender's token travel on different links, so the end may arrive
/// first. Past `until` (a receiver that does not answer, or whose
/// reception is blocked by a full queue) the sender goes on as if it had
/// been heard.
fn introduce(
    session: &Session,
    key: &str,
    id: u64,
    receivers: &Mutex<Receivers>,
    until: Option<Instant>,
) {
    /// A query's own limit when the caller set none: it is asked again.
    const QUERY_LIMIT: Duration = Duration::from_secs(10);
    loop {
        let waiting: HashSet<u64> = lock(receivers).live.keys().copied().collect();
        let now = Instant::now();
        if waiting.is_empty() || until.is_some_and(|u| now >= u) {
            return;
        }
        let limit = until.map_or(QUERY_LIMIT, |u| u - now);
        let Ok(replies) = session
            .get(format!("{key}/@shmlane/known/*?tx={id:016x}"))
            .target(QueryTarget::All)
            .consolidation(ConsolidationMode::None)
            .timeout(limit)
            .wait()
        else {
            return;
        };
        let mut heard = HashSet::new();
        while let Ok(reply) = replies.recv() {
            let Ok(sample) = reply.result() else { continue };
            let rx = sample
                .key_expr()
                .as_str()
                .rsplit('/')
                .next()
                .and_then(|rx| u64::from_str_radix(rx, 16).ok());
            if let (Some(rx), true) = (rx, sample.payload().to_bytes().as_ref() == b"1") {
                heard.insert(rx);
            }
        }
        if waiting.is_subset(&heard) {
            return;
        }
        std::thread::sleep(STEP);
    }
}

impl Drop for ZenohTx {
    fn drop(&mut self) {
        // The end marker, in band behind the last frame; then the token
        // goes (with the fields).
        let _ = self.publisher.delete().attachment(self.id.clone()).wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        assert!(check_key("a/b/c").is_ok());
        for bad in ["", "a/*", "a/**", "a/$*b", "a/@x", "a//b", "/a"] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
        let e = check_key("a/*").unwrap_err();
        assert!(e.to_string().contains("wildcard"), "{e}");
    }

    #[test]
    fn senders_are_gone_at_their_end_or_after_the_grace() {
        let long_ago = Instant::now() - DEATH_GRACE * 2;
        let mut s = Senders::default();
        assert!(!s.all_gone(long_ago), "nobody came yet");
        s.seen(1);
        s.seen(2);
        s.ended(1);
        assert!(!s.all_gone(long_ago));
        s.seen(1); // a late token of an ended sender
        s.token_gone(2);
        assert!(!s.all_gone(long_ago), "within the grace");
        *s.live.get_mut(&2).unwrap() = Some(Instant::now() - DEATH_GRACE);
        // A frame taken just now: its sender's frames may still come.
        assert!(!s.all_gone(Instant::now()));
        assert!(s.all_gone(long_ago));
    }

    #[test]
    fn tags_agree_when_equal_or_either_is_any() {
        let a = TypeTag::new("A", &[b"x", b"y"]);
        let b = TypeTag::new("B", &[b"x", b"y"]);
        let c = TypeTag::new("A", &[b"xy"]);
        assert_eq!(a.hash, b.hash, "the name is not hashed");
        assert_ne!(a.hash, c.hash, "parts do not run into each other");
        assert!(agree(Some(&a), Some(b.hash)));
        assert!(!agree(Some(&a), Some(c.hash)));
        assert!(agree(None, Some(c.hash)) && agree(Some(&a), None) && agree(None, None));
        assert_eq!(chunk_tag(&tag_chunk(Some(&a))), Some(a.hash));
        assert_eq!(chunk_tag(&tag_chunk(None)), None);
        let mut r = Receivers::default();
        let alarm = |r: &Receivers| r.alarm.load(Ordering::Relaxed);
        r.seen = true;
        r.changed(Some(&a));
        assert!(alarm(&r), "every receiver gone");
        r.live.insert(1, Some(a.hash));
        r.live.insert(2, None);
        r.changed(Some(&a));
        assert!(!alarm(&r));
        assert_eq!(r.disagreeing(Some(&b)), None);
        r.live.insert(3, Some(c.hash));
        r.changed(Some(&a));
        assert!(alarm(&r), "a receiver of another type");
        assert_eq!(r.disagreeing(Some(&a)), Some(c.hash));
        assert_eq!(r.disagreeing(None), None);
    }

    #[test]
    fn a_sender_of_another_type_is_reported_once_and_never_waited_for() {
        let long_ago = Instant::now() - DEATH_GRACE * 2;
        let mut s = Senders::default();
        s.mismatch(7, 0xabc);
        s.mismatch(7, 0xabc);
        s.seen(7); // its first frame, in a race
        assert_eq!(s.unreported, [0xabc]);
        assert!(!s.all_gone(long_ago), "nobody of this type came");
        s.seen(8);
        s.ended(8);
        assert!(s.all_gone(long_ago));
    }

    #[test]
    fn a_token_that_comes_back_revives_its_sender() {
        let long_ago = Instant::now() - DEATH_GRACE * 2;
        let mut s = Senders::default();
        s.seen(3);
        s.token_gone(3);
        *s.live.get_mut(&3).unwrap() = Some(long_ago);
        s.seen(3); // the link was made again
        assert!(!s.all_gone(long_ago));
    }

    /// What a receiver answers a new sender's `known` query.
    #[test]
    fn a_receiver_knows_live_ended_and_mismatched_senders_only() {
        let mut s = Senders::default();
        assert!(!s.knows(1));
        s.seen(1);
        s.seen(2);
        s.ended(2);
        s.mismatch(3, 0xab);
        assert!(s.knows(1) && s.knows(2) && s.knows(3));
        assert!(!s.knows(4));
    }

    #[test]
    fn blocked_publications_wait_an_hour_unless_configured() {
        let c = block_longer(Config::default()).unwrap();
        assert_eq!(
            c.get_json(WAIT_BEFORE_CLOSE).unwrap().trim(),
            WAIT_BEFORE_CLOSE_US.to_string()
        );
        assert_eq!(c.get_json(LEASE).unwrap().trim(), LEASE_MS.to_string());
        let mut mine = Config::default();
        mine.insert_json5(WAIT_BEFORE_CLOSE, "7000000").unwrap();
        let c = block_longer(mine).unwrap();
        assert_eq!(c.get_json(WAIT_BEFORE_CLOSE).unwrap().trim(), "7000000");
    }
}
