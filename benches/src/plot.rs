//! The transport comparison as a chart, drawn with plotters (SVG or PNG):
//! three panels over one x axis, a group per message size and a column
//! per transport, in the same colours throughout, each on a log scale:
//!
//! - round trip: a dot at p50, a whisker from p50 up to p99 (lower is
//!   better);
//! - one-way messages per second (higher is better);
//! - one-way GB/s (higher is better).
//!
//! Dots, not bars: on a log axis a bar starts at an arbitrary floor, so
//! its length says nothing; a dot sits at its value. Each value's label
//! starts beside its dot (right of the whisker) and reads upwards, so it
//! sits at the height of the number it names.
//! Cells a transport cannot carry say `n/a` at the bottom of their column,
//! failed ones `failed`. The title names the machine, its kernel and the
//! date.
//!
//! Text is drawn with a TrueType font found on the system (DejaVu Sans,
//! Liberation Sans, or the first `.ttf` under `/usr/share/fonts`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontTransform;

use crate::transports::{human_ns, human_rate, human_size, Kind, Outcome, Row};

/// The chart's size in pixels.
pub const SIZE: (u32, u32) = (1200, 1100);

/// The family the font is registered under.
const FONT: &str = "sans-serif";

/// Colours (Tableau 10), one per transport in [`Kind::ALL`] order.
fn colour(kind: Kind) -> &'static RGBColor {
    match kind {
        Kind::Shm => &RGBColor(0xe1, 0x57, 0x59),
        Kind::Pipe => &RGBColor(0x4e, 0x79, 0xa7),
        Kind::Fifo => &RGBColor(0x76, 0xb7, 0xb2),
        Kind::Unix => &RGBColor(0x59, 0xa1, 0x4f),
        Kind::Mq => &RGBColor(0xed, 0xc9, 0x48),
        Kind::Tcp => &RGBColor(0xb0, 0x7a, 0xa1),
        Kind::Signal => &RGBColor(0x9c, 0x75, 0x5f),
        Kind::Sysv => &RGBColor(0xff, 0x9d, 0xa7),
        Kind::SysvMq => &RGBColor(0xf2, 0x8e, 0x2b),
        #[cfg(feature = "zenoh")]
        Kind::Zenoh => &RGBColor(0xba, 0xb0, 0xac),
    }
}

/// Finds a TrueType font and registers it with plotters, once.
fn font() -> Result<(), String> {
    static FOUND: OnceLock<Result<(), String>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let known = [
                "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                "/usr/share/fonts/dejavu/DejaVuSans.ttf",
                "/usr/share/fonts/TTF/DejaVuSans.ttf",
                "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
                "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
            ];
            let path = known
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
                .or_else(|| first_ttf(Path::new("/usr/share/fonts"), 4))
                .ok_or(
                    "no TrueType font for the chart's text under /usr/share/fonts \
                     (install fonts-dejavu-core)",
                )?;
            let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            // plotters keeps fonts for the life of the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font(FONT, FontStyle::Normal, bytes)
                .map_err(|_| format!("{}: not a usable TrueType font", path.display()))
        })
        .clone()
}

fn first_ttf(dir: &Path, depth: u32) -> Option<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    entries
        .iter()
        .find(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("ttf")))
        .cloned()
        .or_else(|| {
            (depth > 0)
                .then(|| {
                    entries
                        .iter()
                        .filter(|p| p.is_dir())
                        .find_map(|d| first_ttf(d, depth - 1))
                })
                .flatten()
        })
}

/// The date today (UTC), `YYYY-MM-DD`.
fn today() -> String {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    now.get(..10).unwrap_or(&now).to_owned()
}

/// `N CPUs, MODEL, Linux RELEASE`, from /proc.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
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

/// A row's figure in a panel, and the top of its whisker if it has one.
type Figure = Option<(f64, Option<f64>)>;

/// One panel: what it shows of a row (the value, and the top of its
/// whisker), how its numbers read, and its caption.
struct Panel {
    caption: &'static str,
    value: fn(&Row) -> Figure,
    label: fn(f64) -> String,
}

fn gb_label(v: f64) -> String {
    if v >= 1.0 {
        format!("{v:.2} GB/s")
    } else {
        format!("{v:.3} GB/s")
    }
}

const PANELS: [Panel; 3] = [
    Panel {
        caption: "round trip: dot p50, whisker up to p99 (lower is better)",
        value: |r| r.measured().map(|m| (m.rtt.p50, Some(m.rtt.p99))),
        label: human_ns,
    },
    Panel {
        caption: "one way: messages per second (higher is better)",
        value: |r| r.measured().map(|m| (m.msgs_per_s, None)),
        label: |v| format!("{}/s", human_rate(v)),
    },
    Panel {
        caption: "one way: GB/s, 10^9 bytes per second (higher is better)",
        value: |r| r.gb_per_s().map(|g| (g, None)),
        label: gb_label,
    },
];

