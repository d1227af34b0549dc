//! Every labelled crash point of every role, with real processes.
//!
//! Each scenario creates a channel (capacity 4, so the ring wraps many
//! times), runs producers and consumers as copies of this test binary, and
//! makes one of them kill itself with SIGKILL at the N-th hit of a crash
//! point (`SHMLANE_FAULT=label@N`, compiled into test builds only; see
//! `shmlane_shm::fault`). Then it checks what the survivors saw:
//!
//! - no committed message lost, none duplicated beyond the documented
//!   redelivery (a consumer that dies after reporting a message but
//!   before freeing its slot may have it delivered again), none torn;
//! - no survivor hangs (every child ends; a 60 s bound only guards the
//!   suite against a hang, it is not a timing assertion);
//! - the channel keeps working: processes that attach afterwards (a
//!   replacement for the dead on SPSC rings, and a fresh sender and
//!   receiver at the end) send and receive, which on SPSC rings also shows
//!   that the dead process's participant slot was reclaimed.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::time::Duration;

use shmlane::ipc::{Builder, Channel, Message, RecvMsgError, RingKind, Rkyv};
use shmlane_codec::sample::Order;
use shmlane_testkit::{env, killed, role, unique, Kid};

/// Messages per producer.
const COUNT: u64 = 60;
/// Longest a child may take: only a guard against a hang.
const HANG: Duration = Duration::from_secs(60);

/// A Pod message that shows tearing: four words derived from one value.
fn pod(v: u64) -> [u64; 4] {
    [v, !v, v.wrapping_mul(0x9e37_79b9_7f4a_7c15), v ^ 0x5555]
}

fn check_pod(m: &[u64; 4]) -> u64 {
    assert_eq!(*m, pod(m[0]), "torn message");
    m[0]
}

fn check_order(o: &<Order as rkyv::Archive>::Archived) -> u64 {
    let id = o.id.to_native();
    let want = Order::sample(id);
    assert_eq!(o.symbol.as_str(), want.symbol, "torn message");
    assert_eq!(o.venue.as_str(), want.venue, "torn message");
    assert_eq!(o.qty.to_native(), want.qty, "torn message");
    id
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Pod,
    Rkyv,
}

fn create(addr: &str, ring: RingKind, kind: Kind) -> Box<dyn std::any::Any> {
    let b = Builder::new(addr).unwrap().capacity(4).kind(ring);
    match kind {
        Kind::Pod => Box::new(b.create::<[u64; 4]>().unwrap()),
        Kind::Rkyv => Box::new(b.message_size(64).create::<Rkyv<Order>>().unwrap()),
    }
}

fn open<M: Message>(addr: &str) -> Channel<M> {
    Builder::new(addr)
        .unwrap()
        .open_timeout(Duration::from_secs(10))
        .open::<M>()
        .unwrap()
}

/// Tells the parent this producer is attached, then waits for its word.
fn ready_then_go() {
    println!("ready");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
}

/// Tells the parent this consumer is attached; with `HOLD` set, waits for
/// its word before receiving.
fn ready_then_hold() {
    println!("ready");
    if std::env::var("HOLD").is_ok() {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).unwrap();
    }
}

