//! Async sends and receives on cross-process channels.
//!
//! A peer in another process cannot wake a task. It wakes the futex word
//! of the segment's eventcount, as it does for a parked thread; the task
//! that waits has announced itself there and handed the word to the
//! process's bridge thread (one per process, however many channels and
//! tasks wait: see [`shmlane_semaphore::AsyncWait`]), which wakes the task.
//! A waiting future re-checks about every [`ASYNC_STEP`] too, as a parked
//! thread does, to notice a peer that died (death sends no wakeup).
//!
//! The kernel fallbacks (`unix:`, `tcp:`, `fifo:`, `mq:`, `signal:`, pipes)
//! have no eventcount: a waiting future hands the descriptors it waits for
//! to the process's poller thread instead (see `poller`), which wakes it
//! when one becomes ready. `mq:` and a `signal:` sender without a pidfd
//! raise no event when their peer dies: those futures also re-check about
//! every [`ASYNC_STEP`]; a `signal:` sender facing a full signal queue
//! (which raises no event either) retries every millisecond.
//!
//! A clone of the same SPSC or kernel-transport end in another thread
//! that is inside a blocking call holds the end: an async attempt does not
//! wait for it (that would block the executor), it reports nothing ready
//! and re-checks every [`NUDGE_STEP`] until the clone lets go (the clone
//! cannot wake it).

use std::future::poll_fn;
use std::io;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use shmlane_semaphore::{AsyncWait, KeepAlive};

use super::handles::{Receiver, RxFlavor, Sender, TxFlavor, Wait};
use super::kinds::{Message, MsgRef, RecvMsgError, SendMsgError};
use super::poller::FdWait;
use super::port;
use super::side::Side;
use crate::transport::{Readiness, Recheck};

/// How often a waiting future on a ring channel re-checks by itself (for
/// peers that died; death sends no wakeup): about every 500 ms (from 250
/// to 750), batched across futures. Each re-check probes the peers (a
/// lock test and an `fstat` of the segment): 100 idle receivers on 100
/// segments cost ~1% of a CPU at 100 ms, ~0.2% at 500 ms. A blocking
/// receiver re-checks every 10 ms instead: it notices a death sooner.
pub const ASYNC_STEP: Duration = Duration::from_millis(500);

/// How often a future re-checks while something that sends no wakeup
/// holds it up: a clone of its end inside a blocking call, or a producer
/// stopped in the middle of writing the slot at the head (after
/// [`BUSY_REPOLLS`] immediate re-polls).
pub const NUDGE_STEP: Duration = Duration::from_millis(1);

/// Immediate re-polls (the task wakes itself) while a producer is writing
/// the head slot, before re-checking on the [`NUDGE_STEP`] timer instead:
/// a producer preempted mid-write may stay stopped for a whole time slice
/// or longer (a stopped process, for ever).
pub const BUSY_REPOLLS: u32 = 64;

/// Re-checks that no wakeup will announce (see [`NUDGE_STEP`]).
#[derive(Default)]
struct Nudge {
    busy_polls: u32,
    timer: Option<AsyncWait<'static>>,
}

impl Nudge {
    /// After a pending poll, on what the attempts noted: a busy head
    /// (`busy`), a clone holding the end (`contended`).
    fn after(&mut self, cx: &mut Context<'_>, busy: bool, contended: bool) {
        if !busy && !contended {
            self.busy_polls = 0;
            return;
        }
        if !contended && self.busy_polls < BUSY_REPOLLS {
            self.busy_polls += 1;
            cx.waker().wake_by_ref();
            return;
        }
        self.timer(cx, Instant::now() + NUDGE_STEP);
    }

    /// A wakeup at `at`, through the futex bridge's timers.
    fn timer(&mut self, cx: &mut Context<'_>, at: Instant) {
        let mut timer = AsyncWait::timer(Some(at), None);
        let _ = timer.poll_static(cx, || None::<()>);
        self.timer = Some(timer);
    }
}

/// How an operation in progress waits.
enum How<'a> {
    /// On a ring side's eventcount, through the futex bridge; `KeepAlive`
    /// holds the end (and so the mapping the eventcount lives in).
    Ring(AsyncWait<'a>, KeepAlive),
    /// On a kernel transport's descriptors, through the poller.
    Frames(FdWait),
}

/// The wait state of one operation in progress, kept across polls.
struct OpWait<'a> {
    how: How<'a>,
    nudge: Nudge,
}

