//! The one guard around work that wants the app quiet, used by backup and restore alike: the
//! pre-hook, stopping containers in order, the work, starting them again (whatever the work's
//! result; main's clean-up does the same on signals and panics, through the session's
//! [`Stopped`] list), then the post-hook. Each guard starts again only what it stopped, so two
//! jobs running side by side never start each other's containers early.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Result;

use super::Session;
use crate::docker::{DockerError, Engine};

/// The containers this process stopped and has not started again, in stop order, each with the
/// guard that stopped it and the engine it is on.
pub struct Stopped<E = Engine> {
    next: AtomicU64,
    list: Mutex<Vec<(u64, E, String)>>,
}

impl<E> Default for Stopped<E> {
    fn default() -> Self {
        Stopped {
            next: AtomicU64::new(1),
            list: Mutex::new(Vec::new()),
        }
    }
}

impl<E: Clone> Stopped<E> {
    /// A new guard's number.
    fn guard(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Guard `guard` stopped `container` on `engine`.
    fn record(&self, guard: u64, engine: &E, container: &str) {
        self.list
            .lock()
            .unwrap()
            .push((guard, engine.clone(), container.to_string()));
    }

    /// Takes what guard `guard` stopped (every guard's with `None`), newest first: the order to
    /// start them again in.
    fn take(&self, guard: Option<u64>) -> Vec<(E, String)> {
        let mut list = self.list.lock().unwrap();
        let mut taken = Vec::new();
        let mut kept = Vec::new();
        for (g, e, c) in list.drain(..) {
            if guard.is_none_or(|want| want == g) {
                taken.push((e, c));
            } else {
                kept.push((g, e, c));
            }
        }
        *list = kept;
        taken.reverse();
        taken
    }
}

impl Stopped {
    /// Starts again, newest first, what guard `guard` stopped (everything with `None`: the
    /// clean-up on every way out). Keeps going past failures and returns the first.
    pub async fn restart(&self, guard: Option<u64>) -> Result<(), DockerError> {
        let mut first = None;
        for (engine, c) in self.take(guard) {
            if let Err(err) = engine.start_again(&c).await {
                tracing::error!(error = %err, "a container dockyard stopped could not be started again");
                first.get_or_insert(err);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

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
    session: &Session,
    engine: &Engine,
    q: Quiesce<'_>,
    work: impl Future<Output = Result<T>>,
) -> Result<(T, Option<f64>)> {
    let mut done = around_each(session, engine, q, async { vec![work.await] }).await?;
    let value = done.results.pop().expect("one result")?;
    match done.after {
        Some(e) => Err(e),
        None => Ok((value, done.downtime)),
    }
}

/// What the guard around several pieces of work did.
pub struct Guarded<T> {
    /// Each piece's result, in order.
    pub results: Vec<Result<T>>,
    /// How long containers were stopped, if any were.
    pub downtime: Option<f64>,
    /// What failed after the work, when a piece succeeded: starting a container again, or the
    /// post-hook.
    pub after: Option<anyhow::Error>,
}

/// Runs `work` (several pieces, each with its own result: a job's destinations) inside one guard.
/// The error is the guard's when nothing ran (the pre-hook, a stop: what was stopped is started
/// again first); the pieces' errors are in the results; when any piece succeeded the post-hook
/// runs, and a failure from there on is [`Guarded::after`].
pub async fn around_each<T>(
    session: &Session,
    engine: &Engine,
    q: Quiesce<'_>,
    work: impl Future<Output = Vec<Result<T>>>,
) -> Result<Guarded<T>> {
    if let Some(hook) = q.pre_hook {
        run_hook(engine, q.container, hook, "pre-hook").await?;
    }
    let t0 = Instant::now();
    let guard = session.stopped.guard();
    if let Err(e) = stop_all(session, guard, engine, q.stop, q.stop_timeout).await {
        let _ = session.stopped.restart(Some(guard)).await;
        return Err(e);
    }
    let results = work.await;
    let restarted = session.stopped.restart(Some(guard)).await;
    let downtime = (!q.stop.is_empty()).then(|| t0.elapsed().as_secs_f64());
    let mut after = None;
    if results.iter().any(Result::is_ok) {
        after = match restarted {
            Err(e) => Some(e.into()),
            Ok(()) => match q.post_hook {
                Some(hook) => run_hook(engine, q.container, hook, "post-hook").await.err(),
                None => None,
            },
        };
    }
    Ok(Guarded {
        results,
        downtime,
        after,
    })
}

/// Stops each of `names` that is running, in order, recording each (before the engine is asked)
/// for `guard` in the session's [`Stopped`] list.
async fn stop_all(
    session: &Session,
    guard: u64,
    engine: &Engine,
    names: &[String],
    timeout_secs: u32,
) -> Result<()> {
    for c in names {
        if engine.inspect(c).await?.running {
            tracing::info!(container = %c, "stopping");
            session.stopped.record(guard, engine, c);
            engine.stop(c, timeout_secs).await?;
        }
    }
    Ok(())
}

/// Runs a hook command in the container; a non-zero exit is an error naming the hook.
async fn run_hook(engine: &Engine, container: &str, hook: &str, which: &str) -> Result<()> {
    let ran = engine.exec_shell(container, hook).await?;
    let (code, output) = (ran.code, ran.stderr_tail);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_guard_starts_again_only_what_it_stopped_newest_first() {
        let stopped: Stopped<()> = Stopped::default();
        let (a, b) = (stopped.guard(), stopped.guard());
        stopped.record(a, &(), "web");
        stopped.record(b, &(), "db");
        stopped.record(a, &(), "worker");
        let names = |v: Vec<((), String)>| v.into_iter().map(|(_, c)| c).collect::<Vec<_>>();
        // Job a ends while job b still runs: b's database stays stopped.
        assert_eq!(names(stopped.take(Some(a))), ["worker", "web"]);
        assert_eq!(names(stopped.take(Some(a))), Vec::<String>::new());
        // The clean-up on the way out takes whatever is left.
        stopped.record(b, &(), "cache");
        assert_eq!(names(stopped.take(None)), ["cache", "db"]);
    }
}
