//! The transport comparison as an SVG chart, written by hand (no
//! dependencies): two panels of grouped bars on log scales, one group per
//! message size and one bar per transport, in the same colours in both.
//!
//! - top: round-trip p50, with a whisker up to p99 (lower is better);
//! - bottom: one-way messages per second, with GB/s under each group's
//!   fastest bar (higher is better).
//!
//! Every bar carries a tooltip (`<title>`) with all its figures. Cells a
//! transport cannot carry say `n/a`, failed ones `failed`.

use std::fmt::Write as _;

use crate::transports::{human_ns, human_rate, human_size, Kind, Outcome, Row};

const WIDTH: f64 = 1100.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 20.0;
const PANEL_H: f64 = 300.0;
const TOP1: f64 = 130.0;
const TOP2: f64 = TOP1 + PANEL_H + 110.0;
const HEIGHT: f64 = TOP2 + PANEL_H + 60.0;

/// Colours (Tableau 10), one per transport in [`Kind::ALL`] order.
fn colour(kind: Kind) -> &'static str {
    match kind {
        Kind::Shm => "#e15759",
        Kind::Pipe => "#4e79a7",
        Kind::Fifo => "#76b7b2",
        Kind::Unix => "#59a14f",
        Kind::Mq => "#edc948",
        Kind::Tcp => "#b07aa1",
        Kind::Signal => "#9c755f",
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A log-10 axis from `lo` to `hi` (decades), mapped onto a panel.
struct LogAxis {
    lo: f64,
    hi: f64,
    top: f64,
}

impl LogAxis {
    /// Decades around `min..max`, with half a decade of headroom above
    /// for the value labels.
    fn new(min: f64, max: f64, top: f64) -> Self {
        let min = min.max(1e-3);
        let max = max.max(min * 10.0);
        let lo = 10f64.powf(min.log10().floor());
        let hi = 10f64.powf((max.log10() + 0.6).ceil());
        Self { lo, hi, top }
    }

    fn y(&self, v: f64) -> f64 {
        let f = (v.max(self.lo).log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10());
        self.top + PANEL_H * (1.0 - f)
    }

    fn decades(&self) -> impl Iterator<Item = f64> + '_ {
        let (a, b) = (
            self.lo.log10().round() as i32,
            self.hi.log10().round() as i32,
        );
        (a..=b).map(|e| 10f64.powi(e))
    }

    fn bottom(&self) -> f64 {
        self.top + PANEL_H
    }
}

/// A decade's label: `100 ns`, `1 us`, `10 ms`; `100`, `1 k`, `10 M`.
fn tick_label(v: f64, nanos: bool) -> String {
    let units: &[(f64, &str)] = if nanos {
        &[(1e9, "s"), (1e6, "ms"), (1e3, "us"), (1.0, "ns")]
    } else {
        &[(1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, "")]
    };
    let (div, unit) = units
        .iter()
        .find(|(d, _)| v >= *d)
        .copied()
        .unwrap_or((1.0, ""));
    let n = v / div;
    let n = if n >= 1.0 {
        format!("{n:.0}")
    } else {
        format!("{n}")
    };
    format!("{n} {unit}").trim_end().to_owned()
}

/// The date today (UTC), `YYYY-MM-DD`.
fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Days to civil date (Howard Hinnant's algorithm).
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `N CPUs, MODEL, Linux RELEASE`, from /proc.
pub fn machine() -> String {
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| format!(", Linux {}", s.trim()))
        .unwrap_or_default();
    format!("{cpus} CPUs, {model}{kernel}")
}

