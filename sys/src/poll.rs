//! Waiting for descriptors until a deadline (`ppoll`).

use std::io;
use std::os::fd::AsFd;
use std::time::Instant;

use rustix::event::Timespec;
pub use rustix::event::{PollFd, PollFlags};

/// Waits until one of `fds` is ready or `until` passes (`None`: forever);
/// a signal that interrupts the wait (`EINTR`) resumes it with the time
/// left. Returns `false` on timeout. A deadline already past polls once.
///
/// # Errors
///
/// The OS error of `ppoll` other than `EINTR` (`ENOMEM`, `EINVAL`...).
pub fn poll(fds: &mut [PollFd<'_>], until: Option<Instant>) -> io::Result<bool> {
    loop {
        let ts = until.map(|u| {
            let left = u.saturating_duration_since(Instant::now());
            Timespec {
                tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(left.subsec_nanos()),
            }
        });
        match rustix::event::poll(fds, ts.as_ref()) {
            Ok(0) => {
                if until.is_some_and(|u| Instant::now() >= u) {
                    return Ok(false);
                }
            }
            Ok(_) => return Ok(true),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Polls one descriptor for `events`; returns the events that came, empty
/// on timeout.
///
/// # Errors
///
/// As [`poll`].
pub fn poll_one(fd: impl AsFd, events: PollFlags, until: Option<Instant>) -> io::Result<PollFlags> {
    let mut p = [PollFd::from_borrowed_fd(fd.as_fd(), events)];
    Ok(if poll(&mut p, until)? {
        p[0].revents()
    } else {
        PollFlags::empty()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn readiness_and_deadlines() {
        let (r, w) = rustix::pipe::pipe().unwrap();
        let now = Some(Instant::now());
        assert!(poll_one(&r, PollFlags::IN, now).unwrap().is_empty());
        let soon = Some(Instant::now() + Duration::from_millis(5));
        assert!(poll_one(&r, PollFlags::IN, soon).unwrap().is_empty());
        assert!(poll_one(&w, PollFlags::OUT, None)
            .unwrap()
            .contains(PollFlags::OUT));
        rustix::io::write(&w, b"x").unwrap();
        let mut fds = [
            PollFd::new(&w, PollFlags::IN),
            PollFd::new(&r, PollFlags::IN),
        ];
        assert!(poll(&mut fds, None).unwrap());
        assert!(fds[0].revents().is_empty());
        assert!(fds[1].revents().contains(PollFlags::IN));
        drop(w);
        let mut buf = [0u8; 1];
        rustix::io::read(&r, &mut buf).unwrap();
        assert!(poll_one(&r, PollFlags::IN, None)
            .unwrap()
            .contains(PollFlags::HUP));
    }
}
