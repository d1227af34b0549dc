//! A segment whose every byte (its length included) another process
//! wrote: opened read-only as `shmlane ls` and `stat` open it (nothing may
//! be written through that mapping), then as a channel of each message
//! kind, as `Builder::inherited` opens a memfd handed over by a parent,
//! and, if it opens, attached to and used (senders and receivers of
//! whichever ring it says it has), and as a publish/subscribe topic of
//! three kinds (subscriber with history, publisher, reads and writes).
//! Every step must give a value or a typed
//! error, never a panic, a hang or an access outside the mapping; messages
//! received must fit the slot.
//!
//! Input: one flags byte, the segment length (u32 LE, capped at 1 MiB),
//! then the segment's first bytes (the rest is zeros). Flags: bit 0 leaves
//! the memfd unsealed (an opener must refuse it), bit 1 receives under
//! `Trust::hostile` instead of `Trust::validate`, bit 2 attaches the
//! sender before the receiver.
//!
//! Seeds: `cargo test --test fuzz_seeds -- --ignored` writes real
//! segments of every ring and message kind, and the hand-made malformed
//! cases of `shm/tests/open_errors.rs`, into `corpus/open_segment`.

#![no_main]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use shmlane::codec::sample::{Order, Tick};
use shmlane::ipc::{
    Builder, Bytes, Channel, Message, Publisher, Receiver, Rkyv, Role, Sender, Subscriber, Trust,
};
use shmlane_shm::{OpenOptions, Segment};

/// The largest segment tried: enough for every layout the seeds use and
/// for lengths that disagree with them, small enough to stay fast.
const MAX_LEN: u64 = 1 << 20;

/// Sending and receiving, for each message kind (one handle type for
/// both ring kinds).
trait Kind: Message + Sized {
    fn send(tx: &Sender<Self>, i: u64);
    fn recv(rx: &Receiver<Self>, max: usize);
    /// Publishing on a topic (the kinds the target opens topics as).
    fn publish(_: &Publisher<Self>, _: u64) {}
    /// Receiving from a topic, in place and owned.
    fn recv_topic(_: &mut Subscriber<Self>, _: usize) {}
}

impl Kind for u64 {
    fn send(tx: &Sender<Self>, i: u64) {
        let _ = tx.try_send(i);
        let _ = tx.try_send_batch(&[i, i + 1]);
    }
    fn recv(rx: &Receiver<Self>, _: usize) {
        let _ = rx.try_recv();
        let mut out = Vec::new();
        let _ = rx.try_recv_batch(&mut out, 3);
        assert!(out.len() <= 3);
    }
    fn publish(p: &Publisher<Self>, i: u64) {
        let _ = p.try_send(i);
    }
    fn recv_topic(sub: &mut Subscriber<Self>, _: usize) {
        let _ = sub.try_recv();
        let _ = sub.try_recv_ref().map(|v| *v);
    }
}

impl Kind for Rkyv<Order> {
    fn send(tx: &Sender<Self>, i: u64) {
        let _ = tx.try_send(&Order::sample(i));
    }
    fn recv(rx: &Receiver<Self>, _: usize) {
        let _ = rx.try_recv();
        if let Ok(order) = rx.try_recv_ref() {
            let _ = (order.symbol.len(), order.venue.len());
        }
    }
    fn publish(p: &Publisher<Self>, i: u64) {
        let _ = p.try_send(&Order::sample(i));
    }
    fn recv_topic(sub: &mut Subscriber<Self>, _: usize) {
        let _ = sub.try_recv();
        if let Ok(order) = sub.try_recv_ref() {
            let _ = (order.symbol.len(), order.venue.len());
        }
    }
}

impl Kind for Rkyv<Tick> {
    fn send(tx: &Sender<Self>, i: u64) {
        let _ = tx.try_send(&Tick {
            seq: i,
            quote: [1.0, 2.0],
        });
    }
    fn recv(rx: &Receiver<Self>, _: usize) {
        let _ = rx.try_recv();
    }
}

/// A received byte message fits the slot it came from.
fn within_slot(len: usize, max: usize) {
    assert!(len <= max, "a {len}-byte message from a {max}-byte slot");
}

impl Kind for Bytes {
    fn send(tx: &Sender<Self>, i: u64) {
        let _ = tx.try_send(&i.to_le_bytes());
    }
    fn recv(rx: &Receiver<Self>, max: usize) {
        if let Ok(m) = rx.try_recv() {
            within_slot(m.len(), max);
        }
        if let Ok(m) = rx.try_recv_ref() {
            within_slot(m.len(), max);
        }
    }
    fn publish(p: &Publisher<Self>, i: u64) {
        let _ = p.try_send(&i.to_le_bytes());
    }
    fn recv_topic(sub: &mut Subscriber<Self>, max: usize) {
        if let Ok(m) = sub.try_recv() {
            within_slot(m.len(), max);
        }
        if let Ok(m) = sub.try_recv_ref() {
            within_slot(m.len(), max);
        }
    }
}

