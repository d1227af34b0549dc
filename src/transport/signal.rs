//! Queued real-time signals: each `sigqueue` carries one 8-byte word.
//!
//! A frame is a header word (`MAGIC << 32 | len`) and then `ceil(len / 8)`
//! payload words. A clean close sends the header with length `END`. Signals
//! of one number are queued in order, so frames arrive whole and in order.
//! The receiver reads them in batches through a `signalfd`, and watches the
//! sender (the pid of the first queued signal, `si_pid`) with a pidfd; the
//! sender watches the receiver with a pidfd too (zombies count as dead).

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::decode::{Signal, SignalDecoder, SIGNAL_END, SIGNAL_MAGIC, SIGNAL_MAX_FRAME};
use super::error::{FrameRecvError, FrameSendError, OpenError};
use super::sys::{self, cvt, cvt_retry, errno, owned};
use super::Options;

/// Largest frame: 512 payload signals.
pub(crate) const MAX_FRAME: usize = SIGNAL_MAX_FRAME;
const MAGIC: u64 = SIGNAL_MAGIC;
const END: u64 = SIGNAL_END;
/// A sender that finds the queue full retries this often.
const RETRY: Duration = Duration::from_millis(1);
/// A sender probes the receiver at most this often while sending.
const PROBE_EVERY: Duration = Duration::from_millis(10);
/// How long dropping a sender waits to queue its last words.
const DROP_FLUSH: Duration = Duration::from_secs(1);
/// Signals read from the signalfd at once.
const BATCH: usize = 64;

/// Signal numbers with a live receiver in this process (bit = offset).
static BOUND: AtomicU64 = AtomicU64::new(0);

/// Words are 8 bytes: `sigval` is pointer-sized, so 64-bit targets only.
fn check_target() -> Result<(), OpenError> {
    if size_of::<usize>() == 8 {
        Ok(())
    } else {
        Err(OpenError::Unsupported {
            address: "signal:".into(),
            hint: "signal frames need a 64-bit target (8-byte sigval)",
        })
    }
}

/// The signal number for `offset` above `SIGRTMIN`.
pub(crate) fn signal_number(offset: u8) -> io::Result<libc::c_int> {
    let sig = libc::SIGRTMIN() + libc::c_int::from(offset);
    if sig > libc::SIGRTMAX() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "SIGRTMIN+{offset} is above SIGRTMAX: choose an offset up to {}",
                libc::SIGRTMAX() - libc::SIGRTMIN()
            ),
        ));
    }
    Ok(sig)
}

fn sigset(sig: libc::c_int) -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set we hand it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t; `sig` is a valid signal number.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
    }
    set
}

/// Blocks `sig` in the calling thread (threads it spawns later inherit it).
pub(crate) fn block(sig: libc::c_int) -> io::Result<()> {
    let set = sigset(sig);
    // SAFETY: `set` is a valid sigset_t; the old mask is not asked for.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// Whether `sig` is set in the `SigBlk:` line of a `/proc/.../status`.
fn status_blocks(status: &str, sig: libc::c_int) -> Option<bool> {
    let line = status.lines().find_map(|l| l.strip_prefix("SigBlk:"))?;
    let mask = u64::from_str_radix(line.trim(), 16).ok()?;
    Some(mask & (1 << (sig - 1)) != 0)
}

/// How many threads of this process do not block `sig`.
fn threads_not_blocking(sig: libc::c_int) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .filter(|s| status_blocks(s, sig) == Some(false))
        .count()
}

/// The receiving end: a signalfd for the signal, blocked in this thread.
#[derive(Debug)]
pub(crate) struct SigRx {
    sfd: OwnedFd,
    offset: u8,
    sender: Option<(libc::pid_t, Option<OwnedFd>)>,
    words: SignalDecoder,
    raw: Vec<libc::signalfd_siginfo>,
    gone: bool,
}

