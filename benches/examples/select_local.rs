//! Single-thread cost of `Select` over 4 pre-filled in-process channels,
//! against crossbeam-channel: the select machinery alone, no contention.
//! `cargo run --release -p shmlane-benches --example select_local [N]`
use std::time::Instant;

macro_rules! cost {
    ($krate:ident, $n:expr, $flavor:ident) => {{
        use $krate::Select;
        let n: usize = $n;
        let chans: Vec<_> = (0..4).map(|_| $krate::$flavor::<usize>(n)).collect();
        for (tx, _) in &chans {
            for i in 0..n / 4 {
                tx.send(i).unwrap();
            }
        }
        let t = Instant::now();
        for _ in 0..n / 4 * 4 {
            let mut sel = Select::new();
            for (_, rx) in &chans {
                sel.recv(rx);
            }
            let oper = sel.select();
            let i = oper.index();
            oper.recv(&chans[i].1).unwrap();
        }
        t.elapsed().as_nanos() as f64 / n as f64
    }};
}

fn bounded_sh(n: usize) -> (shmlane::Sender<usize>, shmlane::Receiver<usize>) {
    shmlane::bounded(n)
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(1_000_000, |a| a.parse().unwrap());
    let runs: usize = std::env::args().nth(2).map_or(21, |a| a.parse().unwrap());
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        a.push(cost!(shmlane, n, bounded));
        b.push(cost!(crossbeam_channel, n, bounded));
    }
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let _ = bounded_sh;
    println!(
        "bounded select+recv, median of {runs}: shmlane {:.1} ns, crossbeam {:.1} ns",
        a[runs / 2],
        b[runs / 2]
    );
}
