//! Sizes, times and rates as people read and write them.

pub(super) fn mq_msgsize_max() -> usize {
    std::fs::read_to_string("/proc/sys/fs/mqueue/msgsize_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(8192)
}

/// `8 B`, `64 B`, `4 KiB`, `1 MiB`, `1.5 KiB`.
pub fn human_size(bytes: usize) -> String {
    let unit = |div: usize, name: &str| {
        if bytes % div == 0 {
            format!("{} {name}", bytes / div)
        } else {
            format!("{:.1} {name}", bytes as f64 / div as f64)
        }
    };
    if bytes >= 1 << 20 {
        unit(1 << 20, "MiB")
    } else if bytes >= 1 << 10 {
        unit(1 << 10, "KiB")
    } else {
        format!("{bytes} B")
    }
}

/// Parses a message size for the comparison: `8`, `64`, `4K`, `4KiB`,
/// `1M`, `1MiB` (K = 1024), in `MIN_SIZE..=MAX_SIZE`; the error says what
/// is wrong, for a command line to show.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let lower = s.trim().to_ascii_lowercase();
    let (num, mult) = if let Some(n) = lower
        .strip_suffix("kib")
        .or_else(|| lower.strip_suffix("kb"))
        .or_else(|| lower.strip_suffix('k'))
    {
        (n, 1usize << 10)
    } else if let Some(n) = lower
        .strip_suffix("mib")
        .or_else(|| lower.strip_suffix("mb"))
        .or_else(|| lower.strip_suffix('m'))
    {
        (n, 1 << 20)
    } else {
        (lower.strip_suffix('b').unwrap_or(&lower), 1)
    };
    let n = num
        .trim()
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("`{s}` is not a size (write e.g. 8, 64, 4K, 1M)"))?;
    if !(super::MIN_SIZE..=super::MAX_SIZE).contains(&n) {
        return Err(format!(
            "{n} bytes is out of range: sizes go from {} B (a message carries an \
             8-byte sequence number) to {}",
            super::MIN_SIZE,
            human_size(super::MAX_SIZE)
        ));
    }
    Ok(n)
}

/// `812 ns`, `12.3 us`, `4.56 ms`.
pub fn human_ns(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.1} us", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// `950`, `12.3 k`, `4.56 M`.
pub fn human_rate(r: f64) -> String {
    if r < 1e3 {
        format!("{r:.0}")
    } else if r < 1e6 {
        format!("{:.1} k", r / 1e3)
    } else {
        format!("{:.2} M", r / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transports::{Kind, Settings};
    use std::time::Duration;

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size("8"), Ok(8));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("4kib"), Ok(4096));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("64B"), Ok(64));
        assert!(parse_size("x").unwrap_err().contains("not a size"));
        assert!(parse_size("").is_err());
        assert!(parse_size("4").unwrap_err().contains("out of range"));
        assert!(parse_size("2M").unwrap_err().contains("out of range"));
        assert_eq!(human_size(4096), "4 KiB");
        assert_eq!(human_size(1 << 20), "1 MiB");
        assert_eq!(human_size(8), "8 B");
    }

    #[test]
    fn json_keeps_every_character_of_a_note() {
        use crate::transports::{json, Outcome, Row};
        let note = "a\"b\\c\nd\u{1}";
        let rows = [Row {
            kind: Kind::Pipe,
            size: 8,
            outcome: Outcome::Failed(note.into()),
            placement: None,
        }];
        let v: serde_json::Value = serde_json::from_str(&json(&rows)).unwrap();
        assert_eq!(v[0]["note"], note);
        assert_eq!(v[0]["status"], "failed");
        assert!(v[0]["rtt_p50_ns"].is_null());
    }

    #[test]
    fn limits() {
        assert!(Kind::Signal.cannot_carry(4096).is_none());
        assert!(Kind::Signal.cannot_carry(8192).is_some());
        assert!(Kind::Pipe.cannot_carry(1 << 20).is_none());
        assert!(Kind::Shm.cannot_carry(1 << 20).is_none());
    }

    #[test]
    fn budget_shares_the_duration() {
        let s = Settings {
            kinds: vec![Kind::Pipe, Kind::Signal],
            sizes: vec![8, 1 << 20],
            duration: Duration::from_secs(6),
            runs: 1,
        };
        // 3 cells (signal cannot carry 1 MiB), 2 phases each.
        let b = s.phase_budget().as_secs_f64();
        assert!((b - 6.0 * 0.85 / 6.0).abs() < 1e-9, "{b}");
    }
}
