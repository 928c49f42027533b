//! The one guard around work that wants the app quiet, used by backup and restore alike: the
//! pre-hook, the hooks in other containers (`--exec-before`), stopping containers in order, the
//! work, starting them again (whatever the work's result; main's clean-up does the same on
//! signals and panics, through the session's [`Stopped`] list), the `--exec-after` hooks (on
//! every way out too, through [`Owed`]), then the post-hook. A task of a Swarm service is
//! "stopped" by scaling its service to 0 and "started" by scaling it back to its count (the
//! orchestrator would replace a stopped task); the post-hook then runs in the new task of its
//! slot, since the old container is gone. Each guard starts again only what it
//! stopped and runs only its own after-hooks, so two jobs running side by side never start each
//! other's containers early.

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::Session;
use crate::docker::swarm::{Mode, TaskOf};
use crate::docker::{DockerError, Engine};

/// How long, beyond the stop timeout (or the service's own grace period, if longer), a service's
/// tasks may take to stop or to run again: the orchestrator schedules them, then the engine
/// starts or stops each.
const SERVICE_MARGIN: Duration = Duration::from_secs(60);

/// Something a guard quieted, to bring back when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Quieted {
    /// A container it stopped, to start again.
    Container(String),
    /// A Swarm service it scaled to 0, to scale back.
    Service(Scaled),
}

/// A Swarm service a guard scales to 0 and back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scaled {
    /// The service's id.
    pub id: String,
    /// Its name, for messages.
    pub name: String,
    /// The replica count it had, to scale back to.
    pub replicas: u64,
    /// How long its tasks may take to stop, or to run again.
    pub limit: Duration,
}

/// What this process stopped (containers, Swarm services scaled to 0) and has not started
/// again, in stop order, each with the guard that stopped it and the engine it is on.
pub struct Stopped<E = Engine> {
    next: AtomicU64,
    list: Mutex<Vec<(u64, E, Quieted)>>,
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

    /// Guard `guard` stopped `what` on `engine`.
    fn record(&self, guard: u64, engine: &E, what: Quieted) {
        self.list
            .lock()
            .unwrap()
            .push((guard, engine.clone(), what));
    }

    /// Guard `guard` scales service `scaled` to 0 on `engine`, unless another guard holds it
    /// scaled down already (two jobs of one service's tasks): then `false`, and nothing recorded.
    /// Checked and recorded at once, so two guards never both scale it and the second never
    /// takes 0 for its replica count.
    fn record_service(&self, guard: u64, engine: &E, scaled: &Scaled) -> bool {
        let mut list = self.list.lock().unwrap();
        let held = list
            .iter()
            .any(|(_, _, q)| matches!(q, Quieted::Service(s) if s.id == scaled.id));
        if !held {
            list.push((guard, engine.clone(), Quieted::Service(scaled.clone())));
        }
        !held
    }

