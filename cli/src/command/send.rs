//! `shmlane send ADDR`: each line of stdin becomes a message to ADDR.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use shmlane::ipc::{self, ConnectError, Role, SendMsgError};
use shmlane::transport::{self, Address};
use shmlane_sys::errno::Errno;

use crate::endpoint::{self, next_line, Lines, Opts, Target, WaitNote, STEP};
use crate::signals;

/// Each line of stdin becomes a message to ADDR.
///
/// Start send and recv in either order: for shm:/file:, whichever comes
/// first creates an SPSC ring and removes it when it exits, after its peer
/// has it; for the others recv creates (FIFO, socket, queue) and send
/// waits for it, or fails at once where no receiver can ever come (a
/// missing directory, a process that does not exist). The newline is
/// stripped (an empty line is an empty message). send exits 0 once the
/// receiver has taken every line (shm:/file:) or the kernel holds them
/// (others), 1 if the receiver left first. Ctrl-C removes what it created.
#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  seq 1 1000000 | shmlane send shm:demo")]
pub struct Args {
    /// Where to send: shm:NAME, file:PATH, fifo:PATH, unix:PATH, mq:NAME,
    /// sysvmq:KEY, tcp:HOST:PORT or signal:PID
    #[arg(value_name = "ADDR", value_parser = |s: &str| endpoint::parse_target(s, false))]
    addr: Target,
    #[command(flatten)]
    options: endpoint::Options,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let opts = Opts::new(args.addr, args.options);
    signals::catch()?;
    match opts.addr() {
        Address::Shm(_) | Address::File(_) | Address::Sysv(_) => send_shm(&opts),
        _ => send_frames(&opts),
    }
}

fn receiver_left(sent: u64) -> anyhow::Error {
    anyhow!(
        "the receiver left after {sent} lines; line {} and later were not sent",
        sent + 1
    )
}

fn send_shm(opts: &Opts) -> anyhow::Result<()> {
    let start = Instant::now();
    let chan = endpoint::open_or_create(opts)?;
    // SPSC when this command created the ring, or as the ring found is.
    let tx = chan.sender().with_context(|| opts.text().to_owned())?;
    let seg = chan.segment();
    // The ring rounds its slots up to whole cache lines; the limit the user
    // asked for (or the one a segment opened here carries) is the smaller.
    let max = opts
        .max_line
        .map_or(chan.max_message_len(), |m| m.min(chan.max_message_len()));
    let mut lines = Lines::stdin();
    let mut note = WaitNote::new();
    let mut sent = 0u64;
    while let Some(line) = next_line(&mut lines, max, opts)? {
        loop {
            match tx.send_timeout(line, STEP) {
                Ok(()) => break,
                Err(SendMsgError::Timeout) => {
                    signals::check()?;
                    if !seg.ever_attached(Role::Receiver) {
                        note.tick("send", opts, "receiver");
                        endpoint::check_timeout(opts, start, "no receiver came")?;
                    }
                }
                Err(SendMsgError::Disconnected) => return Err(receiver_left(sent)),
                Err(e) => return Err(e.into()),
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
        signals::check()?;
        if seg.ever_attached(Role::Receiver) {
            if tx.is_empty() {
                return Ok(());
            }
            // The scan's Acquire makes a receiver's last takes visible: one
            // that took the last line and left between the two looks has
            // delivered everything.
            if seg.live_count(Role::Receiver) == 0 && !tx.is_empty() {
                bail!(
                    "the receiver left with {} of the {sent} lines not taken",
                    tx.len()
                );
            }
            endpoint::check_timeout(opts, done, "the receiver did not take the last lines")?;
        } else {
            note.tick("send", opts, "receiver");
            endpoint::check_timeout(opts, start, "no receiver came")?;
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(10));
    }
}

/// Why no receiver can ever come to `addr`, if none can: a socket or FIFO
/// in a directory that does not exist, or a process that does not.
fn never_comes_up(addr: &Address) -> Option<String> {
    match addr {
        Address::Fifo(path) | Address::Unix(path) => {
            let dir = match path.parent() {
                Some(d) if d.as_os_str().is_empty() => std::path::Path::new("."),
                Some(d) => d,
                None => return None,
            };
            (!dir.is_dir()).then(|| {
                format!(
                    "no receiver can ever listen at {addr}: the directory {} does not exist",
                    dir.display()
                )
            })
        }
        Address::Signal(Some(pid)) => {
            // Signal 0 sends nothing; it only asks whether the process
            // exists.
            let gone = shmlane_sys::process::check_kill(*pid)
                .is_err_and(|e| Errno::from_io_error(&e) == Some(Errno::SRCH));
            gone.then(|| format!("no receiver can ever listen at {addr}: no process has id {pid}"))
        }
        _ => None,
    }
}

fn send_frames(opts: &Opts) -> anyhow::Result<()> {
    let start = Instant::now();
    let builder = endpoint::frames_builder(opts)?.open_timeout(STEP);
    let mut note = WaitNote::new();
    let tx = loop {
        signals::check()?;
        if let Some(why) = never_comes_up(opts.addr()) {
            bail!(why);
        }
        match builder.sender::<ipc::Bytes>() {
            Ok(tx) => break tx,
            Err(ConnectError::Transport(transport::OpenError::NobodyListens { .. })) => {
                note.tick("send", opts, "receiver");
                endpoint::check_timeout(opts, start, "no receiver came")?;
                // `signal:` answers at once while the process is missing.
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e.into()),
        }
    };
    let max = opts
        .max_line
        .unwrap_or(usize::MAX)
        .min(tx.max_message_len());
    let mut lines = Lines::stdin();
    let mut sent = 0u64;
    while let Some(line) = next_line(&mut lines, max, opts)? {
        loop {
            match tx.send_timeout(line, STEP) {
                Ok(()) => break,
                Err(SendMsgError::Timeout) => signals::check()?,
                Err(SendMsgError::Disconnected) => return Err(receiver_left(sent)),
                Err(e) => return Err(e.into()),
            }
        }
        sent += 1;
    }
    // The kernel holds what was sent until the receiver reads it; dropping
    // finishes a frame partly written.
    drop(tx);
    Ok(())
}
