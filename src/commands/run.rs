//! `dockyard run [JOB]...`: the config file's jobs and the labelled containers' (found now), once
//! each (what cron calls), run by
//! [`jobs`](crate::jobs); a summary (text or JSON Lines) reports every job's result.

use anyhow::Result;
use serde_json::json;

use super::Ctx;
use crate::jobs::{counted, run_plans, Events, JobEnv, JobResult};
use crate::settings::Jobs;

impl Events for Ctx {
    fn job(&self, name: &str, result: &JobResult) {
        self.out.event(
            "job",
            Some(name),
            serde_json::to_value(result).expect("serialisable"),
        );
    }
}

/// Runs the jobs `jobs` holds (those named, or all).
pub async fn run(ctx: &Ctx, mut jobs: Jobs) -> Result<()> {
    let env = JobEnv::new(&mut jobs)?;
    let plans = crate::labels::all_plans(ctx, &jobs).await?;
    let (results, first_error) = run_plans(ctx, &plans, &env, ctx).await;
    let failed: Vec<&str> = results
        .iter()
        .filter(|r| !r.ok)
        .map(|r| r.job.as_str())
        .collect();
    ctx.out.event(
        "summary",
        None,
        json!({"ok": failed.is_empty(), "jobs": results.len(), "failed": failed}),
    );
    if !ctx.output.json {
        for r in &results {
            ctx.say(&format!(
                "job {}: {} in {:.1}s{}",
                r.job,
                if r.ok {
                    "ok"
                } else if r.skipped {
                    "skipped"
                } else {
                    "FAILED"
                },
                r.seconds,
                r.error
                    .as_ref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ));
            for d in &r.destinations {
                ctx.say(&format!(
                    "  {}: {}",
                    d.destination,
                    match (&d.id, &d.error) {
                        (Some(id), None) => format!(
                            "{id} ({}){}",
                            indicatif::HumanBytes(d.bytes),
                            if d.pruned > 0 {
                                format!(", pruned {}", d.pruned)
                            } else {
                                String::new()
                            }
                        ),
                        (_, Some(e)) => format!("FAILED: {e}"),
                        _ => "ok".into(),
                    }
                ));
            }
        }
    }
    match first_error {
        Some(e) => Err(counted(&e, "jobs", &failed, results.len())),
        None => Ok(()),
    }
}
