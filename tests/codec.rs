//! rkyv, Pod and raw-bytes messages through cross-process channels: every
//! message kind on both ring kinds, every trust level, messages too large,
//! garbage written by a peer, type mismatches, and a real second process.

use std::time::Duration;

use shmlane::ipc::{
    Builder, Bytes, Channel, EncodeError, InvalidMessage, Message, OpenError, RecvMsgError,
    RingKind, Rkyv, SendMsgError, Trust,
};
use shmlane_codec::archive::{archived_len, fixed_archived_len};
use shmlane_codec::sample::{Order, Status, Telemetry, Tick};
use shmlane_ring::mpmc;
use shmlane_testkit::{self as kit, Kid};

fn trusts() -> [Trust; 3] {
    // SAFETY: every writer in these tests is shmlane's own encoder, for
    // the channel's own type (the garbage tests use validating trust only).
    [Trust::validate(), Trust::hostile(), unsafe {
        Trust::unchecked()
    }]
}

fn create<M: Message>(kind: RingKind, trust: Trust, size: usize) -> Channel<M> {
    Builder::new(&kit::shm_address("c"))
        .unwrap()
        .kind(kind)
        .capacity(8)
        .message_size(size)
        .trust(trust)
        .create::<M>()
        .unwrap()
}

fn telemetry(i: u32) -> Telemetry {
    Telemetry {
        sensor: i as u16,
        readings: (0..i % 7).map(|r| r as f32 * 0.5).collect(),
        status: match i % 3 {
            0 => Status::Ok,
            1 => Status::Degraded(i),
            _ => Status::Failed {
                reason: format!("fault {i}"),
            },
        },
        note: (i % 2 == 0).then(|| "checked".to_owned()),
    }
}

#[test]
fn rkyv_messages_round_trip_on_both_rings_under_every_trust() {
    for trust in trusts() {
        // MPMC
        let chan = create::<Rkyv<Telemetry>>(RingKind::Mpmc, trust, 256);
        let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
        for i in 0..100 {
            tx.send(&telemetry(i)).unwrap();
            if i % 2 == 0 {
                assert_eq!(rx.recv().unwrap(), telemetry(i), "{trust}");
            } else {
                let got = rx.recv_ref().unwrap();
                assert_eq!(got.sensor, i as u16);
                assert_eq!(got.readings.len(), (i % 7) as usize);
                assert_eq!(got.note.is_some(), i % 2 == 0);
            }
        }
        assert!(matches!(rx.try_recv(), Err(RecvMsgError::Empty)));
        // SPSC
        let chan = create::<Rkyv<Order>>(RingKind::Spsc, trust, 128);
        let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
        for round in 0..20u64 {
            for i in 0..8 {
                tx.try_send(&Order::sample(round * 8 + i)).unwrap();
            }
            assert!(matches!(
                tx.try_send(&Order::sample(0)),
                Err(SendMsgError::Full)
            ));
            for i in 0..8 {
                let id = round * 8 + i;
                if i % 2 == 0 {
                    let got = rx.recv_ref().unwrap();
                    assert_eq!(got.id, id);
                    assert_eq!(got.symbol, Order::sample(id).symbol.as_str());
                } else {
                    assert_eq!(rx.recv().unwrap(), Order::sample(id));
                }
            }
        }
        assert!(matches!(
            rx.recv_timeout(Duration::from_millis(10)),
            Err(RecvMsgError::Timeout)
        ));
    }
}

#[test]
fn a_held_message_keeps_its_slot() {
    let chan = create::<Rkyv<Order>>(RingKind::Spsc, Trust::validate(), 128);
    let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
    for i in 0..8 {
        tx.send(&Order::sample(i)).unwrap();
    }
    {
        let first = rx.recv_ref().unwrap();
        assert!(matches!(
            tx.try_send(&Order::sample(8)),
            Err(SendMsgError::Full)
        ));
        assert_eq!(first.id, 0);
    }
    // Dropping the guard freed the slot.
    tx.try_send(&Order::sample(8)).unwrap();
}

