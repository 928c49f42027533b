//! The config file (TOML) as it is written: named destinations, backup jobs and log jobs. Every
//! value is read into the same checked types the command line uses (`values`), and unknown keys
//! are errors naming the key; `settings::file` lowers it into the settings every command uses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::Failure;
use crate::retention::Policy;
use crate::values::{
    Addressing, Age, ContainerPath, Level, LogPattern, Schedule, Settle, Size, Tag,
};

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
    pub safety_backup_keep: Option<Age>,
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
    pub s3_addressing: Option<Addressing>,
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
    pub paths: Vec<ContainerPath>,
    /// Names from `[destinations]`; the backup goes to each, in order.
    pub destinations: Vec<String>,
    /// Cron expression with seconds for `dockyard daemon` (`dockyard run` ignores it).
    pub schedule: Option<Schedule>,
    /// Tags for every backup of the job.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// zstd level (default 3).
    pub level: Option<Level>,
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
    pub path: Option<ContainerPath>,
    /// File globs (default ["*.log"]).
    pub patterns: Option<Vec<LogPattern>>,
    /// Reopen method (default "signal:USR1").
    pub reopen: Option<String>,
    /// Size trigger, e.g. "10M".
    pub min_size: Option<Size>,
    /// Age trigger, e.g. "1d".
    pub max_age: Option<Age>,
    /// Name from `[destinations]`.
    pub destination: String,
    /// Cron expression with seconds for `dockyard daemon`.
    pub schedule: Option<Schedule>,
    /// Delete shipped logs older than this from the destination, e.g. "30d".
    pub prune_after: Option<Age>,
    /// Seconds between reopen and shipping, 0 to 3600 (default 1).
    pub settle: Option<Settle>,
    /// Helper image (default: the container's image).
    pub helper_image: Option<String>,
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
            .and_then(|j| j.schedule.as_ref())
            .or_else(|| self.logs.get(name).and_then(|l| l.schedule.as_ref()))
            .map(Schedule::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let err = parse("[destinations.l]\nurl = \"/b\"\n[jobs.m]\ncontainer = \"web\"\ndestinations = [\"l\"]\nschedule = \"15 2 * * *\"\n").unwrap_err();
        assert!(
            err.contains("5 fields") && err.contains("0 15 2 * * *") && err.contains("schedule"),
            "{err}"
        );
    }

    #[test]
    fn an_out_of_range_settle_is_an_error_not_clamped() {
        let err = parse("[logs.l]\ncontainer = \"web\"\ndestination = \"d\"\nsettle = 5000\n")
            .unwrap_err();
        assert!(err.contains("between 0 and 3600"), "{err}");
    }
}
