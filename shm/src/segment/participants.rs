//! The participant table: attaching, liveness locks, reaping the dead,
//! detaching.

use std::fmt;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::{lock_offset, Role, Segment, CREATOR_LOCK};
use crate::error::AttachError;
use crate::header::{
    occupied, Participant, MAX_PARTICIPANTS, STATUS_ATTACHED, STATUS_ATTACHING, STATUS_FREE,
};
use crate::sys;

/// One row of [`Segment::participants`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantInfo {
    /// Slot in the participant table.
    pub index: usize,
    /// Its role (`None` if the table holds garbage).
    pub role: Option<Role>,
    /// Its process id.
    pub pid: u32,
    /// Whether it still holds its lock.
    pub alive: bool,
}

impl Segment {
    pub(super) fn participant(&self, index: usize) -> &Participant {
        &self.header().participants[index]
    }

    pub(super) fn is_alive(&self, index: usize) -> bool {
        if *self.held.lock().unwrap_or_else(|e| e.into_inner()) & (1 << index) != 0 {
            return true;
        }
        // Never reap a participant we cannot prove dead.
        self.live.is_locked_or_unknown(lock_offset(index))
    }

    /// Marks a dead participant's slot free, once; the winner also takes
    /// back the dead's parked-waiter announcements, counts the death, and
    /// wakes every waiter so that survivors recover what the dead held.
    pub(super) fn reap(&self, index: usize, seen_state: u64, role: Role) {
        let p = self.participant(index);
        let next = ((seen_state >> 8).wrapping_add(1) << 8) | STATUS_FREE;
        // AcqRel: orders the reap with the attach that set `seen_state`;
        // only one reaper (or attacher) wins the exchange.
        if p.state
            .compare_exchange(seen_state, next, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            let h = self.header();
            // Only an attach that got as far as ATTACHED surely counted
            // itself; one that died attaching may leave the count one too
            // high, which is safe (peers confirm a zero by a scan, and
            // find "none left" by a scan when it never reaches zero).
            if seen_state & 0xff == STATUS_ATTACHED {
                self.count_down(role);
            }
            // It existed: its peers must learn when every one of its role
            // is gone, even if it died before saying so itself.
            // Release: pairs with the Acquire load in `ever_attached`.
            h.seen[role.index()].store(1, Ordering::Release);
            // Relaxed: the dead cannot change its tally any more; the CAS
            // above makes this reaper the only one to read and clear it.
            let parked = [
                p.waiting[0].swap(0, Ordering::Relaxed),
                p.waiting[1].swap(0, Ordering::Relaxed),
            ];
            h.not_empty.0.forget_waiters(parked[0]);
            h.not_full.0.forget_waiters(parked[1]);
            // Release: pairs with the Acquire load in `reaped`, so a
            // survivor that sees the new count also sees the reap.
            h.reaped.fetch_add(1, Ordering::Release);
            h.not_empty.0.notify_all();
            h.not_full.0.notify_all();
        }
    }

    /// How many dead participants were reaped, ever (a change means slots
    /// held by the dead may need recovering).
    #[inline]
    pub fn reaped(&self) -> u64 {
        // Acquire: pairs with the Release increment in `reap`.
        self.header().reaped.load(Ordering::Acquire)
    }

    /// Whether the participant that `who` (an [`Attachment::owner_id`])
    /// names can never act on the segment again: it detached, was reaped,
    /// or its liveness lock is free (then it is reaped here). A `who` that
    /// names no participant (garbage from a peer) counts as dead.
    pub fn owner_is_dead(&self, who: u64) -> bool {
        let slot = (who & 0x3f) as usize;
        if slot == 0 || slot > MAX_PARTICIPANTS {
            return true;
        }
        let index = slot - 1;
        let p = self.participant(index);
        // Acquire: as in `live_count`.
        let state = p.state.load(Ordering::Acquire);
        if !occupied(state) || (state >> 8) & 0xffff_ffff != who >> 6 {
            return true;
        }
        if self.is_alive(index) {
            return false;
        }
        if !self.read_only {
            if let Some(role) = Role::from_raw(p.role.load(Ordering::Relaxed)) {
                self.reap(index, state, role);
            }
        }
        true
    }

