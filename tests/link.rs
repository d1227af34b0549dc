//! One conformance body for typed links, run over every mechanism between
//! two real processes (this test binary re-run as the sender): rkyv, Pod
//! and byte messages arrive exactly and in order, empty and largest
//! messages pass, an oversize one is refused, receive timeouts, and
//! disconnect when the sender exits or is SIGKILLed. (`signal:` needs its
//! signal blocked before any thread exists, which libtest does not allow:
//! the frame-level suite in tests/transports.rs covers it.)

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use shmlane::codec::sample::Order;
use shmlane::ipc::{Bytes, EncodeError, RecvMsgError, Rkyv, SendMsgError};
use shmlane::link::{self, LinkOptions, LinkReceiver, LinkSender};
use shmlane::transport;

const ROLE: &str = "SHMLANE_LINK_CHILD";
const N: u64 = 2_000;
const MAX: usize = 1024;

fn unique() -> String {
    static C: AtomicU32 = AtomicU32::new(0);
    format!(
        "shmlane-link-{}-{}",
        std::process::id(),
        C.fetch_add(1, Ordering::Relaxed)
    )
}

/// Three fresh addresses (rkyv, Pod, bytes) of one mechanism.
fn addresses(scheme: &str) -> [String; 3] {
    let tmp = std::env::temp_dir();
    [0, 1, 2].map(|_| {
        let name = unique();
        match scheme {
            "shm" => format!("shm:{name}"),
            "file" => format!("file:{}/{name}.ring", tmp.display()),
            "fifo" => format!("fifo:{}/{name}.fifo", tmp.display()),
            "unix" => format!("unix:{}/{name}.sock", tmp.display()),
            "mq" => format!("mq:{name}"),
            "tcp" => "tcp:127.0.0.1:0".to_owned(),
            other => panic!("{other}"),
        }
    })
}

fn opts() -> LinkOptions {
    LinkOptions::new()
        .capacity(64)
        .message_size(MAX)
        .connect_timeout(Duration::from_secs(20))
}

struct Kid(Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(role: &str, addrs: &[String]) -> Kid {
    Kid(Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "-q"])
        .env(ROLE, format!("{role} {}", addrs.join(" ")))
        .stdout(Stdio::null())
        .spawn()
        .unwrap())
}

fn payload(i: u64) -> Vec<u8> {
    (0..(i as usize * 7) % (MAX + 1))
        .map(|b| (b as u64 ^ i) as u8)
        .collect()
}

fn conformance(scheme: &str) {
    let addrs = addresses(scheme);
    let mut orders = link::receiver::<Rkyv<Order>>(&addrs[0], &opts()).unwrap();
    let mut pods = link::receiver::<[u64; 2]>(&addrs[1], &opts()).unwrap();
    let mut bytes = link::receiver::<Bytes>(&addrs[2], &opts()).unwrap();
    assert_eq!(orders.is_shared_memory(), matches!(scheme, "shm" | "file"));
    // Nobody has sent: a receive times out (after the deadline, not long after).
    let t = Instant::now();
    assert!(matches!(
        bytes.recv_timeout(Duration::from_millis(50)),
        Err(RecvMsgError::Timeout)
    ));
    assert!(t.elapsed() >= Duration::from_millis(50) && t.elapsed() < Duration::from_secs(5));
    assert!(matches!(bytes.try_recv(), Err(RecvMsgError::Empty)));
    let bound = [orders.address(), pods.address(), bytes.address()].map(str::to_owned);
    let mut kid = spawn("all", &bound);
    for i in 0..N {
        let o = orders.recv_ref().unwrap();
        assert_eq!(
            (o.id.to_native(), o.symbol.as_str()),
            (i, Order::sample(i).symbol.as_str())
        );
        drop(o);
        assert_eq!(pods.recv().unwrap(), [i, !i]);
        assert_eq!(bytes.recv().unwrap(), payload(i), "{scheme} message {i}");
    }
    // The largest message, then nothing of the refused one, then the end.
    let largest = bytes.recv().unwrap();
    assert!(largest.len() >= MAX && largest.iter().all(|&b| b == 1));
    assert_eq!(bytes.recv().unwrap(), b"after");
    assert!(kid.0.wait().unwrap().success(), "{scheme}: sender failed");
    for e in [
        orders.recv().map(drop).unwrap_err(),
        pods.recv().map(drop).unwrap_err(),
        bytes.recv().map(drop).unwrap_err(),
    ] {
        assert!(e.is_disconnected(), "{scheme}: {e:?}");
    }
    // A sender SIGKILLed mid-stream: what it sent arrives, then the end.
    let addrs = addresses(scheme);
    let mut rx = link::receiver::<Bytes>(&addrs[0], &opts()).unwrap();
    let _kid = spawn("killed", &[rx.address().to_owned()]);
    for i in 0..10u64 {
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(20)).unwrap(),
            payload(i)
        );
    }
    // The sender now sleeps; kill it.
    drop(_kid);
    let t = Instant::now();
    assert!(rx
        .recv_timeout(Duration::from_secs(10))
        .unwrap_err()
        .is_disconnected());
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "{scheme}: {:?}",
        t.elapsed()
    );
}

