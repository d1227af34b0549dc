//! `shmlane bench`: the transport comparison through the real binary
//! (its peers are the same binary, re-run).

use std::process::{Command, Output};

use serde_json::Value;

fn shmlane(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shmlane"))
        .args(args)
        .output()
        .unwrap()
}

/// The rows of `bench --json`: one JSON array of objects.
fn parse_rows(text: &str) -> Vec<serde_json::Map<String, Value>> {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {text}"))
        .iter()
        .map(|r| r.as_object().expect("rows are objects").clone())
        .collect()
}

fn field<'a>(row: &'a serde_json::Map<String, Value>, key: &str) -> &'a Value {
    row.get(key)
        .unwrap_or_else(|| panic!("no `{key}` in {row:?}"))
}

fn number(row: &serde_json::Map<String, Value>, key: &str) -> f64 {
    field(row, key)
        .as_f64()
        .unwrap_or_else(|| panic!("`{key}` is not a number in {row:?}"))
}

#[test]
fn json_rows_for_the_chosen_transports_only() {
    let out = shmlane(&[
        "bench",
        "--transports",
        "pipe,unix",
        "--sizes",
        "8",
        "--duration",
        "2",
        "--json",
    ]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}\n{stdout}");
    let rows = parse_rows(&stdout);
    assert_eq!(rows.len(), 2, "{stdout}");
    let mut names: Vec<&str> = rows
        .iter()
        .map(|r| field(r, "transport").as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["pipe", "unix"]);
    for row in &rows {
        assert_eq!(field(row, "size"), 8);
        assert_eq!(field(row, "status"), "ok");
        for key in [
            "rtt_p50_ns",
            "rtt_p99_ns",
            "rtt_p999_ns",
            "msgs_per_s",
            "gb_per_s",
        ] {
            let v = number(row, key);
            assert!(v > 0.0, "{key} = {v}");
        }
        let p50 = number(row, "rtt_p50_ns");
        let p99 = number(row, "rtt_p99_ns");
        assert!(p50 <= p99);
        // Each row says the placement it ran on (null where the bench could
        // not pin its two processes to two CPUs).
        if !field(row, "floor_ns").is_null() {
            assert!(number(row, "floor_ns") > 0.0, "{row:?}");
            assert!(number(row, "runs_kept") >= 1.0, "{row:?}");
            assert!(number(row, "runs_made") >= number(row, "runs_kept"));
        }
        assert!(field(row, "placement_differs").is_boolean());
    }
}

/// The System V rows: the ring in a System V segment and the System V
/// queue measure as the others do, and the queue's n/a above msgmax.
#[test]
fn system_v_rows() {
    let out = shmlane(&[
        "bench",
        "--transports",
        "sysv,sysvmq",
        "--sizes",
        "8,1M",
        "--duration",
        "2",
        "--json",
    ]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}\n{stdout}");
    let rows = parse_rows(&stdout);
    assert_eq!(rows.len(), 4, "{stdout}");
    for row in &rows {
        let name = field(row, "transport").as_str().unwrap();
        let size = number(row, "size");
        if name == "sysvmq" && size > 8.0 {
            assert_eq!(field(row, "status"), "n/a", "{row:?}");
            continue;
        }
        assert_eq!(field(row, "status"), "ok", "{row:?}");
        assert!(number(row, "rtt_p50_ns") > 0.0, "{row:?}");
        assert!(number(row, "msgs_per_s") > 0.0, "{row:?}");
    }
}

/// With the `zenoh` feature, `zenoh` rows: Zenoh pub/sub between the two
/// processes on loopback, as every other transport is measured.
#[cfg(feature = "zenoh")]
#[test]
fn zenoh_rows() {
    let out = shmlane(&[
        "bench",
        "--transports",
        "zenoh",
        "--sizes",
        "8,4K",
        "--duration",
        "2",
        "--json",
    ]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}\n{stdout}");
    let rows = parse_rows(&stdout);
    assert_eq!(rows.len(), 2, "{stdout}");
    for row in &rows {
        assert_eq!(field(row, "transport"), "zenoh");
        assert_eq!(field(row, "status"), "ok", "{row:?}");
        assert!(number(row, "rtt_p50_ns") > 0.0, "{row:?}");
        assert!(number(row, "msgs_per_s") > 0.0, "{row:?}");
    }
}

