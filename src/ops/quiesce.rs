//! The one guard around work that wants the app quiet, used by backup and restore alike: the
//! pre-hook, stopping containers in order, the work, starting them again (whatever the work's
//! result; main's clean-up does the same on signals and panics), then the post-hook.

use std::future::Future;
use std::time::Instant;

use anyhow::Result;

use crate::docker::{DockerError, Engine};

/// What to do around the work.
#[derive(Debug, Clone, Copy)]
pub struct Quiesce<'a> {
    /// The app container (where hooks run).
    pub container: &'a str,
    /// Containers to stop, in stop order (empty: stop nothing).
    pub stop: &'a [String],
    /// Seconds the engine waits for each to stop gracefully.
    pub stop_timeout: u32,
    /// Run in the container first; if it fails, nothing else happens.
    pub pre_hook: Option<&'a str>,
    /// Run in the container after the containers are started again.
    pub post_hook: Option<&'a str>,
}

/// Runs `work` inside the guard; returns its value and, if containers were stopped, for how many
/// seconds.
pub async fn around<T>(
    engine: &Engine,
    q: Quiesce<'_>,
    work: impl Future<Output = Result<T>>,
) -> Result<(T, Option<f64>)> {
    let (mut all, downtime) = around_each(engine, q, async { vec![work.await] }).await?;
    Ok((all.pop().expect("one result")?, downtime))
}

/// Runs `work` (several pieces, each with its own result: a job's destinations) inside one guard;
/// the post-hook runs if any piece succeeded. The error is the guard's (a hook, a stop, a
/// start); the pieces' errors are in the results.
pub async fn around_each<T>(
    engine: &Engine,
    q: Quiesce<'_>,
    work: impl Future<Output = Vec<Result<T>>>,
) -> Result<(Vec<Result<T>>, Option<f64>)> {
    if let Some(hook) = q.pre_hook {
        run_hook(engine, q.container, hook, "pre-hook").await?;
    }
    let t0 = Instant::now();
    let results = match stop_all(engine, q.stop, q.stop_timeout).await {
        Ok(()) => work.await,
        Err(e) => vec![Err(e)],
    };
    let restarted = engine.restart_stopped().await;
    let downtime = (!q.stop.is_empty()).then(|| t0.elapsed().as_secs_f64());
    if !results.iter().any(Result::is_ok) {
        return Ok((results, downtime));
    }
    restarted?;
    if let Some(hook) = q.post_hook {
        run_hook(engine, q.container, hook, "post-hook").await?;
    }
    Ok((results, downtime))
}

/// Stops each of `names` that is running, in order. The engine remembers them for
/// `Engine::restart_stopped`.
async fn stop_all(engine: &Engine, names: &[String], timeout_secs: u32) -> Result<()> {
    for c in names {
        if engine.inspect(c).await?.running {
            tracing::info!(container = %c, "stopping");
            engine.stop(c, timeout_secs).await?;
        }
    }
    Ok(())
}

/// Runs a hook command in the container; a non-zero exit is an error naming the hook.
async fn run_hook(engine: &Engine, container: &str, hook: &str, which: &str) -> Result<()> {
    let (code, output) = engine.exec(container, hook).await?;
    if code != 0 {
        return Err(DockerError::HelperFailed {
            container: container.to_string(),
            action: format!(
                "running the {which} {hook:?} (nothing was backed up if this is the pre-hook)"
            ),
            code,
            output: output.trim().to_string(),
        }
        .into());
    }
    Ok(())
}
