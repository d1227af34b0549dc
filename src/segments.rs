//! Shared-memory segments as an administrator sees them: list them
//! ([`list`]), look at one ([`Entry::inspect`]), count who holds it
//! ([`Entry::peers`]) and remove those no live process holds ([`remove`],
//! [`remove_stale`], [`remove_orphan`]), with one judgement of what is
//! stale ([`Status`]) for all of them. `shmlane ls`, `stat` and `rm` are
//! built on this module.
//!
//! ```no_run
//! use shmlane::ipc::Role;
//! use shmlane::segments::{self, Status};
//!
//! for entry in segments::list() {
//!     let senders = entry.peers(Role::Sender);
//!     println!("{} {} senders alive", entry.address(), senders.alive);
//!     if let Status::Stale(why) = entry.status() {
//!         println!("  stale: {why}");
//!     }
//! }
//! ```

use std::fmt;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use shmlane_shm::{header::MAGIC, staging_owner, Creator, OpenOptions, STAGING_PREFIX};
pub use shmlane_shm::{Address, AddressError, OpenError, ParticipantInfo};

use crate::ipc::{Backend, Channel, Role, Segment};
use shmlane_sys::sysv;

/// Where named segments live.
const SHM_DIR: &str = "/dev/shm";

/// Parses `shm:NAME`, `file:PATH`, or a bare `NAME` (taken as `shm:NAME`).
///
/// # Errors
///
/// [`AddressError`] for an unknown scheme or a name that is not valid.
pub fn parse(s: &str) -> Result<Address, AddressError> {
    if s.contains(':') {
        Address::parse(s)
    } else {
        Address::parse(&format!("shm:{s}"))
    }
}

/// Whether a segment may be removed, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// A live process uses it, or it cannot be proven otherwise (a
    /// segment that cannot be read is never judged stale).
    Live,
    /// Nobody can be using it: why.
    Stale(&'static str),
}

/// How many processes of one role are attached to a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Peers {
    /// Attached and alive.
    pub alive: usize,
    /// Died without detaching (not yet reaped).
    pub dead: usize,
}

/// One segment, opened read-only for inspection (or a private name one
/// is being built under, which is not opened).
pub struct Entry {
    address: Address,
    segment: Result<Segment, OpenError>,
    /// Set for a private name: its creator, if the name says.
    staging: Option<Option<Creator>>,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("address", &self.address)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

/// Opens a segment read-only for inspection, whoever owns it.
fn open_for_inspection(address: &Address) -> Result<Segment, OpenError> {
    let owner = match address {
        Address::Shm(n) => std::fs::metadata(shmlane_shm::shm_path(n))
            .ok()
            .map(|m| m.uid()),
        Address::File(p) => std::fs::symlink_metadata(p).ok().map(|m| m.uid()),
        Address::Sysv(key) => key
            .resolve()
            .and_then(sysv::shm_get)
            .and_then(sysv::shm_stat)
            .ok()
            .map(|st| st.perm.uid),
    };
    let opts = OpenOptions {
        read_only: true,
        ready_timeout: Duration::from_millis(20),
        owner,
        allow_group_write: true,
        ..OpenOptions::default()
    };
    Segment::open(address, &opts)
}

impl Entry {
    /// Looks at the segment at `address` (read-only; nothing is attached).
    pub fn inspect(address: Address) -> Self {
        let staging = match &address {
            Address::Shm(n) => n.starts_with(STAGING_PREFIX).then(|| staging_owner(n)),
            Address::File(_) | Address::Sysv(_) => None,
        };
        let segment = if staging.is_some() {
            // Not opened: its creator may still be writing it.
            Err(OpenError::NotReady {
                creator_alive: true,
            })
        } else {
            open_for_inspection(&address)
        };
        Self {
            address,
            segment,
            staging,
        }
    }

    /// Its address.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The segment, or why it could not be opened.
    ///
    /// # Errors
    ///
    /// The [`OpenError`] of opening it read-only (for a private name,
    /// `NotReady`).
    pub fn segment(&self) -> Result<&Segment, &OpenError> {
        self.segment.as_ref()
    }

    /// For a private name a segment is being (or was being) built under:
    /// `Some(pid of its creator)`, `Some(None)` where the name does not
    /// say; `None` for a published segment.
    pub fn being_created_by(&self) -> Option<Option<u32>> {
        self.staging.map(|c| c.map(|c| c.pid))
    }

    /// Who of `role` is attached, alive and dead.
    pub fn peers(&self, role: Role) -> Peers {
        let Ok(seg) = &self.segment else {
            return Peers::default();
        };
        let mut peers = Peers::default();
        for p in seg.participants().iter().filter(|p| p.role == Some(role)) {
            if p.alive {
                peers.alive += 1;
            } else {
                peers.dead += 1;
            }
        }
        peers
    }

