//! The byte-level core every message kind shares: write a slot's bytes and
//! publish them, or find the oldest message's bytes and lend them out.

use std::ptr::NonNull;

use shmlane_codec::archive::copy_into;
use shmlane_codec::{kind, EncodeError};
use shmlane_ring::{mpmc, spsc, PopError, PushError};
use shmlane_shm::fault;

use super::kinds::{Hold, Message, MsgRef, RecvMsgError};
use super::slot::{Reading, Writing};
use super::{MpmcEnd, Side, BUSY_RETRIES, FLAG_SKIP};
use crate::ipc::Role;
use crate::sync::backoff;
use shmlane_semaphore::exclusive::{Exclusive, Guard};

/// How one attempt to send went.
pub(super) enum Tried<E> {
    Done,
    Full,
    Gone,
    /// The message could not be written (it did not fit); nothing was
    /// published for it.
    Rejected(E),
}

/// Why a blocking send gave up.
pub(super) enum Failed<E> {
    Timeout,
    Gone,
    Rejected(E),
}

/// One attempt to send through an MPMC ring.
pub(super) fn mpmc_try_write<E>(
    end: &MpmcEnd,
    probe: bool,
    write: &mut impl FnMut(&mut [u8]) -> Result<usize, E>,
) -> Tried<E> {
    let side = &end.side;
    if side.corrupted() || side.peers_gone(Role::Receiver, false) {
        return Tried::Gone;
    }
    // After finding the ring full, a spinning producer waits until the
    // consumers have freed a stretch of slots (see `Ring::free_ahead`).
    if !probe && full::seen() && !end.ring.free_ahead(end.refill) {
        return Tried::Full;
    }
    let mut step = 0;
    loop {
        // While spinning, never read the consumers' index (a slot still
        // being read then looks full): polling it would pull that line
        // away from them on every look.
        let reserved = if probe {
            end.ring.try_reserve()
        } else {
            end.ring.try_reserve_spin()
        };
        match reserved {
            Ok(slot) => {
                full::clear();
                fault::point("send.claimed");
                // SAFETY: a reserved slot of this segment's layout, held
                // until `slot` is committed below (the view is not used
                // after that).
                let mut bytes = unsafe { Writing::new(slot.as_mut_ptr(), side) };
                // A reservation publishes its slot when dropped, unwinding
                // included: until the length is known, the slot says "skip",
                // so a `write` that panics leaves a hole, not a stale length.
                bytes.set_meta(FLAG_SKIP);
                let written = write(bytes.data());
                let word = match &written {
                    Ok(len) => {
                        debug_assert!(*len <= side.cap);
                        *len as u64
                    }
                    // A reserved slot cannot be given back: publish it as a
                    // hole that receivers skip.
                    Err(_) => FLAG_SKIP,
                };
                bytes.set_meta(word);
                fault::point("send.written");
                if slot.commit().is_err() {
                    // A survivor took this process for dead and skipped the
                    // slot: the message was not published. Or a peer cut
                    // the file inside this slot's page, which zeroes the
                    // page's tail (stamp included) without a fault: then
                    // the channel is corrupted, and `check_intact` marks it
                    // so (one `fstat`, on this rare path only).
                    let _ = side.seg().check_intact();
                    return Tried::Gone;
                }
                fault::point("send.committed");
                side.not_empty().notify_one();
                pass_on_room(end);
                return match written {
                    Ok(_) => Tried::Done,
                    Err(e) => Tried::Rejected(e),
                };
            }
            Err(PushError::Busy) if step < BUSY_RETRIES => backoff(&mut step),
            Err(PushError::Full | PushError::Busy) => {
                full::set();
                // A consumer that died reading the next slot holds it: the
                // probe reaps it (waking consumers, which adopt its claim).
                return if side.peers_gone(Role::Receiver, probe) {
                    Tried::Gone
                } else {
                    Tried::Full
                };
            }
            Err(PushError::Corrupted | PushError::TooLarge) => {
                side.poison();
                return Tried::Gone;
            }
        }
    }
}

