//! The Docker Engine seam: inspecting containers, helper containers, and archive streams in and out.
//!
//! Everything dockyard asks of the engine goes through [`Engine`], so the rest of the program deals in
//! plain values ([`ContainerInfo`], [`Mount`]) and byte streams, never in bollard's wire types.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::{Arc, Mutex};

use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, ContainerArchiveInfoOptionsBuilder,
    CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder,
    KillContainerOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder, UploadToContainerOptionsBuilder,
    WaitContainerOptionsBuilder,
};
use bollard::Docker;
use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};

use crate::owner::{Liveness, Owner};
use crate::shell::Script;

/// Label put on every helper container, so stale ones can be found after a killed run.
pub const HELPER_LABEL: &str = "dockyard.helper";
/// The helper's owner ([`Owner`] as text): who may remove it, and when it is stale.
const OWNER_LABEL: &str = "dockyard.owner";
/// What the helper does ([`Role`]).
const ROLE_LABEL: &str = "dockyard.role";
/// The name of the container the helper serves.
pub const FOR_LABEL: &str = "dockyard.for";
/// The helper's owner label, read by the lease module.
pub const OWNER: &str = OWNER_LABEL;

/// Errors from the engine, each naming the container or helper involved.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The engine did not answer at all.
    #[error("cannot reach the Docker Engine ({endpoint}): {error}; {hint}")]
    Unreachable {
        /// Where we tried to connect.
        endpoint: String,
        /// What went wrong (in the message, not repeated as a cause).
        error: String,
        /// What to check, for this kind of endpoint.
        hint: &'static str,
    },
    /// A remote engine over ssh could not be reached or did not answer.
    #[error("cannot reach the Docker Engine at {endpoint}: {message}")]
    RemoteUnreachable {
        /// `DOCKER_HOST`.
        endpoint: String,
        /// What failed and what to check.
        message: String,
    },
    /// No container by that name or id.
    #[error("no such container: {0:?} (see `docker ps -a` for the names on this engine)")]
    NoSuchContainer(String),
    /// Any other refused or failed request.
    #[error("Docker Engine failed to {action}: {message}")]
    Api {
        /// What we were doing, naming the container.
        action: String,
        /// The engine's message.
        message: String,
    },
    /// A helper ran past its deadline and was killed.
    #[error("helper container for {container:?} did not finish within {limit} and was killed (a FIFO or a hung process in a volume? see --helper-timeout)")]
    HelperTimedOut {
        /// The container the helper served.
        container: String,
        /// The deadline.
        limit: String,
    },
    /// A helper's script exited non-zero.
    #[error("helper container for {container:?} failed (exit {code}) while {action}: {output}")]
    HelperFailed {
        /// The container the helper served.
        container: String,
        /// What the helper was doing.
        action: String,
        /// Its exit code.
        code: i64,
        /// The last lines of its output.
        output: String,
    },
}

fn api(action: impl Into<String>, err: BollardError) -> DockerError {
    let message = match err {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => format!("{message} (HTTP {status_code})"),
        other => other.to_string(),
    };
    DockerError::Api {
        action: action.into(),
        message,
    }
}

