//! SIGINT, SIGTERM and SIGHUP stop `send` and `recv` cleanly: the handler
//! (signal-hook's) only records the signal, and every wait of theirs
//! looks at it at least every [`STEP`](crate::endpoint::STEP), so the
//! command removes what it created on its way out and exits 128+N. A
//! second signal ends the process at once, as if there were no handler.
//!
//! SIGPIPE stays ignored, as Rust leaves it: a write to a closed stdout
//! fails with `EPIPE`, which [`crate::output`] turns into a quiet exit.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use anyhow::Context as _;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// Stopped by signal N: status 128+N.
#[derive(Debug)]
pub struct Interrupted(pub i32);

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stopped by signal {}", self.0)
    }
}

impl std::error::Error for Interrupted {}

struct Flags {
    /// Set by the first signal; a second one then exits at once.
    stop: Arc<AtomicBool>,
    /// Which signal it was.
    which: Arc<AtomicUsize>,
}

static FLAGS: OnceLock<Flags> = OnceLock::new();

/// Installs the handlers (once).
pub fn catch() -> anyhow::Result<()> {
    let mut result = Ok(());
    FLAGS.get_or_init(|| {
        let flags = Flags {
            stop: Arc::new(AtomicBool::new(false)),
            which: Arc::new(AtomicUsize::new(0)),
        };
        result = (|| {
            for sig in [SIGINT, SIGTERM, SIGHUP] {
                // Registered first, so it runs first: on the first signal
                // `stop` is still false and nothing happens here.
                signal_hook::flag::register_conditional_shutdown(
                    sig,
                    128 + sig,
                    Arc::clone(&flags.stop),
                )?;
                signal_hook::flag::register_usize(sig, Arc::clone(&flags.which), sig as usize)?;
                signal_hook::flag::register(sig, Arc::clone(&flags.stop))?;
            }
            Ok::<_, std::io::Error>(())
        })()
        .context("installing the signal handlers");
        flags
    });
    result
}

static USR1: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Records SIGUSR1 (once installed), for [`take_usr1`].
pub fn catch_usr1() -> anyhow::Result<()> {
    let mut result = Ok(());
    USR1.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        result = signal_hook::flag::register(signal_hook::consts::SIGUSR1, Arc::clone(&flag))
            .map(drop)
            .context("installing the SIGUSR1 handler");
        flag
    });
    result
}

/// Whether SIGUSR1 came since the last call.
pub fn take_usr1() -> bool {
    // Relaxed: as in `check`.
    USR1.get().is_some_and(|f| f.swap(false, Ordering::Relaxed))
}

/// `Err(Interrupted)` once a signal came.
pub fn check() -> anyhow::Result<()> {
    let Some(flags) = FLAGS.get() else {
        return Ok(());
    };
    // Relaxed: flags set by this process's handler and read by its own
    // threads, which only need to see them eventually; nothing else is
    // published with them.
    if flags.stop.load(Ordering::Relaxed) {
        let sig = flags.which.load(Ordering::Relaxed);
        Err(Interrupted(sig as i32).into())
    } else {
        Ok(())
    }
}