    /// This process's parked-waiter tally in participant slot `index`, for
    /// `not_empty` (`full == false`) or `not_full`.
    pub(super) fn tally(&self, index: usize, full: bool) -> &AtomicU32 {
        &self.participant(index).waiting[usize::from(full)]
    }

    /// Decrements the live counter of `role`, never below zero (a peer may
    /// have scribbled on it).
    pub(super) fn count_down(&self, role: Role) {
        // Release: pairs with the Acquire load in `live_hint`, publishing
        // everything the departing participant did before.
        let _ = self.header().live[role.index()].fetch_update(
            Ordering::Release,
            Ordering::Relaxed,
            |v| v.checked_sub(1),
        );
    }

    /// The number of live participants in `role` (attached, or attaching
    /// now), reaping dead ones (whose processes died without detaching) on
    /// the way: a scan of the table, with a lock probe per participant of
    /// that role.
    pub fn live_count(&self, role: Role) -> u32 {
        let mut live = 0;
        for i in 0..MAX_PARTICIPANTS {
            let p = self.participant(i);
            // Acquire: pairs with the Release CAS publishing ATTACHING, so
            // the role read below is the attacher's.
            let state = p.state.load(Ordering::Acquire);
            if !occupied(state) || Role::from_raw(p.role.load(Ordering::Relaxed)) != Some(role) {
                continue;
            }
            if self.is_alive(i) {
                live += 1;
            } else if !self.read_only {
                self.reap(i, state, role);
            }
        }
        live
    }

    /// Whether the process that created the segment still has it open
    /// (through another open file description than this one).
    pub fn creator_alive(&self) -> bool {
        self.live.is_locked_or_unknown(CREATOR_LOCK)
    }

    /// Messages buffered in the ring now (a snapshot, for tools).
    pub fn buffered(&self) -> u64 {
        let (base, _) = self.ring_region();
        // SAFETY: the region was validated against the layout when opened
        // and lives as long as `self`; only loads are made.
        unsafe { shmlane_ring::peek_len(base, &self.layout) }
    }

    /// A broadcast ring's counters: messages published and every
    /// subscriber's position (empty for other rings). Loads only.
    pub fn topic(&self) -> shmlane_ring::broadcast::Peek {
        let (base, _) = self.ring_region();
        match self.layout.kind() {
            // SAFETY: as in `buffered`, and the layout is a broadcast one.
            shmlane_ring::RingKind::Broadcast { .. } => unsafe {
                shmlane_ring::broadcast::peek(base, &self.layout)
            },
            _ => shmlane_ring::broadcast::Peek {
                published: 0,
                capacity: self.layout.capacity(),
                cursors: Vec::new(),
            },
        }
    }

    /// The pid that created the segment (as it recorded it).
    pub fn creator_pid(&self) -> u32 {
        self.header().creator_pid.read()
    }

    /// The header's count of attached participants in `role`, dead ones
    /// included until someone reaps them (and, after a death in the middle
    /// of an attach, possibly one more): one load, a hint. A zero is
    /// confirmed with [`live_count`](Self::live_count) (a participant that
    /// is attaching right now is not counted yet).
    #[inline]
    pub fn live_hint(&self, role: Role) -> u32 {
        // Acquire: pairs with the Release updates in attach/detach/reap, so
        // a sender's pushes before its detach are visible after a 0.
        self.header().live[role.index()].load(Ordering::Acquire)
    }

    /// Whether a participant in `role` ever attached to this segment.
    #[inline]
    pub fn ever_attached(&self, role: Role) -> bool {
        // Acquire: pairs with the Release store in `attach`.
        self.header().seen[role.index()].load(Ordering::Acquire) != 0
    }

