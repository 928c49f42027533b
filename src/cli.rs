//! The command line, as clap types only. `settings` lowers these into validated values; nothing
//! else in the program sees clap.

use clap::{Args, Parser, Subcommand};

use crate::values::{
    defaults, Addressing, Age, AgentMode, ContainerPath, Level, LogPattern, Secret, Settle, Size,
    Tag,
};

const EXIT_CODES: &str = "\
Exit codes:
  0    success
  1    unexpected error
  2    usage error (bad flag, unknown URL scheme, path not mounted, unknown backup id)
  3    Docker Engine error (unreachable, unknown container, failed request)
  4    destination error (cannot write, read or list the destination)
  5    verification failed (checksum, corrupt or unsafe archive)
  6    busy: another dockyard run holds the lock (the message names it)
  130  interrupted (SIGINT/SIGTERM); helpers and partial files were cleaned up";

/// Back up and restore the volumes of Docker containers, streaming tar through zstd.
///
/// Examples:
///   dockyard backup hello_django --to /var/backups/dockyard
///   dockyard backup hello_django --to ssh://backup@nas/srv/backups
///   dockyard backup hello_django --to s3://backups/web --s3-endpoint http://127.0.0.1:3900
///   dockyard list --to /var/backups/dockyard --container hello_django
///   dockyard verify latest --container hello_django
///   dockyard restore hello_django --backup latest --dry-run
#[derive(Debug, Parser)]
#[command(name = "dockyard", version, after_help = EXIT_CODES, verbatim_doc_comment)]
pub struct Cli {
    /// Print results as JSON on stdout: one document (`run` and `daemon`: JSON Lines), errors
    /// included; see docs/json.md.
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,

    /// Never draw a progress bar, even on a terminal.
    #[arg(long, global = true, help_heading = "Global options")]
    pub no_progress: bool,

    /// Print nothing on stdout when all goes well (for cron, which mails any output). Errors and
    /// warnings still go to stderr; --json output is unaffected.
    #[arg(short, long, global = true, help_heading = "Global options")]
    pub quiet: bool,

    /// Log lines on stderr as JSON objects (for log collectors) instead of text.
    #[arg(long, global = true, help_heading = "Global options")]
    pub log_json: bool,

    /// More log output on stderr (-v: debug, -vv: trace). `RUST_LOG` works too. The Docker
    /// client's own lines show at info at most: its debug lines hold whole HTTP bodies, the app's
    /// environment among them.
    #[arg(short, long, global = true, help_heading = "Global options", action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// How long a helper container running a script (log rotation, the open-file check, a
    /// clean-up) may take before it is killed and its job fails, saying so: a FIFO or a hung
    /// process in a volume must not block every job after it. A restore's swap is never cut
    /// short, and archive transfers are not limited by this.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "DOCKYARD_HELPER_TIMEOUT",
        value_name = "DURATION",
        default_value = "10m"
    )]
    pub helper_timeout: Age,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options for remote destinations, accepted by every command that reads or writes one.
#[derive(Debug, Args)]
pub struct RemoteArgs {
    /// ssh config file to use instead of ~/.ssh/config (Host aliases, IdentityFile, ProxyJump).
    /// Host keys are always checked strictly against known_hosts.
    #[arg(
        long,
        help_heading = "Remote destinations",
        env = "DOCKYARD_SSH_CONFIG",
        value_name = "FILE"
    )]
    pub ssh_config: Option<std::path::PathBuf>,

    /// Endpoint of an S3-compatible store, e.g. http://127.0.0.1:3900. `AWS_ENDPOINT_URL` works too.
    /// Credentials and region come from the AWS chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,
    /// AWS_PROFILE, AWS_REGION, instance metadata).
    #[arg(
        long,
        help_heading = "Remote destinations",
        env = "DOCKYARD_S3_ENDPOINT",
        value_name = "URL"
    )]
    pub s3_endpoint: Option<String>,

    /// S3 addressing: `path` (bucket in the path; the default with a custom endpoint) or `virtual`
    /// (bucket in the host name; the default on AWS).
    #[arg(
        long,
        help_heading = "Remote destinations",
        env = "DOCKYARD_S3_ADDRESSING",
        value_name = "STYLE",
        value_enum
    )]
    pub s3_addressing: Option<Addressing>,

    /// S3 multipart part size in MiB (5 or more; default 16). Memory use is about three parts.
    #[arg(
        long,
        help_heading = "Remote destinations",
        env = "DOCKYARD_S3_PART_SIZE",
        value_name = "MIB"
    )]
    pub s3_part_size: Option<usize>,
}

