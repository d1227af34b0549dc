//! The MPMC ring between two processes: 8-byte throughput (one producer
//! process, one consumer process, busy-poll) and busy-poll round trip
//! (two MPMC channels, ping and pong). Both sides pinned to CPUs 0 and 1
//! when possible. Prints one line per figure.
//!
//! ```text
//! cargo run --release --example mpmc_cost -- [MESSAGES] [ROUND_TRIPS]
//! ```

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use shmlane::ipc::Builder;
use shmlane::WaitStrategy;

fn pin(cpu: usize) {
    // Best effort: a one-CPU machine runs unpinned.
    let _ = shmlane_sys::process::pin_to_cpu(cpu);
}

fn open(addr: &str) -> shmlane::ipc::Channel<u64> {
    Builder::new(addr)
        .unwrap()
        .wait_strategy(WaitStrategy::busy_poll())
        .open::<u64>()
        .unwrap()
}

fn child(mode: &str, a: &str, b: &str, n: u64) {
    pin(1);
    let mut out = std::io::stdout().lock();
    match mode {
        "sink" => {
            let rx = open(a).receiver().unwrap();
            writeln!(out, "ready").unwrap();
            out.flush().unwrap();
            for _ in 0..n {
                rx.recv().unwrap();
            }
        }
        "pong" => {
            let rx = open(a).receiver().unwrap();
            let tx = open(b).sender().unwrap();
            writeln!(out, "ready").unwrap();
            out.flush().unwrap();
            for _ in 0..n {
                tx.send(rx.recv().unwrap()).unwrap();
            }
        }
        _ => unreachable!(),
    }
    writeln!(out, "done").unwrap();
}

fn spawn(
    mode: &str,
    a: &str,
    b: &str,
    n: u64,
) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let mut k = Command::new(std::env::current_exe().unwrap())
        .env("MPMC_COST", format!("{mode} {a} {b} {n}"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(k.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    (k, out)
}

fn create(addr: &str) -> shmlane::ipc::Channel<u64> {
    Builder::new(addr)
        .unwrap()
        .capacity(8192)
        .wait_strategy(WaitStrategy::busy_poll())
        .create::<u64>()
        .unwrap()
}

fn main() {
    if let Ok(spec) = std::env::var("MPMC_COST") {
        let v: Vec<&str> = spec.split(' ').collect();
        child(v[0], v[1], v[2], v[3].parse().unwrap());
        return;
    }
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let n = args.first().copied().unwrap_or(10_000_000);
    let rt = args.get(1).copied().unwrap_or(200_000);
    pin(0);
    let id = std::process::id();
    // Throughput.
    let a = format!("shm:mpmc-cost-a-{id}");
    let chan = create(&a);
    let tx = chan.sender().unwrap();
    let (mut k, mut out) = spawn("sink", &a, "-", n);
    let start = Instant::now();
    for i in 0..n {
        tx.send(i).unwrap();
    }
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let secs = start.elapsed().as_secs_f64();
    let _ = k.wait();
    println!("mpmc 8 B throughput: {:.2} M msg/s", n as f64 / secs / 1e6);
    drop((tx, chan));
    // Round trip.
    let (p, q) = (
        format!("shm:mpmc-cost-p-{id}"),
        format!("shm:mpmc-cost-q-{id}"),
    );
    let (pc, qc) = (create(&p), create(&q));
    let tx = pc.sender().unwrap();
    let rx = qc.receiver().unwrap();
    let (mut k, _out) = spawn("pong", &p, &q, rt);
    let mut samples = Vec::with_capacity(rt as usize);
    for i in 0..rt {
        let t = Instant::now();
        tx.send(i).unwrap();
        rx.recv().unwrap();
        samples.push(t.elapsed().as_nanos() as u64);
    }
    let _ = k.wait();
    samples.sort_unstable();
    println!(
        "mpmc busy-poll round trip: p50 {} ns, p99 {} ns",
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100]
    );
}
