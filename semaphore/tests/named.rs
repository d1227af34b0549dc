//! The named semaphore with real processes: this test binary runs itself
//! again as children (`child_role`, given a role by the test kit, plays the
//! part that role names). Every test uses unique names and removes them,
//! even when it fails.
#![cfg(target_os = "linux")]

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use shmlane_semaphore::{
    AcquireError, Semaphore, SemaphoreError, SemaphoreOptions, TryAcquireError, MAX_NAME_LEN,
    MAX_PERMITS,
};
use shmlane_testkit::{self as kit, Cleanup, Kid};

const NAME: &str = "SHMLANE_SEM_NAME";
const COUNTERS: &str = "SHMLANE_SEM_COUNTERS";
const ARG: &str = "SHMLANE_SEM_ARG";

/// Generous bound for things that should take milliseconds; never a
/// performance claim.
const PATIENCE: Duration = Duration::from_secs(30);

/// Runs `child_role` as `role` on the semaphore `name`, with `arg`.
fn spawn(role: &str, name: &str, counters: Option<&Counters>, arg: &str) -> Kid {
    let mut envs = vec![(NAME, name.to_owned()), (ARG, arg.to_owned())];
    if let Some(c) = counters {
        envs.push((COUNTERS, c.path.display().to_string()));
    }
    Kid::spawn("child_role", role, &envs)
}

/// Waits for the child to exit, at most `PATIENCE`.
fn wait(kid: &mut Kid) -> ExitStatus {
    kid.wait_timeout(PATIENCE).expect("child did not finish")
}

/// Counters shared by every process of a test, in a mapped file.
#[repr(C)]
struct Shared {
    in_use: AtomicU32,
    max_in_use: AtomicU32,
    total: AtomicU32,
    violations: AtomicU32,
    /// `busy[i]` is 1 while some process holds permit `i`.
    busy: [AtomicU32; 16],
}

struct Counters {
    ptr: *mut Shared,
    path: PathBuf,
    _file: File,
    /// Removes the file after the unmap, in the creator only.
    _cleanup: Option<Cleanup>,
}

impl Counters {
    fn create() -> Self {
        let path = std::env::temp_dir().join(kit::unique("counters"));
        let mut cleanup = Cleanup::new();
        cleanup.path(&path);
        Self::map(path, Some(cleanup))
    }

    fn open_from_env() -> Self {
        Self::map(std::env::var_os(COUNTERS).unwrap().into(), None)
    }

    fn map(path: PathBuf, cleanup: Option<Cleanup>) -> Self {
        let owner = cleanup.is_some();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(owner)
            .open(&path)
            .unwrap();
        if owner {
            file.set_len(4096).unwrap();
        }
        // SAFETY: a fresh shared mapping of a 4096-byte file we opened; it
        // aliases no Rust object and is unmapped only when `self` drops.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED);
        Self {
            ptr: ptr.cast(),
            path,
            _file: file,
            _cleanup: cleanup,
        }
    }
}

impl std::ops::Deref for Counters {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        // SAFETY: the mapping is 4096 bytes, page-aligned, lives as long as
        // `self`, and `Shared` holds only atomics (valid for any bytes, and
        // for other processes to change).
        unsafe { &*self.ptr }
    }
}

impl Drop for Counters {
    fn drop(&mut self) {
        // SAFETY: `ptr` and the length are what mmap returned and took; the
        // borrow of `self` that `deref` hands out has ended.
        unsafe { libc::munmap(self.ptr.cast(), 4096) };
    }
}

/// Polls `cond` until it holds, for at most `PATIENCE`.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < PATIENCE, "never happened: {what}");
        thread::sleep(Duration::from_millis(2));
    }
}

