//! Participants, their locks, and how the dead are noticed. Each `Segment`
//! opened separately is its own open file description, so two of them in
//! one process see each other's locks exactly as two processes would.

use std::sync::Arc;

use shmlane_ring::RingKind;
use shmlane_shm::{
    Address, AttachError, CreateOptions, OpenOptions, Role, Segment, Spec, TypeInfo,
};
use shmlane_testkit::{self as kit, Kid};

fn unique_shm() -> Address {
    Address::Shm(kit::unique("liveness"))
}

fn spec(kind: RingKind) -> Spec {
    Spec {
        kind,
        capacity: 4,
        slot_size: 8,
        slot_align: 8,
        ty: TypeInfo {
            name: "u64".into(),
            schema: "u64".into(),
            size: 8,
            align: 8,
            codec: 1,
        },
    }
}

fn create_and_open(kind: RingKind) -> (Arc<Segment>, Arc<Segment>) {
    let addr = unique_shm();
    let a = Segment::create(&addr, &spec(kind), &CreateOptions::default()).unwrap();
    let b = Segment::open(&addr, &OpenOptions::default()).unwrap();
    (Arc::new(a), Arc::new(b))
}

#[test]
fn attach_and_detach_are_seen_by_peers() {
    let (a, b) = create_and_open(RingKind::Mpmc);
    assert_eq!(b.live_count(Role::Sender), 0);
    assert!(!b.ever_attached(Role::Sender));
    let tx1 = a.attach(Role::Sender, false).unwrap();
    let tx2 = a.attach(Role::Sender, false).unwrap();
    let rx = b.attach(Role::Receiver, false).unwrap();
    assert_eq!(b.live_count(Role::Sender), 2);
    assert_eq!(a.live_count(Role::Receiver), 1);
    assert!(b.ever_attached(Role::Sender));
    let rows = b.participants();
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|p| p.alive && p.pid == std::process::id()));
    drop(tx1);
    assert_eq!(b.live_count(Role::Sender), 1);
    drop(tx2);
    assert_eq!(b.live_count(Role::Sender), 0);
    assert!(b.ever_attached(Role::Sender));
    drop(rx);
    assert_eq!(a.live_count(Role::Receiver), 0);
}

/// In a re-executed copy of this test binary (one with a role): attach to
/// the segment `NAME` as a sender, say so on stdout, and wait to be killed.
#[test]
fn child_attaches_and_waits() {
    if kit::role().is_none() {
        return;
    }
    let name = kit::env("NAME");
    let seg = Arc::new(Segment::open(&Address::Shm(name), &OpenOptions::default()).unwrap());
    let _attached = seg.attach(Role::Sender, false).unwrap();
    println!("attached");
    std::thread::sleep(std::time::Duration::from_secs(60));
}

#[test]
fn a_killed_participant_is_reaped() {
    let (a, b) = create_and_open(RingKind::Mpmc);
    let name = match a.backend() {
        shmlane_shm::Backend::Shm(n) => n.clone(),
        other => panic!("{other:?}"),
    };
    let mut kid = Kid::spawn("child_attaches_and_waits", "sender", &[("NAME", name)]);
    assert!(kid.wait_for("attached"), "child did not attach");
    assert_eq!(b.live_count(Role::Sender), 1);
    let pid = kid.pid();
    assert!(b.participants().iter().any(|p| p.pid == pid && p.alive));
    kid.kill(); // SIGKILL: no destructor runs
    kid.wait();
    assert_eq!(b.live_count(Role::Sender), 0, "dead sender reaped");
    assert_eq!(a.live_count(Role::Sender), 0);
    assert!(b.participants().is_empty());
    // Its slot is reusable.
    let again = b.attach(Role::Sender, true).unwrap();
    assert_eq!(a.live_count(Role::Sender), 1);
    drop(again);
}

#[test]
fn spsc_sides_are_exclusive() {
    let (a, b) = create_and_open(RingKind::Spsc);
    let tx = a.attach(Role::Sender, true).unwrap();
    let err = b.attach(Role::Sender, true).unwrap_err();
    assert!(
        matches!(err, AttachError::RoleTaken { role: "sender" }),
        "{err:?}"
    );
    assert!(err.to_string().contains("MPMC"));
    // The same process cannot take it twice either.
    assert!(matches!(
        a.attach(Role::Sender, true),
        Err(AttachError::RoleTaken { .. })
    ));
    // The refused attempts left nothing behind.
    assert_eq!(b.live_count(Role::Sender), 1);
    let rx = b.attach(Role::Receiver, true).unwrap();
    drop(tx);
    let tx = b.attach(Role::Sender, true).unwrap();
    drop((tx, rx));
}

#[test]
fn read_only_segments_cannot_attach() {
    let (a, _b) = create_and_open(RingKind::Mpmc);
    let addr = match a.backend() {
        shmlane_shm::Backend::Shm(n) => Address::Shm(n.clone()),
        other => panic!("{other:?}"),
    };
    let _tx = a.attach(Role::Sender, false).unwrap();
    let ro = Arc::new(
        Segment::open(
            &addr,
            &OpenOptions {
                read_only: true,
                ..Default::default()
            },
        )
        .unwrap(),
    );
    assert!(matches!(
        ro.attach(Role::Receiver, false),
        Err(AttachError::ReadOnly)
    ));
    assert_eq!(ro.live_count(Role::Sender), 1);
}

#[test]
fn the_table_fills_up_with_a_clear_error() {
    let (a, _b) = create_and_open(RingKind::Mpmc);
    let held: Vec<_> = (0..shmlane_shm::header::MAX_PARTICIPANTS)
        .map(|_| a.attach(Role::Receiver, false).unwrap())
        .collect();
    assert!(matches!(
        a.attach(Role::Sender, false),
        Err(AttachError::TableFull)
    ));
    drop(held);
    a.attach(Role::Sender, false).unwrap();
}

#[test]
fn memfd_is_sealed_and_reopens_through_proc() {
    let seg = Segment::create_memfd(&spec(RingKind::Mpmc)).unwrap();
    // Growing or shrinking a sealed memfd fails.
    let file = seg.file().unwrap();
    assert!(file.set_len(1 << 20).is_err());
    assert!(file.set_len(100).is_err());
    let fd = std::os::fd::AsRawFd::as_raw_fd(file);
    let other = Segment::open_inherited(fd, &OpenOptions::default()).unwrap();
    let seg = Arc::new(seg);
    let _tx = seg.attach(Role::Sender, false).unwrap();
    assert_eq!(other.live_count(Role::Sender), 1);
}
