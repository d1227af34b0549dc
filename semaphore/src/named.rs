//! A named counting semaphore shared between processes.
//!
//! # Layout
//!
//! One POSIX shared-memory object (`/dev/shm/NAME`) of `LEN` bytes:
//!
//! ```text
//! [ header ]  magic "SHMLSEM\0", version, state (INIT -> READY),
//!             permit count, creator pid, eventcount (wakeup word + waiters)
//! [ table ]   at TABLE: one byte per permit
//! ```
//!
//! # Protocol
//!
//! Permit `i` *is* an exclusive open-file-description lock (`F_OFD_SETLK`)
//! on byte `TABLE + i` of the object. Holding the lock is holding the
//! permit, so the kernel gives back the permits of a process that dies,
//! even by `SIGKILL`, when it closes the process's descriptors. The byte's
//! value is only a hint (1 while a holder believes it holds it) that lets
//! an acquirer try likely-free slots first; a peer that scribbles on it
//! costs extra system calls, never a double grant.
//!
//! Locks taken through one open file description never conflict with each
//! other, and every handle has its own (each `open` calls `shm_open`). So a
//! handle also keeps a process-local bitmap of the slots its own permits
//! hold: a thread claims the bit before trying the lock, and a release
//! unlocks before clearing the bit.
//!
//! A release bumps the eventcount and wakes one announced waiter. Waiters
//! also wake every `STEP` to re-scan, because a permit given back by a
//! dying process comes with no wakeup.
//!
//! # Shared with segments
//!
//! The object is made and found the way a `shm:` segment is, through
//! `shmlane-sys`: an exclusive `shm::create` (removed again by
//! `fs::RemoveOnDrop` if creation fails), the mode set exactly, every byte
//! reserved (`fs::allocate`), a `map::Map` registered with the SIGBUS
//! handler, and liveness as OFD byte locks (`lock`). What differs, and
//! why: the object is created under its public name (a segment is built
//! under a private name and renamed into place) because its whole layout
//! is one page published by one Release store, so an opener that finds it
//! early just waits for READY; an opener judges readiness by time alone
//! (a segment also checks a creator lock, to tell a creator still at work
//! from a dead one); and the permit bitmap is claimed lock-free, bit
//! first, because a permit has no table entry to publish (a segment
//! serialises attaches with a mutex and marks its slot only once the
//! entry is published).

use std::fmt;
use std::fs::File;
use std::io;
use std::mem::{align_of, size_of};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, Instant};

use crate::eventcount::{EventCount, TimedOut};
use crate::sync::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use shmlane_sys::errno::Errno;
use shmlane_sys::map::{Map, Protection};
use shmlane_sys::{self as sys, Access};

mod error;

pub use error::{AcquireError, SemaphoreError, TryAcquireError};

/// The most permits one semaphore may have. Bounded because a waiter on an
/// exhausted semaphore probes every slot with a system call each time it
/// wakes (at least every 10 ms): 1024 probes are a fraction of a
/// millisecond.
pub const MAX_PERMITS: usize = 1024;

/// The longest semaphore name, in bytes.
pub const MAX_NAME_LEN: usize = 250;

const MAGIC: u64 = u64::from_le_bytes(*b"SHMLSEM\0");
const VERSION: u32 = 1;
const STATE_INIT: u32 = 0;
const STATE_READY: u32 = 1;
/// The length of the shared object.
const LEN: usize = 4096;
/// Offset of the permit table (and of the permits' lock bytes).
const TABLE: usize = 64;
/// The longest a waiter sleeps before re-scanning for permits that a dead
/// process gave back.
const STEP: Duration = Duration::from_millis(10);
/// How often `open` looks again while the creator is still initialising.
const READY_POLL: Duration = Duration::from_millis(1);

/// The start of the shared object. Only atomics: a peer may write any
/// bytes at any time, and every value is loaded once and checked.
#[repr(C)]
struct Header {
    magic: AtomicU64,
    version: AtomicU32,
    state: AtomicU32,
    permits: AtomicU32,
    creator_pid: AtomicU32,
    wake: EventCount,
}

