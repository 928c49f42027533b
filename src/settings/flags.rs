//! Lowers the parsed command line (flags and environment, already checked by the `values` types
//! clap parses them into) into `Settings`.

use super::file::jobs;
use super::Incremental;
use super::{
    stop_list, Action, BackupSettings, Dirs, LogsSettings, Output, RestoreSettings, Settings,
    ShipSettings,
};
use crate::archive::entry::Privileges;
use crate::archive::exclude::Globs;
use crate::archive::pack::Compression;
use crate::cli::{
    BackupArgs, Cli, Command, EncryptArgs, LogDirArgs, LogsAction, LogsArgs, OneOffNotifyArgs,
    PolicyArgs, RotateArgs, ShipArgs, UnlockArgs,
};
use crate::destination::{DestSpec, RemoteOptions};
use crate::encryption::{IdentityFile, Passphrase, Seal, Unlock};
use crate::error::Failure;
use crate::logs::reopen::Reopen;
use crate::retention::Policy;
use crate::values::{
    defaults, tag_strings, unique_paths, zstd_workers, Addressing, Age, ContainerPath,
};

impl Settings {
    /// Lowers and validates the parsed command line.
    pub fn from_cli(cli: Cli) -> Result<Settings, Failure> {
        let output = Output {
            json: cli.json,
            lines: matches!(cli.command, Command::Run(_) | Command::Daemon(_)),
            progress: !cli.no_progress && !cli.quiet,
            quiet: cli.quiet,
        };
        let remote = remote_options(&cli.command);
        let helper_timeout = cli.helper_timeout.0;
        let dest = |url: &str| DestSpec::parse(url, &remote).map_err(Failure::usage);
        // Set by the commands cron runs on their own.
        let mut notify = None;
        // The config file's `lock_dir` and `state_dir` count for the commands that read one.
        let mut dirs = None;
        let mut engines = std::collections::BTreeMap::new();
        let action = match cli.command {
            Command::Backup(mut a) => {
                let n = std::mem::take(&mut a.notify);
                let b = backup(a, &dest, false)?;
                notify = one_off("backup", n, Some(&b.container), Some(&b.dest), b.dry_run)?;
                Action::Backup(b)
            }
            Command::Snapshot(mut a) => {
                if a.backup.tags.is_empty() {
                    return Err(Failure::usage(
                        "a snapshot needs a --tag (e.g. --tag pre-upgrade) so it can be found and is kept by prune",
                    ));
                }
                let n = std::mem::take(&mut a.backup.notify);
                let mut b = backup(a.backup, &dest, true)?;
                b.include_env = a.include_env;
                notify = one_off("snapshot", n, Some(&b.container), Some(&b.dest), b.dry_run)?;
                Action::Backup(b)
            }
            Command::Run(a) => {
                let (jobs, d) = jobs(
                    &a.config,
                    &a.jobs,
                    &remote,
                    a.metrics_file,
                    &notify_flags(a.notify),
                )?;
                dirs = Some(d);
                engines = jobs.engines.clone();
                Action::Run(jobs)
            }
            Command::Daemon(a) => {
                let (jobs, d) = jobs(
                    &a.config,
                    &[],
                    &remote,
                    a.metrics_file,
                    &notify_flags(a.notify),
                )?;
                dirs = Some(d);
                engines = jobs.engines.clone();
                Action::Daemon(jobs)
            }
            Command::Prune(a) => {
                let policy = policy(a.policy);
                if policy.is_empty() {
                    return Err(Failure::usage(
                        "prune needs a policy: give at least one --keep-* option (e.g. --keep-daily 14); nothing was removed",
                    ));
                }
                let at = dest(&a.dest.dest)?;
                notify = one_off(
                    "prune",
                    a.notify,
                    a.container.as_deref(),
                    Some(&at),
                    a.dry_run,
                )?;
                Action::Prune {
                    dest: at,
                    container: a.container,
                    policy,
                    dry_run: a.dry_run,
                }
            }
            Command::List(a) => Action::List {
                dest: dest(&a.dest.dest)?,
                container: a.container,
            },
            Command::Dump(a) => Action::Dump {
                dest: dest(&a.dest.dest)?,
                archive: a.archive,
                container: a.container,
                path: a.path.as_str().to_string(),
                unlock: unlock(a.unlock)?,
            },
            Command::RestoreDb(a) => Action::RestoreDb(crate::ops::restore_db::RestoreDbSettings {
                dest: dest(&a.dest)?,
                archive: a.archive,
                source: a.container,
                dump: a.dump,
                into: a.into,
                database: a.database,
                command: a.command,
                force: a.force,
                dry_run: a.dry_run,
                unlock: unlock(a.unlock)?,
            }),
            Command::Verify(a) => Action::Verify {
                dest: dest(&a.dest.dest)?,
                archive: a.archive,
                container: a.container,
                unlock: unlock(a.unlock)?,
            },
            Command::Restore(a) => {
                let file = super::file::restore_defaults(a.config.as_deref(), &remote)?;
                let safety_dest = match &a.safety_backup_to {
                    Some(url) => Some(dest(url)?),
                    None => file.safety_dest,
                };
                let safety_keep_secs = match a.safety_backup_keep {
                    Some(age) => age.secs() as i64,
                    None => file.safety_keep_secs.unwrap_or(defaults::SAFETY_KEEP_SECS),
                };
                Action::Restore(RestoreSettings {
                    container: a.container.clone(),
                    dest: dest(&a.dest)?,
                    unlock: unlock(a.unlock)?,
                    archive: a.archive,
                    source: a.source,
                    paths: unique_paths(&a.paths),
                    dry_run: a.dry_run,
                    safety_backup: !a.no_safety_backup,
                    safety_dest,
                    safety_keep_secs,
                    privileges: Privileges {
                        allow_devices: a.allow_devices,
                        keep_setid: a.keep_setuid,
                        keep_capabilities: a.keep_capabilities,
                    },
                    stop: stop_list(&a.container, a.stop.stop, &a.stop.stop_also),
                    stop_timeout: a.stop.stop_timeout,
                    helper_image: a.helper_image,
                    agent: a.agent.agent,
                    wait_cleanup: a.wait_cleanup,
                    force: a.force,
                    include: {
                        Globs::new(&a.include)
                            .map_err(|e| Failure::usage(e.replace("--exclude", "--include")))?;
                        a.include
                    },
                    allow_open_files: a.allow_open_files,
                })
            }
            Command::Logs(mut a) => {
                let n = std::mem::take(match &mut a.action {
                    Some(LogsAction::Rotate(r)) => &mut r.notify,
                    Some(LogsAction::Ship(s)) => &mut s.notify,
                    None => &mut a.notify,
                });
                let l = logs(*a, &dest)?;
                let to = l.ship.as_ref().map(|s| &s.dest);
                notify = one_off("logs", n, Some(&l.container), to, l.dry_run)?;
                Action::Logs(l)
            }
            Command::Completions(a) => Action::Completions(a.shell),
            Command::Man(a) => Action::Man { dir: a.dir },
            Command::Config(crate::cli::ConfigCommand::Check(a)) => {
                let (jobs, d) = jobs(&a.config, &[], &remote, None, &notify_flags(a.notify))?;
                dirs = Some(d);
                engines = jobs.engines.clone();
                Action::ConfigCheck(jobs)
            }
        };
        Ok(Settings {
            output,
            action,
            dirs: dirs.unwrap_or_else(|| Dirs::decide(None, None)),
            engine: std::env::var("DOCKER_HOST")
                .unwrap_or_else(|_| "unix:///var/run/docker.sock".into()),
            engine_ssh_config: remote.ssh_config,
            engines,
            helper_timeout,
            notify,
        })
    }
}

