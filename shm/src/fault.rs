//! Test-only crash points.
//!
//! With the `fault-injection` feature (enabled only by the workspace's
//! dev-dependencies, never by a release build of the library or the CLI),
//! [`point`] kills the calling process with `SIGKILL` when its label
//! matches `SHMLANE_FAULT`. The variable is `LABEL` (die at the first
//! hit) or `LABEL@N` (die at the N-th hit, counting from 1). Without the
//! feature, [`point`] is an empty inline function.
//!
//! Labels are `area.step`, e.g. `create.after_open`, `send.after_claim`.

/// A labelled crash point. See the module docs.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn point(_label: &'static str) {}

/// Whether crash points are compiled in.
pub const ENABLED: bool = cfg!(feature = "fault-injection");

/// A labelled crash point. See the module docs.
#[cfg(feature = "fault-injection")]
pub fn point(label: &'static str) {
    armed::point(label);
}

#[cfg(feature = "fault-injection")]
mod armed {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    struct Target {
        label: String,
        nth: u64,
    }

    fn target() -> Option<&'static Target> {
        static TARGET: OnceLock<Option<Target>> = OnceLock::new();
        TARGET
            .get_or_init(|| {
                let spec = std::env::var("SHMLANE_FAULT").ok()?;
                let (label, nth) = match spec.split_once('@') {
                    Some((l, n)) => (l.to_owned(), n.parse().ok()?),
                    None => (spec, 1),
                };
                Some(Target { label, nth })
            })
            .as_ref()
    }

    pub(super) fn point(label: &'static str) {
        static HITS: AtomicU64 = AtomicU64::new(0);
        let Some(t) = target() else { return };
        if t.label != label {
            return;
        }
        // Relaxed: a counter of hits of one label; nothing else is ordered.
        if HITS.fetch_add(1, Ordering::Relaxed) + 1 == t.nth {
            shmlane_sys::process::kill_self();
        }
    }
}
