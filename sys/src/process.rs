//! Who this process is, and whether a process still runs.

/// This process's id.
pub fn pid() -> u32 {
    std::process::id()
}

/// The effective user id.
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Process `pid`'s start time in clock ticks since boot (field 22 of
/// `/proc/PID/stat`), to tell a live pid from a reused one. 0 if unknown
/// (no such process, or no `/proc`).
pub fn start_time(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    parse_start_time(&stat)
}

fn parse_start_time(stat: &str) -> u64 {
    // The command name (field 2) is in parentheses and may hold spaces.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return 0;
    };
    rest.split_whitespace()
        .nth(19)
        .and_then(|f| f.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_skips_odd_command_names() {
        let fields: Vec<String> = (3..=22).map(|i| i.to_string()).collect();
        let stat = format!("42 (a) b ) c) {}", fields.join(" "));
        assert_eq!(parse_start_time(&stat), 22);
        assert_eq!(parse_start_time("42 (no close"), 0);
        assert_eq!(parse_start_time("42 (short) S 1"), 0);
    }

    #[test]
    fn this_process_is_known() {
        assert_ne!(start_time(pid()), 0);
        assert_eq!(start_time(pid()), start_time(pid()));
        // SAFETY: geteuid cannot fail.
        assert_eq!(euid(), unsafe { libc::geteuid() });
        assert_eq!(start_time(u32::MAX), 0);
    }
}
