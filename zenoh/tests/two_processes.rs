//! Frames over Zenoh between two real processes on loopback (explicit
//! endpoints, multicast scouting off): order, the end marker, a killed
//! sender. This binary re-runs itself as the sender.

use std::time::{Duration, Instant};

use shmlane_testkit::{self as kit, Kid};
use shmlane_zenoh::{ZOptions, ZRecvError, ZenohRx, ZenohTx};

const FRAMES: u64 = 100_000;
const HANG: Duration = Duration::from_secs(60);

/// A peer session that listens on `listen` or connects to `connect`,
/// with no scouting: loopback only.
fn options(listen: Option<u16>, connect: Option<u16>) -> ZOptions {
    ZOptions {
        config: Some(shmlane_zenoh::loopback_config(listen, connect)),
        connect_timeout: Duration::from_secs(20),
        ..ZOptions::default()
    }
}

fn frame(i: u64) -> Vec<u8> {
    let mut f = i.to_le_bytes().to_vec();
    f.extend((0..i % 61).map(|k| (i as u8).wrapping_add(k as u8)));
    f
}

/// In a re-executed copy: connect to `PORT` on `KEY`, send `COUNT` frames,
/// then either exit (dropping the sender: the end marker) or, with `HOLD`,
/// say `sent` and wait to be killed.
#[test]
fn child() {
    let Some(role) = kit::role() else { return };
    let port: u16 = kit::env("PORT").parse().unwrap();
    let count: u64 = kit::env("COUNT").parse().unwrap();
    if role == "handover" {
        // A chain of senders, each made before the one before it is
        // dropped, each sending one frame: `count` handovers.
        let key = kit::env("KEY");
        let mut prev = ZenohTx::connect(&key, &options(None, Some(port))).unwrap();
        prev.send(&frame(0)).unwrap();
        for i in 1..=count {
            let mut next = ZenohTx::connect(&key, &options(None, Some(port))).unwrap();
            drop(prev);
            next.send(&frame(i)).unwrap();
            prev = next;
        }
        return;
    }
    let mut tx = ZenohTx::connect(&kit::env("KEY"), &options(None, Some(port))).unwrap();
    for i in 0..count {
        tx.send(&frame(i)).unwrap();
    }
    if role == "hold" {
        println!("sent");
        std::thread::sleep(HANG);
    }
}

fn receive_all(rx: &mut ZenohRx, count: u64) {
    let mut buf = Vec::new();
    for i in 0..count {
        match rx.recv(&mut buf, Some(Instant::now() + HANG)) {
            Ok(_) => assert!(buf == frame(i), "frame {i} differs"),
            Err(e) => panic!("after {i} frames: {e:?}"),
        }
    }
}

#[test]
fn a_hundred_thousand_frames_in_order_then_disconnected() {
    let port = kit::free_port();
    let key = format!("shmlane/test/{}", kit::unique("order"));
    let mut rx = ZenohRx::bind(&key, &options(Some(port), None)).unwrap();
    let mut kid = Kid::spawn(
        "child",
        "send",
        &[
            ("PORT", port.to_string()),
            ("KEY", key.clone()),
            ("COUNT", FRAMES.to_string()),
        ],
    );
    receive_all(&mut rx, FRAMES);
    let mut buf = Vec::new();
    match rx.recv(&mut buf, Some(Instant::now() + HANG)) {
        Err(ZRecvError::Disconnected) => {}
        other => panic!("after the last frame: {other:?}"),
    }
    assert!(kid.wait().success());
}

#[test]
fn a_killed_sender_is_seen_gone_after_its_frames() {
    let port = kit::free_port();
    let key = format!("shmlane/test/{}", kit::unique("killed"));
    let mut rx = ZenohRx::bind(&key, &options(Some(port), None)).unwrap();
    let mut kid = Kid::spawn(
        "child",
        "hold",
        &[
            ("PORT", port.to_string()),
            ("KEY", key.clone()),
            ("COUNT", "1000".to_owned()),
        ],
    );
    assert!(kid.wait_for("sent"));
    kid.kill();
    kid.wait();
    // What Zenoh had delivered before the kill arrives, in order and
    // whole (what it still had queued in the dead process is lost, as
    // documented); then it is gone.
    let mut buf = Vec::new();
    let mut got = 0;
    loop {
        match rx.recv(&mut buf, Some(Instant::now() + HANG)) {
            Ok(_) => {
                assert!(buf == frame(got), "frame {got} differs");
                got += 1;
            }
            Err(ZRecvError::Disconnected) => break,
            Err(e) => panic!("after {got} frames: {e:?}"),
        }
    }
    assert!(got <= 1000);
}

/// A sender made before the last one is dropped keeps the receiver
/// connected: the receiver never says `Disconnected` between the old
/// sender's end marker and the new sender's token, which travel on
/// different links. Every frame arrives, then `Disconnected`.
#[test]
fn a_sender_handover_is_not_a_disconnection() {
    const HANDOVERS: u64 = 20;
    let port = kit::free_port();
    let key = format!("shmlane/test/{}", kit::unique("handover"));
    let mut rx = ZenohRx::bind(&key, &options(Some(port), None)).unwrap();
    let mut kid = Kid::spawn(
        "child",
        "handover",
        &[
            ("PORT", port.to_string()),
            ("KEY", key.clone()),
            ("COUNT", HANDOVERS.to_string()),
        ],
    );
    // Frames of different senders may arrive in either order.
    let mut got = std::collections::BTreeSet::new();
    let mut buf = Vec::new();
    while got.len() as u64 <= HANDOVERS {
        match rx.recv(&mut buf, Some(Instant::now() + HANG)) {
            Ok(_) => {
                let i = u64::from_le_bytes(buf[..8].try_into().unwrap());
                assert!(buf == frame(i), "frame {i} differs");
                assert!(got.insert(i), "frame {i} twice");
            }
            Err(e) => panic!("after frames {got:?}: {e:?}"),
        }
    }
    match rx.recv(&mut buf, Some(Instant::now() + HANG)) {
        Err(ZRecvError::Disconnected) => {}
        other => panic!("after the last frame: {other:?}"),
    }
    assert!(kid.wait().success());
}

