//! The config file (TOML) as it is written: named destinations, backup jobs and log jobs. Every
//! value is read into the same checked types the command line uses (`values`), and unknown keys
//! are errors naming the key; `settings::file` lowers it into the settings every command uses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::Failure;
use crate::retention::Policy;
use crate::values::{
    Addressing, Age, ContainerPath, Level, LogPattern, Schedule, Secret, Settle, Size, Tag,
    TimeZone,
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
    /// The IANA time zone schedules are read in, e.g. "Europe/Berlin" (default: the host's, from
    /// `TZ` or /etc/localtime, as cron does); a job's own `timezone` wins.
    pub timezone: Option<TimeZone>,
    /// Where `run` and `daemon` say how each job went, and `backup`, `snapshot`, `logs` and
    /// `prune` run on their own (from cron) how they went.
    pub notify: Option<NotifyConfig>,
    /// Where the daemon records when each job last ran, for `catch_up` (default:
    /// /var/lib/dockyard, or the temp dir if that is not writable; `DOCKYARD_STATE_DIR` overrides).
    pub state_dir: Option<PathBuf>,
    /// How many jobs `run` and `daemon` run at once (default 2), never two of one container: a
    /// job that hangs or runs long does not hold back the other containers' jobs.
    pub parallel_jobs: Option<std::num::NonZeroUsize>,
    /// Containers that opt in with labels (`dockyard.enable=true`) become jobs of `run` and
    /// `daemon` beside the file's (README, "Labels").
    pub labels: Option<LabelsConfig>,
    /// Docker engines by name, when there is more than one: each job says which (`engine`), and
    /// labelled containers are found on each. Without it, the one engine `DOCKER_HOST` names.
    #[serde(default)]
    pub engines: BTreeMap<String, EngineConfig>,
}

/// `[labels]`: how labelled containers are found.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelsConfig {
    /// Find labelled containers (default true).
    pub enabled: Option<bool>,
    /// Only containers labelled `dockyard.instance=` this value (when several dockyards share an
    /// engine); without it, only containers with no `dockyard.instance` label.
    pub instance: Option<String>,
}

/// `[engines.NAME]`: one Docker engine.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Its address, as `DOCKER_HOST` takes it: `unix:///var/run/docker.sock`,
    /// `tcp://host:2376`, or `ssh://user@host` (the system OpenSSH and its config).
    pub host: String,
    /// For `tcp://`: a directory holding `ca.pem`, `cert.pem` and `key.pem` (as
    /// `DOCKER_CERT_PATH`); the engine's certificate is verified against `ca.pem`.
    pub tls_cert_path: Option<PathBuf>,
    /// For `ssh://`: an ssh config file instead of ~/.ssh/config.
    pub ssh_config: Option<PathBuf>,
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

/// `[notify]`: where `run` and `daemon` say how each job went, and the commands cron runs on their
/// own (`backup`, `snapshot`, `logs`, `prune`) how they went. URLs carry tokens and the SMTP
/// URL may carry a password: keep the file private, or give them by environment instead
/// (`DOCKYARD_NOTIFY_WEBHOOK`, ..., `DOCKYARD_SMTP_PASSWORD`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Also notify when a job (or command) succeeds (default: failures only).
    #[serde(default)]
    pub on_success: bool,
    /// The most notifying may add to a job (or command), retries included (default "10s").
    pub timeout: Option<Age>,
    /// Attempts after the first, while time is left (default 3).
    pub retries: Option<u32>,
    /// POST a JSON summary here (docs/json.md, "Notifications").
    pub webhook: Option<Secret>,
    /// An ntfy topic URL.
    pub ntfy: Option<Secret>,
    /// A Slack incoming-webhook URL.
    pub slack: Option<Secret>,
    /// A Discord webhook URL.
    pub discord: Option<Secret>,
    /// SMTP server URL: `smtp://user@host:587?tls=required`, `smtps://user@host:465`, or
    /// `smtp://host:25`; the password from `DOCKYARD_SMTP_PASSWORD` (or the URL).
    pub smtp: Option<Secret>,
    /// The mail's sender.
    pub email_from: Option<String>,
    /// The mail's recipients.
    #[serde(default)]
    pub email_to: Vec<String>,
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
    /// Encrypt with age to these recipients (`age1...`, `ssh-ed25519 ...`, `ssh-rsa ...`, or
    /// `@FILE`); a destination's own `encrypt_to`/`passphrase_file` win over a job's.
    #[serde(default)]
    pub encrypt_to: Vec<String>,
    /// Encrypt with age to the passphrase on this file's first line instead (scrypt).
    pub passphrase_file: Option<PathBuf>,
}

