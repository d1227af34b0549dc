//! `shmlane`: the command-line tool.
//!
//! ```text
//! shmlane bench [--transports LIST] [--sizes LIST] [--duration S] [--json] [--plot FILE]
//! shmlane bench --only in-process|cross-process|codec [--runs N] [--messages N] [--scale F]
//! shmlane send ADDR [options] < lines
//! shmlane recv ADDR [options] > lines
//! ```

mod segments;
mod sendrecv;

use std::io::Write;
use std::process::ExitCode;

use shmlane_benches::transports::{self, Kind, Settings};
use shmlane_benches::{codec, compare, default_configs, ipc, plot, table};

const USAGE: &str = "\
usage: shmlane <command> [options]

commands:
  bench     compare every IPC mechanism between two processes pinned to
            different CPUs: the shared-memory ring (shm) against pipe,
            fifo, unix socket, POSIX message queue (mq), TCP on loopback
            and queued real-time signals, for 8 B, 64 B, 4 KiB and 1 MiB
            messages: round trip p50/p99/p99.9 and one-way messages/s and
            GB/s, with each transport's ratio to shm. Takes about a minute.
              --transports LIST  comma-separated subset of
                                 shm,pipe,fifo,unix,mq,tcp,signal
              --sizes LIST       comma-separated message sizes, 8 B to 1 MiB,
                                 with K/M suffixes (1024-based): 8,64,4K,1M
              --duration S       seconds for the whole comparison (default 60)
              --runs N           runs per cell, medians reported (default 3)
              --json             print the rows as JSON to stdout instead of
                                 the table (progress stays on stderr)
              --plot FILE.svg    also draw the figures as an SVG chart
            the earlier sections, one at a time:
              --only in-process    shmlane::bounded against crossbeam-channel
                                   (1/1, 2/2, 4/4 threads; --runs, --messages N)
              --only cross-process SPSC ring against a bare cache-line
                                   ping-pong, and its throughput (--runs, --scale F)
              --only codec         message codec figures
              --only transports    the comparison above (the default)
  ls        list the shmlane segments in /dev/shm: kind, capacity, slot
            size, messages buffered, senders and receivers alive/dead,
            live or stale
  stat NAME show one segment in detail (NAME: shm:NAME, file:PATH or NAME)
  rm NAME.. remove segments; refuses any that a live process holds
  rm --stale
            remove every segment no live process holds
  send ADDR each line of stdin becomes a message to ADDR
  recv ADDR each message from ADDR becomes a line of stdout
            ADDR: shm:NAME, file:PATH, fifo:PATH, unix:PATH, mq:NAME,
            tcp:HOST:PORT, signal:PID (recv: signal:, and it prints its pid)
              --max-line BYTES  longest line, newline excluded (shm:/file:
                                default 4096; others: what the transport
                                carries: 1 MiB, mq: 8 KiB, signal: 4 KiB)
              --capacity N      messages a created shm:/file: ring holds
                                (default 4096; the segment takes about
                                capacity x max-line bytes)
              --timeout SECS    give up (exit 1) when no peer came in SECS
                                (recv on the non-shm transports: no line);
                                send: also when the last lines are not
                                taken within SECS of end of input
            Start them in either order: for shm:/file:, whichever comes first
            creates an SPSC ring and removes it when it exits, after its peer
            has it; for the others recv creates (FIFO, socket, queue) and
            removes, and send waits for it. The newline is stripped (an
            empty line is an empty message) and added back; recv flushes
            whenever it would wait. send exits 0 once the receiver has taken
            every line (shm:/file:) or the kernel holds them (others), 1 if
            the receiver left first; recv exits 0 when the sender is gone
            and all is printed, or when stdout is closed (`| head`). A
            segment no live process holds and nothing is in (a killed run's)
            is replaced. Ctrl-C removes what the command created. Exit
            status: 0 done, 1 runtime error, 2 usage error, 128+N signal N.
              seq 1 1000000 | shmlane send shm:demo
              shmlane recv shm:demo | wc -l
  help      print this text
";

fn main() -> ExitCode {
    // A bench peer process is this binary re-run: it does its part and exits.
    ipc::maybe_run_peer();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("bench") => match bench(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(BenchError::Usage(e)) => {
                eprintln!("shmlane bench: {e}\n\n{USAGE}");
                ExitCode::from(2)
            }
            Err(BenchError::Failed(e)) => {
                eprintln!("shmlane bench: {e}");
                ExitCode::FAILURE
            }
        },
        Some("help" | "--help" | "-h") | None => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some("ls") => report("ls", segments::ls()),
        Some("stat") => match args.get(1) {
            Some(target) if args.len() == 2 => report("stat", segments::stat(target)),
            _ => report("stat", Err("stat takes one segment name".into())),
        },
        Some("rm") => report("rm", segments::rm(&args[1..])),
        Some(cmd @ ("send" | "recv")) => sendrecv::main(cmd == "send", &args[1..], USAGE),
        Some(other) => {
            eprintln!("shmlane: unknown command `{other}`\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn report(cmd: &str, result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shmlane {cmd}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_count(flag: &str, value: Option<&String>) -> Result<u64, String> {
    let value = value.ok_or_else(|| format!("{flag} needs a number"))?;
    match value.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "{flag} needs a positive whole number, not `{value}`"
        )),
    }
}

