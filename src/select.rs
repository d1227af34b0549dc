//! Waiting on several channel operations at once: [`Select`] and
//! [`select!`](crate::select!), with crossbeam-channel's API.
//!
//! A select first tries every operation in a random order (or in order,
//! for [`Select::new_biased`]). If none is ready it parks: it registers its
//! thread's context with every rendezvous channel (so a counterpart can
//! pair with it), then sleeps on all the operations' eventcounts at once
//! with one `futex_waitv` call (Linux 5.16+; elsewhere, steps of 1 ms),
//! until a counterpart selects it, an operation looks ready, or a timer or
//! the deadline is due. Then it withdraws and tries again. A select that
//! slept may have taken a wakeup meant for a thread blocked in `recv` on
//! the same channel: before it returns it passes the wakeup on for every
//! operation that is still ready.
//!
//! Cross-process receivers and senders ([`crate::ipc`]) take part too: a
//! shared ring's futex joins the same `futex_waitv` call, and a parked
//! select also looks again every 10 ms, to notice peers that died (kernel
//! transports have no futex and are only looked at then).

use std::fmt;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmlane_ring::{mpmc, PopError, PushError};
use shmlane_semaphore::EventCount;
use smallvec::SmallVec;

use crate::chan::{Receiver, ReceiverFlavor, Sender, SenderFlavor};
use crate::context::{random, Context, ABORTED, FIRST_OPER, WAITING};
use crate::error::{RecvError, SendError};
use crate::list::ListToken;
use crate::sync::{backoff, SAFETY_STEP};
use crate::zero::{Packet, ANYONE};

/// Rounds of tries, spinning 1, 2, 4... 32 pause hints and then yielding
/// between them, before a select parks.
const SPIN_ROUNDS: u32 = 10;
/// Up to how many operations a select shuffles byte indices (see `run`).
const ORDER: usize = 32;

/// An `Arc<Packet<T>>` with `T` erased.
pub struct ErasedPacket {
    ptr: *const (),
    drop: unsafe fn(*const ()),
}

impl ErasedPacket {
    fn new<T>(packet: Arc<Packet<T>>) -> Self {
        /// # Safety
        ///
        /// `p` came from `Arc::<Packet<T>>::into_raw`, once.
        unsafe fn drop_packet<T>(p: *const ()) {
            // SAFETY: as the function's contract says.
            drop(unsafe { Arc::from_raw(p.cast::<Packet<T>>()) });
        }
        Self {
            ptr: Arc::into_raw(packet).cast(),
            drop: drop_packet::<T>,
        }
    }

    /// # Safety
    ///
    /// `T` is the type the packet was made with.
    unsafe fn into_packet<T>(self) -> Arc<Packet<T>> {
        let p = self.ptr;
        std::mem::forget(self);
        // SAFETY: made by `new::<T>`, as the caller promises.
        unsafe { Arc::from_raw(p.cast::<Packet<T>>()) }
    }
}

impl Drop for ErasedPacket {
    fn drop(&mut self) {
        // SAFETY: made by `new`, dropped once.
        unsafe { (self.drop)(self.ptr) };
    }
}

/// A `Box<T>` with `T` erased: a cross-process receive's result.
pub struct ErasedBox {
    ptr: *mut (),
    drop: unsafe fn(*mut ()),
}

impl ErasedBox {
    pub(crate) fn new<T>(value: T) -> Self {
        /// # Safety
        ///
        /// `p` came from `Box::<T>::into_raw`, once.
        unsafe fn drop_box<T>(p: *mut ()) {
            // SAFETY: as the function's contract says.
            drop(unsafe { Box::from_raw(p.cast::<T>()) });
        }
        Self {
            ptr: Box::into_raw(Box::new(value)).cast(),
            drop: drop_box::<T>,
        }
    }

    /// # Safety
    ///
    /// `T` is the type the box was made with.
    pub(crate) unsafe fn into_inner<T>(self) -> T {
        let p = self.ptr;
        std::mem::forget(self);
        // SAFETY: made by `new::<T>`, as the caller promises.
        *unsafe { Box::from_raw(p.cast::<T>()) }
    }
}

impl Drop for ErasedBox {
    fn drop(&mut self) {
        // SAFETY: made by `new`, dropped once.
        unsafe { (self.drop)(self.ptr) };
    }
}

/// What a selected operation took, for its completion: one of these, so
/// that the token stays small (it is moved into the `SelectedOperation`).
#[derive(Default)]
pub(crate) enum Taken<'a> {
    #[default]
    Nothing,
    /// A reserved ring slot (bounded send).
    ArraySend(mpmc::Reservation<'a>),
    /// A claimed ring slot (bounded receive).
    ArrayRecv(mpmc::Claim<'a>),
    /// A taken list slot, block and offset, `T` erased (unbounded receive).
    List(*mut u8, usize),
    /// A send to an unbounded channel: always possible.
    ListSend,
    /// The packet of the paired rendezvous partner.
    Zero(ErasedPacket),
    /// A timer's message.
    Instant(Instant),
    /// A cross-process receive's result.
    Ipc(ErasedBox),
    /// A cross-process send that was ready (room, or receivers gone).
    IpcSend,
    /// The operation fails: its channel is disconnected.
    Disconnected,
}

/// What a selected operation took, for its completion.
#[derive(Default)]
pub struct Token<'a> {
    pub(crate) taken: Taken<'a>,
}

