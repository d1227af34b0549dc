//! Where an 8-byte round trip's time goes, between two threads pinned to
//! CPUs 0 and 1, per round trip (total time / round trips, no clock read
//! inside the loop), in alternating rounds:
//!
//! - `ring_local`, `channel_local`: one thread, a send then a receive on
//!   one bare ring or one `shm:` channel (the instruction path alone, no
//!   line crossing cores);
//! - `floor`: one cache line flipped each way;
//! - `floor2`: two lines, one each way (the shape of any round trip
//!   through two rings);
//! - `ring`: two bare SPSC rings (`shmlane_ring::spsc`, 8-byte slots),
//!   `try_push`/`try_pop` spinning;
//! - `ring_fenced`: `ring` with a SeqCst fence after each push and pop
//!   (what the channel's wakeup check adds);
//! - `channel`: two `shm:` SPSC channels of `u64`, busy-poll,
//!   `send`/`recv`.
//!
//! `cargo run --release -p shmlane-benches --example ring_parts [ITERS] [ROUNDS] [PART]`
//! (PART: run only that part). On one CPU, or where pinning is refused,
//! the spinning parts yield now and then and crawl.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use shmlane::ipc::Builder;
use shmlane::WaitStrategy;

#[repr(align(128))]
struct Line(AtomicU64);

fn pin(cpu: usize) {
    let _ = shmlane_sys::process::pin_to_cpu(cpu);
}

fn spin(c: &AtomicU64, v: u64) {
    let mut spins = 0u32;
    while c.load(Ordering::Acquire) != v {
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins % (1 << 16) == 0 {
            std::thread::yield_now();
        }
    }
}

fn floor(iters: u64) -> f64 {
    let c = Line(AtomicU64::new(0));
    std::thread::scope(|s| {
        s.spawn(|| {
            pin(1);
            for i in 0..iters {
                spin(&c.0, 2 * i + 1);
                c.0.store(2 * i + 2, Ordering::Release);
            }
        });
        pin(0);
        let t = Instant::now();
        for i in 0..iters {
            c.0.store(2 * i + 1, Ordering::Release);
            spin(&c.0, 2 * i + 2);
        }
        t.elapsed().as_nanos() as f64 / iters as f64
    })
}

fn floor2(iters: u64) -> f64 {
    let (a, b) = (Line(AtomicU64::new(0)), Line(AtomicU64::new(0)));
    std::thread::scope(|s| {
        s.spawn(|| {
            pin(1);
            for i in 1..=iters {
                spin(&a.0, i);
                b.0.store(i, Ordering::Release);
            }
        });
        pin(0);
        let t = Instant::now();
        for i in 1..=iters {
            a.0.store(i, Ordering::Release);
            spin(&b.0, i);
        }
        t.elapsed().as_nanos() as f64 / iters as f64
    })
}

fn ring(iters: u64) -> f64 {
    ring_with(iters, false)
}

/// `ring`, with a SeqCst fence after each push and each pop (what the
/// channel's wakeup check costs on each side).
fn ring_fenced(iters: u64) -> f64 {
    ring_with(iters, true)
}

fn ring_with(iters: u64, fenced: bool) -> f64 {
    let fence = || {
        if fenced {
            std::sync::atomic::fence(Ordering::SeqCst);
        }
    };
    let (mut ptx, mut prx) = shmlane_ring::spsc::channel(64, 8, 8).unwrap();
    let (mut qtx, mut qrx) = shmlane_ring::spsc::channel(64, 8, 8).unwrap();
    std::thread::scope(|s| {
        s.spawn(move || {
            pin(1);
            let mut buf = [0u8; 8];
            for _ in 0..iters {
                while prx.try_pop(&mut buf).is_err() {
                    std::hint::spin_loop();
                }
                fence();
                while qtx.try_push(&buf).is_err() {}
                fence();
            }
        });
        pin(0);
        let mut buf = [0u8; 8];
        let t = Instant::now();
        for i in 0..iters {
            ptx.try_push(&i.to_le_bytes()).unwrap();
            fence();
            while qrx.try_pop(&mut buf).is_err() {
                std::hint::spin_loop();
            }
            fence();
        }
        t.elapsed().as_nanos() as f64 / iters as f64
    })
}

fn channel(iters: u64) -> f64 {
    let make = |tag: &str| {
        let addr = format!("shm:ring-parts-{tag}-{}", std::process::id());
        Builder::new(&addr)
            .unwrap()
            .spsc()
            .capacity(64)
            .wait_strategy(WaitStrategy::busy_poll())
            .create::<u64>()
            .unwrap()
    };
    let (p, q) = (make("p"), make("q"));
    let (ptx, prx, qtx, qrx) = (
        p.sender().unwrap(),
        p.receiver().unwrap(),
        q.sender().unwrap(),
        q.receiver().unwrap(),
    );
    std::thread::scope(|s| {
        s.spawn(move || {
            pin(1);
            for _ in 0..iters {
                let v = prx.recv().unwrap();
                qtx.send(v).unwrap();
            }
        });
        pin(0);
        let t = Instant::now();
        for i in 0..iters {
            ptx.send(i).unwrap();
            std::hint::black_box(qrx.recv().unwrap());
        }
        t.elapsed().as_nanos() as f64 / iters as f64
    })
}

/// One thread: a send then a receive on one channel, per pair (the
/// instruction path alone, no cache line crossing).
fn channel_local(iters: u64) -> f64 {
    let addr = format!("shm:ring-parts-local-{}", std::process::id());
    let c = Builder::new(&addr)
        .unwrap()
        .spsc()
        .capacity(64)
        .wait_strategy(WaitStrategy::busy_poll())
        .create::<u64>()
        .unwrap();
    let (tx, rx) = (c.sender().unwrap(), c.receiver().unwrap());
    pin(0);
    let t = Instant::now();
    for i in 0..iters {
        tx.send(i).unwrap();
        std::hint::black_box(rx.recv().unwrap());
    }
    t.elapsed().as_nanos() as f64 / iters as f64
}

/// As `channel_local`, on the bare ring.
fn ring_local(iters: u64) -> f64 {
    let (mut tx, mut rx) = shmlane_ring::spsc::channel(64, 8, 8).unwrap();
    pin(0);
    let mut buf = [0u8; 8];
    let t = Instant::now();
    for i in 0..iters {
        tx.try_push(&i.to_le_bytes()).unwrap();
        rx.try_pop(&mut buf).unwrap();
        std::hint::black_box(&buf);
    }
    t.elapsed().as_nanos() as f64 / iters as f64
}

fn main() {
    let mut args = std::env::args().skip(1);
    let iters = args.next().map_or(2_000_000, |s| s.parse().unwrap());
    let rounds = args.next().map_or(5, |s| s.parse().unwrap());
    let only = args.next();
    type Part = (&'static str, fn(u64) -> f64);
    let parts: [Part; 7] = [
        ("ring_local", ring_local),
        ("channel_local", channel_local),
        ("floor", floor),
        ("floor2", floor2),
        ("ring", ring),
        ("ring_fenced", ring_fenced),
        ("channel", channel),
    ];
    for r in 0..rounds {
        let mut line = format!("round {r}:");
        for (name, f) in parts {
            if only.as_deref().is_some_and(|o| o != name) {
                continue;
            }
            line += &format!("  {name} {:.0} ns", f(iters));
        }
        println!("{line}");
    }
}
