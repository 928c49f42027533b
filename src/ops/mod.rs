//! The library core: the work each command does (back up, restore, prune, verify, ship logs),
//! as functions that take typed values and a [`Session`] and return outcome values. Nothing here
//! prints or sees the renderer; `commands/` turns outcomes into text or one JSON document and
//! `jobs/` runs plans of them.

pub mod backup;
pub mod chain;
pub mod key;
pub mod list;
pub mod logs;
pub mod prepare;
pub mod prune;
pub mod quiesce;
pub mod restore;
pub mod restore_db;
pub mod verify;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Result;
use tokio::sync::OnceCell;

use crate::critical::Critical;
use crate::docker::{ContainerInfo, Engine};
use crate::settings::{Dirs, EngineAddr};
use crate::swap::journal::Journal;
use crate::swap::ledger::Ledger;

/// The name of the engine `DOCKER_HOST` (or the local socket) reaches.
pub const DEFAULT_ENGINE: &str = "default";

/// What the work of one invocation shares: the engine (connected on first use), where locks
/// live, the work a signal must wait for, and the staging to remove if the run ends early.
pub struct Session {
    /// Where locks and state live, decided once.
    pub dirs: Dirs,
    /// Work a signal must wait for (a restore's swap; a backup's archive and manifest).
    pub critical: Critical,
    /// Whether long work shows a progress line on stderr (a terminal only).
    pub progress: bool,
    /// The engines jobs name, by name: each one's address, and its connection once made;
    /// [`DEFAULT_ENGINE`] is the one `DOCKER_HOST` names, the others the config's `[engines]`.
    engines: BTreeMap<String, (EngineAddr, OnceCell<Engine>)>,
    /// ssh config for `DOCKER_HOST=ssh://...` (the same `--ssh-config` as ssh destinations).
    engine_ssh_config: Option<PathBuf>,
    /// How long a script helper may run (`--helper-timeout`).
    helper_timeout: Duration,
    pending: Mutex<Option<Pending>>,
    /// Containers stopped for quiet work and not yet started again.
    pub stopped: quiesce::Stopped,
    /// The `--exec-after` hooks owed by guards still running.
    pub owed: quiesce::Owed,
}

/// A restore's staging in progress: what to remove if the run ends before its swap.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The target container.
    pub target: ContainerInfo,
    /// The helper image.
    pub image: String,
    /// The restore's journal (on the host).
    pub journal: Journal,
    /// Where that journal is kept.
    pub ledger: Ledger,
}

impl Session {
    /// A session; the engine is connected on first use, so `list` and `verify` work without
    /// Docker.
    pub fn new(
        dirs: Dirs,
        endpoint: String,
        progress: bool,
        engine_ssh_config: Option<PathBuf>,
        helper_timeout: Duration,
    ) -> Session {
        Session {
            dirs,
            critical: Critical::default(),
            progress,
            engines: BTreeMap::from([(
                DEFAULT_ENGINE.to_string(),
                (
                    EngineAddr {
                        host: endpoint,
                        tls_cert_path: None,
                        ssh_config: None,
                    },
                    OnceCell::new(),
                ),
            )]),
            engine_ssh_config,
            helper_timeout,
            pending: Mutex::new(None),
            stopped: quiesce::Stopped::default(),
            owed: quiesce::Owed::default(),
        }
    }

    /// The session with the config's `[engines]` too, by name.
    pub fn with_engines(mut self, engines: BTreeMap<String, EngineAddr>) -> Session {
        for (name, addr) in engines {
            self.engines.insert(name, (addr, OnceCell::new()));
        }
        self
    }

    /// The engine, connecting (and negotiating the API version) on first use.
    pub async fn engine(&self) -> Result<&Engine> {
        self.engine_named(DEFAULT_ENGINE).await
    }

    /// Engine `name` (a job's `engine`), connecting on first use.
    pub async fn engine_named(&self, name: &str) -> Result<&Engine> {
        let (addr, cell) = self.engines.get(name).ok_or_else(|| {
            crate::error::Failure::usage(format!(
                "no engine named {name:?}; the engines are: {}",
                self.engines.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        let config = addr
            .ssh_config
            .clone()
            .or_else(|| self.engine_ssh_config.clone());
        let tls = addr.tls_cert_path.as_deref();
        let connected = cell
            .get_or_try_init(|| Engine::connect_to(&addr.host, config, tls, self.helper_timeout))
            .await;
        match connected {
            Ok(e) => Ok(e),
            Err(e) if name == DEFAULT_ENGINE => Err(e.into()),
            Err(e) => Err(anyhow::Error::from(e).context(format!("engine {name:?}"))),
        }
    }

    /// Records (or clears) the staging a signal should remove.
    pub fn set_pending(&self, pending: Option<Pending>) {
        *self.pending.lock().unwrap() = pending;
    }

    /// Takes the staging to remove, if any.
    pub fn take_pending(&self) -> Option<Pending> {
        self.pending.lock().unwrap().take()
    }

    /// Removes the staging of an interrupted restore, removes helper containers still alive,
    /// starts again any container this run stopped and runs the `--exec-after` hooks still owed;
    /// main calls this on every way out (errors, signals, panics).
    pub async fn cleanup(&self) {
        for engine in self.engines.values().filter_map(|(_, cell)| cell.get()) {
            engine.remove_live_helpers().await;
            restore::live::discard(self, engine).await;
        }
        let _ = self.stopped.restart(None).await;
        let _ = self.owed.run(None).await;
    }
}
