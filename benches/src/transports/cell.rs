//! One transport at one size: the two links, the peer's handle, both
//! phases.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use shmlane::ipc::{Builder, Bytes, Channel, Receiver, Sender, Trust};
use shmlane::transport::{self, Address, FrameReceiver, FrameSender, Options};

use super::{Kind, Measured, Outcome, END, GRACE, PEER_RX_ENV, PEER_TX_ENV};
use crate::ipc::{unique, Latency, Samples, PEER_ENV};

// ---------------------------------------------------------------------
// The links: one way each, ring or frame transport.

/// Sends `size`-byte messages one way: the library's one sender type,
/// over a ring or a kernel transport alike.
pub(super) type Tx = Sender<Bytes>;

/// Receives them.
pub(super) type Rx = Receiver<Bytes>;

pub(super) fn tag_of(msg: &[u8]) -> u64 {
    u64::from_le_bytes(msg[..8].try_into().expect("at least 8 bytes"))
}

/// Reads every byte of a message, as a consumer would.
pub(super) fn consume(msg: &[u8]) -> u64 {
    let words = msg.chunks_exact(8);
    let rest = words.remainder();
    let mut sum = 0u64;
    for w in words {
        sum = sum.wrapping_add(u64::from_le_bytes(w.try_into().expect("8 bytes")));
    }
    for &b in rest {
        sum = sum.wrapping_add(u64::from(b));
    }
    std::hint::black_box(sum)
}

/// Sends `payload` with `tag` in its first 8 bytes.
pub(super) fn send(tx: &Tx, payload: &mut [u8], tag: u64, deadline: Instant) -> Result<(), String> {
    payload[..8].copy_from_slice(&tag.to_le_bytes());
    tx.send_deadline(payload, deadline)
        .map_err(|e| format!("send: {e}"))
}

/// Receives one message of `size` bytes where it lies, hands it to `f` and
/// returns its tag.
pub(super) fn recv<R>(
    rx: &Rx,
    size: usize,
    deadline: Instant,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<(u64, R), String> {
    let msg = rx
        .recv_ref_deadline(deadline)
        .map_err(|e| format!("recv: {e}"))?;
    if msg.len() != size {
        return Err(format!("got {} bytes, expected {size}", msg.len()));
    }
    Ok((tag_of(&msg), f(&msg)))
}

/// Receives a message and sends it back as it is.
pub(super) fn echo(rx: &Rx, tx: &Tx, size: usize, deadline: Instant) -> Result<u64, String> {
    let msg = rx
        .recv_ref_deadline(deadline)
        .map_err(|e| format!("recv: {e}"))?;
    if msg.len() != size {
        return Err(format!("got {} bytes, expected {size}", msg.len()));
    }
    tx.send_deadline(&msg, deadline)
        .map_err(|e| format!("send: {e}"))?;
    Ok(tag_of(&msg))
}

/// The frame options for `kind` at `size`.
pub(super) fn frame_options(kind: Kind, size: usize) -> Options {
    let opts = Options::new().connect_timeout(Duration::from_secs(5));
    if kind == Kind::Mq || kind == Kind::SysvMq {
        opts.max_frame(size)
    } else {
        opts
    }
}

/// Slots of the ring for `size`-byte messages: about 2 MiB in all, 8 to
/// 8192 slots. (16 MiB rings measured slower at 64 KiB messages, and no
/// faster elsewhere, on the 2-CPU EPYC VM this was written on: a ring that
/// stays in cache is the best path.)
pub(super) fn ring_capacity(size: usize) -> usize {
    ((2usize << 20) / size).clamp(8, 8192)
}

// ---------------------------------------------------------------------
// The parent side.

/// A peer process: killed and reaped if still running when dropped; its
/// stderr is kept for error messages.
pub(super) struct Peer {
    child: Child,
    lines: LineReader,
}

impl Peer {
    pub(super) fn spawn(
        kind: Kind,
        size: usize,
        rx: &str,
        tx: &str,
        mut cmd: Command,
    ) -> Result<Self, String> {
        let mut child = cmd
            .env(PEER_ENV, format!("transport {} {size}", kind.name()))
            .env(PEER_RX_ENV, rx)
            .env(PEER_TX_ENV, tx)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn bench peer: {e}"))?;
        let stdout = child.stdout.take().expect("piped");
        Ok(Self {
            child,
            lines: LineReader::new(stdout),
        })
    }

    /// The rest of the line that starts with `word`, waiting until
    /// `deadline`.
    pub(super) fn expect(&mut self, word: &str, deadline: Instant) -> Result<String, String> {
        loop {
            let line = self.lines.line(deadline)?;
            if let Some(rest) = line.strip_prefix(word) {
                return Ok(rest.trim().to_owned());
            }
        }
    }

    /// Kills the peer (if running) and returns `err` with its stderr.
    pub(super) fn fail(&mut self, err: String) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut text = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut text);
        }
        let text = text.trim();
        if text.is_empty() {
            err
        } else {
            format!("{err} (peer: {})", text.replace('\n', "; "))
        }
    }

    /// Waits for a clean exit, up to `deadline`.
    pub(super) fn finish(mut self, deadline: Instant) -> Result<(), String> {
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => return Err(self.fail(format!("peer exited: {status}"))),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Ok(None) => return Err(self.fail("peer did not exit".into())),
                Err(e) => return Err(self.fail(format!("wait for peer: {e}"))),
            }
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Lines from a child's stdout, with deadlines (poll on the pipe).
struct LineReader {
    out: ChildStdout,
    buf: Vec<u8>,
}

