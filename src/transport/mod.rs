//! Frames between two processes over the slower, more widely available
//! mechanisms: the fallbacks to the shared-memory rings of [`crate::ipc`].
//!
//! A frame is a byte string; every transport keeps frame boundaries (a
//! frame arrives whole or not at all, never torn or merged), delivers in
//! order, blocks with deadlines, and reports a peer that closed or died as
//! `Disconnected` (to a receiver, only after every frame it sent was
//! delivered). One [`FrameReceiver`] binds or creates the address; any
//! number of [`FrameSender`]s connect to it where the mechanism can keep
//! their frames apart, and a second sender is refused at connect with a
//! typed error where it cannot (never accepted and then dropped):
//!
//! | address | mechanism | max frame | senders | good for | disconnect detection |
//! |---|---|---|---|---|---|
//! | `pipe` | anonymous pipe, one end inherited by a child ([`pipe`]) | 1 MiB (`max_frame`) | one (the end handed over) | parent and child | EOF / `EPIPE` |
//! | `fifo:PATH` | named pipe (`mkfifo`, mode 0600) | 1 MiB (`max_frame`) | one at a time; a second gets [`OpenError::AlreadyConnected`] | unrelated processes, shell tools | EOF after a writer came (`POLLHUP`) / `EPIPE` |
//! | `unix:PATH` | Unix **stream** socket with length prefixes | 1 MiB (`max_frame`) | any number, merged | unrelated processes, fd-less peers | EOF, `EPIPE` / `ECONNRESET` |
//! | `mq:NAME` | POSIX message queue | `msgsize_max`, often 8 KiB | any number, merged by the kernel | small messages, kernel-kept boundaries | OFD locks on a companion shm object, probed every 10 ms |
//! | `sysvmq:KEY` | System V message queue (KEY a non-zero number, or `PATH:ID` for `ftok`) | `kernel.msgmax`, often 8 KiB | any number, merged by the kernel | programs written against `msgsnd`/`msgrcv`, `ipcs` | `SEM_UNDO` semaphores in a set under the same key, probed every 10 ms |
//! | `tcp:HOST:PORT` | TCP, `TCP_NODELAY`, length prefixes | 1 MiB (`max_frame`) | any number, merged | another machine | EOF, `EPIPE` / `ECONNRESET` |
//! | `signal:PID` | queued real-time signals, 8 bytes each | 4 KiB | any number of processes, one per process (a second in one process gets [`OpenError::AlreadyConnected`]) | tiny, rare messages; no files at all | pidfds (`kill(pid, 0)` on old kernels) and an end word |
//!
//! With several senders, each sender's frames arrive in the order it sent
//! them; frames of different senders interleave. `unix:` and `tcp:` keep
//! the listener open and hold every accepted connection with its own
//! parser, waiting on all of them at once (`poll`); `signal:` keeps a
//! parser per sending process (`si_pid`). Both take ready frames from
//! their senders in turns, one frame each, so a busy sender cannot starve
//! the others; `mq:` delivers in the order the kernel queued. In every
//! process, clones of one `ipc::Sender` share its one connection.
//!
//! A receiver reports `Disconnected` once at least one sender came and
//! every sender that came has closed or died, after delivering all their
//! frames (and at once, without waiting, for as long as that holds). The
//! address stays bound: a sender that connects afterwards is accepted and
//! its frames are received, as on a ring.
//! A `unix:`/`tcp:` sender, or a `signal:` process, that breaks the framing
//! is dropped alone (a `signal:` process is ignored until it exits):
//! `recv` reports it once as `Os(InvalidData)` and then goes on with the
//! others. A Pod receiver (`ipc::Receiver<T: Pod>`), whose crossbeam-shaped
//! errors cannot say so, passes over it, and over a frame of the wrong
//! length for `T`, to the next message.
//!
//! Stream transports (pipe, fifo, unix, tcp) prefix each frame with its
//! length (u32 little-endian). `unix:` uses `SOCK_STREAM` rather than
//! `SOCK_SEQPACKET` because a datagram is bounded by the socket buffer
//! (about 200 KiB unless root raises `net.core.wmem_max`), and 1 MiB frames
//! are wanted on every transport that can carry them. Both sides must use
//! the same [`Options::max_frame`]; a receiver reports a larger frame as
//! `Os(InvalidData)`. Two writers' frames larger than `PIPE_BUF` could
//! interleave on a pipe, which is why a `fifo:` sender holds an exclusive
//! `flock` on the FIFO while it lives (the kernel drops it with the
//! process) and a second one is refused. A FIFO receiver reports
//! `Disconnected` once its sender left, and receives the next sender
//! that opens the FIFO; a sender killed in the middle of a frame that
//! is larger than what the pipe took at once leaves it unfinished, and
//! should another sender open the FIFO before the receiver saw the first
//! one go, the receiver parses on from the torn frame (usually reported
//! as `InvalidData`).
//!
//! `mq:` frames are bounded by `/proc/sys/fs/mqueue/msgsize_max` (a larger
//! [`Options::max_frame`] is refused with [`OpenError::MqFrameTooLarge`],
//! which says how to raise the limit), and the queue by `msg_max` messages.
//!
//! `sysvmq:` frames are bounded by `kernel.msgmax` and a queue by
//! `kernel.msgmnb` bytes (a larger [`Options::max_frame`] is refused with
//! [`OpenError::SysvFrameTooLarge`], naming the sysctl). A System V queue
//! has no descriptor, so its waits are timed `semtimedop`s on a semaphore
//! set the receiver creates under the same key (in the semaphores'
//! namespace), which also carries the liveness flags; async waits look
//! again every millisecond. A program that sends to the queue with plain
//! `msgsnd` is received too, within one 10 ms step.
//!
//! `signal:` sends one `sigqueue` per 8 bytes plus a header, so it is the
//! slowest by far, bounded by `RLIMIT_SIGPENDING` (queued signals per user,
//! a full queue makes the sender wait). The receiving process must block
//! the signal (`SIGRTMIN+5` unless [`Options::rt_signal`] says otherwise) in
//! **every** thread, or its default action kills the process: call
//! [`block_signal`] at the start of `main`, before spawning threads (they
//! inherit the mask). [`FrameReceiver::bind`] blocks it in the calling
//! thread and refuses with [`OpenError::SignalNotBlocked`] if another
//! thread does not block it; a sender waits until the receiver's main
//! thread blocks it. One receiver per signal number per process. The
//! receiver tells senders apart by the process id the kernel records in
//! each signal, so each process has at most one sender to a receiver at a
//! time. 64-bit only.
//!
//! Pipes and FIFOs ask the kernel for a 1 MiB buffer (`F_SETPIPE_SZ`, best
//! effort; it counts against `fs.pipe-user-pages-soft`), so a 1 MiB frame
//! usually goes in one write.
//!
//! Writing to a pipe or FIFO whose reader is gone raises `SIGPIPE`; the
//! first pipe or FIFO sender sets it to ignored if it still has its
//! default action (Rust programs ignore it already), so the sender sees
//! `Disconnected`. Sockets use `MSG_NOSIGNAL` and leave it alone.
//!
//! Deadlines: `None` blocks; `Some(Instant::now())` is a non-blocking try.
//! A send that times out sent nothing. On a stream, a large frame of
//! which part is written when the deadline passes is reported sent, and its
//! rest is written before the next frame (which may then time out), so the
//! stream is never torn; dropping the sender waits up to 1 s for that rest.
//!
//! # Examples
//!
//! ```
//! use std::time::{Duration, Instant};
//! use shmlane::transport::{self, FrameRecvError};
//!
//! let (mut tx, mut rx) = transport::pipe()?;
//! tx.send(b"hello", None)?;
//! tx.send(b"", None)?;
//! drop(tx);
//! let mut buf = Vec::new();
//! assert_eq!(rx.recv(&mut buf, None)?, 5);
//! assert_eq!(buf, b"hello");
//! assert_eq!(rx.recv(&mut buf, Some(Instant::now() + Duration::from_secs(1)))?, 0);
//! assert!(matches!(rx.recv(&mut buf, None), Err(FrameRecvError::Disconnected)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub(crate) mod decode;
mod error;
mod listen;
mod mq;
mod open;
mod signal;
mod stream;
pub(crate) mod sysvmq;

