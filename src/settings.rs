//! One typed, validated settings value built from the command line and environment (flags win over
//! env, env over defaults). Commands receive these and never see clap.

use crate::archive::pack::Compression;
use crate::cli::{Cli, Command};
use crate::destination::{DestSpec, RemoteOptions};
use crate::error::Failure;
use crate::logs::reopen::Reopen;
use crate::retention::Policy;

/// How results are shown.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// JSON on stdout instead of text.
    pub json: bool,
    /// Progress bar allowed (still only on a terminal).
    pub progress: bool,
}

/// Everything a run needs.
#[derive(Debug)]
pub struct Settings {
    /// Output style.
    pub output: Output,
    /// What to do.
    pub action: Action,
}

/// The command, with its validated settings.
#[derive(Debug)]
pub enum Action {
    /// `backup`.
    Backup(BackupSettings),
    /// `list`.
    List {
        /// Where to look.
        dest: DestSpec,
        /// Only this container's backups.
        container: Option<String>,
    },
    /// `verify`.
    Verify {
        /// Where to look.
        dest: DestSpec,
        /// Id or `latest`.
        archive: String,
        /// With `latest`: this container's newest.
        container: Option<String>,
    },
    /// `restore`.
    Restore(RestoreSettings),
    /// `logs`, `logs rotate`, `logs ship`.
    Logs(LogsSettings),
    /// `run`: the config file's jobs.
    Run {
        /// The config file.
        config: std::path::PathBuf,
        /// Job names; empty means all.
        jobs: Vec<String>,
        /// Prometheus textfile override.
        metrics_file: Option<std::path::PathBuf>,
        /// Remote-destination flags and env, which win over the config's destination settings.
        remote: RemoteOptions,
    },
    /// `daemon`: the config file's jobs on their schedules.
    Daemon {
        /// The config file.
        config: std::path::PathBuf,
        /// Prometheus textfile override.
        metrics_file: Option<std::path::PathBuf>,
        /// Remote-destination flags and env, which win over the config's destination settings.
        remote: RemoteOptions,
    },
    /// `prune`.
    Prune {
        /// Where the backups are.
        dest: DestSpec,
        /// Only this container's.
        container: Option<String>,
        /// What to keep.
        policy: Policy,
        /// Report only.
        dry_run: bool,
    },
}

/// Settings for one log run.
#[derive(Debug, Clone)]
pub struct LogsSettings {
    /// The app container.
    pub container: String,
    /// The log directory inside it.
    pub dir: String,
    /// Globs of live log files.
    pub patterns: Vec<String>,
    /// How the app reopens.
    pub reopen: Reopen,
    /// Size trigger in bytes.
    pub min_size: Option<u64>,
    /// Age trigger in seconds.
    pub max_age: Option<u64>,
    /// Rotate in this run.
    pub rotate: bool,
    /// Ship in this run, and where.
    pub ship: Option<ShipSettings>,
    /// Without shipping: rotated files to keep per log.
    pub keep_local: Option<usize>,
    /// Wait after reopening, before shipping.
    pub settle: std::time::Duration,
    /// Helper image override.
    pub helper_image: Option<String>,
}

/// Where rotated logs go.
#[derive(Debug, Clone)]
pub struct ShipSettings {
    /// Destination.
    pub dest: DestSpec,
    /// zstd level.
    pub level: i32,
    /// Delete shipped logs rotated longer ago than this many seconds.
    pub prune_after: Option<u64>,
}

/// Settings for one backup.
#[derive(Debug, Clone)]
pub struct BackupSettings {
    /// Container name or id.
    pub container: String,
    /// Container paths to back up; empty means every mount.
    pub paths: Vec<String>,
    /// Where the archive goes.
    pub dest: DestSpec,
    /// Tags recorded in the manifest.
    pub tags: Vec<String>,
    /// zstd settings.
    pub compression: Compression,
    /// Helper image override.
    pub helper_image: Option<String>,
    /// A snapshot: record image digests and the container's inspect data too.
    pub snapshot: bool,
    /// With `snapshot`: keep the environment's values in clear.
    pub include_env: bool,
    /// Containers to stop during the backup, in stop order (empty: stop nothing).
    pub stop: Vec<String>,
    /// Seconds the engine waits for each to stop gracefully.
    pub stop_timeout: u32,
    /// Command run in the container before the backup.
    pub pre_hook: Option<String>,
    /// Command run in the container after the backup.
    pub post_hook: Option<String>,
}