const _: () = {
    assert!(size_of::<Header>() == 32);
    assert!(align_of::<Header>() == 8);
    assert!(size_of::<Header>() <= TABLE);
    assert!(TABLE + MAX_PERMITS <= LEN);
    assert!(MAX_PERMITS <= u32::MAX as usize);
};

fn lock_offset(slot: usize) -> u64 {
    (TABLE + slot) as u64
}

/// Checks a name: 1 to [`MAX_NAME_LEN`] bytes, no `/` or NUL, not `.` or `..`.
fn check_name(name: &str) -> Result<(), SemaphoreError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.contains(['/', '\0'])
        && name != "."
        && name != "..";
    if ok {
        Ok(())
    } else {
        Err(SemaphoreError::InvalidName(name.to_owned()))
    }
}

fn check_count(permits: usize) -> Result<(), SemaphoreError> {
    if (1..=MAX_PERMITS).contains(&permits) {
        Ok(())
    } else {
        Err(SemaphoreError::BadCount {
            asked: permits,
            max: MAX_PERMITS,
        })
    }
}

fn map_err(name: &str, e: io::Error) -> SemaphoreError {
    let not_sem = |reason| SemaphoreError::NotASemaphore {
        name: name.to_owned(),
        reason,
    };
    match Errno::from_io_error(&e) {
        Some(Errno::NOENT) => SemaphoreError::NotFound(name.to_owned()),
        Some(Errno::EXIST) => SemaphoreError::AlreadyExists(name.to_owned()),
        Some(Errno::ACCESS | Errno::PERM) => SemaphoreError::PermissionDenied(name.to_owned()),
        Some(Errno::NAMETOOLONG) => SemaphoreError::InvalidName(name.to_owned()),
        Some(Errno::LOOP) => not_sem("it is a symbolic link"),
        // glibc's shm_open reports a directory as EINVAL (the name itself
        // was checked before).
        Some(Errno::ISDIR | Errno::INVAL) => not_sem("it is a directory"),
        _ => SemaphoreError::Os(e),
    }
}

/// Options for creating and opening a [`Semaphore`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use shmlane_semaphore::SemaphoreOptions;
///
/// let name = format!("doc-options-{}", std::process::id());
/// let sem = SemaphoreOptions::new()
///     .mode(0o600)
///     .unlink_on_drop(true)
///     .create(&name, 3)?;
/// let again = SemaphoreOptions::new()
///     .ready_timeout(Duration::from_millis(100))
///     .open(&name)?;
/// assert_eq!(again.permits(), 3);
/// drop((again, sem)); // `sem` removes the name
/// # Ok::<(), shmlane_semaphore::SemaphoreError>(())
/// ```
#[derive(Debug, Clone)]
pub struct SemaphoreOptions {
    mode: u32,
    ready_timeout: Duration,
    unlink_on_drop: bool,
}

impl Default for SemaphoreOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl SemaphoreOptions {
    /// Mode `0o600`, a ready timeout of 1 s, and a name that outlives the
    /// handle.
    pub const fn new() -> Self {
        Self {
            mode: 0o600,
            ready_timeout: Duration::from_secs(1),
            unlink_on_drop: false,
        }
    }