use std::cell::Cell;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::str::FromStr;
use std::time::{Duration, Instant};

pub use error::{AddressError, FrameRecvError, FrameSendError, OpenError};

pub use shmlane_shm::SysvKey;
use shmlane_sys::poll::PollFlags;
use stream::{StreamRx, StreamTx};

/// The default and usual max frame of the stream transports: 1 MiB.
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;
/// The max frame of `signal:`.
pub const SIGNAL_MAX_FRAME: usize = signal::MAX_FRAME;

/// Where frames go: parsed from `scheme:rest` strings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Address {
    /// `shm:NAME`: served by [`crate::ipc`], not by this module.
    Shm(String),
    /// `file:PATH`: served by [`crate::ipc`], not by this module.
    File(PathBuf),
    /// `sysv:KEY` or `sysv:PATH:ID`: a System V segment, served by
    /// [`crate::ipc`], not by this module.
    Sysv(SysvKey),
    /// `pipe`: an anonymous pipe; see [`pipe`].
    Pipe,
    /// `fifo:PATH`: a named pipe.
    Fifo(PathBuf),
    /// `unix:PATH`: a Unix stream socket.
    Unix(PathBuf),
    /// `mq:NAME`: a POSIX message queue (`/NAME`).
    Mq(String),
    /// `sysvmq:KEY` or `sysvmq:PATH:ID`: a System V message queue.
    SysvMq(SysvKey),
    /// `tcp:HOST:PORT`; a receiver may bind port 0 and report the port
    /// it got through [`FrameReceiver::local_address`].
    Tcp {
        /// Host name or IP address (IPv6 without brackets).
        host: String,
        /// Port.
        port: u16,
    },
    /// `signal:PID`, or `signal:` for this process (receivers only).
    Signal(Option<i32>),
    /// `zenoh:KEY/EXPR`: a Zenoh key expression, through the gateway
    /// (the `zenoh` cargo feature).
    Zenoh(String),
}

fn check_name(scheme: &'static str, name: &str) -> Result<String, AddressError> {
    let ok = !name.is_empty()
        && name.len() <= 250
        && !name.contains(['/', '\0'])
        && name != "."
        && name != "..";
    if ok {
        Ok(name.to_owned())
    } else {
        Err(AddressError::BadName {
            scheme,
            name: name.to_owned(),
        })
    }
}

