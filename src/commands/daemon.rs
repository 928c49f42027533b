//! `dockyard daemon`: runs the config file's jobs on their cron schedules, in the foreground, one
//! job at a time. SIGTERM/SIGINT end it through main's clean-up: a running job is aborted (its
//! partial upload is discarded, helpers removed, stopped containers started again).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Result;
use chrono::{DateTime, Utc};
use cron::Schedule;

use super::run::run_plans;
use super::Ctx;
use crate::config;
use crate::destination::RemoteOptions;
use crate::error::Failure;
use crate::settings::{file::plans, JobPlan};

/// Runs forever (until a signal), each scheduled job at its next time.
pub async fn run(
    ctx: &Ctx,
    path: &Path,
    metrics: Option<PathBuf>,
    remote: &RemoteOptions,
) -> Result<()> {
    let config = config::load(path)?;
    let lock_dir = crate::lock::lock_dir(config.lock_dir.clone());
    let metrics = metrics.or(config.metrics_file.clone());
    let mut jobs: Vec<(JobPlan, Schedule, DateTime<Utc>)> = Vec::new();
    for plan in plans(&config, &[], remote)? {
        let Some(expr) = config.schedule_of(plan.name()) else {
            tracing::info!(
                job = plan.name(),
                "no schedule: only `dockyard run` runs it"
            );
            continue;
        };
        let schedule = Schedule::from_str(expr).map_err(|e| {
            Failure::usage(format!("job {:?}: schedule {expr:?}: {e}", plan.name()))
        })?;
        let next = schedule.upcoming(Utc).next().ok_or_else(|| {
            Failure::usage(format!(
                "job {:?}: schedule {expr:?} never fires",
                plan.name()
            ))
        })?;
        jobs.push((plan, schedule, next));
    }
    if jobs.is_empty() {
        return Err(Failure::usage(format!(
            "no job in {} has a schedule; add schedule = \"0 15 2 * * *\" to a job",
            path.display()
        ))
        .into());
    }
    for (plan, _, next) in &jobs {
        tracing::info!(job = plan.name(), next = %next, "scheduled");
        ctx.out.event(
            "scheduled",
            Some(plan.name()),
            serde_json::json!({ "next": next }),
        );
    }
    loop {
        let (i, at) = jobs
            .iter()
            .enumerate()
            .min_by_key(|(_, (_, _, next))| *next)
            .map(|(i, (_, _, next))| (i, *next))
            .expect("at least one job");
        let wait = (at - Utc::now()).to_std().unwrap_or_default();
        ctx.idle.store(true, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(wait).await;
        ctx.idle.store(false, std::sync::atomic::Ordering::SeqCst);
        let plan = jobs[i].0.clone();
        run_plans(
            ctx,
            std::slice::from_ref(&plan),
            &lock_dir,
            metrics.as_deref(),
        )
        .await;
        // Runs missed while the job ran are skipped, not queued.
        let (plan, schedule, next) = &mut jobs[i];
        *next = schedule
            .after(&Utc::now())
            .next()
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        ctx.out.event(
            "scheduled",
            Some(plan.name()),
            serde_json::json!({ "next": next }),
        );
    }
}
