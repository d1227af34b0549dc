//! Many senders on every mechanism that can have them, through the public
//! `ipc::Builder::sender` / `receiver` API: four sender processes (this
//! test binary re-run as children) send 100 000 frames each, `[sender id,
//! sequence number]`, and the receiver gets every frame exactly once and
//! each sender's in order, then `Disconnected` once they all exited. A
//! sender that comes after that is received too. Mechanisms that take one
//! sender (`fifo:`) refuse the others at connect with a typed error.
//!
//! It has its own `main` (`harness = false`) because the `signal:`
//! receiver needs its signal blocked in every thread, so `main` blocks it
//! before any thread exists. Arguments that do not start with `-` filter
//! cases by substring. Nothing here measures time: the waits are hang
//! guards.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use shmlane::ipc::{Builder, Bytes, ConnectError, Receiver, RecvMsgError};
use shmlane::transport::{self, Address, FrameReceiver, FrameRecvError, FrameSender, OpenError};
use shmlane::RecvTimeoutError;
use shmlane_testkit::{env, role, unique, Cleanup, Kid, TempDir};

/// Sender processes per mechanism.
const SENDERS: usize = 4;
/// Frames per sender.
const FRAMES: u64 = 100_000;
/// How long a receive or a child may take before the test calls it a hang.
const HANG: Duration = Duration::from_secs(60);

type Frame = [u64; 2];

fn builder(addr: &str) -> Builder {
    Builder::new(addr).unwrap().open_timeout(HANG)
}

/// Starts sender `id`, which connects to `addr` and sends `count` frames.
fn spawn_sender(addr: &str, id: usize, count: u64) -> Kid {
    Kid::spawn(
        "send",
        "send",
        &[
            ("ADDR", addr.to_owned()),
            ("ID", id.to_string()),
            ("COUNT", count.to_string()),
        ],
    )
}

/// Receives `count` frames from each of `senders` (ids `0..senders`):
/// every frame once, each sender's in order.
fn receive_all(rx: &Receiver<Frame>, what: &str, senders: usize, count: u64) {
    let mut next = vec![0u64; senders];
    for k in 0..senders as u64 * count {
        let [id, seq] = rx
            .recv_timeout(HANG)
            .unwrap_or_else(|e| panic!("{what}: after {k} frames: {e:?}"));
        let id = usize::try_from(id).unwrap();
        assert!(id < senders, "{what}: frame from unknown sender {id}");
        assert_eq!(seq, next[id], "{what}: sender {id} out of order or lost");
        next[id] += 1;
    }
    assert!(next.iter().all(|&n| n == count), "{what}: {next:?}");
}

fn assert_exits(kid: &mut Kid, what: &str) {
    let status = kid
        .wait_timeout(HANG)
        .unwrap_or_else(|| panic!("{what}: hung"));
    assert!(status.success(), "{what}: sender failed: {status:?}");
}

/// Four senders at once at `addr`, the receiver at `addr` bound here;
/// then, over the kernel transports, one more sender after the
/// disconnect.
fn many(addr: &str, later: bool) {
    let rx = builder(addr).receiver::<Frame>().unwrap();
    let reach = rx.local_address().unwrap_or(addr).to_owned();
    let mut kids: Vec<Kid> = (0..SENDERS)
        .map(|id| spawn_sender(&reach, id, FRAMES))
        .collect();
    receive_all(&rx, addr, SENDERS, FRAMES);
    for kid in &mut kids {
        assert_exits(kid, addr);
    }
    assert_eq!(
        rx.recv_timeout(HANG),
        Err(RecvTimeoutError::Disconnected),
        "{addr}: after every sender exited"
    );
    if later {
        later_sender(&rx, &reach);
    }
}

/// Starts sender `id`, which connects to `addr`, says so, and sends
/// `count` frames once told to.
fn spawn_on_cue(addr: &str, id: usize, count: u64) -> Kid {
    let mut kid = Kid::spawn(
        "send",
        "send-on-cue",
        &[
            ("ADDR", addr.to_owned()),
            ("ID", id.to_string()),
            ("COUNT", count.to_string()),
        ],
    );
    assert!(kid.wait_for("connected"), "{addr}: sender {id} failed");
    kid
}

