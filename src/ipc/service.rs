//! Request/response between processes: a [`Server`] at a `shm:` or
//! `file:` address and any number of [`Client`]s.
//!
//! # How it works
//!
//! - The server creates a registry channel at the address.
//! - A client creates a channel pair of its own next to it (requests and
//!   responses, each an SPSC ring: `ADDRESS.<pid>-<n>-<time>-req` and `-resp`),
//!   announces it on the registry, and waits until the server has opened
//!   both ends. So every response reaches only the client that asked, and
//!   both directions are zero copy for every message kind (rkyv, Pod,
//!   bytes), as on any channel.
//! - A client has one request in flight at a time ([`Client::call`] or
//!   [`Client::request`], which borrows the client until its response is
//!   taken); for concurrent requests, connect several clients.
//! - The server receives requests from every client
//!   ([`Server::recv`], or [`Server::recv_with`] to read them in place)
//!   with the client's [`ClientId`], and answers with [`Server::reply`],
//!   in any order across clients. A reply answers that client's oldest
//!   unanswered request.
//! - While idle the server sleeps on every client's ring at once
//!   (`futex_waitv`, see [`shmlane_semaphore::wait_any`]), after a short
//!   spin.
//!
//! # Crashes
//!
//! - A dead client never blocks the server: a reply to it is dropped (or
//!   fails with [`ReplyError::ClientGone`] once its death is seen), and
//!   the server drops its connection and removes its channels' names.
//!   (A client that dies before any server opened its channels leaves
//!   their names behind.)
//! - A dead server gives every waiting client [`CallError::ServerGone`]
//!   as soon as its liveness lock is seen free (the client's wait checks
//!   every few milliseconds), not after the call's timeout.
//! - A call that timed out (or a [`Pending`] dropped unanswered) may
//!   still be answered: the client drops that connection, so the late
//!   answer is never taken for another request's, and its next call
//!   connects anew. A request the server cannot read closes the
//!   connection too ([`CallError::Refused`]); [`Server::disconnect`] does
//!   the same on purpose.
//! - Clients and server must run as the same user (segments are owned by
//!   their creator and refused otherwise). A server reads requests in
//!   place under the default [`Trust::validate`](super::Trust): a server
//!   that does not trust its clients uses [`Trust::hostile`](super::Trust)
//!   (each request is copied before it is checked).
//!
//! # Examples
//!
//! ```
//! use shmlane::ipc::{Builder, Bytes};
//!
//! let addr = format!("shm:doc-service-{}", std::process::id());
//! let mut server = Builder::new(&addr)?.create_server::<u64, Bytes>()?;
//! let worker = std::thread::spawn(move || -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//!     // Answer two requests, whoever sends them.
//!     for _ in 0..2 {
//!         let (client, n) = server.recv()?;
//!         server.reply(client, "x".repeat(n as usize).as_bytes())?;
//!     }
//!     Ok(())
//! });
//! let mut client = Builder::new(&addr)?.connect::<u64, Bytes>()?;
//! assert_eq!(client.call(3)?, b"xxx");
//! let pending = client.request(2)?; // sent; wait later
//! assert_eq!(pending.wait()?, b"xx");
//! worker.join().unwrap().unwrap();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::error;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmlane_semaphore::EventCount;

use super::builder::Target;
use super::handles::Wait;
use super::{
    Builder, Channel, CreateError, EncodeError, InvalidMessage, Message, OpenError, Receiver,
    RecvMsgError, Role, Segment, SendMsgError, Sender, STEP,
};

/// A client's announcement on the registry: the base address of its
/// channel pair.
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Hello {
    len: u64,
    base: [u8; 256],
}

/// Whether `seg` is a request/response server's registry (for tools:
/// `shmlane ls` and `stat`).
pub fn is_registry(seg: &Segment) -> bool {
    let ty = super::builder::type_info::<Hello>();
    seg.fixed().type_hash == ty.hash() && seg.schema() == ty.schema
}

