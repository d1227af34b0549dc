//! The measurements behind `shmlane bench` and the criterion bench (`benches/criterion`).
//!
//! In-process throughput: `producers` threads send `messages` u64s in total
//! through a bounded channel of `capacity`, `consumers` threads receive them
//! until the channel disconnects. The same code runs over shmlane and over
//! crossbeam-channel (the baseline), interleaved in one run.

pub mod codec;
pub mod ipc;
pub mod peers;
pub mod plot;
pub mod shapes;
pub mod transports;

use std::thread;
use std::time::{Duration, Instant};

/// Which channel implementation a measurement used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impl {
    /// `shmlane::bounded`.
    Shmlane,
    /// `crossbeam_channel::bounded`, the baseline.
    Crossbeam,
}

/// Both implementations, in the order of every per-implementation array.
pub(crate) const IMPLS: [Impl; 2] = [Impl::Shmlane, Impl::Crossbeam];

impl Impl {
    /// The name printed in tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Shmlane => "shmlane",
            Self::Crossbeam => "crossbeam",
        }
    }
}

/// One throughput configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Sending threads.
    pub producers: usize,
    /// Receiving threads.
    pub consumers: usize,
    /// Messages sent in total.
    pub messages: u64,
    /// Channel capacity.
    pub capacity: usize,
}

macro_rules! throughput_fn {
    ($name:ident, $krate:ident) => {
        fn $name(cfg: Config) -> Duration {
            let (tx, rx) = $krate::bounded::<u64>(cfg.capacity);
            let per = cfg.messages / cfg.producers as u64;
            let extra = cfg.messages % cfg.producers as u64;
            let start = Instant::now();
            let sum = thread::scope(|s| {
                for p in 0..cfg.producers {
                    let tx = tx.clone();
                    let n = per + u64::from((p as u64) < extra);
                    s.spawn(move || {
                        for i in 0..n {
                            tx.send(i).unwrap();
                        }
                    });
                }
                drop(tx);
                let consumers: Vec<_> = (0..cfg.consumers)
                    .map(|_| {
                        let rx = rx.clone();
                        s.spawn(move || rx.iter().fold(0u64, |a, v| a.wrapping_add(v)))
                    })
                    .collect();
                consumers
                    .into_iter()
                    .map(|c| c.join().unwrap())
                    .fold(0u64, u64::wrapping_add)
            });
            let elapsed = start.elapsed();
            std::hint::black_box(sum);
            elapsed
        }
    };
}

throughput_fn!(run_shmlane, shmlane);
throughput_fn!(run_crossbeam, crossbeam_channel);

/// Runs one configuration once and returns the wall time.
pub fn run(which: Impl, cfg: Config) -> Duration {
    match which {
        Impl::Shmlane => run_shmlane(cfg),
        Impl::Crossbeam => run_crossbeam(cfg),
    }
}

/// A round of a bench row (one run of each variant) with the floor probes
/// taken around its runs: the VM's two CPUs are SMT siblings or not, and
/// every cross-CPU time depends on which, so rounds are compared only with
/// rounds made on the same placement.
pub(crate) struct Placed<R> {
    /// The median of the round's probes, ns.
    pub(crate) floor: f64,
    /// Whether every probe of the round told the same placement.
    pub(crate) steady: bool,
    /// What the round measured.
    pub(crate) round: R,
}

impl<R> Placed<R> {
    /// A round measured between `probes` (floors, ns, at least one).
    pub(crate) fn new(probes: Vec<f64>, round: R) -> Self {
        let steady = same_placement(
            probes.iter().copied().fold(f64::MAX, f64::min),
            probes.iter().copied().fold(0.0, f64::max),
        );
        Self {
            floor: ipc::median_f64(probes),
            steady,
            round,
        }
    }
}

/// Whether two floors tell the same placement: neither is more than half
/// again the other.
pub(crate) fn same_placement(a: f64, b: f64) -> bool {
    a.max(b) <= 1.5 * a.min(b)
}

/// Whether a steady round belongs to the near group: within half again
/// the lowest floor of the steady rounds (`lowest`).
fn is_near<R>(r: &Placed<R>, lowest: f64) -> bool {
    same_placement(r.floor, lowest)
}

/// The lowest floor of the steady rounds.
fn lowest_steady<R>(rounds: &[Placed<R>]) -> f64 {
    rounds
        .iter()
        .filter(|r| r.steady)
        .map(|r| r.floor)
        .fold(f64::MAX, f64::min)
}

