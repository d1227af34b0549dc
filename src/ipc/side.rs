//! What every ring handle keeps ([`Side`]: its attachment, how it waits,
//! whether it has seen the segment corrupted) and the shared MPMC end.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use shmlane_codec::archive::CopyBuf;
use shmlane_ring::mpmc;
use shmlane_semaphore::{EventCount, Phase, WaitStrategy};
use shmlane_shm::{fault, Attachment};

use super::port::{self, Failed, Tried};
use super::{RecvMsgError, Role, Segment, Trust, PROBE_INTERVAL, STEP};
use shmlane_codec::archive::Scratch;

/// What every handle keeps: its attachment (liveness), how it waits, and
/// whether it has seen the segment corrupted.
pub(super) struct Side {
    pub(super) att: Attachment,
    pub(super) strategy: WaitStrategy,
    pub(super) trust: Trust,
    /// Bytes of length word in front of each message (0: bare Pod).
    pub(super) meta: usize,
    /// Bytes a slot holds after the length word.
    pub(super) cap: usize,
    pub(super) last_probe: AtomicU64,
    /// When a receiver last looked for dead receivers (see `reap_due`).
    pub(super) last_reap: AtomicU64,
    pub(super) corrupted: AtomicBool,
    /// Private buffers for `Trust::hostile` receives, reused.
    pub(super) copies: Mutex<Vec<CopyBuf>>,
}

impl Side {
    /// A handle's side: `meta` bytes of length word in front of each
    /// message in slots of `slot_size` bytes.
    pub(super) fn new(
        att: Attachment,
        strategy: WaitStrategy,
        trust: Trust,
        meta: usize,
        slot_size: usize,
    ) -> Self {
        Self {
            att,
            strategy,
            trust,
            meta,
            // Length words have 32 bits (flags above them).
            cap: (slot_size - meta).min(u32::MAX as usize),
            last_probe: AtomicU64::new(0),
            last_reap: AtomicU64::new(0),
            corrupted: AtomicBool::new(false),
            copies: Mutex::new(Vec::new()),
        }
    }

    #[inline]
    pub(super) fn seg(&self) -> &Segment {
        self.att.segment()
    }

    #[inline]
    pub(super) fn not_empty(&self) -> &EventCount {
        &self.seg().header().not_empty.0
    }

    #[inline]
    pub(super) fn not_full(&self) -> &EventCount {
        &self.seg().header().not_full.0
    }

