//! The settings every command uses, one typed and validated value per run. Built in one of two
//! places, both from the checked value types of `values` (so a value means and is checked the
//! same wherever it comes from): `flags` lowers the command line and environment (flags win over
//! env, env over defaults), `file` lowers the config file's jobs. Commands never see clap or TOML.

pub mod dirs;
pub mod file;
pub mod flags;
pub mod notify;

use crate::archive::exclude::Globs;
use crate::archive::pack::Compression;
use crate::destination::DestSpec;
use crate::encryption::{Seal, Unlock};
use crate::logs::reopen::Reopen;
use crate::retention::Policy;
use crate::values::AgentMode;

pub use dirs::Dirs;
pub use file::{JobPlan, Jobs, Scheduled};

pub use crate::render::Output;

/// Everything a run needs.
#[derive(Debug)]
pub struct Settings {
    /// Output style.
    pub output: Output,
    /// What to do.
    pub action: Action,
    /// Where locks and state live.
    pub dirs: Dirs,
    /// The engine's address: `DOCKER_HOST`, else the local socket.
    pub engine: String,
    /// ssh config file for a remote engine (`DOCKER_HOST=ssh://...`): `--ssh-config`.
    pub engine_ssh_config: Option<std::path::PathBuf>,
    /// The config file's `[engines]`, by name (`run`, `daemon`, `config check`).
    pub engines: std::collections::BTreeMap<String, EngineAddr>,
    /// How long a script helper may run (`--helper-timeout`).
    pub helper_timeout: std::time::Duration,
    /// Where a command run on its own (`backup`, `snapshot`, `logs`, `prune`) says how it went:
    /// its `--notify-*` flags over the config file's `[notify]`; none for a dry run, nor when no
    /// target is set (`run` and `daemon` notify per job themselves).
    pub notify: Option<crate::notify::OneOff>,
}

/// Where one engine of `[engines]` is, and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineAddr {
    /// `unix:///path`, `tcp://host:port` or `ssh://[user@]host[:port]`.
    pub host: String,
    /// For `tcp://`: the directory holding `ca.pem`, `cert.pem` and `key.pem`.
    pub tls_cert_path: Option<std::path::PathBuf>,
    /// For `ssh://`: the ssh config file.
    pub ssh_config: Option<std::path::PathBuf>,
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
        /// What opens an encrypted backup (without it, only the stored bytes are checked).
        unlock: Unlock,
    },
    /// `dump`.
    Dump {
        /// Where to look.
        dest: DestSpec,
        /// Id or `latest`.
        archive: String,
        /// With `latest`: this container's newest.
        container: Option<String>,
        /// The file, as a container path.
        path: String,
        /// What opens an encrypted backup.
        unlock: Unlock,
    },
    /// `restore`.
    Restore(RestoreSettings),
    /// `restore-db`.
    RestoreDb(crate::ops::restore_db::RestoreDbSettings),
    /// `logs`, `logs rotate`, `logs ship`.
    Logs(LogsSettings),
    /// `run`: the config file's jobs, once each.
    Run(Jobs),
    /// `daemon`: the config file's jobs on their schedules.
    Daemon(Jobs),
    /// `completions`: a completion script for this shell.
    Completions(clap_complete::Shell),
    /// `man`: the manual, as one page on stdout or one page per command in `dir`.
    Man {
        /// Where to write one page per command; `None`: one page on stdout.
        dir: Option<std::path::PathBuf>,
    },
    /// `config check`: the config file's jobs, checked against the engine and destinations.
    ConfigCheck(Jobs),
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
#[derive(Debug, Clone, PartialEq)]
pub struct LogsSettings {
    /// With several `[engines]`: the name of the container's, in the shipped logs' names
    /// (`logs/<engine>.<container>/...`).
    pub on_engine: Option<String>,
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
    /// Report what would rotate and ship; change nothing.
    pub dry_run: bool,
}

/// Where rotated logs go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShipSettings {
    /// Destination.
    pub dest: DestSpec,
    /// zstd level.
    pub level: i32,
    /// Delete shipped logs rotated longer ago than this many seconds.
    pub prune_after: Option<u64>,
    /// Encrypt shipped logs (`<name>.zst.age`).
    pub encryption: Option<Seal>,
}

/// Settings for one backup.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Whether dockyard's agent packs inside the helper.
    pub agent: AgentMode,
    /// Names left out of the backup.
    pub exclude: Globs,
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
    /// Report what would be backed up and written where; change nothing.
    pub dry_run: bool,
    /// Encrypt the archive with age (`<id>.tar.zst.age`).
    pub encryption: Option<Seal>,
    /// Archive only what changed since the parent backup, when there is a usable one.
    pub incremental: Option<Incremental>,
    /// Age identity files that read an encrypted parent's index (a passphrase seal reads its
    /// own).
    pub identities: Vec<std::path::PathBuf>,
    /// Database dumps streamed into the archive before the volumes.
    pub dumps: Vec<crate::dumps::DumpSpec>,
    /// Commands run in other containers before the backup (after the pre-hook).
    pub exec_before: Vec<crate::ops::quiesce::ExecHook>,
    /// Commands run in other containers after it, on every way out.
    pub exec_after: Vec<crate::ops::quiesce::ExecHook>,
    /// With several `[engines]`: the name of the container's, recorded with it (manifest,
    /// id, retention group), so two engines' containers of one name never mix.
    pub on_engine: Option<String>,
}

/// When an incremental backup is made full all the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incremental {
    /// A chain holds at most this many backups (the full and its increments).
    pub full_every: u32,
    /// A chain whose full backup is older than this many seconds gets a new full.
    pub full_after: Option<u64>,
}

impl Incremental {
    /// The default chain length: a weekly full of daily backups.
    pub const FULL_EVERY: u32 = 7;
}

/// Settings for one restore.
#[derive(Debug, Clone)]
pub struct RestoreSettings {
    /// Target container.
    pub container: String,
    /// Where the backup is.
    pub dest: DestSpec,
    /// What opens an encrypted backup (and what its safety backup is encrypted to).
    pub unlock: Unlock,
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
    /// Device nodes, set-id bits and file capabilities.
    pub privileges: crate::archive::entry::Privileges,
    /// Containers to stop around the restore, in stop order (empty: stop nothing).
    pub stop: Vec<String>,
    /// Seconds the engine waits for each to stop gracefully.
    pub stop_timeout: u32,
    /// Helper image override.
    pub helper_image: Option<String>,
    /// Whether dockyard's agent works inside the helpers (the safety backup).
    pub agent: AgentMode,
    /// Wait for the old contents to be deleted before reporting.
    pub wait_cleanup: bool,
    /// Restore a backup of another container without `--container`.
    pub force: bool,
    /// `--include` patterns (checked): restore only what matches, deleting nothing else.
    pub include: Vec<String>,
    /// Restore even when processes hold files open in the restored paths.
    pub allow_open_files: bool,
}

/// Parses `--exec-before`/`--exec-after` values (`flag` names them in errors).
pub fn exec_hooks(
    flag: &str,
    given: &[String],
) -> Result<Vec<crate::ops::quiesce::ExecHook>, crate::error::Failure> {
    given
        .iter()
        .map(|h| {
            h.parse()
                .map_err(|e| crate::error::Failure::usage(format!("{flag}: {e}")))
        })
        .collect()
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
