//! Lowers the config file's jobs, `[restore]` table and (for commands run on their own) `[notify]`
//! table into the same settings the flags produce, checking references between its tables (a job
//! naming an undefined destination, an unknown job).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{stop_list, BackupSettings, Dirs, EngineAddr, LogsSettings, ShipSettings};
use crate::archive::exclude::Globs;
use crate::archive::pack::Compression;
use crate::config::{self, Config, DestinationConfig, JobConfig, LogJobConfig};
use crate::destination::{DestSpec, RemoteOptions};
use crate::encryption::Seal;
use crate::error::Failure;
use crate::logs::reopen::Reopen;
use crate::notify::Notifier;
use crate::retention::Policy;
use crate::schedule::{Timing, Zone};
use crate::values::{
    defaults, tag_strings, unique_paths, zstd_workers, Addressing, Age, ContainerPath, Level,
};

/// What `dockyard run` does for one job, fully resolved.
#[derive(Debug, Clone)]
pub enum JobPlan {
    /// A backup to each destination, then retention there.
    Backup {
        /// Job name.
        name: String,
        /// When it runs by itself (`daemon`); `None`: only `dockyard run` runs it.
        schedule: Option<Scheduled>,
        /// The engine its container is on, by name; `None`: the one engine.
        engine: Option<String>,
        /// One settings value per destination, with the destination's name in the config.
        backups: Vec<(String, BackupSettings)>,
        /// Retention to apply afterwards, if any.
        retention: Option<Policy>,
    },
    /// Rotate and ship logs.
    Logs {
        /// Job name.
        name: String,
        /// When it runs by itself (`daemon`); `None`: only `dockyard run` runs it.
        schedule: Option<Scheduled>,
        /// The engine its container is on, by name; `None`: the one engine.
        engine: Option<String>,
        /// The run's settings.
        settings: Box<LogsSettings>,
        /// The name in the config file of the destination logs ship to.
        destination: String,
    },
    /// A job that cannot run as asked (a container's bad labels, or label and config jobs that
    /// clash): running it fails with `error`, and the other jobs run.
    Invalid {
        /// Job name.
        name: String,
        /// The engine its container is on, by name; `None`: the one engine.
        engine: Option<String>,
        /// The container whose labels asked for it.
        container: String,
        /// What is wrong, naming the container and the label.
        error: String,
        /// Its kind (the exit code): usage for labels, docker for an engine that cannot be asked.
        category: crate::error::Category,
    },
}

/// When a job runs by itself (`daemon`).
#[derive(Debug, Clone)]
pub struct Scheduled {
    /// Its schedule, in its zone.
    pub timing: Timing,
    /// Run once at start when a run was missed while the daemon was down.
    pub catch_up: bool,
}

impl JobPlan {
    /// When the job runs by itself, if it does.
    pub fn schedule(&self) -> Option<&Scheduled> {
        match self {
            JobPlan::Backup { schedule, .. } | JobPlan::Logs { schedule, .. } => schedule.as_ref(),
            JobPlan::Invalid { .. } => None,
        }
    }

    /// The engine the job's container is on, by name (`None`: the one engine).
    pub fn engine(&self) -> Option<&str> {
        match self {
            JobPlan::Backup { engine, .. }
            | JobPlan::Logs { engine, .. }
            | JobPlan::Invalid { engine, .. } => engine.as_deref(),
        }
    }

    /// The job's name.
    pub fn name(&self) -> &str {
        match self {
            JobPlan::Backup { name, .. }
            | JobPlan::Logs { name, .. }
            | JobPlan::Invalid { name, .. } => name,
        }
    }

    /// The container the job works on.
    pub fn container(&self) -> &str {
        match self {
            JobPlan::Backup { backups, .. } => backups
                .first()
                .map(|(_, s)| s.container.as_str())
                .unwrap_or_default(),
            JobPlan::Logs { settings, .. } => &settings.container,
            JobPlan::Invalid { container, .. } => container,
        }
    }

