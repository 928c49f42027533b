//! The config file (TOML): named destinations, backup jobs and log jobs, read once and checked as a
//! whole (unknown keys are errors naming the key; references to undefined destinations too), then
//! lowered into the same settings values the command-line flags produce.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::archive::pack::Compression;
use crate::destination::{DestSpec, RemoteOptions};
use crate::error::Failure;
use crate::logs::reopen::Reopen;
use crate::retention::Policy;
use crate::settings::{self, BackupSettings, LogsSettings, ShipSettings};

/// Where the config is read from when neither `--config` nor `DOCKYARD_CONFIG` says.
pub const DEFAULT_CONFIG: &str = "/etc/dockyard/dockyard.toml";

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Named places backups and logs go.
    #[serde(default)]
    pub destinations: BTreeMap<String, DestinationConfig>,
    /// Backup jobs by name.
    #[serde(default)]
    pub jobs: BTreeMap<String, JobConfig>,
    /// Log jobs (rotate and ship) by name.
    #[serde(default)]
    pub logs: BTreeMap<String, LogJobConfig>,
    /// Prometheus textfile written after each `dockyard run` (node_exporter's textfile collector).
    pub metrics_file: Option<PathBuf>,
    /// Directory for job and container locks (default: /run/dockyard, or the temp dir if that
    /// is not writable; `DOCKYARD_LOCK_DIR` overrides).
    pub lock_dir: Option<PathBuf>,
    /// Settings for `dockyard restore`.
    pub restore: Option<RestoreConfig>,
}

/// `[restore]`: what `dockyard restore` takes from the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreConfig {
    /// A name from `[destinations]` for the pre-restore safety backup (default: where the backup
    /// is restored from, which may be read-only in a disaster).
    pub safety_backup_to: Option<String>,
    /// How long safety backups are kept, e.g. "7d" (the default).
    pub safety_backup_keep: Option<String>,
}

/// One destination.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// A directory, `file:///dir`, `ssh://[user@]host[:port]/dir` or `s3://bucket/prefix`.
    pub url: String,
    /// S3: endpoint of a self-hosted store.
    pub s3_endpoint: Option<String>,
    /// S3: `path` or `virtual` addressing.
    pub s3_addressing: Option<String>,
    /// S3: multipart part size in MiB.
    pub s3_part_size_mib: Option<usize>,
    /// SSH: config file instead of ~/.ssh/config.
    pub ssh_config: Option<PathBuf>,
}

/// One backup job.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// Container name.
    pub container: String,
    /// Paths to back up (default: every mount).
    #[serde(default)]
    pub paths: Vec<String>,
    /// Names from `[destinations]`; the backup goes to each, in order.
    pub destinations: Vec<String>,
    /// Cron expression for `dockyard daemon` (`dockyard run` ignores it).
    pub schedule: Option<String>,
    /// Tags for every backup of the job.
    #[serde(default)]
    pub tags: Vec<String>,
    /// zstd level (default 3).
    pub level: Option<i32>,
    /// Stop the container during the backup.
    #[serde(default)]
    pub stop_during_backup: bool,
    /// Also stop these, after the container, in order.
    #[serde(default)]
    pub stop_also: Vec<String>,
    /// Seconds to wait for a graceful stop (default 30).
    pub stop_timeout: Option<u32>,
    /// Command run in the container before the backup.
    pub pre_hook: Option<String>,
    /// Command run in the container after the backup.
    pub post_hook: Option<String>,
    /// Helper image (default: the container's image).
    pub helper_image: Option<String>,
    /// Retention applied to each destination after a successful backup (restic's rules).
    pub retention: Option<Policy>,
}

/// One log job.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogJobConfig {
    /// Container name.
    pub container: String,
    /// Log directory (default /srv/logs).
    pub path: Option<String>,
    /// File globs (default ["*.log"]).
    pub patterns: Option<Vec<String>>,
    /// Reopen method (default "signal:USR1").
    pub reopen: Option<String>,
    /// Size trigger, e.g. "10M".
    pub min_size: Option<String>,
    /// Age trigger, e.g. "1d".
    pub max_age: Option<String>,
    /// Name from `[destinations]`.
    pub destination: String,
    /// Cron expression for `dockyard daemon`.
    pub schedule: Option<String>,
    /// Delete shipped logs older than this from the destination, e.g. "30d".
    pub prune_after: Option<String>,
    /// Seconds between reopen and shipping (default 1).
    pub settle: Option<f64>,
    /// Helper image (default: the container's image).
    pub helper_image: Option<String>,
}

