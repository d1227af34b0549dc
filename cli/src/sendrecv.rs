//! `shmlane send ADDR` and `shmlane recv ADDR`: lines of stdin become
//! messages, messages become lines of stdout, over every mechanism.
//!
//! Shared memory (`shm:NAME`, `file:PATH`): both commands open the segment
//! and create it if it is not there (an `AlreadyExists` race means the
//! other side won: open again), so either may start first. The ring is SPSC
//! (an existing MPMC ring of raw bytes is used as it is). The creator
//! unlinks the segment when it exits, which is safe once both sides have it
//! mapped, so each side waits for its peer before leaving:
//!
//! - `send`, at end of input, waits until a receiver has attached and the
//!   ring is empty (everything was taken), or fails if the receiver left
//!   with lines still in the ring;
//! - `recv` drains the ring until every sender that came has gone
//!   (`Disconnected`).
//!
//! An orphan (its creator and every participant gone, nothing buffered: what
//! a killed run leaves) is removed and created afresh. SIGINT, SIGTERM and
//! SIGHUP stop either command cleanly: what it created is removed.
//!
//! Frame transports (`fifo:`, `unix:`, `tcp:`, `mq:`, `signal:`): `recv`
//! binds (creates the FIFO, listens, creates the queue), `send` connects,
//! retrying until a receiver is there.

use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

use shmlane::ipc::{
    self, AttachError, Bytes, Channel, ConnectError, CreateError, OpenError, RecvMsgError, Role,
    SendMsgError,
};
use shmlane::transport::{self, Address};

/// Messages a created ring holds.
const DEFAULT_CAPACITY: usize = 4096;
/// The longest line (newline excluded) a created ring carries, by default.
const DEFAULT_SHM_LINE: usize = 4096;
/// Blocking waits are cut into steps this long, to notice a signal, a
/// timeout or a departed peer.
const STEP: Duration = Duration::from_millis(100);
/// Bytes read from stdin at once; the buffer grows for longer lines.
const READ_CHUNK: usize = 64 * 1024;
/// Bytes buffered for stdout before a write.
const WRITE_BUF: usize = 64 * 1024;

/// How a command ended, and so its exit status.
#[derive(Debug)]
enum Fail {
    /// Bad arguments: status 2.
    Usage(String),
    /// Anything that went wrong at run time: status 1.
    Runtime(String),
    /// Stopped by a signal: status 128 + the signal.
    Interrupted,
    /// stdout was closed (`| head`): a quiet success.
    StdoutClosed,
}

type Result<T> = std::result::Result<T, Fail>;

fn runtime(msg: impl std::fmt::Display) -> Fail {
    Fail::Runtime(msg.to_string())
}

/// Runs `shmlane send ARGS` (`send` true) or `shmlane recv ARGS`.
pub fn main(send: bool, args: &[String], usage: &str) -> ExitCode {
    let cmd = if send { "send" } else { "recv" };
    let result = parse(send, args).and_then(|opts| {
        // First thing, before any thread could exist: a `signal:` receiver
        // must block its signal in every thread.
        if !send && matches!(opts.addr, Address::Signal(_)) {
            transport::block_signal(&transport::Options::new()).map_err(runtime)?;
        }
        catch_signals();
        match (&opts.addr, send) {
            (Address::Shm(_) | Address::File(_), true) => send_shm(&opts),
            (Address::Shm(_) | Address::File(_), false) => recv_shm(&opts),
            (_, true) => send_frames(&opts),
            (_, false) => recv_frames(&opts),
        }
    });
    match result {
        Ok(()) | Err(Fail::StdoutClosed) => ExitCode::SUCCESS,
        Err(Fail::Usage(e)) => {
            eprintln!("shmlane {cmd}: {e}\n\n{usage}");
            ExitCode::from(2)
        }
        Err(Fail::Runtime(e)) => {
            eprintln!("shmlane {cmd}: {e}");
            ExitCode::FAILURE
        }
        Err(Fail::Interrupted) => ExitCode::from(128 + SIGNAL.load(Ordering::Relaxed) as u8),
    }
}

