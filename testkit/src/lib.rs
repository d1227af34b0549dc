//! The one test kit every cross-process test uses: unique segment names,
//! child processes that are killed and reaped however a test ends, and
//! guards that remove what a test created even when it fails.
//!
//! A test binary runs copies of itself as children: [`Kid::spawn`] starts
//! `current_exe` with a filter that selects the binary's `child` test (or
//! whatever test name is given) and a role in `SHMLANE_TEST_ROLE`; that
//! test calls [`role`] and does nothing when it is `None`.

use std::ffi::CString;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The variable that carries a child's role.
pub const ROLE: &str = "SHMLANE_TEST_ROLE";

/// A name no other test, process or run uses: `shmlane-test-TAG-PID-N`.
pub fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "shmlane-test-{tag}-{}-{}",
        std::process::id(),
        // Relaxed: only uniqueness matters.
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A System V key that no other test, process or run uses (in practice):
/// 31 bits hashed from this process's id, a counter and the clock, never
/// 0 (`IPC_PRIVATE`). Remove what a test makes under it with
/// [`Cleanup::sysv`].
pub fn unique_key() -> i32 {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    // Relaxed: only uniqueness matters.
    let n = N.fetch_add(1, Ordering::Relaxed);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in [u64::from(std::process::id()), u64::from(n), nanos] {
        for b in v.to_le_bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    ((h ^ (h >> 31)) as i32 & 0x7fff_ffff).max(1)
}

/// A free TCP port on 127.0.0.1 (bound and let go: whoever binds it next
/// gets it, unless another process takes it in between).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// A fresh `shm:` address: `shm:` and a [`unique`] name.
pub fn shm_address(tag: &str) -> String {
    format!("shm:{}", unique(tag))
}

/// The role this process was started with, if it is a child.
pub fn role() -> Option<String> {
    std::env::var(ROLE).ok()
}

/// An environment variable a child needs.
///
/// # Panics
///
/// If it is not set.
pub fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("{key} not set"))
}

/// A child process, killed and reaped when dropped.
pub struct Kid {
    child: Child,
    out: Option<BufReader<ChildStdout>>,
}

impl Kid {
    /// Runs this test binary's test `test` (exactly) as a child with role
    /// `role` and extra environment `envs`; its stdout is piped (read it
    /// with [`wait_for`](Self::wait_for)), stdin too.
    pub fn spawn(test: &str, role: &str, envs: &[(&str, String)]) -> Self {
        let mut cmd = Command::new(std::env::current_exe().expect("test binary path"));
        cmd.args(["--exact", test, "--nocapture", "--test-threads=1", "-q"])
            .env(ROLE, role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        Self::from_child(cmd.spawn().expect("spawn child"))
    }

    /// Takes charge of a child spawned elsewhere.
    pub fn from_child(mut child: Child) -> Self {
        let out = child.stdout.take().map(BufReader::new);
        Self { child, out }
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the child to print `word` on a line of its own; returns
    /// false if it exited (closed stdout) first.
    pub fn wait_for(&mut self, word: &str) -> bool {
        let Some(out) = self.out.as_mut() else {
            return false;
        };
        let mut line = String::new();
        loop {
            line.clear();
            match out.read_line(&mut line) {
                Ok(0) | Err(_) => return false,
                Ok(_) if line.trim() == word => return true,
                Ok(_) => {}
            }
        }
    }

    /// The next line the child prints (without its newline), if any.
    pub fn line(&mut self) -> Option<String> {
        let out = self.out.as_mut()?;
        let mut line = String::new();
        match out.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.trim_end().to_owned()),
        }
    }

