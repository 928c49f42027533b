//! Containers that opt in to dockyard by label, as the engine lists them, and the engine's
//! container events a daemon follows to find them again when they come, change or go.

use std::collections::{BTreeMap, HashMap};

use bollard::query_parameters::{EventsOptionsBuilder, ListContainersOptionsBuilder};
use futures_util::stream::{Stream, StreamExt};

use super::error::api;
use super::{DockerError, Engine};

/// Swarm marks its tasks' containers so: an exited task's container is history, not a job.
const SWARM_TASK_LABEL: &str = "com.docker.swarm.task.id";

/// A container carrying the opt-in label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labelled {
    /// Its id.
    pub id: String,
    /// Its name, without the leading slash.
    pub name: String,
    /// Every label it carries.
    pub labels: BTreeMap<String, String>,
}

/// What happened to a container, as the engine's event stream says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    /// `create`, `destroy` or `rename`.
    pub action: String,
    /// The container's name (its new one, for `rename`).
    pub name: String,
}

impl Engine {
    /// Every container, running or stopped, carrying `label` (`key=value`), but for the exited
    /// tasks of Swarm services; by name.
    pub async fn labelled_containers(&self, label: &str) -> Result<Vec<Labelled>, DockerError> {
        let filters = HashMap::from([("label".to_string(), vec![label.to_string()])]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let listed = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| api("list the containers labelled for dockyard", e))?;
        let mut found: Vec<Labelled> = listed
            .into_iter()
            .filter_map(|c| {
                let labels: BTreeMap<String, String> =
                    c.labels.unwrap_or_default().into_iter().collect();
                let running = c.state.as_ref().is_some_and(|s| s.to_string() == "running");
                if labels.contains_key(SWARM_TASK_LABEL) && !running {
                    return None;
                }
                Some(Labelled {
                    id: c.id?,
                    name: c.names?.first()?.trim_start_matches('/').to_string(),
                    labels,
                })
            })
            .collect();
        found.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(found)
    }

    /// The engine's container events from now on that may change which containers carry one
    /// of `labels` (any value): created, removed or renamed containers carrying it. The stream
    /// ends (or yields an error) when the connection to the engine does.
    pub fn container_events(
        &self,
        labels: &[&str],
    ) -> impl Stream<Item = Result<ContainerEvent, DockerError>> + Send + 'static {
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            (
                "event".to_string(),
                vec!["create".into(), "destroy".into(), "rename".into()],
            ),
        ]);
        let options = EventsOptionsBuilder::default().filters(&filters).build();
        let labels: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
        // The engine ANDs label filters; one of several is picked here, from the event's
        // attributes (a container's labels are among them).
        self.docker.events(Some(options)).filter_map(move |e| {
            let event = e
                .map_err(|e| api("follow the engine's container events", e))
                .map(|e| {
                    let attributes = e.actor.and_then(|a| a.attributes).unwrap_or_default();
                    let ours = labels.iter().any(|l| attributes.contains_key(l));
                    ours.then(|| ContainerEvent {
                        action: e.action.unwrap_or_default(),
                        name: attributes.get("name").cloned().unwrap_or_default(),
                    })
                })
                .transpose();
            std::future::ready(event)
        })
    }
}
