//! Swarm services, for `--stop` on a container that is a service's task: the orchestrator would
//! start a replacement for a stopped task, so the service is scaled to 0 and back instead (as
//! offen/docker-volume-backup does). This file only asks the engine (which service a container
//! belongs to, its mode and replica count, scaling it, waiting for its tasks); who scaled what,
//! and scales it back on every way out, is the quiesce guard's business (`ops::quiesce`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::models::{ServiceSpec, TaskState};
use bollard::query_parameters::{ListTasksOptionsBuilder, UpdateServiceOptionsBuilder};

use super::error::{api, is_not_found};
use super::{ContainerInfo, DockerError, Engine};

/// The label the engine puts on a task's container: the id of its service.
pub const SERVICE_ID_LABEL: &str = "com.docker.swarm.service.id";
/// The label the engine puts on a task's container: the name of its service.
pub const SERVICE_NAME_LABEL: &str = "com.docker.swarm.service.name";
/// The label the engine puts on a task's container: the task's name, `<service>.<slot>.<id>`
/// for a replicated service.
pub const TASK_NAME_LABEL: &str = "com.docker.swarm.task.name";

/// How often the orchestrator's progress is polled while waiting for tasks.
const POLL: Duration = Duration::from_millis(200);

/// The engine's stop grace period for a task when the service sets none.
const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// Tries at an update that the engine refuses as out of sequence (someone else updated the
/// service between our inspect and our update).
const UPDATE_TRIES: u32 = 5;

/// The Swarm service a container is a task of, as the container's labels name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskOf {
    /// The service's id.
    pub id: String,
    /// The service's name (its id if the label is missing).
    pub name: String,
    /// The task's slot (replicated services only): the task that replaces it after a scale to 0
    /// and back takes the same slot, in a container of another name.
    pub slot: Option<u64>,
}

impl ContainerInfo {
    /// The Swarm service this container is a task of, if it is one.
    pub fn service(&self) -> Option<TaskOf> {
        let label = |key: &str| {
            self.inspect
                .get("Config")?
                .get("Labels")?
                .get(key)?
                .as_str()
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let id = label(SERVICE_ID_LABEL)?;
        let name = label(SERVICE_NAME_LABEL).unwrap_or_else(|| id.clone());
        let slot = label(TASK_NAME_LABEL).and_then(|task| {
            let rest = task.strip_prefix(&name)?.strip_prefix('.')?;
            rest.split('.').next()?.parse().ok()
        });
        Some(TaskOf { id, name, slot })
    }

    /// The name its backups are recorded under: a replicated Swarm task's service and slot
    /// (`web.1`), which the task that replaces it keeps, though its container is named anew
    /// (`web.1.<task id>`) after every scale to 0 and back; any other container's own name.
    /// Retention, `latest` and incremental parents follow it.
    pub fn backup_name(&self) -> String {
        let labels: std::collections::BTreeMap<String, String> = self
            .inspect
            .pointer("/Config/Labels")
            .and_then(|l| serde_json::from_value(l.clone()).ok())
            .unwrap_or_default();
        backup_name(&self.name, &labels)
    }
}

/// The name backups of container `name` with `labels` are recorded under (see
/// [`ContainerInfo::backup_name`]): `<service>.<slot>` for a replicated Swarm task whose name
/// is `<service>.<slot>.<task id>`, else `name`.
pub fn backup_name(name: &str, labels: &std::collections::BTreeMap<String, String>) -> String {
    let (Some(service), Some(task)) = (labels.get(SERVICE_NAME_LABEL), labels.get(TASK_NAME_LABEL))
    else {
        return name.to_string();
    };
    let slot = task
        .strip_prefix(service.as_str())
        .and_then(|rest| rest.strip_prefix('.'))
        .and_then(|rest| rest.split('.').next())
        .filter(|slot| !slot.is_empty() && slot.bytes().all(|b| b.is_ascii_digit()));
    match slot {
        Some(slot) if name.starts_with(&format!("{service}.{slot}.")) => {
            format!("{service}.{slot}")
        }
        _ => name.to_string(),
    }
}

/// How a service places its tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// A fixed number of tasks: the only mode that can be scaled to 0 and back.
    Replicated(u64),
    /// Anything else, by its API name (`global`, `replicated-job`, `global-job`).
    Other(&'static str),
}

/// What scaling needs to know of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// How it places its tasks.
    pub mode: Mode,
    /// How long the engine lets a task stop gracefully before killing it (the service's
    /// `--stop-grace-period`, 10 s unless set).
    pub grace: Duration,
}

