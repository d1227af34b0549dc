//! `shmlane ls`, `shmlane stat` and `shmlane rm`: shared-memory segments
//! as an administrator sees them.

use std::time::Duration;

use shmlane_ring::RingKind;
use shmlane_shm::{
    header::MAGIC, staging_owner, Address, Creator, OpenError, OpenOptions, Role, Segment,
    STAGING_PREFIX,
};

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
fn inspect(addr: &Address) -> Result<Segment, OpenError> {
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
    Segment::open(addr, &opts)
}

/// What `ls` and `rm` need to know about one segment.
struct Summary {
    addr: Address,
    seg: Result<Segment, OpenError>,
    /// Set for a private name a segment is (or was) built under.
    staging: Option<Option<Creator>>,
}

/// Whether a segment may be removed, and why. `ls` prints it and
/// `rm --stale` acts on it: one judgement for both.
enum Verdict {
    /// A live process uses it (or we cannot prove otherwise).
    Live,
    /// Nobody can be using it.
    Stale(&'static str),
}

impl Summary {
    fn inspect(addr: Address) -> Self {
        let staging = match &addr {
            Address::Shm(n) => n.starts_with(STAGING_PREFIX).then(|| staging_owner(n)),
            Address::File(_) => None,
        };
        let seg = if staging.is_some() {
            // Not opened: its creator may still be writing it.
            Err(OpenError::NotReady {
                creator_alive: true,
            })
        } else {
            inspect(&addr)
        };
        Self { addr, seg, staging }
    }

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

    /// Stale: a segment nobody holds (no live participant, creator gone),
    /// a segment whose creator died before it became ready, or a private
    /// name whose creator died while building it. Anything else, including
    /// whatever cannot be read, is live.
    fn verdict(&self) -> Verdict {
        match (&self.staging, &self.seg) {
            (Some(Some(creator)), _) if !creator.is_alive() => {
                Verdict::Stale("its creator died while building it")
            }
            (Some(_), _) => Verdict::Live,
            (None, Ok(seg)) => {
                if seg.creator_alive() || seg.participants().iter().any(|p| p.alive) {
                    Verdict::Live
                } else {
                    Verdict::Stale("no live process holds it")
                }
            }
            (
                None,
                Err(OpenError::NotReady {
                    creator_alive: false,
                }),
            ) => Verdict::Stale("its creator died while initialising it"),
            // A segment we cannot read is never judged stale.
            (None, Err(_)) => Verdict::Live,
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

/// Every shmlane segment under /dev/shm, and every private name one is
/// (or was) built under.
fn scan() -> Vec<Summary> {
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return Vec::new();
    };
    let mut out: Vec<Summary> = dir
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(STAGING_PREFIX))
                || is_shmlane_file(&e.path())
        })
        .filter_map(|e| e.file_name().into_string().ok())
        .map(|name| Summary::inspect(Address::Shm(name)))
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
        let state = match row.verdict() {
            Verdict::Live => "live".to_owned(),
            Verdict::Stale(why) => format!("stale: {why}"),
        };
        if let Some(creator) = &row.staging {
            let who = creator.map_or("an unknown process".to_owned(), |c| {
                format!("pid {}", c.pid)
            });
            println!(
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
            Err(e) => println!(
                "{:<40} {:<7} unreadable: {e}  {state}",
                row.addr.to_string(),
                "shm"
            ),
        }
    }
    Ok(())
}

/// `shmlane stat TARGET`.
pub fn stat(target: &str) -> Result<(), String> {
    let addr = parse_target(target)?;
    let seg = inspect(&addr).map_err(|e| e.to_string())?;
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
    // Pod and byte channels record their type's name as its schema;
    // rkyv channels record its structure, one fact a line.
    if seg.schema() != f.type_name() {
        for (i, line) in seg.schema().lines().enumerate() {
            println!("{:<15}{line}", if i == 0 { "schema" } else { "" });
        }
    }
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
            if let Verdict::Stale(why) = row.verdict() {
                let addr = row.addr.clone();
                drop(row);
                match shmlane_shm::unlink(&addr) {
                    Ok(()) => {}
                    // Removed meanwhile (by another `rm --stale`, say).
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(format!("{addr}: {e}")),
                }
                println!("removed {addr} ({why})");
                removed += 1;
            }
        }
        println!("{removed} stale segment(s) removed");
        return Ok(());
    }
    let mut failed = Vec::new();
    for target in args {
        let addr = parse_target(target)?;
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
