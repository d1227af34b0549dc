//! `shmlane bench --peers`: round trips between two processes pinned to
//! CPUs 0 and 1, by message size, through
//!
//! - the floor: a bare cache-line ping-pong (a flag flipped each way);
//! - the floor with the payload: each side copies `size` bytes into a
//!   shared buffer before flipping the flag, and the other copies them all
//!   out after (the same bytes between the same cores, nothing else);
//! - the same with two flags, one each way (`floor2+copy`): the shape of
//!   any round trip through two channels, whose two rings are two lines;
//! - shmlane: two SPSC `shm:` channels of `[u8; size]` (Pod) of 2 slots,
//!   the shape of a request/response exchange (one message in flight; the
//!   library's own services use one slot) and of iceoryx2's subscriber
//!   buffer of one: busy-poll and the default wait strategy, each side
//!   receiving the whole value and sending it back; busy-poll in place
//!   (`send_with` copies the payload into the slot, `recv_ref` lends it
//!   and the receiver copies it out once: the floor's copies, through the
//!   channel); and busy-poll on channels of 64 slots. A ping-pong writes
//!   the next slot each time, so 64 slots of 1 KiB or 4 KiB are 64 or
//!   256 KiB per direction cycled through the caches, where two slots stay
//!   hot;
//! - iceoryx2 0.10 (with the `iceoryx2` feature): two publish/subscribe
//!   services of `[u8]` slices configured as iceoryx2's own benchmark
//!   configures them (history 0, a subscriber buffer of one, safe
//!   overflow, `loan_slice_uninit`, busy-polling `receive`); each side
//!   copies the payload out of the sample and into the next loan, as the
//!   Pod channel does.
//!
//! Each round runs every variant once, in an order that rotates from round
//! to round, bracketed by floor probes; a round whose placement changed
//! (the floor moved by more than half: the VM's vCPUs stopped or started
//! being SMT siblings) is dropped and made again, up to three times the
//! rounds asked for, and a row keeps the rounds of the placement most of
//! them had: ratios only between runs on the same hardware.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use shmlane::ipc::Builder;
use shmlane::WaitStrategy;

use crate::ipc::{floor, median_f64, Latency, Peer, Samples, SharedPage};
use crate::rotated_rounds;

/// The message sizes of the table.
pub const SIZES: [usize; 4] = [8, 64, 1024, 4096];

/// One variant of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// The bare cache-line ping-pong.
    Floor,
    /// The ping-pong moving the payload both ways.
    FloorCopy,
    /// As `FloorCopy`, with one flag each way.
    Floor2Copy,
    /// shmlane's SPSC channel, busy-poll.
    Busy,
    /// shmlane's SPSC channel, the default wait strategy.
    Default,
    /// shmlane's SPSC channel, busy-poll, written and read in place.
    InPlace,
    /// shmlane's SPSC channel of 64 slots, busy-poll.
    Busy64,
    /// iceoryx2's publish/subscribe.
    Iceoryx2,
}

impl Variant {
    /// Every variant this build can run.
    pub fn all() -> Vec<Self> {
        let mut v = vec![
            Self::Floor,
            Self::FloorCopy,
            Self::Floor2Copy,
            Self::Busy,
            Self::Default,
            Self::InPlace,
            Self::Busy64,
        ];
        if cfg!(feature = "iceoryx2") {
            v.push(Self::Iceoryx2);
        }
        v
    }

    /// The column name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Floor => "floor",
            Self::FloorCopy => "floor+copy",
            Self::Floor2Copy => "floor2+copy",
            Self::Busy => "shmlane busy",
            Self::Default => "shmlane default",
            Self::InPlace => "shmlane in place",
            Self::Busy64 => "busy, 64 slots",
            Self::Iceoryx2 => "iceoryx2",
        }
    }

    fn run(self, size: usize, iters: u64) -> Latency {
        match self {
            Self::Floor => floor(iters),
            Self::FloorCopy => floor_copy(size, iters, false),
            Self::Floor2Copy => floor_copy(size, iters, true),
            Self::Busy => shmlane(size, iters, Mode::Busy),
            Self::Default => shmlane(size, iters, Mode::Default),
            Self::InPlace => shmlane(size, iters, Mode::InPlace),
            Self::Busy64 => shmlane(size, iters, Mode::Busy64),
            Self::Iceoryx2 => iceoryx2(size, iters),
        }
    }
}

