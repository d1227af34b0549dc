//! Two "hosts" on loopback: a receiver that listens on a TCP endpoint and
//! a sender that connects to it, each with its own Zenoh session, as two
//! machines would be (run the halves on two hosts with their addresses in
//! place of 127.0.0.1). The channel API is the one shmlane uses
//! everywhere; only the address and the session's configuration change.
//!
//! cargo run -p shmlane-zenoh --example two_hosts

use std::time::Duration;

use shmlane::ipc::{Builder, Bytes};
use shmlane_zenoh::Config;

/// A peer that listens on `listen` or connects to `connect`, without
/// multicast scouting (explicit endpoints work across routed networks).
fn config(listen: &str, connect: &str) -> Result<Config, Box<dyn std::error::Error>> {
    let json = format!(
        "{{ mode: \"peer\", listen: {{ endpoints: [{listen}] }}, \
           connect: {{ endpoints: [{connect}] }}, \
           scouting: {{ multicast: {{ enabled: false }} }} }}"
    );
    Ok(Config::from_json5(&json).map_err(|e| e.to_string())?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let endpoint = format!("\"tcp/127.0.0.1:{port}\"");

    // Host A: the receiver.
    let rx = Builder::new("zenoh:demo/orders")?
        .zenoh_config(config(&endpoint, "")?)
        .receiver::<Bytes>()?;

    // Host B: the sender (waits up to the open timeout for a receiver).
    let sender = std::thread::spawn(move || -> Result<(), String> {
        let tx = Builder::new("zenoh:demo/orders")
            .map_err(|e| e.to_string())?
            .zenoh_config(config("", &endpoint).map_err(|e| e.to_string())?)
            .open_timeout(Duration::from_secs(10))
            .sender::<Bytes>()
            .map_err(|e| e.to_string())?;
        for i in 0..5 {
            tx.send(format!("order {i}").as_bytes())
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    });

    for _ in 0..5 {
        println!("{}", String::from_utf8_lossy(&rx.recv_ref()?));
    }
    sender.join().expect("sender thread")?;
    // The sender is gone and everything it sent was delivered.
    assert!(rx.recv().unwrap_err().is_disconnected());
    println!("disconnected, as from a local sender");
    Ok(())
}