impl<'a> Token<'a> {
    #[inline]
    pub(crate) fn set(&mut self, taken: Taken<'a>) {
        // A token is set once, when it holds nothing: no drop of the old
        // value to run (the select's hot path).
        debug_assert!(matches!(self.taken, Taken::Nothing));
        std::mem::forget(std::mem::replace(&mut self.taken, taken));
    }

    #[inline]
    pub(crate) fn take(&mut self) -> Taken<'a> {
        std::mem::take(&mut self.taken)
    }
}

/// One operation of a select, type-erased.
pub trait Handle {
    /// Starts the operation if it can complete now; fills `token`.
    fn try_select<'a>(&'a self, token: &mut Token<'a>) -> bool;
    /// Whether the operation would complete (or fail) now, without
    /// starting it; `me` is the selecting thread's context.
    fn is_ready(&self, me: usize) -> bool;
    /// Registers operation `oper` of a parked select (rendezvous channels
    /// only); the packet it will exchange through.
    fn register(&self, _oper: usize, _cx: &Arc<Context>) -> Option<ErasedPacket> {
        None
    }
    /// Takes operation `oper` out again.
    fn unregister(&self, _oper: usize, _cx: &Context) {}
    /// Whether a partner pairs with this operation while the select is
    /// registered (rendezvous channels): such a select registers at once
    /// instead of spinning first, or its partner could never choose it.
    fn pairs(&self) -> bool {
        false
    }
    /// The eventcount a parked select sleeps on for this operation.
    fn eventcount(&self) -> Option<&EventCount>;
    /// The waiter's tally for [`eventcount`](Self::eventcount), where it
    /// lies in shared memory (see `EventCount::wait_tallied`).
    fn tally(&self) -> Option<&AtomicU32> {
        None
    }
    /// When the operation becomes ready by itself (timers).
    fn due(&self) -> Option<Instant> {
        None
    }
    /// The channel, to check that a completion names the selected one.
    fn channel(&self) -> *const ();
    /// How often a parked select must look again by itself (cross-process
    /// channels: to notice a peer that died, as their blocking receives do).
    fn step(&self) -> Option<Duration> {
        None
    }
}

impl<T> Handle for Sender<T> {
    fn try_select<'a>(&'a self, token: &mut Token<'a>) -> bool {
        match &self.flavor {
            SenderFlavor::Array(c) => {
                if c.is_disconnected() {
                    token.set(Taken::Disconnected);
                    return true;
                }
                let mut step = 0;
                loop {
                    match c.ring.try_reserve() {
                        Ok(slot) => {
                            token.set(Taken::ArraySend(slot));
                            return true;
                        }
                        Err(PushError::Full) => return false,
                        Err(PushError::Busy) => backoff(&mut step),
                        Err(e) => unreachable!("in-process ring: {e}"),
                    }
                }
            }
            SenderFlavor::List(c) => {
                if c.chan.is_disconnected() {
                    token.set(Taken::Disconnected);
                } else {
                    token.set(Taken::ListSend);
                }
                true
            }
            SenderFlavor::Zero(c) => match c.chan.start(true, ANYONE) {
                Ok(Some(packet)) => {
                    token.set(Taken::Zero(ErasedPacket::new(packet)));
                    true
                }
                Ok(None) => false,
                Err(()) => {
                    token.set(Taken::Disconnected);
                    true
                }
            },
        }
    }

    fn is_ready(&self, me: usize) -> bool {
        match &self.flavor {
            SenderFlavor::Array(c) => c.is_disconnected() || c.ring.len() < c.ring.capacity(),
            SenderFlavor::List(_) => true,
            SenderFlavor::Zero(c) => c.chan.is_ready(true, me),
        }
    }

    fn register(&self, oper: usize, cx: &Arc<Context>) -> Option<ErasedPacket> {
        match &self.flavor {
            SenderFlavor::Zero(c) => Some(ErasedPacket::new(c.chan.register(true, oper, cx))),
            _ => None,
        }
    }

    fn unregister(&self, oper: usize, cx: &Context) {
        if let SenderFlavor::Zero(c) = &self.flavor {
            c.chan.unregister(true, oper, cx);
        }
    }

    fn pairs(&self) -> bool {
        matches!(self.flavor, SenderFlavor::Zero(_))
    }

    fn eventcount(&self) -> Option<&EventCount> {
        match &self.flavor {
            SenderFlavor::Array(c) => Some(&c.not_full),
            SenderFlavor::List(_) => None,
            SenderFlavor::Zero(c) => Some(&c.chan.changed),
        }
    }

    fn channel(&self) -> *const () {
        match &self.flavor {
            SenderFlavor::Array(c) => Arc::as_ptr(c).cast(),
            SenderFlavor::List(c) => Arc::as_ptr(c).cast(),
            SenderFlavor::Zero(c) => Arc::as_ptr(c).cast(),
        }
    }
}

