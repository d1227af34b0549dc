//! The parsers of what a peer sends over the kernel transports, apart from
//! the system calls that fetch it: state machines fed bytes (stream
//! transports) or signal words (`signal:`), so that tests and fuzzers drive
//! them without descriptors, and the receivers in `stream.rs` and
//! `signal.rs` run the same code over their reads.
//!
//! `mq:` has no parser: the kernel keeps each message whole and bounded by
//! the queue's message size, and the receiver takes it as the frame.

use std::collections::VecDeque;
use std::fmt;

/// Bytes a stream receiver reads at once; larger frame bodies are read
/// straight into the caller's buffer.
pub(crate) const READ_BUF: usize = 64 * 1024;

/// A stream frame header announced more than the receiver's max frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameTooLarge {
    /// The length the header announced.
    pub len: usize,
    /// The receiver's max frame.
    pub max: usize,
}

impl fmt::Display for FrameTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "peer sent a frame of {} bytes, above this receiver's max frame of {}: give both \
             sides the same max_frame",
            self.len, self.max
        )
    }
}

impl std::error::Error for FrameTooLarge {}

/// What a [`StreamDecoder`] needs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A whole frame of this length is in the caller's buffer.
    Frame(usize),
    /// More bytes, into [`StreamDecoder::spare`].
    Read,
    /// More bytes of the frame body, appended straight to the caller's
    /// buffer: at most this many (the rest of the body).
    Direct(usize),
}

/// Length-prefixed frames (u32 LE length, then the bytes) parsed out of a
/// byte stream that arrives in pieces of any size.
///
/// The body of the frame being received accumulates in a buffer the
/// caller owns and passes to every [`next`](Self::next); small reads go
/// through the decoder's own read buffer, and the rest of a large body is
/// read straight into the caller's buffer ([`Step::Direct`]).
#[derive(Debug)]
pub struct StreamDecoder {
    max: usize,
    rbuf: Box<[u8]>,
    rpos: usize,
    rend: usize,
    /// Length of the frame whose body is being received.
    body: Option<usize>,
}

impl StreamDecoder {
    /// A decoder for frames of at most `max` bytes, with the stream
    /// receivers' read buffer.
    pub fn new(max: usize) -> Self {
        Self::with_read_buffer(max, READ_BUF)
    }

    /// As [`new`](Self::new), with a read buffer of `len` bytes (at least
    /// 8): bodies of at least half of it are read directly.
    pub fn with_read_buffer(max: usize, len: usize) -> Self {
        Self {
            max,
            rbuf: vec![0; len.max(8)].into_boxed_slice(),
            rpos: 0,
            rend: 0,
            body: None,
        }
    }

    /// The largest frame accepted.
    pub fn max_frame(&self) -> usize {
        self.max
    }

    /// Whether the body of a frame is being received (the caller's buffer
    /// holds its first part).
    pub fn in_frame(&self) -> bool {
        self.body.is_some()
    }

    /// Whether no byte was fed yet.
    pub fn is_fresh(&self) -> bool {
        self.rend == 0 && self.body.is_none()
    }

    /// Parses what is buffered. `buf` holds the part of the current
    /// frame's body received so far (it is cleared when a header is
    /// parsed); after [`Step::Frame`] it holds the whole frame.
    ///
    /// # Errors
    ///
    /// [`FrameTooLarge`] for a header above the max frame. The header is
    /// consumed; the stream cannot be trusted after it.
    pub fn next(&mut self, buf: &mut Vec<u8>) -> Result<Step, FrameTooLarge> {
        loop {
            let avail = self.rend - self.rpos;
            match self.body {
                None => {
                    if avail < 4 {
                        return Ok(Step::Read);
                    }
                    let mut h = [0; 4];
                    h.copy_from_slice(&self.rbuf[self.rpos..self.rpos + 4]);
                    self.rpos += 4;
                    let len = u32::from_le_bytes(h) as usize;
                    if len > self.max {
                        return Err(FrameTooLarge { len, max: self.max });
                    }
                    self.body = Some(len);
                    buf.clear();
                }
                Some(len) => {
                    let take = (len - buf.len()).min(avail);
                    buf.extend_from_slice(&self.rbuf[self.rpos..self.rpos + take]);
                    self.rpos += take;
                    if buf.len() == len {
                        self.body = None;
                        return Ok(Step::Frame(len));
                    }
                    let missing = len - buf.len();
                    return Ok(if missing >= self.rbuf.len() / 2 {
                        Step::Direct(missing)
                    } else {
                        Step::Read
                    });
                }
            }
        }
    }

    /// The free end of the read buffer, after moving what is unparsed to
    /// its front: read into it, then say how much with
    /// [`filled`](Self::filled). Never empty after [`Step::Read`].
    pub fn spare(&mut self) -> &mut [u8] {
        if self.rpos == self.rend {
            self.rpos = 0;
            self.rend = 0;
        } else if self.rpos > 0 {
            self.rbuf.copy_within(self.rpos..self.rend, 0);
            self.rend -= self.rpos;
            self.rpos = 0;
        }
        &mut self.rbuf[self.rend..]
    }

