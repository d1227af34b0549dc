//! Waking async tasks on the readiness of descriptors: the kernel
//! fallbacks' counterpart of the futex bridge
//! ([`shmlane_semaphore::AsyncWait`]).
//!
//! A future on a `unix:`, `tcp:`, `fifo:`, pipe, `mq:` or `signal:`
//! channel that finds nothing to do hands the descriptors it waits for
//! (duplicates, which it owns) and its waker to the *poller*: one helper
//! thread per process, started the first time such a future waits, that
//! sleeps in one `poll` on every registered descriptor and a control pipe,
//! and wakes the tasks whose descriptors became ready (or whose re-check
//! came due). Readiness is level-triggered, so a registration made after
//! the event still sees it: no wakeup is lost between a future's last
//! look and its registration.
//!
//! Two helper threads at most in a process, then: the futex bridge for
//! the shared-memory rings and this one for the kernel fallbacks, each
//! started only when needed. (`io_uring` could wait on futexes and
//! descriptors in one call; it is off by default in container runtimes'
//! seccomp profiles, so a second thread is the portable design.)

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use shmlane_sys::poll::{poll, PollFd, PollFlags};

/// The descriptors one task waits on, with the events it waits for.
type FdSet = Arc<Vec<(OwnedFd, PollFlags)>>;

/// One waiting task.
struct Entry {
    id: u64,
    /// Shared with a `poll` in progress, so that a task that withdraws
    /// meanwhile never closes a descriptor under it.
    fds: FdSet,
    waker: Waker,
    due: Option<Instant>,
}

struct Poller {
    entries: Mutex<Vec<Entry>>,
    next_id: AtomicU64,
    /// Written (one byte) to wake the poller for a new registration.
    wake_w: OwnedFd,
    wake_r: OwnedFd,
    /// The process it serves (a forked child starts its own).
    pid: u32,
}

/// How long the poller naps after a `poll` error it does not expect (a
/// descriptor table full, `ENOMEM`), before it looks again: slower, but
/// alive (a poller that died would leave every such wait hanging).
const NAP: Duration = Duration::from_millis(10);

/// The process's poller, started on first use; started again in a forked
/// child, which inherits the parent's poller but not its thread.
fn poller() -> io::Result<&'static Poller> {
    static CURRENT: AtomicPtr<Poller> = AtomicPtr::new(std::ptr::null_mut());
    static STARTING: Mutex<()> = Mutex::new(());
    let pid = std::process::id();
    let current = |pid: u32| {
        // Acquire: pairs with the Release store below.
        let p = CURRENT.load(Ordering::Acquire);
        // SAFETY: a published poller is leaked: it lives for ever.
        (!p.is_null())
            .then(|| unsafe { &*p })
            .filter(|p| p.pid == pid)
    };
    if let Some(p) = current(pid) {
        return Ok(p);
    }
    // Published only once its thread runs: a start that failed (no
    // thread, no pipe) is tried again by the next wait, which meanwhile
    // falls back to a timer.
    let _starting = STARTING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = current(pid) {
        return Ok(p);
    }
    let (wake_r, wake_w) = shmlane_sys::fd::pipe()?;
    shmlane_sys::fd::set_nonblocking(&wake_r)?;
    shmlane_sys::fd::set_nonblocking(&wake_w)?;
    let p: &'static Poller = Box::leak(Box::new(Poller {
        entries: Mutex::new(Vec::new()),
        next_id: AtomicU64::new(1),
        wake_w,
        wake_r,
        pid,
    }));
    std::thread::Builder::new()
        .name("shmlane-poll".into())
        .spawn(move || p.run())?;
    // Release: see `current`.
    CURRENT.store((p as *const Poller).cast_mut(), Ordering::Release);
    Ok(p)
}

impl Poller {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(&self, entry: Entry) {
        self.lock().push(entry);
        self.wake();
    }

    /// Wakes the poller to watch the current set.
    fn wake(&self) {
        // A full pipe already holds a wakeup: the error is ignored.
        let _ = shmlane_sys::fd::write_vectored(&self.wake_w, &[io::IoSlice::new(&[1])]);
    }

