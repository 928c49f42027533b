//! Helper containers: what one is for ([`HelperSpec`], [`Role`]), creating it with dockyard's
//! labels, and the [`Helper`] guard that owns it until it is removed.
//!
//! Every helper this process creates is also recorded in the engine's live set, which
//! [`Engine::remove_live_helpers`] empties on every way out (errors, signals, panics). The guard
//! adds prompt removal: [`Helper::remove`] on the normal path (its error reported), and on drop a
//! removal spawned on the runtime, so an early `?` or a cancelled future never needs a
//! hand-written removal. The id stays in the live set until the engine confirms the removal, so
//! a process that ends before the spawned task ran still removes it on the way out (and a removal
//! already under way is waited for, not repeated). A helper meant to outlive this process (a
//! clean-up left running, a detached swap) is let go with [`Helper::detach`].

use std::collections::{HashMap, HashSet};
use std::io;

use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount as EngineMount, MountType,
    MountVolumeOptions,
};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder,
    WaitContainerOptionsBuilder,
};
use bytes::Bytes;
use futures_util::StreamExt;

use super::error::{api, is_conflict, is_not_found};
use super::{ContainerInfo, DockerError, Engine};
use crate::owner::Owner;
use crate::shell::Script;

/// Label put on every helper container, so stale ones can be found after a killed run.
pub const HELPER_LABEL: &str = "dockyard.helper";
/// The helper's owner ([`Owner`] as text): who may remove it, and when it is stale.
pub(crate) const OWNER_LABEL: &str = "dockyard.owner";
/// What the helper does ([`Role`]).
pub(crate) const ROLE_LABEL: &str = "dockyard.role";
/// The name of the container the helper serves.
pub const FOR_LABEL: &str = "dockyard.for";
/// The helper's owner label, read by the lease module.
pub const OWNER: &str = OWNER_LABEL;

/// What a helper does; recorded as a label so a later run knows what it may remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Reads or writes volumes through the engine's archive endpoint; never started.
    Archive,
    /// Runs a short script (log rotation, clean-up).
    Script,
    /// Runs the swap of a restore: never killed while it runs, by this run or a later one.
    Swap,
    /// Runs dockyard's agent (`agent pack`), its output streamed back.
    Agent,
    /// Deletes what a finished restore moved aside; may outlive the run that started it, and is
    /// never killed by a later one.
    Cleanup,
}

impl Role {
    /// Its label value (`dockyard.role`).
    pub(crate) fn label(self) -> &'static str {
        match self {
            Role::Archive => "archive",
            Role::Script => "script",
            Role::Swap => "swap",
            Role::Agent => "agent",
            Role::Cleanup => "cleanup",
        }
    }

    /// Whether a helper of this role, once running, is left to finish whoever started it.
    pub(crate) fn never_killed(label: &str) -> bool {
        label == "swap" || label == "cleanup"
    }
}

/// What a helper container is for and how to create it.
pub struct HelperSpec<'a> {
    /// The container whose volumes the helper borrows.
    pub container: &'a ContainerInfo,
    /// Borrow them at all: a helper that holds host directories of dockyard's own ([`binds`])
    /// never also holds the app's volumes, whose symlinks could point into those.
    ///
    /// [`binds`]: HelperSpec::binds
    pub volumes: bool,
    /// Borrow the volumes read-only (backups) or read-write (restores).
    pub read_only: bool,
    /// The image to run the helper from.
    pub image: &'a str,
    /// The command line of helpers that are started (a script's or the agent's); `None` for
    /// archive-only helpers.
    pub command: Option<Vec<String>>,
    /// Run as this `uid:gid` (default root, whatever the image's USER).
    pub user: Option<String>,
    /// What it does.
    pub role: Role,
    /// Extra bind mounts (`host:container[:ro]`), e.g. the directory of a single-file mount.
    pub binds: Vec<String>,
    /// Keep its standard input open for an attached writer (closed when the writer is done).
    pub stdin: bool,
    /// Files put into the helper's own root file system before it starts (path, content): the
    /// app cannot reach them, unlike anything in its volumes.
    pub files: Vec<(String, Vec<u8>)>,
    /// Let the engine remove the helper when it exits (work that may outlive this run).
    pub auto_remove: bool,
    /// Let the engine keep its output in its log, where a script's run reads it back. Off for
    /// the agent: its stdout is an archive and its stderr binary frames, read as they come.
    pub log: bool,
}