/// After a send: if other senders are parked and there is still room,
/// wake one, so a wakeup meant for one free slot is not spent on us alone.
fn pass_on_room(end: &MpmcEnd) {
    let not_full = end.side.not_full();
    if not_full.waiters() > 0 && end.ring.len() < end.ring.capacity() {
        not_full.notify_one();
    }
}

/// After a receive: if other receivers are parked and the next message is
/// ready, wake one.
fn pass_on_message(end: &MpmcEnd) {
    let not_empty = end.side.not_empty();
    if not_empty.waiters() > 0 && end.ring.head_ready() {
        not_empty.notify_one();
    }
}

/// One attempt to send through an SPSC ring.
pub(super) fn spsc_try_write<E>(
    ring: &mut spsc::Producer,
    side: &Side,
    probe: bool,
    write: &mut impl FnMut(&mut [u8]) -> Result<usize, E>,
) -> Tried<E> {
    if side.corrupted() || side.peers_gone(Role::Receiver, false) {
        return Tried::Gone;
    }
    let mut rejected = None;
    let pushed = ring.try_push_if(|p| {
        fault::point("send.claimed");
        // SAFETY: the producer's next slot, of this segment's layout, held
        // until this closure returns.
        let mut bytes = unsafe { Writing::new(p, side) };
        match write(bytes.data()) {
            Ok(len) => {
                debug_assert!(len <= side.cap);
                bytes.set_meta(len as u64);
                fault::point("send.written");
                true
            }
            Err(e) => {
                rejected = Some(e);
                false
            }
        }
    });
    match pushed {
        Ok(true) => {
            fault::point("send.committed");
            side.not_empty().notify_one();
            Tried::Done
        }
        Ok(false) => Tried::Rejected(rejected.expect("a write that declined says why")),
        Err(PushError::Full | PushError::Busy) => {
            if side.peers_gone(Role::Receiver, probe) {
                Tried::Gone
            } else {
                Tried::Full
            }
        }
        Err(PushError::Corrupted | PushError::TooLarge) => {
            side.poison();
            Tried::Gone
        }
    }
}

