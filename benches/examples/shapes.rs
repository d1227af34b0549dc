//! crossbeam-channel's benchmark shapes over shmlane and crossbeam-channel,
//! alternated: `cargo run --release -p shmlane-benches --example shapes --
//! [MESSAGES] [RUNS] [FILTER]` (defaults 1000000, 3, every row; FILTER
//! keeps the rows whose name contains it). `shmlane bench --only
//! in-process` prints the same table.

use shmlane_benches::shapes::{compare, rows, table};

fn main() {
    let mut args = std::env::args().skip(1);
    let messages: usize = args
        .next()
        .map_or(1_000_000, |a| a.parse().expect("MESSAGES"));
    let runs: usize = args.next().map_or(3, |a| a.parse().expect("RUNS"));
    let filter = args.next().unwrap_or_default();
    let rows: Vec<_> = rows()
        .into_iter()
        .filter(|(f, s)| {
            format!("{f:?}_{s:?}")
                .to_lowercase()
                .contains(&filter.to_lowercase())
        })
        .collect();
    let out = compare(&rows, messages, runs, || {});
    print!("{}", table(&out));
}