    /// Reads every line the child prints until it exits, at most `limit`
    /// in all; kills it past that and returns `None` (a hang, reported by
    /// the caller: the limit is a guard, not a timing assertion).
    pub fn finish(&mut self, limit: Duration) -> Option<(Vec<String>, ExitStatus)> {
        let out = self.out.take();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            if let Some(out) = out {
                for line in out.lines() {
                    match line {
                        Ok(l) => lines.push(l),
                        Err(_) => break,
                    }
                }
            }
            lines
        });
        let status = self.wait_timeout(limit)?;
        // The child is gone, so its stdout is closed (unless it handed
        // the pipe to a process of its own, which these tests never do).
        Some((reader.join().unwrap_or_default(), status))
    }

    /// Writes `word` and a newline to the child's stdin.
    pub fn say(&mut self, word: &str) {
        if let Some(stdin) = self.child.stdin.as_mut() {
            let _ = writeln!(stdin, "{word}");
        }
    }

    /// Sends `SIGKILL` (ignored if it already exited).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
    }

    /// Waits for the child to exit, at most `limit`; kills it past that and
    /// returns `None`.
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if start.elapsed() >= limit {
                self.kill();
                let _ = self.child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Whether the child has not exited yet.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the child to exit.
    pub fn wait(&mut self) -> ExitStatus {
        self.child.wait().expect("wait for child")
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a child was killed by `SIGKILL`.
pub fn killed(status: &ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(libc::SIGKILL)
}

/// Removes paths (files, directories, or `/dev/shm` names given as
/// `/dev/shm/NAME`) and POSIX message queues when dropped, whether the
/// test passed or not.
#[derive(Default)]
pub struct Cleanup {
    paths: Vec<PathBuf>,
    mqueues: Vec<CString>,
    keys: Vec<i32>,
}

impl Cleanup {
    /// A guard for `shm:NAME` segments, files and message queues.
    pub fn new() -> Self {
        Self::default()
    }

    /// Removes `path` at the end.
    pub fn path(&mut self, path: impl AsRef<Path>) -> &mut Self {
        self.paths.push(path.as_ref().to_owned());
        self
    }

    /// Removes the POSIX shared-memory object `name` at the end.
    pub fn shm(&mut self, name: &str) -> &mut Self {
        self.paths.push(Path::new("/dev/shm").join(name));
        self
    }

    /// A [`unique`] POSIX shared-memory name, removed at the end.
    pub fn unique_shm(&mut self, tag: &str) -> String {
        let name = unique(tag);
        self.shm(&name);
        name
    }

    /// Removes the POSIX message queue `/name` at the end.
    ///
    /// # Panics
    ///
    /// If `name` holds a NUL byte.
    pub fn mq(&mut self, name: &str) -> &mut Self {
        let name = CString::new(format!("/{name}")).expect("no NUL in a queue name");
        self.mqueues.push(name);
        self
    }
}

impl Cleanup {
    /// Removes the System V segment, message queue and semaphore set
    /// under `key` at the end (those that exist).
    pub fn sysv(&mut self, key: i32) -> &mut Self {
        self.keys.push(key);
        self
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for &key in &self.keys {
            // SAFETY: lookups by key and removals by the ids they return;
            // each only fails when nothing is there.
            unsafe {
                let id = libc::shmget(key, 0, 0);
                if id >= 0 {
                    remove_segment_set(id);
                    libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
                }
                let id = libc::msgget(key, 0);
                if id >= 0 {
                    libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut());
                }
                let id = libc::semget(key, 0, 0);
                if id >= 0 {
                    libc::semctl(id, 0, libc::IPC_RMID);
                }
            }
        }
        for p in &self.paths {
            if p.is_dir() {
                let _ = std::fs::remove_dir_all(p);
            } else {
                let _ = std::fs::remove_file(p);
            }
        }
        for q in &self.mqueues {
            // SAFETY: a NUL-terminated name; unlinking a queue that may
            // not exist only fails.
            unsafe { libc::mq_unlink(q.as_ptr()) };
        }
    }
}

/// Where a `sysv:` segment's header keeps its semaphore set's id plus one
/// (`shmlane_shm::header::offsets::SYSV_SEMS`; a test there checks they
/// agree).
pub const SYSV_SEMS_OFFSET: usize = 1536;

/// Removes the semaphore set a shmlane System V segment names (a test's
/// killed processes leave it behind).
///
/// # Safety
///
/// `id` is a segment id; the set is removed whoever still uses it.
unsafe fn remove_segment_set(id: i32) {
    // SAFETY: a read-only attachment of a live segment id, read with
    // volatile loads within its first page and detached again; the set
    // is removed only if it carries shmlane's mark.
    unsafe {
        let p = libc::shmat(id, std::ptr::null(), libc::SHM_RDONLY);
        if p as isize == -1 {
            return;
        }
        let base = p.cast::<u8>();
        let magic: [u8; 8] = std::array::from_fn(|i| base.add(i).read_volatile());
        let sems = base
            .add(SYSV_SEMS_OFFSET)
            .cast::<i32>()
            .read_volatile()
            .wrapping_sub(1);
        libc::shmdt(p);
        // Semaphore 34 holds the mark "SS" in a segment's set.
        if &magic == b"SHMLANE\0" && sems >= 0 && libc::semctl(sems, 34, libc::GETVAL) == 0x5353 {
            libc::semctl(sems, 0, libc::IPC_RMID);
        }
    }
}

/// A private temporary directory, removed with its contents when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new directory under the system's temporary directory.
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(unique(tag));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The variable set in a test re-run by [`rerun_with_private_shm`].
pub const PRIVATE_SHM: &str = "SHMLANE_TEST_PRIVATE_SHM";

/// Whether this process runs in the private mount namespace made by
/// [`rerun_with_private_shm`] (its `/dev/shm` is a fresh, small tmpfs).
pub fn has_private_shm() -> bool {
    std::env::var_os(PRIVATE_SHM).is_some()
}

/// Runs this test binary's test `test` again in a private mount namespace
/// whose `/dev/shm` is a fresh tmpfs of `size` (`mount -o size=`, e.g.
/// `"1m"`), with `envs` and [`PRIVATE_SHM`] set, and asserts that it
/// passes. Huge or space-hungry segments never touch the real `/dev/shm`
/// this way. Returns `false` (after printing why) where `unshare -m` is
/// not permitted, so the caller can skip.
///
/// # Panics
///
/// If the re-run test fails (its output is in the message).
pub fn rerun_with_private_shm(test: &str, size: &str, envs: &[(&str, String)]) -> bool {
    // A private IPC namespace too: the re-run test's `rm --stale` and
    // `ls` must not see (or sweep) other tests' System V objects.
    let probe = Command::new("unshare")
        .args(["-m", "-i", "true"])
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        println!(
            "skipped {test}: `unshare -m -i` is not permitted here (needs root or user namespaces)"
        );
        return false;
    }
    let script = format!(
        "mount --make-rprivate / && mount -t tmpfs -o size={size},mode=1777 tmpfs /dev/shm && exec \"$0\" \"$@\""
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "-i", "sh", "-c", &script])
        .arg(std::env::current_exe().expect("test binary path"))
        .args(["--exact", test, "--nocapture", "--test-threads=1", "-q"])
        .arg("--include-ignored")
        .env(PRIVATE_SHM, size);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run unshare");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    print!("{text}");
    assert!(
        out.status.success(),
        "{test} in a private /dev/shm of {size} failed ({}):\n{text}",
        out.status
    );
    true
}