    /// Its container as messages name it: `engine/container` with several engines.
    pub fn qualified_container(&self) -> String {
        let on_engine = match self {
            JobPlan::Backup { backups, .. } => {
                backups.first().and_then(|(_, s)| s.on_engine.as_deref())
            }
            JobPlan::Logs { settings, .. } => settings.on_engine.as_deref(),
            JobPlan::Invalid { .. } => None,
        };
        crate::manifest::qualified(on_engine, self.container())
    }

    /// Whether it is a backup job (`Some(true)`), a log job (`Some(false)`) or neither.
    pub fn is_backup(&self) -> Option<bool> {
        match self {
            JobPlan::Backup { .. } => Some(true),
            JobPlan::Logs { .. } => Some(false),
            JobPlan::Invalid { .. } => None,
        }
    }

    /// The containers the job works on or stops (its container first).
    pub fn touches(&self) -> Vec<&str> {
        let mut out = vec![self.container()];
        if let JobPlan::Backup { backups, .. } = self {
            for (_, s) in backups {
                out.extend(s.stop.iter().map(String::as_str));
            }
        }
        out
    }

    /// Whether this job and `other` must not run at once: they share a container, or one stops
    /// a container the other works on or stops (the first to end would start it again early).
    pub fn clashes(&self, other: &JobPlan) -> bool {
        if self.engine() != other.engine() {
            return false;
        }
        let theirs = other.touches();
        self.touches().iter().any(|c| theirs.contains(c))
    }
}

/// What `dockyard restore` takes from the config file's `[restore]` table.
#[derive(Debug, Default)]
pub struct RestoreDefaults {
    /// Where safety backups go.
    pub safety_dest: Option<DestSpec>,
    /// How long they are kept, in seconds.
    pub safety_keep_secs: Option<i64>,
}

/// The config file a command that does not need one reads its defaults from: the one named, or
/// the default one when it exists.
fn named_or_default(named: Option<&Path>) -> Option<&Path> {
    let default = Path::new(defaults::CONFIG);
    match named {
        Some(p) => Some(p),
        None if default.exists() => Some(default),
        None => None,
    }
}

/// The `[restore]` settings of the config file named, or of the default one when it exists.
pub fn restore_defaults(
    named: Option<&Path>,
    remote: &RemoteOptions,
) -> Result<RestoreDefaults, Failure> {
    let Some(path) = named_or_default(named) else {
        return Ok(RestoreDefaults::default());
    };
    let config = match config::load(path) {
        Ok(config) => config,
        // The default file went away since it was seen (the package removed): as if absent.
        Err(_) if named.is_none() && !path.exists() => return Ok(RestoreDefaults::default()),
        Err(e) => return Err(e),
    };
    let Some(r) = &config.restore else {
        return Ok(RestoreDefaults::default());
    };
    Ok(RestoreDefaults {
        safety_dest: r
            .safety_backup_to
            .as_deref()
            .map(|name| dest(&config, "[restore]", name, remote))
            .transpose()?,
        safety_keep_secs: r.safety_backup_keep.map(|a| a.secs() as i64),
    })
}

/// The `[notify]` table of the config file named, or of the default one when it exists: where a
/// command run on its own (`backup`, `snapshot`, `logs`, `prune`) reports how it went.
pub fn notify_section(named: Option<&Path>) -> Result<Option<config::NotifyConfig>, Failure> {
    match named_or_default(named) {
        Some(path) => Ok(config::load(path)?.notify),
        None => Ok(None),
    }
}

/// Resolves every job (or only `wanted`, by name) into plans, checking references.
/// `overrides` (the remote-destination flags and env) win over the destinations' settings.
pub fn plans(
    config: &Config,
    wanted: &[String],
    overrides: &RemoteOptions,
) -> Result<Vec<JobPlan>, Failure> {
    unknown_wanted(wanted, &file_names(config))?;
    let mut all = lowered(config, wanted, overrides)?;
    if !wanted.is_empty() {
        all.retain(|p| wanted.iter().any(|w| w == p.name()));
    }
    Ok(all)
}

