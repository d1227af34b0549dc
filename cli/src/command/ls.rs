//! `shmlane ls`: every shmlane segment in /dev/shm and in System V
//! shared memory, and shmlane's System V message queues.

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

/// List the shmlane segments in /dev/shm and System V shared memory
/// (`sysv:KEY`, with their shmid and attach count as `ipcs -m` shows
/// them), and shmlane's System V message queues (`sysvmq:KEY`).
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

/// The backend column: the address's scheme.
fn backend(address: &Address) -> &'static str {
    match address {
        Address::Shm(_) => "shm",
        Address::File(_) => "file",
        Address::Sysv(_) => "sysv",
    }
}

/// What `ipcs -m` adds for a System V segment: its id and attach count.
fn ipcs(seg: &Segment) -> String {
    match seg.backend() {
        shmlane::ipc::Backend::Sysv { id, .. } => {
            // Less this listing's own (read-only) attachment: what
            // `ipcs -m` shows.
            let attached =
                shmlane_sys::sysv::shm_stat(*id).map_or(0, |st| st.attached.saturating_sub(1));
            format!("  (shmid {id}, nattch {attached})")
        }
        _ => String::new(),
    }
}

fn listing() -> String {
    let rows = segments::list();
    let queues = segments::queues();
    let mut out = String::new();
    if !queues.is_empty() {
        let _ = writeln!(
            out,
            "{:<40} {:>7} {:>9} {:>8} {:>7}  state",
            "SYSTEM V QUEUE", "MSQID", "MESSAGES", "RECEIVER", "SENDERS"
        );
        for q in &queues {
            let state = match q.status() {
                Status::Live => "live".to_owned(),
                Status::Stale(why) => format!("stale: {why}"),
            };
            let _ = writeln!(
                out,
                "{:<40} {:>7} {:>9} {:>8} {:>7}  {state}",
                q.address(),
                q.id.map_or("-".to_owned(), |id| id.to_string()),
                q.messages,
                if q.receiver_alive { "alive" } else { "dead" },
                q.senders,
            );
        }
        if rows.is_empty() {
            return out;
        }
        out.push('\n');
    }
    if rows.is_empty() {
        return "no shmlane segments in /dev/shm or System V shared memory\n".into();
    }
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
                "{:<40} {:<7} {:<7} {:>9} {:>6} {:>9} {:>13} {:>13}  {state}{}",
                row.address().to_string(),
                backend(row.address()),
                what(seg, row.address()),
                seg.layout().capacity(),
                seg.layout().slot_size(),
                seg.buffered(),
                format!("{}/{}", s.alive, s.dead),
                format!("{}/{}", r.alive, r.dead),
                ipcs(seg),
            ),
            Err(e) => writeln!(
                out,
                "{:<40} {:<7} unreadable: {e}  {state}",
                row.address().to_string(),
                backend(row.address())
            ),
        };
    }
    out
}
