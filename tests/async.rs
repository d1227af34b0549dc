//! Async sends and receives: in-process channels and channels from other
//! processes (real ones: this binary runs copies of itself), under tokio's
//! runtimes and under a second executor (futures-lite's `block_on`), mixed
//! with blocking users, and cancelled at every await point by polling by
//! hand. Segment names are unique; creators unlink on drop; the kit kills
//! children.

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_lite::future::block_on;
use shmlane::ipc::Builder;
use shmlane::{after, bounded, never, unbounded, RecvError, SendError};
use shmlane_testkit::{self as kit, env, Kid};

/// The child side of the cross-process tests.
#[test]
fn child() {
    let Some(role) = kit::role() else {
        return;
    };
    match role.as_str() {
        // Sends COUNT numbers 0.. (blocking), then exits.
        "sender" => {
            let chan = Builder::new(&env("ADDR")).unwrap().open::<u64>().unwrap();
            let tx = chan.sender().unwrap();
            let count: u64 = env("COUNT").parse().unwrap();
            for i in 0..count {
                tx.send(i).unwrap();
            }
        }
        // Answers each number on PING with the same number on PONG, from a
        // tokio current-thread runtime, COUNT times.
        "echo" => {
            let ping = Builder::new(&env("PING")).unwrap().open::<u64>().unwrap();
            let pong = Builder::new(&env("PONG")).unwrap().open::<u64>().unwrap();
            let (rx, tx) = (ping.receiver().unwrap(), pong.sender().unwrap());
            let count: u64 = env("COUNT").parse().unwrap();
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(async {
                println!("ready");
                for _ in 0..count {
                    let v = rx.recv_async().await.unwrap();
                    tx.send_async(v).await.unwrap();
                }
            });
        }
        // Receives COUNT numbers (blocking) and prints their sum.
        "summer" => {
            let chan = Builder::new(&env("ADDR")).unwrap().open::<u64>().unwrap();
            let rx = chan.receiver().unwrap();
            let count: u64 = env("COUNT").parse().unwrap();
            let sum: u64 = (0..count).map(|_| rx.recv().unwrap()).sum();
            println!("sum {sum}");
        }
        // Opens a sender, says so, and waits to be killed.
        "idle_sender" => {
            let chan = Builder::new(&env("ADDR")).unwrap().open::<u64>().unwrap();
            let _tx = chan.sender().unwrap();
            println!("ready");
            std::thread::sleep(Duration::from_secs(600));
        }
        // Waits with the bridge (a timer) and with the poller (a tcp:
        // receive), forks, and has the forked child do the same: it
        // inherits neither helper thread, so it must start its own. Prints
        // the forked child's exit status.
        "forker" => {
            helpers_round();
            // SAFETY: the child calls only async-signal-safe-enough code
            // of this crate's own (no lock another thread could hold: the
            // helpers' locks are taken briefly, and a fresh helper is made
            // in the child), then `_exit`.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                // Off the test's pipe: a forked child that hung must not
                // keep the parent test reading it.
                let null = std::fs::File::create("/dev/null").unwrap();
                // SAFETY: replaces this process's stdout with /dev/null.
                unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 1) };
                helpers_round();
                // SAFETY: ends the forked child without running the
                // parent's exit handlers.
                unsafe { libc::_exit(0) };
            }
            // Hang guard: a forked child that is still waiting after 60 s
            // is killed and reported.
            let start = std::time::Instant::now();
            let mut status = 0;
            loop {
                // SAFETY: polls our own child.
                let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
                if r == pid {
                    break;
                }
                if start.elapsed() > Duration::from_secs(60) {
                    // SAFETY: our own child.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    println!("forked child hung");
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            println!("forked child status {status}");
        }
        other => panic!("unknown role {other}"),
    }
}

/// One wait through each helper thread: a 50 ms timer (the futex bridge;
/// it is woken at its deadline by the bridge) and a
/// `tcp:` receive whose frame is sent once the poller thread exists.
fn helpers_round() {
    assert!(block_on(after(Duration::from_millis(50)).recv_async()).is_ok());
    let rx = Builder::new("tcp:127.0.0.1:0")
        .unwrap()
        .receiver::<u64>()
        .unwrap();
    let addr = rx.local_address().unwrap().to_owned();
    let sender = std::thread::spawn(move || {
        let tx = Builder::new(&addr).unwrap().sender::<u64>().unwrap();
        poller_tid();
        tx.send(5).unwrap();
    });
    assert_eq!(block_on(rx.recv_async()), Ok(5));
    sender.join().unwrap();
}

fn noop_cx() -> Context<'static> {
    Context::from_waker(Waker::noop())
}

