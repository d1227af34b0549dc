//! Process-wide signal dispositions (other than SIGBUS, see
//! [`sigbus`](crate::sigbus)).

use std::sync::Once;

/// Sets `SIGPIPE` to ignored, once per process, if it has the default
/// action (a handler someone installed is left alone), so that writing to
/// a pipe whose reader is gone fails with `EPIPE` instead of killing the
/// process. Rust programs already ignore it; C hosts may not.
pub fn ignore_sigpipe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: an all-zero sigaction is a valid "query" buffer.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: a null new action only reads the current one into `old`.
        let ok = unsafe { libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) } == 0;
        if ok && old.sa_sigaction == libc::SIG_DFL {
            // SAFETY: as above; SIG_IGN needs no handler code.
            let mut ign: libc::sigaction = unsafe { std::mem::zeroed() };
            ign.sa_sigaction = libc::SIG_IGN;
            // SAFETY: `ign` is a fully initialised sigaction.
            unsafe { libc::sigaction(libc::SIGPIPE, &ign, std::ptr::null_mut()) };
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigpipe_ends_up_ignored() {
        // The Rust runtime already ignores SIGPIPE; the call keeps that.
        ignore_sigpipe();
        ignore_sigpipe();
        // SAFETY: an all-zero sigaction is a valid "query" buffer.
        let mut now: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: a null new action only reads the current one into `now`.
        let r = unsafe { libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut now) };
        assert_eq!(r, 0);
        assert_eq!(now.sa_sigaction, libc::SIG_IGN);
    }
}
