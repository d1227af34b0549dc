//! A peer that truncates a `shm:` or `file:` segment, or a named
//! semaphore, under live processes: every process survives, sees a typed
//! error (`Disconnected` with `is_corrupted()`, or `Broken`), and can still
//! create a new channel. A SIGBUS outside any segment still does what it
//! did before shmlane was loaded.
//!
//! How long each process took to see the error is printed (a figure, not
//! an assertion). `SHMLANE_SIGBUS_TRIALS=N` runs every case N times.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use shmlane::ipc::{Builder, RingKind};
use shmlane::{AcquireError, RecvTimeoutError, Semaphore, TryAcquireError};
use shmlane_testkit::{self as kit, Kid};

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process.
fn now_ns() -> u64 {
    // SAFETY: `timespec` is plain data; clock_gettime fills it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out pointer and a clock every Linux has.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

const LIMIT: Duration = Duration::from_secs(30);

/// After the error: a new channel still works in this process.
fn prove_new_channel_works() {
    let name = kit::unique("after");
    let chan = Builder::new(&format!("shm:{name}"))
        .unwrap()
        .capacity(8)
        .create::<u64>()
        .unwrap();
    let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
    tx.send(5).unwrap();
    assert_eq!(rx.recv().unwrap(), 5);
    println!("new-ok");
}

#[test]
fn child() {
    let Some(role) = kit::role() else { return };
    let addr = kit::env("ADDR");
    let spsc = kit::env("KIND") == "spsc";
    match role.as_str() {
        "producer" => {
            let chan = Builder::new(&addr).unwrap().open::<u64>().unwrap();
            println!("ready");
            let corrupted = if spsc {
                let tx = chan.sender().unwrap();
                let mut i = 0u64;
                while tx.send_timeout(i, Duration::from_millis(50)).is_ok()
                    || !tx.is_corrupted()
                        && !matches!(tx.try_send(i), Err(shmlane::TrySendError::Disconnected(_)))
                {
                    i += 1;
                }
                tx.is_corrupted()
            } else {
                let tx = chan.sender().unwrap();
                let mut i = 0u64;
                loop {
                    match tx.send_timeout(i, Duration::from_millis(50)) {
                        Ok(()) => i += 1,
                        Err(shmlane::SendTimeoutError::Timeout(_)) => {}
                        Err(shmlane::SendTimeoutError::Disconnected(_)) => break,
                    }
                }
                tx.is_corrupted()
            };
            println!("gone {} {corrupted}", now_ns());
        }
        "consumer" => {
            let chan = Builder::new(&addr).unwrap().open::<u64>().unwrap();
            println!("ready");
            let rx = chan.receiver().unwrap();
            while !matches!(
                rx.recv_timeout(Duration::from_millis(50)),
                Err(RecvTimeoutError::Disconnected)
            ) {}
            let corrupted = rx.is_corrupted();
            println!("gone {} {corrupted}", now_ns());
        }
        "holder" => {
            let sem = Semaphore::open(&addr).unwrap();
            let _permit = sem.acquire().unwrap();
            println!("ready");
            loop {
                match sem.try_acquire() {
                    Err(TryAcquireError::NoPermits) => std::thread::sleep(Duration::from_millis(1)),
                    Err(TryAcquireError::Broken) => break,
                    other => panic!("{other:?}"),
                }
            }
            println!("gone {} {}", now_ns(), sem.is_broken());
        }
        "waiter" => {
            let sem = Semaphore::open(&addr).unwrap();
            println!("ready");
            let got = sem.acquire_timeout(LIMIT);
            assert!(matches!(got, Err(AcquireError::Broken)), "{got:?}");
            println!("gone {} {}", now_ns(), sem.is_broken());
        }
        "outside" => {
            // A segment is mapped, so the handler is installed...
            let _chan = Builder::new(&addr)
                .unwrap()
                .capacity(8)
                .create::<u64>()
                .unwrap();
            if std::env::var("OWN_HANDLER").is_ok() {
                install_exit_77_handler();
            }
            // ...and a fault in some other file mapping must still kill us.
            fault_outside_any_segment();
            println!("survived");
        }
        "outside-first" => {
            // The application's own handler comes first; shmlane chains to it.
            install_exit_77_handler();
            let _chan = Builder::new(&addr)
                .unwrap()
                .capacity(8)
                .create::<u64>()
                .unwrap();
            fault_outside_any_segment();
            println!("survived");
        }
        other => panic!("unknown role {other}"),
    }
    if role != "outside" && role != "outside-first" {
        prove_new_channel_works();
    }
}

extern "C" fn exit_77(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(77) };
}

fn install_exit_77_handler() {
    // SAFETY: plain data, then a valid handler that only calls _exit.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) = exit_77;
        act.sa_sigaction = f as libc::sighandler_t;
        act.sa_flags = libc::SA_SIGINFO;
        libc::sigaction(libc::SIGBUS, &act, std::ptr::null_mut());
    }
}

