//! The kernel-transport flavor of [`Sender`](super::Sender) and
//! [`Receiver`](super::Receiver): each message is one frame of a
//! [`FrameSender`] / [`FrameReceiver`] (`fifo:`, `unix:`, `tcp:`, `mq:`,
//! `signal:`, an anonymous pipe). Pod messages travel as their bytes, rkyv
//! archives as encoded, bytes as they are; a receiver always validates
//! what it gets (anyone who can reach the address can write to it).

use std::ptr::NonNull;
use std::time::Instant;

use shmlane_codec::archive::{self, CopyBuf, Scratch, ALIGN};
use shmlane_codec::{EncodeError, InvalidMessage, Trust};

use super::kinds::{Hold, Message, MsgRef, RecvMsgError, SendMsgError};
use super::port::{self, Failed};
use crate::transport::{FrameReceiver, FrameRecvError, FrameSendError, FrameSender, Readiness};
use shmlane_semaphore::exclusive::Exclusive;

/// A connected frame sender, taken in turns by the handle's clones.
pub(super) struct FramesTx {
    max: usize,
    state: Exclusive<FrameTx>,
}

struct FrameTx {
    tx: FrameSender,
    /// An aligned buffer messages are encoded into (max frame long).
    enc: CopyBuf,
    scratch: Option<Scratch>,
}

/// A bound frame receiver, taken in turns by the handle's clones.
pub(super) struct FramesRx {
    max: usize,
    trust: Trust,
    address: String,
    state: Exclusive<FrameRx>,
}

/// A frame receiver and the buffers a received frame lies in.
pub(super) struct FrameRx {
    rx: FrameReceiver,
    buf: Vec<u8>,
    copy: CopyBuf,
    /// The stamp of the last receive attempt (see [`turns`]).
    last_turn: u64,
}

/// Stamps of receive attempts, unique in the process: an async receive
/// that finds nothing notes its attempt's stamp, and when it then asks
/// what to wait for, a different stamp on the receiver says a clone in
/// another thread took a turn in between. That turn may have read frames
/// out of the kernel into the receiver's buffers, where no descriptor
/// readiness announces them: the receive looks again at once instead.
mod turns {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicU64, Ordering};

    static NEXT: AtomicU64 = AtomicU64::new(1);

    thread_local! {
        static MINE: Cell<u64> = const { Cell::new(0) };
    }

    /// A new stamp, noted as this thread's last.
    pub(super) fn take() -> u64 {
        // Relaxed: uniqueness only (the receiver's lock orders the rest).
        let t = NEXT.fetch_add(1, Ordering::Relaxed);
        MINE.with(|m| m.set(t));
        t
    }

    /// This thread's last stamp.
    pub(super) fn mine() -> u64 {
        MINE.with(Cell::get)
    }
}

fn send_error(e: FrameSendError) -> SendMsgError {
    match e {
        FrameSendError::Timeout => SendMsgError::Timeout,
        FrameSendError::Disconnected => SendMsgError::Disconnected,
        FrameSendError::TooLarge { len, max } => {
            SendMsgError::Encode(EncodeError::TooLarge { len, max })
        }
        FrameSendError::Os(e) => SendMsgError::Io(e),
    }
}

fn recv_error(e: FrameRecvError, nonblocking: bool) -> RecvMsgError {
    match e {
        FrameRecvError::Timeout if nonblocking => RecvMsgError::Empty,
        FrameRecvError::Timeout => RecvMsgError::Timeout,
        FrameRecvError::Disconnected => RecvMsgError::Disconnected,
        FrameRecvError::Os(e) => RecvMsgError::Io(e),
    }
}

impl FramesTx {
    pub(super) fn new(tx: FrameSender) -> Self {
        Self {
            max: tx.max_frame(),
            state: Exclusive::new(FrameTx {
                tx,
                enc: CopyBuf::new(),
                scratch: None,
            }),
        }
    }

    pub(super) fn max_frame(&self) -> usize {
        self.max
    }

    /// What an async send waits for; `None` while a clone in another
    /// thread holds the sender.
    pub(super) fn readiness(&self) -> Option<std::io::Result<Readiness>> {
        Some(self.state.try_lock()?.tx.readiness())
    }

