//! The subcommands, one file each, and the context they share (output style, a lazily connected
//! engine that main cleans up on every way out).

pub mod backup;
pub mod daemon;
pub mod list;
pub mod logs;
pub mod prune;
pub mod restore;
pub mod run;
pub mod verify;

use std::io::Read;

use anyhow::Result;
use tokio::sync::OnceCell;
use tokio_util::io::SyncIoBridge;

use crate::destination::{DestError, Destination};
use crate::docker::Engine;
use crate::settings::{Action, Output, Settings};

/// What every command gets.
pub struct Ctx {
    /// Output style.
    pub output: Output,
    engine: OnceCell<Engine>,
}

impl Ctx {
    /// A context; the engine is connected on first use, so `list` and `verify` work without Docker.
    pub fn new(output: Output) -> Ctx {
        Ctx {
            output,
            engine: OnceCell::new(),
        }
    }

    /// The engine, connecting (and negotiating the API version) on first use.
    pub async fn engine(&self) -> Result<&Engine> {
        Ok(self.engine.get_or_try_init(Engine::connect).await?)
    }

    /// Removes any helper containers still alive and starts again any container this run
    /// stopped; main calls this on every way out (errors, signals, panics).
    pub async fn cleanup(&self) {
        if let Some(engine) = self.engine.get() {
            engine.remove_live_helpers().await;
            let _ = engine.restart_stopped().await;
        }
    }
}

/// Runs the command `settings` describes.
pub async fn run(ctx: &Ctx, settings: Settings) -> Result<()> {
    match settings.action {
        Action::Backup(s) => backup::run(ctx, s).await,
        Action::List { dest, container } => list::run(ctx, &dest, container.as_deref()).await,
        Action::Verify {
            dest,
            archive,
            container,
        } => verify::run(ctx, &dest, &archive, container.as_deref()).await,
        Action::Restore(s) => restore::run(ctx, s).await,
        Action::Logs(s) => logs::run(ctx, s).await,
        Action::Run {
            config,
            jobs,
            metrics_file,
            remote,
        } => run::run(ctx, &config, &jobs, metrics_file, &remote).await,
        Action::Daemon {
            config,
            metrics_file,
            remote,
        } => daemon::run(ctx, &config, metrics_file, &remote).await,
        Action::Prune {
            dest,
            container,
            policy,
            dry_run,
        } => prune::run(ctx, &dest, container.as_deref(), &policy, dry_run).await,
    }
}

/// Stops each of `names` that is running (for a consistent backup or restore), in order. The
/// engine remembers them; the caller starts them again with `Engine::restart_stopped`, and main's
/// clean-up does so on every other way out.
pub async fn stop_all(engine: &Engine, names: &[String], timeout_secs: u32) -> Result<()> {
    for c in names {
        if engine.inspect(c).await?.running {
            tracing::info!(container = %c, "stopping");
            engine.stop(c, timeout_secs).await?;
        }
    }
    Ok(())
}

/// Streams object `name` into `work`, which runs on a blocking thread with a synchronous reader.
pub async fn read_blocking<T, F>(
    dest: &dyn Destination,
    name: &str,
    work: F,
) -> Result<T, DestError>
where
    T: Send + 'static,
    F: FnOnce(Box<dyn Read + Send>) -> T + Send + 'static,
{
    let reader = dest.get(name).await?;
    let bridge = SyncIoBridge::new(reader);
    Ok(tokio::task::spawn_blocking(move || work(Box::new(bridge)))
        .await
        .expect("reader thread panicked"))
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("serialisable")
    );
}
