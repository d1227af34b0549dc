//! Conformance suite for the frame transports, written once and run
//! against every transport between two real processes: this binary runs
//! copies of itself as peers (`SHMLANE_TRANSPORT_CHILD` names the role).
//!
//! It has its own `main` (`harness = false`) because the `signal:`
//! transport needs its signal blocked in every thread, so `main` blocks it
//! before any thread exists. Arguments that do not start with `-` filter
//! cases by substring of `transport/case`. Every path and queue name is
//! unique per process and case; guards kill children and remove what a
//! killed child left behind, however a case ends.

use std::ffi::CString;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::panic::{self, AssertUnwindSafe};
use std::process::{ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use shmlane::transport::{
    self, Address, AddressError, FrameReceiver, FrameRecvError, FrameSendError, FrameSender,
    OpenError, Options,
};

const ROLE: &str = "SHMLANE_TRANSPORT_CHILD";
const LONG: Duration = Duration::from_secs(30);
const ORDER_FRAMES: u64 = 100_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Pipe,
    Fifo,
    Unix,
    Mq,
    SysvMq,
    Tcp,
    Signal,
    /// With the `zenoh` feature (`.ci/run` runs `--features zenoh`): both
    /// sides on loopback, the receiver's session listening on a port of
    /// the case's, the sender's connecting to it.
    #[cfg(feature = "zenoh")]
    Zenoh,
}

fn kinds() -> Vec<Kind> {
    vec![
        Kind::Pipe,
        Kind::Fifo,
        Kind::Unix,
        Kind::Mq,
        Kind::SysvMq,
        Kind::Tcp,
        Kind::Signal,
        #[cfg(feature = "zenoh")]
        Kind::Zenoh,
    ]
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Pipe => "pipe",
            Kind::Fifo => "fifo",
            Kind::Unix => "unix",
            Kind::Mq => "mq",
            Kind::SysvMq => "sysvmq",
            Kind::Tcp => "tcp",
            Kind::Signal => "signal",
            #[cfg(feature = "zenoh")]
            Kind::Zenoh => "zenoh",
        }
    }

    fn from_name(s: &str) -> Self {
        *kinds().iter().find(|k| k.name() == s).expect("known kind")
    }
}

fn opts() -> Options {
    Options::new().connect_timeout(Duration::from_secs(10))
}

thread_local! {
    /// The loopback port of the current case's `zenoh:` sessions (each
    /// case runs on one thread; a child reads it from `ZPORT`).
    static ZPORT: std::cell::Cell<u16> = const { std::cell::Cell::new(0) };
}

/// A fresh port for the case about to start, where `kind` needs one.
fn new_port(kind: Kind) {
    #[cfg(feature = "zenoh")]
    if kind == Kind::Zenoh {
        ZPORT.with(|p| p.set(shmlane_testkit::free_port()));
    }
    let _ = kind;
}

/// The options of a receiver (`listen`) or a sender of `kind`: for
/// `zenoh:`, a loopback session on the case's port.
fn opts_as(kind: Kind, listen: bool) -> Options {
    #[cfg(feature = "zenoh")]
    if kind == Kind::Zenoh {
        let port = ZPORT.with(std::cell::Cell::get);
        let (l, c) = if listen {
            (Some(port), None)
        } else {
            (None, Some(port))
        };
        return opts().zenoh_config(shmlane::zenoh::loopback_config(l, c));
    }
    let _ = (kind, listen);
    opts()
}

fn after(d: Duration) -> Option<Instant> {
    Some(Instant::now() + d)
}

/// A fresh address for `kind`, unique in this process and across runs.
fn unique(kind: Kind) -> String {
    let tag = shmlane_testkit::unique("t");
    match kind {
        Kind::Pipe => "pipe".into(),
        Kind::Fifo => format!("fifo:/tmp/{tag}.fifo"),
        Kind::Unix => format!("unix:/tmp/{tag}.sock"),
        Kind::Mq => format!("mq:{tag}"),
        Kind::SysvMq => format!("sysvmq:{}", shmlane_testkit::unique_key()),
        Kind::Tcp => "tcp:127.0.0.1:0".into(),
        Kind::Signal => "signal:".into(),
        #[cfg(feature = "zenoh")]
        Kind::Zenoh => format!("zenoh:shmlane/test/{tag}"),
    }
}

/// Removes what a receiver at this address leaves when it is killed.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        match Address::parse(&self.0) {
            Ok(Address::Fifo(p) | Address::Unix(p)) => {
                let _ = std::fs::remove_file(p);
            }
            Ok(Address::Mq(name)) => {
                let q = CString::new(format!("/{name}")).unwrap();
                let l = CString::new(format!("/shmlane-mq.{name}")).unwrap();
                // SAFETY: both are NUL-terminated names; failure is fine.
                unsafe {
                    libc::mq_unlink(q.as_ptr());
                    libc::shm_unlink(l.as_ptr());
                }
            }
            Ok(Address::SysvMq(key)) => {
                let mut c = shmlane_testkit::Cleanup::new();
                c.sysv(key.resolve().unwrap());
            }
            _ => {}
        }
    }
}

