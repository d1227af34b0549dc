//! What `send` and `recv` share: the address and options, lines of stdin,
//! opening or creating a shared-memory ring, and the limits on waiting.
//!
//! Shared memory (`shm:NAME`, `file:PATH`): both commands open the segment
//! and create it if it is not there (an `AlreadyExists` race means the
//! other side won: open again), so either may start first. The ring is SPSC
//! (an existing MPMC ring of raw bytes is used as it is). The creator
//! unlinks the segment when it exits, which is safe once both sides have it
//! mapped, so each side waits for its peer before leaving (see each
//! command). An orphan (its creator and every participant gone, nothing
//! buffered: what a killed run leaves) is removed and created afresh.
//!
//! Frame transports (`fifo:`, `unix:`, `tcp:`, `mq:`, `sysvmq:`, `signal:`): `recv`
//! binds (creates the FIFO, listens, creates the queue), `send` connects,
//! retrying until a receiver is there, or failing at once where none ever
//! can be (a missing directory, a process that does not exist).

use std::io::{self, Read};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use shmlane::ipc::{self, Bytes, Channel, CreateError, OpenError};
use shmlane::segments;
use shmlane::transport::Address;

use crate::signals;

/// Messages a created ring holds.
pub const DEFAULT_CAPACITY: usize = 4096;
/// The longest line (newline excluded) a created ring carries, by default.
pub const DEFAULT_SHM_LINE: usize = 4096;
/// Blocking waits are cut into steps this long, to notice a signal, a
/// timeout or a departed peer.
pub const STEP: Duration = Duration::from_millis(100);
/// Bytes read from stdin at once; the buffer grows for longer lines.
const READ_CHUNK: usize = 64 * 1024;

/// An address as written and as parsed.
#[derive(Debug, Clone)]
pub struct Target {
    /// As written, for `ipc::Builder` and messages.
    pub text: String,
    /// Parsed.
    pub addr: Address,
}

/// The address of `send` (`receiver` false) or `recv`, for clap: what
/// cannot work between two shell commands is a usage error.
pub fn parse_target(text: &str, receiver: bool) -> Result<Target, String> {
    let addr = Address::parse(text).map_err(|e| e.to_string())?;
    match &addr {
        Address::Pipe => {
            return Err(
                "`pipe` joins a parent and the child it starts, not two shell \
                        commands: use a named pipe, as in `fifo:/tmp/demo`"
                    .into(),
            )
        }
        Address::Signal(None) if !receiver => {
            return Err(
                "`signal:` needs the receiver's process id, as in `signal:4242` \
                        (`shmlane recv signal:` prints it)"
                    .into(),
            )
        }
        _ => {}
    }
    Ok(Target {
        text: text.to_owned(),
        addr,
    })
}

/// The options `send` and `recv` share.
#[derive(clap::Args, Debug)]
pub struct Options {
    /// Longest line, newline excluded (shm:/file: default 4096; others: what
    /// the transport carries: 1 MiB, mq: and sysvmq: 8 KiB, signal: 4 KiB)
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_line: Option<u64>,
    /// Messages a created shm:/file: ring holds (the segment takes about
    /// capacity x max-line bytes)
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CAPACITY as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub capacity: u64,
    /// Give up (exit 1) when no peer came within SECS (recv on the non-shm
    /// transports: no line); send: also when the last lines are not taken
    /// within SECS of end of input
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,
}

/// One end's address and options.
#[derive(Debug)]
pub struct Opts {
    pub target: Target,
    pub max_line: Option<usize>,
    pub capacity: usize,
    pub timeout: Option<Duration>,
}

impl Opts {
    pub fn new(target: Target, o: Options) -> Self {
        Self {
            target,
            max_line: o.max_line.map(|n| n as usize),
            capacity: o.capacity as usize,
            timeout: o.timeout.map(Duration::from_secs),
        }
    }

    pub fn text(&self) -> &str {
        &self.target.text
    }

    pub fn addr(&self) -> &Address {
        &self.target.addr
    }
}

/// Fails once `opts.timeout` (from `start`) has passed, saying `what`.
pub fn check_timeout(opts: &Opts, start: Instant, what: &str) -> anyhow::Result<()> {
    match opts.timeout {
        Some(t) if start.elapsed() >= t => bail!("{what} within {}s (--timeout)", t.as_secs()),
        _ => Ok(()),
    }
}

// ---- lines of stdin ---------------------------------------------------

/// Lines of stdin, without their newline, read in large chunks by a
/// thread of their own, so that a signal is noticed within a [`STEP`] even
/// while stdin has nothing to give (the handler restarts a blocked `read`).
pub struct Lines {
    chunks: mpsc::Receiver<io::Result<Vec<u8>>>,
    buf: Vec<u8>,
    start: usize,
    eof: bool,
    /// Lines returned so far.
    count: u64,
}

/// Too long a line: `main` adds what to do about it.
#[derive(Debug)]
pub struct LineTooLong {
    pub line: u64,
    pub max: usize,
}

impl std::fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "line {} is longer than the limit of {} bytes",
            self.line, self.max
        )
    }
}

impl std::error::Error for LineTooLong {}

