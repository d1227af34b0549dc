//! Queued real-time signals: each `sigqueue` carries one 8-byte word.
//!
//! A frame is a header word (`MAGIC << 32 | len`) and then `ceil(len / 8)`
//! payload words. A sender queues the header with length `HELLO` when it
//! connects and with length `END` when it closes. Signals of one number are
//! queued in order, so one sender's frames arrive whole and in order.
//!
//! Any number of processes may send: every signal carries its sender's
//! process id (`si_pid`), so the receiver reads the words in batches
//! through a `signalfd`, hands each to a decoder of its own process, and
//! takes whole frames from the senders in turns; it watches each sending
//! process with a pidfd (`kill(pid, 0)` where there are none). Two senders
//! in one process would interleave their words under one pid, so a process
//! gets one sender per receiver and signal (clones of an `ipc::Sender`
//! share it). The sender watches the receiver with a pidfd too (zombies
//! count as dead).
//!
//! A sender may start as soon as the receiving process has the signal
//! blocked (`block_signal` in `main`), before any receiver binds: what it
//! queued meanwhile is received. A receiver that is dropped discards what
//! is still queued for it; a sender that goes on sending to a process
//! whose receiver was dropped (it cannot tell) reaches that process's next
//! receiver in the middle of a frame, and is reported once as having
//! broken the framing.

use std::io;
use std::mem::size_of;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::decode::{
    Signal, SignalDecoder, SignalFrameError, SIGNAL_END, SIGNAL_HELLO, SIGNAL_MAGIC,
    SIGNAL_MAX_FRAME,
};
use super::error::{FrameRecvError, FrameSendError, OpenError};
use shmlane_sys::errno::Errno;
use shmlane_sys::poll::{poll, PollFd, PollFlags};
use shmlane_sys::process::{check_kill, is_gone, pidfd_open};
use shmlane_sys::signal::{self as sys_signal, SigInfo};

use super::{passed, step, Options};

/// Largest frame: 512 payload signals.
pub(crate) const MAX_FRAME: usize = SIGNAL_MAX_FRAME;
const MAGIC: u64 = SIGNAL_MAGIC;
const END: u64 = SIGNAL_END;
const HELLO: u64 = SIGNAL_HELLO;
/// A sender that finds the queue full retries this often.
pub(crate) const RETRY: Duration = Duration::from_millis(1);
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
pub(crate) fn signal_number(offset: u8) -> io::Result<i32> {
    let (min, max) = (sys_signal::rt_min(), sys_signal::rt_max());
    let sig = min + i32::from(offset);
    if sig > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "SIGRTMIN+{offset} is above SIGRTMAX: choose an offset up to {}",
                max - min
            ),
        ));
    }
    Ok(sig)
}

/// Whether `sig` is set in the `SigBlk:` line of a `/proc/.../status`.
fn status_blocks(status: &str, sig: i32) -> Option<bool> {
    let line = status.lines().find_map(|l| l.strip_prefix("SigBlk:"))?;
    let mask = u64::from_str_radix(line.trim(), 16).ok()?;
    Some(mask & (1 << (sig - 1)) != 0)
}

/// How many threads of this process do not block `sig`.
fn threads_not_blocking(sig: i32) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .filter(|s| status_blocks(s, sig) == Some(false))
        .count()
}

/// One sending process, told apart from the others by `si_pid`.
#[derive(Debug)]
struct Peer {
    pid: i32,
    /// Polls readable once the process exits (`None`: probed with kill).
    pidfd: Option<OwnedFd>,
    words: SignalDecoder,
    /// Its closing word was taken with nothing queued after it.
    left: bool,
    /// Its process exited, and every word it queued was read.
    dead: bool,
    /// It broke the framing: its words are dropped until it exits.
    broken: bool,
}

impl Peer {
    fn new(pid: i32) -> Self {
        Self {
            pid,
            pidfd: pidfd_open(pid).ok().flatten(),
            words: SignalDecoder::new(),
            left: false,
            dead: false,
            broken: false,
        }
    }

    /// Its next whole frame, into `buf`; `Ok(None)` when none is whole.
    fn take(&mut self, buf: &mut Vec<u8>) -> Result<Option<usize>, SignalFrameError> {
        loop {
            match self.words.take(buf)? {
                Some(Signal::Frame(len)) => return Ok(Some(len)),
                // A later sender of the same process follows, if anything.
                Some(Signal::End) => self.left = self.words.queued() == 0,
                Some(Signal::Hello) => self.left = false,
                None => return Ok(None),
            }
        }
    }

    /// Whether nothing more will come from it.
    fn done(&self) -> bool {
        self.left || self.dead
    }
}

