//! `shmlane ls`: every shmlane segment in /dev/shm.

use std::fmt::Write as _;

use shmlane::ipc::{service, RingKind, Role, Segment};
use shmlane::segments::Address;
use shmlane::segments::{self, Status};

use crate::output;

/// What a segment is, for people: a channel's ring kind, `topic`, a
/// request/response `service` (its registry), or one of a service
/// `client`'s two channels.
pub(crate) fn what(seg: &Segment, address: &Address) -> &'static str {
    if service::is_registry(seg) {
        return "service";
    }
    let name = address.to_string();
    if let Some(name) = name.strip_prefix("shm:") {
        if service::client_channel(name).is_some() {
            return "client";
        }
    }
    kind_name(seg.layout().kind())
}

pub(crate) fn kind_name(kind: RingKind) -> &'static str {
    match kind {
        RingKind::Spsc => "spsc",
        RingKind::Mpmc => "mpmc",
        RingKind::Broadcast { .. } => "topic",
    }
}

/// List the shmlane segments in /dev/shm.
///
/// One line each: kind (spsc, mpmc, topic for publish/subscribe, service
/// for a request/response server's registry, client for a client's
/// channels),
/// capacity, slot size, messages buffered (for a topic: the most any
/// subscriber has unread), senders (publishers) and receivers
/// (subscribers) alive/dead, live or stale (and why).
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(Args {}: Args) -> anyhow::Result<()> {
    output::print(&listing())
}

fn listing() -> String {
    let rows = segments::list();
    if rows.is_empty() {
        return "no shmlane segments in /dev/shm\n".into();
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<40} {:<7} {:<7} {:>9} {:>6} {:>9} {:>13} {:>13}  state",
        "NAME", "BACKEND", "KIND", "CAPACITY", "SLOT", "BUFFERED", "SENDERS a/d", "RECEIVERS a/d"
    );
    for row in &rows {
        let s = row.peers(Role::Sender);
        let r = row.peers(Role::Receiver);
        let state = match row.status() {
            Status::Live => "live".to_owned(),
            Status::Stale(why) => format!("stale: {why}"),
        };
        if let Some(creator) = row.being_created_by() {
            let who = creator.map_or("an unknown process".to_owned(), |pid| format!("pid {pid}"));
            let _ = writeln!(
                out,
                "{:<40} {:<7} being created by {who} (a private name){}",
                row.address().to_string(),
                "shm",
                if matches!(row.status(), Status::Stale(_)) {
                    format!("  {state}")
                } else {
                    String::new()
                }
            );
            continue;
        }
        let _ = match row.segment() {
            Ok(seg) => writeln!(
                out,
                "{:<40} {:<7} {:<7} {:>9} {:>6} {:>9} {:>13} {:>13}  {state}",
                row.address().to_string(),
                "shm",
                what(seg, row.address()),
                seg.layout().capacity(),
                seg.layout().slot_size(),
                seg.buffered(),
                format!("{}/{}", s.alive, s.dead),
                format!("{}/{}", r.alive, r.dead),
            ),
            Err(e) => writeln!(
                out,
                "{:<40} {:<7} unreadable: {e}  {state}",
                row.address().to_string(),
                "shm"
            ),
        };
    }
    out
}
