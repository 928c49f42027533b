//! The streaming pipeline between synchronous tar/zstd code and async destinations and engine
//! streams, in one place. Every byte written to a destination goes through an [`ArchiveSink`]
//! (a producer on a blocking thread writes into a bounded channel, through the [`Transform`]
//! when one is set, and a pump hashes and uploads what it sends), and every archive is read
//! through an [`ArchiveSource`] (get, hash the stored bytes, transform back, hand to
//! synchronous code with its transport failures told apart from what that code makes of the
//! bytes). `streams` holds the adapters (channel, read-ahead, hashing and counting readers and
//! writers); `transform` the seam between compression and hashing.

pub mod streams;
pub mod transform;

use std::io::{self, Read};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio_util::io::SyncIoBridge;

use crate::destination::{DestError, Destination, Upload};
pub use streams::ChannelWriter;
pub use transform::{SinkWriter, Transform};

/// Why [`stream_into`] failed; the upload has been aborted either way.
#[derive(Debug)]
pub enum Broken {
    /// The destination refused a write.
    Destination(DestError),
    /// The producer failed (its source, or the tar/zstd work).
    Producer(io::Error),
}

/// Where one archive (or a shipped log file) is written, every byte of it: the producer's
/// chunks, through the [`Transform`] when one is set (between compression and hashing), hashed
/// (sha256 of what is stored) and uploaded. Nothing is visible until the caller commits the
/// sealed upload; on any failure it is aborted.
pub struct ArchiveSink {
    upload: Box<dyn Upload>,
    transform: Option<Arc<dyn Transform>>,
}

/// A sink's upload once every byte is in, not yet committed, with what was stored.
pub struct Sealed {
    /// The upload, for the caller to commit (or abort).
    pub upload: Box<dyn Upload>,
    /// The hex sha256 of the stored bytes.
    pub sha256: String,
    /// How many bytes were stored.
    pub size: u64,
}

impl ArchiveSink {
    /// A sink into object `name` of `dest`.
    pub async fn open(dest: &dyn Destination, name: &str) -> Result<ArchiveSink, DestError> {
        Ok(ArchiveSink::new(dest.put(name).await?))
    }

    /// A sink into `upload`.
    pub fn new(upload: Box<dyn Upload>) -> ArchiveSink {
        ArchiveSink {
            upload,
            transform: None,
        }
    }

    /// The same sink, its bytes changed by `transform` before they are hashed and stored.
    pub fn with_transform(mut self, transform: Arc<dyn Transform>) -> ArchiveSink {
        self.transform = Some(transform);
        self
    }

    /// Runs `produce` on a blocking thread, writing into a bounded channel that the upload
    /// consumes, and returns the sealed upload with what `produce` returned. `produce` hands its
    /// writer back (after flushing what wraps it) so the end of the stream is explicit.
    pub async fn stream<T, F>(self, produce: F) -> Result<(Sealed, T), Broken>
    where
        T: Send + 'static,
        F: FnOnce(SinkWriter) -> io::Result<(T, SinkWriter)> + Send + 'static,
    {
        let ArchiveSink {
            mut upload,
            transform,
        } = self;
        let (channel, rx) = streams::channel();
        let producer = tokio::task::spawn_blocking(move || -> io::Result<T> {
            let writer = SinkWriter::new(channel, transform.as_deref())?;
            let (value, writer) = produce(writer)?;
            writer.close()?;
            Ok(value)
        });
        match pump(upload.as_mut(), rx, producer).await {
            Ok((Ok(value), sha256, size)) => Ok((
                Sealed {
                    upload,
                    sha256,
                    size,
                },
                value,
            )),
            Ok((Err(e), _, _)) => {
                upload.abort().await;
                Err(Broken::Producer(e))
            }
            Err(e) => {
                upload.abort().await;
                Err(Broken::Destination(e))
            }
        }
    }
}