    /// Every attached participant, alive or dead, for tools.
    pub fn participants(&self) -> Vec<ParticipantInfo> {
        (0..MAX_PARTICIPANTS)
            .filter_map(|i| {
                let p = self.participant(i);
                // Acquire: as in `live_count`.
                let state = p.state.load(Ordering::Acquire);
                occupied(state).then(|| ParticipantInfo {
                    index: i,
                    role: Role::from_raw(p.role.load(Ordering::Relaxed)),
                    pid: p.pid.load(Ordering::Relaxed),
                    alive: self.is_alive(i),
                })
            })
            .collect()
    }

    /// Attaches this process as a `role` participant: takes the kernel lock
    /// that marks it alive and records its pid. With `exclusive`, fails if
    /// another live participant has the same role (SPSC rings).
    ///
    /// # Errors
    ///
    /// [`AttachError`].
    pub fn attach(
        self: &Arc<Self>,
        role: Role,
        exclusive: bool,
    ) -> Result<Attachment, AttachError> {
        if self.read_only {
            return Err(AttachError::ReadOnly);
        }
        let (index, state) = self.claim_slot(role)?;
        let attachment = Attachment {
            seg: Arc::clone(self),
            index,
            role,
            state,
            pid: sys::process::pid(),
        };
        if exclusive {
            let others = (0..MAX_PARTICIPANTS).filter(|&j| j != index).any(|j| {
                let p = self.participant(j);
                // SeqCst: with the SeqCst exchange that published our own slot
                // this is a store-then-load pair on two locations; SeqCst on
                // both sides means two racing attachers cannot both miss each
                // other (both may back off, which is safe).
                let state = p.state.load(Ordering::SeqCst);
                occupied(state)
                    && Role::from_raw(p.role.load(Ordering::Relaxed)) == Some(role)
                    && self.is_alive(j)
            });
            if others {
                // Dropping the attachment detaches it again.
                return Err(AttachError::RoleTaken { role: role.name() });
            }
        }
        Ok(attachment)
    }