/// Sends `COUNT` messages `id << 32 | i`, stopping early only if every
/// receiver is gone; prints `sent N` at the end.
fn produce(addr: &str, ring: RingKind, kind: Kind, id: u64, batch: bool) {
    let msg = |i: u64| id << 32 | i;
    let sent = match (ring, kind) {
        (RingKind::Mpmc, Kind::Pod) => {
            let tx = open::<[u64; 4]>(addr).sender().unwrap();
            ready_then_go();
            (0..COUNT)
                .take_while(|&i| tx.send(pod(msg(i))).is_ok())
                .count()
        }
        (RingKind::Mpmc, Kind::Rkyv) => {
            let tx = open::<Rkyv<Order>>(addr).sender().unwrap();
            ready_then_go();
            (0..COUNT)
                .take_while(|&i| tx.send(&Order::sample(msg(i))).is_ok())
                .count()
        }
        (RingKind::Spsc, Kind::Pod) => {
            let tx = open::<[u64; 4]>(addr).sender().unwrap();
            ready_then_go();
            if batch {
                let all: Vec<_> = (0..COUNT).map(|i| pod(msg(i))).collect();
                let mut sent = 0;
                for chunk in all.chunks(3) {
                    match tx.send_batch(chunk) {
                        Ok(()) => sent += chunk.len(),
                        Err(e) => {
                            sent += e.0;
                            break;
                        }
                    }
                }
                sent
            } else {
                (0..COUNT)
                    .take_while(|&i| tx.send(pod(msg(i))).is_ok())
                    .count()
            }
        }
        (RingKind::Spsc, Kind::Rkyv) => {
            let tx = open::<Rkyv<Order>>(addr).sender().unwrap();
            ready_then_go();
            (0..COUNT)
                .take_while(|&i| tx.send(&Order::sample(msg(i))).is_ok())
                .count()
        }
        (RingKind::Broadcast { .. }, _) => unreachable!("channels only"),
    };
    println!("sent {sent}");
}

/// Receives until the channel reports the end, printing `got V` for each
/// message while its slot is still held (so a death right after the report
/// leaves the message to be delivered again, never lost).
fn consume(addr: &str, ring: RingKind, kind: Kind, batch: bool) {
    let out = std::io::stdout();
    let report = |v: u64| {
        let mut o = out.lock();
        writeln!(o, "got {v}").unwrap();
        o.flush().unwrap();
    };
    macro_rules! drain {
        ($rx:expr, $check:expr) => {
            loop {
                match $rx.recv_ref_timeout(HANG) {
                    Ok(m) => report($check(&*m)),
                    Err(RecvMsgError::Disconnected) => break,
                    Err(e) => panic!("consumer: {e}"),
                }
            }
        };
    }
    match (ring, kind) {
        (RingKind::Mpmc, Kind::Pod) => {
            let rx = open::<[u64; 4]>(addr).receiver().unwrap();
            ready_then_hold();
            drain!(rx, check_pod);
        }
        (RingKind::Mpmc, Kind::Rkyv) => {
            let rx = open::<Rkyv<Order>>(addr).receiver().unwrap();
            ready_then_hold();
            drain!(rx, check_order);
        }
        (RingKind::Spsc, Kind::Pod) if batch => {
            let rx = open::<[u64; 4]>(addr).receiver().unwrap();
            ready_then_hold();
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match rx.try_recv_batch(&mut buf, 3) {
                    Ok(0) => match rx.recv_timeout(HANG) {
                        Ok(m) => report(check_pod(&m)),
                        Err(shmlane::RecvTimeoutError::Disconnected) => break,
                        Err(e) => panic!("consumer: {e}"),
                    },
                    Ok(_) => buf.iter().for_each(|m| report(check_pod(m))),
                    Err(_) => break,
                }
            }
        }
        (RingKind::Spsc, Kind::Pod) => {
            let rx = open::<[u64; 4]>(addr).receiver().unwrap();
            ready_then_hold();
            drain!(rx, check_pod);
        }
        (RingKind::Spsc, Kind::Rkyv) => {
            let rx = open::<Rkyv<Order>>(addr).receiver().unwrap();
            ready_then_hold();
            drain!(rx, check_order);
        }
        (RingKind::Broadcast { .. }, _) => unreachable!("channels only"),
    }
}

