//! Failpoints for real-process tests: with `STRATA_PAUSE_AT=<point>:<n>` in
//! its environment, the process stops itself (SIGSTOP) the `n`-th time it
//! reaches `<point>`, after logging `failpoint reached`, so that a test can
//! pause an owner exactly in the middle of an upload (`upload`: objects
//! written, index not committed), a compaction (`compaction`: output written,
//! switch not committed) or a GC pass (`gc`: ownership confirmed, objects not
//! deleted yet), then let another process take over and resume it (SIGCONT).
//! Without the variable a point costs one atomic load.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

static CONFIG: OnceLock<Option<(String, u64)>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

fn config() -> Option<&'static (String, u64)> {
    CONFIG
        .get_or_init(|| {
            let value = std::env::var("STRATA_PAUSE_AT").ok()?;
            let (point, n) = value.split_once(':').unwrap_or((value.as_str(), "1"));
            Some((point.to_string(), n.parse().unwrap_or(1)))
        })
        .as_ref()
}

/// Marks that the process reached `point`; stops it there if so configured.
pub(crate) fn reached(point: &'static str) {
    let Some((name, n)) = config() else { return };
    if name != point || HITS.fetch_add(1, Ordering::AcqRel) + 1 != *n {
        return;
    }
    tracing::warn!(point, "failpoint reached: this process stops itself (SIGSTOP)");
    let pid = std::process::id().to_string();
    if let Err(e) = std::process::Command::new("kill").args(["-STOP", &pid]).status() {
        tracing::error!(error = %e, "failpoint: cannot stop the process");
    }
    tracing::info!(point, "failpoint: resumed");
}