/// For the name of one of a client's channels (`NAME.<pid>-<n>-<time>-req`
/// or `-resp`), the service's name and which of the two it is (for
/// tools).
pub fn client_channel(name: &str) -> Option<(&str, &'static str)> {
    let (rest, which) = if let Some(r) = name.strip_suffix("-req") {
        (r, "requests")
    } else {
        (name.strip_suffix("-resp")?, "responses")
    };
    let (service, id) = rest.rsplit_once('.')?;
    let mut parts = id.split('-');
    let ok = parts.next().is_some_and(|p| p.parse::<u32>().is_ok())
        && parts.next().is_some_and(|n| n.parse::<u64>().is_ok())
        && parts
            .next()
            .is_some_and(|t| u64::from_str_radix(t, 16).is_ok())
        && parts.next().is_none();
    ok.then_some((service, which))
}

/// Polls of every client before the server sleeps.
const SPIN_POLLS: u32 = 256;

/// Who sent a request (unique per server, never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(u64);

/// Why a server or client could not be made.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServiceError {
    /// The server's registry or a client's channels could not be created.
    Create(CreateError),
    /// The server's registry could not be opened (is the server running?).
    Open(OpenError),
    /// No live server: the registry has no receiver, or it did not open
    /// this client's channels before the open timeout (then it may be
    /// serving other request or response types: its open fails).
    NoServer,
    /// The address is too long to name a client's channels.
    AddressTooLong,
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Create(e) => write!(f, "{e}"),
            Self::Open(e) => write!(f, "no server there: {e}"),
            Self::NoServer => f.write_str(
                "the server did not accept this client before the open timeout: is it running, \
                 and does it serve the same request and response types?",
            ),
            Self::AddressTooLong => {
                f.write_str("the service address is too long (200 bytes at most)")
            }
        }
    }
}

impl error::Error for ServiceError {
    fn source(&self) -> Option<&(dyn error::Error + 'static)> {
        match self {
            Self::Create(e) => Some(e),
            Self::Open(e) => Some(e),
            _ => None,
        }
    }
}

impl From<CreateError> for ServiceError {
    fn from(e: CreateError) -> Self {
        Self::Create(e)
    }
}

impl From<OpenError> for ServiceError {
    fn from(e: OpenError) -> Self {
        Self::Open(e)
    }
}

impl From<super::AttachError> for ServiceError {
    fn from(e: super::AttachError) -> Self {
        Self::Create(CreateError::Os(std::io::Error::other(e.to_string())))
    }
}

fn not_shared_memory() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        "a request/response service lives in named shared memory, its clients' channels \
         named after it: use a shm: or file: address (not sysv:, whose keys are numbers)",
    )
}

/// The service's address: a `shm:` or `file:` segment's (a `sysv:` key
/// cannot name its clients' channels beside it).
fn address_of(target: &Target) -> Option<String> {
    match target {
        Target::Address(shmlane_shm::Address::Sysv(_)) => None,
        Target::Address(addr) => Some(addr.to_string()),
        _ => None,
    }
}

impl Builder {
    /// Creates a request/response server at this address, for requests of
    /// kind `Req` and responses of kind `Resp`. [`trust`](Self::trust) and
    /// [`wait_strategy`](Self::wait_strategy) apply to the server's ends;
    /// each client's own builder sizes its channels
    /// ([`message_size`](Self::message_size) on the client's side bounds
    /// requests and responses alike).
    ///
    /// # Errors
    ///
    /// [`ServiceError::Create`], as for [`create`](Self::create).
    pub fn create_server<Req: Message, Resp: Message>(
        &self,
    ) -> Result<Server<Req, Resp>, ServiceError> {
        match address_of(&self.target) {
            None => return Err(ServiceError::Create(CreateError::Os(not_shared_memory()))),
            Some(a) if a.len() > 200 => return Err(ServiceError::AddressTooLong),
            Some(_) => {}
        }
        let make = || {
            let mut b = self
                .clone()
                .kind(super::RingKind::Mpmc)
                .capacity(64)
                .keep(false);
            (b.slot_size, b.message_size) = (None, None);
            b.create::<Hello>()
        };
        let registry = match make() {
            // A server that died left its registry: take its place.
            Err(CreateError::AlreadyExists(_)) if self.stale_registry() => make()?,
            other => other?,
        };
        let hellos = registry.receiver()?;
        Ok(Server {
            builder: self.clone(),
            registry,
            hellos,
            conns: Vec::new(),
            next: 0,
            ids: 0,
            generation: 0,
        })
    }