/// Where a command run on its own (`backup`, `snapshot`, `logs`, `prune`) says how it went: its
/// flags over the `[notify]` of the config file (named, or the default one if it exists). Checked
/// for a dry run too, which then notifies no one.
fn one_off(
    command: &'static str,
    a: OneOffNotifyArgs,
    container: Option<&str>,
    dest: Option<&DestSpec>,
    dry_run: bool,
) -> Result<Option<crate::notify::OneOff>, Failure> {
    let file = super::file::notify_section(a.config.as_deref())?;
    let Some(notifier) = super::notify::lower(file.as_ref(), &notify_flags(a.notify))? else {
        return Ok(None);
    };
    if dry_run {
        return Ok(None);
    }
    Ok(Some(crate::notify::OneOff {
        notifier,
        command,
        container: container.map(str::to_string),
        destination: dest.map(DestSpec::to_string),
        rerun: super::notify::rerun(std::env::args()),
    }))
}

fn backup(
    a: BackupArgs,
    dest: &dyn Fn(&str) -> Result<DestSpec, Failure>,
    snapshot: bool,
) -> Result<BackupSettings, Failure> {
    Ok(BackupSettings {
        on_engine: None,
        paths: unique_paths(&a.paths),
        dest: dest(&a.dest.dest)?,
        tags: tag_strings(&a.tags),
        compression: Compression {
            level: a.level.0,
            workers: zstd_workers(),
        },
        stop: stop_list(&a.container, a.stop.stop, &a.stop.stop_also),
        stop_timeout: a.stop.stop_timeout,
        container: a.container,
        helper_image: a.helper_image,
        agent: a.agent.agent,
        exclude: Globs::new(&a.exclude).map_err(Failure::usage)?,
        snapshot,
        include_env: false,
        pre_hook: a.pre_hook,
        post_hook: a.post_hook,
        dry_run: a.dry_run,
        encryption: seal(&a.encrypt)?,
        incremental: a.incremental.incremental.then(|| Incremental {
            full_every: a.incremental.full_every.unwrap_or(Incremental::FULL_EVERY),
            full_after: a.incremental.full_after.map(Age::secs),
        }),
        identities: a.incremental.identities,
        dumps: {
            // Parsed here, not by clap, which would echo a refused value (an `exec` command
            // may hold a password).
            let mut dumps = Vec::new();
            for d in &a.dumps {
                dumps.push(
                    d.parse::<crate::dumps::DumpSpec>()
                        .map_err(|e| Failure::usage(format!("--dump: {e}")))?,
                );
            }
            crate::dumps::spec::check_unique(&dumps).map_err(Failure::usage)?;
            dumps
        },
        exec_before: super::exec_hooks("--exec-before", &a.exec_before)?,
        exec_after: super::exec_hooks("--exec-after", &a.exec_after)?,
    })
}

