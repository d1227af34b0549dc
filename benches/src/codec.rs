//! Message codec benchmarks, cross-process and pinned (the sender on CPU
//! 0, the receiving peer on CPU 1), medians of `runs` runs:
//!
//! - 1 MiB messages over an SPSC [`Bytes`] channel: the zero-copy path
//!   (the sender writes the message into the slot with `send_with`, the
//!   receiver reads it where it lies through `recv_ref`) and the copy path
//!   (`send` copies a private buffer in, the receiver copies the slot out
//!   into a private buffer), in GB/s, beside a plain 1 MiB `memcpy`
//!   measured in the same run;
//! - a small rkyv struct ([`Order`]: an id, a price, a quantity and two
//!   short strings): `send(&order)` + `recv_ref()` messages per second under
//!   each trust level, which shows what validation costs.
//!
//! The peer is this executable re-run with `SHMLANE_BENCH_CODEC_PEER` set
//! (see [`crate::ipc::maybe_run_peer`], which hands over to
//! [`maybe_run_peer`]).

use std::io::Write;
use std::time::Instant;

use shmlane::ipc::{Builder, Bytes, Rkyv, Trust};
use shmlane::WaitStrategy;
use shmlane_codec::sample::Order;

use crate::ipc::{median_f64 as median, pin_to_cpu, unique, unpin, Peer};

const PEER_ENV: &str = "SHMLANE_BENCH_CODEC_PEER";
const MIB: usize = 1 << 20;

/// Runs a codec peer and exits, if this process was started as one.
pub fn maybe_run_peer() {
    let Ok(args) = std::env::var(PEER_ENV) else {
        return;
    };
    let args: Vec<&str> = args.split(' ').collect();
    pin_to_cpu(1);
    match args.as_slice() {
        ["mib", addr, n, mode] => peer_mib(addr, n.parse().unwrap(), *mode == "copy"),
        ["orders", addr, n, trust] => peer_orders(addr, n.parse().unwrap(), trust_named(trust)),
        other => panic!("unknown codec bench peer command {other:?}"),
    }
    std::process::exit(0);
}

fn trust_named(name: &str) -> Trust {
    match name {
        "validate" => Trust::validate(),
        "hostile" => Trust::hostile(),
        // SAFETY: the only writer is this benchmark's own sender, which
        // encodes `Order`s with shmlane.
        "unchecked" => unsafe { Trust::unchecked() },
        other => panic!("unknown trust {other}"),
    }
}

fn spawn_peer(args: &str) -> Peer {
    Peer::spawn_as(PEER_ENV, args)
}

fn ready() {
    println!("ready");
    std::io::stdout().flush().unwrap();
}

/// XOR of every 8-byte word: reads the whole message, vectorised.
fn fold(bytes: &[u8]) -> u64 {
    bytes
        .chunks_exact(8)
        .fold(0, |acc, w| acc ^ u64::from_ne_bytes(w.try_into().unwrap()))
}

/// Plain `memcpy` bandwidth, 1 MiB at a time, in GB/s.
pub fn memcpy_gbps(n: u64) -> f64 {
    let src = vec![7u8; MIB];
    let mut dst = vec![0u8; MIB];
    dst.copy_from_slice(&src);
    let start = Instant::now();
    for i in 0..n {
        dst.copy_from_slice(&src);
        std::hint::black_box(&mut dst);
        dst[i as usize % MIB] = 1;
    }
    (n as usize * MIB) as f64 / start.elapsed().as_secs_f64() / 1e9
}

