//! Request/response: client processes, replies in any order, crashes of
//! either side, stale responses, type and address errors. No assertion
//! depends on timing; `HANG` only guards against hangs.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use shmlane::codec::sample::Order;
use shmlane::ipc::{Builder, Bytes, CallError, ReplyError, Rkyv, ServeError, ServiceError};
use shmlane_testkit::{env, role, Cleanup, Kid};

const HANG: Duration = Duration::from_secs(60);
const CALLS: u64 = 2_000;

fn builder(addr: &str) -> Builder {
    Builder::new(addr).unwrap().open_timeout(HANG)
}

/// Child: `CALLS` calls with orders `ID * 1e6 + i`; each answer must be the
/// order's id + 1 (so it answers this client's own request).
fn client_child() {
    let id: u64 = env("ID").parse().unwrap();
    let mut client = builder(&env("ADDR"))
        .message_size(128)
        .connect::<Rkyv<Order>, u64>()
        .unwrap();
    for i in 0..CALLS {
        let order = Order::sample(id * 1_000_000 + i);
        if i % 2 == 0 {
            assert_eq!(client.call(&order).unwrap(), order.id + 1);
        } else {
            // The answer read where it lies.
            let answer = client.call_with(&order, |a: &u64| *a).unwrap();
            assert_eq!(answer, order.id + 1);
        }
    }
    println!("done");
}

#[test]
fn every_client_process_gets_only_its_own_responses() {
    if role().is_some() {
        return client_child();
    }
    const CLIENTS: u64 = 3;
    let mut clean = Cleanup::new();
    let addr = format!("shm:{}", clean.unique_shm("svc-clients"));
    let mut server = builder(&addr)
        .message_size(128)
        .create_server::<Rkyv<Order>, u64>()
        .unwrap();
    let mut kids: Vec<Kid> = (1..=CLIENTS)
        .map(|id| {
            Kid::spawn(
                "every_client_process_gets_only_its_own_responses",
                "client",
                &[("ADDR", addr.clone()), ("ID", id.to_string())],
            )
        })
        .collect();
    for _ in 0..CLIENTS * CALLS {
        // Read in place: the archived order in the client's ring.
        let (client, id) = server
            .recv_with(Some(HANG), |_, order| order.id.to_native())
            .unwrap();
        server.reply(client, id + 1).unwrap();
    }
    for kid in &mut kids {
        let (lines, status) = kid.finish(HANG).expect("a client hung");
        assert!(
            status.success() && lines.contains(&"done".into()),
            "{lines:?}"
        );
    }
}

#[test]
fn replies_go_out_in_any_order_and_reach_the_right_client() {
    let mut clean = Cleanup::new();
    let addr = format!("shm:{}", clean.unique_shm("svc-order"));
    let mut server = builder(&addr).create_server::<u64, u64>().unwrap();
    let (asked, wait_asked) = mpsc::channel();
    let clients: Vec<_> = [10u64, 20]
        .into_iter()
        .map(|n| {
            let addr = addr.clone();
            let asked = asked.clone();
            std::thread::spawn(move || {
                let mut client = builder(&addr).connect::<u64, u64>().unwrap();
                let pending = client.request(n).unwrap();
                asked.send(()).unwrap();
                pending.wait().unwrap()
            })
        })
        .collect();
    // Both requests in hand before either is answered.
    let mut got = Vec::new();
    while got.len() < 2 {
        got.push(server.recv_timeout(HANG).unwrap());
    }
    wait_asked.recv().unwrap();
    wait_asked.recv().unwrap();
    for (client, n) in got.into_iter().rev() {
        server.reply(client, n * 3).unwrap();
    }
    let answers: Vec<u64> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    assert_eq!(answers, [30, 60]);
}

/// Child: connects, sends one request, says `sent`, and waits to be killed.
fn doomed_client_child() {
    let mut client = builder(&env("ADDR")).connect::<u64, u64>().unwrap();
    let _pending = client.request(7).unwrap();
    println!("sent");
    std::thread::sleep(HANG * 2);
}

