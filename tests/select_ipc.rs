//! `Select` and `select!` over cross-process receivers and senders: one thread waits
//! at once on channels from other processes (real ones: this binary runs
//! copies of itself), a channel from another thread, and a timer. Segment
//! names are unique; creators unlink on drop; the kit kills children.

use std::time::Duration;

use shmlane::ipc::{Builder, Bytes, SendMsgError};
use shmlane::{never, select, unbounded, RecvError, Select};
use shmlane_testkit::{self as kit, env, Kid};

const LONG: Duration = Duration::from_secs(60);

fn read_stdin_line() -> String {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    line
}

/// The child side of every test.
#[test]
fn child() {
    let Some(role) = kit::role() else {
        return;
    };
    match role.as_str() {
        // Sends each number it reads on stdin, until stdin closes.
        "sender" => {
            let chan = Builder::new(&env("ADDR")).unwrap().open::<u64>().unwrap();
            let tx = chan.sender().unwrap();
            println!("ready");
            loop {
                let line = read_stdin_line();
                if line.is_empty() {
                    return;
                }
                tx.send(line.trim().parse().unwrap()).unwrap();
                println!("sent");
            }
        }
        // Sends COUNT numbers, ID << 32 | i, then exits.
        "burst" => {
            let chan = Builder::new(&env("ADDR")).unwrap().open::<u64>().unwrap();
            let tx = chan.sender().unwrap();
            let id: u64 = env("ID").parse().unwrap();
            let count: u64 = env("COUNT").parse().unwrap();
            for i in 0..count {
                tx.send(id << 32 | i).unwrap();
            }
        }
        // Receives one message per "take" line on stdin and prints it
        // (bytes, as text), until stdin closes.
        "receiver" => {
            let chan = Builder::new(&env("ADDR")).unwrap().open::<Bytes>().unwrap();
            let rx = chan.receiver().unwrap();
            println!("ready");
            while !read_stdin_line().is_empty() {
                let got = rx.recv().unwrap();
                println!("got {}", String::from_utf8(got).unwrap());
            }
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn one_select_waits_on_another_process_a_thread_and_a_timer() {
    for ring in ["spsc", "mpmc"] {
        let addr = kit::shm_address(&format!("select-{ring}"));
        let mut builder = Builder::new(&addr).unwrap();
        if ring == "spsc" {
            builder = builder.spsc();
        }
        let chan = builder.create::<u64>().unwrap();
        let ipc_rx = chan.receiver().unwrap();
        let (local_tx, local_rx) = unbounded::<u64>();
        let mut kid = Kid::spawn("child", "sender", &[("ADDR", addr.clone())]);
        assert!(kid.wait_for("ready"));

        // Nothing is ready: the timer decides.
        select! {
            recv(ipc_rx) -> m => panic!("nothing was sent: {m:?}"),
            recv(local_rx) -> m => panic!("nothing was sent: {m:?}"),
            default(Duration::from_millis(20)) => {}
        }

        // The other process sends while this thread is parked in the select.
        kid.say("42");
        select! {
            recv(ipc_rx) -> m => assert_eq!(m, Ok(42)),
            recv(local_rx) -> m => panic!("nothing was sent here: {m:?}"),
            recv(never::<u64>()) -> _ => unreachable!(),
        }
        assert!(kid.wait_for("sent"));

        // Another thread sends while this one is parked.
        let t = {
            let tx = local_tx.clone();
            std::thread::spawn(move || tx.send(7).unwrap())
        };
        select! {
            recv(ipc_rx) -> m => panic!("nothing was sent there: {m:?}"),
            recv(local_rx) -> m => assert_eq!(m, Ok(7)),
        }
        t.join().unwrap();

        // The same through `Select`, and the other process goes away: the
        // select sees its channel disconnected.
        kid.say("43");
        let mut sel = Select::new();
        let i_ipc = sel.recv(&ipc_rx);
        let _i_local = sel.recv(&local_rx);
        let oper = sel
            .select_timeout(LONG)
            .expect("the message from the other process");
        assert_eq!(oper.index(), i_ipc);
        assert_eq!(oper.recv(&ipc_rx), Ok(43));
        assert!(kid.wait_for("sent"));
        drop(kid); // killed and reaped
        drop(local_tx);
        // Both senders are gone: the select reports each disconnect once
        // (an operation on a disconnected channel is always ready).
        let mut gone = Vec::new();
        while gone.len() < 2 {
            let oper = sel.select_timeout(LONG).expect("a disconnect");
            let i = oper.index();
            if i == i_ipc {
                assert_eq!(oper.recv(&ipc_rx), Err(RecvError));
            } else {
                assert_eq!(oper.recv(&local_rx), Err(RecvError));
            }
            sel.remove(i);
            gone.push(i);
        }
        assert!(gone.contains(&i_ipc));
        // Nothing left to wait on: an empty select only times out.
        assert!(sel.select_timeout(Duration::from_millis(1)).is_err());
    }
}

#[test]
fn a_select_over_four_processes_channels_gets_every_message() {
    const COUNT: u64 = 20_000;
    let chans: Vec<_> = (0..4)
        .map(|i| {
            let addr = kit::shm_address(&format!("select-four-{i}"));
            let chan = Builder::new(&addr)
                .unwrap()
                .capacity(64)
                .create::<u64>()
                .unwrap();
            (addr, chan)
        })
        .collect();
    let rxs: Vec<_> = chans.iter().map(|(_, c)| c.receiver().unwrap()).collect();
    let kids: Vec<Kid> = chans
        .iter()
        .enumerate()
        .map(|(i, (addr, _))| {
            Kid::spawn(
                "child",
                "burst",
                &[
                    ("ADDR", addr.clone()),
                    ("ID", i.to_string()),
                    ("COUNT", COUNT.to_string()),
                ],
            )
        })
        .collect();
    let mut next = [0u64; 4];
    let mut open = 4;
    let mut sel = Select::new();
    for rx in &rxs {
        sel.recv(rx);
    }
    while open > 0 {
        let oper = sel.select_timeout(LONG).expect("progress");
        let i = oper.index();
        match oper.recv(&rxs[i]) {
            Ok(v) => {
                assert_eq!(v >> 32, i as u64);
                assert_eq!(v & 0xffff_ffff, next[i], "in order, none lost");
                next[i] += 1;
            }
            Err(RecvError) => {
                assert_eq!(next[i], COUNT, "disconnected only after the last message");
                sel.remove(i);
                open -= 1;
            }
        }
    }
    drop(kids);
}

#[test]
fn a_select_sends_to_another_process_once_its_ring_has_room() {
    for ring in ["spsc", "mpmc"] {
        let addr = kit::shm_address(&format!("select-send-{ring}"));
        let mut builder = Builder::new(&addr).unwrap().capacity(1);
        if ring == "spsc" {
            builder = builder.spsc();
        }
        let chan = builder.create::<Bytes>().unwrap();
        let ipc_tx = chan.sender().unwrap();
        let (_local_tx, local_rx) = unbounded::<u64>();
        let mut kid = Kid::spawn("child", "receiver", &[("ADDR", addr.clone())]);
        assert!(kid.wait_for("ready"));
        ipc_tx.send(b"one").unwrap();

        // The ring is full and nothing else is ready: the timer decides.
        let owned = String::from("two");
        select! {
            send(ipc_tx, owned.as_bytes()) -> r => panic!("the ring is full: {r:?}"),
            recv(local_rx) -> m => panic!("nothing was sent: {m:?}"),
            default(Duration::from_millis(20)) => {}
        }

        // The other process takes "one" while this thread waits in the
        // select; the send arm completes with a message borrowed from a
        // local.
        kid.say("take");
        select! {
            send(ipc_tx, owned.as_bytes()) -> r => r.unwrap(),
            recv(local_rx) -> m => panic!("nothing was sent: {m:?}"),
        }
        assert!(kid.wait_for("got one"));
        kid.say("take");
        assert!(kid.wait_for("got two"));

        // Through `Select`: room now, so the send is ready at once.
        let mut sel = Select::new();
        let i_send = sel.send(&ipc_tx);
        let _i_recv = sel.recv(&local_rx);
        let oper = sel.select_timeout(LONG).expect("room in the ring");
        assert_eq!(oper.index(), i_send);
        oper.send(&ipc_tx, b"three").unwrap();
        kid.say("take");
        assert!(kid.wait_for("got three"));

        // Full again, and the receiving process dies: the send arm becomes
        // ready and fails with the receivers gone.
        ipc_tx.send(b"four").unwrap();
        drop(kid); // killed and reaped
        let oper = sel.select_timeout(LONG).expect("the receivers are gone");
        assert_eq!(oper.index(), i_send);
        assert!(matches!(
            oper.send(&ipc_tx, b"five"),
            Err(SendMsgError::Disconnected)
        ));
    }
}
