//! An S3 bucket (AWS or any S3-compatible store) under a key prefix, through aws-sdk-s3.
//!
//! Credentials and region come from the standard AWS chain; the endpoint of a self-hosted store
//! from `--s3-endpoint`, `AWS_ENDPOINT_URL` or the config, with path-style addressing by default.
//! Uploads are multipart with a fixed part size and a few parts in flight, so memory stays bounded
//! whatever the archive size. An object exists only once its upload completes; a failed upload is
//! aborted, and each upload has a small marker object (its writer as an [`Owner`]) under
//! `<prefix>/.dockyard-uploads/`, written *before* the upload starts, so a later run can tell a
//! killed run's upload from a live one whenever the kill came.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use super::parts::{PartSizes, MAX_PARTS};
use super::{DestError, Destination, ObjectReader, Upload};
use crate::owner::{Liveness, Owner};

/// Default multipart part size.
pub const DEFAULT_PART_SIZE: usize = 16 << 20;
/// S3's smallest allowed part (all but the last).
pub const MIN_PART_SIZE: usize = 5 << 20;
/// Parts uploaded at once. With the part being filled, memory is about (this + 1) × part size.
const PARTS_IN_FLIGHT: usize = 2;
/// Parts up to this size are held in memory (three at most: two in flight, one filling); larger
/// ones (past ~47 GiB from the default start) are spooled to an unnamed file in the temp directory
/// (`TMPDIR`), one in flight and one filling, so memory stays flat however large the archive.
const IN_MEMORY_PART: usize = 32 << 20;
/// Where upload markers live, under the prefix.
const MARKERS: &str = ".dockyard-uploads";
/// Marker names that carry the object key (dockyard 0.1.0 named markers by upload id).
const KEY_MARKER: &str = "k-";
/// An upload from another host (or with no marker) is taken as abandoned after this long.
const FOREIGN_STALE_AFTER: Duration = Duration::from_secs(24 * 3600);
/// An upload with no marker at all is taken as abandoned after this long (the marker is written
/// right after the upload starts; this covers a run killed in between).
const UNMARKED_STALE_AFTER: Duration = Duration::from_secs(3600);

/// Where an `s3://bucket/prefix` URL points, plus how to reach the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Spec {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix without leading or trailing slashes; may be empty.
    pub prefix: String,
    /// Endpoint of an S3-compatible store; `None` uses `AWS_ENDPOINT_URL` or AWS itself.
    pub endpoint: Option<String>,
    /// Path-style addressing; `None` means path-style with a custom endpoint, virtual-hosted on AWS.
    pub path_style: Option<bool>,
    /// Multipart part size in bytes: the first parts' size (they grow: [`PartSizes`]).
    pub part_size: usize,
    /// The most parts of one upload: S3's 10,000, or fewer from `DOCKYARD_S3_PART_LIMIT` (for
    /// tests of the growth rule without 156 GiB of data).
    pub part_limit: u32,
}

impl S3Spec {
    /// Parses the part after `s3://`.
    pub fn parse(url: &str, rest: &str) -> Result<S3Spec, String> {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!(
                "{url:?}: expected s3://bucket/prefix, e.g. s3://backups/dockyard"
            ));
        }
        Ok(S3Spec {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            endpoint: None,
            path_style: None,
            part_size: DEFAULT_PART_SIZE,
            part_limit: std::env::var("DOCKYARD_S3_PART_LIMIT")
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|n| (1..=MAX_PARTS).contains(n))
                .unwrap_or(MAX_PARTS),
        })
    }

    fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    /// The prefix as listed: empty, or ending in `/`.
    fn list_prefix(&self) -> String {
        if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        }
    }
}

impl std::fmt::Display for S3Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}", self.bucket)?;
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        if let Some(e) = &self.endpoint {
            write!(f, " at {e}")?;
        }
        Ok(())
    }
}

/// A bucket-and-prefix destination.
pub struct S3Dir {
    spec: S3Spec,
    client: Client,
}

