//! `shmlane`: the command-line tool.
//!
//! ```text
//! shmlane bench [--runs N] [--messages N]
//! ```

use std::io::Write;
use std::process::ExitCode;

use shmlane_benches::{compare, default_configs, table};

const USAGE: &str = "\
usage: shmlane <command> [options]

commands:
  bench     compare shmlane's in-process channel with crossbeam-channel
            (1/1, 2/2, 4/4 threads; 1,000,000 u64 messages; capacity 1024)
              --runs N       measured runs per row and implementation (default 5)
              --messages N   messages per run (default 1000000)
  help      print this text

Planned, not yet available: ls, stat, rm, send, recv (cross-process channels).
";

fn main() -> ExitCode {
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
        Some(cmd @ ("ls" | "stat" | "rm" | "send" | "recv")) => {
            eprintln!("shmlane {cmd}: not implemented yet (it needs the cross-process channel)");
            ExitCode::from(2)
        }
        Some(other) => {
            eprintln!("shmlane: unknown command `{other}`\n\n{USAGE}");
            ExitCode::from(2)
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
    let mut runs = 5;
    let mut configs = default_configs();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--runs" => runs = parse_count("--runs", it.next())? as usize,
            "--messages" => {
                let n = parse_count("--messages", it.next())?;
                configs.iter_mut().for_each(|c| c.messages = n);
            }
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    let total = configs.len() * runs * 2;
    let mut done = 0;
    eprintln!(
        "in-process throughput, {} messages per run, median of {runs} runs, {} CPUs",
        configs[0].messages,
        std::thread::available_parallelism().map_or(0, |n| n.get())
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