impl<T> Handle for Receiver<T> {
    fn try_select<'a>(&'a self, token: &mut Token<'a>) -> bool {
        match &self.flavor {
            ReceiverFlavor::Array(c) => {
                let mut step = 0;
                let mut last_look = false;
                loop {
                    match c.ring.try_claim() {
                        Ok(slot) if slot.is_skipped() => {
                            drop(slot);
                            c.not_full.notify_one_local();
                        }
                        Ok(slot) => {
                            token.set(Taken::ArrayRecv(slot));
                            return true;
                        }
                        Err(PopError::Empty) if last_look => {
                            token.set(Taken::Disconnected);
                            return true;
                        }
                        // Every sender is gone: what they pushed is
                        // visible now, so one more look decides.
                        Err(PopError::Empty) if c.is_disconnected() => last_look = true,
                        Err(PopError::Empty) => return false,
                        Err(PopError::Busy) => backoff(&mut step),
                        Err(e) => unreachable!("in-process ring: {e}"),
                    }
                }
            }
            ReceiverFlavor::List(c) => {
                let mut slot = ListToken::<T>::default();
                match c.chan.start_pop(&mut slot) {
                    Ok(()) => {
                        let (block, offset) = slot.into_raw();
                        token.set(Taken::List(block, offset));
                        true
                    }
                    Err(crate::list::ListEmpty::Empty) => false,
                    Err(crate::list::ListEmpty::Disconnected) => {
                        token.set(Taken::Disconnected);
                        true
                    }
                }
            }
            ReceiverFlavor::Zero(c) => match c.chan.start(false, ANYONE) {
                Ok(Some(packet)) => {
                    token.set(Taken::Zero(ErasedPacket::new(packet)));
                    true
                }
                Ok(None) => false,
                Err(()) => {
                    token.set(Taken::Disconnected);
                    true
                }
            },
            ReceiverFlavor::At(c, _) => match c.try_recv() {
                Ok(t) => {
                    token.set(Taken::Instant(t));
                    true
                }
                Err(_) => false,
            },
            ReceiverFlavor::Tick(c, _) => match c.try_recv() {
                Ok(t) => {
                    token.set(Taken::Instant(t));
                    true
                }
                Err(_) => false,
            },
            ReceiverFlavor::Never => false,
        }
    }

    fn is_ready(&self, me: usize) -> bool {
        match &self.flavor {
            ReceiverFlavor::Array(c) => !c.ring.is_empty() || c.is_disconnected(),
            ReceiverFlavor::List(c) => !c.chan.is_empty() || c.chan.is_disconnected(),
            ReceiverFlavor::Zero(c) => c.chan.is_ready(false, me),
            ReceiverFlavor::At(c, _) => c.is_ready(),
            ReceiverFlavor::Tick(c, _) => c.is_ready(),
            ReceiverFlavor::Never => false,
        }
    }

    fn register(&self, oper: usize, cx: &Arc<Context>) -> Option<ErasedPacket> {
        match &self.flavor {
            ReceiverFlavor::Zero(c) => Some(ErasedPacket::new(c.chan.register(false, oper, cx))),
            _ => None,
        }
    }

    fn unregister(&self, oper: usize, cx: &Context) {
        if let ReceiverFlavor::Zero(c) = &self.flavor {
            c.chan.unregister(false, oper, cx);
        }
    }

    fn pairs(&self) -> bool {
        matches!(self.flavor, ReceiverFlavor::Zero(_))
    }

    fn eventcount(&self) -> Option<&EventCount> {
        match &self.flavor {
            ReceiverFlavor::Array(c) => Some(&c.not_empty),
            ReceiverFlavor::List(c) => Some(&c.not_empty),
            ReceiverFlavor::Zero(c) => Some(&c.chan.changed),
            ReceiverFlavor::At(..) | ReceiverFlavor::Tick(..) | ReceiverFlavor::Never => None,
        }
    }

    fn due(&self) -> Option<Instant> {
        match &self.flavor {
            ReceiverFlavor::At(c, _) => c.due(),
            ReceiverFlavor::Tick(c, _) => Some(c.due()),
            _ => None,
        }
    }

    fn channel(&self) -> *const () {
        match &self.flavor {
            ReceiverFlavor::Array(c) => Arc::as_ptr(c).cast(),
            ReceiverFlavor::List(c) => Arc::as_ptr(c).cast(),
            ReceiverFlavor::Zero(c) => Arc::as_ptr(c).cast(),
            ReceiverFlavor::At(c, _) => Arc::as_ptr(c).cast(),
            ReceiverFlavor::Tick(c, _) => Arc::as_ptr(c).cast(),
            // Every `never()` is the same channel.
            ReceiverFlavor::Never => std::ptr::null(),
        }
    }
}