impl S3Dir {
    /// Builds the client from the AWS chain and `spec`. Nothing is contacted yet.
    pub async fn new(mut spec: S3Spec) -> S3Dir {
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        let mut conf = aws_sdk_s3::config::Builder::from(&shared);
        if let Some(endpoint) = &spec.endpoint {
            conf = conf.endpoint_url(endpoint);
        } else if let Some(endpoint) = shared.endpoint_url() {
            spec.endpoint = Some(endpoint.to_string());
        }
        let custom = spec.endpoint.is_some();
        conf = conf.force_path_style(spec.path_style.unwrap_or(custom));
        if shared.region().is_none() {
            conf = conf.region(aws_sdk_s3::config::Region::new("us-east-1"));
        }
        if custom {
            // Self-hosted stores vary in their support of the newer default checksums; send and
            // check them only where S3 requires them. The archive's own sha256 is checked anyway.
            conf = conf
                .request_checksum_calculation(
                    aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
                )
                .response_checksum_validation(
                    aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
                );
        }
        S3Dir {
            client: Client::from_conf(conf.build()),
            spec,
        }
    }

    fn check_name(&self, name: &str) -> Result<(), DestError> {
        super::check_name(self, name)
    }

    /// The marker of the upload of object `key` (a full key, prefix included).
    fn marker_key(&self, key: &str) -> String {
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
    async fn delete_marker(&self, marker_key: &str) {
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
}

/// Who is writing a multipart upload.
#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    host: String,
    pid: u32,
    key: String,
    started: DateTime<Utc>,
    /// The writer as [`Owner`] text (host, pid, start time, run); absent in dockyard 0.1.0's
    /// markers.
    #[serde(default)]
    owner: Option<String>,
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

/// Maps an SDK error to its case, with a message that names the destination and says what to
/// check. SDK errors never carry the secret key, and neither does this.
fn s3_error<E>(dest: &str, action: &str, err: SdkError<E, HttpResponse>) -> DestError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let dest = dest.to_string();
    let chain = source_chain(&err);
    // The credential chain fails inside the request (as a dispatch failure): before anything
    // reached the endpoint, so it is never said to be unreachable.
    if let Some(why) = credentials_failure(&err) {
        return DestError::Authentication {
            dest,
            message: format!("cannot {action}: {why}"),
        };
    }
    match &err {
        SdkError::DispatchFailure(f) => {
            let why = if f.is_timeout() {
                "timed out"
            } else if f.is_io() {
                "connection failed"
            } else {
                chain.as_str()
            };
            return DestError::Unreachable {
                dest,
                message: format!("cannot {action}: cannot reach the S3 endpoint ({why}); check the endpoint URL (--s3-endpoint / AWS_ENDPOINT_URL) and that the server is up"),
            };
        }
        SdkError::TimeoutError(_) => {
            return DestError::Unreachable {
                dest,
                message: format!("cannot {action}: the S3 endpoint did not answer in time; check the endpoint and the network"),
            };
        }
        SdkError::ConstructionFailure(_) => {
            return DestError::Unusable {
                dest,
                message: format!("cannot {action}: the request could not be built ({chain}); check the credentials (AWS_ACCESS_KEY_ID / AWS_PROFILE) and the region"),
            };
        }
        _ => {}
    }
    let code = err.code().unwrap_or("");
    let detail = err.message().unwrap_or("").to_string();
    let status = raw_status(&err);
    match (code, status) {
        ("NoSuchBucket", _) => DestError::UnknownBucket {
            dest,
            message: format!("cannot {action}: the bucket does not exist; create it or fix the URL"),
        },
        (
            "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "InvalidSignature"
            | "AuthorizationHeaderMalformed" | "ExpiredToken" | "InvalidToken",
            _,
        ) => DestError::Authentication {
            dest,
            message: format!("cannot {action}: the store rejected the credentials ({code}); check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the profile, and the region"),
        },
        // Garage answers a bad signature with 403 "Forbidden: Invalid signature".
        (_, Some(403)) if detail.to_ascii_lowercase().contains("signature") => {
            DestError::Authentication {
                dest,
                message: format!("cannot {action}: the store rejected the credentials ({detail}); check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the profile, and the region"),
            }
        }
        ("AccessDenied" | "Forbidden", _) | (_, Some(403)) => DestError::AccessDenied {
            dest,
            message: format!(
                "cannot {action}: access denied ({}); check that the credentials may read and write this bucket and prefix",
                if detail.is_empty() { "HTTP 403" } else { detail.as_str() }
            ),
        },
        ("NoSuchKey" | "NotFound", _) | (_, Some(404)) => DestError::NotFound {
            dest,
            name: action.to_string(),
        },
        (_, Some(400)) if code.is_empty() => DestError::Unusable {
            dest,
            message: format!("cannot {action}: the store refused the request (HTTP 400); check the region and credentials"),
        },
        _ => DestError::Unusable {
            dest,
            message: format!(
                "cannot {action}: {} {detail}",
                if code.is_empty() { chain.as_str() } else { code }
            )
            .trim()
            .to_string(),
        },
    }
}

/// What every command says when the AWS chain finds no credentials.
const NO_CREDENTIALS: &str =
    "no AWS credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE)";

/// Why no request could be signed, when loading the credentials is what failed. The chain ends
/// at the instance metadata service, so "none anywhere" also reads as an error of that service
/// (on EC2 with IMDS turned off it answers 403; elsewhere the address may answer anything):
/// that, a chain with nothing configured, and one that ran out of time are "no credentials".
/// A source that is configured but fails (a profile's SSO or role, a credential process) is said
/// with its own reason.
fn credentials_failure(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    use aws_config::imds::client::error::ImdsError;
    use aws_credential_types::provider::error::CredentialsError;
    let causes = || std::iter::successors(Some(err), |e| e.source());
    let failed = causes().find_map(|e| e.downcast_ref::<CredentialsError>())?;
    let from_imds =
        std::iter::successors(Some(failed as &(dyn std::error::Error + 'static)), |e| {
            e.source()
        })
        .any(|e| e.downcast_ref::<ImdsError>().is_some());
    // A profile that is named but missing (or gives no keys) is passed over by the chain.
    let none = match std::env::var("AWS_PROFILE").ok().filter(|p| !p.is_empty()) {
        Some(profile) => {
            format!("{NO_CREDENTIALS}; the profile AWS_PROFILE names, {profile:?}, gives none")
        }
        None => NO_CREDENTIALS.to_string(),
    };
    Some(match failed {
        CredentialsError::CredentialsNotLoaded(_) | CredentialsError::ProviderTimedOut(_) => none,
        _ if from_imds => none,
        _ => format!(
            "cannot load the AWS credentials ({}); check AWS_PROFILE and its files, or set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
            source_chain(failed)
        ),
    })
}

/// The HTTP status of the store's answer, from the raw response.
fn raw_status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

fn source_chain(err: &dyn std::error::Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut cur = err.source();
    while let Some(e) = cur {
        parts.push(e.to_string());
        cur = e.source();
    }
    parts.join(": ")
}

fn is_not_found<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    matches!(err.code(), Some("NoSuchKey") | Some("NotFound")) || raw_status(err) == Some(404)
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
        Ok(Box::new(S3Upload {
            dir: S3Dir {
                spec: self.spec.clone(),
                client: self.client.clone(),
            },
            key: self.spec.key(name),
            buf: BytesMut::new(),
            spool: None,
            upload_id: None,
            parts: Vec::new(),
            in_flight: JoinSet::new(),
            size: 0,
            sizes: PartSizes::new(self.spec.part_size as u64, self.spec.part_limit),
            filling: 1,
        }))
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

    async fn list(&self) -> Result<Vec<String>, DestError> {
        let prefix = self.spec.list_prefix();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.spec.bucket)
            .prefix(&prefix)
            .delimiter("/")
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| s3_error(&self.describe(), "list the prefix", e))?;
            for obj in page.contents() {
                if let Some(name) = obj.key().and_then(|k| k.strip_prefix(&prefix)) {
                    if !name.is_empty() && !name.starts_with('.') {
                        out.push(name.to_string());
                    }
                }
            }
        }
        Ok(out)
    }

    async fn list_under(&self, prefix: &str) -> Result<Vec<String>, DestError> {
        self.check_name(prefix)?;
        let root = self.spec.list_prefix();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.spec.bucket)
            .prefix(format!("{root}{prefix}/"))
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| s3_error(&self.describe(), "list objects", e))?;
            for obj in page.contents() {
                if let Some(name) = obj.key().and_then(|k| k.strip_prefix(&root)) {
                    if super::visible(name) {
                        out.push(name.to_string());
                    }
                }
            }
        }
        Ok(out)
    }

    async fn delete(&self, name: &str) -> Result<(), DestError> {
        self.check_name(name)?;
        self.client
            .delete_object()
            .bucket(&self.spec.bucket)
            .key(self.spec.key(name))
            .send()
            .await
            .map_err(|e| s3_error(&self.describe(), &format!("delete {name}"), e))?;
        Ok(())
    }

    async fn remove_stale(&self) -> Result<Vec<String>, DestError> {
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

struct S3Upload {
    dir: S3Dir,
    key: String,
    /// The part being filled, when it is held in memory.
    buf: BytesMut,
    /// The part being filled, when it is too large for memory.
    spool: Option<Spool>,
    upload_id: Option<String>,
    parts: Vec<CompletedPart>,
    in_flight: JoinSet<Result<CompletedPart, DestError>>,
    size: u64,
    /// Part sizes by number: they grow, so an archive of any size fits S3's part limit.
    sizes: PartSizes,
    /// The number of the part being filled.
    filling: u32,
}

/// A part spooled to an unnamed file: written through `file`, sent by reopening `held` through
/// `/proc/self/fd` (so the SDK can read it again on a retry); gone when both are closed, even
/// after a SIGKILL.
struct Spool {
    held: std::fs::File,
    file: tokio::fs::File,
    len: usize,
}

impl Spool {
    fn create() -> std::io::Result<Spool> {
        let held = tempfile::tempfile_in(std::env::temp_dir())?;
        let file = tokio::fs::File::from_std(held.try_clone()?);
        Ok(Spool { held, file, len: 0 })
    }

    /// The request body: the spooled bytes, read from the start on every attempt.
    async fn body(mut self) -> std::io::Result<(ByteStream, std::fs::File)> {
        use std::os::fd::AsRawFd;
        use tokio::io::AsyncWriteExt;
        self.file.flush().await?;
        let path = format!("/proc/self/fd/{}", self.held.as_raw_fd());
        let body = ByteStream::read_from()
            .path(path)
            .length(aws_sdk_s3::primitives::Length::Exact(self.len as u64))
            .build()
            .await
            .map_err(std::io::Error::other)?;
        Ok((body, self.held))
    }
}

/// One part's bytes.
enum PartBody {
    Memory(Bytes),
    Spooled(Spool),
}

impl S3Upload {
    fn dest(&self) -> String {
        self.dir.describe()
    }

    fn spool_error(&self, e: std::io::Error) -> DestError {
        DestError::Unusable {
            dest: self.dest(),
            message: format!(
                "cannot spool a part of {} to {} (parts past {} MiB wait on disk, not in memory; set TMPDIR to a directory with room for two of them): {e}",
                self.key,
                std::env::temp_dir().display(),
                IN_MEMORY_PART >> 20
            ),
        }
    }

    /// Bytes in the part being filled.
    fn filled(&self) -> usize {
        self.spool.as_ref().map_or(self.buf.len(), |s| s.len)
    }

    fn too_big(&self) -> DestError {
        DestError::Unusable {
            dest: self.dest(),
            message: format!(
                "{} is larger than one S3 upload can hold: {} parts growing from {} MiB hold {} bytes (S3 allows 10,000 parts of up to 5 GiB, 5 TiB in all)",
                self.key,
                self.sizes.limit(),
                self.sizes.size(1) >> 20,
                self.sizes.capacity()
            ),
        }
    }

    /// Writes the upload's marker, then starts the multipart upload: an upload never exists
    /// without a marker saying who writes it.
    async fn start(&mut self) -> Result<String, DestError> {
        if let Some(id) = &self.upload_id {
            return Ok(id.clone());
        }
        let spec = &self.dir.spec;
        let me = Owner::current();
        let marker = Marker {
            host: me.host.clone(),
            pid: me.pid,
            key: self.key.clone(),
            started: Utc::now(),
            owner: Some(me.to_string()),
        };
        self.dir
            .client
            .put_object()
            .bucket(&spec.bucket)
            .key(self.dir.marker_key(&self.key))
            .body(ByteStream::from(
                serde_json::to_vec(&marker).expect("marker serialises"),
            ))
            .send()
            .await
            .map_err(|e| s3_error(&self.dest(), "write the upload marker", e))?;
        let out = self
            .dir
            .client
            .create_multipart_upload()
            .bucket(&spec.bucket)
            .key(&self.key)
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            Err(e) => {
                self.dir
                    .delete_marker(&self.dir.marker_key(&self.key))
                    .await;
                return Err(s3_error(
                    &self.dest(),
                    &format!("start uploading {}", self.key),
                    e,
                ));
            }
        };
        let id = out.upload_id().unwrap_or_default().to_string();
        self.upload_id = Some(id.clone());
        Ok(id)
    }

    /// Waits for one part in flight to finish.
    async fn reap_one(&mut self) -> Result<(), DestError> {
        if let Some(done) = self.in_flight.join_next().await {
            let part = done.map_err(|e| DestError::Unusable {
                dest: self.dest(),
                message: format!("part upload task failed: {e}"),
            })??;
            self.parts.push(part);
        }
        Ok(())
    }

    /// Sends `body` as the next part, waiting first if enough parts are in flight.
    async fn send_part(&mut self, body: PartBody) -> Result<(), DestError> {
        let id = self.start().await?;
        // Spooled parts go one at a time: the temp directory then holds two parts.
        let at_once = match body {
            PartBody::Memory(_) => PARTS_IN_FLIGHT,
            PartBody::Spooled(_) => 1,
        };
        while self.in_flight.len() >= at_once {
            self.reap_one().await?;
        }
        let (body, held) = match body {
            PartBody::Memory(bytes) => (ByteStream::from(bytes), None),
            PartBody::Spooled(spool) => {
                let (body, held) = spool.body().await.map_err(|e| self.spool_error(e))?;
                (body, Some(held))
            }
        };
        let number = (self.parts.len() + self.in_flight.len() + 1) as i32;
        let client = self.dir.client.clone();
        let bucket = self.dir.spec.bucket.clone();
        let key = self.key.clone();
        let dest = self.dest();
        self.in_flight.spawn(async move {
            let out = client
                .upload_part()
                .bucket(bucket)
                .key(&key)
                .upload_id(id)
                .part_number(number)
                .body(body)
                .send()
                .await
                .map_err(|e| s3_error(&dest, &format!("upload part {number} of {key}"), e))?;
            // The spool lives until its request is done.
            drop(held);
            Ok(CompletedPart::builder()
                .set_e_tag(out.e_tag().map(str::to_string))
                .part_number(number)
                .build())
        });
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), DestError> {
        let spec = self.dir.spec.clone();
        if self.upload_id.is_none() && self.spool.is_none() {
            // Small enough for one request.
            let body = self.buf.split().freeze();
            self.dir
                .client
                .put_object()
                .bucket(&spec.bucket)
                .key(&self.key)
                .body(ByteStream::from(body))
                .send()
                .await
                .map_err(|e| s3_error(&self.dest(), &format!("write {}", self.key), e))?;
        } else {
            if let Some(spool) = self.spool.take() {
                self.send_part(PartBody::Spooled(spool)).await?;
            } else if !self.buf.is_empty() {
                let body = self.buf.split().freeze();
                self.send_part(PartBody::Memory(body)).await?;
            }
            while !self.in_flight.is_empty() {
                self.reap_one().await?;
            }
            self.parts.sort_by_key(|p| p.part_number());
            let id = self.upload_id.clone().expect("started");
            self.dir
                .client
                .complete_multipart_upload()
                .bucket(&spec.bucket)
                .key(&self.key)
                .upload_id(&id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(std::mem::take(&mut self.parts)))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| s3_error(&self.dest(), &format!("complete {}", self.key), e))?;
            self.upload_id = None;
            self.dir
                .delete_marker(&self.dir.marker_key(&self.key))
                .await;
        }
        // Verify what the store holds before calling the object written.
        let head = self
            .dir
            .client
            .head_object()
            .bucket(&spec.bucket)
            .key(&self.key)
            .send()
            .await
            .map_err(|e| s3_error(&self.dest(), &format!("check {}", self.key), e))?;
        let stored = head.content_length().unwrap_or(-1);
        if stored != self.size as i64 {
            let _ = self
                .dir
                .client
                .delete_object()
                .bucket(&spec.bucket)
                .key(&self.key)
                .send()
                .await;
            return Err(DestError::Unusable {
                dest: self.dest(),
                message: format!(
                    "{} holds {stored} bytes after upload, {} were sent; removed it",
                    self.key, self.size
                ),
            });
        }
        Ok(())
    }

    async fn abort_upload(&mut self) {
        self.in_flight.abort_all();
        while self.in_flight.join_next().await.is_some() {}
        if let Some(id) = self.upload_id.take() {
            let spec = &self.dir.spec;
            let aborted = self
                .dir
                .client
                .abort_multipart_upload()
                .bucket(&spec.bucket)
                .key(&self.key)
                .upload_id(&id)
                .send()
                .await;
            if let Err(e) = aborted {
                tracing::warn!(error = %s3_error(&self.dest(), "abort the upload", e), "the next run will abort it");
                return;
            }
            self.dir
                .delete_marker(&self.dir.marker_key(&self.key))
                .await;
        }
    }
}

