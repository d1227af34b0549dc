//! Message codec benchmarks (cross-process, pinned): 1 MiB messages
//! zero-copy and copied beside a plain memcpy, and a small rkyv struct per
//! trust level. Filled in by the codec work; `shmlane bench --only codec`
//! prints its table.

/// Measures the codec figures (`runs` runs each, medians) and returns the
/// table to print. `progress` is told what is being measured.
pub fn measure_and_report(runs: usize, mut progress: impl FnMut(&str)) -> String {
    let _ = runs;
    progress("codec benchmarks: not written yet");
    String::from("codec benchmarks: not written yet\n")
}
