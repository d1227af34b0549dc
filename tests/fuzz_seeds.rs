//! Writes the seed inputs of the fuzz targets in `fuzz/` (ignored in
//! `cargo test`; run by hand when a format changes):
//!
//! ```sh
//! cargo test --test fuzz_seeds -- --ignored
//! ```
//!
//! Seeds go to `fuzz/seeds/TARGET/` (or `$SHMLANE_FUZZ_SEEDS/TARGET/`),
//! one file per case, named for what it is; `.ci/fuzz` hands them to
//! libFuzzer beside the minimized corpus. They are:
//!
//! - `open_segment`: real segments of both rings and every message kind
//!   the target opens (fresh, and in use: participants attached and
//!   messages buffered), and the byte-level malformed cases of
//!   `shm/tests/open_errors.rs` made from them;
//! - `stream_frames`: streams of real frames (Pod, rkyv and byte
//!   messages), whole and split, with the receivers' settings and with
//!   tiny read buffers, and a header above the max frame;
//! - `kernel_frames`: the same messages as `signal:` words (between a
//!   sender's opening and closing words), `mq:` messages and a `fifo:`
//!   stream;
//! - `recv_message`: the messages themselves.

use std::fs;
use std::path::{Path, PathBuf};

use shmlane::codec::archive::{self, CopyBuf, Scratch};
use shmlane::codec::sample::{Order, Status, Telemetry, Tick};
use shmlane::ipc::{Builder, Bytes, Message, Policy, RingKind, Rkyv};
use shmlane_shm::header::{offsets, HEADER_LEN};

/// The top half of a `signal:` header word.
const SIGNAL_MAGIC: u64 = 0x534c_4e46;
/// The length of a `signal:` sender's closing word.
const SIGNAL_END: u64 = 0xffff_ffff;
/// The length of a `signal:` sender's opening word.
const SIGNAL_HELLO: u64 = 0xffff_fffe;

fn seeds_dir(target: &str) -> PathBuf {
    let root = std::env::var_os("SHMLANE_FUZZ_SEEDS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds"));
    let dir = root.join(target);
    // Stale seeds of an older format must not linger.
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn rkyv_bytes<T: archive::Message>(value: &T) -> Vec<u8> {
    let mut buf = CopyBuf::new();
    buf.resize(4096, 0);
    let len = value.encode_into(&mut buf, &mut Scratch::new()).unwrap();
    buf[..len].to_vec()
}

fn telemetry() -> Telemetry {
    Telemetry {
        sensor: 7,
        readings: vec![1.5, 2.5, -3.0],
        status: Status::Failed {
            reason: "overheated".into(),
        },
        note: Some("rack 4".into()),
    }
}

/// Real messages of every kind, as their frames (or slots) carry them.
fn messages() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("u64", 42u64.to_ne_bytes().to_vec()),
        ("order", rkyv_bytes(&Order::sample(3))),
        ("telemetry", rkyv_bytes(&telemetry())),
        (
            "tick",
            rkyv_bytes(&Tick {
                seq: 9,
                quote: [1.25, 1.5],
            }),
        ),
        ("bytes", b"hello, shmlane".to_vec()),
        ("empty", Vec::new()),
    ]
}

/// An `open_segment` input: flags, the length, the bytes without their
/// trailing zeros (the target fills the rest with zeros).
fn segment_input(flags: u8, len: usize, bytes: &[u8]) -> Vec<u8> {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let mut out = vec![flags];
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&bytes[..end.min(len)]);
    out
}

/// Creates a channel of `M` at a file in `dir`, optionally uses it (a
/// sender and a receiver attached, three messages sent, one received),
/// and returns the segment's bytes as the file holds them then.
fn segment<M: Message>(
    dir: &Path,
    kind: RingKind,
    in_use: bool,
    use_it: impl Fn(&shmlane::ipc::Channel<M>) -> Box<dyn std::any::Any>,
) -> Vec<u8> {
    let path = dir.join("segment");
    let _ = fs::remove_file(&path);
    let chan = Builder::new(&format!("file:{}", path.display()))
        .unwrap()
        .kind(kind)
        .capacity(4)
        .message_size(64)
        .create::<M>()
        .unwrap();
    let _handles = in_use.then(|| use_it(&chan));
    fs::read(&path).unwrap()
}

