//! System V message queues (`sysvmq:KEY`), with liveness and wakeups
//! through a System V semaphore set under the same key (a separate
//! namespace from the queue's):
//!
//! | semaphore | what | changed with undo |
//! |---|---|---|
//! | `RECEIVER` | 1 while the receiver lives | yes |
//! | `SENDERS` | how many senders live | yes |
//! | `CAME` | 1 once a sender came | no |
//! | `AVAIL` | a token per frame sent: the receiver sleeps on it | no |
//! | `SPACE` | a token per frame taken while a sender waits for room | no |
//! | `MAX_LO`, `MAX_HI` | the receiver's max frame, 15 bits each | no |
//! | `MARK` | [`MARK`] once the queue exists: the set is shmlane's and ready | no |
//!
//! A queue has no descriptor to `poll`, so waits are timed `semtimedop`s
//! on `AVAIL` (receiver) and `SPACE` (a sender facing a full queue), cut
//! into steps to probe the peer's liveness semaphore. Every `msgsnd` is
//! followed by a token on `AVAIL`, and the receiver always tries
//! `msgrcv` before it sleeps, so no frame waits for a step: a sender
//! killed between the two costs at most one step of latency. A program
//! that writes to the queue with plain `msgsnd` (any positive `mtype`) is
//! received too, a step late; it is no sender for disconnect detection.
//!
//! The kernel keeps each message whole and one sender's messages in
//! order; it bounds a message by `kernel.msgmax` and a queue by
//! `kernel.msgmnb` bytes. The receiver removes the queue and the set when
//! it drops; senders then see `Disconnected`. A receiver that was killed
//! leaves both behind, and the next receiver bound to the key replaces
//! them (`shmlane rm --stale` removes them too).
//!
//! The key belongs to the application: a queue of another program of the
//! same user under it is taken for a dead receiver's and replaced, and
//! another program's set of eight semaphores likewise. The liveness
//! semaphores belong to processes: a program that binds or connects and
//! then daemonizes (forks, and the parent exits) is taken for gone by its
//! peers; bind or connect after daemonizing.

use std::io;
use std::time::{Duration, Instant};

use shmlane_shm::SysvKey;
use shmlane_sys::errno::Errno;
use shmlane_sys::sysv::{self, MsgBuf, SemOp};

use super::error::{FrameRecvError, FrameSendError, OpenError};
use super::{passed, Options};

/// Waits are cut into steps this long to probe the peer's liveness.
const STEP: Duration = Duration::from_millis(10);
/// A sender facing a full queue looks again at least this often (a frame
/// taken just before it began to wait posts no token for it).
const FULL_STEP: Duration = Duration::from_millis(1);
/// A sender probes the receiver's semaphore at most this often.
const PROBE_EVERY: Duration = Duration::from_millis(10);

pub(crate) const RECEIVER: u16 = 0;
pub(crate) const SENDERS: u16 = 1;
const CAME: u16 = 2;
const AVAIL: u16 = 3;
const SPACE: u16 = 4;
const MAX_LO: u16 = 5;
const MAX_HI: u16 = 6;
pub(crate) const MARK_SEM: u16 = 7;
/// How many semaphores the set has.
pub(crate) const SEMS: u16 = 8;
/// The value of the `MARK` semaphore of a ready shmlane queue ("SQ").
pub(crate) const MARK: i32 = 0x5351;

fn address(key: &SysvKey) -> String {
    format!("sysvmq:{key}")
}

fn denied(key: &SysvKey) -> OpenError {
    OpenError::PermissionDenied {
        path: format!("System V message queue {}", address(key)).into(),
    }
}

fn gone(e: &io::Error) -> bool {
    matches!(
        Errno::from_io_error(e),
        Some(Errno::IDRM | Errno::INVAL | Errno::NOENT)
    )
}

/// The system's largest message (`kernel.msgmax`).
pub(crate) fn msgmax() -> usize {
    sysv::limit("msgmax").map_or(8192, |v| v as usize)
}

/// The system's default queue size in bytes (`kernel.msgmnb`).
fn msgmnb() -> usize {
    sysv::limit("msgmnb").map_or(16384, |v| v as usize)
}