mod sealed {
    pub trait Sealed {}
    impl<T> Sealed for crate::Receiver<T> {}
    impl<T> Sealed for crate::Sender<T> {}
    impl<M> Sealed for crate::ipc::Receiver<M> {}
    impl<M> Sealed for crate::ipc::Sender<M> {}
    impl<R: Sealed + ?Sized> Sealed for &R {}
}

/// A receiver a [`Select`] or [`select!`](crate::select!) can wait on: an
/// in-process [`Receiver`], or a cross-process
/// [`ipc::Receiver`](crate::ipc::Receiver) (any address; shared-memory
/// rings are waited on with the rest in one `futex_waitv` call, kernel
/// transports are looked at every 10 ms).
pub trait SelectRecv: sealed::Sealed {
    /// What completing the receive returns: `Result<T, RecvError>` for an
    /// in-process receiver, the kind's `Result<Output, RecvError>` for a
    /// cross-process one.
    type Output;
    #[doc(hidden)]
    fn __handle(&self) -> &dyn Handle;
    #[doc(hidden)]
    fn __finish(&self, token: &mut Token<'_>) -> Self::Output;
    /// For `select!`: `handle.__as_select_recv()` finds the receiver
    /// through references and `Deref`.
    #[doc(hidden)]
    fn __as_select_recv(&self) -> &Self {
        self
    }
}

/// A sender a [`Select`] or [`select!`](crate::select!) can wait on: an
/// in-process [`Sender`], or a cross-process
/// [`ipc::Sender`](crate::ipc::Sender) (waited on like a cross-process
/// receiver; see [`SendArm`] for what completing it does).
pub trait SelectSend: sealed::Sealed {
    #[doc(hidden)]
    fn __handle(&self) -> &dyn Handle;
    #[doc(hidden)]
    fn __as_select_send(&self) -> &Self {
        self
    }
}

/// Completing a selected send with a message that may borrow for `'m`
/// (a cross-process sender of bytes or rkyv values takes `&'m [u8]` or
/// `&'m T`; an in-process `Sender<T>` takes `T` for every `'m`).
///
/// A selected cross-process send was ready when chosen: room in its ring,
/// or its receivers gone. Another producer of an MPMC ring (or of a kernel
/// transport, which always counts as ready: the kernel buffers) may take
/// that room before the send completes; the send then waits for room as
/// [`ipc::Sender::send`](crate::ipc::Sender::send) does, and fails only
/// when the receivers are gone.
///
/// # Examples
///
/// A thread sends to another process's channel or receives from a local
/// one, whichever is possible first (here both ends of the cross-process
/// channel are in one process, in a memfd segment):
///
/// ```
/// use shmlane::ipc::{Builder, Bytes};
/// use shmlane::{select, unbounded};
///
/// let chan = Builder::memfd().capacity(1).create::<Bytes>().unwrap();
/// let (ipc_tx, ipc_rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
/// let (_local_tx, local_rx) = unbounded::<u32>();
/// let greeting = String::from("hello");
/// select! {
///     send(ipc_tx, greeting.as_bytes()) -> sent => sent.unwrap(),
///     recv(local_rx) -> msg => println!("local: {msg:?}"),
/// }
/// assert_eq!(ipc_rx.recv().unwrap(), b"hello");
/// ```
pub trait SendArm<'m>: SelectSend {
    /// The message type.
    type Msg;
    /// What completing the send returns.
    type Output;
    #[doc(hidden)]
    fn __finish(&self, token: &mut Token<'_>, msg: Self::Msg) -> Self::Output;
}

impl<T> SelectRecv for Receiver<T> {
    type Output = Result<T, RecvError>;
    fn __handle(&self) -> &dyn Handle {
        self
    }
    fn __finish(&self, token: &mut Token<'_>) -> Self::Output {
        self.finish_recv(token)
    }
}

impl<R: SelectRecv + ?Sized> SelectRecv for &R {
    type Output = R::Output;
    fn __handle(&self) -> &dyn Handle {
        (**self).__handle()
    }
    fn __finish(&self, token: &mut Token<'_>) -> Self::Output {
        (**self).__finish(token)
    }
}

impl<T> SelectSend for Sender<T> {
    fn __handle(&self) -> &dyn Handle {
        self
    }
}

impl<T> SendArm<'_> for Sender<T> {
    type Msg = T;
    type Output = Result<(), SendError<T>>;
    fn __finish(&self, token: &mut Token<'_>, msg: T) -> Self::Output {
        self.finish_send(token, msg)
    }
}

impl<S: SelectSend + ?Sized> SelectSend for &S {
    fn __handle(&self) -> &dyn Handle {
        (**self).__handle()
    }
}

impl<'m, S: SendArm<'m> + ?Sized> SendArm<'m> for &S {
    type Msg = S::Msg;
    type Output = S::Output;
    fn __finish(&self, token: &mut Token<'_>, msg: S::Msg) -> Self::Output {
        (**self).__finish(token, msg)
    }
}

