//! Publish/subscribe topics: fan-out to subscriber processes, both
//! slow-subscriber policies, crashes of either side, limits and errors.
//! No assertion depends on timing; `HANG` only guards against hangs.

use std::time::Duration;

use shmlane::codec::sample::Order;
use shmlane::ipc::{
    AttachError, Builder, Bytes, OpenError, Policy, PublishError, Rkyv, TopicRecvError,
};
use shmlane_testkit::{env, role, Cleanup, Kid};

const HANG: Duration = Duration::from_secs(60);

fn builder(addr: &str) -> Builder {
    Builder::new(addr).unwrap().open_timeout(HANG)
}

/// Child: subscribes to `ADDR`, says `ready`, reads until the publisher is
/// gone, checks that it saw `0..COUNT` in order (in place, rkyv), prints
/// how many.
fn subscriber_child() {
    let topic = builder(&env("ADDR")).open_topic::<Rkyv<Order>>().unwrap();
    let mut sub = topic.subscriber().unwrap();
    println!("ready");
    let mut next = 0u64;
    loop {
        match sub.recv_ref_timeout(HANG) {
            Ok(order) => {
                assert_eq!(order.id, next, "out of order or lost");
                assert_eq!(order.symbol, Order::sample(next).symbol);
                next += 1;
            }
            Err(TopicRecvError::Disconnected) => break,
            Err(e) => panic!("after {next}: {e:?}"),
        }
    }
    println!("got {next}");
}

#[test]
fn every_subscriber_process_gets_every_message_in_order() {
    if role().is_some() {
        return subscriber_child();
    }
    const SUBSCRIBERS: usize = 3;
    const COUNT: u64 = 20_000;
    let mut clean = Cleanup::new();
    let addr = format!("shm:{}", clean.unique_shm("topic-fanout"));
    let topic = builder(&addr)
        .capacity(16)
        .message_size(128)
        .create_topic::<Rkyv<Order>>()
        .unwrap();
    let mut kids: Vec<Kid> = (0..SUBSCRIBERS)
        .map(|_| {
            Kid::spawn(
                "every_subscriber_process_gets_every_message_in_order",
                "sub",
                &[("ADDR", addr.clone())],
            )
        })
        .collect();
    for kid in &mut kids {
        assert!(kid.wait_for("ready"), "a subscriber failed to join");
    }
    assert_eq!(topic.subscribers(), SUBSCRIBERS);
    let publisher = topic.publisher().unwrap();
    for i in 0..COUNT {
        publisher
            .send_timeout(&Order::sample(i), HANG)
            .unwrap_or_else(|e| panic!("publishing {i}: {e}"));
    }
    assert_eq!(publisher.published(), COUNT);
    drop(publisher);
    for kid in &mut kids {
        let (lines, status) = kid.finish(HANG).expect("a subscriber hung");
        assert!(status.success(), "a subscriber failed: {lines:?}");
        assert!(lines.contains(&format!("got {COUNT}")), "{lines:?}");
    }
}

#[test]
fn a_lapped_subscriber_counts_what_it_lost_and_never_reads_a_torn_message() {
    const COUNT: u64 = 200_000;
    const LEN: usize = 200;
    let mut clean = Cleanup::new();
    let addr = format!("shm:{}", clean.unique_shm("topic-lapped"));
    let topic = builder(&addr)
        .capacity(8)
        .message_size(LEN)
        .policy(Policy::Overwrite)
        .create_topic::<Bytes>()
        .unwrap();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let mut sub = topic.subscriber().unwrap();
            std::thread::spawn(move || {
                let (mut got, mut lost, mut last) = (0u64, 0u64, None::<u64>);
                loop {
                    match sub.recv_ref_timeout(HANG) {
                        Ok(msg) => {
                            let seq = u64::from_ne_bytes(msg[..8].try_into().unwrap());
                            let fill = (seq % 251) as u8;
                            assert_eq!(msg.len(), LEN);
                            assert!(msg[8..].iter().all(|&b| b == fill), "torn at {seq}");
                            assert!(last.is_none_or(|l| l < seq), "{seq} after {last:?}");
                            last = Some(seq);
                            got += 1;
                        }
                        Err(TopicRecvError::Lagged(n)) => lost += n,
                        Err(TopicRecvError::Disconnected) => return (got, lost),
                        Err(e) => panic!("{e:?}"),
                    }
                }
            })
        })
        .collect();
    let publisher = topic.publisher().unwrap();
    let mut msg = [0u8; LEN];
    for seq in 0..COUNT {
        msg[..8].copy_from_slice(&seq.to_ne_bytes());
        msg[8..].fill((seq % 251) as u8);
        // Never waits: a full ring is overwritten.
        publisher.try_send(&msg).unwrap();
    }
    drop(publisher);
    for r in readers {
        let (got, lost) = r.join().unwrap();
        assert_eq!(got + lost, COUNT, "got {got}, lost {lost}");
    }
}

