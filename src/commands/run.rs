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
use crate::config::{self, JobPlan};
use crate::destination::RemoteOptions;
use crate::error::Failure;

/// How one job ended.
#[derive(Debug, serde::Serialize)]
pub struct JobResult {
    job: String,
    ok: bool,
    error: Option<String>,
    seconds: f64,
    bytes: u64,
    finished: i64,
}

/// Runs the jobs named in `wanted` (all if empty) from the config at `path`.
pub async fn run(
    ctx: &Ctx,
    path: &Path,
    wanted: &[String],
    metrics: Option<PathBuf>,
    remote: &RemoteOptions,
) -> Result<()> {
    let config = config::load(path)?;
    let plans = config.plans(wanted, remote)?;
    let lock_dir = lock_dir(config.lock_dir.clone());
    let metrics = metrics.or(config.metrics_file.clone());
    let (results, first_error) = run_plans(ctx, &plans, &lock_dir, metrics.as_deref()).await;
    if ctx.output.json {
        super::print_json(
            &json!({"result": if first_error.is_none() {"ok"} else {"failed"}, "jobs": results}),
        );
    } else {
        for r in &results {
            println!(
                "job {}: {} in {:.1}s",
                r.job,
                if r.ok { "ok" } else { "FAILED" },
                r.seconds
            );
        }
    }
    match first_error {
        Some(e) => Err(e.context(format!(
            "{} of {} jobs failed",
            results.iter().filter(|r| !r.ok).count(),
            results.len()
        ))),
        None => Ok(()),
    }
}

/// Runs `plans` one after another (a failure does not stop the others), updates the metrics file,
/// and returns every job's result and the first error.
pub async fn run_plans(
    ctx: &Ctx,
    plans: &[JobPlan],
    lock_dir: &Path,
    metrics: Option<&Path>,
) -> (Vec<JobResult>, Option<anyhow::Error>) {
    let mut results = Vec::new();
    let mut first_error = None;
    for plan in plans {
        let t0 = Instant::now();
        tracing::info!(job = plan.name(), "job started");
        let outcome = run_job(ctx, plan, lock_dir).await;
        let (ok, error, bytes) = match outcome {
            Ok(bytes) => (true, None, bytes),
            Err(e) => {
                eprintln!("dockyard: job {}: error: {e:#}", plan.name());
                let text = format!("{e:#}");
                first_error.get_or_insert(e);
                (false, Some(text), 0)
            }
        };
        let seconds = t0.elapsed().as_secs_f64();
        tracing::info!(job = plan.name(), ok, seconds, bytes, "job finished");
        results.push(JobResult {
            job: plan.name().to_string(),
            ok,
            error,
            seconds,
            bytes,
            finished: Utc::now().timestamp(),
        });
    }
    if let Some(m) = metrics {
        if let Err(e) = write_metrics(m, &results) {
            eprintln!(
                "dockyard: cannot write the metrics file {}: {e}",
                m.display()
            );
        }
    }
    (results, first_error)
}

async fn run_job(ctx: &Ctx, plan: &JobPlan, lock_dir: &Path) -> Result<u64> {
    let _lock = JobLock::take(lock_dir, plan.name())?;
    match plan {
        JobPlan::Backup {
            backups, retention, ..
        } => {
            let mut bytes = 0;
            for s in backups {
                let (m, _, _) = super::backup::run_and_report(ctx, s.clone()).await?;
                bytes += m.size;
                if let Some(policy) = retention {
                    super::prune::run(ctx, &s.dest, Some(&m.container), policy, false).await?;
                }
            }
            Ok(bytes)
        }
        JobPlan::Logs { settings, .. } => {
            super::logs::run(ctx, (**settings).clone()).await?;
            Ok(0)
        }
    }
}

/// The lock directory: configured, else /run/dockyard, else under the temp directory.
pub fn lock_dir(configured: Option<PathBuf>) -> PathBuf {
    if let Some(d) = configured {
        return d;
    }
    let run = PathBuf::from("/run/dockyard");
    if std::fs::create_dir_all(&run).is_ok() {
        return run;
    }
    std::env::temp_dir().join("dockyard-locks")
}

/// A job lock held longer than this is taken over (its holder is taken to be hung).
const LOCK_LIMIT_SECS: i64 = 24 * 3600;

/// An exclusive `flock` on `<dir>/<job>.lock`, held while the job runs. The kernel releases it when
/// the holder dies, so a killed run never blocks the next one; the file names the last holder.
struct JobLock {
    _file: File,
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
        if file.try_lock().is_err() {
            // Held by a live process. Normally that is a run in progress; a holder stuck for longer
            // than LOCK_LIMIT_SECS is taken over, so a hung run cannot block cron for weeks.
            let since = holder
                .split_whitespace()
                .nth(3)
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
            match since.map(|t| Utc::now().signed_duration_since(t).num_seconds()) {
                Some(age) if age > LOCK_LIMIT_SECS => {
                    tracing::warn!(job, holder = %holder, "the lock has been held for over {} hours: taking it over", LOCK_LIMIT_SECS / 3600);
                }
                _ => {
                    return Err(Failure::busy(format!(
                        "job {job:?} is already running ({}); lock {}",
                        if holder.is_empty() {
                            "holder unknown".to_string()
                        } else {
                            holder
                        },
                        path.display()
                    )))
                }
            }
        }
        if let Some(pid) = holder
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok())
        {
            if !crate::host::process_alive(pid) {
                tracing::warn!(job, previous = %holder, "taking over the lock of a run that is gone");
            }
        }
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = writeln!(
            file,
            "pid {} since {}",
            std::process::id(),
            Utc::now().to_rfc3339()
        );
        Ok(JobLock { _file: file })
    }
}

/// Writes Prometheus text for node_exporter's textfile collector, atomically. Jobs not in
/// `results` keep their lines from the previous file, and a job that failed keeps its last success
/// time, so the file always describes every job.
fn write_metrics(path: &Path, results: &[JobResult]) -> std::io::Result<()> {
    const METRICS: [(&str, &str); 4] = [
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
    ];
    // metric -> job -> value, from the previous file.
    let mut values: BTreeMap<&str, BTreeMap<String, String>> = BTreeMap::new();
    let previous = std::fs::read_to_string(path).unwrap_or_default();
    for line in previous.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some((name, rest)) = series.split_once("{job=\"") else {
            continue;
        };
        let Some(job) = rest.strip_suffix("\"}") else {
            continue;
        };
        if let Some((metric, _)) = METRICS.iter().find(|(m, _)| *m == name) {
            values
                .entry(metric)
                .or_default()
                .insert(job.to_string(), value.to_string());
        }
    }
    for r in results {
        let mut set = |metric: &'static str, v: String| {
            values.entry(metric).or_default().insert(r.job.clone(), v);
        };
        set("dockyard_job_success", (r.ok as u8).to_string());
        if r.ok {
            set(
                "dockyard_job_last_success_timestamp_seconds",
                r.finished.to_string(),
            );
        }
        set("dockyard_job_duration_seconds", format!("{:.3}", r.seconds));
        set("dockyard_job_bytes", r.bytes.to_string());
    }
    let mut out = String::new();
    for (metric, help) in METRICS {
        out.push_str(&format!("# HELP {metric} {help}\n# TYPE {metric} gauge\n"));
        for (job, v) in values.get(metric).into_iter().flatten() {
            out.push_str(&format!("{metric}{{job=\"{job}\"}} {v}\n"));
        }
    }
    let temp = path.with_extension("prom.tmp");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&temp, out)?;
    std::fs::rename(&temp, path)
}
