//! The Docker Engine seam: connecting, inspecting containers, and the helper containers, archive
//! streams and commands the rest of dockyard works through.
//!
//! Everything dockyard asks of the engine goes through [`Engine`], so the rest of the program deals in
//! plain values ([`ContainerInfo`], [`Mount`]) and byte streams, never in bollard's wire types. This
//! file connects and inspects; [`helper`] creates helper containers (and the [`Helper`] guard that
//! removes them), [`leftovers`] finds the ones earlier runs left, [`archive`] streams files in and
//! out, [`exec`] runs commands with bounded output, and [`error`] is the seam's one error type.
//! [`Engine::stop`] and [`Engine::start_again`] only ask the engine; who stopped what, and starts it
//! again, is the quiesce guard's business (`ops::quiesce`).

pub mod archive;
pub mod discover;
pub mod error;
pub mod exec;
pub mod helper;
pub mod leftovers;
pub mod swarm;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use bollard::errors::Error as BollardError;
use bollard::query_parameters::{KillContainerOptionsBuilder, StopContainerOptionsBuilder};
use bollard::Docker;

pub use error::DockerError;
pub use exec::{Capture, ExecOutput};
pub use helper::{Helper, HelperSpec, Role, FOR_LABEL, HELPER_LABEL, OWNER};

use error::{api, is_not_found};

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

/// A connection to the engine, plus the helpers this process has created and not yet removed.
#[derive(Clone)]
pub struct Engine {
    docker: Docker,
    /// Where it was reached (`unix:///var/run/docker.sock`, `tcp://…`, `ssh://…`).
    endpoint: Arc<str>,
    /// Bytes over ssh, for a remote engine reached that way.
    wire: Option<Arc<crate::engine_ssh::Wire>>,
    live_helpers: Arc<Mutex<HashSet<String>>>,
    /// How long a script helper may run before it is killed and reported.
    helper_timeout: std::time::Duration,
    /// The engine's id, once asked.
    id: Arc<tokio::sync::OnceCell<String>>,
}

/// Whether `DOCKER_HOST` names an engine on this host.
pub fn is_local_endpoint(endpoint: &str) -> bool {
    endpoint.is_empty() || endpoint.starts_with("unix://") || endpoint.starts_with('/')
}

impl Engine {
    /// Connects to the engine at `endpoint` (`unix://…`, `tcp://…` (TLS with the certificates
    /// in `tls` when given, else as `DOCKER_TLS_VERIFY` says), `ssh://…`) and negotiates the API version down to what the engine speaks (Docker
    /// 20.10 speaks 1.41). `ssh://…` goes through dockyard's ssh client, with `ssh_config` as
    /// for ssh destinations.
    pub async fn connect_to(
        endpoint: &str,
        ssh_config: Option<std::path::PathBuf>,
        tls: Option<&std::path::Path>,
        helper_timeout: std::time::Duration,
    ) -> Result<Engine, DockerError> {
        let (docker, wire) = if endpoint.starts_with("ssh://") {
            Self::connect_ssh(endpoint, ssh_config).await?
        } else {
            let unreachable = |error: BollardError| DockerError::Unreachable {
                endpoint: endpoint.to_string(),
                error: error.to_string().trim().to_string(),
                hint: if is_local_endpoint(endpoint) {
                    "is dockerd running, and may this user use its socket?"
                } else {
                    "is dockerd listening there? For TLS set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH to a directory holding ca.pem, cert.pem and key.pem"
                },
            };
            let docker = match tls {
                // The config's own certificates, whatever DOCKER_TLS_VERIFY says.
                Some(dir) => Docker::connect_with_ssl(
                    endpoint,
                    &dir.join("key.pem"),
                    &dir.join("cert.pem"),
                    &dir.join("ca.pem"),
                    120,
                    bollard::API_DEFAULT_VERSION,
                ),
                None => Docker::connect_with_host(endpoint),
            }
            .map_err(unreachable)?;
            let docker = docker.negotiate_version().await.map_err(unreachable)?;
            (docker, None)
        };
        Ok(Engine {
            docker,
            endpoint: endpoint.into(),
            wire,
            live_helpers: Arc::default(),
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
        is_local_endpoint(&self.endpoint)
    }

    /// Where the engine was reached.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
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

    /// Stops a running container, waiting up to `timeout_secs` for it to end gracefully. Who
    /// stopped it starts it again (the quiesce guard of `ops` keeps that list).
    pub async fn stop(&self, container: &str, timeout_secs: u32) -> Result<(), DockerError> {
        let options = StopContainerOptionsBuilder::default()
            .t(timeout_secs as i32)
            .build();
        self.docker
            .stop_container(container, Some(options))
            .await
            .map_err(|e| api(format!("stop container {container:?}"), e))
    }

    /// Starts again a container dockyard stopped.
    pub async fn start_again(&self, container: &str) -> Result<(), DockerError> {
        self.docker
            .start_container(container, None)
            .await
            .map_err(|e| api(format!("start container {container:?} again"), e))
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
                Ok(info
                    .id
                    .filter(|i| !i.is_empty())
                    .unwrap_or_else(|| self.endpoint.to_string()))
            })
            .await
            .cloned()
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
}

#[cfg(test)]
impl ContainerInfo {
    /// A running container `web` with `mounts` (destination, type), for tests: volumes are
    /// named after their destination, bind sources lie under `/host`.
    pub(crate) fn sample(mounts: &[(&str, &str)]) -> ContainerInfo {
        ContainerInfo {
            id: "cid".into(),
            name: "web".into(),
            image: "img".into(),
            image_id: "sha256:i".into(),
            running: true,
            mounts: mounts
                .iter()
                .map(|(d, k)| Mount {
                    destination: d.to_string(),
                    kind: k.to_string(),
                    volume: (*k == "volume").then(|| format!("vol{}", d.replace('/', "-"))),
                    source: format!("/host{d}"),
                    rw: true,
                })
                .collect(),
            inspect: serde_json::Value::Null,
        }
    }
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