impl Engine {
    /// Inspects the service `id` (an id or a name): its name and mode.
    pub async fn service(&self, id: &str) -> Result<Service, DockerError> {
        let (spec, _) = self.service_spec(id).await?;
        let mode = match spec.mode.clone().unwrap_or_default() {
            m if m.global.is_some() => Mode::Other("global"),
            m if m.replicated_job.is_some() => Mode::Other("replicated-job"),
            m if m.global_job.is_some() => Mode::Other("global-job"),
            m => Mode::Replicated(
                m.replicated
                    .and_then(|r| r.replicas)
                    .map_or(1, |n| n.max(0) as u64),
            ),
        };
        let grace = spec
            .task_template
            .and_then(|t| t.container_spec)
            .and_then(|c| c.stop_grace_period)
            .map_or(DEFAULT_GRACE, |ns| Duration::from_nanos(ns.max(0) as u64));
        Ok(Service {
            id: id.to_string(),
            name: spec.name.unwrap_or_else(|| id.to_string()),
            mode,
            grace,
        })
    }

    /// Sets the replica count of the replicated service `id` (named `name` in errors), with the
    /// version index the engine asks for (read again if someone else updated it meanwhile).
    async fn scale(&self, id: &str, name: &str, replicas: u64) -> Result<(), DockerError> {
        let action = || format!("scale service {name:?} to {replicas}");
        let mut tries = 0;
        loop {
            tries += 1;
            let (mut spec, version) = self.service_spec(id).await?;
            let mode = spec.mode.get_or_insert_with(Default::default);
            let replicated = mode.replicated.get_or_insert_with(Default::default);
            replicated.replicas = Some(replicas as i64);
            let options = UpdateServiceOptionsBuilder::default()
                .version(version as i32)
                .build();
            match self.docker.update_service(id, spec, options, None).await {
                Ok(_) => return Ok(()),
                Err(e) if tries < UPDATE_TRIES && e.to_string().contains("out of sequence") => {
                    continue
                }
                Err(e) => return Err(api(action(), e)),
            }
        }
    }

    /// Scales the replicated service `id` (named `name` in errors) to `replicas` and waits for
    /// its tasks: until exactly `replicas` of them run and no other is on its way up or down;
    /// with `gone`, until that container no longer runs either. Fails after `limit`, naming the
    /// service.
    pub async fn scale_and_wait(
        &self,
        id: &str,
        name: &str,
        replicas: u64,
        gone: Option<&str>,
        limit: Duration,
    ) -> Result<(), DockerError> {
        self.scale(id, name, replicas).await?;
        self.wait_for_tasks(id, name, replicas, gone, limit).await
    }

