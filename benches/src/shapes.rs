//! crossbeam-channel's own benchmark shapes (its repository's
//! `crossbeam-channel/benchmarks/crossbeam-channel.rs`), rewritten here
//! and run over both crates alternately: four channel flavors (`bounded0`
//! = `bounded(0)`, `bounded1` = `bounded(1)`, `bounded` = `bounded(N)`
//! for N messages, `unbounded`) times the shapes `seq` (one thread sends
//! everything, then receives it), `spsc`, `mpsc`, `mpmc` (4 threads on a
//! side that has several), `select_rx` (4 senders on 4 channels, one
//! receiver selecting over all of them) and `select_both` (4 threads
//! selecting a send over 4 channels, 4 selecting a receive). The message
//! is one `usize`, as in crossbeam's program.

use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::{median, rotated_rounds, Impl};

/// Threads on a side that has several.
pub const THREADS: usize = 4;

/// A channel flavor of crossbeam's benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `bounded(0)`.
    Bounded0,
    /// `bounded(1)`.
    Bounded1,
    /// `bounded(messages)`.
    Bounded,
    /// `unbounded()`.
    Unbounded,
}

/// A shape of crossbeam's benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One thread sends every message, then receives them.
    Seq,
    /// One sender thread, one receiver.
    Spsc,
    /// [`THREADS`] senders, one receiver.
    Mpsc,
    /// [`THREADS`] senders, [`THREADS`] receivers.
    Mpmc,
    /// [`THREADS`] channels with a sender each; one receiver selects.
    SelectRx,
    /// [`THREADS`] channels; [`THREADS`] threads select sends,
    /// [`THREADS`] select receives.
    SelectBoth,
}

impl Flavor {
    fn name(self) -> &'static str {
        match self {
            Self::Bounded0 => "bounded0",
            Self::Bounded1 => "bounded1",
            Self::Bounded => "bounded",
            Self::Unbounded => "unbounded",
        }
    }
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Self::Seq => "seq",
            Self::Spsc => "spsc",
            Self::Mpsc => "mpsc",
            Self::Mpmc => "mpmc",
            Self::SelectRx => "select_rx",
            Self::SelectBoth => "select_both",
        }
    }
}

/// The rows of crossbeam's program: every flavor and shape, but `seq` on
/// `bounded0` and `bounded1` (one thread cannot send more than the
/// capacity before it receives).
pub fn rows() -> Vec<(Flavor, Shape)> {
    let mut out = Vec::new();
    for flavor in [
        Flavor::Bounded0,
        Flavor::Bounded1,
        Flavor::Bounded,
        Flavor::Unbounded,
    ] {
        for shape in [
            Shape::Seq,
            Shape::Spsc,
            Shape::Mpsc,
            Shape::Mpmc,
            Shape::SelectRx,
            Shape::SelectBoth,
        ] {
            if shape == Shape::Seq && matches!(flavor, Flavor::Bounded0 | Flavor::Bounded1) {
                continue;
            }
            out.push((flavor, shape));
        }
    }
    out
}

