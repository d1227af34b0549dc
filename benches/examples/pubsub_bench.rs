//! Publish/subscribe and request/response, shmlane against iceoryx2 0.10
//! configured as iceoryx2's own benchmarks configure it (busy-polling
//! threads of one process pinned to CPUs 0 and 1; one-way latency =
//! elapsed / (2 * round trips)).
//!
//! ```text
//! cargo run --release -p shmlane-benches --features iceoryx2 --example pubsub_bench [ROUNDS] [FILTER]
//! ```
//!
//! Without the `iceoryx2` feature only shmlane's rows run. Rows, each the
//! median of ROUNDS (default 3) rounds, the two libraries alternated
//! within each round, bracketed by a cache-line floor probe between the
//! same two CPUs:
//!
//! - `pubsub latency SIZE`: ping on one topic, pong on another, one
//!   subscriber each: one-way latency.
//! - `fan-out lat 1->N SIZE`: one message in flight at a time, stamped by
//!   the publisher; each of N subscriber threads records its delivery
//!   latency and acknowledges; the row is the mean of the subscribers'
//!   medians. Threads that share a CPU yield when idle, in both libraries.
//! - `fan-out 1->N SIZE`: one publisher, N subscriber threads (the
//!   publisher waits for the slowest: shmlane `Policy::Block`, iceoryx2
//!   `RetryUntilDelivered`), subscribers busy-poll and yield when empty:
//!   messages per second published (all delivered to every subscriber).
//! - `req/resp SIZE`: one client, one server: round trip.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use shmlane::ipc::{Builder, Bytes, Policy, TopicRecvError};
use shmlane_benches::ipc::{median_f64 as median, unique};

const SIZES: [usize; 2] = [8, 4096];
const PINGS: u64 = 100_000;
const FANOUT: u64 = 200_000;
const CALLS: u64 = 100_000;

fn pin(cpu: usize) {
    shmlane_benches::ipc::pin_to_cpu(cpu);
}

/// One-way cache-line latency between CPUs 0 and 1, ns: half the
/// library's round-trip floor probe.
fn floor() -> f64 {
    shmlane_benches::shapes::floor_probe().as_nanos() as f64 / 2.0
}

/// Messages per fan-out latency row.
const FAN_LAT: u64 = 20_000;

/// Waits politely: spin when each side has a CPU, yield when threads share
/// them.
fn idle(shared: bool) {
    if shared {
        std::thread::yield_now();
    } else {
        std::hint::spin_loop();
    }
}

/// A subscriber's side of a fan-out latency row: `FAN_LAT` messages, each
/// stamped by the publisher with `epoch`-relative nanoseconds; acknowledges
/// each; returns its median latency.
fn lat_subscriber(
    epoch: Instant,
    acks: &AtomicU64,
    shared: bool,
    mut next: impl FnMut() -> Option<u64>,
) -> f64 {
    let mut samples = Vec::with_capacity(FAN_LAT as usize);
    while (samples.len() as u64) < FAN_LAT {
        match next() {
            Some(sent) => {
                samples.push(epoch.elapsed().as_nanos() as f64 - sent as f64);
                acks.fetch_add(1, Ordering::Release);
            }
            None => idle(shared),
        }
    }
    median(samples)
}

/// The publisher's side: stamps and publishes each message, then waits for
/// every subscriber's acknowledgement before the next.
fn lat_publisher(epoch: Instant, acks: &AtomicU64, n: usize, mut publish: impl FnMut(u64)) {
    for i in 1..=FAN_LAT {
        publish(epoch.elapsed().as_nanos() as u64);
        while acks.load(Ordering::Acquire) < i * n as u64 {
            idle(n > 1);
        }
    }
}

mod shm {
    use super::*;