#[test]
fn in_process_async_under_tokio_multi_thread_4_by_4() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    for cap in [1, 4, 1000] {
        let (tx, rx) = bounded::<u64>(cap);
        let total = Arc::new(AtomicUsize::new(0));
        rt.block_on(async {
            let mut tasks = Vec::new();
            for p in 0..4u64 {
                let tx = tx.clone();
                tasks.push(tokio::spawn(async move {
                    for i in 0..2_000u64 {
                        tx.send_async(p * 10_000 + i).await.unwrap();
                    }
                }));
            }
            let mut receivers = Vec::new();
            for _ in 0..4 {
                let rx = rx.clone();
                let total = Arc::clone(&total);
                receivers.push(tokio::spawn(async move {
                    let mut got = Vec::new();
                    while let Ok(v) = rx.recv_async().await {
                        got.push(v);
                        total.fetch_add(1, Ordering::Relaxed);
                    }
                    got
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            drop(tx);
            let mut all = Vec::new();
            for r in receivers {
                all.extend(r.await.unwrap());
            }
            all.sort_unstable();
            let want: Vec<u64> = (0..4u64)
                .flat_map(|p| (0..2_000u64).map(move |i| p * 10_000 + i))
                .collect();
            assert_eq!(all, want, "cap {cap}: every message exactly once");
        });
        assert_eq!(total.load(Ordering::Relaxed), 8_000);
        drop(rx);
    }
}

#[test]
fn unbounded_async_under_futures_lite() {
    let (tx, rx) = unbounded::<String>();
    let t = std::thread::spawn(move || {
        for i in 0..1_000 {
            tx.send(i.to_string()).unwrap();
        }
    });
    let got = block_on(async {
        let mut got = Vec::new();
        while let Ok(s) = rx.recv_async().await {
            got.push(s);
        }
        got
    });
    t.join().unwrap();
    assert_eq!(got.len(), 1_000);
    assert_eq!(got[999], "999");
}

#[test]
fn a_blocking_receiver_and_an_async_sender_and_the_reverse() {
    // Async sender, blocking receiver, on a channel that fills.
    let (tx, rx) = bounded::<u32>(2);
    let t = std::thread::spawn(move || rx.iter().collect::<Vec<_>>());
    block_on(async {
        for i in 0..500 {
            tx.send_async(i).await.unwrap();
        }
    });
    drop(tx);
    assert_eq!(t.join().unwrap(), (0..500).collect::<Vec<_>>());

    // Blocking sender, async receiver.
    let (tx, rx) = bounded::<u32>(2);
    let t = std::thread::spawn(move || {
        for i in 0..500 {
            tx.send(i).unwrap();
        }
    });
    let got = block_on(drain(&rx));
    t.join().unwrap();
    assert_eq!(got, (0..500).collect::<Vec<_>>());
}

#[test]
fn a_dropped_receive_loses_nothing_and_leaves_no_waiter() {
    for cap in [Some(1), None] {
        let (tx, rx) = match cap {
            Some(c) => bounded::<u32>(c),
            None => unbounded::<u32>(),
        };
        let mut cx = noop_cx();
        // The future first spins (re-polls by self-wake, as many times as
        // the wait strategy spins), then announces itself.
        let polls_to_park = shmlane::WaitStrategy::default().spin() as usize + 1;
        {
            let mut fut = pin!(rx.recv_async());
            for _ in 0..polls_to_park {
                assert!(fut.as_mut().poll(&mut cx).is_pending());
            }
            assert_eq!(tx.parked_receivers(), 1, "the task is announced");
            // Polled again, still pending: one announcement, not two.
            assert!(fut.as_mut().poll(&mut cx).is_pending());
            assert_eq!(tx.parked_receivers(), 1);
        }
        assert_eq!(tx.parked_receivers(), 0, "dropping withdrew it");
        // A future registered while empty, then the message arrives, then
        // the future is dropped before its next poll: the message stays
        // for the next receive.
        {
            let mut fut = pin!(rx.recv_async());
            for _ in 0..polls_to_park {
                assert!(fut.as_mut().poll(&mut cx).is_pending());
            }
            tx.send(9).unwrap();
        }
        assert_eq!(tx.parked_receivers(), 0);
        let mut fut = pin!(rx.recv_async());
        assert_eq!(fut.as_mut().poll(&mut cx), Poll::Ready(Ok(9)));
    }
}

#[test]
fn a_dropped_send_drops_its_message_unsent_or_gives_it_back() {
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    let drops = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = bounded::<Counted>(1);
    tx.send(Counted(Arc::clone(&drops))).unwrap();
    let mut cx = noop_cx();
    {
        let mut fut = pin!(tx.send_async(Counted(Arc::clone(&drops))));
        assert!(
            fut.as_mut().poll(&mut cx).is_pending(),
            "the channel is full"
        );
    }
    assert_eq!(drops.load(Ordering::Relaxed), 1, "dropped, unsent");
    assert_eq!(rx.len(), 1, "nothing half-sent");
    let mut fut = tx.send_async(Counted(Arc::clone(&drops)));
    assert!(Pin::new(&mut fut).poll(&mut cx).is_pending());
    let back = fut.into_message().expect("the unsent message comes back");
    assert_eq!(drops.load(Ordering::Relaxed), 1);
    drop(back);
    // Room again: the next send completes at once.
    drop(rx.recv().unwrap());
    let mut fut = pin!(tx.send_async(Counted(Arc::clone(&drops))));
    assert!(fut.as_mut().poll(&mut cx).is_ready());
}

#[test]
fn a_pending_receive_sees_the_disconnect_and_a_pending_send_sees_it_too() {
    let (tx, rx) = bounded::<u8>(1);
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        drop(tx);
    });
    assert_eq!(block_on(rx.recv_async()), Err(RecvError));
    t.join().unwrap();

    let (tx, rx) = bounded::<u8>(1);
    tx.send(1).unwrap();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        drop(rx);
    });
    assert_eq!(block_on(tx.send_async(2)), Err(SendError(2)));
    t.join().unwrap();
}

