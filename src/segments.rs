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

/// Whether System V segment `id` (of `size` bytes) starts with shmlane's
/// magic.
fn is_shmlane_sysv(id: i32, size: u64) -> bool {
    if size < 4096 {
        return false;
    }
    sysv::Attachment::new(id, 4096, shmlane_sys::Access::ReadOnly).is_ok_and(|a| {
        let mut magic = [0u8; 8];
        for (i, b) in magic.iter_mut().enumerate() {
            // SAFETY: 4096 bytes are attached; a volatile read of bytes
            // another process may write.
            *b = unsafe { a.as_ptr().add(i).read_volatile() };
        }
        magic == MAGIC
    })
}

/// The shmlane System V segments this user can see, with the key they
/// are found under (segments removed with `IPC_RMID` and still attached
/// have none and are left out).
fn sysv_segments() -> Vec<Address> {
    let Ok(rows) = sysv::table(sysv::Table::Shm) else {
        return Vec::new();
    };
    rows.into_iter()
        .filter(|r| r.key != 0 && is_shmlane_sysv(r.id, r.get("size").unwrap_or(0)))
        .map(|r| Address::Sysv(shmlane_shm::SysvKey::Key(r.key)))
        .collect()
}

/// Every shmlane segment in `/dev/shm` and every System V one
/// (`sysv:KEY`), and every private name one is (or was) being built
/// under, sorted by address. Files that are not shmlane segments are left
/// out.
pub fn list() -> Vec<Entry> {
    let mut out: Vec<Entry> = sysv_segments().into_iter().map(Entry::inspect).collect();
    let Ok(dir) = std::fs::read_dir(SHM_DIR) else {
        out.sort_by_key(|e| e.address.to_string());
        return out;
    };
    out.extend(
        dir.filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with(STAGING_PREFIX))
                    || is_shmlane_file(&e.path())
            })
            .filter_map(|e| e.file_name().into_string().ok())
            .map(|name| Entry::inspect(Address::Shm(name))),
    );
    out.sort_by_key(|e| e.address.to_string());
    out
}

/// A System V message queue of shmlane's (`sysvmq:KEY`), found by the
/// semaphore set its receiver keeps under the same key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    /// The key.
    pub key: i32,
    /// The queue's id (`msqid`); `None` if only the set is left.
    pub id: Option<i32>,
    /// The semaphore set's id.
    pub sems: i32,
    /// Messages queued.
    pub messages: u64,
    /// Whether its receiver lives.
    pub receiver_alive: bool,
    /// Senders alive.
    pub senders: u32,
}

impl Queue {
    /// Its address, `sysvmq:0x...`.
    pub fn address(&self) -> String {
        format!("sysvmq:{}", sysv::key_text(self.key))
    }

    /// Stale once its receiver is gone (a receiver that lives removes
    /// both when it drops; a killed one leaves them).
    pub fn status(&self) -> Status {
        if self.receiver_alive {
            Status::Live
        } else {
            Status::Stale("its receiver died")
        }
    }
}

/// shmlane's System V message queues, sorted by key.
pub fn queues() -> Vec<Queue> {
    use crate::transport::sysvmq::{MARK, MARK_SEM, RECEIVER, SEMS, SENDERS};
    let Ok(rows) = sysv::table(sysv::Table::Sem) else {
        return Vec::new();
    };
    let mut out: Vec<Queue> = rows
        .into_iter()
        .filter(|r| r.key != 0 && r.get("nsems") == Some(u64::from(SEMS)))
        .filter(|r| sysv::sem_value(r.id, MARK_SEM).is_ok_and(|v| v == MARK))
        .map(|r| {
            let id = sysv::msg_get(r.key).ok();
            Queue {
                key: r.key,
                id,
                sems: r.id,
                messages: id
                    .and_then(|q| sysv::msg_stat(q).ok())
                    .map_or(0, |st| st.messages),
                // Unknown counts as alive: never removed on a guess.
                receiver_alive: sysv::sem_value(r.id, RECEIVER).map_or(true, |v| v > 0),
                senders: sysv::sem_value(r.id, SENDERS).map_or(0, |v| v.max(0) as u32),
            }
        })
        .collect();
    out.sort_by_key(|q| q.key as u32);
    out
}

/// Removes a System V queue and its semaphore set if its receiver is
/// gone.
///
/// # Errors
///
/// [`RemoveError::QueueInUse`] while its receiver lives,
/// [`RemoveError::QueueNotFound`] if there is no shmlane queue under the
/// key, [`RemoveError::QueueOs`] if removing fails.
pub fn remove_queue(key: i32) -> Result<(), RemoveError> {
    let address = format!("sysvmq:{}", sysv::key_text(key));
    let Some(q) = queues().into_iter().find(|q| q.key == key) else {
        return Err(RemoveError::QueueNotFound { address });
    };
    if q.receiver_alive {
        return Err(RemoveError::QueueInUse { address });
    }
    remove_queue_ids(&q).map_err(|error| RemoveError::QueueOs { address, error })
}

