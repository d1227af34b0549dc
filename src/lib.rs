//! shmlane: channels between threads and processes over lock-free rings.
//!
//! - [`bounded`]: a multi-producer multi-consumer channel between threads
//!   with crossbeam-channel's API and error types, built on the lock-free
//!   ring of [`shmlane_ring`] and the futex eventcount of
//!   [`shmlane_semaphore`].
//! - [`ipc`]: the same kind of channel between processes, over a segment
//!   in shared memory (`shm:NAME`), a mmapped file (`file:PATH`) or a
//!   memfd, for plain-old-data messages.
//!
//! - [`transport`]: byte frames between two processes over the fallback
//!   mechanisms (`pipe`, `fifo:`, `unix:`, `mq:`, `tcp:`, `signal:`), each
//!   keeping message boundaries, with deadlines and disconnect detection.
//!
//! Zero-copy rkyv messages and a typed `Sender<T>` / `Receiver<T>` over the
//! fallback transports are not written yet.
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
//! # Moving from crossbeam-channel
//!
//! Change the crate name: `shmlane::bounded`, [`Sender`], [`Receiver`] and
//! the error types have the same names, methods and behaviour. Not
//! provided: `select!` and `Select`, `unbounded`, `never`, `after`, `tick`,
//! and zero-capacity (rendezvous) channels, for which [`bounded`] panics.

mod chan;
mod error;
#[cfg(not(shmlane_loom))]
pub mod ipc;
mod sync;
#[cfg(not(shmlane_loom))]
pub mod transport;

pub use chan::{bounded, bounded_with, IntoIter, Iter, Receiver, Sender, TryIter};
pub use error::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};
pub use shmlane_semaphore::WaitStrategy;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
