//! `shmlane bridge FROM TO`: every message from one address to another.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use shmlane::ipc::{Bytes, Channel, Receiver, RecvMsgError, SendMsgError, Sender};
use shmlane::transport::{self, Address};

use crate::endpoint::{self, Opts, Target, STEP};
use crate::signals;

/// Forward every message from FROM to TO, until FROM's senders are gone.
///
/// Any pair of addresses: shm:, file:, sysv: rings (opened, or created as
/// SPSC rings of --max-message bytes), and every kernel transport (FROM
/// binds, TO connects), zenoh: too when built with the `zenoh` feature. A
/// full TO slows FROM: nothing is dropped unless --lossy is given. The
/// counts (forwarded, dropped) go to stderr on SIGUSR1 and at exit.
/// Ctrl-C stops taking from FROM and delivers the message in hand first
/// (a second Ctrl-C ends at once). It exits 0 once FROM's senders are
/// gone and everything is forwarded, 1 if TO's receivers went first.
///
/// Messages go as bytes: rings must carry bytes (as `shmlane send` and
/// `recv` make them); the receiving end checks each message as it would
/// from a local sender.
#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  \
    shmlane bridge shm:orders zenoh:factory/orders    # on host A\n  \
    shmlane bridge zenoh:factory/orders shm:orders    # on host B")]
pub struct Args {
    /// Where messages come from
    #[arg(value_name = "FROM", value_parser = |s: &str| endpoint::parse_target(s, true))]
    from: Target,
    /// Where they go
    #[arg(value_name = "TO", value_parser = |s: &str| endpoint::parse_target(s, false))]
    to: Target,
    /// Drop a message TO has no room for (counted) instead of waiting (not
    /// for a zenoh: TO, whose sends wait inside Zenoh)
    #[arg(long)]
    lossy: bool,
    /// Largest message (rings this command creates hold this much; the
    /// other transports' default otherwise)
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    max_message: Option<u64>,
    /// Messages a ring this command creates holds
    #[arg(long, value_name = "N", default_value_t = endpoint::DEFAULT_CAPACITY as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    capacity: u64,
    /// Give up (exit 1) when TO has no receiver within SECS (default 60)
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    timeout: Option<u64>,
}

fn is_ring(addr: &Address) -> bool {
    matches!(addr, Address::Shm(_) | Address::File(_) | Address::Sysv(_))
}

/// The counts, as printed.
struct Counts {
    forwarded: u64,
    dropped: u64,
}

impl Counts {
    fn say(&self, from: &str, to: &str) {
        eprintln!(
            "shmlane bridge {from} -> {to}: {} forwarded, {} dropped",
            self.forwarded, self.dropped
        );
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(args.timeout.unwrap_or(60));
    let opts = |target: Target, timeout| Opts {
        target,
        max_line: args.max_message.map(|n| n as usize),
        capacity: args.capacity as usize,
        timeout,
    };
    // The source may stay quiet as long as it likes; only TO's receiver
    // is waited for within the timeout.
    let (from, to) = (opts(args.from, None), opts(args.to, Some(timeout)));
    if matches!(from.addr(), Address::Signal(_)) {
        transport::block_signal(&transport::Options::new())
            .context("blocking the signal transport's signal")?;
    }
    signals::catch()?;
    signals::catch_usr1()?;
    let mut chans: Vec<Channel<Bytes>> = Vec::new();
    let rx: Receiver<Bytes> = if is_ring(from.addr()) {
        let chan = endpoint::open_or_create(&from)?;
        let rx = chan.receiver().with_context(|| from.text().to_owned())?;
        chans.push(chan);
        rx
    } else {
        endpoint::frames_builder(&from)?
            .receiver::<Bytes>()
            .with_context(|| format!("listening on {}", from.text()))?
    };
    if let Some(local) = rx.local_address() {
        if local != from.text() {
            eprintln!("shmlane bridge: listening on {local}");
        }
    }
    let tx: Sender<Bytes> = if is_ring(to.addr()) {
        let chan = endpoint::open_or_create(&to)?;
        let tx = chan.sender().with_context(|| to.text().to_owned())?;
        chans.push(chan);
        tx
    } else {
        endpoint::frames_builder(&to)?
            .open_timeout(timeout)
            .sender::<Bytes>()
            .with_context(|| format!("connecting to {}", to.text()))?
    };
    eprintln!(
        "shmlane bridge: forwarding {} -> {}",
        from.text(),
        to.text()
    );
    let mut counts = Counts {
        forwarded: 0,
        dropped: 0,
    };
    let result = forward(&rx, &tx, args.lossy, &mut counts, &from, &to);
    counts.say(from.text(), to.text());
    result
}

fn forward(
    rx: &Receiver<Bytes>,
    tx: &Sender<Bytes>,
    lossy: bool,
    counts: &mut Counts,
    from: &Opts,
    to: &Opts,
) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        if signals::take_usr1() {
            counts.say(from.text(), to.text());
        }
        // Stop taking once a signal came; nothing is in hand here.
        signals::check()?;
        let held = match rx.recv_ref_timeout(STEP) {
            Ok(m) => m,
            Err(RecvMsgError::Timeout | RecvMsgError::Empty) => {
                if counts.forwarded == 0 && counts.dropped == 0 {
                    endpoint::check_timeout(from, start, "no sender came")?;
                }
                continue;
            }
            Err(RecvMsgError::Disconnected) => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("receiving from {}", from.text())),
        };
        let msg: &[u8] = &held;
        if lossy {
            match tx.try_send(msg) {
                Ok(()) => counts.forwarded += 1,
                Err(SendMsgError::Full) => counts.dropped += 1,
                Err(e) => return delivery_failed(e, to),
            }
            continue;
        }
        // In hand: delivered before anything else, signals included.
        loop {
            match tx.send_timeout(msg, STEP) {
                Ok(()) => {
                    counts.forwarded += 1;
                    break;
                }
                Err(SendMsgError::Timeout | SendMsgError::Full) => {
                    if signals::take_usr1() {
                        counts.say(from.text(), to.text());
                    }
                }
                Err(e) => return delivery_failed(e, to),
            }
        }
    }
}

fn delivery_failed(e: SendMsgError, to: &Opts) -> anyhow::Result<()> {
    if e.is_disconnected() {
        bail!(
            "{}: its receivers are gone; one message taken from the source was not delivered",
            to.text()
        )
    }
    Err(e).with_context(|| format!("sending to {}", to.text()))
}
