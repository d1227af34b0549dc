//! Where the time of an rkyv send goes, in one process:
//! `cargo run --release -p shmlane-benches --example encode_cost`.

use std::time::Instant;

use shmlane::codec::archive::{Message, Scratch};
use shmlane::codec::sample::Order;
use shmlane::ipc::{Builder, Rkyv};

fn main() {
    let orders: Vec<Order> = (0..64).map(Order::sample).collect();
    let n = 5_000_000u64;
    let mut buf = rkyv::util::AlignedVec::<16>::new();
    buf.resize(256, 0);
    let mut scratch = Scratch::new();
    let t = Instant::now();
    let mut total = 0;
    for i in 0..n {
        total += orders[i as usize % 64]
            .encode_into(&mut buf, &mut scratch)
            .unwrap();
    }
    let enc = t.elapsed().as_nanos() as f64 / n as f64;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(Order::check(&buf[..total / n as usize]).ok());
    }
    let chk = t.elapsed().as_nanos() as f64 / n as f64;
    let chan = Builder::new(&format!("shm:encode-cost-{}", std::process::id()))
        .unwrap()
        .spsc()
        .capacity(1024)
        .message_size(128)
        .create::<Rkyv<Order>>()
        .unwrap();
    let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
    let t = Instant::now();
    for i in 0..n {
        tx.send(&orders[i as usize % 64]).unwrap();
        std::hint::black_box(rx.recv_ref().unwrap().id);
    }
    let both = t.elapsed().as_nanos() as f64 / n as f64;
    println!(
        "archive {} B: encode {enc:.1} ns, validate {chk:.1} ns, send + recv_ref in one thread {both:.1} ns",
        total / n as usize
    );
}
