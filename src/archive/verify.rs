//! Verification: re-read an archive end to end — sha256 of the bytes, a full zstd decode, a walk of
//! every tar entry with its data — and check every entry stays inside a path the manifest lists.

use std::io::{self, Read};

use super::names::{hardlink_target, prefix_for, relative, Scope};
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
                Some(hardlink_target(&target, &prefixes[index]))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::Mount;
    use crate::manifest::PathRecord;
    use sha2::{Digest, Sha256};

    /// A zstd archive of `entries` (name, symlink target) and a manifest that matches its bytes.
    fn archive(entries: &[(&str, Option<&str>)]) -> (Vec<u8>, Manifest) {
        let mut b = tar::Builder::new(Vec::new());
        for (name, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_size(0);
            match link {
                Some(t) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    b.append_link(&mut h, name, t).unwrap();
                }
                None => b.append_data(&mut h, name, std::io::empty()).unwrap(),
            }
        }
        let tar = b.into_inner().unwrap();
        let zst = zstd::encode_all(&tar[..], 3).unwrap();
        let m: Manifest = serde_json::from_value(serde_json::json!({
            "id": "t", "container": "c", "container_id": "c", "image": "i", "image_id": "i", "host": "h",
            "paths": [PathRecord { path: "/srv/media".into(), mount: Mount { destination: "/srv/media".into(), kind: "volume".into(), volume: None } }],
            "created": "2026-01-01T00:00:00Z", "tags": [], "tool_version": "0", "size": zst.len(),
            "sha256": hex::encode(Sha256::digest(&zst)), "tar_bytes": tar.len(), "entries": entries.len(),
            "level": 3, "archive": "t.tar.zst"
        }))
        .unwrap();
        (zst, m)
    }

    #[test]
    fn a_sound_archive_verifies() {
        let (zst, m) = archive(&[("srv/media/a", None), ("srv/media/l", Some("/etc"))]);
        assert_eq!(verify(&zst[..], &m).unwrap().entries, 2);
    }

    #[test]
    fn entries_through_an_archive_symlink_are_refused() {
        let (zst, m) = archive(&[("srv/media/l", Some("/etc")), ("srv/media/l/passwd", None)]);
        let err = verify(&zst[..], &m).unwrap_err();
        assert!(err.contains("unsafe entry \"srv/media/l/passwd\""), "{err}");
    }

    #[test]
    fn entries_outside_the_manifest_paths_are_refused() {
        let (zst, m) = archive(&[("etc/passwd", None)]);
        assert!(verify(&zst[..], &m)
            .unwrap_err()
            .contains("outside every path"));
    }

    #[test]
    fn a_flipped_byte_is_a_checksum_mismatch() {
        let (mut zst, m) = archive(&[("srv/media/a", None)]);
        let mid = zst.len() / 2;
        zst[mid] ^= 1;
        assert!(verify(&zst[..], &m)
            .unwrap_err()
            .starts_with("sha256 mismatch"));
    }
}