impl LineReader {
    pub(super) fn new(out: ChildStdout) -> Self {
        Self {
            out,
            buf: Vec::new(),
        }
    }

    pub(super) fn line(&mut self, deadline: Instant) -> Result<String, String> {
        loop {
            if let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=nl).collect();
                return Ok(String::from_utf8_lossy(&line).trim_end().to_owned());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err("timed out waiting for the bench peer".into());
            }
            let step = Instant::now() + left.min(Duration::from_secs(1));
            match shmlane_sys::poll::poll_one(
                &self.out,
                shmlane_sys::poll::PollFlags::IN,
                Some(step),
            ) {
                Ok(ready) if !ready.is_empty() => {}
                _ => continue,
            }
            let mut chunk = [0u8; 256];
            match self.out.read(&mut chunk) {
                Ok(0) => return Err("bench peer exited early".into()),
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("read from bench peer: {e}")),
            }
        }
    }
}

/// A path in the temporary directory, removed when dropped (the
/// transports remove what they create; this covers a failure between).
pub(super) struct TempPath(std::path::PathBuf);

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Sets up both links with a fresh peer, then measures.
pub(super) fn measure_cell(
    kind: Kind,
    size: usize,
    budget: Duration,
    phase: &mut dyn FnMut(&str),
) -> Outcome {
    let deadline = Instant::now() + GRACE;
    let cmd = match std::env::current_exe() {
        Ok(exe) => Command::new(exe),
        Err(e) => return Outcome::Failed(format!("own executable: {e}")),
    };
    let mut temps = Vec::new();
    let result = match kind {
        Kind::Shm | Kind::Sysv => set_up_shm(kind, size, cmd, deadline),
        Kind::Pipe => set_up_pipe(size, cmd, deadline),
        _ => set_up_frames(kind, size, cmd, deadline, &mut temps),
    };
    let (mut peer, tx, rx, _chans) = match result {
        Ok(parts) => parts,
        Err(e) => return Outcome::Failed(e),
    };
    match run_phases(&tx, &rx, size, budget, phase, &mut peer) {
        Ok((rtt, samples, msgs_per_s)) => {
            // Our sender's close is the peer's cue to exit; drain its
            // close so nothing of it stays queued here.
            drop(tx);
            let _ = recv(&rx, size, Instant::now() + Duration::from_secs(2), |_| ());
            drop(rx);
            match peer.finish(Instant::now() + Duration::from_secs(5)) {
                Ok(()) => Outcome::Measured(Measured {
                    rtt,
                    samples,
                    msgs_per_s,
                }),
                Err(e) => Outcome::Failed(e),
            }
        }
        Err(e) => Outcome::Failed(peer.fail(e)),
    }
}

/// A peer and this side's two links (and the rings, kept until the end).
type Parts = (Peer, Tx, Rx, Vec<Channel<Bytes>>);

