//! Message type schemas: `#[derive(shmlane::Message)]` records a type's
//! structure (field names, order and types, recursively; not its module
//! path) in the segment, and opening with another structure is refused
//! with the first difference named. Pod and raw-bytes channels keep
//! their checks.

use std::time::Duration;

use shmlane::ipc::{Builder, Bytes, Channel, Message, OpenError, Rkyv};
use shmlane::schema::canonical;
use shmlane_testkit::{env, role, Cleanup, Kid};

/// The type as one program defines it.
mod v1 {
    #[derive(shmlane::Message, Debug, PartialEq)]
    #[rkyv(derive(Debug))]
    pub struct Reading {
        pub sensor: String,
        pub values: Vec<f32>,
    }
}

/// The same structure, defined again elsewhere (as another program would).
mod elsewhere {
    #[derive(shmlane::Message, Debug, PartialEq)]
    pub struct Reading {
        pub sensor: String,
        pub values: Vec<f32>,
    }
}

/// The values widened to `f64`.
mod widened {
    #[derive(shmlane::Message, Debug, PartialEq)]
    pub struct Reading {
        pub sensor: String,
        pub values: Vec<f64>,
    }
}

/// The two fields in the other order.
mod swapped {
    #[derive(shmlane::Message, Debug, PartialEq)]
    pub struct Reading {
        pub values: Vec<f32>,
        pub sensor: String,
    }
}

/// The same structure under another name: refused, unless the name is
/// pinned.
mod renamed {
    #[derive(shmlane::Message, Debug, PartialEq)]
    pub struct SensorReading {
        pub sensor: String,
        pub values: Vec<f32>,
    }

    #[derive(shmlane::Message, Debug, PartialEq)]
    #[shmlane(name = "Reading")]
    pub struct PinnedReading {
        pub sensor: String,
        pub values: Vec<f32>,
    }
}

/// Nesting, tuple and unit structs, enums with every kind of variant,
/// explicit discriminants and std containers.
mod fleet {
    #[derive(shmlane::Message, Debug, PartialEq, Clone, Copy)]
    #[rkyv(derive(Debug))]
    pub struct Point(pub f32, pub f32);

    #[derive(shmlane::Message, Debug, PartialEq, Clone, Copy)]
    #[rkyv(derive(Debug))]
    pub struct Marker;

    #[derive(shmlane::Message, Debug, PartialEq, Clone, Copy)]
    #[rkyv(derive(Debug))]
    pub enum Level {
        Low = 1,
        High = 5,
    }

    #[derive(shmlane::Message, Debug, PartialEq, Clone)]
    #[rkyv(derive(Debug))]
    pub enum Status {
        Ok,
        Degraded(Level),
        Failed { reason: String, at: Option<Point> },
    }

    #[derive(shmlane::Message, Debug, PartialEq, Clone)]
    #[rkyv(derive(Debug))]
    pub struct Report {
        pub id: u64,
        pub path: Vec<Point>,
        pub status: Status,
        pub marker: Marker,
        pub tag: (u8, char),
        pub grid: [[u16; 2]; 2],
        pub note: Box<str>,
    }

    pub fn report(id: u64) -> Report {
        Report {
            id,
            path: vec![Point(1.0, 2.0), Point(3.5, -1.0)],
            status: Status::Failed {
                reason: "stalled".into(),
                at: Some(Point(0.5, 0.25)),
            },
            marker: Marker,
            tag: (7, 'x'),
            grid: [[1, 2], [3, 4]],
            note: "ok".into(),
        }
    }
}

/// `fleet` with one nested field changed: `Point`'s second coordinate.
mod fleet_point_f64 {
    #[derive(shmlane::Message)]
    pub struct Point(pub f32, pub f64);

    #[derive(shmlane::Message)]
    pub struct Marker;

    #[derive(shmlane::Message)]
    pub enum Level {
        Low = 1,
        High = 5,
    }

