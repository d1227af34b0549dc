//! Loom models of the unbounded channel (a list of blocks, 3 slots each
//! under loom): messages cross block boundaries, with several senders or
//! receivers, and the last handle's disconnect.

#![cfg(shmlane_loom)]

use loom::thread;
use shmlane::{RecvError, TryRecvError};

#[test]
fn two_senders_across_a_block_boundary() {
    loom::model(|| {
        let (s, r) = shmlane::unbounded::<u32>();
        let s2 = s.clone();
        s.send(0).unwrap();
        s.send(1).unwrap();
        let a = thread::spawn(move || s.send(2).unwrap());
        let b = thread::spawn(move || s2.send(10).unwrap());
        let mut got: Vec<u32> = (0..4).map(|_| r.recv().unwrap()).collect();
        a.join().unwrap();
        b.join().unwrap();
        // Both senders are gone: the end.
        assert_eq!(r.recv(), Err(RecvError));
        assert_eq!(&got[..2], &[0, 1]);
        got.sort_unstable();
        assert_eq!(got, [0, 1, 2, 10]);
    });
}

#[test]
fn two_receivers_across_a_block_boundary() {
    loom::model(|| {
        let (s, r) = shmlane::unbounded::<u32>();
        let r2 = r.clone();
        for i in 0..4 {
            s.send(i).unwrap();
        }
        drop(s);
        let other = thread::spawn(move || {
            let mut got = Vec::new();
            while let Ok(m) = r2.recv() {
                got.push(m);
            }
            got
        });
        let mut got = Vec::new();
        while let Ok(m) = r.recv() {
            got.push(m);
        }
        let theirs = other.join().unwrap();
        // Each receiver sees its share in order; together, every message
        // exactly once.
        assert!(got.windows(2).all(|w| w[0] < w[1]));
        assert!(theirs.windows(2).all(|w| w[0] < w[1]));
        got.extend(theirs);
        got.sort_unstable();
        assert_eq!(got, [0, 1, 2, 3]);
        assert_eq!(r.try_recv(), Err(TryRecvError::Disconnected));
    });
}