/// What `dockyard run` does for one job, fully resolved.
#[derive(Debug, Clone)]
pub enum JobPlan {
    /// A backup to each destination, then retention there.
    Backup {
        /// Job name.
        name: String,
        /// One settings value per destination, with the destination's name in the config.
        backups: Vec<(String, BackupSettings)>,
        /// Retention to apply afterwards, if any.
        retention: Option<Policy>,
    },
    /// Rotate and ship logs.
    Logs {
        /// Job name.
        name: String,
        /// The run's settings.
        settings: Box<LogsSettings>,
    },
}

impl JobPlan {
    /// The job's name.
    pub fn name(&self) -> &str {
        match self {
            JobPlan::Backup { name, .. } | JobPlan::Logs { name, .. } => name,
        }
    }
}

/// Reads and checks the config file; errors name the file and the key.
pub fn load(path: &Path) -> Result<Config, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::usage(format!(
            "cannot read the config file {}: {e} (give --config FILE or set DOCKYARD_CONFIG)",
            path.display()
        ))
    })?;
    parse(&text).map_err(|e| Failure::usage(format!("config file {}: {e}", path.display())))
}

/// Parses config text (TOML).
pub fn parse(text: &str) -> Result<Config, String> {
    toml::from_str(text).map_err(|e| e.to_string().trim().replace('\n', " "))
}

impl Config {
    /// The cron schedule of job `name`, if it has one.
    pub fn schedule_of(&self, name: &str) -> Option<&str> {
        self.jobs
            .get(name)
            .and_then(|j| j.schedule.as_deref())
            .or_else(|| self.logs.get(name).and_then(|l| l.schedule.as_deref()))
    }

    /// The `[restore]` settings: the safety backup's destination and keep time (seconds).
    pub fn restore_settings(
        &self,
        overrides: &RemoteOptions,
    ) -> Result<(Option<DestSpec>, Option<i64>), Failure> {
        let Some(r) = &self.restore else {
            return Ok((None, None));
        };
        let dest = r
            .safety_backup_to
            .as_deref()
            .map(|name| self.dest("[restore]", name, overrides))
            .transpose()?;
        let keep = r
            .safety_backup_keep
            .as_deref()
            .map(|a| {
                settings::parse_age(a)
                    .map(|s| s as i64)
                    .map_err(|e| Failure::usage(format!("[restore] safety_backup_keep: {e}")))
            })
            .transpose()?;
        Ok((dest, keep))
    }

    /// Resolves every job (or only `wanted`, by name) into plans, checking references and values.
    /// `overrides` (the remote-destination flags and env) win over the destinations' settings.
    pub fn plans(
        &self,
        wanted: &[String],
        overrides: &RemoteOptions,
    ) -> Result<Vec<JobPlan>, Failure> {
        for w in wanted {
            if !self.jobs.contains_key(w) && !self.logs.contains_key(w) {
                let known: Vec<&String> = self.jobs.keys().chain(self.logs.keys()).collect();
                return Err(Failure::usage(format!(
                    "no job named {w:?} in the config; its jobs are: {known:?}"
                )));
            }
        }
        let pick = |n: &String| wanted.is_empty() || wanted.contains(n);
        let mut plans = Vec::new();
        for (name, job) in self.jobs.iter().filter(|(n, _)| pick(n)) {
            plans.push(self.backup_plan(name, job, overrides)?);
        }
        for (name, job) in self.logs.iter().filter(|(n, _)| pick(n)) {
            plans.push(self.log_plan(name, job, overrides)?);
        }
        Ok(plans)
    }

