//! `shmlane`: the command-line tool.
//!
//! ```text
//! shmlane bench [--runs N] [--messages N]
//! shmlane send ADDR [options] < lines
//! shmlane recv ADDR [options] > lines
//! ```

mod segments;
mod sendrecv;

use std::io::Write;
use std::process::ExitCode;

use shmlane_benches::{compare, default_configs, ipc, table};

const USAGE: &str = "\
usage: shmlane <command> [options]

commands:
  bench     measure shmlane on this machine:
            1. in-process channel against crossbeam-channel (1/1, 2/2, 4/4
               threads; 1,000,000 u64 messages; capacity 1024)
            2. cross-process: round trips against a bare cache-line
               ping-pong, and one-way throughput (processes pinned)
              --runs N       runs per figure, medians reported (default 5 / 3)
              --messages N   in-process messages per run (default 1000000)
              --scale F      cross-process message counts times F (default 1)
              --only in-process|cross-process
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
            Err(e) => {
                eprintln!("shmlane bench: {e}\n\n{USAGE}");
                ExitCode::from(2)
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

fn bench(args: &[String]) -> Result<(), String> {
    let mut runs = None;
    let mut scale = 1.0;
    let mut only = None;
    let mut configs = default_configs();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--runs" => runs = Some(parse_count("--runs", it.next())? as usize),
            "--messages" => {
                let n = parse_count("--messages", it.next())?;
                configs.iter_mut().for_each(|c| c.messages = n);
            }
            "--scale" => {
                let v = it.next().ok_or("--scale needs a number")?;
                scale = v
                    .parse::<f64>()
                    .ok()
                    .filter(|f| *f > 0.0 && f.is_finite())
                    .ok_or_else(|| format!("--scale needs a positive number, not `{v}`"))?;
            }
            "--only" => match it.next().map(String::as_str) {
                Some(which @ ("in-process" | "cross-process")) => only = Some(which.to_owned()),
                other => {
                    return Err(format!(
                        "--only takes in-process or cross-process, not {other:?}"
                    ))
                }
            },
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    if only.as_deref() != Some("cross-process") {
        let runs = runs.unwrap_or(5);
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
    }
    if only.as_deref() != Some("in-process") {
        let runs = runs.unwrap_or(3);
        eprintln!(
            "\ncross-process, two processes pinned to different cores, median of {runs} runs"
        );
        let report = ipc::measure(runs, scale, |step| {
            eprint!("\r  {step:<60}");
            let _ = std::io::stderr().flush();
        });
        eprintln!();
        println!();
        print!("{}", ipc::report_table(&report));
    }
    Ok(())
}