fn check_path(scheme: &'static str, path: &str) -> Result<PathBuf, AddressError> {
    if path.is_empty() {
        Err(AddressError::MissingPath { scheme })
    } else {
        Ok(PathBuf::from(path))
    }
}

impl Address {
    /// Parses an address string.
    ///
    /// # Errors
    ///
    /// [`AddressError`], saying what is wrong and how to write it.
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        if s.is_empty() {
            return Err(AddressError::Empty);
        }
        let (scheme, rest) = match s.split_once(':') {
            Some((scheme, rest)) => (scheme, Some(rest)),
            None => (s, None),
        };
        let rest_str = rest.unwrap_or("");
        match scheme {
            "pipe" if rest.is_none() => Ok(Self::Pipe),
            "pipe" => Err(AddressError::PipeTakesNothing { input: s.into() }),
            "shm" => check_name("shm:", rest_str).map(Self::Shm),
            "file" => check_path("file:", rest_str).map(Self::File),
            "fifo" => check_path("fifo:", rest_str).map(Self::Fifo),
            "unix" => check_path("unix:", rest_str).map(Self::Unix),
            "mq" => check_name("mq:", rest_str).map(Self::Mq),
            "sysv" => {
                SysvKey::parse(rest_str)
                    .map(Self::Sysv)
                    .ok_or_else(|| AddressError::BadSysvKey {
                        scheme: "sysv:",
                        input: rest_str.into(),
                    })
            }
            "sysvmq" => {
                SysvKey::parse(rest_str)
                    .map(Self::SysvMq)
                    .ok_or_else(|| AddressError::BadSysvKey {
                        scheme: "sysvmq:",
                        input: rest_str.into(),
                    })
            }
            "tcp" => {
                let bad = || AddressError::BadTcp {
                    input: rest_str.into(),
                };
                let (host, port) = rest_str.rsplit_once(':').ok_or_else(bad)?;
                let port: u16 = port.parse().map_err(|_| bad())?;
                let host = host
                    .strip_prefix('[')
                    .and_then(|h| h.strip_suffix(']'))
                    .unwrap_or(host);
                if host.is_empty() {
                    return Err(bad());
                }
                Ok(Self::Tcp {
                    host: host.into(),
                    port,
                })
            }
            "zenoh" if rest_str.is_empty() || rest_str.contains(['*', '$']) => {
                Err(AddressError::BadZenohKey {
                    input: rest_str.into(),
                })
            }
            "zenoh" => Ok(Self::Zenoh(rest_str.to_owned())),
            "signal" if rest_str.is_empty() => Ok(Self::Signal(None)),
            "signal" => match rest_str.parse::<i32>() {
                Ok(pid) if pid > 0 => Ok(Self::Signal(Some(pid))),
                _ => Err(AddressError::BadPid {
                    input: rest_str.into(),
                }),
            },
            _ => Err(AddressError::UnknownScheme {
                scheme: scheme.into(),
                input: s.into(),
            }),
        }
    }
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Shm(n) => write!(f, "shm:{n}"),
            Self::File(p) => write!(f, "file:{}", p.display()),
            Self::Pipe => f.write_str("pipe"),
            Self::Fifo(p) => write!(f, "fifo:{}", p.display()),
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
            Self::Mq(n) => write!(f, "mq:{n}"),
            Self::Sysv(k) => write!(f, "sysv:{k}"),
            Self::SysvMq(k) => write!(f, "sysvmq:{k}"),
            Self::Tcp { host, port } if host.contains(':') => write!(f, "tcp:[{host}]:{port}"),
            Self::Tcp { host, port } => write!(f, "tcp:{host}:{port}"),
            Self::Signal(None) => f.write_str("signal:"),
            Self::Signal(Some(pid)) => write!(f, "signal:{pid}"),
            Self::Zenoh(k) => write!(f, "zenoh:{k}"),
        }
    }
}

/// Settings for binding and connecting.
#[derive(Debug, Clone)]
pub struct Options {
    connect_timeout: Duration,
    max_frame: Option<usize>,
    mq_capacity: Option<usize>,
    rt_signal: u8,
    #[cfg(feature = "zenoh")]
    zenoh_config: Option<shmlane_zenoh::Config>,
    /// The message type, for the transports that check it (`zenoh:`).
    #[cfg(feature = "zenoh")]
    type_tag: Option<shmlane_zenoh::TypeTag>,
}

impl Default for Options {
    fn default() -> Self {
        Self::new()
    }
}