/// Child: subscribes, says `ready`, then never reads (until killed).
fn stuck_subscriber_child() {
    let topic = builder(&env("ADDR")).open_topic::<u64>().unwrap();
    let _sub = topic.subscriber().unwrap();
    println!("ready");
    std::thread::sleep(HANG * 2);
}

#[test]
fn a_dead_subscriber_never_blocks_the_publisher() {
    if role().is_some() {
        return stuck_subscriber_child();
    }
    let mut clean = Cleanup::new();
    let addr = format!("shm:{}", clean.unique_shm("topic-dead-sub"));
    dead_subscriber(&addr, "a_dead_subscriber_never_blocks_the_publisher");
}

/// The same on a System V segment, whose liveness flags are semaphores.
#[test]
fn a_dead_subscriber_never_blocks_the_publisher_on_sysv() {
    if role().is_some() {
        return stuck_subscriber_child();
    }
    let key = shmlane_testkit::unique_key();
    let mut clean = Cleanup::new();
    clean.sysv(key);
    dead_subscriber(
        &format!("sysv:{key}"),
        "a_dead_subscriber_never_blocks_the_publisher_on_sysv",
    );
}

fn dead_subscriber(addr: &str, test: &str) {
    let topic = builder(addr).capacity(4).create_topic::<u64>().unwrap();
    let mut kid = Kid::spawn(test, "stuck", &[("ADDR", addr.to_owned())]);
    assert!(kid.wait_for("ready"));
    let publisher = topic.publisher().unwrap();
    for i in 0..4 {
        publisher.try_send(i).unwrap();
    }
    // The live subscriber holds the publisher back (block policy).
    assert!(matches!(publisher.try_send(4), Err(PublishError::Full)));
    kid.kill();
    kid.wait();
    for i in 4..100 {
        publisher.send_timeout(i, HANG).unwrap();
    }
    assert_eq!(topic.subscribers(), 0);
}

/// Child: publishes `0..5`, says `sent`, then waits to be killed.
fn publisher_child() {
    let topic = builder(&env("ADDR")).open_topic::<u64>().unwrap();
    let publisher = topic.publisher().unwrap();
    for i in 0..5 {
        publisher.send(i).unwrap();
    }
    println!("sent");
    std::thread::sleep(HANG * 2);
}

#[test]
fn a_dead_publishers_subscribers_drain_then_disconnect_and_a_new_publisher_takes_over() {
    if role().is_some() {
        return publisher_child();
    }
    let mut clean = Cleanup::new();
    let addr = format!("shm:{}", clean.unique_shm("topic-dead-pub"));
    let topic = builder(&addr).capacity(8).create_topic::<u64>().unwrap();
    let mut sub = topic.subscriber().unwrap();
    let mut kid = Kid::spawn(
        "a_dead_publishers_subscribers_drain_then_disconnect_and_a_new_publisher_takes_over",
        "pub",
        &[("ADDR", addr.clone())],
    );
    assert!(kid.wait_for("sent"));
    // One live publisher at a time.
    assert!(matches!(
        topic.publisher(),
        Err(AttachError::TooMany {
            role: "publisher",
            ..
        })
    ));
    kid.kill();
    kid.wait();
    for i in 0..5 {
        assert_eq!(sub.recv_timeout(HANG).unwrap(), i);
    }
    assert!(matches!(
        sub.recv_timeout(HANG),
        Err(TopicRecvError::Disconnected)
    ));
    let successor = topic.publisher().unwrap();
    successor.send(5).unwrap();
    assert_eq!(sub.recv_timeout(HANG).unwrap(), 5);
    assert_eq!(successor.published(), 6);
}