    /// Mean over `n` subscribers of each one's median one-way latency, one
    /// message in flight at a time, ns.
    pub fn fanout_latency(size: usize, n: usize) -> f64 {
        let topic = Builder::new(&format!("shm:{}", unique("fanlat")))
            .unwrap()
            .capacity(16)
            .message_size(size)
            .create_topic::<Bytes>()
            .unwrap();
        let (epoch, acks) = (Instant::now(), Arc::new(AtomicU64::new(0)));
        let subs: Vec<_> = (0..n)
            .map(|i| {
                let mut sub = topic.subscriber().unwrap();
                let acks = Arc::clone(&acks);
                std::thread::spawn(move || {
                    pin((i + 1) % 2);
                    lat_subscriber(epoch, &acks, n > 1, || match sub.try_recv_ref() {
                        Ok(msg) => Some(u64::from_ne_bytes(msg[..8].try_into().unwrap())),
                        Err(TopicRecvError::Empty) => None,
                        Err(e) => panic!("{e}"),
                    })
                })
            })
            .collect();
        let publisher = topic.publisher().unwrap();
        pin(0);
        let mut buf = vec![0u8; size];
        lat_publisher(epoch, &acks, n, |t| {
            buf[..8].copy_from_slice(&t.to_ne_bytes());
            publisher.send(&buf).unwrap();
        });
        let medians: Vec<f64> = subs.into_iter().map(|s| s.join().unwrap()).collect();
        medians.iter().sum::<f64>() / n as f64
    }

    /// One-way latency through two topics (ping, pong), ns.
    pub fn latency(size: usize) -> f64 {
        let (ping, pong) = (unique("ping"), unique("pong"));
        let make = |name: &str| {
            Builder::new(&format!("shm:{name}"))
                .unwrap()
                .capacity(1)
                .message_size(size)
                .create_topic::<Bytes>()
                .unwrap()
        };
        let (t_ping, t_pong) = (make(&ping), make(&pong));
        let mut ping_sub = t_ping.subscriber().unwrap();
        let mut pong_sub = t_pong.subscriber().unwrap();
        let (ping_pub, pong_pub) = (t_ping.publisher().unwrap(), t_pong.publisher().unwrap());
        let peer = std::thread::spawn(move || {
            pin(1);
            let buf = vec![1u8; size];
            for _ in 0..PINGS {
                loop {
                    match ping_sub.try_recv_ref() {
                        Ok(_) => break,
                        Err(TopicRecvError::Empty) => std::hint::spin_loop(),
                        Err(e) => panic!("{e}"),
                    }
                }
                pong_pub.try_send(&buf).unwrap();
            }
        });
        pin(0);
        let buf = vec![0u8; size];
        let start = Instant::now();
        for _ in 0..PINGS {
            ping_pub.try_send(&buf).unwrap();
            loop {
                match pong_sub.try_recv_ref() {
                    Ok(_) => break,
                    Err(TopicRecvError::Empty) => std::hint::spin_loop(),
                    Err(e) => panic!("{e}"),
                }
            }
        }
        let ns = start.elapsed().as_nanos() as f64 / (2 * PINGS) as f64;
        peer.join().unwrap();
        ns
    }

    /// Messages per second published to `n` subscribers that all read
    /// every one.
    pub fn fanout(size: usize, n: usize) -> f64 {
        let topic = Builder::new(&format!("shm:{}", unique("fan")))
            .unwrap()
            .capacity(256)
            .message_size(size)
            .policy(Policy::Block)
            .create_topic::<Bytes>()
            .unwrap();
        let go = Arc::new(Barrier::new(n + 1));
        let subs: Vec<_> = (0..n)
            .map(|i| {
                let mut sub = topic.subscriber().unwrap();
                let go = Arc::clone(&go);
                std::thread::spawn(move || {
                    pin((i + 1) % 2);
                    go.wait();
                    let mut got = 0;
                    while got < FANOUT {
                        match sub.try_recv_ref() {
                            Ok(_) => got += 1,
                            Err(TopicRecvError::Empty) => std::thread::yield_now(),
                            Err(e) => panic!("{e}"),
                        }
                    }
                })
            })
            .collect();
        let publisher = topic.publisher().unwrap();
        pin(0);
        let buf = vec![0u8; size];
        go.wait();
        let start = Instant::now();
        for _ in 0..FANOUT {
            while publisher.try_send(&buf).is_err() {
                std::thread::yield_now();
            }
        }
        for s in subs {
            s.join().unwrap();
        }
        FANOUT as f64 / start.elapsed().as_secs_f64()
    }