    /// Encodes `msg` and sends it as one frame, waiting until `deadline`.
    pub(super) fn send<M: Message>(
        &self,
        msg: &M::Input<'_>,
        deadline: Option<Instant>,
        nonblocking: bool,
    ) -> Result<(), SendMsgError> {
        let Some(mut state) = port::lock_end(&self.state, !nonblocking) else {
            return Err(SendMsgError::Full);
        };
        let state = &mut *state;
        // Raw bytes and Pod values go as they are, without a copy into the
        // frame buffer (the transport checks the max frame).
        if let Some(bytes) = M::as_bytes(msg) {
            return state.tx.send(bytes, deadline).map_err(send_error);
        }
        if state.enc.len() != self.max {
            state.enc.resize(self.max, 0);
        }
        let len =
            M::encode(msg, &mut state.enc, &mut state.scratch).map_err(SendMsgError::Encode)?;
        state
            .tx
            .send(&state.enc[..len], deadline)
            .map_err(send_error)
    }

    /// Lends the frame buffer to `fill`, then sends what it wrote.
    pub(super) fn send_with<E>(
        &self,
        deadline: Option<Instant>,
        nonblocking: bool,
        fill: &mut impl FnMut(&mut [u8]) -> Result<usize, E>,
    ) -> Result<(), Failed<E>> {
        let Some(mut state) = port::lock_end(&self.state, !nonblocking) else {
            return Err(Failed::Timeout);
        };
        let state = &mut *state;
        if state.enc.len() != self.max {
            state.enc.resize(self.max, 0);
        }
        let len = fill(&mut state.enc).map_err(Failed::Rejected)?;
        state
            .tx
            .send(&state.enc[..len], deadline)
            .map_err(|e| match e {
                FrameSendError::Timeout => Failed::Timeout,
                _ => Failed::Gone,
            })
    }
}

impl FramesRx {
    pub(super) fn new(rx: FrameReceiver, trust: Trust) -> Self {
        Self {
            max: rx.max_frame(),
            address: rx.local_address().to_string(),
            // Frames come from a kernel transport, where anyone who can
            // reach the address can write: always validated.
            trust: if trust.validates() {
                trust
            } else {
                Trust::validate()
            },
            state: Exclusive::new(FrameRx {
                rx,
                buf: Vec::new(),
                copy: CopyBuf::new(),
                last_turn: 0,
            }),
        }
    }

    pub(super) fn max_frame(&self) -> usize {
        self.max
    }

    pub(super) fn address(&self) -> &str {
        &self.address
    }

    /// What an async receive waits for; `None` while a clone in another
    /// thread holds the receiver.
    pub(super) fn readiness(&self) -> Option<std::io::Result<Readiness>> {
        let state = self.state.try_lock()?;
        if state.last_turn != turns::mine() {
            return Some(Ok(Readiness::now()));
        }
        Some(state.rx.readiness())
    }

    /// Receives one frame, waiting until `deadline`, and lends it as a
    /// message (the lock on the receiver is held until the guard drops).
    pub(super) fn lend<M: Message>(
        &self,
        deadline: Option<Instant>,
        nonblocking: bool,
    ) -> Result<MsgRef<'_, M>, RecvMsgError> {
        let Some(mut state) = port::lock_end(&self.state, !nonblocking) else {
            return Err(RecvMsgError::Empty);
        };
        let target = {
            let st = &mut *state;
            st.last_turn = turns::take();
            st.rx
                .recv(&mut st.buf, deadline)
                .map_err(|e| recv_error(e, nonblocking))?;
            NonNull::from(
                frame_message::<M>(&st.buf, &mut st.copy, self.trust)
                    .map_err(RecvMsgError::Invalid)?,
            )
        };
        // The target lies in the receiver's heap buffers, which nobody
        // touches while the guard holds the lock.
        Ok(MsgRef::new(target, Hold::Frame(state)))
    }
}

/// The message in a received frame, as a receiver reads it: moved to an
/// aligned copy if the frame buffer is not aligned for the kind (rkyv reads
/// archives only at aligned addresses; the allocator's usually are), and
/// always validated (a receiver's `unchecked` trust is not honoured for
/// frames: anyone who can reach a kernel transport can write to it).
pub(crate) fn frame_message<'a, M: Message>(
    frame: &'a [u8],
    copy: &'a mut CopyBuf,
    trust: Trust,
) -> Result<&'a M::Target, InvalidMessage> {
    let bytes: &[u8] = if frame.as_ptr() as usize % M::ALIGN.min(ALIGN) == 0 {
        frame
    } else {
        archive::copy_into(copy, frame)
    };
    let trust = if trust.validates() {
        trust
    } else {
        Trust::validate()
    };
    M::view(bytes, trust)
}
