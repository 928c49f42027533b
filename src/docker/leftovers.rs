//! What earlier runs left on the engine, found by dockyard's labels: helpers of runs that are gone
//! (removed), swaps and clean-ups still running (waited for, never killed), and leases.

use std::collections::HashMap;

use bollard::query_parameters::ListContainersOptionsBuilder;

use super::error::api;
use super::helper::{Role, FOR_LABEL, HELPER_LABEL, OWNER_LABEL, ROLE_LABEL};
use super::{DockerError, Engine};
use crate::owner::{Liveness, Owner};

/// A helper container as listed.
struct Listed {
    id: String,
    owner: Option<Owner>,
    role: String,
    running: bool,
}

impl Engine {
    /// Every container, running or not, carrying all of `labels` (`key` or `key=value`);
    /// `action` names the listing in errors.
    async fn labelled(
        &self,
        labels: Vec<String>,
        action: &str,
    ) -> Result<Vec<bollard::models::ContainerSummary>, DockerError> {
        let filters = HashMap::from([("label".to_string(), labels)]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        self.docker
            .list_containers(Some(options))
            .await
            .map_err(|e| api(action, e))
    }

    /// The lease containers whose label `key` is `value`: id, name, labels.
    pub async fn leases(
        &self,
        key: &str,
        value: &str,
    ) -> Result<Vec<(String, String, HashMap<String, String>)>, DockerError> {
        let found = self
            .labelled(
                vec![format!("{key}={value}"), format!("{ROLE_LABEL}=lease")],
                "list dockyard's lease containers",
            )
            .await?;
        Ok(found
            .into_iter()
            .filter_map(|c| {
                let name = c.names?.first()?.trim_start_matches('/').to_string();
                Some((c.id?, name, c.labels.unwrap_or_default()))
            })
            .collect())
    }

    /// Removes helpers left behind by dockyard runs that are gone (e.g. killed with SIGKILL).
    /// Helpers of live runs are left alone, and so is a swap that still runs, whoever started it:
    /// killing it would leave a volume half-swapped. Helpers of other hosts count as gone after a
    /// day.
    pub async fn remove_stale_helpers(&self) -> Result<usize, DockerError> {
        let mut removed = 0;
        for h in self.helpers(None).await? {
            let stale = match &h.owner {
                Some(o) => o.liveness(24 * 3600) == Liveness::Gone,
                None => false,
            };
            if !stale || (Role::never_killed(&h.role) && h.running) {
                continue;
            }
            tracing::warn!(helper = %h.id, owner = ?h.owner.as_ref().map(|o| o.to_string()), "removing helper container left by a run that is gone");
            // Another run may be removing it too: a failure here is not this run's problem.
            match self.remove_helper(&h.id).await {
                Ok(()) => removed += 1,
                Err(e) => {
                    tracing::debug!(helper = %h.id, error = %e, "could not remove a stale helper")
                }
            }
        }
        Ok(removed)
    }

    /// Waits until no swap helper for container `name` runs (a restore's swap, possibly of a killed
    /// run, finishing on its own), nor, with `cleanup`, a restore's clean-up; logs what it waits
    /// for.
    pub async fn wait_for_swaps(&self, name: &str, cleanup: bool) -> Result<(), DockerError> {
        let mut logged = false;
        loop {
            let running: Vec<Listed> = self
                .helpers(Some(name))
                .await?
                .into_iter()
                .filter(|h| h.running && (h.role == "swap" || (cleanup && h.role == "cleanup")))
                .collect();
            if running.is_empty() {
                return Ok(());
            }
            if !logged {
                tracing::warn!(container = name, helper = %running[0].id, "a restore's {} is still running in this container's volumes; waiting for it to finish", if running[0].role == "swap" { "swap" } else { "clean-up" });
                logged = true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }

    /// Whether a clean-up helper for container `name` runs now.
    pub async fn cleanup_running(&self, name: &str) -> Result<bool, DockerError> {
        Ok(self
            .helpers(Some(name))
            .await?
            .iter()
            .any(|h| h.running && h.role == "cleanup"))
    }

    /// Stops and removes every helper of run `run` (a run that is gone: its helpers may still be
    /// writing into the volume) and returns once the engine has removed them, so nothing of that
    /// run writes while its leftovers are removed. A swap or clean-up that still runs is left to
    /// finish; the count of those is returned.
    pub async fn remove_helpers_of(&self, name: &str, run: &str) -> Result<usize, DockerError> {
        let mut left = 0;
        for h in self.helpers(Some(name)).await? {
            if h.owner.as_ref().map(|o| o.run.as_str()) != Some(run) {
                continue;
            }
            if Role::never_killed(&h.role) && h.running {
                left += 1;
                continue;
            }
            tracing::warn!(helper = %h.id, run, "removing a helper of a run that is gone before removing its leftovers");
            self.remove_helper(&h.id).await?;
        }
        Ok(left)
    }

    /// dockyard's helper containers (of `for_container` only, if given).
    async fn helpers(&self, for_container: Option<&str>) -> Result<Vec<Listed>, DockerError> {
        let mut labels = vec![HELPER_LABEL.to_string()];
        if let Some(c) = for_container {
            labels.push(format!("{FOR_LABEL}={c}"));
        }
        let found = self
            .labelled(labels, "list dockyard helper containers")
            .await?;
        Ok(found
            .into_iter()
            .filter_map(|c| {
                let labels = c.labels.unwrap_or_default();
                // dockyard 0.1.0 labelled helpers with host and pid only.
                let legacy = || {
                    Some(Owner {
                        host: labels.get("dockyard.host")?.clone(),
                        pid: labels.get("dockyard.pid")?.parse().ok()?,
                        start: 0,
                        run: "legacy".into(),
                        since: c.created.unwrap_or(0),
                        ns: String::new(),
                    })
                };
                Some(Listed {
                    id: c.id?,
                    owner: labels
                        .get(OWNER_LABEL)
                        .and_then(|o| Owner::parse(o))
                        .or_else(legacy),
                    role: labels.get(ROLE_LABEL).cloned().unwrap_or_default(),
                    running: c.state.map(|s| s.to_string()).as_deref() == Some("running"),
                })
            })
            .collect())
    }
}
