//! The log directory in the app's volume, as the log commands reach it: the container (checked
//! to keep its logs in a volume), the user the helpers work as there, and running the log scripts
//! in helpers as that user.

use std::io;

use anyhow::Result;

use crate::archive::entry;
use crate::docker::exec::PARSED;
use crate::docker::{Capture, ContainerInfo, DockerError, Engine, ExecOutput, Helper, HelperSpec};
use crate::error::Failure;
use crate::settings::LogsSettings;
use crate::shell::Script;

/// The app container, checked to keep its logs in a volume, and the image helpers run from.
pub async fn log_container(engine: &Engine, s: &LogsSettings) -> Result<(ContainerInfo, String)> {
    let info = engine.inspect(&s.container).await?;
    if !info.mounts.iter().any(|m| m.contains(&s.dir)) {
        return Err(Failure::usage(format!(
            "{} of container {:?} is not inside a volume or bind mount; rotating it would be lost with the container",
            s.dir, info.name
        ))
        .into());
    }
    let image = s
        .helper_image
        .clone()
        .unwrap_or_else(|| info.image_id.clone());
    Ok((info, image))
}

/// The owner of the log directory, as `uid:gid` for the helpers: they do the writes with its
/// rights, never root's, so the app (which owns the directory) cannot turn a planted symlink into
/// a write as root. `None` when root owns it and only root may change it; a root directory that
/// its group or others may write is worked in as nobody of its group.
pub async fn dir_owner(engine: &Engine, info: &ContainerInfo, dir: &str) -> Result<Option<String>> {
    let stream = Box::pin(engine.download(&info.id, dir));
    let first = tokio::task::spawn_blocking(move || -> io::Result<(u64, u64, u32)> {
        let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
        let mut archive = tar::Archive::new(reader);
        let mut entry = archive
            .entries()?
            .next()
            .ok_or_else(|| io::Error::other("the engine sent an empty archive"))??;
        let (meta, _) = entry::read(&mut entry).map_err(io::Error::other)?;
        if meta.kind != entry::Kind::Dir {
            return Err(io::Error::other("it is not a directory"));
        }
        Ok((meta.uid, meta.gid, meta.mode))
    })
    .await
    .expect("reader thread panicked")
    .map_err(|e| DockerError::Api {
        action: format!("look at {dir} in container {:?}", info.name),
        message: e.to_string(),
    })?;
    Ok(match first {
        // Root's, but others may change it (a group-writable /var/log/app): then not as root
        // either, but as nobody in its group, which can do what that group can and no more.
        (0, gid, mode) if mode & 0o022 != 0 => Some(format!("65534:{gid}")),
        (0, _, _) => None,
        (uid, gid, _) => Some(format!("{uid}:{gid}")),
    })
}

/// Runs the log scripts in helpers as the log directory's owner.
pub struct Runner<'a> {
    /// The engine the helpers run on.
    pub engine: &'a Engine,
    /// The app container, whose volumes the helpers borrow.
    pub info: &'a ContainerInfo,
    /// The image the helpers run from.
    pub image: &'a str,
    /// The log directory's owner (`uid:gid`), or `None` for root.
    pub user: Option<String>,
}

impl Runner<'_> {
    /// Runs `script` in a helper to its end and removes the helper; standard output (the
    /// script's records) whole, up to [`PARSED`].
    pub async fn run(&self, script: Script) -> Result<ExecOutput, DockerError> {
        self.engine
            .run_once(self.spec(script), Capture::Parse(PARSED))
            .await
    }

    /// As [`Runner::run`], keeping the exited helper (its files stay readable through the
    /// archive endpoint) in its guard.
    pub async fn run_kept(&self, script: Script) -> Result<(ExecOutput, Helper), DockerError> {
        self.engine
            .run_kept(self.spec(script), Capture::Parse(PARSED))
            .await
    }

    fn spec(&self, script: Script) -> HelperSpec<'_> {
        let mut spec = HelperSpec::script(self.info, self.image, script);
        spec.user = self.user.clone();
        spec
    }
}
