//! Random SIGKILL trials against live channels, for the crash-safety
//! figures (a measurement, not a test: `tests/crash.rs` holds the tests).
//!
//! ```text
//! cargo run --release --example crash_soak -- kill ROLE RING TRIALS
//!     ROLE: producer | consumer | creator; RING: mpmc | spsc
//!     kills a process of ROLE at a random moment TRIALS times, with live
//!     peers (this process) on the other side, and counts lost,
//!     duplicated and torn messages and hangs; prints death-to-recovery
//!     times (producer: death to Disconnected when it was the last, or to
//!     the survivors' next message on MPMC with a second producer)
//! cargo run --release --example crash_soak -- skip TRIALS
//!     MPMC: a producer dies holding a slot (crash point send.written) while
//!     another produces: time from its death to the consumer moving on
//! cargo run --release --example crash_soak -- churn SECONDS [nokill]
//!     MPMC, 4 producer processes, one killed (and replaced) every second:
//!     the survivors' throughput per second
//! ```

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shmlane::ipc::{Builder, RecvMsgError, RingKind};

const HANG: Duration = Duration::from_secs(30);

fn pod(v: u64) -> [u64; 4] {
    [v, !v, v.wrapping_mul(0x9e37_79b9_7f4a_7c15), v ^ 0x5555]
}

fn torn(m: &[u64; 4]) -> bool {
    *m != pod(m[0])
}

fn ring_of(s: &str) -> RingKind {
    if s == "spsc" {
        RingKind::Spsc
    } else {
        RingKind::Mpmc
    }
}

/// A tiny xorshift generator (no dependency for a few random delays).
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn spawn(role: &str, addr: &str, ring: &str, id: u64, fault: Option<&str>) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env("SOAK_CHILD", role)
        .env("ADDR", addr)
        .env("RING", ring)
        .env("ID", id.to_string())
        .stdout(Stdio::piped())
        .stdin(Stdio::null());
    if let Some(f) = fault {
        cmd.env("SHMLANE_FAULT", f);
    }
    cmd.spawn().unwrap()
}

/// Child side: sends `id << 32 | i` and reports each sent `i` (8 bytes),
/// or receives and reports each value while holding its slot.
fn child(role: &str) {
    let addr = std::env::var("ADDR").unwrap();
    let ring = ring_of(&std::env::var("RING").unwrap());
    let id: u64 = std::env::var("ID").unwrap().parse().unwrap();
    let mut out = std::io::stdout().lock();
    let open = || loop {
        match Builder::new(&addr).unwrap().open::<[u64; 4]>() {
            Ok(c) => return c,
            Err(_) => std::thread::sleep(Duration::from_micros(100)),
        }
    };
    match role {
        "producer" | "creator" => {
            let chan = if role == "creator" {
                Builder::new(&addr)
                    .unwrap()
                    .capacity(16)
                    .kind(ring)
                    .keep(true)
                    .create::<[u64; 4]>()
                    .unwrap()
            } else {
                open()
            };
            // "ready" once attached and the first message is sent, so that
            // every trial kills a producer that had begun (a kill before
            // that would leave no disconnect to time).
            let mut i = 0u64;
            let mut report = |i: u64| {
                if i == 0 {
                    writeln!(out, "ready").unwrap();
                }
                out.write_all(&i.to_le_bytes()).unwrap();
                out.flush().unwrap();
            };
            let tx = chan.sender().unwrap();
            while tx.send(pod(id << 32 | i)).is_ok() {
                report(i);
                i += 1;
            }
        }
        "consumer" => {
            let chan = open();
            writeln!(out, "ready").unwrap();
            out.flush().unwrap();
            macro_rules! drain {
                ($rx:expr) => {
                    loop {
                        match $rx.recv_ref() {
                            Ok(m) => {
                                // Reported while the slot is held.
                                out.write_all(&m[0].to_le_bytes()).unwrap();
                                out.flush().unwrap();
                            }
                            Err(_) => break,
                        }
                    }
                };
            }
            let rx = chan.receiver().unwrap();
            drain!(rx);
        }
        other => panic!("unknown role {other}"),
    }
}

