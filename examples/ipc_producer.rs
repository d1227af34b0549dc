//! The sending half of the README's two-process example: opens the channel
//! the consumer created and sends `N` messages (default 1,000,000).
//!
//! ```text
//! cargo run --release --example ipc_producer [N] [ADDRESS]
//! ```

use shmlane::ipc::Builder;

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipc_producer: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = std::env::args()
        .nth(1)
        .map_or(Ok(1_000_000), |s| s.parse())?;
    let addr = std::env::args()
        .nth(2)
        .unwrap_or_else(|| "shm:shmlane-demo".into());
    // Fails with "shm:shmlane-demo does not exist: create it first" if the
    // consumer is not running.
    let chan = Builder::new(&addr)?.open::<[u64; 2]>()?;
    let tx = chan.sender()?;
    for seq in 0..n {
        tx.send([seq, seq.wrapping_mul(seq)])?;
    }
    println!("sent {n} messages to {addr}");
    Ok(())
}
