//! `shmlane bench`: every IPC mechanism measured side by side, or one of
//! the earlier sections (`--only`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use shmlane_benches::transports::{self, Kind, Settings};
use shmlane_benches::{codec, compare, default_configs, ipc, plot, shapes, table};

use crate::output;

/// Compare every IPC mechanism between two processes pinned to different
/// CPUs.
///
/// The shared-memory ring (shm, and in a System V segment: sysv) against
/// pipe, fifo, unix socket, POSIX and System V message queues (mq,
/// sysvmq), TCP on loopback and queued real-time signals, for
/// 8 B, 64 B, 4 KiB and 1 MiB messages: round trip p50/p99/p99.9 and
/// one-way messages/s and GB/s, with each transport's ratio to shm. Takes
/// about a minute. Progress goes to stderr (a bar on a terminal only).
///
/// With --only, one of the earlier sections instead: in-process
/// (shmlane::bounded against crossbeam-channel, 1/1, 2/2, 4/4 threads,
/// then crossbeam-channel's own benchmark shapes, 22 rows of every flavor
/// and select, 200,000 messages each, alternated; --runs, --messages),
/// cross-process (SPSC ring against a bare
/// cache-line ping-pong, and its throughput; --runs, --scale), codec
/// (64 KiB and 1 MiB messages zero-copy and copied against a floor that
/// moves the same bytes between the same cores, and rkyv orders per trust
/// level; --runs, --scale) or peers (the same as --peers).
///
/// With --peers: round trips between two pinned processes for 8 B, 64 B,
/// 1 KiB and 4 KiB messages through the floor (a bare cache-line
/// ping-pong), the floor moving the payload both ways, shmlane's SPSC
/// channel (busy-poll and default wait) and, when built with
/// `--features iceoryx2`, iceoryx2 0.10's publish/subscribe configured as
/// its own benchmark configures it; each row's rounds alternate the
/// variants and keep one placement of the CPUs (--runs, --scale).
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    shmlane bench\n  \
    shmlane bench --transports shm,pipe --sizes 8,4K --duration=10\n  \
    shmlane bench --duration=1 --json | python3 -m json.tool\n  \
    shmlane bench --only cross-process\n  \
    cargo run --release -p shmlane-cli --features iceoryx2 -- bench --peers")]
pub struct Args {
    /// Comma-separated subset of shm,sysv,pipe,fifo,unix,mq,sysvmq,tcp,signal
    /// (and zenoh, when built with the `zenoh` feature)
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = parse_kind)]
    transports: Vec<Kind>,
    /// Comma-separated message sizes, 8 B to 1 MiB, with K/M suffixes
    /// (1024-based): 8,64,4K,1M
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = transports::parse_size)]
    sizes: Vec<usize>,
    /// Seconds for the whole comparison (default 60); a cell measures on
    /// past its share until it has enough round trips
    #[arg(long, value_name = "SECONDS", value_parser = parse_duration, allow_negative_numbers = true)]
    duration: Option<Duration>,
    /// Runs per cell, medians reported (default 3; in-process: 5)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    runs: Option<u64>,
    /// Print the rows as JSON to stdout instead of the table (progress
    /// stays on stderr)
    #[arg(long)]
    json: bool,
    /// Also draw the figures as a chart: PNG for a .png name, SVG otherwise
    #[arg(long, value_name = "FILE.svg|FILE.png")]
    plot: Option<PathBuf>,
    /// Which section to run
    #[arg(long, value_enum, value_name = "SECTION", default_value_t = Section::Transports)]
    only: Section,
    /// Round trips by size against the floor and iceoryx2 (--only peers)
    #[arg(long, conflicts_with = "only")]
    peers: bool,
    /// in-process: messages per run
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    messages: Option<u64>,
    /// cross-process, peers and codec: scale the work by F
    #[arg(long, value_name = "F", value_parser = parse_scale, allow_negative_numbers = true)]
    scale: Option<f64>,
}

/// Which part of `bench` runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
enum Section {
    /// Every IPC mechanism side by side (the default)
    Transports,
    /// The thread channel against crossbeam-channel
    InProcess,
    /// The SPSC ring against a bare cache-line ping-pong
    CrossProcess,
    /// Message codec figures
    Codec,
    /// Round trips by size: floor, floor with the payload, shmlane,
    /// iceoryx2 (with the `iceoryx2` feature)
    Peers,
}

