//! A shared mapping of the start of a file, contained against SIGBUS.

use std::io;
use std::os::fd::AsFd;
use std::ptr::{self, NonNull};

use rustix::mm::{MapFlags, ProtFlags};

use crate::sigbus;
use crate::Access;

/// Whether a [`Map`] is registered with the [`sigbus`] handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// A peer may truncate the file (a named shm object, a file): a fault
    /// in the mapping is contained, its contents become private zeros and
    /// [`Map::is_broken`] says so.
    Sigbus,
    /// The file cannot shrink (a memfd sealed with
    /// [`seal_size`](crate::memfd::seal_size)): nothing to contain.
    Sealed,
}

/// A `MAP_SHARED` mapping of the first `len` bytes of a file; unmapped on
/// drop, after its SIGBUS registration is dropped.
///
/// It hands out raw pointers only: other processes may change the bytes
/// at any time, so everything read through them is loaded once and
/// checked, and with [`Protection::Sigbus`] they may turn into zeros.
#[derive(Debug)]
pub struct Map {
    ptr: NonNull<u8>,
    len: usize,
    /// SIGBUS protection; dropped (unregistered) before the unmap.
    guard: Option<sigbus::Registration>,
}

// SAFETY: `Map` owns its mapping and exposes it only through raw
// pointers; what is done through them is the caller's responsibility, the
// same on any thread.
unsafe impl Send for Map {}
// SAFETY: as for `Send`: `&Map` gives out nothing but the pointer.
unsafe impl Sync for Map {}

impl Map {
    /// Maps the first `len` bytes of the file shared, with `access`, and
    /// registers the mapping with the SIGBUS handler unless `protection`
    /// says the file is sealed.
    ///
    /// # Errors
    ///
    /// The OS error of `mmap` (`EINVAL` for a zero length, `EACCES` for a
    /// write mapping of a read-only descriptor, `ENOMEM`...).
    pub fn new(
        fd: impl AsFd,
        len: usize,
        access: Access,
        protection: Protection,
    ) -> io::Result<Self> {
        let prot = match access {
            Access::ReadOnly => ProtFlags::READ,
            Access::ReadWrite => ProtFlags::READ | ProtFlags::WRITE,
        };
        // SAFETY: a fresh mapping at an address the kernel chooses (null
        // hint, no MAP_FIXED), so it aliases no Rust object.
        let ptr = unsafe { rustix::mm::mmap(ptr::null_mut(), len, prot, MapFlags::SHARED, fd, 0) }?;
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap: null"))?;
        let guard = match protection {
            // SAFETY: the mapping is ours until `drop`, which unregisters it
            // before unmapping; its contents are reached only through raw
            // pointers whose users treat them as untrusted shared bytes,
            // which zeros in their place are too.
            Protection::Sigbus => Some(unsafe { sigbus::register(ptr.as_ptr(), len) }),
            Protection::Sealed => None,
        };
        Ok(Self { ptr, len, guard })
    }

    /// The base of the mapping (page-aligned).
    #[inline]
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The length of the mapping in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a mapping has at least one byte.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether a peer's truncation made an access fault: the mapping holds
    /// private zeros since. One atomic load.
    #[inline]
    pub fn is_broken(&self) -> bool {
        self.guard.as_ref().is_some_and(|g| g.is_broken())
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // Unregistered first, so the SIGBUS handler never touches the range
        // once it may belong to someone else.
        drop(self.guard.take());
        // SAFETY: `ptr` and `len` are exactly what mmap returned and took;
        // no reference into the mapping outlives `self` (borrows of it are
        // tied to the owner's lifetime). An unmap of our own mapping
        // cannot fail.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn two_mappings_share_bytes() {
        let name = shmlane_testkit::unique("sys-map");
        let f = crate::shm::create(&name, 0o600).unwrap();
        let _ = crate::shm::unlink(&name);
        crate::fs::allocate(&f, 4096).unwrap();
        let a = Map::new(&f, 4096, Access::ReadWrite, Protection::Sigbus).unwrap();
        let b = Map::new(&f, 4096, Access::ReadOnly, Protection::Sealed).unwrap();
        assert_eq!(a.len(), 4096);
        assert_eq!(a.as_ptr() as usize % 4096, 0);
        // SAFETY: both mappings are 4096 bytes, page-aligned and live for
        // the test; an atomic is valid for any bytes.
        let (x, y) = unsafe {
            (
                &*a.as_ptr().add(8).cast::<AtomicU32>(),
                &*b.as_ptr().add(8).cast::<AtomicU32>(),
            )
        };
        x.store(0xfeed, Ordering::Relaxed);
        assert_eq!(y.load(Ordering::Relaxed), 0xfeed);
        assert!(!a.is_broken() && !b.is_broken());
        assert_eq!(
            Map::new(&f, 0, Access::ReadOnly, Protection::Sealed)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::EINVAL)
        );
    }
}