/// Every job name in the file, backup jobs first.
fn file_names(config: &Config) -> Vec<String> {
    config
        .jobs
        .keys()
        .chain(config.logs.keys())
        .cloned()
        .collect()
}

/// Every job of the file, lowered. With `wanted` (`run JOB...`), a job not named that cannot be
/// lowered (its passphrase file is missing, say) is left out rather than failing the run: it
/// does not run, and the jobs named do. A name that is not the file's may be a label job's.
fn lowered(
    config: &Config,
    wanted: &[String],
    overrides: &RemoteOptions,
) -> Result<Vec<JobPlan>, Failure> {
    check_engines(config)?;
    let needed = |n: &String| wanted.is_empty() || wanted.contains(n);
    let mut plans = Vec::new();
    let each = config
        .jobs
        .iter()
        .map(|(name, job)| (name, backup_plan(config, name, job, overrides)))
        .chain(
            config
                .logs
                .iter()
                .map(|(name, job)| (name, log_plan(config, name, job, overrides))),
        );
    for (name, plan) in each {
        match plan {
            Ok(plan) => plans.push(plan),
            Err(e) if needed(name) => return Err(e),
            Err(e) => {
                tracing::debug!(job = %name, error = %e, "not named, and cannot be lowered: left out")
            }
        }
    }
    Ok(plans)
}

/// The error for a job name given to `run` that no job has, listing the jobs there are.
pub fn unknown_wanted(wanted: &[String], known: &[String]) -> Result<(), Failure> {
    match wanted.iter().find(|w| !known.contains(w)) {
        Some(w) => Err(Failure::usage(format!(
            "no job named {w:?} in the config or the labels; the jobs are: {known:?}"
        ))),
        None => Ok(()),
    }
}

/// With one engine, a job in a single-engine config (when jobs name it, it is one of
/// `[engines]`) and with several, every job names one of them.
fn check_engines(config: &Config) -> Result<(), Failure> {
    let each = config
        .jobs
        .iter()
        .map(|(n, j)| (n, &j.engine))
        .chain(config.logs.iter().map(|(n, j)| (n, &j.engine)));
    let defined: Vec<&String> = config.engines.keys().collect();
    for (name, engine) in each {
        match engine {
            None if config.engines.len() > 1 => {
                return Err(Failure::usage(format!(
                    "job {name:?} names no engine; with several [engines], each job says which: engine = one of {defined:?}"
                )))
            }
            Some(e) if config.engines.is_empty() => {
                return Err(Failure::usage(format!(
                    "job {name:?} names engine {e:?}, but the config has no [engines] table (without one, jobs run on the engine DOCKER_HOST names)"
                )))
            }
            Some(e) if !config.engines.contains_key(e) => {
                return Err(Failure::usage(format!(
                    "job {name:?} names engine {e:?}, which is not defined under [engines]; defined: {defined:?}"
                )))
            }
            _ => {}
        }
    }
    Ok(())
}

/// The engine a job runs on, by name (`None`: the one `DOCKER_HOST` names), and the name its
/// container is qualified with (only with several engines).
fn engine_of(config: &Config, named: Option<&String>) -> (Option<String>, Option<String>) {
    match config.engines.len() {
        0 => (None, None),
        1 => (named.or(config.engines.keys().next()).cloned(), None),
        _ => (named.cloned(), named.cloned()),
    }
}