    /// Records that `n` bytes were read into [`spare`](Self::spare).
    ///
    /// # Panics
    ///
    /// If `n` is more than the spare room.
    pub fn filled(&mut self, n: usize) {
        assert!(n <= self.rbuf.len() - self.rend, "filled past the buffer");
        self.rend += n;
    }

    /// Feeds `bytes` as if one read had returned them (several, where the
    /// read buffer is shorter), calling `frame` with each whole frame, in
    /// the same steps as the stream receivers. Bytes of an unfinished
    /// frame stay in the decoder and `buf` for the next call.
    ///
    /// # Errors
    ///
    /// As [`next`](Self::next); the bytes after the bad header are dropped.
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn feed(
        &mut self,
        mut bytes: &[u8],
        buf: &mut Vec<u8>,
        mut frame: impl FnMut(&[u8]),
    ) -> Result<(), FrameTooLarge> {
        loop {
            match self.next(buf)? {
                Step::Frame(len) => {
                    frame(&buf[..len]);
                    continue;
                }
                _ if bytes.is_empty() => return Ok(()),
                Step::Read => {
                    let spare = self.spare();
                    let n = spare.len().min(bytes.len());
                    spare[..n].copy_from_slice(&bytes[..n]);
                    self.filled(n);
                    bytes = &bytes[n..];
                }
                Step::Direct(missing) => {
                    let n = missing.min(bytes.len());
                    buf.extend_from_slice(&bytes[..n]);
                    bytes = &bytes[n..];
                }
            }
        }
    }
}

/// The largest `signal:` frame: 512 payload signals.
pub(crate) const SIGNAL_MAX_FRAME: usize = 4096;
/// The top half of a `signal:` frame's header word ("SLNF").
pub(crate) const SIGNAL_MAGIC: u64 = 0x534c_4e46;
/// The length a `signal:` sender's closing header word carries.
pub(crate) const SIGNAL_END: u64 = 0xffff_ffff;
/// The length a `signal:` sender's opening header word carries (queued
/// when it connects, so a receiver knows of it before its first frame).
pub(crate) const SIGNAL_HELLO: u64 = 0xffff_fffe;

/// What a [`SignalDecoder`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// A whole frame of this length is in the caller's buffer.
    Frame(usize),
    /// The sender's closing word: it sent nothing more.
    End,
    /// A sender's opening word: what follows is a new sender's.
    Hello,
}

/// Why the words of a `signal:` sender are not frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignalFrameError {
    /// The next word is not a header word.
    NoHeader,
    /// A header announced more than 4096 bytes (`signal:`'s max frame).
    TooLarge,
}

impl fmt::Display for SignalFrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoHeader => "a signal frame did not start with a header word",
            Self::TooLarge => "a signal frame header announced more than 4096 bytes",
        })
    }
}

impl std::error::Error for SignalFrameError {}

/// `signal:` frames parsed out of the 8-byte words one sender queued, one
/// per signal: a header word (`MAGIC << 32 | len`), then `ceil(len / 8)`
/// payload words (little-endian bytes, the last one zero-padded); an
/// opening word (`MAGIC << 32 | 0xffff_fffe`) when the sender connects and
/// a closing word (`MAGIC << 32 | 0xffff_ffff`) when it leaves. The
/// receiver keeps one decoder per sending process.
#[derive(Debug)]
pub struct SignalDecoder {
    words: VecDeque<u64>,
}

