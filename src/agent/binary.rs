//! Whether this binary can run as the agent inside a helper (statically linked, of the helper
//! image's architecture), and the tar stream that puts it there. Anything that rules the agent
//! out is [`Unavailable`], and the caller takes the engine's archive endpoint instead.

use std::io;
use std::path::PathBuf;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::IN_HELPER;
use crate::docker::Engine;

/// Why the agent cannot run for this container; said in the log line that names the path taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable(pub String);

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// This binary, if it can run in any container of its architecture: statically linked (no ELF
/// interpreter to find in the image).
pub fn binary() -> Result<PathBuf, Unavailable> {
    let exe = std::env::current_exe()
        .map_err(|e| Unavailable(format!("cannot find the running binary: {e}")))?;
    let head =
        read_head(&exe).map_err(|e| Unavailable(format!("cannot read {}: {e}", exe.display())))?;
    match has_interpreter(&head) {
        Some(false) => Ok(exe),
        Some(true) => Err(Unavailable(format!(
            "{} is dynamically linked, so it cannot run inside the helper (build it static: see the README's Install)",
            exe.display()
        ))),
        None => Err(Unavailable(format!(
            "{} is not a 64-bit little-endian ELF binary",
            exe.display()
        ))),
    }
}

/// The first 64 KiB of a file: an ELF header and its program headers.
fn read_head(path: &std::path::Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open(path)?
        .take(64 << 10)
        .read_to_end(&mut head)?;
    Ok(head)
}

/// Whether an ELF64 little-endian image names a program interpreter (`PT_INTERP`): dynamically
/// linked. `None` if it is not such an image or its program headers are out of reach.
fn has_interpreter(elf: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return None;
    }
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().ok()?) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    let mut interp = false;
    for i in 0..count {
        let at = phoff.checked_add(i.checked_mul(size)?)?;
        let kind = elf.get(at..at.checked_add(4)?)?;
        interp |= u32::from_le_bytes(kind.try_into().ok()?) == PT_INTERP;
    }
    Some(interp)
}

/// This binary's architecture as the engine names an image's (`amd64`, `arm64`).
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Whether `image` is of this binary's architecture (an image that says nothing is taken to be).
pub async fn check_image(engine: &Engine, image: &str) -> Result<(), Unavailable> {
    let arch = engine
        .image_arch(image)
        .await
        .map_err(|e| Unavailable(e.to_string()))?;
    if !arch.is_empty() && arch != go_arch() {
        return Err(Unavailable(format!(
            "the helper image {image} is {arch}, this dockyard is {}",
            go_arch()
        )));
    }
    Ok(())
}

/// A one-entry tar stream holding the binary as `IN_HELPER` (mode 0755, root), read from disk as
/// it is sent; gzipped (fastest level, which the archive endpoint unpacks) for an engine on
/// another host, where the binary's ~30 MB would otherwise cross the network on every run.
pub async fn binary_tar(
    exe: &std::path::Path,
    compress: bool,
) -> io::Result<std::pin::Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>> {
    let file = tokio::fs::File::open(exe).await?;
    let len = file.metadata().await?.len();
    let mut h = tar::Header::new_gnu();
    h.set_path(IN_HELPER.trim_start_matches('/'))?;
    h.set_mode(0o755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(len);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let head = Bytes::copy_from_slice(h.as_bytes());
    let tail = Bytes::from(vec![0u8; ((512 - len % 512) % 512) as usize + 1024]);
    if compress {
        return Ok(Box::pin(gzipped(file.into_std().await, len, head, tail)));
    }
    let data = tokio_util::io::ReaderStream::with_capacity(
        tokio::io::AsyncReadExt::take(file, len),
        1 << 20,
    );
    let head = futures_util::stream::iter([Ok(head)]);
    let tail = futures_util::stream::iter([Ok(tail)]);
    Ok(Box::pin(head.chain(data).chain(tail)))
}

/// A tar stream of one symlink, `name` (absolute, in the helper) to `target`.
pub fn symlink_tar(
    name: &str,
    target: &str,
) -> std::pin::Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>> {
    let mut h = tar::Header::new_gnu();
    let built = (|| -> io::Result<()> {
        h.set_path(name.trim_start_matches('/'))?;
        h.set_link_name(target)?;
        Ok(())
    })();
    let mut tar = Vec::new();
    match built {
        Ok(()) => {
            h.set_mode(0o777);
            h.set_uid(0);
            h.set_gid(0);
            h.set_size(0);
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_cksum();
            tar.extend_from_slice(h.as_bytes());
            tar.extend_from_slice(&[0u8; 1024]);
        }
        Err(e) => return Box::pin(futures_util::stream::iter([Err(e)])),
    }
    Box::pin(futures_util::stream::iter([Ok(Bytes::from(tar))]))
}

/// `head`, `len` bytes of `file` and `tail`, gzipped in a thread of its own as they are sent.
fn gzipped(
    file: std::fs::File,
    len: u64,
    head: Bytes,
    tail: Bytes,
) -> impl Stream<Item = io::Result<Bytes>> + Send {
    use std::io::{Read, Write};
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
    std::thread::spawn(move || {
        let chunks = Chunks {
            tx: tx.clone(),
            buf: Vec::new(),
        };
        let written = (|| {
            let mut gz = flate2::write::GzEncoder::new(chunks, flate2::Compression::fast());
            gz.write_all(&head)?;
            let copied = io::copy(&mut file.take(len), &mut gz)?;
            if copied != len {
                return Err(io::Error::other("the binary changed size while being sent"));
            }
            gz.write_all(&tail)?;
            gz.finish()?.flush()
        })();
        if let Err(e) = written {
            let _ = tx.blocking_send(Err(e));
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) })
}

/// A writer that hands 256 KiB chunks to a channel.
struct Chunks {
    tx: tokio::sync::mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl std::io::Write for Chunks {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 256 << 10 {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_binary_and_a_forged_header_are_read_right() {
        let head = read_head(&std::env::current_exe().unwrap()).unwrap();
        // Built static (.cargo/config.toml), as the agent must be.
        assert_eq!(has_interpreter(&head), Some(false));
        let dynamic = read_head(std::path::Path::new("/bin/sh")).unwrap();
        assert_eq!(has_interpreter(&dynamic), Some(true));
        assert_eq!(has_interpreter(b"#!/bin/sh\n"), None);
        // A header whose program headers lie beyond what was read.
        let mut forged = head.clone();
        forged[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(has_interpreter(&forged), None);
    }
}
