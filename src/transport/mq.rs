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

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::error::{FrameRecvError, FrameSendError, OpenError};
use shmlane_sys::errno::{cvt, cvt_retry};
use shmlane_sys::poll::{poll_one, PollFlags};
use shmlane_sys::{lock, shm, Access};

use super::sys::{self, errno, owned};
use super::Options;

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

fn queue_name(name: &str) -> io::Result<CString> {
    sys::c_name(&format!("/{name}"))
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
    let byte = byte as libc::off_t; // 0 or 1
                                    // SAFETY: writes one byte from a live local into our descriptor.
    cvt(unsafe { libc::pwrite(live.as_raw_fd(), (&value as *const u8).cast(), 1, byte) })?;
    Ok(())
}

fn read_flag(live: &OwnedFd, byte: u64) -> io::Result<u8> {
    let byte = byte as libc::off_t; // 0 or 1
    let mut v = 0u8;
    // SAFETY: reads at most one byte into a live local.
    cvt(unsafe { libc::pread(live.as_raw_fd(), (&mut v as *mut u8).cast(), 1, byte) })?;
    Ok(v)
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
        let live = open_live(name, true).map_err(|e| match errno(&e) {
            libc::EACCES => denied(name),
            _ => OpenError::Os(e),
        })?;
        if !lock::try_lock(&live, RECEIVER)? {
            return Err(OpenError::AddressInUse {
                address: format!("mq:{name}"),
            });
        }
        // SAFETY: ftruncate on our descriptor; room for the two flags.
        cvt(unsafe { libc::ftruncate(live.as_raw_fd(), 8) })?;
        write_flag(&live, RECEIVER, 0)?;
        write_flag(&live, SENDER, 0)?;
        let qname = queue_name(name)?;
        // A queue left by a receiver that died: nobody holds its lock.
        // SAFETY: `qname` is NUL-terminated.
        let _ = unsafe { libc::mq_unlink(qname.as_ptr()) };
        // SAFETY: all-zero mq_attr is valid; we set the two sizes.
        let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
        attr.mq_maxmsg = depth.max(1) as _;
        attr.mq_msgsize = max.max(1) as _;
        let flags =
            libc::O_RDONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NONBLOCK | libc::O_CLOEXEC;
        // SAFETY: `qname` is NUL-terminated and `attr` a valid mq_attr; the
        // variadic mode and attr arguments are those O_CREAT reads.
        let q = cvt_retry(|| unsafe {
            libc::mq_open(
                qname.as_ptr(),
                flags,
                0o600 as libc::mode_t,
                &attr as *const libc::mq_attr,
            )
        })
        .map_err(|e| match errno(&e) {
            libc::EACCES => denied(name),
            libc::EINVAL if max > 8192 => OpenError::MqFrameTooLarge {
                requested: max,
                limit,
            },
            _ => OpenError::Os(e),
        })?;
        let queue = owned(q);
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
        buf.clear();
        let cap = self.max.max(1);
        buf.reserve(cap);
        let mut prio = 0;
        let q = self.queue.as_raw_fd();
        // SAFETY: the spare capacity holds `cap` >= mq_msgsize writable
        // bytes; mq_receive writes at most that many.
        let r = cvt_retry(|| unsafe {
            libc::mq_receive(
                q,
                buf.spare_capacity_mut().as_mut_ptr().cast(),
                cap,
                &mut prio,
            )
        });
        match r {
            Ok(n) => {
                // SAFETY: mq_receive initialised the first `n` bytes.
                unsafe { buf.set_len(n as usize) };
                Ok(true)
            }
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
            if sys::passed(deadline) {
                return Err(FrameRecvError::Timeout);
            }
            poll_one(&self.queue, PollFlags::IN, Some(sys::step(deadline, STEP)))
                .map_err(FrameRecvError::Os)?;
        }
    }
}

impl Drop for MqRx {
    fn drop(&mut self) {
        if let Ok(q) = queue_name(&self.name) {
            // SAFETY: `q` is NUL-terminated.
            unsafe { libc::mq_unlink(q.as_ptr()) };
        }
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
    pub(crate) fn connect(name: &str, opts: &Options) -> Result<Self, OpenError> {
        let start = Instant::now();
        let until = start + opts.connect_timeout;
        let qname = queue_name(name)?;
        loop {
            match Self::try_connect(name, &qname)? {
                Some(tx) => return Ok(tx),
                None if Instant::now() >= until => {
                    return Err(OpenError::NobodyListens {
                        address: format!("mq:{name}"),
                        waited: start.elapsed(),
                    })
                }
                None => std::thread::sleep(STEP.min(until - Instant::now())),
            }
        }
    }

    fn try_connect(name: &str, qname: &CString) -> Result<Option<Self>, OpenError> {
        let live = match open_live(name, false) {
            Ok(l) => l,
            Err(e) if errno(&e) == libc::ENOENT => return Ok(None),
            Err(e) if errno(&e) == libc::EACCES => return Err(denied(name)),
            Err(e) => return Err(e.into()),
        };
        if !lock::is_locked(&live, RECEIVER)? || read_flag(&live, RECEIVER)? != 1 {
            return Ok(None);
        }
        let flags = libc::O_WRONLY | libc::O_NONBLOCK | libc::O_CLOEXEC;
        // SAFETY: `qname` is NUL-terminated; without O_CREAT no more
        // arguments are read.
        let q = match cvt_retry(|| unsafe { libc::mq_open(qname.as_ptr(), flags) }) {
            Ok(q) => owned(q),
            Err(e) if errno(&e) == libc::ENOENT => return Ok(None),
            Err(e) if errno(&e) == libc::EACCES => return Err(denied(name)),
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
        // SAFETY: all-zero mq_attr is valid; mq_getattr fills it.
        let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
        // SAFETY: `q` is an open queue and `attr` writable.
        cvt(unsafe { libc::mq_getattr(q.as_raw_fd(), &mut attr) })?;
        Ok(Some(Self {
            queue: q,
            live,
            max: attr.mq_msgsize as usize,
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
        if frame.len() > self.max {
            return Err(FrameSendError::TooLarge {
                len: frame.len(),
                max: self.max,
            });
        }
        let now = Instant::now();
        if now >= self.next_probe {
            self.next_probe = now + PROBE_EVERY;
            if self.receiver_gone()? {
                return Err(FrameSendError::Disconnected);
            }
        }
        let q = self.queue.as_raw_fd();
        loop {
            // SAFETY: `frame` is a live slice of its length.
            let r =
                cvt_retry(|| unsafe { libc::mq_send(q, frame.as_ptr().cast(), frame.len(), 0) });
            match r {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.receiver_gone()? {
                        return Err(FrameSendError::Disconnected);
                    }
                    if sys::passed(deadline) {
                        return Err(FrameSendError::Timeout);
                    }
                    poll_one(&self.queue, PollFlags::OUT, Some(sys::step(deadline, STEP)))
                        .map_err(FrameSendError::Os)?;
                }
                Err(e) => return Err(FrameSendError::Os(e)),
            }
        }
    }
}
