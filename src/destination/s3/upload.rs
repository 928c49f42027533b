//! One S3 object being written: a multipart upload with a fixed (growing) part size and a few
//! parts in flight, so memory stays bounded whatever the archive size; parts too large for memory
//! wait in an unnamed temp file. Small objects go in one request. The object exists only once the
//! upload completes; a failed one is aborted.

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use chrono::Utc;
use tokio::task::JoinSet;

use super::super::parts::PartSizes;
use super::super::{DestError, Destination, Upload};
use super::error::s3_error;
use super::stale::Marker;
use super::S3Dir;
use crate::owner::Owner;

/// Parts uploaded at once. With the part being filled, memory is about (this + 1) × part size.
const PARTS_IN_FLIGHT: usize = 2;
/// Parts up to this size are held in memory (three at most: two in flight, one filling); larger
/// ones (past ~47 GiB from the default start) are spooled to an unnamed file in the temp directory
/// (`TMPDIR`), one in flight and one filling, so memory stays flat however large the archive.
const IN_MEMORY_PART: usize = 32 << 20;

pub(super) struct S3Upload {
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
    /// An upload of `key` (prefix included) through `dir`'s client; nothing is sent yet.
    pub(super) fn new(dir: S3Dir, key: String) -> S3Upload {
        let sizes = PartSizes::new(dir.spec.part_size as u64, dir.spec.part_limit);
        S3Upload {
            dir,
            key,
            buf: BytesMut::new(),
            spool: None,
            upload_id: None,
            parts: Vec::new(),
            in_flight: JoinSet::new(),
            size: 0,
            sizes,
            filling: 1,
        }
    }

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
