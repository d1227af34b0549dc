//! shmlane: channels between threads and processes over lock-free rings.
//!
//! - [`bounded`]: a multi-producer multi-consumer channel between threads
//!   with crossbeam-channel's API and error types, built on the lock-free
//!   ring of [`shmlane_ring`] and the futex eventcount of
//!   [`shmlane_semaphore`].
//! - [`ipc`]: the same kind of channel between processes: one
//!   [`ipc::Sender`] / [`ipc::Receiver`] for every address, over a
//!   lock-free ring in shared memory (`shm:NAME`), a mmapped file
//!   (`file:PATH`) or a memfd, or over a kernel mechanism (`fifo:`,
//!   `unix:`, `mq:`, `tcp:`, `signal:`, a pipe) as a slower fallback.
//!   Messages are plain-old-data types (copied, or written and read in
//!   place), rkyv archives (serialized into the slot and read in place,
//!   validated as far as the receiver's trust says), or raw bytes.
//! - [`Semaphore`] (Linux): a named counting semaphore shared between
//!   processes; the permits of a process that dies come back by
//!   themselves.
//! - [`transport`] (advanced): the raw byte frames under the fallback
//!   mechanisms, each keeping message boundaries, with deadlines and
//!   disconnect detection.
//!
//! # Examples
//!
//! ```
//! use std::thread;
//!
//! let (tx, rx) = shmlane::bounded(16);
//! let senders: Vec<_> = (0..4)
//!     .map(|id| {
//!         let tx = tx.clone();
//!         thread::spawn(move || tx.send(format!("hello from {id}")).unwrap())
//!     })
//!     .collect();
//! drop(tx); // the channel disconnects when the last sender is gone
//! for s in senders {
//!     s.join().unwrap();
//! }
//! let mut got: Vec<String> = rx.iter().collect();
//! got.sort();
//! assert_eq!(got.len(), 4);
//! assert_eq!(got[0], "hello from 0");
//! ```
//!
//! A pool of five printers shared by any number of processes: each opens
//! the same name, and a permit held by a process that dies is given back.
//!
//! ```
//! # #[cfg(target_os = "linux")] {
//! use std::time::Duration;
//! use shmlane::{Semaphore, SemaphoreOptions};
//!
//! let name = format!("doc-root-printers-{}", std::process::id());
//! let pool = SemaphoreOptions::new().unlink_on_drop(true).create(&name, 5)?;
//! // In another process: let pool = Semaphore::open(&name)?;
//! let printer = pool.acquire_timeout(Duration::from_secs(1))?;
//! println!("printing on printer {}", printer.index());
//! assert_eq!(pool.available(), 4);
//! drop(printer); // back in the pool
//! assert_eq!(Semaphore::open(&name)?.available(), 5);
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Moving from crossbeam-channel
//!
//! Change the crate name: [`bounded`] (`bounded(0)` is a rendezvous
//! channel), [`unbounded`], [`after`], [`at`], [`tick`], [`never`](never()),
//! [`select!`], [`select_biased!`], [`Select`], [`Sender`], [`Receiver`]
//! and the error types have the same names, methods and behaviour;
//! crossbeam-channel's own test files run against shmlane unchanged but for
//! the crate name (`tests/crossbeam/` in the repository).
//!
//! ```
//! use std::time::Duration;
//! use shmlane::{select, tick, unbounded};
//!
//! let (work_tx, work_rx) = unbounded();
//! let (_stop_tx, stop_rx) = shmlane::bounded::<()>(0);
//! let heartbeat = tick(Duration::from_millis(1));
//! work_tx.send(42).unwrap();
//! let mut done = 0;
//! while done < 2 {
//!     select! {
//!         recv(work_rx) -> job => { assert_eq!(job, Ok(42)); done += 1; }
//!         recv(heartbeat) -> _ => done += 1,
//!         recv(stop_rx) -> _ => unreachable!("nobody sends a stop"),
//!     }
//! }
//! ```

mod chan;
#[cfg(not(shmlane_loom))]
mod context;
/// The async wakeup core, for the loom models (not an API).
#[cfg(shmlane_loom)]
#[doc(hidden)]
pub mod __loom {
    pub use crate::event::{Event, TaskWait};
}
mod error;
mod event;
#[cfg(all(target_os = "linux", not(shmlane_loom)))]
pub mod future;
#[cfg(not(shmlane_loom))]
pub mod ipc;
mod list;
#[cfg(not(shmlane_loom))]
mod select;
#[cfg(not(shmlane_loom))]
mod select_macro;
mod sync;
#[cfg(not(shmlane_loom))]
mod timers;
#[cfg(not(shmlane_loom))]
pub mod transport;
#[cfg(not(shmlane_loom))]
mod zero;

