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

pub mod asynch;
mod builder;
mod channel;
mod connect;
pub(crate) mod frames;
mod handles;
mod kinds;
mod poller;
mod port;
pub mod service;
mod side;
mod slot;
pub mod topic;

use std::time::Duration;

pub use crate::transport::{Address, AddressError};
pub use builder::Builder;
pub use channel::Channel;
pub use connect::ConnectError;
pub use handles::{BatchSendError, Iter, Receiver, Sender, TryIter};
pub use kinds::{Bytes, Message, MsgRef, RecvMsgError, Rkyv, SendMsgError};
pub use service::{
    CallError, Client, ClientId, Pending, ReplyError, ServeError, Server, ServiceError,
};
pub use shmlane_codec::{Codec, EncodeError, InvalidMessage, Trust};
pub use shmlane_ring::RingKind;
pub use shmlane_shm::{AttachError, Backend, CreateError, OpenError, Role, Segment, TypeInfo};
pub use topic::{Policy, PublishError, Publisher, Subscriber, Topic, TopicRecvError, TopicRef};

use builder::Target;

use side::{MpmcEnd, Side};

/// Slot flag: the slot holds no message (a send whose message did not fit,
/// or whose writer panicked); skip it.
const FLAG_SKIP: u64 = 1 << 32;
/// A parked side wakes at least this often to check on its peers.
const STEP: Duration = Duration::from_millis(10);
/// Lock probes for dead peers happen about this often per handle at most
/// (measured on the coarse monotonic clock: give or take one tick, 1-10 ms).
const PROBE_INTERVAL: Duration = Duration::from_millis(5);
/// Busy-slot retries before a side treats the ring as full or empty and
/// waits in steps instead (the busy peer may be dead).
const BUSY_RETRIES: u32 = 64;
/// Default slot size (length word included) for messages of varying length.
const DEFAULT_SLOT: usize = 256;