    #[derive(shmlane::Message)]
    pub enum Status {
        Ok,
        Degraded(Level),
        Failed { reason: String, at: Option<Point> },
    }

    #[derive(shmlane::Message)]
    pub struct Report {
        pub id: u64,
        pub path: Vec<Point>,
        pub status: Status,
        pub marker: Marker,
        pub tag: (u8, char),
        pub grid: [[u16; 2]; 2],
        pub note: Box<str>,
    }
}

/// `fleet` with a variant added to the enum.
mod fleet_more_status {
    use super::fleet::{Level, Marker, Point};

    #[derive(shmlane::Message)]
    pub enum Status {
        Ok,
        Degraded(Level),
        Failed { reason: String, at: Option<Point> },
        Retired,
    }

    #[derive(shmlane::Message)]
    pub struct Report {
        pub id: u64,
        pub path: Vec<Point>,
        pub status: Status,
        pub marker: Marker,
        pub tag: (u8, char),
        pub grid: [[u16; 2]; 2],
        pub note: Box<str>,
    }
}

/// The derive `shmlane::Message` and the trait `shmlane::ipc::Message` share
/// a name in two namespaces: both can be imported at once.
mod both_names {
    use shmlane::ipc::Message;
    use shmlane::Message;

    #[derive(Message)]
    pub struct Ping {
        pub n: u32,
    }

    /// The codec id of a message kind (needs the trait).
    pub fn codec<M: Message>() -> u32 {
        M::KIND
    }
}

/// A Pod message, derived through shmlane's re-export of bytemuck.
#[derive(shmlane::bytemuck::Pod, shmlane::bytemuck::Zeroable, Clone, Copy, Debug, PartialEq)]
#[bytemuck(crate = "shmlane::bytemuck")]
#[repr(C)]
struct Quote {
    seq: u64,
    bid: f64,
}

/// A fresh `shm:` address, removed however the test ends.
fn address(tag: &str, cleanup: &mut Cleanup) -> String {
    format!("shm:{}", cleanup.unique_shm(tag))
}

fn create<M: Message>(addr: &str) -> Channel<M> {
    Builder::new(addr)
        .unwrap()
        .message_size(256)
        .create::<M>()
        .unwrap()
}

fn open<M: Message>(addr: &str) -> Result<Channel<M>, OpenError> {
    Builder::new(addr)
        .unwrap()
        .open_timeout(Duration::from_secs(10))
        .open::<M>()
}

/// The mismatch's first difference and whole message.
fn mismatch<M: Message>(addr: &str) -> (String, String) {
    match open::<M>(addr) {
        Err(e @ OpenError::TypeMismatch { .. }) => {
            let text = e.to_string();
            let OpenError::TypeMismatch { difference, .. } = e else {
                unreachable!()
            };
            (difference.unwrap_or_default(), text)
        }
        Err(other) => panic!("expected a type mismatch, got {other}"),
        Ok(_) => panic!("expected a type mismatch, but it opened"),
    }
}

#[test]
fn the_schema_records_structure_not_paths() {
    let text = canonical::<v1::Reading>();
    assert_eq!(
        text,
        "message: Reading\n\
         struct `Reading`: { sensor, values }\n\
         field `Reading.sensor`: String\n\
         field `Reading.values`: Vec<f32>"
    );
    assert_eq!(canonical::<elsewhere::Reading>(), text);
    assert_eq!(canonical::<renamed::PinnedReading>(), text);
    assert_ne!(canonical::<renamed::SensorReading>(), text);
}

#[test]
fn the_derive_and_the_trait_called_message_coexist() {
    assert_eq!(
        both_names::codec::<Rkyv<both_names::Ping>>(),
        shmlane::codec::kind::RKYV
    );
    assert_eq!(shmlane::schema::type_expr::<both_names::Ping>(), "Ping");
}

