//! `shmlane rm NAME...` and `shmlane rm --stale`.

use anyhow::bail;
use shmlane::segments::{self, Address};
use shmlane::transport::SysvKey;

use crate::output;

/// Remove segments, or every stale one (--stale).
///
/// Refuses any segment that a live process holds.
#[derive(clap::Args, Debug)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["targets", "stale"]))]
pub struct Args {
    /// Segments: shm:NAME, file:PATH, sysv:KEY, or NAME (taken as
    /// shm:NAME); System V queues: sysvmq:KEY
    #[arg(value_name = "NAME", value_parser = parse_target)]
    targets: Vec<Target>,
    /// Remove every segment no live process holds, every System V queue
    /// whose receiver died, and the semaphore sets killed processes left
    #[arg(long, conflicts_with = "targets")]
    stale: bool,
}

#[derive(Debug, Clone)]
enum Target {
    Segment(Address),
    Queue(i32),
}

fn parse_target(s: &str) -> Result<Target, String> {
    if let Some(rest) = s.strip_prefix("sysvmq:") {
        let key = SysvKey::parse(rest).ok_or_else(|| {
            format!(
                "bad System V key `{rest}`: use a non-zero number (`sysvmq:0x5300`) or an \
                 existing path and an id from 1 to 255 (`sysvmq:/etc/myapp:7`)"
            )
        })?;
        return key.resolve().map(Target::Queue).map_err(|e| e.to_string());
    }
    segments::parse(s)
        .map(Target::Segment)
        .map_err(|e| e.to_string())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.stale {
        return rm_stale();
    }
    let mut failed = Vec::new();
    for target in args.targets {
        let (done, name) = match target {
            Target::Segment(addr) => (segments::remove(&addr), addr.to_string()),
            Target::Queue(key) => (
                segments::remove_queue(key),
                format!("sysvmq:{}", shmlane_sys::sysv::key_text(key)),
            ),
        };
        match done {
            Ok(()) => output::print(&format!("removed {name}\n"))?,
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
    let others = segments::remove_stale_sysv()?;
    let mut out = String::new();
    for (addr, why) in &removed {
        out.push_str(&format!("removed {addr} ({why})\n"));
    }
    for (what, why) in &others {
        out.push_str(&format!("removed {what} ({why})\n"));
    }
    out.push_str(&format!("{} stale segment(s) removed\n", removed.len()));
    if !others.is_empty() {
        out.push_str(&format!(
            "{} stale System V queue(s) or semaphore set(s) removed\n",
            others.len()
        ));
    }
    output::print(&out)
}