/// The subcommands; each lives in its own file under `src/commands/`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Back up a container's volumes (all of them, or the --path ones) into one .tar.zst archive.
    ///
    /// The container may be running or stopped; it is not touched. A helper container borrows its
    /// volumes read-only and the engine streams them out; nothing is staged on local disk.
    Backup(BackupArgs),
    /// List backups at a destination, newest first.
    List(ListArgs),
    /// Re-read a backup end to end: checksum, full decode, every entry. Prints `ok` or what is wrong.
    Verify(VerifyArgs),
    /// Write one file of a backup to stdout, checking the whole archive as it streams.
    ///
    /// The file's bytes are written as they are read; the archive's checksum is known only at
    /// its end, so a damaged or forged backup ends with exit 5 after the output: check the exit
    /// code before trusting it (`dockyard dump ... > f && mv f app.conf`).
    ///
    /// Example: dockyard dump latest /srv/media/docs/contract.pdf --container web > contract.pdf
    #[command(verbatim_doc_comment)]
    Dump(DumpArgs),
    /// Restore a backup into a container's volumes (the same container or another one).
    ///
    /// The whole archive is verified while it is staged beside the live data, before anything
    /// live is touched; a non-empty target is then saved as a `pre-restore` backup; afterwards
    /// each restored path holds exactly what the archive holds.
    Restore(RestoreArgs),
    /// Load a database dump from a backup (`backup --dump`) back into its database, or another.
    ///
    /// The dump is read and checked against the manifest whole before the database sees a byte,
    /// then read again straight into the database's own tool in its running container (psql,
    /// mariadb/mysql, sqlite3). PostgreSQL and SQLite load into a new database or file that takes
    /// the target's place only once it loaded whole. A target that holds tables is refused
    /// unless --force. A plain `restore` never touches databases.
    ///
    /// Example: dockyard restore-db latest --container web --from /backups --dump db/app.sql
    #[command(verbatim_doc_comment)]
    RestoreDb(RestoreDbArgs),
    /// Rotate the log files in a container's log volume and ship them (what cron runs).
    ///
    /// `dockyard logs web --to s3://logs/web` rotates, tells the app to reopen, ships every rotated
    /// file (zstd) under a deterministic key, checks it, then deletes it from the volume.
    /// `logs rotate` and `logs ship` do one half each. Nothing is lost or shipped twice: a file
    /// that fails to ship stays for the next run, and shipping it again overwrites the same key.
    Logs(Box<LogsArgs>),
    /// Remove old backups by a retention policy (restic's `forget` rules), each container apart.
    ///
    /// Decides from the manifests' timestamps, never file times. Pinned, whatever the rules: the
    /// newest backup of each container, snapshots (unless --prune-snapshots), --keep-tag tags, and
    /// safety backups younger than --keep-safety (7d). Other tags change nothing.
    /// Example: dockyard prune --keep-daily 14 --keep-weekly 8 --keep-monthly 12 --dry-run
    Prune(PruneArgs),
    /// A tagged backup before an upgrade: also records the image digests and the container's
    /// inspect data (environment values redacted), and is kept by prune unless --prune-snapshots.
    Snapshot(SnapshotArgs),
    /// Run the config file's jobs once (what cron calls): backups to each destination with their
    /// retention, and log jobs. Each job holds a lock; a second run of it exits 6 naming the holder.
    Run(RunArgs),
    /// Run the config file's jobs on their schedules, in the foreground (for systemd, Docker, or a
    /// terminal). Schedules are crontab's five fields, @daily and the like, or six with seconds,
    /// read in the host's time zone (TZ, /etc/localtime) or the job's `timezone`; `catch_up` runs a
    /// job missed while the daemon was down once at start. Log lines go to stderr (--log-json for
    /// JSON). SIGTERM aborts a running job cleanly; when no job runs, it ends with exit 0 (what
    /// systemd and Compose expect of a clean stop).
    Daemon(DaemonArgs),
    /// Print a shell completion script on stdout.
    ///
    /// bash: dockyard completions bash > /etc/bash_completion.d/dockyard
    /// zsh:  dockyard completions zsh > "${fpath[1]}/_dockyard"
    /// fish: dockyard completions fish > ~/.config/fish/completions/dockyard.fish
    #[command(verbatim_doc_comment)]
    Completions(CompletionsArgs),
    /// Print the manual page (roff) on stdout, or one page per command with --dir.
    ///
    /// The single page has every command's options in it; --dir writes dockyard.1,
    /// dockyard-backup.1, dockyard-config-check.1, ...
    ///
    /// One page:  dockyard man > /usr/local/share/man/man1/dockyard.1
    /// Per command: dockyard man --dir /usr/local/share/man/man1
    #[command(verbatim_doc_comment)]
    Man(ManArgs),
    /// Work with the config file.
    #[command(subcommand)]
    Config(ConfigCommand),
}

/// `dockyard config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check the config file before cron or the daemon meet it: parse and validate it, find every
    /// job's container (and its paths) on the engine, reach every destination and write and delete
    /// a small probe object there (a local directory is created, as a backup would), and print the
    /// effective jobs with their next run times. Exits non-zero naming each problem.
    Check(ConfigCheckArgs),
}

