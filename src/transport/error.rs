//! Error types of the frame transports.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Why an address string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddressError {
    /// The address was empty.
    Empty,
    /// The part before `:` is not a known scheme.
    UnknownScheme {
        /// The scheme as written.
        scheme: String,
        /// The whole address.
        input: String,
    },
    /// `fifo:`, `unix:` or `file:` without a path.
    MissingPath {
        /// The scheme, with its colon.
        scheme: &'static str,
    },
    /// `shm:` or `mq:` with an empty name, one with `/` or NUL, or too long.
    BadName {
        /// The scheme, with its colon.
        scheme: &'static str,
        /// The name as written.
        name: String,
    },
    /// `tcp:` without `HOST:PORT`, or with a port that is not a number.
    BadTcp {
        /// What followed `tcp:`.
        input: String,
    },
    /// `signal:` followed by something other than a process id.
    BadPid {
        /// What followed `signal:`.
        input: String,
    },
    /// `sysv:` or `sysvmq:` followed by neither a non-zero key nor
    /// `PATH:ID`.
    BadSysvKey {
        /// The scheme, with its colon.
        scheme: &'static str,
        /// What followed it.
        input: String,
    },
    /// `zenoh:` with an empty key or one with wildcards.
    BadZenohKey {
        /// What followed `zenoh:`.
        input: String,
    },
    /// `pipe` with something after it.
    PipeTakesNothing {
        /// The whole address.
        input: String,
    },
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str(
                "empty address: use one of shm:NAME, file:PATH, sysv:KEY, pipe, fifo:PATH, \
                 unix:PATH, mq:NAME, sysvmq:KEY, tcp:HOST:PORT, signal:PID, zenoh:KEY",
            ),
            Self::UnknownScheme { scheme, input } => write!(
                f,
                "unknown scheme `{scheme}` in `{input}`: use one of shm:, file:, sysv:, pipe, \
                 fifo:, unix:, mq:, sysvmq:, tcp:, signal:, zenoh:"
            ),
            Self::MissingPath { scheme } => write!(
                f,
                "`{scheme}` needs a path, as in `{scheme}/tmp/orders` (relative paths are \
                 taken from the working directory)"
            ),
            Self::BadName { scheme, name } => write!(
                f,
                "bad name `{name}` after `{scheme}`: use 1 to 250 bytes without `/` or NUL, \
                 as in `{scheme}orders`"
            ),
            Self::BadTcp { input } => write!(
                f,
                "bad tcp address `tcp:{input}`: use tcp:HOST:PORT with a port from 0 to 65535, \
                 as in `tcp:127.0.0.1:7000` or `tcp:[::1]:7000`"
            ),
            Self::BadPid { input } => write!(
                f,
                "bad process id `{input}` in `signal:{input}`: use `signal:PID` with the \
                 receiver's process id (a receiver may write `signal:` for itself)"
            ),
            Self::BadSysvKey { scheme, input } => write!(
                f,
                "bad System V key `{input}` after `{scheme}`: use a non-zero key in decimal or \
                 hex (`{scheme}0x5300`, `{scheme}21248`), or an existing path and a project id \
                 from 1 to 255 for ftok (`{scheme}/etc/myapp:7`)"
            ),
            Self::BadZenohKey { input } => write!(
                f,
                "bad Zenoh key `{input}` after `zenoh:`: use a key without wildcards, as in \
                 `zenoh:factory/line1/orders`"
            ),
            Self::PipeTakesNothing { input } => write!(
                f,
                "`{input}`: an anonymous pipe has no name; write `pipe` and hand one end to \
                 the child with `transport::pipe()`, or use `fifo:PATH` for a named pipe"
            ),
        }
    }
}

impl std::error::Error for AddressError {}