    /// Permission bits of a created semaphore, applied exactly (not
    /// through the umask). Processes of other users need read and write
    /// access to open it.
    pub const fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// How long `open` waits for a creator that is still setting the
    /// semaphore up before it fails with [`SemaphoreError::NotReady`].
    pub const fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Whether the handle removes the name when it is dropped (default:
    /// no; the name lives until [`Semaphore::unlink`], like a POSIX named
    /// semaphore). Handles already open keep working either way.
    pub const fn unlink_on_drop(mut self, yes: bool) -> Self {
        self.unlink_on_drop = yes;
        self
    }

    /// Creates a semaphore named `name` with `permits` permits, all free.
    /// Fails if the name exists.
    ///
    /// # Errors
    ///
    /// [`SemaphoreError::InvalidName`], [`SemaphoreError::BadCount`],
    /// [`SemaphoreError::AlreadyExists`],
    /// [`SemaphoreError::PermissionDenied`] or the OS error.
    pub fn create(&self, name: &str, permits: usize) -> Result<Semaphore, SemaphoreError> {
        check_name(name)?;
        check_count(permits)?;
        let file = sys::shm::create(name, self.mode).map_err(|e| map_err(name, e))?;
        // Removes the half-made object if anything below fails.
        let path = sys::shm::path(name);
        let guard = sys::fs::RemoveOnDrop::new(&path);
        // The umask may have cleared bits the caller asked for.
        file.set_permissions(std::fs::Permissions::from_mode(self.mode))
            .map_err(SemaphoreError::Os)?;
        // Reserve the page, not only set the length: on a full /dev/shm a
        // sparse object would fault (SIGBUS) on first touch instead of
        // failing here.
        sys::fs::allocate(&file, LEN as u64).map_err(SemaphoreError::Os)?;
        let mut sem = Semaphore::attach(file, name, permits).map_err(SemaphoreError::Os)?;
        let h = sem.header();
        // Relaxed: published by the Release store of READY below. The new
        // object is all zeros: an idle eventcount and a free table.
        h.magic.store(MAGIC, Ordering::Relaxed);
        h.version.store(VERSION, Ordering::Relaxed);
        h.permits.store(permits as u32, Ordering::Relaxed);
        h.creator_pid.store(sys::process::pid(), Ordering::Relaxed);
        // Release: publishes every field above; pairs with the Acquire load
        // of `state` in `open`.
        h.state.store(STATE_READY, Ordering::Release);
        guard.keep();
        sem.unlink_on_drop = self.unlink_on_drop;
        Ok(sem)
    }

    /// Opens the semaphore named `name`, waiting (up to the ready timeout)
    /// for its creator to finish setting it up.
    ///
    /// # Errors
    ///
    /// [`SemaphoreError::InvalidName`], [`SemaphoreError::NotFound`],
    /// [`SemaphoreError::PermissionDenied`],
    /// [`SemaphoreError::NotASemaphore`], [`SemaphoreError::NotReady`] or
    /// the OS error.
    pub fn open(&self, name: &str) -> Result<Semaphore, SemaphoreError> {
        check_name(name)?;
        let file = sys::shm::open(name, Access::ReadWrite).map_err(|e| map_err(name, e))?;
        let not_sem = |reason| SemaphoreError::NotASemaphore {
            name: name.to_owned(),
            reason,
        };
        let start = Instant::now();
        let waited_too_long = || start.elapsed() >= self.ready_timeout;
        // A creator sets the length right after creating the object.
        loop {
            let meta = file.metadata().map_err(SemaphoreError::Os)?;
            if !meta.file_type().is_file() {
                return Err(not_sem("it is not a regular file"));
            }
            match meta.len() {
                len if len == LEN as u64 => break,
                0 if !waited_too_long() => std::thread::sleep(READY_POLL),
                0 => return Err(SemaphoreError::NotReady(name.to_owned())),
                _ => return Err(not_sem("it has the wrong size")),
            }
        }
        // Not unlinked on drop until it proves to be a semaphore.
        let mut sem = Semaphore::attach(file, name, 1).map_err(SemaphoreError::Os)?;
        let h = sem.header();
        loop {
            // Acquire: pairs with the creator's Release store of READY, so
            // the fields read below are the ones it wrote.
            match h.state.load(Ordering::Acquire) {
                STATE_READY => break,
                STATE_INIT if !waited_too_long() => std::thread::sleep(READY_POLL),
                STATE_INIT => return Err(SemaphoreError::NotReady(name.to_owned())),
                _ => return Err(not_sem("its state word is invalid")),
            }
        }
        // Relaxed: ordered by the Acquire load of READY above.
        if h.magic.load(Ordering::Relaxed) != MAGIC {
            return Err(not_sem("bad magic"));
        }
        if h.version.load(Ordering::Relaxed) != VERSION {
            return Err(not_sem("unsupported layout version"));
        }
        let permits = h.permits.load(Ordering::Relaxed) as usize;
        if check_count(permits).is_err() {
            return Err(not_sem("its permit count is out of range"));
        }
        sem.permits = permits;
        sem.unlink_on_drop = self.unlink_on_drop;
        Ok(sem)
    }

    /// Opens the semaphore named `name`, or creates it with `permits`
    /// permits if it does not exist. As with POSIX `sem_open`, the count is
    /// ignored when the semaphore exists: check [`Semaphore::permits`].
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create) and [`open`](Self::open).
    pub fn open_or_create(&self, name: &str, permits: usize) -> Result<Semaphore, SemaphoreError> {
        check_count(permits)?;
        // Another process may create or unlink the name between our two
        // calls; a few rounds settle it.
        let mut last = None;
        for _ in 0..8 {
            match self.create(name, permits) {
                Err(SemaphoreError::AlreadyExists(_)) => {}
                other => return other,
            }
            match self.open(name) {
                Err(e @ SemaphoreError::NotFound(_)) => last = Some(e),
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| SemaphoreError::NotFound(name.to_owned())))
    }
}

