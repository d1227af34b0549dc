//! The two halves of the eventcount's Dekker pair, made asymmetric where
//! both sides are threads of this process.
//!
//! A waker runs once per message and must be cheap; a waiter is about to
//! make a futex system call anyway. So when the kernel offers
//! `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`, the waker's half
//! ([`waker_side_local`]) is only a compiler barrier and the waiter's half
//! is the membarrier call, which makes every CPU running a thread of this
//! process execute a full barrier (or be between context switches, which
//! are full barriers). This is the asymmetric-fence technique of Linux RCU
//! and folly.
//!
//! A private barrier reaches only this process. A waker in another
//! process (an eventcount in shared memory) therefore fences
//! ([`waker_side`]), and the waiter's membarrier is a full barrier for
//! itself too, so the pair holds whoever wakes. (The global command,
//! which would reach other processes, skips CPUs the kernel did not mark
//! at registration: see `shmlane_sys::membarrier`. Using it lost
//! wakeups here.)
//!
//! Every process registers (`MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED`)
//! on first use. Where membarrier is missing or refused, or
//! `SHMLANE_NO_MEMBARRIER` is set, both halves are SeqCst fences. Under
//! loom both halves are fences, which loom models.

use crate::sync::{fence, Ordering};

#[cfg(all(target_os = "linux", not(shmlane_loom)))]
mod imp {
    use std::sync::atomic::{compiler_fence, AtomicU8, Ordering};

    use shmlane_sys::membarrier;

    const UNKNOWN: u8 = 0;
    const ASYMMETRIC: u8 = 1;
    const SYMMETRIC: u8 = 2;

    static MODE: AtomicU8 = AtomicU8::new(UNKNOWN);

    #[cold]
    fn init() -> u8 {
        let mode = if std::env::var_os("SHMLANE_NO_MEMBARRIER").is_none()
            && membarrier::supports_private_expedited()
            && membarrier::register_private_expedited().is_ok()
        {
            ASYMMETRIC
        } else {
            SYMMETRIC
        };
        // Relaxed: registration (a system call) is complete before this
        // store; racing initialisers reach the same answer.
        MODE.store(mode, Ordering::Relaxed);
        mode
    }

    #[inline]
    fn mode() -> u8 {
        // Relaxed: a once-set flag; see `init`.
        match MODE.load(Ordering::Relaxed) {
            UNKNOWN => init(),
            m => m,
        }
    }

    /// Makes the one-time registration now, if not made yet.
    pub(crate) fn prepare() {
        mode();
    }

    /// Whether the asymmetric pair is in use in this process.
    pub(crate) fn asymmetric() -> bool {
        mode() == ASYMMETRIC
    }

    #[inline]
    pub(crate) fn light() -> bool {
        if mode() == ASYMMETRIC {
            // SeqCst compiler barrier: keeps the compiler from moving the
            // caller's store past our load; the CPU half is the waiter's
            // membarrier.
            compiler_fence(Ordering::SeqCst);
            true
        } else {
            false
        }
    }

    pub(crate) fn heavy() -> bool {
        if mode() != ASYMMETRIC {
            return false;
        }
        if membarrier::private_expedited().is_ok() {
            return true;
        }
        // Failed after registration (ENOMEM, a seccomp filter installed
        // later...): from now on wakers here fence too. Wakers already past
        // their light half are not ordered with this waiter; every wait of
        // shmlane's channels parks in bounded steps, so that costs at most
        // one step, never a hang.
        // Relaxed: a one-way switch to the always-correct mode.
        MODE.store(SYMMETRIC, Ordering::Relaxed);
        false
    }
}

#[cfg(any(not(target_os = "linux"), shmlane_loom))]
mod imp {
    pub(crate) fn prepare() {}
    pub(crate) fn asymmetric() -> bool {
        false
    }
    pub(crate) fn light() -> bool {
        false
    }
    pub(crate) fn heavy() -> bool {
        false
    }
}

/// Makes the process's one-time membarrier registration now, if it has
/// not been made. The kernel makes that registration cheap while the
/// process has one thread (2 us here) and slow once it has several (it
/// waits for an RCU grace period: 13 ms measured here, two threads
/// registering at once inside crossbeam's `bounded_spsc` shape, which ran
/// that much longer in a fresh process). Channel constructors call it, so
/// that it happens at creation, usually before the threads that use the
/// channel exist, and never inside a channel's first wait.
pub fn prepare() {
    imp::prepare();
}

/// Whether this process uses the asymmetric (membarrier) pair.
pub fn asymmetric() -> bool {
    imp::asymmetric()
}

/// The waker's half, when every waiter is a thread of this process (an
/// eventcount in private memory): after storing the condition, before
/// loading the waiter count. (Also the fast half of the biased lock in
/// `exclusive`, which is private to a process too.)
#[inline]
pub(crate) fn waker_side_local() {
    if !imp::light() {
        // SeqCst: pairs with the waiter's fence (symmetric mode).
        fence(Ordering::SeqCst);
    }
}

/// The waker's half when a waiter may be in another process (an
/// eventcount in shared memory): a fence, which pairs with the waiter's
/// fence or with the full barrier its membarrier call makes on its own
/// CPU.
#[inline]
pub(crate) fn waker_side() {
    // SeqCst: see above.
    fence(Ordering::SeqCst);
}

/// The waiter's half: after announcing itself, before re-checking the
/// condition. (Also the slow half of the biased lock in `exclusive`.)
#[inline]
pub(crate) fn waiter_side() {
    if !imp::heavy() {
        // SeqCst: pairs with the waker's fence (symmetric mode). A failed
        // membarrier in asymmetric mode also lands here; bounded steps cover
        // that case as described above.
        fence(Ordering::SeqCst);
    }
}