impl<T> Sender<T> {
    /// Completes a selected send.
    fn finish_send(&self, token: &mut Token<'_>, msg: T) -> Result<(), SendError<T>> {
        match (&self.flavor, token.take()) {
            (_, Taken::Disconnected) => Err(SendError(msg)),
            (SenderFlavor::Array(c), Taken::ArraySend(slot)) => {
                // SAFETY: the reservation owns a slot made for `T`.
                unsafe { slot.as_mut_ptr().cast::<T>().write(msg) };
                let _ = slot.commit();
                c.not_empty.notify_one_local();
                Ok(())
            }
            (SenderFlavor::List(c), Taken::ListSend) => c.send(msg).map_err(SendError),
            (SenderFlavor::Zero(c), Taken::Zero(packet)) => {
                // SAFETY: the packet came from this channel of `T`.
                match unsafe { packet.into_packet::<T>() }.put(msg) {
                    Ok(()) => Ok(()),
                    // The async receive that paired with this arm was
                    // dropped before the message came: hand it to the next
                    // receiver, as a plain rendezvous send.
                    Err(msg) => c.chan.send(msg, None).map_err(|e| match e {
                        crate::error::SendTimeoutError::Disconnected(m)
                        | crate::error::SendTimeoutError::Timeout(m) => SendError(m),
                    }),
                }
            }
            _ => unreachable!("a send token of another flavor"),
        }
    }
}

impl<T> Receiver<T> {
    /// Completes a selected receive.
    fn finish_recv(&self, token: &mut Token<'_>) -> Result<T, RecvError> {
        match (&self.flavor, token.take()) {
            (_, Taken::Disconnected) => Err(RecvError),
            (ReceiverFlavor::Array(c), Taken::ArrayRecv(slot)) => {
                // SAFETY: a claimed, not skipped slot holds a `T`; the claim
                // frees it on drop, so it is moved out once.
                let msg = unsafe { slot.as_ptr().cast::<T>().read() };
                drop(slot);
                c.not_full.notify_one_local();
                Ok(msg)
            }
            (ReceiverFlavor::List(c), Taken::List(block, offset)) => {
                let mut slot = ListToken::<T>::from_raw(block, offset);
                // SAFETY: the slot was taken from this list of `T`, once.
                Ok(unsafe { c.chan.read(&mut slot) })
            }
            (ReceiverFlavor::Zero(_), Taken::Zero(packet)) => {
                // SAFETY: the packet came from this channel of `T`.
                Ok(unsafe { packet.into_packet::<T>() }.take())
            }
            (ReceiverFlavor::At(_, f) | ReceiverFlavor::Tick(_, f), Taken::Instant(t)) => Ok(f(t)),
            _ => unreachable!("a receive token of another flavor"),
        }
    }
}

/// How long a select may wait.
#[derive(Clone, Copy)]
enum Wait {
    Now,
    Until(Option<Instant>),
}

type Entry<'a> = (&'a dyn Handle, usize);

