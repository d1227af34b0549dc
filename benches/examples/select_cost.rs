//! The cost of waiting in a `Select` over 4 cross-process receivers
//! against a single receiver's `recv`: a round trip between two processes
//! pinned to CPUs 0 and 1. The parent sends a ping on one `shm:` channel;
//! the child answers on one of 4 reply channels (round robin); the parent
//! waits for the answer either with `recv` on that reply channel (it knows
//! which) or with one `Select` over all 4. Rows alternate, median and p99
//! of each; default wait strategy on both sides (spin, then park).
//!
//! `cargo run --release -p shmlane-benches --example select_cost -- [ROUND_TRIPS] [ROUNDS]`

use std::process::{Command, Stdio};
use std::time::Instant;

use shmlane::ipc::Builder;
use shmlane::Select;

fn addr(tag: &str, i: usize) -> String {
    format!(
        "shm:select-cost-{}-{tag}{i}",
        std::env::var("SELECT_COST_ID").unwrap()
    )
}

fn child(n: u64) {
    let _ = shmlane_benches::ipc::pin_to_cpu(1);
    let ping = Builder::new(&addr("ping", 0))
        .unwrap()
        .open::<u64>()
        .unwrap();
    let ping = ping.receiver().unwrap();
    let replies: Vec<_> = (0..4)
        .map(|i| {
            let c = Builder::new(&addr("reply", i))
                .unwrap()
                .open::<u64>()
                .unwrap();
            c.sender().unwrap()
        })
        .collect();
    for i in 0..n {
        let v = ping.recv().unwrap();
        replies[(i % 4) as usize].send(v).unwrap();
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().map_or(20_000, |a| a.parse().unwrap());
    let rounds: usize = args.next().map_or(3, |a| a.parse().unwrap());
    if std::env::var("SELECT_COST_CHILD").is_ok() {
        return child(n);
    }
    std::env::set_var("SELECT_COST_ID", std::process::id().to_string());
    let pinned = shmlane_benches::ipc::pin_to_cpu(0);
    println!("round trip, {n} per row, pinned={pinned}; ns p50 / p99");
    for round in 0..rounds {
        for use_select in [round % 2 == 1, round % 2 == 0] {
            let ping = Builder::new(&addr("ping", 0))
                .unwrap()
                .create::<u64>()
                .unwrap();
            let replies: Vec<_> = (0..4)
                .map(|i| {
                    Builder::new(&addr("reply", i))
                        .unwrap()
                        .create::<u64>()
                        .unwrap()
                })
                .collect();
            let tx = ping.sender().unwrap();
            let rxs: Vec<_> = replies.iter().map(|c| c.receiver().unwrap()).collect();
            let mut kid = Command::new(std::env::current_exe().unwrap())
                .arg(n.to_string())
                .env("SELECT_COST_CHILD", "1")
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            let mut times = Vec::with_capacity(n as usize);
            let mut sel = Select::new();
            for rx in &rxs {
                sel.recv(rx);
            }
            for i in 0..n {
                let t = Instant::now();
                tx.send(i).unwrap();
                let got = if use_select {
                    let oper = sel.select();
                    let k = oper.index();
                    oper.recv(&rxs[k]).unwrap()
                } else {
                    rxs[(i % 4) as usize].recv().unwrap()
                };
                times.push(t.elapsed().as_nanos() as u64);
                assert_eq!(got, i);
            }
            kid.wait().unwrap();
            times.sort_unstable();
            let p = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
            println!(
                "round {round}  {:<34} {:>7} / {:>7}",
                if use_select {
                    "Select over 4 receivers"
                } else {
                    "recv on the one receiver"
                },
                p(0.5),
                p(0.99)
            );
        }
    }
}
