//! Cross-process channels between real processes: this test binary runs
//! copies of itself as producers and consumers (the `child` test below does
//! nothing unless the test kit gave it a role). Every segment name is
//! unique; creators unlink on drop and the kit kills children on failure.

use std::time::{Duration, Instant};

use shmlane::ipc::{AttachError, Builder};
use shmlane::{RecvTimeoutError, TryRecvError};
use shmlane_testkit::{self as kit, env, Kid};

const LONG: Duration = Duration::from_secs(60);

fn read_stdin_line() {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
}

/// The child side of every test.
#[test]
fn child() {
    let Some(role) = kit::role() else {
        return;
    };
    let addr = env("ADDR");
    let count: u64 = std::env::var("COUNT").map_or(0, |c| c.parse().unwrap());
    match role.as_str() {
        "spsc-producer" => {
            let chan = Builder::new(&addr).unwrap().open::<u64>().unwrap();
            let tx = chan.sender().unwrap();
            for i in 0..count {
                tx.send(i).unwrap();
            }
        }
        "big-producer" => {
            let chan = Builder::new(&addr).unwrap().open::<[u8; 4096]>().unwrap();
            let tx = chan.sender().unwrap();
            for i in 0..count {
                tx.send(big(i)).unwrap();
            }
        }
        "mpmc-producer" => {
            let id: u64 = env("ID").parse().unwrap();
            let chan = Builder::new(&addr).unwrap().open::<u64>().unwrap();
            let tx = chan.sender().unwrap();
            println!("ready");
            read_stdin_line();
            for i in 0..count {
                tx.send(id << 32 | i).unwrap();
            }
        }
        "mpmc-consumer" => {
            let chan = Builder::new(&addr).unwrap().open::<u64>().unwrap();
            let rx = chan.receiver().unwrap();
            println!("ready");
            let mut got = Vec::new();
            loop {
                match rx.recv_timeout(LONG) {
                    Ok(v) => got.push(v),
                    Err(RecvTimeoutError::Disconnected) => break,
                    Err(RecvTimeoutError::Timeout) => panic!("consumer stalled"),
                }
            }
            let bytes: Vec<u8> = got.iter().flat_map(|v| v.to_le_bytes()).collect();
            std::fs::write(env("OUT"), bytes).unwrap();
        }
        "probing-producer" => {
            // The second send waits on the full ring, before any receiver.
            let chan = Builder::new(&addr).unwrap().open::<u64>().unwrap();
            let tx = chan.sender().unwrap();
            tx.send(1).unwrap();
            match tx.send_timeout(2, LONG) {
                Ok(()) => println!("sent 2"),
                Err(e) => println!("error {e:?}"),
            }
        }
        "probing-consumer" => {
            let chan = Builder::new(&addr).unwrap().open::<u64>().unwrap();
            let rx = chan.receiver().unwrap();
            match rx.recv_timeout(LONG) {
                Ok(v) => println!("got {v}"),
                Err(e) => println!("error {e:?}"),
            }
        }
        "endless-producer" => {
            let chan = Builder::new(&addr).unwrap().open::<u64>().unwrap();
            // Sends until killed (the parent never lets it finish); the
            // same code for either ring kind.
            let tx = chan.sender().unwrap();
            for i in 0..u64::MAX {
                tx.send(i).unwrap();
            }
        }
        "short-consumer" => {
            let chan = Builder::new(&addr).unwrap().open::<u64>().unwrap();
            let rx = chan.receiver().unwrap();
            for _ in 0..count {
                rx.recv_timeout(LONG).unwrap();
            }
            println!("done");
            if env("EXIT") == "hang" {
                std::thread::sleep(LONG);
            }
        }
        "second-spsc-producer" => {
            let chan = Builder::new(&addr).unwrap().open::<u64>().unwrap();
            match chan.sender() {
                Err(AttachError::RoleTaken { role: "sender" }) => println!("refused"),
                other => println!("unexpected: {other:?}"),
            }
        }
        "batch-producer" => {
            let chan = Builder::new(&addr).unwrap().open::<[u32; 3]>().unwrap();
            let tx = chan.sender().unwrap();
            let msgs: Vec<[u32; 3]> = (0..count as u32).map(|i| [i, !i, i ^ 0x5555]).collect();
            for chunk in msgs.chunks(1000) {
                tx.send_batch(chunk).unwrap();
            }
        }
        "memfd-producer" => {
            let fd: i32 = env("FD").parse().unwrap();
            // SAFETY: the parent passed this inherited descriptor for us to use.
            let chan = unsafe { Builder::inherited(fd) }
                .open::<[u32; 4]>()
                .unwrap();
            let tx = chan.sender().unwrap();
            for i in 0..count as u32 {
                tx.send([i, i + 1, i + 2, !i]).unwrap();
            }
        }
        other => panic!("unknown child role {other}"),
    }
}