/// A real topic's bytes: fresh, or with a publisher and a subscriber
/// attached, three messages published and one read.
fn topic_segment<M: Message>(
    dir: &Path,
    policy: Policy,
    in_use: bool,
    publish: impl Fn(&shmlane::ipc::Publisher<M>, u64),
) -> Vec<u8> {
    let path = dir.join("topic");
    let _ = fs::remove_file(&path);
    let topic = Builder::new(&format!("file:{}", path.display()))
        .unwrap()
        .capacity(4)
        .message_size(64)
        .policy(policy)
        .create_topic::<M>()
        .unwrap();
    let _handles = in_use.then(|| {
        let (p, mut s) = (topic.publisher().unwrap(), topic.subscriber().unwrap());
        for i in 0..3 {
            publish(&p, i);
        }
        let _ = s.try_recv();
        (p, s)
    });
    fs::read(&path).unwrap()
}

fn in_use_u64(chan: &shmlane::ipc::Channel<u64>) -> Box<dyn std::any::Any> {
    match chan.kind() {
        RingKind::Mpmc => {
            let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
            for i in 0..3 {
                tx.try_send(i).unwrap();
            }
            rx.try_recv().unwrap();
            Box::new((tx, rx))
        }
        // SPSC (the seeds are channels only).
        _ => {
            let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
            tx.try_send_batch(&[0, 1, 2]).unwrap();
            rx.try_recv().unwrap();
            Box::new((tx, rx))
        }
    }
}

fn in_use_order(chan: &shmlane::ipc::Channel<Rkyv<Order>>) -> Box<dyn std::any::Any> {
    match chan.kind() {
        RingKind::Mpmc => {
            let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
            for i in 0..3 {
                tx.try_send(&Order::sample(i)).unwrap();
            }
            rx.try_recv().unwrap();
            Box::new((tx, rx))
        }
        // SPSC (the seeds are channels only).
        _ => {
            let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
            for i in 0..3 {
                tx.try_send(&Order::sample(i)).unwrap();
            }
            rx.try_recv().unwrap();
            Box::new((tx, rx))
        }
    }
}

fn in_use_tick(chan: &shmlane::ipc::Channel<Rkyv<Tick>>) -> Box<dyn std::any::Any> {
    let tick = |seq| Tick {
        seq,
        quote: [1.0, 2.0],
    };
    match chan.kind() {
        RingKind::Mpmc => {
            let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
            for i in 0..3 {
                tx.try_send(&tick(i)).unwrap();
            }
            rx.try_recv().unwrap();
            Box::new((tx, rx))
        }
        // SPSC (the seeds are channels only).
        _ => {
            let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
            for i in 0..3 {
                tx.try_send(&tick(i)).unwrap();
            }
            rx.try_recv().unwrap();
            Box::new((tx, rx))
        }
    }
}

