//! Length-prefixed frames (u32 LE length, then the bytes) on a byte
//! stream: pipes, FIFOs, Unix stream sockets and TCP.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use super::decode::{Step, StreamDecoder};
use super::error::{FrameRecvError, FrameSendError};
use shmlane_sys::errno::Errno;
use shmlane_sys::poll::{poll_one, PollFlags};

/// How long dropping a sender waits to finish a frame it accepted.
const DROP_FLUSH: Duration = Duration::from_secs(1);

fn disconnected(e: &io::Error) -> bool {
    matches!(
        Errno::from_io_error(e),
        Some(Errno::PIPE | Errno::CONNRESET | Errno::NOTCONN | Errno::SHUTDOWN)
    )
}

/// The sending half: writes `header + frame` with one `writev`/`sendmsg`.
#[derive(Debug)]
pub(crate) struct StreamTx {
    fd: OwnedFd,
    /// Sockets write with `sendmsg(MSG_NOSIGNAL)`; pipes with `writev`.
    socket: bool,
    max: usize,
    /// The unwritten tail of a frame already reported sent.
    pending: Vec<u8>,
    pending_pos: usize,
}

impl StreamTx {
    pub(crate) fn new(fd: OwnedFd, socket: bool, max: usize) -> io::Result<Self> {
        shmlane_sys::fd::set_nonblocking(&fd)?;
        if !socket {
            shmlane_sys::signal::ignore_sigpipe();
        }
        Ok(Self {
            fd,
            socket,
            max,
            pending: Vec::new(),
            pending_pos: 0,
        })
    }

    pub(crate) fn max_frame(&self) -> usize {
        self.max
    }

    pub(crate) fn has_pending(&self) -> bool {
        self.pending_pos < self.pending.len()
    }

    pub(crate) fn into_fd(self) -> OwnedFd {
        // Fields are moved out; no Drop impl runs on `self`.
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again, so the fd is
        // moved out exactly once; the Vec is dropped in place below.
        unsafe {
            drop(std::ptr::read(&this.pending));
            std::ptr::read(&this.fd)
        }
    }

    /// Writes `parts` skipping the first `skip` bytes, in one system call;
    /// returns bytes written.
    fn write_parts(&self, parts: [&[u8]; 2], skip: usize) -> io::Result<usize> {
        let mut iov = [IoSlice::new(&[]); 2];
        let mut n = 0;
        let mut skip = skip;
        for p in parts {
            if skip >= p.len() {
                skip -= p.len();
                continue;
            }
            iov[n] = IoSlice::new(&p[skip..]);
            skip = 0;
            n += 1;
        }
        if self.socket {
            shmlane_sys::net::send_vectored(&self.fd, &iov[..n])
        } else {
            shmlane_sys::fd::write_vectored(&self.fd, &iov[..n])
        }
    }

    /// The descriptor (for an async wait's readiness).
    pub(crate) fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Waits for room; `Ok(false)` on timeout.
    fn wait(&self, deadline: Option<Instant>) -> Result<bool, FrameSendError> {
        poll_one(&self.fd, PollFlags::OUT, deadline)
            .map(|r| !r.is_empty())
            .map_err(FrameSendError::Os)
    }

