//! Anonymous memory files (`memfd_create`) and their size seals.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;

use rustix::fs::{MemfdFlags, SealFlags};

/// A new close-on-exec memfd that accepts seals, named `name` (for
/// `/proc/PID/fd` only).
///
/// # Errors
///
/// The OS error; `InvalidInput` for a name with a NUL byte.
pub fn create(name: &str) -> io::Result<File> {
    let name = crate::c_string(name.as_bytes())?;
    let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    Ok(File::from(rustix::fs::memfd_create(
        name.as_c_str(),
        flags,
    )?))
}

/// Seals a memfd against shrinking, growing and further sealing, so a
/// peer cannot make a mapping of it fault with SIGBUS.
///
/// # Errors
///
/// The OS error (`EPERM` for a memfd made without
/// `MFD_ALLOW_SEALING`, `EINVAL` for a file that is not a memfd).
pub fn seal_size(fd: impl AsFd) -> io::Result<()> {
    let seals = SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL;
    Ok(rustix::fs::fcntl_add_seals(fd, seals)?)
}

/// Whether the file is sealed against both shrinking and growing (false
/// for a file that cannot be sealed, or when the seals cannot be read).
pub fn is_size_sealed(fd: impl AsFd) -> bool {
    rustix::fs::fcntl_get_seals(fd)
        .is_ok_and(|seals| seals.contains(SealFlags::SHRINK | SealFlags::GROW))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_memfds_say_so() {
        let f = create("shmlane-sys-test").unwrap();
        f.set_len(4096).unwrap();
        assert!(!is_size_sealed(&f));
        seal_size(&f).unwrap();
        assert!(is_size_sealed(&f));
        assert!(f.set_len(0).is_err());
        assert!(seal_size(&f).is_err(), "F_SEAL_SEAL forbids more seals");
    }

    #[test]
    fn ordinary_files_have_no_seals() {
        let f = File::open("/proc/self/stat").unwrap();
        assert!(!is_size_sealed(&f));
    }
}