#[test]
fn widening_a_field_is_refused_naming_the_field() {
    let mut cleanup = Cleanup::new();
    let addr = address("schema-widen", &mut cleanup);
    let _chan = create::<Rkyv<v1::Reading>>(&addr);
    let (difference, text) = mismatch::<Rkyv<widened::Reading>>(&addr);
    assert_eq!(
        difference,
        "field `Reading.values`: Vec<f64> here, Vec<f32> in the segment"
    );
    assert_eq!(
        text,
        "message type mismatch: `Rkyv<Reading>` differs from the segment's: \
         field `Reading.values`: Vec<f64> here, Vec<f32> in the segment"
    );
}

#[test]
fn swapping_two_fields_is_refused() {
    let mut cleanup = Cleanup::new();
    let addr = address("schema-swap", &mut cleanup);
    let _chan = create::<Rkyv<v1::Reading>>(&addr);
    let (difference, _) = mismatch::<Rkyv<swapped::Reading>>(&addr);
    assert_eq!(
        difference,
        "struct `Reading`: { values, sensor } here, { sensor, values } in the segment"
    );
}

#[test]
fn the_same_struct_in_another_module_opens_and_round_trips() {
    let mut cleanup = Cleanup::new();
    let addr = address("schema-same", &mut cleanup);
    let created = create::<Rkyv<v1::Reading>>(&addr);
    let opened = open::<Rkyv<elsewhere::Reading>>(&addr).unwrap();
    let (tx, rx) = (opened.sender().unwrap(), created.receiver().unwrap());
    tx.send(&elsewhere::Reading {
        sensor: "t1".into(),
        values: vec![1.0, 2.0],
    })
    .unwrap();
    assert_eq!(
        rx.recv().unwrap(),
        v1::Reading {
            sensor: "t1".into(),
            values: vec![1.0, 2.0]
        }
    );
}

#[test]
fn a_pinned_name_keeps_a_renamed_type_compatible() {
    let mut cleanup = Cleanup::new();
    let addr = address("schema-pin", &mut cleanup);
    let created = create::<Rkyv<v1::Reading>>(&addr);
    // Renamed without a pin: another type.
    let (difference, _) = mismatch::<Rkyv<renamed::SensorReading>>(&addr);
    assert_eq!(
        difference,
        "message: SensorReading here, Reading in the segment"
    );
    // Pinned to the old name: the same type.
    let opened = open::<Rkyv<renamed::PinnedReading>>(&addr).unwrap();
    opened
        .sender()
        .unwrap()
        .send(&renamed::PinnedReading {
            sensor: "t2".into(),
            values: vec![0.5],
        })
        .unwrap();
    let got = created.receiver().unwrap().recv().unwrap();
    assert_eq!(got.sensor, "t2");
    assert_eq!(got.values, [0.5]);
}

#[test]
fn nested_types_and_enums_are_recorded_and_checked() {
    assert_eq!(
        canonical::<fleet::Report>(),
        "message: Report\n\
         struct `Report`: { id, path, status, marker, tag, grid, note }\n\
         field `Report.id`: u64\n\
         field `Report.path`: Vec<Point>\n\
         field `Report.status`: Status\n\
         field `Report.marker`: Marker\n\
         field `Report.tag`: (u8, char)\n\
         field `Report.grid`: [[u16; 2]; 2]\n\
         field `Report.note`: Box<str>\n\
         struct `Point`: (_, _)\n\
         field `Point.0`: f32\n\
         field `Point.1`: f32\n\
         enum `Status`: { Ok, Degraded(_), Failed { reason, at } }\n\
         field `Status::Degraded.0`: Level\n\
         field `Status::Failed.reason`: String\n\
         field `Status::Failed.at`: Option<Point>\n\
         enum `Level`: { Low = 1, High = 5 }\n\
         struct `Marker`: unit"
    );

    let mut cleanup = Cleanup::new();
    let addr = address("schema-nested", &mut cleanup);
    let chan = create::<Rkyv<fleet::Report>>(&addr);
    let (difference, _) = mismatch::<Rkyv<fleet_point_f64::Report>>(&addr);
    assert_eq!(difference, "field `Point.1`: f64 here, f32 in the segment");
    let (difference, _) = mismatch::<Rkyv<fleet_more_status::Report>>(&addr);
    assert_eq!(
        difference,
        "enum `Status`: { Ok, Degraded(_), Failed { reason, at }, Retired } here, \
         { Ok, Degraded(_), Failed { reason, at } } in the segment"
    );

    // The real thing round-trips, in place and owned.
    let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
    tx.send(&fleet::report(1)).unwrap();
    tx.send(&fleet::report(2)).unwrap();
    {
        let archived = rx.recv_ref().unwrap();
        assert_eq!(archived.id, 1);
        assert_eq!(archived.path.len(), 2);
        assert_eq!(archived.grid[1][0], 3);
        assert_eq!(&*archived.note, "ok");
    }
    assert_eq!(rx.recv().unwrap(), fleet::report(2));
}

