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
//! have no eventcount: their futures re-check every [`FRAMES_STEP`]
//! instead (not yet event-driven).

use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use shmlane_semaphore::{AsyncWait, KeepAlive};

use super::handles::{Receiver, RxFlavor, Sender, TxFlavor, Wait};
use super::kinds::{Message, MsgRef, RecvMsgError, SendMsgError};
use super::port;
use super::side::Side;

/// How often a waiting future on a ring channel re-checks by itself (for
/// peers that died; death sends no wakeup): about every 500 ms (from 250
/// to 750), batched across futures. Each re-check probes the peers (a
/// lock test and an `fstat` of the segment): 100 idle receivers on 100
/// segments cost ~1% of a CPU at 100 ms, ~0.2% at 500 ms. A blocking
/// receiver re-checks every 10 ms instead: it notices a death sooner.
pub const ASYNC_STEP: Duration = Duration::from_millis(500);

/// How often a waiting future on a kernel fallback re-checks (it has no
/// wakeup to wait on yet).
pub const FRAMES_STEP: Duration = Duration::from_millis(1);

/// The wait state of an operation in progress on a ring end: its side's
/// eventcount (`not_full` for a sender), the handle's tally word, the
/// side's wait strategy, and `keep`, which holds the end (and so the
/// mapping the eventcount lives in).
fn ring_wait(side: &Side, sender: bool, keep: KeepAlive) -> (AsyncWait<'_>, KeepAlive) {
    let ec = if sender {
        side.not_full()
    } else {
        side.not_empty()
    };
    let wait = AsyncWait::new(ec, Some(side.att.waiting(sender)), Some(ASYNC_STEP))
        .with_strategy(&side.strategy);
    (wait, keep)
}

/// The wait state of an operation on a kernel fallback: re-checks only.
fn frames_wait() -> (AsyncWait<'static>, KeepAlive) {
    (AsyncWait::timer(None, Some(FRAMES_STEP)), Arc::new(()))
}

impl<M: Message> Receiver<M> {
    /// The wait state of a receive in progress: made on its first poll.
    fn wait_state(&self) -> (AsyncWait<'_>, KeepAlive) {
        match &self.flavor {
            RxFlavor::Mpmc(end) => ring_wait(&end.side, false, end.clone()),
            RxFlavor::Spsc(end) => ring_wait(&end.side, false, end.clone()),
            RxFlavor::Frames(_) => frames_wait(),
        }
    }

    /// One poll of a receive through `attempt`; `state` is the receive's
    /// wait state, kept across polls (`None` before the first).
    fn poll_recv_with<'a, R>(
        &'a self,
        cx: &mut Context<'_>,
        state: &mut Option<(AsyncWait<'a>, KeepAlive)>,
        mut attempt: impl FnMut() -> Result<R, RecvMsgError>,
    ) -> Poll<Result<R, RecvMsgError>> {
        let (wait, keep) = state.get_or_insert_with(|| self.wait_state());
        let mut cond = || match attempt() {
            Err(RecvMsgError::Empty | RecvMsgError::Timeout) => None,
            done => Some(done),
        };
        // SAFETY: `keep` holds the end, which holds the mapping the
        // eventcount lives in (or the eventcount is a static).
        let polled = unsafe { wait.poll(cx, || keep.clone(), &mut cond) };
        // A live producer is writing the head slot: its commit comes with
        // a wakeup, but it may be preempted mid-write; look again at the
        // executor's next turn rather than trust the wakeup alone (as a
        // parked thread spins and yields there). (The note is taken
        // whatever the outcome: left set, it would mislead this thread's
        // next wait.)
        if port::busy::take() && polled.is_pending() {
            cx.waker().wake_by_ref();
        }
        polled
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
    fn wait_state(&self) -> (AsyncWait<'_>, KeepAlive) {
        match &self.flavor {
            TxFlavor::Mpmc(end) => ring_wait(&end.side, true, end.clone()),
            TxFlavor::Spsc(end) => ring_wait(&end.side, true, end.clone()),
            TxFlavor::Frames(_) => frames_wait(),
        }
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
        let (mut wait, keep) = self.wait_state();
        let sent = poll_fn(|cx| {
            let mut cond = || match self.put(&msg, Wait::Never) {
                Err(SendMsgError::Full | SendMsgError::Timeout) => None,
                done => Some(done),
            };
            // SAFETY: as in `recv_with`.
            unsafe { wait.poll(cx, || keep.clone(), &mut cond) }
        })
        .await;
        drop(wait);
        sent.map_err(|e| M::send_error(msg, e))
    }
}

/// A cross-process receiver as a [`Stream`](futures_core::Stream); see
/// [`Receiver::stream`].
#[cfg(feature = "futures")]
#[must_use = "streams do nothing unless polled"]
pub struct RecvStream<'a, M: Message> {
    rx: &'a Receiver<M>,
    state: Option<(AsyncWait<'a>, KeepAlive)>,
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
impl<T: bytemuck::Pod + Send> Sender<T>
where
    T: Message<Input<'static> = T>,
{
    /// The sender as a [`Sink`](futures_sink::Sink) of Pod values (feature
    /// `futures`): `start_send` keeps the value, `poll_flush` (and
    /// `poll_ready`, before the next one) sends it, waiting while the
    /// channel is full. Dropping the sink with a value not yet flushed
    /// drops it unsent.
    pub fn sink(&self) -> SendSink<'_, T> {
        SendSink {
            tx: self,
            pending: None,
            state: None,
        }
    }
}

/// A cross-process sender of Pod values as a [`Sink`](futures_sink::Sink);
/// see [`Sender::sink`].
#[cfg(feature = "futures")]
#[must_use = "sinks do nothing unless polled"]
pub struct SendSink<'a, T> {
    tx: &'a Sender<T>,
    pending: Option<T>,
    state: Option<(AsyncWait<'a>, KeepAlive)>,
}

#[cfg(feature = "futures")]
impl<T> std::fmt::Debug for SendSink<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendSink")
            .field("pending", &self.pending.is_some())
            .finish_non_exhaustive()
    }
}

// The value is never pinned (it is copied into the ring).
#[cfg(feature = "futures")]
impl<T> Unpin for SendSink<'_, T> {}

#[cfg(feature = "futures")]
impl<T: bytemuck::Pod + Send> futures_sink::Sink<T> for SendSink<'_, T>
where
    T: Message<Input<'static> = T>,
{
    type Error = SendMsgError;

    fn poll_ready(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), SendMsgError>> {
        self.poll_flush(cx)
    }

    fn start_send(self: std::pin::Pin<&mut Self>, item: T) -> Result<(), SendMsgError> {
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
        let Some(item) = this.pending else {
            return Poll::Ready(Ok(()));
        };
        let tx = this.tx;
        let (wait, keep) = this.state.get_or_insert_with(|| tx.wait_state());
        let mut cond = || match tx.put(&item, Wait::Never) {
            Err(SendMsgError::Full | SendMsgError::Timeout) => None,
            done => Some(done),
        };
        // SAFETY: as in `Receiver::poll_recv_with`.
        let polled = unsafe { wait.poll(cx, || keep.clone(), &mut cond) };
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
