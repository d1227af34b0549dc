//! `shmlane recv ADDR`: each message from ADDR becomes a line of stdout.

use std::time::Instant;

use anyhow::Context as _;
use shmlane::ipc::{Bytes, RecvMsgError, Role};
use shmlane::transport::{self, Address};

use crate::endpoint::{self, Opts, Target, WaitNote, STEP};
use crate::output::Out;
use crate::signals;

/// Each message from ADDR becomes a line of stdout.
///
/// For shm:/file: whichever of send and recv comes first creates an SPSC
/// ring and removes it when it exits, after its peer has it; for the other
/// transports recv creates (FIFO, socket, queue) and removes it. The
/// newline is added back; recv flushes whenever it would wait. It exits 0
/// when the sender is gone and all is printed, or when stdout is closed
/// (`| head`). A segment no live process holds and nothing is in (a killed
/// run's) is replaced. Ctrl-C removes what it created.
#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  shmlane recv shm:demo | wc -l")]
pub struct Args {
    /// Where to receive: shm:NAME, file:PATH, fifo:PATH, unix:PATH,
    /// mq:NAME, sysvmq:KEY, tcp:HOST:PORT or signal: (which prints its
    /// process id)
    #[arg(value_name = "ADDR", value_parser = |s: &str| endpoint::parse_target(s, true))]
    addr: Target,
    #[command(flatten)]
    options: endpoint::Options,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let opts = Opts::new(args.addr, args.options);
    // First thing, before any thread could exist: a `signal:` receiver
    // must block its signal in every thread.
    if matches!(opts.addr(), Address::Signal(_)) {
        transport::block_signal(&transport::Options::new())
            .context("blocking the signal transport's signal")?;
    }
    signals::catch()?;
    match opts.addr() {
        Address::Shm(_) | Address::File(_) | Address::Sysv(_) => recv_shm(&opts),
        _ => recv_frames(&opts),
    }
}

fn recv_shm(opts: &Opts) -> anyhow::Result<()> {
    let start = Instant::now();
    let chan = endpoint::open_or_create(opts)?;
    let rx = chan.receiver().with_context(|| opts.text().to_owned())?;
    let seg = chan.segment();
    let mut out = Out::stdout();
    let mut note = WaitNote::new();
    loop {
        // Take what is ready without waiting.
        match rx.try_recv_ref() {
            Ok(m) => {
                out.line(&m)?;
                continue;
            }
            Err(RecvMsgError::Empty) => {}
            Err(RecvMsgError::Disconnected) => break,
            Err(e) => return Err(e.into()),
        }
        // Nothing ready: flush before waiting, so that an interactive
        // reader sees each line as it comes.
        out.flush()?;
        match rx.recv_ref_timeout(STEP) {
            Ok(m) => out.line(&m)?,
            Err(RecvMsgError::Timeout) => {
                signals::check()?;
                if !seg.ever_attached(Role::Sender) {
                    note.tick("recv", opts, "sender");
                    endpoint::check_timeout(opts, start, "no sender came")?;
                }
            }
            Err(RecvMsgError::Disconnected) => break,
            // Another receiver of an MPMC ring took it first.
            Err(RecvMsgError::Empty) => {}
            Err(e) => return Err(e.into()),
        }
    }
    out.flush()
}

fn recv_frames(opts: &Opts) -> anyhow::Result<()> {
    let start = Instant::now();
    let rx = endpoint::frames_builder(opts)?
        .receiver::<Bytes>()
        .with_context(|| format!("listening on {}", opts.text()))?;
    if matches!(
        opts.addr(),
        Address::Signal(_) | Address::Tcp { port: 0, .. }
    ) {
        if let Some(local) = rx.local_address() {
            eprintln!("shmlane recv: listening on {local}");
        }
    }
    let mut out = Out::stdout();
    let mut got_any = false;
    loop {
        let got = match rx.try_recv_ref() {
            Err(RecvMsgError::Empty) => {
                out.flush()?;
                loop {
                    match rx.recv_ref_timeout(STEP) {
                        Err(RecvMsgError::Timeout) => {
                            signals::check()?;
                            if !got_any {
                                endpoint::check_timeout(opts, start, "no sender came")?;
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
            Err(e) => return Err(e.into()),
        }
    }
    out.flush()
}
