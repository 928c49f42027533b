//! Running plans of jobs (what `run` and `daemon` do): up to `parallel_jobs` at once and never
//! two of one container, each under its job lock, every destination tried, then each job's
//! result reported (an event, a notification, the metrics file). Prints nothing.

mod lock;
mod metrics;
mod notice;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use chrono::Utc;

use crate::error::Failure;
use crate::manifest::Store;
use crate::notify::Notifier;
use crate::ops::Session;
use crate::settings::{BackupSettings, JobPlan, Jobs};
use lock::JobLock;

/// Where a finished job is told (the `job` event of `--json`).
pub trait Events: Sync {
    /// Job `name` ended with `result`.
    fn job(&self, name: &str, result: &JobResult);
}

/// What every job of a `run` or `daemon` shares.
pub struct JobEnv {
    /// The Prometheus textfile to rewrite after each job.
    pub metrics: Option<PathBuf>,
    /// Where to say how each job went.
    pub notifier: Option<Notifier>,
    /// The config file, for the command a notification suggests.
    pub config: PathBuf,
    /// Jobs run at once, at most (`parallel_jobs`).
    pub parallel: usize,
}

impl JobEnv {
    /// What the lowered `jobs` share; their `[notify]` settings' error, if any.
    pub fn new(jobs: &mut Jobs) -> Result<JobEnv, Failure> {
        let notifier = std::mem::replace(&mut jobs.notifier, Ok(None))?;
        Ok(JobEnv {
            metrics: jobs.metrics.clone(),
            notifier,
            config: jobs.config.clone(),
            parallel: jobs.parallel,
        })
    }
}

/// How one job ended (the `job` event of `--json`, docs/json.md).
#[derive(Debug, serde::Serialize)]
pub struct JobResult {
    /// The job's name in the config.
    #[serde(skip)]
    pub job: String,
    /// Whether it succeeded.
    pub ok: bool,
    /// Not run: another run held a lock it needs (exit 6); `error` says which.
    pub skipped: bool,
    /// Why it failed.
    pub error: Option<String>,
    /// How long it took.
    pub seconds: f64,
    /// Bytes written (a log job: log bytes shipped).
    pub bytes: u64,
    /// When it ended.
    pub finished: chrono::DateTime<Utc>,
    /// Each destination, attempted whatever the others did (none when the job failed first).
    pub destinations: Vec<DestResult>,
}

/// How one destination of a backup job ended.
#[derive(Debug, serde::Serialize)]
pub struct DestResult {
    /// The destination's name in the config.
    pub destination: String,
    /// Whether the backup (and its pruning) there succeeded.
    pub ok: bool,
    /// Why it failed.
    pub error: Option<String>,
    /// The backup written.
    pub id: Option<String>,
    /// Its size.
    pub bytes: u64,
    /// Backups pruned there afterwards.
    pub pruned: usize,
}

/// The error of a run or job whose parts failed: each part's error was said once (logged, and in
/// its result), so this only counts and names them, in the first failure's category (exit code).
pub fn counted(first: &anyhow::Error, parts: &str, failed: &[&str], total: usize) -> anyhow::Error {
    Failure::new(
        crate::outcome::categorize(first),
        format!(
            "{} of {total} {parts} failed ({})",
            failed.len(),
            failed.join(", ")
        ),
    )
    .into()
}

impl DestResult {
    /// Destination `name` failed with `error`.
    fn failed(name: &str, error: String) -> DestResult {
        DestResult {
            destination: name.to_string(),
            ok: false,
            error: Some(error),
            id: None,
            bytes: 0,
            pruned: 0,
        }
    }
}