impl Options {
    /// Defaults: connect timeout 5 s, max frame 1 MiB on streams and
    /// `min(8 KiB, msgsize_max)` on `mq:`, mq capacity `min(10, msg_max)`,
    /// signal `SIGRTMIN+5`.
    pub fn new() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            max_frame: None,
            mq_capacity: None,
            rt_signal: 5,
            #[cfg(feature = "zenoh")]
            zenoh_config: None,
            #[cfg(feature = "zenoh")]
            type_tag: None,
        }
    }

    /// The message type these frames carry, for `zenoh:` endpoints, whose
    /// senders and receivers refuse each other when their types differ
    /// (the channel API sets it; frames sent through this module directly
    /// are untyped and agree with any type).
    #[cfg(feature = "zenoh")]
    pub(crate) fn message_type(mut self, t: &shmlane_shm::TypeInfo) -> Self {
        self.type_tag = Some(shmlane_zenoh::TypeTag::new(
            &t.name,
            &[
                &t.codec.to_le_bytes(),
                &t.size.to_le_bytes(),
                &t.align.to_le_bytes(),
                t.schema.as_bytes(),
            ],
        ));
        self
    }

    /// The Zenoh session's configuration for `zenoh:` (default: the
    /// JSON5 file named by `ZENOH_CONFIG`, else Zenoh's default peer).
    #[cfg(feature = "zenoh")]
    pub fn zenoh_config(mut self, config: shmlane_zenoh::Config) -> Self {
        self.zenoh_config = Some(config);
        self
    }

    #[cfg(feature = "zenoh")]
    fn zenoh(&self) -> shmlane_zenoh::ZOptions {
        shmlane_zenoh::ZOptions {
            config: self.zenoh_config.clone(),
            max_frame: self.stream_max(),
            capacity: self.mq_capacity.unwrap_or(shmlane_zenoh::DEFAULT_CAPACITY),
            connect_timeout: self.connect_timeout,
            type_tag: self.type_tag.clone(),
        }
    }

    /// How long [`FrameSender::connect`] waits for a receiver to appear.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The largest frame, for streams (at most `u32::MAX`; both sides must
    /// agree) and `mq:` (the receiver's queue message size; the sender
    /// learns it). `signal:` frames are always at most 4 KiB.
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.max_frame = Some(bytes.min(u32::MAX as usize));
        self
    }

    /// How many frames an `mq:` queue holds.
    pub fn mq_capacity(mut self, frames: usize) -> Self {
        self.mq_capacity = Some(frames);
        self
    }

    /// Which real-time signal `signal:` uses: `SIGRTMIN + offset`.
    pub fn rt_signal(mut self, offset: u8) -> Self {
        self.rt_signal = offset.min(63);
        self
    }

    fn stream_max(&self) -> usize {
        self.max_frame.unwrap_or(DEFAULT_MAX_FRAME)
    }
}

/// Blocks the `signal:` transport's signal in the calling thread; threads
/// it spawns afterwards inherit the mask. Call it first thing in `main` of
/// a program that receives on `signal:`.
///
/// # Errors
///
/// An offset above `SIGRTMAX`, or a failure of `pthread_sigmask`.
pub fn block_signal(opts: &Options) -> io::Result<()> {
    shmlane_sys::signal::block(signal::signal_number(opts.rt_signal)?)
}

/// Arranges for `fd` to stay open across `exec` in children `cmd` spawns
/// (it is cleared of `FD_CLOEXEC` in the child only, so children spawned
/// meanwhile by other threads do not inherit it). Returns the number to
/// tell the child, which takes it with `from_inherited_fd`. Keep `fd`
/// open until the child is spawned, then drop it.
pub fn pass_to_child(cmd: &mut Command, fd: &OwnedFd) -> RawFd {
    let raw = fd.as_raw_fd();
    let keep = move || {
        // SAFETY: this runs in the forked child, whose descriptor table
        // is the parent's at the fork, where the caller keeps `fd` open
        // until the child is spawned; the number is only handed to
        // fcntl(F_SETFD), which fails with EBADF for a closed one.
        let fd = unsafe { BorrowedFd::borrow_raw(raw) };
        shmlane_sys::fd::set_cloexec(fd, false)
    };
    // SAFETY: the closure makes one fcntl system call, which is
    // async-signal-safe, and allocates nothing.
    unsafe { cmd.pre_exec(keep) };
    raw
}

/// An anonymous pipe: a sender and a receiver, both close-on-exec. Hand
/// one to a child with `into_owned_fd` and [`pass_to_child`].
///
/// # Errors
///
/// A failure of `pipe2`.
pub fn pipe() -> io::Result<(FrameSender, FrameReceiver)> {
    let (r, w) = shmlane_sys::fd::pipe()?;
    shmlane_sys::fd::grow_pipe(&w, DEFAULT_MAX_FRAME);
    let tx = StreamTx::new(w, false, DEFAULT_MAX_FRAME)?;
    let rx = StreamRx::new(r, false, DEFAULT_MAX_FRAME)?;
    Ok((
        FrameSender::new(TxImpl::Stream(tx)),
        FrameReceiver::new(RxImpl::Stream(rx), Address::Pipe, None),
    ))
}

/// Takes ownership of an inherited descriptor.
///
/// # Safety
///
/// - `fd` must be an open descriptor that nothing else in this process
///   owns or closes.
unsafe fn adopt(fd: RawFd) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    // SAFETY: per the contract, the descriptor is open and ours alone.
    let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // Closed on our own exec again.
    shmlane_sys::fd::set_cloexec(&fd, true)?;
    Ok(fd)
}

/// How often an async wait looks again on a transport that has no
/// descriptor to raise an event (`sysvmq:`, `zenoh:`).
const NO_EVENT_RECHECK: Duration = Duration::from_millis(1);

