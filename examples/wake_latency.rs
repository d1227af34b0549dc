//! How long a ready message waits when receivers are parked: R receiver
//! processes park on an MPMC channel; this process sends one message every
//! 2 ms (so they park in between), stamped with the monotonic clock; each
//! receiver reports how long the message took to reach it.
//!
//! ```text
//! cargo run --release --example wake_latency -- RECEIVERS MESSAGES
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use shmlane::ipc::Builder;

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a pointer to a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn main() {
    if let Ok(addr) = std::env::var("WAKE_CHILD") {
        let chan = Builder::new(&addr).unwrap().open::<[u64; 2]>().unwrap();
        let rx = chan.receiver().unwrap();
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready").unwrap();
        out.flush().unwrap();
        while let Ok(m) = rx.recv() {
            let waited = now_ns().saturating_sub(m[1]);
            out.write_all(&waited.to_le_bytes()).unwrap();
            out.flush().unwrap();
        }
        return;
    }
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let (receivers, messages) = (
        args.first().copied().unwrap_or(2),
        args.get(1).copied().unwrap_or(500),
    );
    let addr = format!("shm:wake-latency-{}", std::process::id());
    let chan = Builder::new(&addr)
        .unwrap()
        .capacity(64)
        .create::<[u64; 2]>()
        .unwrap();
    let tx = chan.sender().unwrap();
    let kids: Vec<_> = (0..receivers)
        .map(|_| {
            let mut k = Command::new(std::env::current_exe().unwrap())
                .env("WAKE_CHILD", &addr)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut out = BufReader::new(k.stdout.take().unwrap());
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            let reader = std::thread::spawn(move || {
                let mut got = Vec::new();
                let mut buf = [0u8; 8];
                while out.read_exact(&mut buf).is_ok() {
                    got.push(u64::from_le_bytes(buf));
                }
                got
            });
            (k, reader)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    for i in 0..messages {
        tx.send([i, now_ns()]).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(tx);
    let mut all: Vec<u64> = Vec::new();
    for (mut k, reader) in kids {
        let _ = k.wait();
        all.extend(reader.join().unwrap());
    }
    all.sort_unstable();
    let q = |p: f64| all[((all.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0;
    let over_1ms = all.iter().filter(|&&w| w > 1_000_000).count();
    println!(
        "{receivers} parked receivers, {} messages: p50 {:.1} us, p99 {:.1} us, max {:.1} us, over 1 ms: {over_1ms}",
        all.len(),
        q(0.5),
        q(0.99),
        q(1.0)
    );
}