    fn dest(&self, job: &str, name: &str, overrides: &RemoteOptions) -> Result<DestSpec, Failure> {
        let d = self.destinations.get(name).ok_or_else(|| {
            Failure::usage(format!(
                "job {job:?} uses destination {name:?}, which is not defined under [destinations]"
            ))
        })?;
        let remote = RemoteOptions {
            ssh_config: overrides.ssh_config.clone().or(d.ssh_config.clone()),
            s3_endpoint: overrides.s3_endpoint.clone().or(d.s3_endpoint.clone()),
            s3_path_style: match d.s3_addressing.as_deref() {
                _ if overrides.s3_path_style.is_some() => overrides.s3_path_style,
                None => None,
                Some("path") => Some(true),
                Some("virtual") => Some(false),
                Some(other) => {
                    return Err(Failure::usage(format!(
                    "destination {name:?}: s3_addressing {other:?} must be \"path\" or \"virtual\""
                )))
                }
            },
            s3_part_size: match overrides.s3_part_size {
                0 => d.s3_part_size_mib.unwrap_or(0) << 20,
                flag => flag,
            },
        };
        DestSpec::parse(&d.url, &remote)
            .map_err(|e| Failure::usage(format!("destination {name:?}: {e}")))
    }

    fn backup_plan(
        &self,
        name: &str,
        job: &JobConfig,
        overrides: &RemoteOptions,
    ) -> Result<JobPlan, Failure> {
        check_schedule(name, job.schedule.as_deref())?;
        if job.destinations.is_empty() {
            return Err(Failure::usage(format!("job {name:?} has no destinations")));
        }
        let level = job.level.unwrap_or(3);
        if !(1..=19).contains(&level) {
            return Err(Failure::usage(format!(
                "job {name:?}: level {level} is outside 1..=19"
            )));
        }
        let mut backups = Vec::new();
        for d in &job.destinations {
            backups.push((
                d.clone(),
                BackupSettings {
                    container: job.container.clone(),
                    paths: settings::container_paths(&job.paths)?,
                    dest: self.dest(name, d, overrides)?,
                    tags: settings::tags(&job.tags)?,
                    compression: Compression {
                        level,
                        workers: settings::zstd_workers(),
                    },
                    helper_image: job.helper_image.clone(),
                    snapshot: false,
                    include_env: false,
                    stop: settings::stop_list(
                        &job.container,
                        job.stop_during_backup,
                        &job.stop_also,
                    ),
                    stop_timeout: job.stop_timeout.unwrap_or(30),
                    pre_hook: job.pre_hook.clone(),
                    post_hook: job.post_hook.clone(),
                },
            ));
        }
        if job.retention.as_ref().is_some_and(Policy::is_empty) {
            return Err(Failure::usage(format!(
                "job {name:?}: [retention] keeps nothing explicitly; give a keep_* key or drop the section"
            )));
        }
        let retention = job.retention.clone();
        Ok(JobPlan::Backup {
            name: name.to_string(),
            backups,
            retention,
        })
    }

    fn log_plan(
        &self,
        name: &str,
        job: &LogJobConfig,
        overrides: &RemoteOptions,
    ) -> Result<JobPlan, Failure> {
        check_schedule(name, job.schedule.as_deref())?;
        let bad = |what: &str, e: String| Failure::usage(format!("log job {name:?}: {what}: {e}"));
        let dir = job.path.clone().unwrap_or_else(|| "/srv/logs".into());
        let settings = LogsSettings {
            container: job.container.clone(),
            dir: settings::container_paths(&[dir])?.remove(0),
            patterns: job
                .patterns
                .clone()
                .unwrap_or_else(|| vec!["*.log".into()])
                .iter()
                .map(|p| settings::pattern(p))
                .collect::<Result<_, _>>()?,
            reopen: Reopen::parse(job.reopen.as_deref().unwrap_or("signal:USR1"))
                .map_err(|e| bad("reopen", e))?,
            min_size: job
                .min_size
                .as_deref()
                .map(settings::parse_size)
                .transpose()
                .map_err(|e| bad("min_size", e))?,
            max_age: job
                .max_age
                .as_deref()
                .map(settings::parse_age)
                .transpose()
                .map_err(|e| bad("max_age", e))?,
            rotate: true,
            ship: Some(ShipSettings {
                dest: self.dest(name, &job.destination, overrides)?,
                level: 3,
                prune_after: job
                    .prune_after
                    .as_deref()
                    .map(settings::parse_age)
                    .transpose()
                    .map_err(|e| bad("prune_after", e))?,
            }),
            keep_local: None,
            settle: std::time::Duration::from_secs_f64(
                job.settle.unwrap_or(1.0).clamp(0.0, 3600.0),
            ),
            helper_image: job.helper_image.clone(),
        };
        Ok(JobPlan::Logs {
            name: name.to_string(),
            settings: Box::new(settings),
        })
    }
}