/// Calls `attempt` every `step` until it connects (`Some`), fails, or
/// `timeout` has passed: then `NobodyListens` at `address`.
fn connect_within<T>(
    address: impl FnOnce() -> String,
    timeout: Duration,
    step: Duration,
    mut attempt: impl FnMut() -> Result<Option<T>, OpenError>,
) -> Result<T, OpenError> {
    let start = Instant::now();
    let until = start + timeout;
    loop {
        match attempt()? {
            Some(t) => return Ok(t),
            None if Instant::now() >= until => {
                return Err(OpenError::NobodyListens {
                    address: address(),
                    waited: start.elapsed(),
                })
            }
            None => std::thread::sleep(step.min(until - Instant::now())),
        }
    }
}

/// A Zenoh endpoint's open error as the transports' own.
#[cfg(feature = "zenoh")]
fn zenoh_open(e: shmlane_zenoh::ZOpenError) -> OpenError {
    match e {
        shmlane_zenoh::ZOpenError::NobodyListens { address, waited } => {
            OpenError::NobodyListens { address, waited }
        }
        shmlane_zenoh::ZOpenError::TypeMismatch {
            address,
            ours,
            theirs,
        } => OpenError::TypeMismatch {
            address,
            ours,
            theirs: format!("another type (type hash {theirs:016x})"),
        },
        other => OpenError::Zenoh(other.to_string()),
    }
}

/// The earlier of `until` and `step` from now.
fn step(until: Option<Instant>, step: Duration) -> Instant {
    let next = Instant::now() + step;
    until.map_or(next, |u| u.min(next))
}

/// Whether `until` has passed.
fn passed(until: Option<Instant>) -> bool {
    until.is_some_and(|u| Instant::now() >= u)
}

/// What an async wait on a kernel transport watches (for the
/// `crate::ipc` futures): descriptors with the events that mean "try
/// again" (a peer that closes or dies raises one on streams and pidfds),
/// and when to look again without an event.
#[derive(Debug, Default)]
pub(crate) struct Readiness {
    pub(crate) fds: Vec<(OwnedFd, PollFlags)>,
    pub(crate) recheck: Recheck,
}

/// When an async wait on a kernel transport looks again without an event.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recheck {
    /// Never: every change raises an event on a descriptor.
    #[default]
    Never,
    /// Now and then, to notice a peer's death (it raises no event): the
    /// futures' periodic step.
    Death,
    /// After this long: what is waited for raises no event (a full
    /// signal queue).
    After(Duration),
    /// At once: something may be ready that raises no event (frames
    /// another thread read into the receiver's buffers).
    Now,
}

impl Readiness {
    /// Look again at once (see [`Recheck::Now`]).
    pub(crate) fn now() -> Self {
        Self {
            fds: Vec::new(),
            recheck: Recheck::Now,
        }
    }

    /// Adds a duplicate of `fd` (the wait holds its own descriptor, so
    /// the handle may close its own meanwhile).
    pub(crate) fn watch(&mut self, fd: impl AsFd, events: PollFlags) -> io::Result<()> {
        self.fds.push((fd.as_fd().try_clone_to_owned()?, events));
        Ok(())
    }
}

#[derive(Debug)]
enum TxImpl {
    Stream(StreamTx),
    Mq(mq::MqTx),
    SysvMq(sysvmq::SysvMqTx),
    Signal(signal::SigTx),
    #[cfg(feature = "zenoh")]
    /// Boxed: the gateway's sender is several times the others' size.
    Zenoh(Box<shmlane_zenoh::ZenohTx>),
}

/// The sending end of a frame transport. `Send`, not `Sync`.
#[derive(Debug)]
pub struct FrameSender {
    inner: TxImpl,
    _not_sync: PhantomData<Cell<()>>,
}

impl FrameSender {
    fn new(inner: TxImpl) -> Self {
        Self {
            inner,
            _not_sync: PhantomData,
        }
    }

    /// Connects to the receiver at `addr`, waiting up to
    /// [`Options::connect_timeout`] for one to appear. Other senders may
    /// connect to the same receiver on `unix:`, `tcp:`, `mq:` and
    /// `signal:` (one per process); see the [module docs](self).
    ///
    /// # Errors
    ///
    /// [`OpenError::NobodyListens`] when no receiver appeared in time,
    /// [`OpenError::AlreadyConnected`] for a `fifo:` that has a sender and
    /// a `signal:PID` this process sends to already,
    /// [`OpenError::Unsupported`] for `shm:`, `file:`, `pipe` and a
    /// `signal:` without a pid, and the path errors of [`OpenError`].
    pub fn connect(addr: &Address, opts: &Options) -> Result<Self, OpenError> {
        let t = opts.connect_timeout;
        let inner = match addr {
            Address::Fifo(p) => TxImpl::Stream(open::fifo_connect(p, opts.stream_max(), t)?),
            Address::Unix(p) => TxImpl::Stream(open::unix_connect(p, opts.stream_max(), t)?),
            Address::Tcp { host, port } => {
                TxImpl::Stream(open::tcp_connect(host, *port, opts.stream_max(), t)?)
            }
            Address::Mq(name) => TxImpl::Mq(mq::MqTx::connect(name, opts)?),
            Address::SysvMq(key) => TxImpl::SysvMq(sysvmq::SysvMqTx::connect(key, opts)?),
            Address::Signal(Some(pid)) => TxImpl::Signal(signal::SigTx::connect(*pid, opts)?),
            #[cfg(feature = "zenoh")]
            Address::Zenoh(key) => TxImpl::Zenoh(Box::new(
                shmlane_zenoh::ZenohTx::connect(key, &opts.zenoh()).map_err(zenoh_open)?,
            )),
            other => return Err(unsupported(other, true)),
        };
        Ok(Self::new(inner))
    }

