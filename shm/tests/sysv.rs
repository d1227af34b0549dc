//! System V segments (`sysv:KEY`): created, opened and validated as the
//! file backends are; participants' liveness through `SEM_UNDO`
//! semaphores, seen across real processes (killed ones included); a
//! creator killed at each of its crash points; the last user removes the
//! segment and its semaphore set unless kept; and what a peer can do to
//! the kernel objects (remove them, scribble on the set's id).

use std::sync::Arc;
use std::time::Duration;

use shmlane_ring::RingKind;
use shmlane_shm::{
    header::offsets, Address, Backend, CreateError, CreateOptions, OpenError, OpenOptions, Role,
    Segment, Spec, SysvKey, TypeInfo,
};
use shmlane_sys::sysv;
use shmlane_testkit::{self as kit, Cleanup, Kid};

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

/// A fresh key, with a guard that removes whatever is left under it.
fn fresh() -> (i32, Address, Cleanup) {
    let key = kit::unique_key();
    let mut c = Cleanup::new();
    c.sysv(key);
    (key, Address::Sysv(SysvKey::Key(key)), c)
}

fn ids(seg: &Segment) -> (i32, i32) {
    match seg.backend() {
        Backend::Sysv { id, .. } => {
            let base = (seg.header() as *const shmlane_shm::Header).cast::<u8>();
            // SAFETY: the header page is attached for as long as `seg`.
            let sems = unsafe { base.add(offsets::SYSV_SEMS).cast::<i32>().read_volatile() };
            // The header holds the id plus one.
            (*id, sems - 1)
        }
        other => panic!("{other:?}"),
    }
}

fn exists_shm(id: i32) -> bool {
    sysv::shm_stat(id).is_ok_and(|st| st.perm.mode & sysv::SHM_DEST == 0)
}

/// The semaphore that counts the processes holding a segment open.
const ATTACHED: u16 = 33;

fn exists_sems(id: i32) -> bool {
    sysv::sem_stat(id).is_ok()
}

#[test]
fn the_test_kit_knows_where_the_set_id_is() {
    assert_eq!(kit::SYSV_SEMS_OFFSET, offsets::SYSV_SEMS);
    assert_eq!(shmlane_shm::SYSV_MARK, 34);
    assert_eq!(shmlane_shm::SYSV_MARK_VALUE, 0x5353);
}