impl<'a> HelperSpec<'a> {
    /// A never-started helper for the archive endpoint.
    pub fn archive(container: &'a ContainerInfo, image: &'a str, read_only: bool) -> Self {
        HelperSpec {
            container,
            volumes: true,
            read_only,
            image,
            command: None,
            user: None,
            role: Role::Archive,
            binds: Vec::new(),
            stdin: false,
            files: Vec::new(),
            auto_remove: false,
            log: true,
        }
    }

    /// A helper that runs `script` as root with the container's volumes read-write.
    pub fn script(container: &'a ContainerInfo, image: &'a str, script: Script) -> Self {
        HelperSpec {
            container,
            volumes: true,
            read_only: false,
            image,
            command: Some(script.argv()),
            user: None,
            role: Role::Script,
            binds: Vec::new(),
            stdin: false,
            files: Vec::new(),
            auto_remove: false,
            log: true,
        }
    }
}

/// A created helper container, removed on every way out: [`Helper::remove`] on the normal path,
/// a removal spawned on the runtime when dropped, and the engine's clean-up on the way out if
/// the process ends first. [`Helper::detach`] lets it outlive the guard and the process.
pub struct Helper {
    engine: Engine,
    /// `None` once removed, detached or handed over.
    id: Option<String>,
}

impl std::fmt::Debug for Helper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // As its id: a lease's debug line reads as before the guard.
        std::fmt::Debug::fmt(&self.id.as_deref().unwrap_or("(removed)"), f)
    }
}

impl Helper {
    /// The container id.
    pub fn id(&self) -> &str {
        self.id
            .as_deref()
            .expect("a helper's id is there until it is consumed")
    }

    /// Removes the helper now, forcefully, and reports a failure (the engine's clean-up on the
    /// way out tries again).
    pub async fn remove(mut self) -> Result<(), DockerError> {
        let id = self.id.take().expect("held until consumed");
        self.engine.remove_helper(&id).await
    }

    /// Lets the helper outlive this guard and this process (work left to finish on its own, such
    /// as a clean-up the engine removes when it exits): it is no longer removed by anyone here.
    pub fn detach(mut self) -> String {
        let id = self.id.take().expect("held until consumed");
        self.engine.detach(&id);
        id
    }

    /// Hands the helper over by id: the caller removes it ([`Engine::remove_helper`]), and the
    /// engine's clean-up still does on the way out.
    pub fn into_id(mut self) -> String {
        self.id.take().expect("held until consumed")
    }

    /// Waits for the started helper to exit and returns its exit code.
    pub async fn wait(&self) -> Result<i64, DockerError> {
        self.engine.wait(self.id()).await
    }

    /// Attaches to the helper's output (and its input, when `stdin`), then starts it, so not a
    /// byte of its output is missed.
    pub async fn attach_and_start(
        &self,
        stdin: bool,
    ) -> Result<bollard::container::AttachContainerResults, DockerError> {
        let id = self.id();
        let options = AttachContainerOptionsBuilder::default()
            .stream(true)
            .stdout(true)
            .stderr(true)
            .stdin(stdin)
            .build();
        let attached = self
            .engine
            .docker
            .attach_container(id, Some(options))
            .await
            .map_err(|e| api(format!("attach to helper {id}"), e))?;
        self.engine.start(id).await?;
        Ok(attached)
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else { return };
        // Still in the live set: the clean-up on the way out removes it if this task never runs.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let engine = self.engine.clone();
            handle.spawn(async move {
                if let Err(e) = engine.remove_helper(&id).await {
                    tracing::debug!(helper = %id, error = %e, "could not remove a dropped helper yet");
                }
            });
        }
    }
}

