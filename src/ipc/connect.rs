//! The ends of a channel at any address, in one call:
//! [`Builder::sender`], [`Builder::receiver`] and
//! [`Builder::open_or_create`].

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmlane_codec::Trust;

use super::frames::{FramesRx, FramesTx};
use super::handles::{RxFlavor, TxFlavor};
use super::{
    AddressError, AttachError, Builder, Channel, CreateError, Message, OpenError, Receiver, Sender,
    Target,
};
use crate::transport::{self, Address, FrameReceiver, FrameSender};

/// Why [`Builder::sender`], [`Builder::receiver`] or
/// [`Builder::open_or_create`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// The address does not parse.
    Address(AddressError),
    /// The shared-memory segment could not be created.
    Create(CreateError),
    /// The shared-memory segment could not be opened.
    Open(OpenError),
    /// The segment refused this end (its one sender or receiver exists,
    /// or its participant table is full).
    Attach(AttachError),
    /// A kernel transport could not bind or connect.
    Transport(transport::OpenError),
    /// A setting was asked for that this address's mechanism cannot honour.
    Unsupported {
        /// The builder method.
        setting: &'static str,
        /// The address.
        address: String,
        /// What to do instead.
        hint: &'static str,
    },
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Address(e) => write!(f, "{e}"),
            Self::Create(e) => write!(f, "{e}"),
            Self::Open(e) => write!(f, "{e}"),
            Self::Attach(e) => write!(f, "{e}"),
            Self::Transport(e) => write!(f, "{e}"),
            Self::Unsupported {
                setting,
                address,
                hint,
            } => write!(
                f,
                "`Builder::{setting}` does not apply to {address}: {hint}"
            ),
        }
    }
}

/// Transparent: the message is the wrapped error's, and so is the source
/// (an error chain printed whole, as `anyhow`'s `{:#}` does, says each
/// part once; match the variant for the wrapped error).
impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Address(e) => e.source(),
            Self::Create(e) => e.source(),
            Self::Open(e) => e.source(),
            Self::Attach(e) => e.source(),
            Self::Transport(e) => e.source(),
            Self::Unsupported { .. } => None,
        }
    }
}

impl From<AddressError> for ConnectError {
    fn from(e: AddressError) -> Self {
        Self::Address(e)
    }
}

impl From<CreateError> for ConnectError {
    fn from(e: CreateError) -> Self {
        Self::Create(e)
    }
}

impl From<OpenError> for ConnectError {
    fn from(e: OpenError) -> Self {
        Self::Open(e)
    }
}

impl From<AttachError> for ConnectError {
    fn from(e: AttachError) -> Self {
        Self::Attach(e)
    }
}

impl From<transport::OpenError> for ConnectError {
    fn from(e: transport::OpenError) -> Self {
        Self::Transport(e)
    }
}

/// How long `open_or_create` naps between an `open` that found nothing and
/// a `create` that found something (another process won the race and is
/// still initialising).
const RACE_NAP: Duration = Duration::from_millis(1);