/// A receiver that reported `Disconnected` takes a sender that connects
/// afterwards (until one does, it says `Disconnected` at once, as a
/// channel with no sender does).
fn later_sender(rx: &Receiver<Frame>, addr: &str) {
    let mut kid = spawn_on_cue(addr, 0, 10);
    kid.say("go");
    receive_all(rx, addr, 1, 10);
    assert_exits(&mut kid, addr);
    assert_eq!(rx.recv_timeout(HANG), Err(RecvTimeoutError::Disconnected));
}

/// A future that counts its polls.
struct CountPolls<'a, F> {
    inner: std::pin::Pin<Box<F>>,
    polls: &'a std::cell::Cell<usize>,
}

impl<F: std::future::Future> std::future::Future for CountPolls<'_, F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        self.polls.set(self.polls.get() + 1);
        self.inner.as_mut().poll(cx)
    }
}

/// Frames per sender in the async cases.
const ASYNC_FRAMES: u64 = 20_000;

/// As [`many`], received with `recv_async` on a tokio current-thread
/// runtime, `senders` at once. First an idle wait: one sender connects,
/// stays quiet while the runtime's timer runs for 200 ms, then sends. The
/// receive is woken by the event, not by polling: it is polled a handful
/// of times (the wait strategy's spin, then once per wakeup), where a
/// future that re-checked every millisecond would be polled ~200 times.
/// (A slow machine only makes fewer polls: the bound cannot fail on a
/// slow day.)
fn many_async(addr: &str, senders: usize) {
    let rx = builder(addr).receiver::<Frame>().unwrap();
    let reach = rx.local_address().unwrap_or(addr).to_owned();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut quiet = spawn_on_cue(&reach, 0, 1);
    let polls = std::cell::Cell::new(0);
    let got = rt.block_on(async {
        let recv = CountPolls {
            inner: Box::pin(rx.recv_async()),
            polls: &polls,
        };
        let cue = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            quiet.say("go");
        };
        futures_lite::future::zip(recv, cue).await.0
    });
    assert_eq!(got, Ok([0, 0]), "{addr}: the quiet sender's frame");
    let bound = shmlane::WaitStrategy::default().spin() as usize + 20;
    assert!(
        polls.get() <= bound,
        "{addr}: an idle receive was polled {} times (at most {bound} expected): \
         it is not woken by events",
        polls.get()
    );
    assert_exits(&mut quiet, addr);
    // Everyone gone: disconnected, at once.
    let gone = rt.block_on(rx.recv_async());
    assert_eq!(gone, Err(shmlane::RecvError), "{addr}: disconnected");
    // Connected first, then sending: a `fifo:` receiver says
    // `Disconnected` until its next sender has opened the FIFO.
    let mut kids: Vec<Kid> = (0..senders)
        .map(|id| spawn_on_cue(&reach, id, ASYNC_FRAMES))
        .collect();
    for kid in &mut kids {
        kid.say("go");
    }
    rt.block_on(async {
        let mut next = vec![0u64; senders];
        for k in 0..senders as u64 * ASYNC_FRAMES {
            let [id, seq] = rx
                .recv_async()
                .await
                .unwrap_or_else(|e| panic!("{addr}: after {k} frames: {e:?}"));
            let id = usize::try_from(id).unwrap();
            assert!(id < senders, "{addr}: frame from unknown sender {id}");
            assert_eq!(seq, next[id], "{addr}: sender {id} out of order or lost");
            next[id] += 1;
        }
    });
    for kid in &mut kids {
        assert_exits(kid, addr);
    }
    let gone = rt.block_on(rx.recv_async());
    assert_eq!(gone, Err(shmlane::RecvError), "{addr}: disconnected");
}

fn async_shm() {
    let name = unique("senders");
    let mut c = Cleanup::new();
    c.shm(&name);
    many_async(&format!("shm:{name}"), SENDERS);
}

fn async_unix() {
    let dir = TempDir::new("senders");
    many_async(&format!("unix:{}/s.sock", dir.path().display()), SENDERS);
}

fn async_tcp() {
    many_async("tcp:127.0.0.1:0", SENDERS);
}

fn async_mq() {
    let name = unique("senders");
    let _c = MqCleanup(name.clone());
    many_async(&format!("mq:{name}"), SENDERS);
}

fn async_sysvmq() {
    let key = shmlane_testkit::unique_key();
    let mut c = Cleanup::new();
    c.sysv(key);
    many_async(&format!("sysvmq:{key}"), SENDERS);
}

fn async_signal() {
    many_async(&format!("signal:{}", std::process::id()), SENDERS);
}

fn async_fifo() {
    let dir = TempDir::new("senders");
    many_async(&format!("fifo:{}/s.fifo", dir.path().display()), 1);
}

