//! One typed, validated settings value built from the command line and environment (flags win over
//! env, env over defaults). Commands receive these and never see clap.

use crate::archive::pack::Compression;
use crate::cli::{Cli, Command};
use crate::destination::{DestSpec, RemoteOptions};
use crate::error::Failure;

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
    /// Helper image override.
    pub helper_image: Option<String>,
}

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
            s3_part_size: cli.remote.s3_part_size.saturating_mul(1 << 20),
        };
        let dest = |url: &str| DestSpec::parse(url, &remote).map_err(Failure::usage);
        let action = match cli.command {
            Command::Backup(a) => Action::Backup(BackupSettings {
                container: a.container,
                paths: container_paths(&a.paths)?,
                dest: dest(&a.dest.dest)?,
                tags: tags(&a.tags)?,
                compression: Compression {
                    level: a.level,
                    workers: zstd_workers(),
                },
                helper_image: a.helper_image,
            }),
            Command::List(a) => Action::List {
                dest: dest(&a.dest.dest)?,
                container: a.container,
            },
            Command::Verify(a) => Action::Verify {
                dest: dest(&a.dest.dest)?,
                archive: a.archive,
                container: a.container,
            },
            Command::Restore(a) => Action::Restore(RestoreSettings {
                container: a.container,
                dest: dest(&a.dest)?,
                archive: a.archive,
                source: a.source,
                paths: container_paths(&a.paths)?,
                dry_run: a.dry_run,
                safety_backup: !a.no_safety_backup,
                helper_image: a.helper_image,
            }),
        };
        Ok(Settings { output, action })
    }
}

/// zstd workers: one per core (zstd's `-T0`).
fn zstd_workers() -> u32 {
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

fn tags(raw: &[String]) -> Result<Vec<String>, Failure> {
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