    /// Whether the segment at this address was made by a process that is
    /// gone; if so, it is removed.
    fn stale_registry(&self) -> bool {
        let Target::Address(addr) = &self.target else {
            return false;
        };
        // Only a registry is replaced, never a user's channel.
        let opts = shmlane_shm::OpenOptions {
            read_only: true,
            ready_timeout: Duration::ZERO,
            allow_group_write: self.allow_group_write,
            ty: Some(super::builder::type_info::<Hello>()),
            ..shmlane_shm::OpenOptions::default()
        };
        match Segment::open(addr, &opts) {
            Ok(seg) if !seg.creator_alive() => shmlane_shm::unlink(addr).is_ok(),
            _ => false,
        }
    }

    /// Connects a client to the server at this address: creates its channel
    /// pair and waits (up to [`open_timeout`](Self::open_timeout)) for the
    /// server to open it.
    ///
    /// # Errors
    ///
    /// [`ServiceError`]: no server there, a server that did not accept,
    /// or the client's channels could not be created.
    pub fn connect<Req: Message, Resp: Message>(&self) -> Result<Client<Req, Resp>, ServiceError> {
        let addr = match address_of(&self.target) {
            None => return Err(ServiceError::Create(CreateError::Os(not_shared_memory()))),
            Some(a) if a.len() > 200 => return Err(ServiceError::AddressTooLong),
            Some(a) => a,
        };
        let registry = self.open::<Hello>()?;
        let pair = pair::<Req, Resp>(self, &addr, &registry, deadline_in(self.open_timeout))?;
        Ok(Client {
            builder: self.clone(),
            addr,
            registry,
            pair: Some(pair),
        })
    }
}

/// `now + timeout`, or no deadline for a timeout too long to add.
fn deadline_in(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// A client's channel pair, announced to the server and opened by it.
struct Pair<Req: Message, Resp: Message> {
    tx: Sender<Req>,
    rx: Receiver<Resp>,
    _chans: (Channel<Req>, Channel<Resp>),
}

/// Creates a client's channel pair next to `addr`, announces it on the
/// registry, and waits until the server has opened both ends.
fn pair<Req: Message, Resp: Message>(
    builder: &Builder,
    addr: &str,
    registry: &Channel<Hello>,
    deadline: Option<Instant>,
) -> Result<Pair<Req, Resp>, ServiceError> {
    static CLIENTS: AtomicU64 = AtomicU64::new(0);
    let n = CLIENTS.fetch_add(1, Ordering::Relaxed);
    // Unique even across pid reuse: the time too.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let base = format!("{addr}.{}-{n}-{nanos:x}", std::process::id());
    let make = |suffix: &str| -> Result<Builder, ServiceError> {
        let b =
            Builder::new(&format!("{base}-{suffix}")).map_err(|_| ServiceError::AddressTooLong)?;
        let mut b = b
            .spsc()
            .capacity(1)
            .trust(builder.trust)
            .wait_strategy(builder.strategy)
            .mode(builder.mode);
        b.message_size = builder.message_size;
        b.slot_size = builder.slot_size;
        Ok(b)
    };
    let requests = make("req")?.create::<Req>()?;
    let responses = make("resp")?.create::<Resp>()?;
    let (tx, rx) = (requests.sender()?, responses.receiver()?);
    let mut hello = Hello {
        len: base.len() as u64,
        base: [0; 256],
    };
    hello.base[..base.len()].copy_from_slice(base.as_bytes());
    let announced = registry.sender()?;
    let sent = match deadline {
        Some(d) => announced.send_deadline(hello, d).is_ok(),
        None => announced.send(hello).is_ok(),
    };
    if !sent {
        return Err(ServiceError::NoServer);
    }
    // The server opens both ends; wait for it (once per connection).
    loop {
        if requests.seg.ever_attached(Role::Receiver) && responses.seg.ever_attached(Role::Sender) {
            break;
        }
        if deadline.is_some_and(|d| Instant::now() >= d)
            || registry.seg.live_count(Role::Receiver) == 0
        {
            return Err(ServiceError::NoServer);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(Pair {
        tx,
        rx,
        _chans: (requests, responses),
    })
}

struct Conn<Req: Message, Resp: Message> {
    id: ClientId,
    rx: Receiver<Req>,
    tx: Sender<Resp>,
    /// Requests handed out and not answered yet.
    awaiting: u32,
    req_seg: Arc<Segment>,
    /// The client's base address, for removing its channels if it died.
    base: String,
    _chans: (Channel<Req>, Channel<Resp>),
}

impl<Req: Message, Resp: Message> Conn<Req, Resp> {
    /// Lets go of a departed client; if it died (its channels' creator is
    /// gone), removes its channels' names too, which nobody else would.
    fn bury(self) {
        let dead = !self.req_seg.creator_alive();
        let base = self.base.clone();
        drop(self);
        if dead {
            for suffix in ["req", "resp"] {
                if let Ok(addr) = shmlane_shm::Address::parse(&format!("{base}-{suffix}")) {
                    let _ = shmlane_shm::unlink(&addr);
                }
            }
        }
    }
}

/// The serving end of a request/response service (see the
/// [module docs](self)).
pub struct Server<Req: Message, Resp: Message> {
    builder: Builder,
    registry: Channel<Hello>,
    hellos: Receiver<Hello>,
    conns: Vec<Conn<Req, Resp>>,
    next: usize,
    ids: u64,
    /// Changes whenever a client comes or goes (the set slept on).
    generation: u64,
}

impl<Req: Message, Resp: Message> fmt::Debug for Server<Req, Resp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("clients", &self.conns.len())
            .finish_non_exhaustive()
    }
}

/// Why a server received no request.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServeError {
    /// No request is waiting (`try_` only).
    Empty,
    /// No request came before the deadline.
    Timeout,
    /// A client's next request was not a valid message of the request
    /// type; its connection was closed (its call fails with
    /// [`CallError::Refused`]).
    Invalid(ClientId, InvalidMessage),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("no request is waiting"),
            Self::Timeout => f.write_str("timed out waiting for a request"),
            Self::Invalid(c, e) => write!(f, "invalid request from client {}: {e}", c.0),
        }
    }
}

