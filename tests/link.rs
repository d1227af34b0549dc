//! One conformance body for the channel API over every mechanism between
//! two real processes (this test binary re-run as the sender): the same
//! `ipc::Sender`/`ipc::Receiver`, made by `ipc::Builder::sender`/`receiver`
//! from the address alone, carry rkyv, Pod and byte messages exactly and in
//! order; empty and largest messages pass, an oversize one is refused,
//! receive timeouts, and disconnect when the sender exits or is SIGKILLed.
//! (`signal:` needs its signal blocked before any thread exists, which
//! libtest does not allow: the frame-level suite in tests/transports.rs
//! covers it.)

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shmlane::codec::sample::Order;
use shmlane::ipc::{
    Builder, Bytes, ConnectError, EncodeError, Message, Receiver, RecvMsgError, Rkyv, SendMsgError,
    Sender,
};
use shmlane::transport;
use shmlane_testkit::{unique, Kid};

const N: u64 = 2_000;
const MAX: usize = 1024;

/// Three fresh addresses (rkyv, Pod, bytes) of one mechanism.
fn addresses(scheme: &str) -> [String; 3] {
    let tmp = std::env::temp_dir();
    [0, 1, 2].map(|_| {
        let name = unique("link");
        match scheme {
            "shm" => format!("shm:{name}"),
            "file" => format!("file:{}/{name}.ring", tmp.display()),
            "fifo" => format!("fifo:{}/{name}.fifo", tmp.display()),
            "unix" => format!("unix:{}/{name}.sock", tmp.display()),
            "mq" => format!("mq:{name}"),
            "sysvmq" => format!("sysvmq:{}", shmlane_testkit::unique_key()),
            "sysv" => format!("sysv:{}", shmlane_testkit::unique_key()),
            "tcp" => "tcp:127.0.0.1:0".to_owned(),
            other => panic!("{other}"),
        }
    })
}

/// The builder every end uses: the same settings whatever the mechanism,
/// except the capacity, which only rings and `mq:` take (a queue holds at
/// most `msg_max` messages, 10 by default).
fn builder(addr: &str) -> Builder {
    let b = Builder::new(addr)
        .unwrap()
        .message_size(MAX)
        .open_timeout(Duration::from_secs(20));
    if addr.starts_with("shm:") || addr.starts_with("file:") || addr.starts_with("sysv:") {
        b.capacity(64)
    } else if addr.starts_with("mq:") {
        b.capacity(8)
    } else {
        b
    }
}

fn receiver<M: Message>(addr: &str) -> Receiver<M> {
    builder(addr).receiver::<M>().unwrap()
}

fn sender<M: Message>(addr: &str) -> Sender<M> {
    builder(addr).sender::<M>().unwrap()
}

/// Where a receiver can be reached: its bound address over a kernel
/// transport (a `tcp:` port 0 becomes the port it got), else `addr`.
fn reach<M: Message>(rx: &Receiver<M>, addr: &str) -> String {
    rx.local_address().unwrap_or(addr).to_owned()
}

fn spawn(role: &str, addrs: &[String]) -> Kid {
    Kid::spawn("child", &format!("{role} {}", addrs.join(" ")), &[])
}

fn payload(i: u64) -> Vec<u8> {
    (0..(i as usize * 7) % (MAX + 1))
        .map(|b| (b as u64 ^ i) as u8)
        .collect()
}

fn conformance(scheme: &str) {
    let addrs = addresses(scheme);
    let orders = receiver::<Rkyv<Order>>(&addrs[0]);
    let pods = receiver::<[u64; 2]>(&addrs[1]);
    let bytes = receiver::<Bytes>(&addrs[2]);
    assert_eq!(
        orders.is_shared_memory(),
        matches!(scheme, "shm" | "file" | "sysv")
    );
    // Nobody has sent: a receive times out (not before the deadline).
    let t = Instant::now();
    assert!(matches!(
        bytes.recv_timeout(Duration::from_millis(50)),
        Err(RecvMsgError::Timeout)
    ));
    assert!(t.elapsed() >= Duration::from_millis(50));
    assert!(matches!(bytes.try_recv(), Err(RecvMsgError::Empty)));
    let bound = [
        reach(&orders, &addrs[0]),
        reach(&pods, &addrs[1]),
        reach(&bytes, &addrs[2]),
    ];
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
    assert!(kid.wait().success(), "{scheme}: sender failed");
    for e in [
        orders.recv().map(drop).unwrap_err(),
        bytes.recv().map(drop).unwrap_err(),
    ] {
        assert!(e.is_disconnected(), "{scheme}: {e:?}");
    }
    // Pod messages keep crossbeam-channel's error types.
    assert_eq!(pods.recv(), Err(shmlane::RecvError));
    // A sender SIGKILLed mid-stream: what it sent arrives, then the end.
    let addrs = addresses(scheme);
    let rx = receiver::<Bytes>(&addrs[0]);
    let mut kid = spawn("killed", &[reach(&rx, &addrs[0])]);
    for i in 0..10u64 {
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(20)).unwrap(),
            payload(i)
        );
    }
    // The sender now sleeps; kill it. (A hang guard, not a budget.)
    kid.kill();
    assert!(rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_err()
        .is_disconnected());
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
fn sysv() {
    conformance("sysv");
}

