//! Arbitrary bytes received as a message of each sample type, under each
//! trust level that accepts bytes from others: validation must turn any
//! input into a value or a typed error, never a crash. The unchecked trust
//! level is fuzzed only with bytes shmlane's own encoder wrote (anything
//! else breaks its safety contract by definition): the input is decoded
//! as a validated archive first, re-encoded, and read back unchecked.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shmlane_codec::archive::{view, CopyBuf, Message, Scratch};
use shmlane_codec::sample::{Order, Telemetry, Tick};
use shmlane_codec::Trust;

fn receive<T: Message>(slot: &[u8]) {
    let mut copy = CopyBuf::new();
    for trust in [Trust::validate(), Trust::hostile()] {
        let Ok(archived) = view::<T>(slot, trust, &mut copy) else {
            continue;
        };
        // A valid archive deserializes, and survives a round trip through
        // the encoder and the unchecked reader.
        let Ok(value) = T::decode(archived) else {
            continue;
        };
        let mut buf = CopyBuf::new();
        buf.resize(slot.len() + 1024, 0);
        let len = value.encode_into(&mut buf, &mut Scratch::new()).unwrap();
        // SAFETY: the bytes were written by `encode_into` for `T` just now.
        let unchecked = unsafe { Trust::unchecked() };
        let again = T::decode(view::<T>(&buf[..len], unchecked, &mut copy).unwrap()).unwrap();
        // Compared as encodings: floats may be NaN, which is not equal to
        // itself.
        let mut buf2 = CopyBuf::new();
        buf2.resize(len, 0);
        let len2 = again.encode_into(&mut buf2, &mut Scratch::new()).unwrap();
        assert_eq!(&buf[..len], &buf2[..len2]);
    }
}

fuzz_target!(|data: &[u8]| {
    // Slots are 16-byte aligned, like rkyv's own buffers.
    let mut slot = CopyBuf::new();
    slot.extend_from_slice(data);
    receive::<Order>(&slot);
    receive::<Telemetry>(&slot);
    receive::<Tick>(&slot);
});