/// One backup job.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// Container name.
    pub container: String,
    /// The engine it is on, a name from `[engines]` (required when there are engines).
    pub engine: Option<String>,
    /// Paths to back up (default: every mount).
    #[serde(default)]
    pub paths: Vec<ContainerPath>,
    /// Names from `[destinations]`; the backup goes to each, in order.
    pub destinations: Vec<String>,
    /// When `dockyard daemon` runs it: five cron fields ("30 2 * * *"), @daily and the like, or
    /// six with seconds first (`dockyard run` ignores it).
    pub schedule: Option<Schedule>,
    /// The IANA time zone of `schedule` (default: the file's `timezone`, else the host's).
    pub timezone: Option<TimeZone>,
    /// When the daemon starts after a run was missed (the host was off), run the job once at
    /// once, as systemd's `Persistent=true` does.
    #[serde(default)]
    pub catch_up: bool,
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
    /// Names left out of every backup (globs, as `--exclude`: `*.tmp`, `/srv/media/cache/**`).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// `auto` (default): dockyard's agent packs inside the helper; `never`: the engine's archive
    /// endpoint.
    pub agent: Option<crate::values::AgentMode>,
    /// Retention applied to each destination after a successful backup (restic's rules).
    pub retention: Option<Policy>,
    /// Encrypt with age to these recipients (`age1...`, `ssh-ed25519 ...`, `ssh-rsa ...`, or
    /// `@FILE`); a destination's own `encrypt_to`/`passphrase_file` win over a job's.
    #[serde(default)]
    pub encrypt_to: Vec<String>,
    /// Encrypt with age to the passphrase on this file's first line instead (scrypt).
    pub passphrase_file: Option<PathBuf>,
    /// Archive only what changed since the parent backup (`backup --incremental`).
    #[serde(default)]
    pub incremental: bool,
    /// With `incremental`: a chain holds at most this many backups, the full one included
    /// (default 7).
    pub full_every: Option<u32>,
    /// With `incremental`: a full backup when the chain's full one is older than this ("7d").
    pub full_after: Option<Age>,
    /// With `incremental` and `encrypt_to`: age identity files that read the parent's index.
    #[serde(default)]
    pub identity_files: Vec<PathBuf>,
    /// Database dumps streamed into each backup before the volumes, as `backup --dump` takes
    /// them: `"db:postgres:app"`, `"db:mariadb:shop"`, `"web:sqlite:/srv/data/db.sqlite3"`,
    /// `"cache:exec:COMMAND"`.
    #[serde(default)]
    pub dumps: Vec<String>,
    /// Commands run in other running containers before each backup, in order, as
    /// `backup --exec-before` takes them: `"cache:redis-cli BGSAVE"`.
    #[serde(default)]
    pub exec_before: Vec<String>,
    /// Commands run in other running containers after each backup, in order, on every way out.
    #[serde(default)]
    pub exec_after: Vec<String>,
}