#[test]
fn sysvmq() {
    conformance("sysvmq");
}

#[test]
fn tcp() {
    conformance("tcp");
}

#[test]
fn pipe_between_parent_and_child() {
    let (tx, rx) = transport::pipe().unwrap();
    let rx = Receiver::<Bytes>::from_frames(rx, Default::default());
    let fd = tx.into_owned_fd().unwrap();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    let child_fd = transport::pass_to_child(&mut cmd, &fd);
    cmd.args(["--exact", "child", "--nocapture", "-q"])
        .stdout(Stdio::null());
    cmd.env(shmlane_testkit::ROLE, format!("pipe {child_fd}"));
    let mut kid = Kid::from_child(cmd.spawn().unwrap());
    drop(fd);
    for i in 0..N {
        assert_eq!(rx.recv().unwrap(), payload(i));
    }
    assert!(kid.wait().success());
    assert!(rx.recv().unwrap_err().is_disconnected());
}

#[test]
fn bad_addresses_and_settings_say_what_is_wrong() {
    let e = Builder::new("carrier-pigeon:x").unwrap_err();
    assert!(e.to_string().contains("unknown scheme"), "{e}");
    let e = Builder::new("pipe").unwrap().sender::<Bytes>().unwrap_err();
    assert!(e.to_string().contains("transport::pipe()"), "{e}");
    let dir = std::env::temp_dir();
    let e = Builder::new(&format!("unix:{}", dir.display()))
        .unwrap()
        .receiver::<Bytes>()
        .unwrap_err();
    assert!(e.to_string().contains("directory"), "{e}");
    // A ring setting on a kernel transport is refused, naming it.
    let sock = format!("unix:{}/{}.sock", dir.display(), unique("link"));
    for (setting, b) in [
        ("capacity", Builder::new(&sock).unwrap().capacity(8)),
        ("slot_size", Builder::new(&sock).unwrap().slot_size(64)),
        ("kind", Builder::new(&sock).unwrap().spsc()),
        ("keep", Builder::new(&sock).unwrap().keep(true)),
    ] {
        match b.receiver::<Bytes>() {
            Err(e @ ConnectError::Unsupported { .. }) => {
                assert!(e.to_string().contains(setting), "{e}")
            }
            other => panic!("{setting}: {other:?}"),
        }
    }
    // A name `shm:` accepts is accepted everywhere: one parser.
    let long = format!("shm:{}", "n".repeat(250));
    assert!(Builder::new(&long).is_ok());
    assert!(shmlane::ipc::Address::parse(&long).is_ok());
    assert!(Builder::new(&format!("shm:{}", "n".repeat(251))).is_err());
}

#[test]
fn child() {
    let Some(role) = shmlane_testkit::role() else {
        return;
    };
    let args: Vec<&str> = role.split(' ').collect();
    match args.as_slice() {
        ["all", o, p, b] => {
            let orders = sender::<Rkyv<Order>>(o);
            let pods = sender::<[u64; 2]>(p);
            let bytes = sender::<Bytes>(b);
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
            let bytes = sender::<Bytes>(b);
            for i in 0..10 {
                bytes.send(&payload(i)).unwrap();
            }
            std::thread::sleep(Duration::from_secs(60));
        }
        ["pipe", fd] => {
            // SAFETY: the parent passed this descriptor to us alone.
            let tx =
                unsafe { transport::FrameSender::from_inherited_fd(fd.parse().unwrap()) }.unwrap();
            let tx = Sender::<Bytes>::from_frames(tx);
            for i in 0..N {
                tx.send(&payload(i)).unwrap();
            }
        }
        other => panic!("unknown role {other:?}"),
    }
}
