//! Small adapters between the synchronous tar/zstd code and async I/O: a writer that hands bounded
//! chunks to an async consumer, and readers/writers that count or hash what passes through.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, Semaphore};

/// Size of the chunks handed across; with [`CHANNEL_DEPTH`] this bounds what is in flight.
pub const CHUNK: usize = 256 * 1024;
/// How many chunks may wait between producer and consumer.
pub const CHANNEL_DEPTH: usize = 4;

/// A bounded channel for archive chunks.
pub fn channel() -> (ChannelWriter, mpsc::Receiver<Bytes>) {
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    (
        ChannelWriter {
            tx,
            buf: BytesMut::with_capacity(CHUNK),
        },
        rx,
    )
}

/// A blocking `Write` that sends `CHUNK`-sized pieces to an async receiver. Must run off the runtime
/// (in `spawn_blocking`). Writing fails once the receiver is gone.
pub struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
    buf: BytesMut,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.buf.reserve(CHUNK);
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the receiving side stopped"))
    }

    /// Sends what is buffered and closes the channel, telling the receiver the stream is complete.
    pub fn close(mut self) -> io::Result<()> {
        self.send()
    }
}

/// Copies `from` into `to` in reads of up to [`CHUNK`] bytes (`io::copy` reads 8 KiB at a time:
/// 32 times the system calls on a pipe).
pub fn copy_chunks(from: &mut impl Read, to: &mut impl Write) -> io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The receiving end as a stream of `io::Result<Bytes>`, the shape bollard's upload body takes.
pub fn receiver_stream(
    rx: mpsc::Receiver<Bytes>,
) -> impl futures_util::Stream<Item = io::Result<Bytes>> {
    futures_util::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|b| (Ok(b), rx)) },
    )
}

/// Bytes an engine stream may run ahead of the packer. The engine writes its tar while the packer
/// waits on zstd, and the packer reads buffered input while the engine is slow, instead of each
/// waiting on the other through a socket buffer.
pub const READ_AHEAD: usize = 4 << 20;

/// A blocking `Read` over an async byte stream that a task pulls up to [`READ_AHEAD`] bytes ahead.
/// The task starts on the first read, so streams that are read one after another do not all open
/// at once. Must be read off the runtime (in `spawn_blocking`).
pub struct ReadAhead {
    start: Option<(tokio::runtime::Handle, Pending)>,
    rx: Option<mpsc::UnboundedReceiver<io::Result<Bytes>>>,
    budget: Arc<Semaphore>,
    current: Bytes,
}

type Pending = std::pin::Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

impl ReadAhead {
    /// Wraps `stream`; its task will run on `handle`.
    pub fn new(
        handle: tokio::runtime::Handle,
        stream: impl Stream<Item = io::Result<Bytes>> + Send + 'static,
    ) -> Self {
        ReadAhead {
            start: Some((handle, Box::pin(stream))),
            rx: None,
            budget: Arc::new(Semaphore::new(READ_AHEAD)),
            current: Bytes::new(),
        }
    }

    fn spawn(&mut self) {
        let Some((handle, mut stream)) = self.start.take() else {
            return;
        };
        // Unbounded in items, bounded in bytes by the semaphore: each chunk holds permits for its
        // size until the reader has consumed it.
        let (tx, rx) = mpsc::unbounded_channel();
        let budget = self.budget.clone();
        handle.spawn(async move {
            while let Some(item) = stream.next().await {
                if let Ok(chunk) = &item {
                    let want = chunk.len().clamp(1, READ_AHEAD) as u32;
                    match budget.acquire_many(want).await {
                        Ok(permit) => permit.forget(),
                        Err(_) => return,
                    }
                }
                let failed = item.is_err();
                if tx.send(item).is_err() || failed {
                    return;
                }
            }
        });
        self.rx = Some(rx);
    }
}

impl Read for ReadAhead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.spawn();
        while self.current.is_empty() {
            let rx = self.rx.as_mut().expect("spawned above");
            match rx.blocking_recv() {
                Some(Ok(chunk)) => {
                    self.budget.add_permits(chunk.len().clamp(1, READ_AHEAD));
                    self.current = chunk;
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        // Wakes the task if it waits for room, so it sees the closed channel and ends.
        self.budget.close();
    }
}

/// Counts and hashes everything read through it.
pub struct HashingReader<R> {
    inner: R,
    /// `None` when only the count is wanted (sha256 costs about 7 ns a byte here).
    hasher: Option<Sha256>,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Some(Sha256::new()),
            count: 0,
        }
    }

    /// Wraps `inner`, counting only: [`HashingReader::drain`] then gives an empty hash.
    pub fn counting(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: None,
            count: 0,
        }
    }

    /// Reads the rest of the stream (so the hash covers all of it) and returns count and hex
    /// sha256 (empty when counting only).
    pub fn drain(mut self) -> io::Result<(u64, String)> {
        io::copy(&mut self, &mut io::sink())?;
        let sha256 = self
            .hasher
            .map(|h| hex::encode(h.finalize()))
            .unwrap_or_default();
        Ok((self.count, sha256))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.count += n as u64;
        Ok(n)
    }
}

/// Counts bytes read into a shared counter (progress reporting).
pub struct CountingReader<R> {
    inner: R,
    counter: Arc<AtomicU64>,
}

impl<R: Read> CountingReader<R> {
    /// Wraps `inner`, adding every byte read to `counter`.
    pub fn new(inner: R, counter: Arc<AtomicU64>) -> Self {
        CountingReader { inner, counter }
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Counts bytes written, optionally into a shared progress counter too.
pub struct CountingWriter<W> {
    inner: W,
    /// Bytes written so far.
    pub count: u64,
    progress: Option<Arc<AtomicU64>>,
}

impl<W: Write> CountingWriter<W> {
    /// Wraps `inner`; `progress`, if given, is advanced by every byte written.
    pub fn new(inner: W, progress: Option<Arc<AtomicU64>>) -> Self {
        CountingWriter {
            inner,
            count: 0,
            progress,
        }
    }

    /// Returns the inner writer.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(data)?;
        self.count += n as u64;
        if let Some(p) = &self.progress {
            p.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_ahead_delivers_every_byte_in_order() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let chunks: Vec<io::Result<Bytes>> = (0..2000u32)
            .map(|i| {
                Ok(Bytes::from(vec![
                    (i % 251) as u8;
                    1 + (i as usize * 37) % 9000
                ]))
            })
            .collect();
        let expected: Vec<u8> = chunks
            .iter()
            .flat_map(|c| c.as_ref().unwrap().to_vec())
            .collect();
        let mut reader = ReadAhead::new(rt.handle().clone(), futures_util::stream::iter(chunks));
        let got = std::thread::spawn(move || {
            let mut out = Vec::new();
            reader.read_to_end(&mut out).unwrap();
            out
        })
        .join()
        .unwrap();
        assert_eq!(got, expected);
    }

    #[test]
    fn read_ahead_passes_errors_on() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let chunks = vec![
            Ok(Bytes::from_static(b"abc")),
            Err(io::Error::other("engine went away")),
        ];
        let mut reader = ReadAhead::new(rt.handle().clone(), futures_util::stream::iter(chunks));
        let err = std::thread::spawn(move || reader.read_to_end(&mut Vec::new()).unwrap_err())
            .join()
            .unwrap();
        assert!(err.to_string().contains("engine went away"));
    }

    #[test]
    fn hashing_reader_matches_sha256_of_the_bytes() {
        let (n, sha) = HashingReader::new(&b"abc"[..]).drain().unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            sha,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
