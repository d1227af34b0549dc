//! Steady-state sends and in-place receives allocate nothing, for every
//! message kind, on both ring kinds, under every trust level. A counting
//! global allocator watches this thread (the only test here, so nothing
//! else allocates on it).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use shmlane::ipc::{Builder, Bytes, Channel, Message, RingKind, Rkyv, Trust};
use shmlane_codec::sample::Order;

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; the
// counter is a thread-local `Cell` that never allocates itself.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: forwarded with the caller's own layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded; `ptr` came from `System.alloc`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCS.with(Cell::get)
}

/// Allocations made by `round` over 10,000 calls, after 1,000 to warm up.
fn steady(mut round: impl FnMut(u64)) -> u64 {
    for i in 0..1_000 {
        round(i);
    }
    let before = allocations();
    for i in 0..10_000 {
        round(i);
    }
    allocations() - before
}

fn channel<M: Message>(kind: RingKind, trust: Trust, tag: &str) -> Channel<M> {
    Builder::new(&shmlane_testkit::shm_address(&format!("noalloc-{tag}")))
        .unwrap()
        .kind(kind)
        .capacity(16)
        .message_size(128)
        .trust(trust)
        .create::<M>()
        .unwrap()
}

#[test]
fn sends_and_in_place_receives_do_not_allocate() {
    // SAFETY: every writer here is this test's own encoder.
    let trusts = [Trust::validate(), Trust::hostile(), unsafe {
        Trust::unchecked()
    }];
    let orders: Vec<Order> = (0..64).map(Order::sample).collect();
    let mut report = Vec::new();
    for trust in trusts {
        // rkyv, SPSC
        let chan = channel::<Rkyv<Order>>(RingKind::Spsc, trust, "rs");
        let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
        let n = steady(|i| {
            tx.send(&orders[i as usize % 64]).unwrap();
            assert_eq!(rx.recv_ref().unwrap().id, i % 64);
        });
        report.push((format!("rkyv spsc {trust}"), n));
        drop((tx, rx, chan));
        // rkyv, MPMC
        let chan = channel::<Rkyv<Order>>(RingKind::Mpmc, trust, "rm");
        let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
        let n = steady(|i| {
            tx.send(&orders[i as usize % 64]).unwrap();
            assert_eq!(rx.recv_ref().unwrap().id, i % 64);
        });
        report.push((format!("rkyv mpmc {trust}"), n));
        drop((tx, rx, chan));
        // bytes, both rings
        let chan = channel::<Bytes>(RingKind::Spsc, trust, "bs");
        let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
        let n = steady(|i| {
            tx.send(&i.to_le_bytes()).unwrap();
            assert_eq!(&*rx.recv_ref().unwrap(), &i.to_le_bytes());
            tx.send_with(|buf| {
                buf[..3].copy_from_slice(b"abc");
                3
            })
            .unwrap();
            assert_eq!(&*rx.recv_ref().unwrap(), b"abc");
        });
        report.push((format!("bytes spsc {trust}"), n));
        drop((tx, rx, chan));
        let chan = channel::<Bytes>(RingKind::Mpmc, trust, "bm");
        let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
        let n = steady(|i| {
            tx.send(&i.to_le_bytes()).unwrap();
            assert_eq!(&*rx.recv_ref().unwrap(), &i.to_le_bytes());
        });
        report.push((format!("bytes mpmc {trust}"), n));
        drop((tx, rx, chan));
        // Pod, both rings: copies and in place
        let chan = channel::<u64>(RingKind::Spsc, trust, "ps");
        let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
        let n = steady(|i| {
            tx.send(i).unwrap();
            assert_eq!(*rx.recv_ref().unwrap(), i);
            tx.send_with(|slot| *slot = i + 1).unwrap();
            assert_eq!(rx.recv().unwrap(), i + 1);
        });
        report.push((format!("pod spsc {trust}"), n));
        drop((tx, rx, chan));
        let chan = channel::<u64>(RingKind::Mpmc, trust, "pm");
        let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
        let n = steady(|i| {
            tx.send(i).unwrap();
            assert_eq!(*rx.recv_ref().unwrap(), i);
        });
        report.push((format!("pod mpmc {trust}"), n));
    }
    // The counter does see allocations: an owned receive of an order
    // allocates its two strings.
    let chan = channel::<Rkyv<Order>>(RingKind::Spsc, Trust::validate(), "owned");
    let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
    let owned = steady(|i| {
        tx.send(&orders[i as usize % 64]).unwrap();
        assert_eq!(rx.recv().unwrap().id, i % 64);
    });
    assert!(owned >= 20_000, "{owned}");
    let allocating: Vec<_> = report.iter().filter(|(_, n)| *n > 0).collect();
    assert!(
        allocating.is_empty(),
        "allocations per 10,000 messages: {allocating:?}"
    );
    assert_eq!(report.len(), 18);
}

/// A select over in-process channels that parks (registers, sleeps in
/// `futex_waitv`, is woken) allocates nothing once the thread's context
/// exists: crossbeam's own `golang::select2` test counts the bytes its
/// selects allocate, and failed on a loaded machine while parking did.
/// The sender sends only once this thread sleeps in the kernel (state `S`
/// in /proc), so every counted select parks.
#[test]
fn a_select_that_parks_does_not_allocate() {
    let chans: Vec<_> = (0..4).map(|_| shmlane::bounded::<u64>(1)).collect();
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    let rounds = 200u64;
    let senders: Vec<_> = chans.iter().map(|(tx, _)| tx.clone()).collect();
    let sender = std::thread::spawn(move || {
        let stat = format!("/proc/self/task/{tid}/stat");
        for i in 0..rounds {
            loop {
                let text = std::fs::read_to_string(&stat).unwrap();
                // The state follows the parenthesised name.
                if text.rsplit(") ").next().unwrap().starts_with('S') {
                    break;
                }
                std::thread::yield_now();
            }
            senders[(i % 4) as usize].send(i).unwrap();
        }
    });
    let mut counted = 0;
    for i in 0..rounds {
        let before = allocations();
        let mut sel = shmlane::Select::new();
        for (_, rx) in &chans {
            sel.recv(rx);
        }
        let oper = sel.select();
        let k = oper.index();
        assert_eq!(oper.recv(&chans[k].1).unwrap(), i);
        // The first rounds make this thread's context.
        if i >= 10 {
            counted += allocations() - before;
        }
    }
    sender.join().unwrap();
    assert_eq!(counted, 0, "allocations in {} parked selects", rounds - 10);
}