/// One log job.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogJobConfig {
    /// Container name.
    pub container: String,
    /// The engine it is on, a name from `[engines]` (required when there are engines).
    pub engine: Option<String>,
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
    /// When `dockyard daemon` runs it: five cron fields ("5 * * * *"), @hourly and the like, or
    /// six with seconds first.
    pub schedule: Option<Schedule>,
    /// The IANA time zone of `schedule` (default: the file's `timezone`, else the host's).
    pub timezone: Option<TimeZone>,
    /// When the daemon starts after a run was missed, run the job once at once.
    #[serde(default)]
    pub catch_up: bool,
    /// Delete shipped logs older than this from the destination, e.g. "30d".
    pub prune_after: Option<Age>,
    /// Seconds between reopen and shipping, 0 to 3600 (default 1).
    pub settle: Option<Settle>,
    /// Helper image (default: the container's image).
    pub helper_image: Option<String>,
    /// Encrypt shipped logs with age to these recipients (`age1...`, `ssh-ed25519 ...`, `ssh-rsa ...`, or
    /// `@FILE`); a destination's own `encrypt_to`/`passphrase_file` win over a job's.
    #[serde(default)]
    pub encrypt_to: Vec<String>,
    /// Encrypt shipped logs with age to the passphrase on this file's first line instead (scrypt).
    pub passphrase_file: Option<PathBuf>,
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

/// Parses config text (TOML). An error keeps toml's lines: where (line and column), the line of
/// the file with a caret under the value, and what is wrong with it.
pub fn parse(text: &str) -> Result<Config, String> {
    toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())
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
    fn every_cron_dialect_and_time_zones_are_read() {
        let job = |extra: &str| {
            format!("timezone = \"Asia/Tokyo\"\n[destinations.l]\nurl = \"/b\"\n[jobs.m]\ncontainer = \"web\"\ndestinations = [\"l\"]\n{extra}")
        };
        for schedule in ["15 2 * * *", "@daily", "0 15 2 * * *"] {
            let c = parse(&job(&format!("schedule = \"{schedule}\"\n"))).unwrap();
            let m = &c.jobs["m"];
            assert_eq!(m.schedule.as_ref().unwrap().as_str(), schedule);
            assert_eq!(c.timezone.map(|z| z.0.name()), Some("Asia/Tokyo"));
            assert!(!m.catch_up);
        }
        let c = parse(&job(
            "schedule = \"@hourly\"\ntimezone = \"Europe/Berlin\"\ncatch_up = true\n",
        ))
        .unwrap();
        let m = &c.jobs["m"];
        assert_eq!(m.timezone.map(|z| z.0.name()), Some("Europe/Berlin"));
        assert!(m.catch_up);
        let err = parse(&job("schedule = \"2 * * *\"\n")).unwrap_err();
        assert!(
            err.contains("4 fields") && err.contains("30 2 * * *"),
            "{err}"
        );
        let err = parse(&job("schedule = \"@daily\"\ntimezone = \"Berlin\"\n")).unwrap_err();
        assert!(err.contains("\"Berlin\"") && err.contains("IANA"), "{err}");
    }

    #[test]
    fn errors_keep_the_line_of_the_file_and_the_caret_on_lines_of_their_own() {
        let err =
            parse("[logs.l]\ncontainer = \"web\"\ndestination = \"d\"\nlevel = 3\n").unwrap_err();
        let lines: Vec<&str> = err.lines().collect();
        assert!(lines[0].contains("line 4"), "{err}");
        let at = lines
            .iter()
            .position(|l| l.ends_with("4 | level = 3"))
            .unwrap_or_else(|| panic!("{err}"));
        assert!(lines[at + 1].contains('^'), "{err}");
        assert!(lines.last().unwrap().contains("level"), "{err}");
    }

    #[test]
    fn an_out_of_range_settle_is_an_error_not_clamped() {
        let err = parse("[logs.l]\ncontainer = \"web\"\ndestination = \"d\"\nsettle = 5000\n")
            .unwrap_err();
        assert!(err.contains("between 0 and 3600"), "{err}");
    }
}