#[test]
fn too_large_messages_are_refused_and_the_channel_goes_on() {
    for kind in [RingKind::Spsc, RingKind::Mpmc] {
        let chan = create::<Rkyv<Order>>(kind, Trust::validate(), 64);
        let mut big = Order::sample(1);
        big.venue = "X".repeat(200);
        let needed = archived_len(&big);
        let room = chan.max_message_len();
        assert!(room >= 64 && needed > room, "{room} {needed}");
        let small = Order::sample(2);
        let check = |e: SendMsgError| match e {
            SendMsgError::Encode(EncodeError::TooLarge { len, max }) => {
                assert_eq!((len, max), (needed, room));
                let text = SendMsgError::Encode(EncodeError::TooLarge { len, max }).to_string();
                assert!(text.contains("does not fit"), "{text}");
            }
            other => panic!("{other:?}"),
        };
        match kind {
            RingKind::Spsc => {
                let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
                check(tx.send(&big).unwrap_err());
                check(tx.try_send(&big).unwrap_err());
                tx.send(&small).unwrap();
                assert_eq!(rx.recv().unwrap(), small);
                assert!(matches!(rx.try_recv(), Err(RecvMsgError::Empty)));
            }
            _ => {
                let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
                check(tx.send(&big).unwrap_err());
                check(tx.try_send(&big).unwrap_err());
                tx.send(&small).unwrap();
                // The holes the refused sends left are skipped.
                assert_eq!(rx.recv().unwrap(), small);
                assert!(matches!(rx.try_recv(), Err(RecvMsgError::Empty)));
                // And they did not leak capacity.
                for i in 0..8 {
                    tx.try_send(&Order::sample(i)).unwrap();
                }
            }
        }
    }
}

/// Writes raw slot payloads into an MPMC channel's ring, as a buggy or
/// hostile peer could.
fn inject(chan: &Channel<impl Message>, payload: &[u8]) {
    let (base, len) = chan.segment().ring_region();
    // SAFETY: the region is the segment's validated ring, alive while
    // `chan` is; the MPMC ring allows any number of producers.
    let ring = unsafe { mpmc::Ring::attach(base, len, chan.segment().layout()) }
        .unwrap()
        // Channels' handles are owned; so is this one (as a stranger).
        .with_owner(mpmc::MAX_WHO);
    let slot = ring.try_reserve().unwrap();
    let size = chan.segment().layout().slot_size();
    assert!(payload.len() <= size);
    // SAFETY: a reserved slot of `size` bytes.
    unsafe { std::ptr::copy_nonoverlapping(payload.as_ptr(), slot.as_mut_ptr(), payload.len()) };
}

/// `order` as `Sender::send` would encode it.
fn encode(order: &Order) -> Vec<u8> {
    use shmlane_codec::archive::{Message as _, Scratch};
    let mut buf = rkyv::util::AlignedVec::<16>::new();
    buf.resize(256, 0);
    let len = order.encode_into(&mut buf, &mut Scratch::new()).unwrap();
    buf[..len].to_vec()
}

fn framed(len: u64, body: &[u8]) -> Vec<u8> {
    let mut v = len.to_le_bytes().to_vec();
    v.resize(16, 0);
    v.extend_from_slice(body);
    v
}

#[test]
fn garbage_from_a_peer_is_a_typed_error_and_the_channel_goes_on() {
    for trust in [Trust::validate(), Trust::hostile()] {
        let chan = create::<Rkyv<Order>>(RingKind::Mpmc, trust, 128);
        let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
        // A real archive with out-of-line strings, minus its first 16
        // bytes: the strings now point before the message.
        let mut long = Order::sample(1);
        long.symbol = "A-LONG-SYMBOL-NAME".into();
        let whole = encode(&long);
        inject(&chan, &framed(whole.len() as u64 - 16, &whole[16..]));
        // The same archive whole, but its symbol is not UTF-8.
        let mut bad = whole.clone();
        let at = bad
            .windows(long.symbol.len())
            .position(|w| w == long.symbol.as_bytes())
            .unwrap();
        bad[at] = 0xff;
        inject(&chan, &framed(bad.len() as u64, &bad));
        // A length word larger than the slot.
        inject(&chan, &framed(10_000, &[]));
        // A length word with unknown flag bits.
        inject(&chan, &framed(1 << 40, &[]));
        // An empty message.
        inject(&chan, &framed(0, &[]));
        tx.send(&Order::sample(5)).unwrap();
        match rx.recv_ref() {
            Err(RecvMsgError::Invalid(InvalidMessage::Check(_))) => {}
            other => panic!("{trust}: {other:?}"),
        }
        match rx.recv() {
            Err(RecvMsgError::Invalid(InvalidMessage::Check(e))) => {
                assert!(e.to_string().contains("UTF-8"), "{e}")
            }
            other => panic!("{trust}: {other:?}"),
        }
        match rx.try_recv() {
            Err(RecvMsgError::Invalid(InvalidMessage::Length { len: 10_000, max })) => {
                assert_eq!(max, chan.max_message_len())
            }
            other => panic!("{trust}: {other:?}"),
        }
        assert!(matches!(rx.recv(), Err(RecvMsgError::Invalid(_))));
        let e = rx.recv().unwrap_err();
        assert!(e.to_string().starts_with("invalid message"), "{e}");
        assert_eq!(rx.recv().unwrap(), Order::sample(5));
        assert!(!rx.is_corrupted());
    }
}

