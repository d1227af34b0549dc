//! [`Channel`](super::Channel): a created or opened ring, and the handles taken from it.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::OwnedFd;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use shmlane_ring::{mpmc, spsc};
use shmlane_semaphore::WaitStrategy;

use super::builder::meta_len;
use super::handles::{RxFlavor, SpscProducer, SpscRxEnd, SpscTxEnd, TxFlavor};
use super::side::{refill_for, MpmcEnd, Side};
use super::{AttachError, Backend, Message, Receiver, RingKind, Role, Segment, Sender, Trust};
use shmlane_semaphore::exclusive;

/// A created or opened channel: take senders and receivers from it.
pub struct Channel<M> {
    pub(super) seg: Arc<Segment>,
    pub(super) strategy: WaitStrategy,
    pub(super) trust: Trust,
    /// Bytes in front of each message in a slot: `meta_len::<M>` but for
    /// a channel opened [as bytes](super::Builder::open_as_bytes), which
    /// keeps its own type's.
    pub(super) meta: usize,
    pub(super) _msg: PhantomData<fn(M) -> M>,
}

impl<M> fmt::Debug for Channel<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("segment", &self.seg)
            .finish()
    }
}

fn kind_name(kind: RingKind) -> &'static str {
    match kind {
        RingKind::Spsc => "SPSC",
        RingKind::Mpmc => "MPMC",
        RingKind::Broadcast { .. } => "publish/subscribe",
    }
}

/// The error of `sender`/`receiver` on a segment that is not a channel
/// (`create` and `open` refuse those, so only a hand-made one gets here).
fn not_a_channel(found: RingKind) -> AttachError {
    AttachError::WrongKind {
        needs: "SPSC or MPMC",
        found: kind_name(found),
    }
}

impl<M: Message> Channel<M> {
    pub(super) fn new(seg: Segment, strategy: WaitStrategy, trust: Trust) -> Self {
        let meta = meta_len::<M>(seg.layout().kind());
        Self::with_meta(seg, strategy, trust, meta)
    }

    pub(super) fn with_meta(
        seg: Segment,
        strategy: WaitStrategy,
        trust: Trust,
        meta: usize,
    ) -> Self {
        Self {
            seg: Arc::new(seg),
            strategy,
            trust,
            meta,
            _msg: PhantomData,
        }
    }

    /// The largest message the channel carries, in encoded bytes.
    pub fn max_message_len(&self) -> usize {
        self.seg.layout().slot_size() - self.meta
    }

    /// The ring algorithm.
    pub fn kind(&self) -> RingKind {
        self.seg.layout().kind()
    }

    /// How many messages the channel holds.
    pub fn capacity(&self) -> usize {
        self.seg.layout().capacity() as usize
    }

    /// The segment underneath (for inspection).
    pub fn segment(&self) -> &Segment {
        &self.seg
    }