/// One size: the medians over the rounds kept of each variant's p50 and
/// p99.9.
#[derive(Debug, Clone)]
pub struct PeerRow {
    /// Message size in bytes.
    pub size: usize,
    /// (variant, median p50, median p99.9), ns.
    pub cells: Vec<(Variant, f64, f64)>,
    /// The floor probes' median over the rounds kept, ns.
    pub placement: f64,
    /// Rounds kept and made.
    pub kept: usize,
    /// Rounds made.
    pub made: usize,
    /// Whether no round kept one placement from start to end, so that the
    /// rounds kept are all of them, on mixed placements.
    pub mixed: bool,
}

impl PeerRow {
    /// The p50 of `v`, if it ran.
    pub fn p50(&self, v: Variant) -> Option<f64> {
        self.cells.iter().find(|c| c.0 == v).map(|c| c.1)
    }
}

/// Measures every size in `sizes`: `runs` rounds kept per row of
/// `iters` round trips per variant. `progress` hears each step.
pub fn measure(
    sizes: &[usize],
    runs: usize,
    iters: u64,
    mut progress: impl FnMut(&str),
) -> Vec<PeerRow> {
    let variants = Variant::all();
    let runs = runs.max(1);
    // This side on CPU 0; every peer pins itself to CPU 1.
    crate::ipc::pin_to_cpu(0);
    let rows = sizes
        .iter()
        .map(|&size| {
            let (rounds, made, mixed) = rotated_rounds(
                variants.len(),
                runs,
                || floor(2_000).p50,
                |i, r| {
                    progress(&format!(
                        "{size} B, round {}: {}",
                        r + 1,
                        variants[i].name()
                    ));
                    variants[i].run(size, iters)
                },
            );
            let med = median_f64;
            let cells = variants
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    (
                        v,
                        med(rounds.iter().map(|r| r.round[i].p50).collect()),
                        med(rounds.iter().map(|r| r.round[i].p999).collect()),
                    )
                })
                .collect();
            PeerRow {
                size,
                cells,
                placement: med(rounds.iter().map(|r| r.floor).collect()),
                kept: rounds.len(),
                made,
                mixed,
            }
        })
        .collect();
    crate::ipc::unpin();
    rows
}

/// The table: p50 (p99.9) per variant, then shmlane busy-poll as a
/// multiple of the floor with the payload and of iceoryx2.
pub fn table(rows: &[PeerRow]) -> String {
    use std::fmt::Write as _;
    let variants = Variant::all();
    let mut out = String::from("round trip ns, p50 (p99.9)");
    for v in &variants {
        let _ = write!(out, " | {}", v.name());
    }
    out.push_str(" | busy/floor+copy | busy/floor2+copy | 64 slots/floor+copy");
    if variants.contains(&Variant::Iceoryx2) {
        out.push_str(" | busy/iceoryx2");
    }
    out.push_str(" | floor probe ns, rounds kept/made\n");
    for r in rows {
        let _ = write!(out, "{:>26}", crate::transports::human_size(r.size));
        for c in &r.cells {
            let _ = write!(out, " | {:>6.0} ({:.0})", c.1, c.2);
        }
        let busy = r.p50(Variant::Busy).unwrap_or(f64::NAN);
        let p50 = |v| r.p50(v).unwrap_or(f64::NAN);
        let floor_copy = p50(Variant::FloorCopy);
        let _ = write!(
            out,
            " | {:.2}x | {:.2}x | {:.2}x",
            busy / floor_copy,
            busy / p50(Variant::Floor2Copy),
            p50(Variant::Busy64) / floor_copy
        );
        if let Some(ice) = r.p50(Variant::Iceoryx2) {
            let _ = write!(out, " | {:.2}x", busy / ice);
        }
        let _ = writeln!(
            out,
            " | {:.0}, {}",
            r.placement,
            crate::kept_text(r.kept, r.made, r.mixed)
        );
    }
    out.push_str(
        "(shmlane's channels hold 2 slots, what one message in flight needs; \
         `busy, 64 slots` shows what a larger ring costs a ping-pong)\n",
    );
    if rows.iter().any(|r| r.mixed) {
        out.push_str(crate::MIXED_NOTE);
    }
    if !variants.contains(&Variant::Iceoryx2) {
        out.push_str(
            "(iceoryx2 not built in: cargo run --release -p shmlane-cli --features iceoryx2 -- bench --peers)\n",
        );
    }
    out
}