/// The `[engines]` table, checked: names, address schemes, and which settings go with which.
pub fn engines(config: &Config) -> Result<BTreeMap<String, EngineAddr>, Failure> {
    let mut out = BTreeMap::new();
    for (name, e) in &config.engines {
        let bad = |why: &str| Failure::usage(format!("[engines.{name}]: {why}"));
        if !crate::manifest::is_engine_name(name) {
            return Err(bad(
                "an engine's name is letters, digits, _ and - (it is recorded in backups)",
            ));
        }
        let scheme = e.host.split_once("://").map(|(s, _)| s);
        match scheme {
            Some("unix" | "tcp" | "ssh") => {}
            _ => {
                return Err(bad(&format!(
                    "host {:?} is not unix:///path, tcp://host:port or ssh://user@host",
                    e.host
                )))
            }
        }
        if e.tls_cert_path.is_some() && scheme != Some("tcp") {
            return Err(bad("tls_cert_path goes with a tcp:// host"));
        }
        if e.ssh_config.is_some() && scheme != Some("ssh") {
            return Err(bad("ssh_config goes with an ssh:// host"));
        }
        out.insert(
            name.clone(),
            EngineAddr {
                host: e.host.clone(),
                tls_cert_path: e.tls_cert_path.clone(),
                ssh_config: e.ssh_config.clone(),
            },
        );
    }
    Ok(out)
}

/// A job's schedule in its zone (the job's, the file's, else the host's).
fn scheduled(
    config: &Config,
    schedule: Option<&crate::values::Schedule>,
    timezone: Option<crate::values::TimeZone>,
    catch_up: bool,
) -> Option<Scheduled> {
    schedule.map(|schedule| Scheduled {
        timing: Timing {
            schedule: schedule.clone(),
            zone: Zone::or_host(timezone.or(config.timezone)),
        },
        catch_up,
    })
}

/// What finding labelled containers' jobs needs (`run`, `daemon`, `config check`): the config
/// their labels name destinations of, and which engines to look on.
#[derive(Debug, Clone)]
pub struct LabelSource {
    /// The config file, read.
    pub config: std::sync::Arc<Config>,
    /// Its path (messages).
    pub path: PathBuf,
    /// The remote flags and env, over the destinations' settings.
    pub remote: RemoteOptions,
    /// `[labels] instance`: only containers labelled `dockyard.instance=` this.
    pub instance: Option<String>,
    /// The engines to look on, by name (`None`: the one engine).
    pub engines: Vec<Option<String>>,
    /// Whether job names carry their engine's (more than one engine).
    pub qualify: bool,
}

/// The config file's jobs lowered for `run`, `daemon` and `config check`, and what they share.
#[derive(Debug)]
pub struct Jobs {
    /// The file they come from (messages, the command a notification suggests).
    pub config: PathBuf,
    /// Each job of the file, resolved (without labels, only those named for `run JOB...`).
    pub plans: Vec<JobPlan>,
    /// The Prometheus textfile to rewrite after each job: the flag, else the file's.
    pub metrics: Option<PathBuf>,
    /// Where to say how each job went, or why the `[notify]` settings are wrong.
    pub notifier: Result<Option<Notifier>, Failure>,
    /// Jobs run at once, at most (`parallel_jobs`).
    pub parallel: usize,
    /// Where labelled containers' jobs come from; `None` when `[labels] enabled = false`.
    pub labels: Option<LabelSource>,
    /// The job names `run` was given (empty: every job).
    pub wanted: Vec<String>,
    /// Every job name in the file (those that could not be lowered too).
    pub file_names: Vec<String>,
    /// The `[engines]`, by name.
    pub engines: BTreeMap<String, EngineAddr>,
}

