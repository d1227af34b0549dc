//! Receives rkyv-archived orders and reads them in place (zero copy).
//!
//! ```text
//! cargo run --release --example rkyv_consumer            # terminal 1
//! cargo run --release --example rkyv_producer 1000000    # terminal 2
//! ```
//!
//! Creates the channel `shm:shmlane-orders` (or the address given as the
//! first argument) for `Rkyv<Order>` messages, prints the first few
//! orders, and a summary once the producer is done. Each archive is
//! validated in place before it is read (the default trust); the segment
//! is removed when this program exits.
//!
//! Each program defines `Order` itself: the segment records the type's
//! structure (field names, order and types), not where it is defined, so
//! two copies of one definition agree, and a producer whose `Order` has
//! drifted (a field added, retyped or moved) is refused with the first
//! difference named. (A crate both programs depend on is the way to keep
//! the copies from drifting.)

use shmlane::ipc::{Builder, Rkyv};

/// An order, as this program defines it.
#[derive(shmlane::Message, Debug)]
#[rkyv(derive(Debug))]
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
            eprintln!("rkyv_consumer: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "shm:shmlane-orders".into());
    let chan = Builder::new(&addr)?
        .spsc()
        .capacity(1024)
        .message_size(128)
        .create::<Rkyv<Order>>()?;
    let rx = chan.receiver()?;
    println!("created {addr}; now run: cargo run --release --example rkyv_producer");
    let (mut count, mut units, mut in_order) = (0u64, 0u64, true);
    let mut started = None;
    // `recv_ref` lends the archived order where it lies in shared memory;
    // the slot is freed when `order` is dropped. It ends with an error
    // once the producer has gone and everything it sent is read.
    while let Ok(order) = rx.recv_ref() {
        started.get_or_insert_with(std::time::Instant::now);
        if count < 3 {
            println!("  {order:?}");
        }
        in_order &= order.id == count;
        units += u64::from(order.qty.to_native());
        count += 1;
    }
    let secs = started.map_or(0.0, |t| t.elapsed().as_secs_f64());
    println!(
        "received {count} orders in {secs:.3} s ({units} units), {}",
        if in_order {
            "all in order"
        } else {
            "OUT OF ORDER"
        }
    );
    Ok(())
}