/// Runs a peer command of this module (`peers VARIANT ...`).
pub(crate) fn run_peer(args: &[&str]) {
    // A peer spins on its CPU: it must not outlive a bench killed midway.
    let _ = shmlane_sys::process::die_with_parent();
    match args {
        ["floor_copy", path, size, iters, two] => {
            peer_floor_copy(
                path,
                size.parse().unwrap(),
                iters.parse().unwrap(),
                *two == "2",
            );
        }
        ["shmlane", ping, pong, size, iters, busy] => {
            let (size, iters) = (size.parse().unwrap(), iters.parse().unwrap());
            let mode = Mode::parse(busy);
            match size {
                8 => peer_shmlane::<8>(ping, pong, iters, mode),
                64 => peer_shmlane::<64>(ping, pong, iters, mode),
                1024 => peer_shmlane::<1024>(ping, pong, iters, mode),
                4096 => peer_shmlane::<4096>(ping, pong, iters, mode),
                other => panic!("no Pod channel of {other} bytes in this bench"),
            }
        }
        #[cfg(feature = "iceoryx2")]
        ["iceoryx2", ping, pong, size] => ice::peer(ping, pong, size.parse().unwrap()),
        other => panic!("unknown peers command {other:?}"),
    }
}

/// The payload buffers of [`floor_copy`]: the flags' lines (the second
/// used by `floor2+copy` only), then one buffer each way, each on lines of
/// its own.
fn copy_layout(size: usize) -> (usize, usize, usize) {
    let round = |n: usize| n.div_ceil(128) * 128;
    let (a, b) = (2 * 128, 2 * 128 + round(size));
    let len = (b + round(size)).div_ceil(4096) * 4096;
    (a, b, len)
}

/// The flag each way: one word for both, or one line each (`two`).
fn copy_flags(page: &SharedPage, two: bool) -> (&AtomicU64, &AtomicU64) {
    (page.counter(), page.word(if two { 128 } else { 0 }))
}

fn floor_copy(size: usize, iters: u64, two: bool) -> Latency {
    let (a, b, len) = copy_layout(size);
    let path = std::path::Path::new("/dev/shm").join(crate::ipc::unique("floorcopy"));
    let page = SharedPage::create_len(&path, len);
    let mut peer = Peer::spawn(&format!(
        "peers floor_copy {} {size} {iters} {}",
        path.display(),
        if two { 2 } else { 1 }
    ));
    peer.wait_line("ready");
    let (ping, pong) = copy_flags(&page, two);
    let mut local = vec![0u8; size];
    let mut samples = Samples::new();
    for i in 0..iters {
        let t = Instant::now();
        local[..8.min(size)].copy_from_slice(&i.to_le_bytes()[..8.min(size)]);
        page.write(a, &local);
        // Release: pairs with the peer's Acquire in `spin_until`.
        ping.store(2 * i + 1, Ordering::Release);
        crate::ipc::spin_until(pong, 2 * i + 2);
        page.read(b, &mut local);
        std::hint::black_box(&local);
        samples.record(t.elapsed());
    }
    peer.finish();
    samples.latency()
}

fn peer_floor_copy(path: &str, size: usize, iters: u64, two: bool) {
    let (a, b, len) = copy_layout(size);
    let page = SharedPage::open_len(path, len);
    let (ping, pong) = copy_flags(&page, two);
    let mut local = vec![0u8; size];
    println!("ready");
    for i in 0..iters {
        crate::ipc::spin_until(ping, 2 * i + 1);
        page.read(a, &mut local);
        page.write(b, &local);
        // Release: pairs with the parent's Acquire in `spin_until`.
        pong.store(2 * i + 2, Ordering::Release);
    }
}

