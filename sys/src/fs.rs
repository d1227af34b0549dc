//! Filesystem calls: free space, space reservation, a file's length, a
//! rename that never replaces, and FIFOs (named pipes).

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{RenameFlags, CWD};

use crate::errno::retry;

/// `O_` flags for `std::os::unix::fs::OpenOptionsExt::custom_flags`,
/// from rustix's values (no libc at the call site).
pub mod open_flags {
    /// `O_NOFOLLOW`: refuse a symbolic link as the last component.
    pub const NOFOLLOW: i32 = rustix::fs::OFlags::NOFOLLOW.bits() as i32;
    /// `O_CLOEXEC`: not inherited across `exec`.
    pub const CLOEXEC: i32 = rustix::fs::OFlags::CLOEXEC.bits() as i32;
    /// `O_NONBLOCK`: a FIFO or device opens without waiting.
    pub const NONBLOCK: i32 = rustix::fs::OFlags::NONBLOCK.bits() as i32;
}

/// Reserves the first `len` bytes of the file (`posix_fallocate`), which
/// also extends it: no page of it can fault for lack of space later.
///
/// # Errors
///
/// The OS error: `ENOSPC` when the filesystem is full, `EOPNOTSUPP` (or
/// `EINVAL`) where it cannot reserve (see [`allocate_or_extend`]),
/// `EFBIG` for a length past `off_t`.
pub fn allocate(fd: impl AsFd, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // nix returns posix_fallocate's error number (it does not set errno).
    retry(|| Ok(nix::fcntl::posix_fallocate(fd.as_fd(), 0, len)?))
}

/// As [`allocate`], but where the filesystem cannot reserve
/// (`EOPNOTSUPP`, `EINVAL`) the length is set instead, sparse: returns
/// whether the bytes are reserved.
///
/// # Errors
///
/// As [`allocate`], less the two that fall back; or the error of
/// `ftruncate`.
pub fn allocate_or_extend(file: &File, len: u64) -> io::Result<bool> {
    match allocate(file, len) {
        Ok(()) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EINVAL)) => {
            file.set_len(len)?;
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Sets the length of `fd`'s file (`ftruncate`), extending it sparse or
/// cutting it. `EINTR` is not retried.
///
/// # Errors
///
/// The OS error (`EBADF`, `EINVAL` for a file not open for writing,
/// `EFBIG`...).
pub fn set_len(fd: impl AsFd, len: u64) -> io::Result<()> {
    Ok(rustix::fs::ftruncate(fd, len)?)
}

/// Creates a FIFO at `path` with `mode` (through the umask): `mkfifo`,
/// which is `mknodat(AT_FDCWD, path, S_IFIFO | mode, 0)`. `EINTR` is not
/// retried.
///
/// # Errors
///
/// The OS error: `EEXIST` when the path exists (a FIFO or not),
/// `ENOENT`/`ENOTDIR` for a missing directory, `EACCES`...;
/// `InvalidInput` for a path with a NUL byte.
pub fn mkfifo(path: &Path, mode: u32) -> io::Result<()> {
    use rustix::fs::{mknodat, FileType, Mode};
    let path = crate::c_string(path.as_os_str().as_bytes())?;
    Ok(mknodat(
        CWD,
        path.as_c_str(),
        FileType::Fifo,
        Mode::from_raw_mode(mode),
        0,
    )?)
}

/// Which end of a FIFO [`open_fifo`] opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FifoEnd {
    /// `O_RDONLY`: succeeds at once, with or without a writer.
    Read,
    /// `O_WRONLY`: fails with `ENXIO` while no reader has the FIFO open.
    Write,
}

/// Opens the file at `path` (a FIFO, which callers check first; `open`
/// takes any file) for one `end`, non-blocking and close-on-exec
/// (`O_NONBLOCK | O_CLOEXEC`), across `EINTR`.
///
/// # Errors
///
/// The OS error: `ENXIO` for the write end of a FIFO nobody reads,
/// `ENOENT`, `EACCES`, `EISDIR`...; `InvalidInput` for a path with a NUL
/// byte.
pub fn open_fifo(path: &Path, end: FifoEnd) -> io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    let path = crate::c_string(path.as_os_str().as_bytes())?;
    let access = match end {
        FifoEnd::Read => OFlags::RDONLY,
        FifoEnd::Write => OFlags::WRONLY,
    };
    let flags = access | OFlags::NONBLOCK | OFlags::CLOEXEC;
    retry(|| Ok(rustix::fs::open(path.as_c_str(), flags, Mode::empty())?))
}