/// shm, sysv: this side creates both rings; the peer opens them.
fn set_up_shm(kind: Kind, size: usize, cmd: Command, deadline: Instant) -> Result<Parts, String> {
    let make = |tag: &str| -> Result<(String, Channel<Bytes>), String> {
        let addr = if kind == Kind::Sysv {
            format!("sysv:{}", crate::ipc::unique_key())
        } else {
            format!("shm:{}", unique(tag))
        };
        let chan = Builder::new(&addr)
            .map_err(|e| e.to_string())?
            .spsc()
            .capacity(ring_capacity(size))
            .message_size(size)
            .create::<Bytes>()
            .map_err(|e| format!("create {addr}: {e}"))?;
        Ok((addr, chan))
    };
    let (to_peer, a) = make("to-peer")?;
    let (from_peer, b) = make("from-peer")?;
    let tx = a.sender().map_err(|e| e.to_string())?;
    let rx = b.receiver().map_err(|e| e.to_string())?;
    let mut peer = Peer::spawn(kind, size, &to_peer, &from_peer, cmd)?;
    peer.expect("ready", deadline).map_err(|e| peer.fail(e))?;
    Ok((peer, tx, rx, vec![a, b]))
}

/// pipe: two anonymous pipes, one end of each inherited by the peer.
fn set_up_pipe(size: usize, mut cmd: Command, deadline: Instant) -> Result<Parts, String> {
    let (to_tx, to_rx) = transport::pipe().map_err(|e| format!("pipe: {e}"))?;
    let (from_tx, from_rx) = transport::pipe().map_err(|e| format!("pipe: {e}"))?;
    let peer_rx: OwnedFd = to_rx
        .into_owned_fd()
        .map_err(|_| "a fresh pipe receiver has no descriptor".to_string())?;
    let peer_tx: OwnedFd = from_tx
        .into_owned_fd()
        .map_err(|_| "a fresh pipe sender has no descriptor".to_string())?;
    let r = transport::pass_to_child(&mut cmd, &peer_rx);
    let w = transport::pass_to_child(&mut cmd, &peer_tx);
    let spawned = Peer::spawn(Kind::Pipe, size, &r.to_string(), &w.to_string(), cmd);
    // The peer has its copies (or failed): ours must close, so that each
    // side sees the other's close.
    drop((peer_rx, peer_tx));
    let mut peer = spawned?;
    peer.expect("ready", deadline).map_err(|e| peer.fail(e))?;
    Ok((
        peer,
        Tx::from_frames(to_tx),
        Rx::from_frames(from_rx, Trust::validate()),
        Vec::new(),
    ))
}

/// fifo, unix, mq, tcp, signal: each side binds its receiver and connects
/// to the other's.
fn set_up_frames(
    kind: Kind,
    size: usize,
    cmd: Command,
    deadline: Instant,
    temps: &mut Vec<TempPath>,
) -> Result<Parts, String> {
    let mut path = |side: &str| {
        let p = std::env::temp_dir().join(unique(&format!("{}-{side}", kind.name())));
        temps.push(TempPath(p.clone()));
        p.display().to_string()
    };
    let (ours, theirs) = match kind {
        Kind::Fifo => (format!("fifo:{}", path("a")), format!("fifo:{}", path("b"))),
        Kind::Unix => (format!("unix:{}", path("a")), format!("unix:{}", path("b"))),
        Kind::Mq => (
            format!("mq:{}", unique("mq-a")),
            format!("mq:{}", unique("mq-b")),
        ),
        Kind::SysvMq => (
            format!("sysvmq:{}", crate::ipc::unique_key()),
            format!("sysvmq:{}", crate::ipc::unique_key()),
        ),
        Kind::Tcp => ("tcp:127.0.0.1:0".to_owned(), "tcp:127.0.0.1:0".to_owned()),
        Kind::Signal => ("signal:".to_owned(), "signal:".to_owned()),
        #[cfg(feature = "zenoh")]
        Kind::Zenoh => {
            let key = unique("zenoh");
            (
                format!("zenoh:shmlane/bench/{key}/a"),
                format!("zenoh:shmlane/bench/{key}/b"),
            )
        }
        Kind::Shm | Kind::Sysv | Kind::Pipe => {
            return Err("not a frame transport with addresses".into())
        }
    };
    let opts = &frame_options(kind, size);
    // zenoh: each receiver listens on a port of its own and each sender
    // connects to the other side's (sessions per end, direct links).
    #[allow(unused_mut)]
    let (mut rx_opts, mut tx_opts, mut cmd) = (opts.clone(), opts.clone(), cmd);
    #[cfg(feature = "zenoh")]
    if kind == Kind::Zenoh {
        let (ours_port, theirs_port) = (free_port()?, free_port()?);
        rx_opts = rx_opts.zenoh_config(shmlane::zenoh::loopback_config(Some(ours_port), None));
        tx_opts = tx_opts.zenoh_config(shmlane::zenoh::loopback_config(None, Some(theirs_port)));
        cmd.env(ZENOH_PORTS_ENV, format!("{theirs_port} {ours_port}"));
    }
    let addr = Address::parse(&ours).map_err(|e| e.to_string())?;
    let rx = FrameReceiver::bind(&addr, &rx_opts).map_err(|e| format!("bind {addr}: {e}"))?;
    let mut peer = Peer::spawn(kind, size, &theirs, &rx.local_address().to_string(), cmd)?;
    let peer_addr = peer.expect("ready", deadline).map_err(|e| peer.fail(e))?;
    let to = Address::parse(&peer_addr).map_err(|e| peer.fail(e.to_string()))?;
    let tx =
        FrameSender::connect(&to, &tx_opts).map_err(|e| peer.fail(format!("connect {to}: {e}")))?;
    Ok((
        peer,
        Tx::from_frames(tx),
        Rx::from_frames(rx, Trust::validate()),
        Vec::new(),
    ))
}

