//! Asks `service_server` for prices and reports the round trip.
//!
//! ```text
//! cargo run --release --example service_client [CALLS]
//! ```

use std::time::Instant;

use shmlane::ipc::{Builder, Rkyv};

/// A request, as this program defines it (the server has its own copy).
#[derive(shmlane::Message)]
struct PriceRequest {
    symbol: String,
    qty: u32,
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("service_client: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let calls: u32 = std::env::args().nth(1).map_or(Ok(100_000), |s| s.parse())?;
    let mut client = Builder::new("shm:shmlane-prices")?
        .message_size(64)
        .connect::<Rkyv<PriceRequest>, [u64; 2]>()?;
    let mut req = PriceRequest {
        symbol: String::from("ACME"),
        qty: 0,
    };
    let start = Instant::now();
    for qty in 0..calls {
        req.qty = qty;
        let [_cents, answered] = client.call(&req)?;
        assert_eq!(answered, u64::from(qty), "an answer to another request");
    }
    let took = start.elapsed();
    println!(
        "{calls} calls in {took:.2?}: {:.0} ns per round trip",
        took.as_nanos() as f64 / f64::from(calls)
    );
    Ok(())
}