/// A 4 KiB message that says which it is in every byte.
fn big(i: u64) -> [u8; 4096] {
    std::array::from_fn(|k| (i as usize).wrapping_mul(31).wrapping_add(k) as u8)
}

/// Values large enough that a by-value receive copies them from the lent
/// slot (`Receiver::take_as`): every receive method, each error, and a
/// stream from another process, intact and in order.
#[test]
fn large_pod_values_by_value_every_receive() {
    large_pod_values(false);
}

/// As above, on MPMC rings (which lend every Pod value, any size).
#[test]
fn large_pod_values_by_value_every_receive_mpmc() {
    large_pod_values(true);
}

fn large_pod_values(mpmc: bool) {
    const N: u64 = 20_000;
    let make = |addr: &str| {
        let builder = Builder::new(addr).unwrap();
        let builder = if mpmc {
            builder.kind(shmlane::ipc::RingKind::Mpmc)
        } else {
            builder.spsc()
        };
        builder.capacity(8).create::<[u8; 4096]>().unwrap()
    };
    let local = make(&kit::shm_address("big-local"));
    let (tx, rx) = (local.sender().unwrap(), local.receiver().unwrap());
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(1)),
        Err(RecvTimeoutError::Timeout)
    );
    for i in 0..3 {
        tx.send(big(i)).unwrap();
    }
    assert_eq!(rx.try_recv(), Ok(big(0)));
    assert_eq!(rx.recv(), Ok(big(1)));
    drop(tx);
    assert_eq!(rx.recv_deadline(Instant::now() + LONG), Ok(big(2)));
    assert_eq!(rx.recv(), Err(shmlane::RecvError));

    let addr = kit::shm_address("big");
    let chan = make(&addr);
    let rx = chan.receiver().unwrap();
    let _kid = Kid::spawn(
        "child",
        "big-producer",
        &[("ADDR", addr.clone()), ("COUNT", N.to_string())],
    );
    for i in 0..N {
        let got = match i % 3 {
            0 => rx.recv_timeout(LONG).unwrap(),
            1 => rx.recv().unwrap(),
            _ => loop {
                match rx.try_recv() {
                    Ok(v) => break v,
                    Err(TryRecvError::Empty) => std::thread::yield_now(),
                    Err(e) => panic!("after {i}: {e:?}"),
                }
            },
        };
        assert!(got == big(i), "message {i} lost, torn or out of order");
    }
    assert_eq!(rx.recv_timeout(LONG), Err(RecvTimeoutError::Disconnected));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
}

/// A peer scribbles the stamp of the slot a large value waits in (one
/// lent and copied into the returned `Ok`, see `Receiver::take_as`): the
/// receive reports the channel broken (`Disconnected`, `is_corrupted`),
/// and returns no value, on SPSC and MPMC rings.
#[test]
fn a_scribbled_stamp_under_a_large_pod_value_is_corruption() {
    use std::sync::atomic::{AtomicU64, Ordering};
    // (ring kind, the slot header's size: the stamp, plus the owner word
    // on MPMC rings; the payload starts at the next multiple of the slot
    // alignment, 64 for values this large on SPSC rings; the value is past
    // a length word on MPMC rings)
    for (mpmc, header, meta) in [(false, 8, 0), (true, 16, 8)] {
        let builder = Builder::new(&kit::shm_address("big-scribble")).unwrap();
        let builder = if mpmc {
            builder.kind(shmlane::ipc::RingKind::Mpmc)
        } else {
            builder.spsc()
        };
        let chan = builder.capacity(8).create::<[u8; 4096]>().unwrap();
        let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
        tx.send(big(0)).unwrap();
        assert!(rx.recv().unwrap() == big(0));
        let mut payload = 0;
        tx.send_with(|v| {
            payload = std::ptr::from_mut(v).addr();
            *v = big(1);
        })
        .unwrap();
        let offset =
            (header as usize).next_multiple_of(chan.segment().layout().slot_align()) + meta;
        // SAFETY: the stamp word (the slot's first) of the slot just
        // published, inside the mapped segment that `chan` keeps, 8-aligned;
        // the ring reads it only atomically.
        let stamp = unsafe { &*((payload - offset) as *const AtomicU64) };
        stamp.store(1 << 50, Ordering::SeqCst);
        assert_eq!(
            rx.try_recv(),
            Err(TryRecvError::Disconnected),
            "mpmc: {mpmc}"
        );
        assert!(rx.is_corrupted(), "mpmc: {mpmc}");
        assert_eq!(rx.recv_timeout(LONG), Err(RecvTimeoutError::Disconnected));
    }
}