/// Why `bench` stopped: a usage error (exit 2, usage printed) or a
/// failure while measuring or writing (exit 1).
enum BenchError {
    Usage(String),
    Failed(String),
}

impl From<String> for BenchError {
    fn from(e: String) -> Self {
        Self::Usage(e)
    }
}

impl From<&str> for BenchError {
    fn from(e: &str) -> Self {
        Self::Usage(e.to_owned())
    }
}

/// Which part of `bench` runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Transports,
    InProcess,
    CrossProcess,
    Codec,
}

fn parse_list<T>(
    flag: &str,
    value: Option<&String>,
    what: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, String>
where
    T: PartialEq,
{
    let value = value.ok_or_else(|| format!("{flag} needs a comma-separated list of {what}"))?;
    let mut out = Vec::new();
    for item in value.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(format!("{flag}: empty item in `{value}`"));
        }
        let v = parse(item)?;
        if !out.contains(&v) {
            out.push(v);
        }
    }
    Ok(out)
}

fn parse_kind(name: &str) -> Result<Kind, String> {
    Kind::parse(name).ok_or_else(|| {
        let all: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
        format!(
            "--transports: unknown transport `{name}` (known: {})",
            all.join(", ")
        )
    })
}

fn parse_size(s: &str) -> Result<usize, String> {
    match transports::parse_size(s) {
        Some(n) if (transports::MIN_SIZE..=transports::MAX_SIZE).contains(&n) => Ok(n),
        Some(n) => Err(format!(
            "--sizes: {n} bytes is out of range: sizes go from {} B (a message carries an \
             8-byte sequence number) to {}",
            transports::MIN_SIZE,
            transports::human_size(transports::MAX_SIZE)
        )),
        None => Err(format!(
            "--sizes: `{s}` is not a size (write e.g. 8, 64, 4K, 1M)"
        )),
    }
}

fn bench(args: &[String]) -> Result<(), BenchError> {
    let mut runs = None;
    let mut scale = 1.0;
    let mut section = Section::Transports;
    let mut configs = default_configs();
    let mut settings = Settings::default();
    let mut json = false;
    let mut plot_to: Option<String> = None;
    // Options of one section that were given, to refuse them with another.
    let (mut transport_opts, mut in_opts, mut cross_opts) = (Vec::new(), Vec::new(), Vec::new());
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--runs" => runs = Some(parse_count("--runs", it.next())? as usize),
            "--messages" => {
                let n = parse_count("--messages", it.next())?;
                configs.iter_mut().for_each(|c| c.messages = n);
                in_opts.push("--messages");
            }
            "--scale" => {
                let v = it.next().ok_or("--scale needs a number")?;
                scale = v
                    .parse::<f64>()
                    .ok()
                    .filter(|f| *f > 0.0 && f.is_finite())
                    .ok_or_else(|| format!("--scale needs a positive number, not `{v}`"))?;
                cross_opts.push("--scale");
            }
            "--only" => {
                section = match it.next().map(String::as_str) {
                    Some("transports") => Section::Transports,
                    Some("in-process") => Section::InProcess,
                    Some("cross-process") => Section::CrossProcess,
                    Some("codec") => Section::Codec,
                    other => {
                        return Err(format!(
                            "--only takes transports, in-process, cross-process or codec, \
                             not {}",
                            other.map_or("nothing".into(), |o| format!("`{o}`"))
                        )
                        .into())
                    }
                }
            }
            "--transports" => {
                settings.kinds = parse_list("--transports", it.next(), "transports", parse_kind)?;
                transport_opts.push("--transports");
            }
            "--sizes" => {
                settings.sizes = parse_list("--sizes", it.next(), "sizes", parse_size)?;
                transport_opts.push("--sizes");
            }
            "--duration" => {
                let v = it.next().ok_or("--duration needs a number of seconds")?;
                let secs = v
                    .parse::<f64>()
                    .ok()
                    .filter(|f| *f > 0.0 && *f <= 86_400.0)
                    .ok_or_else(|| {
                        format!("--duration needs a positive number of seconds, not `{v}`")
                    })?;
                settings.duration = std::time::Duration::from_secs_f64(secs);
                transport_opts.push("--duration");
            }
            "--json" => {
                json = true;
                transport_opts.push("--json");
            }
            "--plot" => {
                let f = it.next().ok_or("--plot needs a file name (FILE.svg)")?;
                plot_to = Some(f.clone());
                transport_opts.push("--plot");
            }
            other => return Err(format!("unknown option `{other}`").into()),
        }
    }
    let misplaced = match section {
        Section::Transports => in_opts.first().or(cross_opts.first()),
        Section::InProcess => transport_opts.first().or(cross_opts.first()),
        Section::CrossProcess => transport_opts.first().or(in_opts.first()),
        Section::Codec => transport_opts
            .first()
            .or(in_opts.first())
            .or(cross_opts.first()),
    };
    if let Some(opt) = misplaced {
        return Err(format!("{opt} does not apply to this section of the benchmark").into());
    }
    match section {
        Section::Transports => {
            settings.runs = runs.unwrap_or(Settings::default().runs);
            bench_transports(&settings, json, plot_to.as_deref())
        }
        Section::InProcess => {
            let runs = runs.unwrap_or(5);
            let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
            let total = configs.len() * runs * 2;
            let mut done = 0;
            eprintln!(
                "in-process throughput, {} messages per run, median of {runs} runs, {cpus} CPUs",
                configs[0].messages
            );
            let rows = compare(&configs, runs, || {
                done += 1;
                eprint!("\r  measuring: {done}/{total} runs");
                let _ = std::io::stderr().flush();
            });
            eprintln!();
            print!("{}", table(&rows));
            Ok(())
        }
        Section::CrossProcess => {
            let runs = runs.unwrap_or(3);
            eprintln!(
                "cross-process, two processes pinned to different cores, median of {runs} runs"
            );
            let report = ipc::measure(runs, scale, |step| {
                eprint!("\r  {step:<60}");
                let _ = std::io::stderr().flush();
            });
            eprintln!();
            print!("{}", ipc::report_table(&report));
            Ok(())
        }
        Section::Codec => {
            let runs = runs.unwrap_or(3);
            let out = codec::measure_and_report(runs, |step| {
                eprint!("\r  {step:<60}");
                let _ = std::io::stderr().flush();
            });
            eprintln!();
            print!("{out}");
            Ok(())
        }
    }
}