/// Why a receiver could not be bound or a sender could not connect.
#[derive(Debug)]
#[non_exhaustive]
pub enum OpenError {
    /// This address is not served by the frame transports.
    Unsupported {
        /// The address.
        address: String,
        /// What to use instead.
        hint: &'static str,
    },
    /// The path is a directory.
    IsADirectory {
        /// The path.
        path: PathBuf,
    },
    /// The path exists and is another kind of file.
    WrongFileType {
        /// The path.
        path: PathBuf,
        /// What it should be: "a FIFO", "a socket".
        expected: &'static str,
    },
    /// The directory the path should be in does not exist.
    NoSuchDirectory {
        /// The path.
        path: PathBuf,
    },
    /// The operating system refused access to the path or name.
    PermissionDenied {
        /// The path (for `mq:` and `signal:`, a description).
        path: PathBuf,
    },
    /// A socket path longer than `sockaddr_un` holds.
    PathTooLong {
        /// The path.
        path: PathBuf,
        /// The longest path that fits, in bytes.
        max: usize,
    },
    /// A live receiver already serves this address.
    AddressInUse {
        /// The address.
        address: String,
    },
    /// The TCP port is taken by another socket.
    PortInUse {
        /// The port.
        port: u16,
    },
    /// No receiver appeared within the connect timeout.
    NobodyListens {
        /// The address.
        address: String,
        /// How long the sender waited.
        waited: Duration,
    },
    /// The address takes one sender and has it (`fifo:`), or this process
    /// has its one sender to it already (`signal:`); see each mechanism's
    /// senders in [`transport`](super).
    AlreadyConnected {
        /// The address.
        address: String,
        /// Why it takes no other, and what to do instead.
        hint: &'static str,
    },
    /// A max frame larger than the system's message-queue limit.
    MqFrameTooLarge {
        /// The max frame asked for.
        requested: usize,
        /// `/proc/sys/fs/mqueue/msgsize_max`.
        limit: usize,
    },
    /// A queue capacity larger than the system's message-queue limit.
    MqCapacityTooLarge {
        /// The capacity asked for.
        requested: usize,
        /// `/proc/sys/fs/mqueue/msg_max`.
        limit: usize,
    },
    /// A max frame larger than a System V message-queue limit: the
    /// largest message (`kernel.msgmax`) or the bytes a queue holds
    /// (`kernel.msgmnb`).
    SysvFrameTooLarge {
        /// The max frame asked for.
        requested: usize,
        /// The limit.
        limit: usize,
        /// The sysctl that sets it.
        sysctl: &'static str,
    },
    /// A `signal:` receiver can only be bound in the process it names.
    NotOwnPid {
        /// The pid in the address.
        pid: i32,
    },
    /// Some thread of this process does not block the transport's signal,
    /// which would kill the process when a frame arrives.
    SignalNotBlocked {
        /// The signal number.
        signal: i32,
        /// How many threads do not block it.
        threads: usize,
    },
    /// The Zenoh gateway could not make the endpoint (a bad key or
    /// configuration, or Zenoh failed): what it said.
    Zenoh(String),
    /// A receiver on the `zenoh:` key carries another message type.
    TypeMismatch {
        /// The address.
        address: String,
        /// This sender's message type.
        ours: String,
        /// The receiver's type, as far as it is announced (a hash of its
        /// fingerprint).
        theirs: String,
    },
    /// Any other failure of the operating system.
    Os(io::Error),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unsupported { address, hint } => write!(f, "`{address}`: {hint}"),
            Self::IsADirectory { path } => write!(
                f,
                "`{}` is a directory: name a file inside it, as in `{}/channel`",
                path.display(),
                path.display()
            ),
            Self::WrongFileType { path, expected } => write!(
                f,
                "`{}` exists and is not {expected}: remove it or choose another path",
                path.display()
            ),
            Self::NoSuchDirectory { path } => write!(
                f,
                "the directory of `{}` does not exist: create it first or choose another path",
                path.display()
            ),
            Self::PermissionDenied { path } => write!(
                f,
                "permission denied for `{}`: run as its owner, fix its mode or its \
                 directory's, or choose a path you can write (such as under /tmp)",
                path.display()
            ),
            Self::PathTooLong { path, max } => write!(
                f,
                "socket path `{}` is longer than {max} bytes: choose a shorter path",
                path.display()
            ),
            Self::AddressInUse { address } => write!(
                f,
                "`{address}` is served by a live receiver: stop it or choose another address"
            ),
            Self::PortInUse { port } => write!(
                f,
                "tcp port {port} is in use: stop the program holding it (`ss -ltnp 'sport = \
                 :{port}'` shows it) or choose another port (0 picks a free one)"
            ),
            Self::NobodyListens { address, waited } => write!(
                f,
                "nobody listens on `{address}` (waited {waited:?}): start the receiver first \
                 or raise the connect timeout"
            ),
            Self::AlreadyConnected { address, hint } => {
                write!(f, "`{address}` already has a sender: {hint}")
            }
            Self::MqFrameTooLarge { requested, limit } => write!(
                f,
                "a message-queue max frame of {requested} bytes exceeds the system limit of \
                 {limit} (/proc/sys/fs/mqueue/msgsize_max): raise it as root with `sysctl -w \
                 fs.mqueue.msgsize_max={requested}`, or ask for at most {limit} bytes"
            ),
            Self::MqCapacityTooLarge { requested, limit } => write!(
                f,
                "a message-queue capacity of {requested} messages exceeds the system limit of \
                 {limit} (/proc/sys/fs/mqueue/msg_max): raise it as root with `sysctl -w \
                 fs.mqueue.msg_max={requested}`, or ask for at most {limit}"
            ),
            Self::SysvFrameTooLarge {
                requested,
                limit,
                sysctl,
            } => write!(
                f,
                "a System V message-queue max frame of {requested} bytes exceeds the system \
                 limit of {limit} ({sysctl}): raise it as root with `sysctl -w \
                 {sysctl}={requested}`, or ask for at most {limit} bytes"
            ),
            Self::NotOwnPid { pid } => write!(
                f,
                "cannot receive on `signal:{pid}` in process {}: a receiver binds `signal:` \
                 (its own pid); senders name the receiver's pid",
                std::process::id()
            ),
            Self::SignalNotBlocked { signal, threads } => write!(
                f,
                "{threads} thread(s) of this process do not block signal {signal}, so a frame \
                 would kill the process: call `shmlane::transport::block_signal` at the start \
                 of main, before any thread is spawned"
            ),
            Self::Zenoh(e) => f.write_str(e),
            Self::TypeMismatch {
                address,
                ours,
                theirs,
            } => write!(
                f,
                "message type mismatch: a receiver on `{address}` takes {theirs}, not this \
                 sender's `{ours}`: build both sides with the same message type, or use \
                 another key"
            ),
            Self::Os(e) => write!(f, "operating system error: {e}"),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Os(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> Self {
        Self::Os(e)
    }
}

/// Why a frame was not sent.
#[derive(Debug)]
#[non_exhaustive]
pub enum FrameSendError {
    /// The deadline passed before the frame could be handed over; nothing
    /// of it was sent.
    Timeout,
    /// The receiver closed or died.
    Disconnected,
    /// The frame is larger than this transport carries; nothing was sent.
    TooLarge {
        /// The frame's length.
        len: usize,
        /// [`max_frame`](super::FrameSender::max_frame).
        max: usize,
    },
    /// Any other failure of the operating system.
    Os(io::Error),
}

impl fmt::Display for FrameSendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("timed out sending a frame"),
            Self::Disconnected => f.write_str("sending on a disconnected transport"),
            Self::TooLarge { len, max } => write!(
                f,
                "a frame of {len} bytes is larger than this transport's maximum of {max}: \
                 split it or use a transport with larger frames"
            ),
            Self::Os(e) => write!(f, "operating system error: {e}"),
        }
    }
}

impl std::error::Error for FrameSendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Os(e) => Some(e),
            _ => None,
        }
    }
}

/// Why no frame was received.
#[derive(Debug)]
#[non_exhaustive]
pub enum FrameRecvError {
    /// The deadline passed with no whole frame ready.
    Timeout,
    /// The sender closed or died and every frame it sent was delivered.
    Disconnected,
    /// Any other failure of the operating system, or a peer that broke
    /// the framing (`InvalidData`).
    Os(io::Error),
}

impl fmt::Display for FrameRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("timed out receiving a frame"),
            Self::Disconnected => f.write_str("receiving on an empty and disconnected transport"),
            Self::Os(e) => write!(f, "operating system error: {e}"),
        }
    }
}

impl std::error::Error for FrameRecvError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Os(e) => Some(e),
            _ => None,
        }
    }
}