impl<'a> OpWait<'a> {
    /// On a ring end: its side's eventcount (`not_full` for a sender), the
    /// handle's tally word, the side's wait strategy.
    fn ring(side: &'a Side, sender: bool, keep: KeepAlive) -> Self {
        let ec = if sender {
            side.not_full()
        } else {
            side.not_empty()
        };
        let wait = AsyncWait::new(ec, Some(side.att.waiting(sender)), Some(ASYNC_STEP))
            .with_strategy(&side.strategy);
        Self {
            how: How::Ring(wait, keep),
            nudge: Nudge::default(),
        }
    }

    fn frames() -> Self {
        Self {
            how: How::Frames(FdWait::default()),
            nudge: Nudge::default(),
        }
    }

    /// One poll: `cond` (one attempt) until it settles; else arranges the
    /// wakeup. `readiness` says what a kernel transport waits for (`None`
    /// while a clone holds the end).
    fn poll<R>(
        &mut self,
        cx: &mut Context<'_>,
        cond: &mut impl FnMut() -> Option<R>,
        readiness: impl FnOnce() -> Option<io::Result<Readiness>>,
    ) -> Poll<R> {
        self.nudge.timer = None;
        // Notes left by attempts outside this poll (a plain `try_recv` on
        // this thread) are not this operation's.
        let _ = (port::busy::take(), port::contended::take());
        let polled = match &mut self.how {
            // SAFETY: `keep` holds the end, which holds the mapping the
            // eventcount lives in.
            How::Ring(wait, keep) => unsafe { wait.poll(cx, || keep.clone(), &mut *cond) },
            How::Frames(fds) => {
                fds.disarm();
                match cond() {
                    Some(r) => Poll::Ready(r),
                    None => Poll::Pending,
                }
            }
        };
        // The notes are taken whatever the outcome: left set, they would
        // mislead this thread's next wait.
        let busy = port::busy::take();
        let mut contended = port::contended::take();
        if polled.is_ready() {
            return polled;
        }
        if let How::Frames(fds) = &mut self.how {
            if !contended {
                match readiness() {
                    Some(Ok(r)) if r.recheck == Recheck::Now => cx.waker().wake_by_ref(),
                    Some(Ok(r)) => {
                        let due = match r.recheck {
                            Recheck::Never => None,
                            Recheck::Death => Some(Instant::now() + ASYNC_STEP),
                            Recheck::After(d) => Some(Instant::now() + d),
                            Recheck::Now => unreachable!("handled above"),
                        };
                        if fds.arm(cx, r.fds, due).is_err() {
                            // No poller (no thread, no pipe): re-check on
                            // the bridge's timer instead.
                            self.nudge.timer(cx, Instant::now() + NUDGE_STEP);
                        }
                    }
                    // A descriptor could not be duplicated (the table is
                    // full): re-check on a timer.
                    Some(Err(_)) => self.nudge.timer(cx, Instant::now() + NUDGE_STEP),
                    None => contended = true,
                }
            }
        }
        self.nudge.after(cx, busy, contended);
        Poll::Pending
    }
}