/// A named counting semaphore shared between processes.
///
/// Any process that opens the name (with read-write access to
/// `/dev/shm/NAME`) shares its permits. A permit is held by a
/// [`SemaphorePermit`] and given back when the permit is dropped, when its
/// `Semaphore` handle is dropped, or when the holding process exits or is
/// killed: the kernel drops the lock that is the permit, and a waiter
/// notices within about 10 ms.
///
/// A handle may be shared between threads (`&Semaphore` is `Send` and
/// `Sync`; put it in an `Arc` to hand it to spawned threads). It must not
/// be used in a child made by `fork` (without `exec`): open the name again
/// there. Such use is refused with an error.
///
/// The name lives until [`Semaphore::unlink`] unless the handle was made
/// with [`SemaphoreOptions::unlink_on_drop`].
///
/// Waiters are not served in any particular order. A waiter sleeps on a
/// futex in the shared object and is woken by a release; it also wakes at
/// least every 10 ms to look for permits of dead processes, probing each
/// held permit with one `fcntl` call.
///
/// # Examples
///
/// ```
/// use shmlane_semaphore::{Semaphore, TryAcquireError};
///
/// let name = format!("doc-printers-{}", std::process::id());
/// let printers = Semaphore::create(&name, 2)?;
/// // Another process would call `Semaphore::open(&name)`.
/// let a = printers.acquire()?;
/// let b = printers.try_acquire()?;
/// assert_ne!(a.index(), b.index()); // two printers, two distinct permits
/// assert!(matches!(printers.try_acquire(), Err(TryAcquireError::NoPermits)));
/// drop(a); // gives the permit back
/// let c = printers.acquire_timeout(std::time::Duration::from_secs(1))?;
/// drop((b, c));
/// assert_eq!(printers.available(), 2);
/// Semaphore::unlink(&name)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Semaphore {
    file: File,
    map: Map,
    name: String,
    /// The permit count, as validated when opened; never re-read.
    permits: usize,
    /// Bit `i` set: slot `i` is held, or being claimed, by a permit of this
    /// handle. Needed because this handle's own locks never conflict with
    /// each other.
    held: Box<[AtomicU64]>,
    /// Where the next scan starts, so that acquirers spread over the slots.
    next: AtomicUsize,
    /// The process that opened this handle (a forked child must not use it).
    pid: u32,
    unlink_on_drop: bool,
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("name", &self.name)
            .field("permits", &self.permits)
            .finish_non_exhaustive()
    }
}

impl Semaphore {
    /// Creates a semaphore named `name` (as `/dev/shm/NAME`, mode `0o600`)
    /// with `permits` permits, all free. See [`SemaphoreOptions`] for the
    /// knobs.
    ///
    /// # Errors
    ///
    /// As [`SemaphoreOptions::create`].
    pub fn create(name: &str, permits: usize) -> Result<Self, SemaphoreError> {
        SemaphoreOptions::new().create(name, permits)
    }

