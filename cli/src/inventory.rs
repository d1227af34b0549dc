//! What `ls`, `stat` and `rm` share: shared-memory segments as an
//! administrator sees them, and one judgement of which may be removed.

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
pub fn inspect(addr: &Address) -> Result<Segment, OpenError> {
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
pub struct Summary {
    pub addr: Address,
    pub seg: Result<Segment, OpenError>,
    /// Set for a private name a segment is (or was) built under.
    pub staging: Option<Option<Creator>>,
}

/// Whether a segment may be removed, and why. `ls` prints it and
/// `rm --stale` acts on it: one judgement for both.
pub enum Verdict {
    /// A live process uses it (or we cannot prove otherwise).
    Live,
    /// Nobody can be using it.
    Stale(&'static str),
}

impl Summary {
    pub fn inspect(addr: Address) -> Self {
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

    pub fn counts(&self, role: Role) -> (usize, usize) {
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
    pub fn verdict(&self) -> Verdict {
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
pub fn scan() -> Vec<Summary> {
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

pub fn kind_name(kind: RingKind) -> &'static str {
    match kind {
        RingKind::Spsc => "spsc",
        RingKind::Mpmc => "mpmc",
    }
}
