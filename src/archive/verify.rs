//! Verification: re-read an archive end to end — sha256 of the bytes, a full zstd decode, a walk of
//! every tar entry with its data — and check every entry with the rules staging applies: inside a
//! path the manifest lists, no name through a symlink of its own, no PAX record that disagrees
//! with its header (tar readers would see different archives). Device nodes and set-id files are
//! listed: restore refuses the former and strips the latter unless told otherwise.

use std::io::{self, Read};

use super::entry::{self, Kind};
use super::names::{hardlink_target, prefix_for, relative, Scope};
use super::stage::RootMeta;
use crate::manifest::Manifest;
use crate::pipeline::streams::HashingReader;

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
    /// Device nodes (restore refuses them without `--allow-devices`).
    pub devices: Vec<String>,
    /// Files with set-user-ID or set-group-ID bits (restore strips them without `--keep-setuid`).
    pub setid: Vec<String>,
    /// Each manifest path's own entry, in the manifest's order: a directory or a single file,
    /// with its owner, mode and time (`None` if the archive has no entry for the path itself).
    pub roots: Vec<Option<(Kind, RootMeta)>>,
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
    let walked = walked?;
    let (tar_bytes, entries) = (walked.tar_bytes, walked.entries);
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
        devices: walked.devices,
        setid: walked.setid,
        roots: walked.roots,
    })
}

struct Walked {
    tar_bytes: u64,
    entries: u64,
    devices: Vec<String>,
    setid: Vec<String>,
    roots: Vec<Option<(Kind, RootMeta)>>,
}

fn walk(reader: impl Read, manifest: &Manifest) -> Result<Walked, String> {
    let prefixes: Vec<String> = manifest.paths.iter().map(|p| prefix_for(&p.path)).collect();
    let mut scopes: Vec<Scope> = prefixes.iter().map(|_| Scope::default()).collect();
    let decoder = super::decoder(reader).map_err(|e| format!("not a zstd stream: {e}"))?;
    let mut counted = CountRead {
        inner: decoder,
        count: 0,
    };
    let mut entries = 0;
    let (mut devices, mut setid) = (Vec::new(), Vec::new());
    let mut roots: Vec<Option<(Kind, RootMeta)>> = vec![None; prefixes.len()];
    {
        let mut archive = tar::Archive::new(&mut counted);
        let iter = archive
            .entries()
            .map_err(|e| format!("not a tar archive: {e}"))?;
        for entry in iter {
            let mut entry =
                entry.map_err(|e| format!("corrupt archive after {entries} entries: {e}"))?;
            let (meta, disagreements) = entry::read(&mut entry)?;
            if let Some(d) = disagreements.first() {
                return Err(format!("unsafe entry {:?}: its PAX {} ({}) disagrees with its header ({}); tar readers would see different archives", show(&meta.name),
                    d.key, d.pax, d.header
                ));
            }
            // The longest matching path: with nested mounts, `srv/media/x` belongs to
            // /srv/media, not /srv.
            let (index, rel) = prefixes
                .iter()
                .enumerate()
                .filter_map(|(i, p)| relative(&meta.name, p).map(|r| (i, p.len(), r.to_vec())))
                .max_by_key(|(_, len, _)| *len)
                .map(|(i, _, r)| (i, r))
                .ok_or_else(|| {
                    format!(
                        "entry {:?} is outside every path the manifest lists",
                        show(&meta.name)
                    )
                })?;
            let hardlink = (meta.kind == Kind::Hardlink).then(|| {
                hardlink_target(meta.link.as_deref().unwrap_or_default(), &prefixes[index])
            });
            scopes[index]
                .admit(&rel, hardlink.as_deref(), meta.kind == Kind::Symlink)
                .map_err(|why| format!("unsafe entry {:?}: {why}", show(&meta.name)))?;
            if rel.is_empty() {
                if !matches!(meta.kind, Kind::Dir | Kind::File) {
                    return Err(format!(
                        "unsafe entry {:?}: a backed-up path must be a directory or a file",
                        show(&meta.name)
                    ));
                }
                if roots[index].is_some() {
                    return Err(format!(
                        "unsafe entry {:?}: the path appears twice",
                        show(&meta.name)
                    ));
                }
                roots[index] = Some((
                    meta.kind,
                    RootMeta {
                        mode: meta.mode,
                        uid: meta.uid,
                        gid: meta.gid,
                        mtime: meta.mtime.secs,
                    },
                ));
            }
            if meta.kind.is_device() {
                devices.push(show(&meta.name));
            }
            if meta.is_setid_file() {
                setid.push(show(&meta.name));
            }
            let copied = io::copy(&mut entry, &mut io::sink())
                .map_err(|e| format!("corrupt data in {:?}: {e}", show(&meta.name)))?;
            if copied != entry.size() {
                return Err(format!(
                    "corrupt data in {:?}: {copied} of {} bytes",
                    show(&meta.name),
                    entry.size()
                ));
            }
            entries += 1;
        }
    }
    // Read to the end of the zstd frame so its checksum is checked too.
    io::copy(&mut counted, &mut io::sink()).map_err(|e| format!("corrupt zstd stream: {e}"))?;
    Ok(Walked {
        tar_bytes: counted.count,
        entries,
        devices,
        setid,
        roots,
    })
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

/// An entry name for messages.
fn show(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{MountRecord, PathRecord};
    use sha2::{Digest, Sha256};

    /// A zstd archive of `entries` (name, symlink target) and a manifest that matches its bytes.
    fn archive(entries: &[(&str, Option<&str>)]) -> (Vec<u8>, Manifest) {
        let mut b = tar::Builder::new(Vec::new());
        for (name, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_size(0);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
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
            "paths": [PathRecord { path: "/srv/media".into(), mount: MountRecord { destination: "/srv/media".into(), kind: "volume".into(), volume: None } }],
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
