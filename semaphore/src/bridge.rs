//! Waiting on an eventcount from async code, without a thread per wait.
//!
//! A task that must wait announces itself on the eventcount exactly as a
//! parked thread does (so wakers take their slow path and bump the futex
//! word), then hands the word, the key it read and its [`Waker`] to the
//! *bridge*: one helper thread per process, started on first use, that
//! sleeps on every handed-over word at once with `futex_waitv` (Linux
//! 5.16+, 128 words a call) and wakes the tasks whose words moved. A peer
//! in another process cannot wake a task; it can wake a futex, and the
//! bridge turns that into a task wakeup. The bridge sleeps in the kernel
//! while nothing moves: an idle process costs no CPU, apart from the
//! periodic re-checks a wait asks for (a `step`, for events that send no
//! wakeup, such as a peer process dying).
//!
//! Past 127 registered words in one process, or on a kernel without
//! `futex_waitv`, the bridge waits on the first ones in steps of 1 ms and
//! re-reads the others between steps (as [`wait_any`](crate::wait_any)
//! does).
//!
//! Dropping an [`AsyncWait`] (a cancelled future) withdraws both the
//! announcement and the registration; nothing is left behind.

use std::any::Any;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::eventcount::{EventCount, Key};
use crate::futex;

/// The most words one `futex_waitv` call watches, the bridge's own
/// control word included.
const WAITV_MAX: usize = 128;

/// How long one step lasts when the registered words are more than one
/// call can watch.
const STEPPED: Duration = Duration::from_millis(1);

/// Something that keeps a registered eventcount's memory alive (the
/// channel or the mapping it lives in), held by the bridge while the
/// registration stands, so that even a leaked [`AsyncWait`] never leaves
/// the bridge reading freed memory.
pub type KeepAlive = Arc<dyn Any + Send + Sync>;

/// One waiting task, as the bridge sees it.
struct Entry {
    id: u64,
    /// The eventcount's futex word; alive as long as `_keep`.
    word: *const AtomicU32,
    key: u32,
    waker: Waker,
    /// When to wake the task even if the word did not move.
    due: Option<Instant>,
    _keep: KeepAlive,
}

// SAFETY: `word` points into memory that `_keep` keeps alive and is only
// read through an atomic; the rest is Send.
unsafe impl Send for Entry {}

impl Entry {
    fn word(&self) -> &AtomicU32 {
        // SAFETY: `_keep` keeps the word's memory alive while the entry is.
        unsafe { &*self.word }
    }

    fn moved(&self) -> bool {
        // Acquire: pairs with the Release bump in `EventCount::wake_slow`.
        self.word().load(Ordering::Acquire) != self.key
    }
}

struct Bridge {
    entries: Mutex<Vec<Entry>>,
    /// Bumped under the lock whenever an entry is added, so that a bridge
    /// asleep on the old set wakes to watch the new one.
    control: AtomicU32,
    next_id: AtomicU64,
    /// The process it serves (a forked child starts its own).
    pid: u32,
}

/// The process's bridge, started on first use; started again in a forked
/// child, which inherits the parent's bridge but not its thread (a wait
/// registered there would never be woken).
fn bridge() -> &'static Bridge {
    static CURRENT: AtomicPtr<Bridge> = AtomicPtr::new(std::ptr::null_mut());
    static STARTING: Mutex<()> = Mutex::new(());
    let pid = std::process::id();
    let current = |pid: u32| {
        // Acquire: pairs with the Release store below (the bridge's fields
        // as made).
        let b = CURRENT.load(Ordering::Acquire);
        // SAFETY: a published bridge is leaked: it lives for ever.
        (!b.is_null())
            .then(|| unsafe { &*b })
            .filter(|b| b.pid == pid)
    };
    if let Some(b) = current(pid) {
        return b;
    }
    let _starting = STARTING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(b) = current(pid) {
        return b;
    }
    let b: &'static Bridge = Box::leak(Box::new(Bridge {
        entries: Mutex::new(Vec::new()),
        control: AtomicU32::new(0),
        next_id: AtomicU64::new(1),
        pid,
    }));
    std::thread::Builder::new()
        .name("shmlane-bridge".into())
        .spawn(move || b.run())
        .expect("shmlane: cannot start the async bridge thread");
    // Release: see `current`.
    CURRENT.store((b as *const Bridge).cast_mut(), Ordering::Release);
    b
}

