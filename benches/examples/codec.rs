//! The codec benchmarks alone:
//! `cargo run --release -p shmlane-benches --example codec [RUNS]`.

use std::io::Write;

fn main() {
    shmlane_benches::ipc::maybe_run_peer();
    let runs = std::env::args()
        .nth(1)
        .map_or(3, |r| r.parse().expect("RUNS is a number"));
    let table = shmlane_benches::codec::measure_and_report(runs, 1.0, |step| {
        eprint!("\r  {step:<50}");
        let _ = std::io::stderr().flush();
    });
    eprintln!();
    print!("{table}");
}
