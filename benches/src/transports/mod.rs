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
//!
//! One concern a file: `units` (sizes, times, rates as people read
//! them), `report` (the table and the JSON), `cell` (one transport at
//! one size: the links, the peer's handle, the phases) and `peer` (the
//! peer process).

use std::time::{Duration, Instant};

use shmlane::transport::{self, Options};

use crate::ipc::{floor, median_f64 as median, pin_to_cpu, unpin, Latency};
use crate::{one_placement, Placed};
use cell::measure_cell;
use units::mq_msgsize_max;

mod cell;
mod peer;
mod report;
mod units;

pub use peer::run_peer;
pub use report::{json, ratios, sort_rows, table};
pub use units::{human_ns, human_rate, human_size, parse_size};

/// The peer's receive address (environment variable of the peer).
pub(super) const PEER_RX_ENV: &str = "SHMLANE_BENCH_PEER_RX";
/// Where the peer sends (this process's receive address).
pub(super) const PEER_TX_ENV: &str = "SHMLANE_BENCH_PEER_TX";
/// The sequence number that ends a phase.
pub(super) const END: u64 = u64::MAX;
/// How long past a phase's budget a blocked operation may wait before the
/// cell is reported as failed.
pub(super) const GRACE: Duration = Duration::from_secs(10);
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
    /// The shared-memory SPSC ring in a System V segment (`sysv:KEY`).
    Sysv,
    /// A System V message queue (`sysvmq:KEY`).
    SysvMq,
    /// Zenoh pub/sub on loopback (`zenoh:KEY`; the `zenoh` feature).
    #[cfg(feature = "zenoh")]
    Zenoh,
    /// TCP on 127.0.0.1 (`tcp:127.0.0.1:PORT`).
    Tcp,
    /// Queued real-time signals (`signal:PID`).
    Signal,
}

impl Kind {
    /// Every transport, in the default order.
    pub const ALL: &'static [Kind] = &[
        Kind::Shm,
        Kind::Sysv,
        Kind::Pipe,
        Kind::Fifo,
        Kind::Unix,
        Kind::Mq,
        Kind::SysvMq,
        Kind::Tcp,
        Kind::Signal,
        #[cfg(feature = "zenoh")]
        Kind::Zenoh,
    ];

    /// The name used on the command line, in tables and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Shm => "shm",
            Kind::Pipe => "pipe",
            Kind::Fifo => "fifo",
            Kind::Unix => "unix",
            Kind::Mq => "mq",
            Kind::Sysv => "sysv",
            Kind::SysvMq => "sysvmq",
            #[cfg(feature = "zenoh")]
            Kind::Zenoh => "zenoh",
            Kind::Tcp => "tcp",
            Kind::Signal => "signal",
        }
    }

    /// The transport called `name`.
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.name() == name)
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
            Kind::SysvMq => {
                let max = shmlane_sys::sysv::limit("msgmax").map_or(8192, |v| v as usize);
                (size > max)
                    .then(|| format!("above System V msgmax ({}; kernel.msgmax)", human_size(max)))
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
    /// The CPU placement the figures were measured on (`None` when the
    /// processes were not pinned, or nothing was measured).
    pub placement: Option<Placement>,
}

/// Where a row's runs ran: each run of a cell is bracketed by cache-line
/// ping-pong probes (the floor; ~65-150 ns when the two vCPUs are SMT
/// siblings, 300-560 ns when not, on the project's VM), and a row keeps
/// the runs whose probes agreed, of the placement most of them had.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    /// The median floor of the runs kept, ns.
    pub floor_ns: f64,
    /// Runs kept.
    pub kept: usize,
    /// Runs made.
    pub made: usize,
    /// Whether no run kept one placement from start to end (every run is
    /// kept then, on mixed placements).
    pub mixed: bool,
}

impl Placement {
    /// Whether two rows' figures were measured on the same placement, so
    /// that a ratio between them means something.
    pub fn same_as(&self, other: &Placement) -> bool {
        !self.mixed && !other.mixed && crate::same_placement(self.floor_ns, other.floor_ns)
    }
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
    // The floor, probed between cells (each cell's run is bracketed by
    // the probe before it and the one after); not probed unpinned.
    let probe = || if pinned { floor(2_000).p50 } else { f64::NAN };
    let mut last_probe = probe();
    let start = Instant::now();
    let mut done = 0;
    // Per cell: the outcomes of each run, with the probes around it.
    let mut results: Vec<Vec<Placed<Outcome>>> = Vec::new();
    results.resize_with(cells.len(), Vec::new);
    for run in 0..runs {
        for (i, &(kind, size)) in cells.iter().enumerate() {
            if let Some(why) = kind.cannot_carry(size) {
                results[i].push(Placed::new(vec![last_probe], Outcome::NotApplicable(why)));
                continue;
            }
            // Once a cell failed, later runs skip it.
            if matches!(
                results[i].last().map(|p| &p.round),
                Some(Outcome::Failed(_))
            ) {
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
            let after = probe();
            results[i].push(Placed::new(vec![last_probe, after], outcome));
            last_probe = after;
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
        .map(|((kind, size), runs)| {
            let (outcome, placement) = placed_outcome(runs, pinned);
            Row {
                kind,
                size,
                outcome,
                placement,
            }
        })
        .collect()
}

/// A cell's outcome over its runs: the medians of the runs of one
/// placement (see [`Placement`]) when every run measured, else the first
/// run that did not (not applicable, or failed: a failure shows whatever
/// placement it happened on).
fn placed_outcome(runs: Vec<Placed<Outcome>>, pinned: bool) -> (Outcome, Option<Placement>) {
    let all_measured = runs.iter().all(|r| matches!(r.round, Outcome::Measured(_)));
    if !all_measured || !pinned {
        return (
            median_outcome(runs.into_iter().map(|r| r.round).collect()),
            None,
        );
    }
    let made = runs.len();
    let (kept, mixed) = one_placement(runs);
    let placement = Placement {
        floor_ns: median(kept.iter().map(|r| r.floor).collect()),
        kept: kept.len(),
        made,
        mixed,
    };
    (
        median_outcome(kept.into_iter().map(|r| r.round).collect()),
        Some(placement),
    )
}

pub(super) fn median_outcome(outcomes: Vec<Outcome>) -> Outcome {
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
