//! The unbounded channel gives its memory back: blocks are freed as their
//! messages are received, and when the last receiver goes, the messages
//! nobody will receive are dropped at once. (One test per binary: the
//! counting allocator sees the whole process.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator, only counting bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

#[test]
fn blocks_are_freed_as_they_are_read_and_on_the_last_receivers_drop() {
    const N: usize = 100_000;
    let (s, r) = shmlane::unbounded::<[u64; 4]>();
    let empty = live();
    for i in 0..N {
        s.send([i as u64; 4]).unwrap();
    }
    let full = live();
    // At least the messages themselves (32 bytes each) are held.
    assert!(
        full - empty >= (N * 32) as isize,
        "grew by {}",
        full - empty
    );
    for i in 0..N {
        assert_eq!(r.recv().unwrap()[0], i as u64);
    }
    // Every block but the current one (and at most one spare) is freed.
    let drained = live();
    assert!(
        drained - empty <= 2 * 32 * 32,
        "{} bytes still held",
        drained - empty
    );

    // Messages left when the last receiver goes are dropped with it.
    let counted = std::sync::Arc::new(());
    let (s2, r2) = shmlane::unbounded();
    for _ in 0..1000 {
        s2.send(std::sync::Arc::clone(&counted)).unwrap();
    }
    assert_eq!(std::sync::Arc::strong_count(&counted), 1001);
    drop(r2);
    assert_eq!(std::sync::Arc::strong_count(&counted), 1);
    assert!(s2.send(std::sync::Arc::clone(&counted)).is_err());
    drop(s);
}