/// Whether a row needs another round: the larger group of steady rounds of
/// one placement (what [`one_placement`] keeps) has fewer than `runs`, and
/// fewer than `3 * runs` rounds were made.
pub(crate) fn more_rounds<R>(rounds: &[Placed<R>], runs: usize) -> bool {
    let lowest = lowest_steady(rounds);
    let steady = rounds.iter().filter(|r| r.steady);
    let near = steady.clone().filter(|r| is_near(r, lowest)).count();
    let far = steady.count() - near;
    near.max(far) < runs && rounds.len() < 3 * runs
}

/// The rounds a row compares: the steady ones of the placement most of them
/// had (within half again the lowest floor, or the others); every round,
/// and `true` (mixed), when none was steady.
pub(crate) fn one_placement<R>(mut rounds: Vec<Placed<R>>) -> (Vec<Placed<R>>, bool) {
    if !rounds.iter().any(|r| r.steady) {
        return (rounds, true);
    }
    rounds.retain(|r| r.steady);
    let lowest = lowest_steady(&rounds);
    let (near, far): (Vec<_>, Vec<_>) = rounds.into_iter().partition(|r| is_near(r, lowest));
    (if far.len() > near.len() { far } else { near }, false)
}

/// "kept/made", with ` *` when the rounds kept are of mixed placements.
pub(crate) fn kept_text(kept: usize, made: usize, mixed: bool) -> String {
    format!("{kept}/{made}{}", if mixed { " *" } else { "" })
}

/// The footnote of a table with mixed rows (`*`).
pub(crate) const MIXED_NOTE: &str =
    "* no round kept one placement: mixed placements, rerun the row\n";

/// Runs `variants` variants in rounds, each variant once per round in an
/// order that rotates from round to round, with a floor `probe` (ns)
/// before the round and after each variant, until [`more_rounds`] says
/// enough; `run(i, round)` runs variant `i` in round `round` (from 0).
/// Returns the rounds [`one_placement`] keeps (each with a result per
/// variant, in variant order), the number made, and whether they are
/// mixed.
pub(crate) fn rotated_rounds<T>(
    variants: usize,
    runs: usize,
    probe: impl Fn() -> f64,
    mut run: impl FnMut(usize, usize) -> T,
) -> (Vec<Placed<Vec<T>>>, usize, bool) {
    let mut rounds: Vec<Placed<Vec<T>>> = Vec::new();
    while more_rounds(&rounds, runs.max(1)) {
        let r = rounds.len();
        let mut probes = vec![probe()];
        let mut got: Vec<Option<T>> = (0..variants).map(|_| None).collect();
        for k in 0..variants {
            let i = (k + r) % variants;
            got[i] = Some(run(i, r));
            probes.push(probe());
        }
        rounds.push(Placed::new(
            probes,
            got.into_iter()
                .map(|t| t.expect("every variant ran"))
                .collect(),
        ));
    }
    let made = rounds.len();
    let (kept, mixed) = one_placement(rounds);
    (kept, made, mixed)
}

/// The median of some durations.
///
/// # Panics
///
/// If `samples` is empty.
pub fn median(samples: &mut [Duration]) -> Duration {
    assert!(!samples.is_empty(), "median of no samples");
    samples.sort_unstable();
    let mid = samples.len() / 2;
    if samples.len() % 2 == 1 {
        samples[mid]
    } else {
        (samples[mid - 1] + samples[mid]) / 2
    }
}

/// One row of the comparison table.
#[derive(Debug, Clone)]
pub struct Row {
    /// The configuration measured.
    pub config: Config,
    /// Median messages per second through shmlane.
    pub shmlane: f64,
    /// Median messages per second through crossbeam-channel.
    pub crossbeam: f64,
    /// The floor probes' median over the rounds kept, ns.
    pub floor_ns: f64,
    /// Rounds kept (of one placement).
    pub kept: usize,
    /// Rounds made.
    pub made: usize,
    /// Whether no round kept one placement (all are kept then).
    pub mixed: bool,
}

impl Row {
    /// shmlane's throughput over crossbeam's.
    pub fn ratio(&self) -> f64 {
        self.shmlane / self.crossbeam
    }
}

