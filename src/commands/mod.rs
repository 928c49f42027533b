//! The subcommands, one file each, and the context they share (output style, a lazily connected
//! engine that main cleans up on every way out).

pub mod backup;
pub mod check;
pub mod daemon;
pub mod dump;
pub mod list;
pub mod logs;
pub mod logs_plan;
pub mod man;
pub mod prune;
pub mod quiesce;
pub mod restore;
pub mod restore_report;
pub mod run;
pub mod verify;

use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::Result;
use tokio::sync::OnceCell;

use crate::critical::Critical;
use crate::docker::{ContainerInfo, Engine};
use crate::lock::{Access, ContainerLock};
use crate::render::{Output, Renderer};
use crate::settings::{Action, Settings};
use crate::swap::journal::Journal;
use crate::swap::ledger::Ledger;
use crate::swap::recover;

/// What every command gets.
pub struct Ctx {
    /// Output style.
    pub output: Output,
    /// The one writer of stdout.
    pub out: Renderer,
    /// Where container and job locks live.
    pub lock_dir: PathBuf,
    /// Work a signal must wait for (a restore's swap; a backup's archive and manifest).
    pub critical: Critical,
    /// Set while the daemon waits for its next job: a signal then is a clean stop (exit 0).
    pub idle: std::sync::atomic::AtomicBool,
    engine: OnceCell<Engine>,
    /// ssh config for `DOCKER_HOST=ssh://...` (the same `--ssh-config` as ssh destinations).
    engine_ssh_config: Option<PathBuf>,
    /// How long a script helper may run (`--helper-timeout`).
    helper_timeout: std::time::Duration,
    pending: Mutex<Option<Pending>>,
}

/// A restore's staging in progress: what to remove if the run ends before its swap.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The target container.
    pub target: ContainerInfo,
    /// The helper image.
    pub image: String,
    /// The restore's journal (on the host).
    pub journal: Journal,
    /// Where that journal is kept.
    pub ledger: Ledger,
}

impl Ctx {
    /// A context; the engine is connected on first use, so `list` and `verify` work without Docker.
    pub fn new(
        output: Output,
        engine_ssh_config: Option<PathBuf>,
        helper_timeout: std::time::Duration,
    ) -> Ctx {
        Ctx {
            output,
            out: Renderer::new(output),
            lock_dir: crate::lock::lock_dir(None),
            critical: Critical::default(),
            idle: std::sync::atomic::AtomicBool::new(false),
            engine: OnceCell::new(),
            engine_ssh_config,
            helper_timeout,
            pending: Mutex::new(None),
        }
    }

    /// The engine, connecting (and negotiating the API version) on first use.
    pub async fn engine(&self) -> Result<&Engine> {
        let config = self.engine_ssh_config.clone();
        Ok(self
            .engine
            .get_or_try_init(|| Engine::connect(config, self.helper_timeout))
            .await?)
    }

    /// Records (or clears) the staging a signal should remove.
    pub fn set_pending(&self, pending: Option<Pending>) {
        *self.pending.lock().unwrap() = pending;
    }

    /// Takes the staging to remove, if any.
    pub fn take_pending(&self) -> Option<Pending> {
        self.pending.lock().unwrap().take()
    }

    /// A line of text on stdout (nothing with `--json`).
    pub fn say(&self, line: &str) {
        self.out.line(line);
    }

    /// The invocation's one JSON document on stdout (`--json`), with its `version`.
    pub fn json(&self, value: &impl serde::Serialize) {
        self.out
            .document(serde_json::to_value(value).expect("serialisable"));
    }

    /// Removes the staging of an interrupted restore, removes helper containers still alive and
    /// starts again any container this run stopped; main calls this on every way out (errors,
    /// signals, panics).
    pub async fn cleanup(&self) {
        if let Some(engine) = self.engine.get() {
            engine.remove_live_helpers().await;
            restore::discard(self, engine).await;
            let _ = engine.restart_stopped().await;
        }
    }
}