/// `dockyard config check`.
#[derive(Debug, Args)]
pub struct ConfigCheckArgs {
    /// The config file (TOML; see config/dockyard.toml).
    #[arg(long, env = "DOCKYARD_CONFIG", default_value = defaults::CONFIG, value_name = "FILE")]
    pub config: std::path::PathBuf,

    #[command(flatten)]
    pub remote: RemoteArgs,

    #[command(flatten)]
    pub notify: NotifyArgs,
}

/// `dockyard completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `dockyard man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write one page per command into this directory (created if missing) instead of one page
    /// on stdout; prints the files written. Each page's cross-references name pages written here.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<std::path::PathBuf>,
}

/// `dockyard daemon`.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// The config file (TOML; see config/dockyard.toml).
    #[arg(long, env = "DOCKYARD_CONFIG", default_value = defaults::CONFIG, value_name = "FILE")]
    pub config: std::path::PathBuf,

    /// Write Prometheus text here after each job (overrides `metrics_file` in the config).
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub remote: RemoteArgs,

    #[command(flatten)]
    pub notify: NotifyArgs,
}

/// `dockyard run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Jobs to run, by name (backup jobs and log jobs). Default: all of them.
    #[arg(value_name = "JOB")]
    pub jobs: Vec<String>,

    /// The config file (TOML; see config/dockyard.toml).
    #[arg(long, env = "DOCKYARD_CONFIG", default_value = defaults::CONFIG, value_name = "FILE")]
    pub config: std::path::PathBuf,

    /// Write Prometheus text here after the run (overrides `metrics_file` in the config).
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub remote: RemoteArgs,

    #[command(flatten)]
    pub notify: NotifyArgs,
}

/// Where `run` and `daemon` say how each job went, and the commands cron runs on their own
/// (`backup`, `snapshot`, `logs`, `prune`) how they went; each wins over the config's `[notify]`
/// key of the same kind. URLs and the SMTP password are secrets: never logged, and `--help` hides
/// the values of their environment variables.
#[derive(Debug, Args, Default)]
pub struct NotifyArgs {
    /// POST a JSON summary of each failed job (or command) here (docs/json.md, "Notifications").
    #[arg(
        long,
        help_heading = "Notifications",
        env = "DOCKYARD_NOTIFY_WEBHOOK",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub notify_webhook: Option<Secret>,

    /// An ntfy topic URL, e.g. https://ntfy.sh/my-backups.
    #[arg(
        long,
        help_heading = "Notifications",
        env = "DOCKYARD_NOTIFY_NTFY",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub notify_ntfy: Option<Secret>,

    /// A Slack incoming-webhook URL.
    #[arg(
        long,
        help_heading = "Notifications",
        env = "DOCKYARD_NOTIFY_SLACK",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub notify_slack: Option<Secret>,

    /// A Discord webhook URL.
    #[arg(
        long,
        help_heading = "Notifications",
        env = "DOCKYARD_NOTIFY_DISCORD",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub notify_discord: Option<Secret>,

    /// Mail through this SMTP server: smtp://user@host:587?tls=required (STARTTLS),
    /// smtps://user@host:465, or smtp://host:25 (a local relay). The password comes from
    /// DOCKYARD_SMTP_PASSWORD (or the URL).
    #[arg(
        long,
        help_heading = "Notifications",
        env = "DOCKYARD_NOTIFY_SMTP",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub notify_smtp: Option<Secret>,

    /// The mail's sender, e.g. "dockyard <backup@example.com>".
    #[arg(long, help_heading = "Notifications", value_name = "ADDRESS")]
    pub notify_email_from: Option<String>,

    /// A mail recipient; repeat for several.
    #[arg(long, help_heading = "Notifications", value_name = "ADDRESS")]
    pub notify_email_to: Vec<String>,

    /// Also notify when a job (or command) succeeds (default: failures only).
    #[arg(long, help_heading = "Notifications")]
    pub notify_on_success: bool,

    /// The most notifying may add to a job (or command), retries included (default 10s).
    #[arg(long, help_heading = "Notifications", value_name = "DURATION")]
    pub notify_timeout: Option<Age>,
}

/// Notifications for a command cron runs on its own (`backup`, `snapshot`, `logs`, `prune`): the
/// `--notify-*` flags of `run`, over the config file's `[notify]`. A dry run notifies nothing.
#[derive(Debug, Args, Default)]
pub struct OneOffNotifyArgs {
    /// The config file whose `[notify]` says where this command reports how it went (only its
    /// `[notify]` is read; when not given, the default file is read only if it exists).
    #[arg(
        long,
        help_heading = "Notifications",
        env = "DOCKYARD_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub notify: NotifyArgs,
}