#[test]
fn timers_resolve_and_never_stays_pending() {
    let rx = after(Duration::from_millis(5));
    let fired = block_on(rx.recv_async()).unwrap();
    assert!(fired <= std::time::Instant::now());
    let never = never::<u8>();
    let mut fut = pin!(never.recv_async());
    assert!(fut.as_mut().poll(&mut noop_cx()).is_pending());
}

#[test]
fn awaits_a_message_from_another_process_under_tokio_current_thread() {
    for ring in ["spsc", "mpmc"] {
        let addr = kit::shm_address(&format!("async-{ring}"));
        let mut b = Builder::new(&addr).unwrap().capacity(16);
        if ring == "spsc" {
            b = b.spsc();
        }
        let chan = b.create::<u64>().unwrap();
        let rx = chan.receiver().unwrap();
        let count = 20_000u64;
        let mut kid = Kid::spawn(
            "child",
            "sender",
            &[("ADDR", addr.clone()), ("COUNT", count.to_string())],
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let sum = rt.block_on(async {
            let mut sum = 0;
            for i in 0..count {
                let v = rx.recv_async().await.unwrap();
                assert_eq!(v, i, "{ring}: in order");
                sum += v;
            }
            // The sender exits: the channel disconnects.
            assert!(rx.recv_async().await.is_err());
            sum
        });
        assert_eq!(sum, count * (count - 1) / 2);
        assert!(kid.wait_timeout(Duration::from_secs(60)).unwrap().success());
    }
}

#[test]
fn async_ping_pong_with_another_process_and_an_async_sender_to_a_blocking_receiver() {
    let ping = kit::shm_address("async-ping");
    let pong = kit::shm_address("async-pong");
    let ping_chan = Builder::new(&ping).unwrap().spsc().create::<u64>().unwrap();
    let pong_chan = Builder::new(&pong).unwrap().spsc().create::<u64>().unwrap();
    let (tx, rx) = (ping_chan.sender().unwrap(), pong_chan.receiver().unwrap());
    let count = 2_000u64;
    let mut kid = Kid::spawn(
        "child",
        "echo",
        &[
            ("PING", ping.clone()),
            ("PONG", pong.clone()),
            ("COUNT", count.to_string()),
        ],
    );
    assert!(kid.wait_for("ready"));
    block_on(async {
        for i in 0..count {
            tx.send_async(i).await.unwrap();
            assert_eq!(rx.recv_async().await, Ok(i));
        }
    });
    assert!(kid.wait_timeout(Duration::from_secs(60)).unwrap().success());

    // An async sender in this process, a blocking receiver in the other,
    // through a channel that fills (capacity 2).
    let addr = kit::shm_address("async-to-blocking");
    let chan = Builder::new(&addr)
        .unwrap()
        .capacity(2)
        .create::<u64>()
        .unwrap();
    let tx = chan.sender().unwrap();
    let count = 5_000u64;
    let mut kid = Kid::spawn(
        "child",
        "summer",
        &[("ADDR", addr.clone()), ("COUNT", count.to_string())],
    );
    block_on(async {
        for i in 0..count {
            tx.send_async(i).await.unwrap();
        }
    });
    let (lines, status) = kid.finish(Duration::from_secs(60)).unwrap();
    assert!(status.success());
    let want = format!("sum {}", count * (count - 1) / 2);
    assert!(lines.contains(&want), "{lines:?}");
}

#[test]
fn a_pending_receive_learns_that_the_sender_process_was_killed() {
    for ring in ["spsc", "mpmc"] {
        let addr = kit::shm_address(&format!("async-kill-{ring}"));
        let mut b = Builder::new(&addr).unwrap().capacity(4);
        if ring == "spsc" {
            b = b.spsc();
        }
        let chan = b.create::<u64>().unwrap();
        let rx = chan.receiver().unwrap();
        let mut kid = Kid::spawn("child", "idle_sender", &[("ADDR", addr.clone())]);
        assert!(kid.wait_for("ready"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let got = rt.block_on(async {
            let waiting = rx.recv_async();
            // The kill comes while the task is parked with the bridge (a
            // death sends no wakeup: the periodic re-check finds it).
            let killer = async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                kid.kill();
            };
            let (got, ()) = tokio::join!(
                tokio::time::timeout(Duration::from_secs(60), waiting),
                killer
            );
            got
        });
        assert_eq!(got, Ok(Err(RecvError)), "{ring}: disconnected, not hung");
    }
}

#[test]
fn a_waker_that_panics_does_not_stop_the_bridge() {
    use std::sync::atomic::AtomicBool;
    use std::task::Wake;
    /// Panics once armed (the future's spin wakes it first, harmlessly).
    struct Boom(AtomicBool, AtomicBool);
    impl Wake for Boom {
        fn wake(self: Arc<Self>) {
            if self.1.load(Ordering::SeqCst) {
                self.0.store(true, Ordering::SeqCst);
                panic!("a waker that panics (on purpose)");
            }
        }
    }
    let boom = Arc::new(Boom(AtomicBool::new(false), AtomicBool::new(false)));
    let waker = Waker::from(Arc::clone(&boom));
    let mut cx = Context::from_waker(&waker);
    // A cross-process channel: its tasks are woken by the bridge (an
    // in-process channel's notifier wakes its tasks itself).
    let chan = Builder::new(&kit::shm_address("async-boom"))
        .unwrap()
        .capacity(1)
        .create::<u8>()
        .unwrap();
    let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
    let mut fut = pin!(rx.recv_async());
    for _ in 0..=shmlane::WaitStrategy::default().spin() {
        assert!(fut.as_mut().poll(&mut cx).is_pending());
    }
    boom.1.store(true, Ordering::SeqCst);
    tx.send(1).unwrap();
    // The bridge calls the waker, which panics on the bridge thread.
    while !boom.0.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    // The bridge still serves every other wait.
    let (tx2, rx2) = bounded::<u8>(1);
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(10));
        tx2.send(2).unwrap();
    });
    assert_eq!(block_on(rx2.recv_async()), Ok(2));
    t.join().unwrap();
    // And the first message was not lost.
    assert_eq!(block_on(rx.recv_async()), Ok(1));
}