    /// Opens an existing semaphore named `name`.
    ///
    /// # Errors
    ///
    /// As [`SemaphoreOptions::open`].
    pub fn open(name: &str) -> Result<Self, SemaphoreError> {
        SemaphoreOptions::new().open(name)
    }

    /// Opens the semaphore named `name`, or creates it with `permits`
    /// permits (ignored if it exists).
    ///
    /// # Errors
    ///
    /// As [`SemaphoreOptions::open_or_create`].
    pub fn open_or_create(name: &str, permits: usize) -> Result<Self, SemaphoreError> {
        SemaphoreOptions::new().open_or_create(name, permits)
    }

    /// Removes the name. Processes that have the semaphore open keep using
    /// it; a later `create` of the name makes a new, separate semaphore.
    ///
    /// # Errors
    ///
    /// [`SemaphoreError::NotFound`], [`SemaphoreError::InvalidName`],
    /// [`SemaphoreError::PermissionDenied`] or the OS error.
    pub fn unlink(name: &str) -> Result<(), SemaphoreError> {
        check_name(name)?;
        sys::shm::unlink(name).map_err(|e| map_err(name, e))
    }

    fn attach(file: File, name: &str, permits: usize) -> io::Result<Self> {
        let map = Map::new(&file, LEN, Access::ReadWrite, Protection::Sigbus)?;
        let pid = sys::process::pid();
        Ok(Self {
            file,
            map,
            name: name.to_owned(),
            permits,
            held: (0..MAX_PERMITS.div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
            next: AtomicUsize::new(pid as usize),
            pid,
            unlink_on_drop: false,
        })
    }

    fn header(&self) -> &Header {
        // SAFETY: the mapping is LEN bytes, page-aligned, and lives as long
        // as `self`; `Header` holds only atomics, valid for any bytes, which
        // other processes may change at any time.
        unsafe { &*self.map.as_ptr().cast::<Header>() }
    }

    fn hint(&self, slot: usize) -> &AtomicU8 {
        assert!(slot < self.permits);
        // SAFETY: `slot < permits <= MAX_PERMITS`, so the byte lies inside
        // the LEN-byte mapping (checked at compile time), which lives as
        // long as `self`; an atomic byte is valid for any value.
        unsafe { &*self.map.as_ptr().add(TABLE + slot).cast::<AtomicU8>() }
    }

    /// The semaphore's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The number of permits, held or free.
    pub fn permits(&self) -> usize {
        self.permits
    }

    /// The number of free permits now: a snapshot that may be stale by the
    /// time it returns (one lock probe per permit). Permits of processes
    /// that died count as free.
    pub fn available(&self) -> usize {
        (0..self.permits)
            .filter(|&slot| {
                !self.holds(slot)
                    // An error (it should not happen) counts as held.
                    && !sys::lock::is_locked_or_unknown(&self.file, lock_offset(slot))
            })
            .count()
    }

    /// Whether the semaphore's shared object was truncated by another
    /// process (a fault caught by the [`sigbus`](crate::sigbus) handler, or
    /// a file found shorter than it must be). A broken semaphore refuses
    /// every acquire with `Broken`; one `fstat` per call.
    pub fn is_broken(&self) -> bool {
        self.map.is_broken() || crate::sigbus::shorter_than(self.file.as_fd(), LEN as u64)
    }

    /// How many threads, in every process, are asleep waiting for a permit
    /// now (a diagnostic; a process killed while waiting stays counted,
    /// which only costs releasers a needless wake call).
    pub fn waiters(&self) -> u32 {
        self.header().wake.waiters()
    }

    fn bit(slot: usize) -> (usize, u64) {
        (slot / 64, 1 << (slot % 64))
    }

    fn holds(&self, slot: usize) -> bool {
        let (word, bit) = Self::bit(slot);
        // Relaxed: a snapshot for `available`; orders nothing.
        self.held[word].load(Ordering::Relaxed) & bit != 0
    }

    fn check_fork(&self) -> io::Result<()> {
        if sys::process::pid() == self.pid {
            Ok(())
        } else {
            Err(io::Error::other(
                "semaphore handle used in a forked child: open the name again there",
            ))
        }
    }

    /// Tries to take slot `slot` for a new permit.
    fn try_slot(&self, slot: usize) -> io::Result<bool> {
        let (word, bit) = Self::bit(slot);
        // Acquire: pairs with the Release clear in `release`, so the
        // unlock made there is complete before our lock attempt below.
        if self.held[word].fetch_or(bit, Ordering::Acquire) & bit != 0 {
            return Ok(false);
        }
        // The bit was clear, so no permit of this handle holds the lock:
        // success here means no other open file description holds it.
        match sys::lock::try_lock(&self.file, lock_offset(slot)) {
            Ok(true) => {
                // Relaxed: only a hint for other acquirers' scan order.
                self.hint(slot).store(1, Ordering::Relaxed);
                Ok(true)
            }
            other => {
                // Relaxed: we made no change to publish.
                self.held[word].fetch_and(!bit, Ordering::Relaxed);
                other
            }
        }
    }

    /// One scan for a free slot: first those whose hint says free, then
    /// every slot (a holder that died leaves its hint set).
    fn scan(&self) -> Result<Option<SemaphorePermit<'_>>, ScanError> {
        self.check_fork()?;
        if self.is_broken() {
            return Err(ScanError::Broken);
        }
        let n = self.permits;
        // Relaxed: only spreads scans; any value is correct.
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        for pass in [true, false] {
            for k in 0..n {
                let slot = (start + k) % n;
                // Relaxed: a hint; the lock decides.
                if pass && self.hint(slot).load(Ordering::Relaxed) != 0 {
                    continue;
                }
                if self.try_slot(slot)? {
                    return Ok(Some(SemaphorePermit { sem: self, slot }));
                }
            }
        }
        Ok(None)
    }

