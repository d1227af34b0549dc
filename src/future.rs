//! Async sends and receives on the in-process channels: futures that any
//! executor can poll (no runtime dependency).
//!
//! A future that must wait first spins like the channel's wait strategy
//! (it wakes itself and returns `Pending`, so the executor runs other
//! tasks in between), then lists its task's waker on the channel, next to
//! the eventcount its parked threads sleep on; the sender or receiver that
//! changes the channel wakes it directly, on its own thread. Blocking and
//! async users of one channel mix freely. (Timers, which have no notifier,
//! are woken at their deadline by the process's bridge thread: see
//! [`shmlane_semaphore::AsyncWait`].)
//!
//! Cancellation: dropping a [`Recv`] never loses a message (a message is
//! taken only in the poll that returns it); dropping a [`Send`] that had
//! not completed drops its message unsent (never half-sent); take it back
//! first with [`Send::into_message`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use shmlane_semaphore::{AsyncWait, WaitStrategy};

use crate::chan::{Receiver, ReceiverFlavor, Sender, SenderFlavor};
use crate::context::{FIRST_OPER, WAITING};
use crate::error::{RecvError, SendError, TryRecvError, TrySendError};
use crate::event::{Event, TaskWait};
use crate::sync::SAFETY_STEP;
use crate::zero::{Listing, Offer};

/// The future of [`Receiver::recv_async`].
#[must_use = "futures do nothing unless polled"]
pub struct Recv<'a, T> {
    rx: &'a Receiver<T>,
    /// The wait on a channel (its own task list).
    local: Option<LocalWait<'a>>,
    /// A rendezvous receive paired with a select's send arm, waiting for
    /// it to fill the packet.
    paired: Option<Arc<crate::zero::Packet<T>>>,
    /// The wait on a timer (through the bridge, for its deadline).
    wait: Option<AsyncWait<'static>>,
}

/// The future of [`Sender::send_async`].
#[must_use = "futures do nothing unless polled"]
pub struct Send<'a, T> {
    tx: &'a Sender<T>,
    msg: Option<T>,
    local: Option<LocalWait<'a>>,
    /// A rendezvous send's message, listed for a receiver to take.
    listing: Option<Listing<T>>,
    /// A rendezvous send's spins left before it lists.
    spins: Option<u32>,
}

// The message is never pinned (it moves into the channel by value), and
// the rest is references.
impl<T> Unpin for Send<'_, T> {}

impl<T> std::fmt::Debug for Recv<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recv").finish_non_exhaustive()
    }
}

impl<T> std::fmt::Debug for Send<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Send")
            .field("sent", &(self.msg.is_none() && self.listing.is_none()))
            .finish_non_exhaustive()
    }
}

impl<T> Send<'_, T> {
    /// Gives back the message if it has not been sent (`None` once the
    /// future completed, or once a receiver took a rendezvous message).
    pub fn into_message(mut self) -> Option<T> {
        if let (Some(l), SenderFlavor::Zero(c)) = (self.listing.take(), &self.tx.flavor) {
            self.local = None;
            return l.withdraw(&c.chan);
        }
        self.msg.take()
    }
}

/// One async wait on an in-process channel, kept in a future across
/// polls: an [`TaskWait`] on the channel's event (see `crate::event`),
/// plus a bridge timer armed only when the barrier pair did not hold at
/// registration (a membarrier that failed): the task then re-checks after
/// `SAFETY_STEP`, as a parked thread would.
struct LocalWait<'a> {
    ev: EvRef<'a>,
    wait: TaskWait,
    fallback: Option<AsyncWait<'static>>,
}

/// Where a [`LocalWait`] lists its task: a channel's event, or the
/// context of an async rendezvous send (owned by the future).
enum EvRef<'a> {
    Channel(&'a Event),
    /// An event owned by the future: a rendezvous send's context, or the
    /// packet a rendezvous receive waits for.
    Owned(Arc<dyn HasEvent>),
}

/// Something shared that holds an event.
trait HasEvent: std::marker::Send + Sync {
    fn event(&self) -> &Event;
}

impl HasEvent for crate::context::Context {
    fn event(&self) -> &Event {
        &self.wake
    }
}

impl<T: std::marker::Send> HasEvent for crate::zero::Packet<T> {
    fn event(&self) -> &Event {
        self.filled()
    }
}

impl std::ops::Deref for EvRef<'_> {
    type Target = Event;

    fn deref(&self) -> &Event {
        match self {
            EvRef::Channel(ev) => ev,
            EvRef::Owned(owner) => owner.event(),
        }
    }
}

impl<'a> LocalWait<'a> {
    fn new(ev: &'a Event, strategy: &WaitStrategy) -> Self {
        Self::on(EvRef::Channel(ev), strategy)
    }

