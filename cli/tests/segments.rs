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

#[test]
fn ls_stat_and_rm() {
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