    /// Takes what guard `guard` stopped (every guard's with `None`), newest first: the order to
    /// start them again in.
    fn take(&self, guard: Option<u64>) -> Vec<(E, Quieted)> {
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
    /// clean-up on every way out): containers are started, services scaled back to their count
    /// and waited for. Keeps going past failures and returns the first.
    pub async fn restart(&self, guard: Option<u64>) -> Result<(), DockerError> {
        let mut first = None;
        for (engine, what) in self.take(guard) {
            let done = match &what {
                Quieted::Container(c) => engine.start_again(c).await,
                Quieted::Service(s) => {
                    let (name, replicas) = (&s.name, s.replicas);
                    tracing::info!(service = %name, replicas, "scaling service {name} back to {replicas}");
                    engine
                        .scale_and_wait(&s.id, name, replicas, None, s.limit)
                        .await
                }
            };
            if let Err(err) = done {
                tracing::error!(error = %err, "what dockyard stopped could not be started again");
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
    let scaled = match stop_all(session, guard, engine, q.stop, q.stop_timeout).await {
        Ok(scaled) => scaled,
        Err(e) => {
            let _ = session.stopped.restart(Some(guard)).await;
            let _ = session.owed.run(Some(guard)).await;
            return Err(e);
        }
    };
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
                Some(hook) => post_hook(engine, q.container, &scaled, hook).await.err(),
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

/// One stop, planned before any is made.
enum Stop {
    /// Stop this container.
    Container(String),
    /// Scale a service to 0, until container `task` (the task named) no longer runs either.
    Service {
        /// The id of the container named, a task of the service.
        task: String,
        /// The service.
        scaled: Scaled,
        /// The names given of its tasks, each with its task.
        tasks: Vec<(String, TaskOf)>,
    },
}

/// Decides how to stop each of `names` that is running, in order, before anything is stopped: a
/// Swarm service's task by scaling its service (once per service), refused for a service that
/// cannot be scaled.
async fn plan_stops(engine: &Engine, names: &[String], timeout_secs: u32) -> Result<Vec<Stop>> {
    let mut plan = Vec::new();
    for c in names {
        let info = engine.inspect(c).await?;
        if !info.running {
            continue;
        }
        let Some(task) = info.service() else {
            plan.push(Stop::Container(c.clone()));
            continue;
        };
        let service = engine.service(&task.id).await?;
        let replicas = match service.mode {
            Mode::Replicated(n) => n,
            Mode::Other(mode) => {
                return Err(DockerError::ServiceNotScalable {
                    container: c.clone(),
                    service: service.name,
                    mode: mode.to_string(),
                }
                .into())
            }
        };
        let same =
            |s: &&mut Stop| matches!(s, Stop::Service { scaled, .. } if scaled.id == task.id);
        if let Some(Stop::Service { tasks, .. }) = plan.iter_mut().find(same) {
            tasks.push((c.clone(), task));
            continue;
        }
        let stop = Duration::from_secs(timeout_secs.into());
        plan.push(Stop::Service {
            task: info.id,
            scaled: Scaled {
                id: task.id.clone(),
                name: service.name,
                replicas,
                limit: service.grace.max(stop) + SERVICE_MARGIN,
            },
            tasks: vec![(c.clone(), task)],
        });
    }
    Ok(plan)
}

/// Stops each of `names` that is running, in order (see [`plan_stops`]), recording each (before
/// the engine is asked) for `guard` in the session's [`Stopped`] list. Returns the names whose
/// service was scaled to 0, each with its task.
async fn stop_all(
    session: &Session,
    guard: u64,
    engine: &Engine,
    names: &[String],
    timeout_secs: u32,
) -> Result<Vec<(String, TaskOf)>> {
    let mut scaled_away = Vec::new();
    for stop in plan_stops(engine, names, timeout_secs).await? {
        match stop {
            Stop::Container(c) => {
                tracing::info!(container = %c, "stopping");
                session
                    .stopped
                    .record(guard, engine, Quieted::Container(c.clone()));
                engine.stop(&c, timeout_secs).await?;
            }
            Stop::Service {
                task,
                scaled,
                tasks,
            } => {
                let (name, replicas) = (&scaled.name, scaled.replicas);
                if !session.stopped.record_service(guard, engine, &scaled) {
                    return Err(crate::error::Failure::busy(format!(
                        "service {name} is scaled down by another job of this run (its tasks are backed up one job at a time); try again when it ends"
                    ))
                    .into());
                }
                tracing::info!(service = %name, replicas, "scaling service {name} to 0 (was {replicas} replicas)");
                engine
                    .scale_and_wait(&scaled.id, name, 0, Some(&task), scaled.limit)
                    .await?;
                crate::fault::point("service-scaled-down").await;
                scaled_away.extend(tasks);
            }
        }
    }
    Ok(scaled_away)
}

/// Runs the post-hook in `container`, or, if its service was scaled to 0 and back (`scaled`),
/// in the task that took its slot.
async fn post_hook(
    engine: &Engine,
    container: &str,
    scaled: &[(String, TaskOf)],
    hook: &str,
) -> Result<()> {
    let Some((_, task)) = scaled.iter().find(|(name, _)| name == container) else {
        return run_hook(engine, container, hook, "post-hook").await;
    };
    let Some(now) = engine.task_container(task).await? else {
        anyhow::bail!(
            "the post-hook {hook:?} did not run: no task of Swarm service {:?} runs in the slot of {container:?} (whose container was replaced when the service was scaled back)",
            task.name
        );
    };
    run_hook(engine, &now, hook, "post-hook").await
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
        let c = |n: &str| Quieted::Container(n.to_string());
        stopped.record(a, &(), c("web"));
        stopped.record(b, &(), c("db"));
        stopped.record(a, &(), c("worker"));
        let names = |v: Vec<((), Quieted)>| {
            v.into_iter()
                .map(|(_, q)| match q {
                    Quieted::Container(c) => c,
                    Quieted::Service(s) => s.name,
                })
                .collect::<Vec<_>>()
        };
        // Job a ends while job b still runs: b's database stays stopped.
        assert_eq!(names(stopped.take(Some(a))), ["worker", "web"]);
        assert_eq!(names(stopped.take(Some(a))), Vec::<String>::new());
        // The clean-up on the way out takes whatever is left.
        stopped.record(b, &(), c("cache"));
        assert_eq!(names(stopped.take(None)), ["cache", "db"]);
    }

    #[test]
    fn a_service_is_scaled_down_by_one_guard_at_a_time() {
        let stopped: Stopped<()> = Stopped::default();
        let (a, b) = (stopped.guard(), stopped.guard());
        let web = Scaled {
            id: "svc1".into(),
            name: "web".into(),
            replicas: 2,
            limit: Duration::from_secs(1),
        };
        assert!(stopped.record_service(a, &(), &web));
        // Job b, on another task of the same service, finds it held: nothing recorded, so b
        // never scales it back to the 0 it would have read.
        let zero = Scaled {
            replicas: 0,
            ..web.clone()
        };
        assert!(!stopped.record_service(b, &(), &zero));
        assert_eq!(stopped.take(Some(b)), vec![]);
        assert_eq!(
            stopped.take(Some(a)),
            vec![((), Quieted::Service(web.clone()))]
        );
        assert!(
            stopped.record_service(b, &(), &web),
            "free again once a ends"
        );
    }
}
