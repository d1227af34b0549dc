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

/// Escapes a string for a JSON string literal (quotes included).
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub(super) fn json_number(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => {
            if v.fract() == 0.0 && v.abs() < 1e15 {
                format!("{v:.0}")
            } else {
                format!("{v}")
            }
        }
        _ => "null".into(),
    }
}

/// The rows as a JSON array of objects: `transport`, `size` (bytes),
/// `rtt_p50_ns`, `rtt_p99_ns`, `rtt_p999_ns`, `msgs_per_s`, `gb_per_s`
/// (null when not measured), `rtt_vs_shm`, `msgs_vs_shm`, `samples`,
/// `status` (`ok`, `n/a` or `failed`) and `note` (the reason or error).
pub fn json(rows: &[Row]) -> String {
    let mut out = String::from("[");
    for (i, row) in rows.iter().enumerate() {
        let m = row.measured();
        let (lat, tput) = ratios(rows, row);
        let (status, note) = match &row.outcome {
            Outcome::Measured(_) => ("ok", None),
            Outcome::NotApplicable(w) => ("n/a", Some(w.as_str())),
            Outcome::Failed(e) => ("failed", Some(e.as_str())),
        };
        let _ = write!(
            out,
            "{}\n  {{\"transport\": {}, \"size\": {}, \"rtt_p50_ns\": {}, \"rtt_p99_ns\": {}, \
             \"rtt_p999_ns\": {}, \"msgs_per_s\": {}, \"gb_per_s\": {}, \"rtt_vs_shm\": {}, \
             \"msgs_vs_shm\": {}, \"samples\": {}, \"status\": {}, \"note\": {}}}",
            if i == 0 { "" } else { "," },
            json_string(row.kind.name()),
            row.size,
            json_number(m.map(|m| m.rtt.p50)),
            json_number(m.map(|m| m.rtt.p99)),
            json_number(m.map(|m| m.rtt.p999)),
            json_number(m.map(|m| m.msgs_per_s)),
            json_number(row.gb_per_s()),
            json_number(lat),
            json_number(tput),
            json_number(m.map(|m| m.samples as f64)),
            json_string(status),
            note.map_or_else(|| "null".into(), json_string),
        );
    }
    out.push_str(if rows.is_empty() { "]\n" } else { "\n]\n" });
    out
}
