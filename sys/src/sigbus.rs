//! SIGBUS containment for shared file mappings.
//!
//! A peer that truncates a file this process has mapped (a `shm:` or
//! `file:` segment, a named semaphore) makes every later access to the
//! pages past the new end raise `SIGBUS`, whose default action kills the
//! process. So, once per process and only when the first such mapping is
//! registered, this module installs a `SIGBUS` handler that:
//!
//! - for a fault inside a registered mapping, maps zero-filled private
//!   anonymous memory over the whole mapping (`MAP_FIXED`) and marks it
//!   broken, then returns: the faulting access re-runs on zeros, and the
//!   owner of the mapping sees [`Registration::is_broken`] and reports a
//!   typed error from then on;
//! - for any other fault, does what the previous disposition would have
//!   done: calls the previous handler (with or without `SA_SIGINFO`, as it
//!   was installed), or restores the default action and re-raises the
//!   signal so the process dies of `SIGBUS` exactly as before, or ignores
//!   it where it was ignored and the kernel allows that.
//!
//! The handler allocates nothing and takes no lock: the registered mappings
//! live in a fixed table of [`SLOTS`] atomic entries, scanned lock-free,
//! and the only system calls it makes are `mmap`, `sigaction` and `raise`
//! (`mmap` is not on POSIX's async-signal-safe list, but on Linux it is a
//! plain system call; libwayland-server relies on the same). A mapping is
//! unregistered before it is unmapped, and unregistering waits until no
//! handler is running, so the handler never maps zeros over memory that no
//! longer belongs to the mapping.
//!
//! # Opting out
//!
//! Applications that own `SIGBUS` themselves call [`disable`] before the
//! first segment or semaphore is created or opened, or set the environment
//! variable `SHMLANE_SIGBUS=off`. Without the handler, a peer that
//! truncates a segment kills this process, as any shared file mapping
//! would. A handler installed later by someone else replaces shmlane's
//! (shmlane does not re-install it); one that chains to the handler it
//! replaced keeps the protection.

use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Once;

/// How many mappings can be protected at once; further ones work but are
/// unprotected (see [`register`]).
pub const SLOTS: usize = 1024;

/// The environment variable that turns the handler off when set to `off`
/// (or `0`).
pub const ENV: &str = "SHMLANE_SIGBUS";

const FREE: u32 = 0;
const CLAIMED: u32 = 1;
const ACTIVE: u32 = 2;