/// Loads the config file at `path` and lowers its jobs (only `wanted`, when some are named),
/// with the remote flags and env over its destinations' settings and the `--notify-*` flags
/// over its `[notify]`. Returns them with the file's `lock_dir` and `state_dir`.
pub fn jobs(
    path: &Path,
    wanted: &[String],
    remote: &RemoteOptions,
    metrics: Option<PathBuf>,
    notify: &config::NotifyConfig,
) -> Result<(Jobs, Dirs), Failure> {
    let config = config::load(path)?;
    let enabled = config.labels.as_ref().and_then(|l| l.enabled) != Some(false);
    // With labels, a name given may be a labelled container's job: the file's jobs are all
    // kept (for clashes), and picked (and a name no job has refused) once the labels' are found.
    let plans = match enabled {
        true => lowered(&config, wanted, remote)?,
        false => plans(&config, wanted, remote)?,
    };
    let names = file_names(&config);
    let dirs = Dirs::decide(config.lock_dir.clone(), config.state_dir.clone());
    let engine_names: Vec<Option<String>> = if config.engines.is_empty() {
        vec![None]
    } else {
        config.engines.keys().cloned().map(Some).collect()
    };
    let jobs = Jobs {
        config: path.to_path_buf(),
        plans,
        metrics: metrics.or(config.metrics_file.clone()),
        notifier: crate::settings::notify::lower(config.notify.as_ref(), notify),
        parallel: config.parallel_jobs.map_or(2, |n| n.get()),
        wanted: wanted.to_vec(),
        file_names: names,
        labels: None,
        engines: engines(&config)?,
    };
    let jobs = Jobs {
        labels: enabled.then(|| LabelSource {
            instance: config.labels.as_ref().and_then(|l| l.instance.clone()),
            qualify: engine_names.len() > 1,
            engines: engine_names,
            path: path.to_path_buf(),
            remote: remote.clone(),
            config: std::sync::Arc::new(config),
        }),
        ..jobs
    };
    Ok((jobs, dirs))
}

/// Destination `name`, with `overrides` winning over its own remote settings.
fn dest(
    config: &Config,
    job: &str,
    name: &str,
    overrides: &RemoteOptions,
) -> Result<DestSpec, Failure> {
    let d: &DestinationConfig = config.destinations.get(name).ok_or_else(|| {
        Failure::usage(format!(
            "job {job:?} uses destination {name:?}, which is not defined under [destinations]"
        ))
    })?;
    let remote = RemoteOptions {
        ssh_config: overrides.ssh_config.clone().or(d.ssh_config.clone()),
        s3_endpoint: overrides.s3_endpoint.clone().or(d.s3_endpoint.clone()),
        s3_path_style: overrides
            .s3_path_style
            .or(d.s3_addressing.map(|a| a == Addressing::Path)),
        s3_part_size: match overrides.s3_part_size {
            0 => d.s3_part_size_mib.unwrap_or(0) << 20,
            flag => flag,
        },
    };
    DestSpec::parse(&d.url, &remote)
        .map_err(|e| Failure::usage(format!("destination {name:?}: {e}")))
}

/// A job's `incremental`, `full_every` and `full_after`.
fn incremental(name: &str, job: &JobConfig) -> Result<Option<super::Incremental>, Failure> {
    if !job.incremental {
        if job.full_every.is_some() || job.full_after.is_some() {
            return Err(Failure::usage(format!(
                "job {name:?}: full_every and full_after apply to incremental backups; add incremental = true"
            )));
        }
        return Ok(None);
    }
    if job.full_every == Some(0) {
        return Err(Failure::usage(format!(
            "job {name:?}: full_every must be 1 or more"
        )));
    }
    Ok(Some(super::Incremental {
        full_every: job.full_every.unwrap_or(super::Incremental::FULL_EVERY),
        full_after: job.full_after.map(crate::values::Age::secs),
    }))
}

/// How job `job` encrypts what it writes to destination `name`: the destination's own
/// `encrypt_to`/`passphrase_file` if it has either, else the job's (so an off-site copy can be
/// encrypted and a local one stay plain).
fn encryption(
    config: &Config,
    job: &str,
    name: &str,
    encrypt_to: &[String],
    passphrase_file: Option<&Path>,
) -> Result<Option<Seal>, Failure> {
    let d = config.destinations.get(name);
    let own = d.filter(|d| !d.encrypt_to.is_empty() || d.passphrase_file.is_some());
    let (to, file, whose) = match own {
        Some(d) => (
            &d.encrypt_to[..],
            d.passphrase_file.as_deref(),
            format!("destination {name:?}"),
        ),
        None => (encrypt_to, passphrase_file, format!("job {job:?}")),
    };
    Seal::lower(to, file).map_err(|e| Failure::usage(format!("{whose}: {}", e.message)))
}

