//! The receiver of a listening socket (`unix:`, `tcp:`): any number of
//! senders, each on its own connection, merged into one sequence of frames.
//!
//! Every accepted connection keeps its own [`StreamRx`] (its own decoder
//! and the part of a frame received so far), so a frame never mixes bytes
//! of two senders, and each sender's frames come in the order it sent
//! them. One `poll` waits on the listener and every connection at once.
//!
//! Fairness: connections are served in turns, one frame at a time, from
//! where the last receive stopped, so of the frames already read every
//! connection gets one before any gets a second. Each connection is read
//! at most once per `poll` (what it reads waits in its decoder's buffer),
//! and `poll` runs again once no read frame is left: a connection that
//! becomes readable waits at most one read buffer (64 KiB) of each other
//! connection's frames, however fast the others send.

use std::os::fd::OwnedFd;
use std::time::Instant;

use shmlane_sys::poll::{poll, PollFd, PollFlags};

use super::error::FrameRecvError;
use super::open;
use super::stream::{Ready, StreamRx};

/// One accepted sender.
#[derive(Debug)]
struct Conn {
    rx: StreamRx,
    /// `poll` said it has bytes (or closed) and it was not read since.
    readable: bool,
}

/// A listening socket and the senders it accepted.
#[derive(Debug)]
pub(crate) struct ListenRx {
    listener: OwnedFd,
    tcp: bool,
    max: usize,
    conns: Vec<Conn>,
    /// The connection whose turn is next.
    next: usize,
    /// `poll` said a connection waits to be accepted.
    pending: bool,
    /// Whether any sender connected yet.
    came: bool,
}

impl ListenRx {
    pub(crate) fn new(listener: OwnedFd, tcp: bool, max: usize) -> Self {
        Self {
            listener,
            tcp,
            max,
            conns: Vec::new(),
            next: 0,
            pending: false,
            came: false,
        }
    }

    pub(crate) fn max_frame(&self) -> usize {
        self.max
    }

    /// Receives the next frame of any sender; see
    /// [`FrameReceiver::recv`](super::FrameReceiver::recv).
    pub(crate) fn recv(
        &mut self,
        buf: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<usize, FrameRecvError> {
        loop {
            if let Some(len) = self.turns(buf)? {
                return Ok(len);
            }
            if std::mem::take(&mut self.pending) && self.accept_all()? {
                continue;
            }
            if self.came && self.conns.is_empty() {
                // A sender whose connect returned is in the backlog at
                // the latest: take it before saying everyone is gone.
                if self.accept_all()? {
                    continue;
                }
                buf.clear();
                return Err(FrameRecvError::Disconnected);
            }
            if !self.wait(deadline)? {
                buf.clear();
                return Err(FrameRecvError::Timeout);
            }
        }
    }

    /// Gives each connection one turn, from `next` on, until one yields a
    /// frame; drops the connections that closed. A connection that broke
    /// the framing is dropped and its error returned (the others go on).
    fn turns(&mut self, buf: &mut Vec<u8>) -> Result<Option<usize>, FrameRecvError> {
        let mut at = self.next;
        for _ in 0..self.conns.len() {
            if at >= self.conns.len() {
                at = 0;
            }
            let conn = &mut self.conns[at];
            let read = std::mem::take(&mut conn.readable);
            match conn.rx.try_frame(buf, read) {
                Ok(Ready::Frame(len)) => {
                    self.next = at + 1;
                    return Ok(Some(len));
                }
                Ok(Ready::Empty) => at += 1,
                // The next connection moves into `at`.
                Ok(Ready::Closed) => drop(self.conns.remove(at)),
                Err(e) => {
                    drop(self.conns.remove(at));
                    self.next = at;
                    buf.clear();
                    return Err(e);
                }
            }
        }
        self.next = at;
        Ok(None)
    }

    /// Accepts every connection waiting; whether there was one.
    fn accept_all(&mut self) -> Result<bool, FrameRecvError> {
        let mut any = false;
        while let Some(rx) =
            open::accept(&self.listener, self.tcp, self.max).map_err(FrameRecvError::Os)?
        {
            // Read it on its first turn: its first frames may be there.
            self.conns.push(Conn { rx, readable: true });
            self.came = true;
            any = true;
        }
        Ok(any)
    }

    /// What an async receive waits for: the listener and every
    /// connection.
    pub(crate) fn readiness(&self, r: &mut super::Readiness) -> std::io::Result<()> {
        r.watch(&self.listener, PollFlags::IN)?;
        for c in &self.conns {
            r.watch(c.rx.fd(), PollFlags::IN)?;
        }
        Ok(())
    }

    /// Waits until the listener or a connection is ready, or `deadline`;
    /// `Ok(false)` on timeout.
    fn wait(&mut self, deadline: Option<Instant>) -> Result<bool, FrameRecvError> {
        // Built for each wait (it borrows the descriptors); only a wait
        // that may block gets here.
        let mut fds = Vec::with_capacity(1 + self.conns.len());
        fds.push(PollFd::new(&self.listener, PollFlags::IN));
        fds.extend(self.conns.iter().map(|c| PollFd::new(&c.rx, PollFlags::IN)));
        if !poll(&mut fds, deadline).map_err(FrameRecvError::Os)? {
            return Ok(false);
        }
        // Bytes, or a close or error that the read reports. Collected
        // first: `fds` borrows the connections.
        let ready: Vec<bool> = fds.iter().map(|p| !p.revents().is_empty()).collect();
        self.pending = ready[0];
        for (c, r) in self.conns.iter_mut().zip(&ready[1..]) {
            c.readable = *r;
        }
        Ok(true)
    }
}