/// Settings for one restore.
#[derive(Debug, Clone)]
pub struct RestoreSettings {
    /// Target container.
    pub container: String,
    /// Where the backup is.
    pub dest: DestSpec,
    /// Id or `latest`.
    pub archive: String,
    /// With `latest`: whose newest backup (default: the target's name).
    pub source: Option<String>,
    /// Paths of the backup to restore; empty means all.
    pub paths: Vec<String>,
    /// Report only.
    pub dry_run: bool,
    /// Take a `pre-restore` backup of a non-empty target first.
    pub safety_backup: bool,
    /// Where the safety backup goes (default: `dest`).
    pub safety_dest: Option<DestSpec>,
    /// Safety backups older than this many seconds expire.
    pub safety_keep_secs: i64,
    /// Device nodes and set-id bits.
    pub privileges: crate::archive::entry::Privileges,
    /// Containers to stop around the restore, in stop order (empty: stop nothing).
    pub stop: Vec<String>,
    /// Seconds the engine waits for each to stop gracefully.
    pub stop_timeout: u32,
    /// Helper image override.
    pub helper_image: Option<String>,
}

/// How long safety backups are kept by default: a week.
pub const DEFAULT_SAFETY_KEEP_SECS: i64 = 7 * 86400;

impl Settings {
    /// Lowers and validates the parsed command line.
    pub fn from_cli(cli: Cli) -> Result<Settings, Failure> {
        let output = Output {
            json: cli.json,
            progress: !cli.no_progress,
        };
        let remote = RemoteOptions {
            ssh_config: cli.remote.ssh_config,
            s3_endpoint: cli.remote.s3_endpoint.filter(|e| !e.is_empty()),
            s3_path_style: cli.remote.s3_addressing.as_deref().map(|a| a == "path"),
            s3_part_size: cli.remote.s3_part_size.unwrap_or(0).saturating_mul(1 << 20),
        };
        let dest = |url: &str| DestSpec::parse(url, &remote).map_err(Failure::usage);
        let action = match cli.command {
            Command::Backup(a) => Action::Backup(backup_settings(a, &dest, false)?),
            Command::Snapshot(a) => {
                if a.backup.tags.is_empty() {
                    return Err(Failure::usage(
                        "a snapshot needs a --tag (e.g. --tag pre-upgrade) so it can be found and is kept by prune",
                    ));
                }
                let mut b = backup_settings(a.backup, &dest, true)?;
                b.include_env = a.include_env;
                Action::Backup(b)
            }
            Command::Run(a) => Action::Run {
                config: a.config,
                jobs: a.jobs,
                metrics_file: a.metrics_file,
                remote: remote.clone(),
            },
            Command::Daemon(a) => Action::Daemon {
                config: a.config,
                metrics_file: a.metrics_file,
                remote: remote.clone(),
            },
            Command::Prune(a) => {
                let policy = policy(a.policy)?;
                if policy.is_empty() {
                    return Err(Failure::usage(
                        "prune needs a policy: give at least one --keep-* option (e.g. --keep-daily 14); nothing was removed",
                    ));
                }
                Action::Prune {
                    dest: dest(&a.dest.dest)?,
                    container: a.container,
                    policy,
                    dry_run: a.dry_run,
                }
            }
            Command::List(a) => Action::List {
                dest: dest(&a.dest.dest)?,
                container: a.container,
            },
            Command::Verify(a) => Action::Verify {
                dest: dest(&a.dest.dest)?,
                archive: a.archive,
                container: a.container,
            },
            Command::Restore(a) => {
                let (file_dest, file_keep) = restore_config(a.config.as_deref(), &remote)?;
                let safety_dest = match &a.safety_backup_to {
                    Some(url) => Some(dest(url)?),
                    None => file_dest,
                };
                let safety_keep_secs = match &a.safety_backup_keep {
                    Some(age) => parse_age(age).map_err(Failure::usage)? as i64,
                    None => file_keep.unwrap_or(DEFAULT_SAFETY_KEEP_SECS),
                };
                Action::Restore(RestoreSettings {
                    container: a.container.clone(),
                    dest: dest(&a.dest)?,
                    archive: a.archive,
                    source: a.source,
                    paths: container_paths(&a.paths)?,
                    dry_run: a.dry_run,
                    safety_backup: !a.no_safety_backup,
                    safety_dest,
                    safety_keep_secs,
                    privileges: crate::archive::entry::Privileges {
                        allow_devices: a.allow_devices,
                        keep_setid: a.keep_setuid,
                    },
                    stop: stop_list(&a.container, a.stop.stop, &a.stop.stop_also),
                    stop_timeout: a.stop.stop_timeout,
                    helper_image: a.helper_image,
                })
            }
            Command::Logs(a) => Action::Logs(logs_settings(*a, &dest)?),
        };
        Ok(Settings { output, action })
    }
}

