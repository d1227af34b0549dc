//! `shmlane ls`: every shmlane segment in /dev/shm.

use std::fmt::Write as _;

use shmlane_shm::Role;

use crate::inventory::{kind_name, scan, Verdict};
use crate::output;

/// List the shmlane segments in /dev/shm.
///
/// One line each: kind, capacity, slot size, messages buffered, senders
/// and receivers alive/dead, live or stale (and why).
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(Args {}: Args) -> anyhow::Result<()> {
    output::print(&listing())
}

fn listing() -> String {
    let rows = scan();
    if rows.is_empty() {
        return "no shmlane segments in /dev/shm\n".into();
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<40} {:<7} {:<5} {:>9} {:>6} {:>9} {:>13} {:>13}  state",
        "NAME", "BACKEND", "KIND", "CAPACITY", "SLOT", "BUFFERED", "SENDERS a/d", "RECEIVERS a/d"
    );
    for row in &rows {
        let (sa, sd) = row.counts(Role::Sender);
        let (ra, rd) = row.counts(Role::Receiver);
        let state = match row.verdict() {
            Verdict::Live => "live".to_owned(),
            Verdict::Stale(why) => format!("stale: {why}"),
        };
        if let Some(creator) = &row.staging {
            let who = creator.map_or("an unknown process".to_owned(), |c| {
                format!("pid {}", c.pid)
            });
            let _ = writeln!(
                out,
                "{:<40} {:<7} being created by {who} (a private name){}",
                row.addr.to_string(),
                "shm",
                if matches!(row.verdict(), Verdict::Stale(_)) {
                    format!("  {state}")
                } else {
                    String::new()
                }
            );
            continue;
        }
        let _ = match &row.seg {
            Ok(seg) => writeln!(
                out,
                "{:<40} {:<7} {:<5} {:>9} {:>6} {:>9} {:>13} {:>13}  {state}",
                row.addr.to_string(),
                "shm",
                kind_name(seg.layout().kind()),
                seg.layout().capacity(),
                seg.layout().slot_size(),
                seg.buffered(),
                format!("{sa}/{sd}"),
                format!("{ra}/{rd}"),
            ),
            Err(e) => writeln!(
                out,
                "{:<40} {:<7} unreadable: {e}  {state}",
                row.addr.to_string(),
                "shm"
            ),
        };
    }
    out
}
