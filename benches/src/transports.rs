//! Every IPC mechanism side by side, between two real processes: the
//! shared-memory ring (`shm:`) and each fallback frame transport (`pipe`,
//! `fifo:`, `unix:`, `mq:`, `tcp:`, `signal:`), for several message sizes.
//!
//! For each transport and size, one peer process (this executable re-run,
//! see [`crate::ipc::maybe_run_peer`]) is pinned to CPU 1 and this process
//! to CPU 0, and two links are set up, one each way. Then:
//!
//! - **round trip**: this process sends a message, the peer echoes it back
//!   (received whole, sent again), this process receives it; each
//!   iteration is timed and p50/p99/p99.9 are taken over them (samples of
//!   the first 10% of the time budget, at most 100 ms, are a warm-up and
//!   dropped);
//! - **one-way throughput**: this process sends messages as fast as the
//!   link takes them for the time budget, then an end marker; the peer
//!   receives and reads every one and acknowledges the marker; messages/s
//!   is the count over the time to the acknowledgement.
//!
//! Every message is exactly `size` bytes (at least 8) and carries a
//! sequence number in its first 8 bytes, which the receiver checks; a
//! receiver reads every byte of every message (a sum of its words), as a
//! consumer of the data would. The ring uses its best path: the sender
//! writes the message into the slot (`send_with`; one copy, as a producer
//! building the message there would make) and the receiver reads it where
//! it lies (`recv_ref`), with the default wait strategy (spin, yield,
//! park). The frame transports copy into the kernel and out again.
//!
//! Cells a transport cannot carry (a message above its largest frame) are
//! reported as not applicable with the reason; a cell that fails (a
//! transport error, a peer that died) is reported as failed with the
//! error, and the run goes on. Peers are killed and reaped on every path,
//! and every name and path is unique and removed.

use std::fmt::Write as _;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use shmlane::ipc::{Builder, Bytes, Channel, Receiver, Sender, Trust};
use shmlane::transport::{self, Address, FrameReceiver, FrameSender, Options};

use crate::ipc::{median_f64 as median, percentiles, pin_to_cpu, unique, unpin, Latency, PEER_ENV};

/// The peer's receive address (environment variable of the peer).
const PEER_RX_ENV: &str = "SHMLANE_BENCH_PEER_RX";
/// Where the peer sends (this process's receive address).
const PEER_TX_ENV: &str = "SHMLANE_BENCH_PEER_TX";
/// The sequence number that ends a phase.
const END: u64 = u64::MAX;
/// How long past a phase's budget a blocked operation may wait before the
/// cell is reported as failed.
const GRACE: Duration = Duration::from_secs(10);
/// The smallest and largest message sizes measured.
pub const MIN_SIZE: usize = 8;
/// The largest message size: the frame transports' 1 MiB max frame.
pub const MAX_SIZE: usize = transport::DEFAULT_MAX_FRAME;

/// An IPC mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The shared-memory SPSC ring (`shm:NAME`).
    Shm,
    /// An anonymous pipe inherited by the peer.
    Pipe,
    /// A named pipe (`fifo:PATH`).
    Fifo,
    /// A Unix stream socket (`unix:PATH`).
    Unix,
    /// A POSIX message queue (`mq:NAME`).
    Mq,
    /// TCP on 127.0.0.1 (`tcp:127.0.0.1:PORT`).
    Tcp,
    /// Queued real-time signals (`signal:PID`).
    Signal,
}

impl Kind {
    /// Every transport, in the default order.
    pub const ALL: [Kind; 7] = [
        Kind::Shm,
        Kind::Pipe,
        Kind::Fifo,
        Kind::Unix,
        Kind::Mq,
        Kind::Tcp,
        Kind::Signal,
    ];