/// Runs a select over `handles`: `ready_only` only waits for an operation
/// to be ready. Returns the position in `handles`; `token` (empty when
/// called) holds what the operation took. (An out parameter, not a
/// returned value: the token was just written piecewise by the operation,
/// and moving it again costs a store-forwarding stall per select.)
fn run<'a>(
    handles: &mut [Entry<'a>],
    wait: Wait,
    biased: bool,
    ready_only: bool,
    token: &mut Token<'a>,
) -> Option<usize> {
    let n = handles.len();
    // The order of the first passes: a uniform one (Fisher-Yates), so that
    // every ready operation is as likely to be chosen. (A random starting
    // point would favour the one after a run of operations that are never
    // ready.) Up to `ORDER` operations, a permutation of byte indices is
    // shuffled, not the entries (cheaper: no 24-byte moves through memory
    // the caller just wrote); beyond it, the entries themselves.
    let mut order = [0u8; ORDER];
    let by_order = n <= ORDER;
    if by_order {
        for (k, o) in order.iter_mut().enumerate().take(n) {
            *o = k as u8;
        }
    }
    if !biased {
        for i in (1..n).rev() {
            let j = random(i + 1);
            if by_order {
                order.swap(i, j);
            } else {
                handles.swap(i, j);
            }
        }
    }
    let handles = &*handles;
    let order = &order[..if by_order { n } else { 0 }];
    let mut spins = 0;
    // Asked only once the first pass found nothing (most selects don't get
    // that far).
    let mut pairs = None;
    let deadline = match wait {
        Wait::Now => None,
        Wait::Until(d) => d,
    };
    loop {
        for k in 0..n {
            let i = order.get(k).map_or(k, |&o| usize::from(o));
            let h = handles[i].0;
            let done = if ready_only {
                h.is_ready(ANYONE)
            } else {
                h.try_select(token)
            };
            if done {
                return Some(i);
            }
        }
        let expired = match wait {
            Wait::Now => true,
            Wait::Until(Some(d)) => Instant::now() >= d,
            Wait::Until(None) => false,
        };
        if !expired
            && spins < SPIN_ROUNDS
            && !*pairs.get_or_insert_with(|| !ready_only && handles.iter().any(|h| h.0.pairs()))
        {
            // Spin (then yield) a few rounds before parking: a counterpart
            // on another core is often about to make an operation ready,
            // and parking costs two system calls and a wakeup. (Not with a
            // rendezvous operation: its partner can only pair with it once
            // it is registered, which parking does; it spins after that.)
            backoff(&mut spins);
            continue;
        }
        if expired {
            // Before giving up, one more look at every operation: one that
            // became ready while the pass above looked at the others (which
            // another thread then emptied) would make a select that reports
            // nothing ready not linearizable. Try again if one did.
            if !ready_only && handles.iter().any(|h| h.0.is_ready(ANYONE)) {
                continue;
            }
            return None;
        }
        // Park until something may have changed.
        let picked = Context::with(|cx| {
            // Waiting for readiness only, no counterpart may pair with us:
            // nothing is registered then.
            // Inline up to 4 (and 5): parking allocates nothing.
            let mut packets: SmallVec<[Option<ErasedPacket>; 4]> =
                std::iter::repeat_with(|| None).take(n).collect();
            if !ready_only {
                // In the pass's random order: a partner that looks while
                // we register must not find the same arm first every time
                // (crossbeam's zero::fairness).
                for k in 0..n {
                    let i = order.get(k).map_or(k, |&o| usize::from(o));
                    packets[i] = handles[i].0.register(FIRST_OPER + i, cx);
                }
            }
            let mut ecs: SmallVec<[(&EventCount, Option<&AtomicU32>); 5]> = SmallVec::new();
            ecs.push((&cx.wake, None));
            ecs.extend(
                handles
                    .iter()
                    .filter_map(|h| h.0.eventcount().map(|ec| (ec, h.0.tally()))),
            );
            let due = handles
                .iter()
                .filter_map(|h| h.0.due())
                .chain(deadline)
                .min();
            let me = cx.id();
            // Cross-process operations are looked at again (tried, not only
            // checked) every step, as their blocking receives do.
            let step = handles.iter().filter_map(|h| h.0.step()).min();
            let parked = Instant::now();
            let mut woken = || {
                if cx.selected() != WAITING
                    || handles.iter().any(|h| h.0.is_ready(me))
                    || due.is_some_and(|d| Instant::now() >= d)
                    || step.is_some_and(|s| parked.elapsed() >= s)
                {
                    Some(())
                } else {
                    None
                }
            };
            // Registered: a partner that selects us (or an operation that
            // becomes ready) often comes within microseconds; spin a few
            // rounds before the barrier and system calls of parking.
            let mut spin = 0;
            let mut done = false;
            while spin < SPIN_ROUNDS {
                if woken().is_some() {
                    done = true;
                    break;
                }
                backoff(&mut spin);
            }
            if !done {
                let _ = shmlane_semaphore::wait_any(&ecs, due, step.or(SAFETY_STEP), &mut woken);
            }
            let sel = if cx.try_select(ABORTED) {
                ABORTED
            } else {
                cx.selected()
            };
            if !ready_only {
                for (k, h) in handles.iter().enumerate() {
                    h.0.unregister(FIRST_OPER + k, cx);
                }
            }
            // The wakeup this select may have taken, passed on.
            for h in handles {
                if let Some(ec) = h.0.eventcount() {
                    if h.0.is_ready(me) {
                        ec.notify_one();
                    }
                }
            }
            if sel >= FIRST_OPER {
                let k = sel - FIRST_OPER;
                Some((k, packets[k].take()))
            } else {
                None
            }
        });
        if let Some((k, packet)) = picked {
            // A counterpart paired with our rendezvous operation `k`.
            if let Some(packet) = packet {
                token.set(Taken::Zero(packet));
            }
            return Some(k);
        }
    }
}

/// Waits on several channel operations at once, and completes one of them:
/// the runtime form of [`select!`](crate::select!), for a set of
/// operations known only at run time. A drop-in for
/// `crossbeam_channel::Select`.
///
/// Add operations with [`send`](Self::send) and [`recv`](Self::recv),
/// which return their index; [`select`](Self::select) blocks until one is
/// ready and returns it as a [`SelectedOperation`], which must then be
/// completed with [`SelectedOperation::send`] or
/// [`SelectedOperation::recv`] on the same channel. When several are
/// ready, one is chosen at random.
///
/// # Examples
///
/// ```
/// use std::thread;
/// use std::time::Duration;
///
/// let (s1, r1) = shmlane::unbounded();
/// let (s2, r2) = shmlane::bounded(1);
/// thread::spawn(move || s1.send(10).unwrap());
/// thread::spawn(move || s2.send(20).unwrap());
///
/// let mut sel = shmlane::Select::new();
/// let oper1 = sel.recv(&r1);
/// let oper2 = sel.recv(&r2);
/// let oper = sel.select();
/// match oper.index() {
///     i if i == oper1 => assert_eq!(oper.recv(&r1), Ok(10)),
///     i if i == oper2 => assert_eq!(oper.recv(&r2), Ok(20)),
///     _ => unreachable!(),
/// }
/// ```
pub struct Select<'a> {
    handles: SmallVec<[Entry<'a>; 4]>,
    next_index: usize,
    biased: bool,
}