/// Moves chunks from `rx` into `upload`, hashing them, until the producer closes its writer;
/// returns the producer's result and the sha256 of everything written. The hash is over what
/// was sent, not re-read. A failed write stops the pump; dropping `rx` then makes the producer's
/// next write fail, so it ends too.
async fn pump<T>(
    upload: &mut dyn Upload,
    mut rx: tokio::sync::mpsc::Receiver<Bytes>,
    producer: tokio::task::JoinHandle<io::Result<T>>,
) -> Result<(io::Result<T>, String, u64), DestError> {
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut failed = None;
    while let Some(chunk) = rx.recv().await {
        hasher.update(&chunk);
        let before = size;
        size += chunk.len() as u64;
        // Tests stop a write here, its producer (and a backup's helper) still running.
        if before < crate::fault::MIDWAY && size >= crate::fault::MIDWAY {
            crate::fault::point("write-midway").await;
        }
        if let Err(e) = upload.write(chunk).await {
            failed = Some(e);
            break;
        }
    }
    drop(rx);
    let produced = producer.await.expect("producer thread panicked");
    match failed {
        Some(e) => Err(e),
        None => Ok((produced, hex::encode(hasher.finalize()), size)),
    }
}

/// Where every archive is read from: object `name` of `dest`, its stored bytes hashed as they
/// pass when asked (the sha256 a manifest records is of these), then changed back by the
/// [`Transform`] when one is set, and handed to synchronous code.
pub struct ArchiveSource<'a> {
    dest: &'a dyn Destination,
    name: String,
    transform: Option<Arc<dyn Transform>>,
    hashed: bool,
}

/// What reading an archive gave: the reader's result, and the stored bytes it read.
pub struct Reading<T> {
    /// What the work made of the stream.
    pub value: T,
    /// Stored bytes read.
    pub stored: u64,
    /// Their hex sha256 (of the whole object when the work read to its end), when asked for
    /// ([`ArchiveSource::hashed`]).
    pub sha256: Option<String>,
}

impl<'a> ArchiveSource<'a> {
    /// Object `name` of `dest`.
    pub fn new(dest: &'a dyn Destination, name: &str) -> ArchiveSource<'a> {
        ArchiveSource {
            dest,
            name: name.to_string(),
            transform: None,
            hashed: false,
        }
    }

    /// The same source, hashing the stored bytes (when the reader does not check them itself).
    pub fn hashed(mut self) -> ArchiveSource<'a> {
        self.hashed = true;
        self
    }

    /// The same source, its stored bytes changed back by `transform`.
    pub fn with_transform(mut self, transform: Arc<dyn Transform>) -> ArchiveSource<'a> {
        self.transform = Some(transform);
        self
    }

    /// Streams the object into `work`, which runs on a blocking thread with a synchronous
    /// reader. If reading from the destination itself failed (an SSH connection dropped, an S3
    /// body cut short), that is the result, as a destination I/O error (exit 4), whatever `work`
    /// made of the truncated stream: it is not the archive's fault. Bytes read (as the work
    /// sees them) are added to `counted` (a progress counter) when given.
    pub async fn read_blocking<T, F>(
        self,
        counted: Option<Arc<AtomicU64>>,
        work: F,
    ) -> Result<Reading<T>, DestError>
    where
        T: Send + 'static,
        F: FnOnce(Box<dyn Read + Send>) -> T + Send + 'static,
    {
        let reader = self.dest.get(&self.name).await?;
        let failure = Arc::new(Mutex::new(None));
        let read = Arc::new(AtomicU64::new(0));
        let digest = self
            .hashed
            .then(|| Arc::new(Mutex::new((Sha256::new(), 0u64))));
        let transport = Transport {
            inner: SyncIoBridge::new(reader),
            failure: failure.clone(),
            digest: digest.clone(),
            read: 0,
            total: read.clone(),
            midway: true,
        };
        let transform = self.transform.clone();
        let out = tokio::task::spawn_blocking(move || {
            let stored: Box<dyn Read + Send> = Box::new(transport);
            let plain = match &transform {
                Some(t) => t.reader(stored),
                None => Ok(stored),
            };
            let plain = match plain {
                Ok(p) => p,
                Err(e) => {
                    let e = io::Error::new(e.kind(), e.to_string());
                    return work(Box::new(Failed(Some(e))));
                }
            };
            match counted {
                Some(counter) => work(Box::new(streams::CountingReader::new(plain, counter))),
                None => work(plain),
            }
        })
        .await
        .expect("reader thread panicked");
        let failed = failure.lock().unwrap().take();
        if let Some(error) = failed {
            return Err(DestError::reading(self.dest, &self.name, error));
        }
        let (stored, sha256) = match digest {
            Some(d) => {
                let (hasher, stored) = std::mem::take(&mut *d.lock().unwrap());
                (stored, Some(hex::encode(hasher.finalize())))
            }
            None => (read.load(std::sync::atomic::Ordering::Relaxed), None),
        };
        Ok(Reading {
            value: out,
            stored,
            sha256,
        })
    }
}