#[test]
fn create_open_and_validate() {
    let (key, addr, _c) = fresh();
    assert_eq!(addr.to_string(), format!("sysv:{}", sysv::key_text(key)));
    assert_eq!(Address::parse(&addr.to_string()).unwrap(), addr);
    assert!(matches!(
        Segment::open(&addr, &OpenOptions::default()),
        Err(OpenError::NotFound(_))
    ));
    let a = Segment::create(&addr, &spec(RingKind::Mpmc), &CreateOptions::default()).unwrap();
    assert!(a.file().is_none());
    assert!(a.check_intact() && !a.is_broken());
    let e = Segment::create(&addr, &spec(RingKind::Mpmc), &CreateOptions::default()).unwrap_err();
    assert!(matches!(e, CreateError::AlreadyExists(_)), "{e:?}");
    let b = Segment::open(&addr, &OpenOptions::default()).unwrap();
    assert_eq!(b.layout(), a.layout());
    assert_eq!(b.schema(), "u64");
    let st = sysv::shm_stat(ids(&a).0).unwrap();
    assert_eq!(st.perm.mode & 0o777, 0o600);
    assert_eq!(st.size, a.fixed().total_len);
    // Validation as for files: type, ring kind, owner.
    let mut other = spec(RingKind::Mpmc).ty;
    other.schema = "u32".into();
    let e = Segment::open(
        &addr,
        &OpenOptions {
            ty: Some(other),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(matches!(e, OpenError::TypeMismatch { .. }), "{e:?}");
    let e = Segment::open(
        &addr,
        &OpenOptions {
            kind: Some(RingKind::Spsc),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(matches!(e, OpenError::LayoutMismatch { .. }), "{e:?}");
    let e = Segment::open(
        &addr,
        &OpenOptions {
            owner: Some(12345),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(e, OpenError::WrongOwner { found, .. } if found == st.perm.uid),
        "{e:?}"
    );
}

#[test]
fn group_writable_segments_are_refused() {
    let (_key, addr, _c) = fresh();
    let _a = Segment::create(
        &addr,
        &spec(RingKind::Mpmc),
        &CreateOptions {
            mode: 0o660,
            keep: false,
        },
    )
    .unwrap();
    let e = Segment::open(&addr, &OpenOptions::default()).unwrap_err();
    assert!(
        matches!(e, OpenError::InsecureMode { mode: 0o660 }),
        "{e:?}"
    );
    Segment::open(
        &addr,
        &OpenOptions {
            allow_group_write: true,
            ..Default::default()
        },
    )
    .unwrap();
}

#[test]
fn the_last_user_removes_it_unless_kept() {
    let (_key, addr, _c) = fresh();
    let a = Segment::create(&addr, &spec(RingKind::Mpmc), &CreateOptions::default()).unwrap();
    let (shm, sems) = ids(&a);
    let b = Segment::open(&addr, &OpenOptions::default()).unwrap();
    // The creator leaves first: the segment stays for the other user, and
    // can still be found under its key.
    drop(a);
    assert!(exists_shm(shm) && exists_sems(sems));
    let c = Segment::open(&addr, &OpenOptions::default()).unwrap();
    drop(b);
    assert!(exists_shm(shm));
    drop(c);
    assert!(!exists_shm(shm) && !exists_sems(sems));
    assert!(matches!(
        Segment::open(&addr, &OpenOptions::default()),
        Err(OpenError::NotFound(_))
    ));

    // Kept: it outlives every user, until removed.
    let opts = CreateOptions {
        mode: 0o600,
        keep: true,
    };
    let a = Segment::create(&addr, &spec(RingKind::Mpmc), &opts).unwrap();
    let (shm, sems) = ids(&a);
    drop(a);
    assert!(exists_shm(shm) && exists_sems(sems));
    let b = Segment::open(&addr, &OpenOptions::default()).unwrap();
    drop(b);
    assert!(exists_shm(shm) && exists_sems(sems));
    shmlane_shm::unlink(&addr).unwrap();
    assert!(!exists_shm(shm) && !exists_sems(sems));
}

/// In a re-executed copy of this binary: open `KEY`, attach as a sender,
/// say so, and wait to be killed.
#[test]
fn child_attaches_and_waits() {
    if kit::role().is_none() {
        return;
    }
    let key: i32 = kit::env("KEY").parse().unwrap();
    let addr = Address::Sysv(SysvKey::Key(key));
    let seg = Arc::new(Segment::open(&addr, &OpenOptions::default()).unwrap());
    let _attached = seg.attach(Role::Sender, false).unwrap();
    println!("attached");
    std::thread::sleep(Duration::from_secs(60));
}

/// In a re-executed copy: create `KEY` with crash point `SHMLANE_FAULT`
/// armed (it dies there).
#[test]
fn child_creates() {
    if kit::role().is_none() {
        return;
    }
    let key: i32 = kit::env("KEY").parse().unwrap();
    let addr = Address::Sysv(SysvKey::Key(key));
    let seg = Segment::create(&addr, &spec(RingKind::Mpmc), &CreateOptions::default()).unwrap();
    println!("created");
    drop(seg);
}

#[test]
fn a_killed_participant_is_reaped_and_its_count_given_back() {
    let (key, addr, _c) = fresh();
    let a =
        Arc::new(Segment::create(&addr, &spec(RingKind::Mpmc), &CreateOptions::default()).unwrap());
    let (shm, sems) = ids(&a);
    let mut kid = Kid::spawn(
        "child_attaches_and_waits",
        "sender",
        &[("KEY", key.to_string())],
    );
    assert!(kid.wait_for("attached"), "child did not attach");
    assert_eq!(a.live_count(Role::Sender), 1);
    let pid = kid.pid();
    assert!(a.participants().iter().any(|p| p.pid == pid && p.alive));
    assert_eq!(sysv::sem_value(sems, ATTACHED).unwrap(), 2);
    kid.kill();
    kid.wait();
    assert_eq!(a.live_count(Role::Sender), 0, "dead sender reaped");
    assert!(a.participants().is_empty());
    // The kernel gave back the dead process's count: we are the last.
    assert_eq!(sysv::sem_value(sems, ATTACHED).unwrap(), 1);
    drop(a);
    assert!(!exists_shm(shm) && !exists_sems(sems));
}

#[test]
fn a_creator_killed_at_any_point_leaves_a_stale_segment_or_nothing() {
    if !shmlane_shm::fault::ENABLED {
        println!("skipped: crash points are not compiled in (run from the workspace root)");
        return;
    }
    for point in [
        "create.after_open",
        "create.after_reserve",
        "create.after_header",
    ] {
        let (key, addr, _c) = fresh();
        let mut kid = Kid::spawn(
            "child_creates",
            "creator",
            &[("KEY", key.to_string()), ("SHMLANE_FAULT", point.into())],
        );
        let status = kid.wait();
        assert!(kit::killed(&status), "{point}: {status:?}");
        // Never a half-made segment taken for a good one.
        match Segment::open(&addr, &OpenOptions::default()) {
            Err(OpenError::NotReady {
                creator_alive: false,
            }) => {}
            other => panic!("{point}: {other:?}"),
        }
        // Removing it leaves nothing; the key is free again.
        shmlane_shm::unlink(&addr).unwrap();
        let seg = Segment::create(&addr, &spec(RingKind::Mpmc), &CreateOptions::default())
            .unwrap_or_else(|e| panic!("{point}: {e}"));
        drop(seg);
        assert!(sysv::shm_get(key).is_err(), "{point}");
    }
}

#[test]
fn a_removed_segment_keeps_working_for_its_users() {
    let (_key, addr, _c) = fresh();
    let a =
        Arc::new(Segment::create(&addr, &spec(RingKind::Mpmc), &CreateOptions::default()).unwrap());
    let (shm, sems) = ids(&a);
    let b = Arc::new(Segment::open(&addr, &OpenOptions::default()).unwrap());
    let tx = a.attach(Role::Sender, false).unwrap();
    // What `ipcrm -m` does: the key is gone, the attachments are not, and
    // nothing faults (a System V segment cannot be truncated).
    sysv::shm_remove(shm).unwrap();
    assert!(matches!(
        Segment::open(&addr, &OpenOptions::default()),
        Err(OpenError::NotFound(_))
    ));
    assert!(b.check_intact() && !b.is_broken());
    assert_eq!(b.live_count(Role::Sender), 1);
    drop(tx);
    assert_eq!(b.live_count(Role::Sender), 0);
    drop(a);
    assert!(exists_sems(sems));
    drop(b);
    // The last user removed the set too.
    assert!(!exists_sems(sems));
}

#[test]
fn a_scribbled_semaphore_set_id_is_corruption() {
    let (_key, addr, _c) = fresh();
    let a = Segment::create(&addr, &spec(RingKind::Mpmc), &CreateOptions::default()).unwrap();
    let (shm, sems) = ids(&a);
    let att = sysv::Attachment::new(shm, 4096, shmlane_sys::Access::ReadWrite).unwrap();
    for bad in [0, -1, sems + 1_000_000] {
        // (Raw header values: the id plus one.)
        // SAFETY: the header page is attached here.
        unsafe {
            att.as_ptr()
                .add(offsets::SYSV_SEMS)
                .cast::<i32>()
                .write_volatile(bad)
        };
        let e = Segment::open(&addr, &OpenOptions::default()).unwrap_err();
        assert!(
            matches!(
                e,
                OpenError::Corrupted {
                    field: "System V semaphore set"
                }
            ),
            "{bad}: {e:?}"
        );
    }
    // Another set of ours, not a segment's, is refused as well.
    let foreign = sysv::sem_create(sysv::PRIVATE, 3, 0o600).unwrap();
    // SAFETY: as above.
    unsafe {
        att.as_ptr()
            .add(offsets::SYSV_SEMS)
            .cast::<i32>()
            .write_volatile(foreign + 1)
    };
    assert!(matches!(
        Segment::open(&addr, &OpenOptions::default()),
        Err(OpenError::Corrupted { .. })
    ));
    sysv::sem_remove(foreign).unwrap();
    // SAFETY: as above.
    unsafe {
        att.as_ptr()
            .add(offsets::SYSV_SEMS)
            .cast::<i32>()
            .write_volatile(sems + 1)
    };
    Segment::open(&addr, &OpenOptions::default()).unwrap();
}

/// Set in the copy of this binary re-run in a private IPC namespace.
const PRIVATE_IPC: &str = "SHMLANE_TEST_PRIVATE_IPC";

/// Re-runs test `name` in a private IPC namespace (`unshare -i`) where
/// `kernel.shmmax` is 1 MiB and `kernel.shmall` 512 pages; false (and a
/// line saying so) where that is not permitted.
fn rerun_with_small_limits(name: &str) -> bool {
    let probe = std::process::Command::new("unshare")
        .args(["-i", "sh", "-c", "echo 1048576 > /proc/sys/kernel/shmmax"])
        .stderr(std::process::Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        println!("skipped {name}: `unshare -i` with a sysctl is not permitted here (needs root)");
        return false;
    }
    let out = std::process::Command::new("unshare")
        .args([
            "-i",
            "sh",
            "-c",
            "echo 1048576 > /proc/sys/kernel/shmmax && echo 512 > /proc/sys/kernel/shmall \
             && exec \"$0\" \"$@\"",
        ])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1", "-q"])
        .env(PRIVATE_IPC, "1")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{name} with small limits failed:\n{text}"
    );
    assert!(text.contains("limits checked"), "{text}");
    true
}

/// Over `kernel.shmmax` and over `kernel.shmall`: typed errors that name
/// the sysctl, and nothing left behind (in a private IPC namespace with
/// small limits, where permitted).
#[test]
fn limits_are_typed_errors() {
    if std::env::var_os(PRIVATE_IPC).is_none() {
        rerun_with_small_limits("limits_are_typed_errors");
        return;
    }
    assert_eq!(sysv::limit("shmmax"), Some(1 << 20));
    let (key, addr, _c) = fresh();
    let mut big = spec(RingKind::Mpmc);
    big.capacity = 2048;
    big.slot_size = 1024;
    let e = Segment::create(&addr, &big, &CreateOptions::default()).unwrap_err();
    assert!(
        matches!(e, CreateError::SysvLimit { sysctl: "kernel.shmmax", limit, .. } if limit == 1 << 20),
        "{e:?}"
    );
    assert!(e.to_string().contains("sysctl -w kernel.shmmax"), "{e}");
    assert!(sysv::shm_get(key).is_err());
    // 900 KiB segments: two fit in shmall's 2 MiB, the third does not.
    let mut mid = spec(RingKind::Mpmc);
    mid.capacity = 512;
    mid.slot_size = 1696;
    let made: Vec<_> = (0..2)
        .map(|_| {
            let (_, a, c) = fresh();
            (
                Segment::create(&a, &mid, &CreateOptions::default()).unwrap(),
                c,
            )
        })
        .collect();
    let e = Segment::create(&addr, &mid, &CreateOptions::default()).unwrap_err();
    assert!(
        matches!(
            e,
            CreateError::SysvLimit {
                sysctl: "kernel.shmall",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(sysv::shm_get(key).is_err());
    drop(made);
    println!("limits checked");
}

/// An opener racing the last user's drop either opens a segment that
/// stays (it counted itself in before the last user looked) or finds
/// nothing; never a removed segment, a corrupted one, or an error.
#[test]
fn an_opener_racing_the_last_user_opens_a_live_segment_or_nothing() {
    for _ in 0..100 {
        let (_key, addr, _c) = fresh();
        let a = Segment::create(&addr, &spec(RingKind::Mpmc), &CreateOptions::default()).unwrap();
        let barrier = std::sync::Barrier::new(2);
        let opened = std::thread::scope(|s| {
            s.spawn(|| {
                barrier.wait();
                drop(a);
            });
            barrier.wait();
            Segment::open(&addr, &OpenOptions::default())
        });
        match opened {
            Ok(b) => {
                let (shm, _) = ids(&b);
                assert!(exists_shm(shm), "opened a removed segment");
                let b = Arc::new(b);
                drop(b.attach(Role::Sender, false).unwrap());
            }
            Err(OpenError::NotFound(_)) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
}