/// The receiving end: a signalfd for the signal, blocked in this thread,
/// and a decoder per sending process.
#[derive(Debug)]
pub(crate) struct SigRx {
    sfd: OwnedFd,
    offset: u8,
    /// The senders heard from and not yet gone, in order of arrival.
    peers: Vec<Peer>,
    /// The peer whose turn is next.
    next: usize,
    /// Whether any sender came yet.
    came: bool,
    raw: Vec<SigInfo>,
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
        sys_signal::block(sig)?;
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
        let sfd = match sys_signal::signalfd(sig) {
            Ok(fd) => fd,
            Err(e) => {
                BOUND.fetch_and(!bit, Ordering::Relaxed);
                return Err(e.into());
            }
        };
        // What is queued already was sent to this receiver: a sender may
        // start as soon as the signal is blocked (`block_signal` in `main`
        // blocks it long before the bind), so nothing is discarded here.
        // What an earlier receiver left queued, it discarded when dropped.
        Ok(Self {
            sfd,
            offset,
            peers: Vec::new(),
            next: 0,
            came: false,
            raw: vec![SigInfo::default(); BATCH],
        })
    }

    /// Reads what the signalfd has, each word to its sender's decoder;
    /// returns how many signals it read.
    fn read_batch(&mut self, discard: bool) -> io::Result<usize> {
        let n = match sys_signal::read_signals(&self.sfd, &mut self.raw) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            Err(e) => return Err(e),
        };
        if discard {
            return Ok(n);
        }
        for info in &self.raw[..n] {
            if !info.is_queued() {
                continue; // a plain kill(), not a frame word
            }
            let pid = info.pid();
            // Few senders: a linear search beats hashing.
            let peer = match self.peers.iter().position(|p| p.pid == pid) {
                Some(i) => &mut self.peers[i],
                None => {
                    self.came = true;
                    self.peers.push(Peer::new(pid));
                    let last = self.peers.len() - 1;
                    &mut self.peers[last]
                }
            };
            if !peer.broken {
                peer.words.push(info.value());
            }
        }
        Ok(n)
    }

    /// Gives each sender one turn, from `next` on, until one has a whole
    /// frame; drops the senders that left or died. A sender that broke
    /// the framing is muted and its error returned (the others go on).
    fn turns(&mut self, buf: &mut Vec<u8>) -> Result<Option<usize>, FrameRecvError> {
        let mut at = self.next;
        for _ in 0..self.peers.len() {
            if at >= self.peers.len() {
                at = 0;
            }
            let peer = &mut self.peers[at];
            match peer.take(buf) {
                Ok(Some(len)) => {
                    self.next = at + 1;
                    return Ok(Some(len));
                }
                // The next peer moves into `at`.
                Ok(None) if peer.done() => drop(self.peers.remove(at)),
                Ok(None) => at += 1,
                Err(e) => {
                    peer.broken = true;
                    peer.words = SignalDecoder::new();
                    self.next = at + 1;
                    buf.clear();
                    // `InvalidData`, carrying the typed error.
                    return Err(FrameRecvError::Os(io::Error::new(
                        io::ErrorKind::InvalidData,
                        e,
                    )));
                }
            }
        }
        self.next = at;
        Ok(None)
    }

    /// Marks the senders whose process exited as dead, after reading every
    /// word they queued (all of it is in the signalfd once they are gone);
    /// returns whether one was.
    fn reap(&mut self) -> io::Result<bool> {
        let mut drained = false;
        let mut any = false;
        for i in 0..self.peers.len() {
            let p = &self.peers[i];
            if p.dead || !is_gone(p.pid, p.pidfd.as_ref()) {
                continue;
            }
            if !drained {
                while self.read_batch(false)? > 0 {}
                drained = true;
            }
            self.peers[i].dead = true;
            any = true;
        }
        Ok(any)
    }

    /// What an async receive waits for: the signalfd and the senders'
    /// pidfds (a sender without one is probed now and then).
    pub(crate) fn readiness(&self, r: &mut super::Readiness) -> io::Result<()> {
        r.watch(&self.sfd, PollFlags::IN)?;
        for p in &self.peers {
            match &p.pidfd {
                Some(fd) => r.watch(fd, PollFlags::IN)?,
                None => r.recheck = super::Recheck::Death,
            }
        }
        Ok(())
    }

    pub(crate) fn recv(
        &mut self,
        buf: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<usize, FrameRecvError> {
        buf.clear();
        loop {
            if let Some(len) = self.turns(buf)? {
                return Ok(len);
            }
            if self.read_batch(false).map_err(FrameRecvError::Os)? > 0 {
                continue;
            }
            if self.reap().map_err(FrameRecvError::Os)? {
                continue;
            }
            if self.came && self.peers.is_empty() {
                return Err(FrameRecvError::Disconnected);
            }
            if passed(deadline) {
                return Err(FrameRecvError::Timeout);
            }
            // Built for each wait (it borrows the descriptors); only a
            // wait that may block gets here.
            let mut fds = Vec::with_capacity(1 + self.peers.len());
            fds.push(PollFd::new(&self.sfd, PollFlags::IN));
            let mut probe = false;
            for p in &self.peers {
                match &p.pidfd {
                    Some(fd) => fds.push(PollFd::new(fd, PollFlags::IN)),
                    None => probe = true,
                }
            }
            // A sender without a pidfd: wake up to probe it.
            let until = if probe {
                Some(step(deadline, RETRY * 10))
            } else {
                deadline
            };
            poll(&mut fds, until).map_err(FrameRecvError::Os)?;
        }
    }
}

