//! `shmlane rm NAME...` and `shmlane rm --stale`.

use anyhow::bail;
use shmlane::segments::{self, Address};

use crate::output;

/// Remove segments, or every stale one (--stale).
///
/// Refuses any segment that a live process holds.
#[derive(clap::Args, Debug)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["targets", "stale"]))]
pub struct Args {
    /// Segments: shm:NAME, file:PATH, or NAME (taken as shm:NAME)
    #[arg(value_name = "NAME", value_parser = |s: &str| segments::parse(s))]
    targets: Vec<Address>,
    /// Remove every segment no live process holds
    #[arg(long, conflicts_with = "targets")]
    stale: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.stale {
        return rm_stale();
    }
    let mut failed = Vec::new();
    for addr in args.targets {
        match segments::remove(&addr) {
            Ok(()) => output::print(&format!("removed {addr}\n"))?,
            Err(e) => failed.push(e.to_string()),
        }
    }
    if !failed.is_empty() {
        bail!(failed.join("\n"));
    }
    Ok(())
}

fn rm_stale() -> anyhow::Result<()> {
    let removed = segments::remove_stale()?;
    let mut out = String::new();
    for (addr, why) in &removed {
        out.push_str(&format!("removed {addr} ({why})\n"));
    }
    out.push_str(&format!("{} stale segment(s) removed\n", removed.len()));
    output::print(&out)
}