/// Runs `plans` (a failure does not stop the others), up to `env.parallel` at once but never two
/// that clash ([`JobPlan::clashes`]: one container, or one stopping what the other uses), updates
/// the metrics file, notifies, and returns every job's result in plan
/// order and the first error. Prints nothing: errors are in the results.
pub async fn run_plans(
    session: &Session,
    plans: &[JobPlan],
    env: &JobEnv,
    events: &dyn Events,
) -> (Vec<JobResult>, Option<anyhow::Error>) {
    use futures_util::stream::{FuturesUnordered, StreamExt};
    let mut done: Vec<Option<(JobResult, Option<anyhow::Error>)>> =
        plans.iter().map(|_| None).collect();
    let mut waiting: std::collections::VecDeque<usize> = (0..plans.len()).collect();
    // The jobs running now, by index.
    let mut busy: Vec<usize> = Vec::new();
    let mut running = FuturesUnordered::new();
    loop {
        let mut i = 0;
        while running.len() < env.parallel.max(1) && i < waiting.len() {
            let idx = waiting[i];
            if busy.iter().any(|&b| plans[b].clashes(&plans[idx])) {
                i += 1;
                continue;
            }
            busy.push(idx);
            waiting.remove(i);
            running.push(async move { (idx, one_job(session, &plans[idx], env, events).await) });
        }
        let Some((idx, result)) = running.next().await else {
            break;
        };
        busy.retain(|&b| b != idx);
        done[idx] = Some(result);
    }
    let mut results = Vec::new();
    let mut first_error = None;
    for (result, error) in done.into_iter().flatten() {
        if let Some(e) = error {
            first_error.get_or_insert(e);
        }
        results.push(result);
    }
    if let Some(m) = env.metrics.as_deref() {
        if let Err(e) = metrics::write(m, &results) {
            tracing::error!(file = %m.display(), error = %e, "cannot write the metrics file");
        }
    }
    (results, first_error)
}

/// Runs one job, says how it went (the `job` event, a notification) and returns its result and
/// error.
async fn one_job(
    session: &Session,
    plan: &JobPlan,
    env: &JobEnv,
    events: &dyn Events,
) -> (JobResult, Option<anyhow::Error>) {
    let t0 = Instant::now();
    tracing::info!(job = plan.name(), container = %plan.qualified_container(), "job started");
    let Ran {
        outcome,
        bytes,
        destinations,
    } = run_job(session, plan, &session.dirs.lock).await;
    let (ok, skipped, error, failure) = match outcome {
        Ok(()) => (true, false, None, None),
        Err(e) => {
            let text = crate::error::describe(&e);
            // Another run holds a lock this job needs: it did not run, it did not fail.
            let skipped = crate::outcome::categorize(&e) == crate::error::Category::Busy;
            if skipped {
                tracing::warn!(job = plan.name(), reason = %text, "job skipped");
            } else {
                tracing::error!(job = plan.name(), error = %text, "job failed");
            }
            (
                false,
                skipped,
                Some(text),
                Some(e.context(format!("job {}", plan.name()))),
            )
        }
    };
    let seconds = t0.elapsed().as_secs_f64();
    tracing::info!(job = plan.name(), ok, seconds, bytes, "job finished");
    let result = JobResult {
        job: plan.name().to_string(),
        ok,
        skipped,
        error,
        seconds,
        bytes,
        finished: Utc::now(),
        destinations,
    };
    events.job(plan.name(), &result);
    if let Some(n) = &env.notifier {
        n.send(&notice::of(plan, &result, &env.config)).await;
    }
    (result, failure)
}

/// How one job ended, before it is reported.
struct Ran {
    /// Its outcome.
    outcome: Result<()>,
    /// Bytes written to every destination that succeeded (a log job: log bytes shipped).
    bytes: u64,
    /// Each destination's result.
    destinations: Vec<DestResult>,
}

impl Ran {
    fn failed(e: anyhow::Error) -> Ran {
        Ran {
            outcome: Err(e),
            bytes: 0,
            destinations: Vec::new(),
        }
    }
}

