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

/// The shm row at `size`.
fn shm_row(rows: &[Row], size: usize) -> Option<&Row> {
    rows.iter().find(|r| r.kind == Kind::Shm && r.size == size)
}

/// Whether `row` was measured on another CPU placement than the shm row of
/// its size (both pinned and placed, and their floors differ by more than
/// half, or either is mixed): ratios between them would compare hardware,
/// not transports.
pub fn placement_differs(rows: &[Row], row: &Row) -> bool {
    if row.kind == Kind::Shm {
        return false;
    }
    match (
        row.placement,
        shm_row(rows, row.size).and_then(|r| r.placement),
    ) {
        (Some(a), Some(b)) => !a.same_as(&b),
        _ => false,
    }
}

/// A row's round-trip p50 over the ring's, and its throughput over the
/// ring's (both `None` without a shm row at that size, or when the two
/// were measured on different placements: see `placement_differs`).
pub fn ratios(rows: &[Row], row: &Row) -> (Option<f64>, Option<f64>) {
    if placement_differs(rows, row) {
        return (None, None);
    }
    match (row.measured(), shm_at(rows, row.size)) {
        (Some(m), Some(shm)) => (
            Some(m.rtt.p50 / shm.rtt.p50),
            Some(m.msgs_per_s / shm.msgs_per_s),
        ),
        _ => (None, None),
    }
}

/// The placement column: the floor's median ns, runs kept/made, `*` when
/// mixed, `!` when it differs from the shm row's.
fn placement_text(rows: &[Row], row: &Row) -> String {
    match row.placement {
        Some(p) => format!(
            "{:.0} {}/{}{}{}",
            p.floor_ns,
            p.kept,
            p.made,
            if p.mixed { "*" } else { "" },
            if placement_differs(rows, row) {
                "!"
            } else {
                ""
            }
        ),
        None => String::new(),
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
        "{:<8}{:>8} {:>10}{:>10}{:>10}{:>12}{:>10}{:>11}{:>11}   floor ns,",
        "", "", "round trip", "", "", "one way", "", "vs shm", "vs shm"
    );
    let _ = writeln!(
        out,
        "{:<8}{:>8} {:>10}{:>10}{:>10}{:>12}{:>10}{:>11}{:>11}   runs kept/made",
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
                    "{:<8}{:>8} {:>10}{:>10}{:>10}{:>12}{:>10.3}{:>11}{:>11}   {}",
                    row.kind.name(),
                    size,
                    human_ns(m.rtt.p50),
                    human_ns(m.rtt.p99),
                    human_ns(m.rtt.p999),
                    human_rate(m.msgs_per_s),
                    row.gb_per_s().unwrap_or(0.0),
                    ratio_text(lat),
                    ratio_text(tput),
                    placement_text(rows, row)
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
    if rows.iter().any(|r| r.placement.is_some_and(|p| p.mixed)) {
        out.push_str("* no run of the row kept one CPU placement: mixed placements\n");
    }
    if rows.iter().any(|r| placement_differs(rows, r)) {
        out.push_str(
            "! measured on another CPU placement than shm's row: no ratio (rerun to compare)\n",
        );
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
    /// The floor probes' median over the runs kept, ns.
    floor_ns: Option<f64>,
    /// Runs kept (of one placement) and made.
    runs_kept: Option<usize>,
    runs_made: Option<usize>,
    /// No run kept one placement.
    placement_mixed: Option<bool>,
    /// Another placement than shm's row of the size (no ratios then).
    placement_differs: bool,
    /// `ok`, `n/a` or `failed`.
    status: &'static str,
    /// Why not applicable, or the error.
    note: Option<&'a str>,
}

/// The rows as a JSON array of objects: `transport`, `size` (bytes),
/// `rtt_p50_ns`, `rtt_p99_ns`, `rtt_p999_ns`, `msgs_per_s`, `gb_per_s`
/// (null when not measured), `rtt_vs_shm`, `msgs_vs_shm` (null also when
/// the row's placement differs from shm's), `samples`, `floor_ns`,
/// `runs_kept`, `runs_made`, `placement_mixed` (null when unpinned),
/// `placement_differs`, `status` (`ok`, `n/a` or `failed`) and `note` (the
/// reason or error).
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
                floor_ns: row.placement.map(|p| p.floor_ns),
                runs_kept: row.placement.map(|p| p.kept),
                runs_made: row.placement.map(|p| p.made),
                placement_mixed: row.placement.map(|p| p.mixed),
                placement_differs: placement_differs(rows, row),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::Latency;
    use crate::transports::Placement;

    fn row(kind: Kind, floor_ns: f64, mixed: bool) -> Row {
        Row {
            kind,
            size: 64,
            outcome: Outcome::Measured(Measured {
                rtt: Latency {
                    p50: 1000.0,
                    p99: 2000.0,
                    p999: 3000.0,
                },
                samples: 10,
                msgs_per_s: 1e6,
            }),
            placement: Some(Placement {
                floor_ns,
                kept: 3,
                made: 4,
                mixed,
            }),
        }
    }

    #[test]
    fn ratios_only_between_rows_of_one_placement() {
        let rows = [
            row(Kind::Shm, 100.0, false),
            row(Kind::Pipe, 120.0, false),
            row(Kind::Unix, 400.0, false),
            row(Kind::Tcp, 110.0, true),
        ];
        assert_eq!(ratios(&rows, &rows[1]), (Some(1.0), Some(1.0)));
        // A mixed shm row is not "another placement than shm's" itself.
        let mixed_shm = [row(Kind::Shm, 100.0, true)];
        assert!(!placement_differs(&mixed_shm, &mixed_shm[0]));
        for other in &rows[2..] {
            assert!(placement_differs(&rows, other));
            assert_eq!(ratios(&rows, other), (None, None));
        }
        let text = table(&rows);
        assert!(text.contains("120 3/4\n"), "{text}");
        assert!(text.contains("400 3/4!"), "{text}");
        assert!(text.contains("110 3/4*!"), "{text}");
        assert!(
            text.contains("! measured on another CPU placement"),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&json(&rows)).unwrap();
        assert_eq!(v[2]["placement_differs"], true);
        assert!(v[2]["rtt_vs_shm"].is_null());
        assert_eq!(v[1]["floor_ns"], 120.0);
    }
}