/// `dockyard prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub dest: DestArg,

    /// Only this container's backups.
    #[arg(long, value_name = "NAME")]
    pub container: Option<String>,

    #[command(flatten)]
    pub policy: PolicyArgs,

    /// Print every backup with keep or remove and the reason; delete nothing.
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub notify: OneOffNotifyArgs,
}

/// A retention policy, as `restic forget` takes it.
#[derive(Debug, Args, Default)]
pub struct PolicyArgs {
    /// Keep the N newest backups.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest backup of each of the last N hours that have one.
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest backup of each of the last N days that have one.
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest backup of each of the last N ISO weeks that have one.
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest backup of each of the last N months that have one.
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest backup of each of the last N years that have one.
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Keep every backup younger than AGE relative to the newest backup (e.g. 2d, 12h).
    #[arg(long, value_name = "AGE")]
    pub keep_within: Option<Age>,
    /// Keep every backup with this tag (a pin); repeat for several. Other tags change nothing.
    #[arg(long = "keep-tag", value_name = "TAG")]
    pub keep_tags: Vec<Tag>,
    /// Let the rules remove snapshots too; they are pinned otherwise.
    #[arg(long, alias = "prune-tagged")]
    pub prune_snapshots: bool,
    /// Keep safety backups (`pre-restore`) this long, then remove them (default 7d).
    #[arg(long, value_name = "AGE")]
    pub keep_safety: Option<Age>,
}

/// `dockyard snapshot`.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[command(flatten)]
    pub backup: BackupArgs,

    /// Record the container's environment values in clear. By default each value of
    /// `Config.Env` (passwords, SECRET_KEY) is replaced by a salted hash; the names are kept.
    #[arg(long)]
    pub include_env: bool,
}

/// `dockyard logs`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct LogsArgs {
    /// Only one half.
    #[command(subcommand)]
    pub action: Option<LogsAction>,

    /// Container whose logs to rotate and ship.
    #[arg(required = true)]
    pub container: Option<String>,

    #[command(flatten)]
    pub dir: LogDirArgs,

    #[command(flatten)]
    pub rotate: RotateArgs,

    #[command(flatten)]
    pub ship: ShipArgs,

    #[command(flatten)]
    pub notify: OneOffNotifyArgs,
}

/// `dockyard logs rotate|ship`.
#[derive(Debug, Subcommand)]
pub enum LogsAction {
    /// Rotate only: rename due log files to `<name>.<UTC timestamp>` and tell the app to reopen.
    Rotate(LogsRotateArgs),
    /// Ship only: compress and upload rotated files, check them, then delete them from the volume.
    Ship(LogsShipArgs),
}

/// `dockyard logs rotate`.
#[derive(Debug, Args)]
pub struct LogsRotateArgs {
    /// Container whose logs to rotate.
    pub container: String,

    #[command(flatten)]
    pub dir: LogDirArgs,

    #[command(flatten)]
    pub rotate: RotateArgs,

    /// Keep only the newest N rotated files per log (when nothing ships them).
    #[arg(long, value_name = "N")]
    pub keep_local: Option<usize>,

    #[command(flatten)]
    pub notify: OneOffNotifyArgs,
}

/// `dockyard logs ship`.
#[derive(Debug, Args)]
pub struct LogsShipArgs {
    /// Container whose rotated logs to ship.
    pub container: String,

    #[command(flatten)]
    pub dir: LogDirArgs,

    #[command(flatten)]
    pub ship: ShipArgs,

    #[command(flatten)]
    pub notify: OneOffNotifyArgs,
}

/// Where the logs are.
#[derive(Debug, Args)]
pub struct LogDirArgs {
    /// The log directory inside the container (must be in a volume or bind mount).
    #[arg(long = "path", default_value = defaults::LOG_DIR, value_name = "DIR")]
    pub path: ContainerPath,

    /// Image for the helper containers (needs /bin/sh). Default: the app's own image.
    #[arg(long, value_name = "IMAGE")]
    pub helper_image: Option<String>,

    /// Say what would rotate (with the triggers) and what would ship where; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// How to rotate.
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// Which files in DIR to rotate (shell glob, no `/`); repeat for several.
    #[arg(long = "pattern", default_value = defaults::LOG_PATTERN, value_name = "GLOB")]
    pub patterns: Vec<LogPattern>,

    /// How the app learns to reopen its files: `signal:USR1` (Gunicorn, nginx), `signal:<NAME>`,
    /// `exec:<command>` (run in the app container, e.g. `exec:nginx -s reopen`), `copytruncate`
    /// (for apps that cannot reopen; a small window can lose lines), or `none` (apps that notice
    /// the rename, e.g. Python's WatchedFileHandler).
    #[arg(long, default_value = defaults::REOPEN, value_name = "METHOD")]
    pub reopen: String,

