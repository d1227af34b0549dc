//! One error enum per operation, each naming what is wrong and, where it
//! helps, how to fix it.

use std::fmt;
use std::io;
use std::path::PathBuf;

use shmlane_ring::LayoutError;

/// Why an address string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddressError {
    /// The scheme before `:` is not one this crate serves.
    UnknownScheme(String),
    /// `shm:` with an empty name, or one with `/` or NUL, or longer than
    /// 250 bytes.
    BadName(String),
    /// `file:` with an empty path.
    MissingPath,
    /// `sysv:` followed by neither a non-zero key nor `PATH:ID`.
    BadSysvKey(String),
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownScheme(s) => write!(
                f,
                "unknown address scheme `{s}`: use `shm:NAME`, `file:PATH` or `sysv:KEY`"
            ),
            Self::BadSysvKey(k) => write!(
                f,
                "bad System V key `{k}` after `sysv:`: use a non-zero key in decimal or hex \
                 (`sysv:0x5300`), or an existing path and a project id from 1 to 255 for ftok \
                 (`sysv:/etc/myapp:7`)"
            ),
            Self::BadName(n) => write!(
                f,
                "bad shared-memory name `{n}`: use 1 to 250 bytes without `/` or NUL"
            ),
            Self::MissingPath => f.write_str("`file:` needs a path, as in `file:/tmp/orders.ring`"),
        }
    }
}

impl std::error::Error for AddressError {}

/// Why a segment could not be created.
#[derive(Debug)]
#[non_exhaustive]
pub enum CreateError {
    /// Something already exists at that name or path.
    AlreadyExists(String),
    /// The OS refused to create it there.
    PermissionDenied(String),
    /// The capacity, slot size or alignment cannot make a ring.
    Layout(LayoutError),
    /// The slot size asked for cannot hold the message type.
    SlotTooSmall {
        /// Bytes asked for.
        asked: usize,
        /// Bytes the message type needs.
        needed: usize,
    },
    /// The filesystem that would hold the segment has too little free
    /// space for it. Nothing was left behind.
    NoSpace {
        /// Bytes the segment needs.
        needed: u64,
        /// Bytes the filesystem has free for this user.
        available: u64,
        /// The directory (filesystem) asked.
        path: PathBuf,
    },
    /// The message type's schema is longer than a segment stores
    /// ([`MAX_SCHEMA_LEN`](crate::header::MAX_SCHEMA_LEN)).
    SchemaTooLong {
        /// Bytes the schema text needs.
        len: usize,
        /// The most a segment stores.
        max: usize,
    },
    /// The segment would be larger than any process can map.
    TooLarge {
        /// Bytes the segment would need (saturated at `u64::MAX`).
        needed: u64,
        /// The largest segment this build creates.
        limit: u64,
    },
    /// A System V segment above a limit of the kernel's: one segment's
    /// size (`kernel.shmmax`), or all segments' pages (`kernel.shmall`)
    /// or their number (`kernel.shmmni`).
    SysvLimit {
        /// Bytes the segment needs.
        needed: u64,
        /// The limit in bytes (0 where it counts segments).
        limit: u64,
        /// The sysctl that sets it.
        sysctl: &'static str,
    },
    /// Another OS error.
    Os(io::Error),
}

/// `n` bytes for people: `1.5 GiB (1610612736 bytes)`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let (mut v, mut unit) = (n as f64 / 1024.0, 0);
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {} ({n} bytes)", UNITS[unit])
}

