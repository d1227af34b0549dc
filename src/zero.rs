//! The zero-capacity (rendezvous) channel: a send completes only when a
//! receiver takes the message.
//!
//! A thread that finds no counterpart registers an entry (its
//! [`Context`], which operation, and a packet for the message) and sleeps.
//! A counterpart takes the entry out under the channel's lock, selects the
//! context with a compare-and-swap (so a thread waiting in a select is
//! paired at most once), and exchanges the message through the packet.
//! Entries of a select's send arms have an empty packet until the select
//! completes: whoever paired with one waits for the packet to fill.
//!
//! Async operations (see `crate::future`): a send that finds no receiver
//! lists an entry with its message, under a context of its own whose
//! wakeup reaches its task ([`Zero::offer`]); a receive never lists one:
//! it waits on [`Zero::changed`] for a sender to list, then pairs in the
//! poll that returns the message, so dropping it never strands a message
//! in a packet (a thread's `try_send` does not see a waiting async
//! receive, as it does not see a select that is not yet waiting).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::context::{Context, ABORTED, DISCONNECTED, FIRST_OPER, WAITING};
use crate::error::{RecvTimeoutError, SendTimeoutError, TryRecvError, TrySendError};
use crate::event::Event;
use crate::sync::{backoff, AtomicBool, Ordering, SAFETY_STEP};

/// The message a pair exchanges.
pub struct Packet<T> {
    /// The message, and whether its taker gave up waiting for it (an
    /// async receive dropped while paired with a select's send arm).
    msg: Mutex<(Option<T>, bool)>,
    ready: AtomicBool,
    filled: Event,
}

