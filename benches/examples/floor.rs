//! Runs the cross-process floor measurement alone: `cargo run --release
//! -p shmlane-benches --example floor [ITERS]`.

fn main() {
    shmlane_benches::ipc::maybe_run_peer();
    let iters = std::env::args()
        .nth(1)
        .map_or(100_000, |s| s.parse().unwrap());
    let pinned = shmlane_benches::ipc::pin_to_cpu(0);
    let l = shmlane_benches::ipc::floor(iters);
    println!(
        "pinned={pinned} floor p50={:.0} ns p99={:.0} ns p99.9={:.0} ns",
        l.p50, l.p99, l.p999
    );
}