impl SigRx {
    pub(crate) fn bind(pid: Option<i32>, opts: &Options) -> Result<Self, OpenError> {
        check_target()?;
        let me = std::process::id() as i32;
        if let Some(pid) = pid.filter(|&p| p != me) {
            return Err(OpenError::NotOwnPid { pid });
        }
        let offset = opts.rt_signal;
        let sig = signal_number(offset)?;
        block(sig)?;
        let threads = threads_not_blocking(sig);
        if threads > 0 {
            return Err(OpenError::SignalNotBlocked {
                signal: sig,
                threads,
            });
        }
        let bit = 1u64 << offset;
        if BOUND.fetch_or(bit, Ordering::Relaxed) & bit != 0 {
            return Err(OpenError::AddressInUse {
                address: format!("signal:{me} (SIGRTMIN+{offset})"),
            });
        }
        let set = sigset(sig);
        // SAFETY: `set` is a valid sigset_t; -1 asks for a new descriptor.
        let sfd = match cvt(unsafe {
            libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC)
        }) {
            Ok(fd) => owned(fd),
            Err(e) => {
                BOUND.fetch_and(!bit, Ordering::Relaxed);
                return Err(e.into());
            }
        };
        let mut rx = Self {
            sfd,
            offset,
            sender: None,
            words: SignalDecoder::new(),
            // SAFETY: signalfd_siginfo is plain data; all-zero is valid.
            raw: vec![unsafe { std::mem::zeroed() }; BATCH],
            gone: false,
        };
        // Signals left queued for an earlier receiver are not ours.
        while rx.read_batch(true).map_err(OpenError::Os)? > 0 {}
        Ok(rx)
    }

    /// Reads what the signalfd has; returns how many signals it read.
    fn read_batch(&mut self, discard: bool) -> io::Result<usize> {
        let fd = self.sfd.as_raw_fd();
        let bytes = self.raw.len() * size_of::<libc::signalfd_siginfo>();
        let ptr = self.raw.as_mut_ptr();
        // SAFETY: `raw` holds `bytes` writable bytes of plain data.
        let r = cvt_retry(|| unsafe { libc::read(fd, ptr.cast(), bytes) });
        let n = match r {
            Ok(n) => n as usize / size_of::<libc::signalfd_siginfo>(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            Err(e) => return Err(e),
        };
        if discard {
            return Ok(n);
        }
        for info in &self.raw[..n] {
            if info.ssi_code != libc::SI_QUEUE {
                continue; // a plain kill(), not a frame word
            }
            let pid = info.ssi_pid as libc::pid_t;
            match &self.sender {
                Some((p, _)) if *p != pid => continue, // one sender per receiver
                Some(_) => {}
                None => {
                    let pidfd = sys::pidfd_open(pid).ok().flatten();
                    self.sender = Some((pid, pidfd));
                }
            }
            self.words.push(info.ssi_ptr);
        }
        Ok(n)
    }

    fn sender_gone(&self) -> bool {
        match &self.sender {
            Some((pid, fd)) => sys::process_gone(*pid, fd.as_ref()),
            None => false,
        }
    }

    /// Takes a whole frame off `words` if there is one.
    fn take(&mut self, buf: &mut Vec<u8>) -> Result<Option<usize>, FrameRecvError> {
        match self.words.take(buf) {
            Ok(Some(Signal::Frame(len))) => Ok(Some(len)),
            Ok(Some(Signal::End)) => {
                self.gone = true;
                Ok(None)
            }
            Ok(None) => Ok(None),
            // The peer broke the framing: `InvalidData`, carrying the
            // typed error.
            Err(e) => Err(FrameRecvError::Os(io::Error::new(
                io::ErrorKind::InvalidData,
                e,
            ))),
        }
    }

    pub(crate) fn recv(
        &mut self,
        buf: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<usize, FrameRecvError> {
        buf.clear();
        loop {
            if let Some(len) = self.take(buf)? {
                return Ok(len);
            }
            if self.read_batch(false).map_err(FrameRecvError::Os)? > 0 {
                continue;
            }
            if self.gone {
                return Err(FrameRecvError::Disconnected);
            }
            if self.sender_gone() {
                // Everything it queued before dying is readable now.
                if self.read_batch(false).map_err(FrameRecvError::Os)? > 0 {
                    continue;
                }
                self.gone = true;
                continue;
            }
            if sys::passed(deadline) {
                return Err(FrameRecvError::Timeout);
            }
            let mut fds = [
                libc::pollfd {
                    fd: self.sfd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: -1,
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            let until = match &self.sender {
                Some((_, Some(fd))) => {
                    fds[1].fd = fd.as_raw_fd();
                    deadline
                }
                // No sender yet, or no pidfd: wake up to probe it.
                Some((_, None)) => Some(sys::step(deadline, RETRY * 10)),
                None => deadline,
            };
            sys::poll(&mut fds, until).map_err(FrameRecvError::Os)?;
        }
    }
}

impl Drop for SigRx {
    fn drop(&mut self) {
        BOUND.fetch_and(!(1u64 << self.offset), Ordering::Relaxed);
    }
}

/// The sending end.
#[derive(Debug)]
pub(crate) struct SigTx {
    pid: libc::pid_t,
    sig: libc::c_int,
    pidfd: Option<OwnedFd>,
    words: Vec<u64>,
    next: usize,
    next_probe: Instant,
    dead: bool,
}

impl SigTx {
    pub(crate) fn connect(pid: i32, opts: &Options) -> Result<Self, OpenError> {
        check_target()?;
        let sig = signal_number(opts.rt_signal)?;
        let start = Instant::now();
        let until = start + opts.connect_timeout;
        let nobody = || OpenError::NobodyListens {
            address: format!("signal:{pid}"),
            waited: start.elapsed(),
        };
        // SAFETY: signal 0 only checks that the process exists and that we
        // may signal it.
        if let Err(e) = cvt(unsafe { libc::kill(pid, 0) }) {
            return Err(match errno(&e) {
                libc::ESRCH => nobody(),
                libc::EPERM => OpenError::PermissionDenied {
                    path: format!("process {pid} (signals)").into(),
                },
                _ => OpenError::Os(e),
            });
        }
        let pidfd = sys::pidfd_open(pid).map_err(|e| match errno(&e) {
            libc::ESRCH => nobody(),
            _ => OpenError::Os(e),
        })?;
        // A receiver blocks the signal before it can take frames; sending
        // earlier would kill it.
        loop {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status"));
            let blocked = status.map(|s| status_blocks(&s, sig)).unwrap_or(Some(true));
            if blocked != Some(false) {
                break;
            }
            if Instant::now() >= until || sys::process_gone(pid, pidfd.as_ref()) {
                return Err(nobody());
            }
            std::thread::sleep(RETRY * 10);
        }
        Ok(Self {
            pid,
            sig,
            pidfd,
            words: Vec::with_capacity(MAX_FRAME / 8 + 1),
            next: 0,
            next_probe: Instant::now() + PROBE_EVERY,
            dead: false,
        })
    }

    fn receiver_gone(&mut self) -> bool {
        if !self.dead && sys::process_gone(self.pid, self.pidfd.as_ref()) {
            self.dead = true;
        }
        self.dead
    }

    /// Queues the words from `next` on; `Ok(false)` when the deadline
    /// passed with some left.
    fn push(&mut self, deadline: Option<Instant>) -> Result<bool, FrameSendError> {
        while self.next < self.words.len() {
            let value = libc::sigval {
                sival_ptr: std::ptr::without_provenance_mut(self.words[self.next] as usize),
            };
            // SAFETY: sigqueue copies the value; no memory is shared.
            match cvt(unsafe { libc::sigqueue(self.pid, self.sig, value) }) {
                Ok(_) => self.next += 1,
                Err(e) if errno(&e) == libc::EINTR => {}
                Err(e) if errno(&e) == libc::EAGAIN => {
                    if self.receiver_gone() {
                        return Err(FrameSendError::Disconnected);
                    }
                    if sys::passed(deadline) {
                        return Ok(false);
                    }
                    std::thread::sleep(
                        sys::step(deadline, RETRY).saturating_duration_since(Instant::now()),
                    );
                }
                Err(e) if errno(&e) == libc::ESRCH => {
                    self.dead = true;
                    return Err(FrameSendError::Disconnected);
                }
                Err(e) => return Err(FrameSendError::Os(e)),
            }
        }
        self.words.clear();
        self.next = 0;
        Ok(true)
    }

    pub(crate) fn send(
        &mut self,
        frame: &[u8],
        deadline: Option<Instant>,
    ) -> Result<(), FrameSendError> {
        if frame.len() > MAX_FRAME {
            return Err(FrameSendError::TooLarge {
                len: frame.len(),
                max: MAX_FRAME,
            });
        }
        let now = Instant::now();
        if now >= self.next_probe {
            self.next_probe = now + PROBE_EVERY;
            if self.receiver_gone() {
                return Err(FrameSendError::Disconnected);
            }
        }
        if self.dead {
            return Err(FrameSendError::Disconnected);
        }
        // Finish a frame accepted earlier before starting this one.
        if !self.push(deadline)? {
            return Err(FrameSendError::Timeout);
        }
        self.words.push(MAGIC << 32 | frame.len() as u64);
        for chunk in frame.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.words.push(u64::from_le_bytes(w));
        }
        if !self.push(deadline)? && self.next == 0 {
            self.words.clear();
            return Err(FrameSendError::Timeout);
        }
        // Either all queued, or started: the rest goes before the next frame.
        Ok(())
    }
}

impl Drop for SigTx {
    fn drop(&mut self) {
        if self.dead {
            return;
        }
        self.words.push(MAGIC << 32 | END);
        let _ = self.push(Some(Instant::now() + DROP_FLUSH));
    }
}
