//! Message codec benchmarks, cross-process and pinned (the sender on CPU
//! 0, the receiving peer on CPU 1):
//!
//! - 64 KiB and 1 MiB messages over an SPSC [`Bytes`] channel of capacity
//!   4, in GB/s: the zero-copy path (the sender writes the message into
//!   the slot with `send_with`, the receiver reads every byte where it
//!   lies through `recv_ref`) and the copy path (`send` copies a private
//!   buffer in, the receiver copies the slot out into a private buffer),
//!   each as a multiple of the transfer floor: the same bytes between the
//!   same two cores with no channel, four shared buffers and two counters
//!   (the writer fills a free buffer and bumps its counter, the reader
//!   reads every byte of it and bumps its own). Each round runs the three
//!   in a rotating order between floor probes, and a size keeps the rounds
//!   of one CPU placement, as the `peers` section does.
//! - a small rkyv struct ([`Order`]: an id, a price, a quantity and two
//!   short strings): `send(&order)` + `recv_ref()` messages per second under
//!   each trust level, which shows what validation costs.
//!
//! The peer is this executable re-run with `SHMLANE_BENCH_CODEC_PEER` set
//! (see [`crate::ipc::maybe_run_peer`], which hands over to
//! [`maybe_run_peer`]).

use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::Instant;

use shmlane::ipc::{Builder, Bytes, Rkyv, Trust};
use shmlane::WaitStrategy;
use shmlane_codec::sample::Order;

use crate::ipc::{
    floor, median_f64 as median, pin_to_cpu, spin_until, unique, unpin, Peer, SharedPage,
};
use crate::rotated_rounds;

const PEER_ENV: &str = "SHMLANE_BENCH_CODEC_PEER";
const MIB: usize = 1 << 20;

/// The large message sizes measured.
pub const LARGE: [usize; 2] = [64 << 10, MIB];

/// Buffers of the transfer floor, slots of the channel.
const CAPACITY: usize = 4;

