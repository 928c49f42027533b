//! `dockyard daemon`: runs the config file's jobs and the labelled containers' on their cron
//! schedules, each read in its time zone, in the foreground, up to `parallel_jobs` at once and
//! never two that share a container or where one stops a container the other uses (a job that
//! hangs until its helper's deadline holds back no other container's jobs); a `catch_up` job
//! whose run was missed while the daemon was down runs once at start. It follows each engine's
//! container events, so labelled containers created, relabelled or removed later are taken up or
//! dropped without a restart. SIGTERM/SIGINT end it through main's clean-up: running jobs are
//! aborted (partial uploads discarded, helpers removed, stopped containers started again); an
//! idle daemon exits 0.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::pin::Pin;

use anyhow::Result;
use chrono::{DateTime, Utc};
use futures_util::stream::{FuturesUnordered, Stream, StreamExt};

use super::Ctx;
use crate::error::Failure;
use crate::jobs::{run_plans, JobEnv};
use crate::last_run;
use crate::ops::Session;
use crate::schedule::Timing;
use crate::settings::file::LabelSource;
use crate::settings::{JobPlan, Jobs};

/// A job the daemon runs, and when.
struct Scheduled {
    plan: JobPlan,
    timing: Timing,
    next: DateTime<Utc>,
}

/// The jobs by a number that stays theirs while they are kept; label jobs come and go.
#[derive(Default)]
struct Table {
    jobs: BTreeMap<u64, Scheduled>,
    /// The label jobs (scheduled or not, invalid ones too) by name: their number if scheduled,
    /// their engine, and the plan as it was found, to tell a relabelled container.
    labelled: BTreeMap<String, Labelled>,
    next_id: u64,
}

impl Table {
    /// Adds a job that has a schedule; returns its number.
    fn add(&mut self, plan: JobPlan, timing: Timing, next: DateTime<Utc>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.jobs.insert(id, Scheduled { plan, timing, next });
        id
    }
}

/// A label job as the daemon knows it.
struct Labelled {
    /// Its number in the table, if it has a schedule.
    id: Option<u64>,
    /// The engine its container is on.
    engine: Option<String>,
    /// Its plan as found (`Debug`), to tell when the labels changed.
    shape: String,
}

/// Runs forever (until a signal), each scheduled job at its next time.
pub async fn run(ctx: &Ctx, mut lowered: Jobs) -> Result<()> {
    let env = JobEnv::new(&mut lowered)?;
    let state_dir = ctx.dirs.state().to_path_buf();
    let path = lowered.config.clone();
    let now = Utc::now();
    let mut table = Table::default();
    let mut catch_up = Vec::new();
    let plans = crate::labels::all_plans(ctx, &lowered).await?;
    // The file's jobs come first (merge keeps them first; the daemon names none).
    let from_file = lowered.plans.len();
    for (i, plan) in plans.into_iter().enumerate() {
        let id = if i >= from_file {
            take_labelled(ctx, &mut table, plan, now, "found", false)
        } else {
            let Some(sc) = plan.schedule().cloned() else {
                tracing::info!(
                    job = plan.name(),
                    "no schedule: only `dockyard run` runs it"
                );
                continue;
            };
            let next = sc.timing.next_after(now).ok_or_else(|| {
                Failure::usage(format!(
                    "job {:?}: schedule {:?} never fires again",
                    plan.name(),
                    sc.timing.schedule.as_str()
                ))
            })?;
            Some(table.add(plan, sc.timing, next))
        };
        if let Some(id) = id.filter(|id| missed(&state_dir, &table.jobs[id], now)) {
            catch_up.push(id);
        }
    }
    if table.jobs.is_empty() && lowered.labels.is_none() {
        return Err(Failure::usage(format!(
            "no job in {} has a schedule; add schedule = \"30 2 * * *\" to a job",
            path.display()
        ))
        .into());
    }
    if table.jobs.is_empty() {
        tracing::warn!("no scheduled job yet: waiting for labelled containers (dockyard.enable=true, dockyard.schedule)");
    }
    // Between jobs from here on: a SIGTERM is a clean stop (exit 0).
    set_idle(ctx, true);
    for job in table.jobs.values() {
        announce(ctx, job);
    }
    for id in catch_up {
        if let Some(job) = table.jobs.get_mut(&id) {
            job.next = now;
        }
    }
    let mut changes = match &lowered.labels {
        Some(source) => futures_util::stream::select_all(
            source
                .engines
                .iter()
                .map(|e| watch(ctx, e.clone()))
                .collect::<Vec<_>>(),
        )
        .boxed(),
        None => futures_util::stream::pending().boxed(),
    };
    let mut running = FuturesUnordered::new();
    // The running jobs' plans: a label job updated or removed while it runs still counts until
    // it ends (no job of its container starts beside it).
    let mut busy: HashMap<u64, JobPlan> = HashMap::new();
    loop {
        let now = Utc::now();
        let clashes = |busy: &HashMap<u64, JobPlan>, job: &Scheduled| {
            busy.values().any(|b| b.clashes(&job.plan))
        };
        // Start every due job there is room for, never two that share or stop a container.
        let ids: Vec<u64> = table.jobs.keys().copied().collect();
        for id in ids {
            if running.len() >= env.parallel.max(1) {
                break;
            }
            let job = &table.jobs[&id];
            if job.next > now || busy.contains_key(&id) || clashes(&busy, job) {
                continue;
            }
            busy.insert(id, job.plan.clone());
            let plan = job.plan.clone();
            let env = &env;
            running.push(async move {
                let started = Utc::now();
                run_plans(ctx, std::slice::from_ref(&plan), env, ctx).await;
                (id, started)
            });
        }
        set_idle(ctx, running.is_empty());
        // Sleep until the next job that could start, or until a running one ends.
        let startable = running.len() < env.parallel.max(1);
        let next = table
            .jobs
            .iter()
            .filter(|(id, j)| startable && !busy.contains_key(id) && !clashes(&busy, j))
            .map(|(_, j)| j.next)
            .min();
        let wait = next.map(|n| (n - now).to_std().unwrap_or_default());
        tokio::select! {
            Some((id, started)) = running.next(), if !running.is_empty() => {
                busy.remove(&id);
                // A label job whose container went while it ran is gone from the table.
                if let Some(job) = table.jobs.get_mut(&id) {
                    finished(ctx, job, &state_dir, started);
                }
            }
            Some(engine) = changes.next() => {
                if let Some(source) = &lowered.labels {
                    rediscover(ctx, &mut table, source, &lowered.plans, engine.as_deref()).await;
                }
            }
            _ = sleep_or_forever(wait) => {}
        }
    }
}