impl Builder {
    /// Opens the channel, or creates it with this builder's settings if it
    /// does not exist yet: two programs can start in either order, and when
    /// both create at once exactly one wins and the other opens what it
    /// made. Settings that describe the ring (capacity, message size, kind)
    /// apply only if this call creates it; an open adopts the segment's.
    ///
    /// # Errors
    ///
    /// [`ConnectError::Open`] or [`ConnectError::Create`] for what `open`
    /// and `create` report besides "not found" and "already exists" (a
    /// segment of another message type, permissions, no room...), also
    /// when the race does not settle within the open timeout.
    pub fn open_or_create<M: Message>(&self) -> Result<Channel<M>, ConnectError> {
        if let Target::Frames(addr) = &self.target {
            return Err(unsupported(
                addr,
                "open_or_create",
                "a kernel transport has no segment: use Builder::sender() and Builder::receiver()",
            ));
        }
        let start = Instant::now();
        loop {
            match self.open::<M>() {
                Ok(chan) => return Ok(chan),
                Err(OpenError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            match self.create::<M>() {
                Ok(chan) => return Ok(chan),
                // Someone created it between our open and our create: open
                // theirs (its readiness wait covers their initialisation).
                Err(CreateError::AlreadyExists { .. }) if start.elapsed() < self.open_timeout => {
                    std::thread::sleep(RACE_NAP);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A sender at this builder's address, whatever the mechanism:
    ///
    /// - `shm:`/`file:`: opens the ring, or creates it if it does not
    ///   exist ([`open_or_create`](Self::open_or_create)), then attaches;
    ///   the segment lives as long as any handle to it;
    /// - `fifo:`, `unix:`, `tcp:`, `mq:`, `signal:PID`: connects, waiting
    ///   up to the open timeout for a receiver to bind.
    ///
    /// How many senders one receiver takes, each sender's messages in the
    /// order it sent them:
    ///
    /// | address | senders |
    /// |---|---|
    /// | `shm:`, `file:` | any number on an MPMC ring (the default); one on an SPSC ring |
    /// | `unix:`, `tcp:` | any number: each connection is read on its own and served in turns |
    /// | `mq:` | any number: the kernel queues their messages whole |
    /// | `signal:PID` | one per process, any number of processes |
    /// | `fifo:` | one at a time |
    ///
    /// Where a second sender is refused, it is refused here, never
    /// accepted and then dropped. Clones of the returned sender share it
    /// (one connection), and so count as one.
    ///
    /// # Errors
    ///
    /// [`ConnectError`]: the segment or the transport refusing (another
    /// message type, the one sender of an SPSC ring taken, nobody bound in
    /// time, permissions...);
    /// [`transport::OpenError::AlreadyConnected`] in
    /// [`ConnectError::Transport`] for a `fifo:` that has its sender and a
    /// `signal:PID` this process has a sender to already.
    pub fn sender<M: Message>(&self) -> Result<Sender<M>, ConnectError> {
        match &self.target {
            Target::Frames(addr) => {
                self.frames_settings(addr)?;
                let tx = FrameSender::connect(addr, &self.transport_options::<M>())?;
                Ok(Sender::from_frames(tx))
            }
            _ => Ok(self.ring::<M>()?.sender()?),
        }
    }

    /// A receiver at this builder's address, whatever the mechanism:
    ///
    /// - `shm:`/`file:`: as [`sender`](Self::sender);
    /// - `fifo:`, `unix:`, `tcp:`, `mq:`, `signal:`: binds (creates the
    ///   FIFO, socket or queue, removed again when the receiver drops).
    ///
    /// # Errors
    ///
    /// As [`sender`](Self::sender); for kernel transports also the address
    /// in use by a live receiver.
    pub fn receiver<M: Message>(&self) -> Result<Receiver<M>, ConnectError> {
        match &self.target {
            Target::Frames(addr) => {
                self.frames_settings(addr)?;
                let rx = FrameReceiver::bind(addr, &self.transport_options::<M>())?;
                Ok(Receiver::from_frames(rx, self.trust))
            }
            _ => Ok(self.ring::<M>()?.receiver()?),
        }
    }

    /// The ring behind `sender`/`receiver`: a memfd or inherited channel is
    /// created or opened as `create`/`open` would, a named one opened or
    /// created.
    fn ring<M: Message>(&self) -> Result<Channel<M>, ConnectError> {
        match &self.target {
            Target::Memfd => Ok(self.create::<M>()?),
            Target::Inherited(_) => Ok(self.open::<M>()?),
            _ => self.open_or_create::<M>(),
        }
    }

    /// `M` is the message type a `zenoh:` end announces (unused without
    /// the feature: no other transport checks types).
    #[cfg_attr(not(feature = "zenoh"), allow(clippy::extra_unused_type_parameters))]
    pub(super) fn transport_options<M: Message>(&self) -> transport::Options {
        let mut opts = transport::Options::new().connect_timeout(self.open_timeout);
        if let Some(bytes) = self.message_size {
            opts = opts.max_frame(bytes);
        }
        if self.capacity_set {
            opts = opts.mq_capacity(self.capacity as usize);
        }
        #[cfg(feature = "zenoh")]
        if let Some(c) = &self.zenoh_config {
            opts = opts.zenoh_config(c.clone());
        }
        #[cfg(feature = "zenoh")]
        {
            let announced = self.announced_type.clone();
            opts = opts.message_type(&announced.unwrap_or_else(super::builder::type_info::<M>));
        }
        opts
    }

    /// Refuses ring settings on a kernel transport, rather than ignore
    /// them.
    fn frames_settings(&self, addr: &Address) -> Result<(), ConnectError> {
        let refuse = |setting, hint| Err(unsupported(addr, setting, hint));
        if self.slot_size.is_some() {
            return refuse("slot_size", "set the largest frame with message_size");
        }
        if self.keep {
            return refuse(
                "keep",
                "a transport's socket, FIFO or queue goes with its receiver",
            );
        }
        if self.kind_set {
            return refuse("kind", "ring kinds apply to shm: and file: only");
        }
        if self.mode_set || self.allow_group_write {
            return refuse("mode", "permissions apply to shm: and file: segments only");
        }
        if self.capacity_set && !matches!(addr, Address::Mq(_) | Address::Zenoh(_)) {
            return refuse(
                "capacity",
                "the kernel sizes this mechanism's buffer; only mq: and zenoh: take a capacity",
            );
        }
        Ok(())
    }
}

/// A setting (or call) refused on a kernel transport's address.
fn unsupported(addr: &Address, setting: &'static str, hint: &'static str) -> ConnectError {
    ConnectError::Unsupported {
        setting,
        address: addr.to_string(),
        hint,
    }
}

impl<M: Message> Sender<M> {
    /// A sender over frames already connected (an anonymous pipe's end from
    /// [`transport::pipe`], say).
    pub fn from_frames(tx: FrameSender) -> Self {
        Self {
            flavor: TxFlavor::Frames(Arc::new(FramesTx::new(tx))),
            _msg: PhantomData,
        }
    }
}

impl<M: Message> Receiver<M> {
    /// A receiver over frames already bound (an anonymous pipe's end from
    /// [`transport::pipe`], say). Frames are always validated (anyone who
    /// can reach a kernel transport can write to it), at least as far as
    /// [`Trust::validate`].
    pub fn from_frames(rx: FrameReceiver, trust: Trust) -> Self {
        Self {
            flavor: RxFlavor::Frames(Arc::new(FramesRx::new(rx, trust))),
            _msg: PhantomData,
        }
    }
}