/// Claims the oldest message of an MPMC ring, skipping holes, skipping the
/// slots of producers that died writing them, and taking over the claims
/// of consumers that died reading (their messages are delivered again).
/// Returns the claim, a view of its bytes and its length word (loaded
/// once). The view is valid while the claim is held.
fn mpmc_claim(
    end: &MpmcEnd,
    probe: bool,
) -> Result<(mpmc::Claim<'_>, Reading<'_>, Option<u64>), RecvMsgError> {
    let side = &end.side;
    if side.corrupted() {
        return Err(RecvMsgError::Disconnected);
    }
    let seg = side.seg();
    let is_dead = |who| seg.owner_is_dead(who);
    let mut step = 0;
    let mut senders_gone = false;
    loop {
        // A dead consumer's claim first, when a participant was reaped
        // since this end last looked (and at this end's first claim): its
        // message is older than any the ring holds, so delivered again
        // before them it keeps the ring's order. Looked for once more
        // before reporting the end.
        let orphan = if end.orphans_possible() {
            end.ring.adopt_dead_reader(is_dead).ok()
        } else {
            None
        };
        let claimed = match orphan {
            Some(slot) => Ok(slot),
            // While spinning, never read the producers' index (as above).
            None if probe => end.ring.try_claim(),
            None => end.ring.try_claim_spin(),
        };
        match claimed {
            Ok(slot) => {
                fault::point("recv.claimed");
                if slot.is_skipped() {
                    drop(slot);
                    side.not_full().notify_one();
                    continue;
                }
                // SAFETY: a claimed, published slot of this segment's
                // layout. The callers keep the claim for as long as they use
                // the view (see `lend`), and the skip below drops both.
                let bytes = unsafe { Reading::new(slot.as_ptr(), side) };
                let word = bytes.meta_word();
                if word.is_some_and(|w| w & FLAG_SKIP != 0) {
                    drop(slot);
                    side.not_full().notify_one();
                    continue;
                }
                pass_on_message(end);
                return Ok((slot, bytes, word));
            }
            Err(PopError::Empty) => {
                if senders_gone {
                    return Err(RecvMsgError::Disconnected);
                }
                if !side.peers_gone(Role::Sender, probe) {
                    if probe && side.reap_due() {
                        // Reap dead receivers too: their claims are ours to
                        // deliver again.
                        seg.live_count(Role::Receiver);
                    }
                    return Err(RecvMsgError::Empty);
                }
                // Every sender is gone: what they sent is visible now;
                // look once more (orphaned claims included) before
                // reporting the end.
                end.expect_orphans();
                senders_gone = true;
            }
            Err(PopError::Busy) => {
                // A producer claimed the head slot and has not published
                // it yet. Give it a moment (it may be mid-write).
                if step < BUSY_RETRIES {
                    backoff(&mut step);
                    continue;
                }
                if !probe {
                    return Err(RecvMsgError::Empty);
                }
                // Its recorded owner is dead: skip the slot (one CAS) and
                // go on. Otherwise it is alive and will publish: tell the
                // waiting loop not to park on it.
                if end.ring.skip_dead_writer(is_dead) {
                    side.not_full().notify_one();
                    step = 0;
                    continue;
                }
                busy::set();
                return Err(RecvMsgError::Empty);
            }
            Err(PopError::Corrupted) => {
                side.poison();
                return Err(RecvMsgError::Disconnected);
            }
        }
    }
}

/// A per-thread note that this thread's last MPMC send found the ring
/// full, so its next spinning look waits for a stretch of free slots.
mod full {
    use std::cell::Cell;

    thread_local! {
        static FULL: Cell<bool> = const { Cell::new(false) };
    }

    pub(super) fn set() {
        FULL.with(|f| f.set(true));
    }

    pub(super) fn clear() {
        FULL.with(|f| f.set(false));
    }

    pub(super) fn seen() -> bool {
        FULL.with(Cell::get)
    }
}

/// A per-thread note that the last receive attempt found the head slot
/// claimed by a live producer that has not published it yet: the message
/// is coming, so the waiting loop must not park (a parked receiver would
/// sleep until the next wakeup step while later messages are ready).
pub(super) mod busy {
    use std::cell::Cell;

    thread_local! {
        static BUSY: Cell<bool> = const { Cell::new(false) };
    }

    /// Notes a busy head.
    pub(in crate::ipc) fn set() {
        BUSY.with(|b| b.set(true));
    }

    /// Whether a busy head was noted since the last call (and clears it).
    pub(in crate::ipc) fn take() -> bool {
        BUSY.with(|b| b.replace(false))
    }
}

/// A note that a non-blocking attempt found its end's lock held by a
/// clone in another thread (inside a blocking call, or lending a
/// message): the attempt reported `Empty` or `Full` without looking. An
/// async future that reads it re-checks on a short timer (the clone
/// cannot wake it when it lets go).
pub(super) mod contended {
    use std::cell::Cell;

    thread_local! {
        static CONTENDED: Cell<bool> = const { Cell::new(false) };
    }

    /// Notes it.
    pub(in crate::ipc) fn set() {
        CONTENDED.with(|b| b.set(true));
    }

    /// Whether it was noted since the last call (and clears it).
    pub(in crate::ipc) fn take() -> bool {
        CONTENDED.with(|b| b.replace(false))
    }
}

