//! `shmlane rm NAME...` and `shmlane rm --stale`.

use anyhow::bail;
use shmlane_shm::Address;

use crate::inventory::{parse_target, scan, Summary, Verdict};
use crate::output;

/// Remove segments, or every stale one (--stale).
///
/// Refuses any segment that a live process holds.
#[derive(clap::Args, Debug)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["targets", "stale"]))]
pub struct Args {
    /// Segments: shm:NAME, file:PATH, or NAME (taken as shm:NAME)
    #[arg(value_name = "NAME", value_parser = parse_target)]
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
        let row = Summary::inspect(addr.clone());
        if let (None, Err(e)) = (&row.staging, &row.seg) {
            if !matches!(row.verdict(), Verdict::Stale(_)) {
                failed.push(format!("{addr}: {e}"));
                continue;
            }
        }
        if matches!(row.verdict(), Verdict::Live) {
            failed.push(format!("{addr}: in use by a live process; stop it first"));
            continue;
        }
        drop(row);
        match shmlane_shm::unlink(&addr) {
            Ok(()) => output::print(&format!("removed {addr}\n"))?,
            Err(e) => failed.push(format!("{addr}: {e}")),
        }
    }
    if !failed.is_empty() {
        bail!(failed.join("\n"));
    }
    Ok(())
}

fn rm_stale() -> anyhow::Result<()> {
    let mut removed = 0;
    for row in scan() {
        if let Verdict::Stale(why) = row.verdict() {
            let addr = row.addr.clone();
            drop(row);
            match shmlane_shm::unlink(&addr) {
                Ok(()) => {}
                // Removed meanwhile (by another `rm --stale`, say).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => bail!("{addr}: {e}"),
            }
            output::print(&format!("removed {addr} ({why})\n"))?;
            removed += 1;
        }
    }
    output::print(&format!("{removed} stale segment(s) removed\n"))
}