    fn on(ev: EvRef<'a>, strategy: &WaitStrategy) -> Self {
        Self {
            ev,
            wait: TaskWait::new(strategy),
            fallback: None,
        }
    }

    fn poll<R>(&mut self, cx: &mut Context<'_>, cond: impl FnMut() -> Option<R>) -> Poll<R> {
        // A fallback timer (fired, or not yet: a poll for another reason)
        // means the listing is not trusted: look again.
        let recheck = self.fallback.take().is_some();
        let (polled, unordered) = self.wait.poll(&self.ev, cx, recheck, cond);
        if unordered {
            let step = SAFETY_STEP.unwrap_or(std::time::Duration::from_millis(100));
            let mut timer = AsyncWait::timer(Some(std::time::Instant::now() + step), None);
            let _ = timer.poll_static(cx, || None::<()>);
            self.fallback = Some(timer);
        }
        polled
    }
}

impl Drop for LocalWait<'_> {
    fn drop(&mut self) {
        self.wait.release(&self.ev);
    }
}

impl<T: std::marker::Send + 'static> Future for Recv<'_, T> {
    type Output = Result<T, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let rx = this.rx;
        let settle = |r: Result<T, TryRecvError>| match r {
            Ok(msg) => Some(Ok(msg)),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(Err(RecvError)),
        };
        match &rx.flavor {
            ReceiverFlavor::Array(c) => this
                .local
                .get_or_insert_with(|| LocalWait::new(&c.not_empty, &c.strategy))
                .poll(cx, || settle(c.try_recv(true))),
            ReceiverFlavor::List(c) => this
                .local
                .get_or_insert_with(|| LocalWait::new(&c.not_empty, &c.strategy))
                .poll(cx, || settle(c.try_recv())),
            // Waits for a sender to list (`changed`), then pairs with it
            // in the poll that returns the message (see `crate::zero`); a
            // select's send arm fills its packet only as it completes,
            // which the future then awaits (`paired`).
            ReceiverFlavor::Zero(c) => loop {
                if let Some(packet) = &this.paired {
                    let wait = this.local.get_or_insert_with(|| {
                        LocalWait::on(EvRef::Owned(Arc::clone(packet) as _), &c.strategy)
                    });
                    let msg = std::task::ready!(wait.poll(cx, || packet.try_take()));
                    this.local = None;
                    this.paired = None;
                    return Poll::Ready(Ok(msg));
                }
                let mut paired = None;
                let got = this
                    .local
                    .get_or_insert_with(|| LocalWait::new(&c.chan.changed, &c.strategy))
                    .poll(cx, || match c.chan.try_recv_async() {
                        Ok(Ok(msg)) => Some(Ok(msg)),
                        Ok(Err(packet)) => {
                            paired = Some(packet);
                            Some(Err(TryRecvError::Empty))
                        }
                        Err(TryRecvError::Empty) => None,
                        Err(TryRecvError::Disconnected) => Some(Err(TryRecvError::Disconnected)),
                    });
                match std::task::ready!(got) {
                    Ok(msg) => return Poll::Ready(Ok(msg)),
                    Err(TryRecvError::Disconnected) => return Poll::Ready(Err(RecvError)),
                    Err(TryRecvError::Empty) => {
                        // Paired with a select's send arm: wait for it.
                        this.local = None;
                        this.paired = paired;
                    }
                }
            },
            ReceiverFlavor::At(c, f) => {
                // Taken already: crossbeam's `after` channel then never
                // delivers again.
                let Some(due) = c.due() else {
                    return Poll::Pending;
                };
                this.wait
                    .get_or_insert_with(|| AsyncWait::timer(Some(due), None))
                    .poll_static(cx, || settle(c.try_recv().map(*f)))
            }
            ReceiverFlavor::Tick(c, f) => {
                // A new wait each time: the next tick moves.
                this.wait
                    .insert(AsyncWait::timer(Some(c.due()), None))
                    .poll_static(cx, || settle(c.try_recv().map(*f)))
            }
            ReceiverFlavor::Never => Poll::Pending,
        }
    }
}