/// Takes an end's lock: waits for it when the operation may wait, else
/// only tries (a clone in another thread may hold it for as long as its
/// blocking call lasts), noting a miss (see [`contended`]).
#[inline]
pub(super) fn lock_end<T>(lock: &Exclusive<T>, may_wait: bool) -> Option<Guard<'_, T>> {
    let guard = lock.lock_if(may_wait);
    if guard.is_none() {
        contended::set();
    }
    guard
}

/// Finds the oldest message of an SPSC ring, leaving it in place.
pub(super) fn spsc_front(
    ring: &mut spsc::Consumer,
    side: &Side,
    probe: bool,
) -> Result<*const u8, RecvMsgError> {
    spsc_next(ring, side, probe, spsc::Consumer::front)
}

/// After an SPSC producer found the ring full, the non-`probe` looks of
/// its wait (`Side::wait_send`'s first look and its spinning ones; not the
/// later ones, nor a `try_send`, nor a send's first try, which stays as
/// short as it was) wait until the consumer has freed a stretch of slots
/// ([`spsc::Producer::refilled`]): `Some(Full)` until then. A broken
/// segment or a receiver that left is reported first, as a try would.
#[inline]
pub(super) fn spsc_wait_refill<E>(
    ring: &mut spsc::Producer,
    side: &Side,
    probe: bool,
) -> Option<Tried<E>> {
    if probe {
        return None;
    }
    match ring.refilled() {
        // The try that follows makes its own checks.
        Ok(true) => None,
        Ok(false) if side.corrupted() || side.peers_gone(Role::Receiver, false) => {
            Some(Tried::Gone)
        }
        Ok(false) => Some(Tried::Full),
        Err(_) => {
            side.poison();
            Some(Tried::Gone)
        }
    }
}

/// One attempt to send a bare message (a Pod type) through an SPSC ring:
/// the per-message hot path, kept as short as the ring allows.
#[inline]
pub(super) fn spsc_try_put_bare<M: Message>(
    ring: &mut spsc::Producer,
    side: &Side,
    probe: bool,
    msg: &M::Input<'_>,
) -> Tried<EncodeError> {
    if side.corrupted() || side.peers_gone(Role::Receiver, false) {
        return Tried::Gone;
    }
    match ring.try_push_with(|p| {
        fault::point("send.claimed");
        // SAFETY: SPSC slots of a bare kind hold the bare value (no length
        // word), sized and aligned for it (checked at open); the producer
        // owns the slot until it is published. (The per-message hot path
        // writes the value straight, without a `Writing` view: measured
        // 7-9% faster.)
        unsafe { M::write_bare(p, msg) };
        fault::point("send.written");
    }) {
        Ok(()) => {
            fault::point("send.committed");
            side.not_empty().notify_one();
            Tried::Done
        }
        Err(PushError::Full | PushError::Busy) => {
            if side.peers_gone(Role::Receiver, probe) {
                Tried::Gone
            } else {
                Tried::Full
            }
        }
        Err(PushError::Corrupted | PushError::TooLarge) => {
            side.poison();
            Tried::Gone
        }
    }
}

/// Takes the oldest bare message (a Pod type) out of an SPSC ring into
/// `out`, which holds it when this returns `Ok` (and is left as it was
/// otherwise). The value goes from the slot to `out` in one copy, and only
/// a small `Result` comes back: a large value returned through each layer
/// was copied once per layer (five 4 KiB copies per receive).
///
/// # Safety
///
/// `out` is valid for a write of one `M::Output`.
#[inline]
pub(super) unsafe fn spsc_try_take_bare<M: Message>(
    ring: &mut spsc::Consumer,
    side: &Side,
    probe: bool,
    out: *mut M::Output,
) -> Result<(), RecvMsgError> {
    spsc_next(ring, side, probe, |r| {
        r.try_pop_with(|p| {
            // SAFETY: a published SPSC slot of a bare kind, sized and
            // aligned for it; every bit pattern is a valid Pod value; `out`
            // per this function's contract. (Read straight, without a
            // `Reading` view: the hot path.)
            unsafe { M::read_bare(p, out) };
            fault::point("recv.read");
        })
    })?;
    fault::point("recv.released");
    side.not_full().notify_one();
    Ok(())
}