    /// Finishes the frame that was accepted but not fully written.
    pub(crate) fn flush(&mut self, deadline: Option<Instant>) -> Result<(), FrameSendError> {
        while self.has_pending() {
            match self.write_parts([&self.pending[self.pending_pos..], &[]], 0) {
                Ok(n) => self.pending_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !self.wait(deadline)? {
                        return Err(FrameSendError::Timeout);
                    }
                }
                Err(e) if disconnected(&e) => return Err(FrameSendError::Disconnected),
                Err(e) => return Err(FrameSendError::Os(e)),
            }
        }
        self.pending.clear();
        self.pending_pos = 0;
        Ok(())
    }

    pub(crate) fn send(
        &mut self,
        frame: &[u8],
        deadline: Option<Instant>,
    ) -> Result<(), FrameSendError> {
        self.flush(deadline)?;
        let header = (frame.len() as u32).to_le_bytes();
        let total = header.len() + frame.len();
        let mut done = 0;
        while done < total {
            match self.write_parts([&header, frame], done) {
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !self.wait(deadline)? {
                        if done == 0 {
                            return Err(FrameSendError::Timeout);
                        }
                        // Part of the frame is in the stream: keep the rest
                        // and finish it before the next frame, so the
                        // stream never carries a torn frame.
                        self.pending.clear();
                        self.pending_pos = 0;
                        if done < header.len() {
                            self.pending.extend_from_slice(&header[done..]);
                            self.pending.extend_from_slice(frame);
                        } else {
                            self.pending
                                .extend_from_slice(&frame[done - header.len()..]);
                        }
                        return Ok(());
                    }
                }
                Err(e) if disconnected(&e) => return Err(FrameSendError::Disconnected),
                Err(e) => return Err(FrameSendError::Os(e)),
            }
        }
        Ok(())
    }
}

impl Drop for StreamTx {
    fn drop(&mut self) {
        if self.has_pending() {
            let _ = self.flush(Some(Instant::now() + DROP_FLUSH));
        }
    }
}

/// The receiving half: reads from the descriptor, parsed into frames by a
/// [`StreamDecoder`].
#[derive(Debug)]
pub(crate) struct StreamRx {
    fd: OwnedFd,
    /// A FIFO reads EOF before its first writer arrives; only `POLLHUP`
    /// after a writer came says the writer is gone.
    fifo: bool,
    decoder: StreamDecoder,
    /// The part of the current frame's body read before a timeout.
    stash: Vec<u8>,
    eof: bool,
}

enum Read {
    Data,
    WouldBlock,
    Eof,
}

impl AsFd for StreamRx {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl StreamRx {
    pub(crate) fn new(fd: OwnedFd, fifo: bool, max: usize) -> io::Result<Self> {
        shmlane_sys::fd::set_nonblocking(&fd)?;
        Ok(Self {
            fd,
            fifo,
            decoder: StreamDecoder::new(max),
            stash: Vec::new(),
            eof: false,
        })
    }

    pub(crate) fn max_frame(&self) -> usize {
        self.decoder.max_frame()
    }

    pub(crate) fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// One read of the descriptor: into `buf` directly when `direct` (at
    /// most that many bytes), else into the decoder's read buffer.
    fn read_once(&mut self, buf: &mut Vec<u8>, direct: Option<usize>) -> io::Result<Read> {
        let r = match direct {
            Some(missing) => shmlane_sys::fd::read_append(&self.fd, buf, missing),
            None => {
                let r = shmlane_sys::fd::read(&self.fd, self.decoder.spare());
                if let Ok(n) = r {
                    self.decoder.filled(n);
                }
                r
            }
        };
        read_kind(r)
    }

    /// Reads more bytes (see [`read_once`](Self::read_once)), waiting
    /// until `deadline`. `Ok(false)`: timed out.
    fn fill(
        &mut self,
        buf: &mut Vec<u8>,
        direct: Option<usize>,
        deadline: Option<Instant>,
    ) -> Result<bool, FrameRecvError> {
        loop {
            if self.eof {
                return Err(FrameRecvError::Disconnected);
            }
            match self.read_once(buf, direct).map_err(FrameRecvError::Os)? {
                Read::Data => return Ok(true),
                Read::Eof if !self.fifo => self.eof = true,
                Read::Eof | Read::WouldBlock => {
                    let r =
                        poll_one(&self.fd, PollFlags::IN, deadline).map_err(FrameRecvError::Os)?;
                    if r.is_empty() {
                        return Ok(false);
                    }
                    if self.fifo && !r.contains(PollFlags::IN) && r.contains(PollFlags::HUP) {
                        // No bytes left and every writer that came is gone.
                        // Not latched: a FIFO stays open for reading, so a
                        // later sender may open it and is received. What a
                        // gone writer left of an unfinished frame can never
                        // be completed: drop it, so that the next sender's
                        // frames are parsed from their start.
                        if !self.decoder.is_fresh() {
                            self.decoder = StreamDecoder::new(self.decoder.max_frame());
                            buf.clear();
                        }
                        return Err(FrameRecvError::Disconnected);
                    }
                }
            }
        }
    }

