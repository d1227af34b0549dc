//! The command line as a Unix user expects it: `--version`, help per
//! command, `--flag=value`, status 2 for every usage error.

use std::process::{Command, Output};

fn shmlane(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shmlane"))
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn version() {
    for flag in ["--version", "-V"] {
        let out = shmlane(&[flag]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(
            text(&out.stdout),
            format!("shmlane {}\n", env!("CARGO_PKG_VERSION"))
        );
    }
}

#[test]
fn help_per_command() {
    let help = shmlane(&["help", "bench"]);
    assert!(help.status.success(), "{}", text(&help.stderr));
    let help = text(&help.stdout);
    assert!(help.contains("Usage: shmlane bench [OPTIONS]"), "{help}");
    for flag in [
        "--transports",
        "--sizes",
        "--duration",
        "--json",
        "--plot",
        "--only",
    ] {
        assert!(help.contains(flag), "no {flag} in {help}");
    }
    // The same text both ways.
    let long = shmlane(&["bench", "--help"]);
    assert!(long.status.success());
    assert_eq!(text(&long.stdout), help);
    for cmd in ["send", "recv", "ls", "stat", "rm"] {
        let out = shmlane(&[cmd, "--help"]);
        assert!(out.status.success(), "{cmd}: {}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains(&format!("Usage: shmlane {cmd}")),
            "{cmd}: {}",
            text(&out.stdout)
        );
    }
    // The overview names every command.
    let out = shmlane(&["--help"]);
    assert!(out.status.success());
    for cmd in ["bench", "send", "recv", "ls", "stat", "rm"] {
        assert!(text(&out.stdout).contains(cmd), "{cmd}");
    }
}

#[test]
fn usage_errors_exit_2_on_every_command() {
    for args in [
        &[][..],
        &["frobnicate"],
        &["ls", "--frobnicate"],
        &["ls", "extra"],
        &["stat"],
        &["stat", "a", "b"],
        &["stat", "pigeon:x"],
        &["rm"],
        &["rm", "--stale", "x"],
        &["send"],
        &["recv", "bogus:x"],
        &["send", "shm:x", "--timeout=soon"],
        &["bench", "--sizes=8,lots"],
        &["bench", "--only=codec", "--json"],
    ] {
        let out = shmlane(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(!out.stderr.is_empty(), "{args:?}: said nothing");
        assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out.stdout));
    }
}