/// Reads a child's "ready" line, then its 8-byte reports, in a thread.
fn reporter(child: &mut Child) -> std::thread::JoinHandle<Vec<u64>> {
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 8];
        while out.read_exact(&mut buf).is_ok() {
            got.push(u64::from_le_bytes(buf));
        }
        got
    })
}

/// Kills a child; returns when the kill was sent and when it was reaped.
fn kill_at(child: &mut Child) -> (Instant, Instant) {
    let sent = Instant::now();
    let _ = child.kill();
    let _ = child.wait();
    (sent, Instant::now())
}

fn kill(child: &mut Child) -> Instant {
    kill_at(child).1
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn show(label: &str, v: &mut [Duration]) {
    if v.is_empty() {
        return;
    }
    let (p50, p99, max) = (pct(v, 0.5), pct(v, 0.99), pct(v, 1.0));
    println!(
        "{label}: n={} p50={:.2?} p99={:.2?} max={:.2?}",
        v.len(),
        p50,
        p99,
        max
    );
}

#[derive(Default)]
struct Tally {
    lost: u64,
    dup: u64,
    torn: u64,
    hangs: u64,
    delivered: u64,
    /// Creators killed before their sender attached (not a hang).
    never_attached: u64,
}

/// A 64-message channel at a name of this run's own.
fn create(tag: &str, kind: RingKind) -> (String, shmlane::ipc::Channel<[u64; 4]>) {
    let addr = format!("shm:soak-{tag}-{}", std::process::id());
    let chan = Builder::new(&addr)
        .unwrap()
        .capacity(64)
        .kind(kind)
        .create::<[u64; 4]>()
        .unwrap();
    (addr, chan)
}

/// A receive with a timeout, as the message-kind error.
fn recv_err(e: shmlane::RecvTimeoutError) -> RecvMsgError {
    match e {
        shmlane::RecvTimeoutError::Timeout => RecvMsgError::Timeout,
        shmlane::RecvTimeoutError::Disconnected => RecvMsgError::Disconnected,
    }
}

/// Producers die at random; this process consumes (and on MPMC also runs
/// a surviving producer thread).
fn kill_producers(ring: &str, trials: u64) -> Tally {
    let kind = ring_of(ring);
    let (addr, chan) = create("p", kind);
    let mut t = Tally::default();
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let received: Arc<Mutex<HashMap<u64, Vec<u64>>>> = Arc::default();
    let torn_count = Arc::new(AtomicU64::new(0));
    let disc: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    // The consumer: this process, for every trial.
    let consumer = {
        let rx = chan.receiver().unwrap();
        let chan_rx: Box<dyn FnMut() -> Result<[u64; 4], RecvMsgError> + Send> =
            Box::new(move || rx.recv_timeout(Duration::from_millis(50)).map_err(recv_err));
        let (received, torn_count, disc, stop) = (
            Arc::clone(&received),
            Arc::clone(&torn_count),
            Arc::clone(&disc),
            Arc::clone(&stop),
        );
        std::thread::spawn(move || {
            let mut recv = chan_rx;
            let mut was_disc = false;
            loop {
                match recv() {
                    Ok(m) => {
                        was_disc = false;
                        if torn(&m) {
                            torn_count.fetch_add(1, Ordering::Relaxed);
                        }
                        received
                            .lock()
                            .unwrap()
                            .entry(m[0] >> 32)
                            .or_default()
                            .push(m[0] & 0xffff_ffff);
                    }
                    Err(RecvMsgError::Disconnected) => {
                        // Every producer is gone: drained. The end, or
                        // the gap before the next victim.
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        if !was_disc {
                            disc.lock().unwrap().push(Instant::now());
                            was_disc = true;
                        }
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    Err(_) => {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                    }
                }
            }
        })
    };
    // MPMC: a surviving producer thread (id 0) keeps sending meanwhile.
    let survivor = (kind == RingKind::Mpmc).then(|| {
        let tx = chan.sender().unwrap();
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if tx.send_timeout(pod(i), Duration::from_millis(50)).is_ok() {
                    i += 1;
                }
                if i % 64 == 0 {
                    std::thread::yield_now();
                }
            }
            i
        })
    });
    let mut reported: HashMap<u64, Vec<u64>> = HashMap::new();
    let mut to_disc = Vec::new();
    for trial in 1..=trials {
        let id = trial;
        let mut kid = spawn("producer", &addr, ring, id, None);
        let rep = reporter(&mut kid);
        std::thread::sleep(Duration::from_micros(rng.below(2000)));
        let (sent, dead) = kill_at(&mut kid);
        reported.insert(id, rep.join().unwrap());
        if kind == RingKind::Spsc {
            // It was the last producer: wait for the consumer's Disconnected.
            let start = Instant::now();
            loop {
                let seen = disc.lock().unwrap().last().copied();
                if let Some(at) = seen.filter(|&at| at >= sent) {
                    to_disc.push(at.saturating_duration_since(dead));
                    break;
                }
                if start.elapsed() > HANG {
                    t.hangs += 1;
                    break;
                }
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }
    // Let the consumer drain, then stop everything.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    // The survivor's sender is dropped when its thread ends, so the
    // consumer drains what is left and then sees the end.
    let survivor_sent = survivor.map(|s| s.join().unwrap());
    consumer.join().unwrap();
    let received = received.lock().unwrap();
    t.torn = torn_count.load(Ordering::Relaxed);
    for id in 1..=trials {
        let got = received.get(&id).cloned().unwrap_or_default();
        let rep = &reported[&id];
        let mut sorted = got.clone();
        sorted.sort_unstable();
        sorted.dedup();
        t.dup += (got.len() - sorted.len()) as u64;
        // Delivered: a prefix with no gap, covering every reported send
        // (and at most the one committed just before the kill).
        let gapless = sorted.iter().enumerate().all(|(i, &q)| i as u64 == q);
        let n = sorted.len() as u64;
        let want = rep.len() as u64;
        if !gapless || n < want {
            t.lost += want.saturating_sub(n).max(1);
        }
        t.delivered += n;
    }
    if let Some(sent) = survivor_sent {
        let got = received.get(&0).map_or(0, Vec::len) as u64;
        // The survivor's last sends may have been cut by `stop`.
        t.lost += sent.saturating_sub(got);
        t.delivered += got;
    }
    show("  producer death -> Disconnected", &mut to_disc);
    t
}

/// Consumers die at random while holding or between messages; this
/// process produces (and on MPMC also runs a surviving consumer thread).
fn kill_consumers(ring: &str, trials: u64) -> Tally {
    let kind = ring_of(ring);
    let (addr, chan) = create("c", kind);
    let mut t = Tally::default();
    let mut rng = Rng(0x0fed_cba9_8765_4321);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let producer = {
        let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
        let tx = chan.sender().unwrap();
        let send = move |i| tx.send_timeout(pod(i), Duration::from_millis(20)).is_ok();
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if send(i) {
                    i += 1;
                    sent.store(i, Ordering::Relaxed);
                } else {
                    // No receiver right now (SPSC between victims): retry.
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
        })
    };
    let survivor_got: Arc<Mutex<Vec<u64>>> = Arc::default();
    let torn_count = Arc::new(AtomicU64::new(0));
    let survivor = (kind == RingKind::Mpmc).then(|| {
        let rx = chan.receiver().unwrap();
        let (stop, got, torn_count) = (
            Arc::clone(&stop),
            Arc::clone(&survivor_got),
            Arc::clone(&torn_count),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(m) = rx.recv_timeout(Duration::from_millis(20)) {
                    if torn(&m) {
                        torn_count.fetch_add(1, Ordering::Relaxed);
                    }
                    got.lock().unwrap().push(m[0]);
                }
            }
        })
    });
    let mut victims: Vec<u64> = Vec::new();
    let mut kills = 0u64;
    for _ in 0..trials {
        let mut kid = spawn("consumer", &addr, ring, 0, None);
        let rep = reporter(&mut kid);
        std::thread::sleep(Duration::from_micros(rng.below(2000)));
        kill(&mut kid);
        kills += 1;
        victims.extend(rep.join().unwrap());
    }
    // Drain what is left with a last consumer (this process).
    let mut last = spawn("consumer", &addr, ring, 0, None);
    let rep = reporter(&mut last);
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    producer.join().unwrap();
    if let Some(s) = survivor {
        s.join().unwrap();
    }
    drop(chan);
    let start = Instant::now();
    // The producer is gone: the last consumer drains, gets Disconnected
    // and exits.
    loop {
        if let Ok(Some(_)) = last.try_wait() {
            break;
        }
        if start.elapsed() > HANG {
            t.hangs += 1;
            let _ = last.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    victims.extend(rep.join().unwrap());
    let all_sent = sent.load(Ordering::Relaxed);
    let mut count: HashMap<u64, u32> = HashMap::new();
    for v in victims.iter().chain(survivor_got.lock().unwrap().iter()) {
        *count.entry(*v).or_default() += 1;
    }
    t.torn = torn_count.load(Ordering::Relaxed);
    for i in 0..all_sent {
        match count.get(&i).copied().unwrap_or(0) {
            0 => t.lost += 1,
            1 => {}
            n => t.dup += u64::from(n - 1),
        }
    }
    t.delivered = all_sent;
    if t.dup > kills {
        println!("  more duplicates than kills: {} > {kills}", t.dup);
    }
    t
}

/// The creator (also the producer) dies at random; this process opens the
/// channel, drains it, and removes the name.
fn kill_creators(ring: &str, trials: u64) -> Tally {
    let mut t = Tally::default();
    let mut rng = Rng(0x5555_aaaa_1234_4321);
    for trial in 0..trials {
        let addr = format!("shm:soak-k-{}-{trial}", std::process::id());
        let mut kid = spawn("creator", &addr, ring, 1, None);
        let rep = reporter(&mut kid);
        let chan = Builder::new(&addr).unwrap().open::<[u64; 4]>().unwrap();
        let mut got = Vec::new();
        let step = Duration::from_secs(1);
        let rx = chan.receiver().unwrap();
        let recv = move || rx.recv_timeout(step);
        let delay = Duration::from_micros(rng.below(2000));
        let start = Instant::now();
        let mut killed = false;
        loop {
            if !killed && start.elapsed() >= delay {
                kill(&mut kid);
                killed = true;
            }
            match recv() {
                Ok(m) => {
                    if torn(&m) {
                        t.torn += 1;
                    }
                    got.push(m[0] & 0xffff_ffff);
                }
                Err(shmlane::RecvTimeoutError::Disconnected) => break,
                Err(shmlane::RecvTimeoutError::Timeout) => {
                    // Killed before its sender attached: no sender ever
                    // existed, and the receiver rightly waits for one.
                    if killed && !chan.segment().ever_attached(shmlane::ipc::Role::Sender) {
                        t.never_attached += 1;
                        break;
                    }
                    if start.elapsed() > HANG {
                        t.hangs += 1;
                        break;
                    }
                }
            }
        }
        if !killed {
            kill(&mut kid);
        }
        drop(recv);
        let rep = rep.join().unwrap();
        let n = got.len() as u64;
        let gapless = got.iter().enumerate().all(|(i, &q)| i as u64 == q);
        if !gapless || n < rep.len() as u64 {
            t.lost += 1;
        }
        t.delivered += n;
        let _ = shmlane_shm::Address::parse(&addr).map(|a| shmlane_shm::unlink(&a));
    }
    t
}

/// A producer dies holding a slot while another keeps producing: time from
/// its death to the consumer's next message.
fn skip(trials: u64) {
    let addr = format!("shm:soak-s-{}", std::process::id());
    let chan = Builder::new(&addr)
        .unwrap()
        .capacity(64)
        .create::<[u64; 4]>()
        .unwrap();
    let rx = chan.receiver().unwrap();
    let tx = chan.sender().unwrap();
    let mut times = Vec::new();
    let mut hangs = 0;
    for trial in 1..=trials {
        let mut kid = spawn("producer", &addr, "mpmc", trial, Some("send.written@3"));
        let rep = reporter(&mut kid);
        let _ = kid.wait();
        let dead = Instant::now();
        let _ = rep.join();
        // Drain the victim's two committed messages, then send one of ours:
        // it sits behind the dead slot until a survivor skips it.
        tx.send(pod(u64::MAX)).unwrap();
        loop {
            match rx.recv_timeout(HANG) {
                Ok(m) if m[0] == u64::MAX => break,
                Ok(_) => {}
                Err(_) => {
                    hangs += 1;
                    break;
                }
            }
        }
        times.push(dead.elapsed());
    }
    println!("skip: hangs={hangs}");
    show("  producer death -> survivors move on", &mut times);
}

/// Four producer processes; one killed and replaced every second.
fn churn(seconds: u64, kills: bool) {
    let addr = format!("shm:soak-h-{}", std::process::id());
    let chan = Builder::new(&addr)
        .unwrap()
        .capacity(1024)
        .create::<[u64; 4]>()
        .unwrap();
    let rx = chan.receiver().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let consumer = {
        let (stop, count) = (Arc::clone(&stop), Arc::clone(&count));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if rx.recv_timeout(Duration::from_millis(20)).is_ok() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let mut next_id = 1;
    let mut kids: Vec<Child> = (0..4)
        .map(|_| {
            next_id += 1;
            let mut k = spawn("producer", &addr, "mpmc", next_id, None);
            // Drop its reports: throughput only.
            let mut out = k.stdout.take().unwrap();
            std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
            k
        })
        .collect();
    let mut rng = Rng(0x2468_ace0_1357_9bdf);
    let mut per_second = Vec::new();
    for _ in 0..seconds {
        let before = count.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_secs(1));
        per_second.push(count.load(Ordering::Relaxed) - before);
        if kills {
            let i = rng.below(4) as usize;
            kill(&mut kids[i]);
            next_id += 1;
            let mut k = spawn("producer", &addr, "mpmc", next_id, None);
            let mut out = k.stdout.take().unwrap();
            std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
            kids[i] = k;
        }
    }
    for k in &mut kids {
        kill(k);
    }
    stop.store(true, Ordering::Relaxed);
    consumer.join().unwrap();
    let mut sorted = per_second.clone();
    sorted.sort_unstable();
    println!(
        "churn ({}): {} s, median {} msg/s, min {}, max {}",
        if kills {
            "one kill per second"
        } else {
            "no kills"
        },
        seconds,
        sorted[sorted.len() / 2],
        sorted[0],
        sorted[sorted.len() - 1]
    );
}

fn main() {
    if let Ok(role) = std::env::var("SOAK_CHILD") {
        child(&role);
        return;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    match arg(0) {
        "kill" => {
            let (role, ring) = (arg(1), arg(2));
            let trials: u64 = arg(3).parse().unwrap_or(100);
            let start = Instant::now();
            let t = match role {
                "producer" => kill_producers(ring, trials),
                "consumer" => kill_consumers(ring, trials),
                "creator" => kill_creators(ring, trials),
                other => panic!("unknown role {other}"),
            };
            println!(
                "kill {role} {ring}: {trials} trials in {:.1?}: lost {}, duplicated {}, torn {}, hangs {} ({} delivered; {} killed before their sender attached)",
                start.elapsed(),
                t.lost,
                t.dup,
                t.torn,
                t.hangs,
                t.delivered,
                t.never_attached
            );
        }
        "skip" => skip(arg(1).parse().unwrap_or(100)),
        "churn" => churn(arg(1).parse().unwrap_or(60), arg(2) != "nokill"),
        _ => {
            eprintln!(
                "usage: crash_soak kill ROLE RING TRIALS | skip TRIALS | churn SECONDS [nokill]"
            );
            std::process::exit(2);
        }
    }
}