/// Sends every item through a sink: `poll_ready`, `start_send`, then a
/// final `poll_flush` (what `SinkExt::send` does, written out).
async fn send_all<S, T>(sink: &mut S, items: impl IntoIterator<Item = T>) -> Result<(), S::Error>
where
    S: futures_sink::Sink<T> + Unpin,
{
    for item in items {
        std::future::poll_fn(|cx| Pin::new(&mut *sink).poll_ready(cx)).await?;
        Pin::new(&mut *sink).start_send(item)?;
    }
    std::future::poll_fn(|cx| Pin::new(&mut *sink).poll_flush(cx)).await
}

#[test]
fn in_process_stream_and_sink() {
    use futures_lite::StreamExt;
    let (tx, rx) = bounded::<u32>(3);
    let t = std::thread::spawn(move || {
        block_on(async {
            let mut sink = tx.sink();
            send_all(&mut sink, 0..1_000).await.unwrap();
        })
    });
    let got: Vec<u32> = block_on(rx.stream().collect());
    t.join().unwrap();
    assert_eq!(got, (0..1_000).collect::<Vec<_>>());
}

#[test]
fn a_stream_and_a_sink_between_processes() {
    use futures_lite::StreamExt;
    // Stream: the messages of a blocking sender in another process.
    let addr = kit::shm_address("async-stream");
    let chan = Builder::new(&addr)
        .unwrap()
        .capacity(8)
        .create::<u64>()
        .unwrap();
    let rx = chan.receiver().unwrap();
    let count = 3_000u64;
    let mut kid = Kid::spawn(
        "child",
        "sender",
        &[("ADDR", addr.clone()), ("COUNT", count.to_string())],
    );
    let got: Vec<u64> = block_on(rx.stream().map(|m| m.unwrap()).collect());
    assert_eq!(got, (0..count).collect::<Vec<_>>());
    assert!(kid.wait_timeout(Duration::from_secs(60)).unwrap().success());

    // Sink: Pod values to a blocking receiver in another process.
    let addr = kit::shm_address("async-sink");
    let chan = Builder::new(&addr)
        .unwrap()
        .capacity(2)
        .create::<u64>()
        .unwrap();
    let tx = chan.sender().unwrap();
    let mut kid = Kid::spawn(
        "child",
        "summer",
        &[("ADDR", addr.clone()), ("COUNT", count.to_string())],
    );
    block_on(async {
        let mut sink = tx.sink();
        send_all(&mut sink, 0..count).await.unwrap();
    });
    let (lines, status) = kid.finish(Duration::from_secs(60)).unwrap();
    assert!(status.success());
    assert!(
        lines.contains(&format!("sum {}", count * (count - 1) / 2)),
        "{lines:?}"
    );
}