#[test]
fn bytes_messages_send_loan_and_borrow() {
    for kind in [RingKind::Spsc, RingKind::Mpmc] {
        for trust in [Trust::validate(), Trust::hostile()] {
            let chan = create::<Bytes>(kind, trust, 100);
            // Rounded up to fill whole cache lines.
            let max = chan.max_message_len();
            assert!((100..164).contains(&max), "{max}");
            let check = |got: &[u8], want: &[u8]| assert_eq!(got, want);
            if kind == RingKind::Spsc {
                let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
                tx.send(b"").unwrap();
                tx.send(&vec![7; max]).unwrap();
                match tx.send(&vec![7; max + 1]) {
                    Err(SendMsgError::Encode(EncodeError::TooLarge { len, max: m })) => {
                        assert_eq!((len, m), (max + 1, max))
                    }
                    other => panic!("{other:?}"),
                }
                tx.send_with(|buf| {
                    buf[..5].copy_from_slice(b"hello");
                    5
                })
                .unwrap();
                assert!(matches!(
                    tx.send_with(|buf| buf.len() + 1),
                    Err(SendMsgError::Encode(_))
                ));
                check(&rx.recv_ref().unwrap(), b"");
                check(&rx.recv().unwrap(), &vec![7; max]);
                check(&rx.recv_ref().unwrap(), b"hello");
                assert!(matches!(rx.try_recv_ref(), Err(RecvMsgError::Empty)));
            } else {
                let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
                tx.send(b"").unwrap();
                tx.send(&vec![7; max]).unwrap();
                assert!(matches!(
                    tx.send(&vec![7; max + 1]),
                    Err(SendMsgError::Encode(_))
                ));
                tx.try_send_with(|buf| {
                    buf[..5].copy_from_slice(b"hello");
                    5
                })
                .unwrap();
                assert!(matches!(
                    tx.send_with(|buf| buf.len() + 1),
                    Err(SendMsgError::Encode(_))
                ));
                check(&rx.recv_ref().unwrap(), b"");
                check(&rx.recv().unwrap(), &vec![7; max]);
                check(&rx.recv_ref().unwrap(), b"hello");
                assert!(matches!(rx.try_recv_ref(), Err(RecvMsgError::Empty)));
            }
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
struct Quote {
    seq: u64,
    bid: f64,
    ask: f64,
}

#[test]
fn pod_messages_are_written_and_read_in_place() {
    let chan = create::<Quote>(RingKind::Spsc, Trust::validate(), 0);
    let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
    for i in 0..50u64 {
        tx.send_with(|q| {
            q.seq = i;
            q.bid = i as f64;
            q.ask = i as f64 + 0.5;
        })
        .unwrap();
        let q = rx.recv_ref().unwrap();
        assert_eq!(
            *q,
            Quote {
                seq: i,
                bid: i as f64,
                ask: i as f64 + 0.5
            }
        );
    }
    let chan = create::<Quote>(RingKind::Mpmc, Trust::validate(), 0);
    let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
    tx.try_send_with(|q| q.seq = 9).unwrap();
    assert_eq!(rx.recv_ref().unwrap().seq, 9);
}

#[test]
fn opening_with_another_type_names_both() {
    let name = kit::shm_address("types");
    let _chan = Builder::new(&name)
        .unwrap()
        .create::<Rkyv<Order>>()
        .unwrap();
    let expect = |e: OpenError, asked: &str| match e {
        OpenError::TypeMismatch {
            expected, found, ..
        } => {
            assert!(expected.contains(asked), "{expected}");
            assert!(
                found.contains("Rkyv<") && found.contains("Order"),
                "{found}"
            );
        }
        other => panic!("{other:?}"),
    };
    let open = || Builder::new(&name).unwrap();
    expect(open().open::<Rkyv<Telemetry>>().unwrap_err(), "Telemetry");
    expect(open().open::<Bytes>().unwrap_err(), "Bytes");
    expect(open().open::<u64>().unwrap_err(), "u64");
    let text = open().open::<Rkyv<Tick>>().unwrap_err().to_string();
    assert!(text.contains("Tick") && text.contains("Order"), "{text}");
    open().open::<Rkyv<Order>>().unwrap();
}

#[test]
fn fixed_size_archives_size_their_slots() {
    let len = fixed_archived_len::<Tick>();
    assert_eq!(
        len,
        archived_len(&Tick {
            seq: 1,
            quote: [1.0, 2.0]
        })
    );
    let chan = Builder::new(&kit::shm_address("tick"))
        .unwrap()
        .message_size(len)
        .create::<Rkyv<Tick>>()
        .unwrap();
    assert!(chan.max_message_len() >= len);
    let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
    tx.send(&Tick {
        seq: 3,
        quote: [1.5, 1.75],
    })
    .unwrap();
    assert_eq!(rx.recv_ref().unwrap().seq, 3);
}

/// A real second process sends rkyv orders; this one reads them in place.
#[test]
fn rkyv_orders_cross_processes() {
    let n: u64 = 200_000;
    for kind in ["spsc", "mpmc"] {
        let name = kit::shm_address("xproc");
        let chan = Builder::new(&name)
            .unwrap()
            .kind(if kind == "spsc" {
                RingKind::Spsc
            } else {
                RingKind::Mpmc
            })
            .capacity(256)
            .message_size(128)
            .create::<Rkyv<Order>>()
            .unwrap();
        let mut kid = Kid::spawn(
            "child",
            "sender",
            &[("ADDR", name.clone()), ("COUNT", n.to_string())],
        );
        let check = |got: &shmlane_codec::sample::ArchivedOrder, i: u64| {
            let want = Order::sample(i);
            assert_eq!(got.id, i);
            assert_eq!(got.qty, want.qty);
            assert_eq!(got.price, want.price);
            assert_eq!(got.symbol, want.symbol.as_str());
            assert_eq!(got.venue, want.venue.as_str());
        };
        let timeout = Duration::from_secs(30);
        let rx = chan.receiver().unwrap();
        for i in 0..n {
            check(&rx.recv_ref_timeout(timeout).unwrap(), i);
        }
        assert!(rx.recv_timeout(timeout).unwrap_err().is_disconnected());
        assert!(kid.wait().success());
    }
}

#[test]
fn child() {
    if kit::role().is_none() {
        return;
    }
    let n: u64 = kit::env("COUNT").parse().unwrap();
    let chan = Builder::new(&kit::env("ADDR"))
        .unwrap()
        .open::<Rkyv<Order>>()
        .unwrap();
    let tx = chan.sender().unwrap();
    for i in 0..n {
        tx.send(&Order::sample(i)).unwrap();
    }
}

#[test]
fn a_send_that_panics_leaves_a_hole_not_a_stale_message() {
    let chan = create::<Bytes>(RingKind::Mpmc, Trust::validate(), 64);
    let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
    // Fill every slot once, so each holds an old length word.
    for _ in 0..8 {
        tx.send(b"AAAA").unwrap();
        assert_eq!(rx.recv().unwrap(), b"AAAA");
    }
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = tx.send_with(|buf| {
            buf[..2].copy_from_slice(b"ZZ");
            panic!("a fill closure that fails half-way");
        });
    }));
    assert!(panicked.is_err());
    assert!(matches!(rx.try_recv(), Err(RecvMsgError::Empty)));
    tx.send(b"ok").unwrap();
    assert_eq!(rx.recv().unwrap(), b"ok");
    assert!(!rx.is_corrupted());
}