    /// Rotate only files at least this big (e.g. 10M, 1G). With --max-age, either is enough.
    #[arg(long, value_name = "SIZE")]
    pub min_size: Option<Size>,

    /// Rotate only files last rotated at least this long ago (e.g. 1h, 1d). With --min-size,
    /// either is enough.
    #[arg(long, value_name = "AGE")]
    pub max_age: Option<Age>,
}

/// Where and how to ship.
#[derive(Debug, Args)]
pub struct ShipArgs {
    #[command(flatten)]
    pub dest: DestArg,

    /// zstd level for shipped logs (1-19).
    #[arg(long = "level", default_value_t, value_name = "1-19")]
    pub level: Level,

    /// Seconds to wait after asking the app to reopen, before shipping what was rotated (lines the
    /// app writes to a renamed file until it reopens still ship: a file that grew is shipped again).
    #[arg(long, default_value = defaults::SETTLE, value_name = "SECONDS")]
    pub settle: Settle,

    /// Delete this container's shipped logs rotated longer ago than AGE (e.g. 30d) from the
    /// destination, after shipping. Default: keep them.
    #[arg(long, value_name = "AGE")]
    pub prune_after: Option<Age>,

    /// Shipped logs are encrypted the same way (`<name>.zst.age`) when asked.
    #[command(flatten)]
    pub encrypt: EncryptArgs,
}

/// Where backups live.
#[derive(Debug, Args)]
pub struct DestArg {
    /// Destination: a directory (`./backups`, `/var/backups/dockyard`), `file:///dir`,
    /// `ssh://[user@]host[:port]/dir` (or `ssh://host/~/dir`) or `s3://bucket/prefix`.
    #[arg(long = "to", env = "DOCKYARD_DEST", default_value = defaults::DEST, value_name = "DEST")]
    pub dest: String,

    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// `dockyard backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Container name or id.
    pub container: String,

    /// A mount point (or a directory inside one) to back up; repeat for several. Default: every
    /// volume and bind mount of the container.
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<ContainerPath>,

    #[command(flatten)]
    pub dest: DestArg,

    /// Tag the backup (e.g. `pre-upgrade`); repeat for several.
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<Tag>,

    /// zstd compression level, 1 (fastest) to 19 (smallest).
    #[arg(long, default_value_t, value_name = "1-19")]
    pub level: Level,

    /// Image for the helper container. Default: the container's own image (always present locally).
    #[arg(long, value_name = "IMAGE")]
    pub helper_image: Option<String>,

    /// Leave out names matching this glob; repeat for several. Without '/' it matches a name at
    /// any depth (`*.tmp`, `cache`); starting with '/' it matches a container path
    /// (`/srv/media/cache/**`). A matching directory is left out with all below it.
    #[arg(long = "exclude", value_name = "GLOB")]
    pub exclude: Vec<String>,

    #[command(flatten)]
    pub agent: AgentArg,

    #[command(flatten)]
    pub encrypt: EncryptArgs,

    #[command(flatten)]
    pub incremental: IncrementalArgs,

    /// Say what would be backed up (paths, mounts, volumes) and written where; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub stop: StopArgs,

    /// Stream a database dump into the archive, made by the database's own tool in its own
    /// running container (docker exec, credentials from that container's environment) before
    /// the volumes are read; repeat for several. KIND: `postgres[:DB]` (or `postgresql`), `mysql[:DB]` or
    /// `mariadb[:DB]` (DB: default the one the container's environment names), `sqlite:PATH`
    /// (a file in that container), or `exec:COMMAND` (anything that writes a dump on stdout).
    /// Stored as `dumps/CONTAINER/DB.sql.00000`, `.00001`, ... (parts of at most 8 MiB; `cat`
    /// joins them); `dockyard restore-db` loads one back. A dump that fails fails the backup.
    #[arg(long = "dump", value_name = "CONTAINER:KIND[:DB]")]
    pub dumps: Vec<String>,

    /// Run this shell command inside the container before the backup (before stopping it), e.g.
    /// `python3 manage.py dumpdata -o /srv/media/db.json`. If it fails, nothing is backed up.
    #[arg(long, value_name = "COMMAND")]
    pub pre_hook: Option<String>,

    /// Run a shell command in another running container before the backup (after --pre-hook,
    /// before any stop), e.g. `cache:redis-cli BGSAVE` or `web:touch /srv/maintenance`; repeat
    /// for several, run in order. If one fails, nothing is backed up (the --exec-after hooks
    /// still run).
    #[arg(long = "exec-before", value_name = "CONTAINER:COMMAND")]
    pub exec_before: Vec<String>,

    /// Run a shell command in another running container after the backup (after the containers
    /// are started again), on every way out: a failed backup, a failed --exec-before hook, an
    /// interruption (SIGTERM, SIGINT); repeat for several, run in order.
    #[arg(long = "exec-after", value_name = "CONTAINER:COMMAND")]
    pub exec_after: Vec<String>,