macro_rules! shapes_for {
    ($module:ident, $krate:ident) => {
        mod $module {
            use super::*;
            use $krate::{bounded, unbounded, Receiver, Select, Sender};

            fn new(flavor: Flavor, messages: usize) -> (Sender<usize>, Receiver<usize>) {
                match flavor {
                    Flavor::Bounded0 => bounded(0),
                    Flavor::Bounded1 => bounded(1),
                    Flavor::Bounded => bounded(messages),
                    Flavor::Unbounded => unbounded(),
                }
            }

            pub(super) fn run(flavor: Flavor, shape: Shape, messages: usize) -> Duration {
                let start = Instant::now();
                match shape {
                    Shape::Seq => {
                        let (tx, rx) = new(flavor, messages);
                        for i in 0..messages {
                            tx.send(i).unwrap();
                        }
                        for _ in 0..messages {
                            rx.recv().unwrap();
                        }
                    }
                    Shape::Spsc => {
                        let (tx, rx) = new(flavor, messages);
                        thread::scope(|s| {
                            s.spawn(|| {
                                for i in 0..messages {
                                    tx.send(i).unwrap();
                                }
                            });
                            for _ in 0..messages {
                                rx.recv().unwrap();
                            }
                        });
                    }
                    Shape::Mpsc => {
                        let (tx, rx) = new(flavor, messages);
                        thread::scope(|s| {
                            for _ in 0..THREADS {
                                s.spawn(|| {
                                    for i in 0..messages / THREADS {
                                        tx.send(i).unwrap();
                                    }
                                });
                            }
                            for _ in 0..messages / THREADS * THREADS {
                                rx.recv().unwrap();
                            }
                        });
                    }
                    Shape::Mpmc => {
                        let (tx, rx) = new(flavor, messages);
                        thread::scope(|s| {
                            for _ in 0..THREADS {
                                s.spawn(|| {
                                    for i in 0..messages / THREADS {
                                        tx.send(i).unwrap();
                                    }
                                });
                                s.spawn(|| {
                                    for _ in 0..messages / THREADS {
                                        rx.recv().unwrap();
                                    }
                                });
                            }
                        });
                    }
                    Shape::SelectRx => {
                        let chans: Vec<_> = (0..THREADS).map(|_| new(flavor, messages)).collect();
                        thread::scope(|s| {
                            for (tx, _) in &chans {
                                s.spawn(move || {
                                    for i in 0..messages / THREADS {
                                        tx.send(i).unwrap();
                                    }
                                });
                            }
                            for _ in 0..messages / THREADS * THREADS {
                                let mut sel = Select::new();
                                for (_, rx) in &chans {
                                    sel.recv(rx);
                                }
                                let oper = sel.select();
                                let i = oper.index();
                                oper.recv(&chans[i].1).unwrap();
                            }
                        });
                    }
                    Shape::SelectBoth => {
                        let chans: Vec<_> = (0..THREADS).map(|_| new(flavor, messages)).collect();
                        let chans = &chans;
                        thread::scope(|s| {
                            for _ in 0..THREADS {
                                s.spawn(move || {
                                    for m in 0..messages / THREADS {
                                        let mut sel = Select::new();
                                        for (tx, _) in chans {
                                            sel.send(tx);
                                        }
                                        let oper = sel.select();
                                        let i = oper.index();
                                        oper.send(&chans[i].0, m).unwrap();
                                    }
                                });
                                s.spawn(move || {
                                    for _ in 0..messages / THREADS {
                                        let mut sel = Select::new();
                                        for (_, rx) in chans {
                                            sel.recv(rx);
                                        }
                                        let oper = sel.select();
                                        let i = oper.index();
                                        oper.recv(&chans[i].1).unwrap();
                                    }
                                });
                            }
                        });
                    }
                }
                start.elapsed()
            }
        }
    };
}

shapes_for!(on_shmlane, shmlane);
shapes_for!(on_crossbeam, crossbeam_channel);

/// Runs one row once over one crate and returns the wall time.
pub fn run(which: Impl, flavor: Flavor, shape: Shape, messages: usize) -> Duration {
    match which {
        Impl::Shmlane => on_shmlane::run(flavor, shape, messages),
        Impl::Crossbeam => on_crossbeam::run(flavor, shape, messages),
    }
}

/// One row of the comparison.
#[derive(Debug, Clone)]
pub struct ShapeRow {
    /// The flavor.
    pub flavor: Flavor,
    /// The shape.
    pub shape: Shape,
    /// Median wall time over shmlane, in the rounds kept.
    pub shmlane: Duration,
    /// Median wall time over crossbeam-channel, in the rounds kept.
    pub crossbeam: Duration,
    /// The hardware floor (see [`floor_probe`]) of the rounds kept: the
    /// median of their probes.
    pub floor: Duration,
    /// Rounds (one run of each crate) kept: made on one placement, the
    /// same for every round kept.
    pub kept: usize,
    /// Rounds made.
    pub made: usize,
    /// Whether no round had one placement from start to end, so that the
    /// rounds kept are all of them, on mixed placements.
    pub mixed: bool,
}

impl ShapeRow {
    /// shmlane's speed as a multiple of crossbeam's (crossbeam's time over
    /// shmlane's: above 1, shmlane is faster).
    pub fn ratio(&self) -> f64 {
        self.crossbeam.as_secs_f64() / self.shmlane.as_secs_f64()
    }
}

