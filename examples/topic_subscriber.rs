//! Reads every quote `topic_publisher` publishes, in place (the archived
//! quote where it lies in shared memory), until the publisher leaves.
//!
//! ```text
//! cargo run --release --example topic_subscriber
//! ```
//!
//! Several may run at once; each reads every quote. Under the overwrite
//! policy a subscriber that falls behind is told how many it lost.

use std::time::Duration;

use shmlane::ipc::{Builder, Rkyv, TopicRecvError};

/// A quote, as this program defines it (the publisher has its own copy).
#[derive(shmlane::Message)]
struct Quote {
    seq: u64,
    symbol: String,
    bid: f64,
    ask: f64,
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("topic_subscriber: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    // The publisher creates the topic: start it first.
    let topic = Builder::new("shm:shmlane-quotes")?
        .open_timeout(Duration::from_secs(30))
        .open_topic::<Rkyv<Quote>>()?;
    let mut sub = topic.subscriber()?;
    let (mut got, mut lost, mut spread) = (0u64, 0u64, 0.0);
    loop {
        match sub.recv_ref() {
            Ok(quote) => {
                // Read in place: no copy, no allocation.
                spread += quote.ask - quote.bid;
                got += 1;
            }
            Err(TopicRecvError::Lagged(n)) => lost += n,
            Err(TopicRecvError::Disconnected) => break,
            Err(e) => return Err(e.into()),
        }
    }
    println!(
        "read {got} quotes, lost {lost}, mean spread {:.3}",
        spread / got.max(1) as f64
    );
    Ok(())
}