    /// Request/response round trip, ns.
    pub fn reqresp(size: usize) -> f64 {
        let addr = format!("shm:{}", unique("svc"));
        let mut server = Builder::new(&addr)
            .unwrap()
            .message_size(size)
            .create_server::<Bytes, Bytes>()
            .unwrap();
        let peer = std::thread::spawn(move || {
            pin(1);
            let buf = vec![1u8; size];
            for _ in 0..CALLS {
                // The request is read in place (and not looked at).
                let (client, ()) = server.recv_with(None, |_, _| ()).unwrap();
                server.reply(client, &buf).unwrap();
            }
        });
        pin(0);
        let mut client = Builder::new(&addr)
            .unwrap()
            .message_size(size)
            .connect::<Bytes, Bytes>()
            .unwrap();
        let buf = vec![0u8; size];
        let start = Instant::now();
        for _ in 0..CALLS {
            // Read in place, as iceoryx2's client reads its response.
            let len = client.call_with(&buf, <[u8]>::len).unwrap();
            assert_eq!(len, size);
        }
        let ns = start.elapsed().as_nanos() as f64 / CALLS as f64;
        peer.join().unwrap();
        ns
    }
}

#[cfg(feature = "iceoryx2")]
mod ice {
    use super::*;
    use iceoryx2::prelude::*;

    type Factory =
        iceoryx2::service::port_factory::publish_subscribe::PortFactory<ipc::Service, [u8], ()>;
    type Sub = iceoryx2::port::subscriber::Subscriber<ipc::Service, [u8], ()>;
    type Pub = iceoryx2::port::publisher::Publisher<ipc::Service, [u8], ()>;

    fn node() -> Node<ipc::Service> {
        NodeBuilder::new().create::<ipc::Service>().unwrap()
    }

    /// A byte-slice publish/subscribe service: for latency as iceoryx2's
    /// benchmark configures it (one subscriber, a buffer of one, safe
    /// overflow), or for `subscribers` that must each get every message.
    fn service(
        node: &Node<ipc::Service>,
        name: &str,
        subscribers: usize,
        buffer: usize,
    ) -> Factory {
        node.service_builder(&name.try_into().unwrap())
            .publish_subscribe::<[u8]>()
            .max_publishers(1)
            .max_subscribers(subscribers)
            .history_size(0)
            .subscriber_max_buffer_size(buffer)
            .enable_safe_overflow(buffer == 1)
            .open_or_create()
            .unwrap()
    }

    /// A publisher of `size`-byte slices; with `block`, it retries until
    /// every subscriber has room.
    fn publisher(svc: &Factory, size: usize, block: bool) -> Pub {
        let b = svc.publisher_builder().initial_max_slice_len(size);
        let b = if block {
            b.backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        } else {
            b
        };
        b.create().unwrap()
    }

    /// A subscriber of the existing service `name`, in a node of its own
    /// (kept alive with it).
    fn subscriber(name: &str) -> (Node<ipc::Service>, Sub) {
        let node = node();
        let svc = node
            .service_builder(&name.try_into().unwrap())
            .publish_subscribe::<[u8]>()
            .open()
            .unwrap();
        let sub = svc.subscriber_builder().create().unwrap();
        (node, sub)
    }

    /// One-way latency through two services (ping, pong), ns; configured
    /// as iceoryx2's publish-subscribe benchmark configures them.
    pub fn latency(size: usize) -> f64 {
        let (ping, pong) = (unique("ping"), unique("pong"));
        let peer = {
            let (ping, pong) = (ping.clone(), pong.clone());
            let ready = Arc::new(Barrier::new(2));
            let r2 = Arc::clone(&ready);
            let h = std::thread::spawn(move || {
                pin(1);
                let node = node();
                let (s_ping, s_pong) = (service(&node, &ping, 1, 1), service(&node, &pong, 1, 1));
                let sub = s_ping.subscriber_builder().create().unwrap();
                let publ = publisher(&s_pong, size, false);
                r2.wait();
                for _ in 0..PINGS {
                    while sub.receive().unwrap().is_none() {
                        std::hint::spin_loop();
                    }
                    let sample = publ.loan_slice_uninit(size).unwrap();
                    sample.write_from_fn(|_| 1).send().unwrap();
                }
            });
            (h, ready)
        };
        pin(0);
        let node = node();
        let (s_ping, s_pong) = (service(&node, &ping, 1, 1), service(&node, &pong, 1, 1));
        let publ = publisher(&s_ping, size, false);
        let sub = s_pong.subscriber_builder().create().unwrap();
        peer.1.wait();
        let start = Instant::now();
        for _ in 0..PINGS {
            let sample = publ.loan_slice_uninit(size).unwrap();
            sample.write_from_fn(|_| 0).send().unwrap();
            while sub.receive().unwrap().is_none() {
                std::hint::spin_loop();
            }
        }
        let ns = start.elapsed().as_nanos() as f64 / (2 * PINGS) as f64;
        peer.0.join().unwrap();
        ns
    }

