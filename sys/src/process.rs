//! Who this process is, and whether a process still runs.

use std::io;
use std::os::fd::OwnedFd;
use std::time::Instant;

use rustix::process::{Pid, PidfdFlags};

use crate::poll::{poll_one, PollFlags};

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

/// A pidfd for process `pid` (Linux 5.3+), which polls readable once the
/// process exits (zombies included). `Ok(None)` where the kernel lacks
/// pidfds (`ENOSYS`).
///
/// # Errors
///
/// The OS error: `ESRCH` for no such process, `EINVAL` for a pid that is
/// not positive, `EMFILE`...
pub fn pidfd_open(pid: i32) -> io::Result<Option<OwnedFd>> {
    if pid <= 0 {
        // What the kernel answers for a pid that is not positive.
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    match rustix::process::pidfd_open(pid_of(pid), PidfdFlags::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(rustix::io::Errno::NOSYS) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Kills this process with `SIGKILL` at once (no handler runs, nothing
/// is flushed): what the test-only crash points of `shmlane-shm` do.
pub fn kill_self() -> ! {
    let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    // SIGKILL is not deliverable later than now; should the call have
    // failed, end anyway, as abruptly.
    std::process::abort()
}

/// `kill(pid, 0)`: whether process `pid` exists and this process may
/// signal it, with `kill`'s meaning of other pids (0: this process's
/// group, `-n`: group `n`).
///
/// # Errors
///
/// `ESRCH` for no such process (or group), `EPERM` where signals to it
/// are not allowed.
pub fn check_kill(pid: i32) -> io::Result<()> {
    let r = match pid {
        0 => rustix::process::test_kill_current_process_group(),
        p if p > 0 => rustix::process::test_kill_process(pid_of(p)),
        // `kill(INT_MIN, 0)` names no group: the kernel answers ESRCH.
        p => match p.checked_neg() {
            Some(g) => rustix::process::test_kill_process_group(pid_of(g)),
            None => Err(rustix::io::Errno::SRCH),
        },
    };
    Ok(r?)
}

/// The `Pid` of a positive raw pid.
fn pid_of(raw: i32) -> Pid {
    debug_assert!(raw > 0);
    Pid::from_raw(raw).unwrap_or(Pid::INIT)
}

/// Whether process `pid` is gone: its `pidfd` (from [`pidfd_open`]) polls
/// readable, or, without one, [`check_kill`] fails with `ESRCH`. Anything
/// else, errors included, counts as alive.
pub fn is_gone(pid: i32, pidfd: Option<&OwnedFd>) -> bool {
    match pidfd {
        Some(fd) => poll_one(fd, PollFlags::IN, Some(Instant::now())).is_ok_and(|r| !r.is_empty()),
        None => check_kill(pid).is_err_and(|e| e.raw_os_error() == Some(libc::ESRCH)),
    }
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

/// The CPUs online now (`sysconf(_SC_NPROCESSORS_ONLN)`), at least 1.
pub fn online_cpus() -> usize {
    // SAFETY: sysconf takes an integer and touches no memory of ours.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1).max(1)
}

/// Pins the calling thread to CPU `cpu` (for benchmarks: both sides on
/// known, different CPUs).
///
/// # Errors
///
/// The OS error (`EINVAL` for a CPU that is not online or allowed).
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    Ok(rustix::thread::sched_setaffinity(None, &set)?)
}

/// Lets the calling thread run on CPUs `0..cpus` again.
///
/// # Errors
///
/// The OS error.
pub fn unpin(cpus: usize) -> io::Result<()> {
    let mut set = rustix::thread::CpuSet::new();
    for cpu in 0..cpus.min(rustix::thread::CpuSet::MAX_CPU) {
        set.set(cpu);
    }
    Ok(rustix::thread::sched_setaffinity(None, &set)?)
}

/// Has the kernel kill this process with SIGKILL when its parent dies
/// (`PR_SET_PDEATHSIG`), so a helper process never outlives its parent.
///
/// # Errors
///
/// The OS error.
pub fn die_with_parent() -> io::Result<()> {
    Ok(rustix::process::set_parent_process_death_signal(Some(
        rustix::process::Signal::KILL,
    ))?)
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

    #[test]
    fn exited_children_are_gone() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let id = child.id() as i32;
        let fd = pidfd_open(id).unwrap();
        child.wait().unwrap();
        if let Some(fd) = &fd {
            assert!(is_gone(id, Some(fd)));
        }
        // Reaped: no such process (barring reuse of the pid meanwhile).
        let me = pid() as i32;
        assert!(!is_gone(me, None));
        assert!(!is_gone(0, None));
        assert!(is_gone(i32::MIN, None));
        check_kill(me).unwrap();
        check_kill(0).unwrap();
        assert!(pidfd_open(me)
            .unwrap()
            .is_some_and(|fd| !is_gone(me, Some(&fd))));
        assert_eq!(
            pidfd_open(0).unwrap_err().raw_os_error(),
            Some(libc::EINVAL)
        );
        assert_eq!(
            pidfd_open(-1).unwrap_err().raw_os_error(),
            Some(libc::EINVAL)
        );
    }
}