fn in_use_bytes(chan: &shmlane::ipc::Channel<Bytes>) -> Box<dyn std::any::Any> {
    match chan.kind() {
        RingKind::Mpmc => {
            let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
            for i in 0..3u8 {
                tx.try_send(&[i; 5]).unwrap();
            }
            rx.try_recv().unwrap();
            Box::new((tx, rx))
        }
        // SPSC (the seeds are channels only).
        _ => {
            let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
            for i in 0..3u8 {
                tx.try_send(&[i; 5]).unwrap();
            }
            rx.try_recv().unwrap();
            Box::new((tx, rx))
        }
    }
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

type Tamper = fn(&mut Vec<u8>);

/// The byte-level cases of `shm/tests/open_errors.rs`, each a change to a
/// valid segment.
const MALFORMED: &[(&str, Tamper)] = &[
    ("truncated_inside_the_header", |b| b.truncate(100)),
    ("empty_file", |b| b.clear()),
    ("truncated_inside_the_ring", |b| b.truncate(HEADER_LEN + 64)),
    ("longer_than_the_header_says", |b| {
        b.extend_from_slice(&[0; 4096])
    }),
    ("wrong_magic", |b| b[..8].copy_from_slice(b"NOTLANE\0")),
    ("some_other_file", |b| b.iter_mut().for_each(|x| *x = b'#')),
    ("future_version", |b| put_u32(b, offsets::VERSION, 4)),
    ("never_initialised", |b| b.iter_mut().for_each(|x| *x = 0)),
    ("creator_died_before_ready", |b| {
        put_u32(b, offsets::STATE, 0)
    }),
    ("garbage_state", |b| put_u32(b, offsets::STATE, 0xdead)),
    ("garbage_ring_kind", |b| put_u32(b, offsets::RING_KIND, 7)),
    ("slot_count_not_a_power_of_two", |b| {
        put_u64(b, offsets::SLOTS, 6)
    }),
    ("slot_count_disagrees_with_capacity", |b| {
        put_u64(b, offsets::SLOTS, 64)
    }),
    ("capacity_times_slot_size_overflows", |b| {
        put_u64(b, offsets::CAPACITY, 1 << 32);
        put_u64(b, offsets::SLOTS, 1 << 32);
        put_u64(b, offsets::SLOT_SIZE, u64::MAX / 4);
    }),
    ("zero_capacity", |b| put_u64(b, offsets::CAPACITY, 0)),
    ("slot_alignment_not_a_power_of_two", |b| {
        put_u64(b, offsets::SLOT_ALIGN, 24)
    }),
    ("total_length_disagrees_with_layout", |b| {
        put_u64(b, offsets::TOTAL_LEN, 1 << 20)
    }),
    ("bigger_slots_than_the_file_holds", |b| {
        put_u64(b, offsets::SLOT_SIZE, 4096)
    }),
    ("wrong_data_offset", |b| put_u64(b, offsets::DATA_OFFSET, 0)),
    ("wrong_type_fingerprint", |b| {
        put_u64(b, offsets::TYPE_HASH, 12345)
    }),
    ("wrong_codec", |b| put_u32(b, offsets::CODEC, 9)),
];

#[test]
#[ignore = "writes fuzz/seeds; run by hand"]
fn write_open_segment_seeds() {
    let out = seeds_dir("open_segment");
    let dir = shmlane_testkit::TempDir::new("fuzz-seeds");
    let scratch = dir.path();
    let mut bases = Vec::new();
    for kind in [RingKind::Spsc, RingKind::Mpmc] {
        let k = if kind == RingKind::Spsc {
            "spsc"
        } else {
            "mpmc"
        };
        for in_use in [false, true] {
            let state = if in_use { "in-use" } else { "fresh" };
            let segs = [
                ("u64", segment::<u64>(scratch, kind, in_use, in_use_u64)),
                (
                    "rkyv-order",
                    segment::<Rkyv<Order>>(scratch, kind, in_use, in_use_order),
                ),
                (
                    "rkyv-tick",
                    segment::<Rkyv<Tick>>(scratch, kind, in_use, in_use_tick),
                ),
                (
                    "bytes",
                    segment::<Bytes>(scratch, kind, in_use, in_use_bytes),
                ),
            ];
            for (msg, bytes) in segs {
                let name = format!("real-{k}-{msg}-{state}");
                fs::write(out.join(&name), segment_input(0, bytes.len(), &bytes)).unwrap();
                bases.push((name, bytes));
            }
        }
    }
    // Topics (publish/subscribe) of both policies, fresh and in use (a
    // publisher, a subscriber, three published and one read); the flags'
    // bits 3 and up ask the fuzz target's subscriber for that much history.
    for policy in [Policy::Block, Policy::Overwrite] {
        let p = if policy == Policy::Block {
            "block"
        } else {
            "overwrite"
        };
        for in_use in [false, true] {
            let state = if in_use { "in-use" } else { "fresh" };
            let segs = [
                (
                    "u64",
                    topic_segment::<u64>(scratch, policy, in_use, |p, i| p.send(i).unwrap()),
                ),
                (
                    "rkyv-order",
                    topic_segment::<Rkyv<Order>>(scratch, policy, in_use, |p, i| {
                        p.send(&Order::sample(i)).unwrap()
                    }),
                ),
                (
                    "bytes",
                    topic_segment::<Bytes>(scratch, policy, in_use, |p, i| {
                        p.send(&[i as u8; 5]).unwrap()
                    }),
                ),
            ];
            for (msg, bytes) in segs {
                let name = format!("real-topic-{p}-{msg}-{state}");
                fs::write(out.join(&name), segment_input(0, bytes.len(), &bytes)).unwrap();
                fs::write(
                    out.join(format!("{name}-history")),
                    segment_input(2 << 3, bytes.len(), &bytes),
                )
                .unwrap();
            }
        }
    }
    // Each real segment once more with the other flags: unsealed (must be
    // refused), hostile trust with the sender attached first.
    for (name, bytes) in &bases {
        fs::write(
            out.join(format!("{name}-unsealed")),
            segment_input(1, bytes.len(), bytes),
        )
        .unwrap();
        fs::write(
            out.join(format!("{name}-hostile-sender-first")),
            segment_input(6, bytes.len(), bytes),
        )
        .unwrap();
    }
    // The malformed cases, from two of them.
    for (name, bytes) in bases
        .iter()
        .filter(|(n, _)| n == "real-mpmc-u64-fresh" || n == "real-spsc-rkyv-order-in-use")
    {
        for (case, tamper) in MALFORMED {
            let mut b = bytes.clone();
            tamper(&mut b);
            fs::write(
                out.join(format!("hand-{case}-{}", &name[5..])),
                segment_input(0, b.len(), &b),
            )
            .unwrap();
        }
    }
}

/// Length-prefixed frames, as the stream transports send them.
fn framed(frames: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    out
}

/// A `stream_frames` input.
fn stream_input(max: u32, rbuf_shift: u8, splits: &[u8], stream: &[u8]) -> Vec<u8> {
    let mut out = max.to_le_bytes()[..3].to_vec();
    out.push(rbuf_shift);
    out.push(splits.len() as u8);
    out.extend_from_slice(splits);
    out.extend_from_slice(stream);
    out
}

#[test]
#[ignore = "writes fuzz/seeds; run by hand"]
fn write_stream_frames_seeds() {
    let out = seeds_dir("stream_frames");
    let msgs = messages();
    let all: Vec<&[u8]> = msgs.iter().map(|(_, m)| m.as_slice()).collect();
    let stream = framed(&all);
    let default_max = 1 << 20;
    // The receivers' settings (1 MiB, 64 KiB buffer), whole and split.
    fs::write(
        out.join("all-whole"),
        stream_input(default_max, 13, &[], &stream),
    )
    .unwrap();
    fs::write(
        out.join("all-split"),
        stream_input(default_max, 13, &[0, 2, 6, 30], &stream),
    )
    .unwrap();
    // An 8-byte read buffer: bodies of 4 bytes or more are read directly.
    fs::write(
        out.join("all-tiny-buffer"),
        stream_input(4096, 0, &[4, 1], &stream),
    )
    .unwrap();
    for (name, m) in &msgs {
        fs::write(
            out.join(format!("one-{name}")),
            stream_input(default_max, 13, &[], &framed(&[m])),
        )
        .unwrap();
    }
    // A frame above the max, after a good one.
    fs::write(
        out.join("above-max"),
        stream_input(8, 1, &[2], &framed(&[b"fits", b"does not fit"])),
    )
    .unwrap();
    // A frame cut short.
    let cut = &stream[..stream.len() - 3];
    fs::write(
        out.join("unfinished"),
        stream_input(default_max, 2, &[9], cut),
    )
    .unwrap();
}

/// A frame as the `signal:` words that carry it.
fn signal_words(frame: &[u8]) -> Vec<u64> {
    let mut w = vec![SIGNAL_MAGIC << 32 | frame.len() as u64];
    for c in frame.chunks(8) {
        let mut b = [0; 8];
        b[..c.len()].copy_from_slice(c);
        w.push(u64::from_le_bytes(b));
    }
    w
}

#[test]
#[ignore = "writes fuzz/seeds; run by hand"]
fn write_kernel_frames_seeds() {
    let out = seeds_dir("kernel_frames");
    let msgs = messages();
    // signal: the sender's opening word, every message, then its close.
    let mut words = vec![SIGNAL_MAGIC << 32 | SIGNAL_HELLO];
    for (_, m) in &msgs {
        words.extend(signal_words(m));
    }
    words.push(SIGNAL_MAGIC << 32 | SIGNAL_END);
    for batch in [0u8, 3, 63] {
        let mut input = vec![0, batch];
        for w in &words {
            input.extend_from_slice(&w.to_le_bytes());
        }
        fs::write(out.join(format!("signal-batch-{batch}")), input).unwrap();
    }
    let mut bad = vec![0, 7];
    for w in [SIGNAL_MAGIC << 32 | 4097, 42] {
        bad.extend_from_slice(&w.to_le_bytes());
    }
    fs::write(out.join("signal-too-large"), bad).unwrap();
    // mq: every message, with the usual 8 KiB limit and a tiny one.
    for limit in [8192u16, 16] {
        let mut input = vec![1];
        input.extend_from_slice(&limit.to_le_bytes());
        for (_, m) in &msgs {
            input.push(m.len() as u8);
            input.extend_from_slice(m);
        }
        fs::write(out.join(format!("mq-limit-{limit}")), input).unwrap();
    }
    // fifo: the frames of a stream.
    let all: Vec<&[u8]> = msgs.iter().map(|(_, m)| m.as_slice()).collect();
    let mut input = vec![2];
    input.extend_from_slice(&framed(&all));
    fs::write(out.join("fifo-all"), input).unwrap();
}

#[test]
#[ignore = "writes fuzz/seeds; run by hand"]
fn write_recv_message_seeds() {
    let out = seeds_dir("recv_message");
    for (name, m) in messages() {
        fs::write(out.join(name), m).unwrap();
    }
}
