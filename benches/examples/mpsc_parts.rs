//! crossbeam's `bounded_mpsc` shape taken apart, for profiling: create a
//! `bounded(1_000_000)`, let P producer threads fill it with nobody
//! receiving, drain it from one thread, drop it; medians of each part.
//! `mpsc_parts shmlane|crossbeam P RUNS`. With P = 4 on 2 CPUs this is
//! where contention among producers on the enqueue index shows alone.
use std::thread;
use std::time::Instant;

macro_rules! parts {
    ($k:ident, $n:expr, $p:expr) => {{
        let n: usize = $n;
        let p: usize = $p;
        let t0 = Instant::now();
        let (tx, rx) = $k::bounded::<usize>(n);
        let t1 = Instant::now();
        thread::scope(|s| {
            for _ in 0..p {
                s.spawn(|| {
                    for i in 0..n / p {
                        tx.send(i).unwrap();
                    }
                });
            }
        });
        let t2 = Instant::now();
        for _ in 0..n / p * p {
            rx.recv().unwrap();
        }
        let t3 = Instant::now();
        drop((tx, rx));
        let t4 = Instant::now();
        [t1 - t0, t2 - t1, t3 - t2, t4 - t3]
    }};
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let p: usize = a[1].parse().unwrap();
    let runs: usize = a[2].parse().unwrap();
    let mut all = vec![];
    for _ in 0..runs {
        let r = if a[0] == "crossbeam" {
            parts!(crossbeam_channel, 1_000_000, p)
        } else {
            parts!(shmlane, 1_000_000, p)
        };
        all.push(r);
    }
    for k in 0..4 {
        let mut v: Vec<_> = all.iter().map(|r| r[k]).collect();
        v.sort();
        print!("{:>10.2?} ", v[runs / 2]);
    }
    println!("  (create, send, recv, drop)");
}
