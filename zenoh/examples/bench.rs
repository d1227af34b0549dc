//! The gateway's overhead through loopback: round trip (p50) and one-way
//! throughput of the `zenoh:` channel against plain Zenoh pub/sub with the
//! same payloads and settings (two sessions, TCP on 127.0.0.1, Block
//! congestion control), and, for scale, shmlane's `tcp:` and `shm:`
//! channels. Each round measures every variant once, in turn; medians of
//! the rounds are printed, and the ratios to plain Zenoh are medians of
//! each round's ratio (a round's variants run back to back, so they share
//! the machine's state on a noisy VM more than different rounds do).
//!
//! cargo run --release -p shmlane-zenoh --example bench [ROUNDS]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shmlane::ipc::{Builder, Bytes, Receiver, Sender};
use shmlane_zenoh::Config;
use zenoh::handlers::FifoChannel;
use zenoh::qos::CongestionControl;
use zenoh::Wait;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(listen: Option<u16>, connect: Option<u16>) -> Config {
    shmlane_zenoh::loopback_config(listen, connect)
}

static KEYS: AtomicU64 = AtomicU64::new(0);

fn key(tag: &str) -> String {
    format!(
        "shmlane/bench/{}/{tag}{}",
        std::process::id(),
        KEYS.fetch_add(1, Ordering::Relaxed)
    )
}

/// One variant's figures for one size: round trip p50 and messages/s.
#[derive(Clone, Copy)]
struct Figures {
    rtt: Duration,
    rate: f64,
}