impl<T: std::marker::Send + 'static> Future for Send<'_, T> {
    type Output = Result<(), SendError<T>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Self {
            tx,
            msg,
            local,
            listing,
            spins,
        } = self.get_mut();
        let tx: &Sender<T> = tx;
        match &tx.flavor {
            SenderFlavor::Array(c) => {
                assert!(
                    msg.is_some(),
                    "shmlane: a send future polled after it completed"
                );
                let attempt = || {
                    let m = msg.take()?;
                    match c.try_send(m, true) {
                        Ok(()) => Some(Ok(())),
                        Err(TrySendError::Full(m)) => {
                            *msg = Some(m);
                            None
                        }
                        Err(TrySendError::Disconnected(m)) => Some(Err(SendError(m))),
                    }
                };
                local
                    .get_or_insert_with(|| LocalWait::new(&c.not_full, &c.strategy))
                    .poll(cx, attempt)
            }
            SenderFlavor::List(c) => {
                let m = msg
                    .take()
                    .expect("shmlane: a send future polled after it completed");
                Poll::Ready(c.send(m).map_err(SendError))
            }
            SenderFlavor::Zero(c) => loop {
                if let Some(l) = listing {
                    // Listed: wait for a receiver to take the message (it
                    // selects the listing's context and wakes this task).
                    let wait = local.get_or_insert_with(|| {
                        LocalWait::on(EvRef::Owned(Arc::clone(&l.cx) as _), &c.strategy)
                    });
                    let sel = std::task::ready!(wait.poll(cx, || match l.cx.selected() {
                        WAITING => None,
                        sel => Some(sel),
                    }));
                    *local = None;
                    let l = listing.take().expect("listed");
                    if sel == FIRST_OPER {
                        return Poll::Ready(Ok(()));
                    }
                    // Disconnected: the message back; look again.
                    *msg = l.withdraw(&c.chan);
                }
                let m = msg
                    .take()
                    .expect("shmlane: a send future polled after it completed");
                // First like the wait strategy's spin: a receiver that
                // waits, or comes within microseconds, takes it at once.
                let m = match c.chan.try_send(m) {
                    Ok(()) => return Poll::Ready(Ok(())),
                    Err(TrySendError::Disconnected(m)) => return Poll::Ready(Err(SendError(m))),
                    Err(TrySendError::Full(m)) => m,
                };
                // (A strategy that never parks still lists after its
                // spin: an async receive never lists, so two that only
                // spun would never meet.)
                let left = spins.get_or_insert_with(|| c.strategy.spin());
                if *left > 0 {
                    *left -= 1;
                    *msg = Some(m);
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                match c.chan.offer(m) {
                    Offer::Taken => return Poll::Ready(Ok(())),
                    Offer::Disconnected(m) => return Poll::Ready(Err(SendError(m))),
                    Offer::Listed(l) => *listing = Some(l),
                }
            },
        }
    }
}

impl<T> Drop for Recv<'_, T> {
    fn drop(&mut self) {
        // Paired with a select's send arm and dropped before its message
        // came: the message must not be lost. If it came, it goes back to
        // the channel as a listed offer for the next receiver; if not, the
        // select gets it back when it fills the packet and sends it on.
        if let (Some(packet), ReceiverFlavor::Zero(c)) = (self.paired.take(), &self.rx.flavor) {
            self.local = None;
            if let Some(msg) = packet.abandon() {
                c.chan.relist(msg);
            }
        }
    }
}

impl<T> Drop for Send<'_, T> {
    fn drop(&mut self) {
        // A listed rendezvous message leaves the channel with the future
        // (unless a receiver took it already).
        if let (Some(l), SenderFlavor::Zero(c)) = (self.listing.take(), &self.tx.flavor) {
            self.local = None;
            drop(l.withdraw(&c.chan));
        }
    }
}

impl<T> Receiver<T> {
    /// Receives a message without blocking the thread: the future waits
    /// while the channel is empty, and resolves to
    /// [`Err(RecvError)`](RecvError) once it is empty and every sender is
    /// gone. Cancel-safe: dropping the future never loses a message.
    ///
    /// Works with any executor; a waiting future costs no thread of its
    /// own (see the [module notes](crate::future)).
    ///
    /// # Examples
    ///
    /// ```
    /// # futures_lite::future::block_on(async {
    /// let (tx, rx) = shmlane::bounded(4);
    /// std::thread::spawn(move || tx.send(7).unwrap());
    /// assert_eq!(rx.recv_async().await, Ok(7));
    /// assert!(rx.recv_async().await.is_err()); // the sender is gone
    /// # });
    /// ```
    ///
    /// On a rendezvous (`bounded(0)`) channel the future waits for a
    /// sender (a thread in `send`, a select's send arm, or a
    /// [`send_async`](Sender::send_async)) and takes its message in the
    /// poll that returns it. A thread's `try_send` does not see a waiting
    /// async receive (it pairs only with a receiver blocked in `recv` or
    /// a select).
    pub fn recv_async(&self) -> Recv<'_, T> {
        Recv {
            rx: self,
            local: None,
            paired: None,
            wait: None,
        }
    }
}

