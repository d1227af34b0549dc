//! POSIX shared-memory objects: `/dev/shm/NAME`.
//!
//! Names are given without the leading `/`. Every object is opened
//! close-on-exec and without following a symbolic link, as glibc's
//! `shm_open` does, and reports a directory as `EINVAL`, as glibc does
//! (callers map that error number).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use rustix::shm::OFlags as ShmOFlags;

use crate::errno::retry;
use crate::Access;

fn shm_open(name: &str, flags: ShmOFlags, mode: u32) -> io::Result<File> {
    let name = crate::c_string(name.as_bytes())?;
    let flags = flags | ShmOFlags::from_bits_retain(OFlags::NOFOLLOW.bits());
    let mode = Mode::from_raw_mode(mode);
    match retry(|| Ok(rustix::shm::open(name.as_c_str(), flags, mode)?)) {
        Ok(fd) => Ok(File::from(fd)),
        // glibc folds EISDIR into EINVAL ("not a valid shared-memory
        // object name"); callers and their tests expect its numbers.
        Err(e) if e.raw_os_error() == Some(libc::EISDIR) => {
            Err(io::Error::from_raw_os_error(libc::EINVAL))
        }
        Err(e) => Err(e),
    }
}

/// Opens the existing object `name`.
///
/// # Errors
///
/// The OS error: `ENOENT` when there is none, `EACCES` without
/// permission, `ELOOP` for a symbolic link, `EINVAL` for a bad name or a
/// directory, `ENAMETOOLONG`; `InvalidInput` for a name with a NUL byte.
pub fn open(name: &str, access: Access) -> io::Result<File> {
    let flags = match access {
        Access::ReadOnly => ShmOFlags::RDONLY,
        Access::ReadWrite => ShmOFlags::RDWR,
    };
    shm_open(name, flags, 0)
}

/// Creates the object `name`, read-write, failing if it exists
/// (`O_CREAT|O_EXCL`). The mode goes through the umask: callers that
/// promise an exact mode set it on the returned file.
///
/// # Errors
///
/// As [`open`], and `EEXIST` when the name exists.
pub fn create(name: &str, mode: u32) -> io::Result<File> {
    shm_open(
        name,
        ShmOFlags::RDWR | ShmOFlags::CREATE | ShmOFlags::EXCL,
        mode,
    )
}

/// Opens the object `name` read-write, creating it with `mode` (through
/// the umask) if it does not exist (`O_CREAT` without `O_EXCL`).
///
/// # Errors
///
/// As [`open`].
pub fn open_or_create(name: &str, mode: u32) -> io::Result<File> {
    shm_open(name, ShmOFlags::RDWR | ShmOFlags::CREATE, mode)
}

/// Where the object `name` lives: `/dev/shm/NAME`.
pub fn path(name: &str) -> PathBuf {
    Path::new("/dev/shm").join(name)
}

/// Removes the name `name`; processes that have it open keep the object.
///
/// # Errors
///
/// The OS error (`ENOENT` when there is no such name); `InvalidInput` for
/// a name with a NUL byte.
pub fn unlink(name: &str) -> io::Result<()> {
    let name = crate::c_string(name.as_bytes())?;
    Ok(rustix::shm::unlink(name.as_c_str())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn unique(tag: &str) -> String {
        shmlane_testkit::unique(tag)
    }

    #[test]
    fn create_open_unlink() {
        let name = unique("sys-shm");
        let f = create(&name, 0o600).unwrap();
        assert_eq!(
            create(&name, 0o600).unwrap_err().raw_os_error(),
            Some(libc::EEXIST)
        );
        assert_eq!(f.metadata().unwrap().permissions().mode() & 0o077, 0);
        open(&name, Access::ReadOnly).unwrap();
        open(&name, Access::ReadWrite).unwrap();
        assert!(path(&name).exists());
        open_or_create(&name, 0o600).unwrap();
        unlink(&name).unwrap();
        open_or_create(&name, 0o600).unwrap();
        assert!(path(&name).exists());
        unlink(&name).unwrap();
        assert!(!path(&name).exists());
        assert_eq!(
            open(&name, Access::ReadOnly).unwrap_err().raw_os_error(),
            Some(libc::ENOENT)
        );
        assert_eq!(
            unlink(&name).unwrap_err().raw_os_error(),
            Some(libc::ENOENT)
        );
    }

    #[test]
    fn descriptors_are_close_on_exec() {
        use std::os::fd::AsRawFd;
        let name = unique("sys-cloexec");
        let f = create(&name, 0o600).unwrap();
        let _ = unlink(&name);
        // SAFETY: F_GETFD on a descriptor we own; no pointers.
        let flags = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
    }

    #[test]
    fn errors_keep_glibc_numbers() {
        assert_eq!(
            open("a\0b", Access::ReadOnly).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            open("a/b", Access::ReadOnly).unwrap_err().raw_os_error(),
            Some(libc::EINVAL)
        );
        assert_eq!(
            open(&"x".repeat(300), Access::ReadOnly)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::ENAMETOOLONG)
        );
        let name = unique("sys-dir");
        if std::fs::create_dir(format!("/dev/shm/{name}")).is_ok() {
            let r = open(&name, Access::ReadWrite);
            let _ = std::fs::remove_dir(format!("/dev/shm/{name}"));
            assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EINVAL));
        }
        let (target, link) = (unique("sys-target"), unique("sys-link"));
        drop(create(&target, 0o600).unwrap());
        std::os::unix::fs::symlink(format!("/dev/shm/{target}"), format!("/dev/shm/{link}"))
            .unwrap();
        let r = open(&link, Access::ReadOnly);
        let _ = std::fs::remove_file(format!("/dev/shm/{link}"));
        let _ = unlink(&target);
        assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::ELOOP));
    }
}