/// Runs a codec peer and exits, if this process was started as one.
pub fn maybe_run_peer() {
    let Ok(args) = std::env::var(PEER_ENV) else {
        return;
    };
    let args: Vec<&str> = args.split(' ').collect();
    pin_to_cpu(1);
    // A busy-polling peer must not outlive a bench killed midway.
    let _ = shmlane_sys::process::die_with_parent();
    match args.as_slice() {
        ["large", addr, size, n, mode] => peer_large(
            addr,
            size.parse().unwrap(),
            n.parse().unwrap(),
            *mode == "copy",
        ),
        ["floor", path, size, n] => {
            peer_transfer_floor(path, size.parse().unwrap(), n.parse().unwrap())
        }
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

/// One variant of a large-message row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Large {
    /// The same bytes between the same cores, no channel.
    Floor,
    /// `send_with` + `recv_ref`.
    ZeroCopy,
    /// `send` from a private buffer + `recv_ref` copied out.
    Copy,
}

impl Large {
    /// Every variant, in table order.
    pub const ALL: [Self; 3] = [Self::Floor, Self::ZeroCopy, Self::Copy];

    /// The variant's label and, for the channel's paths, the goal of its
    /// ratio to the floor.
    pub fn label(self) -> (&'static str, Option<f64>) {
        match self {
            Self::Floor => ("transfer floor (no channel)", None),
            Self::ZeroCopy => ("zero-copy (send_with + recv_ref)", Some(0.9)),
            Self::Copy => ("copy in + copy out", Some(0.5)),
        }
    }

    /// GB/s moving `n` messages of `size` bytes.
    fn run(self, size: usize, n: u64) -> f64 {
        match self {
            Self::Floor => transfer_floor_gbps(size, n),
            Self::ZeroCopy => large_gbps(size, n, false),
            Self::Copy => large_gbps(size, n, true),
        }
    }
}

/// The layout of the transfer floor's mapping: the writer's counter at 0,
/// the reader's at 128 (lines of their own), then [`CAPACITY`] buffers of
/// `size` bytes from the second page, 128 bytes apart (a header's worth,
/// as the channel's slots are). Buffers exactly a power of two apart made
/// the floor bimodal here: 28-31 GB/s or 42-62 GB/s at 1 MiB, run to run,
/// when the two vCPUs share a core's caches (the writer's and reader's
/// streams then meet the same cache sets); 128 bytes apart, 56-59 GB/s.
fn floor_layout(size: usize) -> (usize, usize) {
    let stride = size + 128;
    (stride, (4096 + CAPACITY * stride).div_ceil(4096) * 4096)
}

/// The transfer floor, in GB/s: `n` messages of `size` bytes written in
/// place (filled, as the zero-copy sender fills its slot) into one of four
/// shared buffers and read in place by the peer (every byte, as the
/// zero-copy receiver reads them), with two counters for flow control.
pub fn transfer_floor_gbps(size: usize, n: u64) -> f64 {
    let (stride, len) = floor_layout(size);
    let path = std::path::Path::new("/dev/shm").join(unique("transfer-floor"));
    let page = SharedPage::create_len(&path, len);
    // Every page touched before the peer starts, as the channel's segment
    // has its pages reserved: no first-touch faults inside the timing.
    // SAFETY: no peer yet; nothing else touches the buffers.
    unsafe { page.bytes_mut(4096, len - 4096) }.fill(0);
    let mut peer = spawn_peer(&format!("floor {} {size} {n}", path.display()));
    peer.wait_line("ready");
    let (written, read) = (page.word(0), page.word(128));
    // How far the reader was last seen: reloaded only when that is not
    // far enough.
    let mut seen_read = 0;
    let start = Instant::now();
    for i in 0..n {
        // A free buffer: the reader is done with the message CAPACITY back.
        let need = (i + 1).saturating_sub(CAPACITY as u64);
        if seen_read < need {
            seen_read = spin_until(read, need);
        }
        let k = i as usize % CAPACITY;
        // SAFETY: buffer `k` is this side's until `written` passes `i`: the
        // reader is done with it (above) and starts on it only after.
        let buf = unsafe { page.bytes_mut(4096 + k * stride, size) };
        buf.fill(i as u8);
        // Release: hands the buffer over (pairs with the reader's Acquire).
        written.store(i + 1, Ordering::Release);
    }
    peer.wait_line("done");
    let elapsed = start.elapsed();
    peer.finish();
    (n as usize * size) as f64 / elapsed.as_secs_f64() / 1e9
}

fn peer_transfer_floor(path: &str, size: usize, n: u64) {
    let (stride, len) = floor_layout(size);
    let page = SharedPage::open_len(path, len);
    let (written, read) = (page.word(0), page.word(128));
    let mut acc = 0;
    ready();
    for i in 0..n {
        spin_until(written, i + 1);
        let k = i as usize % CAPACITY;
        // SAFETY: the writer handed buffer `k` over (above) and touches it
        // again only after `read` passes `i`.
        acc ^= fold(unsafe { page.bytes(4096 + k * stride, size) });
        // Release: hands the buffer back (pairs with the writer's Acquire).
        read.store(i + 1, Ordering::Release);
    }
    std::hint::black_box(acc);
    println!("done");
}

/// `n` messages of `size` bytes from this process to a peer, in GB/s: in
/// place both ways (`copy` false) or copied in and out.
pub fn large_gbps(size: usize, n: u64, copy: bool) -> f64 {
    let addr = format!("shm:{}", unique("codec-large"));
    let chan = Builder::new(&addr)
        .unwrap()
        .spsc()
        .capacity(CAPACITY)
        .message_size(size)
        .wait_strategy(WaitStrategy::busy_poll())
        .create::<Bytes>()
        .unwrap();
    let tx = chan.sender().unwrap();
    let mode = if copy { "copy" } else { "zero-copy" };
    let mut peer = spawn_peer(&format!("large {addr} {size} {n} {mode}"));
    peer.wait_line("ready");
    let src = vec![3u8; size];
    let start = Instant::now();
    for i in 0..n {
        if copy {
            tx.send(&src).unwrap();
        } else {
            tx.send_with(|slot| {
                slot[..size].fill(i as u8);
                size
            })
            .unwrap();
        }
    }
    peer.wait_line("done");
    let elapsed = start.elapsed();
    peer.finish();
    (n as usize * size) as f64 / elapsed.as_secs_f64() / 1e9
}

fn peer_large(addr: &str, size: usize, n: u64, copy: bool) {
    let chan = Builder::new(addr)
        .unwrap()
        .wait_strategy(WaitStrategy::busy_poll())
        .open::<Bytes>()
        .unwrap();
    let rx = chan.receiver().unwrap();
    let mut private = vec![0u8; size];
    let mut acc = 0;
    ready();
    for _ in 0..n {
        let msg = rx.recv_ref().unwrap();
        if copy {
            private.copy_from_slice(&msg);
            drop(msg);
            acc ^= private[acc as usize % size] as u64;
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

/// One large message size: the medians, over the rounds kept, of each
/// variant's GB/s.
#[derive(Debug, Clone)]
pub struct LargeRow {
    /// Message size in bytes.
    pub size: usize,
    /// GB/s per variant, in [`Large::ALL`] order.
    pub gbps: [f64; 3],
    /// The floor probes' median over the rounds kept, ns.
    pub placement: f64,
    /// Rounds kept.
    pub kept: usize,
    /// Rounds made.
    pub made: usize,
    /// Whether no round kept one placement from start to end.
    pub mixed: bool,
}

impl LargeRow {
    /// GB/s of `v`.
    pub fn gbps(&self, v: Large) -> f64 {
        self.gbps[Large::ALL.iter().position(|&x| x == v).expect("a variant")]
    }
}

/// Every codec figure.
#[derive(Debug, Clone)]
pub struct Report {
    /// One row per size of [`LARGE`].
    pub large: Vec<LargeRow>,
    /// (trust, orders per second), medians of the runs.
    pub orders: Vec<(&'static str, f64)>,
    /// Whether the two processes were pinned to different CPUs.
    pub pinned: bool,
    /// The cache-line ping-pong round trip (p50, ns) around the orders.
    pub floor_ns: f64,
}

/// Measures one large size: `runs` rounds kept of the three variants,
/// each moving `bytes` bytes.
fn large_row(size: usize, runs: usize, bytes: f64, progress: &mut impl FnMut(&str)) -> LargeRow {
    let n = ((bytes / size as f64) as u64).max(16);
    let (rounds, made, mixed) = rotated_rounds(
        Large::ALL.len(),
        runs,
        || floor(2_000).p50,
        |i, r| {
            let v = Large::ALL[i];
            progress(&format!(
                "{}, round {}: {}",
                crate::transports::human_size(size),
                r + 1,
                v.label().0
            ));
            v.run(size, n)
        },
    );
    LargeRow {
        size,
        gbps: std::array::from_fn(|i| median(rounds.iter().map(|r| r.round[i]).collect())),
        placement: median(rounds.iter().map(|r| r.floor).collect()),
        kept: rounds.len(),
        made,
        mixed,
    }
}

/// Runs every codec figure: `runs` rounds kept per large size, `runs`
/// interleaved runs of the orders; `scale` multiplies the work.
pub fn measure(runs: usize, scale: f64, mut progress: impl FnMut(&str)) -> Report {
    let runs = runs.max(1);
    let pinned = pin_to_cpu(0);
    let large = LARGE
        .iter()
        .map(|&size| large_row(size, runs, 4e9 * scale, &mut progress))
        .collect();
    let orders = ((20_000_000.0 * scale) as u64).max(10_000);
    let trusts = ["validate", "hostile", "unchecked"];
    let mut per_trust = vec![Vec::new(); trusts.len()];
    let mut floors = Vec::new();
    for run in 1..=runs {
        progress(&format!("run {run}/{runs}: floor (cache-line ping-pong)"));
        floors.push(floor(20_000).p50);
        for (i, trust) in trusts.iter().enumerate() {
            progress(&format!("run {run}/{runs}: rkyv orders, {trust}"));
            per_trust[i].push(orders_per_s(orders, trust));
        }
    }
    floors.push(floor(20_000).p50);
    unpin();
    Report {
        large,
        orders: trusts
            .into_iter()
            .zip(per_trust.into_iter().map(median))
            .collect(),
        pinned,
        floor_ns: median(floors),
    }
}

/// Formats a report with the goals beside each figure.
pub fn report_table(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = String::from(
        "large messages, cross-process, capacity 4    GB/s   vs transfer floor (goal) | floor probe ns, rounds kept/made\n",
    );
    for row in &r.large {
        for v in Large::ALL {
            let (label, goal) = v.label();
            let size = if v == Large::Floor {
                crate::transports::human_size(row.size)
            } else {
                String::new()
            };
            let _ = write!(out, "{size:>7} {label:<33}{:>8.2}", row.gbps(v));
            match goal {
                Some(goal) => {
                    let _ = writeln!(
                        out,
                        "   {:>5.2}x (>= {goal}x)",
                        row.gbps(v) / row.gbps(Large::Floor)
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "{:>29} {:.0}, {}",
                        "|",
                        row.placement,
                        crate::kept_text(row.kept, row.made, row.mixed)
                    );
                }
            }
        }
    }
    if r.large.iter().any(|row| row.mixed) {
        out.push_str(crate::MIXED_NOTE);
    }
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
        let _ = writeln!(
            out,
            "{trust:<31}{:>8.2}{:>9.1}{:>10.2}x{goal}",
            rate / 1e6,
            1e9 / rate,
            rate / unchecked
        );
    }
    let _ = writeln!(
        out,
        "(orders: cache-line ping-pong {:.0} ns round trip, median of the probes around them)",
        r.floor_ns
    );
    if !r.pinned {
        out.push_str("(not pinned: fewer than 2 CPUs or affinity refused)\n");
    }
    out
}

/// Measures the codec figures and returns the table to print (what
/// `shmlane bench --only codec` shows).
pub fn measure_and_report(runs: usize, scale: f64, progress: impl FnMut(&str)) -> String {
    report_table(&measure(runs, scale, progress))
}