/// The decade at or below `v`.
fn decade_below(v: f64) -> f64 {
    10f64.powf(v.log10().floor())
}

/// The decade at or above `v`.
fn decade_above(v: f64) -> f64 {
    10f64.powf(v.log10().ceil())
}

fn err(e: impl std::fmt::Display) -> String {
    format!("drawing the chart: {e}")
}

/// Draws the chart onto `root`. `rows` in any order; columns follow
/// [`Kind::ALL`].
fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, rows: &[Row]) -> Result<(), String> {
    let kinds: Vec<Kind> = Kind::ALL
        .iter()
        .copied()
        .filter(|k| rows.iter().any(|r| r.kind == *k))
        .collect();
    let mut sizes: Vec<usize> = rows.iter().map(|r| r.size).collect();
    sizes.sort_unstable();
    sizes.dedup();
    if kinds.is_empty() || sizes.is_empty() {
        return Err("no rows to draw".into());
    }
    root.fill(&WHITE).map_err(err)?;
    let title = format!(
        "shmlane bench: IPC between two processes ({}, {})",
        machine(),
        today()
    );
    let root = root.titled(&title, (FONT, 20)).map_err(err)?;
    let (legend, panels) = root.split_vertically(36);

    // The legend: one dot and name per transport, in a row.
    for (i, kind) in kinds.iter().enumerate() {
        let x = 100 + 130 * i as i32;
        legend
            .draw(
                &(EmptyElement::at((x, 16))
                    + Circle::new((0, 0), 6, colour(*kind).filled())
                    + Text::new(
                        kind.name(),
                        (12, 0),
                        TextStyle::from((FONT, 16).into_font())
                            .pos(Pos::new(HPos::Left, VPos::Center)),
                    )),
            )
            .map_err(err)?;
    }

    // Where a transport's column sits within its size's group.
    let slot = |kind: Kind, size_index: usize| {
        let k = kinds.iter().position(|x| *x == kind).unwrap_or(0);
        size_index as f64 - 0.4 + 0.8 * (k as f64 + 0.5) / kinds.len() as f64
    };
    let n = sizes.len();
    for (area, panel) in panels.split_evenly((3, 1)).iter().zip(&PANELS) {
        let points: Vec<(Kind, f64, f64, Option<f64>)> = rows
            .iter()
            .filter_map(|r| {
                let i = sizes.iter().position(|s| *s == r.size)?;
                let (v, top) = (panel.value)(r)?;
                (v > 0.0 && v.is_finite()).then(|| (r.kind, slot(r.kind, i), v, top))
            })
            .collect();
        let lo = points.iter().map(|p| p.2).fold(f64::INFINITY, f64::min);
        let hi = points
            .iter()
            .map(|p| p.3.unwrap_or(p.2).max(p.2))
            .fold(0.0, f64::max);
        // Whole decades, the lowest dot at least half a decade above the
        // bottom, and a decade more above for the labels that read upwards
        // from their dots.
        let (lo, hi) = if points.is_empty() {
            (1.0, 10.0)
        } else {
            (decade_below(lo / 3.0), decade_above(hi) * 10.0)
        };
        let mut chart = ChartBuilder::on(area)
            .margin(8)
            .caption(panel.caption, (FONT, 16))
            .x_label_area_size(28)
            .y_label_area_size(90)
            .build_cartesian_2d(-0.5..n as f64 - 0.5, (lo..hi).log_scale())
            .map_err(err)?;
        let size_label = |x: &f64| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < n {
                human_size(sizes[i as usize])
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&size_label)
            .y_label_formatter(&|v| (panel.label)(*v))
            .label_style((FONT, 13))
            .draw()
            .map_err(err)?;
        // Whiskers first, under the dots.
        chart
            .draw_series(points.iter().filter_map(|&(kind, x, v, top)| {
                top.map(|t| PathElement::new(vec![(x, v), (x, t)], colour(kind).stroke_width(2)))
            }))
            .map_err(err)?;
        chart
            .draw_series(
                points
                    .iter()
                    .map(|&(kind, x, v, _)| Circle::new((x, v), 5, colour(kind).filled())),
            )
            .map_err(err)?;
        let upward = TextStyle::from((FONT, 12).into_font().transform(FontTransform::Rotate270))
            .pos(Pos::new(HPos::Left, VPos::Center));
        // Beside the whisker, a third of a column to the right (offsets in
        // pixels would turn with the text).
        let beside = 0.8 / kinds.len() as f64 / 3.0;
        chart
            .draw_series(points.iter().map(|&(_, x, v, _)| {
                EmptyElement::at((x + beside, v))
                    + Text::new((panel.label)(v), (0, 0), upward.clone())
            }))
            .map_err(err)?;
        // Cells without a figure, at the bottom of their column.
        chart
            .draw_series(rows.iter().filter_map(|r| {
                let i = sizes.iter().position(|s| *s == r.size)?;
                let what = match &r.outcome {
                    Outcome::Measured(_) => return None,
                    Outcome::NotApplicable(_) => "n/a",
                    Outcome::Failed(_) => "failed",
                };
                Some(
                    EmptyElement::at((slot(r.kind, i), lo))
                        + Text::new(what, (0, -4), upward.clone().color(colour(r.kind))),
                )
            }))
            .map_err(err)?;
    }
    root.present().map_err(err)
}

