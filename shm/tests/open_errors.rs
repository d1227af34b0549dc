//! Malformed segments, made by hand: each is rejected with the right error,
//! without a panic or a SIGBUS.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use shmlane_ring::RingKind;
use shmlane_shm::header::{offsets, HEADER_LEN, VERSION};
use shmlane_shm::{
    Address, CreateError, CreateOptions, OpenError, OpenOptions, Segment, Spec, TypeInfo,
};
use shmlane_testkit::{self as kit, TempDir};

fn ty() -> TypeInfo {
    TypeInfo {
        name: "u64".into(),
        schema: "u64".into(),
        size: 8,
        align: 8,
        codec: 1,
    }
}

fn spec() -> Spec {
    Spec {
        kind: RingKind::Mpmc,
        capacity: 8,
        slot_size: 16,
        slot_align: 8,
        ty: ty(),
    }
}

/// The bytes of a valid segment, made by the real creator.
fn valid_bytes(scratch: &TempDir) -> Vec<u8> {
    let path = scratch.path().join("valid");
    let addr = Address::File(path.clone());
    let seg = Segment::create(&addr, &spec(), &CreateOptions::default()).unwrap();
    let bytes = fs::read(&path).unwrap();
    drop(seg);
    assert!(!path.exists(), "the creator unlinks by default");
    bytes
}

fn opts() -> OpenOptions {
    OpenOptions {
        ready_timeout: Duration::from_millis(200),
        ty: Some(ty()),
        ..OpenOptions::default()
    }
}