impl ArchiveSource<'_> {
    /// The object as an async reader for code that feeds it on (the agent's unpack): the stored
    /// bytes hashed as they pass ([`Feed::sha256`]), changed back by the transform when one is
    /// set (then on a blocking thread, as transforms are synchronous).
    pub async fn feed(self) -> Result<Feed, DestError> {
        let stored = self.dest.get(&self.name).await?;
        let digest = Arc::new(Mutex::new((Sha256::new(), 0u64)));
        let hashed = HashingAsync {
            inner: stored,
            digest: digest.clone(),
        };
        let failure = Arc::new(Mutex::new(None));
        let reader: crate::destination::ObjectReader = match self.transform {
            None => Box::new(hashed),
            Some(t) => {
                let (writer, rx) = streams::channel();
                let handle = tokio::runtime::Handle::current();
                let failed = failure.clone();
                tokio::task::spawn_blocking(move || {
                    let mut writer = writer;
                    // The destination's own read errors, told from what the transform makes of
                    // the bytes (a decryption error is the archive's fault, not the transport's).
                    let transport = Arc::new(Mutex::new(None));
                    let run = |writer: &mut ChannelWriter| -> io::Result<()> {
                        let stored: Box<dyn Read + Send> = Box::new(Transport {
                            inner: SyncIoBridge::new_with_handle(hashed, handle),
                            failure: transport.clone(),
                            digest: None,
                            read: 0,
                            total: Arc::new(AtomicU64::new(0)),
                            midway: false,
                        });
                        let mut plain = t.reader(stored)?;
                        streams::copy_chunks(&mut plain, writer)?;
                        Ok(())
                    };
                    match run(&mut writer) {
                        Ok(()) => {
                            let _ = writer.close();
                        }
                        // The failure is in place before the reader sees the stream end.
                        Err(e) => {
                            let why = match transport.lock().unwrap().take() {
                                Some(broken) => FeedFailure::Transport(broken),
                                None => FeedFailure::Content(e),
                            };
                            *failed.lock().unwrap() = Some(why);
                            drop(writer);
                        }
                    }
                });
                Box::new(tokio_util::io::StreamReader::new(Box::pin(
                    streams::receiver_stream(rx),
                )))
            }
        };
        Ok(Feed {
            reader,
            digest,
            failure,
        })
    }
}

/// An archive read by async code: [`Feed::reader`], and the sha256 of the stored bytes it has
/// read so far.
pub struct Feed {
    /// The bytes, as the reader of the archive wants them.
    pub reader: crate::destination::ObjectReader,
    digest: Arc<Mutex<(Sha256, u64)>>,
    failure: Arc<Mutex<Option<FeedFailure>>>,
}

/// Why a feed's transform stopped early.
#[derive(Debug)]
pub enum FeedFailure {
    /// Reading the stored bytes from the destination failed.
    Transport(io::Error),
    /// The transform refused the bytes (a decryption error: a damaged or forged object).
    Content(io::Error),
}

impl Feed {
    /// The hex sha256 of the stored bytes read so far, and their count.
    pub fn sha256(&self) -> (String, u64) {
        let (hasher, n) = &*self.digest.lock().unwrap();
        (hex::encode(hasher.clone().finalize()), *n)
    }

    /// Why the transform stopped early, if it did (the reader then saw the stream end).
    pub fn failure(&self) -> Option<FeedFailure> {
        self.failure.lock().unwrap().take()
    }
}

/// An async reader that hashes what passes through it.
struct HashingAsync {
    inner: crate::destination::ObjectReader,
    digest: Arc<Mutex<(Sha256, u64)>>,
}

impl tokio::io::AsyncRead for HashingAsync {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = &polled {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                let mut d = self.digest.lock().unwrap();
                d.0.update(new);
                d.1 += new.len() as u64;
            }
        }
        polled
    }
}

/// Streams object `name` of `dest` into `work` through an [`ArchiveSource`] without a
/// transform; see [`ArchiveSource::read_blocking`].
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
    Ok(ArchiveSource::new(dest, name)
        .read_blocking(counted, work)
        .await?
        .value)
}

/// A reader that fails at once (a transform that could not start), so the work says why.
struct Failed(Option<io::Error>);

