//! What a notification says about one job.

use std::path::Path;

use super::JobResult;
use crate::notify::{Notice, NoticeDest};
use crate::settings::JobPlan;

/// The notice for job `plan` that ended with `r` (`config` for the command it suggests).
pub fn of(plan: &JobPlan, r: &JobResult, config: &Path) -> Notice {
    let container = plan.qualified_container();
    // Each failed destination's own error says more than the job's count of them.
    let failed: Vec<String> = r
        .destinations
        .iter()
        .filter_map(|d| d.error.as_ref().map(|e| format!("{}: {e}", d.destination)))
        .collect();
    let error = if failed.is_empty() {
        r.error.clone()
    } else {
        Some(failed.join("; "))
    };
    Notice {
        job: r.job.clone(),
        one_off: false,
        container,
        destination: None,
        ok: r.ok,
        skipped: r.skipped,
        error,
        bytes: r.bytes,
        seconds: r.seconds,
        finished: r.finished,
        destinations: r
            .destinations
            .iter()
            .map(|d| NoticeDest {
                name: d.destination.clone(),
                ok: d.ok,
                backup_id: d.id.clone(),
                error: d.error.clone(),
            })
            .collect(),
        command: format!(
            "dockyard run {} --config {}",
            shell_words::quote(&r.job),
            shell_words::quote(&config.display().to_string())
        ),
    }
}