/// One job. Its container is looked up first: a container that is gone fails the job (exit 3),
/// not its destinations. A backup job tries every destination (one that fails does not stop the
/// others) and fails at the end if any failed.
async fn run_job(session: &Session, plan: &JobPlan, lock_dir: &Path) -> Ran {
    if let JobPlan::Invalid {
        error, category, ..
    } = plan
    {
        return Ran::failed(Failure::new(*category, error.clone()).into());
    }
    let _lock = match JobLock::take(lock_dir, plan.name()) {
        Ok(l) => l,
        Err(e) => return Ran::failed(e.into()),
    };
    let engine = match session
        .engine_named(plan.engine().unwrap_or(crate::ops::DEFAULT_ENGINE))
        .await
    {
        Ok(e) => e,
        Err(e) => return Ran::failed(e),
    };
    let info = match engine.inspect(plan.container()).await {
        Ok(info) => info,
        Err(e) => return Ran::failed(e.into()),
    };
    match plan {
        JobPlan::Backup {
            backups, retention, ..
        } => {
            // Each destination opened once, for its backup and its retention.
            let mut opened = Vec::new();
            for (_, s) in backups {
                opened.push(Store::new(s.dest.open().await));
            }
            let each: Vec<(&BackupSettings, &Store)> = backups
                .iter()
                .zip(&opened)
                .map(|((_, s), store)| (s, store))
                .collect();
            let done = match crate::ops::backup::run_each(session, engine, &info, &each).await {
                Ok(done) => done,
                // Nothing ran (the lock, the pre-hook, a stop): every destination failed so.
                Err(e) => {
                    let text = crate::error::describe(&e);
                    tracing::error!(job = plan.name(), error = %text, "the job failed before any backup");
                    let names: Vec<&str> = backups.iter().map(|(n, _)| n.as_str()).collect();
                    return Ran {
                        outcome: Err(counted(&e, "destinations", &names, names.len())),
                        bytes: 0,
                        destinations: backups
                            .iter()
                            .map(|(name, _)| DestResult::failed(name, text.clone()))
                            .collect(),
                    };
                }
            };
            assert_eq!(
                done.results.len(),
                backups.len(),
                "one result per destination"
            );
            let written = done.results;
            let mut results = Vec::new();
            let mut bytes = 0;
            let mut first_error: Option<anyhow::Error> = None;
            for (((name, _), dest), written) in backups.iter().zip(&opened).zip(written) {
                let done = async {
                    let (m, _, _) = written?;
                    let pruned = match retention {
                        Some(policy) => {
                            crate::ops::prune::apply(dest, Some(&m.owner()), policy, false)
                                .await?
                                .removed
                        }
                        None => 0,
                    };
                    anyhow::Ok((m, pruned))
                }
                .await;
                match done {
                    Ok((m, pruned)) => {
                        bytes += m.size;
                        results.push(DestResult {
                            destination: name.clone(),
                            ok: true,
                            error: None,
                            id: Some(m.id),
                            bytes: m.size,
                            pruned,
                        });
                    }
                    Err(e) => {
                        let text = crate::error::describe(&e);
                        tracing::error!(job = plan.name(), destination = %name, error = %text, "destination failed; trying the others");
                        results.push(DestResult::failed(name, text));
                        first_error.get_or_insert(e.context(format!("destination {name:?}")));
                    }
                }
            }
            let failed: Vec<&str> = results
                .iter()
                .filter(|r| !r.ok)
                .map(|r| r.destination.as_str())
                .collect();
            let outcome = match (first_error, done.after) {
                (None, None) => Ok(()),
                (Some(e), _) => Err(counted(&e, "destinations", &failed, results.len())),
                // The backups are written; what came after them (a start, the post-hook) failed.
                (None, Some(e)) => Err(e),
            };
            Ran {
                outcome,
                bytes,
                destinations: results,
            }
        }
        JobPlan::Logs {
            settings,
            destination,
            ..
        } => {
            let shipped = async {
                let done = crate::ops::logs::run(session, engine, settings).await?;
                done.failures(settings)?;
                anyhow::Ok(done.report.shipped_bytes)
            }
            .await;
            let result = |ok, error: Option<String>, bytes| DestResult {
                destination: destination.clone(),
                ok,
                error,
                id: None,
                bytes,
                pruned: 0,
            };
            match shipped {
                Ok(bytes) => Ran {
                    outcome: Ok(()),
                    bytes,
                    destinations: vec![result(true, None, bytes)],
                },
                // Shipping failed there; anything else (the engine, a lock) is the job's.
                Err(e) if e.downcast_ref::<crate::destination::DestError>().is_some() => {
                    let text = crate::error::describe(&e);
                    Ran {
                        outcome: Err(e),
                        bytes: 0,
                        destinations: vec![result(false, Some(text), 0)],
                    }
                }
                Err(e) => Ran::failed(e),
            }
        }
        JobPlan::Invalid { .. } => unreachable!("said above"),
    }
}