#[test]
fn a_dead_client_never_blocks_the_server() {
    if role().is_some() {
        return doomed_client_child();
    }
    let mut clean = Cleanup::new();
    let addr = format!("shm:{}", clean.unique_shm("svc-dead-client"));
    let mut server = builder(&addr).create_server::<u64, u64>().unwrap();
    let mut kid = Kid::spawn(
        "a_dead_client_never_blocks_the_server",
        "client",
        &[("ADDR", addr.clone())],
    );
    let (client, n) = server.recv_timeout(HANG).unwrap();
    assert_eq!(n, 7);
    assert!(kid.wait_for("sent"));
    kid.kill();
    kid.wait();
    // The reply goes nowhere, or is refused; either way at once.
    match server.reply(client, 8) {
        Ok(()) | Err(ReplyError::ClientGone) => {}
        Err(e) => panic!("{e:?}"),
    }
    // The server notices the death and drops the client.
    let give_up = Instant::now() + HANG;
    while server.clients() > 0 {
        assert!(
            Instant::now() < give_up,
            "the dead client was never dropped"
        );
        assert!(matches!(server.try_recv(), Err(ServeError::Empty)));
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(matches!(
        server.reply(client, 9),
        Err(ReplyError::ClientGone)
    ));
}

/// Child: serves, says `got` on its first request, never answers.
fn stuck_server_child() {
    let mut server = builder(&env("ADDR")).create_server::<u64, u64>().unwrap();
    println!("ready");
    server.recv_timeout(HANG).unwrap();
    println!("got");
    std::thread::sleep(HANG * 2);
}

#[test]
fn a_dead_server_fails_a_waiting_call_without_its_timeout() {
    if role().is_some() {
        return stuck_server_child();
    }
    let mut clean = Cleanup::new();
    let name = clean.unique_shm("svc-dead-server");
    let addr = format!("shm:{name}");
    let mut kid = Kid::spawn(
        "a_dead_server_fails_a_waiting_call_without_its_timeout",
        "server",
        &[("ADDR", addr.clone())],
    );
    assert!(kid.wait_for("ready"));
    let mut client = builder(&addr).connect::<u64, u64>().unwrap();
    let pending = client.request(1).unwrap();
    assert!(kid.wait_for("got"));
    kid.kill();
    kid.wait();
    let err = pending.wait_deadline(Instant::now() + HANG).unwrap_err();
    assert!(matches!(err, CallError::ServerGone), "{err:?}");
    // The dead server's registry (its creator died) is left for cleanup.
    let _ = std::fs::remove_file(format!("/dev/shm/{name}"));
}

#[test]
fn a_response_that_came_too_late_is_not_taken_for_the_next_one() {
    let mut clean = Cleanup::new();
    let addr = format!("shm:{}", clean.unique_shm("svc-stale"));
    let mut server = builder(&addr).create_server::<u64, Bytes>().unwrap();
    let (go, wait_go) = mpsc::channel::<()>();
    let worker = std::thread::spawn(move || {
        // Answer requests 1 and 2 only once the client gave up on them
        // (the answers go nowhere), then answer 3 at once.
        for n in [1, 2] {
            let (client, got) = server.recv_timeout(HANG).unwrap();
            assert_eq!(got, n);
            wait_go.recv().unwrap();
            match server.reply(client, b"late") {
                Ok(()) | Err(ReplyError::ClientGone) => {}
                Err(e) => panic!("{e:?}"),
            }
        }
        let (client, n) = server.recv_timeout(HANG).unwrap();
        assert_eq!(n, 3);
        server.reply(client, b"three").unwrap();
    });
    let mut client = builder(&addr).connect::<u64, Bytes>().unwrap();
    let mut pending = client.request(1).unwrap();
    assert!(matches!(pending.try_wait(), Err(CallError::Pending)));
    drop(pending); // gave up: the connection is dropped
    assert!(!client.is_connected());
    go.send(()).unwrap();
    // Connects anew (no deadline), then is not answered before its
    // (short) deadline: the server holds it until told.
    let err = client
        .request(2)
        .unwrap()
        .wait_deadline(Instant::now() + Duration::from_millis(20))
        .unwrap_err();
    assert!(matches!(err, CallError::Timeout), "{err:?}");
    go.send(()).unwrap();
    assert_eq!(client.call(3).unwrap(), b"three");
    worker.join().unwrap();
}

#[test]
fn a_refused_request_fails_its_call_and_the_next_call_connects_anew() {
    let mut clean = Cleanup::new();
    let addr = format!("shm:{}", clean.unique_shm("svc-refused"));
    let mut server = builder(&addr).create_server::<u64, u64>().unwrap();
    let worker = std::thread::spawn(move || {
        let (client, n) = server.recv_timeout(HANG).unwrap();
        assert_eq!(n, 1);
        assert!(server.disconnect(client));
        assert!(matches!(
            server.reply(client, 0),
            Err(ReplyError::ClientGone)
        ));
        let (client, n) = server.recv_timeout(HANG).unwrap();
        assert_eq!(n, 2);
        server.reply(client, 20).unwrap();
    });
    let mut client = builder(&addr).connect::<u64, u64>().unwrap();
    let err = client.call(1).unwrap_err();
    assert!(matches!(err, CallError::Refused), "{err:?}");
    assert_eq!(client.call(2).unwrap(), 20);
    worker.join().unwrap();
}

#[test]
fn a_service_on_a_sysv_key_is_refused_with_what_to_use() {
    let addr = format!("sysv:{}", shmlane_testkit::unique_key());
    for err in [
        builder(&addr)
            .create_server::<u64, u64>()
            .map(drop)
            .unwrap_err(),
        builder(&addr).connect::<u64, u64>().map(drop).unwrap_err(),
    ] {
        assert!(err.to_string().contains("not sysv:"), "{err}");
    }
}

#[test]
fn clients_of_other_types_and_missing_servers_get_typed_errors() {
    let mut clean = Cleanup::new();
    let addr = format!("shm:{}", clean.unique_shm("svc-errors"));
    let err = builder(&addr).connect::<u64, u64>().unwrap_err();
    assert!(matches!(err, ServiceError::Open(_)), "{err:?}");

    let mut server = builder(&addr).create_server::<u64, u64>().unwrap();
    let (stop, stopped) = mpsc::channel::<()>();
    let serving = std::thread::spawn(move || {
        // Serve (and refuse the mismatched client) until told to stop.
        while stopped.try_recv().is_err() {
            let _ = server.recv_timeout(Duration::from_millis(10));
        }
    });
    let err = Builder::new(&addr)
        .unwrap()
        .open_timeout(Duration::from_millis(500))
        .connect::<u32, u64>()
        .unwrap_err();
    assert!(matches!(err, ServiceError::NoServer), "{err:?}");
    assert!(
        err.to_string().contains("same request and response types"),
        "{err}"
    );
    stop.send(()).unwrap();
    serving.join().unwrap();
}