/// A child that is killed and reaped when the case ends, however it ends.
struct Child {
    child: std::process::Child,
    out: BufReader<ChildStdout>,
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Child {
    fn spawn(role: &str, kind: Kind, addr: &str, fd: Option<&OwnedFd>, count: u64) -> Self {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.env(ROLE, role)
            .env("KIND", kind.name())
            .env("ADDR", addr)
            .env("COUNT", count.to_string())
            .env("ZPORT", ZPORT.with(std::cell::Cell::get).to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if let Some(fd) = fd {
            let raw = transport::pass_to_child(&mut cmd, fd);
            cmd.env("FD", raw.to_string());
        }
        let mut child = cmd.spawn().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        Self { child, out }
    }

    /// The next line the child prints.
    fn line(&mut self) -> String {
        let mut line = String::new();
        assert!(
            self.out.read_line(&mut line).unwrap() > 0,
            "child exited early"
        );
        line.trim().to_owned()
    }

    fn expect(&mut self, word: &str) {
        assert_eq!(self.line(), word);
    }

    fn say(&mut self, word: &str) {
        writeln!(self.child.stdin.as_mut().unwrap(), "{word}").unwrap();
    }

    fn kill(&mut self) {
        self.child.kill().unwrap();
    }

    fn assert_success(mut self) {
        let status = self.child.wait().unwrap();
        assert!(status.success(), "child failed: {status}");
    }
}

/// Binds a receiver here and starts a child that sends to it.
fn receive_here(kind: Kind, role: &str, count: u64) -> (FrameReceiver, Child, Cleanup) {
    if kind == Kind::Pipe {
        let (tx, rx) = transport::pipe().unwrap();
        let fd = tx.into_owned_fd().unwrap();
        let child = Child::spawn(role, kind, "pipe", Some(&fd), count);
        drop(fd);
        return (rx, child, Cleanup(String::new()));
    }
    new_port(kind);
    let addr = unique(kind);
    let cleanup = Cleanup(addr.clone());
    let rx = FrameReceiver::bind(&Address::parse(&addr).unwrap(), &opts_as(kind, true)).unwrap();
    let child = Child::spawn(role, kind, &rx.local_address().to_string(), None, count);
    (rx, child, cleanup)
}

/// Starts a child that binds a receiver, and connects to it.
fn send_from_here(kind: Kind, role: &str, count: u64) -> (FrameSender, Child, Cleanup) {
    if kind == Kind::Pipe {
        let (tx, rx) = transport::pipe().unwrap();
        let fd = rx.into_owned_fd().unwrap();
        let mut child = Child::spawn(role, kind, "pipe", Some(&fd), count);
        drop(fd);
        child.expect("addr pipe");
        return (tx, child, Cleanup(String::new()));
    }
    new_port(kind);
    let addr = unique(kind);
    let cleanup = Cleanup(addr.clone());
    let mut child = Child::spawn(role, kind, &addr, None, count);
    let line = child.line();
    let local = line.strip_prefix("addr ").expect("addr line");
    let tx = FrameSender::connect(&Address::parse(local).unwrap(), &opts_as(kind, false)).unwrap();
    (tx, child, cleanup)
}

/// Frame `i` of the ordering case: its index, then bytes derived from it.
fn order_frame(kind: Kind, i: u64, buf: &mut Vec<u8>) {
    let extra = if kind == Kind::Signal { i % 9 } else { i % 57 };
    buf.clear();
    buf.extend_from_slice(&i.to_le_bytes());
    buf.extend((0..extra).map(|k| (i as u8).wrapping_add(k as u8)));
}

fn big_frame(len: usize) -> Vec<u8> {
    (0..len).map(|k| (k % 251) as u8).collect()
}

// ---------------------------------------------------------------- children

fn child_sender(kind: Kind) -> FrameSender {
    match std::env::var("FD") {
        // SAFETY: the parent passed this descriptor for us alone.
        Ok(fd) => unsafe { FrameSender::from_inherited_fd(fd.parse().unwrap()) }.unwrap(),
        Err(_) => {
            let addr = std::env::var("ADDR").unwrap();
            assert_ne!(kind, Kind::Pipe);
            FrameSender::connect(&Address::parse(&addr).unwrap(), &opts_as(kind, false)).unwrap()
        }
    }
}

fn child_receiver(kind: Kind) -> FrameReceiver {
    match std::env::var("FD") {
        // SAFETY: the parent passed this descriptor for us alone.
        Ok(fd) => unsafe { FrameReceiver::from_inherited_fd(fd.parse().unwrap()) }.unwrap(),
        Err(_) => {
            let addr = std::env::var("ADDR").unwrap();
            FrameReceiver::bind(&Address::parse(&addr).unwrap(), &opts_as(kind, true)).unwrap()
        }
    }
}

fn read_stdin_line() {
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

fn child(role: &str) {
    let kind = Kind::from_name(&std::env::var("KIND").unwrap());
    let count: u64 = std::env::var("COUNT").unwrap().parse().unwrap();
    ZPORT.with(|p| p.set(std::env::var("ZPORT").unwrap().parse().unwrap()));
    match role {
        "send-order" => {
            let mut tx = child_sender(kind);
            let mut buf = Vec::new();
            for i in 0..count {
                order_frame(kind, i, &mut buf);
                tx.send(&buf, None).unwrap();
            }
        }
        "send-sizes" => {
            let mut tx = child_sender(kind);
            let max = tx.max_frame();
            tx.send(&[], None).unwrap();
            tx.send(&big_frame(max), None).unwrap();
            match tx.send(&big_frame(max + 1), None) {
                Err(FrameSendError::TooLarge { len, max: m }) if len == max + 1 && m == max => {}
                other => panic!("oversize frame: {other:?}"),
            }
            tx.send(&[0xAB], None).unwrap();
        }
        "send-idle" => {
            let _tx = child_sender(kind);
            println!("connected");
            read_stdin_line();
        }
        "send-then-hang" => {
            let mut tx = child_sender(kind);
            let mut buf = Vec::new();
            for i in 0..count {
                order_frame(kind, i, &mut buf);
                tx.send(&buf, None).unwrap();
            }
            println!("sent");
            std::thread::sleep(LONG);
        }
        "recv-idle" => {
            let rx = child_receiver(kind);
            println!("addr {}", rx.local_address());
            std::thread::sleep(LONG);
        }
        "recv-some" => {
            let mut rx = child_receiver(kind);
            println!("addr {}", rx.local_address());
            let mut buf = Vec::new();
            for _ in 0..count {
                rx.recv(&mut buf, after(LONG)).unwrap();
            }
        }
        "perm-denied" => {
            // SAFETY: plain system calls; this process is single-threaded.
            unsafe {
                if libc::geteuid() == 0 {
                    assert_eq!(libc::setgid(65534), 0);
                    assert_eq!(libc::setuid(65534), 0);
                }
            }
            let addr = Address::parse(&std::env::var("ADDR").unwrap()).unwrap();
            match FrameReceiver::bind(&addr, &opts()) {
                Err(OpenError::PermissionDenied { .. }) => println!("denied"),
                other => println!("unexpected: {other:?}"),
            }
        }
        other => panic!("unknown child role {other}"),
    }
}

// ------------------------------------------------------------------ cases

/// 100 000 frames arrive in order and intact, then `Disconnected`.
fn order(kind: Kind) {
    let (mut rx, child, _c) = receive_here(kind, "send-order", ORDER_FRAMES);
    let mut buf = Vec::new();
    let mut want = Vec::new();
    for i in 0..ORDER_FRAMES {
        match rx.recv(&mut buf, after(LONG)) {
            Ok(n) => {
                order_frame(kind, i, &mut want);
                assert_eq!(n, buf.len());
                assert!(buf == want, "frame {i} differs: {buf:?} != {want:?}");
            }
            Err(e) => panic!("after {i} frames: {e:?}"),
        }
    }
    match rx.recv(&mut buf, after(LONG)) {
        Err(FrameRecvError::Disconnected) => {}
        other => panic!("after the last frame: {other:?}"),
    }
    child.assert_success();
}

/// Empty and maximum-size frames; an oversize frame is refused whole.
fn sizes(kind: Kind) {
    let (mut rx, child, _c) = receive_here(kind, "send-sizes", 0);
    let mut buf = vec![1, 2, 3];
    assert_eq!(rx.recv(&mut buf, after(LONG)).unwrap(), 0);
    assert!(buf.is_empty());
    let max = rx.max_frame();
    assert_eq!(rx.recv(&mut buf, after(LONG)).unwrap(), max);
    assert!(buf == big_frame(max), "max frame differs");
    // The oversize frame left nothing behind: the next frame is next.
    assert_eq!(rx.recv(&mut buf, after(LONG)).unwrap(), 1);
    assert_eq!(buf, [0xAB]);
    assert!(matches!(
        rx.recv(&mut buf, after(LONG)),
        Err(FrameRecvError::Disconnected)
    ));
    child.assert_success();
}

fn assert_timeout(rx: &mut FrameReceiver, wait: Duration) {
    let mut buf = Vec::new();
    let start = Instant::now();
    match rx.recv(&mut buf, Some(start + wait)) {
        Err(FrameRecvError::Timeout) => {}
        other => panic!("expected a timeout: {other:?}"),
    }
    let took = start.elapsed();
    assert!(took >= wait, "timed out early: {took:?} < {wait:?}");
    // Only against a hang (how late is a benchmark's question).
    assert!(took < wait + LONG, "timed out late: {took:?}");
}

/// Receiving times out before a sender exists, with an idle sender, and
/// as a non-blocking try; a sender that exits having sent nothing
/// disconnects.
fn recv_timeout(kind: Kind) {
    let (mut rx, mut child, _c) = if kind == Kind::Pipe {
        receive_here(kind, "send-idle", 0)
    } else {
        new_port(kind);
        let addr = unique(kind);
        let cleanup = Cleanup(addr.clone());
        let mut rx =
            FrameReceiver::bind(&Address::parse(&addr).unwrap(), &opts_as(kind, true)).unwrap();
        assert_timeout(&mut rx, Duration::from_millis(150));
        let child = Child::spawn("send-idle", kind, &rx.local_address().to_string(), None, 0);
        (rx, child, cleanup)
    };
    child.expect("connected");
    let start = Instant::now();
    let mut buf = Vec::new();
    assert!(matches!(
        rx.recv(&mut buf, Some(Instant::now())),
        Err(FrameRecvError::Timeout)
    ));
    assert!(start.elapsed() < LONG, "a non-blocking try waited");
    assert_timeout(&mut rx, Duration::from_millis(200));
    child.say("go");
    match rx.recv(&mut buf, after(LONG)) {
        Err(FrameRecvError::Disconnected) => {}
        other => panic!("after the sender left: {other:?}"),
    }
    child.assert_success();
}

/// Sending times out when the receiver does not read, and disconnects
/// once the receiver is killed.
fn send_timeout(kind: Kind) {
    let (mut tx, mut child, _c) = send_from_here(kind, "recv-idle", 0);
    let frame = big_frame(tx.max_frame().min(64 * 1024));
    let start = Instant::now();
    let wait = Duration::from_millis(100);
    let mut sent = 0u64;
    loop {
        let t = Instant::now();
        match tx.send(&frame, Some(t + wait)) {
            Ok(()) => sent += 1,
            Err(FrameSendError::Timeout) => {
                let took = t.elapsed();
                assert!(took >= wait, "timed out early: {took:?}");
                assert!(
                    took < wait + Duration::from_secs(5),
                    "timed out late: {took:?}"
                );
                break;
            }
            Err(e) => panic!("after {sent} frames: {e:?}"),
        }
        assert!(start.elapsed() < LONG, "never filled after {sent} frames");
    }
    // A non-blocking try never waits. (TCP may have made room meanwhile,
    // moving bytes into the receiver's buffer, so it can succeed a few
    // times before the buffers are full for good.)
    for _ in 0..100 {
        let t = Instant::now();
        let r = tx.send(&frame, Some(t));
        assert!(t.elapsed() < LONG, "a non-blocking try waited");
        match r {
            Ok(()) => {}
            Err(FrameSendError::Timeout) => break,
            Err(e) => panic!("non-blocking try: {e:?}"),
        }
    }
    child.kill();
    let killed = Instant::now();
    loop {
        match tx.send(&frame, after(Duration::from_millis(50))) {
            Err(FrameSendError::Disconnected) => break,
            Ok(()) | Err(FrameSendError::Timeout) => {}
            Err(e) => panic!("after the receiver was killed: {e:?}"),
        }
        assert!(killed.elapsed() < LONG, "no disconnect");
    }
}

/// A receiver that exits after reading a few frames disconnects the sender.
fn receiver_exits(kind: Kind) {
    let (mut tx, _child, _c) = send_from_here(kind, "recv-some", 10);
    let mut buf = Vec::new();
    let start = Instant::now();
    let mut i = 0;
    loop {
        order_frame(kind, i, &mut buf);
        match tx.send(&buf, after(Duration::from_millis(50))) {
            Ok(()) => i += 1,
            Err(FrameSendError::Timeout) => {}
            Err(FrameSendError::Disconnected) => break,
            Err(e) => panic!("after {i} frames: {e:?}"),
        }
        assert!(start.elapsed() < LONG, "no disconnect");
    }
    assert!(i >= 10, "disconnected after only {i} frames");
}

/// A sender killed by SIGKILL: every frame it sent arrives, then
/// `Disconnected`. The last frames are still queued when it dies.
fn sender_killed(kind: Kind) {
    const N: u64 = 1000;
    // Fits in every transport's buffer (an mq queue holds 10).
    const LEFT: u64 = 5;
    let (mut rx, mut child, _c) = receive_here(kind, "send-then-hang", N);
    let mut buf = Vec::new();
    let mut want = Vec::new();
    let mut got = 0;
    let mut next = |rx: &mut FrameReceiver, got: &mut u64| -> Result<(), FrameRecvError> {
        rx.recv(&mut buf, after(LONG))?;
        order_frame(kind, *got, &mut want);
        assert!(buf == want, "frame {got} differs");
        *got += 1;
        Ok(())
    };
    while got < N - LEFT {
        next(&mut rx, &mut got).unwrap();
    }
    child.expect("sent");
    child.kill();
    let killed = Instant::now();
    loop {
        match next(&mut rx, &mut got) {
            Ok(()) => {}
            Err(FrameRecvError::Disconnected) => break,
            Err(e) => panic!("after the kill, after {got}: {e:?}"),
        }
    }
    if zenoh(kind) {
        // What Zenoh still had queued in the killed process is lost
        // (documented): a prefix arrives.
        assert!(got >= N - LEFT, "{got}");
    } else {
        assert_eq!(got, N);
    }
    // Only against a hang.
    assert!(killed.elapsed() < LONG, "no disconnect");
}

// ------------------------------------------------ addresses, environment

fn parse_err(s: &str) -> AddressError {
    Address::parse(s).unwrap_err()
}

fn addresses() {
    let e = parse_err("foo:bar");
    assert!(matches!(&e, AddressError::UnknownScheme { scheme, .. } if scheme == "foo"));
    assert_eq!(
        e.to_string(),
        "unknown scheme `foo` in `foo:bar`: use one of shm:, file:, sysv:, pipe, fifo:, unix:, \
         mq:, sysvmq:, tcp:, signal:, zenoh:"
    );
    assert!(matches!(parse_err(""), AddressError::Empty));
    assert!(matches!(
        parse_err("fifo:"),
        AddressError::MissingPath { scheme: "fifo:" }
    ));
    assert!(matches!(
        parse_err("unix:"),
        AddressError::MissingPath { scheme: "unix:" }
    ));
    assert!(parse_err("unix:").to_string().contains("needs a path"));
    assert!(matches!(parse_err("mq:a/b"), AddressError::BadName { .. }));
    assert!(matches!(parse_err("mq:"), AddressError::BadName { .. }));
    assert!(matches!(
        parse_err("tcp:localhost"),
        AddressError::BadTcp { .. }
    ));
    assert!(matches!(
        parse_err("tcp:h:99999"),
        AddressError::BadTcp { .. }
    ));
    assert!(matches!(
        parse_err("signal:abc"),
        AddressError::BadPid { .. }
    ));
    assert!(matches!(
        parse_err("signal:-3"),
        AddressError::BadPid { .. }
    ));
    assert!(matches!(
        parse_err("pipe:x"),
        AddressError::PipeTakesNothing { .. }
    ));
    for bad in [
        "sysvmq:",
        "sysvmq:0",
        "sysvmq:0x0",
        "sysvmq:/tmp",
        "sysvmq:/tmp:0",
        "sysvmq:/tmp:256",
        "sysvmq:x1",
    ] {
        let e = parse_err(bad);
        assert!(
            matches!(
                e,
                AddressError::BadSysvKey {
                    scheme: "sysvmq:",
                    ..
                }
            ),
            "{bad}: {e:?}"
        );
        assert!(e.to_string().contains("ftok"), "{e}");
    }
    assert_eq!(
        Address::parse("sysvmq:21248").unwrap(),
        Address::parse("sysvmq:0x5300").unwrap()
    );
    assert_eq!(
        Address::parse("sysvmq:/etc:7").unwrap(),
        Address::SysvMq(transport::SysvKey::Ftok {
            path: "/etc".into(),
            id: 7
        })
    );
    for bad in ["zenoh:", "zenoh:a/*", "zenoh:a/$*"] {
        assert!(
            matches!(parse_err(bad), AddressError::BadZenohKey { .. }),
            "{bad}"
        );
    }
    for ok in [
        "zenoh:factory/line1/orders",
        "sysvmq:0x00005300",
        "sysvmq:/etc/hosts:7",
        "pipe",
        "fifo:/tmp/x",
        "unix:/tmp/x.sock",
        "mq:orders",
        "tcp:127.0.0.1:7000",
        "tcp:[::1]:7000",
        "signal:42",
        "signal:",
        "shm:ring",
        "file:/tmp/ring",
    ] {
        assert_eq!(Address::parse(ok).unwrap().to_string(), ok);
    }
    assert_eq!(
        Address::parse("tcp:[::1]:7").unwrap(),
        Address::Tcp {
            host: "::1".into(),
            port: 7
        }
    );
    for (addr, connect) in [
        ("shm:x", false),
        ("file:/tmp/x", true),
        ("pipe", false),
        ("signal:", true),
    ] {
        let a = Address::parse(addr).unwrap();
        let e = if connect {
            FrameSender::connect(&a, &opts()).unwrap_err()
        } else {
            FrameReceiver::bind(&a, &opts()).unwrap_err()
        };
        assert!(matches!(e, OpenError::Unsupported { .. }), "{addr}: {e:?}");
    }
    // Without the feature, zenoh: says how to get it.
    #[cfg(not(feature = "zenoh"))]
    for connect in [true, false] {
        let a = Address::parse("zenoh:a/b").unwrap();
        let e = if connect {
            FrameSender::connect(&a, &opts()).unwrap_err()
        } else {
            FrameReceiver::bind(&a, &opts()).unwrap_err()
        };
        assert!(e.to_string().contains("`zenoh` cargo feature"), "{e}");
    }
}

fn tmp_path(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(shmlane_testkit::unique(tag))
}

fn environment() {
    let dir = tmp_path("dir");
    std::fs::create_dir(&dir).unwrap();
    let mut _rm = shmlane_testkit::Cleanup::new();
    _rm.path(&dir);
    let file = dir.join("plain");
    std::fs::write(&file, b"x").unwrap();
    let o = opts().connect_timeout(Duration::from_millis(200));
    for scheme in ["fifo", "unix"] {
        let a = Address::parse(&format!("{scheme}:{}", dir.display())).unwrap();
        let e = FrameReceiver::bind(&a, &o).unwrap_err();
        assert!(
            matches!(&e, OpenError::IsADirectory { path } if *path == dir),
            "{e:?}"
        );
        assert!(e.to_string().contains("is a directory"));
        let e = FrameSender::connect(&a, &o).unwrap_err();
        assert!(matches!(e, OpenError::IsADirectory { .. }), "{e:?}");
        let a = Address::parse(&format!("{scheme}:{}", file.display())).unwrap();
        let e = FrameReceiver::bind(&a, &o).unwrap_err();
        assert!(matches!(e, OpenError::WrongFileType { .. }), "{e:?}");
        let e = FrameSender::connect(&a, &o).unwrap_err();
        assert!(matches!(e, OpenError::WrongFileType { .. }), "{e:?}");
        let a = Address::parse(&format!("{scheme}:{}/no/such/dir/x", dir.display())).unwrap();
        let e = FrameReceiver::bind(&a, &o).unwrap_err();
        assert!(matches!(e, OpenError::NoSuchDirectory { .. }), "{e:?}");
    }

    // Permission denied: a directory only root may write, tried as
    // `nobody` when we are root.
    let ro = tmp_path("ro");
    std::fs::create_dir(&ro).unwrap();
    let mut _rm_ro = shmlane_testkit::Cleanup::new();
    _rm_ro.path(&ro);
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    }
    for scheme in ["fifo", "unix"] {
        let addr = format!("{scheme}:{}/x", ro.display());
        let mut child = Child::spawn("perm-denied", Kind::Fifo, &addr, None, 0);
        assert_eq!(child.line(), "denied", "{addr}");
    }

    // Message size above the system's mq limit.
    let limit: usize = std::fs::read_to_string("/proc/sys/fs/mqueue/msgsize_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let name = unique(Kind::Mq);
    let _c = Cleanup(name.clone());
    let a = Address::parse(&name).unwrap();
    let e = FrameReceiver::bind(&a, &opts().max_frame(limit + 1)).unwrap_err();
    assert!(
        matches!(e, OpenError::MqFrameTooLarge { requested, limit: l } if requested == limit + 1 && l == limit),
        "{e:?}"
    );
    assert!(e.to_string().contains("fs.mqueue.msgsize_max"));
    // A second receiver on a live queue is refused; a sender needs one;
    // a queue takes several senders.
    let e = FrameSender::connect(&a, &o).unwrap_err();
    assert!(matches!(e, OpenError::NobodyListens { .. }), "{e:?}");
    let rx = FrameReceiver::bind(&a, &opts()).unwrap();
    let e = FrameReceiver::bind(&a, &opts()).unwrap_err();
    assert!(matches!(e, OpenError::AddressInUse { .. }), "{e:?}");
    let _tx = FrameSender::connect(&a, &o).unwrap();
    let _tx2 = FrameSender::connect(&a, &o).unwrap();
    drop(rx);

    // System V queues: the kernel's message limit, a live receiver, no
    // receiver, several senders, a receiver gone; an ftok path missing.
    let limit = shmlane_sys::sysv::limit("msgmax").unwrap() as usize;
    let addr = unique(Kind::SysvMq);
    let _c = Cleanup(addr.clone());
    let a = Address::parse(&addr).unwrap();
    let e = FrameReceiver::bind(&a, &opts().max_frame(limit + 1)).unwrap_err();
    assert!(
        matches!(e, OpenError::SysvFrameTooLarge { requested, limit: l, sysctl: "kernel.msgmax" } if requested == limit + 1 && l == limit),
        "{e:?}"
    );
    assert!(e.to_string().contains("sysctl -w kernel.msgmax="), "{e}");
    let e = FrameSender::connect(&a, &o).unwrap_err();
    assert!(matches!(e, OpenError::NobodyListens { .. }), "{e:?}");
    let rx = FrameReceiver::bind(&a, &opts()).unwrap();
    let e = FrameReceiver::bind(&a, &opts()).unwrap_err();
    assert!(matches!(e, OpenError::AddressInUse { .. }), "{e:?}");
    let mut tx = FrameSender::connect(&a, &o).unwrap();
    let _tx2 = FrameSender::connect(&a, &o).unwrap();
    assert_eq!(tx.max_frame(), rx.max_frame());
    drop(rx);
    assert!(matches!(
        tx.send(b"x", after(LONG)),
        Err(FrameSendError::Disconnected)
    ));
    // Receivers racing to bind one key: exactly one wins, every time, and
    // it works (a set being made is never taken for a dead receiver's).
    for _ in 0..30 {
        let addr = unique(Kind::SysvMq);
        let _c = Cleanup(addr.clone());
        let a = Address::parse(&addr).unwrap();
        let barrier = std::sync::Barrier::new(4);
        let won: Vec<FrameReceiver> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        match FrameReceiver::bind(&a, &opts()) {
                            Ok(rx) => Some(rx),
                            Err(OpenError::AddressInUse { .. }) => None,
                            Err(e) => panic!("{e:?}"),
                        }
                    })
                })
                .collect();
            hs.into_iter().filter_map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(won.len(), 1);
        let mut rx = won.into_iter().next().unwrap();
        let mut tx = FrameSender::connect(&a, &o).unwrap();
        tx.send(b"won", None).unwrap();
        let mut buf = Vec::new();
        assert_eq!(rx.recv(&mut buf, after(LONG)).unwrap(), 3);
    }
    let missing = tmp_path("ftok");
    let e = FrameReceiver::bind(
        &Address::parse(&format!("sysvmq:{}:1", missing.display())).unwrap(),
        &opts(),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains(&missing.display().to_string()),
        "{e}"
    );

    // Port in use, and nobody listening on a port.
    let rx = FrameReceiver::bind(&Address::parse("tcp:127.0.0.1:0").unwrap(), &opts()).unwrap();
    let Address::Tcp { port, .. } = rx.local_address().clone() else {
        panic!()
    };
    let e = FrameReceiver::bind(
        &Address::parse(&format!("tcp:127.0.0.1:{port}")).unwrap(),
        &opts(),
    )
    .unwrap_err();
    assert!(
        matches!(e, OpenError::PortInUse { port: p } if p == port),
        "{e:?}"
    );
    assert!(e.to_string().contains(&port.to_string()));
    drop(rx);
    let start = Instant::now();
    let e = FrameSender::connect(
        &Address::parse(&format!("tcp:127.0.0.1:{port}")).unwrap(),
        &o,
    )
    .unwrap_err();
    assert!(matches!(e, OpenError::NobodyListens { .. }), "{e:?}");
    assert!(start.elapsed() >= Duration::from_millis(200));

    // Unix: a live socket is refused, a stale one replaced; nobody listens.
    let sock = tmp_path("sock");
    let a = Address::parse(&format!("unix:{}", sock.display())).unwrap();
    let start = Instant::now();
    let e = FrameSender::connect(&a, &o).unwrap_err();
    assert!(matches!(e, OpenError::NobodyListens { .. }), "{e:?}");
    assert!(start.elapsed() >= Duration::from_millis(200));
    let rx = FrameReceiver::bind(&a, &opts()).unwrap();
    let e = FrameReceiver::bind(&a, &opts()).unwrap_err();
    assert!(matches!(e, OpenError::AddressInUse { .. }), "{e:?}");
    drop(rx);
    assert!(!sock.exists(), "the receiver removes its socket");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap()); // stale file
    assert!(sock.exists());
    let rx = FrameReceiver::bind(&a, &opts()).unwrap();
    drop(rx);

    // Fifo: nobody reads.
    let fifo = tmp_path("fifo");
    let a = Address::parse(&format!("fifo:{}", fifo.display())).unwrap();
    let e = FrameSender::connect(&a, &o).unwrap_err();
    assert!(matches!(e, OpenError::NobodyListens { .. }), "{e:?}");

    // Signal: only one's own pid; nobody at a dead pid.
    let e = FrameReceiver::bind(&Address::Signal(Some(1)), &opts()).unwrap_err();
    assert!(matches!(e, OpenError::NotOwnPid { pid: 1 }), "{e:?}");
    let mut dead = Command::new("true").spawn().unwrap();
    let pid = dead.id() as i32;
    dead.wait().unwrap();
    let e = FrameSender::connect(&Address::Signal(Some(pid)), &o).unwrap_err();
    assert!(matches!(e, OpenError::NobodyListens { .. }), "{e:?}");

    // An oversize frame on an in-process pipe: refused, nothing sent.
    let (mut tx, mut rx) = transport::pipe().unwrap();
    let big = vec![0; tx.max_frame() + 1];
    assert!(matches!(
        tx.send(&big, None),
        Err(FrameSendError::TooLarge { .. })
    ));
    let mut buf = Vec::new();
    assert!(matches!(
        rx.recv(&mut buf, Some(Instant::now())),
        Err(FrameRecvError::Timeout)
    ));
}

