//! The figures of issue 14 (async), one run:
//!
//! - `async_bench rtt [ITERS]`: cross-process round trip of 8-byte
//!   messages through two SPSC channels, the two processes pinned to CPUs
//!   0 and 1: the cache-line floor, the busy-poll API, the blocking API
//!   with the default wait strategy, and async on a tokio current-thread
//!   runtime on each side (medians and p99, ns);
//! - `async_bench inproc [MESSAGES]`: in-process throughput, shmlane's
//!   `bounded(cap)` through `send_async`/`recv_async` against
//!   `tokio::sync::mpsc` and `async-channel`, 1/1 and 4/4 tasks on a
//!   two-worker multi-thread runtime (medians of 5, ms);
//! - `async_bench ready [MESSAGES]`: the fast path, a receive that finds a
//!   message ready: `try_recv` against one poll of `recv_async`;
//! - `async_bench idle [RECEIVERS] [SECONDS] [shm|unix]`: the CPU time of a process
//!   whose tasks await RECEIVERS cross-process receivers (their senders
//!   in another process, idle) for SECONDS.
//!
//! `cargo run --release -p shmlane-benches --example async_bench -- rtt`

use std::time::{Duration, Instant};

use shmlane::ipc::Builder;
use shmlane_benches::ipc::{floor, pin_to_cpu, pingpong};

const PEER: &str = "SHMLANE_ASYNC_BENCH_PEER";

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn peer(args: &[String]) {
    match args[0].as_str() {
        "echo" => {
            pin_to_cpu(1);
            let ping = Builder::new(&args[1]).unwrap().open::<u64>().unwrap();
            let pong = Builder::new(&args[2]).unwrap().open::<u64>().unwrap();
            let (rx, tx) = (ping.receiver().unwrap(), pong.sender().unwrap());
            let iters: u64 = args[3].parse().unwrap();
            println!("ready");
            if args[4] == "async" {
                current_thread().block_on(async {
                    for _ in 0..iters {
                        let v = rx.recv_async().await.unwrap();
                        tx.send_async(v).await.unwrap();
                    }
                });
            } else {
                for _ in 0..iters {
                    tx.send(rx.recv().unwrap()).unwrap();
                }
            }
        }
        "hold" => {
            let n: usize = args[1].parse().unwrap();
            let secs: u64 = args[2].parse().unwrap();
            let senders: Vec<_> = (0..n)
                .map(|i| {
                    Builder::new(&format!("{}-{i}", args[3]))
                        .unwrap()
                        .sender::<u64>()
                        .unwrap()
                })
                .collect();
            println!("ready");
            std::thread::sleep(Duration::from_secs(secs));
            // One message each at the end, so the receivers finish.
            for tx in &senders {
                tx.send(1).unwrap();
            }
        }
        other => panic!("unknown peer {other}"),
    }
    std::process::exit(0);
}

fn spawn_peer(args: &str) -> std::process::Child {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .env(PEER, args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    child
}

fn percentile(v: &mut [u64], p: f64) -> u64 {
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p) as usize]
}

fn rtt_once(iters: u64, mode: &str) -> (u64, u64) {
    let id = std::process::id();
    let (ping, pong) = (
        format!("shm:async-bench-ping-{id}-{mode}"),
        format!("shm:async-bench-pong-{id}-{mode}"),
    );
    let ping_chan = Builder::new(&ping).unwrap().spsc().create::<u64>().unwrap();
    let pong_chan = Builder::new(&pong).unwrap().spsc().create::<u64>().unwrap();
    let (tx, rx) = (ping_chan.sender().unwrap(), pong_chan.receiver().unwrap());
    let mut child = spawn_peer(&format!("echo {ping} {pong} {iters} {mode}"));
    pin_to_cpu(0);
    let mut samples = Vec::with_capacity(iters as usize);
    if mode == "async" {
        current_thread().block_on(async {
            for i in 0..iters {
                let t = Instant::now();
                tx.send_async(i).await.unwrap();
                rx.recv_async().await.unwrap();
                samples.push(t.elapsed().as_nanos() as u64);
            }
        });
    } else {
        for i in 0..iters {
            let t = Instant::now();
            tx.send(i).unwrap();
            rx.recv().unwrap();
            samples.push(t.elapsed().as_nanos() as u64);
        }
    }
    child.wait().unwrap();
    // Skip the first tenth: start-up and page faults.
    let tail = &mut samples[iters as usize / 10..];
    (percentile(tail, 0.5), percentile(tail, 0.99))
}