/// Bytes free for an unprivileged user on the filesystem holding `dir`
/// (`statvfs`: available blocks times the fragment size).
///
/// # Errors
///
/// The OS error; `InvalidInput` for a path with a NUL byte.
pub fn available_space(dir: &Path) -> io::Result<u64> {
    let path = crate::c_string(dir.as_os_str().as_bytes())?;
    let st = rustix::fs::statvfs(path.as_c_str())?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Renames `from` to `to` unless `to` exists (`EEXIST` then), atomically:
/// `renameat2(RENAME_NOREPLACE)`, or where the filesystem or kernel lacks
/// it (`EINVAL`, `ENOSYS`), a hard link (which never replaces) and an
/// unlink of `from`.
///
/// # Errors
///
/// The OS error (`EEXIST` when `to` exists); `InvalidInput` for a path
/// with a NUL byte.
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let a = crate::c_string(from.as_os_str().as_bytes())?;
    let b = crate::c_string(to.as_os_str().as_bytes())?;
    match rustix::fs::renameat_with(CWD, a.as_c_str(), CWD, b.as_c_str(), RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), libc::EINVAL | libc::ENOSYS) => {
            std::fs::hard_link(from, to)?;
            std::fs::remove_file(from)
        }
        Err(e) => Err(e.into()),
    }
}

/// Removes the file at a path when dropped, unless [`keep`](Self::keep)
/// was called: what a creation made before it failed half-way (a
/// shared-memory object is the file [`shm::path`](crate::shm::path)
/// names). Errors of the removal are ignored.
#[must_use = "dropping the guard removes the file at once"]
#[derive(Debug)]
pub struct RemoveOnDrop<'a>(Option<&'a Path>);

impl<'a> RemoveOnDrop<'a> {
    /// A guard that removes `path` when dropped.
    pub fn new(path: &'a Path) -> Self {
        Self(Some(path))
    }

    /// Disarms the guard: the file stays.
    pub fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(path) = self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn allocate_reserves_and_extends() {
        let name = shmlane_testkit::unique("sys-alloc");
        let f = crate::shm::create(&name, 0o600).unwrap();
        let _ = crate::shm::unlink(&name);
        allocate(&f, 8192).unwrap();
        let meta = f.metadata().unwrap();
        assert_eq!(meta.len(), 8192);
        assert!(meta.blocks() * 512 >= 8192, "reserved, not sparse");
        assert!(allocate_or_extend(&f, 16384).unwrap());
        assert_eq!(
            allocate(&f, u64::MAX).unwrap_err().raw_os_error(),
            Some(libc::EFBIG)
        );
    }

    #[test]
    fn space_is_known_and_paths_are_checked() {
        assert!(available_space(Path::new("/dev/shm")).unwrap() > 0);
        let e = available_space(Path::new("/no/such/dir")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        let e = available_space(Path::new("a\0b")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn the_guard_removes_unless_kept() {
        let dir = std::env::temp_dir();
        let (a, b) = (
            dir.join(shmlane_testkit::unique("sys-guard-a")),
            dir.join(shmlane_testkit::unique("sys-guard-b")),
        );
        std::fs::write(&a, "a").unwrap();
        std::fs::write(&b, "b").unwrap();
        drop(RemoveOnDrop::new(&a));
        RemoveOnDrop::new(&b).keep();
        assert!(!a.exists());
        assert!(b.exists());
        std::fs::remove_file(&b).unwrap();
        drop(RemoveOnDrop::new(&b)); // already gone: ignored
    }

    #[test]
    fn rename_never_replaces() {
        let dir = std::env::temp_dir().join(shmlane_testkit::unique("sys-rename"));
        std::fs::create_dir(&dir).unwrap();
        let (a, b, c) = (dir.join("a"), dir.join("b"), dir.join("c"));
        std::fs::write(&a, "a").unwrap();
        std::fs::write(&b, "b").unwrap();
        let e = rename_noreplace(&a, &b).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EEXIST));
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "b");
        rename_noreplace(&a, &c).unwrap();
        assert!(!a.exists());
        assert_eq!(std::fs::read_to_string(&c).unwrap(), "a");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fifos_open_without_waiting() {
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        let dir = std::env::temp_dir().join(shmlane_testkit::unique("sys-fifo"));
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("f");
        mkfifo(&path, 0o600).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.file_type().is_fifo());
        assert_eq!(meta.permissions().mode() & 0o077, 0);
        let e = mkfifo(&path, 0o600).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EEXIST));
        let e = open_fifo(&path, FifoEnd::Write).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENXIO), "nobody reads yet");
        let r = open_fifo(&path, FifoEnd::Read).unwrap();
        let w = open_fifo(&path, FifoEnd::Write).unwrap();
        for fd in [&r, &w] {
            let fl = rustix::fs::fcntl_getfl(fd).unwrap();
            assert!(fl.contains(rustix::fs::OFlags::NONBLOCK));
            let fd_flags = rustix::io::fcntl_getfd(fd).unwrap();
            assert!(fd_flags.contains(rustix::io::FdFlags::CLOEXEC));
        }
        let e = mkfifo(&dir.join("no/such"), 0o600).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        let e = open_fifo(Path::new("a\0b"), FifoEnd::Read).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let e = mkfifo(Path::new("a\0b"), 0o600).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn lengths_are_set() {
        let name = shmlane_testkit::unique("sys-set-len");
        let f = crate::shm::create(&name, 0o600).unwrap();
        let _ = crate::shm::unlink(&name);
        set_len(&f, 8).unwrap();
        assert_eq!(f.metadata().unwrap().len(), 8);
        set_len(&f, 2).unwrap();
        assert_eq!(f.metadata().unwrap().len(), 2);
    }
}