#[test]
fn every_message_kind_async_on_both_rings_owned_and_in_place() {
    use shmlane::ipc::{Bytes, RingKind, Rkyv};
    use shmlane_codec::sample::{Status, Telemetry};
    for kind in [RingKind::Spsc, RingKind::Mpmc] {
        // Raw bytes, owned and lent in place.
        let chan = Builder::new(&kit::shm_address("async-bytes"))
            .unwrap()
            .kind(kind)
            .capacity(4)
            .message_size(64)
            .create::<Bytes>()
            .unwrap();
        let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
        block_on(async {
            tx.send_async(b"hello".as_slice()).await.unwrap();
            tx.send_async(b"in place".as_slice()).await.unwrap();
            assert_eq!(rx.recv_async().await.unwrap(), b"hello");
            let lent = rx.recv_ref_async().await.unwrap();
            assert_eq!(&*lent, b"in place");
        });

        // rkyv archives, owned and read in place.
        let chan = Builder::new(&kit::shm_address("async-rkyv"))
            .unwrap()
            .kind(kind)
            .capacity(4)
            .message_size(256)
            .create::<Rkyv<Telemetry>>()
            .unwrap();
        let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
        let t = Telemetry {
            sensor: 7,
            readings: vec![1.5, 2.5],
            status: Status::Degraded(3),
            note: Some("async".into()),
        };
        block_on(async {
            tx.send_async(&t).await.unwrap();
            tx.send_async(&t).await.unwrap();
            assert_eq!(rx.recv_async().await.unwrap(), t);
            let lent = rx.recv_ref_async().await.unwrap();
            assert_eq!(lent.sensor, 7);
            assert_eq!(lent.readings.len(), 2);
        });
        // Both kinds through a sink and a stream (capacity 4, 10
        // messages: the sink waits for room while the stream drains).
        let ts: Vec<Telemetry> = (0..10)
            .map(|i| Telemetry {
                sensor: i,
                ..t.clone()
            })
            .collect();
        let consumer = std::thread::spawn(move || {
            use futures_lite::StreamExt;
            block_on(rx.stream().take(10).collect::<Vec<_>>())
        });
        block_on(send_all(&mut tx.sink(), ts.iter())).unwrap();
        let got: Vec<Telemetry> = consumer
            .join()
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(got, ts, "rkyv through a sink and a stream");
        let chan = Builder::new(&kit::shm_address("async-bytes-sink"))
            .unwrap()
            .kind(kind)
            .capacity(4)
            .message_size(64)
            .create::<Bytes>()
            .unwrap();
        let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
        let frames: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; usize::from(i)]).collect();
        let consumer = std::thread::spawn(move || {
            use futures_lite::StreamExt;
            block_on(rx.stream().take(10).collect::<Vec<_>>())
        });
        block_on(send_all(&mut tx.sink(), frames.iter().map(Vec::as_slice))).unwrap();
        let got: Vec<Vec<u8>> = consumer
            .join()
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(got, frames, "bytes through a sink and a stream");
    }
}

#[test]
fn a_dropped_cross_process_send_sends_nothing_and_frees_nothing() {
    let addr = kit::shm_address("async-send-drop");
    let chan = Builder::new(&addr)
        .unwrap()
        .capacity(1)
        .create::<u64>()
        .unwrap();
    let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
    tx.send(1).unwrap();
    let mut cx = noop_cx();
    {
        let mut fut = pin!(tx.send_async(2));
        // It spins, then parks: pending throughout, the channel full.
        for _ in 0..=shmlane::WaitStrategy::default().spin() + 1 {
            assert!(fut.as_mut().poll(&mut cx).is_pending());
        }
    }
    assert_eq!(rx.try_recv(), Ok(1));
    assert!(rx.try_recv().is_err(), "the dropped send sent nothing");
    // The ring is whole: sends and receives go on.
    block_on(async {
        tx.send_async(3).await.unwrap();
        assert_eq!(rx.recv_async().await, Ok(3));
    });
}