fn is_not_found(err: &BollardError) -> bool {
    matches!(
        err,
        BollardError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// One mount of a container: a named or anonymous volume, or a bind mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The mount point inside the container, e.g. `/srv/media`.
    pub destination: String,
    /// `volume`, `bind`, `tmpfs`, ...
    pub kind: String,
    /// The volume's name (volumes only).
    pub volume: Option<String>,
    /// Where it comes from on the engine's host (a bind mount's host path).
    pub source: String,
    /// Whether the container may write it.
    pub rw: bool,
}

impl Mount {
    /// Whether `path` is this mount point or lies below it.
    pub fn contains(&self, path: &str) -> bool {
        let dest = self.destination.trim_end_matches('/');
        path == dest
            || path
                .strip_prefix(dest)
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// What dockyard needs to know about a container.
#[derive(Clone)]
pub struct ContainerInfo {
    /// Full container id.
    pub id: String,
    /// Name without the leading slash.
    pub name: String,
    /// The image reference it was created from (e.g. `hello_django:latest`).
    pub image: String,
    /// The image id (`sha256:...`).
    pub image_id: String,
    /// Whether it is running now.
    pub running: bool,
    /// Its mounts, in the engine's order.
    pub mounts: Vec<Mount>,
    /// The full inspect document (recorded by snapshots).
    pub inspect: serde_json::Value,
}

/// Everything but the inspect document, which holds the app's environment: no log line shows it.
impl std::fmt::Debug for ContainerInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerInfo")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("image", &self.image)
            .field("image_id", &self.image_id)
            .field("running", &self.running)
            .field("mounts", &self.mounts)
            .finish_non_exhaustive()
    }
}

/// What a path in a container is, as the engine's archive endpoint reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// Nothing there.
    Missing,
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
    /// Anything else (a device, a pipe, a socket).
    Other,
}

impl PathKind {
    /// From Go's `os.FileMode` bits, which the engine reports.
    fn from_go_mode(mode: u32) -> PathKind {
        const DIR: u32 = 1 << 31;
        const SYMLINK: u32 = 1 << 27;
        // Go's ModeType: dir, symlink, device, named pipe, socket, char device, irregular.
        const TYPE: u32 = 1 << 31 | 1 << 27 | 1 << 26 | 1 << 25 | 1 << 24 | 1 << 21 | 1 << 19;
        if mode & DIR != 0 {
            PathKind::Dir
        } else if mode & SYMLINK != 0 {
            PathKind::Symlink
        } else if mode & TYPE == 0 {
            PathKind::File
        } else {
            PathKind::Other
        }
    }
}

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
    fn label(self) -> &'static str {
        match self {
            Role::Archive => "archive",
            Role::Script => "script",
            Role::Swap => "swap",
            Role::Agent => "agent",
            Role::Cleanup => "cleanup",
        }
    }

    /// Whether a helper of this role, once running, is left to finish whoever started it.
    fn never_killed(label: &str) -> bool {
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
        }
    }
}

/// What a helper script did.
#[derive(Debug)]
pub struct ScriptRun {
    /// Exit code.
    pub code: i64,
    /// Standard output, as bytes (records may be NUL-terminated).
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: String,
    /// The exited helper, when asked to keep it (the caller removes it).
    pub helper: Option<String>,
}

/// A helper container as listed.
struct Helper {
    id: String,
    owner: Option<Owner>,
    role: String,
    running: bool,
}

/// A connection to the engine, plus the helpers this process has created and not yet removed.
#[derive(Clone)]
pub struct Engine {
    docker: Docker,
    /// Bytes over ssh, for a remote engine reached that way.
    wire: Option<Arc<crate::engine_ssh::Wire>>,
    live_helpers: Arc<Mutex<HashSet<String>>>,
    /// Containers this process stopped and has not started again, in stop order.
    stopped: Arc<Mutex<Vec<String>>>,
    /// How long a script helper may run before it is killed and reported.
    helper_timeout: std::time::Duration,
    /// The engine's id, once asked.
    id: Arc<tokio::sync::OnceCell<String>>,
}

fn endpoint() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

/// Whether `DOCKER_HOST` names an engine on this host.
pub fn is_local_endpoint(endpoint: &str) -> bool {
    endpoint.is_empty() || endpoint.starts_with("unix://") || endpoint.starts_with('/')
}

