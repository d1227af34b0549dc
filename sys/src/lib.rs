//! The one system-call layer of shmlane.
//!
//! Every system call that `shmlane-shm`, `shmlane-semaphore` and the
//! facade's kernel transports (pipes, FIFOs, sockets, message queues,
//! signals) make goes through this crate: thin wrappers that return
//! `io::Result` with the kernel's error number intact (callers map
//! `raw_os_error`, or [`errno::Errno`], to their typed errors), retry
//! `EINTR` where a call can be interrupted, and hand out owned
//! descriptors. They sit on [`rustix`] where it has the call, on [`nix`]
//! for open-file-description byte-range locks, `posix_fallocate`, message
//! queues and `signalfd`, and on `libc` only where neither serves: System
//! V IPC (in neither), signal dispositions (the SIGBUS handler, ignoring SIGPIPE), the real-time
//! signal range, `pthread_sigmask` and `sigqueue`, and `mq_receive` into
//! uninitialised memory (each module says why).
//!
//! - [`shm`]: POSIX shared-memory objects (`shm_open`, `shm_unlink`).
//! - [`memfd`]: sealable memfds and their size seals.
//! - [`lock`]: open-file-description locks on single bytes, the liveness
//!   mechanism of segments, of the named semaphore and of the message-queue
//!   transport, and whole-file `flock`.
//! - [`fs`]: space (`statvfs`), reservation (`posix_fallocate`), a file's
//!   length (`ftruncate`), an atomic rename that never replaces
//!   (`renameat2(RENAME_NOREPLACE)`), FIFOs (`mkfifo`, non-blocking
//!   opens), and the `O_` flags callers pass to `std`'s `custom_flags`.
//! - [`map`]: a shared mapping of a file, contained against SIGBUS by
//!   [`sigbus`] when a peer may truncate the file.
//! - [`process`]: this process's pid and effective uid, a process's start
//!   time (to tell a live pid from a reused one), pidfds, whether a
//!   process is gone, and `SIGKILL` to itself (the test-only crash points).
//! - [`fd`]: descriptor flags (non-blocking, close-on-exec, pipe buffer
//!   size), pipes, inheritable duplicates, whether a descriptor is a
//!   socket, and reads and writes (`read`, `writev`, `pread`, `pwrite`).
//! - [`net`]: Unix-domain stream sockets by path, listening, accepting,
//!   `TCP_NODELAY`, and `sendmsg(MSG_NOSIGNAL)`.
//! - [`mqueue`]: POSIX message queues (`mq_open`, `mq_send`,
//!   `mq_receive`, `mq_getattr`, `mq_unlink`).
//! - [`poll`]: waiting for descriptors until a deadline, across `EINTR`.
//! - [`signal`]: ignoring `SIGPIPE` where it has the default action, and
//!   queued real-time signals (blocking, `signalfd`, `sigqueue`).
//! - [`sysv`]: System V shared memory, message queues and semaphore
//!   sets (`shmget`/`shmat`, `msgget`/`msgsnd`/`msgrcv`,
//!   `semget`/`semtimedop`), and the kernel's tables of them.
//! - [`futex`] and [`membarrier`]: the eventcount's wait, wake and
//!   asymmetric fence.
//! - [`clock`]: a coarse monotonic clock for rate limits on hot paths.
//! - [`errno`]: `cvt` and `EINTR` retry for the raw calls that remain, and
//!   the error numbers to match.
//!
//! Everything but [`errno`] is Linux-only.
//!
//! # Examples
//!
//! ```
//! use shmlane_sys::{fs, lock, shm, Access};
//!
//! let name = format!("sys-doc-{}", std::process::id());
//! let file = shm::create(&name, 0o600)?;
//! fs::allocate(&file, 4096)?;
//! // A second open file description, as another process would have.
//! let other = shm::open(&name, Access::ReadWrite)?;
//! assert!(lock::try_lock(&file, 7)?);
//! assert!(lock::is_locked(&other, 7)?);
//! assert!(!lock::try_lock(&other, 7)?);
//! shm::unlink(&name)?;
//! # Ok::<(), std::io::Error>(())
//! ```

#[cfg(target_os = "linux")]
pub mod clock;
pub mod errno;
#[cfg(target_os = "linux")]
pub mod fd;
#[cfg(target_os = "linux")]
pub mod fs;
#[cfg(target_os = "linux")]
pub mod futex;
#[cfg(target_os = "linux")]
pub mod lock;
#[cfg(target_os = "linux")]
pub mod map;
#[cfg(target_os = "linux")]
pub mod membarrier;
#[cfg(target_os = "linux")]
pub mod memfd;
#[cfg(target_os = "linux")]
pub mod mqueue;
#[cfg(target_os = "linux")]
pub mod net;
#[cfg(target_os = "linux")]
pub mod poll;
#[cfg(target_os = "linux")]
pub mod process;
#[cfg(target_os = "linux")]
pub mod shm;
#[cfg(target_os = "linux")]
pub mod sigbus;
#[cfg(target_os = "linux")]
pub mod signal;
#[cfg(target_os = "linux")]
pub mod sysv;

/// How a shared object is opened or mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read only (`O_RDONLY`, `PROT_READ`).
    ReadOnly,
    /// Read and write (`O_RDWR`, `PROT_READ | PROT_WRITE`).
    ReadWrite,
}

/// A name or path as a C string; one with a NUL byte is `InvalidInput`
/// (with no error number, as before any system call is made).
#[cfg(target_os = "linux")]
fn c_string(bytes: &[u8]) -> std::io::Result<std::ffi::CString> {
    std::ffi::CString::new(bytes).map_err(|_| std::io::ErrorKind::InvalidInput.into())
}