/// Lowers `--encrypt-to` and `--passphrase-file`.
fn seal(a: &EncryptArgs) -> Result<Option<Seal>, Failure> {
    Seal::lower(&a.encrypt_to, a.passphrase_file.as_deref())
}

/// Lowers `--identity` and `--passphrase-file` (the passphrase is read now, the identity files
/// when a backup is opened).
fn unlock(a: UnlockArgs) -> Result<Unlock, Failure> {
    Ok(Unlock {
        identities: a.identities.into_iter().map(IdentityFile).collect(),
        passphrase: a
            .passphrase_file
            .as_deref()
            .map(Passphrase::read)
            .transpose()?,
    })
}

/// Lowers the `--keep-*` flags.
pub fn policy(a: PolicyArgs) -> Policy {
    let secs = |age: Option<Age>| age.map(|a| a.secs() as i64);
    Policy {
        keep_last: a.keep_last,
        keep_hourly: a.keep_hourly,
        keep_daily: a.keep_daily,
        keep_weekly: a.keep_weekly,
        keep_monthly: a.keep_monthly,
        keep_yearly: a.keep_yearly,
        keep_within: secs(a.keep_within),
        keep_tags: tag_strings(&a.keep_tags),
        prune_snapshots: a.prune_snapshots,
        keep_safety: secs(a.keep_safety),
    }
}