/// 1 MiB messages from this process to a peer, in GB/s: in place both
/// ways (`copy` false) or copied in and out.
pub fn mib_gbps(n: u64, copy: bool) -> f64 {
    let addr = format!("shm:{}", unique("codec-mib"));
    let chan = Builder::new(&addr)
        .unwrap()
        .spsc()
        .capacity(4)
        .message_size(MIB)
        .wait_strategy(WaitStrategy::busy_poll())
        .create::<Bytes>()
        .unwrap();
    let tx = chan.sender().unwrap();
    let mode = if copy { "copy" } else { "zero-copy" };
    let mut peer = spawn_peer(&format!("mib {addr} {n} {mode}"));
    peer.wait_line("ready");
    let src = vec![3u8; MIB];
    let start = Instant::now();
    for i in 0..n {
        if copy {
            tx.send(&src).unwrap();
        } else {
            tx.send_with(|slot| {
                slot[..MIB].fill(i as u8);
                MIB
            })
            .unwrap();
        }
    }
    peer.wait_line("done");
    let elapsed = start.elapsed();
    peer.finish();
    (n as usize * MIB) as f64 / elapsed.as_secs_f64() / 1e9
}

fn peer_mib(addr: &str, n: u64, copy: bool) {
    let chan = Builder::new(addr)
        .unwrap()
        .wait_strategy(WaitStrategy::busy_poll())
        .open::<Bytes>()
        .unwrap();
    let rx = chan.receiver().unwrap();
    let mut private = vec![0u8; MIB];
    let mut acc = 0;
    ready();
    for _ in 0..n {
        let msg = rx.recv_ref().unwrap();
        if copy {
            private.copy_from_slice(&msg);
            drop(msg);
            acc ^= private[acc as usize % MIB] as u64;
        } else {
            acc ^= fold(&msg);
        }
    }
    std::hint::black_box(acc);
    println!("done");
}

/// `send(&order)` + `recv_ref()` of small rkyv orders to a peer reading
/// them under `trust`, in messages per second.
pub fn orders_per_s(n: u64, trust: &str) -> f64 {
    let addr = format!("shm:{}", unique("codec-orders"));
    let chan = Builder::new(&addr)
        .unwrap()
        .spsc()
        .capacity(4096)
        .message_size(128)
        .wait_strategy(WaitStrategy::busy_poll())
        .create::<Rkyv<Order>>()
        .unwrap();
    let tx = chan.sender().unwrap();
    let orders: Vec<Order> = (0..64).map(Order::sample).collect();
    let mut peer = spawn_peer(&format!("orders {addr} {n} {trust}"));
    peer.wait_line("ready");
    let start = Instant::now();
    for i in 0..n {
        tx.send(&orders[i as usize % 64]).unwrap();
    }
    let lines = peer.wait_line("done");
    let elapsed = start.elapsed();
    peer.finish();
    assert_eq!(lines.first().map(String::as_str), Some("ok"), "{lines:?}");
    n as f64 / elapsed.as_secs_f64()
}

fn peer_orders(addr: &str, n: u64, trust: Trust) {
    let chan = Builder::new(addr)
        .unwrap()
        .trust(trust)
        .wait_strategy(WaitStrategy::busy_poll())
        .open::<Rkyv<Order>>()
        .unwrap();
    let rx = chan.receiver().unwrap();
    let (mut ids, mut qty) = (0u64, 0u64);
    ready();
    for _ in 0..n {
        let order = rx.recv_ref().unwrap();
        ids += order.id.to_native();
        qty += u64::from(order.qty.to_native()) + order.symbol.len() as u64;
    }
    // Every order arrived whole: the sums match what was sent.
    let want_ids: u64 = (0..n).map(|i| i % 64).sum();
    let want_qty: u64 = (0..n)
        .map(|i| {
            let o = Order::sample(i % 64);
            u64::from(o.qty) + o.symbol.len() as u64
        })
        .sum();
    println!(
        "{}",
        if (ids, qty) == (want_ids, want_qty) {
            "ok"
        } else {
            "mismatch"
        }
    );
    println!("done");
}