/// What the command line asked for.
#[derive(Debug)]
struct Opts {
    /// As written, for `ipc::Builder` and messages.
    text: String,
    addr: Address,
    max_line: Option<usize>,
    capacity: usize,
    timeout: Option<Duration>,
}

fn parse(send: bool, args: &[String]) -> Result<Opts> {
    let mut text = None;
    let mut max_line = None;
    let mut capacity = DEFAULT_CAPACITY;
    let mut timeout = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut number = |flag: &str| -> Result<u64> {
            let v = it
                .next()
                .ok_or_else(|| Fail::Usage(format!("{flag} needs a number")))?;
            v.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                Fail::Usage(format!("{flag} needs a positive whole number, not `{v}`"))
            })
        };
        match arg.as_str() {
            "--max-line" => max_line = Some(number("--max-line")? as usize),
            "--capacity" => capacity = number("--capacity")? as usize,
            "--timeout" => timeout = Some(Duration::from_secs(number("--timeout")?)),
            flag if flag.starts_with("--") => {
                return Err(Fail::Usage(format!("unknown option `{flag}`")))
            }
            a if text.is_none() => text = Some(a.to_owned()),
            a => return Err(Fail::Usage(format!("one address only, not also `{a}`"))),
        }
    }
    let text = text.ok_or_else(|| Fail::Usage("which address? e.g. shm:demo".into()))?;
    let addr = Address::parse(&text).map_err(|e| Fail::Usage(e.to_string()))?;
    match &addr {
        Address::Pipe => {
            return Err(Fail::Usage(
                "`pipe` joins a parent and the child it starts, not two shell commands: \
                 use a named pipe, as in `fifo:/tmp/demo`"
                    .into(),
            ))
        }
        Address::Signal(None) if send => {
            return Err(Fail::Usage(
                "`signal:` needs the receiver's process id, as in `signal:4242` \
                 (`shmlane recv signal:` prints it)"
                    .into(),
            ))
        }
        _ => {}
    }
    Ok(Opts {
        text,
        addr,
        max_line,
        capacity,
        timeout,
    })
}

// ---- signals ----------------------------------------------------------

/// Set by the handler; every wait looks at it at least every [`STEP`].
static STOP: AtomicBool = AtomicBool::new(false);
/// The signal that set [`STOP`].
static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    // Relaxed: flags read by the same process's main thread, which only
    // needs to see them eventually; nothing else is published with them.
    SIGNAL.store(sig, Ordering::Relaxed);
    STOP.store(true, Ordering::Relaxed);
}

/// SIGINT, SIGTERM and SIGHUP set [`STOP`] instead of killing the process,
/// so that it removes what it created on the way out. Without `SA_RESTART`
/// a blocked read of stdin returns `EINTR`; `SA_RESETHAND` lets a second
/// signal kill at once. A signal the shell set to be ignored stays ignored.
fn catch_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: all-zero is a valid `sigaction` (no handler, empty mask).
        let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
        act.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        act.sa_flags = libc::SA_RESETHAND;
        // SAFETY: as above.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: `act` and `old` are valid for reads and writes; the
        // handler only stores to atomics, which is async-signal-safe.
        unsafe {
            libc::sigemptyset(&mut act.sa_mask);
            if libc::sigaction(sig, &act, &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN {
                libc::sigaction(sig, &old, std::ptr::null_mut());
            }
        }
    }
}

fn check_stop() -> Result<()> {
    // Relaxed: see `on_signal`.
    if STOP.load(Ordering::Relaxed) {
        Err(Fail::Interrupted)
    } else {
        Ok(())
    }
}

/// Fails once `timeout` (from `start`) has passed, saying `what`.
fn check_timeout(opts: &Opts, start: Instant, what: &str) -> Result<()> {
    match opts.timeout {
        Some(t) if start.elapsed() >= t => Err(Fail::Runtime(format!(
            "{what} within {}s (--timeout)",
            t.as_secs()
        ))),
        _ => Ok(()),
    }
}