#[async_trait]
impl Upload for S3Upload {
    async fn write(&mut self, chunk: Bytes) -> Result<(), DestError> {
        self.size += chunk.len() as u64;
        let mut rest = chunk;
        while !rest.is_empty() {
            let part_size = self.sizes.size(self.filling) as usize;
            if self.filled() == part_size {
                // The last part allowed is full and more is coming.
                return Err(self.too_big());
            }
            let take = rest.len().min(part_size - self.filled());
            let piece = rest.split_to(take);
            if part_size > IN_MEMORY_PART {
                if self.spool.is_none() {
                    self.spool = Some(Spool::create().map_err(|e| self.spool_error(e))?);
                }
                let spool = self.spool.as_mut().expect("created");
                let wrote = tokio::io::AsyncWriteExt::write_all(&mut spool.file, &piece).await;
                spool.len += take;
                wrote.map_err(|e| self.spool_error(e))?;
            } else {
                if self.buf.capacity() == 0 {
                    self.buf.reserve(part_size);
                }
                self.buf.extend_from_slice(&piece);
            }
            if self.filled() == part_size && self.filling < self.sizes.limit() {
                let body = match self.spool.take() {
                    Some(spool) => PartBody::Spooled(spool),
                    // A fresh buffer per part: the sent one is freed when its request is done.
                    None => PartBody::Memory(std::mem::take(&mut self.buf).freeze()),
                };
                self.send_part(body).await?;
                self.filling += 1;
                if self.sizes.size(self.filling) != part_size as u64 {
                    tracing::debug!(
                        key = %self.key,
                        part = self.filling,
                        size = self.sizes.size(self.filling),
                        "multipart part size grows"
                    );
                }
            }
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<u64, DestError> {
        match self.finish().await {
            Ok(()) => Ok(self.size),
            Err(e) => {
                self.abort_upload().await;
                Err(e)
            }
        }
    }

    async fn abort(mut self: Box<Self>) {
        self.abort_upload().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bucket_and_prefix() {
        let s = S3Spec::parse("s3://b/x/y/", "b/x/y/").unwrap();
        assert_eq!((s.bucket.as_str(), s.prefix.as_str()), ("b", "x/y"));
        assert_eq!(s.key("a.json"), "x/y/a.json");
        assert_eq!(s.list_prefix(), "x/y/");
        let bare = S3Spec::parse("s3://b", "b").unwrap();
        assert_eq!(
            (bare.key("a"), bare.list_prefix()),
            ("a".into(), String::new())
        );
        assert!(S3Spec::parse("s3:///x", "/x").is_err());
    }
}