    /// Waits until exactly `running` tasks of service `id` (named `name` in errors) run, and no
    /// other task is on its way up or down; with `gone`, until that container no longer runs
    /// either (or is removed, as the orchestrator does to a scaled-down task's). Fails after
    /// `limit`, naming the service.
    async fn wait_for_tasks(
        &self,
        id: &str,
        name: &str,
        running: u64,
        gone: Option<&str>,
        limit: Duration,
    ) -> Result<(), DockerError> {
        let deadline = Instant::now() + limit;
        loop {
            let (now, busy) = self.task_counts(id).await?;
            let container_down = match gone {
                Some(c) => !self.is_running(c).await?,
                None => true,
            };
            if now == running && busy == 0 && container_down {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(DockerError::ServiceTimedOut {
                    service: name.to_string(),
                    want: running,
                    running: now,
                    limit: format!("{}s", limit.as_secs()),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The id of the container of the running task of `task`'s service in `task`'s slot (any
    /// running task of it for a task without a slot), if one runs: where a hook meant for a
    /// task that was scaled away runs once the service is back.
    pub async fn task_container(&self, task: &TaskOf) -> Result<Option<String>, DockerError> {
        let running = Some(TaskState::RUNNING);
        Ok(self
            .tasks(&task.id)
            .await?
            .into_iter()
            .filter(|t| t.desired_state == running)
            .filter(|t| task.slot.is_none() || t.slot.map(|s| s as u64) == task.slot)
            .filter_map(|t| t.status)
            .filter(|s| s.state == running)
            .find_map(|s| s.container_status.and_then(|c| c.container_id)))
    }

    /// Every task of service `id` the engine lists.
    async fn tasks(&self, id: &str) -> Result<Vec<bollard::models::Task>, DockerError> {
        let filters = HashMap::from([("service", vec![id])]);
        let options = ListTasksOptionsBuilder::default().filters(&filters).build();
        self.docker
            .list_tasks(Some(options))
            .await
            .map_err(|e| api(format!("list the tasks of service {id:?}"), e))
    }

    /// The tasks of service `id` that run and are meant to (running), and those on their way
    /// up or down (busy: created but not yet running, or running but meant to stop).
    async fn task_counts(&self, id: &str) -> Result<(u64, u64), DockerError> {
        let (mut running, mut busy) = (0, 0);
        for t in self.tasks(id).await? {
            let state = t.status.and_then(|s| s.state);
            let alive = state.is_some_and(|s| s <= TaskState::RUNNING);
            let meant = t.desired_state == Some(TaskState::RUNNING);
            match (state == Some(TaskState::RUNNING), alive, meant) {
                (true, _, true) => running += 1,
                (_, true, _) => busy += 1,
                _ => {}
            }
        }
        Ok((running, busy))
    }

    /// Whether container `c` runs (a removed one does not).
    async fn is_running(&self, c: &str) -> Result<bool, DockerError> {
        match self.docker.inspect_container(c, None).await {
            Ok(i) => Ok(i.state.and_then(|s| s.running).unwrap_or(false)),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(api(format!("inspect container {c:?}"), e)),
        }
    }

    /// The spec of service `id` and its version index.
    async fn service_spec(&self, id: &str) -> Result<(ServiceSpec, u64), DockerError> {
        let s = self
            .docker
            .inspect_service(id, None)
            .await
            .map_err(|e| api(format!("inspect service {id:?}"), e))?;
        let version = s.version.and_then(|v| v.index).unwrap_or(0);
        Ok((s.spec.unwrap_or_default(), version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_names_its_service_by_label_and_a_plain_container_none() {
        let mut info = ContainerInfo::sample(&[]);
        assert_eq!(info.service(), None);
        info.inspect = serde_json::json!({"Config": {"Labels": {
            SERVICE_ID_LABEL: "abc123",
            SERVICE_NAME_LABEL: "media",
        }}});
        let want = TaskOf {
            id: "abc123".into(),
            name: "media".into(),
            slot: None,
        };
        assert_eq!(info.service(), Some(want));
        info.inspect = serde_json::json!({"Config": {"Labels": {
            SERVICE_ID_LABEL: "abc123",
            SERVICE_NAME_LABEL: "media.app",
            TASK_NAME_LABEL: "media.app.2.q1w2e3",
        }}});
        assert_eq!(info.service().and_then(|s| s.slot), Some(2));
        // A global service's task is named after its node: no slot.
        info.inspect = serde_json::json!({"Config": {"Labels": {
            SERVICE_ID_LABEL: "abc123",
            SERVICE_NAME_LABEL: "agent",
            TASK_NAME_LABEL: "agent.n0de1d.q1w2e3",
        }}});
        assert_eq!(info.service().and_then(|s| s.slot), None);
        info.inspect = serde_json::json!({"Config": {"Labels": {SERVICE_ID_LABEL: "abc123"}}});
        assert_eq!(info.service().map(|s| s.name), Some("abc123".into()));
    }
}
