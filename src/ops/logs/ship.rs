//! Shipping rotated log files: each streamed out of the helper through zstd into the
//! destination, read back and checked; and shipped files pruned there after a while.

use std::io;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::Utc;

use crate::destination::{DestError, Destination};
use crate::docker::Engine;
use crate::logs::naming::{self};
use crate::pipeline::streams::{CountingReader, ReadAhead};
use crate::pipeline::{ArchiveSink, ArchiveSource, Broken, Transform};

/// Deletes `container`'s shipped logs rotated more than `age` seconds ago; returns their keys.
pub(super) async fn prune_shipped(
    dest: &dyn Destination,
    container: &str,
    age: u64,
) -> Result<Vec<String>> {
    let cutoff = Utc::now() - chrono::Duration::seconds(age as i64);
    let mut pruned = Vec::new();
    for key in dest
        .list(&format!("logs/{container}/"))
        .await?
        .into_iter()
        .map(|e| e.name)
    {
        let file = key.rsplit('/').next().unwrap_or("");
        let old = file
            .strip_suffix(".zst.age")
            .or_else(|| file.strip_suffix(".zst"))
            .and_then(naming::parse_rotated)
            .is_some_and(|r| r.at < cutoff);
        if old {
            dest.delete(&key).await?;
            pruned.push(key);
        }
    }
    Ok(pruned)
}

/// How shipped files are written: the zstd level, and the encryption (age) if any.
pub(super) struct Packing {
    /// zstd level.
    pub level: i32,
    /// Between compression and the hash, on the host.
    pub transform: Option<Arc<dyn Transform>>,
}

/// Streams one file out of `helper`, through zstd (and age when asked), into `dest` as `key`, then
/// reads the object back and checks its sha256. Returns the file's size in bytes.
pub(super) async fn ship_file(
    engine: &Engine,
    helper: &str,
    path: &str,
    dest: &dyn Destination,
    key: &str,
    packing: &Packing,
    counter: Arc<AtomicU64>,
) -> Result<u64> {
    let reader = ReadAhead::new(
        tokio::runtime::Handle::current(),
        engine.download(helper, path),
    );
    let level = packing.level;
    let mut sink = ArchiveSink::open(dest, key).await?;
    if let Some(t) = &packing.transform {
        sink = sink.with_transform(t.clone());
    }
    let shipped = sink
        .stream(move |writer| -> io::Result<(u64, _)> {
            let mut archive = tar::Archive::new(reader);
            let mut entry = archive
                .entries()?
                .next()
                .ok_or_else(|| io::Error::other("the engine sent an empty archive"))??;
            // Only a regular file ships: a symlink planted after the listing is not followed.
            if !entry.header().entry_type().is_file() {
                return Err(io::Error::other(
                    "it is no longer a regular file (a symlink or something else); not shipped",
                ));
            }
            let mut encoder = zstd::stream::write::Encoder::new(writer, level)?;
            encoder.include_checksum(true)?;
            let raw = io::copy(&mut CountingReader::new(&mut entry, counter), &mut encoder)?;
            Ok((raw, encoder.finish()?))
        })
        .await;
    let (upload, raw, want) = match shipped {
        Ok((sealed, raw)) => (sealed.upload, raw, sealed.sha256),
        Err(Broken::Destination(e)) => return Err(e.into()),
        Err(Broken::Producer(e)) => {
            return Err(e).with_context(|| format!("read {path} from the volume"))
        }
    };
    upload.commit().await?;
    let got = read_back_sha(dest, key).await?;
    if got != want {
        return Err(anyhow::anyhow!(
            "{}: {key} reads back with sha256 {got}, {want} was written",
            dest.describe()
        ));
    }
    Ok(raw)
}

async fn read_back_sha(dest: &dyn Destination, key: &str) -> Result<String, DestError> {
    let read = ArchiveSource::new(dest, key)
        .hashed()
        .read_blocking(None, |mut r| io::copy(&mut r, &mut io::sink()))
        .await?;
    read.value.map_err(|error| DestError::Io {
        dest: dest.describe(),
        action: format!("read back {key}"),
        error,
    })?;
    Ok(read.sha256.expect("hashed"))
}
