//! A directory on another host, reached through the system OpenSSH client so that what the operator
//! already configured applies: `~/.ssh/config` (Host aliases, IdentityFile, ProxyJump), the agent
//! and `known_hosts`. Host keys are checked strictly (`StrictHostKeyChecking=yes`), never accepted.
//!
//! Every operation is one run of `src/shell/remote.sh` (`ssh <host> /bin/sh -c <script>
//! dockyard-remote OP DIR ARG...`, each word quoted by shell-words for the remote shell), all over
//! one control-master connection per run. An upload streams into `cat` writing a
//! dot-named temp file under `flock` (when the remote has it); commit checks the size, syncs and
//! renames. A killed run's `cat` ends when its pipe closes, so its lock frees and the next run can
//! tell the temp file is stale.

mod error;
mod list;
mod read;
mod session;
mod spec;
mod upload;

use std::sync::Arc;

use async_trait::async_trait;

use super::{DestError, Destination, Entry, ObjectReader, Upload};
use crate::shell;
use session::Master;
pub use spec::SshSpec;

const TEMP_SUFFIX: &str = ".partial";
/// remote.sh's exit code for "no such object".
const NOT_FOUND: i32 = 44;

/// A remote directory destination.
pub struct SshDir {
    spec: SshSpec,
    master: Arc<Master>,
}

impl SshDir {
    /// A destination for `spec` (the directory is created on [`Destination::prepare`]).
    pub fn new(spec: SshSpec) -> Self {
        SshDir {
            spec,
            master: Arc::new(Master::default()),
        }
    }

    /// Another handle on the same destination and connection.
    fn share(&self) -> SshDir {
        SshDir {
            spec: self.spec.clone(),
            master: self.master.clone(),
        }
    }

    fn dir(&self) -> &str {
        &self.spec.path
    }

    fn check_name(&self, name: &str) -> Result<(), DestError> {
        super::check_name(self, name)
    }
}

#[async_trait]
impl Destination for SshDir {
    fn describe(&self) -> String {
        self.spec.to_string()
    }

    async fn prepare(&self) -> Result<(), DestError> {
        // The directory (and any parent made here) is private whatever the remote umask; every
        // value in the script is quoted.
        self.run(
            "prepare the remote directory",
            &shell::remote("prepare", self.dir(), &[]),
        )
        .await
        .map(|_| ())
    }

    async fn put(&self, name: &str) -> Result<Box<dyn Upload>, DestError> {
        self.start_upload(name).await
    }

    async fn get_small(&self, names: &[String], limit: u64) -> Vec<Option<Vec<u8>>> {
        self.read_small(names, limit).await
    }

    async fn get(&self, name: &str) -> Result<ObjectReader, DestError> {
        self.open_reader(name).await
    }

    async fn exists(&self) -> Result<bool, DestError> {
        match self
            .run(
                "look at the remote directory",
                &shell::remote("exists", self.dir(), &[]),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(DestError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Entry>, DestError> {
        super::check_prefix(self, prefix)?;
        self.list_files(prefix).await
    }

    async fn delete(&self, name: &str) -> Result<(), DestError> {
        self.check_name(name)?;
        let deleted = self
            .run(
                &format!("delete {name}"),
                &shell::remote("delete", self.dir(), &[name]),
            )
            .await;
        match deleted {
            Err(DestError::NotFound { .. }) | Ok(_) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn remove_stale(&self) -> Result<Vec<String>, DestError> {
        let script = shell::remote("remove-stale", self.dir(), &[TEMP_SUFFIX]);
        let out = self
            .run("clean up temp files of earlier runs", &script)
            .await?;
        let removed: Vec<String> = out.lines().map(str::to_string).collect();
        for f in &removed {
            tracing::warn!(dest = %self.describe(), file = %f, "removed temp file left by a run that is gone");
        }
        Ok(removed)
    }
}