impl error::Error for ServeError {}

/// Why a reply was not delivered.
#[derive(Debug)]
#[non_exhaustive]
pub enum ReplyError {
    /// The client is gone (it died or left); its requests were dropped.
    ClientGone,
    /// That client has no unanswered request.
    NotAsked,
    /// The response could not be encoded (too large for the client's
    /// message size); the request stays unanswered: reply again with a
    /// response that fits, or [`Server::disconnect`] the client.
    Encode(EncodeError),
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ClientGone => f.write_str("the client is gone; its requests were dropped"),
            Self::NotAsked => f.write_str("that client has no unanswered request"),
            Self::Encode(e) => write!(f, "{e}"),
        }
    }
}

impl error::Error for ReplyError {}

/// One attempt's outcome for a client.
enum Polled<R> {
    Got(ClientId, R),
    Invalid(ClientId, InvalidMessage),
}

impl<Req: Message, Resp: Message> Server<Req, Resp> {
    /// Opens the channel pairs of clients that announced themselves.
    fn accept(&mut self) -> bool {
        let mut changed = false;
        // A few at a time: a flood of announcements cannot starve the
        // clients already served.
        for _ in 0..8 {
            let Ok(hello) = self.hellos.take(Wait::Never) else {
                break;
            };
            let len = (hello.len as usize).min(hello.base.len());
            let Ok(base) = std::str::from_utf8(&hello.base[..len]) else {
                continue;
            };
            let open = |suffix: &str| {
                Builder::new(&format!("{base}-{suffix}")).map(|b| {
                    // An honest client's channels are ready before it
                    // announces them: never wait for one that is not.
                    let mut b = b
                        .open_timeout(Duration::ZERO)
                        .trust(self.builder.trust)
                        .wait_strategy(self.builder.strategy);
                    b.allow_group_write = self.builder.allow_group_write;
                    b
                })
            };
            let (Ok(req_b), Ok(resp_b)) = (open("req"), open("resp")) else {
                continue;
            };
            // A client that died meanwhile, or that uses other types, is
            // skipped (it times out waiting for us).
            let (Ok(requests), Ok(responses)) = (req_b.open::<Req>(), resp_b.open::<Resp>()) else {
                continue;
            };
            let (Ok(rx), Ok(tx)) = (requests.receiver(), responses.sender()) else {
                continue;
            };
            self.ids += 1;
            self.conns.push(Conn {
                id: ClientId(self.ids),
                rx,
                tx,
                awaiting: 0,
                req_seg: Arc::clone(&requests.seg),
                base: base.to_owned(),
                _chans: (requests, responses),
            });
            changed = true;
        }
        if changed {
            self.generation += 1;
        }
        changed
    }

