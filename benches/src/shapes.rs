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

use crate::{median, Impl};

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
    /// Median wall time over shmlane.
    pub shmlane: Duration,
    /// Median wall time over crossbeam-channel.
    pub crossbeam: Duration,
    /// The hardware floor (see [`floor_probe`]) just before and just
    /// after the row's runs.
    pub floor: [Duration; 2],
}

impl ShapeRow {
    /// shmlane's speed as a multiple of crossbeam's (crossbeam's time over
    /// shmlane's: above 1, shmlane is faster).
    pub fn ratio(&self) -> f64 {
        self.crossbeam.as_secs_f64() / self.shmlane.as_secs_f64()
    }

    /// Whether the floor moved by more than half during the row: the
    /// VM's two CPUs changed placement (SMT siblings or not), so the
    /// row's runs were not all made on the same hardware.
    pub fn placement_moved(&self) -> bool {
        let [a, b] = self.floor.map(|d| d.as_secs_f64());
        a.max(b) > 1.5 * a.min(b)
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

/// Runs every row `runs` times per crate, alternating crates (and which
/// goes first) from run to run, and keeps the medians.
pub fn compare(
    rows: &[(Flavor, Shape)],
    messages: usize,
    runs: usize,
    mut progress: impl FnMut(),
) -> Vec<ShapeRow> {
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
            let before = floor_probe();
            let mut ours = Vec::with_capacity(runs);
            let mut theirs = Vec::with_capacity(runs);
            for r in 0..runs {
                let order = if r % 2 == 0 {
                    [Impl::Shmlane, Impl::Crossbeam]
                } else {
                    [Impl::Crossbeam, Impl::Shmlane]
                };
                for which in order {
                    let t = run(which, flavor, shape, messages);
                    match which {
                        Impl::Shmlane => ours.push(t),
                        Impl::Crossbeam => theirs.push(t),
                    }
                    progress();
                }
            }
            ShapeRow {
                flavor,
                shape,
                shmlane: median(&mut ours),
                crossbeam: median(&mut theirs),
                floor: [before, floor_probe()],
            }
        })
        .collect()
}

/// Formats the comparison as a table: a row whose floor moved during its
/// runs is marked `*` (compare it only with a rerun on one placement).
pub fn table(rows: &[ShapeRow]) -> String {
    let mut out = String::from(
        "crossbeam's shapes          shmlane ms   crossbeam ms   shmlane speed / crossbeam   floor ns before/after\n",
    );
    for r in rows {
        let name = format!("{}_{}", r.flavor.name(), r.shape.name());
        out.push_str(&format!(
            "{:<24} {:>13.1} {:>14.1} {:>26.2}x {:>11}/{:<5}{}\n",
            name,
            r.shmlane.as_secs_f64() * 1e3,
            r.crossbeam.as_secs_f64() * 1e3,
            r.ratio(),
            r.floor[0].as_nanos(),
            r.floor[1].as_nanos(),
            if r.placement_moved() { " *" } else { "" },
        ));
    }
    if rows.iter().any(ShapeRow::placement_moved) {
        out.push_str(
            "* the floor moved by more than half during the row: the CPUs changed placement\n",
        );
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