#[test]
fn pod_and_bytes_channels_keep_their_checks() {
    let mut cleanup = Cleanup::new();
    let pod = address("schema-pod", &mut cleanup);
    let chan = create::<Quote>(&pod);
    let other = open::<Quote>(&pod).unwrap();
    other
        .sender()
        .unwrap()
        .send(Quote { seq: 1, bid: 2.5 })
        .unwrap();
    assert_eq!(
        chan.receiver().unwrap().recv().unwrap(),
        Quote { seq: 1, bid: 2.5 }
    );
    // Another Pod type of the same size is still another type.
    let text = open::<[u64; 2]>(&pod).unwrap_err().to_string();
    assert!(
        text.contains("Quote") && text.contains("[u64; 2]"),
        "{text}"
    );
    // So is an rkyv message.
    let text = open::<Rkyv<v1::Reading>>(&pod).unwrap_err().to_string();
    assert!(text.contains("Rkyv<Reading>"), "{text}");

    let bytes = address("schema-bytes", &mut cleanup);
    let chan = create::<Bytes>(&bytes);
    let other = open::<Bytes>(&bytes).unwrap();
    other.sender().unwrap().send(b"raw").unwrap();
    assert_eq!(&*chan.receiver().unwrap().recv_ref().unwrap(), b"raw");
    let text = open::<Quote>(&bytes).unwrap_err().to_string();
    assert!(text.contains("Bytes") && text.contains("Quote"), "{text}");
}

/// Another process, with its own definition of the type, opens the
/// channel: refused with `widened::Reading`, accepted with
/// `elsewhere::Reading`, whose messages arrive intact.
#[test]
fn a_second_process_with_its_own_definition() {
    let mut cleanup = Cleanup::new();
    let addr = address("schema-xproc", &mut cleanup);
    let chan = create::<Rkyv<v1::Reading>>(&addr);
    let rx = chan.receiver().unwrap();
    let mut kid = Kid::spawn("child", "sender", &[("ADDR", addr.clone())]);
    let (lines, status) = kid.finish(Duration::from_secs(60)).expect("the child hung");
    assert!(status.success(), "{lines:?}");
    assert!(
        lines.iter().any(|l| l
            == "refused: message type mismatch: `Rkyv<Reading>` differs from the segment's: \
                field `Reading.values`: Vec<f64> here, Vec<f32> in the segment"),
        "{lines:?}"
    );
    let got = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(
        got,
        v1::Reading {
            sensor: "from a child".into(),
            values: vec![1.0, 2.0]
        }
    );
}

/// The child half of the cross-process test.
#[test]
fn child() {
    let Some(role) = role() else { return };
    assert_eq!(role, "sender");
    let addr = env("ADDR");
    match open::<Rkyv<widened::Reading>>(&addr) {
        Err(e) => println!("refused: {e}"),
        Ok(_) => panic!("a widened type opened"),
    }
    let tx = open::<Rkyv<elsewhere::Reading>>(&addr)
        .unwrap()
        .sender()
        .unwrap();
    tx.send(&elsewhere::Reading {
        sensor: "from a child".into(),
        values: vec![1.0, 2.0],
    })
    .unwrap();
}
