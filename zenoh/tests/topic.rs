//! Publish/subscribe over `zenoh:` on loopback (explicit endpoints,
//! scouting off): a publisher in another process reaches every
//! subscriber with every message, checked and in order; its end is each
//! subscriber's `Disconnected`, and a new publisher is heard again.
//! Settings Zenoh does not carry are refused. This binary re-runs itself
//! as the publisher.

use std::time::Duration;

use shmlane::codec::sample::Order;
use shmlane::ipc::{Builder, ConnectError, Policy, Rkyv, TopicRecvError};
use shmlane_testkit::{self as kit, Kid};

const MESSAGES: u64 = 20_000;

/// The publisher listens on `PORT`; subscribers connect to it.
fn builder(key: &str, listen: Option<u16>, connect: Option<u16>) -> Builder {
    Builder::new(&format!("zenoh:{key}"))
        .unwrap()
        .zenoh_config(shmlane_zenoh::loopback_config(listen, connect))
}

/// In a re-executed copy: publish `COUNT` orders on `KEY` once `SUBS`
/// subscribers are there, then exit (dropping the publisher).
#[test]
fn child() {
    if kit::role().is_none() {
        return;
    }
    let port: u16 = kit::env("PORT").parse().unwrap();
    let count: u64 = kit::env("COUNT").parse().unwrap();
    let subs: usize = kit::env("SUBS").parse().unwrap();
    let publisher = builder(&kit::env("KEY"), Some(port), None)
        .publisher::<Rkyv<Order>>()
        .unwrap();
    // Bounded only against a hang.
    for polls in 0.. {
        if publisher.subscribers() >= subs {
            break;
        }
        assert!(polls < 12_000, "the subscribers never came");
        std::thread::sleep(Duration::from_millis(10));
    }
    for i in 0..count {
        publisher.send(&Order::sample(i)).unwrap();
    }
    assert_eq!(publisher.published(), count);
}

fn publish_from_a_child(key: &str, port: u16, subs: usize) -> Kid {
    Kid::spawn(
        "child",
        "publish",
        &[
            ("PORT", port.to_string()),
            ("KEY", key.to_owned()),
            ("COUNT", MESSAGES.to_string()),
            ("SUBS", subs.to_string()),
        ],
    )
}

/// Receives the publisher's messages; before its first one, the topic
/// may still be `Disconnected` (the last publisher gone, the next not
/// heard yet).
fn receive_all(sub: &mut shmlane::ipc::Subscriber<Rkyv<Order>>) {
    // Bounded only against a hang.
    for polls in 0.. {
        match sub.pending() {
            0 => {
                assert!(polls < 12_000, "no publisher came");
                std::thread::sleep(Duration::from_millis(10));
            }
            _ => break,
        }
    }
    for i in 0..MESSAGES {
        let o = sub.recv_ref().unwrap();
        let want = Order::sample(i);
        assert_eq!(o.id.to_native(), i, "lost or out of order");
        assert_eq!(o.symbol.as_str(), want.symbol);
        assert_eq!(o.qty.to_native(), want.qty);
    }
}

/// Runs `f` on each subscriber, on threads of their own.
fn both(
    subs: &mut [shmlane::ipc::Subscriber<Rkyv<Order>>],
    f: fn(&mut shmlane::ipc::Subscriber<Rkyv<Order>>),
) {
    std::thread::scope(|s| {
        for sub in subs.iter_mut() {
            s.spawn(move || f(sub));
        }
    });
}

#[test]
fn every_subscriber_gets_every_message_then_disconnected_then_a_new_publisher() {
    let port = kit::free_port();
    let key = format!("shmlane/test/{}", kit::unique("topic"));
    let mut subs = [0, 1].map(|_| {
        builder(&key, None, Some(port))
            .subscriber::<Rkyv<Order>>()
            .unwrap()
    });
    let mut kid = publish_from_a_child(&key, port, 2);
    // Both at once: a subscriber that stops reading holds the publisher
    // back (Block), as on a topic in a segment.
    both(&mut subs, receive_all);
    assert!(kid.wait().success());
    for sub in &mut subs {
        assert!(
            matches!(sub.recv(), Err(TopicRecvError::Disconnected)),
            "the publisher left"
        );
    }
    // Not final: a second publisher is heard.
    let mut kid = publish_from_a_child(&key, port, 2);
    both(&mut subs, |sub| {
        receive_all(sub);
        assert!(matches!(sub.recv(), Err(TopicRecvError::Disconnected)));
    });
    assert!(kid.wait().success());
}

#[test]
fn settings_zenoh_does_not_carry_are_refused() {
    let key = format!("shmlane/test/{}", kit::unique("refused"));
    for b in [
        builder(&key, None, None).policy(Policy::Overwrite),
        builder(&key, None, None).history(3),
    ] {
        match b.publisher::<u64>() {
            Err(e @ ConnectError::Unsupported { .. }) => {
                assert!(e.to_string().contains("zenoh"), "{e}")
            }
            other => panic!("{other:?}"),
        }
    }
    match Builder::new("tcp:127.0.0.1:1").unwrap().subscriber::<u64>() {
        Err(e @ ConnectError::Transport(_)) => {
            assert!(e.to_string().contains("publish/subscribe"), "{e}")
        }
        other => panic!("{other:?}"),
    }
}
