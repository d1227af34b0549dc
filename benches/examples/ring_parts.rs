//! Where an 8-byte round trip's time goes, between two threads pinned to
//! CPUs 0 and 1, per round trip (total time / round trips, no clock read
//! inside the loop), in alternating rounds:
//!
//! - `ring_local`, `channel_local`: one thread, a send then a receive on
//!   one bare ring or one `shm:` channel (the instruction path alone, no
//!   line crossing cores);
//! - `empty_try_spsc`, `empty_try_mpmc`, `empty_try_topic`: one thread,
//!   a `try_recv` on an empty channel with a live sender, or an empty
//!   topic with a live publisher (a `try_recv` spinner's cost per look);
//! - `floor`: one cache line flipped each way;
//! - `floor2`: two lines, one each way (the shape of any round trip
//!   through two rings);
//! - `ring`: two bare SPSC rings (`shmlane_ring::spsc`, 8-byte slots),
//!   `try_push`/`try_pop` spinning;
//! - `ring_fenced`: `ring` with a SeqCst fence after each push and pop
//!   (what the channel's wakeup check adds);
//! - `channel`: two `shm:` SPSC channels of `u64`, busy-poll,
//!   `send`/`recv`;
//! - `channel_try`: `channel` with `try_send` and a spin loop on
//!   `try_recv` (what the waiting in `recv` costs);
//! - `floor_copy_1k`: the `--peers` bench's floor+copy in threads: one
//!   counter line flipped each way, and a 1 KiB buffer each way copied in
//!   before the flip and out after it;
//! - `floor2_copy_1k`: the same with one counter line each way (the shape
//!   of two rings);
//! - `ring_1k`, `channel_1k`: `ring` and `channel` with 1 KiB messages
//!   (`[u8; 1024]` by value), capacity 64; the bare rings' slots are
//!   aligned to `RP_ALIGN` bytes (default 8; the channel's to 64);
//! - `ring_1k_cap2`, `channel_1k_cap2`, `channel_1k_cap1`,
//!   `channel_4k_cap2`: the same at capacity 2 and 1, and with 4 KiB.
//!
//! `cargo run --release -p shmlane-benches --example ring_parts [ITERS] [ROUNDS] [PART]`
//! (PART: run only that part). On one CPU, or where pinning is refused,
//! the spinning parts yield now and then and crawl.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use shmlane::ipc::{Builder, Receiver, Sender};
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

/// Two `shm:` SPSC channels of `T` (ping and pong) with `cap` slots,
/// busy-poll: the ping's ends, then the pong's.
fn two_channels<T: bytemuck::Pod>(cap: usize) -> (Sender<T>, Receiver<T>, Sender<T>, Receiver<T>) {
    let make = |tag: &str| {
        let addr = format!("shm:ring-parts-{tag}-{}", std::process::id());
        Builder::new(&addr)
            .unwrap()
            .spsc()
            .capacity(cap)
            .wait_strategy(WaitStrategy::busy_poll())
            .create::<T>()
            .unwrap()
    };
    let (p, q) = (make("p"), make("q"));
    (
        p.sender().unwrap(),
        p.receiver().unwrap(),
        q.sender().unwrap(),
        q.receiver().unwrap(),
    )
}

/// The far side of a channel part, on CPU 1: each message back.
fn echo<T: bytemuck::Pod>(iters: u64, rx: &Receiver<T>, tx: &Sender<T>) {
    pin(1);
    for _ in 0..iters {
        let v = rx.recv().unwrap();
        tx.send(v).unwrap();
    }
}

fn channel(iters: u64) -> f64 {
    let (ptx, prx, qtx, qrx) = two_channels::<u64>(64);
    std::thread::scope(|s| {
        s.spawn(move || echo(iters, &prx, &qtx));
        pin(0);
        let t = Instant::now();
        for i in 0..iters {
            ptx.send(i).unwrap();
            std::hint::black_box(qrx.recv().unwrap());
        }
        t.elapsed().as_nanos() as f64 / iters as f64
    })
}

