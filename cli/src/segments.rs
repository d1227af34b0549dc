//! `shmlane ls`, `shmlane stat` and `shmlane rm`: shared-memory segments
//! as an administrator sees them.

use std::time::Duration;

use shmlane_ring::RingKind;
use shmlane_shm::{header::MAGIC, Address, OpenOptions, Role, Segment};

/// Parses `shm:NAME`, `file:PATH`, or a bare NAME (taken as `shm:NAME`).
pub fn parse_target(s: &str) -> Result<Address, String> {
    let full = if s.contains(':') {
        s.to_owned()
    } else {
        format!("shm:{s}")
    };
    Address::parse(&full).map_err(|e| e.to_string())
}

/// Opens a segment read-only for inspection, whoever owns it.
fn inspect(addr: &Address) -> Result<Segment, String> {
    let owner = match addr {
        Address::Shm(n) => std::fs::metadata(shmlane_shm::shm_path(n)),
        Address::File(p) => std::fs::symlink_metadata(p),
    }
    .ok()
    .map(|m| std::os::unix::fs::MetadataExt::uid(&m));
    let opts = OpenOptions {
        read_only: true,
        ready_timeout: Duration::from_millis(20),
        owner,
        allow_group_write: true,
        ..OpenOptions::default()
    };
    Segment::open(addr, &opts).map_err(|e| e.to_string())
}

/// What `ls` and `rm` need to know about one segment.
struct Summary {
    addr: Address,
    seg: Result<Segment, String>,
}

impl Summary {
    fn counts(&self, role: Role) -> (usize, usize) {
        let Ok(seg) = &self.seg else { return (0, 0) };
        let rows: Vec<_> = seg
            .participants()
            .into_iter()
            .filter(|p| p.role == Some(role))
            .collect();
        let alive = rows.iter().filter(|p| p.alive).count();
        (alive, rows.len() - alive)
    }

    /// In use: a live participant, or a creator that still has it open.
    fn in_use(&self) -> bool {
        match &self.seg {
            Ok(seg) => seg.creator_alive() || seg.participants().iter().any(|p| p.alive),
            // A segment we cannot read is never judged stale.
            Err(_) => true,
        }
    }
}

fn is_shmlane_file(path: &std::path::Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == MAGIC
}

/// Every shmlane segment under /dev/shm.
fn scan() -> Vec<Summary> {
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return Vec::new();
    };
    let mut out: Vec<Summary> = dir
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| is_shmlane_file(&e.path()))
        .filter_map(|e| e.file_name().into_string().ok())
        .map(|name| {
            let addr = Address::Shm(name);
            let seg = inspect(&addr);
            Summary { addr, seg }
        })
        .collect();
    out.sort_by_key(|s| s.addr.to_string());
    out
}

fn kind_name(kind: RingKind) -> &'static str {
    match kind {
        RingKind::Spsc => "spsc",
        RingKind::Mpmc => "mpmc",
    }
}

/// `shmlane ls`.
pub fn ls() -> Result<(), String> {
    let rows = scan();
    if rows.is_empty() {
        println!("no shmlane segments in /dev/shm");
        return Ok(());
    }
    println!(
        "{:<40} {:<7} {:<5} {:>9} {:>6} {:>9} {:>13} {:>13}  state",
        "NAME", "BACKEND", "KIND", "CAPACITY", "SLOT", "BUFFERED", "SENDERS a/d", "RECEIVERS a/d"
    );
    for row in &rows {
        let (sa, sd) = row.counts(Role::Sender);
        let (ra, rd) = row.counts(Role::Receiver);
        let state = if row.in_use() { "live" } else { "stale" };
        match &row.seg {
            Ok(seg) => println!(
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
            Err(e) => println!("{:<40} {:<7} unreadable: {e}", row.addr.to_string(), "shm"),
        }
    }
    Ok(())
}

/// `shmlane stat TARGET`.
pub fn stat(target: &str) -> Result<(), String> {
    let addr = parse_target(target)?;
    let seg = inspect(&addr)?;
    let l = seg.layout();
    let f = seg.fixed();
    println!("address        {addr}");
    println!(
        "ring           {} , capacity {} ({} slots)",
        kind_name(l.kind()),
        l.capacity(),
        l.slots()
    );
    println!(
        "slot           {} bytes, aligned to {}",
        l.slot_size(),
        l.slot_align()
    );
    println!(
        "message type   {} ({} bytes, align {}, codec {})",
        f.type_name(),
        f.type_size,
        f.type_align,
        f.codec
    );
    println!("segment size   {} bytes", f.total_len);
    println!("buffered       {} messages", seg.buffered());
    println!(
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
        println!("participants   none");
    }
    for p in parts {
        let role = p.role.map_or("?", Role::name);
        println!(
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
    Ok(())
}

/// `shmlane rm TARGET...` and `shmlane rm --stale`.
pub fn rm(args: &[String]) -> Result<(), String> {
    if args.is_empty() {
        return Err("rm needs segment names, or --stale".into());
    }
    if args.iter().any(|a| a == "--stale") {
        let mut removed = 0;
        for row in scan() {
            if !row.in_use() {
                shmlane_shm::unlink(&row.addr).map_err(|e| format!("{}: {e}", row.addr))?;
                println!("removed {}", row.addr);
                removed += 1;
            }
        }
        println!("{removed} stale segment(s) removed");
        return Ok(());
    }
    let mut failed = Vec::new();
    for target in args {
        let addr = parse_target(target)?;
        let seg = match inspect(&addr) {
            Ok(seg) => seg,
            Err(e) => {
                failed.push(format!("{addr}: {e}"));
                continue;
            }
        };
        let row = Summary {
            addr: addr.clone(),
            seg: Ok(seg),
        };
        if row.in_use() {
            failed.push(format!("{addr}: in use by a live process; stop it first"));
            continue;
        }
        drop(row);
        match shmlane_shm::unlink(&addr) {
            Ok(()) => println!("removed {addr}"),
            Err(e) => failed.push(format!("{addr}: {e}")),
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("\n"))
    }
}
