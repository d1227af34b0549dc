//! What a peer can put into the kernel transports that keep message
//! boundaries themselves, decoded as the receivers decode it:
//!
//! - `signal:` words (one 8-byte `sigval` per signal), arriving in
//!   batches of any size, through the receiver's word decoder: frames
//!   must be at most 4096 bytes and exactly the words' bytes, a bad header
//!   an error that stays, the end word an end, the opening word a hello;
//! - `mq:` messages (the kernel keeps them whole and within the queue's
//!   message size; the receiver does no parsing of its own): each becomes
//!   a message of every kind through the receiver's frame step, from
//!   an aligned or a misaligned buffer;
//! - `fifo:` bytes: a FIFO carries the stream transports' length-prefixed
//!   frames (`stream_frames` splits them every way); here with the FIFO's
//!   own settings (1 MiB max frame, 64 KiB read buffer), each frame then
//!   read as a message of every kind.
//!
//! Input: a selector byte (0 signal, 1 mq, 2 fifo), then per transport:
//! signal: a batch size byte, then words (u64 LE); mq: a message size
//! limit (u16 LE), then messages (a length byte, then the bytes); fifo:
//! the stream.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shmlane::codec::archive::CopyBuf;
use shmlane::codec::sample::{Order, Telemetry, Tick};
use shmlane::codec::Trust;
use shmlane::fuzzing::{frame_message, Signal, SignalDecoder, StreamDecoder};
use shmlane::ipc::{Bytes, Message, Rkyv};
use shmlane::transport::{DEFAULT_MAX_FRAME, SIGNAL_MAX_FRAME};

const MAGIC: u64 = 0x534c_4e46;

/// A frame read as a message of kind `M`, under each trust a receiver honours.
fn view_as<M: Message>(frame: &[u8], copy: &mut CopyBuf) {
    for trust in [Trust::validate(), Trust::hostile()] {
        let _ = frame_message::<M>(frame, copy, trust);
    }
}

fn messages(frame: &[u8]) {
    let mut copy = CopyBuf::new();
    view_as::<u64>(frame, &mut copy);
    view_as::<[u8; 24]>(frame, &mut copy);
    view_as::<Rkyv<Order>>(frame, &mut copy);
    view_as::<Rkyv<Telemetry>>(frame, &mut copy);
    view_as::<Rkyv<Tick>>(frame, &mut copy);
    let mut copy2 = CopyBuf::new();
    if let Ok(bytes) = frame_message::<Bytes>(frame, &mut copy2, Trust::validate()) {
        assert_eq!(bytes, frame);
    }
}

fn signal(data: &[u8]) {
    let Some((&batch, rest)) = data.split_first() else {
        return;
    };
    let batch = usize::from(batch % 64) + 1;
    let words: Vec<u64> = rest
        .as_chunks::<8>()
        .0
        .iter()
        .map(|w| u64::from_le_bytes(*w))
        .collect();
    let mut dec = SignalDecoder::new();
    let mut buf = Vec::new();
    // Where the next frame's header is in `words`.
    let mut at = 0;
    for chunk in words.chunks(batch) {
        for &w in chunk {
            dec.push(w);
        }
        // The receiver takes frames until none is whole, then reads again.
        loop {
            let queued = dec.queued();
            match dec.take(&mut buf) {
                Ok(Some(Signal::Frame(len))) => {
                    assert!(len <= SIGNAL_MAX_FRAME);
                    assert_eq!(words[at], MAGIC << 32 | len as u64);
                    let n = len.div_ceil(8);
                    assert_eq!(dec.queued(), queued - 1 - n);
                    let mut want = Vec::new();
                    for w in &words[at + 1..at + 1 + n] {
                        want.extend_from_slice(&w.to_le_bytes());
                    }
                    want.truncate(len);
                    assert_eq!(buf, want);
                    messages(&buf);
                    at += 1 + n;
                }
                Ok(Some(Signal::End)) => {
                    assert_eq!(words[at], MAGIC << 32 | 0xffff_ffff);
                    assert_eq!(dec.queued(), queued - 1);
                    at += 1;
                }
                Ok(Some(Signal::Hello)) => {
                    assert_eq!(words[at], MAGIC << 32 | 0xffff_fffe);
                    assert_eq!(dec.queued(), queued - 1);
                    at += 1;
                }
                Ok(None) => break,
                Err(e) => {
                    // The bad word stays: the same error again, nothing taken.
                    assert_eq!(dec.take(&mut buf), Err(e));
                    assert_eq!(dec.queued(), queued);
                    return;
                }
            }
        }
    }
}

fn mq(data: &[u8]) {
    let Some((limit, mut rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let limit = usize::from(u16::from_le_bytes(*limit));
    // A buffer with room in front, to hand frames over misaligned too.
    let mut buf = vec![0u8; 256 + 16];
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (msg, tail) = tail.split_at(len);
        rest = tail;
        if msg.len() > limit {
            // mq_send refuses it (EMSGSIZE): it never reaches a receiver.
            continue;
        }
        messages(msg);
        let shift = 1 + len % 15;
        buf[shift..shift + len].copy_from_slice(msg);
        messages(&buf[shift..shift + len]);
    }
}

fn fifo(data: &[u8]) {
    let mut dec = StreamDecoder::new(DEFAULT_MAX_FRAME);
    let mut buf = Vec::new();
    let _ = dec.feed(data, &mut buf, messages);
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => signal(rest),
        1 => mq(rest),
        _ => fifo(rest),
    }
});