/// Lowers backup job `name` (from the file or from a container's labels).
pub fn backup_plan(
    config: &Config,
    name: &str,
    job: &JobConfig,
    overrides: &RemoteOptions,
) -> Result<JobPlan, Failure> {
    if job.destinations.is_empty() {
        return Err(Failure::usage(format!("job {name:?} has no destinations")));
    }
    if job.retention.as_ref().is_some_and(Policy::is_empty) {
        return Err(Failure::usage(format!(
            "job {name:?}: [retention] keeps nothing explicitly; give a keep_* key or drop the section"
        )));
    }
    let mut dumps = Vec::new();
    for d in &job.dumps {
        dumps.push(
            d.parse::<crate::dumps::DumpSpec>()
                .map_err(|e| Failure::usage(format!("job {name:?}: dumps: {e}")))?,
        );
    }
    crate::dumps::spec::check_unique(&dumps)
        .map_err(|e| Failure::usage(format!("job {name:?}: {e}")))?;
    let (engine, on_engine) = engine_of(config, job.engine.as_ref());
    let mut backups = Vec::new();
    for d in &job.destinations {
        backups.push((
            d.clone(),
            BackupSettings {
                on_engine: on_engine.clone(),
                container: job.container.clone(),
                paths: unique_paths(&job.paths),
                dest: dest(config, name, d, overrides)?,
                tags: tag_strings(&job.tags),
                compression: Compression {
                    level: job.level.unwrap_or_default().0,
                    workers: zstd_workers(),
                },
                helper_image: job.helper_image.clone(),
                agent: job.agent.unwrap_or_default(),
                exclude: Globs::new(&job.exclude)
                    .map_err(|e| Failure::usage(format!("job {name:?}: {e}")))?,
                snapshot: false,
                include_env: false,
                stop: stop_list(&job.container, job.stop_during_backup, &job.stop_also),
                stop_timeout: job.stop_timeout.unwrap_or(defaults::STOP_TIMEOUT),
                pre_hook: job.pre_hook.clone(),
                post_hook: job.post_hook.clone(),
                dry_run: false,
                encryption: encryption(
                    config,
                    name,
                    d,
                    &job.encrypt_to,
                    job.passphrase_file.as_deref(),
                )?,
                incremental: incremental(name, job)?,
                identities: job.identity_files.clone(),
                dumps: dumps.clone(),
                exec_before: super::exec_hooks("exec_before", &job.exec_before)
                    .map_err(|e| Failure::usage(format!("job {name:?}: {e}")))?,
                exec_after: super::exec_hooks("exec_after", &job.exec_after)
                    .map_err(|e| Failure::usage(format!("job {name:?}: {e}")))?,
            },
        ));
    }
    Ok(JobPlan::Backup {
        name: name.to_string(),
        schedule: scheduled(config, job.schedule.as_ref(), job.timezone, job.catch_up),
        engine,
        backups,
        retention: job.retention.clone(),
    })
}