impl Bridge {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(&self, entry: Entry) {
        let mut entries = self.lock();
        entries.push(entry);
        // Relaxed: the lock orders it with the bridge's read of the
        // entries; the futex compares the value.
        self.control.fetch_add(1, Ordering::Relaxed);
        drop(entries);
        futex::wake(&self.control, 1);
    }

    /// Removes entry `id`; whether it was still there (not yet woken).
    /// The entry (its keep-alive: maybe the last handle on a channel,
    /// whose drop runs user code) is dropped after the lock is released.
    fn remove(&self, id: u64) -> bool {
        let mut entries = self.lock();
        let gone = entries
            .iter()
            .position(|e| e.id == id)
            .map(|i| entries.swap_remove(i));
        drop(entries);
        gone.is_some()
    }

    fn run(&self) {
        // The `signal:` transport needs its real-time signal blocked in
        // every thread; this one was not started by the user.
        let _ = shmlane_sys::signal::block_realtime();
        let control_word = &self.control as *const AtomicU32;
        let mut words: Vec<(*const AtomicU32, u32)> = Vec::with_capacity(WAITV_MAX);
        let mut woken: Vec<Entry> = Vec::new();
        // The word the kernel last woke the bridge on, if it said.
        let mut woke_on: Option<*const AtomicU32> = None;
        loop {
            let mut timeout;
            {
                let mut entries = self.lock();
                let now = Instant::now();
                let mut i = 0;
                while i < entries.len() {
                    let e = &entries[i];
                    if e.moved() || e.due.is_some_and(|d| d <= now) {
                        woken.push(entries.swap_remove(i));
                    } else {
                        i += 1;
                    }
                }
                // A wake that reached the bridge on a word none of its
                // tasks waits on any more (their futures completed or were
                // dropped meanwhile) was meant for someone else: a thread
                // parked on the same word, here or in another process
                // (`notify_one` wakes one sleeper, and the kernel may have
                // picked the bridge). Pass it on.
                if let Some(w) = woke_on.take() {
                    if w != control_word && !woken.iter().any(|e| e.word == w) {
                        shmlane_sys::futex::wake_raw(w, 1);
                    }
                }
                // Relaxed: read under the lock that every bump is made
                // under, so the value matches the entries seen here.
                let control = self.control.load(Ordering::Relaxed);
                words.clear();
                words.push((control_word, control));
                // Addresses, not references: an entry removed while the
                // bridge sleeps drops its keep-alive at once (a receiver
                // dropped must detach now, not at the bridge's next
                // wakeup), and the kernel copes with a word whose memory
                // went away (EFAULT, or a queue nobody wakes; the control
                // word and the timeout end the wait either way).
                words.extend(entries.iter().take(WAITV_MAX - 1).map(|e| (e.word, e.key)));
                let due = entries.iter().filter_map(|e| e.due).min();
                timeout = due.map(|d| d.saturating_duration_since(now));
                if entries.len() > WAITV_MAX - 1 {
                    timeout = Some(timeout.map_or(STEPPED, |t| t.min(STEPPED)));
                }
            }
            // Wake outside the lock: a waker may poll its task right here
            // (a runtime that runs tasks on the waking thread), and that
            // poll registers again; and dropping an entry may drop the last
            // handle on a channel, which runs user code. A waker or a drop
            // that panics must not take the bridge down with it (every
            // async wait in the process would hang): the panic is caught.
            for e in woken.drain(..) {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                    e.waker.wake_by_ref();
                    drop(e);
                }));
            }
            if !woken_since(&words) {
                woke_on = wait_words(&words, timeout).map(|i| words[i].0);
            }
        }
    }
}

/// Whether a word already moved since it was read (then the bridge goes
/// round again instead of asking the kernel, which would say EAGAIN).
fn woken_since(words: &[(*const AtomicU32, u32)]) -> bool {
    // SAFETY: the first word is `Bridge::control`, which lives forever.
    let control = unsafe { &*words[0].0 };
    // Relaxed: a hint; the kernel compares again.
    control.load(Ordering::Relaxed) != words[0].1
}

