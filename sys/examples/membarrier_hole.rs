//! Shows why shmlane uses the *private* expedited membarrier: the global
//! one can skip a CPU that runs a thread of the caller's own process.
//!
//! The main thread runs on CPU 1, moves to CPU 0 (CPU 1 goes idle, still
//! holding this process's memory map lazily), then registers for both
//! commands; a second thread spins on CPU 1. A barrier that interrupts
//! CPU 1 costs microseconds (an IPI and its wait); one that skips it costs
//! a system call. Run `cargo run --release -p shmlane-sys --example
//! membarrier_hole`, and with `fresh` to register before CPU 1 ran this
//! process (then both interrupt it). Needs 2 CPUs.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::thread::{membarrier, sched_setaffinity, CpuSet, MembarrierCommand};

fn pin(cpu: usize) {
    let mut set = CpuSet::new();
    set.set(cpu);
    sched_setaffinity(None, &set).expect("sched_setaffinity");
}

fn per_call(cmd: MembarrierCommand) -> f64 {
    let n = 20_000;
    let t = Instant::now();
    for _ in 0..n {
        membarrier(cmd).expect("membarrier");
    }
    t.elapsed().as_nanos() as f64 / f64::from(n)
}

fn main() {
    if std::env::args().nth(1).as_deref() != Some("fresh") {
        pin(1);
        std::thread::sleep(Duration::from_millis(5));
        pin(0);
        std::thread::sleep(Duration::from_millis(5));
    }
    membarrier(MembarrierCommand::RegisterPrivateExpedited).expect("register private");
    membarrier(MembarrierCommand::RegisterGlobalExpedited).expect("register global");
    let stop = Arc::new(AtomicBool::new(false));
    let spinner = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            pin(1);
            // Relaxed: a stop flag.
            while !stop.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        })
    };
    pin(0);
    std::thread::sleep(Duration::from_millis(20));
    let global = per_call(MembarrierCommand::GlobalExpedited);
    let private = per_call(MembarrierCommand::PrivateExpedited);
    println!(
        "global expedited: {global:.0} ns per call; private expedited: {private:.0} ns per call"
    );
    println!(
        "{}",
        if global * 4.0 < private {
            "the global barrier skipped CPU 1, where a thread of this process runs"
        } else {
            "both barriers interrupted CPU 1"
        }
    );
    // Relaxed: as above.
    stop.store(true, Ordering::Relaxed);
    spinner.join().unwrap();
}