fn shm() {
    let name = unique("senders");
    let mut c = Cleanup::new();
    c.shm(&name);
    // An MPMC ring (the default kind).
    many(&format!("shm:{name}"), false);
}

fn unix() {
    let dir = TempDir::new("senders");
    many(&format!("unix:{}/s.sock", dir.path().display()), true);
}

fn tcp() {
    many("tcp:127.0.0.1:0", true);
}

fn mq() {
    let name = unique("senders");
    let _c = MqCleanup(name.clone());
    many(&format!("mq:{name}"), true);
}

fn sysvmq() {
    let key = shmlane_testkit::unique_key();
    let mut c = Cleanup::new();
    c.sysv(key);
    many(&format!("sysvmq:{key}"), true);
}

fn signal() {
    many(&format!("signal:{}", std::process::id()), true);
    // Two senders of one process would share a process id, which is how
    // the receiver tells senders apart: the second is refused.
    let me = format!("signal:{}", std::process::id());
    let rx = builder(&me).receiver::<Frame>().unwrap();
    let tx = builder(&me).sender::<Frame>().unwrap();
    match builder(&me).sender::<Frame>() {
        Err(ConnectError::Transport(e @ OpenError::AlreadyConnected { .. })) => {
            assert!(e.to_string().contains("clone that sender"), "{e}");
        }
        other => panic!("a second signal sender in one process: {other:?}"),
    }
    // A clone shares the one sender.
    let tx2 = tx.clone();
    tx.send([0, 0]).unwrap();
    tx2.send([0, 1]).unwrap();
    drop((tx, tx2));
    receive_all(&rx, "signal clones", 1, 2);
    assert_eq!(rx.recv_timeout(HANG), Err(RecvTimeoutError::Disconnected));
    // Once it is gone, this process may connect again.
    let tx = builder(&me).sender::<Frame>().unwrap();
    tx.send([0, 0]).unwrap();
    drop(tx);
    receive_all(&rx, "signal again", 1, 1);
    assert_eq!(rx.recv_timeout(HANG), Err(RecvTimeoutError::Disconnected));
    drop(rx);
    // A sender may start as soon as the signal is blocked (`main` blocked
    // it): one that sends everything and exits before any receiver binds
    // still has every frame received. (The bind used to discard what was
    // queued, taking it for an earlier receiver's.)
    let mut early = spawn_sender(&me, 0, 100);
    assert_exits(&mut early, "signal early sender");
    let rx = builder(&me).receiver::<Frame>().unwrap();
    receive_all(&rx, "signal early", 1, 100);
    assert_eq!(rx.recv_timeout(HANG), Err(RecvTimeoutError::Disconnected));
}

/// `fifo:` takes one sender at a time: three more processes are refused
/// at connect while the first is connected; its frames all arrive; after
/// it exits, the next sender is received.
fn fifo() {
    let dir = TempDir::new("senders");
    let addr = format!("fifo:{}/s.fifo", dir.path().display());
    let rx = builder(&addr).receiver::<Frame>().unwrap();
    let mut first = spawn_on_cue(&addr, 0, FRAMES);
    let mut refused: Vec<Kid> = (1..SENDERS)
        .map(|id| {
            Kid::spawn(
                "send",
                "expect-refusal",
                &[("ADDR", addr.clone()), ("ID", id.to_string())],
            )
        })
        .collect();
    for kid in &mut refused {
        assert!(
            kid.wait_for("refused"),
            "a second fifo sender was not refused"
        );
        assert_exits(kid, "refused sender");
    }
    // And in this process too (the lock is per open file, not per process).
    match builder(&addr).sender::<Frame>() {
        Err(ConnectError::Transport(e @ OpenError::AlreadyConnected { .. })) => {
            assert!(e.to_string().contains("use unix:"), "{e}");
        }
        other => panic!("a second fifo sender here: {other:?}"),
    }
    first.say("go");
    receive_all(&rx, &addr, 1, FRAMES);
    assert_exits(&mut first, &addr);
    assert_eq!(rx.recv_timeout(HANG), Err(RecvTimeoutError::Disconnected));
    // The first one is gone: the next sender is taken, and received.
    later_sender(&rx, &addr);
}