impl<M: Message> Receiver<M> {
    /// The wait state of a receive in progress: made on its first poll.
    fn wait_state(&self) -> OpWait<'_> {
        match &self.flavor {
            RxFlavor::Mpmc(end) => OpWait::ring(&end.side, false, end.clone()),
            RxFlavor::Spsc(end) => OpWait::ring(&end.side, false, end.clone()),
            RxFlavor::Frames(_) => OpWait::frames(),
        }
    }

    /// What a receive on a kernel transport waits for.
    fn readiness(&self) -> Option<io::Result<Readiness>> {
        match &self.flavor {
            RxFlavor::Frames(frames) => frames.readiness(),
            _ => Some(Ok(Readiness::default())),
        }
    }

    /// One poll of a receive through `attempt`; `state` is the receive's
    /// wait state, kept across polls (`None` before the first).
    fn poll_recv_with<'a, R>(
        &'a self,
        cx: &mut Context<'_>,
        state: &mut Option<OpWait<'a>>,
        mut attempt: impl FnMut() -> Result<R, RecvMsgError>,
    ) -> Poll<Result<R, RecvMsgError>> {
        if state.is_none() {
            // The fast path: a message that is ready costs one attempt
            // (the wait state, and the keep-alive it clones, are made only
            // for a receive that must wait).
            match attempt() {
                Err(RecvMsgError::Empty | RecvMsgError::Timeout) => {}
                done => return Poll::Ready(done),
            }
        }
        let wait = state.get_or_insert_with(|| self.wait_state());
        let mut cond = || match attempt() {
            Err(RecvMsgError::Empty | RecvMsgError::Timeout) => None,
            done => Some(done),
        };
        wait.poll(cx, &mut cond, || self.readiness())
    }

    /// Waits, without blocking the thread, until `attempt` finds a message
    /// (or fails for good).
    async fn recv_with<R>(
        &self,
        mut attempt: impl FnMut() -> Result<R, RecvMsgError>,
    ) -> Result<R, RecvMsgError> {
        let mut state = None;
        poll_fn(|cx| self.poll_recv_with(cx, &mut state, &mut attempt)).await
    }

    /// The messages as a [`Stream`](futures_core::Stream) (feature
    /// `futures`, on by default): each item is one
    /// [`recv_async`](Self::recv_async); the stream ends when the channel
    /// is empty and every sender is gone. A message that does not check
    /// (`RecvMsgError::Invalid`) or an I/O error is an `Err` item; the
    /// stream goes on after it.
    #[cfg(feature = "futures")]
    pub fn stream(&self) -> RecvStream<'_, M> {
        RecvStream {
            rx: self,
            state: None,
            done: false,
        }
    }

    /// Receives without blocking the thread: the future waits while the
    /// channel is empty. Cancel-safe: dropping it never loses a message (a
    /// message is taken only in the poll that returns it). Works with any
    /// executor; see the [module notes](self) for how a task is woken.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv).
    ///
    /// # Examples
    ///
    /// ```
    /// # futures_lite::future::block_on(async {
    /// use shmlane::ipc::Builder;
    ///
    /// let name = format!("shm:doc-recv-async-{}", std::process::id());
    /// let chan = Builder::new(&name)?.capacity(8).create::<u64>()?;
    /// let (tx, rx) = (chan.sender()?, chan.receiver()?);
    /// // In another process: Builder::new(&name)?.open::<u64>()?.sender()?
    /// std::thread::spawn(move || tx.send(42).unwrap());
    /// assert_eq!(rx.recv_async().await, Ok(42));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn recv_async(&self) -> Result<M::Output, M::RecvError> {
        self.recv_with(|| self.take(Wait::Never))
            .await
            .map_err(M::recv_error)
    }

    /// As [`recv_ref`](Self::recv_ref), without blocking the thread: the
    /// message is lent where it lies (zero copy). Cancel-safe as
    /// [`recv_async`](Self::recv_async). On an SPSC ring the guard holds
    /// the receiver's turn: drop it before the next receive on this
    /// receiver, or a receive from the same thread panics.
    ///
    /// # Errors
    ///
    /// As [`recv_ref`](Self::recv_ref).
    pub async fn recv_ref_async(&self) -> Result<MsgRef<'_, M>, RecvMsgError> {
        self.recv_with(|| self.lend(Wait::Never, false)).await
    }
}

impl<M: Message> Sender<M> {
    /// The wait state of a send in progress.
    fn wait_state(&self) -> OpWait<'_> {
        match &self.flavor {
            TxFlavor::Mpmc(end) => OpWait::ring(&end.side, true, end.clone()),
            TxFlavor::Spsc(end) => OpWait::ring(&end.side, true, end.clone()),
            TxFlavor::Frames(_) => OpWait::frames(),
        }
    }

    /// What a send on a kernel transport waits for.
    fn readiness(&self) -> Option<io::Result<Readiness>> {
        match &self.flavor {
            TxFlavor::Frames(frames) => frames.readiness(),
            _ => Some(Ok(Readiness::default())),
        }
    }

    /// One poll of a send of `msg`; `state` as in
    /// [`Receiver::poll_recv_with`].
    fn poll_send<'a>(
        &'a self,
        cx: &mut Context<'_>,
        state: &mut Option<OpWait<'a>>,
        msg: &M::Input<'_>,
    ) -> Poll<Result<(), SendMsgError>> {
        if state.is_none() {
            // The fast path, as for a receive: room now costs one attempt.
            match self.put(msg, Wait::Never) {
                Err(SendMsgError::Full | SendMsgError::Timeout) => {}
                done => return Poll::Ready(done),
            }
        }
        let wait = state.get_or_insert_with(|| self.wait_state());
        let mut cond = || match self.put(msg, Wait::Never) {
            Err(SendMsgError::Full | SendMsgError::Timeout) => None,
            done => Some(done),
        };
        wait.poll(cx, &mut cond, || self.readiness())
    }

    /// Sends without blocking the thread: the future waits while the
    /// channel is full. Dropping it before it completes leaves the message
    /// unsent (never half-sent: a slot is written and published within one
    /// poll); `msg` is the caller's, by value for Pod types.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub async fn send_async(&self, msg: M::Input<'_>) -> Result<(), M::SendError> {
        let mut state = None;
        let sent = poll_fn(|cx| self.poll_send(cx, &mut state, &msg)).await;
        drop(state);
        sent.map_err(|e| M::send_error(msg, e))
    }
}