#[test]
fn a_message_too_large_fails_at_once_even_when_the_channel_is_full() {
    for kind in [RingKind::Spsc, RingKind::Mpmc] {
        let chan = create::<Rkyv<Order>>(kind, Trust::validate(), 64);
        let mut big = Order::sample(1);
        big.venue = "X".repeat(500);
        let too_large =
            |e: SendMsgError| matches!(e, SendMsgError::Encode(EncodeError::TooLarge { .. }));
        let tx = chan.sender().unwrap();
        for i in 0..8 {
            tx.send(&Order::sample(i)).unwrap();
        }
        assert!(matches!(
            tx.try_send(&Order::sample(9)),
            Err(SendMsgError::Full)
        ));
        assert!(too_large(tx.try_send(&big).unwrap_err()));
        assert!(too_large(
            tx.send_timeout(&big, Duration::from_secs(10)).unwrap_err()
        ));
        assert!(too_large(tx.send(&big).unwrap_err()));
        // No duration check: a send that waited for room would end in
        // `Timeout` (or block) rather than `TooLarge`, which the variants
        // above already rule out.
    }
}

#[test]
fn rkyv_and_byte_messages_batch_on_both_rings() {
    for kind in [RingKind::Spsc, RingKind::Mpmc] {
        let chan = create::<Rkyv<Order>>(kind, Trust::validate(), 128);
        let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
        let orders: Vec<Order> = (0..8).map(Order::sample).collect();
        let refs: Vec<&Order> = orders.iter().collect();
        assert_eq!(tx.try_send_batch(&refs).unwrap(), 8);
        // Full now: nothing more goes, and that is not an error.
        assert_eq!(tx.try_send_batch(&refs[..1]).unwrap(), 0);
        let mut got = Vec::new();
        assert_eq!(rx.recv_batch(&mut got, 5).unwrap(), 5);
        assert_eq!(rx.try_recv_batch(&mut got, 100).unwrap(), 3);
        assert_eq!(
            got.iter().map(|o| o.id).collect::<Vec<_>>(),
            (0..8).collect::<Vec<_>>()
        );
        assert_eq!(rx.try_recv_batch(&mut got, 100).unwrap(), 0);

        let chan = create::<Bytes>(kind, Trust::validate(), 64);
        let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
        tx.send_batch(&[b"a", b"bc", b""]).unwrap();
        let too_big = vec![0u8; 1000];
        let e = tx.send_batch(&[b"d", &too_big]).unwrap_err();
        assert_eq!(e.sent, 1);
        assert!(
            matches!(e.error, SendMsgError::Encode(EncodeError::TooLarge { .. })),
            "{e}"
        );
        let mut got = Vec::new();
        assert_eq!(rx.try_recv_batch(&mut got, 10).unwrap(), 4);
        assert_eq!(got, [b"a".to_vec(), b"bc".to_vec(), vec![], b"d".to_vec()]);
        drop(tx);
        assert!(rx.recv_batch(&mut got, 10).unwrap_err().is_disconnected());
    }
}

