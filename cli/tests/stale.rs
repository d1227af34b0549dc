//! Creators killed at random points leak nothing `shmlane rm --stale`
//! cannot find, and `rm --stale` never removes a live segment (one held by
//! a live process, or one a live, even stopped, creator is still building).
//!
//! Runs in a private mount namespace with its own tmpfs on `/dev/shm`, so
//! `rm --stale` sees only this test's segments (skipped, saying why, where
//! `unshare -m` is not permitted). `cargo test` runs 200 creators; the
//! ignored test (run by `.ci/run`) runs the 1,000.

use std::process::Command;
use std::time::Duration;

use shmlane::ipc::Builder;
use shmlane_testkit::{self as kit, Kid};

/// The crash points a creator passes, in order.
const LABELS: [&str; 5] = [
    "create.after_open",
    "create.after_reserve",
    "create.after_header",
    "create.before_rename",
    "create.after_rename",
];

#[test]
fn child() {
    let Some(role) = kit::role() else { return };
    assert_eq!(role, "creator");
    let name = kit::env("NAME");
    let chan = Builder::new(&format!("shm:{name}"))
        .unwrap()
        .capacity(64)
        .keep(true)
        .create::<u64>()
        .unwrap();
    let _tx = chan.sender().unwrap();
    println!("made");
    // Hold it until killed.
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

fn shmlane(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_shmlane"))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "shmlane {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// shmlane's files in /dev/shm: (public segments, private names).
fn census() -> (Vec<String>, Vec<String>) {
    let mut public = Vec::new();
    let mut private = Vec::new();
    for e in std::fs::read_dir("/dev/shm").unwrap().flatten() {
        let name = e.file_name().into_string().unwrap();
        if name.starts_with(shmlane_shm::STAGING_PREFIX) {
            private.push(name);
        } else if std::fs::read(e.path()).is_ok_and(|b| b.starts_with(&shmlane_shm::header::MAGIC))
        {
            public.push(name);
        } else {
            // Neither: nothing a creator leaves any more (the issue's
            // "empty or header-less files").
            panic!("a file that is neither a segment nor a private name: {name}");
        }
    }
    (public, private)
}

/// xorshift64*: random enough to pick crash points, and reproducible.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn signal(kid: &Kid, sig: libc::c_int) {
    // SAFETY: signalling our own child, which is not yet reaped.
    unsafe { libc::kill(kid.pid() as libc::pid_t, sig) };
}

fn killed_creators_leave_nothing_rm_stale_misses(n: usize) {
    let seed = std::env::var("SHMLANE_LEAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| (u64::from(std::process::id()) * 0x9e37_79b9) | 1);
    println!("seed {seed} (SHMLANE_LEAK_SEED reruns it)");
    let mut rng = Rng(seed);
    let (mut by_label, mut by_kill) = (0, 0);
    // Batches of creators in parallel, each killed at a random point: at a
    // crash point (SIGKILL from inside), or by us after a random delay.
    for batch in (0..n).collect::<Vec<_>>().chunks(16) {
        let mut kids = Vec::new();
        for _ in batch {
            let name = kit::unique("leak");
            let mut envs = vec![("NAME", name)];
            let pick = rng.below(LABELS.len() as u64 + 1) as usize;
            let delay = if pick < LABELS.len() {
                envs.push(("SHMLANE_FAULT", LABELS[pick].to_owned()));
                by_label += 1;
                None
            } else {
                by_kill += 1;
                Some(Duration::from_micros(rng.below(20_000)))
            };
            kids.push((Kid::spawn("child", "creator", &envs), delay));
        }
        for (kid, delay) in &mut kids {
            if let Some(d) = delay {
                std::thread::sleep(*d);
                kid.kill();
            }
            kid.wait_timeout(Duration::from_secs(30))
                .expect("creator hung");
        }
    }
    // Live ones: two creators that finished and hold their segment, and two
    // stopped at a random moment while creating.
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut kid = Kid::spawn("child", "creator", &[("NAME", kit::unique("live"))]);
        assert!(kid.wait_for("made"));
        holders.push(kid);
    }
    let mut stopped = Vec::new();
    for _ in 0..2 {
        let kid = Kid::spawn("child", "creator", &[("NAME", kit::unique("stopped"))]);
        std::thread::sleep(Duration::from_micros(rng.below(10_000)));
        signal(&kid, libc::SIGSTOP);
        stopped.push(kid);
    }
    let (public, private) = census();
    let ls = shmlane(&["ls"]);
    let ls_stale = ls.lines().filter(|l| l.contains("stale")).count();
    let out = shmlane(&["rm", "--stale"]);
    let removed = out.lines().filter(|l| l.starts_with("removed ")).count();
    let (public_after, private_after) = census();
    println!(
        "FIGURE {n} creators killed at random points ({by_label} at a crash point, {by_kill} \
         after a random delay): left {} public segments and {} private names; `ls` called {ls_stale} \
         stale; `rm --stale` removed {removed} and left {} + {} (the 4 live ones' files: {} + {})",
        public.len(),
        private.len(),
        public_after.len(),
        private_after.len(),
        public_after.len(),
        private_after.len(),
    );
    assert_eq!(ls_stale, removed, "ls and rm --stale agree:\n{ls}\n{out}");
    // Nothing but the live processes' files is left...
    assert!(public_after.len() + private_after.len() <= 4);
    // ...and every live one survived: the holders' segments are there, and
    // the stopped creators finish once continued.
    for kid in &mut holders {
        kid.say("bye");
        assert!(kid.wait_timeout(Duration::from_secs(30)).unwrap().success());
    }
    for kid in &mut stopped {
        signal(kid, libc::SIGCONT);
        assert!(kid.wait_for("made"), "a stopped creator lost its segment");
        kid.say("bye");
        assert!(kid.wait_timeout(Duration::from_secs(30)).unwrap().success());
    }
    // All dead now: everything is stale, and goes.
    shmlane(&["rm", "--stale"]);
    assert_eq!(census(), (vec![], vec![]), "0 shmlane segments left");
}

#[test]
fn two_hundred_killed_creators_leak_nothing() {
    if !kit::has_private_shm() {
        kit::rerun_with_private_shm("two_hundred_killed_creators_leak_nothing", "256m", &[]);
        return;
    }
    killed_creators_leave_nothing_rm_stale_misses(200);
}

#[test]
#[ignore = "the issue's full 1,000 creators; .ci/run runs it"]
fn a_thousand_killed_creators_leak_nothing() {
    if !kit::has_private_shm() {
        kit::rerun_with_private_shm("a_thousand_killed_creators_leak_nothing", "512m", &[]);
        return;
    }
    killed_creators_leave_nothing_rm_stale_misses(1000);
}
