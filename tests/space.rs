//! Channels that do not fit are refused with a typed error before
//! anything is touched: no SIGBUS, nothing left behind.
//!
//! The tests that need a small `/dev/shm` re-run themselves in a private
//! mount namespace with a 1 MiB tmpfs there (see
//! `shmlane_testkit::rerun_with_private_shm`); they skip, saying why,
//! where `unshare -m` is not permitted.

use shmlane::ipc::{Builder, CreateError};
use shmlane_testkit as kit;

/// Every name in a directory (for "nothing left behind").
fn names_in(dir: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_channel_larger_than_a_1mib_tmpfs_is_refused_with_the_figures() {
    if !kit::has_private_shm() {
        kit::rerun_with_private_shm(
            "a_channel_larger_than_a_1mib_tmpfs_is_refused_with_the_figures",
            "1m",
            &[],
        );
        return;
    }
    let before = names_in("/dev/shm");
    // 4096 slots of 1 KiB: about 4 MiB, four times the filesystem.
    let name = kit::unique("nospace");
    let err = Builder::new(&format!("shm:{name}"))
        .unwrap()
        .capacity(4096)
        .message_size(1000)
        .create::<shmlane::ipc::Bytes>()
        .expect_err("a 4 MiB channel on a 1 MiB tmpfs");
    let msg = err.to_string();
    match err {
        CreateError::NoSpace {
            needed,
            available,
            path,
        } => {
            assert!(needed > 4 << 20, "{needed}");
            assert!(available <= 1 << 20, "{available}");
            assert_eq!(path, std::path::Path::new("/dev/shm"));
        }
        other => panic!("expected NoSpace, got {other:?}"),
    }
    assert!(msg.contains("size=") && msg.contains("file:"), "{msg}");
    println!("{msg}");
    assert_eq!(names_in("/dev/shm"), before, "nothing left behind");

    // Fits the free-space check but not the reservation: 900 KiB, with
    // 200 KiB of the filesystem already taken.
    std::fs::write("/dev/shm/ballast", vec![1u8; 200 << 10]).unwrap();
    let err = Builder::new(&format!("shm:{name}"))
        .unwrap()
        .capacity(800)
        .message_size(1000)
        .create::<shmlane::ipc::Bytes>()
        .expect_err("900 KiB with 800 KiB free");
    assert!(matches!(err, CreateError::NoSpace { .. }), "{err:?}");
    std::fs::remove_file("/dev/shm/ballast").unwrap();
    assert_eq!(names_in("/dev/shm"), before, "nothing left behind");

    // `file:` addresses on the same filesystem are refused the same way.
    let err = Builder::new(&format!("file:/dev/shm/{name}.ring"))
        .unwrap()
        .capacity(4096)
        .message_size(1000)
        .create::<shmlane::ipc::Bytes>()
        .expect_err("file: too");
    assert!(matches!(err, CreateError::NoSpace { .. }), "{err:?}");
    assert_eq!(names_in("/dev/shm"), before, "nothing left behind");

    // And what fits still works, end to end.
    let chan = Builder::new(&format!("shm:{name}"))
        .unwrap()
        .capacity(64)
        .create::<u64>()
        .unwrap();
    let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
    tx.send(7).unwrap();
    assert_eq!(rx.recv().unwrap(), 7);
}

#[test]
fn a_huge_capacity_is_a_typed_error_and_leaves_no_file() {
    if !kit::has_private_shm() {
        kit::rerun_with_private_shm(
            "a_huge_capacity_is_a_typed_error_and_leaves_no_file",
            "1m",
            &[],
        );
        return;
    }
    let before = names_in("/dev/shm");
    let name = kit::unique("huge");
    // The 103 GB sparse file: now refused before it is made.
    let err = Builder::new(&format!("shm:{name}"))
        .unwrap()
        .capacity(1 << 32)
        .create::<u64>()
        .expect_err("2^32 slots");
    assert!(matches!(err, CreateError::NoSpace { .. }), "{err:?}");
    // More than any process can map: a size error, whatever the space.
    let err = Builder::new(&format!("shm:{name}"))
        .unwrap()
        .capacity(1 << 32)
        .message_size(1 << 20)
        .create::<shmlane::ipc::Bytes>()
        .expect_err("2^52 bytes");
    assert!(matches!(err, CreateError::TooLarge { .. }), "{err:?}");
    println!("{err}");
    assert_eq!(names_in("/dev/shm"), before, "nothing left behind");
}
