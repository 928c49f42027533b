//! dockyard's own directories, decided once per run from the environment, the config file and
//! the defaults (in that order), and used by every lock and every state file.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Where this run keeps locks and state. The state directories are made (when they are the
/// default) on first use only, so `completions` or `man` create nothing.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// Job and container locks: `$DOCKYARD_LOCK_DIR`, the config's `lock_dir`, /run/dockyard,
    /// or under the temp directory.
    pub lock: PathBuf,
    /// The config's `state_dir`.
    configured_state: Option<PathBuf>,
    state: OnceLock<PathBuf>,
    host_state: OnceLock<PathBuf>,
}

impl Dirs {
    /// The directories, with the config file's `lock_dir` and `state_dir` when a command reads
    /// one.
    pub fn decide(config_lock: Option<PathBuf>, config_state: Option<PathBuf>) -> Dirs {
        Dirs {
            lock: private_dir(
                "DOCKYARD_LOCK_DIR",
                config_lock,
                "/run/dockyard",
                "dockyard-locks",
            ),
            configured_state: config_state,
            state: OnceLock::new(),
            host_state: OnceLock::new(),
        }
    }

    /// Last-run stamps (`catch_up`): `$DOCKYARD_STATE_DIR`, the config's `state_dir`,
    /// /var/lib/dockyard, or under the temp directory.
    pub fn state(&self) -> &Path {
        self.state
            .get_or_init(|| state_dir(self.configured_state.clone()))
    }

    /// Restore journals and the key snapshots hash environment values with: the state
    /// directory without the config's say, so a one-off restore and a nightly `run` keep them in
    /// one place.
    pub fn host_state(&self) -> &Path {
        self.host_state.get_or_init(|| state_dir(None))
    }
}

/// The host state directory as [`Dirs::host_state`] decides it, for code that has no [`Dirs`]
/// at hand (the agent's private transport directories live below it).
pub fn host_state_dir() -> PathBuf {
    state_dir(None)
}

fn state_dir(configured: Option<PathBuf>) -> PathBuf {
    private_dir(
        "DOCKYARD_STATE_DIR",
        configured,
        "/var/lib/dockyard",
        "dockyard-state",
    )
}

/// A directory of dockyard's own: `env` if set, else `configured`, else `default` (created with
/// mode 0700), else `fallback` in the temp directory when `default` cannot be created.
fn private_dir(env: &str, configured: Option<PathBuf>, default: &str, fallback: &str) -> PathBuf {
    if let Some(d) = std::env::var_os(env).filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = configured {
        return d;
    }
    let default = PathBuf::from(default);
    if std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&default)
        .is_ok()
    {
        return default;
    }
    std::env::temp_dir().join(fallback)
}