    /// As `shm::fanout_latency`.
    pub fn fanout_latency(size: usize, n: usize) -> f64 {
        let name = unique("fanlat");
        let node = node();
        let svc = service(&node, &name, n, 16);
        let publ = publisher(&svc, size, true);
        let (epoch, acks) = (Instant::now(), Arc::new(AtomicU64::new(0)));
        let subs: Vec<_> = (0..n)
            .map(|i| {
                let acks = Arc::clone(&acks);
                let name = name.clone();
                let ready = Arc::new(Barrier::new(2));
                let r2 = Arc::clone(&ready);
                let h = std::thread::spawn(move || {
                    pin((i + 1) % 2);
                    let (_node, sub) = subscriber(&name);
                    r2.wait();
                    lat_subscriber(epoch, &acks, n > 1, || {
                        sub.receive().unwrap().map(|sample| {
                            u64::from_ne_bytes(sample.payload()[..8].try_into().unwrap())
                        })
                    })
                });
                ready.wait();
                h
            })
            .collect();
        pin(0);
        lat_publisher(epoch, &acks, n, |t| {
            let stamp = t.to_ne_bytes();
            let sample = publ.loan_slice_uninit(size).unwrap();
            sample
                .write_from_fn(|i| stamp.get(i).copied().unwrap_or(0))
                .send()
                .unwrap();
        });
        let medians: Vec<f64> = subs.into_iter().map(|s| s.join().unwrap()).collect();
        medians.iter().sum::<f64>() / n as f64
    }

    /// Messages per second published to `n` subscribers that all read
    /// every one (no overflow; the publisher retries until delivered).
    pub fn fanout(size: usize, n: usize) -> f64 {
        let name = unique("fan");
        let node = node();
        let svc = service(&node, &name, n, 256);
        let publ = publisher(&svc, size, true);
        let go = Arc::new(Barrier::new(n + 1));
        let subs: Vec<_> = (0..n)
            .map(|i| {
                let go = Arc::clone(&go);
                let name = name.clone();
                let ready = Arc::new(Barrier::new(2));
                let r2 = Arc::clone(&ready);
                let h = std::thread::spawn(move || {
                    pin((i + 1) % 2);
                    let (_node, sub) = subscriber(&name);
                    r2.wait();
                    go.wait();
                    let mut got = 0;
                    while got < FANOUT {
                        match sub.receive().unwrap() {
                            Some(_) => got += 1,
                            None => std::thread::yield_now(),
                        }
                    }
                });
                ready.wait();
                h
            })
            .collect();
        pin(0);
        go.wait();
        let start = Instant::now();
        for _ in 0..FANOUT {
            let sample = publ.loan_slice_uninit(size).unwrap();
            sample.write_from_fn(|_| 0).send().unwrap();
        }
        for s in subs {
            s.join().unwrap();
        }
        FANOUT as f64 / start.elapsed().as_secs_f64()
    }

