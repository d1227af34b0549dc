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
}

impl Address {
    /// Parses `shm:NAME` or `file:PATH`.
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
            other => Err(AddressError::UnknownScheme(other.to_owned())),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Shm(n) => write!(f, "shm:{n}"),
            Self::File(p) => write!(f, "file:{}", p.display()),
        }
    }
}

impl std::str::FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, AddressError> {
        Self::parse(s)
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
    }
}

/// Where the named POSIX shared-memory segment `name` lives: `/dev/shm/NAME`.
pub fn shm_path(name: &str) -> PathBuf {
    sys::shm::path(name)
}