/// A typed channel opened as bytes (for bridges and recorders): an rkyv
/// ring's messages move out and back in unchanged on both ring kinds, the
/// type stays the ring's own, a typed receiver still checks what comes in
/// as bytes, and Pod channels and topics are refused.
#[test]
fn typed_channels_open_as_bytes() {
    for kind in [RingKind::Spsc, RingKind::Mpmc] {
        let addr = kit::shm_address("as-bytes");
        let typed = Builder::new(&addr)
            .unwrap()
            .kind(kind)
            .capacity(8)
            .create::<Rkyv<Order>>()
            .unwrap();
        let raw = Builder::new(&addr).unwrap().open_as_bytes().unwrap();
        assert_eq!(raw.segment().type_info(), typed.segment().type_info());
        assert_eq!(raw.max_message_len(), typed.max_message_len());
        // Out: a typed sender, a receiver of bytes.
        let tx = typed.sender().unwrap();
        let raw_rx = raw.receiver().unwrap();
        for i in 0..20 {
            tx.send(&Order::sample(i)).unwrap();
            assert_eq!(raw_rx.recv().unwrap(), encode(&Order::sample(i)));
        }
        drop((tx, raw_rx));
        // In: a sender of bytes, a typed receiver that checks them.
        let raw_tx = raw.sender().unwrap();
        let rx = typed.receiver().unwrap();
        for i in 0..20 {
            raw_tx.send(&encode(&Order::sample(i))).unwrap();
            assert_eq!(rx.recv().unwrap(), Order::sample(i));
        }
        // Too short to be an archive of an Order.
        raw_tx.send(&[0xff; 3]).unwrap();
        let got = rx.recv();
        assert!(matches!(got, Err(RecvMsgError::Invalid(_))), "{got:?}");
        raw_tx.send(&encode(&Order::sample(99))).unwrap();
        assert_eq!(rx.recv().unwrap(), Order::sample(99));
    }
    let addr = kit::shm_address("as-bytes-pod");
    let _pod = Builder::new(&addr).unwrap().create::<u64>().unwrap();
    assert!(matches!(
        Builder::new(&addr).unwrap().open_as_bytes(),
        Err(OpenError::TypeMismatch { .. })
    ));
    let addr = kit::shm_address("as-bytes-topic");
    let _topic = Builder::new(&addr)
        .unwrap()
        .create_topic::<Bytes>()
        .unwrap();
    assert!(matches!(
        Builder::new(&addr).unwrap().open_as_bytes(),
        Err(OpenError::LayoutMismatch { .. })
    ));
}