    /// Sends one frame, waiting until `deadline` for room (`None`: no
    /// limit; `Some(Instant::now())`: do not wait).
    ///
    /// # Errors
    ///
    /// [`FrameSendError::TooLarge`] (nothing sent) for a frame above
    /// [`max_frame`](Self::max_frame), `Timeout` (nothing sent),
    /// `Disconnected` once the receiver closed or died, `Os` otherwise.
    pub fn send(&mut self, frame: &[u8], deadline: Option<Instant>) -> Result<(), FrameSendError> {
        // Checked here for every transport: none sends a byte of it.
        let max = self.max_frame();
        if frame.len() > max {
            return Err(FrameSendError::TooLarge {
                len: frame.len(),
                max,
            });
        }
        match &mut self.inner {
            TxImpl::Stream(s) => s.send(frame, deadline),
            TxImpl::Mq(s) => s.send(frame, deadline),
            TxImpl::SysvMq(s) => s.send(frame, deadline),
            #[cfg(feature = "zenoh")]
            TxImpl::Zenoh(s) => s.send(frame).map_err(|e| match e {
                shmlane_zenoh::ZSendError::Disconnected => FrameSendError::Disconnected,
                shmlane_zenoh::ZSendError::TooLarge { len, max } => {
                    FrameSendError::TooLarge { len, max }
                }
                // The gateway's error inside: `get_ref` and downcast to
                // `shmlane_zenoh::ZSendError` for its fields.
                e @ shmlane_zenoh::ZSendError::TypeMismatch { .. } => {
                    FrameSendError::Os(io::Error::new(io::ErrorKind::InvalidData, e))
                }
                other => FrameSendError::Os(io::Error::other(other)),
            }),
            TxImpl::Signal(s) => s.send(frame, deadline),
        }
    }

    /// What an async send that found no room waits for (see
    /// [`Readiness`]).
    pub(crate) fn readiness(&self) -> io::Result<Readiness> {
        let mut r = Readiness::default();
        match &self.inner {
            TxImpl::Stream(s) => r.watch(s.fd(), PollFlags::OUT)?,
            TxImpl::Mq(s) => {
                r.watch(s.queue(), PollFlags::OUT)?;
                r.recheck = Recheck::Death;
            }
            TxImpl::SysvMq(_) => r.recheck = Recheck::After(NO_EVENT_RECHECK),
            #[cfg(feature = "zenoh")]
            TxImpl::Zenoh(_) => r.recheck = Recheck::After(NO_EVENT_RECHECK),
            TxImpl::Signal(_) => r.recheck = Recheck::After(signal::RETRY),
        }
        Ok(r)
    }

    /// A publisher of a topic at `addr` (`zenoh:` only): it waits for no
    /// subscriber, and publishing with none is not an error.
    ///
    /// # Errors
    ///
    /// [`OpenError::Unsupported`] for any other address; as
    /// [`connect`](Self::connect) otherwise.
    pub(crate) fn publish(addr: &Address, opts: &Options) -> Result<Self, OpenError> {
        match addr {
            #[cfg(feature = "zenoh")]
            Address::Zenoh(key) => Ok(Self::new(TxImpl::Zenoh(Box::new(
                shmlane_zenoh::ZenohTx::publish(key, &opts.zenoh()).map_err(zenoh_open)?,
            )))),
            _ => {
                let _ = opts;
                Err(not_a_topic(addr))
            }
        }
    }

    /// The receivers this sender knows of, where the transport tells
    /// (`zenoh:`: their liveliness tokens).
    pub(crate) fn receivers(&self) -> Option<usize> {
        match &self.inner {
            #[cfg(feature = "zenoh")]
            TxImpl::Zenoh(s) => Some(s.receivers()),
            _ => None,
        }
    }

    /// The largest frame this transport carries.
    pub fn max_frame(&self) -> usize {
        match &self.inner {
            TxImpl::Stream(s) => s.max_frame(),
            TxImpl::Mq(s) => s.max_frame(),
            TxImpl::SysvMq(s) => s.max_frame(),
            #[cfg(feature = "zenoh")]
            TxImpl::Zenoh(s) => s.max_frame(),
            TxImpl::Signal(_) => SIGNAL_MAX_FRAME,
        }
    }

    /// The descriptor of a `pipe` (or other stream) sender, to hand to a
    /// child with [`pass_to_child`]. Gives `self` back for `mq:` and
    /// `signal:`, and for a stream with a frame partly written.
    #[allow(clippy::result_large_err)]
    pub fn into_owned_fd(self) -> Result<OwnedFd, Self> {
        match self.inner {
            TxImpl::Stream(s) if !s.has_pending() => Ok(s.into_fd()),
            inner => Err(Self::new(inner)),
        }
    }

    /// A sender over a descriptor inherited from the parent (a pipe, FIFO
    /// or stream socket whose peer is a `FrameReceiver`), with the default
    /// max frame.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a negative `fd`, or a failure of `fcntl`/`fstat`.
    ///
    /// # Safety
    ///
    /// - `fd` must be an open descriptor that nothing else in this process
    ///   owns or closes; the sender closes it.
    pub unsafe fn from_inherited_fd(fd: RawFd) -> io::Result<Self> {
        // SAFETY: forwarded from our caller.
        let fd = unsafe { adopt(fd)? };
        let socket = shmlane_sys::fd::is_socket(&fd)?;
        Ok(Self::new(TxImpl::Stream(StreamTx::new(
            fd,
            socket,
            DEFAULT_MAX_FRAME,
        )?)))
    }
}

