//! One shape on one crate, for profiling and syscall counts:
//! `one_shape shmlane|crossbeam bounded|bounded0|bounded1|unbounded SHAPE MESSAGES RUNS`
use shmlane_benches::shapes::{floor_probe, run, Flavor, Shape};
use shmlane_benches::Impl;

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let which = if a[0] == "crossbeam" {
        Impl::Crossbeam
    } else {
        Impl::Shmlane
    };
    let flavor = match a[1].as_str() {
        "bounded0" => Flavor::Bounded0,
        "bounded1" => Flavor::Bounded1,
        "unbounded" => Flavor::Unbounded,
        _ => Flavor::Bounded,
    };
    let shape = match a[2].as_str() {
        "seq" => Shape::Seq,
        "spsc" => Shape::Spsc,
        "mpsc" => Shape::Mpsc,
        "mpmc" => Shape::Mpmc,
        "select_rx" => Shape::SelectRx,
        _ => Shape::SelectBoth,
    };
    let messages: usize = a[3].parse().unwrap();
    let runs: usize = a[4].parse().unwrap();
    let before = floor_probe();
    let mut times: Vec<_> = (0..runs)
        .map(|_| run(which, flavor, shape, messages))
        .collect();
    times.sort();
    let after = floor_probe();
    println!(
        "median {:?} floor {}/{} ns",
        times[runs / 2],
        before.as_nanos(),
        after.as_nanos()
    );
}