    /// A duplicate of a memfd channel's descriptor without close-on-exec,
    /// for a child process to inherit (pass its number to the child, then
    /// drop it here once the child is spawned).
    ///
    /// # Errors
    ///
    /// An OS error, or `InvalidInput` for a channel that is not a memfd.
    pub fn inheritable_fd(&self) -> io::Result<OwnedFd> {
        if *self.seg.backend() != Backend::Memfd {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a memfd channel",
            ));
        }
        let file = self
            .seg
            .file()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a memfd channel"))?;
        shmlane_sys::fd::dup_inheritable(file, 3)
    }

    pub(super) fn side(&self, role: Role, needs: RingKind) -> Result<Side, AttachError> {
        if self.kind() != needs {
            return Err(AttachError::WrongKind {
                needs: kind_name(needs),
                found: kind_name(self.kind()),
            });
        }
        let attachment = self.seg.attach(role, needs == RingKind::Spsc)?;
        Ok(Side::new(
            attachment,
            self.strategy,
            self.trust,
            self.meta,
            self.seg.layout().slot_size(),
        ))
    }

    pub(super) fn region(&self) -> (std::ptr::NonNull<u8>, usize) {
        self.seg.ring_region()
    }

    pub(super) fn mpmc_end(&self, role: Role) -> Result<Arc<MpmcEnd>, AttachError> {
        let side = self.side(role, RingKind::Mpmc)?;
        let (base, len) = self.region();
        // SAFETY: the region is the segment's validated ring region; the
        // attachment in `side` keeps the segment (and mapping) alive as long
        // as the ring handle.
        let ring =
            unsafe { mpmc::Ring::attach(base, len, self.seg.layout()) }.expect("validated layout");
        // Every slot this end holds records its participant, so survivors
        // can recover it if this process dies.
        let ring = ring.with_owner(side.att.owner_id());
        let refill = refill_for(ring.capacity());
        Ok(Arc::new(MpmcEnd {
            ring,
            side,
            refill,
            scratch: Mutex::new(Vec::new()),
            // Look once at first: a receiver that attaches after a death
            // may be the one to deliver what the dead held.
            seen_reaped: AtomicU64::new(u64::MAX),
        }))
    }

    /// A sender: on an MPMC ring one more (any number, in any process);
    /// on an SPSC ring the one sender.
    ///
    /// # Errors
    ///
    /// [`AttachError::RoleTaken`] if the ring is SPSC and a live sender
    /// exists (in any process), or a full participant table.
    pub fn sender(&self) -> Result<Sender<M>, AttachError> {
        let flavor = match self.kind() {
            RingKind::Mpmc => TxFlavor::Mpmc(self.mpmc_end(Role::Sender)?),
            // `create` and `open` refuse them for a channel.
            RingKind::Broadcast { .. } => return Err(not_a_channel(self.kind())),
            RingKind::Spsc => {
                let side = self.side(Role::Sender, RingKind::Spsc)?;
                let (base, len) = self.region();
                // SAFETY: the region is the segment's validated ring region;
                // the attachment in `side` keeps the mapping alive as long as
                // the ring handle; the exclusive attach guarantees no other
                // live producer, and a dead one published nothing
                // half-written.
                let mut ring = unsafe { spsc::Producer::attach(base, len, self.seg.layout()) }
                    .expect("validated layout");
                // As for an MPMC producer: after finding the ring full, a
                // spinning sender waits for a stretch of free slots.
                ring.set_refill(refill_for(ring.capacity()));
                TxFlavor::Spsc(Arc::new(SpscTxEnd {
                    side,
                    ring: exclusive::Exclusive::new(SpscProducer {
                        ring,
                        scratch: None,
                    }),
                }))
            }
        };
        Ok(Sender {
            flavor,
            _msg: PhantomData,
        })
    }

    /// A receiver: on an MPMC ring one more; on an SPSC ring the one
    /// receiver.
    ///
    /// # Errors
    ///
    /// As [`sender`](Self::sender).
    pub fn receiver(&self) -> Result<Receiver<M>, AttachError> {
        let flavor = match self.kind() {
            RingKind::Mpmc => RxFlavor::Mpmc(self.mpmc_end(Role::Receiver)?),
            // As in `sender`.
            RingKind::Broadcast { .. } => return Err(not_a_channel(self.kind())),
            RingKind::Spsc => {
                let side = self.side(Role::Receiver, RingKind::Spsc)?;
                let (base, len) = self.region();
                // SAFETY: as in `sender`, for the consumer side.
                let ring = unsafe { spsc::Consumer::attach(base, len, self.seg.layout()) }
                    .expect("validated layout");
                RxFlavor::Spsc(Arc::new(SpscRxEnd {
                    side,
                    ring: exclusive::Exclusive::new(ring),
                }))
            }
        };
        Ok(Receiver {
            flavor,
            _msg: PhantomData,
        })
    }
}
