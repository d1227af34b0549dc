//! `shmlane ls`, `stat` and `rm` against real segments.

use std::process::Command;

use shmlane::ipc::Builder;
use shmlane_testkit::Cleanup;

fn shmlane(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shmlane"))
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn line_of<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find(|l| l.contains(name))
        .unwrap_or_else(|| panic!("{name} not in:\n{text}"))
}

/// Held by the tests that run `rm --stale` (which sweeps every stale
/// segment and queue of the machine) and by those that make stale ones on
/// purpose, so that one's sweep never takes the other's.
static SWEEP: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn sweep_lock() -> std::sync::MutexGuard<'static, ()> {
    SWEEP.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn ls_stat_and_rm() {
    let _sweep = sweep_lock();
    let pid = std::process::id();
    // Removes the kept segments even if the test fails.
    let mut cleanup = Cleanup::new();
    let live = cleanup.unique_shm("cli-live");
    let stale = cleanup.unique_shm("cli-stale");

    // A live channel: created here, with a sender attached and 3 messages.
    let chan = Builder::new(&format!("shm:{live}"))
        .unwrap()
        .capacity(16)
        .create::<u64>()
        .unwrap();
    let tx = chan.sender().unwrap();
    for i in 0..3 {
        tx.send(i).unwrap();
    }
    // A stale one: kept after its creator dropped it, nobody attached.
    drop(
        Builder::new(&format!("shm:{stale}"))
            .unwrap()
            .spsc()
            .keep(true)
            .create::<u32>()
            .unwrap(),
    );

    let (ok, out) = shmlane(&["ls"]);
    assert!(ok, "{out}");
    let row = line_of(&out, &live);
    assert!(
        row.contains("mpmc") && row.contains(" 16 ") && row.contains("live"),
        "{row}"
    );
    assert!(
        row.split_whitespace().any(|w| w == "3"),
        "3 buffered: {row}"
    );
    assert!(row.contains("1/0"), "one live sender: {row}");
    let row = line_of(&out, &stale);
    assert!(row.contains("spsc") && row.contains("stale"), "{row}");

    let (ok, out) = shmlane(&["stat", &live]);
    assert!(ok, "{out}");
    assert!(
        out.contains("u64") && out.contains("buffered       3 messages"),
        "{out}"
    );
    assert!(
        out.contains(&format!("sender   pid {pid}")) && out.contains("alive"),
        "{out}"
    );

    // A live segment is never removed.
    let (ok, out) = shmlane(&["rm", &live]);
    assert!(!ok && out.contains("in use"), "{out}");
    assert!(std::path::Path::new(&format!("/dev/shm/{live}")).exists());

    // --stale removes the stale one and leaves the live one.
    let (ok, out) = shmlane(&["rm", "--stale"]);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("removed shm:{stale}")), "{out}");
    assert!(!std::path::Path::new(&format!("/dev/shm/{stale}")).exists());
    assert!(std::path::Path::new(&format!("/dev/shm/{live}")).exists());

    // Once its creator and sender are gone, it is stale and goes by name.
    drop(tx);
    let chan_path = format!("/dev/shm/{live}");
    std::mem::forget(chan); // keep the name: the creator would unlink it
    let (ok, out) = shmlane(&["stat", &live]);
    assert!(ok, "{out}");
    // This process still holds the creator lock through the forgotten
    // channel, so it is still in use: rm must refuse.
    let (ok, _) = shmlane(&["rm", &live]);
    assert!(!ok);
    assert!(std::path::Path::new(&chan_path).exists());
}

#[test]
fn bad_targets_say_what_is_wrong() {
    let (ok, out) = shmlane(&["stat", "shm:shmlane-cli-does-not-exist"]);
    assert!(!ok && out.contains("does not exist"), "{out}");
    let (ok, out) = shmlane(&["stat", "pigeon:x"]);
    assert!(!ok && out.contains("unknown address scheme"), "{out}");
    let (ok, out) = shmlane(&["rm"]);
    assert!(!ok && out.contains("--stale"), "{out}");
    let (ok, out) = shmlane(&["frobnicate"]);
    assert!(!ok && out.contains("unrecognized subcommand"), "{out}");
}