impl Default for SignalDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl SignalDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self {
            words: VecDeque::with_capacity(SIGNAL_MAX_FRAME / 8 + 128),
        }
    }

    /// Queues a word received from the sender.
    pub fn push(&mut self, word: u64) {
        self.words.push_back(word);
    }

    /// Words queued and not yet taken.
    pub fn queued(&self) -> usize {
        self.words.len()
    }

    /// Takes a whole frame (into `buf`, cleared first) or the closing word
    /// off the queue, if one is there; `Ok(None)` while a frame is
    /// incomplete.
    ///
    /// # Errors
    ///
    /// [`SignalFrameError`]; the offending word stays queued, so every
    /// later call fails the same way.
    pub fn take(&mut self, buf: &mut Vec<u8>) -> Result<Option<Signal>, SignalFrameError> {
        let Some(&head) = self.words.front() else {
            return Ok(None);
        };
        if head >> 32 != SIGNAL_MAGIC {
            return Err(SignalFrameError::NoHeader);
        }
        let len = head & 0xffff_ffff;
        if len == SIGNAL_END {
            self.words.pop_front();
            return Ok(Some(Signal::End));
        }
        if len == SIGNAL_HELLO {
            self.words.pop_front();
            return Ok(Some(Signal::Hello));
        }
        let len = len as usize;
        if len > SIGNAL_MAX_FRAME {
            return Err(SignalFrameError::TooLarge);
        }
        let n = len.div_ceil(8);
        if self.words.len() < 1 + n {
            return Ok(None);
        }
        self.words.pop_front();
        buf.clear();
        for _ in 0..n {
            let w = self.words.pop_front().unwrap_or(0).to_le_bytes();
            let room = len - buf.len();
            buf.extend_from_slice(&w[..room.min(8)]);
        }
        Ok(Some(Signal::Frame(len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(frames: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for f in frames {
            out.extend_from_slice(&(f.len() as u32).to_le_bytes());
            out.extend_from_slice(f);
        }
        out
    }

    /// Feeds `stream` in pieces of `chunk` bytes; returns the frames.
    fn decode(
        dec: &mut StreamDecoder,
        stream: &[u8],
        chunk: usize,
    ) -> Result<Vec<Vec<u8>>, FrameTooLarge> {
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for piece in stream.chunks(chunk) {
            dec.feed(piece, &mut buf, |f| got.push(f.to_vec()))?;
        }
        Ok(got)
    }

    #[test]
    fn frames_survive_any_split() {
        let big = vec![7u8; 100];
        let frames: [&[u8]; 5] = [b"hello", b"", &big, b"x", &[1, 2, 3, 4, 5, 6, 7, 8, 9]];
        let stream = framed(&frames);
        for rbuf in [8, 16, 64, 1024] {
            for chunk in 1..=stream.len() {
                let mut dec = StreamDecoder::with_read_buffer(1000, rbuf);
                let got = decode(&mut dec, &stream, chunk).unwrap();
                assert_eq!(got, frames, "read buffer {rbuf}, chunks of {chunk}");
                assert!(!dec.in_frame());
            }
        }
    }

    #[test]
    fn a_header_above_the_max_is_an_error() {
        let mut dec = StreamDecoder::with_read_buffer(4, 16);
        let stream = framed(&[b"abcd", b"abcde"]);
        let e = decode(&mut dec, &stream, 3).unwrap_err();
        assert_eq!(e, FrameTooLarge { len: 5, max: 4 });
        assert!(e
            .to_string()
            .contains("above this receiver's max frame of 4"));
    }

    #[test]
    fn an_unfinished_frame_waits_for_its_rest() {
        let mut dec = StreamDecoder::with_read_buffer(100, 8);
        let stream = framed(&[b"0123456789abcdef"]);
        let mut buf = Vec::new();
        let mut got = 0;
        dec.feed(&stream[..10], &mut buf, |_| got += 1).unwrap();
        assert_eq!((got, dec.in_frame()), (0, true));
        assert_eq!(buf, b"012345");
        dec.feed(&stream[10..], &mut buf, |f| {
            assert_eq!(f, b"0123456789abcdef");
            got += 1;
        })
        .unwrap();
        assert_eq!((got, dec.in_frame()), (1, false));
    }

    fn words(frame: &[u8]) -> Vec<u64> {
        let mut w = vec![SIGNAL_MAGIC << 32 | frame.len() as u64];
        for c in frame.chunks(8) {
            let mut b = [0; 8];
            b[..c.len()].copy_from_slice(c);
            w.push(u64::from_le_bytes(b));
        }
        w
    }

    #[test]
    fn signal_words_make_frames_then_end() {
        let mut dec = SignalDecoder::new();
        let mut buf = Vec::new();
        let frame = b"twelve bytes";
        let w = words(frame);
        for &x in &w[..w.len() - 1] {
            dec.push(x);
            assert_eq!(dec.take(&mut buf), Ok(None));
        }
        dec.push(w[w.len() - 1]);
        assert_eq!(dec.take(&mut buf), Ok(Some(Signal::Frame(12))));
        assert_eq!(buf, frame);
        for x in words(b"") {
            dec.push(x);
        }
        assert_eq!(dec.take(&mut buf), Ok(Some(Signal::Frame(0))));
        assert!(buf.is_empty());
        dec.push(SIGNAL_MAGIC << 32 | SIGNAL_END);
        assert_eq!(dec.take(&mut buf), Ok(Some(Signal::End)));
        assert_eq!(dec.queued(), 0);
        // Another sender of the same process, after the first left.
        dec.push(SIGNAL_MAGIC << 32 | SIGNAL_HELLO);
        for x in words(b"again") {
            dec.push(x);
        }
        assert_eq!(dec.take(&mut buf), Ok(Some(Signal::Hello)));
        assert_eq!(dec.take(&mut buf), Ok(Some(Signal::Frame(5))));
        assert_eq!(buf, b"again");
        assert_eq!(dec.queued(), 0);
    }

    #[test]
    fn bad_signal_words_are_errors_that_stay() {
        let mut dec = SignalDecoder::new();
        let mut buf = Vec::new();
        dec.push(42);
        for _ in 0..2 {
            assert_eq!(dec.take(&mut buf), Err(SignalFrameError::NoHeader));
        }
        let mut dec = SignalDecoder::new();
        dec.push(SIGNAL_MAGIC << 32 | 4097);
        assert_eq!(dec.take(&mut buf), Err(SignalFrameError::TooLarge));
    }
}
