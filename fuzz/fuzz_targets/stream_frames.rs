//! The byte stream a `unix:`, `tcp:`, `fifo:` or `pipe` peer sends (length
//! prefixes and bodies, anything at all), split into reads of arbitrary
//! sizes and fed to the receivers' frame decoder with a max frame and a
//! read buffer chosen by the input. However the stream is split, the
//! frames (and the error, if a header is above the max frame) must be
//! exactly those of the whole stream parsed at once, and the decoder must
//! never panic, hang, or hold a frame above the max.
//!
//! Input: max frame (u24 LE), read buffer selector (8 << n % 14 bytes, so
//! both the receivers' 64 KiB and tiny buffers that make the direct-read
//! path reachable), split count `c` (at most 16), `c` read sizes (1 to
//! 256, used in turn), then the stream.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shmlane::fuzzing::{FrameTooLarge, StreamDecoder};

/// The frames of a whole stream, then either the error or the body bytes
/// of an unfinished frame (`None` if no frame is open).
type Parsed<'a> = (Vec<&'a [u8]>, Result<Option<&'a [u8]>, FrameTooLarge>);

/// The whole stream parsed at once.
fn reference(mut stream: &[u8], max: usize) -> Parsed<'_> {
    let mut frames = Vec::new();
    loop {
        let Some((head, rest)) = stream.split_first_chunk::<4>() else {
            return (frames, Ok(None));
        };
        let len = u32::from_le_bytes(*head) as usize;
        if len > max {
            return (frames, Err(FrameTooLarge { len, max }));
        }
        if rest.len() < len {
            return (frames, Ok(Some(rest)));
        }
        frames.push(&rest[..len]);
        stream = &rest[len..];
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&[m0, m1, m2, rb, c], rest)) = data.split_first_chunk::<5>() else {
        return;
    };
    let max = u32::from_le_bytes([m0, m1, m2, 0]) as usize;
    let rbuf = 8usize << (rb % 14);
    let c = usize::from(c % 17).min(rest.len());
    let (splits, stream) = rest.split_at(c);
    let (want, end) = reference(stream, max);

    let mut dec = StreamDecoder::with_read_buffer(max, rbuf);
    let mut buf = Vec::new();
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut result = Ok(());
    let mut left = stream;
    let mut i = 0;
    while !left.is_empty() {
        let n = match splits.get(i % splits.len().max(1)) {
            Some(&s) => usize::from(s) + 1,
            None => left.len(),
        }
        .min(left.len());
        i += 1;
        let (piece, next) = left.split_at(n);
        left = next;
        result = dec.feed(piece, &mut buf, |f| {
            assert!(
                f.len() <= max,
                "a {}-byte frame above the max of {max}",
                f.len()
            );
            got.push(f.to_vec());
        });
        if result.is_err() {
            break;
        }
    }
    assert_eq!(got, want, "frames depend on how the stream was split");
    match end {
        Err(e) => assert_eq!(result, Err(e)),
        Ok(open) => {
            assert_eq!(result, Ok(()));
            assert_eq!(dec.in_frame(), open.is_some());
            if let Some(body) = open {
                // What came of an unfinished frame is in the caller's
                // buffer, as a receiver that times out keeps it.
                assert_eq!(buf, body);
            }
        }
    }
});
