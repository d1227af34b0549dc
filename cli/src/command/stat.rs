//! `shmlane stat NAME`: one segment in detail.

use std::fmt::Write as _;

use anyhow::bail;
use shmlane::ipc::{service, RingKind, Role};
use shmlane::segments::{self, Address, Entry};

use crate::command::ls::what;
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
        what(seg, &addr),
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
    if service::is_registry(seg) {
        let server = if seg.live_count(Role::Receiver) > 0 {
            "alive"
        } else {
            "gone"
        };
        let _ = writeln!(
            out,
            "service        request/response registry, server {server}"
        );
        let name = addr.to_string();
        for row in segments::list() {
            let other = row.address().to_string();
            let Some((svc, "requests")) =
                other.strip_prefix("shm:").and_then(service::client_channel)
            else {
                continue;
            };
            if Some(svc) != name.strip_prefix("shm:") {
                continue;
            }
            if let Ok(req) = row.segment() {
                let _ = writeln!(
                    out,
                    "client         pid {:<8} {} ({})",
                    req.creator_pid(),
                    if req.creator_alive() { "alive" } else { "gone" },
                    if req.live_count(Role::Receiver) > 0 {
                        "connected"
                    } else {
                        "not connected"
                    }
                );
            }
        }
    } else if let Some((svc, which)) = addr
        .to_string()
        .strip_prefix("shm:")
        .and_then(service::client_channel)
    {
        let _ = writeln!(
            out,
            "client         the {which} of a client of service shm:{svc}"
        );
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
        let registry = service::is_registry(seg);
        let role = match (p.role, l.kind()) {
            (Some(Role::Sender), RingKind::Broadcast { .. }) => "publisher",
            (Some(Role::Receiver), RingKind::Broadcast { .. }) => "subscriber",
            (Some(Role::Receiver), _) if registry => "server",
            (Some(Role::Sender), _) if registry => "client",
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
