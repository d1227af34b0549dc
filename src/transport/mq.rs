//! POSIX message queues, with liveness through OFD locks on a companion
//! POSIX shared-memory object `/shmlane-mq.NAME`:
//!
//! - byte 0: write-locked by the receiver while it lives; flag byte 0 is
//!   1 once its queue exists (senders wait for both);
//! - byte 1: read-locked (shared) by every sender while it lives; flag
//!   byte 1 is 1 once a sender came.
//!
//! A queue takes any number of senders: the kernel keeps each message
//! whole, and one sender's messages in the order it sent them (they all
//! have priority 0); senders' messages interleave in the order they were
//! queued. The receiver reports `Disconnected` once a sender came, no
//! sender's lock is held and the queue is empty; a sender that connects
//! later is received as the first was.
//!
//! The kernel drops the locks of a process that dies, SIGKILL included,
//! so each side learns of the other's death by probing the lock while it
//! waits (in steps of [`STEP`]). On Linux an `mqd_t` is a descriptor, so
//! the waits are `poll`s on it with monotonic deadlines.

use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::error::{FrameRecvError, FrameSendError, OpenError};
use shmlane_sys::errno::Errno;
use shmlane_sys::poll::{poll_one, PollFlags};
use shmlane_sys::{fd, fs, lock, mqueue, shm, Access};

use super::{passed, step, Options};

/// Waits are cut into steps this long to probe the peer's lock.
const STEP: Duration = Duration::from_millis(10);
/// A sender probes the receiver's lock at most this often while sending.
const PROBE_EVERY: Duration = Duration::from_millis(10);
/// The byte of the live file that the receiver locks (exclusively) and
/// flags; the byte of the senders (shared locks) next to it.
const RECEIVER: u64 = 0;
const SENDER: u64 = 1;