/// A memfd holding the segment, sealed as a creator seals it unless asked.
fn segment_fd(len: u64, bytes: &[u8], seal: bool) -> OwnedFd {
    // SAFETY: a NUL-terminated name; returns a new descriptor or -1.
    let fd = unsafe {
        libc::memfd_create(
            c"fuzz-segment".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let raw = fd.as_raw_fd();
    // SAFETY: ftruncate and pwrite on our own descriptor, from a live slice.
    unsafe {
        assert_eq!(libc::ftruncate(raw, len as libc::off_t), 0);
        let n = bytes.len().min(len as usize);
        assert_eq!(libc::pwrite(raw, bytes.as_ptr().cast(), n, 0), n as isize);
    }
    if seal {
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
        // SAFETY: fcntl on our own descriptor.
        assert_eq!(unsafe { libc::fcntl(raw, libc::F_ADD_SEALS, seals) }, 0);
    }
    fd
}

/// What `shmlane stat` reads, through a read-only mapping.
fn inspect(fd: &OwnedFd) {
    let opts = OpenOptions {
        read_only: true,
        ready_timeout: Duration::ZERO,
        allow_group_write: true,
        ..OpenOptions::default()
    };
    let Ok(seg) = Segment::open_inherited(fd.as_raw_fd(), &opts) else {
        return;
    };
    let _ = (
        seg.layout().slots(),
        seg.fixed().type_name(),
        seg.buffered(),
    );
    let _ = (seg.creator_pid(), seg.creator_alive(), seg.reaped());
    for role in [Role::Sender, Role::Receiver] {
        let _ = (
            seg.live_count(role),
            seg.live_hint(role),
            seg.ever_attached(role),
        );
    }
    for p in seg.participants() {
        let _ = seg.owner_is_dead(p.index as u64 + 1);
    }
    assert!(seg.check_intact());
}

/// A builder for the segment in `fd`, as a child opens an inherited
/// memfd, with the trust the flags ask for.
fn inherited(fd: &OwnedFd, flags: u8) -> Builder {
    // SAFETY: dup of our own descriptor gives a new one nothing else owns;
    // `open` consumes (closes) it, once.
    let dup = unsafe { libc::dup(fd.as_raw_fd()) };
    assert!(dup >= 0);
    let trust = if flags & 2 == 0 {
        Trust::validate()
    } else {
        Trust::hostile()
    };
    // SAFETY: as above.
    unsafe { Builder::inherited(dup) }
        // No creator holds the lock: a segment that is not READY is
        // refused at once instead of after the usual grace period.
        .open_timeout(Duration::ZERO)
        .trust(trust)
}

fn open_as<M: Kind>(fd: &OwnedFd, flags: u8) {
    let Ok(chan) = inherited(fd, flags).open::<M>() else {
        return;
    };
    use_channel(&chan, flags & 4 != 0);
}

fn use_channel<M: Kind>(chan: &Channel<M>, sender_first: bool) {
    let max = chan.max_message_len();
    assert!(max <= chan.segment().layout().slot_size());
    // What the listing tools read.
    let seg = chan.segment();
    let _ = (seg.participants(), seg.buffered(), seg.creator_pid());
    let _ = (seg.live_count(Role::Sender), seg.live_count(Role::Receiver));
    let (tx, rx) = if sender_first {
        let tx = chan.sender();
        (tx, chan.receiver())
    } else {
        let rx = chan.receiver();
        (chan.sender(), rx)
    };
    if let Ok(rx) = &rx {
        for _ in 0..3 {
            M::recv(rx, max);
        }
    }
    if let Ok(tx) = &tx {
        for i in 0..3 {
            M::send(tx, i);
        }
    }
    if let Ok(rx) = &rx {
        for _ in 0..3 {
            M::recv(rx, max);
        }
        let _ = (rx.len(), rx.is_corrupted(), chan.kind());
    }
}

/// Opens the segment as a publish/subscribe topic of kind `M` and uses
/// it: a subscriber with history, a publisher if none lives, reads and
/// writes. Messages read must fit the slot.
fn open_topic_as<M: Kind>(fd: &OwnedFd, flags: u8) {
    let builder = inherited(fd, flags).history(usize::from(flags >> 3));
    let Ok(topic) = builder.open_topic::<M>() else {
        return;
    };
    let max = topic.max_message_len();
    assert!(max <= topic.segment().layout().slot_size());
    let _ = (topic.policy(), topic.max_subscribers(), topic.capacity());
    let _ = topic.segment().topic().unread();
    let sub = topic.subscriber();
    let publisher = topic.publisher();
    if let Ok(mut sub) = sub {
        for _ in 0..3 {
            M::recv_topic(&mut sub, max);
        }
        if let Ok(p) = &publisher {
            for i in 0..3 {
                M::publish(p, i);
            }
        }
        for _ in 0..3 {
            M::recv_topic(&mut sub, max);
        }
        let _ = sub.pending();
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Some((len, bytes)) = rest.split_first_chunk::<4>() else {
        return;
    };
    let len = u64::from(u32::from_le_bytes(*len)).min(MAX_LEN);
    let fd = segment_fd(len, bytes, flags & 1 == 0);
    inspect(&fd);
    open_as::<u64>(&fd, flags);
    open_as::<Rkyv<Order>>(&fd, flags);
    open_as::<Rkyv<Tick>>(&fd, flags);
    open_as::<Bytes>(&fd, flags);
    open_topic_as::<u64>(&fd, flags);
    open_topic_as::<Rkyv<Order>>(&fd, flags);
    open_topic_as::<Bytes>(&fd, flags);
});
