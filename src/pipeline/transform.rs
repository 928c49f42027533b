//! The place between compression and hashing where a backup's bytes may be changed on their way
//! to a destination, and changed back on their way out (age encryption, in `encryption/`): a
//! [`Transform`] wraps the writer an [`ArchiveSink`](super::ArchiveSink) producer writes into,
//! and the reader an [`ArchiveSource`](super::ArchiveSource) hands on.
//!
//! With a transform, a manifest's `sha256` and `size` are of the stored (transformed) bytes, as
//! the sink returns them ([`Sealed`](super::Sealed)). A reader then checks the hash on the stored
//! side ([`ArchiveSource::hashed`](super::ArchiveSource::hashed), [`Feed::sha256`](super::Feed::sha256),
//! `ops::key`) and the content on the plain side: `archive::verify` and the agent's `Expect`
//! (`sealed`) do not compare their reading with the manifest's hash.

use std::io::{self, Read, Write};

/// A writer that must be told where the stream ends (to write a final block, a tag).
pub trait Finish: Write + Send {
    /// Writes what the end of the stream needs; nothing may be written after.
    fn finish(self: Box<Self>) -> io::Result<()>;
}

/// A reversible change of a stream of stored bytes.
pub trait Transform: Send + Sync {
    /// Wraps `stored`: bytes written to the result reach `stored` changed.
    fn writer(&self, stored: Box<dyn Write + Send>) -> io::Result<Box<dyn Finish>>;

    /// Wraps `stored`: bytes read from the result are `stored`'s changed back.
    fn reader(&self, stored: Box<dyn Read + Send>) -> io::Result<Box<dyn Read + Send>>;
}

/// The writer a sink's producer gets: the channel to the destination, through the transform if
/// there is one.
pub struct SinkWriter {
    inner: Inner,
}

enum Inner {
    Plain(super::ChannelWriter),
    Transformed(
        Box<dyn Finish>,
        std::sync::Arc<std::sync::Mutex<Option<super::ChannelWriter>>>,
    ),
}

impl SinkWriter {
    /// `channel`, through `transform` when given.
    pub fn new(
        channel: super::ChannelWriter,
        transform: Option<&dyn Transform>,
    ) -> io::Result<SinkWriter> {
        let inner = match transform {
            None => Inner::Plain(channel),
            Some(t) => {
                // The transform owns its output; the channel is taken back from it at the end.
                let shared = std::sync::Arc::new(std::sync::Mutex::new(Some(channel)));
                let out = Shared(shared.clone());
                Inner::Transformed(t.writer(Box::new(out))?, shared)
            }
        };
        Ok(SinkWriter { inner })
    }

    /// Ends the stream: the transform's last bytes, then the channel's end.
    pub fn close(self) -> io::Result<()> {
        match self.inner {
            Inner::Plain(channel) => channel.close(),
            Inner::Transformed(w, shared) => {
                w.finish()?;
                let channel = shared.lock().unwrap().take();
                channel.map_or(Ok(()), super::ChannelWriter::close)
            }
        }
    }
}

impl Write for SinkWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Plain(c) => c.write(buf),
            Inner::Transformed(w, _) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Plain(c) => c.flush(),
            Inner::Transformed(w, _) => w.flush(),
        }
    }
}

/// The channel, shared between the transform writing into it and the sink closing it.
struct Shared(std::sync::Arc<std::sync::Mutex<Option<super::ChannelWriter>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.0.lock().unwrap().as_mut() {
            Some(c) => c.write(buf),
            None => Err(io::Error::other("the stream has ended")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.0.lock().unwrap().as_mut() {
            Some(c) => c.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A transform for tests: every byte XORed with a key byte, so stored bytes differ from what
    /// was written and read back the same.
    pub struct Xor(pub u8);

    struct XorWriter(Box<dyn Write + Send>, u8);

    impl Write for XorWriter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let changed: Vec<u8> = buf.iter().map(|b| b ^ self.1).collect();
            self.0.write_all(&changed)?;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            self.0.flush()
        }
    }

    impl Finish for XorWriter {
        fn finish(mut self: Box<Self>) -> io::Result<()> {
            self.0.flush()
        }
    }

    struct XorReader(Box<dyn Read + Send>, u8);

    impl Read for XorReader {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.read(buf)?;
            buf[..n].iter_mut().for_each(|b| *b ^= self.1);
            Ok(n)
        }
    }

    impl Transform for Xor {
        fn writer(&self, stored: Box<dyn Write + Send>) -> io::Result<Box<dyn Finish>> {
            Ok(Box::new(XorWriter(stored, self.0)))
        }
        fn reader(&self, stored: Box<dyn Read + Send>) -> io::Result<Box<dyn Read + Send>> {
            Ok(Box::new(XorReader(stored, self.0)))
        }
    }
}
