//! The channel API over `zenoh:` between two real processes on loopback
//! (explicit endpoints, scouting off): 100,000 rkyv messages arrive
//! checked, complete and in order, then `Disconnected`; a killed sender
//! is seen gone after its messages; senders and receivers of different
//! message types refuse each other. This binary re-runs itself as the
//! sender.

use std::time::Duration;

use shmlane::codec::sample::Order;
use shmlane::ipc::{Builder, Bytes, ConnectError, RecvMsgError, Rkyv, SendMsgError};
use shmlane::transport::OpenError;
use shmlane_testkit::{self as kit, Kid};
use shmlane_zenoh::{ZRecvError, ZSendError};

const MESSAGES: u64 = 100_000;

/// The builder of each side: a peer that listens (receiver) or connects
/// (sender) on 127.0.0.1, no scouting.
fn builder(key: &str, listen: Option<u16>, connect: Option<u16>) -> Builder {
    Builder::new(&format!("zenoh:{key}"))
        .unwrap()
        .zenoh_config(shmlane_zenoh::loopback_config(listen, connect))
        .open_timeout(Duration::from_secs(20))
}

/// In a re-executed copy: send `COUNT` orders to `KEY` through `PORT`;
/// with role `hold`, then say `sent` and wait to be killed.
#[test]
fn child() {
    let Some(role) = kit::role() else { return };
    let port: u16 = kit::env("PORT").parse().unwrap();
    let count: u64 = kit::env("COUNT").parse().unwrap();
    let tx = builder(&kit::env("KEY"), None, Some(port))
        .sender::<Rkyv<Order>>()
        .unwrap();
    for i in 0..count {
        tx.send(&Order::sample(i)).unwrap();
    }
    if role == "hold" {
        println!("sent");
        std::thread::sleep(Duration::from_secs(60));
    }
}

fn run(role: &str, count: u64) {
    let port = kit::free_port();
    let key = format!("shmlane/test/{}", kit::unique("channel"));
    let rx = builder(&key, Some(port), None)
        .receiver::<Rkyv<Order>>()
        .unwrap();
    let mut kid = Kid::spawn(
        "child",
        role,
        &[
            ("PORT", port.to_string()),
            ("KEY", key.clone()),
            ("COUNT", count.to_string()),
        ],
    );
    if role == "hold" {
        assert!(kid.wait_for("sent"));
        kid.kill();
    }
    // A sender that exits delivers everything; one that is killed may
    // lose what Zenoh still had queued in its process (documented): then
    // a prefix, in order and whole, arrives.
    let mut got = 0;
    loop {
        match rx.recv_ref() {
            Ok(o) => {
                let want = Order::sample(got);
                assert_eq!(o.id.to_native(), got, "lost or out of order");
                assert_eq!(o.symbol.as_str(), want.symbol);
                assert_eq!(o.qty.to_native(), want.qty);
                got += 1;
            }
            Err(e) => {
                assert!(e.is_disconnected(), "{e:?}");
                break;
            }
        }
    }
    if role == "hold" {
        assert!(got <= count);
    } else {
        assert_eq!(got, count, "a sender that exited lost messages");
    }
    kid.wait();
}

#[test]
fn a_hundred_thousand_rkyv_messages_checked_and_in_order() {
    run("send", MESSAGES);
}

#[test]
fn a_killed_sender_is_disconnected_after_its_messages() {
    run("hold", 1000);
}

/// Many more tries than loopback ever needs, so that a broken build fails
/// instead of hanging.
const TRIES: u32 = 12_000;

/// A sender of another message type is refused at connect, with both
/// types named; a receiver of another type that comes later stops the
/// sender (a typed error inside `SendMsgError::Io`) until it goes, and is
/// told about the sender (inside `RecvMsgError::Io`).
#[test]
fn senders_and_receivers_of_different_types_refuse_each_other() {
    let (p1, p2) = (kit::free_port(), kit::free_port());
    let key = format!("shmlane/test/{}", kit::unique("types"));
    let orders = builder(&key, Some(p1), None)
        .receiver::<Rkyv<Order>>()
        .unwrap();
    match builder(&key, None, Some(p1)).sender::<u64>() {
        Err(ConnectError::Transport(e @ OpenError::TypeMismatch { .. })) => {
            let text = e.to_string();
            assert!(text.contains("u64") && text.contains("type hash"), "{text}");
        }
        other => panic!("a u64 sender to an Order receiver: {other:?}"),
    }
    // The same type connects. It also listens, for the receiver below.
    let tx = builder(&key, Some(p2), Some(p1))
        .sender::<Rkyv<Order>>()
        .unwrap();
    tx.send(&Order::sample(0)).unwrap();
    assert_eq!(orders.recv_ref().unwrap().id.to_native(), 0);

    let words = builder(&key, None, Some(p2)).receiver::<Bytes>().unwrap();
    let mut sent = 1;
    let refused = (0..TRIES)
        .find_map(|_| match tx.send(&Order::sample(sent)) {
            Ok(()) => {
                sent += 1;
                std::thread::sleep(Duration::from_millis(10));
                None
            }
            Err(SendMsgError::Io(e)) => Some(e),
            Err(e) => panic!("{e:?}"),
        })
        .expect("the sender never saw the receiver of another type");
    let inner = refused
        .get_ref()
        .and_then(|e| e.downcast_ref::<ZSendError>());
    assert!(
        matches!(inner, Some(ZSendError::TypeMismatch { ours, .. }) if ours.contains("Order")),
        "{refused}"
    );
    // The receiver of another type is told (after any frames that reached
    // it before the sender saw it: raw bytes take anything).
    let told = (0..TRIES)
        .find_map(|_| match words.recv_timeout(Duration::from_secs(60)) {
            Ok(_) => None,
            Err(RecvMsgError::Io(e)) => Some(e),
            Err(e) => panic!("{e:?}"),
        })
        .expect("the receiver was never told");
    let inner = told.get_ref().and_then(|e| e.downcast_ref::<ZRecvError>());
    assert!(
        matches!(inner, Some(ZRecvError::TypeMismatch { ours, .. }) if ours == "Bytes"),
        "{told}"
    );
    // Once it is gone, sending goes on, in order, to the Order receiver.
    drop(words);
    (0..TRIES)
        .find(|_| {
            let ok = tx.send(&Order::sample(sent)).is_ok();
            if !ok {
                std::thread::sleep(Duration::from_millis(10));
            }
            ok
        })
        .expect("the sender never resumed");
    let ids: Vec<u64> = (1..=sent)
        .map(|_| orders.recv_ref().unwrap().id.to_native())
        .collect();
    assert_eq!(ids, (1..=sent).collect::<Vec<_>>());
}
