//! Files in and out of containers through the engine's archive endpoint: tar streams down and up,
//! what a path is, and reading one small file. Nothing here opens a file in the container: the
//! engine reports a FIFO or a device, it never blocks on one.

use std::io;

use bollard::query_parameters::{
    ContainerArchiveInfoOptionsBuilder, DownloadFromContainerOptionsBuilder,
    UploadToContainerOptionsBuilder,
};
use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};

use super::error::{api, is_not_found};
use super::{DockerError, Engine, PathKind};

impl Engine {
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
}