// SAFETY: a `Select` only reserves, claims or pairs; moving a message in
// or out takes the `Sender` or `Receiver` itself in the thread that holds
// it (`SelectedOperation::send`/`recv`), so no `T` crosses threads through
// a `Select`. (crossbeam-channel's `Select` is `Send` and `Sync` too.)
unsafe impl Send for Select<'_> {}
// SAFETY: as above; `&Select` allows nothing but `Clone` and `Debug`.
unsafe impl Sync for Select<'_> {}

impl<'a> Select<'a> {
    /// An empty select, choosing at random among ready operations.
    #[inline]
    pub fn new() -> Self {
        Self {
            handles: SmallVec::new(),
            next_index: 0,
            biased: false,
        }
    }

    /// An empty select that prefers the operations added first when
    /// several are ready.
    pub fn new_biased() -> Self {
        Self {
            biased: true,
            ..Self::new()
        }
    }

    /// Adds a send operation (on an in-process or a cross-process sender;
    /// see [`SendArm`]); returns its index.
    #[inline]
    pub fn send<S: SelectSend + ?Sized>(&mut self, s: &'a S) -> usize {
        self.add(s.__handle())
    }

    /// Adds a receive operation (on an in-process or a cross-process
    /// receiver); returns its index.
    #[inline]
    pub fn recv<R: SelectRecv + ?Sized>(&mut self, r: &'a R) -> usize {
        self.add(r.__handle())
    }

    #[inline]
    fn add(&mut self, h: &'a dyn Handle) -> usize {
        let i = self.next_index;
        self.handles.push((h, i));
        self.next_index += 1;
        i
    }

    /// Removes the operation with index `index`.
    ///
    /// # Panics
    ///
    /// If there is no such operation (never added, or removed already).
    pub fn remove(&mut self, index: usize) {
        let pos = self
            .handles
            .iter()
            .position(|(_, i)| *i == index)
            .expect("no operation with this index to remove");
        self.handles.swap_remove(pos);
    }

    #[inline]
    fn run(&mut self, wait: Wait) -> Option<SelectedOperation<'a>> {
        // Built first, so that the operation writes its token in place.
        // `done` until an operation is chosen: dropping it then is fine.
        let mut op = SelectedOperation {
            token: Token::default(),
            index: 0,
            channel: std::ptr::null(),
            done: true,
        };
        let k = run(&mut self.handles, wait, self.biased, false, &mut op.token)?;
        let (h, index) = self.handles[k];
        op.index = index;
        op.channel = h.channel();
        op.done = false;
        Some(op)
    }

    /// Completes an operation that is ready now, if there is one.
    ///
    /// # Errors
    ///
    /// [`TrySelectError`] if none is.
    #[inline]
    pub fn try_select(&mut self) -> Result<SelectedOperation<'a>, TrySelectError> {
        self.run(Wait::Now).ok_or(TrySelectError)
    }

    /// Blocks until an operation is ready and selects it. With no
    /// operation, blocks for ever.
    #[inline]
    pub fn select(&mut self) -> SelectedOperation<'a> {
        self.run(Wait::Until(None))
            .expect("a select without a deadline returns an operation")
    }

    /// As [`select`](Self::select), for at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`SelectTimeoutError`] if no operation became ready in time.
    pub fn select_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<SelectedOperation<'a>, SelectTimeoutError> {
        self.run(Wait::Until(Instant::now().checked_add(timeout)))
            .ok_or(SelectTimeoutError)
    }

    /// As [`select`](Self::select), until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// [`SelectTimeoutError`] if no operation became ready in time.
    pub fn select_deadline(
        &mut self,
        deadline: Instant,
    ) -> Result<SelectedOperation<'a>, SelectTimeoutError> {
        self.run(Wait::Until(Some(deadline)))
            .ok_or(SelectTimeoutError)
    }

    fn ready_in(&mut self, wait: Wait) -> Option<usize> {
        let k = run(
            &mut self.handles,
            wait,
            self.biased,
            true,
            &mut Token::default(),
        )?;
        Some(self.handles[k].1)
    }

    /// The index of an operation that is ready now (one that would
    /// complete, or fail, without blocking), without completing it.
    ///
    /// # Errors
    ///
    /// [`TryReadyError`] if none is.
    pub fn try_ready(&mut self) -> Result<usize, TryReadyError> {
        self.ready_in(Wait::Now).ok_or(TryReadyError)
    }

    /// Blocks until an operation is ready and returns its index, without
    /// completing it (another thread may take it first: try it, and wait
    /// again if it fails).
    pub fn ready(&mut self) -> usize {
        self.ready_in(Wait::Until(None))
            .expect("a wait without a deadline returns an operation")
    }

    /// As [`ready`](Self::ready), for at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`ReadyTimeoutError`] if no operation became ready in time.
    pub fn ready_timeout(&mut self, timeout: Duration) -> Result<usize, ReadyTimeoutError> {
        self.ready_in(Wait::Until(Instant::now().checked_add(timeout)))
            .ok_or(ReadyTimeoutError)
    }

    /// As [`ready`](Self::ready), until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// [`ReadyTimeoutError`] if no operation became ready in time.
    pub fn ready_deadline(&mut self, deadline: Instant) -> Result<usize, ReadyTimeoutError> {
        self.ready_in(Wait::Until(Some(deadline)))
            .ok_or(ReadyTimeoutError)
    }
}

