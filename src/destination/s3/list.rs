//! Listing an S3 prefix: one paginated `ListObjectsV2`, with a delimiter for the top folder, so
//! backups are listed without the `logs/` below them, and without one for a folder's tree.

use super::super::{deep_folder, listed, DestError, Destination, Entry};
use super::error::s3_error;
use super::S3Dir;

impl S3Dir {
    /// The objects [`Destination::list`] shows for `prefix` (already checked).
    pub(super) async fn list_objects(&self, prefix: &str) -> Result<Vec<Entry>, DestError> {
        let root = self.spec.list_prefix();
        let deep = deep_folder(prefix).is_some();
        let mut request = self
            .client
            .list_objects_v2()
            .bucket(&self.spec.bucket)
            .prefix(format!("{root}{prefix}"));
        if !deep {
            request = request.delimiter("/");
        }
        let action = if deep {
            "list objects"
        } else {
            "list the prefix"
        };
        let mut pages = request.into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| s3_error(&self.describe(), action, e))?;
            for obj in page.contents() {
                let Some(name) = obj.key().and_then(|k| k.strip_prefix(&root)) else {
                    continue;
                };
                if listed(prefix, name) {
                    out.push(Entry {
                        name: name.to_string(),
                        size: obj.size().unwrap_or(0).max(0) as u64,
                    });
                }
            }
        }
        Ok(out)
    }
}
