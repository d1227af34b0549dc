//! Answers price requests from any number of client processes: each
//! request is read in place (the archived request in the client's ring),
//! each answer goes to the client that asked.
//!
//! ```text
//! cargo run --release --example service_server [REQUESTS]
//! cargo run --release --example service_client [CALLS]   # in other terminals
//! ```
//!
//! It serves `shm:shmlane-prices` until it has answered `REQUESTS`
//! (default: for ever).

use shmlane::ipc::{Builder, Rkyv};

/// A request, as this program defines it (the client has its own copy).
#[derive(shmlane::Message)]
struct PriceRequest {
    symbol: String,
    qty: u32,
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("service_server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let limit: u64 = std::env::args()
        .nth(1)
        .map_or(Ok(u64::MAX), |s| s.parse())?;
    let mut server = Builder::new("shm:shmlane-prices")?
        .message_size(64)
        .create_server::<Rkyv<PriceRequest>, [u64; 2]>()?;
    eprintln!("serving shm:shmlane-prices");
    for _ in 0..limit {
        // The request is read where it lies; only the answer is built.
        // The answer is a Pod pair: [price in cents, quantity].
        let (client, price) = server.recv_with(None, |_, req| {
            [
                10_000 + req.symbol.len() as u64 * 25,
                u64::from(req.qty.to_native()),
            ]
        })?;
        // A client that died meanwhile is dropped; go on with the others.
        let _ = server.reply(client, price);
    }
    Ok(())
}