#[test]
fn stat_shows_an_rkyv_channels_schema() {
    use shmlane::codec::sample::Order;
    use shmlane::ipc::Rkyv;

    let mut cleanup = Cleanup::new();
    let name = cleanup.unique_shm("cli-schema");
    let _chan = Builder::new(&format!("shm:{name}"))
        .unwrap()
        .create::<Rkyv<Order>>()
        .unwrap();
    let (ok, out) = shmlane(&["stat", &name]);
    assert!(ok, "{out}");
    assert!(out.contains("Rkyv<Order>"), "{out}");
    assert!(out.contains("schema         message: Order\n"), "{out}");
    assert!(
        out.contains("               field `Order.symbol`: String\n"),
        "{out}"
    );
}

#[test]
fn ls_and_stat_show_topics_and_services() {
    let mut cleanup = Cleanup::new();
    let topic_name = cleanup.unique_shm("cli-topic");
    let topic = Builder::new(&format!("shm:{topic_name}"))
        .unwrap()
        .capacity(8)
        .max_subscribers(3)
        .create_topic::<u64>()
        .unwrap();
    let publisher = topic.publisher().unwrap();
    let mut sub = topic.subscriber().unwrap();
    for i in 0..3 {
        publisher.send(i).unwrap();
    }
    assert_eq!(sub.recv().unwrap(), 0);

    let svc_name = cleanup.unique_shm("cli-svc");
    let addr = format!("shm:{svc_name}");
    let mut server = Builder::new(&addr)
        .unwrap()
        .create_server::<u64, u64>()
        .unwrap();
    let serving = std::thread::spawn(move || {
        let (client, n) = server.recv().unwrap();
        server.reply(client, n + 1).unwrap();
        server
    });
    let mut client = Builder::new(&addr).unwrap().connect::<u64, u64>().unwrap();
    assert_eq!(client.call(1).unwrap(), 2);
    let server = serving.join().unwrap();

    let (ok, ls) = shmlane(&["ls"]);
    assert!(ok, "{ls}");
    assert!(line_of(&ls, &topic_name).contains(" topic "), "{ls}");
    assert!(
        line_of(&ls, &format!("{svc_name} ")).contains(" service "),
        "{ls}"
    );
    assert!(
        line_of(&ls, &format!("{svc_name}.")).contains(" client "),
        "{ls}"
    );

    let (ok, stat) = shmlane(&["stat", &topic_name]);
    assert!(ok, "{stat}");
    assert!(
        stat.contains("block policy, at most 3 subscribers"),
        "{stat}"
    );
    assert!(stat.contains("published      3 messages"), "{stat}");
    assert!(stat.contains("next position 1 (2 unread)"), "{stat}");
    assert!(line_of(&stat, "publisher").contains("alive"), "{stat}");

    let (ok, stat) = shmlane(&["stat", &svc_name]);
    assert!(ok, "{stat}");
    assert!(stat.contains("server alive"), "{stat}");
    assert!(
        line_of(&stat, "client         pid").contains("(connected)"),
        "{stat}"
    );
    drop((client, server, sub, publisher, topic));
}