// ---- lines in and out -------------------------------------------------

/// Lines of stdin, without their newline, read in large chunks.
struct Lines {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    /// Lines returned so far.
    count: u64,
}

impl Lines {
    fn new() -> Self {
        Self {
            buf: vec![0; READ_CHUNK],
            start: 0,
            end: 0,
            eof: false,
            count: 0,
        }
    }

    /// The next line, at most `max` bytes; `None` at end of input. A last
    /// line without a newline counts as a line.
    fn next(&mut self, max: usize, input: &mut impl Read) -> Result<Option<&[u8]>> {
        let mut searched = 0;
        loop {
            let pending = &self.buf[self.start + searched..self.end];
            if let Some(i) = pending.iter().position(|&b| b == b'\n') {
                let line = self.start..self.start + searched + i;
                self.start = line.end + 1;
                return self.take(line, max).map(Some);
            }
            searched = self.end - self.start;
            if searched > max || (self.eof && searched > 0) {
                let line = self.start..self.end;
                self.start = self.end;
                return self.take(line, max).map(Some);
            }
            if self.eof {
                return Ok(None);
            }
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.buf.len() - self.end < READ_CHUNK / 2 {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            match input.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => check_stop()?,
                Err(e) => return Err(runtime(format!("reading stdin: {e}"))),
            }
        }
    }

    fn take(&mut self, line: std::ops::Range<usize>, max: usize) -> Result<&[u8]> {
        self.count += 1;
        if line.len() > max {
            return Err(Fail::Runtime(format!(
                "line {} is longer than the limit of {max} bytes",
                self.count
            )));
        }
        Ok(&self.buf[line])
    }
}

/// Buffered stdout; a closed pipe ends the command quietly.
struct Out<W: Write>(BufWriter<W>);

impl<W: Write> Out<W> {
    fn line(&mut self, bytes: &[u8]) -> Result<()> {
        let w = &mut self.0;
        w.write_all(bytes)
            .and_then(|()| w.write_all(b"\n"))
            .map_err(out_error)
    }

    fn flush(&mut self) -> Result<()> {
        self.0.flush().map_err(out_error)
    }
}

fn out_error(e: io::Error) -> Fail {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Fail::StdoutClosed
    } else {
        runtime(format!("writing stdout: {e}"))
    }
}

fn stdout() -> Out<io::StdoutLock<'static>> {
    Out(BufWriter::with_capacity(WRITE_BUF, io::stdout().lock()))
}

/// What a too-long line error adds, per address kind.
fn line_hint(opts: &Opts) -> &'static str {
    match opts.addr {
        Address::Shm(_) | Address::File(_) => {
            ": raise it with --max-line (the side that creates the segment sets it)"
        }
        Address::Mq(_) => {
            ": raise it with --max-line on the receiver, within the system's msgsize_max"
        }
        Address::Signal(_) => ": signal: carries at most 4096 bytes",
        _ => ": raise it with --max-line on both sides",
    }
}

fn with_hint(e: Fail, opts: &Opts) -> Fail {
    match e {
        Fail::Runtime(m) if m.starts_with("line ") => {
            Fail::Runtime(format!("{m}{}", line_hint(opts)))
        }
        e => e,
    }
}

// ---- shared memory ----------------------------------------------------

/// Opens the channel at `opts.text`, or creates it (SPSC) if it is not
/// there; an orphan is replaced.
fn open_or_create(opts: &Opts) -> Result<Channel<Bytes>> {
    let builder = ipc::Builder::new(&opts.text).map_err(|e| Fail::Usage(e.to_string()))?;
    let creating = builder
        .clone()
        .spsc()
        .capacity(opts.capacity)
        .message_size(opts.max_line.unwrap_or(DEFAULT_SHM_LINE));
    for _ in 0..100 {
        check_stop()?;
        match builder.open::<Bytes>() {
            Ok(chan) if is_orphan(&chan) => {
                if remove_orphan(opts, chan) {
                    eprintln!(
                        "shmlane: removed {}, left behind by a process that died",
                        opts.text
                    );
                }
            }
            Ok(chan) => return Ok(chan),
            Err(OpenError::NotFound(_)) => match creating.create::<Bytes>() {
                Ok(chan) => return Ok(chan),
                // The peer created it meanwhile: open theirs.
                Err(CreateError::AlreadyExists(_)) => {}
                Err(e) => return Err(runtime(e)),
            },
            Err(e) => return Err(runtime(e)),
        }
    }
    Err(runtime(format!(
        "{} keeps appearing and disappearing: is another program using it?",
        opts.text
    )))
}