/// A receiver that never answers a new sender's `known` query (its
/// queryable keeps every query and never replies; or it runs none, as a
/// build from before the query would) does not stop the sender:
/// `connect` waits out its connect timeout, then returns, and frames go
/// through.
#[test]
fn a_receiver_that_never_answers_holds_connect_only_to_its_timeout() {
    use zenoh::Wait;
    const TIMEOUT: Duration = Duration::from_millis(500);
    let port = kit::free_port();
    let key = format!("shmlane/test/{}", kit::unique("mute"));
    let session = zenoh::open(shmlane_zenoh::loopback_config(Some(port), None))
        .wait()
        .unwrap();
    let frames = session.declare_subscriber(key.clone()).wait().unwrap();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = std::sync::Arc::clone(&held);
    let _known = session
        .declare_queryable(format!("{key}/@shmlane/known/{:016x}", 7))
        .callback(move |query| keep.lock().unwrap().push(query))
        .wait()
        .unwrap();
    let _token = session
        .liveliness()
        .declare_token(format!("{key}/@shmlane/rx/{:016x}/any", 7))
        .wait()
        .unwrap();
    let mut opts = options(None, Some(port));
    opts.connect_timeout = TIMEOUT;
    let (done, connected) = std::sync::mpsc::channel();
    let connecting = key.clone();
    std::thread::spawn(move || {
        let started = Instant::now();
        let tx = ZenohTx::connect(&connecting, &opts);
        let _ = done.send((tx, started.elapsed()));
    });
    let (tx, waited) = connected.recv_timeout(HANG).expect("connect returned");
    let mut tx = tx.unwrap();
    // Not a measurement: `connect` returns before its deadline only when
    // every receiver it knows said yes, which this one never does.
    assert!(waited >= TIMEOUT, "connect returned after {waited:?}");
    // (Whether a query reached `held` depends on when the queryable's
    // declaration reached the sender: asserted in neither direction.)
    drop(held);
    tx.send(b"after the wait").unwrap();
    let sample = frames.recv_timeout(HANG).unwrap().expect("the frame");
    assert_eq!(sample.payload().to_bytes().as_ref(), b"after the wait");
}

/// A connect timeout too long to add to an `Instant` (`Duration::MAX`)
/// means no limit, in the wait for receivers to say they heard of the
/// sender as in the wait for a receiver (it panicked in the first).
#[test]
fn a_connect_timeout_of_duration_max_is_no_limit() {
    let port = kit::free_port();
    let key = format!("shmlane/test/{}", kit::unique("forever"));
    let mut rx = ZenohRx::bind(&key, &options(Some(port), None)).unwrap();
    let mut opts = options(None, Some(port));
    opts.connect_timeout = Duration::MAX;
    let mut tx = ZenohTx::connect(&key, &opts).unwrap();
    tx.send(&frame(0)).unwrap();
    receive_all(&mut rx, 1);
}

#[test]
fn nobody_listens_is_a_typed_error() {
    let port = kit::free_port();
    let mut opts = options(None, Some(port));
    opts.connect_timeout = Duration::from_millis(300);
    let e = ZenohTx::connect("shmlane/test/nobody", &opts).unwrap_err();
    assert!(e.to_string().contains("nobody listens"), "{e}");
}

/// A receiver that stops reading for longer than Zenoh's default 5 s
/// `wait_before_close` loses nothing: its senders wait (shmlane raises
/// the limit), then everything arrives in order.
#[test]
fn a_receiver_that_pauses_longer_than_zenohs_default_loses_nothing() {
    const COUNT: u64 = 20_000;
    let port = kit::free_port();
    let key = format!("shmlane/test/{}", kit::unique("pause"));
    let mut opts = options(Some(port), None);
    opts.capacity = 16;
    let mut rx = ZenohRx::bind(&key, &opts).unwrap();
    let mut kid = Kid::spawn(
        "child",
        "send",
        &[
            ("PORT", port.to_string()),
            ("KEY", key.clone()),
            ("COUNT", COUNT.to_string()),
        ],
    );
    receive_all(&mut rx, 100);
    // The pause is the scenario, not a measurement.
    std::thread::sleep(Duration::from_secs(7));
    let mut buf = Vec::new();
    for i in 100..COUNT {
        match rx.recv(&mut buf, Some(Instant::now() + HANG)) {
            Ok(_) => assert!(buf == frame(i), "frame {i} differs"),
            Err(e) => panic!("after {i} frames: {e:?}"),
        }
    }
    match rx.recv(&mut buf, Some(Instant::now() + HANG)) {
        Err(ZRecvError::Disconnected) => {}
        other => panic!("after the last frame: {other:?}"),
    }
    assert!(kid.wait().success());
}