    /// The name used on the command line, in tables and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Shm => "shm",
            Kind::Pipe => "pipe",
            Kind::Fifo => "fifo",
            Kind::Unix => "unix",
            Kind::Mq => "mq",
            Kind::Tcp => "tcp",
            Kind::Signal => "signal",
        }
    }

    /// The transport called `name`.
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Why this transport cannot carry `size`-byte messages, if it cannot.
    pub fn cannot_carry(self, size: usize) -> Option<String> {
        match self {
            Kind::Mq => {
                let max = mq_msgsize_max();
                (size > max).then(|| {
                    format!(
                        "above mq msgsize_max ({}; /proc/sys/fs/mqueue)",
                        human_size(max)
                    )
                })
            }
            Kind::Signal => (size > transport::SIGNAL_MAX_FRAME).then(|| {
                format!(
                    "signal frames are at most {}",
                    human_size(transport::SIGNAL_MAX_FRAME)
                )
            }),
            _ => (size > MAX_SIZE).then(|| format!("above the {} max frame", human_size(MAX_SIZE))),
        }
    }
}

fn mq_msgsize_max() -> usize {
    std::fs::read_to_string("/proc/sys/fs/mqueue/msgsize_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(8192)
}

/// `8 B`, `64 B`, `4 KiB`, `1 MiB`, `1.5 KiB`.
pub fn human_size(bytes: usize) -> String {
    let unit = |div: usize, name: &str| {
        if bytes % div == 0 {
            format!("{} {name}", bytes / div)
        } else {
            format!("{:.1} {name}", bytes as f64 / div as f64)
        }
    };
    if bytes >= 1 << 20 {
        unit(1 << 20, "MiB")
    } else if bytes >= 1 << 10 {
        unit(1 << 10, "KiB")
    } else {
        format!("{bytes} B")
    }
}

/// Parses a size: `8`, `64`, `4K`, `4KiB`, `1M`, `1MiB` (K = 1024).
pub fn parse_size(s: &str) -> Option<usize> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let (num, mult) = if let Some(n) = lower
        .strip_suffix("kib")
        .or_else(|| lower.strip_suffix("kb"))
        .or_else(|| lower.strip_suffix('k'))
    {
        (n, 1usize << 10)
    } else if let Some(n) = lower
        .strip_suffix("mib")
        .or_else(|| lower.strip_suffix("mb"))
        .or_else(|| lower.strip_suffix('m'))
    {
        (n, 1 << 20)
    } else {
        (lower.strip_suffix('b').unwrap_or(&lower), 1)
    };
    let n: usize = num.trim().parse().ok()?;
    n.checked_mul(mult)
}

/// Blocks the signal the `signal` transport uses, in this thread and in
/// threads it starts from now on: a process that measures `signal` calls
/// it before it starts any thread (see [`transport::block_signal`]).
///
/// # Errors
///
/// A failure of `pthread_sigmask`.
pub fn block_signal() -> std::io::Result<()> {
    transport::block_signal(&Options::new())
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Transports, in the order given.
    pub kinds: Vec<Kind>,
    /// Message sizes in bytes, each in `MIN_SIZE..=MAX_SIZE`.
    pub sizes: Vec<usize>,
    /// The whole run's time budget, shared out evenly between the cells.
    pub duration: Duration,
    /// Runs per cell (interleaved; medians reported).
    pub runs: usize,
}

impl Default for Settings {
    /// Every transport; 8 B, 64 B, 4 KiB and 1 MiB; 60 s; three runs
    /// (medians: a burst of noise from elsewhere on the machine then
    /// spoils one run of a cell, not the figure).
    fn default() -> Self {
        Self {
            kinds: Kind::ALL.to_vec(),
            sizes: vec![8, 64, 4096, 1 << 20],
            duration: Duration::from_secs(60),
            runs: 3,
        }
    }
}