    /// Takes a permit if one is free now, without waiting.
    ///
    /// # Errors
    ///
    /// [`TryAcquireError::NoPermits`] when every permit is held;
    /// [`TryAcquireError::Os`] on an OS error or in a forked child.
    pub fn try_acquire(&self) -> Result<SemaphorePermit<'_>, TryAcquireError> {
        match self.scan() {
            Ok(Some(p)) => Ok(p),
            Ok(None) => Err(TryAcquireError::NoPermits),
            Err(ScanError::Broken) => Err(TryAcquireError::Broken),
            Err(ScanError::Os(e)) => Err(TryAcquireError::Os(e)),
        }
    }

    /// Takes a permit, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`AcquireError::Os`] on an OS error or in a forked child (never
    /// `Timeout`).
    pub fn acquire(&self) -> Result<SemaphorePermit<'_>, AcquireError> {
        self.acquire_until(None)
    }

    /// Takes a permit, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`AcquireError::Timeout`] when no permit came free in time;
    /// [`AcquireError::Os`] on an OS error or in a forked child.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<SemaphorePermit<'_>, AcquireError> {
        // A timeout too far away to represent waits forever.
        self.acquire_until(Instant::now().checked_add(timeout))
    }

    /// Takes a permit, waiting until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// As [`acquire_timeout`](Self::acquire_timeout).
    pub fn acquire_deadline(&self, deadline: Instant) -> Result<SemaphorePermit<'_>, AcquireError> {
        self.acquire_until(Some(deadline))
    }

    fn acquire_until(
        &self,
        deadline: Option<Instant>,
    ) -> Result<SemaphorePermit<'_>, AcquireError> {
        // No spinning: every check is a scan of system calls, and a permit
        // is usually held for far longer than a spin would last.
        let got = self
            .header()
            .wake
            .wait_in_steps(deadline, Some(STEP), &mut || self.scan().transpose());
        match got {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(ScanError::Broken)) => Err(AcquireError::Broken),
            Ok(Err(ScanError::Os(e))) => Err(AcquireError::Os(e)),
            Err(TimedOut) => Err(AcquireError::Timeout),
        }
    }

    fn release(&self, slot: usize) {
        if self.check_fork().is_err() {
            // A forked child's copy of a permit: the lock belongs to the
            // parent's open file description, which the child shares.
            return;
        }
        // Relaxed: a hint (set before the unlock so that no new holder's 1
        // is overwritten by our 0).
        self.hint(slot).store(0, Ordering::Relaxed);
        // An unlock of one whole locked byte cannot fail on a valid fd. If
        // it did, the lock would stay with this handle, and clearing the bit
        // lets a later permit of this handle reuse it, which is still sound.
        let _ = sys::lock::unlock(&self.file, lock_offset(slot));
        let (word, bit) = Self::bit(slot);
        // Release: pairs with the Acquire claim in `try_slot`: a thread of
        // this handle that sees the bit clear tries the lock only after the
        // unlock above.
        self.held[word].fetch_and(!bit, Ordering::Release);
        // Wakes one waiter in any process; the others keep sleeping.
        self.header().wake.notify_one();
    }
}