/// Maps a page of a scratch file, truncates the file, reads the page.
fn fault_outside_any_segment() {
    use std::os::fd::AsRawFd;
    let path = std::env::temp_dir().join(kit::unique("outside"));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    file.set_len(4096).unwrap();
    // SAFETY: a fresh shared mapping of our own file.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    file.set_len(0).unwrap();
    // SAFETY: a mapped page; the read faults with SIGBUS (the point).
    let v = unsafe { p.cast::<u8>().read_volatile() };
    println!("read {v}");
}

#[derive(Clone, Copy, Debug)]
enum Cut {
    Zero,
    Half,
    OneByteUnder,
    OneByte,
}

impl Cut {
    fn len(self, full: u64) -> u64 {
        match self {
            Self::Zero => 0,
            Self::Half => full / 2,
            Self::OneByteUnder => full - 1,
            Self::OneByte => 1,
        }
    }
}

const CUTS: [Cut; 4] = [Cut::Zero, Cut::Half, Cut::OneByteUnder, Cut::OneByte];

fn trials() -> usize {
    std::env::var("SHMLANE_SIGBUS_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

fn truncate(path: &std::path::Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// Waits for a kid's `gone NS CORRUPTED` and `new-ok`; returns the delay
/// after `cut_at` in microseconds, and the flag.
fn report(kid: &mut Kid, cut_at: u64) -> (u64, bool) {
    let line = kid.line().expect("kid died before reporting");
    let mut w = line.split_whitespace();
    assert_eq!(w.next(), Some("gone"), "{line}");
    let at: u64 = w.next().unwrap().parse().unwrap();
    let flag = w.next() == Some("true");
    assert!(kid.wait_for("new-ok"), "kid could not create a new channel");
    let status = kid.wait_timeout(LIMIT).expect("kid hung");
    assert!(status.success(), "{status:?}");
    (at.saturating_sub(cut_at) / 1000, flag)
}

fn channel_case(file: bool, kind: RingKind, cut: Cut) {
    let dir = kit::TempDir::new("sigbus");
    let name = kit::unique("sigbus");
    let (addr, path) = if file {
        let p = dir.path().join("chan.ring");
        (format!("file:{}", p.display()), p)
    } else {
        (
            format!("shm:{name}"),
            std::path::PathBuf::from(format!("/dev/shm/{name}")),
        )
    };
    let mut cleanup = kit::Cleanup::new();
    cleanup.path(&path);
    let mut b = Builder::new(&addr).unwrap().capacity(4096);
    if kind == RingKind::Spsc {
        b = b.spsc();
    }
    let chan = b.create::<u64>().unwrap();
    let full = std::fs::metadata(&path).unwrap().len();
    let kind_s = if kind == RingKind::Spsc {
        "spsc"
    } else {
        "mpmc"
    };
    let envs = [("ADDR", addr.clone()), ("KIND", kind_s.to_owned())];
    let mut prod = Kid::spawn("child", "producer", &envs);
    let mut cons = Kid::spawn("child", "consumer", &envs);
    assert!(prod.wait_for("ready") && cons.wait_for("ready"));
    std::thread::sleep(Duration::from_millis(20)); // let traffic flow
    let cut_at = now_ns();
    truncate(&path, cut.len(full));
    let (pd, pc) = report(&mut prod, cut_at);
    let (cd, cc) = report(&mut cons, cut_at);
    // The creator, which never touched the segment since, finds out too.
    assert!(!chan.segment().check_intact());
    println!(
        "FIGURE {} {kind_s} cut={cut:?}: producer survived, corrupted={pc}, {pd} us; \
         consumer survived, corrupted={cc}, {cd} us",
        if file { "file" } else { "shm" }
    );
    assert!(pc && cc, "both sides report the segment corrupted");
}

#[test]
fn truncating_a_channel_under_live_peers_kills_nobody() {
    for _ in 0..trials() {
        for file in [false, true] {
            for kind in [RingKind::Spsc, RingKind::Mpmc] {
                for cut in CUTS {
                    channel_case(file, kind, cut);
                }
            }
        }
    }
}

#[test]
fn truncating_a_semaphore_under_its_holder_and_waiter_kills_nobody() {
    for _ in 0..trials() {
        for cut in CUTS {
            let name = kit::unique("sigbus-sem");
            let mut cleanup = kit::Cleanup::new();
            cleanup.shm(&name);
            let sem = Semaphore::create(&name, 1).unwrap();
            let envs = [("ADDR", name.clone()), ("KIND", String::new())];
            let mut holder = Kid::spawn("child", "holder", &envs);
            assert!(holder.wait_for("ready"));
            let mut waiter = Kid::spawn("child", "waiter", &envs);
            assert!(waiter.wait_for("ready"));
            std::thread::sleep(Duration::from_millis(20));
            let path = format!("/dev/shm/{name}");
            let full = std::fs::metadata(&path).unwrap().len();
            let cut_at = now_ns();
            truncate(path.as_ref(), cut.len(full));
            let (hd, hb) = report(&mut holder, cut_at);
            let (wd, wb) = report(&mut waiter, cut_at);
            assert!(sem.is_broken());
            println!(
                "FIGURE semaphore cut={cut:?}: holder survived, broken={hb}, {hd} us; \
                 waiter survived, broken={wb}, {wd} us"
            );
            assert!(hb && wb);
        }
    }
}

#[test]
fn a_sigbus_outside_any_segment_still_kills_as_before() {
    let mut cleanup = kit::Cleanup::new();
    let mut envs_for = || {
        let name = kit::unique("outside");
        cleanup.shm(&name);
        vec![("ADDR", format!("shm:{name}")), ("KIND", String::new())]
    };
    // Default disposition: the process dies of SIGBUS.
    let mut kid = Kid::spawn("child", "outside", &envs_for());
    let status = kid.wait_timeout(LIMIT).expect("kid hung");
    assert_eq!(status.signal(), Some(libc::SIGBUS), "{status:?}");
    assert!(!kid.wait_for("survived"));
    // An application handler installed before the first segment is called.
    let mut kid = Kid::spawn("child", "outside-first", &envs_for());
    let status = kid.wait_timeout(LIMIT).expect("kid hung");
    assert_eq!(status.code(), Some(77), "{status:?}");
    // One installed after replaces ours, and is called.
    let mut envs2 = envs_for();
    envs2.push(("OWN_HANDLER", "1".into()));
    let mut kid = Kid::spawn("child", "outside", &envs2);
    let status = kid.wait_timeout(LIMIT).expect("kid hung");
    assert_eq!(status.code(), Some(77), "{status:?}");
}

#[test]
fn with_the_handler_switched_off_a_truncation_kills_as_any_mapping_would() {
    let name = kit::unique("sigbus-off");
    let addr = format!("shm:{name}");
    let mut cleanup = kit::Cleanup::new();
    cleanup.shm(&name);
    let _chan = Builder::new(&addr)
        .unwrap()
        .capacity(4096)
        .create::<u64>()
        .unwrap();
    let envs = [
        ("ADDR", addr.clone()),
        ("KIND", "mpmc".to_owned()),
        ("SHMLANE_SIGBUS", "off".to_owned()),
    ];
    let mut cons = Kid::spawn("child", "consumer", &envs);
    assert!(cons.wait_for("ready"));
    truncate(format!("/dev/shm/{name}").as_ref(), 0);
    let status = cons.wait_timeout(LIMIT).expect("kid hung");
    assert_eq!(status.signal(), Some(libc::SIGBUS), "{status:?}");
}

/// A truncation to the middle of a page zeroes the page's tail in the
/// shared file without faulting anyone. When that tail holds the stamp of
/// the slot a sender has reserved, its publishing CAS fails: the sender
/// must report the channel corrupted (the file is short), not a survivor
/// that skipped its slot. (Seen once in CI as `corrupted=false` in the
/// cross-process case above; this makes the moment deterministic.)
#[test]
fn a_truncation_that_zeroes_a_reserved_slot_reports_corruption() {
    let name = kit::unique("sigbus-mid");
    let path = std::path::PathBuf::from(format!("/dev/shm/{name}"));
    let mut cleanup = kit::Cleanup::new();
    cleanup.path(&path);
    let chan = Builder::new(&format!("shm:{name}"))
        .unwrap()
        .capacity(64)
        .create::<u64>()
        .unwrap();
    let (tx, rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
    // Move past the first slots, so that the next one does not start a page.
    for i in 0..3 {
        tx.send(i).unwrap();
        assert_eq!(rx.recv().unwrap(), i);
    }
    let base = std::ptr::from_ref(chan.segment().header()).addr();
    let stride = chan.segment().layout().stride();
    let got = tx.try_send_with(|v| {
        let at = std::ptr::from_mut(v).addr() - base;
        // Between this slot's start (its stamp) and the start of its page.
        let cut = at + 1 - stride;
        assert!(cut % 4096 != 0 && cut / 4096 == at / 4096, "{cut} {at}");
        truncate(&path, cut as u64);
        *v = 99;
    });
    assert!(
        matches!(got, Err(shmlane::TrySendError::Disconnected(()))),
        "{got:?}"
    );
    assert!(tx.is_corrupted(), "the sender says why it is disconnected");
    assert!(matches!(
        rx.try_recv(),
        Err(shmlane::TryRecvError::Disconnected)
    ));
    assert!(rx.is_corrupted());
}