/// The child side: `producer` or `consumer`, configured by environment.
#[test]
fn child() {
    let Some(role) = role() else { return };
    let addr = env("ADDR");
    let ring = if env("RING") == "spsc" {
        RingKind::Spsc
    } else {
        RingKind::Mpmc
    };
    let kind = if env("KIND") == "pod" {
        Kind::Pod
    } else {
        Kind::Rkyv
    };
    let batch = std::env::var("BATCH").is_ok();
    match role.as_str() {
        "producer" => produce(&addr, ring, kind, env("ID").parse().unwrap(), batch),
        "consumer" => consume(&addr, ring, kind, batch),
        "forker" => fork_and_drop(&addr),
        "parked" => {
            // Parks on an empty channel until killed.
            let rx = open::<[u64; 4]>(&addr).receiver().unwrap();
            println!("ready");
            let _ = rx.recv();
        }
        other => panic!("unknown role {other}"),
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Victim {
    Producer,
    Consumer,
}

struct Scenario {
    ring: RingKind,
    kind: Kind,
    victim: Victim,
    /// `label@N`.
    fault: &'static str,
    batch: bool,
    /// A System V segment (`sysv:KEY`) rather than `shm:NAME`.
    sysv: bool,
}

fn spawn(s: &Scenario, addr: &str, role: &str, id: u64, fault: Option<&str>) -> Kid {
    spawn_with(s, addr, role, id, fault, false)
}

fn spawn_with(
    s: &Scenario,
    addr: &str,
    role: &str,
    id: u64,
    fault: Option<&str>,
    hold: bool,
) -> Kid {
    let mut envs = vec![
        ("ADDR", addr.to_owned()),
        (
            "RING",
            if s.ring == RingKind::Spsc {
                "spsc"
            } else {
                "mpmc"
            }
            .to_owned(),
        ),
        (
            "KIND",
            if s.kind == Kind::Pod { "pod" } else { "rkyv" }.to_owned(),
        ),
        ("ID", id.to_string()),
    ];
    if s.batch {
        envs.push(("BATCH", "1".to_owned()));
    }
    if let Some(f) = fault {
        envs.push(("SHMLANE_FAULT", f.to_owned()));
    }
    if hold {
        envs.push(("HOLD", "1".to_owned()));
    }
    Kid::spawn("child", role, &envs)
}

/// Collects a consumer's reports until it exits; returns them and whether
/// it was killed.
fn reports(kid: &mut Kid) -> (Vec<u64>, bool) {
    let (lines, status) = kid.finish(HANG).expect("a consumer hung");
    let got = lines
        .iter()
        .filter_map(|l| l.strip_prefix("got "))
        .map(|v| v.parse().unwrap())
        .collect();
    let was_killed = killed(&status);
    assert!(was_killed || status.success(), "consumer failed: {status}");
    (got, was_killed)
}

/// Waits for a producer; returns whether it was killed and how many
/// messages it says it sent (if it lived to say).
fn wait_producer(kid: &mut Kid) -> (bool, Option<u64>) {
    let (lines, status) = kid.finish(HANG).expect("a producer hung");
    let sent = lines
        .iter()
        .find_map(|l| l.strip_prefix("sent "))
        .map(|n| n.parse().unwrap());
    let was_killed = killed(&status);
    assert!(was_killed || status.success(), "producer failed: {status}");
    (was_killed, sent)
}

/// Which of the victim producer's messages are committed when it dies at
/// the N-th hit of its crash point: `(at least, at most)` of its first
/// messages (it sends `0, 1, ...`).
fn committed_bounds(fault: &str) -> (u64, u64) {
    let (label, n) = fault.split_once('@').unwrap();
    let n: u64 = n.parse().unwrap();
    match label {
        // The n-th message was claimed or written, not published.
        "send.claimed" | "send.written" => (n - 1, n - 1),
        "send.committed" => (n, n),
        // Dying while attaching: nothing sent; while detaching: all sent.
        "attach.locked" | "attach.attaching" | "attach.counted" | "attach.published" => (0, 0),
        "detach.before" => (COUNT, COUNT),
        // Batches (`send_batch` also falls back to single sends when the
        // ring is full, which hit neither point): a prefix of some length.
        "batch.written" => (0, COUNT),
        "batch.committed" => (1, COUNT),
        other => panic!("no bounds for {other}"),
    }
}

fn run(s: &Scenario) {
    let mut cleanup = shmlane_testkit::Cleanup::new();
    let addr = if s.sysv {
        let key = shmlane_testkit::unique_key();
        cleanup.sysv(key);
        format!("sysv:{key}")
    } else {
        format!("shm:{}", unique("crash"))
    };
    // The parent creates and holds the channel; children open it.
    let chan = create(&addr, s.ring, s.kind);
    let spsc = s.ring == RingKind::Spsc;
    let mut consumers = Vec::new();
    let mut producers = Vec::new();
    // SPSC: one of each; MPMC: two of each. The victim is the last one,
    // started after the survivors are attached (so that no survivor can
    // arrive after a victim that died and find its side already gone);
    // a victim that dies while attaching never says it is ready.
    let n = if spsc { 1 } else { 2 };
    let dies_attaching = s.fault.starts_with("attach.");
    // With two consumers, the survivor holds off until the victim died, so
    // that the victim surely reaches the N-th hit of its crash point.
    let hold = !spsc && s.victim == Victim::Consumer;
    for i in 0..n {
        let victim = s.victim == Victim::Consumer && i == n - 1;
        let mut kid = spawn_with(
            s,
            &addr,
            "consumer",
            0,
            victim.then_some(s.fault),
            hold && !victim,
        );
        if !(victim && dies_attaching) {
            assert!(kid.wait_for("ready"), "{}: consumer never ready", s.fault);
        }
        consumers.push(kid);
    }
    for i in 0..n {
        let victim = s.victim == Victim::Producer && i == n - 1;
        let mut kid = spawn(
            s,
            &addr,
            "producer",
            i as u64 + 1,
            victim.then_some(s.fault),
        );
        if !(victim && dies_attaching) {
            assert!(kid.wait_for("ready"), "{}: producer never ready", s.fault);
        }
        producers.push(kid);
    }
    for p in &mut producers {
        p.say("go");
    }
    let mut victim_reports: Vec<u64> = Vec::new();
    let mut victim_done = false;
    if hold {
        let (got, k) = reports(&mut consumers[n - 1]);
        // (Seen once in a loaded CI run, not reproduced in 65 runs since:
        // what the victim reported says how far it got.)
        assert!(
            k,
            "{}: the consumer was not killed; it exited normally after reporting {} messages: \
             {got:?}",
            s.fault,
            got.len()
        );
        victim_reports = got;
        victim_done = true;
        for c in &mut consumers[..n - 1] {
            c.say("go");
        }
    }
    let ids: Vec<u64> = (1..=n as u64).collect();
    let mut victim_killed = victim_done;
    let mut reported: Vec<u64> = Vec::new();
    let mut sent: HashMap<u64, u64> = HashMap::new();
    for (i, p) in producers.iter_mut().enumerate() {
        let (k, n_sent) = wait_producer(p);
        if s.victim == Victim::Producer && i == n - 1 {
            assert!(k, "{}: the producer was not killed", s.fault);
            victim_killed = true;
        } else {
            assert!(!k, "a surviving producer was killed");
            let n_sent = n_sent.expect("a surviving producer reports");
            // Only an SPSC producer whose one consumer died may stop early
            // (every receiver gone); on MPMC the other consumer lives.
            if !(spsc && s.victim == Victim::Consumer) {
                assert_eq!(n_sent, COUNT, "{}: producer stopped early", s.fault);
            }
            sent.insert(ids[i], n_sent);
        }
    }
    for (i, c) in consumers.iter_mut().enumerate() {
        if victim_done && i == n - 1 {
            continue;
        }
        let (got, k) = reports(c);
        if s.victim == Victim::Consumer && i == n - 1 {
            assert!(k, "{}: the consumer was not killed", s.fault);
            victim_killed = true;
            victim_reports = got;
        } else {
            assert!(!k, "a surviving consumer was killed");
            reported.extend(got);
        }
    }
    if spsc && s.victim == Victim::Consumer {
        // The consumer died; a replacement attaches (the dead one's slot
        // must be reclaimed for an exclusive SPSC attach to succeed) and
        // gets what is left, the message the dead held included.
        let mut c = spawn(s, &addr, "consumer", 0, None);
        let (got, k) = reports(&mut c);
        assert!(!k);
        reported.extend(got);
    }
    assert!(victim_killed);
    // Every message reported, by survivors and by the victim before it died.
    let mut count: HashMap<u64, u32> = HashMap::new();
    for v in reported.iter().chain(&victim_reports) {
        *count.entry(*v).or_default() += 1;
    }
    let dups: Vec<_> = count.iter().filter(|(_, &c)| c > 1).collect();
    match s.victim {
        // At most the one message the victim reported and then died
        // holding is delivered again.
        Victim::Consumer => {
            assert!(dups.len() <= 1, "{}: duplicates {dups:?}", s.fault);
            for (v, c) in &dups {
                assert_eq!(**c, 2);
                assert_eq!(victim_reports.last(), Some(*v), "{}", s.fault);
            }
        }
        Victim::Producer => assert!(dups.is_empty(), "{}: duplicates {dups:?}", s.fault),
    }
    let mut per: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for v in count.keys() {
        per.entry(v >> 32).or_default().push(v & 0xffff_ffff);
    }
    for id in &ids {
        let mut seqs = per.remove(id).unwrap_or_default();
        seqs.sort_unstable();
        // Every producer's messages arrive as a prefix with no gap.
        assert!(
            seqs.iter().enumerate().all(|(i, &q)| i as u64 == q),
            "{}: producer {id} has gaps: {seqs:?}",
            s.fault
        );
        let got = seqs.len() as u64;
        let victim = s.victim == Victim::Producer && *id == n as u64;
        let (lo, hi) = if victim {
            committed_bounds(s.fault)
        } else {
            (sent[id], sent[id])
        };
        assert!(
            (lo..=hi).contains(&got),
            "{}: producer {id} delivered {got}, expected {lo}..={hi}",
            s.fault
        );
    }
    assert!(per.is_empty(), "messages from nowhere: {per:?}");
    // Processes that attach afterwards still get through.
    after_check(&addr, s);
    drop(chan);
}

/// A fresh sender and receiver (new participants) exchange a message.
fn after_check(addr: &str, s: &Scenario) {
    macro_rules! pair {
        ($m:ty, $msg:expr, $check:expr) => {{
            let chan = open::<$m>(addr);
            if s.ring == RingKind::Spsc {
                let (tx, rx) = (
                    chan.sender().expect("dead sender's slot reclaimed"),
                    chan.receiver().expect("dead receiver's slot reclaimed"),
                );
                tx.send($msg).unwrap();
                assert_eq!($check(&*rx.recv_ref().unwrap()), 77);
            } else {
                let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
                tx.send($msg).unwrap();
                assert_eq!($check(&*rx.recv_ref().unwrap()), 77);
            }
        }};
    }
    match s.kind {
        Kind::Pod => pair!([u64; 4], pod(77), check_pod),
        Kind::Rkyv => pair!(Rkyv<Order>, &Order::sample(77), check_order),
    }
}

fn producer_points() -> Vec<&'static str> {
    vec![
        "attach.attaching@1",
        "attach.counted@1",
        "attach.published@1",
        "send.claimed@1",
        "send.claimed@9",
        "send.written@1",
        "send.written@13",
        "send.committed@1",
        "send.committed@17",
        "detach.before@1",
    ]
}

fn points(victim: Victim, ring: RingKind) -> Vec<&'static str> {
    match (victim, ring) {
        // A sole SPSC producer that dies before it is counted never
        // attached: its consumer rightly waits for a first sender.
        (Victim::Producer, RingKind::Mpmc) => vec!["attach.locked@1"]
            .into_iter()
            .chain(producer_points())
            .collect(),
        (Victim::Producer, RingKind::Spsc) => producer_points(),
        (Victim::Consumer, RingKind::Mpmc) => vec![
            "attach.attaching@1",
            "attach.counted@1",
            "attach.published@1",
            "recv.claimed@1",
            "recv.claimed@11",
            "recv.read@1",
            "recv.read@7",
            "recv.released@5",
        ],
        (Victim::Consumer, RingKind::Spsc) => {
            vec![
                "attach.attaching@1",
                "attach.counted@1",
                "attach.published@1",
                "recv.read@1",
                "recv.read@7",
            ]
        }
        (_, RingKind::Broadcast { .. }) => unreachable!("channels only"),
    }
}

