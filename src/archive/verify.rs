//! Verification: re-read an archive end to end — sha256 of the bytes, a full zstd decode, a walk of
//! every tar entry with its data — and check every entry stays inside a path the manifest lists.

use std::io::{self, Read};

use super::names::{prefix_for, relative, Scope};
use super::streams::HashingReader;
use crate::manifest::Manifest;

/// What a verification found, when the archive is sound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Archive bytes read.
    pub size: u64,
    /// SHA-256 of those bytes.
    pub sha256: String,
    /// Uncompressed tar bytes.
    pub tar_bytes: u64,
    /// Entries walked.
    pub entries: u64,
}

/// Walks `archive` and compares what it finds with `manifest`. The error text says what is wrong.
pub fn verify(archive: impl Read, manifest: &Manifest) -> Result<Report, String> {
    let mut hashing = HashingReader::new(archive);
    let walked = walk(&mut hashing, manifest);
    // Hash what the walk did not read (padding after the end-of-archive blocks, or everything after a
    // decoding error) so a checksum mismatch is always reported as such.
    let (size, sha256) = hashing
        .drain()
        .map_err(|e| format!("cannot read the archive: {e}"))?;
    if sha256 != manifest.sha256 {
        let also = walked
            .err()
            .map(|e| format!("; decoding also fails: {e}"))
            .unwrap_or_default();
        return Err(format!(
            "sha256 mismatch: manifest says {}, archive has {sha256} ({size} bytes){also}",
            manifest.sha256
        ));
    }
    let (tar_bytes, entries) = walked?;
    if size != manifest.size {
        return Err(format!(
            "size mismatch: manifest says {} bytes, archive has {size}",
            manifest.size
        ));
    }
    if (tar_bytes, entries) != (manifest.tar_bytes, manifest.entries) {
        return Err(format!(
            "content mismatch: manifest says {} entries in {} tar bytes, archive has {entries} in {tar_bytes}",
            manifest.entries, manifest.tar_bytes
        ));
    }
    Ok(Report {
        size,
        sha256,
        tar_bytes,
        entries,
    })
}

fn walk(reader: impl Read, manifest: &Manifest) -> Result<(u64, u64), String> {
    let prefixes: Vec<String> = manifest.paths.iter().map(|p| prefix_for(&p.path)).collect();
    let mut scopes: Vec<Scope> = prefixes.iter().map(|_| Scope::default()).collect();
    let decoder = super::decoder(reader).map_err(|e| format!("not a zstd stream: {e}"))?;
    let mut counted = CountRead {
        inner: decoder,
        count: 0,
    };
    let mut entries = 0;
    {
        let mut archive = tar::Archive::new(&mut counted);
        let iter = archive
            .entries()
            .map_err(|e| format!("not a tar archive: {e}"))?;
        for entry in iter {
            let mut entry =
                entry.map_err(|e| format!("corrupt archive after {entries} entries: {e}"))?;
            let name = entry.path_bytes().into_owned();
            let shown = String::from_utf8_lossy(&name).into_owned();
            let (index, rel) = prefixes
                .iter()
                .enumerate()
                .find_map(|(i, p)| relative(&name, p).map(|r| (i, r.to_vec())))
                .ok_or_else(|| {
                    format!("entry {shown:?} is outside every path the manifest lists")
                })?;
            let kind = entry.header().entry_type();
            let hardlink = if kind == tar::EntryType::Link {
                let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                Some(
                    relative(&target, &prefixes[index])
                        .map(<[u8]>::to_vec)
                        .unwrap_or_else(|| b"../".to_vec()),
                )
            } else {
                None
            };
            scopes[index]
                .admit(&rel, hardlink.as_deref(), kind == tar::EntryType::Symlink)
                .map_err(|why| format!("unsafe entry {shown:?}: {why}"))?;
            io::copy(&mut entry, &mut io::sink())
                .map_err(|e| format!("corrupt data in {shown:?}: {e}"))?;
            entries += 1;
        }
    }
    // Read to the end of the zstd frame so its checksum is checked too.
    io::copy(&mut counted, &mut io::sink()).map_err(|e| format!("corrupt zstd stream: {e}"))?;
    Ok((counted.count, entries))
}

struct CountRead<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for CountRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}