    /// One pass over every client, starting after the last one served.
    fn poll<R>(
        &mut self,
        take: &mut impl FnMut(ClientId, &Receiver<Req>) -> Result<R, RecvMsgError>,
    ) -> Option<Polled<R>> {
        self.accept();
        let n = self.conns.len();
        let mut gone = Vec::new();
        let mut found = None;
        for k in 0..n {
            let i = (self.next + k) % n;
            let conn = &mut self.conns[i];
            match take(conn.id, &conn.rx) {
                Ok(r) => {
                    conn.awaiting = conn.awaiting.saturating_add(1);
                    self.next = i + 1;
                    found = Some(Polled::Got(conn.id, r));
                    break;
                }
                // A request we cannot read can never be answered: the
                // connection is closed, so the client is not left waiting
                // (its call fails with `CallError::Refused`).
                Err(RecvMsgError::Invalid(e)) => {
                    gone.push(i);
                    self.next = i + 1;
                    found = Some(Polled::Invalid(conn.id, e));
                    break;
                }
                Err(RecvMsgError::Disconnected) => gone.push(i),
                Err(_) => {}
            }
        }
        if !gone.is_empty() {
            self.generation += 1;
        }
        // Highest index first: `swap_remove` moves only later entries.
        gone.sort_unstable();
        for i in gone.into_iter().rev() {
            self.conns.swap_remove(i).bury();
        }
        found
    }

    fn serve<R>(
        &mut self,
        deadline: Option<Instant>,
        wait: bool,
        mut take: impl FnMut(ClientId, &Receiver<Req>) -> Result<R, RecvMsgError>,
    ) -> Result<(ClientId, R), ServeError> {
        let settle = |p: Polled<R>| match p {
            Polled::Got(id, r) => Ok((id, r)),
            Polled::Invalid(id, e) => Err(ServeError::Invalid(id, e)),
        };
        if let Some(p) = self.poll(&mut take) {
            return settle(p);
        }
        if !wait {
            return Err(ServeError::Empty);
        }
        for _ in 0..SPIN_POLLS {
            std::hint::spin_loop();
            if let Some(p) = self.poll(&mut take) {
                return settle(p);
            }
        }
        loop {
            // Sleep on the registry and every client's request ring.
            let segs: Vec<Arc<Segment>> = std::iter::once(Arc::clone(&self.registry.seg))
                .chain(self.conns.iter().map(|c| Arc::clone(&c.req_seg)))
                .collect();
            let ecs: Vec<(&EventCount, Option<&std::sync::atomic::AtomicU32>)> = segs
                .iter()
                .map(|s| (&s.header().not_empty.0, None))
                .collect();
            let generation = self.generation;
            let got = shmlane_semaphore::wait_any(&ecs, deadline, Some(STEP), &mut || {
                match self.poll(&mut take) {
                    Some(p) => Some(Some(p)),
                    // A new (or departed) client: sleep on the new set.
                    None if self.generation != generation => Some(None),
                    None => None,
                }
            });
            match got {
                Ok(Some(p)) => return settle(p),
                Ok(None) => continue,
                Err(_) => return Err(ServeError::Timeout),
            }
        }
    }

    /// Waits for the next request from any client; returns it (owned) with
    /// the client that sent it.
    ///
    /// # Errors
    ///
    /// [`ServeError::Invalid`].
    pub fn recv(&mut self) -> Result<(ClientId, Req::Output), ServeError> {
        self.serve(None, true, |_, rx| rx.take(Wait::Never))
    }

