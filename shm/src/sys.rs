//! Thin wrappers over the system calls this crate makes.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Turns a raw `-1`-on-error result into `io::Result`, reading `errno`.
pub(crate) fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Retries a call while it fails with `EINTR`.
pub(crate) fn cvt_retry(mut f: impl FnMut() -> libc::c_int) -> io::Result<libc::c_int> {
    loop {
        match cvt(f()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// `shm_open` of `/name`.
pub(crate) fn shm_open(name: &str, flags: libc::c_int, mode: u32) -> io::Result<File> {
    let path = CString::new(format!("/{name}")).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: `path` is a valid NUL-terminated string; shm_open returns a
    // new fd or -1.
    let fd = cvt_retry(|| unsafe { libc::shm_open(path.as_ptr(), flags, mode as libc::mode_t) })?;
    // SAFETY: `fd` was just returned by shm_open and is owned by nobody else.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// `shm_unlink` of `/name`.
pub(crate) fn shm_unlink(name: &str) -> io::Result<()> {
    let path = CString::new(format!("/{name}")).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: `path` is a valid NUL-terminated string.
    cvt(unsafe { libc::shm_unlink(path.as_ptr()) }).map(drop)
}

/// A sealable, close-on-exec memfd.
pub(crate) fn memfd_create(name: &str) -> io::Result<File> {
    let name = CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: `name` is a valid NUL-terminated string.
    let fd = cvt(unsafe {
        libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
    })?;
    // SAFETY: a fresh fd owned by nobody else.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Seals a memfd against shrinking, growing and further sealing, so a peer
/// cannot make our mapping fault with SIGBUS.
pub(crate) fn seal_size(file: &File) -> io::Result<()> {
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: fcntl on an fd we own, with an integer argument.
    cvt(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) }).map(drop)
}

/// The seals on a memfd (0 for files that cannot be sealed).
pub(crate) fn seals(file: &File) -> i32 {
    // SAFETY: fcntl on an fd we own, no argument.
    unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) }.max(0)
}

fn flock_for(offset: u64, kind: libc::c_short) -> libc::flock {
    // SAFETY: `flock` is plain data; all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = offset as libc::off_t;
    fl.l_len = 1;
    // l_pid must be 0 for open-file-description locks.
    fl
}

/// Takes an exclusive open-file-description lock on one byte, without
/// waiting. The kernel drops it when the last fd of this open file
/// description is closed, which includes the process dying.
///
/// Returns `Ok(false)` when another open file description holds it.
pub(crate) fn try_lock_byte(file: &File, offset: u64) -> io::Result<bool> {
    let fl = flock_for(offset, libc::F_WRLCK as libc::c_short);
    // SAFETY: fcntl with a pointer to a valid flock on this stack frame.
    match cvt_retry(|| unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) }) {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Releases a lock taken with [`try_lock_byte`].
pub(crate) fn unlock_byte(file: &File, offset: u64) -> io::Result<()> {
    let fl = flock_for(offset, libc::F_UNLCK as libc::c_short);
    // SAFETY: as in `try_lock_byte`.
    cvt_retry(|| unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) }).map(drop)
}

/// Whether another open file description holds a lock on the byte. Locks
/// held through `file`'s own open file description are not seen.
pub(crate) fn byte_is_locked(file: &File, offset: u64) -> io::Result<bool> {
    let mut fl = flock_for(offset, libc::F_WRLCK as libc::c_short);
    // SAFETY: as in `try_lock_byte`; the kernel writes the result into `fl`.
    cvt_retry(|| unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) })?;
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

/// This process's start time in clock ticks since boot (field 22 of
/// `/proc/self/stat`), to tell a live pid from a reused one. 0 if unknown.
pub(crate) fn start_time(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // The command name (field 2) is in parentheses and may hold spaces.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return 0;
    };
    rest.split_whitespace()
        .nth(19)
        .and_then(|f| f.parse().ok())
        .unwrap_or(0)
}

/// The effective user id.
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// This process's id.
pub(crate) fn pid() -> u32 {
    std::process::id()
}

/// Bytes free for an unprivileged user on the filesystem holding `dir`
/// (`statvfs`: available blocks times the fragment size).
pub(crate) fn available_space(dir: &Path) -> io::Result<u64> {
    let path = CString::new(dir.as_os_str().as_bytes()).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: `statvfs` is plain data; all zeros is valid.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and out pointer.
    cvt(unsafe { libc::statvfs(path.as_ptr(), &mut st) })?;
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// Reserves the first `len` bytes of `file` (`posix_fallocate`), which
/// also extends it: no page of it can fault for lack of space later.
/// `Ok(false)` if the filesystem cannot reserve (the length is set
/// instead, sparse).
pub(crate) fn allocate(file: &File, len: u64) -> io::Result<bool> {
    let off = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    loop {
        // SAFETY: an fd we own; posix_fallocate returns the error number
        // instead of setting errno.
        match unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, off) } {
            0 => return Ok(true),
            libc::EINTR => {}
            libc::EOPNOTSUPP | libc::EINVAL => {
                file.set_len(len)?;
                return Ok(false);
            }
            e => return Err(io::Error::from_raw_os_error(e)),
        }
    }
}

/// Renames `from` to `to` unless `to` exists (`EEXIST` then), atomically:
/// `renameat2(RENAME_NOREPLACE)`, or where the filesystem lacks it, a hard
/// link (which never replaces) and an unlink of `from`.
pub(crate) fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let cstr = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
    };
    let (a, b) = (cstr(from)?, cstr(to)?);
    // SAFETY: valid NUL-terminated paths, relative to the cwd.
    let r = cvt(unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    });
    match r {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => {
            std::fs::hard_link(from, to)?;
            std::fs::remove_file(from)
        }
        Err(e) => Err(e),
    }
}