/// A peer scribbles the stamp of a batch's first slot to a smaller end,
/// still in range: a receiver polling with `try_recv`, which reads the
/// producer's index only now and then once it knows where batches start,
/// takes the batch's first two messages, then finds the third within 64
/// empty looks, not never.
#[test]
fn a_scribbled_batch_stamp_strands_no_message() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let chan = Builder::new(&kit::shm_address("stamp-short"))
        .unwrap()
        .spsc()
        .capacity(8)
        .create::<u64>()
        .unwrap();
    let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
    // Two single sends show where slots 0 and 1 lie.
    let mut at = [0usize; 2];
    for (i, a) in at.iter_mut().enumerate() {
        tx.send_with(|v| {
            *a = std::ptr::from_mut(v).addr();
            *v = i as u64;
        })
        .unwrap();
        assert_eq!(rx.recv(), Ok(i as u64));
    }
    let stride = at[1] - at[0];
    // A batch of three at positions 2, 3 and 4, stamped in slot 2 with its
    // end, 5; the stamp is the word in front of a `u64` payload.
    assert_eq!(tx.try_send_batch(&[10, 11, 12]), Ok(3));
    // SAFETY: slot 2's stamp word, inside the mapped segment `chan` keeps,
    // 8-aligned; the ring reads it only atomically.
    let stamp = unsafe { &*((at[1] + stride - 8) as *const AtomicU64) };
    assert_eq!(stamp.load(Ordering::SeqCst), 5);
    stamp.store(4, Ordering::SeqCst);
    let mut got = Vec::new();
    let mut empty = 0;
    while got.len() < 3 {
        match rx.try_recv() {
            Ok(v) => got.push(v),
            Err(TryRecvError::Empty) if empty < 1_000 => empty += 1,
            Err(e) => panic!("after {got:?} and {empty} empty looks: {e:?}"),
        }
    }
    assert_eq!(got, [10, 11, 12]);
    assert!(empty <= 64, "{empty} empty looks");
    assert!(!rx.is_corrupted());
}

#[test]
fn spsc_ten_million_in_order() {
    const N: u64 = 10_000_000;
    let addr = kit::shm_address("spsc");
    let chan = Builder::new(&addr)
        .unwrap()
        .spsc()
        .capacity(4096)
        .create::<u64>()
        .unwrap();
    let rx = chan.receiver().unwrap();
    let _kid = Kid::spawn(
        "child",
        "spsc-producer",
        &[("ADDR", addr.clone()), ("COUNT", N.to_string())],
    );
    let mut batch = Vec::with_capacity(4096);
    let mut expect = 0;
    while expect < N {
        batch.clear();
        match rx.try_recv_batch(&mut batch, 4096) {
            Ok(0) => match rx.recv_timeout(LONG) {
                Ok(v) => batch.push(v),
                Err(e) => panic!("after {expect}: {e:?}"),
            },
            Ok(_) => {}
            Err(e) => panic!("after {expect}: {e:?}"),
        }
        for &v in &batch {
            assert_eq!(v, expect, "out of order or lost");
            expect += 1;
        }
    }
    assert_eq!(rx.recv_timeout(LONG), Err(RecvTimeoutError::Disconnected));
}

#[test]
fn mpmc_two_producer_and_two_consumer_processes() {
    const PER: u64 = 200_000;
    let addr = kit::shm_address("mpmc");
    let chan = Builder::new(&addr)
        .unwrap()
        .capacity(1000)
        .create::<u64>()
        .unwrap();
    let dir = kit::TempDir::new("ipc");
    let outs: Vec<_> = (0..2)
        .map(|i| dir.path().join(format!("{i}.bin")))
        .collect();
    let mut kids = Vec::new();
    for id in 0..2 {
        let e = [
            ("ADDR", addr.clone()),
            ("COUNT", PER.to_string()),
            ("ID", id.to_string()),
        ];
        kids.push(Kid::spawn("child", "mpmc-producer", &e));
    }
    for out in &outs {
        let e = [("ADDR", addr.clone()), ("OUT", out.display().to_string())];
        kids.push(Kid::spawn("child", "mpmc-consumer", &e));
    }
    for k in &mut kids {
        assert!(k.wait_for("ready"), "child exited before `ready`");
    }
    kids[0].say("go");
    kids[1].say("go");
    for k in &mut kids {
        assert!(k.wait().success());
    }
    let mut seen = vec![vec![false; PER as usize]; 2];
    for out in &outs {
        let bytes = std::fs::read(out).unwrap();
        let mut last = [None::<u64>; 2];
        for chunk in bytes.chunks_exact(8) {
            let v = u64::from_le_bytes(chunk.try_into().unwrap());
            let (p, i) = ((v >> 32) as usize, v & 0xffff_ffff);
            assert!(
                last[p].is_none_or(|l| l < i),
                "producer {p} out of order in one consumer"
            );
            last[p] = Some(i);
            assert!(!seen[p][i as usize], "message {p}/{i} received twice");
            seen[p][i as usize] = true;
        }
    }
    assert!(seen.iter().flatten().all(|&s| s), "a message was lost");
    drop(chan);
}