    /// Run this shell command inside the container after the backup (after starting it again).
    #[arg(long, value_name = "COMMAND")]
    pub post_hook: Option<String>,

    #[command(flatten)]
    pub notify: OneOffNotifyArgs,
}

/// Encryption of what is written (age, on the host: no key enters a helper container).
#[derive(Debug, Args, Default)]
pub struct EncryptArgs {
    /// Encrypt with age to this recipient: an age public key (`age1...`), an SSH public key
    /// (`ssh-ed25519 ...`, `ssh-rsa ...`), or `@FILE` with one per line (`#` comments); repeat
    /// for several (any one of their private keys decrypts). The archive is `<id>.tar.zst.age`.
    #[arg(
        long = "encrypt-to",
        value_name = "RECIPIENT",
        help_heading = "Encryption"
    )]
    pub encrypt_to: Vec<String>,

    /// Encrypt with age to the passphrase on this file's first line (scrypt) instead of
    /// recipients. Never give a passphrase on the command line.
    #[arg(
        long,
        env = "DOCKYARD_PASSPHRASE_FILE",
        value_name = "FILE",
        help_heading = "Encryption"
    )]
    pub passphrase_file: Option<std::path::PathBuf>,
}

/// Incremental backups (through dockyard's agent).
#[derive(Debug, Args, Default)]
pub struct IncrementalArgs {
    /// Archive only what changed since the newest backup of the same paths at the destination
    /// (its parent), found by comparing the volume with the parent's file index: new and changed
    /// entries, every directory, and a list of what is gone. The archive stays a plain tar.zst;
    /// a restore applies the chain (the full, then each increment). Without a usable parent
    /// (none yet, a broken chain, a chain already --full-every long) the backup is full, and
    /// says why.
    #[arg(long, help_heading = "Incremental")]
    pub incremental: bool,

    /// With --incremental: a chain holds at most N backups, the full one included; the next is
    /// full. Default 7 (a weekly full of daily backups).
    #[arg(long, value_name = "N", requires = "incremental", value_parser = clap::value_parser!(u32).range(1..), help_heading = "Incremental")]
    pub full_every: Option<u32>,

    /// With --incremental: a full backup when the chain's full one is older than AGE (e.g. 7d).
    #[arg(
        long,
        value_name = "AGE",
        requires = "incremental",
        help_heading = "Incremental"
    )]
    pub full_after: Option<Age>,

    /// An age identity file that reads an encrypted parent's index (a backup encrypted with
    /// --encrypt-to cannot read its own parent without it; with --passphrase-file the
    /// passphrase does). Without one, an encrypted incremental backup is full. Ignored without
    /// --incremental (the variable may be set for restores).
    #[arg(
        long = "identity",
        env = "DOCKYARD_IDENTITY_FILE",
        value_name = "FILE",
        help_heading = "Incremental"
    )]
    pub identities: Vec<std::path::PathBuf>,
}

/// What opens an encrypted backup (read on the host only).
#[derive(Debug, Args, Default)]
pub struct UnlockArgs {
    /// An age identity file (from `age-keygen`) or an unprotected SSH private key that decrypts
    /// an encrypted backup; repeat for several (each is tried).
    #[arg(
        long = "identity",
        env = "DOCKYARD_IDENTITY_FILE",
        value_name = "FILE",
        help_heading = "Encryption"
    )]
    pub identities: Vec<std::path::PathBuf>,

    /// For a backup encrypted with a passphrase: the file whose first line is the passphrase.
    #[arg(
        long,
        env = "DOCKYARD_PASSPHRASE_FILE",
        value_name = "FILE",
        help_heading = "Encryption"
    )]
    pub passphrase_file: Option<std::path::PathBuf>,
}

/// Where the tar is made (backup) or unpacked (restore).
#[derive(Debug, Args)]
pub struct AgentArg {
    /// `auto`: dockyard's own (static) binary runs inside the helper, reads or writes the volume
    /// itself and (de)compresses there, the fast path; it falls back to the engine's archive
    /// endpoint, saying why, when it cannot run there (a dynamically linked build, another
    /// architecture). `never`: always the engine's endpoint.
    #[arg(
        long,
        env = "DOCKYARD_AGENT",
        value_enum,
        default_value_t,
        value_name = "MODE"
    )]
    pub agent: AgentMode,
}