fn matrix(ring: RingKind, kind: Kind, victim: Victim) {
    matrix_on(ring, kind, victim, false);
}

fn matrix_on(ring: RingKind, kind: Kind, victim: Victim, sysv: bool) {
    for fault in points(victim, ring) {
        run(&Scenario {
            ring,
            kind,
            victim,
            fault,
            batch: false,
            sysv,
        });
    }
}

#[test]
fn mpmc_pod_producer_crash_points() {
    matrix(RingKind::Mpmc, Kind::Pod, Victim::Producer);
}

#[test]
fn mpmc_pod_consumer_crash_points() {
    matrix(RingKind::Mpmc, Kind::Pod, Victim::Consumer);
}

#[test]
fn mpmc_rkyv_producer_crash_points() {
    matrix(RingKind::Mpmc, Kind::Rkyv, Victim::Producer);
}

#[test]
fn mpmc_rkyv_consumer_crash_points() {
    matrix(RingKind::Mpmc, Kind::Rkyv, Victim::Consumer);
}

#[test]
fn spsc_pod_producer_crash_points() {
    matrix(RingKind::Spsc, Kind::Pod, Victim::Producer);
}

#[test]
fn spsc_pod_consumer_crash_points() {
    matrix(RingKind::Spsc, Kind::Pod, Victim::Consumer);
}

