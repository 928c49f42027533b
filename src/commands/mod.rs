//! The subcommands, one file each, and the context they share (output style, a lazily connected
//! engine that main cleans up on every way out).

pub mod backup;
pub mod check;
pub mod daemon;
pub mod dump;
pub mod list;
pub mod logs;
pub mod man;
pub mod prune;
pub mod restore;
pub mod restore_db;
pub mod run;
pub mod verify;

use std::ops::Deref;

use anyhow::Result;

use crate::ops::Session;
use crate::render::{Output, Renderer};
use crate::settings::{Action, Settings};

/// What every command gets: the session its work runs in, and the one writer of stdout.
pub struct Ctx {
    /// The engine, locks and clean-up the work shares.
    pub session: Session,
    /// Output style.
    pub output: Output,
    /// The one writer of stdout.
    pub out: Renderer,
    /// Set while the daemon waits for its next job: a signal then is a clean stop (exit 0).
    pub idle: std::sync::atomic::AtomicBool,
}

impl Deref for Ctx {
    type Target = Session;

    fn deref(&self) -> &Session {
        &self.session
    }
}

impl Ctx {
    /// A context; the engine is connected on first use, so `list` and `verify` work without Docker.
    pub fn new(
        dirs: crate::settings::Dirs,
        endpoint: String,
        output: Output,
        engine_ssh_config: Option<std::path::PathBuf>,
        helper_timeout: std::time::Duration,
        engines: std::collections::BTreeMap<String, crate::settings::EngineAddr>,
    ) -> Ctx {
        Ctx {
            session: Session::new(
                dirs,
                endpoint,
                output.progress,
                engine_ssh_config,
                helper_timeout,
            )
            .with_engines(engines),
            output,
            out: Renderer::new(output),
            idle: std::sync::atomic::AtomicBool::new(false),
        }
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
            unlock,
        } => verify::run(ctx, &dest, &archive, container.as_deref(), &unlock).await?,
        Action::Restore(s) => restore::run(ctx, s).await?,
        Action::RestoreDb(s) => restore_db::run(ctx, s).await?,
        Action::Dump {
            dest,
            archive,
            container,
            path,
            unlock,
        } => dump::run(ctx, &dest, &archive, container.as_deref(), &path, &unlock).await?,
        Action::Logs(s) => logs::run(ctx, s).await?,
        Action::Run(jobs) => run::run(ctx, jobs).await?,
        Action::Daemon(jobs) => daemon::run(ctx, jobs).await?,
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
        Action::ConfigCheck(jobs) => check::run(ctx, &jobs).await?,
    }
    Ok(Outcome::default())
}