impl Engine {
    /// Connects with the usual defaults (`DOCKER_HOST` or the local socket) and negotiates the API
    /// version down to what the engine speaks (Docker 20.10 speaks 1.41). `DOCKER_HOST=ssh://...`
    /// goes through dockyard's ssh client, with `ssh_config` as for ssh destinations.
    pub async fn connect(
        ssh_config: Option<std::path::PathBuf>,
        helper_timeout: std::time::Duration,
    ) -> Result<Engine, DockerError> {
        let endpoint = endpoint();
        let (docker, wire) = if endpoint.starts_with("ssh://") {
            Self::connect_ssh(&endpoint, ssh_config).await?
        } else {
            let unreachable = |error: BollardError| DockerError::Unreachable {
                endpoint: endpoint.clone(),
                error: error.to_string().trim().to_string(),
                hint: if is_local_endpoint(&endpoint) {
                    "is dockerd running, and may this user use its socket?"
                } else {
                    "is dockerd listening there? For TLS set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH to a directory holding ca.pem, cert.pem and key.pem"
                },
            };
            let docker = Docker::connect_with_defaults().map_err(unreachable)?;
            let docker = docker.negotiate_version().await.map_err(unreachable)?;
            (docker, None)
        };
        Ok(Engine {
            docker,
            wire,
            live_helpers: Arc::default(),
            stopped: Arc::default(),
            helper_timeout,
            id: Arc::default(),
        })
    }

    async fn connect_ssh(
        endpoint: &str,
        ssh_config: Option<std::path::PathBuf>,
    ) -> Result<(Docker, Option<Arc<crate::engine_ssh::Wire>>), DockerError> {
        let failed = |message| DockerError::RemoteUnreachable {
            endpoint: endpoint.to_string(),
            message,
        };
        let spec = crate::engine_ssh::spec(endpoint, ssh_config).map_err(failed)?;
        let remote = crate::engine_ssh::connect(spec, 120)
            .await
            .map_err(failed)?;
        match remote.docker.negotiate_version().await {
            Ok(docker) => Ok((docker, Some(remote.wire))),
            Err(e) => {
                let said = remote.last_error.lock().unwrap().clone();
                let detail = if said.is_empty() { e.to_string() } else { said };
                Err(failed(format!(
                    "`docker system dial-stdio` on that host failed: {detail}; the host needs the docker CLI, and its login user access to the engine's socket"
                )))
            }
        }
    }

    /// Whether the engine runs on this host (`DOCKER_HOST` unset or a unix socket).
    pub fn is_local(&self) -> bool {
        is_local_endpoint(&endpoint())
    }

    /// Bytes that crossed the ssh connection to a remote engine so far (received, sent), or `None`
    /// for a local or tcp engine.
    pub fn wire(&self) -> Option<(u64, u64)> {
        use std::sync::atomic::Ordering::Relaxed;
        let w = self.wire.as_ref()?;
        Some((w.received.load(Relaxed), w.sent.load(Relaxed)))
    }

