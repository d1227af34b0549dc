//! The README's async example: a tokio program that awaits messages from
//! another process, with no thread per channel.
//!
//! ```text
//! cargo run --release --example async_consumer            # terminal 1
//! cargo run --release --example ipc_producer 1000000      # terminal 2
//! ```
//!
//! Creates `shm:shmlane-demo` (or the address given as the first
//! argument), as `ipc_consumer` does, and receives on a tokio
//! current-thread runtime with `recv_async`, while another task ticks:
//! the runtime's one thread serves both. The process's bridge thread (one
//! however many channels are awaited) turns the producer's futex wakeups
//! into task wakeups.

use std::time::Duration;

use shmlane::ipc::Builder;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "shm:shmlane-demo".into());
    let chan = Builder::new(&addr)?
        .spsc()
        .capacity(4096)
        .create::<[u64; 2]>()?;
    let rx = chan.receiver()?;
    println!("created {addr}; now run: cargo run --release --example ipc_producer");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    rt.block_on(async move {
        let ticker = tokio::spawn(async {
            let mut n = 0u64;
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                n += 1;
                println!("... {n} s, the runtime is free while the receiver waits");
            }
        });
        let (mut count, mut in_order) = (0u64, true);
        let mut started = None;
        // Ends with an error once the producer is gone and all is read.
        while let Ok([seq, square]) = rx.recv_async().await {
            started.get_or_insert_with(std::time::Instant::now);
            in_order &= seq == count && square == seq.wrapping_mul(seq);
            count += 1;
        }
        ticker.abort();
        let secs = started.map_or(0.0, |t| t.elapsed().as_secs_f64());
        println!(
            "received {count} messages in {secs:.3} s, {} (the producer is gone)",
            if in_order {
                "all in order"
            } else {
                "OUT OF ORDER"
            }
        );
    });
    Ok(())
}