#[test]
fn an_in_process_sender_wakes_a_parked_task_itself() {
    use std::sync::Mutex;
    use std::task::Wake;
    /// Records the name of the thread that wakes it.
    struct Who(Mutex<Vec<Option<String>>>);
    impl Wake for Who {
        fn wake(self: Arc<Self>) {
            let name = std::thread::current().name().map(String::from);
            self.0.lock().unwrap().push(name);
        }
    }
    let who = Arc::new(Who(Mutex::new(Vec::new())));
    let waker = Waker::from(Arc::clone(&who));
    let mut cx = Context::from_waker(&waker);
    for cap in [Some(2), None] {
        let (tx, rx) = match cap {
            Some(c) => bounded::<u8>(c),
            None => unbounded::<u8>(),
        };
        let mut fut = pin!(rx.recv_async());
        for _ in 0..=shmlane::WaitStrategy::default().spin() {
            assert!(fut.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(tx.parked_receivers(), 1, "listed");
        who.0.lock().unwrap().clear();
        std::thread::Builder::new()
            .name("the-sender".into())
            .spawn(move || tx.send(5).unwrap())
            .unwrap()
            .join()
            .unwrap();
        // Woken inside `send`, on the sender's thread: no helper between.
        assert_eq!(*who.0.lock().unwrap(), vec![Some("the-sender".to_owned())]);
        assert_eq!(fut.as_mut().poll(&mut cx), Poll::Ready(Ok(5)));
    }
}

#[test]
fn a_panicking_waker_breaks_no_in_process_operation() {
    use std::task::Wake;
    /// Panics when woken (after the future's spin, which wakes it too).
    struct Boom(std::sync::atomic::AtomicBool);
    impl Wake for Boom {
        fn wake(self: Arc<Self>) {
            if self.0.load(Ordering::SeqCst) {
                panic!("a waker that panics (on purpose)");
            }
        }
    }
    let boom = Arc::new(Boom(std::sync::atomic::AtomicBool::new(false)));
    let waker = Waker::from(Arc::clone(&boom));
    let mut cx = Context::from_waker(&waker);
    let (tx, rx) = bounded::<u8>(1);
    let mut fut = pin!(rx.recv_async());
    for _ in 0..=shmlane::WaitStrategy::default().spin() {
        assert!(fut.as_mut().poll(&mut cx).is_pending());
    }
    boom.0.store(true, Ordering::SeqCst);
    // The send wakes the listed task, whose waker panics: the send still
    // completes, and the message is there.
    assert_eq!(tx.send(3), Ok(()));
    assert_eq!(fut.as_mut().poll(&mut cx), Poll::Ready(Ok(3)));
}

/// Every message until the channel disconnects, awaited one by one.
async fn drain<T: Send + 'static>(rx: &shmlane::Receiver<T>) -> Vec<T> {
    let mut got = Vec::new();
    while let Ok(v) = rx.recv_async().await {
        got.push(v);
    }
    got
}

/// Rendezvous (`bounded(0)`) channels, async on either side or both,
/// against blocking threads and a thread's `select!`, under futures-lite
/// and tokio.
#[test]
fn rendezvous_async_with_threads_tasks_and_selects() {
    const N: u32 = 2_000;
    let want: Vec<u32> = (0..N).collect();
    // An async sender, a blocking receiver.
    let (tx, rx) = bounded::<u32>(0);
    let t = std::thread::spawn(move || (0..N).map(|_| rx.recv().unwrap()).collect::<Vec<_>>());
    block_on(async {
        for i in 0..N {
            tx.send_async(i).await.unwrap();
        }
    });
    assert_eq!(t.join().unwrap(), want);
    // A blocking sender, an async receiver.
    let (tx, rx) = bounded::<u32>(0);
    let t = std::thread::spawn(move || (0..N).for_each(|i| tx.send(i).unwrap()));
    let got: Vec<u32> = block_on(drain(&rx));
    t.join().unwrap();
    assert_eq!(got, want);
    // Both async, in one task (a join on a single thread: neither side
    // blocks the other).
    let (tx, rx) = bounded::<u32>(0);
    let got = block_on(async {
        let send = async {
            for i in 0..N {
                tx.send_async(i).await.unwrap();
            }
            drop(tx);
        };
        let recv = drain(&rx);
        futures_lite::future::zip(send, recv).await.1
    });
    assert_eq!(got, want);
    // A thread's select with a send arm, an async receiver; and an async
    // sender, a thread's select with a receive arm.
    let (tx, rx) = bounded::<u32>(0);
    let t = std::thread::spawn(move || {
        for i in 0..N {
            shmlane::select! {
                send(tx, i) -> r => r.unwrap(),
            }
        }
    });
    let got: Vec<u32> = block_on(drain(&rx));
    t.join().unwrap();
    assert_eq!(got, want);
    let (tx, rx) = bounded::<u32>(0);
    let t = std::thread::spawn(move || {
        (0..N)
            .map(|_| {
                shmlane::select! {
                    recv(rx) -> v => v.unwrap(),
                    recv(never::<u32>()) -> _ => unreachable!(),
                }
            })
            .collect::<Vec<_>>()
    });
    block_on(async {
        for i in 0..N {
            tx.send_async(i).await.unwrap();
        }
    });
    assert_eq!(t.join().unwrap(), want);
    // 4 async senders and 4 async receivers on a multi-thread runtime.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let (tx, rx) = bounded::<u32>(0);
    let mut all = rt.block_on(async {
        let senders: Vec<_> = (0..4u32)
            .map(|p| {
                let tx = tx.clone();
                tokio::spawn(async move {
                    for i in 0..N / 4 {
                        tx.send_async(p * (N / 4) + i).await.unwrap();
                    }
                })
            })
            .collect();
        let receivers: Vec<_> = (0..4)
            .map(|_| {
                let rx = rx.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    while let Ok(v) = rx.recv_async().await {
                        got.push(v);
                    }
                    got
                })
            })
            .collect();
        drop(rx);
        for s in senders {
            s.await.unwrap();
        }
        drop(tx);
        let mut all = Vec::new();
        for r in receivers {
            all.extend(r.await.unwrap());
        }
        all
    });
    all.sort_unstable();
    assert_eq!(all, want, "every message exactly once");
}

