//! Cross-process measurements: two processes pinned to different cores.
//!
//! - the floor: a bare cache-line ping-pong (one atomic counter alone on
//!   its line of a shared mapping), the best any channel could do;
//! - ping-pong round trips of 8-byte messages through two SPSC channels,
//!   in busy-poll mode and with the default wait strategy;
//! - the same 8-byte round trip, busy-poll, through two MPMC channels, and
//!   one-way 8-byte MPMC throughput, one `send` per message;
//! - one-way throughput of 8- and 64-byte messages, one `send` per message
//!   and in batches.
//!
//! The peer is this same executable, re-run with `SHMLANE_BENCH_PEER` set:
//! every binary that measures must call [`maybe_run_peer`] first thing.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use shmlane::ipc::Builder;
use shmlane::WaitStrategy;

pub(crate) const PEER_ENV: &str = "SHMLANE_BENCH_PEER";

/// Runs the peer side and exits, if this process was started as a peer.
pub fn maybe_run_peer() {
    crate::codec::maybe_run_peer();
    let Ok(args) = std::env::var(PEER_ENV) else {
        return;
    };
    let args: Vec<&str> = args.split(' ').collect();
    pin_to_cpu(1);
    match args.as_slice() {
        ["floor", path, iters] => peer_floor(path, iters.parse().unwrap()),
        ["pingpong", ping, pong, iters, busy] => {
            peer_pingpong(ping, pong, iters.parse().unwrap(), *busy == "busy")
        }
        ["sink", addr, n, "8"] => peer_sink::<u64>(addr, n.parse().unwrap()),
        ["sink", addr, n, "64"] => peer_sink::<[u64; 8]>(addr, n.parse().unwrap()),
        ["transport", kind, size] => crate::transports::run_peer(kind, size),
        ["peers", rest @ ..] => crate::peers::run_peer(rest),
        other => panic!("unknown bench peer command {other:?}"),
    }
    std::process::exit(0);
}

/// Pins this process to one CPU (best effort: a machine with one CPU, or a
/// container that forbids it, runs unpinned). CPUs are counted online,
/// whatever the affinity mask says (a child inherits its parent's pinned
/// mask, so `available_parallelism` would answer 1 there).
pub fn pin_to_cpu(cpu: usize) -> bool {
    let ncpu = shmlane_sys::process::online_cpus();
    ncpu >= 2 && shmlane_sys::process::pin_to_cpu(cpu % ncpu).is_ok()
}

/// Lets this process run on every CPU again.
pub fn unpin() {
    let _ = shmlane_sys::process::unpin(shmlane_sys::process::online_cpus());
}

/// A peer process, killed if still running when dropped.
pub(crate) struct Peer(Child);

impl Peer {
    pub(crate) fn spawn(args: &str) -> Self {
        Self::spawn_as(PEER_ENV, args)
    }