impl Drop for SigRx {
    fn drop(&mut self) {
        // Words still queued were sent to this receiver: a later receiver
        // in this process must not take them for its own senders'.
        while self.read_batch(true).unwrap_or(0) > 0 {}
        BOUND.fetch_and(!(1u64 << self.offset), Ordering::Relaxed);
    }
}

/// The receivers (pid, signal) this process has a sender to. The receiver
/// tells senders apart by process id, so two senders of one process would
/// interleave their words: the second is refused.
static SENDING_TO: Mutex<Vec<(i32, i32)>> = Mutex::new(Vec::new());

/// Why a process gets one `signal:` sender per receiver.
const SIGNAL_TAKEN: &str = "this process has a sender to it already (the receiver tells senders \
                            apart by process id): clone that sender, or send from another \
                            process";

/// This process's claim on sending to one receiver, given up on drop.
#[derive(Debug)]
struct Claim(i32, i32);

impl Claim {
    fn take(pid: i32, sig: i32) -> Result<Self, OpenError> {
        let mut to = SENDING_TO.lock().unwrap_or_else(|e| e.into_inner());
        if to.contains(&(pid, sig)) {
            return Err(OpenError::AlreadyConnected {
                address: format!("signal:{pid}"),
                hint: SIGNAL_TAKEN,
            });
        }
        to.push((pid, sig));
        Ok(Self(pid, sig))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut to = SENDING_TO.lock().unwrap_or_else(|e| e.into_inner());
        to.retain(|&c| c != (self.0, self.1));
    }
}

/// The sending end.
#[derive(Debug)]
pub(crate) struct SigTx {
    pid: i32,
    sig: i32,
    pidfd: Option<OwnedFd>,
    words: Vec<u64>,
    next: usize,
    next_probe: Instant,
    dead: bool,
    /// Dropped after the closing word is queued (fields drop after
    /// `Drop::drop`).
    _claim: Claim,
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
        if let Err(e) = check_kill(pid) {
            return Err(match Errno::from_io_error(&e) {
                Some(Errno::SRCH) => nobody(),
                Some(Errno::PERM) => OpenError::PermissionDenied {
                    path: format!("process {pid} (signals)").into(),
                },
                _ => OpenError::Os(e),
            });
        }
        let pidfd = pidfd_open(pid).map_err(|e| match Errno::from_io_error(&e) {
            Some(Errno::SRCH) => nobody(),
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
            if Instant::now() >= until || is_gone(pid, pidfd.as_ref()) {
                return Err(nobody());
            }
            std::thread::sleep(RETRY * 10);
        }
        let claim = Claim::take(pid, sig)?;
        let mut tx = Self {
            pid,
            sig,
            pidfd,
            words: Vec::with_capacity(MAX_FRAME / 8 + 1),
            next: 0,
            next_probe: Instant::now() + PROBE_EVERY,
            dead: false,
            _claim: claim,
        };
        // The opening word: the receiver counts this sender from now on
        // (it reports `Disconnected` only once every sender it knows of
        // left). If the receiver's queue stays full past the connect
        // timeout, the word goes before the first frame instead.
        tx.words.push(MAGIC << 32 | HELLO);
        match tx.push(Some(until)) {
            Ok(_) => Ok(tx),
            Err(FrameSendError::Os(e)) => Err(OpenError::Os(e)),
            Err(_) => Err(nobody()),
        }
    }

    fn receiver_gone(&mut self) -> bool {
        if !self.dead && is_gone(self.pid, self.pidfd.as_ref()) {
            self.dead = true;
        }
        self.dead
    }

    /// Queues the words from `next` on; `Ok(false)` when the deadline
    /// passed with some left.
    fn push(&mut self, deadline: Option<Instant>) -> Result<bool, FrameSendError> {
        while self.next < self.words.len() {
            // Retries EINTR itself.
            match sys_signal::queue(self.pid, self.sig, self.words[self.next]) {
                Ok(()) => self.next += 1,
                Err(e) if Errno::from_io_error(&e) == Some(Errno::AGAIN) => {
                    if self.receiver_gone() {
                        return Err(FrameSendError::Disconnected);
                    }
                    if passed(deadline) {
                        return Ok(false);
                    }
                    std::thread::sleep(
                        step(deadline, RETRY).saturating_duration_since(Instant::now()),
                    );
                }
                Err(e) if Errno::from_io_error(&e) == Some(Errno::SRCH) => {
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
