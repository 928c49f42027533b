//! `dockyard run [JOB]...`: the config file's jobs, once each (what cron calls). Each job holds a
//! lock so two runs of it never overlap; a summary (text or JSON) and an optional Prometheus
//! textfile report every job's result.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use chrono::Utc;
use serde_json::json;

use super::Ctx;
use crate::config;
use crate::config::NotifyConfig;
use crate::destination::RemoteOptions;
use crate::error::Failure;
use crate::notify::{Notice, NoticeDest, Notifier};
use crate::owner::Owner;
use crate::settings::{file::plans, JobPlan};

/// What every job of a `run` or `daemon` shares.
pub struct JobEnv {
    /// Where job locks live.
    pub lock_dir: PathBuf,
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
    /// Reads the shared settings from the config and the flags.
    pub fn new(
        config: &config::Config,
        path: &Path,
        metrics: Option<PathBuf>,
        notify: &NotifyConfig,
    ) -> Result<JobEnv, Failure> {
        Ok(JobEnv {
            lock_dir: crate::lock::lock_dir(config.lock_dir.clone()),
            metrics: metrics.or(config.metrics_file.clone()),
            notifier: crate::settings::notify::lower(config.notify.as_ref(), notify)?,
            config: path.to_path_buf(),
            parallel: config.parallel_jobs.map_or(2, |n| n.get()),
        })
    }
}

/// How one job ended (the `job` event of `--json`, docs/json.md).
#[derive(Debug, serde::Serialize)]
pub struct JobResult {
    #[serde(skip)]
    job: String,
    ok: bool,
    /// Not run: another run held a lock it needs (exit 6); `error` says which.
    skipped: bool,
    error: Option<String>,
    seconds: f64,
    bytes: u64,
    finished: chrono::DateTime<Utc>,
    /// Each destination, attempted whatever the others did (none when the job failed first).
    destinations: Vec<DestResult>,
}

/// How one destination of a backup job ended.
#[derive(Debug, serde::Serialize)]
pub struct DestResult {
    destination: String,
    ok: bool,
    error: Option<String>,
    id: Option<String>,
    bytes: u64,
    pruned: usize,
}

