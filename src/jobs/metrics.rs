//! The Prometheus textfile (node_exporter's textfile collector): every job's last result.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::Utc;

use super::JobResult;

/// Writes Prometheus text for node_exporter's textfile collector, atomically. Series not in
/// `results` keep their lines from the previous file, and a failed job (or destination) keeps its
/// last success time, so the file always describes every job. Backup jobs also get one series per
/// destination (`{job="media",destination="offsite"}`), so one failing destination shows.
pub fn write(path: &Path, results: &[JobResult]) -> std::io::Result<()> {
    let previous = std::fs::read_to_string(path).unwrap_or_default();
    let out = merge(&previous, results, Utc::now().timestamp());
    let temp = path.with_extension("prom.tmp");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&temp, out)?;
    std::fs::rename(&temp, path)
}

/// The textfile's new text: the `previous` file's series, overwritten by `results` (a
/// destination's success stamped `now`, Unix seconds).
pub fn merge(previous: &str, results: &[JobResult], now: i64) -> String {
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
    let now = now.to_string();
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
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::DestResult;

    fn result(job: &str, ok: bool, dests: &[(&str, bool)]) -> JobResult {
        JobResult {
            job: job.into(),
            ok,
            skipped: false,
            error: None,
            seconds: 1.5,
            bytes: 10,
            finished: chrono::DateTime::from_timestamp(1_000, 0).unwrap(),
            destinations: dests
                .iter()
                .map(|(d, ok)| DestResult {
                    destination: d.to_string(),
                    ok: *ok,
                    error: None,
                    id: None,
                    bytes: 10,
                    pruned: 0,
                })
                .collect(),
        }
    }

    #[test]
    fn a_failed_run_keeps_the_last_success_and_other_jobs_keep_their_lines() {
        let first = merge(
            "",
            &[
                result("media", true, &[("local", true), ("offsite", true)]),
                result("logs", true, &[]),
            ],
            2_000,
        );
        let second = merge(
            &first,
            &[result("media", false, &[("offsite", false)])],
            3_000,
        );
        let line = |m: &str| {
            second
                .lines()
                .find(|l| l.starts_with(m))
                .unwrap_or_else(|| panic!("no {m} in {second}"))
                .to_string()
        };
        assert_eq!(
            line("dockyard_job_success{job=\"media\"}"),
            "dockyard_job_success{job=\"media\"} 0"
        );
        assert_eq!(
            line("dockyard_job_last_success_timestamp_seconds{job=\"media\"}"),
            "dockyard_job_last_success_timestamp_seconds{job=\"media\"} 1000"
        );
        assert_eq!(
            line("dockyard_job_success{job=\"logs\"}"),
            "dockyard_job_success{job=\"logs\"} 1"
        );
        assert_eq!(
            line("dockyard_destination_last_success_timestamp_seconds{job=\"media\",destination=\"offsite\"}"),
            "dockyard_destination_last_success_timestamp_seconds{job=\"media\",destination=\"offsite\"} 2000"
        );
        assert_eq!(
            line("dockyard_destination_success{job=\"media\",destination=\"local\"}"),
            "dockyard_destination_success{job=\"media\",destination=\"local\"} 1"
        );
        assert!(second.contains("# TYPE dockyard_job_success gauge"));
    }

    #[test]
    fn label_values_are_escaped() {
        let text = merge("", &[result("a\"b\\c", true, &[])], 0);
        assert!(text.contains("{job=\"a\\\"b\\\\c\"} 1"), "{text}");
    }
}