/// The config file's `[restore]` settings: the safety backup's destination and how long safety
/// backups are kept. The file is read when named, or when the default one exists.
fn restore_config(
    named: Option<&std::path::Path>,
    remote: &RemoteOptions,
) -> Result<(Option<DestSpec>, Option<i64>), Failure> {
    let default = std::path::Path::new(crate::config::DEFAULT_CONFIG);
    let path = match named {
        Some(p) => p,
        None if default.exists() => default,
        None => return Ok((None, None)),
    };
    let config = crate::config::load(path)?;
    config.restore_settings(remote)
}

/// The containers to stop, in stop order: `container` and then `also`, or none without `stop`.
pub fn stop_list(container: &str, stop: bool, also: &[String]) -> Vec<String> {
    if !stop {
        return Vec::new();
    }
    std::iter::once(container.to_string())
        .chain(also.iter().cloned())
        .collect()
}

fn backup_settings(
    a: crate::cli::BackupArgs,
    dest: &dyn Fn(&str) -> Result<DestSpec, Failure>,
    snapshot: bool,
) -> Result<BackupSettings, Failure> {
    Ok(BackupSettings {
        paths: container_paths(&a.paths)?,
        dest: dest(&a.dest.dest)?,
        tags: tags(&a.tags)?,
        compression: Compression {
            level: a.level,
            workers: zstd_workers(),
        },
        stop: stop_list(&a.container, a.stop.stop, &a.stop.stop_also),
        stop_timeout: a.stop.stop_timeout,
        container: a.container,
        helper_image: a.helper_image,
        snapshot,
        include_env: false,
        pre_hook: a.pre_hook,
        post_hook: a.post_hook,
    })
}

/// Lowers the `--keep-*` flags.
pub fn policy(a: crate::cli::PolicyArgs) -> Result<Policy, Failure> {
    Ok(Policy {
        keep_last: a.keep_last,
        keep_hourly: a.keep_hourly,
        keep_daily: a.keep_daily,
        keep_weekly: a.keep_weekly,
        keep_monthly: a.keep_monthly,
        keep_yearly: a.keep_yearly,
        keep_within: a
            .keep_within
            .as_deref()
            .map(|v| parse_age(v).map(|s| s as i64).map_err(Failure::usage))
            .transpose()?,
        keep_tags: a.keep_tags,
        prune_snapshots: a.prune_snapshots,
        keep_safety: a
            .keep_safety
            .as_deref()
            .map(|v| parse_age(v).map(|s| s as i64).map_err(Failure::usage))
            .transpose()?,
    })
}

fn logs_settings(
    a: crate::cli::LogsArgs,
    dest: &dyn Fn(&str) -> Result<DestSpec, Failure>,
) -> Result<LogsSettings, Failure> {
    use crate::cli::{LogDirArgs, LogsAction, RotateArgs, ShipArgs};
    let (container, dir, rotate, ship, keep_local): (
        String,
        LogDirArgs,
        Option<RotateArgs>,
        Option<ShipArgs>,
        Option<usize>,
    ) = match a.action {
        Some(LogsAction::Rotate(r)) => (r.container, r.dir, Some(r.rotate), None, r.keep_local),
        Some(LogsAction::Ship(s)) => (s.container, s.dir, None, Some(s.ship), None),
        None => (
            a.container.expect("clap requires it"),
            a.dir,
            Some(a.rotate),
            Some(a.ship),
            None,
        ),
    };
    let dir_path = container_paths(std::slice::from_ref(&dir.path))?.remove(0);
    let (patterns, reopen, min_size, max_age) = match &rotate {
        Some(r) => (
            r.patterns
                .iter()
                .map(|p| pattern(p))
                .collect::<Result<Vec<_>, _>>()?,
            Reopen::parse(&r.reopen).map_err(Failure::usage)?,
            r.min_size
                .as_deref()
                .map(|v| parse_size(v).map_err(Failure::usage))
                .transpose()?,
            r.max_age
                .as_deref()
                .map(|v| parse_age(v).map_err(Failure::usage))
                .transpose()?,
        ),
        None => (Vec::new(), Reopen::None, None, None),
    };
    let settle = ship.as_ref().map(|s| s.settle).unwrap_or(0.0);
    if !(0.0..=3600.0).contains(&settle) {
        return Err(Failure::usage(
            "--settle must be between 0 and 3600 seconds",
        ));
    }
    Ok(LogsSettings {
        container,
        dir: dir_path,
        patterns,
        reopen,
        min_size,
        max_age,
        rotate: rotate.is_some(),
        ship: ship
            .map(|s| -> Result<ShipSettings, Failure> {
                Ok(ShipSettings {
                    dest: dest(&s.dest.dest)?,
                    level: s.level,
                    prune_after: s
                        .prune_after
                        .as_deref()
                        .map(|v| parse_age(v).map_err(Failure::usage))
                        .transpose()?,
                })
            })
            .transpose()?,
        keep_local,
        settle: std::time::Duration::from_secs_f64(settle),
        helper_image: dir.helper_image,
    })
}