    /// Removes entry `id`; whether it was still there (not yet woken).
    fn remove(&self, id: u64) -> bool {
        let mut entries = self.lock();
        let gone = entries
            .iter()
            .position(|e| e.id == id)
            .map(|i| entries.swap_remove(i));
        drop(entries);
        if gone.is_some() {
            // The poller's `poll` in progress holds the entry's duplicate
            // descriptors until it wakes: wake it, so that they close now
            // (an open duplicate of a listening socket keeps its address
            // bound; of a connection, keeps the peer's sends succeeding).
            self.wake();
        }
        gone.is_some()
    }

    fn run(&self) {
        // The `signal:` transport needs its real-time signal blocked in
        // every thread; this one was not started by the user.
        let _ = shmlane_sys::signal::block_realtime();
        let mut woken: Vec<Entry> = Vec::new();
        loop {
            // What to watch: the control pipe, then each entry's
            // descriptors (the entry's id beside each).
            let mut watched: Vec<(u64, FdSet)> = Vec::new();
            let timeout;
            {
                let mut entries = self.lock();
                let now = Instant::now();
                let mut i = 0;
                while i < entries.len() {
                    if entries[i].due.is_some_and(|d| d <= now) {
                        woken.push(entries.swap_remove(i));
                    } else {
                        i += 1;
                    }
                }
                watched.extend(entries.iter().map(|e| (e.id, Arc::clone(&e.fds))));
                timeout = entries.iter().filter_map(|e| e.due).min();
            }
            wake_all(&mut woken);
            let mut fds = vec![PollFd::new(&self.wake_r, PollFlags::IN)];
            let mut owner = vec![0u64];
            for (id, set) in &watched {
                for (fd, events) in set.iter() {
                    fds.push(PollFd::from_borrowed_fd(fd.as_fd(), *events));
                    owner.push(*id);
                }
            }
            match poll(&mut fds, timeout) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(_) => {
                    std::thread::sleep(NAP);
                    continue;
                }
            }
            let ready: Vec<u64> = fds
                .iter()
                .zip(&owner)
                .skip(1)
                .filter(|(p, _)| !p.revents().is_empty())
                .map(|(_, id)| *id)
                .collect();
            if !fds[0].revents().is_empty() {
                let mut sink = [0u8; 64];
                while matches!(shmlane_sys::fd::read(&self.wake_r, &mut sink), Ok(n) if n > 0) {}
            }
            drop(fds);
            if !ready.is_empty() {
                let mut entries = self.lock();
                let mut i = 0;
                while i < entries.len() {
                    if ready.contains(&entries[i].id) {
                        woken.push(entries.swap_remove(i));
                    } else {
                        i += 1;
                    }
                }
            }
            drop(watched);
            wake_all(&mut woken);
        }
    }
}

/// Wakes the tasks outside the lock (a waker may poll its task right
/// here, which registers again); a waker that panics must not take the
/// poller down with it.
fn wake_all(woken: &mut Vec<Entry>) {
    for e in woken.drain(..) {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            e.waker.wake_by_ref();
            drop(e);
        }));
    }
}

/// One async wait on descriptors, kept in a future across polls; dropping
/// it withdraws the registration.
#[derive(Debug, Default)]
pub(crate) struct FdWait {
    id: Option<u64>,
}

impl FdWait {
    /// Registers the task to be woken once one of `fds` is ready for its
    /// events, or at `due`. Replaces an earlier registration.
    ///
    /// # Errors
    ///
    /// The poller thread could not be started (its pipe, or the thread).
    pub(crate) fn arm(
        &mut self,
        cx: &Context<'_>,
        fds: Vec<(OwnedFd, PollFlags)>,
        due: Option<Instant>,
    ) -> io::Result<()> {
        self.disarm();
        let p = poller()?;
        // Relaxed: uniqueness only.
        let id = p.next_id.fetch_add(1, Ordering::Relaxed);
        p.register(Entry {
            id,
            fds: Arc::new(fds),
            waker: cx.waker().clone(),
            due,
        });
        self.id = Some(id);
        Ok(())
    }

    /// Withdraws the registration, if any.
    pub(crate) fn disarm(&mut self) {
        if let Some(id) = self.id.take() {
            // Registered, so the poller exists.
            if let Ok(p) = poller() {
                p.remove(id);
            }
        }
    }
}

impl Drop for FdWait {
    fn drop(&mut self) {
        self.disarm();
    }
}