/// A rendezvous send's message is listed for receivers while its future
/// waits: dropping the future takes it back (unsent) unless a receiver
/// took it first (sent), `into_message` says which, and a disconnect
/// hands it back in the error. A receive dropped at any point loses
/// nothing (it never holds a message between polls).
#[test]
fn a_cancelled_rendezvous_send_or_receive_loses_and_duplicates_nothing() {
    struct Counted(u32, Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.1.fetch_add(1, Ordering::Relaxed);
        }
    }
    let polls_to_list = shmlane::WaitStrategy::default().spin() as usize + 1;
    let drops = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = bounded::<Counted>(0);
    let mut cx = noop_cx();
    // Listed, then dropped: gone from the channel, dropped once.
    {
        let mut fut = pin!(tx.send_async(Counted(1, Arc::clone(&drops))));
        for _ in 0..polls_to_list {
            assert!(fut.as_mut().poll(&mut cx).is_pending());
        }
        let mut sel = shmlane::Select::new();
        sel.recv(&rx);
        assert!(sel.try_ready().is_ok(), "listed: a receiver would pair");
    }
    assert_eq!(drops.load(Ordering::Relaxed), 1, "dropped, unsent");
    assert!(rx.try_recv().is_err(), "nothing left listed");
    // Listed, then taken back.
    let mut fut = tx.send_async(Counted(2, Arc::clone(&drops)));
    for _ in 0..polls_to_list {
        assert!(Pin::new(&mut fut).poll(&mut cx).is_pending());
    }
    let back = fut.into_message().expect("unsent: comes back");
    assert_eq!(back.0, 2);
    assert!(rx.try_recv().is_err());
    drop(back);
    // Listed, taken by a receiver: sent, whether the future is polled
    // again (Ready) or turned back into its message (None).
    let mut fut = tx.send_async(Counted(3, Arc::clone(&drops)));
    for _ in 0..polls_to_list {
        assert!(Pin::new(&mut fut).poll(&mut cx).is_pending());
    }
    let got = rx.try_recv().unwrap();
    assert_eq!(got.0, 3);
    assert!(fut.into_message().is_none(), "taken: it was sent");
    let mut fut = tx.send_async(Counted(4, Arc::clone(&drops)));
    for _ in 0..polls_to_list {
        assert!(Pin::new(&mut fut).poll(&mut cx).is_pending());
    }
    let got2 = rx.try_recv().unwrap();
    assert!(matches!(
        Pin::new(&mut fut).poll(&mut cx),
        Poll::Ready(Ok(()))
    ));
    drop(fut);
    assert_eq!((got.0, got2.0), (3, 4));
    drop((got, got2));
    assert_eq!(
        drops.load(Ordering::Relaxed),
        4,
        "each message dropped once"
    );
    // A receive that waits, a sender that lists, the receive dropped
    // before it polls again: the message stays for the next receive.
    {
        let mut recv = pin!(rx.recv_async());
        for _ in 0..polls_to_list {
            assert!(recv.as_mut().poll(&mut cx).is_pending());
        }
        let mut send = tx.send_async(Counted(5, Arc::clone(&drops)));
        for _ in 0..polls_to_list {
            assert!(Pin::new(&mut send).poll(&mut cx).is_pending());
        }
        // The receive was woken, and is dropped unpolled.
        std::mem::forget(send); // stays listed (leaked future)
    }
    let got = block_on(rx.recv_async()).unwrap();
    assert_eq!(got.0, 5);
    drop(got);
    // Listed when the last receiver goes: the message comes back in the
    // error.
    let mut fut = tx.send_async(Counted(6, Arc::clone(&drops)));
    for _ in 0..polls_to_list {
        assert!(Pin::new(&mut fut).poll(&mut cx).is_pending());
    }
    drop(rx);
    match Pin::new(&mut fut).poll(&mut cx) {
        Poll::Ready(Err(SendError(m))) => assert_eq!(m.0, 6),
        other => panic!("want the message back, got {:?}", other.is_ready()),
    }
}

/// Whether thread `tid` of this process sleeps in the kernel (state `S`).
fn asleep(tid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap_or_default();
    stat.rsplit(") ").next().and_then(|s| s.chars().next()) == Some('S')
}

/// A clone of an SPSC ring's receiver, or of a kernel transport's, that
/// blocks in `recv` holds its end; an async receive on another clone must
/// not wait for it (that would block the executor's thread): its poll
/// returns `Pending` and it gets the next message once the clone let go.
#[test]
fn an_async_receive_never_waits_for_a_blocking_clone_of_its_end() {
    let dir = kit::TempDir::new("async-clone");
    let shm = kit::shm_address("async-clone");
    let unix = format!("unix:{}/c.sock", dir.path().display());
    for addr in [shm.as_str(), unix.as_str()] {
        let (rx, tx, _chan) = if addr.starts_with("shm:") {
            let chan = Builder::new(addr)
                .unwrap()
                .spsc()
                .capacity(4)
                .create::<u64>()
                .unwrap();
            (chan.receiver().unwrap(), chan.sender().unwrap(), Some(chan))
        } else {
            let rx = Builder::new(addr).unwrap().receiver::<u64>().unwrap();
            let tx = Builder::new(addr).unwrap().sender::<u64>().unwrap();
            (rx, tx, None)
        };
        std::thread::scope(|s| {
            let (tid_tx, tid_rx) = std::sync::mpsc::channel();
            let clone = rx.clone();
            let blocked = s.spawn(move || {
                // SAFETY: gettid has no preconditions.
                tid_tx.send(unsafe { libc::gettid() }).unwrap();
                clone.recv()
            });
            let tid = tid_rx.recv().unwrap();
            while !asleep(tid) {
                std::thread::yield_now();
            }
            // Polled on another thread, with a hang guard: before the fix
            // the poll waited for the clone's `recv`, for ever.
            let (done_tx, done_rx) = std::sync::mpsc::channel();
            let rx = &rx;
            let asyncer = s.spawn(move || {
                let mut fut = Box::pin(rx.recv_async());
                let first = fut.as_mut().poll(&mut noop_cx());
                done_tx.send(first.is_pending()).unwrap();
                match first {
                    Poll::Ready(got) => got,
                    Poll::Pending => block_on(fut),
                }
            });
            let Ok(first) = done_rx.recv_timeout(Duration::from_secs(60)) else {
                // Let both go (so that the scope can end), then fail.
                tx.send(1).unwrap();
                tx.send(2).unwrap();
                panic!("{addr}: an async poll waited for a blocking clone of its end");
            };
            assert!(first, "{addr}: nothing to receive yet");
            tx.send(1).unwrap();
            assert_eq!(blocked.join().unwrap(), Ok(1), "{addr}");
            tx.send(2).unwrap();
            assert_eq!(asyncer.join().unwrap(), Ok(2), "{addr}");
        });
        // Nothing is left.
        assert!(rx.try_recv().is_err(), "{addr}");
    }
}

