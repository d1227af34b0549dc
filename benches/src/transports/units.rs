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

/// Parses a size: `8`, `64`, `4K`, `4KiB`, `1M`, `1MiB` (K = 1024).
pub fn parse_size(s: &str) -> Option<usize> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
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
    let n: usize = num.trim().parse().ok()?;
    n.checked_mul(mult)
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
    use crate::transports::{json_string, Kind, Settings};
    use std::time::Duration;

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size("8"), Some(8));
        assert_eq!(parse_size("4K"), Some(4096));
        assert_eq!(parse_size("4kib"), Some(4096));
        assert_eq!(parse_size("1M"), Some(1 << 20));
        assert_eq!(parse_size("64B"), Some(64));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(human_size(4096), "4 KiB");
        assert_eq!(human_size(1 << 20), "1 MiB");
        assert_eq!(human_size(8), "8 B");
    }

    #[test]
    fn json_escapes() {
        assert_eq!(json_string("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u0001\"");
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