    /// As [`recv`](Self::recv), without waiting.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv), and [`ServeError::Empty`].
    pub fn try_recv(&mut self) -> Result<(ClientId, Req::Output), ServeError> {
        self.serve(None, false, |_, rx| rx.take(Wait::Never))
    }

    /// As [`recv`](Self::recv), giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv), and [`ServeError::Timeout`].
    pub fn recv_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<(ClientId, Req::Output), ServeError> {
        self.serve(deadline_in(timeout), true, |_, rx| rx.take(Wait::Never))
    }

    /// Waits (up to `timeout`, or for ever with `None`) for the next
    /// request and hands it to `handle` where it lies in the client's ring
    /// (zero copy: `Req::Target` is the archived value for rkyv, the value
    /// for Pod, `[u8]` for bytes); returns what `handle` returns.
    ///
    /// # Errors
    ///
    /// As [`recv_timeout`](Self::recv_timeout).
    pub fn recv_with<R>(
        &mut self,
        timeout: Option<Duration>,
        mut handle: impl FnMut(ClientId, &Req::Target) -> R,
    ) -> Result<(ClientId, R), ServeError> {
        let deadline = timeout.and_then(deadline_in);
        self.serve(deadline, true, |id, rx| {
            rx.lend(Wait::Never, false).map(|msg| handle(id, &msg))
        })
    }

    /// Answers `client`'s oldest unanswered request. Never waits: a client
    /// has room for the answer to every request it sent.
    ///
    /// # Errors
    ///
    /// [`ReplyError`]; a client found gone is dropped.
    pub fn reply(&mut self, client: ClientId, resp: Resp::Input<'_>) -> Result<(), ReplyError> {
        let Some(i) = self.conns.iter().position(|c| c.id == client) else {
            return Err(ReplyError::ClientGone);
        };
        let conn = &mut self.conns[i];
        if conn.awaiting == 0 {
            return Err(ReplyError::NotAsked);
        }
        match conn.tx.put(&resp, Wait::Never) {
            Ok(()) => {
                conn.awaiting -= 1;
                Ok(())
            }
            Err(SendMsgError::Encode(e)) => Err(ReplyError::Encode(e)),
            // Full: a client that breaks the one-in-flight rule (a peer's
            // misbehaviour), treated as gone rather than waited for.
            Err(_) => {
                self.conns.swap_remove(i).bury();
                Err(ReplyError::ClientGone)
            }
        }
    }

    /// Closes `client`'s connection, answering none of its requests: its
    /// waiting call fails with [`CallError::Refused`] (and its next call
    /// connects anew). Returns whether it was connected.
    pub fn disconnect(&mut self, client: ClientId) -> bool {
        let Some(i) = self.conns.iter().position(|c| c.id == client) else {
            return false;
        };
        self.conns.swap_remove(i).bury();
        self.generation += 1;
        true
    }

    /// Clients connected now (as far as the server has seen).
    pub fn clients(&mut self) -> usize {
        self.accept();
        self.conns.len()
    }
}

/// Why a call got no response.
#[derive(Debug)]
#[non_exhaustive]
pub enum CallError {
    /// The server is gone (it died or left); connect to a new one.
    ServerGone,
    /// The server closed this client's connection without answering (it
    /// could not read the request, or chose to); the next call connects
    /// anew.
    Refused,
    /// No response before the deadline. The client drops the connection
    /// (the server drops the late answer) and the next call connects anew.
    Timeout,
    /// The request could not be encoded; nothing was sent.
    Encode(EncodeError),
    /// The response was not a valid message of the response type.
    Invalid(InvalidMessage),
    /// The response has not come yet (`try_wait` only).
    Pending,
    /// This handle's response was already taken.
    Taken,
    /// A new connection (after a timeout or a refusal) failed.
    Connect(ServiceError),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ServerGone => f.write_str("the server is gone; connect to a new one"),
            Self::Refused => f.write_str(
                "the server closed this connection without answering (an unreadable request?)",
            ),
            Self::Timeout => f.write_str("timed out waiting for the response"),
            Self::Encode(e) => write!(f, "{e}"),
            Self::Invalid(e) => write!(f, "invalid response: {e}"),
            Self::Pending => f.write_str("the response has not come yet"),
            Self::Taken => f.write_str("this request's response was already taken"),
            Self::Connect(e) => write!(f, "reconnecting: {e}"),
        }
    }
}

