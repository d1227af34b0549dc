//! The channel API over `zenoh:` between two real processes on loopback
//! (explicit endpoints, scouting off): 100,000 rkyv messages arrive
//! checked, complete and in order, then `Disconnected`; a killed sender
//! is seen gone after its messages. This binary re-runs itself as the
//! sender.

use std::time::Duration;

use shmlane::codec::sample::Order;
use shmlane::ipc::{Builder, Rkyv};
use shmlane_testkit::{self as kit, Kid};

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
