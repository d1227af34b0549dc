//! Sends rkyv-archived orders to the consumer: each `send(&order)`
//! serializes straight into a slot of the shared ring.
//!
//! ```text
//! cargo run --release --example rkyv_producer [N] [ADDRESS]
//! ```

use shmlane::codec::sample::Order;
use shmlane::ipc::{Builder, Rkyv};

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rkyv_producer: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = std::env::args()
        .nth(1)
        .map_or(Ok(1_000_000), |s| s.parse())?;
    let addr = std::env::args()
        .nth(2)
        .unwrap_or_else(|| "shm:shmlane-orders".into());
    // Fails with a clear error if the consumer is not running, or if it
    // created the channel for another message type.
    let chan = Builder::new(&addr)?.open::<Rkyv<Order>>()?;
    let tx = chan.sender()?;
    let start = std::time::Instant::now();
    let mut order = Order::sample(0);
    for id in 0..n {
        // Reusing one value keeps its strings' buffers: no allocation per
        // message on this side either.
        order.id = id;
        order.qty = (id % 10) as u32 + 1;
        order.price = 100.0 + (id % 50) as f64 * 0.25;
        order.symbol.clear();
        order
            .symbol
            .push_str(["ACME", "INITECH", "HOOLI"][(id % 3) as usize]);
        tx.send(&order)?;
    }
    println!(
        "sent {n} orders to {addr} in {:.3} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
