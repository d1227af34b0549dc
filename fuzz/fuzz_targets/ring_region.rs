//! A ring region whose control words, stamps and payloads a hostile peer
//! wrote: arbitrary bytes overwrite an initialised region, then a sequence
//! of producer and consumer operations (chosen by the input too) runs on
//! it (an SPSC, MPMC or broadcast ring, picked by the input). Every
//! operation must return (a value or `Corrupted`), never panic,
//! loop forever, or touch memory outside the region.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shmlane_ring::{broadcast, mpmc, spsc, HeapRegion, RingKind, RingLayout};

/// An initialised region (the ring crate's own heap region) that the
/// peer then wrote over.
fn region(layout: &RingLayout, garbage: &[u8]) -> HeapRegion {
    let region = HeapRegion::new(
        layout.kind(),
        layout.capacity(),
        layout.slot_size(),
        layout.slot_align(),
    )
    .unwrap();
    // The peer's writes: over the control lines and the slots.
    let n = garbage.len().min(region.len());
    // SAFETY: `n` bytes fit the region; no handle references it yet.
    unsafe { std::ptr::copy_nonoverlapping(garbage.as_ptr(), region.base().as_ptr(), n) };
    region
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let (ops, garbage) = rest.split_at(rest.len().min(32));
    let kind = match (pick & 0x10 != 0, pick & 1 == 0) {
        (false, true) => RingKind::Spsc,
        (false, false) => RingKind::Mpmc,
        (true, overwrite) => RingKind::Broadcast {
            overwrite,
            max_subscribers: 31,
        },
    };
    let capacity = u64::from(pick >> 1 & 7) + 1;
    let layout = RingLayout::new(kind, capacity, 16, 8).unwrap();
    let region = region(&layout, garbage);
    let (base, len) = (region.base(), region.len());
    match kind {
        RingKind::Spsc => {
            // SAFETY: the region outlives both handles; one of each.
            let (Ok(mut tx), Ok(mut rx)) = (
                unsafe { spsc::Producer::attach(base, len, &layout) },
                unsafe { spsc::Consumer::attach(base, len, &layout) },
            ) else {
                return;
            };
            for &op in ops {
                match op % 8 {
                    0 => drop(tx.try_push(&[op; 16])),
                    1 => drop(tx.write_batch(u64::from(op >> 3), |_, p| {
                        // SAFETY: a 16-byte slot payload the producer owns.
                        unsafe { p.write_bytes(op, 16) }
                    })),
                    2 => drop(rx.try_pop(&mut [0; 16])),
                    3 => drop(rx.read_batch(u64::from(op >> 3), |_, p| {
                        // SAFETY: a published 16-byte slot payload.
                        let _ = unsafe { p.read_volatile() };
                    })),
                    4 => {
                        let front = rx.front().is_ok();
                        // Released only with a front; otherwise it refuses.
                        assert_eq!(rx.release_front(), front);
                    }
                    5 => drop(rx.refresh()),
                    6 => drop(tx.try_push_if(|_| op & 8 != 0)),
                    _ => drop((tx.free(), rx.available(), tx.len(), rx.len())),
                }
            }
        }
        RingKind::Mpmc => {
            // SAFETY: the region outlives the handle.
            let Ok(ring) = (unsafe { mpmc::Ring::attach(base, len, &layout) }) else {
                return;
            };
            // Channels between processes use owned handles: claims record
            // an owner, and survivors recover the slots of the dead.
            let ring = ring.with_owner(1 + u64::from(ops.first().copied().unwrap_or(0) % 7));
            let mut held = Vec::new();
            for &op in ops {
                match op % 6 {
                    0 => drop(ring.try_push_with(|p| {
                        // SAFETY: a reserved 16-byte slot payload.
                        unsafe { p.write_bytes(op, 16) }
                    })),
                    1 => drop(ring.try_pop_with(|p| {
                        // SAFETY: a claimed 16-byte slot payload.
                        unsafe { p.read_volatile() }
                    })),
                    2 => {
                        if let Ok(r) = ring.try_reserve_spin() {
                            held.push(Ok(r));
                        }
                    }
                    3 => {
                        if let Ok(c) = ring.try_claim() {
                            held.push(Err(c));
                        }
                    }
                    4 => {
                        // An oracle that calls some owners dead: recovery
                        // over whatever the peer wrote must stay in bounds.
                        let _ = ring.skip_dead_writer(|who| who % 2 == 0);
                        if let Ok(c) = ring.adopt_dead_reader(|who| who % 3 == 0) {
                            held.push(Err(c));
                        }
                    }
                    _ => {
                        held.pop();
                        let _ = (ring.len(), ring.is_empty());
                    }
                }
            }
        }
        RingKind::Broadcast { .. } => {
            let first = ops.first().copied().unwrap_or(0);
            // SAFETY: the region outlives both handles; one publisher, and
            // the subscriber's entry is its own.
            let (Ok(mut tx), Ok(mut rx)) = (
                unsafe { broadcast::Publisher::attach(base, len, &layout) },
                unsafe {
                    broadcast::Subscriber::join(
                        base,
                        len,
                        &layout,
                        usize::from(first % 32),
                        1 + u64::from(first),
                        u64::from(first >> 3),
                    )
                },
            ) else {
                return;
            };
            for &op in ops {
                match op % 4 {
                    0 => {
                        // An oracle that calls some owners dead.
                        if tx.room(&mut |who| who % 2 == 0).is_ok() {
                            tx.publish_with(|p| {
                                // SAFETY: the publisher's 16-byte slot payload.
                                unsafe { p.write_bytes(op, 16) };
                                op & 8 == 0
                            });
                        }
                    }
                    1 => {
                        // SAFETY: a 16-byte slot payload, copied out.
                        let read = rx.try_read(|p| unsafe { p.cast::<[u8; 16]>().read_volatile() });
                        if read.is_ok() {
                            rx.advance();
                        }
                    }
                    2 => drop((rx.pending(), rx.position(), tx.position())),
                    // SAFETY: the region holds a broadcast layout.
                    _ => drop(unsafe { broadcast::peek(base, &layout) }.unread()),
                }
            }
            rx.leave();
        }
    }
});