/// Round trips of one cache line between a thread on CPU 0 and one on
/// CPU 1: the median over 50 batches of 200 of the time per round trip.
/// It tells the placement of the machine's first two CPUs now (on this
/// kind of VM ~80-150 ns for SMT siblings, ~340-560 ns otherwise), which
/// every cross-thread row depends on. Unpinned where pinning fails.
pub fn floor_probe() -> Duration {
    const BATCHES: usize = 50;
    const BATCH: u64 = 200;
    /// The probed word, alone on its cache lines.
    #[repr(align(128))]
    struct Line(AtomicU64);
    let line = Line(AtomicU64::new(0));
    let line = &line.0;
    let wait_for = |value: u64| {
        let mut spins = 0u32;
        // Acquire: pairs with the other thread's Release store.
        while line.load(Ordering::Acquire) != value {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            // A descheduled partner would otherwise be starved on a
            // shared core.
            if spins % (1 << 14) == 0 {
                thread::yield_now();
            }
        }
    };
    let total = BATCHES as u64 * BATCH;
    let mut per_trip = thread::scope(|s| {
        s.spawn(|| {
            crate::ipc::pin_to_cpu(1);
            for i in 0..total {
                wait_for(2 * i + 1);
                // Release: pairs with `wait_for`.
                line.store(2 * i + 2, Ordering::Release);
            }
        });
        crate::ipc::pin_to_cpu(0);
        let mut per_trip = Vec::with_capacity(BATCHES);
        for b in 0..BATCHES as u64 {
            let t = Instant::now();
            for i in b * BATCH..(b + 1) * BATCH {
                // Release: pairs with `wait_for`.
                line.store(2 * i + 1, Ordering::Release);
                wait_for(2 * i + 2);
            }
            per_trip.push(t.elapsed() / BATCH as u32);
        }
        crate::ipc::unpin();
        per_trip
    });
    median(&mut per_trip)
}

/// Runs every row over both crates in rounds (one run of each, which goes
/// first alternating) with a floor probe before, between and after the
/// two runs. A round whose probes disagree (the CPUs changed placement
/// during it) is dropped and made again, up to `3 * runs` rounds in all;
/// of the rounds left, the row keeps those of the placement most of them
/// had, and compares the medians of those: ratios only between runs made
/// on the same hardware.
pub fn compare(
    rows: &[(Flavor, Shape)],
    messages: usize,
    runs: usize,
    mut progress: impl FnMut(),
) -> Vec<ShapeRow> {
    let runs = runs.max(1);
    // A process's first large allocation and first threads cost more than
    // later ones (fresh pages, the allocator's thresholds): warm both crates
    // up on the array and list channels at this size, untimed, so that the
    // first row measured is not charged for it (the crate that runs first
    // in a round would pay).
    if !rows.is_empty() {
        for which in [Impl::Shmlane, Impl::Crossbeam] {
            for flavor in [Flavor::Bounded, Flavor::Unbounded] {
                for shape in [Shape::Seq, Shape::Spsc] {
                    run(which, flavor, shape, messages);
                }
            }
        }
    }
    rows.iter()
        .map(|&(flavor, shape)| {
            let probe = || floor_probe().as_nanos() as f64;
            let (rounds, made, mixed) = rotated_rounds(2, runs, probe, |i, round| {
                let took = run(crate::IMPLS[i], flavor, shape, messages);
                if round < runs {
                    progress();
                }
                took
            });
            let pick =
                |i: usize| median(&mut rounds.iter().map(|r| r.round[i]).collect::<Vec<_>>());
            ShapeRow {
                flavor,
                shape,
                shmlane: pick(0),
                crossbeam: pick(1),
                floor: Duration::from_nanos(crate::ipc::median_f64(
                    rounds.iter().map(|r| r.floor).collect(),
                ) as u64),
                kept: rounds.len(),
                made,
                mixed,
            }
        })
        .collect()
}

/// Formats the comparison as a table: each row says its floor and how
/// many rounds it kept of those it made; a row whose every round changed
/// placement is marked `*` (compare it only with a rerun).
pub fn table(rows: &[ShapeRow]) -> String {
    let mut out = String::from(
        "crossbeam's shapes          shmlane ms   crossbeam ms   shmlane speed / crossbeam   floor ns   rounds kept/made\n",
    );
    for r in rows {
        let name = format!("{}_{}", r.flavor.name(), r.shape.name());
        out.push_str(&format!(
            "{:<24} {:>13.1} {:>14.1} {:>26.2}x {:>10} {:>11}/{:<3}{}\n",
            name,
            r.shmlane.as_secs_f64() * 1e3,
            r.crossbeam.as_secs_f64() * 1e3,
            r.ratio(),
            r.floor.as_nanos(),
            r.kept,
            r.made,
            if r.mixed { " *" } else { "" },
        ));
    }
    out.push_str(
        "rounds (a run of each crate, floor probes before, between and after) in which the floor \
         moved by more than half (the CPUs changed placement) are dropped and made again; a row \
         compares only rounds of one placement\n",
    );
    if rows.iter().any(|r| r.mixed) {
        out.push_str(crate::MIXED_NOTE);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_runs_on_both_crates() {
        let rows = compare(&rows(), 4_000, 1, || {});
        assert_eq!(rows.len(), 22);
        assert!(rows.iter().all(|r| r.ratio() > 0.0));
        assert!(table(&rows).contains("bounded0_select_both"));
    }
}