    /// This executable re-run with `env` set to `args`.
    pub(crate) fn spawn_as(env: &str, args: &str) -> Self {
        let exe = std::env::current_exe().expect("own executable");
        let child = Command::new(exe)
            .env(env, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn bench peer");
        Self(child)
    }

    /// Waits for the peer to print `word` alone on a line; returns the
    /// lines before it.
    pub(crate) fn wait_line(&mut self, word: &str) -> Vec<String> {
        let out = self.0.stdout.as_mut().expect("piped");
        let mut reader = BufReader::new(out);
        let mut seen = Vec::new();
        loop {
            let mut line = String::new();
            let n = reader.read_line(&mut line).expect("peer stdout");
            assert!(n > 0, "bench peer exited before `{word}`");
            if line.trim() == word {
                return seen;
            }
            seen.push(line.trim().to_owned());
        }
    }

    pub(crate) fn finish(mut self) {
        let status = self.0.wait().expect("peer exit");
        assert!(status.success(), "bench peer failed: {status}");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A name no other bench, process or call uses, for the segments, queues
/// and paths every bench module creates: `shmlane-bench-TAG-PID-N`.
pub fn unique(tag: &str) -> String {
    use std::sync::atomic::AtomicU32;
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "shmlane-bench-{tag}-{}-{}",
        std::process::id(),
        // Relaxed: only uniqueness matters.
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A System V key no other bench, process or call uses (in practice): a
/// hash of a [`unique`] name and the clock, 31 bits, never 0.
pub fn unique_key() -> i32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in unique("key").bytes().chain(nanos.to_le_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    ((h ^ (h >> 31)) as i32 & 0x7fff_ffff).max(1)
}

/// Round-trip latency percentiles, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
}

/// Round-trip times as they are measured, in an HDR histogram: three
/// significant digits (0.1% resolution) from 1 ns to a minute (longer
/// times count as a minute; every operation has a 10 s hang guard), in
/// about 200 KiB however many round trips, instead of a vector of every
/// sample to sort.
pub(crate) struct Samples(hdrhistogram::Histogram<u64>);

impl Samples {
    pub(crate) fn new() -> Self {
        const MINUTE_NS: u64 = 60_000_000_000;
        Self(
            hdrhistogram::Histogram::new_with_bounds(1, MINUTE_NS, 3)
                .expect("1 ns to a minute at 3 significant digits are valid bounds"),
        )
    }

    /// Records one time.
    pub(crate) fn record(&mut self, took: std::time::Duration) {
        // Clamped into the bounds: a 0 ns reading (a coarse clock) counts
        // as 1 ns.
        self.0
            .saturating_record(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1));
    }

    /// Times recorded.
    pub(crate) fn len(&self) -> u64 {
        self.0.len()
    }

    /// p50, p99 and p99.9 of what was recorded.
    pub(crate) fn latency(&self) -> Latency {
        let at = |q: f64| self.0.value_at_quantile(q) as f64;
        Latency {
            p50: at(0.5),
            p99: at(0.99),
            p999: at(0.999),
        }
    }
}

/// A shared mapping in /dev/shm (one page unless told), unlinked when
/// dropped.
pub(crate) struct SharedPage {
    map: memmap2::MmapRaw,
    path: Option<std::path::PathBuf>,
}

impl SharedPage {
    fn create(path: &std::path::Path) -> Self {
        Self::create_len(path, 4096)
    }

    /// Creates `len` bytes (a multiple of the page size) at `path`.
    pub(crate) fn create_len(path: &std::path::Path, len: usize) -> Self {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .expect("create floor page");
        f.set_len(len as u64).expect("size floor page");
        let map = memmap2::MmapOptions::new()
            .len(len)
            .map_raw(&f)
            .expect("map floor page");
        Self {
            map,
            path: Some(path.to_owned()),
        }
    }

    fn open(path: &str) -> Self {
        Self::open_len(path, 4096)
    }

    /// Opens the `len` bytes another process created.
    pub(crate) fn open_len(path: &str, len: usize) -> Self {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .expect("open page");
        let map = memmap2::MmapOptions::new()
            .len(len)
            .map_raw(&f)
            .expect("map floor page");
        Self { map, path: None }
    }

    /// Copies `from` into the mapping at `offset`.
    ///
    /// # Panics
    ///
    /// If it does not fit.
    pub(crate) fn write(&self, offset: usize, from: &[u8]) {
        assert!(offset >= 8 && offset + from.len() <= self.map.len());
        // SAFETY: in bounds (checked), past the counter; the other process
        // touches these bytes only between the flag flips that hand them
        // over.
        unsafe {
            std::ptr::copy_nonoverlapping(
                from.as_ptr(),
                self.map.as_mut_ptr().add(offset),
                from.len(),
            );
        }
    }

    /// Copies the mapping at `offset` into `to`.
    ///
    /// # Panics
    ///
    /// If it does not fit.
    pub(crate) fn read(&self, offset: usize, to: &mut [u8]) {
        assert!(offset >= 8 && offset + to.len() <= self.map.len());
        // SAFETY: as in `write`.
        unsafe {
            std::ptr::copy_nonoverlapping(self.map.as_ptr().add(offset), to.as_mut_ptr(), to.len());
        }
    }

    /// The counter: the first word of the page, alone on its cache line.
    pub(crate) fn counter(&self) -> &AtomicU64 {
        self.word(0)
    }

    /// The 8-byte word at `offset` as an atomic.
    ///
    /// # Panics
    ///
    /// If `offset` is not 8-aligned or the word does not fit.
    pub(crate) fn word(&self, offset: usize) -> &AtomicU64 {
        assert!(offset % 8 == 0 && offset + 8 <= self.map.len());
        // SAFETY: in bounds and aligned (checked; the mapping is
        // page-aligned), lives as long as `self`; every user of this page
        // accesses the word only through this atomic, in both processes.
        unsafe { &*self.map.as_ptr().add(offset).cast::<AtomicU64>() }
    }

    /// `len` bytes at `offset`, for writing in place.
    ///
    /// # Panics
    ///
    /// If they do not lie past the first page (the counters' page) and
    /// inside the mapping.
    ///
    /// # Safety
    ///
    /// Nothing else (in this process or the peer) accesses these bytes
    /// while the slice lives: the protocol has handed them to this side.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn bytes_mut(&self, offset: usize, len: usize) -> &mut [u8] {
        self.check_bytes(offset, len);
        // SAFETY: in bounds (checked); exclusive by the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.map.as_mut_ptr().add(offset), len) }
    }

    /// `len` bytes at `offset`, for reading in place.
    ///
    /// # Panics
    ///
    /// As [`bytes_mut`](Self::bytes_mut).
    ///
    /// # Safety
    ///
    /// Nothing writes these bytes while the slice lives: the protocol has
    /// handed them to this side.
    pub(crate) unsafe fn bytes(&self, offset: usize, len: usize) -> &[u8] {
        self.check_bytes(offset, len);
        // SAFETY: in bounds (checked); not written meanwhile by the
        // caller's contract.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(offset), len) }
    }

    /// Byte ranges start past the first page (the counters' lines, which
    /// are only ever accessed as atomics) and end inside the mapping.
    fn check_bytes(&self, offset: usize, len: usize) {
        assert!(
            offset >= 4096
                && offset
                    .checked_add(len)
                    .is_some_and(|end| end <= self.map.len()),
            "{len} bytes at {offset} are not past the counters and inside the mapping"
        );
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        if let Some(p) = &self.path {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Waits until `counter` (which only grows) reaches at least `value`,
/// spinning, with a yield now and then (a peer that is not running would
/// otherwise be starved on a shared core); returns the value seen, which
/// the Acquire load that saw it orders.
///
/// # Panics
///
/// After 10 s without reaching it: the peer died or stopped, and a bench
/// must not hang.
pub(crate) fn spin_until(counter: &AtomicU64, value: u64) -> u64 {
    let mut spins = 0u32;
    let mut since: Option<Instant> = None;
    loop {
        // Acquire: pairs with the peer's Release store of what is seen.
        let seen = counter.load(Ordering::Acquire);
        if seen >= value {
            return seen;
        }
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins % (1 << 16) == 0 {
            std::thread::yield_now();
            let start = *since.get_or_insert_with(Instant::now);
            assert!(
                start.elapsed() < std::time::Duration::from_secs(10),
                "bench peer stopped: no progress in 10 s"
            );
        }
    }
}

fn peer_floor(path: &str, iters: u64) {
    let page = SharedPage::open(path);
    let c = page.counter();
    println!("ready");
    for i in 0..iters {
        spin_until(c, 2 * i + 1);
        // Release: pairs with the parent's Acquire in `spin_until`.
        c.store(2 * i + 2, Ordering::Release);
    }
}

/// The floor: a cache-line ping-pong between two pinned processes.
pub fn floor(iters: u64) -> Latency {
    let path = std::path::Path::new("/dev/shm").join(unique("floor"));
    let page = SharedPage::create(&path);
    let mut peer = Peer::spawn(&format!("floor {} {iters}", path.display()));
    peer.wait_line("ready");
    let c = page.counter();
    let mut samples = Samples::new();
    for i in 0..iters {
        let t = Instant::now();
        // Release: pairs with the peer's Acquire in `spin_until`.
        c.store(2 * i + 1, Ordering::Release);
        spin_until(c, 2 * i + 2);
        samples.record(t.elapsed());
    }
    peer.finish();
    samples.latency()
}

fn strategy(busy: bool) -> WaitStrategy {
    if busy {
        WaitStrategy::busy_poll()
    } else {
        WaitStrategy::default()
    }
}

fn peer_pingpong(ping: &str, pong: &str, iters: u64, busy: bool) {
    let ping = Builder::new(ping)
        .unwrap()
        .wait_strategy(strategy(busy))
        .open::<u64>()
        .unwrap();
    let pong = Builder::new(pong)
        .unwrap()
        .wait_strategy(strategy(busy))
        .open::<u64>()
        .unwrap();
    let rx = ping.receiver().unwrap();
    let tx = pong.sender().unwrap();
    println!("ready");
    for _ in 0..iters {
        let v = rx.recv().unwrap();
        tx.send(v).unwrap();
    }
}

/// Which ring a cross-process figure goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ring {
    /// One producer, one consumer.
    Spsc,
    /// Any number of each (crash-safe: per-slot owner words).
    Mpmc,
}

fn builder_for(addr: &str, ring: Ring) -> Builder {
    let b = Builder::new(addr).unwrap();
    match ring {
        Ring::Spsc => b.spsc(),
        Ring::Mpmc => b.kind(shmlane::ipc::RingKind::Mpmc),
    }
}

/// Round trips of 8-byte messages through two SPSC channels.
pub fn pingpong(iters: u64, busy: bool) -> Latency {
    pingpong_on(iters, busy, Ring::Spsc)
}

/// Round trips of 8-byte messages through two channels of `ring`.
pub fn pingpong_on(iters: u64, busy: bool, ring: Ring) -> Latency {
    let (ping, pong) = (
        format!("shm:{}", unique("ping")),
        format!("shm:{}", unique("pong")),
    );
    let make = |addr: &str| {
        builder_for(addr, ring)
            .capacity(64)
            .wait_strategy(strategy(busy))
            .create::<u64>()
            .unwrap()
    };
    let (ping_chan, pong_chan) = (make(&ping), make(&pong));
    let tx = ping_chan.sender().unwrap();
    let rx = pong_chan.receiver().unwrap();
    let mode = if busy { "busy" } else { "default" };
    let mut peer = Peer::spawn(&format!("pingpong {ping} {pong} {iters} {mode}"));
    peer.wait_line("ready");
    let mut samples = Samples::new();
    for i in 0..iters {
        let t = Instant::now();
        tx.send(i).unwrap();
        let back = rx.recv().unwrap();
        samples.record(t.elapsed());
        debug_assert_eq!(back, i);
    }
    drop(tx);
    peer.finish();
    samples.latency()
}

fn peer_sink<T: bytemuck::Pod>(addr: &str, n: u64) {
    let chan = Builder::new(addr)
        .unwrap()
        .wait_strategy(WaitStrategy::busy_poll());
    let chan = chan.open::<T>().unwrap();
    let rx = chan.receiver().unwrap();
    let mut buf = Vec::with_capacity(4096);
    println!("ready");
    std::io::stdout().flush().unwrap();
    let mut got = 0;
    while got < n {
        buf.clear();
        got += match rx.try_recv_batch(&mut buf, 4096) {
            Ok(0) => {
                buf.push(rx.recv().unwrap());
                1
            }
            Ok(k) => k as u64,
            Err(e) => panic!("sink: {e:?}"),
        };
    }
    println!("done");
}

/// How a throughput run sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendMode {
    /// One `send` per message.
    PerMessage,
    /// `send_batch` of 256 messages.
    Batch,
}

fn throughput_of<T: bytemuck::Pod + Default>(
    n: u64,
    mode: SendMode,
    size: usize,
    ring: Ring,
) -> f64 {
    let addr = format!("shm:{}", unique("tput"));
    let chan = builder_for(&addr, ring)
        .capacity(8192)
        .wait_strategy(WaitStrategy::busy_poll())
        .create::<T>()
        .unwrap();
    let tx = chan.sender().unwrap();
    let mut peer = Peer::spawn(&format!("sink {addr} {n} {size}"));
    peer.wait_line("ready");
    let start = Instant::now();
    match mode {
        SendMode::PerMessage => {
            for _ in 0..n {
                tx.send(T::default()).unwrap();
            }
        }
        SendMode::Batch => {
            let batch = [T::default(); 256];
            let mut sent = 0;
            while sent < n {
                let k = (n - sent).min(256) as usize;
                tx.send_batch(&batch[..k]).unwrap();
                sent += k as u64;
            }
        }
    }
    peer.wait_line("done");
    let elapsed = start.elapsed();
    peer.finish();
    n as f64 / elapsed.as_secs_f64()
}

/// One-way messages per second for `size`-byte messages (8 or 64).
///
/// # Panics
///
/// For another size.
pub fn throughput(n: u64, size: usize, mode: SendMode) -> f64 {
    throughput_on(n, size, mode, Ring::Spsc)
}

/// As [`throughput`], through a channel of `ring`.
///
/// # Panics
///
/// For a size other than 8 or 64.
pub fn throughput_on(n: u64, size: usize, mode: SendMode, ring: Ring) -> f64 {
    match size {
        8 => throughput_of::<u64>(n, mode, 8, ring),
        64 => throughput_of::<[u64; 8]>(n, mode, 64, ring),
        _ => panic!("throughput is measured for 8- and 64-byte messages"),
    }
}

/// Every cross-process figure, medians of `runs` runs.
#[derive(Debug, Clone)]
pub struct Report {
    /// The bare cache-line ping-pong.
    pub floor: Latency,
    /// Ping-pong through shmlane, busy-poll.
    pub busy: Latency,
    /// Ping-pong through shmlane, default wait strategy.
    pub default: Latency,
    /// (size, mode, messages/s), SPSC.
    pub throughput: Vec<(usize, SendMode, f64)>,
    /// Ping-pong through two MPMC channels, busy-poll.
    pub mpmc_busy: Latency,
    /// 8-byte messages per second through an MPMC channel, one `send`
    /// each.
    pub mpmc_throughput: f64,
    /// Whether the two processes were pinned to different CPUs.
    pub pinned: bool,
    /// The floor probes' median over the rounds kept, ns.
    pub placement_ns: f64,
    /// Rounds kept (steady, of one placement) and made.
    pub kept: usize,
    /// Rounds made.
    pub made: usize,
    /// Whether no round kept one placement (all are kept then).
    pub mixed: bool,
}

/// One round of the cross-process section: every figure once.
struct Round {
    floor: Latency,
    busy: Latency,
    default: Latency,
    tput: Vec<f64>,
    mpmc_busy: Latency,
    mpmc_tput: f64,
}

/// The median of `v` (the mean of the middle two for an even count).
pub fn median_f64(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

fn median_latency(v: Vec<Latency>) -> Latency {
    Latency {
        p50: median_f64(v.iter().map(|l| l.p50).collect()),
        p99: median_f64(v.iter().map(|l| l.p99).collect()),
        p999: median_f64(v.iter().map(|l| l.p999).collect()),
    }
}

/// Runs every figure once per round, each between floor probes, until
/// `runs` rounds kept one placement (at most `3 * runs` rounds; see
/// `one_placement`), and takes the medians of the rounds of the
/// commoner placement. `scale` multiplies the message counts (1.0 for the
/// full run).
pub fn measure(runs: usize, scale: f64, mut progress: impl FnMut(&str)) -> Report {
    let runs = runs.max(1);
    let pinned = pin_to_cpu(0);
    let iters = ((200_000.0 * scale) as u64).max(1000);
    let n8 = ((20_000_000.0 * scale) as u64).max(10_000);
    let nbatch = ((100_000_000.0 * scale) as u64).max(10_000);
    let cases = [
        (8, SendMode::PerMessage, n8),
        (8, SendMode::Batch, nbatch),
        (64, SendMode::PerMessage, n8 / 2),
        (64, SendMode::Batch, nbatch / 4),
    ];
    let mut rounds: Vec<crate::Placed<Round>> = Vec::new();
    while crate::more_rounds(&rounds, runs) {
        let round = rounds.len() + 1;
        let mut probes = vec![floor(2_000).p50];
        let mut step = |what: &str| {
            progress(&format!("round {round}: {what}"));
        };
        let probe = |probes: &mut Vec<f64>| probes.push(floor(2_000).p50);
        step("floor");
        let floor_l = floor(iters);
        step("ping-pong busy-poll");
        let busy = pingpong(iters, true);
        probe(&mut probes);
        step("ping-pong default");
        let default = pingpong(iters, false);
        probe(&mut probes);
        let mut tput = Vec::new();
        for &(size, mode, n) in &cases {
            step(&format!("throughput {size} B {mode:?}"));
            tput.push(throughput(n, size, mode));
            probe(&mut probes);
        }
        step("MPMC ping-pong busy-poll");
        let mpmc_busy = pingpong_on(iters, true, Ring::Mpmc);
        step("MPMC throughput 8 B");
        let mpmc_tput = throughput_on(n8 / 4, 8, SendMode::PerMessage, Ring::Mpmc);
        probe(&mut probes);
        rounds.push(crate::Placed::new(
            probes,
            Round {
                floor: floor_l,
                busy,
                default,
                tput,
                mpmc_busy,
                mpmc_tput,
            },
        ));
    }
    unpin();
    let made = rounds.len();
    let (rounds, mixed) = crate::one_placement(rounds);
    let lat =
        |f: fn(&Round) -> Latency| median_latency(rounds.iter().map(|r| f(&r.round)).collect());
    Report {
        floor: lat(|r| r.floor),
        busy: lat(|r| r.busy),
        default: lat(|r| r.default),
        throughput: cases
            .iter()
            .enumerate()
            .map(|(i, &(size, mode, _))| {
                (
                    size,
                    mode,
                    median_f64(rounds.iter().map(|r| r.round.tput[i]).collect()),
                )
            })
            .collect(),
        mpmc_busy: lat(|r| r.mpmc_busy),
        mpmc_throughput: median_f64(rounds.iter().map(|r| r.round.mpmc_tput).collect()),
        pinned,
        placement_ns: median_f64(rounds.iter().map(|r| r.floor).collect()),
        kept: rounds.len(),
        made,
        mixed,
    }
}

/// Formats a report as two tables with the goals of the cross-process
/// issue beside each figure.
pub fn report_table(r: &Report) -> String {
    let mut out = String::new();
    out.push_str(
        "round trip, 8-byte messages    p50 ns    p99 ns  p99.9 ns   p50 vs floor (goal)\n",
    );
    let row = |name: &str, l: &Latency, goal: &str| {
        format!(
            "{name:<30}{:>8.0}{:>10.0}{:>10.0}   {:>5.2}x {goal}\n",
            l.p50,
            l.p99,
            l.p999,
            l.p50 / r.floor.p50
        )
    };
    out.push_str(&row("floor (cache-line ping-pong)", &r.floor, ""));
    out.push_str(&row("shmlane SPSC, busy-poll", &r.busy, "(<= 1.2x)"));
    out.push_str(&row("shmlane SPSC, default wait", &r.default, "(<= 1.5x)"));
    out.push_str(&row("shmlane MPMC, busy-poll", &r.mpmc_busy, ""));
    out.push_str("\none-way throughput, SPSC        Mmsg/s      GB/s   goal\n");
    for &(size, mode, rate) in &r.throughput {
        let goal = match (size, mode) {
            (8, SendMode::PerMessage) => ">= 25 Mmsg/s",
            (8, SendMode::Batch) => ">= 300 Mmsg/s",
            _ => "",
        };
        let label = format!(
            "{size} B, {}",
            if mode == SendMode::Batch {
                "batch of 256"
            } else {
                "per message"
            }
        );
        out.push_str(&format!(
            "{label:<30}{:>8.1}{:>10.2}   {goal}\n",
            rate / 1e6,
            rate * size as f64 / 1e9
        ));
    }
    out.push_str(&format!(
        "{:<30}{:>8.1}{:>10.2}   \n",
        "MPMC: 8 B, per message",
        r.mpmc_throughput / 1e6,
        r.mpmc_throughput * 8.0 / 1e9
    ));
    out.push_str(&format!(
        "(placement: floor probes {:.0} ns round trip; rounds kept/made {}/{}{})\n",
        r.placement_ns,
        r.kept,
        r.made,
        if r.mixed {
            ", no round kept one placement: mixed, rerun"
        } else {
            ""
        }
    ));
    if !r.pinned {
        out.push_str("(not pinned: fewer than 2 CPUs or affinity refused)\n");
    }
    out
}