fn killed_producer(kind: &str) {
    let addr = kit::shm_address("kill");
    let builder = Builder::new(&addr).unwrap().capacity(1024);
    let builder = if kind == "spsc" {
        builder.spsc()
    } else {
        builder
    };
    let chan = builder.create::<u64>().unwrap();
    let mut kid = Kid::spawn(
        "child",
        "endless-producer",
        &[("ADDR", addr.clone()), ("KIND", kind.to_string())],
    );
    let mut next = 0u64;
    let check = |next: &mut u64, v: u64| {
        assert_eq!(v, *next, "a message was lost, torn or duplicated");
        *next += 1;
    };
    let (killed_at, disconnected_at) = if kind == "spsc" {
        let rx = chan.receiver().unwrap();
        while next < 200_000 {
            check(&mut next, rx.recv_timeout(LONG).unwrap());
        }
        kid.kill();
        let killed_at = Instant::now();
        loop {
            match rx.recv_timeout(LONG) {
                Ok(v) => check(&mut next, v),
                Err(RecvTimeoutError::Disconnected) => break (killed_at, Instant::now()),
                Err(e) => panic!("{e:?}"),
            }
        }
    } else {
        let rx = chan.receiver().unwrap();
        while next < 200_000 {
            check(&mut next, rx.recv_timeout(LONG).unwrap());
        }
        kid.kill();
        let killed_at = Instant::now();
        loop {
            match rx.recv_timeout(LONG) {
                Ok(v) => check(&mut next, v),
                Err(RecvTimeoutError::Disconnected) => {
                    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
                    break (killed_at, Instant::now());
                }
                Err(e) => panic!("{e:?}"),
            }
        }
    };
    let took = disconnected_at - killed_at;
    eprintln!("{kind}: {next} messages, disconnected {took:?} after SIGKILL");
    // The goal is 100 ms (measured by the bench); this only catches a hang.
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn spsc_producer_killed_mid_stream() {
    killed_producer("spsc");
}

#[test]
fn mpmc_producer_killed_mid_stream() {
    killed_producer("mpmc");
}

#[test]
fn senders_see_a_receiver_that_left_or_died() {
    for exit in ["clean", "hang"] {
        let addr = kit::shm_address("rxgone");
        let chan = Builder::new(&addr)
            .unwrap()
            .capacity(8)
            .create::<u64>()
            .unwrap();
        let tx = chan.sender().unwrap();
        let mut kid = Kid::spawn(
            "child",
            "short-consumer",
            &[
                ("ADDR", addr.clone()),
                ("COUNT", "5".into()),
                ("EXIT", exit.into()),
            ],
        );
        for i in 0..5 {
            tx.send(i).unwrap();
        }
        assert!(kid.wait_for("done"), "child exited before `done`");
        if exit == "hang" {
            kid.kill();
        }
        kid.wait();
        // The ring fills, then the dead or departed receiver is noticed.
        let start = Instant::now();
        let mut sent = 0;
        let err = loop {
            match tx.send_timeout(sent, LONG) {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
        };
        assert!(err.is_disconnected(), "{exit}: {err:?}");
        assert!(sent <= 8, "{exit}: sent {sent} into a ring of 8");
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}

#[test]
fn spsc_refuses_a_second_producer_in_another_process() {
    let addr = kit::shm_address("excl");
    let chan = Builder::new(&addr).unwrap().spsc().create::<u64>().unwrap();
    let _tx = chan.sender().unwrap();
    let mut kid = Kid::spawn("child", "second-spsc-producer", &[("ADDR", addr.clone())]);
    assert!(kid.wait_for("refused"), "child exited before `refused`");
}

#[test]
fn memfd_between_parent_and_child() {
    let chan = Builder::memfd().capacity(64).create::<[u32; 4]>().unwrap();
    let rx = chan.receiver().unwrap();
    let fd = chan.inheritable_fd().unwrap();
    use std::os::fd::AsRawFd;
    let kid = Kid::spawn(
        "child",
        "memfd-producer",
        &[
            ("ADDR", "unused".into()),
            ("FD", fd.as_raw_fd().to_string()),
            ("COUNT", "10000".into()),
        ],
    );
    drop(fd);
    for i in 0..10_000u32 {
        assert_eq!(rx.recv_timeout(LONG), Ok([i, i + 1, i + 2, !i]));
    }
    assert_eq!(rx.recv_timeout(LONG), Err(RecvTimeoutError::Disconnected));
    drop(kid);
}

#[test]
fn wrong_type_and_wrong_handle_kind_are_clear_errors() {
    let addr = kit::shm_address("types");
    let chan = Builder::new(&addr).unwrap().create::<u64>().unwrap();
    let err = Builder::new(&addr).unwrap().open::<[u16; 4]>().unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("[u16; 4]") && msg.contains("u64"), "{msg}");
    // One handle type for both ring kinds: nothing to get wrong.
    assert!(chan.sender().is_ok());
    let err = Builder::new("shm:").unwrap_err();
    assert!(err.to_string().contains("bad name"), "{err}");
    let err = Builder::new(&format!("{addr}-missing"))
        .unwrap()
        .open::<u64>()
        .unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[test]
fn slot_size_can_be_larger_but_not_smaller() {
    let addr = kit::shm_address("slots");
    let chan = Builder::new(&addr)
        .unwrap()
        .slot_size(64)
        .create::<u32>()
        .unwrap();
    assert_eq!(chan.segment().layout().slot_size(), 64);
    let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
    let peer = Builder::new(&addr).unwrap().open::<u32>().unwrap();
    let ptx = peer.sender().unwrap();
    tx.send(1).unwrap();
    ptx.send(2).unwrap();
    assert_eq!((rx.recv(), rx.recv()), (Ok(1), Ok(2)));
    let err = Builder::new(&kit::shm_address("small"))
        .unwrap()
        .slot_size(4)
        .create::<u64>()
        .unwrap_err();
    assert!(
        matches!(
            err,
            shmlane::ipc::CreateError::SlotTooSmall {
                asked: 4,
                needed: 16
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("at least 16"));
}

#[test]
fn creator_unlinks_unless_asked_to_keep() {
    let mut cleanup = kit::Cleanup::new();
    let name = cleanup.unique_shm("keep");
    let addr = format!("shm:{name}");
    let path = std::path::Path::new("/dev/shm").join(&name);
    drop(Builder::new(&addr).unwrap().create::<u64>().unwrap());
    assert!(!path.exists());
    drop(
        Builder::new(&addr)
            .unwrap()
            .keep(true)
            .create::<u64>()
            .unwrap(),
    );
    assert!(path.exists());
    // Reopened later (a restart), it still works; then clean up.
    let chan = Builder::new(&addr).unwrap().open::<u64>().unwrap();
    let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
    tx.send(7).unwrap();
    assert_eq!(rx.recv(), Ok(7));
    std::fs::remove_file(path).unwrap();
}

#[test]
fn spsc_batches_between_processes_keep_every_value() {
    // Odd-sized messages (12 bytes, align 4) through batches of 1000 into a
    // ring of 300: batches wrap, split and wait; every value must survive.
    const N: u32 = 300_000;
    let addr = kit::shm_address("batch");
    let chan = Builder::new(&addr)
        .unwrap()
        .spsc()
        .capacity(300)
        .create::<[u32; 3]>()
        .unwrap();
    let rx = chan.receiver().unwrap();
    let _kid = Kid::spawn(
        "child",
        "batch-producer",
        &[("ADDR", addr.clone()), ("COUNT", N.to_string())],
    );
    let mut buf = Vec::new();
    let mut next = 0u32;
    while next < N {
        buf.clear();
        match rx.try_recv_batch(&mut buf, 77) {
            Ok(0) => buf.push(rx.recv_timeout(LONG).unwrap()),
            Ok(_) => {}
            Err(e) => panic!("{e:?}"),
        }
        for m in &buf {
            assert_eq!(*m, [next, !next, next ^ 0x5555]);
            next += 1;
        }
    }
    assert_eq!(rx.recv_timeout(LONG), Err(RecvTimeoutError::Disconnected));
}

/// Pod messages of 256 bytes and more start on a 64-byte line of their
/// own in the SPSC slots a creator makes (aligned copies, no line shared by
/// two slots); MPMC slots, which put a length word in front of the value,
/// keep the value's alignment. Segments made with the old shape (the
/// payload right after the stamp) open and carry messages alike.
#[test]
fn large_pod_slots_start_on_a_line_and_either_shape_opens() {
    use shmlane::ipc::RingKind;
    use shmlane_shm::{CreateOptions, Segment, Spec};
    for kind in [RingKind::Spsc, RingKind::Mpmc] {
        let mut cleanup = kit::Cleanup::new();
        let addr = kit::shm_address("aligned");
        let big = Builder::new(&addr)
            .unwrap()
            .kind(kind)
            .capacity(4)
            .create::<[u8; 1024]>()
            .unwrap();
        let layout = *big.segment().layout();
        if kind == RingKind::Spsc {
            assert_eq!(layout.slot_align(), 64);
            assert_eq!(layout.stride() % 64, 0);
            let tx = big.sender().unwrap();
            let mut at = 0;
            tx.send_with(|v| at = std::ptr::from_mut(v).addr()).unwrap();
            assert_eq!(at % 64, 0, "the value starts on a line");
            drop(tx);
            big.receiver().unwrap().recv().unwrap();
        } else {
            assert!(layout.slot_align() < 64, "{kind:?}");
        }
        // Smaller ones keep their own alignment.
        let small = Builder::new(&kit::shm_address("unaligned"))
            .unwrap()
            .kind(kind)
            .capacity(4)
            .create::<[u8; 128]>()
            .unwrap();
        assert!(small.segment().layout().slot_align() < 64, "{kind:?}");
        // The old shape, as an earlier creator made it: the payload right
        // after the stamp (SPSC), or after an 8-byte length word (MPMC).
        let (slot_size, slot_align) = match kind {
            RingKind::Spsc => (1024, 1),
            _ => (1032, 8),
        };
        let old = kit::shm_address("oldshape");
        let parsed = shmlane_shm::Address::parse(&old).unwrap();
        cleanup.shm(old.trim_start_matches("shm:"));
        let spec = Spec {
            kind,
            capacity: 4,
            slot_size,
            slot_align,
            ty: big.segment().type_info(),
        };
        let _seg = Segment::create(&parsed, &spec, &CreateOptions::default()).unwrap();
        for addr in [addr.as_str(), old.as_str()] {
            let chan = Builder::new(addr).unwrap().open::<[u8; 1024]>().unwrap();
            let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
            for i in 0..100u32 {
                let mut m = [0u8; 1024];
                m.iter_mut()
                    .enumerate()
                    .for_each(|(j, b)| *b = (i as usize * 7 + j) as u8);
                tx.send(m).unwrap();
                assert_eq!(rx.recv().unwrap(), m, "{kind:?} {addr} {i}");
            }
        }
    }
}

/// A receiver waiting before any sender ever attached looks, now and then,
/// whether senders came and went. A sender that attaches while that look
/// scans the table must not read as one that left: the receiver here is
/// paused (a test-only pause point) right after its scan found no sender,
/// a sender attaches, and the receiver goes on. It must wait for the
/// sender's message, not end with `Disconnected` (it did, on both ring
/// kinds: the cause of a crash test's rare "consumer was not killed").
/// The same for a sender waiting on a full ring for its first receiver.
#[test]
fn a_peer_attaching_during_a_look_is_not_taken_for_gone() {
    use shmlane::ipc::RingKind;
    if !shmlane_shm::fault::ENABLED {
        return;
    }
    // (ring kind, whether the waiting side is the sender: one sent, the
    // second waits on a full ring of one slot for a receiver to come)
    for (kind, sender_waits) in [
        (RingKind::Spsc, false),
        (RingKind::Mpmc, false),
        (RingKind::Spsc, true),
        (RingKind::Mpmc, true),
    ] {
        let addr = kit::shm_address("probe");
        let dir = kit::TempDir::new("probe");
        let base = dir.path().join("pause");
        let chan = Builder::new(&addr)
            .unwrap()
            .kind(kind)
            .capacity(1)
            .create::<u64>()
            .unwrap();
        let mut kid = Kid::spawn(
            "child",
            if sender_waits {
                "probing-producer"
            } else {
                "probing-consumer"
            },
            &[
                ("ADDR", addr.clone()),
                (
                    "SHMLANE_PAUSE",
                    format!(
                        "probe.scanned:{0}-scanned,probe.attached:{0}-attached",
                        base.display()
                    ),
                ),
            ],
        );
        // Waits until the receiver reached `point` (or exited); the limit
        // is a hang guard, not a timing assumption.
        let reached = |kid: &mut Kid, point: &str| {
            let path = std::path::PathBuf::from(format!("{}-{point}.reached", base.display()));
            let start = Instant::now();
            while !path.exists() && kid.is_running() {
                assert!(start.elapsed() < LONG, "{kind:?}: no {point}");
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        let go = |point: &str| {
            std::fs::write(format!("{}-{point}.go", base.display()), b"").unwrap();
        };
        if sender_waits {
            // Paused right after a look that found no receiver: one
            // attaches, and takes both messages once the sender went on.
            reached(&mut kid, "scanned");
            let rx = chan.receiver().unwrap();
            go("scanned");
            reached(&mut kid, "attached");
            go("attached");
            let got = [rx.recv_timeout(LONG), rx.recv_timeout(LONG)];
            let (lines, status) = kid.finish(LONG).expect("the sender hung");
            assert!(
                lines.iter().any(|l| l == "sent 2"),
                "{kind:?}: the sender said {lines:?} (received: {got:?})"
            );
            assert_eq!(got, [Ok(1), Ok(2)], "{kind:?}");
            assert!(status.success(), "{kind:?}");
            continue;
        }
        // Paused right after a look that found no sender: one attaches.
        reached(&mut kid, "scanned");
        let tx = chan.sender().unwrap();
        go("scanned");
        // A receiver that took it for gone has ended by now; one that did
        // not looks again later, with the sender attached, and then gets
        // the message.
        reached(&mut kid, "attached");
        go("attached");
        // (Fails once the receiver is gone: then the lines below say why.)
        let sent = tx.send(7);
        let (lines, status) = kid.finish(LONG).expect("the receiver hung");
        assert!(
            lines.iter().any(|l| l == "got 7"),
            "{kind:?}: the receiver said {lines:?} (send: {sent:?})"
        );
        assert!(status.success(), "{kind:?}");
    }
}

#[test]
fn a_forged_fingerprint_with_the_wrong_slot_shape_is_refused() {
    use shmlane_shm::{CreateOptions, Segment, Spec, TypeInfo};
    // A creator that writes u64's fingerprint but 1-byte slots: opening as
    // u64 must fail instead of reading and writing past each slot.
    let addr = kit::shm_address("forged");
    let spec = Spec {
        kind: shmlane::ipc::RingKind::Mpmc,
        capacity: 8,
        slot_size: 1,
        slot_align: 1,
        ty: TypeInfo {
            name: "u64".into(),
            schema: "u64".into(),
            size: 8,
            align: 8,
            codec: 1,
        },
    };
    let parsed = shmlane_shm::Address::parse(&addr).unwrap();
    let _seg = Segment::create(&parsed, &spec, &CreateOptions::default()).unwrap();
    let err = Builder::new(&addr).unwrap().open::<u64>().unwrap_err();
    assert!(
        matches!(
            err,
            shmlane::ipc::OpenError::LayoutMismatch {
                field: "slot size",
                ..
            }
        ),
        "{err}"
    );
}

/// `open_or_create` from two threads started together, many times: exactly
/// one creates, the other opens the same segment, whatever the order; and
/// `Builder::sender`/`receiver` work with either side first.
#[test]
fn open_or_create_races_settle_on_one_segment_in_either_order() {
    for round in 0..50 {
        let addr = kit::shm_address("race");
        let mut cleanup = kit::Cleanup::new();
        cleanup.shm(addr.trim_start_matches("shm:"));
        let start = std::sync::Arc::new(std::sync::Barrier::new(2));
        let side = |start: std::sync::Arc<std::sync::Barrier>, addr: String| {
            std::thread::spawn(move || {
                start.wait();
                Builder::new(&addr)
                    .unwrap()
                    .capacity(4)
                    .open_or_create::<u64>()
                    .unwrap()
            })
        };
        let a = side(std::sync::Arc::clone(&start), addr.clone());
        let b = side(start, addr.clone());
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        let (tx, rx) = (a.sender().unwrap(), b.receiver().unwrap());
        tx.send(round).unwrap();
        assert_eq!(rx.recv().unwrap(), round, "both ends on one segment");
    }
    // One end at a time, in either order, through `sender`/`receiver`.
    for sender_first in [true, false] {
        let addr = kit::shm_address("order");
        let mut cleanup = kit::Cleanup::new();
        cleanup.shm(addr.trim_start_matches("shm:"));
        let b = Builder::new(&addr).unwrap().capacity(4);
        let (tx, rx) = if sender_first {
            let tx = b.sender::<u64>().unwrap();
            (tx, b.receiver::<u64>().unwrap())
        } else {
            let rx = b.receiver::<u64>().unwrap();
            (b.sender::<u64>().unwrap(), rx)
        };
        tx.send(7).unwrap();
        assert_eq!(rx.recv().unwrap(), 7);
    }
}

/// A producer that found a ring full waits, while spinning, for a
/// stretch of free slots (a throughput hint, on MPMC and SPSC rings); a
/// send whose deadline has passed must still take a free slot rather than
/// report a timeout. (On an SPSC ring a send's first try ignores the
/// hint and takes the slot, so this checks that; the hinted waits are
/// exercised by `blocked_sends_take_single_freed_slots`.)
#[test]
fn a_due_send_takes_a_free_slot_after_the_ring_was_full() {
    due_send_after_full(shmlane::ipc::RingKind::Mpmc);
    due_send_after_full(shmlane::ipc::RingKind::Spsc);
}

fn due_send_after_full(kind: shmlane::ipc::RingKind) {
    let mut cleanup = kit::Cleanup::new();
    let name = cleanup.unique_shm("refill");
    let chan = Builder::new(&format!("shm:{name}"))
        .unwrap()
        .kind(kind)
        .capacity(256)
        .create::<u64>()
        .unwrap();
    let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
    let mut sent = 0u64;
    while tx.try_send(sent).is_ok() {
        sent += 1;
    }
    assert_eq!(sent, 256);
    // One slot free: fewer than the stretch the hint waits for.
    assert_eq!(rx.try_recv(), Ok(0));
    tx.send_timeout(sent, Duration::ZERO).unwrap();
    assert!(tx.try_send(sent + 1).is_err(), "full again");
    for want in 1..=sent {
        assert_eq!(rx.try_recv(), Ok(want));
    }
}

/// The same for a kind that goes through the encoding send path (raw
/// bytes here), and a blocking `send` into a ring that has one slot free
/// while its receiver takes nothing more: the spinning looks wait for a
/// stretch, the later ones take the slot, so the send returns.
#[test]
fn an_encoded_send_takes_a_free_slot_after_the_ring_was_full() {
    use shmlane::ipc::RingKind;
    for kind in [RingKind::Spsc, RingKind::Mpmc] {
        encoded_send_after_full(kind);
        blocked_sends_take_single_freed_slots(kind);
    }
}

/// Senders blocked on a full ring, each let go by one receive and nothing
/// more: whether a send was already waiting when the slot was freed or
/// not, it must take it (a spinning sender waits for a stretch of free
/// slots only until its spin ends).
fn blocked_sends_take_single_freed_slots(kind: shmlane::ipc::RingKind) {
    let mut cleanup = kit::Cleanup::new();
    let name = cleanup.unique_shm("refill-blocked");
    let chan = Builder::new(&format!("shm:{name}"))
        .unwrap()
        .kind(kind)
        .capacity(64)
        .create::<u64>()
        .unwrap();
    let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
    for i in 0..64 {
        tx.try_send(i).unwrap();
    }
    let (done, sent) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 64..74 {
                // A deadline far off, so that a sender that never takes
                // the slot fails the test instead of hanging it.
                tx.send_timeout(i, LONG).unwrap();
                done.send(i).unwrap();
            }
        });
        for want in 0..10 {
            assert_eq!(rx.recv_timeout(LONG), Ok(want), "{kind:?}");
            assert_eq!(sent.recv_timeout(LONG), Ok(want + 64), "{kind:?}");
        }
    });
    for want in 10..74 {
        assert_eq!(rx.try_recv(), Ok(want), "{kind:?}");
    }
}

fn encoded_send_after_full(kind: shmlane::ipc::RingKind) {
    use shmlane::ipc::Bytes;
    let mut cleanup = kit::Cleanup::new();
    let name = cleanup.unique_shm("refill-bytes");
    let chan = Builder::new(&format!("shm:{name}"))
        .unwrap()
        .kind(kind)
        .capacity(256)
        .message_size(16)
        .create::<Bytes>()
        .unwrap();
    let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
    let mut sent = 0u64;
    while tx.try_send(&sent.to_le_bytes()).is_ok() {
        sent += 1;
    }
    assert_eq!(sent, 256, "{kind:?}");
    assert_eq!(rx.try_recv().unwrap(), 0u64.to_le_bytes());
    tx.send_timeout(&sent.to_le_bytes(), Duration::ZERO)
        .unwrap();
    assert!(tx.try_send(&[1]).is_err(), "full again");
    assert_eq!(rx.try_recv().unwrap(), 1u64.to_le_bytes());
    tx.send(&(sent + 1).to_le_bytes()).unwrap();
    for want in 2..=sent + 1 {
        assert_eq!(rx.try_recv().unwrap(), want.to_le_bytes(), "{kind:?}");
    }
}