/// The error of a topic end on an address that carries no topics.
fn not_a_topic(addr: &Address) -> OpenError {
    OpenError::Unsupported {
        address: addr.to_string(),
        hint: if cfg!(feature = "zenoh") || !matches!(addr, Address::Zenoh(_)) {
            "publish/subscribe runs over shared memory (shm:, file:, sysv:, a memfd) and, \
             across machines, zenoh:"
        } else {
            "zenoh: needs shmlane built with the `zenoh` cargo feature (which builds Zenoh)"
        },
    }
}

fn unsupported(addr: &Address, sender: bool) -> OpenError {
    let hint = match addr {
        Address::Shm(_) | Address::File(_) | Address::Sysv(_) => {
            "shared-memory rings are served by `shmlane::ipc::Builder`, not by frame transports"
        }
        Address::Pipe => {
            "an anonymous pipe has no address: create both ends with `transport::pipe()` and \
             hand one to the child"
        }
        Address::Signal(None) if sender => "a sender needs the receiver's pid: `signal:PID`",
        Address::Zenoh(_) => {
            "zenoh: needs shmlane built with the `zenoh` cargo feature (which builds Zenoh)"
        }
        _ => "not supported here",
    };
    OpenError::Unsupported {
        address: addr.to_string(),
        hint,
    }
}

#[derive(Debug)]
enum RxImpl {
    Stream(StreamRx),
    Listen(listen::ListenRx),
    Mq(mq::MqRx),
    SysvMq(sysvmq::SysvMqRx),
    Signal(signal::SigRx),
    #[cfg(feature = "zenoh")]
    Zenoh(shmlane_zenoh::ZenohRx),
}

/// Removes a path when dropped.
#[derive(Debug)]
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The receiving end of a frame transport. `Send`, not `Sync`.
#[derive(Debug)]
pub struct FrameReceiver {
    inner: RxImpl,
    local: Address,
    _remove: RemoveOnDrop,
    _not_sync: PhantomData<Cell<()>>,
}

impl FrameReceiver {
    fn new(inner: RxImpl, local: Address, remove: Option<PathBuf>) -> Self {
        Self {
            inner,
            local,
            _remove: RemoveOnDrop(remove),
            _not_sync: PhantomData,
        }
    }

    /// Binds or creates `addr` and waits there for senders: creates the
    /// FIFO, listens on the socket (removing a stale socket file nobody
    /// listens on), creates the message queue (replacing one whose
    /// receiver died), or blocks the signal. What it created is removed
    /// when the receiver drops. How many senders each mechanism takes is
    /// in the [module docs](self).
    ///
    /// # Errors
    ///
    /// [`OpenError`]: the address is served elsewhere (`Unsupported`), is
    /// a directory, another kind of file, not permitted, in use (a live
    /// receiver or another program's port), or asks for frames above the
    /// system's message-queue limit; see each variant.
    pub fn bind(addr: &Address, opts: &Options) -> Result<Self, OpenError> {
        let max = opts.stream_max();
        Ok(match addr {
            Address::Fifo(p) => {
                let (rx, created) = open::fifo_bind(p, max)?;
                Self::new(RxImpl::Stream(rx), addr.clone(), created.then(|| p.clone()))
            }
            Address::Unix(p) => {
                let listener = open::unix_bind(p)?;
                let inner = RxImpl::Listen(listen::ListenRx::new(listener, false, max));
                Self::new(inner, addr.clone(), Some(p.clone()))
            }
            Address::Tcp { host, port } => {
                let (listener, local) = open::tcp_bind(host, *port)?;
                let inner = RxImpl::Listen(listen::ListenRx::new(listener, true, max));
                let local = Address::Tcp {
                    host: local.ip().to_string(),
                    port: local.port(),
                };
                Self::new(inner, local, None)
            }
            Address::Mq(name) => {
                Self::new(RxImpl::Mq(mq::MqRx::bind(name, opts)?), addr.clone(), None)
            }
            Address::SysvMq(key) => {
                let rx = sysvmq::SysvMqRx::bind(key, opts)?;
                Self::new(RxImpl::SysvMq(rx), addr.clone(), None)
            }
            #[cfg(feature = "zenoh")]
            Address::Zenoh(key) => {
                let rx = shmlane_zenoh::ZenohRx::bind(key, &opts.zenoh()).map_err(zenoh_open)?;
                Self::new(RxImpl::Zenoh(rx), addr.clone(), None)
            }
            Address::Signal(pid) => {
                let rx = signal::SigRx::bind(*pid, opts)?;
                let local = Address::Signal(Some(std::process::id() as i32));
                Self::new(RxImpl::Signal(rx), local, None)
            }
            other => return Err(unsupported(other, false)),
        })
    }

    /// The address a sender should connect to: for `tcp:` with port 0 the
    /// port bound, for `signal:` this process's pid.
    pub fn local_address(&self) -> &Address {
        &self.local
    }

