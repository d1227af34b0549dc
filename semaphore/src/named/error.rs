//! One error enum per operation of the named semaphore.

use std::fmt;
use std::io;

const BROKEN: &str = "the semaphore's shared object was truncated by another process; \
     it cannot be used any more: create a new one";

/// Why a named semaphore could not be created, opened or unlinked.
#[derive(Debug)]
#[non_exhaustive]
pub enum SemaphoreError {
    /// Nothing exists at that name.
    NotFound(String),
    /// Something already exists at that name (create only).
    AlreadyExists(String),
    /// The OS refused access to the name.
    PermissionDenied(String),
    /// The name is empty, `.` or `..`, holds `/` or NUL, or is longer than
    /// [`MAX_NAME_LEN`](crate::MAX_NAME_LEN) bytes.
    InvalidName(String),
    /// A permit count of 0 or more than [`MAX_PERMITS`](crate::MAX_PERMITS).
    BadCount {
        /// The count asked for.
        asked: usize,
        /// The most permits a semaphore may have.
        max: usize,
    },
    /// The object at that name is not a semaphore of this layout.
    NotASemaphore {
        /// The name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The creator did not finish setting the semaphore up within the
    /// ready timeout (it may have died half way; unlink the name).
    NotReady(String),
    /// Another OS error.
    Os(io::Error),
}

impl fmt::Display for SemaphoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound(n) => write!(f, "semaphore `{n}` not found"),
            Self::AlreadyExists(n) => write!(
                f,
                "`{n}` already exists: open it instead, or unlink it if it is stale"
            ),
            Self::PermissionDenied(n) => write!(f, "permission denied for semaphore `{n}`"),
            Self::InvalidName(n) => write!(
                f,
                "bad semaphore name `{n}`: use 1 to {} bytes without `/` or NUL",
                crate::MAX_NAME_LEN
            ),
            Self::BadCount { asked, max } => {
                write!(f, "bad permit count {asked}: use 1 to {max}")
            }
            Self::NotASemaphore { name, reason } => {
                write!(f, "`{name}` is not a shmlane semaphore: {reason}")
            }
            Self::NotReady(n) => write!(
                f,
                "semaphore `{n}` was not made ready in time: its creator may have died; unlink it"
            ),
            Self::Os(e) => write!(f, "semaphore: {e}"),
        }
    }
}

impl std::error::Error for SemaphoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Os(e) => Some(e),
            _ => None,
        }
    }
}

/// Why [`Semaphore::acquire`](crate::Semaphore::acquire) and its timed
/// forms returned without a permit.
#[derive(Debug)]
#[non_exhaustive]
pub enum AcquireError {
    /// The deadline passed with every permit held (never returned by
    /// `acquire`, which has no deadline).
    Timeout,
    /// The semaphore's shared object was truncated by someone (see
    /// [`Semaphore::is_broken`](crate::Semaphore::is_broken)): it can no
    /// longer be used; create a new one.
    Broken,
    /// An OS error, or the handle was used in a forked child.
    Os(io::Error),
}

impl fmt::Display for AcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("timed out waiting for a semaphore permit"),
            Self::Broken => f.write_str(BROKEN),
            Self::Os(e) => write!(f, "acquiring a semaphore permit: {e}"),
        }
    }
}

impl std::error::Error for AcquireError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Os(e) => Some(e),
            Self::Timeout | Self::Broken => None,
        }
    }
}

/// Why [`Semaphore::try_acquire`](crate::Semaphore::try_acquire) returned
/// without a permit.
#[derive(Debug)]
#[non_exhaustive]
pub enum TryAcquireError {
    /// Every permit is held now.
    NoPermits,
    /// The semaphore's shared object was truncated by someone: it can no
    /// longer be used; create a new one.
    Broken,
    /// An OS error, or the handle was used in a forked child.
    Os(io::Error),
}

impl fmt::Display for TryAcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoPermits => f.write_str("no semaphore permit is free"),
            Self::Broken => f.write_str(BROKEN),
            Self::Os(e) => write!(f, "acquiring a semaphore permit: {e}"),
        }
    }
}

impl std::error::Error for TryAcquireError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Os(e) => Some(e),
            Self::NoPermits | Self::Broken => None,
        }
    }
}