impl Read for Failed {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(self
            .0
            .take()
            .unwrap_or_else(|| io::Error::other("the archive could not be read")))
    }
}

/// A destination's byte stream that remembers its first failure and hashes what it reads.
struct Transport<R> {
    inner: R,
    failure: Arc<Mutex<Option<io::Error>>>,
    /// The sha256 of the stored bytes read so far, and their count, when asked for.
    digest: Option<Arc<Mutex<(Sha256, u64)>>>,
    /// Stored bytes read, for the caller.
    total: Arc<AtomicU64>,
    /// Bytes read so far (for the test builds' fault point `read-midway`).
    read: u64,
    /// Whether this reader is where `read-midway` stops (not when another reader of the same
    /// stream, the agent's feed, has its own).
    midway: bool,
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
        if let Some(digest) = &self.digest {
            let mut d = digest.lock().unwrap();
            d.0.update(&buf[..n]);
            d.1 += n as u64;
        }
        let before = self.read;
        self.read += n as u64;
        self.total
            .store(self.read, std::sync::atomic::Ordering::Relaxed);
        if self.midway && before < crate::fault::MIDWAY && self.read >= crate::fault::MIDWAY {
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

    #[tokio::test]
    async fn a_transform_sits_between_the_producer_and_the_hash_both_ways() {
        use crate::destination::memory::Memory;
        use crate::pipeline::transform::tests::Xor;
        use std::io::Write;
        let dest = Memory::default();
        let plain = b"tar bytes, compressed".repeat(1000);
        let data = plain.clone();
        let (sealed, n) = ArchiveSink::open(&dest, "web-1.tar.zst")
            .await
            .unwrap()
            .with_transform(Arc::new(Xor(0x5a)))
            .stream(move |mut w| {
                w.write_all(&data)?;
                Ok((data.len(), w))
            })
            .await
            .ok()
            .unwrap();
        assert_eq!(n, plain.len());
        sealed.upload.commit().await.unwrap();
        // What is stored is the transform's output, and the sha256 and size are of it.
        let stored = read_blocking(&dest, "web-1.tar.zst", None, |mut r| {
            let mut v = Vec::new();
            r.read_to_end(&mut v).map(|_| v)
        })
        .await
        .unwrap()
        .unwrap();
        let changed: Vec<u8> = plain.iter().map(|b| b ^ 0x5a).collect();
        assert_eq!(stored, changed);
        assert_eq!(sealed.size, stored.len() as u64);
        assert_eq!(sealed.sha256, hex::encode(Sha256::digest(&stored)));
        // Read back through the same transform: the producer's bytes, and the stored bytes'
        // sha256 when asked.
        let back = ArchiveSource::new(&dest, "web-1.tar.zst")
            .with_transform(Arc::new(Xor(0x5a)))
            .hashed()
            .read_blocking(None, |mut r| {
                let mut v = Vec::new();
                r.read_to_end(&mut v).map(|_| v)
            })
            .await
            .unwrap();
        assert_eq!(back.value.unwrap(), plain);
        assert_eq!(back.sha256.as_deref(), Some(sealed.sha256.as_str()));
        assert_eq!(back.stored, stored.len() as u64);
    }

    #[tokio::test]
    async fn a_feed_hashes_the_stored_bytes_and_hands_on_the_transformed_ones() {
        use crate::destination::memory::Memory;
        use crate::pipeline::transform::tests::Xor;
        use tokio::io::AsyncReadExt;
        let stored: String = "stored bytes ".repeat(500);
        let dest = Memory::with(&[("web-1.tar.zst", stored.as_str())]);
        let want = hex::encode(Sha256::digest(stored.as_bytes()));
        for transform in [None, Some(0x20u8)] {
            let mut source = ArchiveSource::new(&dest, "web-1.tar.zst");
            if let Some(k) = transform {
                source = source.with_transform(Arc::new(Xor(k)));
            }
            let mut feed = source.feed().await.unwrap();
            let mut got = Vec::new();
            feed.reader.read_to_end(&mut got).await.unwrap();
            let expect: Vec<u8> = match transform {
                Some(k) => stored.bytes().map(|b| b ^ k).collect(),
                None => stored.as_bytes().to_vec(),
            };
            assert_eq!(got, expect);
            assert_eq!(feed.sha256(), (want.clone(), stored.len() as u64));
            assert!(feed.failure().is_none());
        }
    }
}