/// The chart. `rows` in any order; bars follow [`Kind::ALL`].
pub fn svg(rows: &[Row]) -> String {
    let kinds: Vec<Kind> = Kind::ALL
        .into_iter()
        .filter(|k| rows.iter().any(|r| r.kind == *k))
        .collect();
    let mut sizes: Vec<usize> = rows.iter().map(|r| r.size).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let find = |k: Kind, s: usize| rows.iter().find(|r| r.kind == k && r.size == s);

    let measured = || rows.iter().filter_map(|r| r.measured().map(|m| (r, m)));
    let lat = LogAxis::new(
        measured()
            .map(|(_, m)| m.rtt.p50)
            .fold(f64::INFINITY, f64::min),
        measured().map(|(_, m)| m.rtt.p99).fold(0.0, f64::max),
        TOP1,
    );
    let tput = LogAxis::new(
        measured()
            .map(|(_, m)| m.msgs_per_s)
            .fold(f64::INFINITY, f64::min),
        measured().map(|(_, m)| m.msgs_per_s).fold(0.0, f64::max),
        TOP2,
    );

    let mut o = String::new();
    let _ = writeln!(
        o,
        r##"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="Helvetica, Arial, sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="{x}" y="34" text-anchor="middle" font-size="22" font-weight="bold">shmlane: IPC between two processes, by transport and message size</text>
<text x="{x}" y="58" text-anchor="middle" font-size="13" fill="#555">{machine}; {date} (UTC); processes pinned to different CPUs</text>"##,
        x = WIDTH / 2.0,
        machine = esc(&machine()),
        date = today(),
    );

    // Legend.
    let item_w = 110.0;
    let lx0 = WIDTH / 2.0 - item_w * kinds.len() as f64 / 2.0;
    for (i, k) in kinds.iter().enumerate() {
        let x = lx0 + i as f64 * item_w;
        let _ = writeln!(
            o,
            r#"<rect x="{x}" y="76" width="14" height="14" fill="{c}"/><text x="{tx}" y="88" font-size="14">{n}</text>"#,
            c = colour(*k),
            tx = x + 20.0,
            n = k.name()
        );
    }

    let plot_w = WIDTH - LEFT - RIGHT;
    let group_w = plot_w / sizes.len().max(1) as f64;
    let bar_w = (group_w * 0.8 / kinds.len().max(1) as f64).min(48.0);
    let pad = (group_w - bar_w * kinds.len() as f64) / 2.0;
    let bar_x = |g: usize, b: usize| LEFT + g as f64 * group_w + pad + b as f64 * bar_w;

    for (axis, title, label) in [
        (
            &lat,
            "Round trip: p50 (bar) and p99 (whisker), log scale; lower is better",
            "round trip",
        ),
        (
            &tput,
            "One-way throughput: messages per second, log scale; higher is better",
            "messages/s",
        ),
    ] {
        let is_lat = std::ptr::eq(axis, &lat);
        let _ = writeln!(
            o,
            r#"<text x="{LEFT}" y="{y}" font-size="16" font-weight="bold">{title}</text>"#,
            y = axis.top - 22.0
        );
        // Grid and y labels.
        for v in axis.decades() {
            let y = axis.y(v);
            let text = tick_label(v, is_lat);
            let _ = writeln!(
                o,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{x2}" y2="{y:.1}" stroke="#ddd"/><text x="{tx}" y="{ty:.1}" text-anchor="end" font-size="12" fill="#444">{text}</text>"##,
                x2 = WIDTH - RIGHT,
                tx = LEFT - 8.0,
                ty = y + 4.0
            );
            for m in 2..10 {
                let ym = axis.y(v * f64::from(m));
                if v * f64::from(m) < axis.hi {
                    let _ = writeln!(
                        o,
                        r##"<line x1="{LEFT}" y1="{ym:.1}" x2="{x2}" y2="{ym:.1}" stroke="#f3f3f3"/>"##,
                        x2 = WIDTH - RIGHT
                    );
                }
            }
        }
        let _ = writeln!(
            o,
            r##"<text transform="translate(22 {y}) rotate(-90)" text-anchor="middle" font-size="13" fill="#444">{label}</text>"##,
            y = axis.top + PANEL_H / 2.0
        );
        // Bars.
        for (g, &size) in sizes.iter().enumerate() {
            let cx = LEFT + (g as f64 + 0.5) * group_w;
            let _ = writeln!(
                o,
                r#"<text x="{cx:.1}" y="{y}" text-anchor="middle" font-size="14" font-weight="bold">{s}</text>"#,
                y = axis.bottom() + 20.0,
                s = human_size(size)
            );
            if g > 0 {
                let x = LEFT + g as f64 * group_w;
                let _ = writeln!(
                    o,
                    r##"<line x1="{x:.1}" y1="{t}" x2="{x:.1}" y2="{b}" stroke="#bbb" stroke-dasharray="4 4"/>"##,
                    t = axis.top,
                    b = axis.bottom()
                );
            }
            let mut best: Option<(f64, f64, f64)> = None;
            for (b, &k) in kinds.iter().enumerate() {
                let Some(row) = find(k, size) else { continue };
                let x = bar_x(g, b);
                let mid = x + bar_w / 2.0;
                match &row.outcome {
                    Outcome::Measured(m) => {
                        let v = if is_lat { m.rtt.p50 } else { m.msgs_per_s };
                        let y = axis.y(v);
                        let tip = format!(
                            "{} {}: round trip p50 {}, p99 {}, p99.9 {}; {} msgs/s, {:.3} GB/s",
                            k.name(),
                            human_size(size),
                            human_ns(m.rtt.p50),
                            human_ns(m.rtt.p99),
                            human_ns(m.rtt.p999),
                            human_rate(m.msgs_per_s),
                            row.gb_per_s().unwrap_or(0.0)
                        );
                        let _ = writeln!(
                            o,
                            r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="{c}"><title>{t}</title></rect>"#,
                            w = bar_w - 2.0,
                            h = (axis.bottom() - y).max(0.5),
                            c = colour(k),
                            t = esc(&tip)
                        );
                        let mut label_y = y;
                        if is_lat {
                            let y99 = axis.y(m.rtt.p99);
                            let _ = writeln!(
                                o,
                                r##"<line x1="{mid:.1}" y1="{y:.1}" x2="{mid:.1}" y2="{y99:.1}" stroke="#333"/><line x1="{a:.1}" y1="{y99:.1}" x2="{b2:.1}" y2="{y99:.1}" stroke="#333"/>"##,
                                a = mid - bar_w / 4.0,
                                b2 = mid + bar_w / 4.0
                            );
                            label_y = y99;
                        } else if best.is_none_or(|(r, _, _)| v > r) {
                            best = Some((v, mid, y));
                        }
                        let text = if is_lat { human_ns(v) } else { human_rate(v) };
                        let _ = writeln!(
                            o,
                            r##"<text transform="translate({tx:.1} {ty:.1}) rotate(-90)" font-size="10" fill="#333">{text}</text>"##,
                            tx = mid + 3.5,
                            ty = label_y - 4.0
                        );
                    }
                    Outcome::NotApplicable(why) => {
                        let _ = writeln!(
                            o,
                            r##"<text transform="translate({tx:.1} {ty:.1}) rotate(-90)" font-size="11" fill="#888">n/a<title>{t}</title></text>"##,
                            tx = mid + 4.0,
                            ty = axis.bottom() - 4.0,
                            t = esc(why)
                        );
                    }
                    Outcome::Failed(e) => {
                        let _ = writeln!(
                            o,
                            r##"<text transform="translate({tx:.1} {ty:.1}) rotate(-90)" font-size="11" fill="#c00">failed<title>{t}</title></text>"##,
                            tx = mid + 4.0,
                            ty = axis.bottom() - 4.0,
                            t = esc(e)
                        );
                    }
                }
            }
            if let Some((v, _, _)) = best {
                let gb = v * size as f64 / 1e9;
                let _ = writeln!(
                    o,
                    r##"<text x="{cx:.1}" y="{y}" text-anchor="middle" font-size="11" fill="#555">best {gb:.2} GB/s</text>"##,
                    y = axis.bottom() + 36.0
                );
            }
        }
        // Frame.
        let _ = writeln!(
            o,
            r##"<rect x="{LEFT}" y="{t}" width="{plot_w}" height="{PANEL_H}" fill="none" stroke="#888"/>"##,
            t = axis.top
        );
    }
    o.push_str("</svg>\n");
    o
}