/// Whether a `catch_up` job missed a run while the daemon was down (said); with no record yet,
/// one is made, so that from now on a missed run can be told.
fn missed(state_dir: &Path, job: &Scheduled, now: DateTime<Utc>) -> bool {
    if !job.plan.schedule().is_some_and(|sc| sc.catch_up) {
        return false;
    }
    let name = job.plan.name();
    match last_run::read(state_dir, name) {
        Some(last) if job.timing.missed(last, now) => {
            tracing::info!(job = %name, last_run = %job.timing.local(last), "a run was missed while the daemon was down: running it now (catch_up)");
            true
        }
        Some(_) => false,
        None => {
            stamp(state_dir, name, now);
            false
        }
    }
}

/// Takes up a label job as found (`how`: "found", "updated"): scheduled ones join the table
/// (their number returned; said when `announced`); invalid ones are said (they run when their
/// labels are fixed).
fn take_labelled(
    ctx: &Ctx,
    table: &mut Table,
    plan: JobPlan,
    now: DateTime<Utc>,
    how: &str,
    announced: bool,
) -> Option<u64> {
    let name = plan.name().to_string();
    let shape = format!("{plan:?}");
    let engine = plan.engine().map(str::to_string);
    let container = plan.container().to_string();
    let mut fields = serde_json::json!({
        "change": how,
        "container": container,
        "engine": engine.clone(),
    });
    let id = match &plan {
        JobPlan::Invalid { error, .. } => {
            tracing::error!(job = %name, container = %container, error = %error, "a labelled container's job is invalid; it runs once its labels are fixed");
            fields["change"] = "invalid".into();
            fields["error"] = error.clone().into();
            None
        }
        _ => match plan.schedule().cloned() {
            Some(sc) => match sc.timing.next_after(now) {
                Some(next) => {
                    tracing::info!(job = %name, container = %container, "{how} a labelled container's job");
                    Some(table.add(plan, sc.timing, next))
                }
                None => {
                    let error = format!(
                        "container {container:?}: label dockyard.schedule {:?} never fires again",
                        sc.timing.schedule.as_str()
                    );
                    tracing::error!(job = %name, error = %error, "a labelled container's job is invalid");
                    fields["change"] = "invalid".into();
                    fields["error"] = error.into();
                    None
                }
            },
            None => {
                tracing::info!(job = %name, container = %container, "{how} a labelled container's job without dockyard.schedule: only `dockyard run` runs it");
                None
            }
        },
    };
    ctx.out.event("labels", Some(&name), fields);
    if let Some(id) = id.filter(|_| announced) {
        announce(ctx, &table.jobs[&id]);
    }
    table.labelled.insert(name, Labelled { id, engine, shape });
    id
}