#[test]
fn cells_a_transport_cannot_carry_are_not_errors() {
    let out = shmlane(&[
        "bench",
        "--transports",
        "signal",
        "--sizes",
        "1M",
        "--duration",
        "1",
        "--json",
    ]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = parse_rows(&stdout);
    assert_eq!(rows.len(), 1);
    assert_eq!(field(&rows[0], "status"), "n/a");
    assert!(field(&rows[0], "rtt_p50_ns").is_null());
}

#[test]
fn bad_options_exit_2_with_a_message() {
    for (args, says) in [
        (
            &["bench", "--frobnicate"][..],
            "unexpected argument '--frobnicate'",
        ),
        (
            &["bench", "--transports", "pipe,carrier-pigeon"][..],
            "carrier-pigeon",
        ),
        (&["bench", "--sizes", "8,lots"][..], "`lots` is not a size"),
        (&["bench", "--sizes", "4"][..], "out of range"),
        (&["bench", "--sizes", "2M"][..], "out of range"),
        (&["bench", "--duration", "-1"][..], "--duration"),
        (
            &["bench", "--duration"][..],
            "a value is required for '--duration",
        ),
        (
            &["bench", "--duration=0"][..],
            "not a positive number of seconds",
        ),
        (&["bench", "--runs=0"][..], "--runs"),
        (
            &["bench", "--only", "everything"][..],
            "invalid value 'everything' for '--only",
        ),
        (
            &["bench", "--only", "in-process", "--json"][..],
            "--json does not apply to --only in-process",
        ),
    ] {
        let out = shmlane(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(stderr.contains("--help"), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn plot_writes_an_svg() {
    let dir = shmlane_testkit::TempDir::new("bench");
    let path = dir.path().join("plot.svg");
    let out = shmlane(&[
        "bench",
        "--transports",
        "shm,pipe,signal",
        "--sizes",
        "64,1M",
        "--duration",
        "2",
        "--plot",
        path.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The table: both sizes, the ratio column, signal's 1 MiB as n/a.
    assert!(
        stdout.contains("1 MiB") && stdout.contains("64 B"),
        "{stdout}"
    );
    assert!(
        stdout.contains("n/a: signal frames are at most 4 KiB"),
        "{stdout}"
    );
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(svg.starts_with("<svg"), "{svg}");
    assert!(svg.trim_end().ends_with("</svg>"));
    for name in ["shm", "pipe", "signal"] {
        assert!(
            svg.contains(&format!(">\n{name}\n</text>")),
            "no legend for {name}"
        );
    }
    // Well-formed XML, where python3 is there to say so.
    if let Ok(check) = Command::new("python3")
        .args([
            "-c",
            "import sys, xml.etree.ElementTree as E; E.parse(sys.argv[1])",
        ])
        .arg(&path)
        .output()
    {
        assert!(
            check.status.success(),
            "{}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
}

#[test]
fn json_with_flag_equals_value_is_one_json_document() {
    // As `shmlane bench --duration=1 --json | jq .` would read it.
    let out = shmlane(&[
        "bench",
        "--duration=1",
        "--transports=shm,pipe",
        "--sizes=64",
        "--json",
    ]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = parse_rows(&stdout);
    assert_eq!(rows.len(), 2, "{stdout}");
    for row in &rows {
        assert_eq!(field(row, "size"), 64);
        assert!(number(row, "samples") >= 1.0, "{row:?}");
    }
}

#[test]
fn plot_writes_a_png() {
    let dir = shmlane_testkit::TempDir::new("bench-png");
    let path = dir.path().join("plot.png");
    let out = shmlane(&[
        "bench",
        "--transports=shm,signal",
        "--sizes=64,1M",
        "--duration=1",
        "--plot",
        path.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("no TrueType font") {
        return eprintln!("skipped: {stderr}");
    }
    assert!(out.status.success(), "{stderr}");
    let png = std::fs::read(&path).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // A blank 1200x1100 PNG compresses to a few kilobytes; dots, text and
    // axes take far more.
    assert!(png.len() > 20_000, "{} bytes: nearly empty?", png.len());
}

#[test]
fn in_process_prints_the_thread_table_and_crossbeams_shapes() {
    let out = shmlane(&[
        "bench",
        "--only",
        "in-process",
        "--runs",
        "1",
        "--messages",
        "2000",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("shmlane/crossbeam"), "{text}");
    // The thread table: 1/1, 2/2 and 4/4, each with its ratio, floor and
    // rounds kept/made.
    for threads in ["1/1", "2/2", "4/4"] {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(threads))
            .unwrap_or_else(|| panic!("no {threads} row in {text}"));
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert!(cells[3].ends_with('x'), "{line}");
        assert!(cells[4].parse::<f64>().is_ok(), "{line}");
        assert!(cells[5].contains('/'), "{line}");
    }
    // Every row of crossbeam-channel's benchmark program, with a ratio.
    for row in [
        "bounded0_spsc",
        "bounded1_mpmc",
        "bounded_seq",
        "unbounded_select_rx",
        "bounded0_select_both",
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(row) && l[row.len()..].starts_with(' '))
            .unwrap_or_else(|| panic!("no {row} row in {text}"));
        // The ratio, then the floor probes around the row.
        let ratio = line.split_whitespace().nth(3).unwrap_or("");
        assert!(ratio.ends_with('x'), "{line}");
    }
    assert_eq!(text.lines().filter(|l| l.contains("bounded")).count(), 22);
}

#[test]
fn peers_prints_a_row_per_size_beside_the_floors() {
    let out = shmlane(&["bench", "--peers", "--runs", "1", "--scale", "0.01"]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}\n{stdout}");
    for column in [
        "floor",
        "floor+copy",
        "floor2+copy",
        "shmlane busy",
        "shmlane default",
        "busy, 64 slots",
        "busy/floor+copy",
        "busy/floor2+copy",
        "64 slots/floor+copy",
    ] {
        assert!(stdout.contains(column), "no `{column}` in\n{stdout}");
    }
    for size in ["8 B", "64 B", "1 KiB", "4 KiB"] {
        assert!(
            stdout.lines().any(|l| l.trim_start().starts_with(size)),
            "no row for {size} in\n{stdout}"
        );
    }
    // --peers is a section of its own.
    let both = shmlane(&["bench", "--peers", "--only", "codec"]);
    assert_eq!(both.status.code(), Some(2));
}

#[test]
fn codec_compares_large_messages_with_the_transfer_floor() {
    let out = shmlane(&[
        "bench", "--only", "codec", "--runs", "1", "--scale", "0.0001",
    ]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}\n{stdout}");
    for label in [
        "transfer floor",
        "zero-copy (send_with + recv_ref)",
        "copy in + copy out",
        "validate",
        "unchecked",
    ] {
        assert!(stdout.contains(label), "no `{label}` in\n{stdout}");
    }
    for size in ["64 KiB", "1 MiB"] {
        assert!(
            stdout.lines().any(|l| l.trim_start().starts_with(size)),
            "no row for {size} in\n{stdout}"
        );
    }
    // Two ratios to the floor per size.
    assert_eq!(stdout.matches("x (>= 0.").count(), 4, "{stdout}");
}