/// `unix:` serves ready senders in turns: two senders whose frames are
/// all waiting get one frame each in turn. (Over `tcp:` the bytes may
/// still be on their way through loopback when the receiver looks, so the
/// strict alternation is checked where delivery is synchronous.)
fn turns() {
    let dir = TempDir::new("senders");
    {
        let addr = format!("unix:{}/t.sock", dir.path().display());
        let opts = transport::Options::new().connect_timeout(HANG);
        let mut rx = FrameReceiver::bind(&Address::parse(&addr).unwrap(), &opts).unwrap();
        let reach = rx.local_address().clone();
        let mut txs = [0u8, 1].map(|_| FrameSender::connect(&reach, &opts).unwrap());
        // 100 small frames each: they fit in the socket buffers, so all
        // are waiting before the first receive.
        for (id, tx) in txs.iter_mut().enumerate() {
            for seq in 0..100u8 {
                tx.send(&[id as u8, seq], None).unwrap();
            }
        }
        let mut buf = Vec::new();
        let mut next = [0u8; 2];
        let mut last = None;
        for _ in 0..200 {
            rx.recv(&mut buf, Some(Instant::now() + HANG)).unwrap();
            let (id, seq) = (usize::from(buf[0]), buf[1]);
            assert_eq!(seq, next[id], "{addr}: sender {id}");
            next[id] += 1;
            assert_ne!(last, Some(id), "{addr}: sender {id} twice in a row");
            last = Some(id);
        }
        drop(txs);
        assert!(matches!(
            rx.recv(&mut buf, Some(Instant::now() + HANG)),
            Err(FrameRecvError::Disconnected)
        ));
    }
}

