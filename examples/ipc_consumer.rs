//! The receiving half of the README's two-process example.
//!
//! ```text
//! cargo run --release --example ipc_consumer            # terminal 1
//! cargo run --release --example ipc_producer 1000000    # terminal 2
//! ```
//!
//! Creates the channel `shm:shmlane-demo` (or the address given as the
//! first argument), waits for a producer, and prints a summary once the
//! producer is done. The segment is removed when this program exits.

use shmlane::ipc::Builder;

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipc_consumer: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "shm:shmlane-demo".into());
    let chan = Builder::new(&addr)?
        .spsc()
        .capacity(4096)
        .create::<[u64; 2]>()?;
    let rx = chan.receiver()?;
    println!("created {addr}; now run: cargo run --release --example ipc_producer");
    let (mut count, mut in_order) = (0u64, true);
    let mut started = None;
    // `recv` blocks until a producer attaches and sends; it ends with an
    // error once the producer has gone and everything it sent is read.
    while let Ok([seq, square]) = rx.recv() {
        started.get_or_insert_with(std::time::Instant::now);
        in_order &= seq == count && square == seq.wrapping_mul(seq);
        count += 1;
    }
    let secs = started.map_or(0.0, |t| t.elapsed().as_secs_f64());
    println!(
        "received {count} messages in {secs:.3} s, {} (the producer is gone)",
        if in_order {
            "all in order"
        } else {
            "OUT OF ORDER"
        }
    );
    Ok(())
}