impl Lines {
    pub fn stdin() -> Self {
        let (tx, rx) = mpsc::sync_channel(4);
        std::thread::spawn(move || {
            let mut input = io::stdin().lock();
            loop {
                let mut chunk = vec![0; READ_CHUNK];
                let sent = match input.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => {
                        chunk.truncate(n);
                        tx.send(Ok(chunk))
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => tx.send(Err(e)),
                };
                if sent.is_err() {
                    break;
                }
            }
        });
        Self {
            chunks: rx,
            buf: Vec::new(),
            start: 0,
            eof: false,
            count: 0,
        }
    }

    /// The next line, at most `max` bytes; `None` at end of input. A last
    /// line without a newline counts as a line.
    pub fn next(&mut self, max: usize) -> anyhow::Result<Option<&[u8]>> {
        let mut searched = 0;
        loop {
            let pending = &self.buf[self.start + searched..];
            if let Some(i) = pending.iter().position(|&b| b == b'\n') {
                let line = self.start..self.start + searched + i;
                self.start = line.end + 1;
                return self.take(line, max).map(Some);
            }
            searched = self.buf.len() - self.start;
            if searched > max || (self.eof && searched > 0) {
                let line = self.start..self.buf.len();
                self.start = self.buf.len();
                return self.take(line, max).map(Some);
            }
            if self.eof {
                return Ok(None);
            }
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            match self.chunks.recv_timeout(STEP) {
                Ok(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Ok(Err(e)) => return Err(anyhow::Error::new(e).context("reading stdin")),
                Err(mpsc::RecvTimeoutError::Timeout) => signals::check()?,
                Err(mpsc::RecvTimeoutError::Disconnected) => self.eof = true,
            }
        }
    }

    fn take(&mut self, line: std::ops::Range<usize>, max: usize) -> anyhow::Result<&[u8]> {
        self.count += 1;
        if line.len() > max {
            return Err(LineTooLong {
                line: self.count,
                max,
            }
            .into());
        }
        Ok(&self.buf[line])
    }
}

/// What a too-long line error adds, per address kind.
fn line_hint(addr: &Address) -> &'static str {
    match addr {
        Address::Shm(_) | Address::File(_) | Address::Sysv(_) => {
            "raise it with --max-line (the side that creates the segment sets it)"
        }
        Address::Mq(_) => {
            "raise it with --max-line on the receiver, within the system's msgsize_max"
        }
        Address::SysvMq(_) => {
            "raise it with --max-line on the receiver, within the system's kernel.msgmax"
        }
        Address::Signal(_) => "signal: carries at most 4096 bytes",
        _ => "raise it with --max-line on both sides",
    }
}

/// The next line of `lines`, a too-long one reported with what to do.
pub fn next_line<'a>(
    lines: &'a mut Lines,
    max: usize,
    opts: &Opts,
) -> anyhow::Result<Option<&'a [u8]>> {
    lines.next(max).map_err(|e| {
        if e.is::<LineTooLong>() {
            anyhow!("{e}: {}", line_hint(opts.addr()))
        } else {
            e
        }
    })
}

// ---- frame transports ------------------------------------------------

/// The builder for a kernel transport's end: the line limit, if given,
/// is the largest frame.
pub fn frames_builder(opts: &Opts) -> anyhow::Result<ipc::Builder> {
    let b = ipc::Builder::new(opts.text())?;
    Ok(match opts.max_line {
        Some(n) => b.message_size(n),
        None => b,
    })
}

// ---- shared memory ----------------------------------------------------

/// Opens the channel at `opts`'s address, or creates it (SPSC) if it is
/// not there; an orphan is replaced.
pub fn open_or_create(opts: &Opts) -> anyhow::Result<Channel<Bytes>> {
    let builder = ipc::Builder::new(opts.text())?;
    let creating = builder
        .clone()
        .spsc()
        .capacity(opts.capacity)
        .message_size(opts.max_line.unwrap_or(DEFAULT_SHM_LINE));
    for _ in 0..100 {
        signals::check()?;
        match builder.open::<Bytes>() {
            Ok(chan) if segments::is_orphan(&chan) => {
                if segments::remove_orphan(chan) {
                    eprintln!(
                        "shmlane: removed {}, left behind by a process that died",
                        opts.text()
                    );
                }
            }
            Ok(chan) => return Ok(chan),
            Err(OpenError::NotFound(_)) => match creating.create::<Bytes>() {
                Ok(chan) => return Ok(chan),
                // The peer created it meanwhile: open theirs.
                Err(CreateError::AlreadyExists(_)) => {}
                Err(e) => return Err(e).with_context(|| format!("creating {}", opts.text())),
            },
            Err(e) => return Err(e).with_context(|| format!("opening {}", opts.text())),
        }
    }
    bail!(
        "{} keeps appearing and disappearing: is another program using it?",
        opts.text()
    )
}

/// Says once, on a terminal, that the command is waiting for its peer.
pub struct WaitNote {
    since: Instant,
    said: bool,
}

impl WaitNote {
    pub fn new() -> Self {
        use std::io::IsTerminal;
        Self {
            since: Instant::now(),
            said: !io::stderr().is_terminal(),
        }
    }

    pub fn tick(&mut self, cmd: &str, opts: &Opts, peer: &str) {
        if !self.said && self.since.elapsed() >= Duration::from_secs(1) {
            self.said = true;
            eprintln!(
                "shmlane {cmd}: waiting for a {peer} on {} (Ctrl-C stops, --timeout SECS gives up)",
                opts.text()
            );
        }
    }
}