fn rtt(iters: u64) {
    println!(
        "cross-process round trip, 8 B, SPSC, sides pinned to CPUs 0 and 1 ({iters} round trips)"
    );
    let f0 = floor(iters);
    println!(
        "  floor (cache line)        p50 {:>8.0} ns  p99 {:>8.0} ns",
        f0.p50, f0.p99
    );
    let busy = pingpong(iters, true);
    println!(
        "  busy-poll, blocking API   p50 {:>8.0} ns  p99 {:>8.0} ns",
        busy.p50, busy.p99
    );
    let (b50, b99) = rtt_once(iters, "block");
    println!("  default strategy, blocking p50 {b50:>7} ns  p99 {b99:>8} ns");
    let (a50, a99) = rtt_once(iters, "async");
    println!("  async, tokio current-thread p50 {a50:>6} ns  p99 {a99:>8} ns");
    let f1 = floor(iters);
    println!(
        "  floor again               p50 {:>8.0} ns  p99 {:>8.0} ns",
        f1.p50, f1.p99
    );
    println!(
        "  async - blocking: {} ns per round trip (median)",
        a50 as i64 - b50 as i64
    );
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn inproc(messages: u64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    println!("in-process, {messages} messages, capacity 128, multi-thread runtime (2 workers), median of 5");
    for tasks in [1u64, 4] {
        let per = messages / tasks;
        let shmlane = || {
            rt.block_on(async {
                let (tx, rx) = shmlane::bounded::<u64>(128);
                let t = Instant::now();
                let mut hs = Vec::new();
                for _ in 0..tasks {
                    let tx = tx.clone();
                    hs.push(tokio::spawn(async move {
                        for i in 0..per {
                            tx.send_async(i).await.unwrap();
                        }
                    }));
                    let rx = rx.clone();
                    hs.push(tokio::spawn(async move {
                        for _ in 0..per {
                            rx.recv_async().await.unwrap();
                        }
                    }));
                }
                for h in hs {
                    h.await.unwrap();
                }
                t.elapsed()
            })
        };
        let tokio_mpsc = || {
            rt.block_on(async {
                // tokio's mpsc has one receiver: 4/4 shares it behind a
                // mutex, as users of it must.
                let (tx, rx) = tokio::sync::mpsc::channel::<u64>(128);
                let rx = std::sync::Arc::new(tokio::sync::Mutex::new(rx));
                let t = Instant::now();
                let mut hs = Vec::new();
                for _ in 0..tasks {
                    let tx = tx.clone();
                    hs.push(tokio::spawn(async move {
                        for i in 0..per {
                            tx.send(i).await.unwrap();
                        }
                    }));
                    let rx = rx.clone();
                    hs.push(tokio::spawn(async move {
                        for _ in 0..per {
                            rx.lock().await.recv().await.unwrap();
                        }
                    }));
                }
                for h in hs {
                    h.await.unwrap();
                }
                t.elapsed()
            })
        };
        let async_channel = || {
            rt.block_on(async {
                let (tx, rx) = async_channel::bounded::<u64>(128);
                let t = Instant::now();
                let mut hs = Vec::new();
                for _ in 0..tasks {
                    let tx = tx.clone();
                    hs.push(tokio::spawn(async move {
                        for i in 0..per {
                            tx.send(i).await.unwrap();
                        }
                    }));
                    let rx = rx.clone();
                    hs.push(tokio::spawn(async move {
                        for _ in 0..per {
                            rx.recv().await.unwrap();
                        }
                    }));
                }
                for h in hs {
                    h.await.unwrap();
                }
                t.elapsed()
            })
        };
        let (mut a, mut b, mut c) = (vec![], vec![], vec![]);
        // The two vCPUs here are SMT siblings at some times and not at
        // others: a cache-line round trip before and after the row says
        // which (rows whose floor moved are marked `*`).
        let before = shmlane_benches::shapes::floor_probe();
        for _ in 0..5 {
            a.push(shmlane());
            b.push(tokio_mpsc());
            c.push(async_channel());
        }
        let after = shmlane_benches::shapes::floor_probe();
        let (a, b, c) = (median(a), median(b), median(c));
        let best = b.min(c);
        let (lo, hi) = (before.min(after), before.max(after));
        let moved = if hi.as_secs_f64() > 1.5 * lo.as_secs_f64() {
            "*"
        } else {
            ""
        };
        println!(
            "  {tasks}/{tasks} tasks: shmlane {:>8.1} ms  tokio mpsc {:>8.1} ms  async-channel {:>8.1} ms  shmlane speed / best {:.2}x  floor {:.0}/{:.0} ns{moved}",
            a.as_secs_f64() * 1e3,
            b.as_secs_f64() * 1e3,
            c.as_secs_f64() * 1e3,
            best.as_secs_f64() / a.as_secs_f64(),
            before.as_secs_f64() * 1e9,
            after.as_secs_f64() * 1e9,
        );
    }
}

fn cpu_time() -> Duration {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `ru` is a valid rusage to fill.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) };
    // SAFETY: filled above (zeroed if the call failed).
    let ru = unsafe { ru.assume_init() };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn idle(n: usize, secs: u64, scheme: &str) {
    let base = match scheme {
        "shm" => format!("shm:async-bench-idle-{}", std::process::id()),
        "unix" => format!(
            "unix:{}/async-bench-idle-{}",
            std::env::temp_dir().display(),
            std::process::id()
        ),
        other => panic!("idle: unknown scheme {other} (shm or unix)"),
    };
    let receivers: Vec<_> = (0..n)
        .map(|i| {
            let b = Builder::new(&format!("{base}-{i}")).unwrap();
            let b = if scheme == "shm" { b.capacity(4) } else { b };
            b.receiver::<u64>().unwrap()
        })
        .collect();
    let mut child = spawn_peer(&format!("hold {n} {secs} {base}"));
    let rt = current_thread();
    let (cpu, wall) = rt.block_on(async {
        let start_cpu = cpu_time();
        let start = Instant::now();
        let mut hs = Vec::new();
        for rx in receivers {
            hs.push(tokio::spawn(async move {
                rx.recv_async().await.unwrap();
            }));
        }
        let mut cpu = Duration::ZERO;
        let mut wall = Duration::ZERO;
        let mut measured = false;
        for h in hs {
            h.await.unwrap();
            if !measured {
                // The first message arrives after SECONDS of idleness.
                cpu = cpu_time() - start_cpu;
                wall = start.elapsed();
                measured = true;
            }
        }
        (cpu, wall)
    });
    child.wait().unwrap();
    println!(
        "idle: {n} cross-process {scheme}: receivers awaited for {:.1} s: {:.1} ms of CPU ({:.3}% of one CPU)",
        wall.as_secs_f64(),
        cpu.as_secs_f64() * 1e3,
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64()
    );
}