impl Settings {
    /// The time budget of one measurement (a round-trip or a throughput
    /// phase of one cell in one run): 85% of the duration shared out, the
    /// rest left for starting peers and connecting.
    pub fn phase_budget(&self) -> Duration {
        let cells = self
            .kinds
            .iter()
            .flat_map(|k| self.sizes.iter().map(move |&s| k.cannot_carry(s)))
            .filter(Option::is_none)
            .count()
            .max(1);
        let phases = (cells * 2 * self.runs.max(1)) as f64;
        Duration::from_secs_f64((self.duration.as_secs_f64() * 0.85 / phases).max(0.01))
    }
}

/// What one cell measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    /// Round-trip percentiles, nanoseconds.
    pub rtt: Latency,
    /// Round trips timed (after the warm-up), summed over runs.
    pub samples: u64,
    /// One-way messages per second.
    pub msgs_per_s: f64,
}

/// How a cell ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Measured.
    Measured(Measured),
    /// The transport cannot carry this size: why.
    NotApplicable(String),
    /// The measurement failed: the error.
    Failed(String),
}

/// One row of the comparison: a transport at one message size.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The transport.
    pub kind: Kind,
    /// Message size in bytes.
    pub size: usize,
    /// What was measured.
    pub outcome: Outcome,
}

impl Row {
    /// The measurement, if there is one.
    pub fn measured(&self) -> Option<&Measured> {
        match &self.outcome {
            Outcome::Measured(m) => Some(m),
            _ => None,
        }
    }

    /// One-way gigabytes (10^9 bytes) per second of payload.
    pub fn gb_per_s(&self) -> Option<f64> {
        self.measured()
            .map(|m| m.msgs_per_s * self.size as f64 / 1e9)
    }
}

/// Where a run stands, for a progress display.
#[derive(Debug, Clone)]
pub struct Progress {
    /// Phases finished.
    pub done: usize,
    /// Phases in all.
    pub total: usize,
    /// What is being measured now.
    pub what: String,
    /// A guess at the time left.
    pub eta: Duration,
}

/// Measures every transport at every size, `runs` times (run after run,
/// so noise hits every cell alike) and takes medians. `progress` is told
/// before each phase. Rows come in the order of `settings` (sizes outer);
/// see [`sort_rows`].
///
/// A process that measures `signal` must have called [`block_signal`]
/// before it started any thread.
pub fn measure(settings: &Settings, mut progress: impl FnMut(&Progress)) -> Vec<Row> {
    let budget = settings.phase_budget();
    let runs = settings.runs.max(1);
    let cells: Vec<(Kind, usize)> = settings
        .sizes
        .iter()
        .flat_map(|&s| settings.kinds.iter().map(move |&k| (k, s)))
        .collect();
    let live = cells
        .iter()
        .filter(|(k, s)| k.cannot_carry(*s).is_none())
        .count();
    let total = live * 2 * runs;
    let pinned = pin_to_cpu(0);
    let start = Instant::now();
    let mut done = 0;
    // Per cell: the outcomes of each run.
    let mut results: Vec<Vec<Outcome>> = vec![Vec::new(); cells.len()];
    for run in 0..runs {
        for (i, &(kind, size)) in cells.iter().enumerate() {
            if let Some(why) = kind.cannot_carry(size) {
                results[i].push(Outcome::NotApplicable(why));
                continue;
            }
            // Once a cell failed, later runs skip it.
            if matches!(results[i].last(), Some(Outcome::Failed(_))) {
                done += 2;
                continue;
            }
            let before = done;
            let outcome = measure_cell(kind, size, budget, &mut |phase| {
                let elapsed = start.elapsed();
                let eta = if done == 0 {
                    budget * (total as u32) + Duration::from_millis(100) * (live * runs) as u32
                } else {
                    elapsed.mul_f64((total - done) as f64 / done as f64)
                };
                progress(&Progress {
                    done,
                    total,
                    what: format!(
                        "{}{} {} {phase}",
                        if runs > 1 {
                            format!("run {}/{runs}: ", run + 1)
                        } else {
                            String::new()
                        },
                        kind.name(),
                        human_size(size)
                    ),
                    eta,
                });
                done += 1;
            });
            // A cell that failed early skipped a phase or two.
            done = before + 2;
            results[i].push(outcome);
        }
    }
    progress(&Progress {
        done: total,
        total,
        what: "done".into(),
        eta: Duration::ZERO,
    });
    if pinned {
        unpin();
    }
    cells
        .into_iter()
        .zip(results)
        .map(|((kind, size), outcomes)| Row {
            kind,
            size,
            outcome: median_outcome(outcomes),
        })
        .collect()
}