/// Sleeps until a word is woken or differs, or the timeout passes;
/// returns the index of the word the kernel woke the bridge on, if it
/// says. Never fails: an error it does not expect (a seccomp filter's
/// EPERM, ENOMEM) turns the bridge to stepped waits on its control word
/// for good, slower but alive (a bridge that died would leave every async
/// wait in the process hanging).
fn wait_words(words: &[(*const AtomicU32, u32)], timeout: Option<Duration>) -> Option<usize> {
    use shmlane_sys::errno::Errno;
    static NO_WAITV: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    // Relaxed: a sticky flag.
    if words.len() == 1 || NO_WAITV.load(Ordering::Relaxed) {
        // Without futex_waitv: the control word alone, in steps when
        // other words are watched, re-read between steps.
        let t = if words.len() == 1 {
            timeout
        } else {
            Some(timeout.map_or(STEPPED, |t| t.min(STEPPED)))
        };
        // SAFETY: the first word is `Bridge::control` (see `woken_since`).
        let control = unsafe { &*words[0].0 };
        futex::wait(control, words[0].1, t);
        return None;
    }
    match shmlane_sys::futex::wait_any_raw(words, timeout) {
        Ok(i) => Some(i),
        Err(e) => {
            match Errno::from_io_error(&e) {
                Some(Errno::TIMEDOUT | Errno::AGAIN | Errno::INTR) => {}
                // A word in a mapping that is gone: nap, then look again
                // (its entry is gone too, or will be found broken).
                Some(Errno::FAULT) => std::thread::sleep(STEPPED),
                _ => NO_WAITV.store(true, Ordering::Relaxed),
            }
            None
        }
    }
}

/// One async wait on an eventcount, kept in a future across polls.
///
/// A [`poll`](Self::poll) checks the condition; if it fails, the task
/// spins (see [`with_strategy`](Self::with_strategy)), then announces
/// itself, checks again, and registers its waker with the bridge. A later
/// poll re-arms under the same announcement if nothing notified since,
/// else withdraws it and starts over. Dropping it withdraws everything.
/// [`AsyncWait::timer`] is a wait that nothing notifies: a deadline.
pub struct AsyncWait<'a> {
    ec: &'a EventCount,
    tally: Option<&'a AtomicU32>,
    step: Option<Duration>,
    deadline: Option<Instant>,
    /// Re-polls by self-wake still allowed before registering.
    spins: u32,
    /// Never register: re-poll by self-wake for ever (busy-poll).
    busy: bool,
    pending: Option<(Key<'a>, u64)>,
}

/// When a wait that re-checks every `step` is next due: on a grid of
/// `step` since the bridge's epoch, between half a step and a step and a
/// half from `now`, so that the periodic re-checks of many idle waits
/// with one step come due together and cost the bridge one wakeup.
fn on_grid(now: Instant, step: Duration) -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    let step_ns = step.as_nanos().max(1);
    let since = (now + step / 2).saturating_duration_since(epoch).as_nanos();
    let slots = since.div_ceil(step_ns);
    let at = Duration::from_nanos(u64::try_from(slots * step_ns).unwrap_or(u64::MAX));
    epoch + at
}

impl std::fmt::Debug for AsyncWait<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncWait")
            .field("registered", &self.pending.is_some())
            .finish()
    }
}

impl<'a> AsyncWait<'a> {
    /// A wait on `ec`, counting the task in `tally` while announced (see
    /// [`EventCount::wait_tallied`]), re-checked about every `step` (from
    /// half a step to a step and a half: the re-checks of all waits with
    /// one step are batched).
    pub fn new(ec: &'a EventCount, tally: Option<&'a AtomicU32>, step: Option<Duration>) -> Self {
        Self {
            ec,
            tally,
            step,
            deadline: None,
            spins: 0,
            busy: false,
            pending: None,
        }
    }

    /// Spins like `strategy` before registering: the task wakes itself
    /// and returns `Pending` up to `strategy.spin()` times, so that the
    /// executor runs any other ready task and polls this one again at
    /// once (a reply that comes within microseconds costs no thread
    /// wakeup, only re-polls); a strategy that never parks never
    /// registers (an async busy-poll that still yields to other tasks).
    pub fn with_strategy(mut self, strategy: &crate::WaitStrategy) -> Self {
        self.spins = strategy.spin();
        self.busy = !strategy.parks();
        self
    }