    /// Takes a free slot; returns its index and the state it published.
    pub(super) fn claim_slot(&self, role: Role) -> Result<(usize, u64), AttachError> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let pid = sys::process::pid();
        let start = sys::process::start_time(pid);
        for i in 0..MAX_PARTICIPANTS {
            if *held & (1 << i) != 0 {
                continue;
            }
            // The lock is the ownership: whoever holds it owns slot i, and a
            // slot whose lock is free has no live owner.
            if !self
                .live
                .try_lock(lock_offset(i))
                .map_err(AttachError::Os)?
            {
                continue;
            }
            crate::fault::point("attach.locked");
            let p = self.participant(i);
            let h = self.header();
            // 1. Publish the entry as ATTACHING: from here on a scan of the
            //    table finds this participant (alive while its lock is held;
            //    reaped, and its role marked seen, if it dies).
            let attaching = loop {
                // Acquire: sees the previous owner's fields if it is to be reaped.
                let state = p.state.load(Ordering::Acquire);
                if occupied(state) {
                    // The previous owner died holding the slot: reap it first.
                    if let Some(old) = Role::from_raw(p.role.load(Ordering::Relaxed)) {
                        self.reap(i, state, old);
                    } else {
                        let next = ((state >> 8).wrapping_add(1) << 8) | STATUS_FREE;
                        // Relaxed: a garbage role; just clear the slot.
                        let _ = p.state.compare_exchange(
                            state,
                            next,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        );
                    }
                    continue;
                }
                // Relaxed: published by the Release exchange below.
                p.waiting[0].store(0, Ordering::Relaxed);
                p.waiting[1].store(0, Ordering::Relaxed);
                p.role.store(role.index() as u32, Ordering::Relaxed);
                p.pid.store(pid, Ordering::Relaxed);
                p.start_time.store(start, Ordering::Relaxed);
                let next = ((state >> 8).wrapping_add(1) << 8) | STATUS_ATTACHING;
                // SeqCst (a Release at least): publishes role/pid/start, pairs
                // with Acquire loads of `state` in `live_count` and
                // `participants`, and with the SeqCst loads of the
                // exclusivity check in `attach`.
                if p.state
                    .compare_exchange(state, next, Ordering::SeqCst, Ordering::Relaxed)
                    .is_ok()
                {
                    break next;
                }
            };
            // 2. Mark the role seen: peers that see it and no count yet
            //    confirm by a scan, which finds this entry.
            // Release: pairs with the Acquire load in `ever_attached`.
            h.seen[role.index()].store(1, Ordering::Release);
            crate::fault::point("attach.attaching");
            // 3. Count it, then say so: only an ATTACHED entry is
            //    decremented when reaped, so the count is never too low.
            // Release: pairs with the Acquire load in `live_hint`.
            h.live[role.index()].fetch_add(1, Ordering::Release);
            crate::fault::point("attach.counted");
            let published = (attaching & !0xff) | STATUS_ATTACHED;
            // SeqCst: as above. Nobody else changes a live owner's entry
            // (reapers need its lock free), so this cannot fail short of a
            // peer scribbling; then the entry stays ATTACHING, which only
            // leaves the count one too high.
            let _ =
                p.state
                    .compare_exchange(attaching, published, Ordering::SeqCst, Ordering::Relaxed);
            crate::fault::point("attach.published");
            *held |= 1 << i;
            return Ok((i, published));
        }
        Err(AttachError::TableFull)
    }

    /// Frees slot `index`, but only from the exact state this attachment
    /// published: if the slot changed hands meanwhile (it cannot, short of
    /// a fork sharing our locks, or a peer scribbling), it is left alone.
    pub(super) fn detach(&self, index: usize, role: Role, published: u64) {
        let p = self.participant(index);
        let h = self.header();
        let next = ((published >> 8).wrapping_add(1) << 8) | STATUS_FREE;
        // AcqRel: races only with a (mistaken) reaper; one wins.
        if p.state
            .compare_exchange(published, next, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            self.count_down(role);
        }
        let _ = self.live.unlock(lock_offset(index));
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) &= !(1 << index);
        // Blocked peers re-check whether their side is disconnected.
        h.not_empty.0.notify_all();
        h.not_full.0.notify_all();
    }
}

/// A live participant; detaches (and wakes blocked peers) when dropped.
///
/// It remembers the process that attached: dropped in another process (a
/// child forked without exec that inherited a copy), it does nothing, so
/// the child cannot detach its parent or release the parent's locks.
pub struct Attachment {
    seg: Arc<Segment>,
    index: usize,
    role: Role,
    /// The slot state this attachment published.
    state: u64,
    /// The process that attached.
    pid: u32,
}

impl Attachment {
    /// The segment attached to.
    #[inline]
    pub fn segment(&self) -> &Arc<Segment> {
        &self.seg
    }

    /// The role attached as.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Who this participant is, as slots it holds record it: its index in
    /// the participant table and the low 32 bits of its generation
    /// (`generation << 6 | index + 1`, never 0). See
    /// [`Segment::owner_is_dead`].
    pub fn owner_id(&self) -> u64 {
        ((self.state >> 8) & 0xffff_ffff) << 6 | (self.index as u64 + 1)
    }

    /// This participant's tally of threads parked on `not_empty` (or, with
    /// `full`, on `not_full`), to pass to
    /// [`EventCount::wait_tallied`](shmlane_semaphore::EventCount::wait_tallied).
    pub fn waiting(&self, full: bool) -> &AtomicU32 {
        self.seg.tally(self.index, full)
    }

    /// Whether this is the process that attached (false in a forked child).
    pub fn is_own_process(&self) -> bool {
        sys::process::pid() == self.pid
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        if !self.is_own_process() {
            // A forked child's copy: the attachment is the parent's.
            return;
        }
        crate::fault::point("detach.before");
        self.seg.detach(self.index, self.role, self.state);
    }
}

impl fmt::Debug for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attachment")
            .field("index", &self.index)
            .field("role", &self.role)
            .finish()
    }
}