/// The chart as SVG text.
///
/// # Errors
///
/// No rows, no usable font, or plotters failing.
pub fn svg(rows: &[Row]) -> Result<String, String> {
    font()?;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        draw(&root, rows)?;
    }
    Ok(out)
}

/// The chart as RGB pixels, [`SIZE`], row by row.
///
/// # Errors
///
/// As [`svg`].
pub fn pixels(rows: &[Row]) -> Result<Vec<u8>, String> {
    font()?;
    let mut buf = vec![0u8; SIZE.0 as usize * SIZE.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, SIZE).into_drawing_area();
        draw(&root, rows)?;
    }
    Ok(buf)
}

/// Writes the chart to `path`: PNG for a `.png` name, SVG otherwise.
///
/// # Errors
///
/// As [`svg`], or the file cannot be written.
pub fn write(rows: &[Row], path: &Path) -> Result<(), String> {
    let png = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if png {
        let rgb = pixels(rows)?;
        let fail = |e: &dyn std::fmt::Display| format!("writing {}: {e}", path.display());
        let file = std::fs::File::create(path).map_err(|e| fail(&e))?;
        let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), SIZE.0, SIZE.1);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(|e| fail(&e))?;
        writer.write_image_data(&rgb).map_err(|e| fail(&e))?;
        writer.finish().map_err(|e| fail(&e))
    } else {
        let text = svg(rows)?;
        std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::Latency;
    use crate::transports::Measured;

    fn row(kind: Kind, size: usize, p50: f64, rate: f64) -> Row {
        Row {
            kind,
            size,
            outcome: Outcome::Measured(Measured {
                rtt: Latency {
                    p50,
                    p99: p50 * 3.0,
                    p999: p50 * 5.0,
                },
                samples: 1000,
                msgs_per_s: rate,
            }),
            placement: None,
        }
    }

    fn rows() -> Vec<Row> {
        vec![
            row(Kind::Shm, 64, 240.0, 26e6),
            row(Kind::Pipe, 64, 45_000.0, 1.8e6),
            row(Kind::Shm, 1 << 20, 138_000.0, 36e3),
            row(Kind::Pipe, 1 << 20, 728_000.0, 2.3e3),
            Row {
                kind: Kind::Signal,
                size: 1 << 20,
                outcome: Outcome::NotApplicable("signal frames are at most 4 KiB".into()),
                placement: None,
            },
        ]
    }

    #[test]
    fn the_png_has_every_transports_colour_and_text() {
        let px = match pixels(&rows()) {
            Ok(px) => px,
            // No font on this system: nothing to check the drawing with.
            Err(e) if e.contains("no TrueType font") => return eprintln!("skipped: {e}"),
            Err(e) => panic!("{e}"),
        };
        let rgb: Vec<[u8; 3]> = px.chunks(3).map(|c| [c[0], c[1], c[2]]).collect();
        let inked = rgb.iter().filter(|p| **p != [255, 255, 255]).count();
        assert!(
            inked > rgb.len() / 100,
            "almost blank: {inked} pixels inked"
        );
        for kind in [Kind::Shm, Kind::Pipe, Kind::Signal] {
            let RGBColor(r, g, b) = *colour(kind);
            let n = rgb.iter().filter(|p| **p == [r, g, b]).count();
            assert!(n > 50, "{kind:?}: {n} pixels of its colour");
        }
        // Dark pixels: the text and axes.
        let dark = rgb.iter().filter(|p| p.iter().all(|c| *c < 80)).count();
        assert!(dark > 2000, "{dark} dark pixels: no text?");
    }

    #[test]
    fn the_svg_names_every_transport_and_size() {
        let svg = match svg(&rows()) {
            Ok(s) => s,
            Err(e) if e.contains("no TrueType font") => return eprintln!("skipped: {e}"),
            Err(e) => panic!("{e}"),
        };
        // plotters writes each text on a line of its own.
        for text in ["shm", "pipe", "signal", "64 B", "1 MiB", "n/a"] {
            assert!(svg.contains(&format!(">\n{text}\n</text>")), "no {text}");
        }
        assert!(svg.contains("shmlane bench: IPC between two processes"));
    }

    #[test]
    fn no_rows_is_an_error_not_a_panic() {
        assert!(svg(&[]).is_err());
    }
}