#[test]
fn spsc_rkyv_producer_crash_points() {
    matrix(RingKind::Spsc, Kind::Rkyv, Victim::Producer);
}

#[test]
fn spsc_rkyv_consumer_crash_points() {
    matrix(RingKind::Spsc, Kind::Rkyv, Victim::Consumer);
}

// The same crash points on System V segments, whose liveness flags are
// semaphores rather than file locks (Pod messages; rkyv takes the same
// ring paths).

#[test]
fn sysv_mpmc_pod_producer_crash_points() {
    matrix_on(RingKind::Mpmc, Kind::Pod, Victim::Producer, true);
}

#[test]
fn sysv_mpmc_pod_consumer_crash_points() {
    matrix_on(RingKind::Mpmc, Kind::Pod, Victim::Consumer, true);
}

#[test]
fn sysv_spsc_pod_producer_crash_points() {
    matrix_on(RingKind::Spsc, Kind::Pod, Victim::Producer, true);
}

#[test]
fn sysv_spsc_pod_consumer_crash_points() {
    matrix_on(RingKind::Spsc, Kind::Pod, Victim::Consumer, true);
}

#[test]
fn spsc_batch_crash_points() {
    for (victim, fault) in [
        (Victim::Producer, "batch.written@1"),
        (Victim::Producer, "batch.written@8"),
        (Victim::Producer, "batch.committed@2"),
        (Victim::Consumer, "batch.read@1"),
        (Victim::Consumer, "batch.read@10"),
    ] {
        run(&Scenario {
            ring: RingKind::Spsc,
            kind: Kind::Pod,
            victim,
            fault,
            batch: true,
            sysv: false,
        });
    }
}