impl Section {
    fn name(self) -> String {
        use clap::ValueEnum;
        self.to_possible_value()
            .map_or_else(String::new, |v| v.get_name().to_owned())
    }
}

fn parse_kind(name: &str) -> Result<Kind, String> {
    Kind::parse(name.trim()).ok_or_else(|| {
        let all: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
        format!("unknown transport `{name}` (known: {})", all.join(", "))
    })
}

fn parse_duration(v: &str) -> Result<Duration, String> {
    v.parse::<f64>()
        .ok()
        .filter(|f| *f > 0.0 && *f <= 86_400.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("`{v}` is not a positive number of seconds (at most a day)"))
}

fn parse_scale(v: &str) -> Result<f64, String> {
    v.parse::<f64>()
        .ok()
        .filter(|f| *f > 0.0 && f.is_finite())
        .ok_or_else(|| format!("`{v}` is not a positive number"))
}

/// Keeps the first of each value.
fn dedup<T: PartialEq>(v: Vec<T>) -> Vec<T> {
    let mut out = Vec::with_capacity(v.len());
    for x in v {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

impl Args {
    /// The options given that only one section takes, as (option,
    /// section).
    fn section_options(&self) -> Vec<(&'static str, Section)> {
        let t = Section::Transports;
        [
            (!self.transports.is_empty(), "--transports", t),
            (!self.sizes.is_empty(), "--sizes", t),
            (self.duration.is_some(), "--duration", t),
            (self.json, "--json", t),
            (self.plot.is_some(), "--plot", t),
            (self.messages.is_some(), "--messages", Section::InProcess),
            (
                self.scale.is_some(),
                "--scale",
                // Each section that scales its work takes it.
                match self.only {
                    Section::Peers | Section::Codec => self.only,
                    _ => Section::CrossProcess,
                },
            ),
        ]
        .into_iter()
        .filter(|(given, ..)| *given)
        .map(|(_, opt, s)| (opt, s))
        .collect()
    }
}

pub fn run(mut args: Args) -> anyhow::Result<()> {
    if args.peers {
        args.only = Section::Peers;
    }
    if let Some((opt, section)) = args
        .section_options()
        .into_iter()
        .find(|(_, s)| *s != args.only)
    {
        crate::usage_error(
            "bench",
            format!(
                "{opt} does not apply to --only {} (it is for --only {})",
                args.only.name(),
                section.name()
            ),
        );
    }
    let runs = args.runs.map(|n| n as usize);
    match args.only {
        Section::Transports => {
            let mut settings = Settings::default();
            if !args.transports.is_empty() {
                settings.kinds = dedup(args.transports);
            }
            if !args.sizes.is_empty() {
                settings.sizes = dedup(args.sizes);
            }
            if let Some(d) = args.duration {
                settings.duration = d;
            }
            settings.runs = runs.unwrap_or(settings.runs);
            bench_transports(&settings, args.json, args.plot.as_deref())
        }
        Section::InProcess => {
            let mut configs = default_configs();
            if let Some(n) = args.messages {
                configs.iter_mut().for_each(|c| c.messages = n);
            }
            let runs = runs.unwrap_or(5);
            let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
            let bar = progress_bar(
                (configs.len() * runs * 2) as u64,
                "  measuring: [{bar:30}] {pos}/{len} runs",
            );
            eprintln!(
                "in-process throughput, {} messages per run, median of {runs} runs, {cpus} CPUs",
                configs[0].messages
            );
            let rows = compare(&configs, runs, || bar.inc(1));
            bar.finish_and_clear();
            output::print(&table(&rows))?;

            // crossbeam-channel's benchmark shapes: fewer messages by
            // default, since its rendezvous and capacity-1 rows wake a
            // thread for every message.
            let messages = args.messages.map_or(200_000, |n| n as usize);
            let shape_rows = shapes::rows();
            let runs = runs.min(3);
            let bar = progress_bar(
                (shape_rows.len() * runs * 2) as u64,
                "  measuring: [{bar:30}] {pos}/{len} runs",
            );
            eprintln!(
                "\ncrossbeam-channel's benchmark shapes, {messages} messages, {} threads where \
                 several, median of {runs} alternated runs",
                shapes::THREADS
            );
            let rows = shapes::compare(&shape_rows, messages, runs, || bar.inc(1));
            bar.finish_and_clear();
            output::print(&shapes::table(&rows))
        }
        Section::CrossProcess => {
            let runs = runs.unwrap_or(3);
            eprintln!(
                "cross-process, two processes pinned to different cores, median of {runs} runs"
            );
            let bar = spinner();
            let report = ipc::measure(runs, args.scale.unwrap_or(1.0), |step| {
                bar.set_message(step.to_owned());
            });
            bar.finish_and_clear();
            output::print(&ipc::report_table(&report))
        }
        Section::Peers => {
            let runs = runs.unwrap_or(3);
            eprintln!(
                "two processes pinned to CPUs 0 and 1, round trips by size, {runs} rounds kept \
                 per row (variants alternated, one placement)"
            );
            let bar = spinner();
            let rows = shmlane_benches::peers::measure(
                &shmlane_benches::peers::SIZES,
                runs,
                (50_000.0 * args.scale.unwrap_or(1.0)).max(100.0) as u64,
                |step| bar.set_message(step.to_owned()),
            );
            bar.finish_and_clear();
            output::print(&shmlane_benches::peers::table(&rows))
        }
        Section::Codec => {
            let bar = spinner();
            let out =
                codec::measure_and_report(runs.unwrap_or(3), args.scale.unwrap_or(1.0), |step| {
                    bar.set_message(step.to_owned());
                });
            bar.finish_and_clear();
            output::print(&out)
        }
    }
}

/// A progress bar on stderr, drawn only on a terminal (indicatif hides
/// it otherwise): `[####------] done/total what ~m:ss left`.
fn progress_bar(total: u64, template: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("#>-"));
    }
    bar
}