impl<T> Sender<T> {
    /// Sends a message without blocking the thread: the future waits while
    /// the channel is full, and resolves to [`Err(SendError(msg))`](SendError)
    /// if every receiver is gone. Dropping it before it completes drops the
    /// message unsent; [`Send::into_message`] takes it back instead.
    ///
    /// # Examples
    ///
    /// ```
    /// # futures_lite::future::block_on(async {
    /// let (tx, rx) = shmlane::bounded(1);
    /// tx.send_async(1).await.unwrap();
    /// let t = std::thread::spawn(move || (rx.recv(), rx.recv()));
    /// tx.send_async(2).await.unwrap(); // waits for room
    /// assert_eq!(t.join().unwrap(), (Ok(1), Ok(2)));
    /// # });
    /// ```
    ///
    /// On a rendezvous (`bounded(0)`) channel the future completes when a
    /// receiver takes the message; until then the message is listed for
    /// receivers, and dropping the future takes it back (it was sent if a
    /// receiver had taken it; [`Send::into_message`] says which).
    ///
    /// ```
    /// # futures_lite::future::block_on(async {
    /// let (tx, rx) = shmlane::bounded(0);
    /// let t = std::thread::spawn(move || rx.recv());
    /// tx.send_async("hand over").await.unwrap(); // done once taken
    /// assert_eq!(t.join().unwrap(), Ok("hand over"));
    /// # });
    /// ```
    pub fn send_async(&self, msg: T) -> Send<'_, T> {
        Send {
            tx: self,
            msg: Some(msg),
            local: None,
            listing: None,
            spins: None,
        }
    }
}

/// A receiver as a [`Stream`](futures_core::Stream) (feature `futures`, on
/// by default), borrowing it: each item is one
/// [`recv_async`](Receiver::recv_async); the stream ends when the channel
/// is empty and every sender is gone.
#[cfg(feature = "futures")]
#[must_use = "streams do nothing unless polled"]
pub struct RecvStream<'a, T> {
    rx: &'a Receiver<T>,
    next: Option<Recv<'a, T>>,
}

#[cfg(feature = "futures")]
impl<T> std::fmt::Debug for RecvStream<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvStream").finish_non_exhaustive()
    }
}

#[cfg(feature = "futures")]
impl<T: std::marker::Send + 'static> futures_core::Stream for RecvStream<'_, T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let this = self.get_mut();
        let rx = this.rx;
        let next = this.next.get_or_insert_with(|| rx.recv_async());
        match Pin::new(next).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(got) => {
                this.next = None;
                Poll::Ready(got.ok())
            }
        }
    }
}

/// A sender as a [`Sink`](futures_sink::Sink) (feature `futures`),
/// borrowing it: `start_send` keeps the message, `poll_flush` (and
/// `poll_ready`, before the next one) sends it, waiting while the channel
/// is full. Dropping the sink with a message not yet flushed drops it
/// unsent.
#[cfg(feature = "futures")]
#[must_use = "sinks do nothing unless polled"]
pub struct SendSink<'a, T> {
    tx: &'a Sender<T>,
    pending: Option<Send<'a, T>>,
}

#[cfg(feature = "futures")]
impl<T> std::fmt::Debug for SendSink<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendSink")
            .field("pending", &self.pending.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "futures")]
impl<T: std::marker::Send + 'static> futures_sink::Sink<T> for SendSink<'_, T> {
    type Error = SendError<T>;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SendError<T>>> {
        self.poll_flush(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: T) -> Result<(), SendError<T>> {
        let this = self.get_mut();
        assert!(this.pending.is_none(), "start_send without poll_ready");
        this.pending = Some(this.tx.send_async(item));
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SendError<T>>> {
        let this = self.get_mut();
        let Some(pending) = &mut this.pending else {
            return Poll::Ready(Ok(()));
        };
        let done = Pin::new(pending).poll(cx);
        if done.is_ready() {
            this.pending = None;
        }
        done
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SendError<T>>> {
        self.poll_flush(cx)
    }
}

#[cfg(feature = "futures")]
impl<T> Receiver<T> {
    /// The messages as a [`Stream`](futures_core::Stream); see
    /// [`RecvStream`].
    ///
    /// ```
    /// use futures_lite::StreamExt;
    /// # futures_lite::future::block_on(async {
    /// let (tx, rx) = shmlane::unbounded();
    /// std::thread::spawn(move || (1..=3).for_each(|i| tx.send(i).unwrap()));
    /// let all: Vec<i32> = rx.stream().collect().await;
    /// assert_eq!(all, [1, 2, 3]);
    /// # });
    /// ```
    pub fn stream(&self) -> RecvStream<'_, T> {
        RecvStream {
            rx: self,
            next: None,
        }
    }
}

#[cfg(feature = "futures")]
impl<T> Sender<T> {
    /// The sender as a [`Sink`](futures_sink::Sink); see [`SendSink`].
    pub fn sink(&self) -> SendSink<'_, T> {
        SendSink {
            tx: self,
            pending: None,
        }
    }
}
