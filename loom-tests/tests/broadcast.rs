//! Loom models of the broadcast ring's block policy: a subscriber reads a
//! slot in place from its check until it moves past it, so every write of
//! the publisher to that slot must happen after the subscriber's move (the
//! slot's tracker reports a race otherwise).

#![cfg(shmlane_loom)]

use std::sync::Arc;

use loom::thread;
use shmlane_loom_tests::{read_u64, write_u64, Region};
use shmlane_ring::broadcast::ReadError;
use shmlane_ring::RingKind;

const BLOCK: RingKind = RingKind::Broadcast {
    overwrite: false,
    max_subscribers: 2,
};

fn publish(p: &mut shmlane_ring::broadcast::Publisher, v: u64) {
    assert!(p.publish_with(|d| {
        write_u64(d, v);
        true
    }));
}

/// A subscriber joins (asking for history) while the publisher writes:
/// the join handshake and the cursor scan must keep the publisher off
/// every slot the subscriber has not moved past.
#[test]
fn a_subscriber_that_joins_while_the_publisher_writes_is_never_overwritten() {
    loom::model(|| {
        let region = Arc::new(Region::new(BLOCK, 2));
        let mut p = region.publisher();
        for v in 0..2 {
            p.room(&mut |_| false).unwrap();
            publish(&mut p, v);
        }
        let publisher = thread::spawn(move || {
            let mut v = 2;
            for _ in 0..3 {
                if v == 4 {
                    break;
                }
                if p.room(&mut |_| false).is_ok() {
                    publish(&mut p, v);
                    v += 1;
                } else {
                    thread::yield_now();
                }
            }
        });
        let mut s = region.subscriber(0, 1, 2);
        let mut last = None;
        for _ in 0..3 {
            match s.try_read(read_u64) {
                Ok(v) => {
                    if let Some(l) = last {
                        assert_eq!(v, l + 1, "out of order");
                    }
                    last = Some(v);
                    s.advance();
                }
                Err(ReadError::Empty) => thread::yield_now(),
                Err(ReadError::Lagged(n)) => panic!("lost {n} under the block policy"),
            }
        }
        publisher.join().unwrap();
    });
}

/// A subscriber that leaves lets the publisher go on; one that reads
/// keeps the order.
#[test]
fn a_leaving_subscriber_releases_the_publisher() {
    loom::model(|| {
        let region = Arc::new(Region::new(BLOCK, 1));
        let mut p = region.publisher();
        let s = region.subscriber(1, 2, 0);
        p.room(&mut |_| false).unwrap();
        publish(&mut p, 7);
        let leaver = thread::spawn(move || s.leave());
        let mut tries = 0;
        while p.room(&mut |_| false).is_err() {
            tries += 1;
            assert!(tries < 4, "the publisher never saw the subscriber leave");
            thread::yield_now();
        }
        publish(&mut p, 8);
        leaver.join().unwrap();
    });
}