/// The zenoh: peer's two ports: the one its receiver listens on, the
/// one its sender connects to.
#[cfg(feature = "zenoh")]
pub(super) const ZENOH_PORTS_ENV: &str = "SHMLANE_BENCH_ZENOH_PORTS";

/// A free TCP port on 127.0.0.1 (bound and let go).
#[cfg(feature = "zenoh")]
fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("a free port: {e}"))
}

/// Round trips a cell measures at least, however long they take.
const MIN_ROUND_TRIPS: u64 = 10;

/// The two phases; returns round-trip percentiles, samples, messages/s.
fn run_phases(
    tx: &Tx,
    rx: &Rx,
    size: usize,
    budget: Duration,
    phase: &mut dyn FnMut(&str),
    peer: &mut Peer,
) -> Result<(Latency, u64, f64), String> {
    let mut payload: Vec<u8> = (0..size).map(|i| i as u8).collect();

    phase("round trip");
    let start = Instant::now();
    let end = start + budget;
    let warm = start + (budget / 10).min(Duration::from_millis(100));
    let mut samples = Samples::new();
    let mut seq = 0u64;
    loop {
        let t = Instant::now();
        // The budget is a target, not a limit: on a slow or busy machine
        // the cell runs on until it has its few samples (each operation
        // still has `GRACE` to finish, a hang guard), so a table never
        // fails for want of time.
        if t >= end && samples.len() >= MIN_ROUND_TRIPS {
            break;
        }
        let deadline = t + GRACE;
        send(tx, &mut payload, seq, deadline)?;
        let (tag, _) = recv(rx, size, deadline, consume)?;
        let took = t.elapsed();
        if tag != seq {
            return Err(format!("round trip {seq} came back as {tag}"));
        }
        if t >= warm {
            samples.record(took);
        }
        seq += 1;
    }
    // The peer echoes the end marker too.
    let deadline = Instant::now() + GRACE;
    send(tx, &mut payload, END, deadline)?;
    let (tag, _) = recv(rx, size, deadline, |_| ())?;
    if tag != END {
        return Err(format!("expected the end marker back, got {tag}"));
    }
    if samples.len() == 0 {
        return Err("no round trip finished within the budget".into());
    }
    let n = samples.len();
    let rtt = samples.latency();

    phase("throughput");
    // Look at the clock every `every` messages: often enough to keep to
    // the budget, rarely enough to cost nothing next to a small message.
    let every = if size <= 64 { 64 } else { 1 };
    let start = Instant::now();
    let end = start + budget;
    let mut sent = 0u64;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let deadline = now + GRACE;
        for _ in 0..every {
            send(tx, &mut payload, sent, deadline)?;
            sent += 1;
        }
    }
    let deadline = Instant::now() + GRACE;
    send(tx, &mut payload, END, deadline)?;
    let (tag, _) = recv(rx, size, deadline, |_| ())?;
    let elapsed = start.elapsed();
    if tag != END {
        return Err(format!("expected the end acknowledgement, got {tag}"));
    }
    let got = peer.expect("done", deadline)?;
    if got != sent.to_string() {
        return Err(format!("sent {sent} messages, the peer counted {got}"));
    }
    Ok((rtt, n, sent as f64 / elapsed.as_secs_f64()))
}