    /// Inspects a container by name or id, running or stopped.
    pub async fn inspect(&self, name: &str) -> Result<ContainerInfo, DockerError> {
        let raw = self
            .docker
            .inspect_container(name, None)
            .await
            .map_err(|e| {
                if is_not_found(&e) {
                    DockerError::NoSuchContainer(name.to_string())
                } else {
                    api(format!("inspect container {name:?}"), e)
                }
            })?;
        let inspect = serde_json::to_value(&raw).unwrap_or_default();
        let mounts = raw
            .mounts
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                Some(Mount {
                    destination: m.destination?,
                    kind: m
                        .typ
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| "volume".into()),
                    volume: m.name.filter(|n| !n.is_empty()),
                    source: m.source.unwrap_or_default(),
                    rw: m.rw.unwrap_or(true),
                })
            })
            .collect();
        Ok(ContainerInfo {
            id: raw.id.unwrap_or_default(),
            name: raw
                .name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string(),
            image: raw.config.and_then(|c| c.image).unwrap_or_default(),
            image_id: raw.image.unwrap_or_default(),
            running: raw.state.and_then(|s| s.running).unwrap_or(false),
            mounts,
            inspect,
        })
    }

    /// Creates (but does not start) a helper container that borrows `spec.container`'s volumes.
    /// It is labelled with this process's pid so a later run can remove it if this one is killed.
    pub async fn create_helper(&self, spec: HelperSpec<'_>) -> Result<String, DockerError> {
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
                volumes_from: spec
                    .volumes
                    .then(|| vec![format!("{}{mode}", spec.container.id)]),
                binds: (!spec.binds.is_empty()).then_some(spec.binds),
                network_mode: Some("none".into()),
                auto_remove: spec.auto_remove.then_some(true),
                // The agent's stdout is an archive: never copy it into the engine's log files.
                log_config: (spec.role == Role::Agent).then(|| HostConfigLogConfig {
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
        self.live_helpers.lock().unwrap().insert(created.id.clone());
        tracing::debug!(helper = %name, container = %target, "created helper");
        if !spec.files.is_empty() {
            let tar = files_tar(&spec.files);
            let body = futures_util::stream::iter([Ok::<_, io::Error>(Bytes::from(tar))]);
            if let Err(e) = self.upload(&created.id, "/", body).await {
                let _ = self.remove_helper(&created.id).await;
                return Err(e);
            }
        }
        Ok(created.id)
    }

    /// Removes a helper (forcefully; it holds no state of its own).
    pub async fn remove_helper(&self, id: &str) -> Result<(), DockerError> {
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            // Being removed by another call (a lease released by its drop and by the clean-up on
            // the way out): wait until it is gone, so this process never ends with it half done.
            Err(BollardError::DockerResponseServerError {
                status_code: 409, ..
            }) => {
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
    /// exists (another run holds it). Removed with the helpers on every way out.
    pub async fn create_lease(
        &self,
        name: &str,
        for_container: &ContainerInfo,
        labels: HashMap<String, String>,
    ) -> Result<Option<String>, DockerError> {
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
            Ok(created) => {
                self.live_helpers.lock().unwrap().insert(created.id.clone());
                Ok(Some(created.id))
            }
            Err(BollardError::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(None),
            Err(e) => Err(api(
                format!(
                    "create the lease {name} of container {:?}",
                    for_container.name
                ),
                e,
            )),
        }
    }

    /// The lease containers whose label `key` is `value`: id, name, labels.
    pub async fn leases(
        &self,
        key: &str,
        value: &str,
    ) -> Result<Vec<(String, String, HashMap<String, String>)>, DockerError> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{key}={value}"), format!("{ROLE_LABEL}=lease")],
        )]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let found = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| api("list dockyard's lease containers", e))?;
        Ok(found
            .into_iter()
            .filter_map(|c| {
                let name = c.names?.first()?.trim_start_matches('/').to_string();
                Some((c.id?, name, c.labels.unwrap_or_default()))
            })
            .collect())
    }

    /// Lets a started helper outlive this process: it is no longer removed on the way out.
    pub fn detach(&self, id: &str) {
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

    /// Stops a running container for a consistent backup; it is remembered so that it is started
    /// again on every way out ([`Engine::restart_stopped`]), errors and signals included.
    pub async fn stop(&self, container: &str, timeout_secs: u32) -> Result<(), DockerError> {
        self.stopped.lock().unwrap().push(container.to_string());
        let options = StopContainerOptionsBuilder::default()
            .t(timeout_secs as i32)
            .build();
        self.docker
            .stop_container(container, Some(options))
            .await
            .map_err(|e| api(format!("stop container {container:?}"), e))
    }

    /// Starts again, newest first (reverse stop order), every container this process stopped.
    /// Keeps going past failures and returns the first.
    pub async fn restart_stopped(&self) -> Result<(), DockerError> {
        let mut first = None;
        loop {
            let Some(c) = self.stopped.lock().unwrap().pop() else {
                break;
            };
            if let Err(e) = self.docker.start_container(&c, None).await {
                let err = api(format!("start container {c:?} again"), e);
                tracing::error!(error = %err, "a container dockyard stopped could not be started again");
                first.get_or_insert(err);
            }
        }
        first.map_or(Ok(()), Err)
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
            let running: Vec<Helper> = self
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
    async fn helpers(&self, for_container: Option<&str>) -> Result<Vec<Helper>, DockerError> {
        let mut labels = vec![HELPER_LABEL.to_string()];
        if let Some(c) = for_container {
            labels.push(format!("{FOR_LABEL}={c}"));
        }
        let filters = HashMap::from([("label".to_string(), labels)]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let found = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| api("list dockyard helper containers", e))?;
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
                Some(Helper {
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

    /// What is at `path` in `container` (the engine does not follow a symlink at its end).
    pub async fn stat(&self, container: &str, path: &str) -> Result<PathKind, DockerError> {
        let options = ContainerArchiveInfoOptionsBuilder::default()
            .path(path)
            .build();
        match self
            .docker
            .get_container_archive_info(container, Some(options))
            .await
        {
            Ok(stat) => Ok(PathKind::from_go_mode(stat.file_mode)),
            Err(e) if is_not_found(&e) => Ok(PathKind::Missing),
            Err(e) => Err(api(format!("look at {path} in container {container:?}"), e)),
        }
    }

    /// The contents of the small regular file at `path` in `container` (running or not), read
    /// through the archive endpoint, so a FIFO or device there is reported, never opened:
    /// `Ok(None)` if nothing is there, an error if it is not a regular file or is over `limit`.
    pub async fn read_small(
        &self,
        container: &str,
        path: &str,
        limit: u64,
    ) -> Result<Option<Vec<u8>>, DockerError> {
        match self.stat(container, path).await? {
            PathKind::Missing => return Ok(None),
            PathKind::File => {}
            other => {
                return Err(DockerError::Api {
                    action: format!("read {path} in container {container:?}"),
                    message: format!("it is a {other:?}, not a regular file"),
                })
            }
        }
        let stream = Box::pin(self.download(container, path));
        let what = format!("read {path} in container {container:?}");
        tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let reader =
                tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
            let mut archive = tar::Archive::new(reader);
            let mut entries = archive.entries()?;
            let mut e = entries
                .next()
                .ok_or_else(|| io::Error::other("the engine sent an empty archive"))??;
            if e.header().entry_type() != tar::EntryType::Regular || e.size() > limit {
                return Err(io::Error::other(format!(
                    "not a regular file of at most {limit} bytes"
                )));
            }
            let mut data = Vec::new();
            Read::take(&mut e, limit).read_to_end(&mut data)?;
            Ok(data)
        })
        .await
        .expect("reader thread panicked")
        .map(Some)
        .map_err(|e| DockerError::Api {
            action: what,
            message: e.to_string(),
        })
    }

    /// The engine's own id (`docker info`; its address if it names none): restore journals are
    /// kept per engine.
    pub async fn id(&self) -> Result<String, DockerError> {
        self.id
            .get_or_try_init(|| async {
                let info = self
                    .docker
                    .info()
                    .await
                    .map_err(|e| api("read the engine's id (docker info)", e))?;
                Ok(info.id.filter(|i| !i.is_empty()).unwrap_or_else(endpoint))
            })
            .await
            .cloned()
    }

    /// Streams `path` out of `container` as a tar archive whose first entry is the path's base name.
    pub fn download(
        &self,
        container: &str,
        path: &str,
    ) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
        let options = DownloadFromContainerOptionsBuilder::default()
            .path(path)
            .build();
        let what = format!("read {path} through helper {container}");
        self.docker
            .download_from_container(container, Some(options))
            .map_err(move |e| io::Error::other(api(what.clone(), e)))
    }

    /// Extracts a tar stream into directory `dir` of `container`. Owners come from the archive: the
    /// engine's default; `copyUIDGID` would instead chown everything to the helper's user.
    pub async fn upload(
        &self,
        container: &str,
        dir: &str,
        body: impl Stream<Item = io::Result<Bytes>> + Send + 'static,
    ) -> Result<(), DockerError> {
        let options = UploadToContainerOptionsBuilder::default().path(dir).build();
        self.docker
            .upload_to_container(container, Some(options), bollard::body_try_stream(body))
            .await
            .map_err(|e| api(format!("write into {dir} through helper {container}"), e))
    }

    /// Starts a helper created with a script, waits for it, and returns its exit code and the tail
    /// of its output.
    pub async fn run_helper(&self, id: &str) -> Result<(i64, String), DockerError> {
        self.docker
            .start_container(id, None)
            .await
            .map_err(|e| api(format!("start helper {id}"), e))?;
        let code = self.wait(id).await?;
        Ok((code, self.output_tail(id).await))
    }

    /// The last 20 lines of a helper's output (empty if the engine keeps none).
    pub async fn output_tail(&self, id: &str) -> String {
        let logs = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail("20")
            .build();
        let output: Vec<String> = self
            .docker
            .logs(id, Some(logs))
            .map_ok(|l| l.to_string())
            .try_collect()
            .await
            .unwrap_or_default();
        output.concat().trim().to_string()
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

    /// Attaches to a created helper's output (and its input, when `stdin`), then starts it, so
    /// not a byte of its output is missed.
    pub async fn attach_and_start(
        &self,
        id: &str,
        stdin: bool,
    ) -> Result<bollard::container::AttachContainerResults, DockerError> {
        let options = AttachContainerOptionsBuilder::default()
            .stream(true)
            .stdout(true)
            .stderr(true)
            .stdin(stdin)
            .build();
        let attached = self
            .docker
            .attach_container(id, Some(options))
            .await
            .map_err(|e| api(format!("attach to helper {id}"), e))?;
        self.docker
            .start_container(id, None)
            .await
            .map_err(|e| api(format!("start helper {id}"), e))?;
        Ok(attached)
    }

    /// The architecture an image was built for, as Go names it (`amd64`, `arm64`).
    pub async fn image_arch(&self, image: &str) -> Result<String, DockerError> {
        let inspected = self
            .docker
            .inspect_image(image)
            .await
            .map_err(|e| api(format!("inspect image {image}"), e))?;
        Ok(inspected.architecture.unwrap_or_default())
    }

    /// Runs a started helper (`spec` has a script), removes it unless `keep`, and returns the
    /// exit code, stdout and stderr. With `keep`, the (exited) helper's id is returned too:
    /// archive reads still work on it.
    pub async fn run_script(
        &self,
        spec: HelperSpec<'_>,
        keep: bool,
    ) -> Result<ScriptRun, DockerError> {
        let container = spec.container.name.clone();
        let role = spec.role;
        let id = self.create_helper(spec).await?;
        // A swap is never cut short (a half-swapped volume is worse than a late one); every
        // other script gets a deadline, so a FIFO or a hung process in a volume fails its job
        // instead of blocking every job after it.
        let ran = if Role::never_killed(role.label()) {
            self.run_collect(&id).await
        } else {
            match tokio::time::timeout(self.helper_timeout, self.run_collect(&id)).await {
                Ok(ran) => ran,
                Err(_) => Err(DockerError::HelperTimedOut {
                    container,
                    limit: humantime::format_duration(self.helper_timeout).to_string(),
                }),
            }
        };
        if !keep || ran.is_err() {
            self.remove_helper(&id).await?;
        }
        let (code, stdout, stderr) = ran?;
        Ok(ScriptRun {
            code,
            stdout,
            stderr,
            helper: keep.then_some(id),
        })
    }

    async fn run_collect(&self, id: &str) -> Result<(i64, Vec<u8>, String), DockerError> {
        let (code, _) = self.run_helper(id).await?;
        let logs = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .build();
        let mut stream = self.docker.logs(id, Some(logs));
        let (mut out, mut err) = (Vec::new(), String::new());
        while let Some(item) = stream.next().await {
            match item.map_err(|e| api(format!("read the output of helper {id}"), e))? {
                LogOutput::StdErr { message } => err.push_str(&String::from_utf8_lossy(&message)),
                other => out.extend_from_slice(&other.into_bytes()),
            }
        }
        Ok((code, out, err))
    }

    /// The repository digests of an image (empty for a locally built or imported one).
    pub async fn image_digests(&self, image: &str) -> Result<Vec<String>, DockerError> {
        let inspected = self
            .docker
            .inspect_image(image)
            .await
            .map_err(|e| api(format!("inspect image {image}"), e))?;
        Ok(inspected.repo_digests.unwrap_or_default())
    }

    /// Sends `signal` (e.g. `USR1`) to the container's main process.
    pub async fn signal(&self, container: &str, signal: &str) -> Result<(), DockerError> {
        let options = KillContainerOptionsBuilder::default()
            .signal(signal)
            .build();
        self.docker
            .kill_container(container, Some(options))
            .await
            .map_err(|e| api(format!("send SIG{signal} to container {container:?}"), e))
    }

    /// Runs `script` by `docker exec` in `container` as `user` (the image's user if `None`);
    /// returns its exit code and its standard output only.
    pub async fn exec_script(
        &self,
        container: &str,
        script: &crate::shell::Script,
        user: Option<&str>,
    ) -> Result<(i64, Vec<u8>), DockerError> {
        let what = format!("run {} in container {container:?}", script.name);
        let argv = script.argv();
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let (code, out, _) = self.run_exec(container, argv, user, what).await?;
        Ok((code, out))
    }

    /// Runs `command` with `/bin/sh -c` in `container`; returns its exit code and output (stdout
    /// and stderr as they came).
    pub async fn exec(&self, container: &str, command: &str) -> Result<(i64, String), DockerError> {
        let what = format!("run {command:?} in container {container:?}");
        let (code, _, both) = self
            .run_exec(container, vec!["/bin/sh", "-c", command], None, what)
            .await?;
        Ok((code, String::from_utf8_lossy(&both).into_owned()))
    }

    /// One `docker exec`: its exit code, its stdout, and stdout and stderr interleaved.
    async fn run_exec(
        &self,
        container: &str,
        argv: Vec<&str>,
        user: Option<&str>,
        what: String,
    ) -> Result<(i64, Vec<u8>, Vec<u8>), DockerError> {
        let exec = self
            .docker
            .create_exec(
                container,
                CreateExecOptions {
                    cmd: Some(argv),
                    user,
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| api(what.clone(), e))?;
        let (mut stdout, mut both) = (Vec::new(), Vec::new());
        if let StartExecResults::Attached { mut output, .. } = self
            .docker
            .start_exec(&exec.id, None)
            .await
            .map_err(|e| api(what.clone(), e))?
        {
            while let Some(Ok(chunk)) = output.next().await {
                if let LogOutput::StdOut { message } = &chunk {
                    stdout.extend_from_slice(message);
                }
                both.extend_from_slice(&chunk.into_bytes());
            }
        }
        let inspect = self
            .docker
            .inspect_exec(&exec.id)
            .await
            .map_err(|e| api(what, e))?;
        Ok((inspect.exit_code.unwrap_or(-1), stdout, both))
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

#[cfg(test)]
mod tests {
    use super::Mount;

    #[test]
    fn mount_contains_itself_and_what_is_below_only() {
        let m = Mount {
            destination: "/srv/media".into(),
            kind: "volume".into(),
            volume: None,
            source: String::new(),
            rw: true,
        };
        assert!(m.contains("/srv/media") && m.contains("/srv/media/a/b"));
        assert!(!m.contains("/srv/mediax") && !m.contains("/srv") && !m.contains("/srv/logs"));
    }
}