impl<T> Packet<T> {
    fn new(msg: Option<T>) -> Arc<Self> {
        let ready = msg.is_some();
        Arc::new(Self {
            msg: Mutex::new((msg, false)),
            ready: AtomicBool::new(ready),
            filled: Event::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, (Option<T>, bool)> {
        self.msg.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fills the packet for the thread or task on the other end; the
    /// message back if that end gave up (see [`abandon`](Self::abandon)).
    pub(crate) fn put(&self, msg: T) -> Result<(), T> {
        {
            let mut slot = self.lock();
            if slot.1 {
                return Err(msg);
            }
            slot.0 = Some(msg);
            // Release: pairs with the Acquire in `take`.
            self.ready.store(true, Ordering::Release);
        }
        self.filled.notify_all_local();
        Ok(())
    }

    /// Takes the message, waiting for the other end to fill the packet.
    pub(crate) fn take(&self) -> T {
        // Acquire: pairs with `put`.
        let mut ready = || self.ready.load(Ordering::Acquire).then_some(());
        let mut step = 0;
        while ready().is_none() && step < 10 {
            backoff(&mut step);
        }
        // In steps: a lost wakeup costs one step, never a hang (see
        // `SAFETY_STEP`).
        let _ = self.filled.wait_in_steps(None, SAFETY_STEP, &mut ready);
        self.take_back().expect("a ready packet holds a message")
    }

    /// The message if the other end filled the packet already (never
    /// waits: an async receive).
    pub(crate) fn try_take(&self) -> Option<T> {
        // Acquire: pairs with `put`.
        if self.ready.load(Ordering::Acquire) {
            self.take_back()
        } else {
            None
        }
    }

    /// The taker gives up: the message if it came already; else the
    /// putter gets it back from [`put`](Self::put) (and sends it on).
    pub(crate) fn abandon(&self) -> Option<T> {
        let mut slot = self.lock();
        if slot.0.is_none() {
            slot.1 = true;
        }
        slot.0.take()
    }

    /// Where the filling is announced (a waiting task lists itself here).
    pub(crate) fn filled(&self) -> &Event {
        &self.filled
    }

    /// The message, if the packet still holds one.
    fn take_back(&self) -> Option<T> {
        self.lock().0.take()
    }
}

/// What [`Zero::offer`] did with the message.
pub(crate) enum Offer<T> {
    /// A waiting receiver has it.
    Taken,
    /// Every receiver is gone: the message back.
    Disconnected(T),
    /// Nobody waits: listed for a receiver to take.
    Listed(Listing<T>),
}

/// An async send's listed message: its context (selected by the receiver
/// that takes the message, whose wakeup goes to `cx.wake`) and its packet.
pub(crate) struct Listing<T> {
    pub(crate) cx: Arc<Context>,
    packet: Arc<Packet<T>>,
}

impl<T> Listing<T> {
    /// Takes the listing back: `None` if a receiver took the message
    /// (sent), else the message (the listing is gone from the channel
    /// either way).
    pub(crate) fn withdraw(self, chan: &Zero<T>) -> Option<T> {
        if !self.cx.try_select(ABORTED) && self.cx.selected() == FIRST_OPER {
            return None;
        }
        // Aborted by us, or disconnected (then already off the list).
        chan.lock().senders.remove(&self.cx, FIRST_OPER);
        Some(
            self.packet
                .take_back()
                .expect("an unpaired packet keeps its message"),
        )
    }
}

struct Entry<T> {
    cx: Arc<Context>,
    oper: usize,
    packet: Arc<Packet<T>>,
}

/// The waiting operations of one side.
struct Waiting<T>(Vec<Entry<T>>);

impl<T> Waiting<T> {
    /// Takes out the first entry of another thread that can be selected,
    /// and selects it.
    /// Starts at a random entry: a select with several arms on this
    /// channel has each of them chosen as often.
    fn pair(&mut self, me: usize) -> Option<Entry<T>> {
        let n = self.0.len();
        if n == 0 {
            return None;
        }
        let start = crate::context::random(n);
        let i = (0..n).map(|k| (start + k) % n).find(|&i| {
            let e = &self.0[i];
            e.cx.id() != me && e.cx.try_select(e.oper)
        })?;
        Some(self.0.remove(i))
    }

    /// Whether an entry of another thread is waiting to be selected.
    fn can_pair(&self, me: usize) -> bool {
        self.0
            .iter()
            .any(|e| e.cx.id() != me && e.cx.selected() == WAITING)
    }

    fn remove(&mut self, cx: &Context, oper: usize) {
        self.0
            .retain(|e| !(std::ptr::eq(&*e.cx, cx) && e.oper == oper));
    }

    fn disconnect(&mut self) {
        for e in self.0.drain(..) {
            if e.cx.try_select(DISCONNECTED) {
                e.cx.unpark();
            }
        }
    }
}

struct Inner<T> {
    senders: Waiting<T>,
    receivers: Waiting<T>,
    disconnected: bool,
}

/// A zero-capacity channel.
pub(crate) struct Zero<T> {
    inner: Mutex<Inner<T>>,
    /// Notified whenever an entry is registered or the channel is
    /// disconnected, for selects that wait for an operation to become
    /// ready, and for async receives waiting for a sender.
    pub(crate) changed: Event,
}

/// The id that pairs with every waiting thread (outside a select).
pub(crate) const ANYONE: usize = 0;

impl<T> Zero<T> {
    pub(crate) fn new() -> Self {
        Self {
            inner: Mutex::new(Inner {
                senders: Waiting(Vec::new()),
                receivers: Waiting(Vec::new()),
                disconnected: false,
            }),
            changed: Event::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        // No code that can panic runs under the lock with the lists half
        // changed; a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pairs a send (`send`) with a waiting receiver, or a receive with a
    /// waiting sender: the partner's packet (a receiver's, to fill when a
    /// select's send completes; a sender's, to take the message from).
    /// `Err` when the channel is disconnected; `Ok(None)` when nobody
    /// waits.
    pub(crate) fn start(&self, send: bool, me: usize) -> Result<Option<Arc<Packet<T>>>, ()> {
        let mut inner = self.lock();
        let partners = if send {
            &mut inner.receivers
        } else {
            &mut inner.senders
        };
        if let Some(e) = partners.pair(me) {
            drop(inner);
            e.cx.unpark();
            return Ok(Some(e.packet));
        }
        if inner.disconnected {
            Err(())
        } else {
            Ok(None)
        }
    }

    pub(crate) fn try_send(&self, msg: T) -> Result<(), TrySendError<T>> {
        match self.start(true, ANYONE) {
            Ok(Some(packet)) => {
                // A receiver's packet (a thread's, a select's receive
                // arm): its taker never gives up.
                let _ = packet.put(msg);
                Ok(())
            }
            Ok(None) => Err(TrySendError::Full(msg)),
            Err(()) => Err(TrySendError::Disconnected(msg)),
        }
    }

    /// An async receive's attempt: pairs with a waiting sender and takes
    /// its message, without waiting for a select's send arm to fill its
    /// packet: `Ok(Err(packet))` then (the select fills it when it
    /// completes, and announces it on [`Packet::filled`]).
    #[allow(clippy::type_complexity)]
    pub(crate) fn try_recv_async(&self) -> Result<Result<T, Arc<Packet<T>>>, TryRecvError> {
        match self.start(false, ANYONE) {
            Ok(Some(packet)) => Ok(packet.try_take().ok_or(packet)),
            Ok(None) => Err(TryRecvError::Empty),
            Err(()) => Err(TryRecvError::Disconnected),
        }
    }

    pub(crate) fn try_recv(&self) -> Result<T, TryRecvError> {
        match self.start(false, ANYONE) {
            Ok(Some(packet)) => Ok(packet.take()),
            Ok(None) => Err(TryRecvError::Empty),
            Err(()) => Err(TryRecvError::Disconnected),
        }
    }

    pub(crate) fn send(
        &self,
        msg: T,
        deadline: Option<Instant>,
    ) -> Result<(), SendTimeoutError<T>> {
        let mut msg = msg;
        loop {
            let mut inner = self.lock();
            if let Some(e) = inner.receivers.pair(ANYONE) {
                drop(inner);
                // As in `try_send`.
                let _ = e.packet.put(msg);
                e.cx.unpark();
                return Ok(());
            }
            if inner.disconnected {
                return Err(SendTimeoutError::Disconnected(msg));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(SendTimeoutError::Timeout(msg));
            }
            let sel = Context::with(|cx| {
                let packet = Packet::new(Some(msg));
                inner.senders.0.push(Entry {
                    cx: Arc::clone(cx),
                    oper: FIRST_OPER,
                    packet: Arc::clone(&packet),
                });
                drop(inner);
                self.changed.notify_all_local();
                let sel = cx.wait_until(deadline);
                if sel == FIRST_OPER {
                    // A receiver has the packet.
                    return Ok(());
                }
                self.lock().senders.remove(cx, FIRST_OPER);
                Err((
                    sel,
                    packet
                        .take_back()
                        .expect("an unpaired packet keeps its message"),
                ))
            });
            match sel {
                Ok(()) => return Ok(()),
                Err((ABORTED, m)) => return Err(SendTimeoutError::Timeout(m)),
                // DISCONNECTED: look again.
                Err((_, m)) => msg = m,
            }
        }
    }

    pub(crate) fn recv(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        loop {
            let mut inner = self.lock();
            if let Some(e) = inner.senders.pair(ANYONE) {
                drop(inner);
                e.cx.unpark();
                return Ok(e.packet.take());
            }
            if inner.disconnected {
                return Err(RecvTimeoutError::Disconnected);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(RecvTimeoutError::Timeout);
            }
            let got = Context::with(|cx| {
                let packet = Packet::new(None);
                inner.receivers.0.push(Entry {
                    cx: Arc::clone(cx),
                    oper: FIRST_OPER,
                    packet: Arc::clone(&packet),
                });
                drop(inner);
                self.changed.notify_all_local();
                let sel = cx.wait_until(deadline);
                if sel == FIRST_OPER {
                    return Ok(packet.take());
                }
                self.lock().receivers.remove(cx, FIRST_OPER);
                Err(sel)
            });
            match got {
                Ok(msg) => return Ok(msg),
                Err(ABORTED) => return Err(RecvTimeoutError::Timeout),
                Err(_) => {}
            }
        }
    }

    /// An async send's offer: pairs with a waiting receiver, or lists the
    /// message under a context of its own (see [`Listing`]), in one step
    /// under the lock (a receiver that lists meanwhile is never missed).
    pub(crate) fn offer(&self, msg: T) -> Offer<T> {
        let mut inner = self.lock();
        if let Some(e) = inner.receivers.pair(ANYONE) {
            drop(inner);
            // As in `try_send`.
            let _ = e.packet.put(msg);
            e.cx.unpark();
            return Offer::Taken;
        }
        if inner.disconnected {
            return Offer::Disconnected(msg);
        }
        let cx = Context::new();
        let packet = Packet::new(Some(msg));
        inner.senders.0.push(Entry {
            cx: Arc::clone(&cx),
            oper: FIRST_OPER,
            packet: Arc::clone(&packet),
        });
        drop(inner);
        self.changed.notify_all_local();
        Offer::Listed(Listing { cx, packet })
    }

    /// Lists a message that a dropped async receive had taken (see
    /// `future::Recv`'s drop): for the next receiver, even if every sender
    /// has gone since (it was sent; a receive pairs with a listed sender
    /// before it looks at the disconnect). Nobody withdraws it.
    pub(crate) fn relist(&self, msg: T) {
        let mut inner = self.lock();
        inner.senders.0.push(Entry {
            cx: Context::new(),
            oper: FIRST_OPER,
            packet: Packet::new(Some(msg)),
        });
        drop(inner);
        self.changed.notify_all_local();
    }

    /// Registers a select's arm: a send arm's packet is filled when the
    /// select completes, a receive arm's by the sender that pairs with it.
    /// Returns the packet.
    pub(crate) fn register(&self, send: bool, oper: usize, cx: &Arc<Context>) -> Arc<Packet<T>> {
        let packet = Packet::new(None);
        let entry = Entry {
            cx: Arc::clone(cx),
            oper,
            packet: Arc::clone(&packet),
        };
        let mut inner = self.lock();
        if send {
            inner.senders.0.push(entry);
        } else {
            inner.receivers.0.push(entry);
        }
        drop(inner);
        self.changed.notify_all_local();
        packet
    }

    /// Takes a select's arm out again.
    pub(crate) fn unregister(&self, send: bool, oper: usize, cx: &Context) {
        let mut inner = self.lock();
        if send {
            inner.senders.remove(cx, oper);
        } else {
            inner.receivers.remove(cx, oper);
        }
    }

    /// Whether a send (`send`) or receive would pair now, or fail at once.
    pub(crate) fn is_ready(&self, send: bool, me: usize) -> bool {
        let inner = self.lock();
        inner.disconnected
            || if send {
                inner.receivers.can_pair(me)
            } else {
                inner.senders.can_pair(me)
            }
    }

    pub(crate) fn disconnect(&self) {
        let mut inner = self.lock();
        if !inner.disconnected {
            inner.disconnected = true;
            inner.senders.disconnect();
            inner.receivers.disconnect();
        }
        drop(inner);
        self.changed.notify_all_local();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a new thread and returns it once that thread sleeps in
    /// the kernel (state `S` in /proc), having announced itself on `ec`.
    fn asleep<R: Send + 'static>(
        ec: impl Fn() -> u32,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> std::thread::JoinHandle<R> {
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            tid_tx.send(unsafe { libc::gettid() }).unwrap();
            f()
        });
        let tid = tid_rx.recv().unwrap();
        let stat = format!("/proc/self/task/{tid}/stat");
        loop {
            let text = std::fs::read_to_string(&stat).unwrap();
            // The state follows the parenthesised name.
            let state = text.rsplit(") ").next().unwrap().chars().next();
            if ec() > 0 && state == Some('S') {
                return t;
            }
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_packet_filled_without_a_wakeup_is_still_taken() {
        // The wakeup is lost (as when the eventcount's global membarrier
        // skipped the waker's CPU): the taker finds the message on its
        // next step.
        let packet = Packet::<u32>::new(None);
        let taker = {
            let (p, q) = (Arc::clone(&packet), Arc::clone(&packet));
            asleep(move || q.filled.waiters(), move || p.take())
        };
        packet.msg.lock().unwrap().0 = Some(7);
        packet.ready.store(true, Ordering::Release);
        assert_eq!(taker.join().unwrap(), 7);
    }

    #[test]
    fn a_context_selected_without_a_wakeup_still_sees_it() {
        let cx = Context::with(Arc::clone);
        let owner = {
            let (c, d) = (Arc::clone(&cx), Arc::clone(&cx));
            asleep(move || d.wake.waiters(), move || c.wait_until(None))
        };
        // Selected, never unparked.
        assert!(cx.try_select(FIRST_OPER));
        assert_eq!(owner.join().unwrap(), FIRST_OPER);
    }
}