/// How the shmlane variants wait and copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Busy-poll; `send` and `recv` by value.
    Busy,
    /// The default wait strategy; `send` and `recv` by value.
    Default,
    /// Busy-poll; `send_with` and `recv_ref`.
    InPlace,
    /// Busy-poll, by value, on channels of 64 slots.
    Busy64,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Self::Busy => "busy",
            Self::Default => "default",
            Self::InPlace => "inplace",
            Self::Busy64 => "busy64",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "busy" => Self::Busy,
            "default" => Self::Default,
            "busy64" => Self::Busy64,
            _ => Self::InPlace,
        }
    }

    fn strategy(self) -> WaitStrategy {
        match self {
            Self::Default => WaitStrategy::default(),
            Self::Busy | Self::InPlace | Self::Busy64 => WaitStrategy::busy_poll(),
        }
    }

    /// Slots per channel (the peer opens what was made).
    fn capacity(self) -> usize {
        match self {
            Self::Busy64 => 64,
            _ => 2,
        }
    }
}

fn shmlane(size: usize, iters: u64, mode: Mode) -> Latency {
    match size {
        8 => shmlane_n::<8>(iters, mode),
        64 => shmlane_n::<64>(iters, mode),
        1024 => shmlane_n::<1024>(iters, mode),
        4096 => shmlane_n::<4096>(iters, mode),
        other => panic!("no Pod channel of {other} bytes in this bench"),
    }
}

fn shmlane_n<const N: usize>(iters: u64, mode: Mode) -> Latency
where
    [u8; N]: bytemuck::Pod,
{
    let (ping, pong) = (
        format!("shm:{}", crate::ipc::unique("pping")),
        format!("shm:{}", crate::ipc::unique("ppong")),
    );
    let make = |addr: &str| {
        Builder::new(addr)
            .unwrap()
            .spsc()
            .capacity(mode.capacity())
            .wait_strategy(mode.strategy())
            .create::<[u8; N]>()
            .unwrap()
    };
    let (ping_chan, pong_chan) = (make(&ping), make(&pong));
    let tx = ping_chan.sender().unwrap();
    let rx = pong_chan.receiver().unwrap();
    let mut peer = Peer::spawn(&format!(
        "peers shmlane {ping} {pong} {N} {iters} {}",
        mode.name()
    ));
    peer.wait_line("ready");
    let mut msg = [0u8; N];
    let mut samples = Samples::new();
    for i in 0..iters {
        let t = Instant::now();
        msg[..8.min(N)].copy_from_slice(&i.to_le_bytes()[..8.min(N)]);
        if mode == Mode::InPlace {
            tx.send_with(|slot| slot.copy_from_slice(&msg)).unwrap();
            msg.copy_from_slice(&*rx.recv_ref().unwrap());
        } else {
            tx.send(msg).unwrap();
            msg = rx.recv().unwrap();
        }
        std::hint::black_box(&msg);
        samples.record(t.elapsed());
    }
    drop(tx);
    peer.finish();
    samples.latency()
}

fn peer_shmlane<const N: usize>(ping: &str, pong: &str, iters: u64, mode: Mode)
where
    [u8; N]: bytemuck::Pod,
{
    let open = |addr: &str| {
        Builder::new(addr)
            .unwrap()
            .wait_strategy(mode.strategy())
            .open::<[u8; N]>()
            .unwrap()
    };
    let (ping, pong) = (open(ping), open(pong));
    let rx = ping.receiver().unwrap();
    let tx = pong.sender().unwrap();
    println!("ready");
    let mut local = [0u8; N];
    for _ in 0..iters {
        if mode == Mode::InPlace {
            local.copy_from_slice(&*rx.recv_ref().unwrap());
            tx.send_with(|slot| slot.copy_from_slice(&local)).unwrap();
        } else {
            let v = rx.recv().unwrap();
            tx.send(v).unwrap();
        }
    }
}

#[cfg(not(feature = "iceoryx2"))]
fn iceoryx2(_size: usize, _iters: u64) -> Latency {
    unreachable!("iceoryx2 rows need the `iceoryx2` feature")
}

#[cfg(feature = "iceoryx2")]
fn iceoryx2(size: usize, iters: u64) -> Latency {
    ice::latency(size, iters)
}

#[cfg(feature = "iceoryx2")]
mod ice {
    use super::*;
    use iceoryx2::prelude::*;

    type Pub = iceoryx2::port::publisher::Publisher<ipc::Service, [u8], ()>;
    type Sub = iceoryx2::port::subscriber::Subscriber<ipc::Service, [u8], ()>;

    /// The sequence number that ends the peer's loop.
    const STOP: u64 = u64::MAX;

