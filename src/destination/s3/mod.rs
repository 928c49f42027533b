//! An S3 bucket (AWS or any S3-compatible store) under a key prefix, through aws-sdk-s3.
//!
//! Credentials and region come from the standard AWS chain; the endpoint of a self-hosted store
//! from `--s3-endpoint`, `AWS_ENDPOINT_URL` or the config, with path-style addressing by default.
//! Uploads are multipart with a fixed part size and a few parts in flight, so memory stays bounded
//! whatever the archive size. An object exists only once its upload completes; a failed upload is
//! aborted, and each upload has a small marker object (its writer as an [`Owner`](crate::owner::Owner)) under
//! `<prefix>/.dockyard-uploads/`, written *before* the upload starts, so a later run can tell a
//! killed run's upload from a live one whenever the kill came.

mod client;
mod error;
mod list;
mod spec;
mod stale;
mod upload;

use async_trait::async_trait;
use aws_sdk_s3::Client;

use super::{DestError, Destination, Entry, ObjectReader, Upload};
use error::{is_not_found, raw_status, s3_error};
pub use spec::S3Spec;
use upload::S3Upload;

/// Default multipart part size.
pub const DEFAULT_PART_SIZE: usize = 16 << 20;
/// S3's smallest allowed part (all but the last).
pub const MIN_PART_SIZE: usize = 5 << 20;

/// A bucket-and-prefix destination.
pub struct S3Dir {
    spec: S3Spec,
    client: Client,
}

impl S3Dir {
    fn check_name(&self, name: &str) -> Result<(), DestError> {
        super::check_name(self, name)
    }
}

#[async_trait]
impl Destination for S3Dir {
    fn describe(&self) -> String {
        self.spec.to_string()
    }

    async fn prepare(&self) -> Result<(), DestError> {
        let Err(err) = self
            .client
            .head_bucket()
            .bucket(&self.spec.bucket)
            .send()
            .await
        else {
            return Ok(());
        };
        if is_not_found(&err) {
            return Err(DestError::UnknownBucket {
                dest: self.describe(),
                message: format!(
                    "bucket {:?} does not exist; create it or fix the URL",
                    self.spec.bucket
                ),
            });
        }
        if raw_status(&err) == Some(403) {
            // HEAD answers carry no error code; a listing tells bad credentials from no access.
            if let Err(e) = self
                .client
                .list_objects_v2()
                .bucket(&self.spec.bucket)
                .max_keys(1)
                .send()
                .await
            {
                return Err(s3_error(&self.describe(), "open the bucket", e));
            }
        }
        Err(s3_error(&self.describe(), "open the bucket", err))
    }

    async fn put(&self, name: &str) -> Result<Box<dyn Upload>, DestError> {
        self.check_name(name)?;
        let dir = S3Dir {
            spec: self.spec.clone(),
            client: self.client.clone(),
        };
        Ok(Box::new(S3Upload::new(dir, self.spec.key(name))))
    }

    async fn get(&self, name: &str) -> Result<ObjectReader, DestError> {
        self.check_name(name)?;
        let out = self
            .client
            .get_object()
            .bucket(&self.spec.bucket)
            .key(self.spec.key(name))
            .send()
            .await
            .map_err(|e| {
                if is_not_found(&e) {
                    DestError::NotFound {
                        dest: self.describe(),
                        name: name.to_string(),
                    }
                } else {
                    s3_error(&self.describe(), &format!("read {name}"), e)
                }
            })?;
        Ok(Box::new(out.body.into_async_read()))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Entry>, DestError> {
        super::check_prefix(self, prefix)?;
        self.list_objects(prefix).await
    }

    async fn delete(&self, name: &str) -> Result<(), DestError> {
        self.check_name(name)?;
        // S3 answers a delete of a missing key with success; some stores say 404.
        match self
            .client
            .delete_object()
            .bucket(&self.spec.bucket)
            .key(self.spec.key(name))
            .send()
            .await
        {
            Err(e) if !is_not_found(&e) => {
                Err(s3_error(&self.describe(), &format!("delete {name}"), e))
            }
            _ => Ok(()),
        }
    }

    async fn remove_stale(&self) -> Result<Vec<String>, DestError> {
        self.abort_stale_uploads().await
    }
}