/// Runs `take` on the ring until it finds a message, telling "empty" from
/// "every sender is gone" (and from a corrupted ring) the same way for
/// every kind of receive.
fn spsc_next<R>(
    ring: &mut spsc::Consumer,
    side: &Side,
    probe: bool,
    mut take: impl FnMut(&mut spsc::Consumer) -> Result<R, PopError>,
) -> Result<R, RecvMsgError> {
    if side.corrupted() {
        return Err(RecvMsgError::Disconnected);
    }
    let mut senders_gone = false;
    let mut refreshed = false;
    loop {
        match take(ring) {
            Ok(p) => return Ok(p),
            Err(PopError::Corrupted) => {
                side.poison();
                return Err(RecvMsgError::Disconnected);
            }
            Err(PopError::Empty | PopError::Busy) => {
                // The head slot's stamp is enough for a consumer that knows
                // where the next batch starts (`synced`: from its attach on,
                // unless the producer's index held garbage then): a probing
                // check (a `try_recv` on an empty ring, the last look before
                // parking) reads the producer's index only while it does
                // not, and one time in 64 after (`resync_due`: a scribbled
                // stamp cannot strand it). Reading it on every `try_recv`
                // pulled the line the producer writes last away from it
                // each time. Senders gone: read it before saying so.
                if (senders_gone || (probe && ring.resync_due())) && !refreshed {
                    refreshed = true;
                    match ring.refresh() {
                        Ok(0) => {}
                        Ok(_) => continue,
                        Err(_) => {
                            side.poison();
                            return Err(RecvMsgError::Disconnected);
                        }
                    }
                }
                if senders_gone {
                    return Err(RecvMsgError::Disconnected);
                }
                if !side.peers_gone(Role::Sender, probe) {
                    return Err(RecvMsgError::Empty);
                }
                senders_gone = true;
                refreshed = false;
            }
        }
    }
}

/// Lends out the oldest message of an MPMC ring (`owned`: see [`lend`]).
pub(super) fn mpmc_try_ref<M: Message>(
    end: &MpmcEnd,
    probe: bool,
    owned: bool,
) -> Result<MsgRef<'_, M>, RecvMsgError> {
    let (claim, bytes, word) = mpmc_claim(end, probe)?;
    lend(
        bytes,
        word,
        &end.side,
        Hold::Claim(Some(claim), &end.side),
        owned,
    )
}

/// Lends out the oldest message of an SPSC ring (`owned`: see [`lend`]).
pub(super) fn spsc_try_ref<'a, M: Message>(
    mut ring: Guard<'a, spsc::Consumer>,
    side: &'a Side,
    probe: bool,
    owned: bool,
) -> Result<MsgRef<'a, M>, RecvMsgError> {
    let p = spsc_front(&mut ring, side, probe)?;
    // SAFETY: the consumer's front slot, of this segment's layout, held
    // until `Hold::Front` (which keeps the consumer) drops; `lend` uses the
    // view no longer than that.
    let bytes = unsafe { Reading::new(p, side) };
    let word = bytes.meta_word();
    lend(bytes, word, side, Hold::Front(Some(ring), side), owned)
}