/// A schedule is a cron expression with seconds: `sec min hour day-of-month month day-of-week`
/// (and an optional year), e.g. `0 15 2 * * *`.
fn check_schedule(job: &str, schedule: Option<&str>) -> Result<(), Failure> {
    let Some(s) = schedule else { return Ok(()) };
    let fields = s.split_whitespace().count();
    if fields == 6 || fields == 7 {
        return Ok(());
    }
    Err(Failure::usage(format!(
        "job {job:?}: schedule {s:?} has {fields} fields; give sec min hour day-of-month month day-of-week, e.g. \"0 15 2 * * *\""
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_configs_parse_and_resolve() {
        for file in ["config/dockyard.toml", "config/minimal.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
            let config = load(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
            let plans = config
                .plans(&[], &RemoteOptions::default())
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(!plans.is_empty(), "{file} has no jobs");
        }
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let err =
            parse("[jobs.media]\ncontainer = \"web\"\ndestinations = []\nretention_days = 3\n")
                .unwrap_err();
        assert!(err.contains("retention_days"), "{err}");
        let err = parse("metrics = \"/x\"\n").unwrap_err();
        assert!(err.contains("metrics"), "{err}");
    }

    #[test]
    fn retention_tables_read_into_the_policy() {
        let c = parse("[destinations.l]\nurl = \"/b\"\n[jobs.m]\ncontainer = \"web\"\ndestinations = [\"l\"]\n[jobs.m.retention]\nkeep_daily = 7\nkeep_within = \"2d\"\n").unwrap();
        let p = c.jobs["m"].retention.clone().unwrap();
        assert_eq!((p.keep_daily, p.keep_within), (Some(7), Some(2 * 86400)));
        let err = parse("[jobs.m]\ncontainer = \"w\"\ndestinations = []\n[jobs.m.retention]\nkeep_within = \"soon\"\n").unwrap_err();
        assert!(err.contains("soon"), "{err}");
        let err = parse(
            "[jobs.m]\ncontainer = \"w\"\ndestinations = []\n[jobs.m.retention]\nkeep_dayly = 7\n",
        )
        .unwrap_err();
        assert!(err.contains("keep_dayly"), "{err}");
    }

    #[test]
    fn five_field_schedules_are_refused_with_an_example() {
        let c = parse("[destinations.l]\nurl = \"/b\"\n[jobs.m]\ncontainer = \"web\"\ndestinations = [\"l\"]\nschedule = \"15 2 * * *\"\n").unwrap();
        let err = c
            .plans(&[], &RemoteOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("5 fields") && err.contains("0 15 2 * * *"),
            "{err}"
        );
    }

    #[test]
    fn flags_and_env_win_over_the_config() {
        let c = parse(
            "[destinations.s3]\nurl = \"s3://b/p\"\ns3_endpoint = \"http://config:3900\"\ns3_part_size_mib = 8\n\
             [jobs.m]\ncontainer = \"web\"\ndestinations = [\"s3\"]\n",
        )
        .unwrap();
        let endpoint = |o: &RemoteOptions| match &c.plans(&[], o).unwrap()[0] {
            JobPlan::Backup { backups, .. } => match &backups[0].1.dest {
                DestSpec::S3(s) => (s.endpoint.clone().unwrap(), s.part_size),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        };
        assert_eq!(
            endpoint(&RemoteOptions::default()),
            ("http://config:3900".into(), 8 << 20)
        );
        let flags = RemoteOptions {
            s3_endpoint: Some("http://flag:3900".into()),
            s3_part_size: 32 << 20,
            ..Default::default()
        };
        assert_eq!(endpoint(&flags), ("http://flag:3900".into(), 32 << 20));
    }

    #[test]
    fn undefined_destinations_and_unknown_jobs_are_named() {
        let c = parse("[jobs.media]\ncontainer = \"web\"\ndestinations = [\"nas\"]\n").unwrap();
        let err = c
            .plans(&[], &RemoteOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"nas\"") && err.contains("[destinations]"),
            "{err}"
        );
        let err = c
            .plans(&["nope".into()], &RemoteOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no job named \"nope\"") && err.contains("media"),
            "{err}"
        );
    }
}
