//! Message codecs for shmlane: how a message becomes slot bytes and back.
//!
//! Three kinds of message, all described by the [`Codec`] trait that the
//! channel is generic over:
//!
//! - **Pod** (`bytemuck::Pod`): the message's own bytes, copied in and out
//!   or written and read in place. Every bit pattern is valid, so nothing
//!   needs checking.
//! - **rkyv** ([`archive`]): a value is serialized straight into the slot by
//!   [`archive::Message::encode_into`] (no intermediate buffer, no heap
//!   allocation once the serializer's scratch arena has warmed up) and read
//!   in place as its archived form. How far received bytes are trusted is
//!   the receiver's [`Trust`]. Their [`Schema`] (field names, order and
//!   types, recursively) is what a segment records about them.
//! - **raw bytes**: a length and the bytes.
//!
//! The crate is `no_std` + `alloc` and makes no system calls; the channel
//! (`shmlane::ipc`) owns the slots and hands this crate byte slices.
//!
//! # Examples
//!
//! ```
//! use rkyv::{Archive, Deserialize, Serialize};
//! use shmlane_codec::archive::{CopyBuf, Message, Scratch};
//! use shmlane_codec::Trust;
//!
//! // Through the `shmlane` crate, `#[derive(shmlane::Message)]` does both.
//! #[derive(Archive, Serialize, Deserialize, shmlane_derive::Schema, Debug, PartialEq)]
//! #[shmlane(crate = shmlane_codec)]
//! struct Order {
//!     id: u64,
//!     symbol: String,
//! }
//!
//! let order = Order { id: 7, symbol: "ACME".into() };
//! let mut scratch = Scratch::new();
//! // A slot: 16-byte aligned, like the channel's.
//! let mut slot = rkyv::util::AlignedVec::<16>::new();
//! slot.resize(128, 0);
//! let len = order.encode_into(&mut slot, &mut scratch)?;
//! let mut copy = CopyBuf::new();
//! let archived = shmlane_codec::archive::view::<Order>(&slot[..len], Trust::default(), &mut copy)?;
//! assert_eq!(archived.id, 7);
//! assert_eq!(archived.symbol, "ACME");
//! assert_eq!(Order::decode(archived)?, order);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![no_std]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod archive;
pub mod sample;
pub mod schema;

use alloc::string::String;
use core::fmt;
use core::mem::{align_of, size_of};

pub use bytemuck;
pub use rkyv;
pub use schema::Schema;

/// Codec ids, stored in the segment header's type fingerprint.
pub mod kind {
    /// A `bytemuck::Pod` type, copied as its bytes.
    pub const POD: u32 = 1;
    /// An rkyv archive.
    pub const RKYV: u32 = 2;
    /// Raw bytes.
    pub const BYTES: u32 = 3;
}

/// What a channel's header records about its message type, so that a
/// process opening it with another type gets a clear error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    /// A readable name (`core::any::type_name`; it may differ between
    /// compiler versions, so both sides should be built by the same one).
    pub name: &'static str,
    /// What two sides must agree on, as text: for rkyv messages the
    /// type's [structural schema](schema); for Pod types their
    /// `core::any::type_name` (path included); `bytes` for raw bytes.
    pub schema: String,
    /// The size of the type as stored (for rkyv, of the archived type).
    pub size: usize,
    /// Its alignment as stored.
    pub align: usize,
    /// One of [`kind`].
    pub codec: u32,
}

/// A message kind a channel can carry.
///
/// Implemented here for every `bytemuck::Pod` type; the channel crate adds
/// its markers for rkyv and raw-bytes messages.
pub trait Codec: 'static {
    /// The codec id ([`kind`]).
    const KIND: u32;
    /// The alignment the first byte of a message needs in a slot.
    const ALIGN: usize;
    /// The fingerprint stored in the segment header.
    fn fingerprint() -> Fingerprint;
    /// The length of every message, when all have one length (Pod types).
    fn fixed_len() -> Option<usize>;
}

impl<T: bytemuck::Pod> Codec for T {
    const KIND: u32 = kind::POD;
    const ALIGN: usize = align_of::<T>();

    fn fingerprint() -> Fingerprint {
        Fingerprint {
            name: core::any::type_name::<T>(),
            schema: String::from(core::any::type_name::<T>()),
            size: size_of::<T>(),
            align: align_of::<T>(),
            codec: kind::POD,
        }
    }

    fn fixed_len() -> Option<usize> {
        Some(size_of::<T>())
    }
}