fn remove_queue_ids(q: &Queue) -> io::Result<()> {
    if let Some(id) = q.id {
        sysv::msg_remove(id)?;
    }
    sysv::sem_remove(q.sems)
}

/// Semaphore sets of System V segments that no segment names any more
/// and no process holds: what a process killed as the last user of a
/// segment (or one killed while creating it) leaves. Returns their ids.
fn orphan_segment_sets() -> Vec<i32> {
    let (Ok(sems), Ok(shms)) = (sysv::table(sysv::Table::Sem), sysv::table(sysv::Table::Shm))
    else {
        return Vec::new();
    };
    let me = shmlane_sys::process::euid();
    // Every set a shmlane segment names, keyed or already removed.
    let named: Vec<i32> = shms
        .iter()
        .filter(|r| is_shmlane_sysv(r.id, r.get("size").unwrap_or(0)))
        .filter_map(|r| {
            let a = sysv::Attachment::new(r.id, 4096, shmlane_sys::Access::ReadOnly).ok()?;
            // SAFETY: 4096 bytes attached; a volatile read of an i32 at
            // its aligned header offset (the set's id plus one).
            let raw = unsafe {
                a.as_ptr()
                    .add(shmlane_shm::header::offsets::SYSV_SEMS)
                    .cast::<i32>()
                    .read_volatile()
            };
            Some(raw.wrapping_sub(1))
        })
        .collect();
    sems.into_iter()
        .filter(|r| {
            r.key == 0
                && r.uid == me
                && r.get("nsems") == Some(u64::from(shmlane_shm::SYSV_SEMS))
                && !named.contains(&r.id)
                && sysv::sem_value(r.id, shmlane_shm::SYSV_MARK)
                    .is_ok_and(|v| v == shmlane_shm::SYSV_MARK_VALUE)
                && sysv::sem_value(r.id, shmlane_shm::SYSV_ATTACHED).is_ok_and(|v| v == 0)
                && sysv::sem_value(r.id, 0).is_ok_and(|v| v == 0)
        })
        .map(|r| r.id)
        .collect()
}

/// Removes what System V IPC objects of shmlane's a killed process left
/// besides segments: queues whose receiver died (with their semaphore
/// sets), and segments' semaphore sets that no segment names and no
/// process holds. Returns what it removed, and why.
///
/// # Errors
///
/// [`RemoveError::QueueOs`] for the first that could not be removed.
pub fn remove_stale_sysv() -> Result<Vec<(String, &'static str)>, RemoveError> {
    let mut removed = Vec::new();
    for q in queues() {
        if let Status::Stale(why) = q.status() {
            match remove_queue_ids(&q) {
                Ok(()) => removed.push((q.address(), why)),
                Err(e)
                    if matches!(
                        shmlane_sys::errno::Errno::from_io_error(&e),
                        Some(shmlane_sys::errno::Errno::INVAL | shmlane_sys::errno::Errno::IDRM)
                    ) => {}
                Err(error) => {
                    return Err(RemoveError::QueueOs {
                        address: q.address(),
                        error,
                    })
                }
            }
        }
    }
    for id in orphan_segment_sets() {
        if sysv::sem_remove(id).is_ok() {
            removed.push((
                format!("System V semaphore set {id}"),
                "a segment's liveness flags that no segment names",
            ));
        }
    }
    Ok(removed)
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
    /// A System V queue's receiver lives.
    QueueInUse {
        /// `sysvmq:KEY`.
        address: String,
    },
    /// No shmlane System V queue is under the key.
    QueueNotFound {
        /// `sysvmq:KEY`.
        address: String,
    },
    /// Removing a System V queue or its semaphore set failed.
    QueueOs {
        /// `sysvmq:KEY`.
        address: String,
        /// The error.
        error: io::Error,
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
            Self::QueueInUse { address } => {
                write!(f, "{address}: its receiver lives; stop it first")
            }
            Self::QueueNotFound { address } => write!(
                f,
                "{address}: no shmlane queue under this key (`ipcs -q` lists every queue; \
                 `ipcrm -Q KEY` removes another program's)"
            ),
            Self::QueueOs { address, error } => write!(f, "{address}: {error}"),
        }
    }
}

impl std::error::Error for RemoveError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::InUse { .. } => None,
            Self::Unreadable { error, .. } => Some(error),
            Self::Os { error, .. } | Self::QueueOs { error, .. } => Some(error),
            Self::QueueInUse { .. } | Self::QueueNotFound { .. } => None,
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

/// Removes every stale segment in `/dev/shm` and every stale System V
/// segment (see [`Status`]; [`remove_stale_sysv`] does queues); returns
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
        &Backend::Sysv { id, .. } => {
            if !is_orphan(&chan) {
                return false;
            }
            // By id, never by key: the key may name a segment someone
            // made since. Dropping the channel then removes the set once
            // nobody holds the segment open.
            let removed = sysv::shm_remove(id).is_ok();
            drop(chan);
            return removed;
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