/// The parts children play. With no role set (the normal test run) it
/// does nothing.
#[test]
fn child_role() {
    let Some(role) = kit::role() else {
        return;
    };
    let name = kit::env(NAME);
    let arg: u32 = kit::env(ARG).parse().unwrap();
    let sem = Semaphore::open(&name).unwrap();
    match role.as_str() {
        // Acquire `arg` times; check that at most `permits` hold at once
        // and that no two holders have the same permit index.
        "pool" => {
            let c = Counters::open_from_env();
            let limit = sem.permits() as u32;
            for _ in 0..arg {
                let permit = sem.acquire_timeout(PATIENCE).unwrap();
                let now = c.in_use.fetch_add(1, Ordering::SeqCst) + 1;
                c.max_in_use.fetch_max(now, Ordering::SeqCst);
                if now > limit {
                    c.violations.fetch_add(1, Ordering::SeqCst);
                }
                if c.busy[permit.index()].swap(1, Ordering::SeqCst) != 0 {
                    c.violations.fetch_add(1, Ordering::SeqCst);
                }
                thread::sleep(Duration::from_micros(500));
                c.busy[permit.index()].store(0, Ordering::SeqCst);
                c.in_use.fetch_sub(1, Ordering::SeqCst);
                c.total.fetch_add(1, Ordering::SeqCst);
                drop(permit);
            }
        }
        // Take `arg` permits and hold them until killed.
        "hold" => {
            let held: Vec<_> = (0..arg).map(|_| sem.try_acquire().unwrap()).collect();
            thread::sleep(PATIENCE);
            drop(held);
            panic!("holder was not killed");
        }
        // Wait for one permit.
        "wait_one" => {
            let permit = sem.acquire_timeout(PATIENCE).unwrap();
            drop(permit);
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn printer_pool_five_permits_twelve_processes() {
    const PRINTERS: usize = 5;
    const PROCESSES: usize = 12;
    const ROUNDS: u32 = 40;
    let mut cleanup = Cleanup::new();
    let name = cleanup.unique_shm("pool");
    let sem = Semaphore::create(&name, PRINTERS).unwrap();
    let counters = Counters::create();
    let kids: Vec<_> = (0..PROCESSES)
        .map(|_| spawn("pool", &name, Some(&counters), &ROUNDS.to_string()))
        .collect();
    for mut kid in kids {
        assert!(wait(&mut kid).success(), "a printer process failed");
    }
    assert_eq!(counters.violations.load(Ordering::SeqCst), 0);
    assert_eq!(
        counters.total.load(Ordering::SeqCst),
        PROCESSES as u32 * ROUNDS
    );
    assert_eq!(counters.in_use.load(Ordering::SeqCst), 0);
    let max = counters.max_in_use.load(Ordering::SeqCst);
    assert!(max <= PRINTERS as u32);
    assert_eq!(max, PRINTERS as u32, "the pool was never fully used");
    assert_eq!(sem.available(), PRINTERS);
    assert_eq!(sem.waiters(), 0);
}

#[test]
fn killed_holder_gives_its_permits_back_to_a_blocked_waiter() {
    let mut cleanup = Cleanup::new();
    let name = cleanup.unique_shm("kill");
    let sem = Semaphore::create(&name, 2).unwrap();
    let mut kid = spawn("hold", &name, None, "2");
    eventually("the child holds both permits", || sem.available() == 0);
    assert!(kid.is_running());
    assert!(matches!(sem.try_acquire(), Err(TryAcquireError::NoPermits)));

    let killed_at = Arc::new(Mutex::new(None));
    let killer = {
        let killed_at = Arc::clone(&killed_at);
        thread::spawn(move || {
            // Let the parent block in acquire_timeout first (not required
            // for correctness; it makes the test exercise the wait).
            thread::sleep(Duration::from_millis(100));
            *killed_at.lock().unwrap() = Some(Instant::now());
            kid.kill(); // SIGKILL: no destructor runs
            wait(&mut kid)
        })
    };
    let permit = sem.acquire_timeout(PATIENCE).unwrap();
    let got_at = Instant::now();
    let status = killer.join().unwrap();
    assert!(!status.success());
    let killed_at = killed_at.lock().unwrap().expect("the child was killed");
    assert!(got_at >= killed_at, "a permit came free before the kill");
    let delay = got_at - killed_at;
    eprintln!("permit back {delay:?} after the kill");
    assert!(
        delay < Duration::from_secs(5),
        "the permit came back only after {delay:?}"
    );
    // Both permits came back.
    let second = sem.try_acquire().unwrap();
    assert_ne!(permit.index(), second.index());
    drop((permit, second));
    assert_eq!(sem.available(), 2);
}

#[test]
fn killed_holder_permits_are_free_to_try_acquire() {
    let mut cleanup = Cleanup::new();
    let name = cleanup.unique_shm("kill-try");
    let sem = Semaphore::create(&name, 3).unwrap();
    let mut kid = spawn("hold", &name, None, "3");
    eventually("the child holds every permit", || sem.available() == 0);
    kid.kill();
    assert!(!wait(&mut kid).success());
    // The kernel dropped the child's locks before it became a zombie.
    assert_eq!(sem.available(), 3);
    let all: Vec<_> = (0..3).map(|_| sem.try_acquire().unwrap()).collect();
    assert!(matches!(sem.try_acquire(), Err(TryAcquireError::NoPermits)));
    drop(all);
}

#[test]
fn dropped_permit_lets_a_waiter_in_another_process_proceed() {
    let mut cleanup = Cleanup::new();
    let name = cleanup.unique_shm("handoff");
    let sem = Semaphore::create(&name, 1).unwrap();
    let permit = sem.acquire().unwrap();
    let mut kid = spawn("wait_one", &name, None, "0");
    eventually("the child is asleep waiting", || sem.waiters() >= 1);
    assert!(kid.is_running());
    drop(permit);
    assert!(
        wait(&mut kid).success(),
        "the waiter did not get the permit"
    );
    assert_eq!(sem.available(), 1);
}

#[test]
fn acquire_times_out_when_every_permit_is_held() {
    let mut cleanup = Cleanup::new();
    let name = cleanup.unique_shm("timeout");
    let sem = Semaphore::create(&name, 1).unwrap();
    let other = Semaphore::open(&name).unwrap();
    let _held = sem.acquire().unwrap();
    for handle in [&sem, &other] {
        assert!(matches!(
            handle.try_acquire(),
            Err(TryAcquireError::NoPermits)
        ));
        let timeout = Duration::from_millis(50);
        let start = Instant::now();
        let r = handle.acquire_timeout(timeout);
        let took = start.elapsed();
        assert!(matches!(r, Err(AcquireError::Timeout)), "{r:?}");
        assert!(took >= timeout, "gave up early, after {took:?}");
        assert!(took < PATIENCE, "overslept: {took:?}");
        assert!(matches!(
            handle.acquire_timeout(Duration::ZERO),
            Err(AcquireError::Timeout)
        ));
        let past = Instant::now() - Duration::from_millis(1);
        assert!(matches!(
            handle.acquire_deadline(past),
            Err(AcquireError::Timeout)
        ));
    }
    assert_eq!(sem.waiters(), 0);
}

#[test]
fn errors_are_typed() {
    let mut cleanup = Cleanup::new();
    let name = cleanup.unique_shm("errors");
    assert!(matches!(
        Semaphore::open(&name),
        Err(SemaphoreError::NotFound(_))
    ));
    assert!(matches!(
        Semaphore::unlink(&name),
        Err(SemaphoreError::NotFound(_))
    ));
    let sem = Semaphore::create(&name, 2).unwrap();
    assert!(matches!(
        Semaphore::create(&name, 2),
        Err(SemaphoreError::AlreadyExists(_))
    ));
    drop(sem);
    let too_long = "x".repeat(MAX_NAME_LEN + 1);
    for bad in [
        "",
        ".",
        "..",
        "a/b",
        "/lead",
        "nul\0byte",
        too_long.as_str(),
    ] {
        assert!(
            matches!(
                Semaphore::create(bad, 1),
                Err(SemaphoreError::InvalidName(_))
            ),
            "{bad:?}"
        );
        assert!(
            matches!(Semaphore::open(bad), Err(SemaphoreError::InvalidName(_))),
            "{bad:?}"
        );
    }
    for bad in [0, MAX_PERMITS + 1] {
        let mut cleanup = Cleanup::new();
        let fresh = cleanup.unique_shm("count");
        let r = Semaphore::create(&fresh, bad);
        assert!(
            matches!(r, Err(SemaphoreError::BadCount { asked, max }) if asked == bad && max == MAX_PERMITS),
            "{r:?}"
        );
        // Nothing was left behind.
        assert!(matches!(
            Semaphore::open(&fresh),
            Err(SemaphoreError::NotFound(_))
        ));
    }
    let e = SemaphoreError::BadCount { asked: 0, max: 9 }.to_string();
    assert_eq!(e, "bad permit count 0: use 1 to 9");
}

/// Writes `bytes` as the shared-memory object `name`.
fn plant(name: &str, bytes: &[u8]) {
    std::fs::write(format!("/dev/shm/{name}"), bytes).unwrap();
}

#[test]
fn objects_that_are_not_semaphores_are_refused() {
    let quick = SemaphoreOptions::new().ready_timeout(Duration::from_millis(20));
    let not_sem = |name: &str| {
        let r = quick.open(name);
        assert!(
            matches!(r, Err(SemaphoreError::NotASemaphore { .. })),
            "{r:?}"
        );
    };
    // Wrong size.
    let mut cleanup = Cleanup::new();
    let name = cleanup.unique_shm("junk");
    plant(&name, b"not a semaphore");
    not_sem(&name);
    // Right size, garbage state word.
    let name = cleanup.unique_shm("junk");
    plant(&name, &[0xff; 4096]);
    not_sem(&name);
    // Right size, READY, wrong magic.
    let name = cleanup.unique_shm("junk");
    let mut page = [0u8; 4096];
    page[12] = 1; // state READY
    page[..8].copy_from_slice(b"SHMLANE\0");
    plant(&name, &page);
    not_sem(&name);
    // A real semaphore with its count scribbled over.
    let name = cleanup.unique_shm("junk");
    drop(Semaphore::create(&name, 3).unwrap());
    let mut page = std::fs::read(format!("/dev/shm/{name}")).unwrap();
    page[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
    plant(&name, &page);
    not_sem(&name);
    // Empty, or all zeros: a creator that never finished.
    for bytes in [&[][..], &[0u8; 4096][..]] {
        let name = cleanup.unique_shm("unready");
        plant(&name, bytes);
        let start = Instant::now();
        let r = quick.open(&name);
        assert!(matches!(r, Err(SemaphoreError::NotReady(_))), "{r:?}");
        assert!(start.elapsed() >= Duration::from_millis(20));
    }
    // A directory is not one either (ignored if /dev/shm refuses).
    let name = kit::unique("dir");
    if std::fs::create_dir(format!("/dev/shm/{name}")).is_ok() {
        let r = Semaphore::open(&name);
        let _ = std::fs::remove_dir(format!("/dev/shm/{name}"));
        assert!(
            matches!(r, Err(SemaphoreError::NotASemaphore { .. })),
            "{r:?}"
        );
    }
}

#[test]
fn permission_denied_is_typed() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        eprintln!("skipped: root may open any file");
        return;
    }
    let mut cleanup = Cleanup::new();
    let name = cleanup.unique_shm("perm");
    let sem = SemaphoreOptions::new()
        .mode(0o000)
        .create(&name, 1)
        .unwrap();
    let r = Semaphore::open(&name);
    assert!(
        matches!(r, Err(SemaphoreError::PermissionDenied(_))),
        "{r:?}"
    );
    drop(sem);
}

#[test]
fn threads_share_one_handle_and_handles_exclude_each_other() {
    const PERMITS: usize = 3;
    let mut cleanup = Cleanup::new();
    let name = cleanup.unique_shm("threads");
    let sem = Semaphore::create(&name, PERMITS).unwrap();
    let in_use = AtomicU32::new(0);
    let max = AtomicU32::new(0);
    let busy: Vec<AtomicU32> = (0..PERMITS).map(|_| AtomicU32::new(0)).collect();
    thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..100 {
                    let p = sem.acquire_timeout(PATIENCE).unwrap();
                    let now = in_use.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(now, Ordering::SeqCst);
                    assert_eq!(busy[p.index()].swap(1, Ordering::SeqCst), 0);
                    thread::yield_now();
                    busy[p.index()].store(0, Ordering::SeqCst);
                    in_use.fetch_sub(1, Ordering::SeqCst);
                }
            });
        }
    });
    assert!(max.load(Ordering::SeqCst) <= PERMITS as u32);
    assert_eq!(sem.available(), PERMITS);

    // A second handle in this process is a separate holder.
    let other = Semaphore::open(&name).unwrap();
    let held: Vec<_> = (0..PERMITS).map(|_| sem.try_acquire().unwrap()).collect();
    assert_eq!(other.available(), 0);
    assert_eq!(sem.available(), 0);
    assert!(matches!(
        other.try_acquire(),
        Err(TryAcquireError::NoPermits)
    ));
    drop(held);
    assert_eq!(other.available(), PERMITS);
    let theirs = other.try_acquire().unwrap();
    assert_eq!(sem.available(), PERMITS - 1);
    // Dropping a handle gives its permits back.
    std::mem::forget(theirs);
    drop(other);
    assert_eq!(sem.available(), PERMITS);
}

