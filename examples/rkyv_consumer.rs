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
//! Both programs take `Order` from one crate (here shmlane's sample
//! types; in an application, a crate both programs depend on): the
//! channel's type fingerprint includes the type's full path, so a copy of
//! the definition in each program would be refused as another type.

use shmlane::codec::sample::Order;
use shmlane::ipc::{Builder, Rkyv};

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