#[test]
fn shm() {
    conformance("shm");
}

#[test]
fn file() {
    conformance("file");
}

#[test]
fn fifo() {
    conformance("fifo");
}

#[test]
fn unix() {
    conformance("unix");
}

#[test]
fn mq() {
    conformance("mq");
}

#[test]
fn tcp() {
    conformance("tcp");
}

#[test]
fn pipe_between_parent_and_child() {
    let (tx, rx) = transport::pipe().unwrap();
    let mut rx = LinkReceiver::<Bytes>::from_frames(rx, Default::default());
    let fd = tx.into_owned_fd().unwrap();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    let child_fd = transport::pass_to_child(&mut cmd, &fd);
    cmd.args(["--exact", "child", "--nocapture", "-q"])
        .env(ROLE, format!("pipe {child_fd}"))
        .stdout(Stdio::null());
    let mut kid = Kid(cmd.spawn().unwrap());
    drop(fd);
    for i in 0..N {
        assert_eq!(rx.recv().unwrap(), payload(i));
    }
    assert!(kid.0.wait().unwrap().success());
    assert!(rx.recv().unwrap_err().is_disconnected());
}

#[test]
fn bad_addresses_say_what_is_wrong() {
    let e = link::receiver::<Bytes>("carrier-pigeon:x", &opts()).unwrap_err();
    assert!(e.to_string().contains("unknown scheme"), "{e}");
    let e = link::sender::<Bytes>("pipe", &opts()).unwrap_err();
    assert!(e.to_string().contains("transport::pipe()"), "{e}");
    let missing = format!("shm:{}", unique());
    let quick = opts().connect_timeout(Duration::from_millis(50));
    let e = link::sender::<Bytes>(&missing, &quick).unwrap_err();
    assert!(e.to_string().contains("start the receiver first"), "{e}");
    let dir = std::env::temp_dir();
    let e = link::receiver::<Bytes>(&format!("unix:{}", dir.display()), &opts()).unwrap_err();
    assert!(e.to_string().contains("directory"), "{e}");
}

#[test]
fn child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let args: Vec<&str> = role.split(' ').collect();
    match args.as_slice() {
        ["all", o, p, b] => {
            let mut orders: LinkSender<Rkyv<Order>> = link::sender(o, &opts()).unwrap();
            let mut pods: LinkSender<[u64; 2]> = link::sender(p, &opts()).unwrap();
            let mut bytes: LinkSender<Bytes> = link::sender(b, &opts()).unwrap();
            for i in 0..N {
                orders.send(&Order::sample(i)).unwrap();
                pods.send([i, !i]).unwrap();
                bytes.send(&payload(i)).unwrap();
            }
            // A ring rounds its slots up to whole cache lines: its largest
            // message may be a little over MAX.
            let max = bytes.max_message_len();
            assert!((MAX..2 * MAX).contains(&max), "{max}");
            bytes.send(&vec![1; max]).unwrap();
            match bytes.send(&vec![1; max + 1]) {
                Err(SendMsgError::Encode(EncodeError::TooLarge { len, max: m })) => {
                    assert_eq!((len, m), (max + 1, max))
                }
                other => panic!("{other:?}"),
            }
            bytes.send(b"after").unwrap();
        }
        ["killed", b] => {
            let mut bytes: LinkSender<Bytes> = link::sender(b, &opts()).unwrap();
            for i in 0..10 {
                bytes.send(&payload(i)).unwrap();
            }
            std::thread::sleep(Duration::from_secs(60));
        }
        ["pipe", fd] => {
            // SAFETY: the parent passed this descriptor to us alone.
            let tx =
                unsafe { transport::FrameSender::from_inherited_fd(fd.parse().unwrap()) }.unwrap();
            let mut tx = LinkSender::<Bytes>::from_frames(tx);
            for i in 0..N {
                tx.send(&payload(i)).unwrap();
            }
        }
        other => panic!("unknown role {other:?}"),
    }
}