/// Nobody holds it and nothing is in it: what a killed run leaves.
fn is_orphan(chan: &Channel<Bytes>) -> bool {
    let seg = chan.segment();
    !seg.creator_alive()
        && seg.live_count(Role::Sender) == 0
        && seg.live_count(Role::Receiver) == 0
        && seg.buffered() == 0
}

/// Unlinks an orphan if its name still names the file we opened (another
/// process may have replaced it already). Returns whether it did.
fn remove_orphan(opts: &Opts, chan: Channel<Bytes>) -> bool {
    let Ok(addr) = shmlane_shm::Address::parse(&opts.text) else {
        return false;
    };
    let path = match &addr {
        shmlane_shm::Address::Shm(name) => shmlane_shm::shm_path(name),
        shmlane_shm::Address::File(p) => p.clone(),
    };
    let same = match (
        chan.segment().file().metadata(),
        std::fs::symlink_metadata(&path),
    ) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    };
    drop(chan);
    same && shmlane_shm::unlink(&addr).is_ok()
}

fn attach_error(e: AttachError, opts: &Opts) -> Fail {
    runtime(format!("{}: {e}", opts.text))
}

fn send_shm(opts: &Opts) -> Result<()> {
    let start = Instant::now();
    let chan = open_or_create(opts)?;
    // SPSC when this command created the ring, or as the ring found is.
    let tx = chan.sender().map_err(|e| attach_error(e, opts))?;
    let seg = chan.segment();
    // The ring rounds its slots up to whole cache lines; the limit the user
    // asked for (or the one a segment opened here carries) is the smaller.
    let max = opts
        .max_line
        .map_or(chan.max_message_len(), |m| m.min(chan.max_message_len()));
    let mut lines = Lines::new();
    let mut input = io::stdin().lock();
    let mut sent = 0u64;
    while let Some(line) = lines
        .next(max, &mut input)
        .map_err(|e| with_hint(e, opts))?
    {
        loop {
            match tx.send_timeout(line, STEP) {
                Ok(()) => break,
                Err(SendMsgError::Timeout) => {
                    check_stop()?;
                    if !seg.ever_attached(Role::Receiver) {
                        check_timeout(opts, start, "no receiver came")?;
                    }
                }
                Err(SendMsgError::Disconnected) => {
                    return Err(runtime(format!(
                        "the receiver left after {sent} lines; line {} and later were not sent",
                        sent + 1
                    )))
                }
                Err(e) => return Err(runtime(e)),
            }
        }
        sent += 1;
    }
    // Delivered: a receiver came and took everything (the ring is empty).
    // Until then this process must stay: as the creator, leaving would
    // unlink the segment before a late receiver could open it.
    let done = Instant::now();
    let mut nap = Duration::from_micros(50);
    loop {
        check_stop()?;
        if seg.ever_attached(Role::Receiver) {
            if tx.is_empty() {
                return Ok(());
            }
            if seg.live_count(Role::Receiver) == 0 {
                return Err(runtime(format!(
                    "the receiver left with {} of the {sent} lines not taken",
                    tx.len()
                )));
            }
            check_timeout(opts, done, "the receiver did not take the last lines")?;
        } else {
            check_timeout(opts, start, "no receiver came")?;
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(10));
    }
}