/// A log file glob: a plain name pattern, safe to leave unquoted in the helper's shell.
pub fn pattern(p: &str) -> Result<String, Failure> {
    let ok = !p.is_empty()
        && !p.starts_with('.')
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-*?[]".contains(c));
    if ok {
        Ok(p.to_string())
    } else {
        Err(Failure::usage(format!(
            "--pattern {p:?}: use a file name glob such as '*.log' (letters, digits, . _ - * ? [ ]; no / or spaces)"
        )))
    }
}

/// Parses `10M`, `1G`, `512k` or plain bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_uppercase() {
                'K' => 1u64 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'B' => 1,
                _ => return Err(format!("size {s:?}: use a number with k, M or G, e.g. 10M")),
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("size {s:?}: use a number with k, M or G, e.g. 10M"))
}

/// Parses `45s`, `30m`, `12h`, `7d` into seconds.
pub fn parse_age(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let bad = || format!("age {s:?}: use a number with s, m, h or d, e.g. 1h or 30d");
    let (num, unit) = t.split_at(t.len().checked_sub(1).ok_or_else(bad)?);
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(bad()),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(bad)
}

/// zstd workers: one per core (zstd's `-T0`).
pub fn zstd_workers() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

/// Normalises container paths: absolute, no `.`/`..`, no trailing or doubled slashes.
pub fn container_paths(raw: &[String]) -> Result<Vec<String>, Failure> {
    let mut out: Vec<String> = Vec::new();
    for p in raw {
        if !p.starts_with('/') {
            return Err(Failure::usage(format!(
                "--path {p:?}: give an absolute path inside the container, e.g. /srv/media"
            )));
        }
        let parts: Vec<&str> = p.split('/').filter(|c| !c.is_empty()).collect();
        if parts.iter().any(|c| *c == "." || *c == "..") {
            return Err(Failure::usage(format!(
                "--path {p:?}: `.` and `..` are not allowed"
            )));
        }
        if parts.is_empty() {
            return Err(Failure::usage(
                "--path /: give a mount point such as /srv/media, not the root",
            ));
        }
        let norm = format!("/{}", parts.join("/"));
        if !out.contains(&norm) {
            out.push(norm);
        }
    }
    Ok(out)
}

pub fn tags(raw: &[String]) -> Result<Vec<String>, Failure> {
    for t in raw {
        let ok = !t.is_empty()
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-:".contains(c));
        if !ok {
            return Err(Failure::usage(format!(
                "--tag {t:?}: use letters, digits and . _ - : only"
            )));
        }
    }
    Ok(raw.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_ages_parse_with_units() {
        assert_eq!(parse_size("10M"), Ok(10 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("ten").is_err() && parse_size("5X").is_err());
        assert_eq!(parse_age("30d"), Ok(30 * 86400));
        assert_eq!(parse_age("1h"), Ok(3600));
        assert!(parse_age("").is_err() && parse_age("5w").is_err() && parse_age("h").is_err());
    }

    #[test]
    fn log_patterns_must_be_plain_globs() {
        assert!(pattern("*.log").is_ok() && pattern("access-[0-9].log").is_ok());
        for bad in ["../x", "a b", "*.log;rm", ".hidden", "", "$(x)"] {
            assert!(pattern(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn normalises_paths() {
        let got = container_paths(&[
            "/srv/media/".into(),
            "//srv//logs".into(),
            "/srv/media".into(),
        ])
        .unwrap();
        assert_eq!(got, vec!["/srv/media", "/srv/logs"]);
    }

    #[test]
    fn rejects_bad_paths_by_name() {
        for bad in ["srv/media", "/srv/../etc", "/"] {
            let err = container_paths(&[bad.into()]).unwrap_err().to_string();
            assert!(err.contains("--path"), "{bad}: {err}");
        }
    }

    #[test]
    fn rejects_odd_tags() {
        assert!(tags(&["pre-upgrade".into(), "v1.2".into()]).is_ok());
        assert!(tags(&["has space".into()])
            .unwrap_err()
            .to_string()
            .contains("has space"));
    }
}