impl error::Error for CallError {
    fn source(&self) -> Option<&(dyn error::Error + 'static)> {
        match self {
            Self::Encode(e) => Some(e),
            Self::Invalid(e) => Some(e),
            Self::Connect(e) => Some(e),
            _ => None,
        }
    }
}

/// A client of a request/response service (see the [module docs](self)).
pub struct Client<Req: Message, Resp: Message> {
    builder: Builder,
    addr: String,
    registry: Channel<Hello>,
    /// The connection; `None` after a timeout or a refusal, until the next
    /// call makes a new one.
    pair: Option<Pair<Req, Resp>>,
}

impl<Req: Message, Resp: Message> fmt::Debug for Client<Req, Resp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("connected", &self.pair.is_some())
            .finish_non_exhaustive()
    }
}

impl<Req: Message, Resp: Message> Client<Req, Resp> {
    /// Sends `req` on the connection (made anew if the last one was
    /// dropped).
    fn send(&mut self, req: &Req::Input<'_>, deadline: Option<Instant>) -> Result<(), CallError> {
        if self.pair.is_none() {
            let pair = pair::<Req, Resp>(&self.builder, &self.addr, &self.registry, deadline)
                .map_err(|e| match e {
                    ServiceError::NoServer if self.server_gone() => CallError::ServerGone,
                    e => CallError::Connect(e),
                })?;
            self.pair = Some(pair);
        }
        let pair = self.pair.as_ref().expect("connected above");
        match pair.tx.put(req, Wait::Until(deadline)) {
            Ok(()) => Ok(()),
            Err(SendMsgError::Encode(e)) => Err(CallError::Encode(e)),
            // The ring has room for one request: full means the server has
            // not taken the last one, which only a broken server does.
            Err(SendMsgError::Timeout | SendMsgError::Full) => {
                self.pair = None;
                Err(CallError::Timeout)
            }
            Err(_) => Err(self.lost()),
        }
    }

    /// Whether the server at the address is gone (no live receiver on its
    /// registry).
    fn server_gone(&self) -> bool {
        self.registry.seg.live_count(Role::Receiver) == 0
    }

    /// The connection ended from the server's side: refused, or gone.
    fn lost(&mut self) -> CallError {
        self.pair = None;
        if self.server_gone() {
            CallError::ServerGone
        } else {
            CallError::Refused
        }
    }

    /// Sends `req` and waits for its response.
    ///
    /// # Errors
    ///
    /// [`CallError::ServerGone`], [`CallError::Refused`],
    /// [`CallError::Encode`], [`CallError::Invalid`] or
    /// [`CallError::Connect`].
    pub fn call(&mut self, req: Req::Input<'_>) -> Result<Resp::Output, CallError> {
        self.request(req)?.wait()
    }

    /// As [`call`](Self::call), giving up after `timeout` (sending and
    /// waiting together).
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call), and [`CallError::Timeout`].
    pub fn call_timeout(
        &mut self,
        req: Req::Input<'_>,
        timeout: Duration,
    ) -> Result<Resp::Output, CallError> {
        let deadline = deadline_in(timeout);
        self.send(&req, deadline)?;
        let mut pending = Pending {
            client: self,
            done: false,
        };
        pending.take(Wait::Until(deadline))
    }

    /// Sends `req`, waits for its response and hands it to `read` where it
    /// lies in the response ring (zero copy: `Resp::Target` is the
    /// archived value for rkyv, the value for Pod, `[u8]` for bytes);
    /// returns what `read` returns.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub fn call_with<R>(
        &mut self,
        req: Req::Input<'_>,
        read: impl FnOnce(&Resp::Target) -> R,
    ) -> Result<R, CallError> {
        self.request(req)?.wait_with(read)
    }

    /// Sends `req` and returns at once with a handle to wait for its
    /// response on. The handle borrows the client: one request is in
    /// flight per client.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub fn request(&mut self, req: Req::Input<'_>) -> Result<Pending<'_, Req, Resp>, CallError> {
        self.send(&req, None)?;
        Ok(Pending {
            client: self,
            done: false,
        })
    }

    /// Whether the client has a connection now (false after a timeout or
    /// a refusal, until its next call).
    pub fn is_connected(&self) -> bool {
        self.pair.is_some()
    }
}