/// `container`'s volumes and bind mounts as mounts of their own (read-only if `read_only` or
/// if they are in the container), but those at a destination one of `binds` takes. Volumes are
/// mounted `nocopy`: the helper's image never seeds one.
fn borrowed_mounts(
    container: &ContainerInfo,
    read_only: bool,
    binds: &[String],
) -> Vec<EngineMount> {
    let taken = |dest: &str| binds.iter().any(|b| b.split(':').nth(1) == Some(dest));
    container
        .mounts
        .iter()
        .filter(|m| !taken(&m.destination))
        .filter_map(|m| {
            let (typ, source, volume_options) = match (m.kind.as_str(), &m.volume) {
                ("volume", Some(name)) => (
                    MountType::VOLUME,
                    name.clone(),
                    Some(MountVolumeOptions {
                        no_copy: Some(true),
                        ..Default::default()
                    }),
                ),
                ("bind", _) => (MountType::BIND, m.source.clone(), None),
                _ => return None,
            };
            Some(EngineMount {
                target: Some(m.destination.clone()),
                source: Some(source),
                typ: Some(typ),
                read_only: Some(read_only || !m.rw),
                volume_options,
                ..Default::default()
            })
        })
        .collect()
}

impl Engine {
    /// Creates (but does not start) a helper container that borrows `spec.container`'s volumes,
    /// owned by the returned guard. It is labelled with this process's owner so a later run can
    /// remove it if this one is killed.
    pub async fn helper(&self, spec: HelperSpec<'_>) -> Result<Helper, DockerError> {
        let target = &spec.container.name;
        let suffix: u32 = rand::random();
        let name = format!("dockyard-helper-{target}-{suffix:08x}");
        let labels = HashMap::from([
            (HELPER_LABEL.to_string(), "1".to_string()),
            (OWNER_LABEL.to_string(), Owner::current().to_string()),
            (ROLE_LABEL.to_string(), spec.role.label().to_string()),
            (FOR_LABEL.to_string(), target.clone()),
        ]);
        let mode = if spec.read_only { ":ro" } else { "" };
        // A Swarm task's container is removed when its service is scaled to 0 (`--stop`), and
        // `VolumesFrom` needs it: its mounts are named one by one instead.
        let by_mounts = spec.container.service().is_some();
        let (entrypoint, cmd, user) = match spec.command {
            // Root unless told otherwise, whatever the image's USER, so the script may chown;
            // numeric, so no passwd lookup.
            Some(mut argv) => {
                let rest = argv.split_off(1);
                (argv, rest, Some(spec.user.unwrap_or_else(|| "0:0".into())))
            }
            // Never started: the command only has to exist for the engine to accept the create.
            None => (vec!["/bin/true".to_string()], vec![], None),
        };
        let env = crate::fault::helper_env();
        let body = ContainerCreateBody {
            image: Some(spec.image.to_string()),
            entrypoint: Some(entrypoint),
            cmd: Some(cmd),
            user,
            env: (!env.is_empty()).then_some(env),
            labels: Some(labels),
            network_disabled: Some(true),
            open_stdin: Some(spec.stdin),
            stdin_once: Some(spec.stdin),
            attach_stdin: Some(spec.stdin),
            host_config: Some(HostConfig {
                volumes_from: (spec.volumes && !by_mounts)
                    .then(|| vec![format!("{}{mode}", spec.container.id)]),
                mounts: (spec.volumes && by_mounts)
                    .then(|| borrowed_mounts(spec.container, spec.read_only, &spec.binds)),
                binds: (!spec.binds.is_empty()).then_some(spec.binds),
                network_mode: Some("none".into()),
                auto_remove: spec.auto_remove.then_some(true),
                // The agent's output is an archive and frames: never copied into log files.
                log_config: (!spec.log).then(|| HostConfigLogConfig {
                    typ: Some("none".into()),
                    config: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| {
                api(
                    format!(
                        "create a helper container for {target:?} from image {:?}",
                        spec.image
                    ),
                    e,
                )
            })?;
        let helper = self.guard(created.id);
        tracing::debug!(helper = %name, container = %target, "created helper");
        if !spec.files.is_empty() {
            let tar = files_tar(&spec.files);
            let body = futures_util::stream::iter([Ok::<_, io::Error>(Bytes::from(tar))]);
            if let Err(e) = self.upload(helper.id(), "/", body).await {
                let _ = helper.remove().await;
                return Err(e);
            }
        }
        Ok(helper)
    }

    /// Records `id` in the live set and puts it in a guard.
    fn guard(&self, id: String) -> Helper {
        self.live_helpers.lock().unwrap().insert(id.clone());
        Helper {
            engine: self.clone(),
            id: Some(id),
        }
    }

    /// Removes a helper (forcefully; it holds no state of its own).
    pub async fn remove_helper(&self, id: &str) -> Result<(), DockerError> {
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            // Being removed by another call (a lease released by its drop and by the clean-up on
            // the way out): wait until it is gone, so this process never ends with it half done.
            Err(e) if is_conflict(&e) => {
                for _ in 0..100 {
                    match self.docker.inspect_container(id, None).await {
                        Err(e) if is_not_found(&e) => break,
                        _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
                    }
                }
            }
            Err(e) => return Err(api(format!("remove helper container {id}"), e)),
        }
        self.live_helpers.lock().unwrap().remove(id);
        Ok(())
    }

    /// Creates (never starts) the lease container `name` for container `for_container`, with
    /// `labels` and dockyard's helper labels (role `lease`): `Ok(None)` if a container of that name
    /// exists (another run holds it). Owned by the returned guard, like any helper.
    pub async fn create_lease(
        &self,
        name: &str,
        for_container: &ContainerInfo,
        labels: HashMap<String, String>,
    ) -> Result<Option<Helper>, DockerError> {
        let mut labels = labels;
        labels.extend([
            (HELPER_LABEL.to_string(), "1".to_string()),
            (OWNER_LABEL.to_string(), Owner::current().to_string()),
            (ROLE_LABEL.to_string(), "lease".to_string()),
            (FOR_LABEL.to_string(), for_container.name.clone()),
        ]);
        let body = ContainerCreateBody {
            image: Some(for_container.image_id.clone()),
            entrypoint: Some(vec!["/dockyard-lease-never-runs".into()]),
            labels: Some(labels),
            network_disabled: Some(true),
            host_config: Some(HostConfig {
                network_mode: Some("none".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default().name(name).build();
        match self.docker.create_container(Some(options), body).await {
            Ok(created) => Ok(Some(self.guard(created.id))),
            Err(e) if is_conflict(&e) => Ok(None),
            Err(e) => Err(api(
                format!(
                    "create the lease {name} of container {:?}",
                    for_container.name
                ),
                e,
            )),
        }
    }

    /// Lets a started helper outlive this process: it is no longer removed on the way out (see
    /// [`Helper::detach`]).
    fn detach(&self, id: &str) {
        self.live_helpers.lock().unwrap().remove(id);
    }

    /// Removes every helper this process still has; called on every way out, errors and signals included.
    pub async fn remove_live_helpers(&self) {
        let ids: Vec<String> = self.live_helpers.lock().unwrap().iter().cloned().collect();
        for id in ids {
            if let Err(e) = self.remove_helper(&id).await {
                tracing::warn!(helper = %id, error = %e, "could not remove helper container");
            }
        }
    }

    /// Starts a created helper.
    pub(crate) async fn start(&self, id: &str) -> Result<(), DockerError> {
        self.docker
            .start_container(id, None)
            .await
            .map_err(|e| api(format!("start helper {id}"), e))
    }

    /// Waits for a started helper to exit and returns its exit code.
    pub async fn wait(&self, id: &str) -> Result<i64, DockerError> {
        let wait = WaitContainerOptionsBuilder::default()
            .condition("not-running")
            .build();
        let mut code = 0;
        let mut waits = self.docker.wait_container(id, Some(wait));
        while let Some(r) = waits.next().await {
            match r {
                Ok(w) => code = w.status_code,
                Err(BollardError::DockerContainerWaitError { code: c, .. }) => code = c,
                Err(e) => return Err(api(format!("wait for helper {id}"), e)),
            }
        }
        Ok(code)
    }
}

/// A tar of small files (root, mode 0600, directories 0700 as needed) for a helper's root.
fn files_tar(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dirs = HashSet::new();
    for (path, data) in files {
        let path = path.trim_start_matches('/');
        let mut at = String::new();
        for part in path
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map(|(_, d)| d)
            .unwrap_or(&[])
        {
            at = if at.is_empty() {
                part.to_string()
            } else {
                format!("{at}/{part}")
            };
            if dirs.insert(at.clone()) {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o700);
                h.set_size(0);
                let _ = b.append_data(&mut h, &at, io::empty());
            }
        }
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o600);
        h.set_size(data.len() as u64);
        let _ = b.append_data(&mut h, path, &data[..]);
    }
    b.into_inner().unwrap_or_default()
}