/// The receiving end; creates the queue and its semaphore set and removes
/// both when dropped.
#[derive(Debug)]
pub(crate) struct SysvMqRx {
    queue: i32,
    sems: i32,
    max: usize,
    buf: MsgBuf,
    pid: u32,
}

impl SysvMqRx {
    pub(crate) fn bind(key: &SysvKey, opts: &Options) -> Result<Self, OpenError> {
        let limit = msgmax();
        let max = opts.max_frame.unwrap_or(limit.min(8192));
        if max > limit {
            return Err(OpenError::SysvFrameTooLarge {
                requested: max,
                limit,
                sysctl: "kernel.msgmax",
            });
        }
        let queue_bytes = msgmnb();
        if max > queue_bytes {
            return Err(OpenError::SysvFrameTooLarge {
                requested: max,
                limit: queue_bytes,
                sysctl: "kernel.msgmnb",
            });
        }
        if max >= 1 << 30 {
            return Err(OpenError::SysvFrameTooLarge {
                requested: max,
                limit: (1 << 30) - 1,
                sysctl: "kernel.msgmax",
            });
        }
        let k = key.resolve()?;
        let sems = take_set(key, k)?;
        // From here on the set is ours: anything that fails removes it.
        let built = (|| {
            let queue = match sysv::msg_create(k, 0o600) {
                Ok(q) => q,
                Err(e) if Errno::from_io_error(&e) == Some(Errno::EXIST) => {
                    // Left by a receiver that died: we hold the receiver
                    // semaphore, so nobody else serves it.
                    let old = sysv::msg_get(k)?;
                    match sysv::msg_stat(old) {
                        Ok(st) if st.perm.uid != shmlane_sys::process::euid() => {
                            return Err(OpenError::AddressInUse {
                                address: address(key),
                            })
                        }
                        _ => {}
                    }
                    let _ = sysv::msg_remove(old);
                    sysv::msg_create(k, 0o600)?
                }
                Err(e) if Errno::from_io_error(&e) == Some(Errno::ACCESS) => {
                    return Err(denied(key))
                }
                Err(e) => return Err(e.into()),
            };
            sysv::sem_set_value(sems, MAX_LO, (max & 0x7fff) as i32)?;
            sysv::sem_set_value(sems, MAX_HI, (max >> 15) as i32)?;
            sysv::sem_set_value(sems, MARK_SEM, MARK)?;
            Ok(queue)
        })();
        match built {
            Ok(queue) => Ok(Self {
                queue,
                sems,
                max,
                buf: MsgBuf::default(),
                pid: shmlane_sys::process::pid(),
            }),
            Err(e) => {
                let _ = sysv::sem_remove(sems);
                Err(e)
            }
        }
    }

    pub(crate) fn max_frame(&self) -> usize {
        self.max
    }

    fn try_recv(&mut self, out: &mut Vec<u8>) -> Result<bool, FrameRecvError> {
        match sysv::msg_recv(self.queue, out, self.max, &mut self.buf) {
            Ok(true) => {
                // This frame's token (or a later one's: the receiver never
                // sleeps without trying first, so none is lost).
                let _ = sysv::sem_op(self.sems, &[SemOp::keep(AVAIL, -1)], Some(Duration::ZERO));
                if sysv::sem_waiters(self.sems, SPACE).unwrap_or(0) > 0 {
                    let _ = sysv::sem_op(self.sems, &[SemOp::keep(SPACE, 1)], Some(Duration::ZERO));
                }
                Ok(true)
            }
            Ok(false) => Ok(false),
            Err(e) if Errno::from_io_error(&e) == Some(Errno::TOOBIG) => {
                // A frame above our max from a program that is not a
                // shmlane sender: drop it, or it would block the queue.
                let _ = sysv::msg_discard(self.queue);
                Err(FrameRecvError::Os(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "a message above the max frame of {} bytes was dropped",
                        self.max
                    ),
                )))
            }
            Err(e) => Err(FrameRecvError::Os(e)),
        }
    }

    pub(crate) fn recv(
        &mut self,
        out: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<usize, FrameRecvError> {
        loop {
            if self.try_recv(out)? {
                return Ok(out.len());
            }
            let came = sysv::sem_value(self.sems, CAME).map_err(FrameRecvError::Os)? == 1;
            if came && sysv::sem_value(self.sems, SENDERS).map_err(FrameRecvError::Os)? == 0 {
                // Every sender is gone; a sender queues before it leaves,
                // so one more try drains the race. Not latched: a sender
                // that connects later is received.
                if self.try_recv(out)? {
                    return Ok(out.len());
                }
                return Err(FrameRecvError::Disconnected);
            }
            let now = Instant::now();
            if passed(deadline) {
                return Err(FrameRecvError::Timeout);
            }
            let wait = deadline.map_or(STEP, |d| (d - now).min(STEP));
            sysv::sem_op(
                self.sems,
                &[SemOp::keep(AVAIL, -1)],
                Some(wait.max(Duration::from_micros(1))),
            )
            .map_err(FrameRecvError::Os)?;
        }
    }
}