/// Frames larger than what the stream takes at once: a send that only
/// partly fits is finished before the next frame, and a receive that times
/// out mid-frame keeps what it read; every frame arrives whole.
fn partial_frames() {
    let (mut tx, mut rx) = transport::pipe().unwrap();
    let a = big_frame(tx.max_frame());
    let mut sent = 0;
    loop {
        match tx.send(&a, Some(Instant::now())) {
            Ok(()) => sent += 1,
            Err(FrameSendError::Timeout) => break,
            Err(e) => panic!("{e:?}"),
        }
        assert!(sent < 100, "the pipe never filled");
    }
    assert!(sent >= 1);
    let writer = std::thread::spawn(move || {
        for _ in 0..3 {
            tx.send(&a, None).unwrap();
        }
        tx.send(&[7; 3], None).unwrap();
    });
    let mut buf = Vec::new();
    let mut got = 0;
    loop {
        match rx.recv(&mut buf, Some(Instant::now())) {
            Ok(3) => {
                assert_eq!(buf, [7; 3]);
                break;
            }
            Ok(n) => {
                assert!(n == buf.len() && buf == big_frame(n), "frame {got} differs");
                got += 1;
            }
            Err(FrameRecvError::Timeout) => std::thread::yield_now(),
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(got, sent + 3);
    writer.join().unwrap();
    assert!(matches!(
        rx.recv(&mut buf, after(LONG)),
        Err(FrameRecvError::Disconnected)
    ));
}

// ------------------------------------------------------------------ runner

type Case = (&'static str, fn(Kind));

/// Cases a transport does not take part in, and why (documented where
/// the transport is).
/// Whether `kind` is `zenoh:`.
fn zenoh(kind: Kind) -> bool {
    #[cfg(feature = "zenoh")]
    if kind == Kind::Zenoh {
        return true;
    }
    let _ = kind;
    false
}

fn skipped(kind: Kind, case: &str) -> bool {
    // `zenoh:` sends wait inside Zenoh while the path is full, whatever
    // the deadline (Block congestion control): no send timeout to test.
    zenoh(kind) && case == "send_timeout"
}

const CASES: [Case; 6] = [
    ("order", order),
    ("sizes", sizes),
    ("recv_timeout", recv_timeout),
    ("send_timeout", send_timeout),
    ("receiver_exits", receiver_exits),
    ("sender_killed", sender_killed),
];

fn main() {
    // Before any thread exists: every thread of this process, and of the
    // children it re-executes, blocks the signal transport's signal.
    transport::block_signal(&opts()).unwrap();
    if let Ok(role) = std::env::var(ROLE) {
        child(&role);
        return;
    }
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted =
        |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()));
    let run = |name: String, f: Box<dyn FnOnce() + Send>| -> bool {
        let start = Instant::now();
        let ok = panic::catch_unwind(AssertUnwindSafe(f)).is_ok();
        println!(
            "test {name} ... {} ({:.2}s)",
            if ok { "ok" } else { "FAILED" },
            start.elapsed().as_secs_f64()
        );
        ok
    };
    let start = Instant::now();
    let results: Vec<bool> = std::thread::scope(|s| {
        let mut handles = Vec::new();
        for kind in kinds() {
            let cases: Vec<Case> = CASES
                .iter()
                .copied()
                .filter(|(c, _)| wanted(&format!("{}/{c}", kind.name())))
                .filter(|(c, _)| !skipped(kind, c))
                .collect();
            handles.push(s.spawn(move || {
                cases
                    .into_iter()
                    .map(|(c, f)| run(format!("{}/{c}", kind.name()), Box::new(move || f(kind))))
                    .collect::<Vec<bool>>()
            }));
        }
        let mut results = Vec::new();
        for (name, f) in [
            ("errors/addresses", addresses as fn()),
            ("errors/environment", environment),
            ("stream/partial_frames", partial_frames),
        ] {
            if wanted(name) {
                results.push(run(name.into(), Box::new(f)));
            }
        }
        for h in handles {
            results.extend(h.join().unwrap());
        }
        results
    });
    let failed = results.iter().filter(|ok| !**ok).count();
    println!(
        "\ntest result: {}. {} passed; {failed} failed; finished in {:.2}s",
        if failed == 0 { "ok" } else { "FAILED" },
        results.len() - failed,
        start.elapsed().as_secs_f64()
    );
    if failed > 0 {
        std::process::exit(1);
    }
}