fn write_file(path: &Path, bytes: &[u8]) {
    fs::write(path, bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

/// Writes `bytes` after `tamper` and opens it.
fn open_tampered(tamper: impl FnOnce(&mut Vec<u8>)) -> Result<Segment, OpenError> {
    let scratch = TempDir::new("open-errors");
    let mut bytes = valid_bytes(&scratch);
    tamper(&mut bytes);
    let path = scratch.path().join("bad");
    write_file(&path, &bytes);
    Segment::open(&Address::File(path), &opts())
}

fn put_u32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(bytes: &mut [u8], at: usize, v: u64) {
    bytes[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

#[test]
fn the_valid_segment_opens() {
    let seg = open_tampered(|_| {}).unwrap();
    assert_eq!(seg.layout().capacity(), 8);
    assert_eq!(seg.fixed().type_name(), "u64");
}

#[test]
fn truncated_inside_the_header() {
    let r = open_tampered(|b| b.truncate(100));
    assert!(matches!(r, Err(OpenError::TooSmall { len: 100 })), "{r:?}");
}

#[test]
fn empty_file() {
    let r = open_tampered(|b| b.clear());
    assert!(matches!(r, Err(OpenError::TooSmall { len: 0 })), "{r:?}");
}

#[test]
fn truncated_inside_the_ring() {
    let r = open_tampered(|b| b.truncate(HEADER_LEN + 64));
    assert!(
        matches!(
            r,
            Err(OpenError::LayoutMismatch {
                field: "file length",
                ..
            })
        ),
        "{r:?}"
    );
}

#[test]
fn longer_than_the_header_says() {
    let r = open_tampered(|b| b.extend_from_slice(&[0; 4096]));
    assert!(
        matches!(
            r,
            Err(OpenError::LayoutMismatch {
                field: "file length",
                ..
            })
        ),
        "{r:?}"
    );
}

#[test]
fn wrong_magic() {
    let r = open_tampered(|b| b[..8].copy_from_slice(b"NOTLANE\0"));
    assert!(matches!(r, Err(OpenError::BadMagic)), "{r:?}");
}

#[test]
fn some_other_file() {
    let r = open_tampered(|b| b.iter_mut().for_each(|x| *x = b'#'));
    assert!(matches!(r, Err(OpenError::BadMagic)), "{r:?}");
}

#[test]
fn future_version() {
    let r = open_tampered(|b| put_u32(b, offsets::VERSION, VERSION + 1));
    assert!(
        matches!(
            r,
            Err(OpenError::VersionMismatch {
                found,
                supported: VERSION
            }) if found == VERSION + 1
        ),
        "{r:?}"
    );
}

#[test]
fn never_initialised() {
    // The right size, all zeros, and no creator holding its lock.
    let r = open_tampered(|b| b.iter_mut().for_each(|x| *x = 0));
    assert!(
        matches!(
            r,
            Err(OpenError::NotReady {
                creator_alive: false
            })
        ),
        "{r:?}"
    );
}

#[test]
fn creator_died_before_ready() {
    let r = open_tampered(|b| put_u32(b, offsets::STATE, 0));
    assert!(
        matches!(
            r,
            Err(OpenError::NotReady {
                creator_alive: false
            })
        ),
        "{r:?}"
    );
}

#[test]
fn garbage_state() {
    let r = open_tampered(|b| put_u32(b, offsets::STATE, 0xdead));
    assert!(
        matches!(r, Err(OpenError::Corrupted { field: "state" })),
        "{r:?}"
    );
}

#[test]
fn garbage_ring_kind() {
    let r = open_tampered(|b| put_u32(b, offsets::RING_KIND, 7));
    assert!(
        matches!(r, Err(OpenError::Corrupted { field: "ring kind" })),
        "{r:?}"
    );
}

#[test]
fn slot_count_not_a_power_of_two() {
    let r = open_tampered(|b| put_u64(b, offsets::SLOTS, 6));
    assert!(
        matches!(
            r,
            Err(OpenError::LayoutMismatch {
                field: "slot count",
                ..
            })
        ),
        "{r:?}"
    );
}

#[test]
fn slot_count_disagrees_with_capacity() {
    let r = open_tampered(|b| put_u64(b, offsets::SLOTS, 64));
    assert!(
        matches!(
            r,
            Err(OpenError::LayoutMismatch {
                field: "slot count",
                ..
            })
        ),
        "{r:?}"
    );
}

#[test]
fn capacity_times_slot_size_overflows() {
    let r = open_tampered(|b| {
        put_u64(b, offsets::CAPACITY, 1 << 32);
        put_u64(b, offsets::SLOTS, 1 << 32);
        put_u64(b, offsets::SLOT_SIZE, u64::MAX / 4);
    });
    assert!(
        matches!(
            r,
            Err(OpenError::LayoutMismatch {
                field: "capacity and slot size",
                ..
            })
        ),
        "{r:?}"
    );
}

#[test]
fn zero_capacity() {
    let r = open_tampered(|b| put_u64(b, offsets::CAPACITY, 0));
    assert!(
        matches!(
            r,
            Err(OpenError::LayoutMismatch {
                field: "capacity and slot size",
                ..
            })
        ),
        "{r:?}"
    );
}

#[test]
fn slot_alignment_not_a_power_of_two() {
    let r = open_tampered(|b| put_u64(b, offsets::SLOT_ALIGN, 24));
    assert!(
        matches!(
            r,
            Err(OpenError::LayoutMismatch {
                field: "capacity and slot size",
                ..
            })
        ),
        "{r:?}"
    );
}

#[test]
fn total_length_disagrees_with_layout() {
    let r = open_tampered(|b| put_u64(b, offsets::TOTAL_LEN, 1 << 20));
    assert!(
        matches!(
            r,
            Err(OpenError::LayoutMismatch {
                field: "total length",
                ..
            })
        ),
        "{r:?}"
    );
}

#[test]
fn bigger_slots_than_the_file_holds() {
    let r = open_tampered(|b| put_u64(b, offsets::SLOT_SIZE, 4096));
    assert!(
        matches!(
            r,
            Err(OpenError::LayoutMismatch {
                field: "total length",
                ..
            })
        ),
        "{r:?}"
    );
}

#[test]
fn wrong_data_offset() {
    let r = open_tampered(|b| put_u64(b, offsets::DATA_OFFSET, 0));
    assert!(
        matches!(
            r,
            Err(OpenError::LayoutMismatch {
                field: "data offset",
                ..
            })
        ),
        "{r:?}"
    );
}

#[test]
fn wrong_type_fingerprint() {
    let r = open_tampered(|b| put_u64(b, offsets::TYPE_HASH, 12345));
    match r {
        Err(OpenError::TypeMismatch {
            expected,
            found,
            difference,
        }) => {
            assert_eq!((expected.as_str(), found.as_str()), ("u64", "u64"));
            assert!(difference.unwrap().contains("hash"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn other_message_type_names_both() {
    let scratch = TempDir::new("open-errors");
    let path = scratch.path().join("typed");
    let addr = Address::File(path);
    let _seg = Segment::create(&addr, &spec(), &CreateOptions::default()).unwrap();
    let want = TypeInfo {
        name: "my::Order".into(),
        schema: "my::Order".into(),
        size: 16,
        align: 8,
        codec: 1,
    };
    let r = Segment::open(
        &addr,
        &OpenOptions {
            ty: Some(want),
            ..opts()
        },
    );
    let err = r.unwrap_err();
    assert!(matches!(err, OpenError::TypeMismatch { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("my::Order") && msg.contains("u64"), "{msg}");
}

#[test]
fn wrong_codec() {
    let r = open_tampered(|b| put_u32(b, offsets::CODEC, 9));
    assert!(matches!(r, Err(OpenError::TypeMismatch { .. })), "{r:?}");
}

#[test]
fn wrong_ring_kind_for_this_side() {
    let scratch = TempDir::new("open-errors");
    let addr = Address::File(scratch.path().join("kind"));
    let _seg = Segment::create(&addr, &spec(), &CreateOptions::default()).unwrap();
    let r = Segment::open(
        &addr,
        &OpenOptions {
            kind: Some(RingKind::Spsc),
            ..opts()
        },
    );
    assert!(
        matches!(
            r,
            Err(OpenError::LayoutMismatch {
                field: "ring kind",
                ..
            })
        ),
        "{r:?}"
    );
}

#[test]
fn symlink_is_not_followed() {
    let scratch = TempDir::new("open-errors");
    let target = scratch.path().join("target");
    let addr = Address::File(target.clone());
    let _seg = Segment::create(
        &addr,
        &spec(),
        &CreateOptions {
            keep: true,
            ..Default::default()
        },
    )
    .unwrap();
    let link = scratch.path().join("link");
    symlink(&target, &link).unwrap();
    let r = Segment::open(&Address::File(link.clone()), &opts());
    assert!(matches!(r, Err(OpenError::Symlink(_))), "{r:?}");
    // Creating through a symlink is refused too.
    let r = Segment::create(&Address::File(link), &spec(), &CreateOptions::default());
    assert!(matches!(r, Err(CreateError::AlreadyExists(_))), "{r:?}");
}

#[test]
fn fifo_is_not_a_segment() {
    let scratch = TempDir::new("open-errors");
    let path = scratch.path().join("fifo");
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid path string; mkfifo creates a node in our scratch dir.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let r = Segment::open(&Address::File(path), &opts());
    assert!(
        matches!(r, Err(OpenError::NotRegularFile { found: "FIFO" })),
        "{r:?}"
    );
}

#[test]
fn directory_is_not_a_segment() {
    let scratch = TempDir::new("open-errors");
    let r = Segment::open(&Address::File(scratch.path().to_owned()), &opts());
    assert!(
        matches!(r, Err(OpenError::NotRegularFile { found: "directory" })),
        "{r:?}"
    );
}

#[test]
fn file_of_another_user() {
    let scratch = TempDir::new("open-errors");
    let bytes = valid_bytes(&scratch);
    let path = scratch.path().join("other-owner");
    write_file(&path, &bytes);
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    if me == 0 {
        // As root, really give the file to another user.
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a valid path; chown of our own scratch file.
        assert_eq!(unsafe { libc::chown(c.as_ptr(), 65534, 65534) }, 0);
        let r = Segment::open(&Address::File(path.clone()), &opts());
        assert!(
            matches!(
                r,
                Err(OpenError::WrongOwner {
                    expected: 0,
                    found: 65534
                })
            ),
            "{r:?}"
        );
    }
    // Whoever runs this: a segment expected to belong to someone else.
    let r = Segment::open(
        &Address::File(path),
        &OpenOptions {
            owner: Some(me.wrapping_add(4242)),
            ..opts()
        },
    );
    assert!(matches!(r, Err(OpenError::WrongOwner { .. })), "{r:?}");
}

#[test]
fn group_or_world_writable_is_refused_unless_allowed() {
    let scratch = TempDir::new("open-errors");
    let bytes = valid_bytes(&scratch);
    for mode in [0o620, 0o602, 0o666] {
        let path = scratch.path().join(format!("mode-{mode:o}"));
        write_file(&path, &bytes);
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        let r = Segment::open(&Address::File(path.clone()), &opts());
        assert!(
            matches!(r, Err(OpenError::InsecureMode { mode: m }) if m == mode),
            "{r:?}"
        );
        let ok = Segment::open(
            &Address::File(path),
            &OpenOptions {
                allow_group_write: true,
                ..opts()
            },
        );
        assert!(ok.is_ok(), "{mode:o}: {ok:?}");
    }
}

#[test]
fn missing_segment() {
    let scratch = TempDir::new("open-errors");
    let r = Segment::open(&Address::File(scratch.path().join("nothing")), &opts());
    assert!(matches!(r, Err(OpenError::NotFound(_))), "{r:?}");
    let r = Segment::open(&Address::Shm(kit::unique("missing")), &opts());
    assert!(matches!(r, Err(OpenError::NotFound(_))), "{r:?}");
}

#[test]
fn creator_still_initialising_is_not_ready_yet() {
    // A zeroed file whose creator lock is held by a live open file
    // description: the opener waits, then reports a slow creator.
    let scratch = TempDir::new("open-errors");
    let bytes = vec![0u8; valid_bytes(&scratch).len()];
    let path = scratch.path().join("slow");
    write_file(&path, &bytes);
    let holder = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let fl = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: shmlane_shm::header::LOCK_BASE as libc::off_t,
        l_len: 1,
        l_pid: 0,
    };
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl on our own fd with a valid flock.
    let rc = unsafe { libc::fcntl(holder.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    assert_eq!(rc, 0);
    let start = std::time::Instant::now();
    let r = Segment::open(&Address::File(path), &opts());
    assert!(
        matches!(
            r,
            Err(OpenError::NotReady {
                creator_alive: true
            })
        ),
        "{r:?}"
    );
    assert!(
        start.elapsed() >= Duration::from_millis(200),
        "waited the whole ready timeout"
    );
}

#[test]
fn create_refuses_to_overwrite_and_checks_layout() {
    let scratch = TempDir::new("open-errors");
    let addr = Address::File(scratch.path().join("twice"));
    let _seg = Segment::create(&addr, &spec(), &CreateOptions::default()).unwrap();
    let r = Segment::create(&addr, &spec(), &CreateOptions::default());
    assert!(matches!(r, Err(CreateError::AlreadyExists(_))), "{r:?}");
    let bad = Spec {
        capacity: 0,
        ..spec()
    };
    let r = Segment::create(
        &Address::File(scratch.path().join("zero")),
        &bad,
        &CreateOptions::default(),
    );
    assert!(matches!(r, Err(CreateError::Layout(_))), "{r:?}");
    assert!(
        !scratch.path().join("zero").exists(),
        "nothing is left behind"
    );
}

#[test]
fn addresses_parse_or_say_what_is_wrong() {
    use shmlane_shm::AddressError;
    assert_eq!(
        Address::parse("shm:orders"),
        Ok(Address::Shm("orders".into()))
    );
    assert_eq!(
        Address::parse("file:/tmp/x"),
        Ok(Address::File("/tmp/x".into()))
    );
    assert_eq!(
        Address::parse("shm:"),
        Err(AddressError::BadName(String::new()))
    );
    assert_eq!(
        Address::parse("shm:a/b"),
        Err(AddressError::BadName("a/b".into()))
    );
    assert_eq!(Address::parse("file:"), Err(AddressError::MissingPath));
    assert_eq!(
        Address::parse("carrier-pigeon:x"),
        Err(AddressError::UnknownScheme("carrier-pigeon".into()))
    );
    assert!(Address::parse("nope")
        .unwrap_err()
        .to_string()
        .contains("shm:NAME"));
}

/// A schema of a few lines, as the codec writes them.
fn reading(values: &str) -> TypeInfo {
    TypeInfo {
        name: "Rkyv<Reading>".into(),
        schema: format!(
            "message: Reading\n\
             struct `Reading`: {{ sensor, values }}\n\
             field `Reading.sensor`: String\n\
             field `Reading.values`: {values}"
        ),
        size: 16,
        align: 4,
        codec: 2,
    }
}

fn create_reading(scratch: &TempDir, values: &str) -> (Address, Segment) {
    let addr = Address::File(scratch.path().join("reading"));
    let spec = Spec {
        ty: reading(values),
        ..spec()
    };
    let seg = Segment::create(&addr, &spec, &CreateOptions::default()).unwrap();
    (addr, seg)
}

#[test]
fn the_schema_is_stored_after_the_ring_and_read_back() {
    let scratch = TempDir::new("open-errors");
    let (addr, created) = create_reading(&scratch, "Vec<f32>");
    let fixed = created.fixed();
    assert_eq!(fixed.schema_len, reading("Vec<f32>").schema.len() as u64);
    assert_eq!(
        fixed.schema_offset,
        HEADER_LEN as u64 + created.layout().region_len() as u64
    );
    assert_eq!(fixed.total_len, fixed.schema_offset + fixed.schema_len);
    let opened = Segment::open(
        &addr,
        &OpenOptions {
            ty: Some(reading("Vec<f32>")),
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(opened.schema(), reading("Vec<f32>").schema);
    // Tools open without a type, and see the schema too.
    let tool = Segment::open(
        &addr,
        &OpenOptions {
            ty: None,
            read_only: true,
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(tool.schema(), created.schema());
}

#[test]
fn another_structure_is_refused_naming_the_field() {
    let scratch = TempDir::new("open-errors");
    let (addr, _seg) = create_reading(&scratch, "Vec<f64>");
    let err = Segment::open(
        &addr,
        &OpenOptions {
            ty: Some(reading("Vec<f32>")),
            ..opts()
        },
    )
    .unwrap_err();
    let msg = err.to_string();
    match err {
        OpenError::TypeMismatch { difference, .. } => assert_eq!(
            difference.as_deref(),
            Some("field `Reading.values`: Vec<f32> here, Vec<f64> in the segment")
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        msg,
        "message type mismatch: `Rkyv<Reading>` differs from the segment's: \
         field `Reading.values`: Vec<f32> here, Vec<f64> in the segment"
    );
}

#[test]
fn a_schema_changed_in_the_file_is_refused() {
    // Same length, one byte changed: the header's hash no longer matches.
    let scratch = TempDir::new("open-errors");
    let mut bytes = valid_bytes(&scratch);
    let end = bytes.len();
    bytes[end - 1] = b'2'; // "u64" -> "u62"
    let path = scratch.path().join("bad");
    write_file(&path, &bytes);
    let err = Segment::open(&Address::File(path), &opts()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.ends_with(": `u64` here, `u62` in the segment"),
        "{text}"
    );
}

#[test]
fn schema_fields_that_disagree_with_the_layout() {
    let r = open_tampered(|b| put_u64(b, offsets::SCHEMA_OFFSET, 0));
    assert!(
        matches!(
            r,
            Err(OpenError::LayoutMismatch {
                field: "schema offset",
                ..
            })
        ),
        "{r:?}"
    );
    let r = open_tampered(|b| put_u64(b, offsets::SCHEMA_LEN, u64::MAX));
    assert!(
        matches!(
            r,
            Err(OpenError::LayoutMismatch {
                field: "schema length",
                ..
            })
        ),
        "{r:?}"
    );
    // A length that points past the file's end: the total disagrees.
    let r = open_tampered(|b| put_u64(b, offsets::SCHEMA_LEN, 1000));
    assert!(
        matches!(
            r,
            Err(OpenError::LayoutMismatch {
                field: "total length",
                ..
            })
        ),
        "{r:?}"
    );
}

#[test]
fn a_schema_too_long_to_store_is_refused_at_creation() {
    let scratch = TempDir::new("open-errors");
    let spec = Spec {
        ty: TypeInfo {
            schema: "x".repeat(shmlane_shm::header::MAX_SCHEMA_LEN + 1),
            ..ty()
        },
        ..spec()
    };
    let addr = Address::File(scratch.path().join("long"));
    let r = Segment::create(&addr, &spec, &CreateOptions::default());
    assert!(matches!(r, Err(CreateError::SchemaTooLong { .. })), "{r:?}");
    assert!(!scratch.path().join("long").exists());
}