/// The fast path: a receive that finds a message ready, as `try_recv`
/// and as one poll of `recv_async` (a no-op waker; nothing waits), on a
/// cross-process SPSC ring of u64 (both ends here), `n` messages in
/// batches of 1024; the best of 5 rounds of each, ns per message.
fn ready(n: u64) {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    let name = format!("shm:async-bench-ready-{}", std::process::id());
    let chan = Builder::new(&name)
        .unwrap()
        .spsc()
        .capacity(1024)
        .create::<u64>()
        .unwrap();
    let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
    let mut cx = Context::from_waker(Waker::noop());
    let mut round = |poll: bool| {
        let mut spent = Duration::ZERO;
        let mut left = n;
        while left > 0 {
            let batch = left.min(1024);
            for i in 0..batch {
                tx.try_send(i).unwrap();
            }
            let t = Instant::now();
            for _ in 0..batch {
                if poll {
                    let mut fut = std::pin::pin!(rx.recv_async());
                    match fut.as_mut().poll(&mut cx) {
                        Poll::Ready(v) => {
                            std::hint::black_box(v.unwrap());
                        }
                        Poll::Pending => unreachable!("a message is ready"),
                    }
                } else {
                    std::hint::black_box(rx.try_recv().unwrap());
                }
            }
            spent += t.elapsed();
            left -= batch;
        }
        spent.as_secs_f64() * 1e9 / n as f64
    };
    let (mut a, mut b) = (f64::MAX, f64::MAX);
    for _ in 0..5 {
        a = a.min(round(false));
        b = b.min(round(true));
    }
    println!(
        "a ready message, cross-process SPSC ring, u64, best of 5 x {n}: try_recv {a:.1} ns, one poll of recv_async {b:.1} ns (+{:.1} ns)",
        b - a
    );
}

fn main() {
    shmlane_benches::ipc::maybe_run_peer();
    if let Ok(args) = std::env::var(PEER) {
        let args: Vec<String> = args.split(' ').map(String::from).collect();
        peer(&args);
    }
    let a: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, d: u64| a.get(i).map_or(d, |s| s.parse().unwrap());
    match a.first().map(String::as_str) {
        Some("rtt") => rtt(num(1, 50_000)),
        Some("inproc") => inproc(num(1, 1_000_000)),
        Some("ready") => ready(num(1, 1_000_000)),
        Some("idle") => idle(
            num(1, 100) as usize,
            num(2, 10),
            a.get(3).map_or("shm", String::as_str),
        ),
        _ => eprintln!("usage: async_bench rtt|inproc|idle|ready"),
    }
}