#[test]
fn open_or_create_and_unlink_on_drop() {
    let mut cleanup = Cleanup::new();
    let name = cleanup.unique_shm("ooc");
    let first = Semaphore::open_or_create(&name, 4).unwrap();
    let second = Semaphore::open_or_create(&name, 9).unwrap();
    assert_eq!(first.permits(), 4);
    assert_eq!(second.permits(), 4, "the count is ignored when it exists");
    assert_eq!(second.name(), name);
    drop((first, second));
    // The name outlives default handles.
    let again = Semaphore::open(&name).unwrap();
    drop(again);
    Semaphore::unlink(&name).unwrap();

    let sem = SemaphoreOptions::new()
        .unlink_on_drop(true)
        .create(&name, 2)
        .unwrap();
    let opened = Semaphore::open(&name).unwrap();
    drop(sem);
    assert!(matches!(
        Semaphore::open(&name),
        Err(SemaphoreError::NotFound(_))
    ));
    // A handle opened before the unlink keeps working.
    let p = opened.try_acquire().unwrap();
    drop(p);
    // A handle with unlink_on_drop leaves a newer object of the same name
    // alone.
    let old = SemaphoreOptions::new()
        .unlink_on_drop(true)
        .create(&name, 1)
        .unwrap();
    Semaphore::unlink(&name).unwrap();
    let new = Semaphore::create(&name, 1).unwrap();
    drop(old);
    assert!(Semaphore::open(&name).is_ok());
    drop(new);
}