    #[inline]
    pub(super) fn corrupted(&self) -> bool {
        // Relaxed: a local flag; nothing is published with it.
        if self.corrupted.load(Ordering::Relaxed) || self.seg().is_broken() {
            return true;
        }
        // A truncation that spares the pages in use faults nowhere, and a
        // busy side never waits (where `peers_gone` probes): look at the
        // file's length every 1024 operations of this thread, at most every
        // `PROBE_INTERVAL` per handle.
        thread_local! { static OPS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) }; }
        let n = OPS.with(|c| {
            let n = c.get().wrapping_add(1);
            c.set(n);
            n
        });
        n % 1024 == 0 && self.truncated()
    }

    #[cold]
    pub(super) fn truncated(&self) -> bool {
        self.probe_due() && !self.seg().check_intact()
    }

    pub(super) fn poison(&self) {
        // Relaxed: as above.
        self.corrupted.store(true, Ordering::Relaxed);
    }

    /// Whether every `peer` is gone, after at least one attached. One load
    /// when they left cleanly; with `probe`, also looks (at most every
    /// 5 ms) for peers that died holding their slot, and for a segment a
    /// peer truncated (then the channel is broken: gone, and corrupted).
    #[inline]
    pub(super) fn peers_gone(&self, peer: Role, probe: bool) -> bool {
        // The common case in one branch: peers attached and counted, and no
        // reason to look further. (A broken segment is caught by
        // `corrupted`, which every operation checks first, and by the slow
        // path whenever this side probes.)
        if !probe && self.seg().live_hint(peer) != 0 {
            return false;
        }
        self.peers_gone_slow(peer, probe)
    }

    #[cold]
    pub(super) fn peers_gone_slow(&self, peer: Role, probe: bool) -> bool {
        let seg = self.seg();
        if seg.is_broken() {
            return true;
        }
        if !seg.ever_attached(peer) {
            if !probe || !self.probe_due() {
                return false;
            }
            if !seg.check_intact() {
                return true;
            }
            // A peer that died while attaching never said it was there:
            // the scan reaps it and marks its role seen.
            let _ = seg.live_count(peer);
            fault::pause("probe.scanned");
            // "Gone" is confirmed by a scan made after `seen` was loaded
            // (as below): a peer that published its entry behind the scan
            // above and then marked its role seen is found by this one.
            // Reading `seen` after a single scan took such a peer, still
            // attaching, for one that had come and gone: a receiver that
            // looked before its first sender attached could end with
            // `Disconnected` and nothing received.
            return seg.ever_attached(peer) && seg.live_count(peer) == 0;
        }
        if seg.live_hint(peer) == 0 {
            // The peers may have left because they found the segment
            // truncated: say so (one `fstat`, only once the channel ended).
            let _ = seg.check_intact();
            // Confirmed by a scan: a peer attaching right now is marked
            // seen before it is counted.
            return seg.live_count(peer) == 0;
        }
        if !probe || !self.probe_due() {
            return false;
        }
        fault::pause("probe.attached");
        !seg.check_intact() || seg.live_count(peer) == 0
    }

    /// Rate-limits probes to one per `PROBE_INTERVAL` per handle.
    pub(super) fn probe_due(&self) -> bool {
        self.due(&self.last_probe)
    }

    /// Rate-limits a receiver's look for dead fellow receivers (whose
    /// claims it must deliver again) the same way, on its own clock.
    pub(super) fn reap_due(&self) -> bool {
        self.due(&self.last_reap)
    }

    pub(super) fn due(&self, last: &AtomicU64) -> bool {
        // The coarse clock: a `try_recv` spinning on an empty ring asks
        // this on every call, and `Instant::now` was a quarter of such a
        // loop's time (19 ns a call, against 5). Its tick (1-10 ms) makes
        // the interval up to one tick longer or shorter.
        let now = shmlane_sys::clock::coarse_nanos().max(1);
        // Relaxed: a rate limit, local to this handle.
        let then = last.load(Ordering::Relaxed);
        if then != 0 && now.saturating_sub(then) < PROBE_INTERVAL.as_nanos() as u64 {
            return false;
        }
        last.store(now, Ordering::Relaxed);
        true
    }

    /// A private buffer for a `Trust::hostile` copy.
    pub(super) fn take_copy(&self) -> CopyBuf {
        self.copies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default()
    }

    /// Gives a copy buffer back for the next message.
    pub(super) fn put_copy(&self, buf: CopyBuf) {
        self.copies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(buf);
    }

    /// Sends through `attempt(probe)`, waiting while full. `probe` is false
    /// while spinning, so that lock probes for dead peers happen only after
    /// a yield or a park.
    pub(super) fn wait_send<E>(
        &self,
        deadline: Option<Instant>,
        mut attempt: impl FnMut(bool) -> Tried<E>,
    ) -> Result<(), Failed<E>> {
        let settle = |tried| match tried {
            Tried::Done => Some(Ok(())),
            Tried::Gone => Some(Err(Failed::Gone)),
            Tried::Rejected(e) => Some(Err(Failed::Rejected(e))),
            Tried::Full => None,
        };
        if let Some(done) = settle(attempt(false)) {
            return done;
        }
        self.strategy
            .wait_tallied(
                self.not_full(),
                deadline,
                Some(STEP),
                Some(self.att.waiting(true)),
                |phase| settle(attempt(phase != Phase::Spin)),
            )
            .unwrap_or(Err(Failed::Timeout))
    }

    /// Receives through `attempt(probe)`, waiting while empty (`probe` as
    /// in [`wait_send`](Self::wait_send)).
    pub(super) fn wait_recv<R>(
        &self,
        deadline: Option<Instant>,
        mut attempt: impl FnMut(bool) -> Result<R, RecvMsgError>,
    ) -> Result<R, RecvMsgError> {
        match attempt(false) {
            Err(RecvMsgError::Empty) => {}
            done => return done,
        }
        loop {
            let got = self.strategy.wait_tallied(
                self.not_empty(),
                deadline,
                Some(STEP),
                Some(self.att.waiting(false)),
                |phase| match attempt(phase != Phase::Spin) {
                    // A live producer is writing the head slot: never park
                    // on it (see `port::busy`); spin and yield instead.
                    Err(RecvMsgError::Empty) => {
                        (phase == Phase::Park && port::busy::take()).then_some(None)
                    }
                    done => Some(Some(done)),
                },
            );
            match got {
                Ok(Some(done)) => return done,
                Ok(None) => std::thread::yield_now(),
                Err(_) => return Err(RecvMsgError::Timeout),
            }
        }
    }
}

/// The most slots a producer that found the ring full waits to see freed
/// before it writes again (see `Ring::free_ahead`).
const REFILL_MAX: u64 = 64;

/// How many slots past one a producer that found a ring of `capacity`
/// full waits to see freed before it writes again, on either ring kind: a
/// stretch of cache lines apart from the ones the consumers are reading
/// (a quarter of the ring, at most [`REFILL_MAX`]; none for tiny rings).
pub(super) fn refill_for(capacity: u64) -> u64 {
    (capacity / 4).min(REFILL_MAX).saturating_sub(1)
}

pub(super) struct MpmcEnd {
    pub(super) ring: mpmc::Ring,
    pub(super) side: Side,
    /// How far past the enqueue index a producer that found the ring full
    /// looks for a freed slot before writing again (0: the next slot).
    pub(super) refill: u64,
    /// Serializer scratch spaces for rkyv sends, reused.
    pub(super) scratch: Mutex<Vec<Scratch>>,
    /// The segment's count of reaped participants when this end last
    /// looked for claims the dead left behind.
    pub(super) seen_reaped: AtomicU64,
}

impl MpmcEnd {
    pub(super) fn take_scratch(&self) -> Scratch {
        self.scratch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default()
    }

    pub(super) fn put_scratch(&self, scratch: Scratch) {
        self.scratch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(scratch);
    }

    /// Whether a participant was reaped since this end last looked for
    /// claims the dead left behind (and notes that it looks now).
    pub(super) fn orphans_possible(&self) -> bool {
        let now = self.side.seg().reaped();
        // Relaxed: a local note; the segment counter orders the reap. A
        // load first: this is asked at every claim, and nothing changed
        // is the rule.
        self.seen_reaped.load(Ordering::Relaxed) != now
            && self.seen_reaped.swap(now, Ordering::Relaxed) != now
    }

    /// Makes the next [`orphans_possible`](Self::orphans_possible) true.
    pub(super) fn expect_orphans(&self) {
        // Relaxed: as above.
        self.seen_reaped.store(u64::MAX, Ordering::Relaxed);
    }
}