    /// Stale: a segment nobody holds (no live participant, creator gone),
    /// a segment whose creator died before it became ready, or a private
    /// name whose creator died while building it. Anything else, including
    /// whatever cannot be read, is live.
    pub fn status(&self) -> Status {
        match (&self.staging, &self.segment) {
            (Some(Some(creator)), _) if !creator.is_alive() => {
                Status::Stale("its creator died while building it")
            }
            (Some(_), _) => Status::Live,
            (None, Ok(seg)) => {
                if seg.creator_alive() || seg.participants().iter().any(|p| p.alive) {
                    Status::Live
                } else {
                    Status::Stale("no live process holds it")
                }
            }
            (
                None,
                Err(OpenError::NotReady {
                    creator_alive: false,
                }),
            ) => Status::Stale("its creator died while initialising it"),
            (None, Err(_)) => Status::Live,
        }
    }
}

fn is_shmlane_file(path: &Path) -> bool {
    let mut magic = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == MAGIC
}

/// Every shmlane segment in `/dev/shm`, and every private name one is (or
/// was) being built under, sorted by address. Files that are not shmlane
/// segments are left out.
pub fn list() -> Vec<Entry> {
    let Ok(dir) = std::fs::read_dir(SHM_DIR) else {
        return Vec::new();
    };
    let mut out: Vec<Entry> = dir
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(STAGING_PREFIX))
                || is_shmlane_file(&e.path())
        })
        .filter_map(|e| e.file_name().into_string().ok())
        .map(|name| Entry::inspect(Address::Shm(name)))
        .collect();
    out.sort_by_key(|e| e.address.to_string());
    out
}

/// Why [`remove`] did not remove a segment.
#[derive(Debug)]
#[non_exhaustive]
pub enum RemoveError {
    /// A live process holds it.
    InUse {
        /// The segment.
        address: Address,
    },
    /// It could not be read, so it is not known to be stale.
    Unreadable {
        /// The segment.
        address: Address,
        /// Why.
        error: OpenError,
    },
    /// Removing the name failed.
    Os {
        /// The segment.
        address: Address,
        /// The error.
        error: io::Error,
    },
}

impl fmt::Display for RemoveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InUse { address } => {
                write!(f, "{address}: in use by a live process; stop it first")
            }
            Self::Unreadable { address, error } => write!(f, "{address}: {error}"),
            Self::Os { address, error } => write!(f, "{address}: {error}"),
        }
    }
}

impl std::error::Error for RemoveError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::InUse { .. } => None,
            Self::Unreadable { error, .. } => Some(error),
            Self::Os { error, .. } => Some(error),
        }
    }
}

fn unlink(address: &Address) -> Result<(), RemoveError> {
    shmlane_shm::unlink(address).map_err(|error| RemoveError::Os {
        address: address.clone(),
        error,
    })
}

/// Removes the segment at `address` if no live process holds it.
///
/// # Errors
///
/// [`RemoveError::InUse`] while a live process holds it,
/// [`RemoveError::Unreadable`] if it cannot be read (a missing segment
/// says `NotFound` there), [`RemoveError::Os`] if the name cannot be
/// removed.
pub fn remove(address: &Address) -> Result<(), RemoveError> {
    let entry = Entry::inspect(address.clone());
    match entry.status() {
        Status::Stale(_) => {}
        Status::Live => {
            return Err(match entry.segment {
                Err(error) if entry.staging.is_none() => RemoveError::Unreadable {
                    address: address.clone(),
                    error,
                },
                _ => RemoveError::InUse {
                    address: address.clone(),
                },
            })
        }
    }
    drop(entry);
    unlink(address)
}

/// Removes every stale segment in `/dev/shm` (see [`Status`]); returns
/// each one removed, with why it was stale. One removed meanwhile by
/// another process is skipped.
///
/// # Errors
///
/// [`RemoveError::Os`] for the first name that could not be removed
/// (those before it are removed).
pub fn remove_stale() -> Result<Vec<(Address, &'static str)>, RemoveError> {
    let mut removed = Vec::new();
    for entry in list() {
        if let Status::Stale(why) = entry.status() {
            let address = entry.address.clone();
            drop(entry);
            match unlink(&address) {
                Ok(()) => removed.push((address, why)),
                Err(RemoveError::Os { error, .. }) if error.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(removed)
}

/// Whether `chan` is an orphan: its creator and every participant gone
/// and nothing buffered, which is what a killed run leaves.
pub fn is_orphan<M: crate::ipc::Message>(chan: &Channel<M>) -> bool {
    let seg = chan.segment();
    !seg.creator_alive()
        && seg.live_count(Role::Sender) == 0
        && seg.live_count(Role::Receiver) == 0
        && seg.buffered() == 0
}

/// Removes the segment `chan` was opened from if it is an orphan
/// ([`is_orphan`]) and its name still names that very segment (another
/// process may have replaced it already); a memfd has no name. Returns
/// whether it removed it.
pub fn remove_orphan<M: crate::ipc::Message>(chan: Channel<M>) -> bool {
    let (address, path) = match chan.segment().backend() {
        Backend::Shm(name) => (Address::Shm(name.clone()), shmlane_shm::shm_path(name)),
        Backend::File(path) => (Address::File(path.clone()), path.clone()),
        &Backend::Sysv { key, id } => {
            if !is_orphan(&chan) {
                return false;
            }
            // The key still names this very segment.
            let same = sysv::shm_get(key).is_ok_and(|now| now == id);
            drop(chan);
            return same
                && shmlane_shm::unlink(&Address::Sysv(shmlane_shm::SysvKey::Key(key))).is_ok();
        }
        Backend::Memfd => return false,
    };
    if !is_orphan(&chan) {
        return false;
    }
    let same = match (
        chan.segment().file().map(std::fs::File::metadata),
        std::fs::symlink_metadata(&path),
    ) {
        (Some(Ok(a)), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    };
    drop(chan);
    same && shmlane_shm::unlink(&address).is_ok()
}