/// A process killed while parked leaves no phantom waiter: once a survivor
/// reaps it, sends make no wake system call when nobody sleeps.
#[test]
fn a_receiver_killed_while_parked_leaves_no_phantom_waiter() {
    let addr = format!("shm:{}", unique("parked"));
    let chan = Builder::new(&addr)
        .unwrap()
        .capacity(8)
        .create::<[u64; 4]>()
        .unwrap();
    let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
    let s = Scenario {
        ring: RingKind::Mpmc,
        kind: Kind::Pod,
        victim: Victim::Consumer,
        fault: "",
        batch: false,
        sysv: false,
    };
    let mut kid = spawn(&s, &addr, "parked", 0, None);
    assert!(kid.wait_for("ready"));
    let ec = &chan.segment().header().not_empty.0;
    // Wait (bounded only against a hang) until the child is parked.
    let start = std::time::Instant::now();
    while ec.waiters() == 0 {
        assert!(start.elapsed() < HANG, "the child never parked");
        std::thread::yield_now();
    }
    kid.kill();
    kid.wait();
    assert_eq!(
        ec.waiters(),
        1,
        "the dead child's announcement is still there"
    );
    // The surviving receiver looks for dead peers while it waits.
    let start = std::time::Instant::now();
    while ec.waiters() != 0 {
        assert!(start.elapsed() < HANG, "the dead waiter was never reaped");
        let _ = rx.recv_timeout(Duration::from_millis(10));
    }
    let before = ec.wakeups();
    for i in 0..10_000 {
        tx.send(pod(i)).unwrap();
        assert_eq!(check_pod(&rx.recv().unwrap()), i);
    }
    assert_eq!(ec.wakeups(), before, "a send made a wake system call");
}

