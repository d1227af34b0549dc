//! The comparison as a table and as JSON.

use std::fmt::Write as _;

use super::{human_ns, human_rate, human_size, Kind, Measured, Outcome, Row};

/// Sorts rows by size, then fastest first within a size (by round-trip
/// p50; rows without a measurement last).
pub fn sort_rows(rows: &mut [Row]) {
    rows.sort_by(|a, b| {
        let key = |r: &Row| r.measured().map_or(f64::INFINITY, |m| m.rtt.p50);
        a.size.cmp(&b.size).then(key(a).total_cmp(&key(b)))
    });
}

/// The shm row's measurement at `size`, the yardstick of the ratios.
pub(super) fn shm_at(rows: &[Row], size: usize) -> Option<&Measured> {
    rows.iter()
        .find(|r| r.kind == Kind::Shm && r.size == size)
        .and_then(Row::measured)
}

/// A row's round-trip p50 over the ring's, and its throughput over the
/// ring's (both `None` without a shm row at that size).
pub fn ratios(rows: &[Row], row: &Row) -> (Option<f64>, Option<f64>) {
    match (row.measured(), shm_at(rows, row.size)) {
        (Some(m), Some(shm)) => (
            Some(m.rtt.p50 / shm.rtt.p50),
            Some(m.msgs_per_s / shm.msgs_per_s),
        ),
        _ => (None, None),
    }
}

pub(super) fn ratio_text(r: Option<f64>) -> String {
    match r {
        Some(r) if r >= 100.0 => format!("{r:.0}x"),
        Some(r) if r >= 10.0 => format!("{r:.1}x"),
        Some(r) if r >= 0.01 => format!("{r:.2}x"),
        Some(r) => format!("{r:.4}x"),
        None => "-".into(),
    }
}

/// Formats rows (sort them first) as one table; a blank line between
/// sizes.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<8}{:>8} {:>10}{:>10}{:>10}{:>12}{:>10}{:>11}{:>11}",
        "", "", "round trip", "", "", "one way", "", "vs shm", "vs shm"
    );
    let _ = writeln!(
        out,
        "{:<8}{:>8} {:>10}{:>10}{:>10}{:>12}{:>10}{:>11}{:>11}",
        "transport", "size", "p50", "p99", "p99.9", "msgs/s", "GB/s", "rtt p50", "msgs/s"
    );
    let mut last_size = None;
    for row in rows {
        if last_size.is_some_and(|s| s != row.size) {
            out.push('\n');
        }
        last_size = Some(row.size);
        let size = human_size(row.size);
        match &row.outcome {
            Outcome::Measured(m) => {
                let (lat, tput) = ratios(rows, row);
                let _ = writeln!(
                    out,
                    "{:<8}{:>8} {:>10}{:>10}{:>10}{:>12}{:>10.3}{:>11}{:>11}",
                    row.kind.name(),
                    size,
                    human_ns(m.rtt.p50),
                    human_ns(m.rtt.p99),
                    human_ns(m.rtt.p999),
                    human_rate(m.msgs_per_s),
                    row.gb_per_s().unwrap_or(0.0),
                    ratio_text(lat),
                    ratio_text(tput)
                );
            }
            Outcome::NotApplicable(why) => {
                let _ = writeln!(out, "{:<8}{:>8}   n/a: {why}", row.kind.name(), size);
            }
            Outcome::Failed(e) => {
                let first = e.lines().next().unwrap_or("");
                let _ = writeln!(out, "{:<8}{:>8}   FAILED: {first}", row.kind.name(), size);
            }
        }
    }
    out
}

/// One row of `--json`: numbers in nanoseconds, bytes and per-second
/// units; `null` where a row has no measurement (or no shm row to compare
/// with).
#[derive(serde::Serialize)]
struct JsonRow<'a> {
    transport: &'a str,
    size: usize,
    rtt_p50_ns: Option<f64>,
    rtt_p99_ns: Option<f64>,
    rtt_p999_ns: Option<f64>,
    msgs_per_s: Option<f64>,
    gb_per_s: Option<f64>,
    rtt_vs_shm: Option<f64>,
    msgs_vs_shm: Option<f64>,
    samples: Option<u64>,
    /// `ok`, `n/a` or `failed`.
    status: &'static str,
    /// Why not applicable, or the error.
    note: Option<&'a str>,
}

/// The rows as a JSON array of objects: `transport`, `size` (bytes),
/// `rtt_p50_ns`, `rtt_p99_ns`, `rtt_p999_ns`, `msgs_per_s`, `gb_per_s`
/// (null when not measured), `rtt_vs_shm`, `msgs_vs_shm`, `samples`,
/// `status` (`ok`, `n/a` or `failed`) and `note` (the reason or error).
pub fn json(rows: &[Row]) -> String {
    let out: Vec<JsonRow<'_>> = rows
        .iter()
        .map(|row| {
            let m = row.measured();
            let (lat, tput) = ratios(rows, row);
            let (status, note) = match &row.outcome {
                Outcome::Measured(_) => ("ok", None),
                Outcome::NotApplicable(w) => ("n/a", Some(w.as_str())),
                Outcome::Failed(e) => ("failed", Some(e.as_str())),
            };
            JsonRow {
                transport: row.kind.name(),
                size: row.size,
                rtt_p50_ns: m.map(|m| m.rtt.p50),
                rtt_p99_ns: m.map(|m| m.rtt.p99),
                rtt_p999_ns: m.map(|m| m.rtt.p999),
                msgs_per_s: m.map(|m| m.msgs_per_s),
                gb_per_s: row.gb_per_s(),
                rtt_vs_shm: lat,
                msgs_vs_shm: tput,
                samples: m.map(|m| m.samples),
                status,
                note,
            }
        })
        .collect();
    // Infinite or NaN numbers become null, as JSON has no such numbers.
    let mut text = serde_json::to_string_pretty(&out).expect("rows serialize");
    text.push('\n');
    text
}
