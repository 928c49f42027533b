//! The one guard around work that wants the app quiet, used by backup and restore alike: the
//! pre-hook, the hooks in other containers (`--exec-before`), stopping containers in order, the
//! work, starting them again (whatever the work's result; main's clean-up does the same on
//! signals and panics, through the session's [`Stopped`] list), the `--exec-after` hooks (on
//! every way out too, through [`Owed`]), then the post-hook. Each guard starts again only what it
//! stopped and runs only its own after-hooks, so two jobs running side by side never start each
//! other's containers early.

use std::fmt;
use std::future::Future;
use std::str::FromStr;
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

/// A command run in another container around the work (`--exec-before`, `--exec-after`):
/// `CONTAINER:COMMAND`, the command run with `/bin/sh -c` there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecHook {
    /// The container it runs in (running, on the same engine).
    pub container: String,
    /// The shell command.
    pub command: String,
}

impl FromStr for ExecHook {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some((c, command))
                if crate::dumps::spec::is_container_name(c) && !command.trim().is_empty() =>
            {
                Ok(ExecHook {
                    container: c.to_string(),
                    command: command.to_string(),
                })
            }
            _ => Err(format!(
                "{s:?} is not CONTAINER:COMMAND (a container name, a colon, a shell command)"
            )),
        }
    }
}

impl fmt::Display for ExecHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.container, self.command)
    }
}

/// The `--exec-after` hooks each guard still owes, run when it ends and, for a run cut short,
/// by main's clean-up on every way out.
pub struct Owed<E = Engine> {
    list: Mutex<Vec<(u64, E, Vec<ExecHook>)>>,
}

impl<E> Default for Owed<E> {
    fn default() -> Self {
        Owed {
            list: Mutex::new(Vec::new()),
        }
    }
}

impl<E: Clone> Owed<E> {
    /// Guard `guard` owes `hooks` on `engine`.
    fn owe(&self, guard: u64, engine: &E, hooks: &[ExecHook]) {
        if !hooks.is_empty() {
            self.list
                .lock()
                .unwrap()
                .push((guard, engine.clone(), hooks.to_vec()));
        }
    }

    /// Takes what guard `guard` owes (every guard's with `None`).
    fn take(&self, guard: Option<u64>) -> Vec<(E, Vec<ExecHook>)> {
        let mut list = self.list.lock().unwrap();
        let (taken, kept): (Vec<_>, Vec<_>) = list
            .drain(..)
            .partition(|(g, _, _)| guard.is_none_or(|want| want == *g));
        *list = kept;
        taken.into_iter().map(|(_, e, h)| (e, h)).collect()
    }
}

impl Owed {
    /// Runs, in order, the after-hooks guard `guard` owes (every guard's with `None`). Keeps
    /// going past failures and returns the first.
    pub async fn run(&self, guard: Option<u64>) -> Result<()> {
        let mut first = None;
        for (engine, hooks) in self.take(guard) {
            for h in hooks {
                if let Err(e) = run_hook(&engine, &h.container, &h.command, "exec-after hook").await
                {
                    tracing::error!(error = %format!("{e:#}"), "an --exec-after hook failed");
                    first.get_or_insert(e);
                }
            }
        }
        first.map_or(Ok(()), Err)
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
    /// Run in other containers, in order, after the pre-hook and before the stops; if one fails,
    /// nothing else happens (but the after-hooks).
    pub exec_before: &'a [ExecHook],
    /// Run in other containers, in order, after the containers are started again, on every way
    /// out.
    pub exec_after: &'a [ExecHook],
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
    let guard = session.stopped.guard();
    // Owed from the start: they run on every way out, even when nothing else ran.
    session.owed.owe(guard, engine, q.exec_after);
    let before = async {
        if let Some(hook) = q.pre_hook {
            run_hook(engine, q.container, hook, "pre-hook").await?;
        }
        for h in q.exec_before {
            run_hook(engine, &h.container, &h.command, "exec-before hook").await?;
        }
        anyhow::Ok(())
    };
    if let Err(e) = before.await {
        let _ = session.owed.run(Some(guard)).await;
        return Err(e);
    }
    let t0 = Instant::now();
    if let Err(e) = stop_all(session, guard, engine, q.stop, q.stop_timeout).await {
        let _ = session.stopped.restart(Some(guard)).await;
        let _ = session.owed.run(Some(guard)).await;
        return Err(e);
    }
    let results = work.await;
    let restarted = session.stopped.restart(Some(guard)).await;
    let downtime = (!q.stop.is_empty()).then(|| t0.elapsed().as_secs_f64());
    let exec_after = session.owed.run(Some(guard)).await;
    let mut after = None;
    if results.iter().any(Result::is_ok) {
        after = match (restarted, exec_after) {
            (Err(e), _) => Some(e.into()),
            (Ok(()), Err(e)) => Some(e),
            (Ok(()), Ok(())) => match q.post_hook {
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

/// Runs a hook command in `container`; a non-zero exit is an error naming the hook and the
/// container.
async fn run_hook(engine: &Engine, container: &str, hook: &str, which: &str) -> Result<()> {
    let ran = engine.exec_shell(container, hook).await?;
    let (code, output) = (ran.code, ran.stderr_tail);
    if code != 0 {
        return Err(DockerError::HelperFailed {
            container: container.to_string(),
            action: format!(
                "running the {which} {hook:?} (nothing was backed up if this is the pre-hook or an exec-before hook)"
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