    /// Receives one frame into `buf` (cleared first; its capacity is
    /// reused), waiting until `deadline` (`None`: no limit;
    /// `Some(Instant::now())`: a non-blocking try). Returns its length.
    ///
    /// # Errors
    ///
    /// `Timeout` when no whole frame came in time (a partly received one
    /// is kept for the next call), `Disconnected` once a sender came and
    /// every sender closed or died and all their frames were delivered (a
    /// later sender is still received), `Os` otherwise: `InvalidData` for
    /// a peer that broke the framing, reported once; on `unix:`, `tcp:`
    /// and `signal:` only that sender is dropped and the next call goes
    /// on with the others.
    pub fn recv(
        &mut self,
        buf: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<usize, FrameRecvError> {
        match &mut self.inner {
            RxImpl::Stream(s) => s.recv(buf, deadline),
            RxImpl::Listen(s) => s.recv(buf, deadline),
            RxImpl::Mq(s) => s.recv(buf, deadline),
            RxImpl::SysvMq(s) => s.recv(buf, deadline),
            #[cfg(feature = "zenoh")]
            RxImpl::Zenoh(s) => s.recv(buf, deadline).map_err(|e| match e {
                shmlane_zenoh::ZRecvError::Timeout => FrameRecvError::Timeout,
                shmlane_zenoh::ZRecvError::Disconnected => FrameRecvError::Disconnected,
                // The gateway's error inside (`TooLarge`, `TypeMismatch`):
                // `get_ref` and downcast to `shmlane_zenoh::ZRecvError`.
                other => FrameRecvError::Os(io::Error::new(io::ErrorKind::InvalidData, other)),
            }),
            RxImpl::Signal(s) => s.recv(buf, deadline),
        }
    }

    /// What an async receive that found nothing waits for (see
    /// [`Readiness`]).
    pub(crate) fn readiness(&self) -> io::Result<Readiness> {
        let mut r = Readiness::default();
        match &self.inner {
            RxImpl::Stream(s) => r.watch(s.fd(), PollFlags::IN)?,
            RxImpl::Listen(s) => s.readiness(&mut r)?,
            RxImpl::Mq(s) => {
                r.watch(s.queue(), PollFlags::IN)?;
                r.recheck = Recheck::Death;
            }
            RxImpl::SysvMq(_) => r.recheck = Recheck::After(NO_EVENT_RECHECK),
            #[cfg(feature = "zenoh")]
            RxImpl::Zenoh(_) => r.recheck = Recheck::After(NO_EVENT_RECHECK),
            RxImpl::Signal(s) => s.readiness(&mut r)?,
        }
        Ok(r)
    }

    /// A subscriber of a topic at `addr` (`zenoh:` only).
    ///
    /// # Errors
    ///
    /// [`OpenError::Unsupported`] for any other address; as
    /// [`bind`](Self::bind) otherwise.
    pub(crate) fn subscribe(addr: &Address, opts: &Options) -> Result<Self, OpenError> {
        match addr {
            #[cfg(feature = "zenoh")]
            Address::Zenoh(_) => Self::bind(addr, opts),
            _ => {
                let _ = opts;
                Err(not_a_topic(addr))
            }
        }
    }

    /// Frames that arrived and were not received yet, where the transport
    /// tells (`zenoh:`).
    pub(crate) fn queued(&self) -> Option<usize> {
        match &self.inner {
            #[cfg(feature = "zenoh")]
            RxImpl::Zenoh(s) => Some(s.queued()),
            _ => None,
        }
    }

    /// The largest frame this receiver accepts.
    pub fn max_frame(&self) -> usize {
        match &self.inner {
            RxImpl::Stream(s) => s.max_frame(),
            RxImpl::Listen(s) => s.max_frame(),
            RxImpl::Mq(s) => s.max_frame(),
            RxImpl::SysvMq(s) => s.max_frame(),
            #[cfg(feature = "zenoh")]
            RxImpl::Zenoh(s) => s.max_frame(),
            RxImpl::Signal(_) => SIGNAL_MAX_FRAME,
        }
    }

    /// The descriptor of a `pipe` receiver that has not received yet, to
    /// hand to a child with [`pass_to_child`]. Gives `self` back otherwise.
    #[allow(clippy::result_large_err)]
    pub fn into_owned_fd(mut self) -> Result<OwnedFd, Self> {
        let remove = self._remove.0.take();
        match self.inner {
            RxImpl::Stream(s) if self.local == Address::Pipe && s.is_fresh() => Ok(s.into_fd()),
            inner => Err(Self::new(inner, self.local, remove)),
        }
    }

    /// A receiver over a descriptor inherited from the parent (a pipe or
    /// stream socket whose peer is a `FrameSender`), with the default max
    /// frame.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a negative `fd`, or a failure of `fcntl`.
    ///
    /// # Safety
    ///
    /// - `fd` must be an open descriptor that nothing else in this process
    ///   owns or closes; the receiver closes it.
    pub unsafe fn from_inherited_fd(fd: RawFd) -> io::Result<Self> {
        // SAFETY: forwarded from our caller.
        let fd = unsafe { adopt(fd)? };
        Ok(Self::new(
            RxImpl::Stream(StreamRx::new(fd, false, DEFAULT_MAX_FRAME)?),
            Address::Pipe,
            None,
        ))
    }
}