fn median_outcome(outcomes: Vec<Outcome>) -> Outcome {
    let mut measured = Vec::new();
    for o in outcomes {
        match o {
            Outcome::Measured(m) => measured.push(m),
            other => return other,
        }
    }
    if measured.is_empty() {
        return Outcome::Failed("nothing measured".into());
    }
    let pick = |f: fn(&Measured) -> f64| median(measured.iter().map(f).collect());
    Outcome::Measured(Measured {
        rtt: Latency {
            p50: pick(|m| m.rtt.p50),
            p99: pick(|m| m.rtt.p99),
            p999: pick(|m| m.rtt.p999),
        },
        samples: measured.iter().map(|m| m.samples).sum(),
        msgs_per_s: pick(|m| m.msgs_per_s),
    })
}

/// Sorts rows by size, then fastest first within a size (by round-trip
/// p50; rows without a measurement last).
pub fn sort_rows(rows: &mut [Row]) {
    rows.sort_by(|a, b| {
        let key = |r: &Row| r.measured().map_or(f64::INFINITY, |m| m.rtt.p50);
        a.size.cmp(&b.size).then(key(a).total_cmp(&key(b)))
    });
}

/// The shm row's measurement at `size`, the yardstick of the ratios.
fn shm_at(rows: &[Row], size: usize) -> Option<&Measured> {
    rows.iter()
        .find(|r| r.kind == Kind::Shm && r.size == size)
        .and_then(Row::measured)
}

/// A row's round-trip p50 over the ring's, and its throughput over the
/// ring's (both `None` without a shm row at that size).
pub fn ratios(rows: &[Row], row: &Row) -> (Option<f64>, Option<f64>) {
    match (row.measured(), shm_at(rows, row.size)) {
        (Some(m), Some(shm)) => (
            Some(m.rtt.p50 / shm.rtt.p50),
            Some(m.msgs_per_s / shm.msgs_per_s),
        ),
        _ => (None, None),
    }
}

/// `812 ns`, `12.3 us`, `4.56 ms`.
pub fn human_ns(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.1} us", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// `950`, `12.3 k`, `4.56 M`.
pub fn human_rate(r: f64) -> String {
    if r < 1e3 {
        format!("{r:.0}")
    } else if r < 1e6 {
        format!("{:.1} k", r / 1e3)
    } else {
        format!("{:.2} M", r / 1e6)
    }
}

fn ratio_text(r: Option<f64>) -> String {
    match r {
        Some(r) if r >= 100.0 => format!("{r:.0}x"),
        Some(r) if r >= 10.0 => format!("{r:.1}x"),
        Some(r) if r >= 0.01 => format!("{r:.2}x"),
        Some(r) => format!("{r:.4}x"),
        None => "-".into(),
    }
}

