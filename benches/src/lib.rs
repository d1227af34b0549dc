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
}

impl Row {
    /// shmlane's throughput over crossbeam's.
    pub fn ratio(&self) -> f64 {
        self.shmlane / self.crossbeam
    }
}

/// Measures every configuration `runs` times per implementation, the two
/// interleaved so that machine noise hits both alike, after one warm-up run
/// each. `progress` is called after every run.
pub fn compare(configs: &[Config], runs: usize, mut progress: impl FnMut()) -> Vec<Row> {
    configs
        .iter()
        .map(|&config| {
            run(Impl::Shmlane, config);
            run(Impl::Crossbeam, config);
            let mut ours = Vec::with_capacity(runs);
            let mut theirs = Vec::with_capacity(runs);
            for _ in 0..runs {
                ours.push(run(Impl::Shmlane, config));
                progress();
                theirs.push(run(Impl::Crossbeam, config));
                progress();
            }
            let rate = |d: Duration| config.messages as f64 / d.as_secs_f64();
            Row {
                config,
                shmlane: rate(median(&mut ours)),
                crossbeam: rate(median(&mut theirs)),
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
    let mut out =
        String::from("threads (p/c)   shmlane Mmsg/s   crossbeam Mmsg/s   shmlane/crossbeam\n");
    for r in rows {
        out.push_str(&format!(
            "{:>5}/{:<9} {:>14.2} {:>18.2} {:>18.2}x\n",
            r.config.producers,
            r.config.consumers,
            r.shmlane / 1e6,
            r.crossbeam / 1e6,
            r.ratio()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