fn median<T: Copy + PartialOrd>(mut v: Vec<T>) -> T {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Round trips then a one-way stream through `send`/`recv` callbacks, the
/// echo side already running.
fn measure(
    size: usize,
    trips: usize,
    stream: usize,
    mut send: impl FnMut(&[u8]),
    mut recv: impl FnMut() -> usize,
) -> Figures {
    // The first byte says whether to echo: 1 for round trips, 0 in the
    // stream, whose end mark ([2]) is echoed, so its time covers it all.
    let mut msg = vec![7u8; size];
    msg[0] = 1;
    let mut times = Vec::with_capacity(trips);
    for _ in 0..trips {
        let t = Instant::now();
        send(&msg);
        assert_eq!(recv(), size);
        times.push(t.elapsed());
    }
    msg[0] = 0;
    let t = Instant::now();
    for _ in 0..stream {
        send(&msg);
    }
    send(&[2]);
    assert_eq!(recv(), 1);
    Figures {
        rtt: median(times),
        rate: stream as f64 / t.elapsed().as_secs_f64(),
    }
}

/// The echo side: a message whose first byte is not 0 comes back; an
/// empty one stops it.
fn echo(mut recv: impl FnMut(&mut Vec<u8>), mut send: impl FnMut(&[u8])) {
    let mut buf = Vec::new();
    loop {
        recv(&mut buf);
        match buf.first() {
            None => return,
            Some(0) => {}
            Some(_) => send(&buf),
        }
    }
}

fn plain_zenoh(size: usize, trips: usize, stream: usize) -> Result<Figures, Error> {
    let p = port();
    let a = zenoh::open(config(Some(p), None)).wait()?;
    let b = zenoh::open(config(None, Some(p))).wait()?;
    let (ping, pong) = (key("ping"), key("pong"));
    let b_sub = b
        .declare_subscriber(ping.clone())
        .with(FifoChannel::new(1024))
        .wait()?;
    let b_pub = b
        .declare_publisher(pong.clone())
        .congestion_control(CongestionControl::Block)
        .wait()?;
    let a_sub = a
        .declare_subscriber(pong)
        .with(FifoChannel::new(1024))
        .wait()?;
    let a_pub = a
        .declare_publisher(ping)
        .congestion_control(CongestionControl::Block)
        .wait()?;
    // Let the declarations reach the other side.
    std::thread::sleep(Duration::from_millis(500));
    let echo_side = std::thread::spawn(move || {
        echo(
            |buf| {
                let s = b_sub.recv().unwrap();
                buf.clear();
                for sl in s.payload().slices() {
                    buf.extend_from_slice(sl);
                }
            },
            |m| b_pub.put(m.to_vec()).wait().unwrap(),
        );
    });
    let f = measure(
        size,
        trips,
        stream,
        |m| a_pub.put(m.to_vec()).wait().unwrap(),
        || {
            // Read every byte, as a shmlane receiver does.
            let s = a_sub.recv().unwrap();
            let mut buf = Vec::with_capacity(s.payload().len());
            for sl in s.payload().slices() {
                buf.extend_from_slice(sl);
            }
            buf.len()
        },
    );
    a_pub.put(Vec::<u8>::new()).wait()?;
    echo_side.join().unwrap();
    Ok(f)
}

/// shmlane channels between two threads: `ping` and `pong` addresses and
/// the builders' settings per side.
fn channel(
    size: usize,
    trips: usize,
    stream: usize,
    make: impl Fn() -> Result<
        (
            Sender<Bytes>,
            Receiver<Bytes>,
            Sender<Bytes>,
            Receiver<Bytes>,
        ),
        Error,
    >,
) -> Result<Figures, Error> {
    let (a_tx, a_rx, b_tx, b_rx) = make()?;
    let echo_side = std::thread::spawn(move || {
        echo(
            |buf| {
                let m = b_rx.recv_ref().unwrap();
                buf.clear();
                buf.extend_from_slice(&m);
            },
            |m| b_tx.send(m).unwrap(),
        );
    });
    let f = measure(
        size,
        trips,
        stream,
        |m| a_tx.send(m).unwrap(),
        || a_rx.recv_ref().unwrap().len(),
    );
    a_tx.send(&[])?;
    echo_side.join().unwrap();
    Ok(f)
}

fn gateway(size: usize, trips: usize, stream: usize) -> Result<Figures, Error> {
    channel(size, trips, stream, || {
        // Each end has its own session: each receiver listens, the sender
        // to it connects (a direct link per direction).
        let (p1, p2) = (port(), port());
        let (ping, pong) = (key("ping"), key("pong"));
        let side = |k: &str, listen, connect| -> Result<Builder, Error> {
            Ok(Builder::new(&format!("zenoh:{k}"))?
                .zenoh_config(config(listen, connect))
                .message_size(size.max(1))
                .open_timeout(Duration::from_secs(10)))
        };
        let a_rx = side(&pong, Some(p1), None)?.receiver::<Bytes>()?;
        let b_rx = side(&ping, Some(p2), None)?.receiver::<Bytes>()?;
        let a_tx = side(&ping, None, Some(p2))?.sender::<Bytes>()?;
        let b_tx = side(&pong, None, Some(p1))?.sender::<Bytes>()?;
        Ok((a_tx, a_rx, b_tx, b_rx))
    })
}

fn tcp(size: usize, trips: usize, stream: usize) -> Result<Figures, Error> {
    channel(size, trips, stream, || {
        let a_rx = Builder::new("tcp:127.0.0.1:0")?.receiver::<Bytes>()?;
        let b_rx = Builder::new("tcp:127.0.0.1:0")?.receiver::<Bytes>()?;
        let a_tx = Builder::new(b_rx.local_address().unwrap())?.sender::<Bytes>()?;
        let b_tx = Builder::new(a_rx.local_address().unwrap())?.sender::<Bytes>()?;
        Ok((a_tx, a_rx, b_tx, b_rx))
    })
}

fn shm(size: usize, trips: usize, stream: usize) -> Result<Figures, Error> {
    channel(size, trips, stream, || {
        let make = || -> Result<_, Error> {
            Ok(
                Builder::new(&format!("shm:{}", key("shm").replace('/', "-")))?
                    .spsc()
                    .capacity(((2 << 20) / size).clamp(8, 1024))
                    .message_size(size)
                    .create::<Bytes>()?,
            )
        };
        let (ping, pong) = (make()?, make()?);
        let out = (
            ping.sender()?,
            pong.receiver()?,
            pong.sender()?,
            ping.receiver()?,
        );
        // The channels live on in their handles.
        std::mem::forget((ping, pong));
        Ok(out)
    })
}

type Variant = (
    &'static str,
    fn(usize, usize, usize) -> Result<Figures, Error>,
);

fn main() -> Result<(), Error> {
    let rounds: usize = std::env::args().nth(1).map_or(3, |s| s.parse().unwrap());
    let variants: [Variant; 4] = [
        ("plain zenoh", plain_zenoh),
        ("zenoh: channel", gateway),
        ("tcp: channel", tcp),
        ("shm: channel", shm),
    ];
    println!(
        "loopback, two threads, {rounds} rounds alternating the variants, medians \
         (ratios: medians of the rounds' ratios)\n\
         {:<16} {:>8} {:>12} {:>14} {:>11} {:>13}",
        "variant", "size", "rtt p50", "msgs/s", "rtt / plain", "rate / plain"
    );
    for (size, trips, stream) in [(8, 2000, 100_000), (4096, 1000, 20_000), (1 << 20, 50, 300)] {
        let mut got: Vec<Vec<Figures>> = vec![Vec::new(); variants.len()];
        for _ in 0..rounds {
            for (i, (_, f)) in variants.iter().enumerate() {
                got[i].push(f(size, trips, stream)?);
            }
        }
        let med: Vec<(Duration, f64)> = got
            .iter()
            .map(|v| {
                (
                    median(v.iter().map(|f| f.rtt).collect()),
                    median(v.iter().map(|f| f.rate).collect()),
                )
            })
            .collect();
        for (i, (name, _)) in variants.iter().enumerate() {
            let paired = |f: &dyn Fn(&Figures) -> f64| {
                median(
                    got[i]
                        .iter()
                        .zip(&got[0])
                        .map(|(v, plain)| f(v) / f(plain))
                        .collect(),
                )
            };
            println!(
                "{:<16} {:>8} {:>10.1}us {:>14.0} {:>10.2}x {:>12.2}x",
                name,
                size,
                med[i].0.as_secs_f64() * 1e6,
                med[i].1,
                paired(&|f| f.rtt.as_secs_f64()),
                paired(&|f| f.rate),
            );
        }
        println!();
    }
    Ok(())
}
