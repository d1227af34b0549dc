//! Publishes quotes on a topic that every subscriber process reads in
//! full: one copy in shared memory, whatever the number of subscribers.
//!
//! ```text
//! cargo run --release --example topic_publisher [N] [SUBSCRIBERS] [block|overwrite]
//! cargo run --release --example topic_subscriber      # then, in other terminals
//! ```
//!
//! It creates `shm:shmlane-quotes`, waits until `SUBSCRIBERS` (default 1)
//! have joined, publishes `N` quotes (default 1,000,000) and leaves; the
//! subscribers then read what is left and see the topic disconnected.

use std::time::{Duration, Instant};

use shmlane::ipc::{Builder, Policy, Rkyv};

/// A quote, as this program defines it (the subscriber has its own copy).
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
            eprintln!("topic_publisher: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().map_or(Ok(1_000_000), |s| s.parse())?;
    let subscribers: usize = args.next().map_or(Ok(1), |s| s.parse())?;
    let policy = match args.next().as_deref() {
        None | Some("block") => Policy::Block,
        Some("overwrite") => Policy::Overwrite,
        Some(other) => return Err(format!("unknown policy {other:?}: block or overwrite").into()),
    };
    let topic = Builder::new("shm:shmlane-quotes")?
        .capacity(1024)
        .message_size(64)
        .policy(policy)
        .create_topic::<Rkyv<Quote>>()?;
    eprintln!("waiting for {subscribers} subscriber(s) on shm:shmlane-quotes ({policy:?})");
    while topic.subscribers() < subscribers {
        std::thread::sleep(Duration::from_millis(10));
    }
    let publisher = topic.publisher()?;
    let mut quote = Quote {
        seq: 0,
        symbol: String::from("ACME"),
        bid: 99.5,
        ask: 100.5,
    };
    let start = Instant::now();
    for seq in 0..n {
        quote.seq = seq;
        quote.bid = 99.5 + (seq % 100) as f64 / 100.0;
        publisher.send(&quote)?;
    }
    let took = start.elapsed();
    eprintln!(
        "published {n} quotes to {} subscriber(s) in {took:.2?} ({:.0} per second)",
        topic.subscribers(),
        n as f64 / took.as_secs_f64()
    );
    Ok(())
}