    /// Also wakes the task at `deadline` (a timer, or a receive's own
    /// deadline), exactly rather than on a grid.
    pub fn with_deadline(mut self, deadline: Option<Instant>) -> Self {
        self.deadline = deadline;
        self
    }

    /// Checks `cond`; `Ready` with its answer, or `Pending` with the task
    /// registered to be woken when the eventcount is notified (or the step
    /// passed). `keep` is called only when registering.
    ///
    /// # Safety
    ///
    /// The [`KeepAlive`] that `keep` returns must keep the eventcount's
    /// memory alive (the bridge thread reads its futex word until the
    /// registration ends, which a leaked future never ends).
    pub unsafe fn poll<R>(
        &mut self,
        cx: &mut Context<'_>,
        keep: impl FnOnce() -> KeepAlive,
        mut cond: impl FnMut() -> Option<R>,
    ) -> Poll<R> {
        if let Some((key, id)) = &self.pending {
            // Acquire: as in `Entry::moved`.
            let quiet = self.ec.seq_now(Ordering::Acquire) == key.seq;
            if quiet {
                // Nobody notified since the announcement, which still
                // stands (a re-check step, or a poll for another reason):
                // re-check and re-arm under the same key, without the
                // announcement's barrier (an idle wait's periodic
                // re-check costs no system call but the bridge's).
                if let Some(r) = cond() {
                    self.withdraw();
                    return Poll::Ready(r);
                }
                let id = *id;
                let key = key.seq;
                bridge().remove(id);
                let id = self.register(cx, key, keep);
                if let Some((_, old)) = &mut self.pending {
                    *old = id;
                }
                return Poll::Pending;
            }
        }
        self.withdraw();
        if let Some(r) = cond() {
            return Poll::Ready(r);
        }
        if self.busy || self.spins > 0 {
            self.spins = self.spins.saturating_sub(1);
            // A deadline still ends a busy wait: the caller's condition
            // checks it (the bridge is not involved).
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let key = self.ec.prepare(self.tally);
        if let Some(r) = cond() {
            return Poll::Ready(r);
        }
        let id = self.register(cx, key.seq, keep);
        self.pending = Some((key, id));
        Poll::Pending
    }

    /// Hands the word, `key` and the task's waker to the bridge.
    fn register(&self, cx: &Context<'_>, key: u32, keep: impl FnOnce() -> KeepAlive) -> u64 {
        let id = bridge().next_id.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let step = self.step.map(|s| on_grid(now, s));
        bridge().register(Entry {
            id,
            word: self.ec.word(),
            key,
            waker: cx.waker().clone(),
            due: match (step, self.deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            _keep: keep(),
        });
        id
    }

    /// Withdraws the announcement and the registration, if any; whether
    /// the bridge had already woken the task (its registration was gone).
    pub fn withdraw(&mut self) -> bool {
        match self.pending.take() {
            Some((key, id)) => {
                let woken = !bridge().remove(id);
                drop(key);
                woken
            }
            None => false,
        }
    }
}

/// The eventcount of [`AsyncWait::timer`]: nothing notifies it.
static NEVER_NOTIFIED: EventCount = EventCount::new();

impl AsyncWait<'static> {
    /// A wait that nothing notifies: it ends at `deadline` (a timer) and
    /// re-checks about every `step`.
    pub fn timer(deadline: Option<Instant>, step: Option<Duration>) -> Self {
        Self::new(&NEVER_NOTIFIED, None, step).with_deadline(deadline)
    }

    /// As [`poll`](Self::poll), for a wait on an eventcount that lives for
    /// ever (a timer's): nothing needs keeping alive.
    pub fn poll_static<R>(
        &mut self,
        cx: &mut Context<'_>,
        cond: impl FnMut() -> Option<R>,
    ) -> Poll<R> {
        // SAFETY: the eventcount is borrowed for 'static, so it outlives
        // any registration; the keep-alive holds nothing.
        unsafe { self.poll(cx, || Arc::new(()) as KeepAlive, cond) }
    }
}

impl Drop for AsyncWait<'_> {
    fn drop(&mut self) {
        // Woken, then dropped before the poll that would have used the
        // wakeup (a future that lost a `select!`): the notification it
        // used up may have been the only one for a message that another
        // waiter now needs. Pass it on.
        if self.withdraw() {
            self.ec.notify_one();
        }
    }
}