/// A `unix:` sender that breaks the framing is dropped alone: the
/// receiver reports `InvalidData` once, and the other sender's frames all
/// arrive, then `Disconnected`.
fn bad_peer() {
    let dir = TempDir::new("senders");
    let path = dir.path().join("b.sock");
    let addr = format!("unix:{}", path.display());
    let rx = builder(&addr).receiver::<Bytes>().unwrap();
    let good = builder(&addr).sender::<Bytes>().unwrap();
    let mut bad = UnixStream::connect(&path).unwrap();
    for i in 0..10u8 {
        good.send(&[i]).unwrap();
    }
    // A header announcing more than the max frame, then bytes.
    let mut junk = u32::MAX.to_le_bytes().to_vec();
    junk.extend_from_slice(b"garbage");
    bad.write_all(&junk).unwrap();
    let (mut frames, mut errors) = (0u8, 0);
    while frames < 10 || errors < 1 {
        match rx.recv_timeout(HANG) {
            Ok(m) => {
                assert_eq!(m, [frames]);
                frames += 1;
            }
            Err(RecvMsgError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                errors += 1;
                assert_eq!(errors, 1, "the bad peer is reported once");
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    // The bad connection is closed by the receiver (a reset if it closed
    // with bytes unread).
    let mut byte = [0u8];
    match std::io::Read::read(&mut bad, &mut byte) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the bad connection: {other:?}"),
    }
    good.send(b"after").unwrap();
    assert_eq!(rx.recv_timeout(HANG).unwrap(), b"after");
    drop(good);
    assert!(rx.recv_timeout(HANG).unwrap_err().is_disconnected());
}

/// The same bad peer before a Pod receiver, whose crossbeam-shaped errors
/// cannot report it: the bad peer is dropped and passed over, a frame of
/// the wrong length for the type is passed over, and every good value
/// arrives, then `Disconnected`.
fn bad_peer_pod() {
    let dir = TempDir::new("senders");
    let path = dir.path().join("p.sock");
    let addr = format!("unix:{}", path.display());
    let rx = builder(&addr).receiver::<u64>().unwrap();
    let good = builder(&addr).sender::<u64>().unwrap();
    let mut short = UnixStream::connect(&path).unwrap();
    let mut bad = UnixStream::connect(&path).unwrap();
    for i in 0..5u64 {
        good.send(i).unwrap();
    }
    // A well-framed message of 3 bytes: not a u64.
    let mut three = 3u32.to_le_bytes().to_vec();
    three.extend_from_slice(b"abc");
    short.write_all(&three).unwrap();
    // A header announcing more than the max frame, then bytes.
    let mut junk = u32::MAX.to_le_bytes().to_vec();
    junk.extend_from_slice(b"garbage");
    bad.write_all(&junk).unwrap();
    for i in 5..10u64 {
        good.send(i).unwrap();
    }
    let got: Vec<u64> = (0..10).map(|_| rx.recv_timeout(HANG).unwrap()).collect();
    assert_eq!(got, (0..10).collect::<Vec<_>>());
    // Nothing else is waiting: the bad frames were passed over.
    assert!(matches!(rx.try_recv(), Err(shmlane::TryRecvError::Empty)));
    drop((good, short, bad));
    assert!(matches!(
        rx.recv_timeout(HANG),
        Err(shmlane::RecvTimeoutError::Disconnected)
    ));
}

/// `mq:` takes several senders in one process as well.
fn mq_in_process() {
    let name = unique("senders");
    let _c = MqCleanup(name.clone());
    let addr = format!("mq:{name}");
    let rx = builder(&addr).receiver::<Frame>().unwrap();
    let a = builder(&addr).sender::<Frame>().unwrap();
    let b = builder(&addr).sender::<Frame>().unwrap();
    a.send([0, 0]).unwrap();
    b.send([1, 0]).unwrap();
    drop(a);
    b.send([1, 1]).unwrap();
    a_then_b(&rx);
    drop(b);
    assert_eq!(rx.recv_timeout(HANG), Err(RecvTimeoutError::Disconnected));
}

fn a_then_b(rx: &Receiver<Frame>) {
    for want in [[0, 0], [1, 0], [1, 1]] {
        assert_eq!(rx.recv_timeout(HANG).unwrap(), want);
    }
}

/// Removes a message queue and its companion object, however a case ends.
struct MqCleanup(String);

impl Drop for MqCleanup {
    fn drop(&mut self) {
        let q = std::ffi::CString::new(format!("/{}", self.0)).unwrap();
        // SAFETY: a NUL-terminated name; failure (already gone) is fine.
        unsafe { libc::mq_unlink(q.as_ptr()) };
        let _ = std::fs::remove_file(format!("/dev/shm/shmlane-mq.{}", self.0));
    }
}

// ---------------------------------------------------------------- children

fn child(role: &str) {
    let addr = env("ADDR");
    let id: u64 = env("ID").parse().unwrap();
    match role {
        "send" | "send-on-cue" => {
            let count: u64 = env("COUNT").parse().unwrap();
            let tx = builder(&addr).sender::<Frame>().unwrap();
            if role == "send-on-cue" {
                println!("connected");
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).unwrap();
            }
            for seq in 0..count {
                tx.send([id, seq]).unwrap();
            }
        }
        "expect-refusal" => match builder(&addr).sender::<Frame>() {
            Err(ConnectError::Transport(OpenError::AlreadyConnected { .. })) => {
                println!("refused")
            }
            other => println!("unexpected: {other:?}"),
        },
        other => panic!("unknown role {other}"),
    }
}

// ------------------------------------------------------------------ runner

type Case = (&'static str, fn());

const CASES: [Case; 18] = [
    ("async_shm", async_shm),
    ("async_unix", async_unix),
    ("async_tcp", async_tcp),
    ("async_mq", async_mq),
    ("async_sysvmq", async_sysvmq),
    ("async_signal", async_signal),
    ("async_fifo", async_fifo),
    ("shm", shm),
    ("unix", unix),
    ("tcp", tcp),
    ("mq", mq),
    ("sysvmq", sysvmq),
    ("signal", signal),
    ("fifo", fifo),
    ("turns", turns),
    ("bad_peer", bad_peer),
    ("bad_peer_pod", bad_peer_pod),
    ("mq_in_process", mq_in_process),
];

fn main() {
    // Before any thread exists: every thread of this process, and of the
    // children it re-executes, blocks the signal transport's signal.
    transport::block_signal(&transport::Options::new()).unwrap();
    if let Some(role) = role() {
        child(&role);
        return;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in CASES {
            println!("{name}: test");
        }
        return;
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let wanted =
        |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()));
    let start = Instant::now();
    let (mut passed, mut failed) = (0, Vec::new());
    for (name, case) in CASES {
        if !wanted(name) {
            continue;
        }
        let t = Instant::now();
        let ok = panic::catch_unwind(AssertUnwindSafe(case)).is_ok();
        println!(
            "test {name} ... {} ({:.2}s)",
            if ok { "ok" } else { "FAILED" },
            t.elapsed().as_secs_f64()
        );
        if ok {
            passed += 1;
        } else {
            failed.push(name);
        }
    }
    println!(
        "\ntest result: {}. {passed} passed; {} failed; finished in {:.2}s",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len(),
        start.elapsed().as_secs_f64()
    );
    if !failed.is_empty() {
        println!("failed: {failed:?}");
        std::process::exit(1);
    }
}