/// Formats rows (sort them first) as one table; a blank line between
/// sizes.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<8}{:>8} {:>10}{:>10}{:>10}{:>12}{:>10}{:>11}{:>11}",
        "", "", "round trip", "", "", "one way", "", "vs shm", "vs shm"
    );
    let _ = writeln!(
        out,
        "{:<8}{:>8} {:>10}{:>10}{:>10}{:>12}{:>10}{:>11}{:>11}",
        "transport", "size", "p50", "p99", "p99.9", "msgs/s", "GB/s", "rtt p50", "msgs/s"
    );
    let mut last_size = None;
    for row in rows {
        if last_size.is_some_and(|s| s != row.size) {
            out.push('\n');
        }
        last_size = Some(row.size);
        let size = human_size(row.size);
        match &row.outcome {
            Outcome::Measured(m) => {
                let (lat, tput) = ratios(rows, row);
                let _ = writeln!(
                    out,
                    "{:<8}{:>8} {:>10}{:>10}{:>10}{:>12}{:>10.3}{:>11}{:>11}",
                    row.kind.name(),
                    size,
                    human_ns(m.rtt.p50),
                    human_ns(m.rtt.p99),
                    human_ns(m.rtt.p999),
                    human_rate(m.msgs_per_s),
                    row.gb_per_s().unwrap_or(0.0),
                    ratio_text(lat),
                    ratio_text(tput)
                );
            }
            Outcome::NotApplicable(why) => {
                let _ = writeln!(out, "{:<8}{:>8}   n/a: {why}", row.kind.name(), size);
            }
            Outcome::Failed(e) => {
                let first = e.lines().next().unwrap_or("");
                let _ = writeln!(out, "{:<8}{:>8}   FAILED: {first}", row.kind.name(), size);
            }
        }
    }
    out
}

/// Escapes a string for a JSON string literal (quotes included).
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_number(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => {
            if v.fract() == 0.0 && v.abs() < 1e15 {
                format!("{v:.0}")
            } else {
                format!("{v}")
            }
        }
        _ => "null".into(),
    }
}

/// The rows as a JSON array of objects: `transport`, `size` (bytes),
/// `rtt_p50_ns`, `rtt_p99_ns`, `rtt_p999_ns`, `msgs_per_s`, `gb_per_s`
/// (null when not measured), `rtt_vs_shm`, `msgs_vs_shm`, `samples`,
/// `status` (`ok`, `n/a` or `failed`) and `note` (the reason or error).
pub fn json(rows: &[Row]) -> String {
    let mut out = String::from("[");
    for (i, row) in rows.iter().enumerate() {
        let m = row.measured();
        let (lat, tput) = ratios(rows, row);
        let (status, note) = match &row.outcome {
            Outcome::Measured(_) => ("ok", None),
            Outcome::NotApplicable(w) => ("n/a", Some(w.as_str())),
            Outcome::Failed(e) => ("failed", Some(e.as_str())),
        };
        let _ = write!(
            out,
            "{}\n  {{\"transport\": {}, \"size\": {}, \"rtt_p50_ns\": {}, \"rtt_p99_ns\": {}, \
             \"rtt_p999_ns\": {}, \"msgs_per_s\": {}, \"gb_per_s\": {}, \"rtt_vs_shm\": {}, \
             \"msgs_vs_shm\": {}, \"samples\": {}, \"status\": {}, \"note\": {}}}",
            if i == 0 { "" } else { "," },
            json_string(row.kind.name()),
            row.size,
            json_number(m.map(|m| m.rtt.p50)),
            json_number(m.map(|m| m.rtt.p99)),
            json_number(m.map(|m| m.rtt.p999)),
            json_number(m.map(|m| m.msgs_per_s)),
            json_number(row.gb_per_s()),
            json_number(lat),
            json_number(tput),
            json_number(m.map(|m| m.samples as f64)),
            json_string(status),
            note.map_or_else(|| "null".into(), json_string),
        );
    }
    out.push_str(if rows.is_empty() { "]\n" } else { "\n]\n" });
    out
}

// ---------------------------------------------------------------------
// The links: one way each, ring or frame transport.

/// Sends `size`-byte messages one way: the library's one sender type,
/// over a ring or a kernel transport alike.
type Tx = Sender<Bytes>;

/// Receives them.
type Rx = Receiver<Bytes>;

fn tag_of(msg: &[u8]) -> u64 {
    u64::from_le_bytes(msg[..8].try_into().expect("at least 8 bytes"))
}