/// Turns a held slot into a guard over its message: in place, or over a
/// private copy (the slot freed at once) under `Trust::hostile`, and also
/// under `Trust::validate` when the message is about to be deserialized
/// into an owned value (`owned`): the copy is cheap next to the
/// deserializing, and a peer cannot change the bytes between check and
/// use. Pod messages are never copied: every bit pattern is valid. An
/// invalid message frees the slot and is reported; the channel goes on.
///
/// `slot` must be the view of the slot `hold` holds: `hold` keeps it this
/// side's until it is dropped, and the view is not used after that.
fn lend<'a, M: Message>(
    slot: Reading<'a>,
    word: Option<u64>,
    side: &'a Side,
    hold: Hold<'a>,
    owned: bool,
) -> Result<MsgRef<'a, M>, RecvMsgError> {
    let bytes = match slot.frame(word) {
        Ok(bytes) => bytes,
        Err(e) => return Err(RecvMsgError::Invalid(e)),
    };
    let private = side.trust.copies() || (owned && side.trust.validates());
    if private && M::KIND != kind::POD {
        let mut buf = side.take_copy();
        let copied = copy_into(&mut buf, bytes);
        drop(hold);
        return match M::view(copied, side.trust) {
            Ok(target) => {
                let target = NonNull::from(target);
                Ok(MsgRef::new(target, Hold::Copy(buf, side)))
            }
            Err(e) => {
                side.put_copy(buf);
                Err(RecvMsgError::Invalid(e))
            }
        };
    }
    match M::view(bytes, side.trust) {
        Ok(target) => Ok(MsgRef::new(NonNull::from(target), hold)),
        Err(e) => Err(RecvMsgError::Invalid(e)),
    }
}

/// Sends as many Pod messages of `msgs` as fit now through an SPSC ring,
/// publishing them with one store and one wakeup; returns how many.
pub(super) fn spsc_try_send_batch<T: bytemuck::Pod>(
    ring: &mut spsc::Producer,
    side: &Side,
    msgs: &[T],
) -> Result<usize, crate::TrySendError<usize>> {
    use crate::TrySendError;
    if side.corrupted() || side.peers_gone(Role::Receiver, false) {
        return Err(TrySendError::Disconnected(0));
    }
    // `i < msgs.len()`: at most `msgs.len()` slots are asked for.
    let wrote = ring.write_batch(msgs.len() as u64, |i, p| {
        // SAFETY: the producer's next slots, of this segment's layout,
        // holding a bare `T` (see `meta_len`), until the batch is published
        // after the last call. (Written straight, without a view: the
        // per-message cost of a batch is a few nanoseconds.)
        unsafe { p.cast::<T>().write(msgs[i as usize]) };
        fault::point("batch.written");
    });
    if matches!(wrote, Ok(n) if n > 0) {
        fault::point("batch.committed");
    }
    match wrote {
        Ok(0) if side.peers_gone(Role::Receiver, true) => Err(TrySendError::Disconnected(0)),
        Ok(n) => {
            if n > 0 {
                side.not_empty().notify_one();
            }
            Ok(n as usize)
        }
        Err(_) => {
            side.poison();
            Err(TrySendError::Disconnected(0))
        }
    }
}

/// Appends up to `max` ready Pod messages of an SPSC ring to `out`, freeing
/// their slots with one store and one wakeup; returns how many (0: none
/// ready, the caller then tries the single-message path, which tells
/// empty from disconnected).
pub(super) fn spsc_try_recv_batch<T: bytemuck::Pod>(
    ring: &mut spsc::Consumer,
    side: &Side,
    out: &mut Vec<T>,
    max: usize,
) -> Result<usize, crate::TryRecvError> {
    if side.corrupted() {
        return Err(crate::TryRecvError::Disconnected);
    }
    let before = out.len();
    let read = ring.read_batch(max as u64, |_, p| {
        // SAFETY: published slots of this segment's layout, made for a bare
        // `T`, held until the batch is released after the last call; every
        // bit pattern is a valid `T: Pod`. (Read straight, as above; plain
        // copies as in `Pod::read_bare`.)
        out.push(unsafe { p.cast::<T>().read() });
        fault::point("batch.read");
    });
    if read.is_err() {
        out.truncate(before);
        side.poison();
        return Err(crate::TryRecvError::Disconnected);
    }
    let n = out.len() - before;
    if n > 0 {
        side.not_full().notify_one();
    }
    Ok(n)
}
