//! Uploads of runs that are gone: each multipart upload has a small marker object (its writer as
//! an [`Owner`]) under `<prefix>/.dockyard-uploads/`, written *before* the upload starts, so a
//! later run can tell a killed run's upload from a live one whenever the kill came, and abort it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::super::{DestError, Destination};
use super::error::s3_error;
use super::S3Dir;
use crate::owner::{Liveness, Owner};

/// Where upload markers live, under the prefix.
const MARKERS: &str = ".dockyard-uploads";
/// Marker names that carry the object key (dockyard 0.1.0 named markers by upload id).
const KEY_MARKER: &str = "k-";
/// An upload from another host (or with no marker) is taken as abandoned after this long.
const FOREIGN_STALE_AFTER: Duration = Duration::from_secs(24 * 3600);
/// An upload with no marker at all is taken as abandoned after this long (the marker is written
/// right after the upload starts; this covers a run killed in between).
const UNMARKED_STALE_AFTER: Duration = Duration::from_secs(3600);

impl S3Dir {
    /// The marker of the upload of object `key` (a full key, prefix included).
    pub(super) fn marker_key(&self, key: &str) -> String {
        self.spec.key(&format!(
            "{MARKERS}/{KEY_MARKER}{}",
            hex::encode(key.as_bytes())
        ))
    }

    /// Where dockyard 0.1.0 kept the marker of upload `upload_id`.
    fn legacy_marker_key(&self, upload_id: &str) -> String {
        self.spec
            .key(&format!("{MARKERS}/{}", hex::encode(upload_id.as_bytes())))
    }

    /// Deletes a marker object; best effort (a leftover marker is swept once its owner is gone).
    pub(super) async fn delete_marker(&self, marker_key: &str) {
        let _ = self
            .client
            .delete_object()
            .bucket(&self.spec.bucket)
            .key(marker_key)
            .send()
            .await;
    }

    async fn read_marker(&self, marker_key: &str) -> Option<Marker> {
        let out = self
            .client
            .get_object()
            .bucket(&self.spec.bucket)
            .key(marker_key)
            .send()
            .await
            .ok()?;
        let body = out.body.collect().await.ok()?.into_bytes();
        serde_json::from_slice(&body).ok()
    }

    /// The marker of an in-progress upload: by object key, or where dockyard 0.1.0 put it.
    async fn marker_of(&self, key: &str, upload_id: &str) -> Option<(String, Marker)> {
        for marker_key in [self.marker_key(key), self.legacy_marker_key(upload_id)] {
            if let Some(m) = self.read_marker(&marker_key).await {
                return Some((marker_key, m));
            }
        }
        None
    }

    /// Deletes the markers whose writer is gone (a run killed after writing its marker and before
    /// starting its upload, or between aborting the upload and deleting the marker).
    async fn remove_stale_markers(&self) -> Result<(), DestError> {
        let prefix = self.spec.key(&format!("{MARKERS}/"));
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.spec.bucket)
            .prefix(&prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| s3_error(&self.describe(), "list upload markers", e))?;
            for obj in page.contents() {
                let Some(key) = obj.key() else { continue };
                let gone = match self.read_marker(key).await {
                    Some(m) => {
                        m.owner().liveness(FOREIGN_STALE_AFTER.as_secs() as i64) == Liveness::Gone
                    }
                    // Unreadable: taken as gone once it is as old as an unmarked upload.
                    None => obj
                        .last_modified()
                        .and_then(|t| DateTime::<Utc>::from_timestamp(t.secs(), 0))
                        .is_some_and(|t| {
                            (Utc::now() - t).to_std().unwrap_or_default() > UNMARKED_STALE_AFTER
                        }),
                };
                if gone {
                    self.delete_marker(key).await;
                }
            }
        }
        Ok(())
    }

    /// Aborts the multipart uploads whose writer is gone, with their markers, then the markers
    /// left without an upload; returns the keys whose uploads were aborted.
    pub(super) async fn abort_stale_uploads(&self) -> Result<Vec<String>, DestError> {
        let prefix = self.spec.list_prefix();
        let now = Utc::now();
        let mut removed = Vec::new();
        let mut key_marker: Option<String> = None;
        let mut id_marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.spec.bucket)
                .prefix(&prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(|e| s3_error(&self.describe(), "list unfinished uploads", e))?;
            for up in page.uploads() {
                let (Some(key), Some(id)) = (up.key(), up.upload_id()) else {
                    continue;
                };
                let age = up
                    .initiated()
                    .and_then(|t| DateTime::<Utc>::from_timestamp(t.secs(), 0))
                    .map(|t| (now - t).to_std().unwrap_or_default())
                    .unwrap_or_default();
                let marker = self.marker_of(key, id).await;
                let stale = match &marker {
                    Some((_, m)) => {
                        m.owner().liveness(FOREIGN_STALE_AFTER.as_secs() as i64) == Liveness::Gone
                    }
                    None => age > UNMARKED_STALE_AFTER,
                };
                if !stale {
                    continue;
                }
                self.client
                    .abort_multipart_upload()
                    .bucket(&self.spec.bucket)
                    .key(key)
                    .upload_id(id)
                    .send()
                    .await
                    .map_err(|e| s3_error(&self.describe(), "abort an unfinished upload", e))?;
                if let Some((marker_key, _)) = marker {
                    self.delete_marker(&marker_key).await;
                }
                tracing::warn!(dest = %self.describe(), key, "aborted an upload left by a run that is gone");
                removed.push(key.to_string());
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_string);
            id_marker = page.next_upload_id_marker().map(str::to_string);
            if key_marker.is_none() {
                break;
            }
        }
        self.remove_stale_markers().await?;
        Ok(removed)
    }
}

/// Who is writing a multipart upload.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Marker {
    pub(super) host: String,
    pub(super) pid: u32,
    pub(super) key: String,
    pub(super) started: DateTime<Utc>,
    /// The writer as [`Owner`] text (host, pid, start time, run); absent in dockyard 0.1.0's
    /// markers.
    #[serde(default)]
    pub(super) owner: Option<String>,
}

impl Marker {
    /// The writer, by the one owner rule.
    fn owner(&self) -> Owner {
        self.owner
            .as_deref()
            .and_then(Owner::parse)
            .unwrap_or_else(|| Owner {
                host: self.host.clone(),
                pid: self.pid,
                start: 0,
                run: "legacy".into(),
                since: self.started.timestamp(),
                ns: String::new(),
            })
    }
}