/// Reads every byte of a message, as a consumer would.
fn consume(msg: &[u8]) -> u64 {
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
fn send(tx: &Tx, payload: &mut [u8], tag: u64, deadline: Instant) -> Result<(), String> {
    payload[..8].copy_from_slice(&tag.to_le_bytes());
    tx.send_deadline(payload, deadline)
        .map_err(|e| format!("send: {e}"))
}

/// Receives one message of `size` bytes where it lies, hands it to `f` and
/// returns its tag.
fn recv<R>(
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
fn echo(rx: &Rx, tx: &Tx, size: usize, deadline: Instant) -> Result<u64, String> {
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
fn frame_options(kind: Kind, size: usize) -> Options {
    let opts = Options::new().connect_timeout(Duration::from_secs(5));
    if kind == Kind::Mq {
        opts.max_frame(size)
    } else {
        opts
    }
}

/// Slots of the ring for `size`-byte messages: about 2 MiB in all, 8 to
/// 8192 slots. (16 MiB rings measured slower at 64 KiB messages, and no
/// faster elsewhere, on the 2-CPU EPYC VM this was written on: a ring that
/// stays in cache is the best path.)
fn ring_capacity(size: usize) -> usize {
    ((2usize << 20) / size).clamp(8, 8192)
}

// ---------------------------------------------------------------------
// The peer process.

/// Runs the peer side of one cell (`args`: `[kind, size]`, the addresses
/// in the environment). Called by [`crate::ipc::maybe_run_peer`].
pub fn run_peer(kind: &str, size: &str) {
    // Die with the parent, whatever kills it.
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number, nothing else.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let result = Kind::parse(kind)
        .ok_or_else(|| format!("unknown transport {kind:?}"))
        .and_then(|k| {
            let size = size.parse().map_err(|_| format!("bad size {size:?}"))?;
            peer(k, size)
        });
    if let Err(e) = result {
        eprintln!("bench peer ({kind}, {size} B): {e}");
        std::process::exit(1);
    }
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} not set"))
}

fn peer(kind: Kind, size: usize) -> Result<(), String> {
    let (rx_addr, tx_addr) = (env(PEER_RX_ENV)?, env(PEER_TX_ENV)?);
    let opts = frame_options(kind, size);
    let (rx, tx, _chans) = match kind {
        Kind::Shm => {
            let open = |addr: &str| {
                Builder::new(addr)
                    .map_err(|e| e.to_string())?
                    .open::<Bytes>()
                    .map_err(|e| format!("open {addr}: {e}"))
            };
            let (a, b) = (open(&rx_addr)?, open(&tx_addr)?);
            let rx = a.receiver().map_err(|e| e.to_string())?;
            let tx = b.sender().map_err(|e| e.to_string())?;
            println!("ready -");
            (rx, tx, Some((a, b)))
        }
        Kind::Pipe => {
            let fd = |s: &str| s.parse::<i32>().map_err(|_| format!("bad fd {s:?}"));
            let (rfd, wfd) = (fd(&rx_addr)?, fd(&tx_addr)?);
            // SAFETY: the parent passed these two descriptors to this
            // process for this purpose only; nothing else here owns them.
            let rx = unsafe { FrameReceiver::from_inherited_fd(rfd) }.map_err(|e| e.to_string())?;
            // SAFETY: as above.
            let tx = unsafe { FrameSender::from_inherited_fd(wfd) }.map_err(|e| e.to_string())?;
            println!("ready -");
            (
                Rx::from_frames(rx, Trust::validate()),
                Tx::from_frames(tx),
                None,
            )
        }
        _ => {
            if kind == Kind::Signal {
                transport::block_signal(&opts).map_err(|e| e.to_string())?;
            }
            let addr = Address::parse(&rx_addr).map_err(|e| e.to_string())?;
            let rx = FrameReceiver::bind(&addr, &opts).map_err(|e| format!("bind {addr}: {e}"))?;
            println!("ready {}", rx.local_address());
            let to = Address::parse(&tx_addr).map_err(|e| e.to_string())?;
            let tx = FrameSender::connect(&to, &opts).map_err(|e| format!("connect {to}: {e}"))?;
            (
                Rx::from_frames(rx, Trust::validate()),
                Tx::from_frames(tx),
                None,
            )
        }
    };
    // The peer waits as long as the parent wants: the parent's budget is
    // not known here, and a parent that dies disconnects (or kills) us.
    let far = || Instant::now() + Duration::from_secs(3600);
    // Round trips: echo until the end marker (echoed too).
    loop {
        if echo(&rx, &tx, size, far())? == END {
            break;
        }
    }
    // Throughput: read everything until the end marker, then acknowledge.
    let mut count = 0u64;
    let mut payload = vec![0u8; size];
    let deadline = far();
    loop {
        let (tag, _) = recv(&rx, size, deadline, consume)?;
        if tag == END {
            break;
        }
        if tag != count {
            return Err(format!("message {tag} arrived as number {count}"));
        }
        count += 1;
    }
    send(&tx, &mut payload, END, far())?;
    println!("done {count}");
    // Let the parent drop first (it drains our close), so nothing of ours
    // is left queued in it; its sender's close is our cue to leave.
    let _ = recv(&rx, size, far(), |_| ());
    Ok(())
}

// ---------------------------------------------------------------------
// The parent side.

/// A peer process: killed and reaped if still running when dropped; its
/// stderr is kept for error messages.
struct Peer {
    child: Child,
    lines: LineReader,
}

impl Peer {
    fn spawn(
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
    fn expect(&mut self, word: &str, deadline: Instant) -> Result<String, String> {
        loop {
            let line = self.lines.line(deadline)?;
            if let Some(rest) = line.strip_prefix(word) {
                return Ok(rest.trim().to_owned());
            }
        }
    }

    /// Kills the peer (if running) and returns `err` with its stderr.
    fn fail(&mut self, err: String) -> String {
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
    fn finish(mut self, deadline: Instant) -> Result<(), String> {
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
    fn new(out: ChildStdout) -> Self {
        Self {
            out,
            buf: Vec::new(),
        }
    }

    fn line(&mut self, deadline: Instant) -> Result<String, String> {
        loop {
            if let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=nl).collect();
                return Ok(String::from_utf8_lossy(&line).trim_end().to_owned());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err("timed out waiting for the bench peer".into());
            }
            let mut pfd = libc::pollfd {
                fd: self.out.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().clamp(1, 1000) as libc::c_int;
            // SAFETY: one valid pollfd, for a descriptor we own.
            let n = unsafe { libc::poll(&mut pfd, 1, ms) };
            if n <= 0 {
                continue;
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
struct TempPath(std::path::PathBuf);

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Sets up both links with a fresh peer, then measures.
fn measure_cell(kind: Kind, size: usize, budget: Duration, phase: &mut dyn FnMut(&str)) -> Outcome {
    let deadline = Instant::now() + GRACE;
    let cmd = match std::env::current_exe() {
        Ok(exe) => Command::new(exe),
        Err(e) => return Outcome::Failed(format!("own executable: {e}")),
    };
    let mut temps = Vec::new();
    let result = match kind {
        Kind::Shm => set_up_shm(size, cmd, deadline),
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

/// shm: this side creates both rings; the peer opens them.
fn set_up_shm(size: usize, cmd: Command, deadline: Instant) -> Result<Parts, String> {
    let make = |tag: &str| -> Result<(String, Channel<Bytes>), String> {
        let addr = format!("shm:{}", unique(tag));
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
    let mut peer = Peer::spawn(Kind::Shm, size, &to_peer, &from_peer, cmd)?;
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
        Kind::Tcp => ("tcp:127.0.0.1:0".to_owned(), "tcp:127.0.0.1:0".to_owned()),
        Kind::Signal => ("signal:".to_owned(), "signal:".to_owned()),
        Kind::Shm | Kind::Pipe => return Err("not a frame transport with addresses".into()),
    };
    let opts = &frame_options(kind, size);
    let addr = Address::parse(&ours).map_err(|e| e.to_string())?;
    let rx = FrameReceiver::bind(&addr, opts).map_err(|e| format!("bind {addr}: {e}"))?;
    let mut peer = Peer::spawn(kind, size, &theirs, &rx.local_address().to_string(), cmd)?;
    let peer_addr = peer.expect("ready", deadline).map_err(|e| peer.fail(e))?;
    let to = Address::parse(&peer_addr).map_err(|e| peer.fail(e.to_string()))?;
    let tx =
        FrameSender::connect(&to, opts).map_err(|e| peer.fail(format!("connect {to}: {e}")))?;
    Ok((
        peer,
        Tx::from_frames(tx),
        Rx::from_frames(rx, Trust::validate()),
        Vec::new(),
    ))
}

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
    let deadline = end + GRACE;
    let mut samples = Vec::with_capacity(1 << 16);
    let mut seq = 0u64;
    loop {
        let t = Instant::now();
        if t >= end {
            break;
        }
        send(tx, &mut payload, seq, deadline)?;
        let (tag, _) = recv(rx, size, deadline, consume)?;
        let took = t.elapsed();
        if tag != seq {
            return Err(format!("round trip {seq} came back as {tag}"));
        }
        if t >= warm {
            samples.push(took.as_nanos() as u64);
        }
        seq += 1;
    }
    // The peer echoes the end marker too.
    send(tx, &mut payload, END, deadline)?;
    let (tag, _) = recv(rx, size, deadline, |_| ())?;
    if tag != END {
        return Err(format!("expected the end marker back, got {tag}"));
    }
    if samples.is_empty() {
        return Err("no round trip finished within the budget".into());
    }
    let n = samples.len() as u64;
    let rtt = percentiles(samples);

    phase("throughput");
    // Look at the clock every `every` messages: often enough to keep to
    // the budget, rarely enough to cost nothing next to a small message.
    let every = if size <= 64 { 64 } else { 1 };
    let start = Instant::now();
    let end = start + budget;
    let deadline = end + GRACE;
    let mut sent = 0u64;
    while Instant::now() < end {
        for _ in 0..every {
            send(tx, &mut payload, sent, deadline)?;
            sent += 1;
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size("8"), Some(8));
        assert_eq!(parse_size("4K"), Some(4096));
        assert_eq!(parse_size("4kib"), Some(4096));
        assert_eq!(parse_size("1M"), Some(1 << 20));
        assert_eq!(parse_size("64B"), Some(64));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(human_size(4096), "4 KiB");
        assert_eq!(human_size(1 << 20), "1 MiB");
        assert_eq!(human_size(8), "8 B");
    }

    #[test]
    fn json_escapes() {
        assert_eq!(json_string("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u0001\"");
    }

    #[test]
    fn limits() {
        assert!(Kind::Signal.cannot_carry(4096).is_none());
        assert!(Kind::Signal.cannot_carry(8192).is_some());
        assert!(Kind::Pipe.cannot_carry(1 << 20).is_none());
        assert!(Kind::Shm.cannot_carry(1 << 20).is_none());
    }

    #[test]
    fn budget_shares_the_duration() {
        let s = Settings {
            kinds: vec![Kind::Pipe, Kind::Signal],
            sizes: vec![8, 1 << 20],
            duration: Duration::from_secs(6),
            runs: 1,
        };
        // 3 cells (signal cannot carry 1 MiB), 2 phases each.
        let b = s.phase_budget().as_secs_f64();
        assert!((b - 6.0 * 0.85 / 6.0).abs() < 1e-9, "{b}");
    }
}