    /// A publisher on `send_to` and a subscriber on `recv_from`, as
    /// iceoryx2's publish-subscribe benchmark configures its services.
    fn ports(node: &Node<ipc::Service>, send_to: &str, recv_from: &str, size: usize) -> (Pub, Sub) {
        let service = |name: &str| {
            node.service_builder(&name.try_into().unwrap())
                .publish_subscribe::<[u8]>()
                .max_publishers(1)
                .max_subscribers(1)
                .history_size(0)
                .subscriber_max_buffer_size(1)
                .enable_safe_overflow(true)
                .open_or_create()
                .unwrap()
        };
        let publisher = service(send_to)
            .publisher_builder()
            .initial_max_slice_len(size)
            .create()
            .unwrap();
        let subscriber = service(recv_from).subscriber_builder().create().unwrap();
        (publisher, subscriber)
    }

    fn seq(payload: &[u8]) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&payload[..8]);
        u64::from_le_bytes(b)
    }

    /// Sends `local` (its first 8 bytes set to `n`).
    fn send(publisher: &Pub, local: &mut [u8], n: u64) {
        local[..8].copy_from_slice(&n.to_le_bytes());
        let sample = publisher.loan_slice_uninit(local.len()).unwrap();
        sample.write_from_slice(local).send().unwrap();
    }

    /// Waits for a sample, copies it into `local` and returns its number.
    ///
    /// # Panics
    ///
    /// After [`HANG`] without one: the other side is gone.
    fn recv(subscriber: &Sub, local: &mut [u8]) -> u64 {
        let mut spins = 0u32;
        let mut since: Option<Instant> = None;
        loop {
            if let Some(sample) = subscriber.receive().unwrap() {
                local.copy_from_slice(sample.payload());
                return seq(local);
            }
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins % (1 << 16) == 0 {
                // Now and then: give the CPU back (a peer on the same CPU
                // must run) and look at the clock.
                std::thread::yield_now();
                let t = *since.get_or_insert_with(Instant::now);
                assert!(t.elapsed() < HANG, "iceoryx2 bench: no sample for {HANG:?}");
            }
        }
    }

    /// How long a side waits for the other before it gives up.
    const HANG: std::time::Duration = std::time::Duration::from_secs(10);

    pub(super) fn latency(size: usize, iters: u64) -> Latency {
        assert!(size >= 8, "iceoryx2 rows carry a sequence number");
        // Its warning that no config file was found, once per node, would
        // interleave with the table.
        set_log_level_from_env_or(LogLevel::Error);
        let (ping, pong) = (crate::ipc::unique("iping"), crate::ipc::unique("ipong"));
        let node = NodeBuilder::new().create::<ipc::Service>().unwrap();
        let (publisher, subscriber) = ports(&node, &ping, &pong, size);
        let mut peer = Peer::spawn(&format!("peers iceoryx2 {ping} {pong} {size}"));
        peer.wait_line("ready");
        let mut local = vec![0u8; size];
        // Connect: with history 0 a sample sent before the other side's
        // subscriber is connected is lost, so say hello until answered.
        let began = Instant::now();
        'hello: loop {
            assert!(
                began.elapsed() < HANG,
                "iceoryx2 bench: the peer did not answer in {HANG:?}"
            );
            send(&publisher, &mut local, STOP - 1);
            let t = Instant::now();
            while t.elapsed().as_millis() < 2 {
                if let Some(sample) = subscriber.receive().unwrap() {
                    if seq(sample.payload()) == STOP - 1 {
                        break 'hello;
                    }
                }
            }
        }
        let mut samples = Samples::new();
        for i in 0..iters {
            let t = Instant::now();
            send(&publisher, &mut local, i);
            // A late answer to a repeated hello is passed over.
            while recv(&subscriber, &mut local) != i {}
            std::hint::black_box(&local);
            samples.record(t.elapsed());
        }
        send(&publisher, &mut local, STOP);
        peer.finish();
        samples.latency()
    }

    pub(super) fn peer(ping: &str, pong: &str, size: usize) {
        set_log_level_from_env_or(LogLevel::Error);
        let node = NodeBuilder::new().create::<ipc::Service>().unwrap();
        let (publisher, subscriber) = ports(&node, pong, ping, size);
        let mut local = vec![0u8; size];
        println!("ready");
        loop {
            let n = recv(&subscriber, &mut local);
            if n == STOP {
                return;
            }
            send(&publisher, &mut local, n);
        }
    }
}
