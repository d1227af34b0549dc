//! crossbeam-channel's benchmark shapes over shmlane and crossbeam-channel,
//! alternated: `cargo run --release -p shmlane-benches --example shapes --
//! [MESSAGES] [RUNS] [FILTER]` (defaults 1000000, 3, every row; FILTER
//! keeps the rows whose name contains it; `^bounded_` those whose name
//! starts with `bounded_`). `shmlane bench --only
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
            let name = format!("{f:?}_{s:?}").to_lowercase();
            let filter = filter.to_lowercase();
            match filter.strip_prefix('^') {
                Some(prefix) => name.starts_with(prefix),
                None => name.contains(&filter),
            }
        })
        .collect();
    let out = compare(&rows, messages, runs, || {});
    print!("{}", table(&out));
}