struct Entry {
    state: AtomicU32,
    start: AtomicUsize,
    len: AtomicUsize,
    broken: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Entry = Entry {
    state: AtomicU32::new(FREE),
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    broken: AtomicBool::new(false),
};

static TABLE: [Entry; SLOTS] = [EMPTY; SLOTS];
/// Handlers running now (any thread); unregistering waits for 0.
static IN_HANDLER: AtomicUsize = AtomicUsize::new(0);
static DISABLED: AtomicBool = AtomicBool::new(false);
static INSTALLED: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

/// The disposition found before ours, written once before our handler is
/// installed and only read afterwards.
struct Previous(std::cell::UnsafeCell<libc::sigaction>);

// SAFETY: written only inside `INSTALL.call_once`, before the handler that
// reads it is installed (the `sigaction` system call orders the two); never
// written again.
unsafe impl Sync for Previous {}

static PREVIOUS: Previous = Previous(std::cell::UnsafeCell::new(
    // SAFETY: `sigaction` is plain data; all zeros is SIG_DFL, no flags.
    unsafe { std::mem::zeroed() },
));

/// Keeps shmlane from installing its `SIGBUS` handler in this process.
/// Call it before the first segment or semaphore is created or opened; it
/// has no effect once the handler is installed (returns `false` then).
pub fn disable() -> bool {
    // SeqCst: orders with the check in `install`; no other data.
    DISABLED.store(true, Ordering::SeqCst);
    !INSTALLED.load(Ordering::SeqCst)
}

/// Whether shmlane's handler is installed in this process.
pub fn is_installed() -> bool {
    // SeqCst: a plain status query.
    INSTALLED.load(Ordering::SeqCst)
}

fn disabled_by_env() -> bool {
    std::env::var(ENV).is_ok_and(|v| matches!(v.as_str(), "off" | "0" | "no" | "false"))
}

fn install() {
    INSTALL.call_once(|| {
        // SeqCst: pairs with `disable`.
        if DISABLED.load(Ordering::SeqCst) || disabled_by_env() {
            return;
        }
        // SAFETY: querying the current disposition into our own cell; no
        // handler of ours that reads the cell exists yet.
        let got = unsafe { libc::sigaction(libc::SIGBUS, ptr::null(), PREVIOUS.0.get()) };
        if got != 0 {
            return;
        }
        // SAFETY: `sigaction` is plain data; all zeros is a valid start.
        let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) = handler;
        act.sa_sigaction = f as libc::sighandler_t;
        act.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART;
        // SAFETY: `act.sa_mask` is a valid sigset_t to initialise.
        unsafe { libc::sigemptyset(&mut act.sa_mask) };
        // SAFETY: installs a handler that is async-signal-safe (see the
        // module docs); `act` is valid for the call.
        if unsafe { libc::sigaction(libc::SIGBUS, &act, ptr::null_mut()) } == 0 {
            // SeqCst: a status flag for `disable` and `is_installed`.
            INSTALLED.store(true, Ordering::SeqCst);
        }
    });
}

/// A protected mapping; unregistered when dropped. Drop it **before**
/// unmapping the memory.
#[derive(Debug)]
pub struct Registration {
    slot: Option<usize>,
}

/// Protects the mapping `[start, start + len)`: installs the handler if it
/// is not yet installed (and not disabled), and records the range.
///
/// Returns a registration even when the handler is disabled or the table
/// is full; such a mapping is simply not protected (and never reports
/// broken from a fault).
///
/// # Safety
///
/// - `[start, start + len)` must be a mapping the caller owns, which stays
///   mapped until the returned registration is dropped, and which nothing
///   else in the process relies on keeping its contents (after a fault it
///   is replaced by zeros).
pub unsafe fn register(start: *mut u8, len: usize) -> Registration {
    install();
    if !is_installed() || len == 0 {
        return Registration { slot: None };
    }
    for (i, e) in TABLE.iter().enumerate() {
        // Acquire: the slot's previous owner finished with it (pairs with
        // the Release store of FREE in `Drop`).
        if e.state
            .compare_exchange(FREE, CLAIMED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            // Relaxed: published by the SeqCst store of ACTIVE below.
            e.start.store(start as usize, Ordering::Relaxed);
            e.len.store(len, Ordering::Relaxed);
            e.broken.store(false, Ordering::Relaxed);
            // SeqCst: publishes start/len to the handler's SeqCst load of
            // `state`, and is in the total order with `IN_HANDLER`.
            e.state.store(ACTIVE, Ordering::SeqCst);
            return Registration { slot: Some(i) };
        }
    }
    Registration { slot: None }
}

impl Registration {
    /// Whether a fault inside the mapping was caught: its contents are
    /// zeros now, no longer shared with anyone.
    #[inline]
    pub fn is_broken(&self) -> bool {
        // Acquire: pairs with the handler's Release store, so the zero
        // mapping is in place once this says true.
        self.slot
            .is_some_and(|i| TABLE[i].broken.load(Ordering::Acquire))
    }

    /// Whether the mapping is protected at all.
    pub fn is_protected(&self) -> bool {
        self.slot.is_some()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let Some(i) = self.slot else { return };
        let e = &TABLE[i];
        // SeqCst: in one total order with the handler's increment of
        // IN_HANDLER and its load of `state`: a handler that counted itself
        // after this store sees CLAIMED and leaves the range alone; one that
        // counted itself before is waited for below.
        e.state.store(CLAIMED, Ordering::SeqCst);
        while IN_HANDLER.load(Ordering::SeqCst) != 0 {
            std::hint::spin_loop();
        }
        // Release: pairs with the Acquire claim in `register`.
        e.state.store(FREE, Ordering::Release);
    }
}

extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SeqCst: see `Registration::drop`.
    IN_HANDLER.fetch_add(1, Ordering::SeqCst);
    let addr = if info.is_null() {
        0
    } else {
        // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO
        // handler (null is checked above, for callers by hand).
        unsafe { (*info).si_addr() as usize }
    };
    let mut caught = false;
    if addr != 0 {
        for e in &TABLE {
            // SeqCst: see `Registration::drop`; also makes start/len visible.
            if e.state.load(Ordering::SeqCst) != ACTIVE {
                continue;
            }
            // Relaxed: published by the SeqCst store of ACTIVE.
            let start = e.start.load(Ordering::Relaxed);
            let len = e.len.load(Ordering::Relaxed);
            if addr < start || addr - start >= len {
                continue;
            }
            // SAFETY: `[start, start+len)` is a live mapping its registrant
            // owns and gave us leave to replace (see `register`); MAP_FIXED
            // replaces exactly it with private zero pages.
            let p = unsafe {
                libc::mmap(
                    start as *mut libc::c_void,
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_FIXED | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if p != libc::MAP_FAILED {
                // Release: pairs with the Acquire load in `is_broken`.
                e.broken.store(true, Ordering::Release);
                caught = true;
            }
            break;
        }
    }
    // SeqCst: see `Registration::drop`.
    IN_HANDLER.fetch_sub(1, Ordering::SeqCst);
    if !caught {
        // SAFETY: `info` and `ctx` are the kernel's, passed on unchanged.
        unsafe { chain(sig, info, ctx) };
    }
}

/// Does what the disposition before ours would have done.
///
/// # Safety
///
/// - Called only from `handler`, with the arguments the kernel gave it.
unsafe fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: written before our handler was installed, never again.
    let prev = unsafe { &*PREVIOUS.0.get() };
    let from_kernel = !info.is_null() && {
        // SAFETY: a valid siginfo from the kernel.
        unsafe { (*info).si_code > 0 }
    };
    match prev.sa_sigaction {
        libc::SIG_DFL => die(sig),
        libc::SIG_IGN => {
            // A real fault cannot be ignored: the kernel would have killed
            // the process; a SIGBUS sent by someone is dropped, as before.
            if from_kernel {
                die(sig);
            }
        }
        f if prev.sa_flags & libc::SA_SIGINFO != 0 => {
            // SAFETY: installed with SA_SIGINFO, so it has this signature.
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                unsafe { std::mem::transmute(f) };
            f(sig, info, ctx);
        }
        f => {
            // SAFETY: installed without SA_SIGINFO: a plain handler.
            let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(f) };
            f(sig);
        }
    }
}

/// Restores the default action and re-raises: the process dies of the
/// signal once the handler returns (it is blocked until then).
fn die(sig: libc::c_int) {
    // SAFETY: `sigaction` is plain data; all zeros is SIG_DFL.
    let mut dfl: libc::sigaction = unsafe { std::mem::zeroed() };
    dfl.sa_sigaction = libc::SIG_DFL;
    // SAFETY: sigaction and raise are async-signal-safe; `dfl` is valid.
    unsafe {
        libc::sigaction(sig, &dfl, ptr::null_mut());
        libc::raise(sig);
    }
}

/// Whether a file descriptor's file is shorter than `len` (a peer
/// truncated it). An error counts as not shorter.
pub fn shorter_than(fd: std::os::fd::BorrowedFd<'_>, len: u64) -> bool {
    rustix::fs::fstat(fd).is_ok_and(|st| (st.st_size as u64) < len)
}
