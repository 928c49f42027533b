//! The JSON manifest beside each archive: what was backed up, from where, and how to check it.
//!
//! A backup "exists" exactly when its manifest does: the manifest is written after the archive is
//! complete, so listing manifests never shows a half-written backup.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::destination::{get_bytes, DestError, Destination};
use crate::docker::Mount;
use crate::error::Failure;

/// Manifests larger than this are not ours; reading stops there.
const MANIFEST_LIMIT: u64 = 16 << 20;
const MANIFEST_SUFFIX: &str = ".json";
const ARCHIVE_SUFFIX: &str = ".tar.zst";

/// One backed-up path and the mount it came from, so restore can map it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathRecord {
    /// The absolute path inside the container, e.g. `/srv/media`. Archive entries for it are stored
    /// under the same path without the leading slash (`srv/media/...`).
    pub path: String,
    /// The mount that holds it.
    pub mount: Mount,
}

/// Everything recorded about one backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Unique id within the destination: `<container>-<UTC timestamp>-<random>`.
    pub id: String,
    /// Container name at backup time.
    pub container: String,
    /// Container id at backup time.
    pub container_id: String,
    /// Image reference the container ran.
    pub image: String,
    /// Image id the container ran.
    pub image_id: String,
    /// Host the backup ran on.
    pub host: String,
    /// Paths backed up, with their mounts.
    pub paths: Vec<PathRecord>,
    /// When the backup started (UTC, RFC 3339).
    pub created: DateTime<Utc>,
    /// Operator tags (`pre-upgrade`, `pre-restore`, ...).
    pub tags: Vec<String>,
    /// dockyard version that wrote it.
    pub tool_version: String,
    /// Archive size in bytes (compressed).
    pub size: u64,
    /// SHA-256 of the archive, hex.
    pub sha256: String,
    /// Bytes of the uncompressed tar stream.
    pub tar_bytes: u64,
    /// Number of tar entries (files, directories, links).
    pub entries: u64,
    /// zstd level used.
    pub level: i32,
    /// The archive's object name in the destination.
    pub archive: String,
    /// For `dockyard snapshot`: what is needed to bring the container back as it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotRecord>,
}

/// What a snapshot records beyond a backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    /// The image's repository digests (`name@sha256:...`), to pull exactly that image again.
    pub image_digests: Vec<String>,
    /// The container's full inspect data (config, mounts, environment) at snapshot time.
    pub inspect: serde_json::Value,
}

/// A new backup id for `container` at `now`: sortable by time within a container, never colliding.
pub fn new_id(container: &str, now: DateTime<Utc>) -> String {
    let nonce: u16 = rand::random();
    format!("{container}-{}-{nonce:04x}", now.format("%Y%m%dT%H%M%SZ"))
}

/// The archive object name for an id.
pub fn archive_name(id: &str) -> String {
    format!("{id}{ARCHIVE_SUFFIX}")
}

/// The manifest object name for an id.
pub fn manifest_name(id: &str) -> String {
    format!("{id}{MANIFEST_SUFFIX}")
}

/// Reads every manifest at the destination, newest first. Unreadable ones are skipped with a warning.
pub async fn load_all(dest: &dyn Destination) -> Result<Vec<Manifest>, DestError> {
    let mut out = Vec::new();
    for name in dest.list().await? {
        if !name.ends_with(MANIFEST_SUFFIX) {
            continue;
        }
        let bytes = get_bytes(dest, &name, MANIFEST_LIMIT).await?;
        match serde_json::from_slice::<Manifest>(&bytes) {
            Ok(m) => out.push(m),
            Err(e) => tracing::warn!(object = %name, error = %e, "skipping unreadable manifest"),
        }
    }
    sort_newest_first(&mut out);
    Ok(out)
}

/// Orders manifests newest first (ties broken by id, so the order is stable).
pub fn sort_newest_first(list: &mut [Manifest]) {
    list.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| b.id.cmp(&a.id)));
}

/// Picks a backup: `latest` is the newest one of `container`; anything else is an exact id.
pub fn select<'a>(
    all: &'a [Manifest],
    wanted: &str,
    container: &str,
    dest: &str,
) -> Result<&'a Manifest, Failure> {
    if wanted == "latest" {
        return all.iter().find(|m| m.container == container).ok_or_else(|| {
            Failure::usage(format!(
                "no backup of container {container:?} at {dest}; `dockyard list --to {dest}` shows what is there"
            ))
        });
    }
    all.iter().find(|m| m.id == wanted).ok_or_else(|| {
        Failure::usage(format!(
            "no backup with id {wanted:?} at {dest}; `dockyard list` shows the ids"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn manifest(id: &str, container: &str, secs: i64) -> Manifest {
        Manifest {
            id: id.into(),
            container: container.into(),
            container_id: "c".into(),
            image: "i".into(),
            image_id: "sha256:i".into(),
            host: "h".into(),
            paths: vec![],
            created: Utc.timestamp_opt(secs, 0).unwrap(),
            tags: vec![],
            tool_version: "0".into(),
            size: 0,
            sha256: String::new(),
            tar_bytes: 0,
            entries: 0,
            level: 3,
            archive: archive_name(id),
            snapshot: None,
        }
    }

    #[test]
    fn ids_sort_by_time_and_do_not_collide() {
        let t = Utc.with_ymd_and_hms(2026, 11, 28, 1, 2, 3).unwrap();
        let a = new_id("web", t);
        assert!(a.starts_with("web-20261128T010203Z-"), "{a}");
        let many: std::collections::HashSet<_> = (0..50).map(|_| new_id("web", t)).collect();
        assert!(many.len() > 40, "ids should be random past the timestamp");
    }

    #[test]
    fn latest_is_newest_of_that_container() {
        let mut all = vec![
            manifest("a", "web", 10),
            manifest("b", "web", 30),
            manifest("c", "db", 40),
        ];
        sort_newest_first(&mut all);
        assert_eq!(all[0].id, "c");
        assert_eq!(select(&all, "latest", "web", "d").unwrap().id, "b");
        assert_eq!(select(&all, "a", "ignored", "d").unwrap().id, "a");
        let err = select(&all, "latest", "cache", "/b")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no backup of container \"cache\" at /b"),
            "{err}"
        );
        assert!(select(&all, "zzz", "web", "d")
            .unwrap_err()
            .to_string()
            .contains("\"zzz\""));
    }

    #[test]
    fn manifest_round_trips_through_json() {
        let m = manifest("x", "web", 5);
        let text = serde_json::to_string(&m).unwrap();
        assert!(
            text.contains("\"created\":\"1970-01-01T00:00:05Z\""),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Manifest>(&text).unwrap(), m);
    }
}
