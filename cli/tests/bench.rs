//! `shmlane bench`: the transport comparison through the real binary
//! (its peers are the same binary, re-run).

use std::process::{Command, Output};

fn shmlane(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shmlane"))
        .args(args)
        .output()
        .unwrap()
}

/// The objects of a JSON array of flat objects, as (key, raw value)
/// pairs, after checking the text is one well-formed JSON value. A small
/// strict parser, so that the test needs no JSON dependency.
fn parse_rows(text: &str) -> Vec<Vec<(String, String)>> {
    struct P<'a> {
        s: &'a [u8],
        i: usize,
    }
    impl P<'_> {
        fn ws(&mut self) {
            while self.i < self.s.len() && b" \t\r\n".contains(&self.s[self.i]) {
                self.i += 1;
            }
        }
        fn eat(&mut self, c: u8) {
            self.ws();
            assert_eq!(
                self.s.get(self.i),
                Some(&c),
                "expected `{}` at byte {}",
                c as char,
                self.i
            );
            self.i += 1;
        }
        fn peek(&mut self) -> u8 {
            self.ws();
            self.s[self.i]
        }
        fn string(&mut self) -> String {
            self.eat(b'"');
            let mut out = String::new();
            loop {
                let c = self.s[self.i];
                self.i += 1;
                match c {
                    b'"' => return out,
                    b'\\' => {
                        let e = self.s[self.i];
                        self.i += 1;
                        match e {
                            b'"' | b'\\' | b'/' => out.push(e as char),
                            b'n' => out.push('\n'),
                            b't' => out.push('\t'),
                            b'r' => out.push('\r'),
                            b'u' => {
                                let hex = std::str::from_utf8(&self.s[self.i..self.i + 4]).unwrap();
                                out.push(
                                    char::from_u32(u32::from_str_radix(hex, 16).unwrap()).unwrap(),
                                );
                                self.i += 4;
                            }
                            other => panic!("bad escape \\{}", other as char),
                        }
                    }
                    c if c < 0x20 => panic!("raw control character in a string"),
                    c => out.push(c as char),
                }
            }
        }
        fn scalar(&mut self) -> String {
            self.ws();
            if self.peek() == b'"' {
                return format!("\"{}\"", self.string());
            }
            let start = self.i;
            while self.i < self.s.len() && !b",} \n\t\r]".contains(&self.s[self.i]) {
                self.i += 1;
            }
            let raw = std::str::from_utf8(&self.s[start..self.i])
                .unwrap()
                .to_owned();
            assert!(
                raw == "null" || raw == "true" || raw == "false" || raw.parse::<f64>().is_ok(),
                "bad JSON value `{raw}`"
            );
            raw
        }
    }
    let mut p = P {
        s: text.as_bytes(),
        i: 0,
    };
    let mut rows = Vec::new();
    p.eat(b'[');
    if p.peek() != b']' {
        loop {
            p.eat(b'{');
            let mut row = Vec::new();
            loop {
                let k = p.string();
                p.eat(b':');
                row.push((k, p.scalar()));
                if p.peek() == b',' {
                    p.eat(b',');
                } else {
                    break;
                }
            }
            p.eat(b'}');
            rows.push(row);
            if p.peek() == b',' {
                p.eat(b',');
            } else {
                break;
            }
        }
    }
    p.eat(b']');
    p.ws();
    assert_eq!(p.i, p.s.len(), "text after the JSON array");
    rows
}

fn field<'a>(row: &'a [(String, String)], key: &str) -> &'a str {
    row.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no `{key}` in {row:?}"))
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
    let mut names: Vec<&str> = rows.iter().map(|r| field(r, "transport")).collect();
    names.sort_unstable();
    assert_eq!(names, ["\"pipe\"", "\"unix\""]);
    for row in &rows {
        assert_eq!(field(row, "size"), "8");
        assert_eq!(field(row, "status"), "\"ok\"");
        for key in [
            "rtt_p50_ns",
            "rtt_p99_ns",
            "rtt_p999_ns",
            "msgs_per_s",
            "gb_per_s",
        ] {
            let v: f64 = field(row, key).parse().unwrap();
            assert!(v > 0.0, "{key} = {v}");
        }
        let p50: f64 = field(row, "rtt_p50_ns").parse().unwrap();
        let p99: f64 = field(row, "rtt_p99_ns").parse().unwrap();
        assert!(p50 <= p99);
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
    assert_eq!(field(&rows[0], "status"), "\"n/a\"");
    assert_eq!(field(&rows[0], "rtt_p50_ns"), "null");
}

#[test]
fn bad_options_exit_2_with_a_message() {
    for (args, says) in [
        (
            &["bench", "--frobnicate"][..],
            "unknown option `--frobnicate`",
        ),
        (
            &["bench", "--transports", "pipe,carrier-pigeon"][..],
            "carrier-pigeon",
        ),
        (&["bench", "--sizes", "8,lots"][..], "`lots` is not a size"),
        (&["bench", "--sizes", "4"][..], "out of range"),
        (&["bench", "--sizes", "2M"][..], "out of range"),
        (&["bench", "--duration", "-1"][..], "--duration"),
        (&["bench", "--duration"][..], "--duration needs"),
        (&["bench", "--only", "everything"][..], "--only takes"),
        (
            &["bench", "--only", "in-process", "--json"][..],
            "--json does not apply",
        ),
    ] {
        let out = shmlane(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(stderr.contains("usage: shmlane"), "{args:?}: {stderr}");
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
    assert!(svg.starts_with("<?xml"), "{svg}");
    assert!(svg.trim_end().ends_with("</svg>"));
    for name in ["shm", "pipe", "signal"] {
        assert!(
            svg.contains(&format!(">{name}</text>")),
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
