//! `shmlane::segments`: listing, inspecting and removing segments, and
//! the one judgement of which are stale.

use shmlane::ipc::{Builder, Bytes, Role};
use shmlane::segments::{self, Address, Entry, OpenError, Peers, RemoveError, Status};
use shmlane_testkit::Cleanup;

fn listed(name: &str) -> Option<Entry> {
    segments::list()
        .into_iter()
        .find(|e| *e.address() == Address::Shm(name.to_owned()))
}

#[test]
fn parse_takes_a_bare_name_as_shm() {
    assert_eq!(
        segments::parse("demo").unwrap(),
        Address::Shm("demo".into())
    );
    assert_eq!(
        segments::parse("shm:demo").unwrap(),
        Address::Shm("demo".into())
    );
    assert!(matches!(
        segments::parse("file:/tmp/x").unwrap(),
        Address::File(_)
    ));
    assert!(segments::parse("pigeon:x").is_err());
}

#[test]
fn a_held_segment_is_live_and_kept_a_released_one_is_stale_and_removed() {
    let mut cleanup = Cleanup::new();
    let name = cleanup.unique_shm("segments-api");
    let addr = format!("shm:{name}");
    let chan = Builder::new(&addr)
        .unwrap()
        .spsc()
        .keep(true)
        .create::<Bytes>()
        .unwrap();
    let tx = chan.sender().unwrap();

    let entry = listed(&name).expect("listed");
    assert_eq!(entry.status(), Status::Live);
    assert_eq!(entry.being_created_by(), None);
    assert_eq!(entry.peers(Role::Sender), Peers { alive: 1, dead: 0 });
    assert_eq!(entry.peers(Role::Receiver), Peers::default());
    let seg = entry.segment().expect("readable");
    assert_eq!(seg.creator_pid(), std::process::id());
    drop(entry);

    let address = segments::parse(&name).unwrap();
    match segments::remove(&address) {
        Err(RemoveError::InUse { .. }) => {}
        other => panic!("removed a live segment: {other:?}"),
    }
    assert!(listed(&name).is_some());

    drop(tx);
    drop(chan);
    let entry = Entry::inspect(address.clone());
    assert_eq!(entry.status(), Status::Stale("no live process holds it"));
    drop(entry);
    segments::remove(&address).unwrap();
    assert!(listed(&name).is_none());
    match segments::remove(&address) {
        Err(RemoveError::Unreadable {
            error: OpenError::NotFound(_),
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
}

// `remove_stale` sweeps all of /dev/shm, so it is tested once, through
// `shmlane rm --stale` (cli/tests/stale.rs), not beside other tests here.

#[test]
fn an_orphan_is_removed_only_when_nobody_holds_it() {
    let mut cleanup = Cleanup::new();
    let name = cleanup.unique_shm("segments-orphan");
    let addr = format!("shm:{name}");
    let created = Builder::new(&addr)
        .unwrap()
        .spsc()
        .keep(true)
        .create::<Bytes>()
        .unwrap();
    // Its creator still holds it: not an orphan.
    let opened = Builder::new(&addr).unwrap().open::<Bytes>().unwrap();
    assert!(!segments::is_orphan(&opened));
    assert!(!segments::remove_orphan(opened));
    drop(created);
    let opened = Builder::new(&addr).unwrap().open::<Bytes>().unwrap();
    assert!(segments::is_orphan(&opened));
    assert!(segments::remove_orphan(opened));
    assert!(listed(&name).is_none());
}

/// The same on a System V segment: removed by id, and its key is free
/// afterwards (nothing else is removed).
#[test]
fn a_sysv_orphan_is_removed_only_when_nobody_holds_it() {
    let key = shmlane_testkit::unique_key();
    let mut cleanup = Cleanup::new();
    cleanup.sysv(key);
    let addr = format!("sysv:{key}");
    let created = Builder::new(&addr)
        .unwrap()
        .spsc()
        .keep(true)
        .create::<Bytes>()
        .unwrap();
    let opened = Builder::new(&addr).unwrap().open::<Bytes>().unwrap();
    assert!(!segments::is_orphan(&opened));
    assert!(!segments::remove_orphan(opened));
    drop(created);
    let opened = Builder::new(&addr).unwrap().open::<Bytes>().unwrap();
    assert!(segments::is_orphan(&opened));
    let sems = opened.segment().sysv_semaphores().unwrap();
    assert!(segments::remove_orphan(opened));
    assert!(shmlane_sys::sysv::shm_get(key).is_err());
    assert!(
        shmlane_sys::sysv::sem_stat(sems).is_err(),
        "its set went too"
    );
}