/// Runs the jobs named in `wanted` (all if empty) from the config at `path`.
pub async fn run(
    ctx: &Ctx,
    path: &Path,
    wanted: &[String],
    metrics: Option<PathBuf>,
    remote: &RemoteOptions,
    notify: &NotifyConfig,
) -> Result<()> {
    let config = config::load(path)?;
    let plans = plans(&config, wanted, remote)?;
    let env = JobEnv::new(&config, path, metrics, notify)?;
    let (results, first_error) = run_plans(ctx, &plans, &env).await;
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

/// The error of a run or job whose parts failed: each part's error was said once (logged, and in
/// its result), so this only counts and names them, in the first failure's category (exit code).
fn counted(first: &anyhow::Error, parts: &str, failed: &[&str], total: usize) -> anyhow::Error {
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

/// Runs `plans` (a failure does not stop the others), up to `env.parallel` at once but never two
/// of one container, updates the metrics file, notifies, and returns every job's result in plan
/// order and the first error. Prints nothing: errors are in the results.
pub async fn run_plans(
    ctx: &Ctx,
    plans: &[JobPlan],
    env: &JobEnv,
) -> (Vec<JobResult>, Option<anyhow::Error>) {
    use futures_util::stream::{FuturesUnordered, StreamExt};
    let mut done: Vec<Option<(JobResult, Option<anyhow::Error>)>> =
        plans.iter().map(|_| None).collect();
    let mut waiting: std::collections::VecDeque<usize> = (0..plans.len()).collect();
    let mut busy = std::collections::HashSet::new();
    let mut running = FuturesUnordered::new();
    loop {
        let mut i = 0;
        while running.len() < env.parallel.max(1) && i < waiting.len() {
            let idx = waiting[i];
            if !busy.insert(plans[idx].container()) {
                i += 1;
                continue;
            }
            waiting.remove(i);
            running.push(async move { (idx, one_job(ctx, &plans[idx], env).await) });
        }
        let Some((idx, result)) = running.next().await else {
            break;
        };
        busy.remove(plans[idx].container());
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
        if let Err(e) = write_metrics(m, &results) {
            tracing::error!(file = %m.display(), error = %e, "cannot write the metrics file");
        }
    }
    (results, first_error)
}

/// Runs one job, says how it went (the `job` event, a notification) and returns its result and
/// error.
async fn one_job(ctx: &Ctx, plan: &JobPlan, env: &JobEnv) -> (JobResult, Option<anyhow::Error>) {
    let t0 = Instant::now();
    tracing::info!(job = plan.name(), "job started");
    let Ran {
        outcome,
        bytes,
        destinations,
    } = run_job(ctx, plan, env.lock_dir.as_path()).await;
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
    ctx.out.event(
        "job",
        Some(plan.name()),
        serde_json::to_value(&result).expect("serialisable"),
    );
    if let Some(n) = &env.notifier {
        n.send(&notice(plan, &result, &env.config)).await;
    }
    (result, failure)
}

/// What a notification says about one job.
fn notice(plan: &JobPlan, r: &JobResult, config: &Path) -> Notice {
    let container = match plan {
        JobPlan::Backup { backups, .. } => backups
            .first()
            .map(|(_, s)| s.container.clone())
            .unwrap_or_default(),
        JobPlan::Logs { settings, .. } => settings.container.clone(),
    };
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
async fn run_job(ctx: &Ctx, plan: &JobPlan, lock_dir: &Path) -> Ran {
    let _lock = match JobLock::take(lock_dir, plan.name()) {
        Ok(l) => l,
        Err(e) => return Ran::failed(e.into()),
    };
    let found = async {
        ctx.engine()
            .await?
            .inspect(plan.container())
            .await
            .map_err(anyhow::Error::from)
    };
    if let Err(e) = found.await {
        return Ran::failed(e);
    }
    match plan {
        JobPlan::Backup {
            backups, retention, ..
        } => {
            let mut results = Vec::new();
            let mut bytes = 0;
            let mut first_error: Option<anyhow::Error> = None;
            for (name, s) in backups {
                let done = async {
                    let (m, _, _) = super::backup::run_job(ctx, s.clone()).await?;
                    let pruned = match retention {
                        Some(policy) => {
                            super::prune::apply(&s.dest, Some(&m.container), policy, false)
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
                        results.push(DestResult {
                            destination: name.clone(),
                            ok: false,
                            error: Some(text),
                            id: None,
                            bytes: 0,
                            pruned: 0,
                        });
                        first_error.get_or_insert(e.context(format!("destination {name:?}")));
                    }
                }
            }
            let failed: Vec<&str> = results
                .iter()
                .filter(|r| !r.ok)
                .map(|r| r.destination.as_str())
                .collect();
            let outcome = match first_error {
                None => Ok(()),
                Some(e) => Err(counted(&e, "destinations", &failed, results.len())),
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
            let shipped = super::logs::run_quiet(ctx, (**settings).clone()).await;
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
    }
}

/// A job lock held longer than this is taken over (its holder is taken to be hung).
const LOCK_LIMIT_SECS: i64 = 24 * 3600;

/// An exclusive `flock` on `<dir>/<job>.lock`, held while the job runs. The kernel releases it when
/// the holder dies, so a killed run never blocks the next one; the file names the last holder.
struct JobLock {
    file: File,
}

impl JobLock {
    fn take(dir: &Path, job: &str) -> Result<JobLock, Failure> {
        std::fs::create_dir_all(dir).map_err(|e| {
            Failure::usage(format!(
                "cannot create the lock directory {}: {e}",
                dir.display()
            ))
        })?;
        let path = dir.join(format!("{job}.lock"));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Failure::usage(format!("cannot open the lock {}: {e}", path.display())))?;
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = holder.trim().to_string();
        let owner = holder.strip_prefix("owner ").and_then(Owner::parse);
        if file.try_lock().is_err() {
            // Held by a live process. Normally that is a run in progress; a holder stuck for longer
            // than LOCK_LIMIT_SECS is taken over, so a hung run cannot block cron for weeks.
            let since = owner.as_ref().map(|o| o.since).or_else(|| {
                holder
                    .split_whitespace()
                    .nth(3)
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.timestamp())
            });
            match since.map(|t| Utc::now().timestamp() - t) {
                Some(age) if age > LOCK_LIMIT_SECS => {
                    tracing::warn!(job, holder = %holder, "the lock has been held for over {} hours: taking it over", LOCK_LIMIT_SECS / 3600);
                }
                _ => {
                    let who = match &owner {
                        Some(o) => o.describe(),
                        None if holder.is_empty() => "holder unknown".to_string(),
                        None => holder.clone(),
                    };
                    return Err(Failure::busy(format!(
                        "job {job:?} is already running ({who}); lock {}",
                        path.display()
                    )));
                }
            }
        } else if let Some(o) = &owner {
            tracing::warn!(job, previous = %o, "taking over the lock of a run that is gone");
        } else if !holder.is_empty() {
            tracing::warn!(job, previous = %holder, "taking over the lock of a run that is gone");
        }
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = writeln!(file, "owner {}", Owner::current());
        Ok(JobLock { file })
    }
}

impl Drop for JobLock {
    /// A clean end empties the file, so a non-empty one names a run that did not end cleanly.
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
    }
}

/// Writes Prometheus text for node_exporter's textfile collector, atomically. Series not in
/// `results` keep their lines from the previous file, and a failed job (or destination) keeps its
/// last success time, so the file always describes every job. Backup jobs also get one series per
/// destination (`{job="media",destination="offsite"}`), so one failing destination shows.
fn write_metrics(path: &Path, results: &[JobResult]) -> std::io::Result<()> {
    const METRICS: [(&str, &str); 7] = [
        ("dockyard_job_success", "1 if the job's last run succeeded."),
        (
            "dockyard_job_last_success_timestamp_seconds",
            "When the job last succeeded (Unix time).",
        ),
        (
            "dockyard_job_duration_seconds",
            "Duration of the job's last run.",
        ),
        (
            "dockyard_job_bytes",
            "Archive bytes the job's last run wrote.",
        ),
        (
            "dockyard_destination_success",
            "1 if the backup job's last run to this destination succeeded.",
        ),
        (
            "dockyard_destination_last_success_timestamp_seconds",
            "When the backup job last succeeded at this destination (Unix time).",
        ),
        (
            "dockyard_destination_bytes",
            "Archive bytes the backup job's last run wrote to this destination.",
        ),
    ];
    // metric -> label set -> value, from the previous file.
    let mut values: BTreeMap<&str, BTreeMap<String, String>> = BTreeMap::new();
    let previous = std::fs::read_to_string(path).unwrap_or_default();
    for line in previous.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some((name, labels)) = series.split_once('{') else {
            continue;
        };
        if let Some((metric, _)) = METRICS.iter().find(|(m, _)| *m == name) {
            values
                .entry(metric)
                .or_default()
                .insert(format!("{{{labels}"), value.to_string());
        }
    }
    let quote = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"");
    let now = Utc::now().timestamp().to_string();
    for r in results {
        let job = format!("{{job=\"{}\"}}", quote(&r.job));
        let mut set = |metric: &'static str, labels: &str, v: String| {
            values
                .entry(metric)
                .or_default()
                .insert(labels.to_string(), v);
        };
        set("dockyard_job_success", &job, (r.ok as u8).to_string());
        if r.ok {
            set(
                "dockyard_job_last_success_timestamp_seconds",
                &job,
                r.finished.timestamp().to_string(),
            );
        }
        set(
            "dockyard_job_duration_seconds",
            &job,
            format!("{:.3}", r.seconds),
        );
        set("dockyard_job_bytes", &job, r.bytes.to_string());
        for d in &r.destinations {
            let labels = format!(
                "{{job=\"{}\",destination=\"{}\"}}",
                quote(&r.job),
                quote(&d.destination)
            );
            set(
                "dockyard_destination_success",
                &labels,
                (d.ok as u8).to_string(),
            );
            if d.ok {
                set(
                    "dockyard_destination_last_success_timestamp_seconds",
                    &labels,
                    now.clone(),
                );
            }
            set("dockyard_destination_bytes", &labels, d.bytes.to_string());
        }
    }
    let mut out = String::new();
    for (metric, help) in METRICS {
        out.push_str(&format!("# HELP {metric} {help}\n# TYPE {metric} gauge\n"));
        for (labels, v) in values.get(metric).into_iter().flatten() {
            out.push_str(&format!("{metric}{labels} {v}\n"));
        }
    }
    let temp = path.with_extension("prom.tmp");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&temp, out)?;
    std::fs::rename(&temp, path)
}