/// Lowers log job `name` (from the file or from a container's labels).
pub fn log_plan(
    config: &Config,
    name: &str,
    job: &LogJobConfig,
    overrides: &RemoteOptions,
) -> Result<JobPlan, Failure> {
    let default_dir: ContainerPath = defaults::LOG_DIR.parse().expect("a valid default");
    let patterns = match &job.patterns {
        Some(p) => p.iter().map(|p| p.as_str().to_string()).collect(),
        None => vec![defaults::LOG_PATTERN.to_string()],
    };
    let reopen = Reopen::parse(job.reopen.as_deref().unwrap_or(defaults::REOPEN))
        .map_err(|e| Failure::usage(format!("log job {name:?}: reopen: {e}")))?;
    let settle = match job.settle {
        Some(s) => s.0,
        None => {
            defaults::SETTLE
                .parse::<crate::values::Settle>()
                .expect("a valid default")
                .0
        }
    };
    let (engine, on_engine) = engine_of(config, job.engine.as_ref());
    let settings = LogsSettings {
        on_engine,
        container: job.container.clone(),
        dir: job
            .path
            .as_ref()
            .unwrap_or(&default_dir)
            .as_str()
            .to_string(),
        patterns,
        reopen,
        min_size: job.min_size.map(|s| s.0),
        max_age: job.max_age.map(Age::secs),
        rotate: true,
        ship: Some(ShipSettings {
            dest: dest(config, name, &job.destination, overrides)?,
            level: Level::default().0,
            prune_after: job.prune_after.map(Age::secs),
            encryption: encryption(
                config,
                name,
                &job.destination,
                &job.encrypt_to,
                job.passphrase_file.as_deref(),
            )?,
        }),
        keep_local: None,
        settle,
        dry_run: false,
        helper_image: job.helper_image.clone(),
    };
    Ok(JobPlan::Logs {
        name: name.to_string(),
        schedule: scheduled(config, job.schedule.as_ref(), job.timezone, job.catch_up),
        engine,
        settings: Box::new(settings),
        destination: job.destination.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use crate::config::parse;
    use crate::settings::{Action, Settings};
    use clap::Parser;

    fn flags(args: &[&str]) -> Settings {
        let cli = Cli::try_parse_from(std::iter::once("dockyard").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        Settings::from_cli(cli).unwrap()
    }

    #[test]
    fn the_example_configs_parse_and_resolve() {
        for file in [
            "config/dockyard.toml",
            "config/minimal.toml",
            "config/compose.toml",
        ] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
            let config = config::load(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
            let plans = plans(&config, &[], &RemoteOptions::default())
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            // The Compose example's jobs are all labels on its services.
            let labelled = config.labels.as_ref().is_some_and(|l| l.instance.is_some());
            assert!(!plans.is_empty() || labelled, "{file} has no jobs");
        }
    }

    #[test]
    fn equal_flags_and_config_give_equal_backup_settings() {
        let c = parse(
            "[destinations.nas]\nurl = \"/srv/backups\"\n\
             [jobs.media]\ncontainer = \"web\"\ndestinations = [\"nas\"]\npaths = [\"/srv/media/\", \"/srv/logs\"]\n\
             tags = [\"nightly\"]\nlevel = 7\nstop_during_backup = true\nstop_also = [\"worker\"]\nstop_timeout = 12\n\
             pre_hook = \"sync\"\nhelper_image = \"busybox\"\n",
        )
        .unwrap();
        let from_file = match plans(&c, &[], &RemoteOptions::default()).unwrap().remove(0) {
            JobPlan::Backup { mut backups, .. } => backups.remove(0).1,
            other => panic!("{other:?}"),
        };
        let from_flags = match flags(&[
            "backup",
            "web",
            "--to",
            "/srv/backups",
            "--path",
            "/srv/media/",
            "--path",
            "/srv/logs",
            "--tag",
            "nightly",
            "--level",
            "7",
            "--stop",
            "--stop-also",
            "worker",
            "--stop-timeout",
            "12",
            "--pre-hook",
            "sync",
            "--helper-image",
            "busybox",
        ])
        .action
        {
            Action::Backup(b) => b,
            other => panic!("{other:?}"),
        };
        assert_eq!(from_file, from_flags);
        // And with nothing said, the defaults are the same too.
        let c = parse("[destinations.nas]\nurl = \"/b\"\n[jobs.m]\ncontainer = \"web\"\ndestinations = [\"nas\"]\n").unwrap();
        let from_file = match plans(&c, &[], &RemoteOptions::default()).unwrap().remove(0) {
            JobPlan::Backup { mut backups, .. } => backups.remove(0).1,
            other => panic!("{other:?}"),
        };
        let Action::Backup(from_flags) = flags(&["backup", "web", "--to", "/b"]).action else {
            panic!()
        };
        assert_eq!(from_file, from_flags);
    }

    #[test]
    fn equal_flags_and_config_give_equal_log_settings() {
        let c = parse(
            "[destinations.nas]\nurl = \"/srv/shipped\"\n\
             [logs.web]\ncontainer = \"web\"\ndestination = \"nas\"\npath = \"/var/log/app/\"\n\
             patterns = [\"*.log\", \"access-*.txt\"]\nreopen = \"copytruncate\"\nmin_size = \"10M\"\n\
             max_age = \"1d\"\nprune_after = \"30d\"\nsettle = 0.5\n",
        )
        .unwrap();
        let from_file = match plans(&c, &[], &RemoteOptions::default()).unwrap().remove(0) {
            JobPlan::Logs { settings, .. } => *settings,
            other => panic!("{other:?}"),
        };
        let Action::Logs(from_flags) = flags(&[
            "logs",
            "web",
            "--to",
            "/srv/shipped",
            "--path",
            "/var/log/app/",
            "--pattern",
            "*.log",
            "--pattern",
            "access-*.txt",
            "--reopen",
            "copytruncate",
            "--min-size",
            "10M",
            "--max-age",
            "1d",
            "--prune-after",
            "30d",
            "--settle",
            "0.5",
        ])
        .action
        else {
            panic!()
        };
        assert_eq!(from_file, from_flags);
        let c = parse("[destinations.nas]\nurl = \"/s\"\n[logs.web]\ncontainer = \"web\"\ndestination = \"nas\"\n").unwrap();
        let from_file = match plans(&c, &[], &RemoteOptions::default()).unwrap().remove(0) {
            JobPlan::Logs { settings, .. } => *settings,
            other => panic!("{other:?}"),
        };
        let Action::Logs(from_flags) = flags(&["logs", "web", "--to", "/s"]).action else {
            panic!()
        };
        assert_eq!(from_file, from_flags);
    }

    #[test]
    fn flags_and_env_win_over_the_config() {
        let c = parse(
            "[destinations.s3]\nurl = \"s3://b/p\"\ns3_endpoint = \"http://config:3900\"\ns3_part_size_mib = 8\n\
             [jobs.m]\ncontainer = \"web\"\ndestinations = [\"s3\"]\n",
        )
        .unwrap();
        let endpoint = |o: &RemoteOptions| match &plans(&c, &[], o).unwrap()[0] {
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
        let err = plans(&c, &[], &RemoteOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"nas\"") && err.contains("[destinations]"),
            "{err}"
        );
        let err = plans(&c, &["nope".into()], &RemoteOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no job named \"nope\"") && err.contains("media"),
            "{err}"
        );
    }

    #[test]
    fn jobs_clash_when_they_share_a_container_or_one_stops_what_the_other_uses() {
        let c = parse(
            "[destinations.local]\nurl = \"/b\"\n\
             [jobs.web]\ncontainer = \"web\"\ndestinations = [\"local\"]\nstop_during_backup = true\nstop_also = [\"db\"]\n\
             [jobs.db]\ncontainer = \"db\"\ndestinations = [\"local\"]\n\
             [jobs.files]\ncontainer = \"files\"\ndestinations = [\"local\"]\nstop_during_backup = true\n\
             [jobs.web2]\ncontainer = \"web\"\ndestinations = [\"local\"]\n",
        )
        .unwrap();
        let all = plans(&c, &[], &RemoteOptions::default()).unwrap();
        let plan = |n: &str| all.iter().find(|p| p.name() == n).unwrap();
        let clash = |a: &str, b: &str| plan(a).clashes(plan(b));
        assert!(clash("web", "db") && clash("db", "web"), "web stops db");
        assert!(clash("web", "web2"), "one container");
        assert!(!clash("web", "files") && !clash("db", "files"));
    }
}