/// A child forked without exec that drops its copies of the handles does
/// not detach its parent: the parent's peers still see it alive, and the
/// name stays. (Run in a process of its own, where no other test thread
/// can hold a lock across the `fork`.)
#[test]
fn a_forked_child_dropping_its_copies_does_not_detach_the_parent() {
    let shm = format!("shm:{}", unique("fork"));
    let key = shmlane_testkit::unique_key();
    let mut cleanup = shmlane_testkit::Cleanup::new();
    cleanup.sysv(key);
    // On System V segments the child's copies hold no semaphore of the
    // parent's, and the child's drop must not count the parent out.
    for addr in [shm, format!("sysv:{key}")] {
        forked_child(&addr);
    }
}

fn forked_child(addr: &str) {
    let s = Scenario {
        ring: RingKind::Mpmc,
        kind: Kind::Pod,
        victim: Victim::Producer,
        fault: "",
        batch: false,
        sysv: false,
    };
    let mut kid = spawn(&s, addr, "forker", 0, None);
    let (lines, status) = kid.finish(HANG).expect("the forking child hung");
    assert!(status.success(), "{lines:?}");
    assert!(lines.iter().any(|l| l == "parent intact"), "{lines:?}");
}

fn fork_and_drop(addr: &str) {
    let chan = Builder::new(addr)
        .unwrap()
        .capacity(8)
        .create::<[u64; 4]>()
        .unwrap();
    let tx = chan.sender().unwrap();
    let peer = open::<[u64; 4]>(addr);
    let rx = peer.receiver().unwrap();
    // SAFETY: this process runs only this test's thread (and libtest's
    // idle main thread); the child drops values and leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        drop(tx);
        drop(chan);
        // SAFETY: ends the child at once, running no parent cleanup.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    // The sender is still attached and alive for its peers.
    assert_eq!(peer.segment().live_count(shmlane::ipc::Role::Sender), 1);
    assert!(peer.segment().participants().iter().all(|p| p.alive));
    tx.send(pod(5)).unwrap();
    assert_eq!(check_pod(&rx.recv().unwrap()), 5);
    // The child did not unlink the creator's name.
    assert!(Builder::new(addr).unwrap().open::<[u64; 4]>().is_ok());
    println!("parent intact");
}

/// A consumer that dies holding a message (MPMC): the receiver that comes
/// after it gets that message first, then the rest in the ring's order.
/// The dead claim is adopted at the next claim after the reap, not only
/// once the ring is found empty (where it used to come after up to a
/// ring's worth of newer messages).
#[test]
fn a_dead_consumers_message_comes_first_to_the_next_receiver() {
    let s = Scenario {
        ring: RingKind::Mpmc,
        kind: Kind::Pod,
        victim: Victim::Consumer,
        fault: "recv.read@1",
        batch: false,
        sysv: false,
    };
    let addr = format!("shm:{}", unique("orphan-first"));
    let chan = Builder::new(&addr)
        .unwrap()
        .capacity(16)
        .create::<[u64; 4]>()
        .unwrap();
    let tx = chan.sender().unwrap();
    let n = chan.capacity() as u64;
    for i in 0..n {
        tx.send(pod(i)).unwrap();
    }
    let mut victim = spawn(&s, &addr, "consumer", 0, Some(s.fault));
    let (got, killed) = reports(&mut victim);
    // It dies at its first read: holding message 0 (having reported it
    // or not).
    assert!(killed && got.len() <= 1, "{killed} {got:?}");
    let rx = chan.receiver().unwrap();
    let got: Vec<u64> = (0..n).map(|_| check_pod(&rx.recv().unwrap())).collect();
    assert_eq!(got, (0..n).collect::<Vec<_>>());
}