    /// Request/response round trip, ns; configured as iceoryx2's
    /// request-response benchmark configures it.
    pub fn reqresp(size: usize) -> f64 {
        let name = unique("svc");
        let node = node();
        let svc = node
            .service_builder(&name.as_str().try_into().unwrap())
            .request_response::<[u8], [u8]>()
            .max_response_buffer_size(1)
            .create()
            .unwrap();
        let ready = Arc::new(Barrier::new(2));
        let r2 = Arc::clone(&ready);
        let peer = {
            let name = name.clone();
            std::thread::spawn(move || {
                pin(1);
                let node = NodeBuilder::new().create::<ipc::Service>().unwrap();
                let svc = node
                    .service_builder(&name.as_str().try_into().unwrap())
                    .request_response::<[u8], [u8]>()
                    .open()
                    .unwrap();
                let server = svc
                    .server_builder()
                    .initial_max_slice_len(size)
                    .create()
                    .unwrap();
                r2.wait();
                let mut served = 0;
                while served < CALLS {
                    match server.receive().unwrap() {
                        Some(active) => {
                            let resp = active.loan_slice_uninit(size).unwrap();
                            resp.write_from_fn(|_| 1).send().unwrap();
                            served += 1;
                        }
                        None => std::hint::spin_loop(),
                    }
                }
            })
        };
        pin(0);
        let client = svc
            .client_builder()
            .initial_max_slice_len(size)
            .create()
            .unwrap();
        ready.wait();
        let start = Instant::now();
        for _ in 0..CALLS {
            let req = client.loan_slice_uninit(size).unwrap();
            let pending = req.write_from_fn(|_| 0).send().unwrap();
            loop {
                if let Some(resp) = pending.receive().unwrap() {
                    assert_eq!(resp.payload().len(), size);
                    break;
                }
                std::hint::spin_loop();
            }
        }
        let ns = start.elapsed().as_nanos() as f64 / CALLS as f64;
        peer.join().unwrap();
        ns
    }
}

type Row = (
    String,
    &'static str,
    Box<dyn Fn() -> f64>,
    Box<dyn Fn() -> f64>,
);

/// iceoryx2's side of a row (NaN without the feature).
#[cfg(feature = "iceoryx2")]
macro_rules! theirs {
    ($e:expr) => {
        Box::new(move || $e) as Box<dyn Fn() -> f64>
    };
}
#[cfg(not(feature = "iceoryx2"))]
macro_rules! theirs {
    ($e:expr) => {
        Box::new(|| f64::NAN) as Box<dyn Fn() -> f64>
    };
}

fn rows() -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for size in SIZES {
        rows.push((
            format!("pubsub latency {size} B"),
            "ns",
            Box::new(move || shm::latency(size)),
            theirs!(ice::latency(size)),
        ));
    }
    for size in SIZES {
        for n in [1, 2, 4] {
            rows.push((
                format!("fan-out lat 1->{n} {size} B"),
                "ns",
                Box::new(move || shm::fanout_latency(size, n)),
                theirs!(ice::fanout_latency(size, n)),
            ));
        }
    }
    for size in SIZES {
        for n in [1, 2, 4] {
            rows.push((
                format!("fan-out 1->{n} {size} B"),
                "msg/s",
                Box::new(move || shm::fanout(size, n)),
                theirs!(ice::fanout(size, n)),
            ));
        }
    }
    for size in SIZES {
        rows.push((
            format!("req/resp round trip {size} B"),
            "ns",
            Box::new(move || shm::reqresp(size)),
            theirs!(ice::reqresp(size)),
        ));
    }
    rows
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(3, |s| s.parse().expect("ROUNDS"));
    // Only the rows whose name contains FILTER, if given.
    let filter = std::env::args().nth(2).unwrap_or_default();
    let before = floor();
    println!("floor before: {before:.0} ns one way (CPUs 0 and 1)");
    println!(
        "{:<28} {:>14} {:>14} {:>10}",
        "row (median of rounds)", "shmlane", "iceoryx2", "shm/ice"
    );
    for (name, unit, ours, theirs) in rows().into_iter().filter(|r| r.0.contains(&filter)) {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            a.push(ours());
            b.push(theirs());
            std::thread::sleep(Duration::from_millis(20));
        }
        let (a, b) = (median(a), median(b));
        // Ratios read "better than 1 is shmlane ahead".
        let ratio = if unit == "ns" { b / a } else { a / b };
        println!("{name:<28} {a:>11.0} {unit:<2} {b:>11.0} {unit:<2} {ratio:>9.2}x");
    }
    let after = floor();
    println!("floor after: {after:.0} ns one way");
}