/// A progress display on stderr: an updating bar on a terminal, two
/// plain lines (start, end) otherwise.
struct ProgressBar {
    tty: bool,
}

impl ProgressBar {
    fn show(&self, p: &transports::Progress) {
        if !self.tty {
            return;
        }
        const WIDTH: usize = 30;
        let filled = (p.done * WIDTH).checked_div(p.total).unwrap_or(WIDTH);
        let left = p.eta.as_secs();
        eprint!(
            "\r\x1b[2K[{}{}] {:>3}/{} {:<28} ~{}:{:02} left",
            "#".repeat(filled),
            "-".repeat(WIDTH - filled),
            p.done,
            p.total,
            p.what,
            left / 60,
            left % 60
        );
        let _ = std::io::stderr().flush();
    }

    fn finish(&self) {
        if self.tty {
            eprint!("\r\x1b[2K");
            let _ = std::io::stderr().flush();
        }
    }
}

fn bench_transports(
    settings: &Settings,
    json: bool,
    plot_to: Option<&str>,
) -> Result<(), BenchError> {
    use std::io::IsTerminal;
    // The signal transport's receiver must block its signal before any
    // thread exists; this process has none yet.
    if settings.kinds.contains(&Kind::Signal) {
        transports::block_signal()
            .map_err(|e| BenchError::Failed(format!("block the signal transport's signal: {e}")))?;
    }
    let bar = ProgressBar {
        tty: std::io::stderr().is_terminal(),
    };
    eprintln!(
        "shmlane bench: {} transports x {} sizes between two processes, about {:.0} s ({})",
        settings.kinds.len(),
        settings.sizes.len(),
        settings.duration.as_secs_f64(),
        plot::machine()
    );
    let started = std::time::Instant::now();
    let mut rows = transports::measure(settings, |p| bar.show(p));
    bar.finish();
    transports::sort_rows(&mut rows);
    eprintln!("measured in {:.1} s", started.elapsed().as_secs_f64());
    if json {
        print!("{}", transports::json(&rows));
    } else {
        println!(
            "IPC between two processes (pinned to different CPUs); round trip = one message \
             there and back;\nsorted by size, then fastest round trip first; GB = 10^9 bytes; \
             vs shm: rtt p50 over shm's, msgs/s over shm's\n"
        );
        print!("{}", transports::table(&rows));
    }
    if let Some(path) = plot_to {
        std::fs::write(path, plot::svg(&rows))
            .map_err(|e| BenchError::Failed(format!("write {path}: {e}")))?;
        eprintln!("wrote the chart to {path}");
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
    if failed.is_empty() {
        Ok(())
    } else {
        Err(BenchError::Failed(format!(
            "{} cell(s) failed:\n  {}",
            failed.len(),
            failed.join("\n  ")
        )))
    }
}
