//! Test-only crash points, and pause points (see [`pause`]).
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

/// A labelled pause point (test only): with the `fault-injection` feature,
/// when `SHMLANE_PAUSE` holds `LABEL:PATH` (several, separated by `,`, so
/// a PATH has no comma), the first hit of `LABEL` creates the file
/// `PATH.reached`, then waits
/// until a file `PATH.go` exists (60 s at most, a hang guard), so that a
/// test can act at exactly that point of another process. Without the
/// feature it is an empty inline function.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn pause(_label: &'static str) {}

/// A labelled pause point (see the doc of the featureless `pause`).
#[cfg(feature = "fault-injection")]
pub fn pause(label: &'static str) {
    armed::pause(label);
}

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

    pub(super) fn pause(label: &'static str) {
        use std::sync::atomic::AtomicBool;
        static SPECS: OnceLock<Vec<(String, String, AtomicBool)>> = OnceLock::new();
        let specs = SPECS.get_or_init(|| {
            std::env::var("SHMLANE_PAUSE")
                .unwrap_or_default()
                .split(',')
                .filter_map(|s| s.split_once(':'))
                .map(|(l, p)| (l.to_owned(), p.to_owned(), AtomicBool::new(false)))
                .collect()
        });
        // Relaxed: only the first hit pauses; nothing else is ordered.
        let Some((_, path, _)) = specs
            .iter()
            .find(|(l, _, done)| l == label && !done.swap(true, Ordering::Relaxed))
        else {
            return;
        };
        let _ = std::fs::write(format!("{path}.reached"), b"");
        let go = std::path::PathBuf::from(format!("{path}.go"));
        let start = std::time::Instant::now();
        while !go.exists() && start.elapsed() < std::time::Duration::from_secs(60) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
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