#[test]
fn the_subscriber_limit_is_a_typed_error() {
    let mut clean = Cleanup::new();
    let addr = format!("shm:{}", clean.unique_shm("topic-limit"));
    let topic = builder(&addr)
        .max_subscribers(2)
        .create_topic::<u64>()
        .unwrap();
    let a = topic.subscriber().unwrap();
    let _b = topic.subscriber().unwrap();
    let err = topic.subscriber().unwrap_err();
    assert!(
        matches!(
            err,
            AttachError::TooMany {
                role: "subscriber",
                max: 2
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("max_subscribers"), "{err}");
    drop(a);
    topic.subscriber().unwrap();
    let other = builder(&addr).open_topic::<u64>().unwrap();
    assert_eq!(other.max_subscribers(), 2);
    assert!(builder("shm:x")
        .max_subscribers(32)
        .create_topic::<u64>()
        .is_err());
}

#[test]
fn a_late_subscriber_gets_the_history_it_asks_for() {
    let mut clean = Cleanup::new();
    let addr = format!("shm:{}", clean.unique_shm("topic-history"));
    for policy in [Policy::Block, Policy::Overwrite] {
        let topic = builder(&addr)
            .capacity(4)
            .policy(policy)
            .create_topic::<u64>()
            .unwrap();
        assert_eq!(topic.policy(), policy);
        let publisher = topic.publisher().unwrap();
        for i in 0..3 {
            publisher.send(i).unwrap();
        }
        let mut late = builder(&addr)
            .history(2)
            .open_topic::<u64>()
            .unwrap()
            .subscriber()
            .unwrap();
        let mut now = topic.subscriber().unwrap();
        publisher.send(3).unwrap();
        assert_eq!(late.try_iter().collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(now.try_iter().collect::<Vec<_>>(), [3]);
        drop((late, now, publisher, topic));
    }
}

#[test]
fn every_message_kind_on_both_policies() {
    let mut clean = Cleanup::new();
    for policy in [Policy::Block, Policy::Overwrite] {
        let addr = format!("shm:{}", clean.unique_shm("topic-kinds-pod"));
        let topic = builder(&addr)
            .policy(policy)
            .create_topic::<[u32; 3]>()
            .unwrap();
        let (publisher, mut sub) = (topic.publisher().unwrap(), topic.subscriber().unwrap());
        publisher.send([1, 2, 3]).unwrap();
        assert_eq!(*sub.recv_ref().unwrap(), [1, 2, 3]);

        let addr = format!("shm:{}", clean.unique_shm("topic-kinds-rkyv"));
        let topic = builder(&addr)
            .policy(policy)
            .message_size(128)
            .create_topic::<Rkyv<Order>>()
            .unwrap();
        let (publisher, mut sub) = (topic.publisher().unwrap(), topic.subscriber().unwrap());
        publisher.send(&Order::sample(7)).unwrap();
        assert_eq!(sub.recv_ref().unwrap().venue, "XNYS");
        publisher.send(&Order::sample(8)).unwrap();
        assert_eq!(sub.recv().unwrap(), Order::sample(8));

        let addr = format!("shm:{}", clean.unique_shm("topic-kinds-bytes"));
        let topic = builder(&addr)
            .policy(policy)
            .message_size(16)
            .create_topic::<Bytes>()
            .unwrap();
        let (publisher, mut sub) = (topic.publisher().unwrap(), topic.subscriber().unwrap());
        publisher.send(b"hello").unwrap();
        assert_eq!(&*sub.recv_ref().unwrap(), b"hello");
        // Too large (message_size rounds up to whole cache lines only):
        // refused, nothing published.
        assert!(matches!(
            publisher.send(&[0; 1000]),
            Err(PublishError::Encode(_))
        ));
        publisher.send(b"after").unwrap();
        assert_eq!(sub.recv().unwrap(), b"after");
        assert!(matches!(sub.try_recv(), Err(TopicRecvError::Empty)));
    }
}

#[test]
fn channels_and_topics_refuse_to_open_as_each_other() {
    let mut clean = Cleanup::new();
    let chan_addr = format!("shm:{}", clean.unique_shm("topic-vs-chan"));
    let _chan = builder(&chan_addr).create::<u64>().unwrap();
    let err = builder(&chan_addr).open_topic::<u64>().unwrap_err();
    assert!(matches!(err, OpenError::LayoutMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("Builder::open"), "{err}");

    let topic_addr = format!("shm:{}", clean.unique_shm("chan-vs-topic"));
    let _topic = builder(&topic_addr).create_topic::<u64>().unwrap();
    let err = builder(&topic_addr).open::<u64>().unwrap_err();
    assert!(err.to_string().contains("open_topic"), "{err}");
    // A topic of another type is refused like a channel of another type.
    let err = builder(&topic_addr).open_topic::<u32>().unwrap_err();
    assert!(matches!(err, OpenError::TypeMismatch { .. }), "{err:?}");
}