impl fmt::Display for CreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AlreadyExists(a) => write!(
                f,
                "{a} already exists: open it instead, or remove it (`shmlane rm`) if it is stale"
            ),
            Self::PermissionDenied(a) => write!(f, "permission denied creating {a}"),
            Self::SysvLimit {
                needed,
                limit,
                sysctl,
            } => {
                write!(
                    f,
                    "a System V segment of {} is over `{sysctl}`",
                    bytes(*needed)
                )?;
                if *limit > 0 {
                    write!(f, " ({})", bytes(*limit))?;
                }
                write!(
                    f,
                    ": raise it as root (`sysctl -w {sysctl}=...`), remove stale segments \
                     (`shmlane rm --stale`, `ipcs -m`), use a `shm:` or `file:` address, or ask \
                     for a smaller capacity or message size"
                )
            }
            Self::Layout(e) => write!(f, "bad channel layout: {e}"),
            Self::SlotTooSmall { asked, needed } => write!(
                f,
                "slot size {asked} cannot hold the message type: it needs at least {needed} bytes"
            ),
            Self::NoSpace {
                needed,
                available,
                path,
            } => {
                write!(
                    f,
                    "not enough space for the segment: it needs {}, but the filesystem at {} \
                     has {} free; ",
                    bytes(*needed),
                    path.display(),
                    bytes(*available)
                )?;
                if path.starts_with("/dev/shm") {
                    f.write_str(
                        "make /dev/shm larger (`mount -o remount,size=2g /dev/shm`, or \
                         `docker run --shm-size=2g`), use a `file:` address on a disk, or \
                         ask for a smaller capacity or message size",
                    )
                } else {
                    f.write_str(
                        "free space there, put the file on a larger filesystem, or ask for \
                         a smaller capacity or message size",
                    )
                }
            }
            Self::SchemaTooLong { len, max } => write!(
                f,
                "the message type's schema is {len} bytes, more than the {max} a segment \
                 stores: split the type, or pin a shorter name for its parts with \
                 `#[shmlane(name = \"...\")]`"
            ),
            Self::TooLarge { needed, limit } => write!(
                f,
                "a segment of {} is larger than any process can map (at most {}): ask for a \
                 smaller capacity or message size",
                bytes(*needed),
                bytes(*limit)
            ),
            Self::Os(e) => write!(f, "creating segment: {e}"),
        }
    }
}