/// `channel`, receiving with `try_recv` in a spin loop instead of `recv`.
fn channel_try(iters: u64) -> f64 {
    let (ptx, prx, qtx, qrx) = two_channels::<u64>(64);
    let take = |rx: &Receiver<u64>| loop {
        match rx.try_recv() {
            Ok(v) => break v,
            Err(_) => std::hint::spin_loop(),
        }
    };
    std::thread::scope(|s| {
        s.spawn(move || {
            pin(1);
            for _ in 0..iters {
                let v = take(&prx);
                qtx.try_send(v).unwrap();
            }
        });
        pin(0);
        let t = Instant::now();
        for i in 0..iters {
            ptx.try_send(i).unwrap();
            std::hint::black_box(take(&qrx));
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

/// One thread: a `try_recv` on an empty channel of `kind` with a live
/// sender, per call (what a receiver spinning on `try_recv` pays per look).
fn empty_try(iters: u64, kind: shmlane::ipc::RingKind) -> f64 {
    let addr = format!("shm:ring-parts-empty-{}", std::process::id());
    let c = Builder::new(&addr)
        .unwrap()
        .kind(kind)
        .capacity(64)
        .create::<u64>()
        .unwrap();
    let (_tx, rx) = (c.sender().unwrap(), c.receiver().unwrap());
    per_empty_look(iters, || rx.try_recv().is_err())
}

/// As `empty_try`, for a topic's subscriber (a publisher attached).
fn empty_try_topic(iters: u64) -> f64 {
    let addr = format!("shm:ring-parts-topic-{}", std::process::id());
    let topic = Builder::new(&addr)
        .unwrap()
        .capacity(64)
        .create_topic::<u64>()
        .unwrap();
    let (_tx, mut rx) = (topic.publisher().unwrap(), topic.subscriber().unwrap());
    per_empty_look(iters, || rx.try_recv().is_err())
}

/// Time per call of `look` on CPU 0; every call must find nothing.
fn per_empty_look(iters: u64, mut look: impl FnMut() -> bool) -> f64 {
    pin(0);
    let t = Instant::now();
    for _ in 0..iters {
        assert!(std::hint::black_box(look()), "a look found a message");
    }
    t.elapsed().as_nanos() as f64 / iters as f64
}

fn empty_try_spsc(iters: u64) -> f64 {
    empty_try(iters, shmlane::ipc::RingKind::Spsc)
}

fn empty_try_mpmc(iters: u64) -> f64 {
    empty_try(iters, shmlane::ipc::RingKind::Mpmc)
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

const K: usize = 1024;

#[repr(C, align(128))]
struct CopyPage {
    a: Line,
    b: Line,
    buf_a: std::cell::UnsafeCell<[u8; K]>,
    _gap: [u8; 128],
    buf_b: std::cell::UnsafeCell<[u8; K]>,
}

// SAFETY: the buffers are handed over by the counters' Release/Acquire.
unsafe impl Sync for CopyPage {}

impl CopyPage {
    fn new() -> Box<Self> {
        Box::new(Self {
            a: Line(AtomicU64::new(0)),
            b: Line(AtomicU64::new(0)),
            buf_a: std::cell::UnsafeCell::new([0; K]),
            _gap: [0; 128],
            buf_b: std::cell::UnsafeCell::new([0; K]),
        })
    }
}

fn copy_in(buf: &std::cell::UnsafeCell<[u8; K]>, local: &[u8; K]) {
    // SAFETY: the writer owns the buffer until it flips the counter.
    unsafe { std::ptr::copy_nonoverlapping(local.as_ptr(), buf.get().cast::<u8>(), K) }
}

fn copy_out(buf: &std::cell::UnsafeCell<[u8; K]>, local: &mut [u8; K]) {
    // SAFETY: the reader owns the buffer after seeing the counter.
    unsafe { std::ptr::copy_nonoverlapping(buf.get().cast::<u8>(), local.as_mut_ptr(), K) }
}

/// One counter line for both directions, as the `--peers` floor+copy.
fn floor_copy_1k(iters: u64) -> f64 {
    let pg = CopyPage::new();
    let pg = &*pg;
    std::thread::scope(|s| {
        s.spawn(|| {
            pin(1);
            let mut local = [0u8; K];
            for i in 0..iters {
                spin(&pg.a.0, 2 * i + 1);
                copy_out(&pg.buf_a, &mut local);
                copy_in(&pg.buf_b, &local);
                pg.a.0.store(2 * i + 2, Ordering::Release);
            }
        });
        pin(0);
        let mut local = [1u8; K];
        let t = Instant::now();
        for i in 0..iters {
            local[..8].copy_from_slice(&i.to_le_bytes());
            copy_in(&pg.buf_a, &local);
            pg.a.0.store(2 * i + 1, Ordering::Release);
            spin(&pg.a.0, 2 * i + 2);
            copy_out(&pg.buf_b, &mut local);
            std::hint::black_box(&local);
        }
        t.elapsed().as_nanos() as f64 / iters as f64
    })
}

/// One counter line each way.
fn floor2_copy_1k(iters: u64) -> f64 {
    let pg = CopyPage::new();
    let pg = &*pg;
    std::thread::scope(|s| {
        s.spawn(|| {
            pin(1);
            let mut local = [0u8; K];
            for i in 1..=iters {
                spin(&pg.a.0, i);
                copy_out(&pg.buf_a, &mut local);
                copy_in(&pg.buf_b, &local);
                pg.b.0.store(i, Ordering::Release);
            }
        });
        pin(0);
        let mut local = [1u8; K];
        let t = Instant::now();
        for i in 1..=iters {
            local[..8].copy_from_slice(&i.to_le_bytes());
            copy_in(&pg.buf_a, &local);
            pg.a.0.store(i, Ordering::Release);
            spin(&pg.b.0, i);
            copy_out(&pg.buf_b, &mut local);
            std::hint::black_box(&local);
        }
        t.elapsed().as_nanos() as f64 / iters as f64
    })
}

fn ring_1k_with(iters: u64, cap: u64) -> f64 {
    let al: usize = std::env::var("RP_ALIGN").map_or(8, |s| s.parse().unwrap());
    let (mut ptx, mut prx) = shmlane_ring::spsc::channel(cap, K, al).unwrap();
    let (mut qtx, mut qrx) = shmlane_ring::spsc::channel(cap, K, al).unwrap();
    std::thread::scope(|s| {
        s.spawn(move || {
            pin(1);
            let mut buf = [0u8; K];
            for _ in 0..iters {
                while prx.try_pop(&mut buf).is_err() {
                    std::hint::spin_loop();
                }
                while qtx.try_push(&buf).is_err() {}
            }
        });
        pin(0);
        let mut buf = [1u8; K];
        let t = Instant::now();
        for i in 0..iters {
            buf[..8].copy_from_slice(&i.to_le_bytes());
            ptx.try_push(&buf).unwrap();
            while qrx.try_pop(&mut buf).is_err() {
                std::hint::spin_loop();
            }
        }
        t.elapsed().as_nanos() as f64 / iters as f64
    })
}

fn ring_1k(iters: u64) -> f64 {
    ring_1k_with(iters, 64)
}

fn ring_1k_cap2(iters: u64) -> f64 {
    ring_1k_with(iters, 2)
}

fn channel_1k_with(iters: u64, cap: u64) -> f64 {
    channel_n_with::<K>(iters, cap)
}

fn channel_n_with<const N: usize>(iters: u64, cap: u64) -> f64
where
    [u8; N]: bytemuck::Pod,
{
    let (ptx, prx, qtx, qrx) = two_channels::<[u8; N]>(cap as usize);
    std::thread::scope(|s| {
        s.spawn(move || echo(iters, &prx, &qtx));
        pin(0);
        let mut msg = [1u8; N];
        let t = Instant::now();
        for i in 0..iters {
            msg[..8].copy_from_slice(&i.to_le_bytes());
            ptx.send(msg).unwrap();
            msg = qrx.recv().unwrap();
            std::hint::black_box(&msg);
        }
        t.elapsed().as_nanos() as f64 / iters as f64
    })
}

fn channel_1k(iters: u64) -> f64 {
    channel_1k_with(iters, 64)
}

fn channel_1k_cap2(iters: u64) -> f64 {
    channel_1k_with(iters, 2)
}

fn channel_1k_cap1(iters: u64) -> f64 {
    channel_1k_with(iters, 1)
}

fn channel_4k_cap2(iters: u64) -> f64 {
    channel_n_with::<4096>(iters, 2)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let iters = args.next().map_or(2_000_000, |s| s.parse().unwrap());
    let rounds = args.next().map_or(5, |s| s.parse().unwrap());
    let only = args.next();
    type Part = (&'static str, fn(u64) -> f64);
    let parts: [Part; 19] = [
        ("ring_local", ring_local),
        ("channel_local", channel_local),
        ("empty_try_spsc", empty_try_spsc),
        ("empty_try_mpmc", empty_try_mpmc),
        ("empty_try_topic", empty_try_topic),
        ("floor", floor),
        ("floor2", floor2),
        ("ring", ring),
        ("ring_fenced", ring_fenced),
        ("channel", channel),
        ("channel_try", channel_try),
        ("floor_copy_1k", floor_copy_1k),
        ("floor2_copy_1k", floor2_copy_1k),
        ("ring_1k", ring_1k),
        ("ring_1k_cap2", ring_1k_cap2),
        ("channel_1k", channel_1k),
        ("channel_1k_cap2", channel_1k_cap2),
        ("channel_1k_cap1", channel_1k_cap1),
        ("channel_4k_cap2", channel_4k_cap2),
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
