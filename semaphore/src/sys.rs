//! Thin wrappers over the system calls the named semaphore makes: POSIX
//! shared memory, a shared mapping, and open-file-description byte locks.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::{self, NonNull};

use crate::cvt;

/// Retries a call returning a C int while it fails with `EINTR`.
fn cvt_retry(mut f: impl FnMut() -> libc::c_int) -> io::Result<libc::c_int> {
    loop {
        match cvt(libc::c_long::from(f())) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // The value came from a c_int, so it fits back.
            other => return other.map(|r| r as libc::c_int),
        }
    }
}

fn c_name(name: &str) -> io::Result<CString> {
    CString::new(format!("/{name}")).map_err(|_| io::ErrorKind::InvalidInput.into())
}

/// `shm_open` of `/name`, always close-on-exec.
pub(crate) fn shm_open(name: &str, flags: libc::c_int, mode: u32) -> io::Result<File> {
    let path = c_name(name)?;
    let flags = flags | libc::O_CLOEXEC;
    // SAFETY: `path` is a valid NUL-terminated string; shm_open returns a
    // new fd or -1 and keeps no pointer.
    let fd = cvt_retry(|| unsafe { libc::shm_open(path.as_ptr(), flags, mode as libc::mode_t) })?;
    // SAFETY: `fd` was just returned by shm_open and is owned by nobody else.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// `shm_unlink` of `/name`.
pub(crate) fn shm_unlink(name: &str) -> io::Result<()> {
    let path = c_name(name)?;
    // SAFETY: `path` is a valid NUL-terminated string.
    cvt(libc::c_long::from(unsafe {
        libc::shm_unlink(path.as_ptr())
    }))
    .map(drop)
}

/// Reserves `len` bytes of `file` (`posix_fallocate`), extending it.
pub(crate) fn allocate(file: &File, len: u64) -> io::Result<()> {
    let len =
        libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    loop {
        // SAFETY: an fd we own; posix_fallocate returns the error number
        // itself instead of setting errno.
        match unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) } {
            0 => return Ok(()),
            libc::EINTR => {}
            e => return Err(io::Error::from_raw_os_error(e)),
        }
    }
}

/// A shared, read-write mapping of the start of a file; unmapped on drop.
pub(crate) struct Map {
    ptr: NonNull<u8>,
    len: usize,
    /// SIGBUS protection; dropped (unregistered) before the unmap.
    guard: Option<crate::sigbus::Registration>,
}

// SAFETY: `Map` owns its mapping; the memory is only reached through
// atomics (see `named`), which any thread may use.
unsafe impl Send for Map {}
// SAFETY: as for `Send`: shared access goes through atomics only.
unsafe impl Sync for Map {}

impl Map {
    /// Maps the first `len` bytes of `file` shared and read-write.
    pub(crate) fn new(file: &File, len: usize) -> io::Result<Self> {
        // SAFETY: a fresh mapping chosen by the kernel (null hint), of an fd
        // we own; it aliases no Rust object.
        let ptr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap: null"))?;
        // SAFETY: the mapping is ours until `drop`, which unregisters it
        // before unmapping; its contents are only shared state that the
        // owner stops trusting once `is_broken` says so.
        let guard = Some(unsafe { crate::sigbus::register(ptr.as_ptr(), len) });
        Ok(Self { ptr, len, guard })
    }

    /// Whether a peer's truncation made an access fault (the mapping holds
    /// private zeros since).
    pub(crate) fn is_broken(&self) -> bool {
        self.guard.as_ref().is_some_and(|g| g.is_broken())
    }

    /// The base of the mapping (page-aligned).
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // Unregistered first, so the SIGBUS handler never touches the range
        // once it may belong to someone else.
        drop(self.guard.take());
        // SAFETY: `ptr` and `len` are exactly what mmap returned and took;
        // no reference into the mapping outlives `self` (borrows of it are
        // tied to the owner's lifetime).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

fn flock_for(offset: u64, kind: libc::c_int) -> libc::flock {
    // SAFETY: `flock` is plain data; all-zero is a valid value (and l_pid
    // must be 0 for open-file-description locks).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = offset as libc::off_t;
    fl.l_len = 1;
    fl
}

/// Takes an exclusive open-file-description lock on one byte, without
/// waiting. The kernel drops it when the last fd of this open file
/// description is closed, which includes the process dying.
///
/// Returns `Ok(false)` when another open file description holds it.
/// Locks through the same open file description never conflict: a second
/// call on a byte this description already locks succeeds.
pub(crate) fn try_lock_byte(file: &File, offset: u64) -> io::Result<bool> {
    let fl = flock_for(offset, libc::F_WRLCK);
    // SAFETY: fcntl with a pointer to a valid flock on this stack frame,
    // which the kernel only reads.
    match cvt_retry(|| unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) }) {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Releases a lock taken with [`try_lock_byte`].
pub(crate) fn unlock_byte(file: &File, offset: u64) -> io::Result<()> {
    let fl = flock_for(offset, libc::F_UNLCK);
    // SAFETY: as in `try_lock_byte`.
    cvt_retry(|| unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) }).map(drop)
}

/// Whether another open file description holds a lock on the byte. Locks
/// held through `file`'s own open file description are not seen.
pub(crate) fn byte_is_locked(file: &File, offset: u64) -> io::Result<bool> {
    let mut fl = flock_for(offset, libc::F_WRLCK);
    // SAFETY: as in `try_lock_byte`; the kernel writes the result into `fl`.
    cvt_retry(|| unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) })?;
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}
