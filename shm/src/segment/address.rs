//! Where a segment lives: `shm:NAME` or `file:PATH`.

use std::fmt;
use std::fs::{self};
use std::io;
use std::path::PathBuf;

use crate::error::AddressError;
use crate::sys;

/// Where a segment lives, parsed from `shm:NAME` or `file:PATH`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// Named POSIX shared memory (`/dev/shm/NAME`).
    Shm(String),
    /// A mmapped file; survives restarts of both sides when kept.
    File(PathBuf),
    /// A System V segment (`shmget`) under a key.
    Sysv(SysvKey),
}

impl Address {
    /// Parses `shm:NAME`, `file:PATH` or `sysv:KEY` (a non-zero number,
    /// decimal or `0x` hex, or `PATH:ID` for `ftok`).
    ///
    /// # Errors
    ///
    /// [`AddressError`] naming what is wrong.
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        let (scheme, rest) = s.split_once(':').unwrap_or((s, ""));
        match scheme {
            "shm" => {
                let ok = !rest.is_empty()
                    && rest.len() <= 250
                    && !rest.contains('/')
                    && !rest.contains('\0')
                    && rest != "."
                    && rest != "..";
                if ok {
                    Ok(Self::Shm(rest.to_owned()))
                } else {
                    Err(AddressError::BadName(rest.to_owned()))
                }
            }
            "file" if rest.is_empty() => Err(AddressError::MissingPath),
            "file" => Ok(Self::File(PathBuf::from(rest))),
            "sysv" => SysvKey::parse(rest)
                .map(Self::Sysv)
                .ok_or_else(|| AddressError::BadSysvKey(rest.to_owned())),
            other => Err(AddressError::UnknownScheme(other.to_owned())),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Shm(n) => write!(f, "shm:{n}"),
            Self::File(p) => write!(f, "file:{}", p.display()),
            Self::Sysv(k) => write!(f, "sysv:{k}"),
        }
    }
}

impl std::str::FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, AddressError> {
        Self::parse(s)
    }
}

/// A System V key as an address writes it: a number (`0x5300` or
/// `21248`; not 0, which is `IPC_PRIVATE`), or a path and a project id
/// from 1 to 255 that `ftok` turns into one (`/etc/myapp:7`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SysvKey {
    /// The key itself.
    Key(i32),
    /// `ftok(path, id)`, computed when the address is used (the path must
    /// exist then; the key follows its inode and device).
    Ftok {
        /// An existing path.
        path: PathBuf,
        /// The project id, 1 to 255.
        id: u8,
    },
}

impl SysvKey {
    /// Parses what follows `sysv:` or `sysvmq:`; `None` if it is neither
    /// a non-zero key (decimal, or hex after `0x`) nor `PATH:ID`.
    pub fn parse(rest: &str) -> Option<Self> {
        let number = |t: &str| -> Option<i32> {
            let v = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()? as i32,
                None => t
                    .parse::<u32>()
                    .map(|v| v as i32)
                    .or_else(|_| t.parse::<i32>())
                    .ok()?,
            };
            (v != 0).then_some(v)
        };
        if let Some(key) = number(rest) {
            return Some(Self::Key(key));
        }
        let (path, id) = rest.rsplit_once(':')?;
        let id: u8 = id.parse().ok().filter(|&i| i != 0)?;
        (!path.is_empty()).then(|| Self::Ftok {
            path: PathBuf::from(path),
            id,
        })
    }

    /// The key: itself, or `ftok` of the path now.
    ///
    /// # Errors
    ///
    /// For `PATH:ID`, the error of `stat` on the path (`NotFound`...).
    pub fn resolve(&self) -> io::Result<i32> {
        match self {
            Self::Key(k) => Ok(*k),
            Self::Ftok { path, id } => sys::sysv::ftok(path, *id).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "ftok({}, {id}): {e}; a System V key's path must exist on both \
                         sides",
                        path.display()
                    ),
                )
            }),
        }
    }
}

impl fmt::Display for SysvKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Key(k) => f.write_str(&sys::sysv::key_text(*k)),
            Self::Ftok { path, id } => write!(f, "{}:{id}", path.display()),
        }
    }
}

/// Removes the name or file of a segment. Processes that have it mapped
/// keep using it.
///
/// # Errors
///
/// The OS error (`NotFound` if nothing is there).
pub fn unlink(addr: &Address) -> io::Result<()> {
    match addr {
        Address::Shm(name) => sys::shm::unlink(name),
        Address::File(path) => fs::remove_file(path),
        Address::Sysv(key) => super::sysv::unlink(key),
    }
}

/// Where the named POSIX shared-memory segment `name` lives: `/dev/shm/NAME`.
pub fn shm_path(name: &str) -> PathBuf {
    sys::shm::path(name)
}