    /// Moves the part of a frame kept from an earlier call into `buf`, or
    /// clears `buf` when no frame is begun.
    fn resume(&mut self, buf: &mut Vec<u8>) {
        if self.decoder.in_frame() {
            std::mem::swap(buf, &mut self.stash);
        }
        self.stash.clear();
        if !self.decoder.in_frame() {
            buf.clear();
        }
    }

    /// Keeps the part of a frame in `buf` for the next call.
    fn suspend(&mut self, buf: &mut Vec<u8>) {
        if self.decoder.in_frame() {
            std::mem::swap(buf, &mut self.stash);
        }
    }

    /// The next step of the decoder over what is buffered.
    fn step(&mut self, buf: &mut Vec<u8>) -> Result<Step, FrameRecvError> {
        // The peer broke the framing: `InvalidData`, carrying the typed
        // error.
        self.decoder
            .next(buf)
            .map_err(|e| FrameRecvError::Os(io::Error::new(io::ErrorKind::InvalidData, e)))
    }

    pub(crate) fn recv(
        &mut self,
        buf: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<usize, FrameRecvError> {
        self.resume(buf);
        loop {
            let direct = match self.step(buf)? {
                Step::Frame(len) => return Ok(len),
                Step::Read => None,
                Step::Direct(missing) => Some(missing),
            };
            if !self.fill(buf, direct, deadline)? {
                self.suspend(buf);
                return Err(FrameRecvError::Timeout);
            }
        }
    }

    /// Takes a whole frame out of what is buffered, after reading the
    /// descriptor once if `read` (never waiting): the step of a receiver
    /// that serves many connections in turns. A frame begun and not
    /// finished is kept for the next call.
    pub(crate) fn try_frame(
        &mut self,
        buf: &mut Vec<u8>,
        read: bool,
    ) -> Result<Ready, FrameRecvError> {
        self.resume(buf);
        let mut read = read;
        loop {
            let direct = match self.step(buf)? {
                Step::Frame(len) => return Ok(Ready::Frame(len)),
                Step::Read => None,
                Step::Direct(missing) => Some(missing),
            };
            if self.eof {
                // Closed, and what it sent is taken: the rest of an
                // unfinished frame will never come.
                buf.clear();
                return Ok(Ready::Closed);
            }
            if !read {
                self.suspend(buf);
                return Ok(Ready::Empty);
            }
            read = false;
            match self.read_once(buf, direct).map_err(FrameRecvError::Os)? {
                Read::Data => {}
                Read::WouldBlock => {
                    self.suspend(buf);
                    return Ok(Ready::Empty);
                }
                Read::Eof => self.eof = true,
            }
        }
    }
}

/// What [`StreamRx::try_frame`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ready {
    /// A whole frame of this length is in the caller's buffer.
    Frame(usize),
    /// No whole frame yet.
    Empty,
    /// The peer closed and every frame it sent was taken.
    Closed,
}

/// What a `read` that returned `r` found.
fn read_kind(r: io::Result<usize>) -> io::Result<Read> {
    match r {
        Ok(0) => Ok(Read::Eof),
        Ok(_) => Ok(Read::Data),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Read::WouldBlock),
        Err(e) if disconnected(&e) => Ok(Read::Eof),
        Err(e) => Err(e),
    }
}

impl StreamRx {
    /// The descriptor (for an async wait's readiness).
    pub(crate) fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Whether nothing was read yet.
    pub(crate) fn is_fresh(&self) -> bool {
        self.decoder.is_fresh() && !self.eof
    }
}