/// Takes `target`'s lock for a backup or log run (shared with others of its kind) and first
/// finishes, undoes or cleans up what earlier restores left there, saying which. Leftovers that
/// cannot be removed yet never fail the run; a committed restore that cannot be finished does
/// (the next run tries once more, then rolls it back).
pub async fn prepare_container(
    ctx: &Ctx,
    engine: &Engine,
    target: &ContainerInfo,
    image: &str,
    what: &str,
) -> Result<ContainerLock> {
    if engine.is_local() {
        crate::binds::check(target)?;
    }
    let mut lock =
        ContainerLock::take_on(engine, &ctx.lock_dir, target, what, Access::Shared).await?;
    engine.wait_for_swaps(&target.name, false).await?;
    let ledger = recover::ledger(engine).await?;
    let survey = recover::survey(engine, &ledger, target).await?;
    for f in &survey.foreign {
        tracing::warn!(container = %target.name, "{f}");
    }
    let plans = recover::decide(&survey.journals);
    for p in &plans {
        if let recover::Plan::Abandoned(j) = p {
            tracing::warn!(container = %target.name, "the restore of backup {} was given up and could not be put back: its work directories in {} wait for you to sort them out", j.backup, j.roots().join(", "));
        }
    }
    if plans
        .iter()
        .any(|p| !matches!(p, recover::Plan::Busy(_) | recover::Plan::Abandoned(_)))
    {
        lock.upgrade(&format!("{what} (finishing an interrupted restore)"))
            .await?;
        let work = recover::Work {
            engine,
            target,
            image,
            ledger: &ledger,
        };
        let outcome = restore::finish_interrupted(ctx, &work, false).await?;
        for busy in &outcome.busy {
            tracing::warn!(container = %target.name, "{busy}");
        }
        if let Some(e) = outcome.stuck {
            return Err(e);
        }
        lock.downgrade().await;
    }
    Ok(lock)
}

/// What a command did that its notification reports.
#[derive(Debug, Default)]
pub struct Outcome {
    /// `backup`, `snapshot`: the backup written, its id and compressed size.
    pub backup: Option<(String, u64)>,
}

/// Runs the command `settings` describes.
pub async fn run(ctx: &Ctx, settings: Settings) -> Result<Outcome> {
    match settings.action {
        Action::Backup(s) => return backup::run(ctx, s).await,
        Action::List { dest, container } => list::run(ctx, &dest, container.as_deref()).await?,
        Action::Verify {
            dest,
            archive,
            container,
        } => verify::run(ctx, &dest, &archive, container.as_deref()).await?,
        Action::Restore(s) => restore::run(ctx, s).await?,
        Action::Dump {
            dest,
            archive,
            container,
            path,
        } => dump::run(ctx, &dest, &archive, container.as_deref(), &path).await?,
        Action::Logs(s) => logs::run(ctx, s).await?,
        Action::Run {
            config,
            jobs,
            metrics_file,
            remote,
            notify,
        } => run::run(ctx, &config, &jobs, metrics_file, &remote, &notify).await?,
        Action::Daemon {
            config,
            metrics_file,
            remote,
            notify,
        } => daemon::run(ctx, &config, metrics_file, &remote, &notify).await?,
        Action::Completions(shell) => {
            let mut cmd = <crate::cli::Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd, "dockyard", &mut out);
            ctx.out.raw(&out);
        }
        Action::Man { dir } => man::run(ctx, dir.as_deref())?,
        Action::Prune {
            dest,
            container,
            policy,
            dry_run,
        } => prune::run(ctx, &dest, container.as_deref(), &policy, dry_run).await?,
        Action::ConfigCheck {
            config,
            remote,
            notify,
        } => check::run(ctx, &config, &remote, &notify).await?,
    }
    Ok(Outcome::default())
}