/// System V segments and queues in `ls`, `stat` and `rm`: live ones shown
/// and never removed, stale ones (a kept segment nobody holds, a queue
/// whose receiver was killed, a semaphore set nothing names) removed by
/// `rm --stale` or by name.
#[test]
fn sysv_segments_and_queues() {
    use shmlane::transport::{Address, FrameReceiver, Options};
    use shmlane_sys::sysv;

    let _sweep = sweep_lock();
    let mut cleanup = Cleanup::new();
    let [live, stale, queue, dead_queue] = [0; 4].map(|_| {
        let k = shmlane_testkit::unique_key();
        cleanup.sysv(k);
        k
    });
    let text = |k: i32| sysv::key_text(k);

    // A live channel with a sender and 3 messages; a stale, kept one.
    let chan = Builder::new(&format!("sysv:{live}"))
        .unwrap()
        .capacity(16)
        .create::<u64>()
        .unwrap();
    let tx = chan.sender().unwrap();
    for i in 0..3 {
        tx.send(i).unwrap();
    }
    drop(
        Builder::new(&format!("sysv:{stale}"))
            .unwrap()
            .spsc()
            .keep(true)
            .create::<u32>()
            .unwrap(),
    );
    let stale_id = sysv::shm_get(stale).unwrap();
    // A live queue (its receiver here), and one whose receiver is killed.
    let rx = FrameReceiver::bind(
        &Address::parse(&format!("sysvmq:{queue}")).unwrap(),
        &Options::new(),
    )
    .unwrap();
    let mut recv = shmlane_testkit::Kid::from_child(
        Command::new(env!("CARGO_BIN_EXE_shmlane"))
            .args(["recv", &format!("sysvmq:{dead_queue}")])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let start = std::time::Instant::now();
    while sysv::msg_get(dead_queue).is_err() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "no queue"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    recv.kill();
    recv.wait();
    // A segment's semaphore set nothing names (what a process killed as
    // the last user of a removed segment leaves).
    let orphan = sysv::sem_create(sysv::PRIVATE, shmlane_shm::SYSV_SEMS, 0o600).unwrap();
    sysv::sem_set_value(orphan, shmlane_shm::SYSV_MARK, shmlane_shm::SYSV_MARK_VALUE).unwrap();

    let (ok, out) = shmlane(&["ls"]);
    assert!(ok, "{out}");
    let row = line_of(&out, &format!("sysv:{}", text(live)));
    assert!(
        row.contains("sysv")
            && row.contains("mpmc")
            && row.contains(" 16 ")
            && row.contains("live"),
        "{row}"
    );
    assert!(row.contains("1/0") && row.contains("nattch 1"), "{row}");
    assert!(
        row.split_whitespace().any(|w| w == "3"),
        "3 buffered: {row}"
    );
    let row = line_of(&out, &format!("sysv:{}", text(stale)));
    assert!(row.contains("spsc") && row.contains("stale"), "{row}");
    let row = line_of(&out, &format!("sysvmq:{}", text(queue)));
    assert!(row.contains("alive") && row.contains("live"), "{row}");
    let row = line_of(&out, &format!("sysvmq:{}", text(dead_queue)));
    assert!(row.contains("dead") && row.contains("stale"), "{row}");

    let (ok, out) = shmlane(&["stat", &format!("sysv:{live}")]);
    assert!(ok && out.contains("buffered       3 messages"), "{out}");

    // Live ones are refused by name.
    let (ok, out) = shmlane(&["rm", &format!("sysv:{live}")]);
    assert!(!ok && out.contains("in use"), "{out}");
    let (ok, out) = shmlane(&["rm", &format!("sysvmq:{queue}")]);
    assert!(!ok && out.contains("receiver lives"), "{out}");
    let (ok, out) = shmlane(&["rm", "sysvmq:0x7fff1234"]);
    assert!(!ok && out.contains("no shmlane queue"), "{out}");

    // --stale takes the stale ones (and their semaphore sets) only.
    let (ok, out) = shmlane(&["rm", "--stale"]);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("removed sysv:{}", text(stale))),
        "{out}"
    );
    assert!(
        out.contains(&format!("removed sysvmq:{}", text(dead_queue))),
        "{out}"
    );
    assert!(
        out.contains(&format!("System V semaphore set {orphan}")),
        "{out}"
    );
    assert!(sysv::shm_stat(stale_id).is_err());
    assert!(sysv::msg_get(dead_queue).is_err() && sysv::sem_get(dead_queue).is_err());
    assert!(sysv::sem_stat(orphan).is_err());
    assert!(sysv::shm_get(live).is_ok() && sysv::msg_get(queue).is_ok());
    drop(rx);
    assert!(sysv::msg_get(queue).is_err() && sysv::sem_get(queue).is_err());
    drop((tx, chan));
    assert!(sysv::shm_get(live).is_err());
}