/// Stopping containers around a backup or restore.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Stop the container during the backup or restore (a consistent copy), and start it again
    /// afterwards on every way out (errors, SIGTERM, panics included). The downtime is reported.
    #[arg(long)]
    pub stop: bool,

    /// With --stop: stop this container too (e.g. a worker writing to the same volume), after
    /// CONTAINER, in the order given; they start again in reverse order. Repeat for several.
    #[arg(long = "stop-also", value_name = "NAME", requires = "stop")]
    pub stop_also: Vec<String>,

    /// With --stop: seconds to wait for a graceful stop (SIGTERM) before the engine kills.
    #[arg(long, default_value_t = defaults::STOP_TIMEOUT, value_name = "SECONDS", requires = "stop")]
    pub stop_timeout: u32,
}

/// Where backups are read from (`list`, `verify`): `--to`, as the backup was written, or `--from`.
#[derive(Debug, Args)]
pub struct SourceArg {
    /// Where the backups are: a directory, `file:///dir`, `ssh://[user@]host[:port]/dir` or
    /// `s3://bucket/prefix` (what `backup --to` wrote to; `--from` says the same).
    #[arg(
        long = "to",
        visible_alias = "from",
        env = "DOCKYARD_DEST",
        default_value = defaults::DEST,
        value_name = "DEST"
    )]
    pub dest: String,

    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// `dockyard list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub dest: SourceArg,

    /// Only backups of this container (by name).
    #[arg(long, value_name = "NAME")]
    pub container: Option<String>,
}

/// `dockyard verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The backup: its id (the ID column of `dockyard list`), or `latest` (the newest, of
    /// --container if given).
    #[arg(default_value = "latest", value_name = "BACKUP")]
    pub archive: String,

    #[command(flatten)]
    pub dest: SourceArg,

    /// With `latest`: the newest backup of this container.
    #[arg(long, value_name = "NAME")]
    pub container: Option<String>,

    /// Without these, an encrypted backup's stored bytes are checked against its manifest's
    /// sha256; with them, it is decrypted and checked whole.
    #[command(flatten)]
    pub unlock: UnlockArgs,
}

/// `dockyard dump`.
#[derive(Debug, Args)]
pub struct DumpArgs {
    /// The backup: its id, or `latest` (the newest of --container).
    #[arg(value_name = "BACKUP")]
    pub archive: String,

    /// The file, as a container path (e.g. `/srv/media/docs/contract.pdf`).
    #[arg(value_name = "PATH")]
    pub path: ContainerPath,

    #[command(flatten)]
    pub dest: DestArg,

    /// With `latest`: the newest backup of this container.
    #[arg(long, value_name = "NAME")]
    pub container: Option<String>,

    #[command(flatten)]
    pub unlock: UnlockArgs,
}

/// `dockyard restore-db`.
#[derive(Debug, Args)]
pub struct RestoreDbArgs {
    /// The backup: its id (the ID column of `dockyard list`), or `latest` (the newest backup of
    /// --container).
    #[arg(value_name = "BACKUP", default_value = "latest")]
    pub archive: String,

    /// Where the backup is: a directory, `file:///dir`, `ssh://host/dir` or `s3://bucket/prefix`.
    #[arg(long = "from", env = "DOCKYARD_DEST", default_value = defaults::DEST, value_name = "DEST")]
    pub dest: String,

    #[command(flatten)]
    pub remote: RemoteArgs,

    /// With `latest`: the newest backup of this container (the one backed up, whose backup
    /// holds the dump).
    #[arg(long, value_name = "NAME")]
    pub container: Option<String>,

    /// Which dump of the backup: `CONTAINER` (the database's container, where it is loaded
    /// unless --into) or `CONTAINER/FILE` (`db/app.sql`). Needed unless --into names the
    /// container: a load never goes into a container that only the backup's manifest names.
    #[arg(long, value_name = "CONTAINER[/FILE]")]
    pub dump: Option<String>,

    /// Load it in this running container instead of the one it was dumped from.
    #[arg(long, value_name = "CONTAINER")]
    pub into: Option<String>,

    /// Load it into this database (created if absent), or for SQLite into this file (an
    /// absolute path in the container). Needed for SQLite dumps, and for the others unless
    /// --dump names CONTAINER/FILE (whose file names its database): never taken from the
    /// manifest alone.
    #[arg(long, value_name = "NAME")]
    pub database: Option<String>,

    /// For a dump made by `exec:COMMAND`: the shell command that loads it from its stdin in the
    /// container (dockyard cannot tell whether its target is empty).
    #[arg(long, value_name = "COMMAND")]
    pub command: Option<String>,

    /// Replace a target database (or SQLite file) that holds tables (PostgreSQL and SQLite: once
    /// the new one loaded whole; MySQL: emptied before the load, as it cannot rename a database).
    #[arg(long)]
    pub force: bool,

    /// Say which dump would be loaded where and what the target holds now; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub unlock: UnlockArgs,
}