/// Measures every configuration: after one warm-up run of each
/// implementation, rounds of one run each (the order alternating), with a
/// floor probe ([`shapes::floor_probe`]) before, between and after, until
/// `runs` rounds kept one CPU placement (at most `3 * runs`; see
/// `one_placement`). `progress` is called after every run of the first
/// `runs` rounds.
pub fn compare(configs: &[Config], runs: usize, mut progress: impl FnMut()) -> Vec<Row> {
    let runs = runs.max(1);
    configs
        .iter()
        .map(|&config| {
            run(Impl::Shmlane, config);
            run(Impl::Crossbeam, config);
            let probe = || shapes::floor_probe().as_nanos() as f64;
            let (rounds, made, mixed) = rotated_rounds(2, runs, probe, |i, round| {
                let took = run(IMPLS[i], config);
                if round < runs {
                    progress();
                }
                took
            });
            let rate = |i: usize| {
                let mut d: Vec<Duration> = rounds.iter().map(|r| r.round[i]).collect();
                config.messages as f64 / median(&mut d).as_secs_f64()
            };
            Row {
                config,
                shmlane: rate(0),
                crossbeam: rate(1),
                floor_ns: ipc::median_f64(rounds.iter().map(|r| r.floor).collect()),
                kept: rounds.len(),
                made,
                mixed,
            }
        })
        .collect()
}

/// The configurations of the in-process comparison: 1/1, 2/2 and 4/4
/// threads, one million u64 messages, capacity 1024.
pub fn default_configs() -> Vec<Config> {
    [1, 2, 4]
        .into_iter()
        .map(|n| Config {
            producers: n,
            consumers: n,
            messages: 1_000_000,
            capacity: 1024,
        })
        .collect()
}

/// Formats the comparison as a table.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "threads (p/c)   shmlane Mmsg/s   crossbeam Mmsg/s   shmlane/crossbeam   floor ns   rounds kept/made\n",
    );
    for r in rows {
        out.push_str(&format!(
            "{:>5}/{:<9} {:>14.2} {:>18.2} {:>18.2}x {:>10.0} {:>12}\n",
            r.config.producers,
            r.config.consumers,
            r.shmlane / 1e6,
            r.crossbeam / 1e6,
            r.ratio(),
            r.floor_ns,
            kept_text(r.kept, r.made, r.mixed)
        ));
    }
    if rows.iter().any(|r| r.mixed) {
        out.push_str(MIXED_NOTE);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_compares_only_steady_rounds_of_the_commoner_placement() {
        let near = |f: f64, tag: u32| Placed::new(vec![f, f * 1.1, f], tag);
        let moved = Placed::new(vec![60.0, 330.0, 60.0], 9);
        let rounds = vec![
            near(60.0, 1),
            moved,
            near(330.0, 2),
            near(320.0, 3),
            near(65.0, 4),
            near(340.0, 5),
        ];
        assert!(more_rounds(&rounds[..2], 3));
        // Four steady rounds, but two of each placement: not enough.
        assert!(more_rounds(&rounds[..5], 3));
        assert!(!more_rounds(&rounds, 3));
        let (kept, mixed) = one_placement(rounds);
        assert!(!mixed);
        let tags: Vec<u32> = kept.iter().map(|r| r.round).collect();
        assert_eq!(tags, [2, 3, 5]);
        // No steady round: all are kept, and the row says so.
        let (kept, mixed) = one_placement(vec![Placed::new(vec![60.0, 330.0], 1)]);
        assert!(mixed && kept.len() == 1);
    }

    #[test]
    fn median_of_odd_and_even() {
        let ms = Duration::from_millis;
        assert_eq!(median(&mut [ms(3), ms(1), ms(2)]), ms(2));
        assert_eq!(
            median(&mut [ms(4), ms(1), ms(2), ms(3)]),
            Duration::from_micros(2500)
        );
    }

    #[test]
    fn both_implementations_deliver_everything() {
        let cfg = Config {
            producers: 3,
            consumers: 2,
            messages: 10_001,
            capacity: 7,
        };
        for which in [Impl::Shmlane, Impl::Crossbeam] {
            assert!(run(which, cfg) > Duration::ZERO);
        }
        let rows = compare(&[cfg], 1, || {});
        assert!(rows[0].shmlane > 0.0 && rows[0].crossbeam > 0.0);
        assert!(table(&rows).contains("3/2"));
    }
}