/// Every codec figure, medians of `runs` runs.
#[derive(Debug, Clone)]
pub struct Report {
    /// memcpy of 1 MiB, GB/s.
    pub memcpy: f64,
    /// 1 MiB zero-copy, GB/s.
    pub zero_copy: f64,
    /// 1 MiB copied in and out, GB/s.
    pub copy: f64,
    /// (trust, orders per second).
    pub orders: Vec<(&'static str, f64)>,
    /// Whether the two processes were pinned to different CPUs.
    pub pinned: bool,
    /// The cache-line ping-pong round trip (p50, ns) in the same run: it
    /// tells how far apart the two CPUs are, which moves every figure.
    pub floor_ns: f64,
}

/// Runs every codec figure `runs` times (interleaved); `scale` multiplies
/// the message counts.
pub fn measure(runs: usize, scale: f64, mut progress: impl FnMut(&str)) -> Report {
    let pinned = pin_to_cpu(0);
    let mib = ((4000.0 * scale) as u64).max(16);
    let orders = ((20_000_000.0 * scale) as u64).max(10_000);
    let trusts = ["validate", "hostile", "unchecked"];
    let (mut memcpy, mut zero, mut copy) = (Vec::new(), Vec::new(), Vec::new());
    let mut per_trust = vec![Vec::new(); trusts.len()];
    let mut floor = Vec::new();
    for run in 1..=runs {
        progress(&format!("run {run}/{runs}: floor (cache-line ping-pong)"));
        floor.push(crate::ipc::floor(100_000).p50);
        progress(&format!("run {run}/{runs}: memcpy 1 MiB"));
        memcpy.push(memcpy_gbps(mib));
        progress(&format!("run {run}/{runs}: 1 MiB zero-copy"));
        zero.push(mib_gbps(mib, false));
        progress(&format!("run {run}/{runs}: 1 MiB copy in/out"));
        copy.push(mib_gbps(mib, true));
        for (i, trust) in trusts.iter().enumerate() {
            progress(&format!("run {run}/{runs}: rkyv orders, {trust}"));
            per_trust[i].push(orders_per_s(orders, trust));
        }
    }
    unpin();
    Report {
        memcpy: median(memcpy),
        zero_copy: median(zero),
        copy: median(copy),
        orders: trusts
            .into_iter()
            .zip(per_trust.into_iter().map(median))
            .collect(),
        pinned,
        floor_ns: median(floor),
    }
}

/// Formats a report with the codec issue's goals beside each figure.
pub fn report_table(r: &Report) -> String {
    let mut out = String::new();
    out.push_str("1 MiB messages, cross-process        GB/s   vs memcpy (goal)\n");
    out.push_str(&format!(
        "memcpy, 1 MiB (same run)          {:>7.2}\n",
        r.memcpy
    ));
    out.push_str(&format!(
        "zero-copy (send_with + recv_ref)   {:>7.2}   {:>5.2}x (>= 1.0x)\n",
        r.zero_copy,
        r.zero_copy / r.memcpy
    ));
    out.push_str(&format!(
        "copy in + copy out                 {:>7.2}   {:>5.2}x (>= 0.6x)\n",
        r.copy,
        r.copy / r.memcpy
    ));
    out.push_str("\nrkyv order (send + recv_ref)     Mmsg/s   ns/msg   vs unchecked\n");
    let unchecked = r
        .orders
        .iter()
        .find(|(t, _)| *t == "unchecked")
        .map_or(f64::NAN, |o| o.1);
    for &(trust, rate) in &r.orders {
        let goal = if trust == "validate" {
            "  (goal >= 10 Mmsg/s)"
        } else {
            ""
        };
        out.push_str(&format!(
            "{trust:<31}{:>8.2}{:>9.1}{:>10.2}x{goal}\n",
            rate / 1e6,
            1e9 / rate,
            rate / unchecked
        ));
    }
    out.push_str(&format!(
        "(placement: cache-line ping-pong {:.0} ns round trip in this run)\n",
        r.floor_ns
    ));
    if !r.pinned {
        out.push_str("(not pinned: fewer than 2 CPUs or affinity refused)\n");
    }
    out
}

/// Measures the codec figures and returns the table to print (what
/// `shmlane bench --only codec` shows).
pub fn measure_and_report(runs: usize, progress: impl FnMut(&str)) -> String {
    report_table(&measure(runs, 1.0, progress))
}
