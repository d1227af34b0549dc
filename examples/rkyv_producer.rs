//! Sends rkyv-archived orders to the consumer: each `send(&order)`
//! serializes straight into a slot of the shared ring.
//!
//! ```text
//! cargo run --release --example rkyv_producer [N] [ADDRESS]
//! ```
//!
//! Its `Order` is its own copy of the consumer's definition; the channel
//! checks that the two have one structure.

use shmlane::ipc::{Builder, Rkyv};

/// An order, as this program defines it (the consumer has its own copy).
#[derive(shmlane::Message)]
struct Order {
    id: u64,
    price: f64,
    qty: u32,
    symbol: String,
    venue: String,
}

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
    // created the channel for an `Order` of another structure.
    let chan = Builder::new(&addr)?.open::<Rkyv<Order>>()?;
    let tx = chan.sender()?;
    let start = std::time::Instant::now();
    let mut order = Order {
        id: 0,
        price: 0.0,
        qty: 0,
        symbol: String::with_capacity(16),
        venue: String::from("XNAS"),
    };
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