impl Drop for Semaphore {
    fn drop(&mut self) {
        if !self.unlink_on_drop || self.check_fork().is_err() {
            return;
        }
        // Unlink only if the name still refers to our object: another
        // process may have unlinked it and created a new one since.
        let same = sys::shm::open(&self.name, Access::ReadOnly)
            .and_then(|f| Ok((f.metadata()?, self.file.metadata()?)))
            .is_ok_and(|(a, b)| a.dev() == b.dev() && a.ino() == b.ino());
        if same {
            let _ = sys::shm::unlink(&self.name);
        }
        // Closing the file afterwards drops any locks still held.
    }
}

/// Why a scan for a free permit failed.
enum ScanError {
    Broken,
    Os(io::Error),
}

impl From<io::Error> for ScanError {
    fn from(e: io::Error) -> Self {
        Self::Os(e)
    }
}

/// A permit of a [`Semaphore`], given back when dropped.
///
/// The permits held at one time have distinct [`index`](Self::index)es in
/// `0..permits`, which may name the resource the permit stands for (the
/// printer of a printer pool, say). Forgetting a permit (`mem::forget`)
/// holds it until its `Semaphore` handle is dropped or the process exits.
#[must_use = "the permit is given back at once if not kept"]
pub struct SemaphorePermit<'a> {
    sem: &'a Semaphore,
    slot: usize,
}

impl SemaphorePermit<'_> {
    /// Which permit this is, in `0..permits`.
    pub fn index(&self) -> usize {
        self.slot
    }

    /// The semaphore the permit belongs to.
    pub fn semaphore(&self) -> &Semaphore {
        self.sem
    }
}

impl fmt::Debug for SemaphorePermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphorePermit")
            .field("semaphore", &self.sem.name)
            .field("index", &self.slot)
            .finish()
    }
}

impl Drop for SemaphorePermit<'_> {
    fn drop(&mut self) {
        self.sem.release(self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for bad in ["", ".", "..", "a/b", "/a", "a\0b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name(&"x".repeat(MAX_NAME_LEN + 1)).is_err());
        assert!(check_name(&"x".repeat(MAX_NAME_LEN)).is_ok());
        assert!(check_name("printers.pool-1").is_ok());
    }

    #[test]
    fn counts_are_checked() {
        assert!(check_count(0).is_err());
        assert!(check_count(1).is_ok());
        assert!(check_count(MAX_PERMITS).is_ok());
        assert!(check_count(MAX_PERMITS + 1).is_err());
    }

    #[test]
    fn bits_cover_every_slot() {
        assert_eq!(Semaphore::bit(0), (0, 1));
        assert_eq!(Semaphore::bit(63), (0, 1 << 63));
        assert_eq!(Semaphore::bit(64), (1, 1));
        assert!(Semaphore::bit(MAX_PERMITS - 1).0 < MAX_PERMITS.div_ceil(64));
    }
}
