//! `shmlane stat NAME`: one segment in detail.

use std::fmt::Write as _;

use anyhow::bail;
use shmlane::ipc::{RingKind, Role};
use shmlane::segments::{self, Address, Entry};

use crate::command::ls::kind_name;
use crate::output;

/// Show one segment in detail.
///
/// Ring, slots, message type and schema, creator and participants.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The segment: shm:NAME, file:PATH, or NAME (taken as shm:NAME)
    #[arg(value_name = "NAME", value_parser = |s: &str| segments::parse(s))]
    target: Address,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let addr = args.target;
    let entry = Entry::inspect(addr.clone());
    let seg = match entry.segment() {
        Ok(seg) => seg,
        Err(e) => bail!("{e}"),
    };
    let l = seg.layout();
    let f = seg.fixed();
    let mut out = String::new();
    let _ = writeln!(out, "address        {addr}");
    let _ = writeln!(
        out,
        "ring           {} , capacity {} ({} slots)",
        kind_name(l.kind()),
        l.capacity(),
        l.slots()
    );
    let _ = writeln!(
        out,
        "slot           {} bytes, aligned to {}",
        l.slot_size(),
        l.slot_align()
    );
    let _ = writeln!(
        out,
        "message type   {} ({} bytes, align {}, codec {})",
        f.type_name(),
        f.type_size,
        f.type_align,
        f.codec
    );
    // Pod and byte channels record their type's name as its schema;
    // rkyv channels record its structure, one fact a line.
    if seg.schema() != f.type_name() {
        for (i, line) in seg.schema().lines().enumerate() {
            let _ = writeln!(out, "{:<15}{line}", if i == 0 { "schema" } else { "" });
        }
    }
    if let RingKind::Broadcast {
        overwrite,
        max_subscribers,
    } = l.kind()
    {
        let _ = writeln!(
            out,
            "topic          {} policy, at most {max_subscribers} subscribers",
            if overwrite { "overwrite" } else { "block" }
        );
        let peek = seg.topic();
        let _ = writeln!(out, "published      {} messages", peek.published);
        for (entry, _, at) in &peek.cursors {
            let _ = writeln!(
                out,
                "subscriber     #{entry:<2} next position {at} ({} unread)",
                peek.published.saturating_sub(*at)
            );
        }
    }
    let _ = writeln!(out, "segment size   {} bytes", f.total_len);
    let _ = writeln!(out, "buffered       {} messages", seg.buffered());
    let _ = writeln!(
        out,
        "creator        pid {} ({})",
        seg.creator_pid(),
        if seg.creator_alive() {
            "has it open"
        } else {
            "gone"
        }
    );
    let parts = seg.participants();
    if parts.is_empty() {
        let _ = writeln!(out, "participants   none");
    }
    for p in parts {
        let role = match (p.role, l.kind()) {
            (Some(Role::Sender), RingKind::Broadcast { .. }) => "publisher",
            (Some(Role::Receiver), RingKind::Broadcast { .. }) => "subscriber",
            (role, _) => role.map_or("?", Role::name),
        };
        let _ = writeln!(
            out,
            "participant    #{:<2} {role:<8} pid {:<8} {}",
            p.index,
            p.pid,
            if p.alive {
                "alive"
            } else {
                "dead (not yet reaped)"
            }
        );
    }
    output::print(&out)
}