/// The fingerprint of raw-bytes messages.
pub fn bytes_fingerprint() -> Fingerprint {
    Fingerprint {
        name: "bytes",
        schema: String::from("bytes"),
        size: 1,
        align: 1,
        codec: kind::BYTES,
    }
}

/// How far a receiver trusts the bytes its peers write.
///
/// The default, [`Trust::validate`], checks every archive before handing
/// it out: in place for `recv_ref` (a reference into shared memory), on a
/// private copy for owned receives. That catches bugs and garbage, but a
/// hostile peer can rewrite shared bytes after the check while a
/// reference to them is held; [`Trust::hostile`] copies every rkyv and
/// byte message into private memory first and checks the copy.
/// [`Trust::unchecked`] skips the check (`unsafe`: for peers trusted
/// fully). Pod messages are read in place under every level: any bit
/// pattern is a valid value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Trust(Level);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
enum Level {
    #[default]
    Validate,
    Hostile,
    Unchecked,
}

impl Trust {
    /// Validate each archive in place (the default).
    pub const fn validate() -> Self {
        Self(Level::Validate)
    }

    /// Copy each message to private memory, then validate the copy: a peer
    /// that rewrites shared bytes after validation cannot reach us.
    pub const fn hostile() -> Self {
        Self(Level::Hostile)
    }

    /// Read archives without validating them.
    ///
    /// # Safety
    ///
    /// - Every byte string this value is ever used to read (by a channel or
    ///   link it is given to, or by [`archive::view`] and
    ///   [`archive::view_in_place`]) was encoded by shmlane's encoder for
    ///   the very type it is read as, and nobody changes it while it is
    ///   read: every peer that can write the channel's shared memory is
    ///   that trustworthy, and never touches a slot it does not own.
    ///   Invalid bytes read unchecked are undefined behaviour. (Links over
    ///   kernel transports validate whatever this says.)
    pub const unsafe fn unchecked() -> Self {
        Self(Level::Unchecked)
    }

    /// Whether messages are copied out of shared memory before use.
    pub const fn copies(self) -> bool {
        matches!(self.0, Level::Hostile)
    }

    /// Whether archives are validated.
    pub const fn validates(self) -> bool {
        !matches!(self.0, Level::Unchecked)
    }
}

impl fmt::Display for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Level::Validate => "validate",
            Level::Hostile => "hostile",
            Level::Unchecked => "unchecked",
        })
    }
}

/// A message that cannot be encoded into a slot.
#[derive(Debug)]
#[non_exhaustive]
pub enum EncodeError {
    /// The encoded message needs `len` bytes; a slot holds `max`.
    TooLarge {
        /// Bytes the message needs.
        len: usize,
        /// Bytes a slot holds.
        max: usize,
    },
    /// The serializer failed (a type's own `Serialize` returned an error);
    /// the error says why, in every build.
    Failed(rkyv::rancor::BoxedError),
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { len, max } => write!(
                f,
                "message of {len} bytes does not fit a slot of {max} bytes: create the channel with a larger message size"
            ),
            Self::Failed(e) => write!(f, "serializing the message failed: {e}"),
        }
    }
}

impl core::error::Error for EncodeError {}

/// Received bytes that are not a valid message of the channel's type.
#[derive(Debug)]
#[non_exhaustive]
pub enum InvalidMessage {
    /// The length word says more bytes than a slot holds.
    Length {
        /// The length read.
        len: u64,
        /// Bytes a slot holds.
        max: usize,
    },
    /// The message is shorter than its type needs.
    TooShort {
        /// Bytes received.
        len: usize,
        /// Bytes the type needs at least.
        need: usize,
    },
    /// The message does not start at an address its type can be read at.
    Misaligned {
        /// The alignment the type needs.
        align: usize,
    },
    /// The bytes fail validation (or, on receive, a `Deserialize` impl
    /// failed); the error says why.
    Check(rkyv::rancor::BoxedError),
}

impl fmt::Display for InvalidMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Length { len, max } => {
                write!(
                    f,
                    "invalid message: length {len} exceeds the slot's {max} bytes"
                )
            }
            Self::TooShort { len, need } => {
                write!(
                    f,
                    "invalid message: {len} bytes, but its type needs at least {need}"
                )
            }
            Self::Misaligned { align } => {
                write!(
                    f,
                    "invalid message: not aligned to the {align} bytes its type needs"
                )
            }
            Self::Check(e) => write!(f, "invalid message: {e}"),
        }
    }
}

impl core::error::Error for InvalidMessage {}