fn logs(
    a: LogsArgs,
    dest: &dyn Fn(&str) -> Result<DestSpec, Failure>,
) -> Result<LogsSettings, Failure> {
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
    let (patterns, reopen, min_size, max_age) = match &rotate {
        Some(r) => (
            r.patterns.iter().map(|p| p.as_str().to_string()).collect(),
            Reopen::parse(&r.reopen).map_err(Failure::usage)?,
            r.min_size.map(|s| s.0),
            r.max_age.map(Age::secs),
        ),
        None => (Vec::new(), Reopen::None, None, None),
    };
    Ok(LogsSettings {
        on_engine: None,
        container,
        dir: ContainerPath::as_str(&dir.path).to_string(),
        patterns,
        reopen,
        min_size,
        max_age,
        rotate: rotate.is_some(),
        settle: ship
            .as_ref()
            .map(|s| s.settle.0)
            .unwrap_or(std::time::Duration::ZERO),
        ship: ship
            .map(|s| -> Result<ShipSettings, Failure> {
                Ok(ShipSettings {
                    dest: dest(&s.dest.dest)?,
                    level: s.level.0,
                    prune_after: s.prune_after.map(Age::secs),
                    encryption: seal(&s.encrypt)?,
                })
            })
            .transpose()?,
        keep_local,
        dry_run: dir.dry_run,
        helper_image: dir.helper_image,
    })
}

/// The `--notify-*` flags in the shape of the file's `[notify]`.
fn notify_flags(a: crate::cli::NotifyArgs) -> crate::config::NotifyConfig {
    crate::config::NotifyConfig {
        webhook: a.notify_webhook,
        ntfy: a.notify_ntfy,
        slack: a.notify_slack,
        discord: a.notify_discord,
        smtp: a.notify_smtp,
        email_from: a.notify_email_from,
        email_to: a.notify_email_to,
        on_success: a.notify_on_success,
        timeout: a.notify_timeout,
        retries: None,
    }
}

/// The remote-destination flags of the commands that take them (defaults for the others).
fn remote_options(command: &Command) -> RemoteOptions {
    let args = match command {
        Command::Backup(a) => Some(&a.dest.remote),
        Command::Snapshot(a) => Some(&a.backup.dest.remote),
        Command::List(a) => Some(&a.dest.remote),
        Command::Verify(a) => Some(&a.dest.remote),
        Command::Dump(a) => Some(&a.dest.remote),
        Command::Restore(a) => Some(&a.remote),
        Command::RestoreDb(a) => Some(&a.remote),
        Command::Prune(a) => Some(&a.dest.remote),
        Command::Run(a) => Some(&a.remote),
        Command::Daemon(a) => Some(&a.remote),
        Command::Config(crate::cli::ConfigCommand::Check(a)) => Some(&a.remote),
        Command::Logs(a) => match &a.action {
            Some(LogsAction::Ship(s)) => Some(&s.ship.dest.remote),
            Some(LogsAction::Rotate(_)) => None,
            None => Some(&a.ship.dest.remote),
        },
        Command::Completions(_) | Command::Man(_) => None,
    };
    let Some(r) = args else {
        return RemoteOptions::default();
    };
    RemoteOptions {
        ssh_config: r.ssh_config.clone(),
        s3_endpoint: r.s3_endpoint.clone().filter(|e| !e.is_empty()),
        s3_path_style: r.s3_addressing.map(|a| a == Addressing::Path),
        s3_part_size: r.s3_part_size.unwrap_or(0).saturating_mul(1 << 20),
    }
}