/// `dockyard restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Container to restore into (may be stopped, e.g. freshly created from the same image).
    pub container: String,

    /// Where the backup is: a directory, `file:///dir`, `ssh://host/dir` or `s3://bucket/prefix`.
    #[arg(long = "from", env = "DOCKYARD_DEST", default_value = defaults::DEST, value_name = "DEST")]
    pub dest: String,

    #[command(flatten)]
    pub remote: RemoteArgs,

    /// An encrypted backup is decrypted on the host with these; its safety backup is then
    /// encrypted to their public keys (or the passphrase).
    #[command(flatten)]
    pub unlock: UnlockArgs,

    /// The backup: its id (the ID column of `dockyard list`), or `latest`: the newest backup of
    /// the target container (or of --container). `--archive` is an older name for it.
    #[arg(
        long = "backup",
        alias = "archive",
        default_value = "latest",
        value_name = "BACKUP"
    )]
    pub archive: String,

    /// The container the backup is of, when it is not the target: with `--backup latest`, take
    /// its newest backup; with a backup id, confirm that restoring another container's backup
    /// into the target is meant.
    #[arg(long = "container", value_name = "NAME")]
    pub source: Option<String>,

    /// Restore a backup of another container without naming it with --container.
    #[arg(long)]
    pub force: bool,

    /// Restore only the entries matching GLOB (repeatable; a name at any depth like `*.jpg`, or
    /// a container path like `/srv/media/photos/2024/**`), into the live paths, replacing what has
    /// their names and deleting nothing else. Everything below a matching directory comes too.
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,

    /// Restore even though processes in the target hold files open in the restored paths (they
    /// keep writing into files that the swap moves away and deletes; their lines are lost).
    /// Without it such a restore is refused: use --stop, or restore other paths with --path.
    #[arg(long)]
    pub allow_open_files: bool,

    /// Restore only these paths of the backup; repeat for several. Default: all of them.
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<ContainerPath>,

    /// Say what would change (added, changed, removed entries) and change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Do not save the target's current contents as a `pre-restore` backup before the swap.
    #[arg(long)]
    pub no_safety_backup: bool,

    /// Wait until the old contents, moved aside by the swap, are deleted. By default the restore
    /// reports as soon as the restored files are in place and a helper deletes the old ones in
    /// the background (a later run finishes that if it is cut short).
    #[arg(long)]
    pub wait_cleanup: bool,

    /// Write the safety backup here instead of to --from (which may be read-only in a disaster:
    /// a read-only S3 key, a read-only share). Same forms as --from. Config: [restore]
    /// safety_backup_to = "<destination name>".
    #[arg(long, env = "DOCKYARD_SAFETY_BACKUP_TO", value_name = "DEST")]
    pub safety_backup_to: Option<String>,

    /// Safety backups older than this are removed when a restore writes a new one, and prune
    /// stops keeping them (e.g. 7d, 12h). Config: [restore] safety_backup_keep. Default 7d.
    #[arg(long, value_name = "AGE")]
    pub safety_backup_keep: Option<Age>,

    /// Restore device nodes (block and character devices) from the backup. Refused by default:
    /// a device node in a volume can hand the host's disks to whoever can open it.
    #[arg(long)]
    pub allow_devices: bool,

    /// Keep set-user-ID and set-group-ID bits on restored files. By default they are removed,
    /// with a warning naming the files. File capabilities are kept only with
    /// --keep-capabilities.
    #[arg(long = "keep-setuid")]
    pub keep_setuid: bool,

    /// Keep file capabilities (the `security.capability` extended attribute: `cap_setuid=ep`
    /// makes whoever runs the file root) and every other `security.*` and `trusted.*` extended
    /// attribute on restored files. By default they are dropped, with a warning naming the
    /// files; --keep-setuid does not keep them.
    #[arg(long)]
    pub keep_capabilities: bool,

    /// The config file to read [restore] settings from (only if it exists, when not given).
    #[arg(long, env = "DOCKYARD_CONFIG", value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub stop: StopArgs,

    /// Image for the helper containers (needs /bin/sh). Default: the target container's image.
    #[arg(long, value_name = "IMAGE")]
    pub helper_image: Option<String>,

    #[command(flatten)]
    pub agent: AgentArg,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bad_values_are_refused_naming_the_flag_and_the_value() {
        for (args, want) in [
            (
                &["backup", "web", "--path", "srv/media"][..],
                "absolute path",
            ),
            (&["backup", "web", "--level", "20"][..], "1 to 19"),
            (&["backup", "web", "--tag", "a b"][..], "letters, digits"),
            (
                &["logs", "web", "--settle", "5000"][..],
                "between 0 and 3600",
            ),
            (&["logs", "web", "--max-age", "30"][..], "s, m, h, d"),
            (&["prune", "--keep-within", "soon"][..], "soon"),
        ] {
            let err = Cli::try_parse_from(std::iter::once("dockyard").chain(args.iter().copied()))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(want) && err.contains(args[args.len() - 2]),
                "{args:?}: {err}"
            );
        }
    }
}