fn read_limit(file: &str, fallback: usize) -> usize {
    std::fs::read_to_string(format!("/proc/sys/fs/mqueue/{file}"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(fallback)
}

/// The system's largest message size (`msgsize_max`).
pub(crate) fn msgsize_max() -> usize {
    read_limit("msgsize_max", 8192)
}

/// The shared-memory object (`/dev/shm/shmlane-mq.NAME`) that holds the
/// liveness locks and flags of queue `name`.
fn live_name(name: &str) -> String {
    format!("shmlane-mq.{name}")
}

fn denied(name: &str) -> OpenError {
    OpenError::PermissionDenied {
        path: PathBuf::from(format!("/dev/mqueue/{name}")),
    }
}

fn open_live(name: &str, create: bool) -> io::Result<OwnedFd> {
    let file = if create {
        shm::open_or_create(&live_name(name), 0o600)?
    } else {
        shm::open(&live_name(name), Access::ReadWrite)?
    };
    Ok(file.into())
}

fn write_flag(live: &OwnedFd, byte: u64, value: u8) -> io::Result<()> {
    fd::write_at(live, &[value], byte)?;
    Ok(())
}

fn read_flag(live: &OwnedFd, byte: u64) -> io::Result<u8> {
    let mut v = [0u8];
    fd::read_at(live, &mut v, byte)?;
    Ok(v[0])
}

/// The receiving end; creates the queue and removes it when dropped.
#[derive(Debug)]
pub(crate) struct MqRx {
    queue: OwnedFd,
    live: OwnedFd,
    name: String,
    max: usize,
}

impl MqRx {
    /// The queue's descriptor (for an async wait's readiness).
    pub(crate) fn queue(&self) -> &OwnedFd {
        &self.queue
    }

    pub(crate) fn bind(name: &str, opts: &Options) -> Result<Self, OpenError> {
        let limit = msgsize_max();
        let max = opts.max_frame.unwrap_or(limit.min(8192));
        if max > limit {
            return Err(OpenError::MqFrameTooLarge {
                requested: max,
                limit,
            });
        }
        let depth_limit = read_limit("msg_max", 10);
        let depth = opts.mq_capacity.unwrap_or(depth_limit.min(10));
        if depth > depth_limit {
            return Err(OpenError::MqCapacityTooLarge {
                requested: depth,
                limit: depth_limit,
            });
        }
        let live = open_live(name, true).map_err(|e| match Errno::from_io_error(&e) {
            Some(Errno::ACCESS) => denied(name),
            _ => OpenError::Os(e),
        })?;
        if !lock::try_lock(&live, RECEIVER)? {
            return Err(OpenError::AddressInUse {
                address: format!("mq:{name}"),
            });
        }
        // Room for the two flags.
        fs::set_len(&live, 8)?;
        write_flag(&live, RECEIVER, 0)?;
        write_flag(&live, SENDER, 0)?;
        // A queue left by a receiver that died: nobody holds its lock.
        let _ = mqueue::unlink(name);
        let queue = mqueue::create(name, depth.max(1), max.max(1), 0o600).map_err(|e| {
            match Errno::from_io_error(&e) {
                Some(Errno::ACCESS) => denied(name),
                Some(Errno::INVAL) if max > 8192 => OpenError::MqFrameTooLarge {
                    requested: max,
                    limit,
                },
                _ => OpenError::Os(e),
            }
        })?;
        write_flag(&live, RECEIVER, 1)?;
        Ok(Self {
            queue,
            live,
            name: name.to_owned(),
            max,
        })
    }

    pub(crate) fn max_frame(&self) -> usize {
        self.max
    }

    fn try_recv(&self, buf: &mut Vec<u8>) -> io::Result<bool> {
        match mqueue::receive(&self.queue, buf, self.max.max(1)) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub(crate) fn recv(
        &mut self,
        buf: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<usize, FrameRecvError> {
        loop {
            if self.try_recv(buf).map_err(FrameRecvError::Os)? {
                return Ok(buf.len());
            }
            let came = read_flag(&self.live, SENDER).map_err(FrameRecvError::Os)? == 1;
            if came && !lock::is_locked(&self.live, SENDER).map_err(FrameRecvError::Os)? {
                // Every sender is gone; whatever they sent is in the queue
                // already (a sender queues before it unlocks), so one more
                // try drains the race. Not latched: a sender that connects
                // later takes the lock again and is received.
                if self.try_recv(buf).map_err(FrameRecvError::Os)? {
                    return Ok(buf.len());
                }
                return Err(FrameRecvError::Disconnected);
            }
            if passed(deadline) {
                return Err(FrameRecvError::Timeout);
            }
            poll_one(&self.queue, PollFlags::IN, Some(step(deadline, STEP)))
                .map_err(FrameRecvError::Os)?;
        }
    }
}

impl Drop for MqRx {
    fn drop(&mut self) {
        let _ = mqueue::unlink(&self.name);
        let _ = shm::unlink(&live_name(&self.name));
    }
}

/// The sending end.
#[derive(Debug)]
pub(crate) struct MqTx {
    queue: OwnedFd,
    live: OwnedFd,
    max: usize,
    next_probe: Instant,
}

impl MqTx {
    /// The queue's descriptor (for an async wait's readiness).
    pub(crate) fn queue(&self) -> &OwnedFd {
        &self.queue
    }

    pub(crate) fn connect(name: &str, opts: &Options) -> Result<Self, OpenError> {
        super::connect_within(
            || format!("mq:{name}"),
            opts.connect_timeout,
            STEP,
            || Self::try_connect(name),
        )
    }

    fn try_connect(name: &str) -> Result<Option<Self>, OpenError> {
        let live = match open_live(name, false) {
            Ok(l) => l,
            Err(e) if Errno::from_io_error(&e) == Some(Errno::NOENT) => return Ok(None),
            Err(e) if Errno::from_io_error(&e) == Some(Errno::ACCESS) => return Err(denied(name)),
            Err(e) => return Err(e.into()),
        };
        if !lock::is_locked(&live, RECEIVER)? || read_flag(&live, RECEIVER)? != 1 {
            return Ok(None);
        }
        let q = match mqueue::open_for_sending(name) {
            Ok(q) => q,
            Err(e) if Errno::from_io_error(&e) == Some(Errno::NOENT) => return Ok(None),
            Err(e) if Errno::from_io_error(&e) == Some(Errno::ACCESS) => return Err(denied(name)),
            Err(e) => return Err(e.into()),
        };
        // A shared lock: senders do not exclude each other. It is taken
        // before the flag says a sender came, so the receiver never sees
        // the flag without a lock of a live sender.
        if !lock::try_lock_shared(&live, SENDER)? {
            return Err(
                io::Error::other("a sender lock of a message queue was write-locked").into(),
            );
        }
        write_flag(&live, SENDER, 1)?;
        let max = mqueue::message_size(&q)?;
        Ok(Some(Self {
            queue: q,
            live,
            max,
            next_probe: Instant::now() + PROBE_EVERY,
        }))
    }

    pub(crate) fn max_frame(&self) -> usize {
        self.max
    }

    fn receiver_gone(&self) -> Result<bool, FrameSendError> {
        lock::is_locked(&self.live, RECEIVER)
            .map(|held| !held)
            .map_err(FrameSendError::Os)
    }

    pub(crate) fn send(
        &mut self,
        frame: &[u8],
        deadline: Option<Instant>,
    ) -> Result<(), FrameSendError> {
        let now = Instant::now();
        if now >= self.next_probe {
            self.next_probe = now + PROBE_EVERY;
            if self.receiver_gone()? {
                return Err(FrameSendError::Disconnected);
            }
        }
        loop {
            match mqueue::send(&self.queue, frame) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.receiver_gone()? {
                        return Err(FrameSendError::Disconnected);
                    }
                    if passed(deadline) {
                        return Err(FrameSendError::Timeout);
                    }
                    poll_one(&self.queue, PollFlags::OUT, Some(step(deadline, STEP)))
                        .map_err(FrameSendError::Os)?;
                }
                Err(e) => return Err(FrameSendError::Os(e)),
            }
        }
    }
}
