//! The peer process: this executable re-run, echoing and sinking.

use std::time::{Duration, Instant};

use shmlane::ipc::{Builder, Bytes, Trust};
use shmlane::transport::{self, Address, FrameReceiver, FrameSender};

use super::cell::{consume, echo, frame_options, recv, send, Rx, Tx};
use super::{Kind, END, PEER_RX_ENV, PEER_TX_ENV};

// ---------------------------------------------------------------------
// The peer process.

/// Runs the peer side of one cell (`args`: `[kind, size]`, the addresses
/// in the environment). Called by [`crate::ipc::maybe_run_peer`].
pub fn run_peer(kind: &str, size: &str) {
    // Die with the parent, whatever kills it (best effort).
    let _ = shmlane_sys::process::die_with_parent();
    let result = Kind::parse(kind)
        .ok_or_else(|| format!("unknown transport {kind:?}"))
        .and_then(|k| {
            let size = size.parse().map_err(|_| format!("bad size {size:?}"))?;
            peer(k, size)
        });
    if let Err(e) = result {
        eprintln!("bench peer ({kind}, {size} B): {e}");
        std::process::exit(1);
    }
}

pub(super) fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} not set"))
}

pub(super) fn peer(kind: Kind, size: usize) -> Result<(), String> {
    let (rx_addr, tx_addr) = (env(PEER_RX_ENV)?, env(PEER_TX_ENV)?);
    let opts = frame_options(kind, size);
    let (rx, tx, _chans) = match kind {
        Kind::Shm | Kind::Sysv => {
            let open = |addr: &str| {
                Builder::new(addr)
                    .map_err(|e| e.to_string())?
                    .open::<Bytes>()
                    .map_err(|e| format!("open {addr}: {e}"))
            };
            let (a, b) = (open(&rx_addr)?, open(&tx_addr)?);
            let rx = a.receiver().map_err(|e| e.to_string())?;
            let tx = b.sender().map_err(|e| e.to_string())?;
            println!("ready -");
            (rx, tx, Some((a, b)))
        }
        Kind::Pipe => {
            let fd = |s: &str| s.parse::<i32>().map_err(|_| format!("bad fd {s:?}"));
            let (rfd, wfd) = (fd(&rx_addr)?, fd(&tx_addr)?);
            // SAFETY: the parent passed these two descriptors to this
            // process for this purpose only; nothing else here owns them.
            let rx = unsafe { FrameReceiver::from_inherited_fd(rfd) }.map_err(|e| e.to_string())?;
            // SAFETY: as above.
            let tx = unsafe { FrameSender::from_inherited_fd(wfd) }.map_err(|e| e.to_string())?;
            println!("ready -");
            (
                Rx::from_frames(rx, Trust::validate()),
                Tx::from_frames(tx),
                None,
            )
        }
        _ => {
            if kind == Kind::Signal {
                transport::block_signal(&opts).map_err(|e| e.to_string())?;
            }
            #[allow(unused_mut)]
            let (mut rx_opts, mut tx_opts) = (opts.clone(), opts.clone());
            #[cfg(feature = "zenoh")]
            if kind == Kind::Zenoh {
                let ports = env(super::cell::ZENOH_PORTS_ENV)?;
                let (listen, connect) = ports
                    .split_once(' ')
                    .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
                    .ok_or_else(|| format!("bad zenoh ports {ports:?}"))?;
                rx_opts = rx_opts.zenoh_config(shmlane::zenoh::loopback_config(Some(listen), None));
                tx_opts =
                    tx_opts.zenoh_config(shmlane::zenoh::loopback_config(None, Some(connect)));
            }
            let addr = Address::parse(&rx_addr).map_err(|e| e.to_string())?;
            let rx =
                FrameReceiver::bind(&addr, &rx_opts).map_err(|e| format!("bind {addr}: {e}"))?;
            println!("ready {}", rx.local_address());
            let to = Address::parse(&tx_addr).map_err(|e| e.to_string())?;
            let tx =
                FrameSender::connect(&to, &tx_opts).map_err(|e| format!("connect {to}: {e}"))?;
            (
                Rx::from_frames(rx, Trust::validate()),
                Tx::from_frames(tx),
                None,
            )
        }
    };
    // The peer waits as long as the parent wants: the parent's budget is
    // not known here, and a parent that dies disconnects (or kills) us.
    let far = || Instant::now() + Duration::from_secs(3600);
    // Round trips: echo until the end marker (echoed too).
    loop {
        if echo(&rx, &tx, size, far())? == END {
            break;
        }
    }
    // Throughput: read everything until the end marker, then acknowledge.
    let mut count = 0u64;
    let mut payload = vec![0u8; size];
    let deadline = far();
    loop {
        let (tag, _) = recv(&rx, size, deadline, consume)?;
        if tag == END {
            break;
        }
        if tag != count {
            return Err(format!("message {tag} arrived as number {count}"));
        }
        count += 1;
    }
    send(&tx, &mut payload, END, far())?;
    println!("done {count}");
    // Let the parent drop first (it drains our close), so nothing of ours
    // is left queued in it; its sender's close is our cue to leave.
    let _ = recv(&rx, size, far(), |_| ());
    Ok(())
}