impl std::error::Error for CreateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Os(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a segment could not be opened. Each variant names the field or
/// property at fault.
#[derive(Debug)]
#[non_exhaustive]
pub enum OpenError {
    /// Nothing exists at that name or path.
    NotFound(String),
    /// The OS refused access.
    PermissionDenied(String),
    /// The path is a symbolic link (never followed).
    Symlink(String),
    /// The path is not a regular file (a directory, FIFO, device, ...).
    NotRegularFile {
        /// What it is instead.
        found: &'static str,
    },
    /// The file belongs to another user.
    WrongOwner {
        /// The uid expected.
        expected: u32,
        /// The uid found.
        found: u32,
    },
    /// The file is writable by group or others and that was not allowed.
    InsecureMode {
        /// The file's permission bits.
        mode: u32,
    },
    /// The file is shorter than a header page.
    TooSmall {
        /// Its length.
        len: u64,
    },
    /// The first bytes are not shmlane's magic: not a shmlane segment.
    BadMagic,
    /// Written by an incompatible version of shmlane.
    VersionMismatch {
        /// The version found.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// A layout field is inconsistent (a value another field or the file
    /// contradicts).
    LayoutMismatch {
        /// The field at fault.
        field: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// The segment carries another message type: another codec, or a
    /// type of another structure.
    TypeMismatch {
        /// The type this side asked for.
        expected: String,
        /// The type the segment was created for.
        found: String,
        /// Where the two differ, when the names do not say it: the first
        /// part of their structures that differs (``field `Reading.values`:
        /// Vec<f32> here, Vec<f64> in the segment``).
        difference: Option<String>,
    },
    /// The creator has not published the segment (still initialising, or
    /// died before it finished).
    NotReady {
        /// Whether the creator still holds its lock (slow, not dead).
        creator_alive: bool,
    },
    /// A field holds a value no creator writes: the header is corrupted.
    Corrupted {
        /// The field at fault.
        field: &'static str,
    },
    /// Another OS error.
    Os(io::Error),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound(a) => write!(f, "{a} does not exist: create it first"),
            Self::PermissionDenied(a) => write!(f, "permission denied opening {a}"),
            Self::Symlink(a) => write!(f, "{a} is a symbolic link, which shmlane never follows"),
            Self::NotRegularFile { found } => {
                write!(
                    f,
                    "not a shmlane segment: the path is a {found}, not a regular file"
                )
            }
            Self::WrongOwner { expected, found } => {
                write!(
                    f,
                    "segment is owned by uid {found}, expected uid {expected}"
                )
            }
            Self::InsecureMode { mode } => write!(
                f,
                "segment mode {mode:o} lets group or others write it; allow that explicitly \
                 or fix the mode"
            ),
            Self::TooSmall { len } => {
                write!(
                    f,
                    "segment is {len} bytes, shorter than a header page: not a shmlane segment"
                )
            }
            Self::BadMagic => f.write_str("not a shmlane segment (bad magic)"),
            Self::VersionMismatch { found, supported } => write!(
                f,
                "segment layout version {found} is not supported (this build reads {supported})"
            ),
            Self::LayoutMismatch { field, detail } => {
                write!(f, "segment {field} mismatch: {detail}")
            }
            Self::TypeMismatch {
                expected,
                found,
                difference,
            } => {
                if expected == found {
                    write!(
                        f,
                        "message type mismatch: `{expected}` differs from the segment's"
                    )?;
                } else {
                    write!(
                        f,
                        "message type mismatch: this side uses `{expected}` but the segment \
                         carries `{found}`"
                    )?;
                }
                match difference {
                    Some(d) => write!(f, ": {d}"),
                    None => Ok(()),
                }
            }
            Self::NotReady {
                creator_alive: true,
            } => f.write_str("segment not ready: its creator is still initialising it"),
            Self::NotReady {
                creator_alive: false,
            } => f.write_str(
                "segment never became ready: its creator died while initialising it; remove it",
            ),
            Self::Corrupted { field } => write!(f, "segment header corrupted: bad {field}"),
            Self::Os(e) => write!(f, "opening segment: {e}"),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Os(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a process could not attach as a sender or receiver.
#[derive(Debug)]
#[non_exhaustive]
pub enum AttachError {
    /// Single-producer or single-consumer ring and that side is taken by a
    /// live participant.
    RoleTaken {
        /// "sender" or "receiver".
        role: &'static str,
    },
    /// Every participant slot is held by a live process.
    TableFull,
    /// The segment was opened read-only.
    ReadOnly,
    /// The handle asked for does not fit the ring (an SPSC handle on an
    /// MPMC ring or the reverse).
    WrongKind {
        /// The ring kind the handle needs.
        needs: &'static str,
        /// The segment's ring kind.
        found: &'static str,
    },
    /// A topic has as many live participants of this role as it allows
    /// (one publisher; the subscriber limit set when it was created).
    TooMany {
        /// "publisher" or "subscriber".
        role: &'static str,
        /// How many it allows.
        max: u32,
    },
    /// An OS error while locking.
    Os(io::Error),
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RoleTaken { role } => write!(
                f,
                "this single-{role} ring already has a live {role}; use an MPMC ring for more"
            ),
            Self::TableFull => write!(
                f,
                "{} participants are already attached",
                crate::header::MAX_PARTICIPANTS
            ),
            Self::ReadOnly => f.write_str("segment was opened read-only"),
            Self::WrongKind { needs, found } => write!(
                f,
                "this handle needs an {needs} ring but the segment holds an {found} ring"
            ),
            Self::TooMany {
                role: "publisher", ..
            } => f.write_str(
                "this topic already has a live publisher; a new one can take over once it is gone",
            ),
            Self::TooMany { role, max } => write!(
                f,
                "this topic allows at most {max} {role}s at once (set when it was created, \
                 with Builder::max_subscribers)"
            ),
            Self::Os(e) => write!(f, "attaching: {e}"),
        }
    }
}

impl std::error::Error for AttachError {}
