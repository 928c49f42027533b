//! `dockyard daemon`: runs the config file's jobs on their cron schedules, each read in its time
//! zone, in the foreground, up to `parallel_jobs` at once and never two that share a container or
//! where one stops a container the other uses (a job that hangs until its helper's deadline holds
//! back no other container's jobs); a `catch_up` job whose run was missed while the daemon was
//! down runs once at start. SIGTERM/SIGINT end it through main's clean-up: running jobs are
//! aborted (partial uploads discarded, helpers removed, stopped containers started again); an
//! idle daemon exits 0.

use std::collections::HashSet;
use std::path::Path;

use anyhow::Result;
use chrono::{DateTime, Utc};
use futures_util::stream::{FuturesUnordered, StreamExt};

use super::Ctx;
use crate::error::Failure;
use crate::jobs::{run_plans, JobEnv};
use crate::last_run;
use crate::schedule::Timing;
use crate::settings::{JobPlan, Jobs};

/// A job the daemon runs, and when.
struct Scheduled {
    plan: JobPlan,
    timing: Timing,
    next: DateTime<Utc>,
}

/// Runs forever (until a signal), each scheduled job at its next time.
pub async fn run(ctx: &Ctx, mut lowered: Jobs) -> Result<()> {
    let env = JobEnv::new(&mut lowered)?;
    let state_dir = ctx.dirs.state().to_path_buf();
    let path = lowered.config.clone();
    let now = Utc::now();
    let mut jobs = Vec::new();
    let mut catch_up = Vec::new();
    for plan in lowered.plans {
        let Some(sc) = plan.schedule().cloned() else {
            tracing::info!(
                job = plan.name(),
                "no schedule: only `dockyard run` runs it"
            );
            continue;
        };
        let timing = sc.timing;
        let next = timing.next_after(now).ok_or_else(|| {
            Failure::usage(format!(
                "job {:?}: schedule {:?} never fires again",
                plan.name(),
                timing.schedule.as_str()
            ))
        })?;
        if sc.catch_up {
            match last_run::read(&state_dir, plan.name()) {
                Some(last) if timing.missed(last, now) => {
                    tracing::info!(job = plan.name(), last_run = %timing.local(last), "a run was missed while the daemon was down: running it now (catch_up)");
                    catch_up.push(jobs.len());
                }
                Some(_) => {}
                // Nothing recorded yet: from now on a missed run can be told.
                None => stamp(&state_dir, plan.name(), now),
            }
        }
        jobs.push(Scheduled { plan, timing, next });
    }
    if jobs.is_empty() {
        return Err(Failure::usage(format!(
            "no job in {} has a schedule; add schedule = \"30 2 * * *\" to a job",
            path.display()
        ))
        .into());
    }
    // Between jobs from here on: a SIGTERM is a clean stop (exit 0).
    set_idle(ctx, true);
    for job in &jobs {
        announce(ctx, job);
    }
    for i in catch_up {
        jobs[i].next = now;
    }
    let mut running = FuturesUnordered::new();
    let mut busy: HashSet<usize> = HashSet::new();
    loop {
        let now = Utc::now();
        // Start every due job there is room for, never two that share or stop a container.
        for i in 0..jobs.len() {
            if running.len() >= env.parallel.max(1) {
                break;
            }
            if jobs[i].next > now
                || busy.contains(&i)
                || busy.iter().any(|&b| jobs[b].plan.clashes(&jobs[i].plan))
            {
                continue;
            }
            busy.insert(i);
            let plan = jobs[i].plan.clone();
            let env = &env;
            running.push(async move {
                let started = Utc::now();
                run_plans(ctx, std::slice::from_ref(&plan), env, ctx).await;
                (i, started)
            });
        }
        set_idle(ctx, running.is_empty());
        // Sleep until the next job that could start, or until a running one ends.
        let startable = running.len() < env.parallel.max(1);
        let next = jobs
            .iter()
            .enumerate()
            .filter(|(i, j)| {
                startable
                    && !busy.contains(i)
                    && !busy.iter().any(|&b| jobs[b].plan.clashes(&j.plan))
            })
            .map(|(_, j)| j.next)
            .min();
        let wait = next.map(|n| (n - now).to_std().unwrap_or_default());
        tokio::select! {
            Some((i, started)) = running.next(), if !running.is_empty() => {
                busy.remove(&i);
                finished(ctx, &mut jobs[i], &state_dir, started);
            }
            _ = sleep_or_forever(wait) => {}
        }
    }
}

/// Sleeps `wait`, or forever when there is nothing to wait for.
async fn sleep_or_forever(wait: Option<std::time::Duration>) {
    match wait {
        Some(w) => tokio::time::sleep(w).await,
        None => std::future::pending().await,
    }
}

/// Records a job's run and schedules its next one (runs missed while it ran are skipped, not
/// queued).
fn finished(ctx: &Ctx, job: &mut Scheduled, state_dir: &Path, started: DateTime<Utc>) {
    stamp(state_dir, job.plan.name(), started);
    job.next = job
        .timing
        .next_after(Utc::now())
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    announce(ctx, job);
}

/// Whether a signal now finds the daemon between jobs.
fn set_idle(ctx: &Ctx, idle: bool) {
    ctx.idle.store(idle, std::sync::atomic::Ordering::SeqCst);
}

/// Records when a job ran; a failure to record only costs a catch-up, so it is a warning.
fn stamp(state_dir: &Path, job: &str, at: DateTime<Utc>) {
    if let Err(e) = last_run::write(state_dir, job, at) {
        tracing::warn!(job, dir = %state_dir.display(), error = %e, "cannot record the run; catch_up cannot see runs missed after this");
    }
}

/// Says when a job runs next, in its zone.
fn announce(ctx: &Ctx, job: &Scheduled) {
    let local = job.timing.local(job.next);
    let zone = job.timing.zone.to_string();
    tracing::info!(job = job.plan.name(), next = %local, timezone = %zone, "scheduled");
    ctx.out.event(
        "scheduled",
        Some(job.plan.name()),
        serde_json::json!({ "next": job.next, "next_local": local, "timezone": zone }),
    );
}