#[cfg(not(shmlane_loom))]
pub mod segments;

/// Internals that parse what peers send, for the fuzz targets in `fuzz/`
/// (feature `fuzzing`). Not part of the API: they change without notice.
#[cfg(all(feature = "fuzzing", not(shmlane_loom)))]
#[doc(hidden)]
pub mod fuzzing {
    use crate::codec::archive::CopyBuf;
    use crate::codec::{InvalidMessage, Trust};
    use crate::ipc::Message;

    pub use crate::transport::decode::{
        FrameTooLarge, Signal, SignalDecoder, SignalFrameError, Step, StreamDecoder,
    };

    /// The message of kind `M` in a frame received over a kernel
    /// transport, as a receiver reads it.
    ///
    /// # Errors
    ///
    /// [`InvalidMessage`] for a frame that is not an `M`.
    pub fn frame_message<'a, M: Message>(
        frame: &'a [u8],
        copy: &'a mut CopyBuf,
        trust: Trust,
    ) -> Result<&'a M::Target, InvalidMessage> {
        crate::ipc::frames::frame_message::<M>(frame, copy, trust)
    }
}

#[cfg(not(shmlane_loom))]
pub use chan::{after, at, never, tick};
pub use chan::{
    bounded, bounded_with, unbounded, unbounded_with, IntoIter, Iter, Receiver, Sender, TryIter,
};
pub use error::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};
#[cfg(not(shmlane_loom))]
pub use select::{
    ReadyTimeoutError, Select, SelectRecv, SelectSend, SelectTimeoutError, SelectedOperation,
    SendArm, TryReadyError, TrySelectError,
};

/// What `select!` expands to needs; not part of the API.
#[cfg(not(shmlane_loom))]
#[doc(hidden)]
pub mod __private {
    pub use crate::select::{Handle, SelectRecv, SelectSend, Token};
}
pub use shmlane_semaphore::WaitStrategy;
#[cfg(all(target_os = "linux", not(shmlane_loom)))]
pub use shmlane_semaphore::{
    AcquireError, Semaphore, SemaphoreError, SemaphoreOptions, SemaphorePermit, TryAcquireError,
};

/// SIGBUS containment for segments and semaphores: how to switch it off
/// ([`sigbus::disable`]) in applications that own `SIGBUS`.
#[cfg(all(target_os = "linux", not(shmlane_loom)))]
pub use shmlane_semaphore::sigbus;

/// The message codecs: rkyv archiving and validation, trust levels,
/// fingerprints and schemas, and sample message types.
#[cfg(not(shmlane_loom))]
pub use shmlane_codec as codec;

/// The Zenoh gateway behind `zenoh:` addresses (the `zenoh` feature): its
/// configuration type, Zenoh itself, and loopback configurations for
/// tests and benchmarks.
#[cfg(all(feature = "zenoh", not(shmlane_loom)))]
pub use shmlane_zenoh as zenoh;

/// The rkyv crate shmlane archives messages with. [`macro@Message`] needs
/// nothing else; for rkyv's own derives, write
/// `#[rkyv(crate = shmlane::rkyv)]` (or depend on rkyv 0.8 directly).
#[cfg(not(shmlane_loom))]
pub use rkyv;

/// The bytemuck crate behind Pod messages. Its derives name `::bytemuck`
/// unless told otherwise:
///
/// ```
/// use shmlane::bytemuck::{Pod, Zeroable};
///
/// #[derive(Pod, Zeroable, Clone, Copy)]
/// #[bytemuck(crate = "shmlane::bytemuck")]
/// #[repr(C)]
/// struct Quote {
///     seq: u64,
///     bid: f64,
/// }
///
/// let q = Quote { seq: 1, bid: 2.5 };
/// assert_eq!(shmlane::bytemuck::bytes_of(&q).len(), 16);
/// ```
pub use bytemuck;

/// Structural schemas of message types: the [`Schema`](trait@Schema)
/// trait, its impls for std types, and the canonical text a segment
/// records.
#[cfg(not(shmlane_loom))]
pub use shmlane_codec::schema;
#[cfg(not(shmlane_loom))]
pub use shmlane_codec::schema::Schema;
/// `#[derive(shmlane::Message)]` and `#[derive(shmlane::Schema)]`. Derive
/// macros live in the macro namespace, so `shmlane::Message` (this derive)
/// and the trait `shmlane::ipc::Message` do not clash (both can be
/// imported side by side), nor do the derive and the trait both called
/// `Schema`.
#[cfg(not(shmlane_loom))]
pub use shmlane_derive::{Message, Schema};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