/// A cross-process receiver as a [`Stream`](futures_core::Stream); see
/// [`Receiver::stream`].
#[cfg(feature = "futures")]
#[must_use = "streams do nothing unless polled"]
pub struct RecvStream<'a, M: Message> {
    rx: &'a Receiver<M>,
    state: Option<OpWait<'a>>,
    done: bool,
}

#[cfg(feature = "futures")]
impl<M: Message> std::fmt::Debug for RecvStream<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvStream")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "futures")]
impl<M: Message> futures_core::Stream for RecvStream<'_, M> {
    type Item = Result<M::Output, RecvMsgError>;

    fn poll_next(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let rx = this.rx;
        match rx.poll_recv_with(cx, &mut this.state, || rx.take(Wait::Never)) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(got) => {
                // The next item starts a new wait.
                this.state = None;
                match got {
                    Err(RecvMsgError::Disconnected) => {
                        this.done = true;
                        Poll::Ready(None)
                    }
                    got => Poll::Ready(Some(got)),
                }
            }
        }
    }
}

#[cfg(feature = "futures")]
impl<M: Message> Sender<M> {
    /// The sender as a [`Sink`](futures_sink::Sink) of its messages
    /// (feature `futures`): Pod values by value, `&T` for rkyv messages,
    /// `&[u8]` for bytes. `start_send` keeps the message, `poll_flush` (and
    /// `poll_ready`, before the next one) sends it, waiting while the
    /// channel is full. Dropping the sink with a message not yet flushed
    /// drops it unsent.
    pub fn sink<'m>(&self) -> SendSink<'_, 'm, M> {
        SendSink {
            tx: self,
            pending: None,
            state: None,
        }
    }
}

/// A cross-process sender as a [`Sink`](futures_sink::Sink); see
/// [`Sender::sink`].
#[cfg(feature = "futures")]
#[must_use = "sinks do nothing unless polled"]
pub struct SendSink<'a, 'm, M: Message> {
    tx: &'a Sender<M>,
    pending: Option<M::Input<'m>>,
    state: Option<OpWait<'a>>,
}

#[cfg(feature = "futures")]
impl<M: Message> std::fmt::Debug for SendSink<'_, '_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendSink")
            .field("pending", &self.pending.is_some())
            .finish_non_exhaustive()
    }
}

// The message is never pinned (it is encoded into the ring).
#[cfg(feature = "futures")]
impl<M: Message> Unpin for SendSink<'_, '_, M> {}

#[cfg(feature = "futures")]
impl<'m, M: Message> futures_sink::Sink<M::Input<'m>> for SendSink<'_, 'm, M> {
    type Error = SendMsgError;

    fn poll_ready(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), SendMsgError>> {
        self.poll_flush(cx)
    }

    fn start_send(self: std::pin::Pin<&mut Self>, item: M::Input<'m>) -> Result<(), SendMsgError> {
        let this = self.get_mut();
        assert!(this.pending.is_none(), "start_send without poll_ready");
        this.pending = Some(item);
        Ok(())
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), SendMsgError>> {
        let this = self.get_mut();
        let Some(item) = &this.pending else {
            return Poll::Ready(Ok(()));
        };
        let polled = this.tx.poll_send(cx, &mut this.state, item);
        if polled.is_ready() {
            this.pending = None;
            this.state = None;
        }
        polled
    }

    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), SendMsgError>> {
        self.poll_flush(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use super::super::Builder;

    #[test]
    fn a_dropped_receive_leaves_no_announcement_and_loses_nothing() {
        let name = format!("shm:asynch-unit-{}", std::process::id());
        let chan = Builder::new(&name)
            .unwrap()
            .capacity(4)
            .create::<u64>()
            .unwrap();
        let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
        let mut cx = Context::from_waker(Waker::noop());
        {
            let mut fut = pin!(rx.recv_async());
            // It spins (self-wakes) first, then announces itself.
            for _ in 0..=shmlane_semaphore::WaitStrategy::default().spin() {
                assert!(fut.as_mut().poll(&mut cx).is_pending());
            }
            assert_eq!(chan.segment().header().not_empty.0.waiters(), 1);
        }
        assert_eq!(chan.segment().header().not_empty.0.waiters(), 0);
        tx.send(5).unwrap();
        let mut fut = pin!(rx.recv_async());
        assert_eq!(fut.as_mut().poll(&mut cx), Poll::Ready(Ok(5)));
    }
}