/// A request sent and not yet answered ([`Client::request`]). Dropped
/// unanswered, it drops the client's connection (the server drops the
/// answer) and the next call connects anew.
#[must_use = "a request's response is taken through its handle"]
pub struct Pending<'a, Req: Message, Resp: Message> {
    client: &'a mut Client<Req, Resp>,
    done: bool,
}

impl<Req: Message, Resp: Message> Pending<'_, Req, Resp> {
    fn take(&mut self, wait: Wait) -> Result<Resp::Output, CallError> {
        if self.done {
            return Err(CallError::Taken);
        }
        let Some(pair) = self.client.pair.as_ref() else {
            self.done = true;
            return Err(CallError::Refused);
        };
        let got = pair.rx.take(wait);
        match got {
            Ok(resp) => {
                self.done = true;
                Ok(resp)
            }
            Err(RecvMsgError::Empty) => Err(CallError::Pending),
            Err(RecvMsgError::Invalid(e)) => {
                self.done = true;
                Err(CallError::Invalid(e))
            }
            Err(RecvMsgError::Disconnected) => {
                self.done = true;
                Err(self.client.lost())
            }
            Err(_) => {
                // Timed out: the answer may still come; drop the connection
                // so it is never taken for another request's.
                self.done = true;
                self.client.pair = None;
                Err(CallError::Timeout)
            }
        }
    }

    /// Waits for the response.
    ///
    /// # Errors
    ///
    /// As [`Client::call`].
    pub fn wait(mut self) -> Result<Resp::Output, CallError> {
        self.take(Wait::Until(None))
    }

    /// Waits for the response and hands it to `read` where it lies (as
    /// [`Client::call_with`]).
    ///
    /// # Errors
    ///
    /// As [`Client::call`].
    pub fn wait_with<R>(mut self, read: impl FnOnce(&Resp::Target) -> R) -> Result<R, CallError> {
        let Some(pair) = self.client.pair.as_ref() else {
            self.done = true;
            return Err(CallError::Refused);
        };
        let got = pair.rx.lend(Wait::Until(None), false).map(|msg| read(&msg));
        self.done = true;
        match got {
            Ok(r) => Ok(r),
            Err(RecvMsgError::Invalid(e)) => Err(CallError::Invalid(e)),
            Err(RecvMsgError::Disconnected) => Err(self.client.lost()),
            Err(_) => {
                self.client.pair = None;
                Err(CallError::Timeout)
            }
        }
    }

    /// Waits for the response until `deadline`.
    ///
    /// # Errors
    ///
    /// As [`Client::call`], and [`CallError::Timeout`] (the connection is
    /// then dropped and the next call connects anew).
    pub fn wait_deadline(mut self, deadline: Instant) -> Result<Resp::Output, CallError> {
        self.take(Wait::Until(Some(deadline)))
    }

    /// The response if it has come.
    ///
    /// # Errors
    ///
    /// [`CallError::Pending`] if not yet (the handle is still good),
    /// [`CallError::Taken`] once it was taken, or as [`Client::call`].
    pub fn try_wait(&mut self) -> Result<Resp::Output, CallError> {
        self.take(Wait::Never)
    }
}

impl<Req: Message, Resp: Message> Drop for Pending<'_, Req, Resp> {
    fn drop(&mut self) {
        if !self.done {
            // The answer would be taken for the next request's.
            self.client.pair = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::client_channel;

    #[test]
    fn client_channel_names_are_recognised_and_nothing_else() {
        assert_eq!(
            client_channel("prices.12779-0-18eece30c65991f4-req"),
            Some(("prices", "requests"))
        );
        assert_eq!(
            client_channel("a.b.1-2-ff-resp"),
            Some(("a.b", "responses"))
        );
        for other in [
            "prices",
            "prices-req",
            "prices.x-0-ff-req",
            "prices.1-0-ff-9-req",
            "p.1-0-zz-resp",
        ] {
            assert_eq!(client_channel(other), None, "{other}");
        }
    }
}