/// Finds engine `engine`'s labelled containers again and takes up what changed: new jobs,
/// relabelled containers' jobs (their next run from now), and jobs whose container went (a run
/// in progress ends on its own).
async fn rediscover(
    ctx: &Ctx,
    table: &mut Table,
    source: &LabelSource,
    file: &[JobPlan],
    engine: Option<&str>,
) {
    let found = match crate::labels::discover_on(ctx, source, engine).await {
        Ok(found) => found,
        // The engine cannot be asked now (it restarts, say): its label jobs are kept as they
        // were; its next event, or its events coming back, finds them again.
        Err(e) => {
            tracing::warn!(engine = engine.unwrap_or(crate::ops::DEFAULT_ENGINE), error = %crate::error::describe(&e), "cannot find the labelled containers now; keeping their jobs as they were");
            return;
        }
    };
    // Clashes are judged against the file's jobs and the other engines' label jobs.
    let others: Vec<JobPlan> = file
        .iter()
        .cloned()
        .chain(
            table
                .jobs
                .values()
                .filter(|j| j.plan.engine() != engine && table.labelled.contains_key(j.plan.name()))
                .map(|j| j.plan.clone()),
        )
        .collect();
    let kept = others.len();
    let found: Vec<JobPlan> = crate::labels::merge(others, found)
        .into_iter()
        .skip(kept)
        .collect();
    let now = Utc::now();
    let names: Vec<String> = found.iter().map(|p| p.name().to_string()).collect();
    // Gone: this engine's label jobs no longer found.
    let gone: Vec<String> = table
        .labelled
        .iter()
        .filter(|(name, l)| !names.contains(name) && l.engine.as_deref() == engine)
        .map(|(name, _)| name.clone())
        .collect();
    for name in gone {
        if let Some(l) = table.labelled.remove(&name) {
            if let Some(id) = l.id {
                table.jobs.remove(&id);
            }
            tracing::info!(job = %name, "a labelled container's job is gone (the container was removed, renamed or unlabelled)");
            ctx.out.event(
                "labels",
                Some(&name),
                serde_json::json!({"change": "removed", "engine": engine}),
            );
        }
    }
    for plan in found {
        let shape = format!("{plan:?}");
        match table.labelled.get(plan.name()) {
            Some(known) if known.shape == shape => {}
            Some(known) => {
                if let Some(id) = known.id {
                    table.jobs.remove(&id);
                }
                let _ = take_labelled(ctx, table, plan, now, "updated", true);
            }
            None => {
                let _ = take_labelled(ctx, table, plan, now, "found", true);
            }
        }
    }
}

/// A stream that yields `engine` each time its labelled containers may have changed: a
/// container event, or the engine's event stream coming back after it was lost (events may have
/// been missed meanwhile).
fn watch(
    session: &Session,
    engine: Option<String>,
) -> Pin<Box<dyn Stream<Item = Option<String>> + Send + '_>> {
    type Events = Pin<
        Box<
            dyn Stream<
                    Item = Result<
                        crate::docker::discover::ContainerEvent,
                        crate::docker::DockerError,
                    >,
                > + Send,
        >,
    >;
    let state: (Option<Events>, bool) = (None, false);
    futures_util::stream::unfold(state, move |(mut events, mut lost)| {
        let engine = engine.clone();
        async move {
            loop {
                let Some(stream) = events.as_mut() else {
                    let name = engine.as_deref().unwrap_or(crate::ops::DEFAULT_ENGINE);
                    match session.engine_named(name).await {
                        Ok(e) => {
                            events = Some(Box::pin(e.container_events(&[
                                crate::labels::keys::ENABLE,
                                crate::labels::keys::REACHABLE,
                            ])));
                            if lost {
                                tracing::info!(engine = name, "following the engine's container events again");
                                return Some((engine.clone(), (events, false)));
                            }
                        }
                        Err(e) => {
                            tracing::warn!(engine = name, error = %crate::error::describe(&e), "cannot follow the engine's container events; trying again in 10s");
                            tokio::time::sleep(std::time::Duration::from_secs(10)).await;
                        }
                    }
                    continue;
                };
                match stream.next().await {
                    Some(Ok(event)) => {
                        tracing::info!(engine = engine.as_deref().unwrap_or(crate::ops::DEFAULT_ENGINE), container = %event.name, action = %event.action, "a labelled container changed");
                        return Some((engine.clone(), (events, lost)));
                    }
                    Some(Err(e)) => {
                        tracing::warn!(engine = engine.as_deref().unwrap_or(crate::ops::DEFAULT_ENGINE), error = %e, "lost the engine's container events; following them again in 10s");
                    }
                    None => {
                        tracing::warn!(engine = engine.as_deref().unwrap_or(crate::ops::DEFAULT_ENGINE), "the engine ended its container events; following them again in 10s");
                    }
                }
                events = None;
                lost = true;
                tokio::time::sleep(std::time::Duration::from_secs(10)).await;
            }
        }
    })
    .boxed()
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