/// Creates the semaphore set under `k` and takes its receiver semaphore,
/// replacing a set whose receiver died; returns its id.
///
/// A set under the key whose receiver semaphore is 0 is either being
/// made (its creator has not taken the semaphore yet: no `semop` ever
/// touched the set) or left by a receiver that died. The first is waited
/// for (up to [`FRESH`]; a creator that dies in between leaves one that
/// is then taken for stale), the second removed by id, never a set made
/// since.
fn take_set(key: &SysvKey, k: i32) -> Result<i32, OpenError> {
    /// How long a set nobody has used yet counts as being made.
    const FRESH: Duration = Duration::from_secs(1);
    let in_use = || OpenError::AddressInUse {
        address: address(key),
    };
    let take = [SemOp::keep(RECEIVER, 0), SemOp::undo(RECEIVER, 1)];
    let give_up = Instant::now() + FRESH;
    loop {
        match sysv::sem_create(k, SEMS, 0o600) {
            Ok(id) => {
                if sysv::sem_op(id, &take, Some(Duration::ZERO))? {
                    return Ok(id);
                }
                // Another receiver found our fresh set and took it.
                return Err(in_use());
            }
            Err(e) if Errno::from_io_error(&e) == Some(Errno::EXIST) => {
                let id = match sysv::sem_get(k) {
                    Ok(id) => id,
                    // Removed meanwhile: try again.
                    Err(e) if gone(&e) => continue,
                    Err(e) if Errno::from_io_error(&e) == Some(Errno::ACCESS) => {
                        return Err(denied(key))
                    }
                    Err(e) => return Err(e.into()),
                };
                let st = match sysv::sem_stat(id) {
                    Ok(st) => st,
                    Err(e) if gone(&e) => continue,
                    Err(e) => return Err(e.into()),
                };
                if st.count != u64::from(SEMS) || st.perm.uid != shmlane_sys::process::euid() {
                    // Another program's semaphores under this key.
                    return Err(in_use());
                }
                match sysv::sem_value(id, RECEIVER) {
                    Ok(0) if st.last_op == 0 && Instant::now() < give_up => {
                        // Being made by another receiver: see who wins.
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Ok(0) => {
                        // Its receiver died: remove it (by id, so never a
                        // set someone made meanwhile) and make ours.
                        let _ = sysv::sem_remove(id);
                    }
                    Ok(_) => return Err(in_use()),
                    Err(e) if gone(&e) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) if Errno::from_io_error(&e) == Some(Errno::ACCESS) => return Err(denied(key)),
            Err(e) => return Err(e.into()),
        }
    }
}

impl Drop for SysvMqRx {
    fn drop(&mut self) {
        // A forked child's copy leaves the parent's queue alone.
        if shmlane_sys::process::pid() == self.pid {
            let _ = sysv::msg_remove(self.queue);
            let _ = sysv::sem_remove(self.sems);
        }
    }
}

/// The sending end.
#[derive(Debug)]
pub(crate) struct SysvMqTx {
    queue: i32,
    sems: i32,
    max: usize,
    buf: MsgBuf,
    next_probe: Instant,
    pid: u32,
}

impl SysvMqTx {
    pub(crate) fn connect(key: &SysvKey, opts: &Options) -> Result<Self, OpenError> {
        let k = key.resolve()?;
        super::connect_within(
            || address(key),
            opts.connect_timeout,
            STEP,
            || Self::try_connect(key, k),
        )
    }

    fn try_connect(key: &SysvKey, k: i32) -> Result<Option<Self>, OpenError> {
        let not_yet = |e: &io::Error| gone(e);
        let sems = match sysv::sem_get(k) {
            Ok(id) => id,
            Err(e) if not_yet(&e) => return Ok(None),
            Err(e) if Errno::from_io_error(&e) == Some(Errno::ACCESS) => return Err(denied(key)),
            Err(e) => return Err(e.into()),
        };
        let ready = (|| -> io::Result<bool> {
            Ok(sysv::sem_stat(sems)?.count == u64::from(SEMS)
                && sysv::sem_value(sems, MARK_SEM)? == MARK
                && sysv::sem_value(sems, RECEIVER)? > 0)
        })();
        match ready {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(e) if not_yet(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let queue = match sysv::msg_get(k) {
            Ok(q) => q,
            Err(e) if not_yet(&e) => return Ok(None),
            Err(e) if Errno::from_io_error(&e) == Some(Errno::ACCESS) => return Err(denied(key)),
            Err(e) => return Err(e.into()),
        };
        let max = (|| -> io::Result<usize> {
            let lo = sysv::sem_value(sems, MAX_LO)? as usize;
            let hi = sysv::sem_value(sems, MAX_HI)? as usize;
            // Counted before CAME says a sender came, so the receiver
            // never sees CAME without a live sender's count.
            sysv::sem_op(sems, &[SemOp::undo(SENDERS, 1)], Some(Duration::ZERO))?;
            sysv::sem_set_value(sems, CAME, 1)?;
            Ok(hi << 15 | lo)
        })();
        let max = match max {
            Ok(m) => m,
            Err(e) if not_yet(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(Some(Self {
            queue,
            sems,
            max,
            buf: MsgBuf::default(),
            next_probe: Instant::now() + PROBE_EVERY,
            pid: shmlane_sys::process::pid(),
        }))
    }

    pub(crate) fn max_frame(&self) -> usize {
        self.max
    }

    fn receiver_gone(&self) -> bool {
        // An error means the set was removed: the receiver dropped.
        sysv::sem_value(self.sems, RECEIVER).map_or(true, |v| v == 0)
    }

    pub(crate) fn send(
        &mut self,
        frame: &[u8],
        deadline: Option<Instant>,
    ) -> Result<(), FrameSendError> {
        let now = Instant::now();
        if now >= self.next_probe {
            self.next_probe = now + PROBE_EVERY;
            if self.receiver_gone() {
                return Err(FrameSendError::Disconnected);
            }
        }
        loop {
            match sysv::msg_send(self.queue, frame, &mut self.buf) {
                Ok(true) => {
                    // ERANGE (32,767 tokens) is harmless: the receiver
                    // tries the queue before every sleep.
                    let _ = sysv::sem_op(self.sems, &[SemOp::keep(AVAIL, 1)], Some(Duration::ZERO));
                    return Ok(());
                }
                Ok(false) => {
                    if self.receiver_gone() {
                        return Err(FrameSendError::Disconnected);
                    }
                    let now = Instant::now();
                    if passed(deadline) {
                        return Err(FrameSendError::Timeout);
                    }
                    let wait = deadline.map_or(FULL_STEP, |d| (d - now).min(FULL_STEP));
                    match sysv::sem_op(
                        self.sems,
                        &[SemOp::keep(SPACE, -1)],
                        Some(wait.max(Duration::from_micros(1))),
                    ) {
                        Ok(_) => {}
                        Err(e) if gone(&e) => return Err(FrameSendError::Disconnected),
                        Err(e) => return Err(FrameSendError::Os(e)),
                    }
                }
                Err(e) if gone(&e) => return Err(FrameSendError::Disconnected),
                Err(e) => return Err(FrameSendError::Os(e)),
            }
        }
    }
}

impl Drop for SysvMqTx {
    fn drop(&mut self) {
        // The count this process raised (a forked child raised none).
        if shmlane_sys::process::pid() == self.pid {
            let _ = sysv::sem_op(self.sems, &[SemOp::undo(SENDERS, -1)], Some(Duration::ZERO));
        }
    }
}