fn recv_shm(opts: &Opts) -> Result<()> {
    let start = Instant::now();
    let chan = open_or_create(opts)?;
    let rx = chan.receiver().map_err(|e| attach_error(e, opts))?;
    let seg = chan.segment();
    let mut out = stdout();
    loop {
        // Take what is ready without waiting; flush before any wait, so an
        // interactive reader sees each line as it comes.
        match rx.try_recv_ref() {
            Ok(m) => {
                out.line(&m)?;
                continue;
            }
            Err(RecvMsgError::Empty) => {}
            Err(RecvMsgError::Disconnected) => break,
            Err(e) => return Err(runtime(e)),
        }
        // Nothing ready: flush before waiting, so that an interactive
        // reader sees each line as it comes.
        out.flush()?;
        match rx.recv_ref_timeout(STEP) {
            Ok(m) => out.line(&m)?,
            Err(RecvMsgError::Timeout) => {
                check_stop()?;
                if !seg.ever_attached(Role::Sender) {
                    check_timeout(opts, start, "no sender came")?;
                }
            }
            Err(RecvMsgError::Disconnected) => break,
            // Another receiver of an MPMC ring took it first.
            Err(RecvMsgError::Empty) => {}
            Err(e) => return Err(runtime(e)),
        }
    }
    out.flush()
}

// ---- frame transports -------------------------------------------------

/// The builder for a kernel transport's end: the line limit, if given,
/// is the largest frame.
fn frames_builder(opts: &Opts) -> Result<ipc::Builder> {
    let b = ipc::Builder::new(&opts.text).map_err(|e| Fail::Usage(e.to_string()))?;
    Ok(match opts.max_line {
        Some(n) => b.message_size(n),
        None => b,
    })
}

fn send_frames(opts: &Opts) -> Result<()> {
    let start = Instant::now();
    let builder = frames_builder(opts)?.open_timeout(STEP);
    let tx = loop {
        check_stop()?;
        match builder.sender::<Bytes>() {
            Ok(tx) => break tx,
            Err(ConnectError::Transport(transport::OpenError::NobodyListens { .. })) => {
                check_timeout(opts, start, "no receiver came")?
            }
            Err(e) => return Err(runtime(e)),
        }
    };
    let max = opts
        .max_line
        .unwrap_or(usize::MAX)
        .min(tx.max_message_len());
    let mut lines = Lines::new();
    let mut input = io::stdin().lock();
    let mut sent = 0u64;
    while let Some(line) = lines
        .next(max, &mut input)
        .map_err(|e| with_hint(e, opts))?
    {
        loop {
            match tx.send_timeout(line, STEP) {
                Ok(()) => break,
                Err(SendMsgError::Timeout) => check_stop()?,
                Err(SendMsgError::Disconnected) => {
                    return Err(runtime(format!(
                        "the receiver left after {sent} lines; line {} and later were not sent",
                        sent + 1
                    )))
                }
                Err(e) => return Err(runtime(e)),
            }
        }
        sent += 1;
    }
    // The kernel holds what was sent until the receiver reads it; dropping
    // finishes a frame partly written.
    drop(tx);
    Ok(())
}

fn recv_frames(opts: &Opts) -> Result<()> {
    let start = Instant::now();
    let rx = frames_builder(opts)?.receiver::<Bytes>().map_err(runtime)?;
    if matches!(opts.addr, Address::Signal(_) | Address::Tcp { port: 0, .. }) {
        if let Some(local) = rx.local_address() {
            eprintln!("shmlane recv: listening on {local}");
        }
    }
    let mut out = stdout();
    let mut got_any = false;
    loop {
        let got = match rx.try_recv_ref() {
            Err(RecvMsgError::Empty) => {
                out.flush()?;
                loop {
                    match rx.recv_ref_timeout(STEP) {
                        Err(RecvMsgError::Timeout) => {
                            check_stop()?;
                            if !got_any {
                                check_timeout(opts, start, "no sender came")?;
                            }
                        }
                        other => break other,
                    }
                }
            }
            other => other,
        };
        match got {
            Ok(msg) => {
                got_any = true;
                out.line(&msg)?;
            }
            Err(RecvMsgError::Disconnected) => break,
            Err(e) => return Err(runtime(e)),
        }
    }
    out.flush()
}
