//! The streaming pipeline between synchronous tar/zstd code and async destinations and engine
//! streams, in one place: a producer on a blocking thread writes into a bounded channel, a pump
//! hashes and uploads what it sends ([`stream_into`]), and a reader of a destination's object is
//! handed to synchronous code with its transport failures told apart from what that code makes
//! of the bytes ([`read_blocking`]). `streams` holds the adapters (channel, read-ahead, hashing
//! and counting readers and writers).

pub mod streams;

use std::io::{self, Read};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio_util::io::SyncIoBridge;

use crate::destination::{DestError, Destination, Upload};
pub use streams::ChannelWriter;

/// Why [`stream_into`] failed; the upload has been aborted either way.
#[derive(Debug)]
pub enum Broken {
    /// The destination refused a write.
    Destination(DestError),
    /// The producer failed (its source, or the tar/zstd work).
    Producer(io::Error),
}

/// Runs `produce` on a blocking thread, writing into a bounded channel that `upload` consumes,
/// and returns what `produce` returned with the sha256 of every byte uploaded. `produce` hands
/// its writer back (after flushing what wraps it) so the end of the stream is explicit. The
/// upload is left uncommitted for the caller to commit when it is ready; on any failure it is
/// aborted, so nothing partial is ever visible.
pub async fn stream_into<T, F>(
    mut upload: Box<dyn Upload>,
    produce: F,
) -> Result<(Box<dyn Upload>, T, String), Broken>
where
    T: Send + 'static,
    F: FnOnce(ChannelWriter) -> io::Result<(T, ChannelWriter)> + Send + 'static,
{
    let (writer, rx) = streams::channel();
    let producer = tokio::task::spawn_blocking(move || -> io::Result<T> {
        let (value, writer) = produce(writer)?;
        writer.close()?;
        Ok(value)
    });
    match pump(upload.as_mut(), rx, producer).await {
        Ok((Ok(value), sha256)) => Ok((upload, value, sha256)),
        Ok((Err(e), _)) => {
            upload.abort().await;
            Err(Broken::Producer(e))
        }
        Err(e) => {
            upload.abort().await;
            Err(Broken::Destination(e))
        }
    }
}

/// Moves chunks from `rx` into `upload`, hashing them, until the producer closes its writer;
/// returns the producer's result and the sha256 of everything written. The hash is over what
/// was sent, not re-read. A failed write stops the pump; dropping `rx` then makes the producer's
/// next write fail, so it ends too.
pub async fn pump<T>(
    upload: &mut dyn Upload,
    mut rx: tokio::sync::mpsc::Receiver<Bytes>,
    producer: tokio::task::JoinHandle<io::Result<T>>,
) -> Result<(io::Result<T>, String), DestError> {
    let mut hasher = Sha256::new();
    let mut failed = None;
    while let Some(chunk) = rx.recv().await {
        hasher.update(&chunk);
        if let Err(e) = upload.write(chunk).await {
            failed = Some(e);
            break;
        }
    }
    drop(rx);
    let produced = producer.await.expect("producer thread panicked");
    match failed {
        Some(e) => Err(e),
        None => Ok((produced, hex::encode(hasher.finalize()))),
    }
}

/// Streams object `name` of `dest` into `work`, which runs on a blocking thread with a
/// synchronous reader. If reading from the destination itself failed (an SSH connection dropped,
/// an S3 body cut short), that is the result, as a destination I/O error (exit 4), whatever
/// `work` made of the truncated stream: it is not the archive's fault. Bytes read are added to
/// `counted` (a progress counter) when given.
pub async fn read_blocking<T, F>(
    dest: &dyn Destination,
    name: &str,
    counted: Option<Arc<AtomicU64>>,
    work: F,
) -> Result<T, DestError>
where
    T: Send + 'static,
    F: FnOnce(Box<dyn Read + Send>) -> T + Send + 'static,
{
    let reader = dest.get(name).await?;
    let failure = Arc::new(Mutex::new(None));
    let transport = Transport {
        inner: SyncIoBridge::new(reader),
        failure: failure.clone(),
        read: 0,
    };
    let out = tokio::task::spawn_blocking(move || match counted {
        Some(counter) => work(Box::new(streams::CountingReader::new(transport, counter))),
        None => work(Box::new(transport)),
    })
    .await
    .expect("reader thread panicked");
    let failed = failure.lock().unwrap().take();
    match failed {
        Some(error) => Err(DestError::reading(dest, name, error)),
        None => Ok(out),
    }
}