/// A rendezvous receive that pairs with a thread's `select!` send arm
/// waits for the arm's message without blocking its executor: here the
/// message is computed from what another task on the same single-thread
/// executor sends (this hung when the receive waited in its poll).
#[test]
fn a_rendezvous_receive_paired_with_a_select_send_arm_does_not_block_its_executor() {
    let (tx, rx) = bounded::<u32>(0);
    let (u_tx, u_rx) = bounded::<u32>(1);
    let selector = std::thread::spawn(move || {
        shmlane::select! {
            send(tx, u_rx.recv().unwrap() + 1) -> r => r.unwrap(),
        }
    });
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let got = block_on(futures_lite::future::zip(rx.recv_async(), async {
            // Let the receive pair first, now and then.
            futures_lite::future::yield_now().await;
            u_tx.send_async(41).await.unwrap();
        }));
        done_tx.send(got.0).unwrap();
    });
    let got = done_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the receive blocked its executor");
    assert_eq!(got, Ok(42));
    selector.join().unwrap();
}

/// A rendezvous receive dropped while paired with a select's send arm
/// loses nothing: before the arm filled its packet, the select sends the
/// message on to the next receiver; after, the dropped receive hands it
/// back to the channel for the next receiver.
#[test]
fn a_rendezvous_receive_dropped_while_paired_loses_nothing() {
    for fill_first in [false, true] {
        let (tx, rx) = bounded::<u32>(0);
        let (evaluating_tx, evaluating_rx) = std::sync::mpsc::channel();
        let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
        let mut selector = Some(std::thread::spawn(move || {
            shmlane::select! {
                send(tx, {
                    // Chosen: the receive paired with this arm.
                    evaluating_tx.send(()).unwrap();
                    gate_rx.recv().unwrap();
                    7
                }) -> r => r,
            }
        }));
        {
            let mut fut = pin!(rx.recv_async());
            let mut cx = noop_cx();
            // Poll until the select is chosen (the receive has paired).
            loop {
                assert!(fut.as_mut().poll(&mut cx).is_pending());
                if evaluating_rx.try_recv().is_ok() {
                    break;
                }
                std::thread::yield_now();
            }
            if fill_first {
                gate_tx.send(()).unwrap();
                let done = selector.take().unwrap().join().unwrap();
                assert_eq!(done, Ok(()), "filled: the send completed");
            }
            // Dropped here, unpolled.
        }
        if !fill_first {
            gate_tx.send(()).unwrap();
        }
        assert_eq!(
            rx.recv(),
            Ok(7),
            "fill_first {fill_first}: the message reached the next receiver"
        );
        if let Some(selector) = selector {
            assert_eq!(selector.join().unwrap(), Ok(()));
        }
    }
}

/// A forked child starts its own helper threads (it inherits the
/// parent's bridge and poller, without their threads): its async waits on
/// a timer and on a kernel fallback complete. The kit's limit is the hang
/// guard.
#[test]
fn a_forked_child_awaits_through_helpers_of_its_own() {
    let mut kid = Kid::spawn("child", "forker", &[]);
    let (lines, status) = kid
        .finish(Duration::from_secs(120))
        .expect("the forker or its forked child hung");
    assert!(status.success(), "{lines:?}");
    assert!(
        lines.iter().any(|l| l == "forked child status 0"),
        "{lines:?}"
    );
}

/// The thread id of this process's poller thread (`shmlane-poll`).
fn poller_tid() -> i32 {
    loop {
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.trim() == "shmlane-poll" {
                return task.file_name().to_str().unwrap().parse().unwrap();
            }
        }
        std::thread::yield_now();
    }
}

/// An async receive on a kernel fallback hands copies of its descriptors
/// to the process's poller; once the future and the receiver are gone,
/// the poller must let go of them too: a `tcp:` address is free to bind
/// again (before, the poller slept in `poll` holding the listener, and
/// the port stayed bound for as long as nothing woke it). The loop is a
/// hang guard, not a timing: the poller is woken by the drop and closes
/// its copies at once.
#[test]
fn a_dropped_fallback_receive_lets_go_of_its_descriptors() {
    let rx = Builder::new("tcp:127.0.0.1:0")
        .unwrap()
        .receiver::<u64>()
        .unwrap();
    let addr = rx.local_address().unwrap().to_owned();
    {
        let mut fut = pin!(rx.recv_async());
        // Nothing to receive: it waits with the poller.
        assert!(fut.as_mut().poll(&mut noop_cx()).is_pending());
        // Let the poller take the registration in (it then sleeps in
        // `poll` on it), so that the drop finds it there.
        let poller = poller_tid();
        for _ in 0..3 {
            while !asleep(poller) {
                std::thread::yield_now();
            }
            std::thread::yield_now();
        }
    }
    drop(rx);
    let start = std::time::Instant::now();
    loop {
        match Builder::new(&addr).unwrap().receiver::<u64>() {
            Ok(_) => break,
            Err(e) => {
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "{addr} still bound: {e}"
                );
                std::thread::yield_now();
            }
        }
    }
}