/// A one-line status on stderr (a terminal only) for the sections that
/// report steps rather than counts.
fn spinner() -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("  {msg}") {
        bar.set_style(style);
    }
    // No steady tick: its thread would compete with the pinned
    // measurements for the CPUs; the bar redraws when a step begins.
    bar
}

fn bench_transports(
    settings: &Settings,
    json: bool,
    plot_to: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    // The signal transport's receiver must block its signal before any
    // thread exists; this process has none yet.
    if settings.kinds.contains(&Kind::Signal) {
        transports::block_signal().context("blocking the signal transport's signal")?;
    }
    let bar = progress_bar(0, "[{bar:30}] {pos:>3}/{len} {msg}");
    eprintln!(
        "shmlane bench: {} transports x {} sizes between two processes, about {:.0} s ({})",
        settings.kinds.len(),
        settings.sizes.len(),
        settings.duration.as_secs_f64(),
        plot::machine()
    );
    let started = std::time::Instant::now();
    let mut rows = transports::measure(settings, |p| {
        // The harness's own estimate of what is left (it knows each cell's
        // budget), rather than one extrapolated from the rate so far.
        let left = p.eta.as_secs();
        bar.set_length(p.total as u64);
        bar.set_position(p.done as u64);
        bar.set_message(format!(
            "{:<28} ~{}:{:02} left",
            p.what,
            left / 60,
            left % 60
        ));
    });
    bar.finish_and_clear();
    transports::sort_rows(&mut rows);
    eprintln!("measured in {:.1} s", started.elapsed().as_secs_f64());
    if json {
        output::print(&transports::json(&rows))?;
    } else {
        output::print(&format!(
            "IPC between two processes (pinned to different CPUs); round trip = one message \
             there and back;\nsorted by size, then fastest round trip first; GB = 10^9 bytes; \
             vs shm: rtt p50 over shm's, msgs/s over shm's\n\n{}",
            transports::table(&rows)
        ))?;
    }
    if let Some(path) = plot_to {
        plot::write(&rows, path).map_err(anyhow::Error::msg)?;
        eprintln!("wrote the chart to {}", path.display());
    }
    let failed: Vec<String> = rows
        .iter()
        .filter_map(|r| match &r.outcome {
            transports::Outcome::Failed(e) => Some(format!(
                "{} {}: {e}",
                r.kind.name(),
                transports::human_size(r.size)
            )),
            _ => None,
        })
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} cell(s) failed:\n  {}",
            failed.len(),
            failed.join("\n  ")
        );
    }
    Ok(())
}
