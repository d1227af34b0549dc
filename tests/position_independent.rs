//! The ring stores no pointers: map one memfd twice in this process, at two
//! different addresses, push through one mapping and pop through the other.

#![cfg(target_os = "linux")]

use std::ptr::NonNull;

use shmlane_ring::{mpmc, spsc, PopError, RingKind, RingLayout};

struct Mapping {
    base: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(fd: libc::c_int, len: usize) -> Self {
        // SAFETY: a fresh shared mapping of `len` bytes of the memfd; the
        // kernel picks the address.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        assert_ne!(
            p,
            libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        Self {
            base: NonNull::new(p.cast()).unwrap(),
            len,
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; no handle on it is
        // left (tests drop them first).
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

fn memfd(len: usize) -> libc::c_int {
    let name = c"shmlane-test";
    // SAFETY: plain system calls on a name we own and a fd we just created.
    unsafe {
        let fd = libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC);
        assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
        assert_eq!(libc::ftruncate(fd, len as libc::off_t), 0);
        fd
    }
}

fn two_mappings(layout: &RingLayout) -> (Mapping, Mapping) {
    let len = layout.region_len().next_multiple_of(4096);
    let fd = memfd(len);
    let (a, b) = (Mapping::new(fd, len), Mapping::new(fd, len));
    // SAFETY: the mappings keep the memory alive; the fd is ours.
    unsafe { libc::close(fd) };
    assert_ne!(
        a.base, b.base,
        "the two mappings must differ for the test to mean anything"
    );
    (a, b)
}

#[test]
fn spsc_across_two_mappings() {
    let layout = RingLayout::new(RingKind::Spsc, 8, 16, 8).unwrap();
    let (a, b) = two_mappings(&layout);
    // SAFETY: both mappings are `len` bytes of the same memory; it is
    // initialised once, then one producer (via `a`) and one consumer (via
    // `b`) attach; both are dropped before the mappings.
    let (mut tx, mut rx) = unsafe {
        layout.init(a.base, a.len).unwrap();
        (
            spsc::Producer::attach(a.base, a.len, &layout).unwrap(),
            spsc::Consumer::attach(b.base, b.len, &layout).unwrap(),
        )
    };
    for round in 0..5u64 {
        for i in 0..8u64 {
            let msg = [round, i];
            tx.try_push(bytemuck_bytes(&msg)).unwrap();
        }
        for i in 0..8u64 {
            let mut out = [0u8; 16];
            rx.try_pop(&mut out).unwrap();
            assert_eq!(out[..8], round.to_ne_bytes());
            assert_eq!(out[8..], i.to_ne_bytes());
        }
    }
    assert_eq!(rx.try_pop(&mut [0; 16]), Err(PopError::Empty));
}

#[test]
fn mpmc_across_two_mappings() {
    let layout = RingLayout::new(RingKind::Mpmc, 5, 8, 8).unwrap();
    let (a, b) = two_mappings(&layout);
    // SAFETY: as above, with an MPMC handle on each mapping.
    let (ra, rb) = unsafe {
        layout.init(a.base, a.len).unwrap();
        (
            mpmc::Ring::attach(a.base, a.len, &layout).unwrap(),
            mpmc::Ring::attach(b.base, b.len, &layout).unwrap(),
        )
    };
    for round in 0..10u64 {
        for i in 0..5 {
            let msg = (round * 10 + i).to_ne_bytes();
            // SAFETY: each slot has 8 writable bytes.
            ra.try_push_with(|p| unsafe { p.copy_from_nonoverlapping(msg.as_ptr(), 8) })
                .unwrap();
        }
        assert_eq!(rb.len(), 5);
        for i in 0..5 {
            // SAFETY: each published slot has 8 readable bytes.
            let got = rb
                .try_pop_with(|p| unsafe { p.cast::<u64>().read_unaligned() })
                .unwrap();
            assert_eq!(got, round * 10 + i);
        }
    }
}

fn bytemuck_bytes(words: &[u64; 2]) -> &[u8] {
    // SAFETY: a [u64; 2] is 16 initialised bytes with no padding.
    unsafe { std::slice::from_raw_parts(words.as_ptr().cast(), 16) }
}