impl Default for Select<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl Clone for Select<'_> {
    fn clone(&self) -> Self {
        Self {
            handles: self.handles.clone(),
            next_index: self.next_index,
            biased: self.biased,
        }
    }
}

impl fmt::Debug for Select<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Select { .. }")
    }
}

/// An operation a [`Select`] chose: complete it with [`send`](Self::send)
/// or [`recv`](Self::recv) on the channel it was added with. Dropping it
/// unfinished panics (a rendezvous partner may be waiting on it).
#[must_use = "a selected operation must be completed with `send` or `recv`"]
pub struct SelectedOperation<'a> {
    token: Token<'a>,
    index: usize,
    channel: *const (),
    done: bool,
}

impl SelectedOperation<'_> {
    /// The index [`Select::send`] or [`Select::recv`] gave the operation.
    #[inline]
    pub fn index(&self) -> usize {
        self.index
    }

    /// Completes a send operation with `msg`.
    ///
    /// # Errors
    ///
    /// [`SendError`] with the message if the channel is disconnected.
    ///
    /// # Panics
    ///
    /// If `s` is not the sender the operation was selected on.
    #[inline]
    pub fn send<'m, S: SendArm<'m> + ?Sized>(mut self, s: &S, msg: S::Msg) -> S::Output {
        assert!(
            s.__handle().channel() == self.channel,
            "SelectedOperation::send: this sender was not the selected operation's"
        );
        self.done = true;
        s.__finish(&mut self.token, msg)
    }

    /// Completes a receive operation.
    ///
    /// # Errors
    ///
    /// [`RecvError`] if the channel is empty and disconnected.
    ///
    /// # Panics
    ///
    /// If `r` is not the receiver the operation was selected on.
    #[inline]
    pub fn recv<R: SelectRecv + ?Sized>(mut self, r: &R) -> R::Output {
        assert!(
            r.__handle().channel() == self.channel,
            "SelectedOperation::recv: this receiver was not the selected operation's"
        );
        self.done = true;
        r.__finish(&mut self.token)
    }
}

impl Drop for SelectedOperation<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Never leave an uninitialised message published.
        if let Taken::ArraySend(slot) = self.token.take() {
            slot.cancel();
        }
        if !std::thread::panicking() {
            panic!("dropped a SelectedOperation without completing it with send or recv");
        }
    }
}

impl fmt::Debug for SelectedOperation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelectedOperation")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

macro_rules! unit_error {
    ($(#[$doc:meta])* $name:ident, $text:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name;

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str($text)
            }
        }

        impl std::error::Error for $name {}
    };
}

unit_error!(
    /// [`Select::try_select`] found no operation ready.
    TrySelectError,
    "all operations in select would block"
);
unit_error!(
    /// [`Select::select_timeout`] saw no operation ready in time.
    SelectTimeoutError,
    "timed out waiting on select"
);
unit_error!(
    /// [`Select::try_ready`] found no operation ready.
    TryReadyError,
    "all operations in select would block"
);
unit_error!(
    /// [`Select::ready_timeout`] saw no operation ready in time.
    ReadyTimeoutError,
    "timed out waiting on ready"
);

#[cfg(test)]
mod tests {
    use super::*;

    /// Every ready operation gets chosen, on both sides of `ORDER` (byte
    /// indices shuffled below it, the entries themselves above), and a
    /// biased select always takes the first ready one. (A count, not a
    /// timing: with 200 picks per operation, one never chosen has odds
    /// below 1e-80.)
    #[test]
    fn every_ready_operation_is_chosen_with_few_and_many_arms() {
        for n in [2, 4, ORDER, ORDER + 1, 2 * ORDER + 3] {
            let chans: Vec<_> = (0..n).map(|_| crate::unbounded::<usize>()).collect();
            let rounds = 200 * n;
            for (tx, _) in &chans {
                for i in 0..rounds {
                    tx.send(i).unwrap();
                }
            }
            let mut seen = vec![0usize; n];
            let mut sel = Select::new();
            for (_, rx) in &chans {
                sel.recv(rx);
            }
            for _ in 0..rounds {
                let oper = sel.select();
                let i = oper.index();
                oper.recv(&chans[i].1).unwrap();
                seen[i] += 1;
            }
            assert!(seen.iter().all(|&c| c > 0), "n = {n}: {seen:?}");
            let mut biased = Select::new_biased();
            for (_, rx) in &chans {
                biased.recv(rx);
            }
            for _ in 0..10 {
                let oper = biased.select();
                assert_eq!(oper.index(), 0, "n = {n}");
                oper.recv(&chans[0].1).unwrap();
            }
        }
    }
}