/// A destination's byte stream that remembers its first failure.
struct Transport<R> {
    inner: R,
    failure: Arc<Mutex<Option<io::Error>>>,
    /// Bytes read so far (for the test builds' fault point `read-midway`).
    read: u64,
}

impl<R: Read> Read for Transport<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // The first failure is kept as it came (it may carry the destination's own error); the
        // reader gets a copy of its text.
        let n = self.inner.read(buf).map_err(|e| {
            let copy = io::Error::new(e.kind(), e.to_string());
            let mut slot = self.failure.lock().unwrap();
            if slot.is_none() {
                *slot = Some(e);
            }
            copy
        })?;
        let before = self.read;
        self.read += n as u64;
        if before < crate::fault::MIDWAY && self.read >= crate::fault::MIDWAY {
            crate::fault::point_blocking("read-midway");
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destination::ObjectReader;
    use async_trait::async_trait;

    /// A destination whose one object breaks off after `good` bytes, as an SSH connection that
    /// drops or an S3 body cut short does.
    struct CutOff {
        good: Vec<u8>,
    }

    #[async_trait]
    impl Destination for CutOff {
        fn describe(&self) -> String {
            "ssh://nas/backups".into()
        }
        async fn prepare(&self) -> Result<(), DestError> {
            Ok(())
        }
        async fn put(&self, _: &str) -> Result<Box<dyn Upload>, DestError> {
            unimplemented!()
        }
        async fn get(&self, _: &str) -> Result<ObjectReader, DestError> {
            let broken = io::Error::new(io::ErrorKind::ConnectionReset, "connection reset");
            let chunks = vec![Ok(Bytes::from(self.good.clone())), Err(broken)];
            Ok(Box::new(tokio_util::io::StreamReader::new(
                futures_util::stream::iter(chunks),
            )))
        }
        async fn list(&self, _: &str) -> Result<Vec<crate::destination::Entry>, DestError> {
            Ok(Vec::new())
        }
        async fn delete(&self, _: &str) -> Result<(), DestError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_read_cut_short_is_the_destination_failing_not_the_archive() {
        let archive = zstd::encode_all(&vec![7u8; 1 << 20][..], 3).unwrap();
        let dest = CutOff {
            good: archive[..archive.len() / 2].to_vec(),
        };
        // What the reader makes of the truncated stream is an error too, but the result says
        // the transport broke: exit 4, not 5.
        let err = read_blocking(&dest, "web-1.tar.zst", None, |r| {
            io::copy(&mut zstd::Decoder::new(r)?, &mut io::sink())
        })
        .await
        .unwrap_err();
        assert!(matches!(err, DestError::Io { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("ssh://nas/backups") && text.contains("read web-1.tar.zst"),
            "{text}"
        );
        let category = crate::outcome::categorize(&anyhow::Error::from(err)).exit_code();
        assert_eq!(category, 4);
    }

    #[tokio::test]
    async fn a_whole_read_is_the_readers_result() {
        let dest = CutOff { good: Vec::new() };
        // Reading stops before the break: nothing failed in transport.
        let got = read_blocking(&dest, "x", None, |mut r| {
            let mut first = [0u8; 0];
            r.read(&mut first)
        })
        .await
        .unwrap();
        assert_eq!(got.unwrap(), 0);
    }
}
