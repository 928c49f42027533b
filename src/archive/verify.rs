//! Verification: re-read an archive end to end — sha256 of the bytes, a full zstd decode, a walk of
//! every tar entry with its data — and check every entry with the rules staging applies: inside a
//! path the manifest lists, no name through a symlink of its own, no PAX record that disagrees
//! with its header (tar readers would see different archives), no file where it created a
//! directory, no header over 1 MiB (`guard`). Device nodes, set-id files and entries with
//! `security.*`/`trusted.*` xattrs are listed: restore refuses the first and strips the others
//! unless told otherwise. Each staging pass of a restore walks the archive through the same
//! [`check`], so a restore decodes it once.

use std::io::{self, Read};

use super::entry::RootMeta;
use super::entry::{self, Kind, Meta};
use super::guard::TooLarge;
use super::names::{hardlink_target, in_work_dir, prefix_for, relative, show, Scope, WORK_DIR};
use crate::manifest::Manifest;
use crate::pipeline::streams::HashingReader;

/// What a manifest promises about its archive: every pass that reads the archive to act on it
/// (verify, and each staging pass of a restore) checks all of it against these.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Expect {
    /// SHA-256 of the archive's bytes.
    pub sha256: String,
    /// The archive's length.
    pub size: u64,
    /// Uncompressed tar bytes.
    pub tar_bytes: u64,
    /// Entries.
    pub entries: u64,
    /// The backed-up container paths, in the manifest's order.
    pub paths: Vec<String>,
    /// The bytes read here are an encrypted archive's plain side: `sha256` and `size` are of the
    /// stored bytes, checked on the host where they are read (`ops::key`), not here.
    #[serde(default)]
    pub sealed: bool,
    /// The database dumps, which come first in the archive, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dumps: Vec<DumpExpect>,
}

/// What a manifest promises of one database dump: its parts, in order, and their bytes joined.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DumpExpect {
    /// Its parts' names.
    pub parts: Vec<String>,
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
    /// Its bytes.
    pub size: u64,
}

impl Expect {
    /// What `manifest` promises about the bytes read here, when they are the stored ones (an
    /// encrypted backup's plain side: `ops::key::Key::expect`).
    pub fn of(manifest: &Manifest) -> Expect {
        Expect {
            sha256: manifest.sha256.clone(),
            size: manifest.size,
            tar_bytes: manifest.tar_bytes,
            entries: manifest.entries,
            paths: manifest.paths.iter().map(|p| p.path.clone()).collect(),
            sealed: false,
            dumps: manifest
                .dumps
                .iter()
                .map(|d| DumpExpect {
                    parts: d.part_names(),
                    sha256: d.sha256.clone(),
                    size: d.size,
                })
                .collect(),
        }
    }
}

/// What a verification found, when the archive is sound (the fields of `verify`'s JSON document).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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
    /// Entries with `security.*` or `trusted.*` extended attributes, file capabilities among them
    /// (restore drops those without `--keep-capabilities`).
    pub privileged_xattrs: Vec<String>,
    /// Each manifest path's own entry, in the manifest's order: a directory or a single file,
    /// with its owner, mode and time (`None` if the archive has no entry for the path itself).
    #[serde(skip)]
    pub roots: Vec<Option<(Kind, RootMeta)>>,
}

/// One entry that passed its checks, as [`check`] hands it on.
pub struct Checked {
    /// Which manifest path it belongs to (the longest that holds it).
    pub index: usize,
    /// Its name relative to that path (empty for the path itself).
    pub rel: Vec<u8>,
    /// A hard link's target, relative to the same path.
    pub hardlink: Option<Vec<u8>>,
    /// Its metadata, from checked values.
    pub meta: Meta,
}

/// Walks `archive` and compares what it finds with `expect`. The error text says what is wrong.
pub fn verify(archive: impl Read, expect: &Expect) -> Result<Report, String> {
    check(archive, expect, |_, _| Ok(())).map_err(|e| e.to_string())
}

/// Reads all of `archive` — its sha256, a full zstd decode, every tar entry with its data — and
/// checks it against `expect`, handing each entry that passed its own checks to `visit` with a
/// reader of its data (what `visit` leaves unread is read here). A problem with the archive is an
/// `InvalidData` error saying what, a checksum mismatch first; `visit`'s other errors (a write
/// that failed) come back as they are, without reading further.
pub fn check(
    archive: impl Read,
    expect: &Expect,
    visit: impl FnMut(Checked, &mut dyn Read) -> io::Result<()>,
) -> io::Result<Report> {
    let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
    // The plain side of an encrypted archive is not hashed: its sha256 is nobody's to compare.
    let mut hashing = match expect.sealed {
        false => HashingReader::new(archive),
        true => HashingReader::counting(archive),
    };
    let walked = walk(&mut hashing, &expect.paths, &expect.dumps, visit);
    if let Err(e) = &walked {
        if e.kind() != io::ErrorKind::InvalidData {
            return Err(walked.err().expect("an error"));
        }
    }
    // Hash what the walk did not read (padding after the end-of-archive blocks, or everything
    // after a decoding error) so a checksum mismatch is always reported as such.
    let (size, sha256) = hashing
        .drain()
        .map_err(|e| invalid(format!("cannot read the archive: {e}")))?;
    if !expect.sealed && sha256 != expect.sha256 {
        let also = walked
            .err()
            .map(|e| format!("; decoding also fails: {e}"))
            .unwrap_or_default();
        return Err(invalid(format!(
            "sha256 mismatch: manifest says {}, archive has {sha256} ({size} bytes){also}",
            expect.sha256
        )));
    }
    let walked = walked?;
    let (tar_bytes, entries) = (walked.tar_bytes, walked.entries);
    if !expect.sealed && size != expect.size {
        return Err(invalid(format!(
            "size mismatch: manifest says {} bytes, archive has {size}",
            expect.size
        )));
    }
    if (tar_bytes, entries) != (expect.tar_bytes, expect.entries) {
        return Err(invalid(format!(
            "content mismatch: manifest says {} entries in {} tar bytes, archive has {entries} in {tar_bytes}",
            expect.entries, expect.tar_bytes
        )));
    }
    Ok(Report {
        size,
        sha256,
        tar_bytes,
        entries,
        devices: walked.devices,
        setid: walked.setid,
        privileged_xattrs: walked.privileged_xattrs,
        roots: walked.roots,
    })
}

/// Each path's own entry, read from the start of `archive` only as far as needed: for planning
/// a restore before its staging pass, which checks the whole archive and that these agree.
pub fn roots(archive: impl Read, paths: &[String]) -> io::Result<Vec<Option<(Kind, RootMeta)>>> {
    let prefixes: Vec<String> = paths.iter().map(|p| prefix_for(p)).collect();
    let mut roots: Vec<Option<(Kind, RootMeta)>> = vec![None; prefixes.len()];
    let mut archive = super::guard::archive(super::decoder(archive)?);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let (meta, _) =
            entry::read(&mut entry).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if let Some((index, rel)) = owner(&prefixes, &meta.name) {
            if rel.is_empty() && roots[index].is_none() {
                roots[index] = Some((meta.kind, RootMeta::of(&meta)));
                if roots.iter().all(Option::is_some) {
                    break;
                }
            }
        }
    }
    Ok(roots)
}

/// The manifest path an entry belongs to and its name relative to it: the longest matching path,
/// as with nested mounts `srv/media/x` belongs to /srv/media, not /srv.
fn owner(prefixes: &[String], name: &[u8]) -> Option<(usize, Vec<u8>)> {
    prefixes
        .iter()
        .enumerate()
        .filter_map(|(i, p)| relative(name, p).map(|r| (i, p.len(), r.to_vec())))
        .max_by_key(|(_, len, _)| *len)
        .map(|(i, _, r)| (i, r))
}

struct Walked {
    tar_bytes: u64,
    entries: u64,
    devices: Vec<String>,
    setid: Vec<String>,
    privileged_xattrs: Vec<String>,
    roots: Vec<Option<(Kind, RootMeta)>>,
}

fn walk(
    reader: impl Read,
    paths: &[String],
    dumps: &[DumpExpect],
    mut visit: impl FnMut(Checked, &mut dyn Read) -> io::Result<()>,
) -> io::Result<Walked> {
    let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
    let prefixes: Vec<String> = paths.iter().map(|p| prefix_for(p)).collect();
    let mut scopes: Vec<Scope> = prefixes.iter().map(|_| Scope::default()).collect();
    let decoder = super::decoder(reader).map_err(|e| invalid(format!("not a zstd stream: {e}")))?;
    let mut counted = CountRead {
        inner: decoder,
        count: 0,
    };
    let mut entries = 0;
    let (mut devices, mut setid, mut privileged_xattrs) = (Vec::new(), Vec::new(), Vec::new());
    let mut roots: Vec<Option<(Kind, RootMeta)>> = vec![None; prefixes.len()];
    // The last entry's name, shown: what a refused header came after.
    let mut name = String::new();
    // Where the walk is in the database dumps (they come first, in order).
    let mut cursor = DumpCursor::new(dumps);
    {
        let mut archive = super::guard::archive(&mut counted);
        let iter = archive
            .entries()
            .map_err(|e| invalid(format!("not a tar archive: {e}")))?;
        for entry in iter {
            let mut entry = entry.map_err(|e| match TooLarge::of(&e) {
                Some(big) if entries == 0 => invalid(format!("unsafe first entry: {big}")),
                Some(big) => invalid(format!("unsafe entry after {name:?}: {big}")),
                None => invalid(format!("corrupt archive after {entries} entries: {e}")),
            })?;
            let (meta, disagreements) = entry::read(&mut entry).map_err(invalid)?;
            if let Some(d) = disagreements.first() {
                return Err(invalid(format!("unsafe entry {:?}: its PAX {} ({}) disagrees with its header ({}); tar readers would see different archives", show(&meta.name),
                    d.key, d.pax, d.header
                )));
            }
            if let Some(part) = cursor.expected() {
                let size = entry.size();
                if meta.name != part.as_bytes()
                    || meta.kind != Kind::File
                    || size > crate::dumps::PART_SIZE as u64
                {
                    return Err(invalid(format!(
                        "entry {:?} ({:?}, {size} bytes) is not the database dump part {part:?} its manifest lists there",
                        show(&meta.name),
                        meta.kind
                    )));
                }
                name = show(&meta.name);
                let mut data = CountRead {
                    inner: HashRead {
                        inner: &mut entry,
                        hash: &mut cursor.hash,
                    },
                    count: 0,
                };
                io::copy(&mut data, &mut io::sink())
                    .map_err(|e| invalid(format!("corrupt data in {name:?}: {e}")))?;
                if data.count != size {
                    return Err(invalid(format!(
                        "corrupt data in {name:?}: {} of {size} bytes",
                        data.count
                    )));
                }
                cursor.advance(size).map_err(invalid)?;
                entries += 1;
                continue;
            }
            let (index, rel) = owner(&prefixes, &meta.name).ok_or_else(|| {
                invalid(format!(
                    "entry {:?} is outside every path the manifest lists",
                    show(&meta.name)
                ))
            })?;
            let hardlink = (meta.kind == Kind::Hardlink).then(|| {
                hardlink_target(meta.link.as_deref().unwrap_or_default(), &prefixes[index])
            });
            scopes[index]
                .admit(&rel, hardlink.as_deref(), meta.kind)
                .map_err(|why| invalid(format!("unsafe entry {:?}: {why}", show(&meta.name))))?;
            if in_work_dir(&rel) || hardlink.as_deref().is_some_and(in_work_dir) {
                return Err(invalid(format!(
                    "unsafe entry {:?}: {WORK_DIR} is dockyard's own work directory, which no backup holds",
                    show(&meta.name)
                )));
            }
            if rel.is_empty() {
                if !matches!(meta.kind, Kind::Dir | Kind::File) {
                    return Err(invalid(format!(
                        "unsafe entry {:?}: a backed-up path must be a directory or a file",
                        show(&meta.name)
                    )));
                }
                if roots[index].is_some() {
                    return Err(invalid(format!(
                        "unsafe entry {:?}: the path appears twice",
                        show(&meta.name)
                    )));
                }
                roots[index] = Some((meta.kind, RootMeta::of(&meta)));
            }
            if meta.kind.is_device() {
                devices.push(show(&meta.name));
            }
            if meta.is_setid_file() {
                setid.push(show(&meta.name));
            }
            if meta.has_privileged_xattrs() {
                privileged_xattrs.push(show(&meta.name));
            }
            name = show(&meta.name);
            let size = entry.size();
            let corrupt = |e: io::Error| invalid(format!("corrupt data in {name:?}: {e}"));
            let mut data = CountRead {
                inner: &mut entry,
                count: 0,
            };
            let checked = Checked {
                index,
                rel,
                hardlink,
                meta,
            };
            visit(checked, &mut data)?;
            io::copy(&mut data, &mut io::sink()).map_err(corrupt)?;
            if data.count != size {
                return Err(invalid(format!(
                    "corrupt data in {name:?}: {} of {size} bytes",
                    data.count
                )));
            }
            entries += 1;
        }
    }
    if let Some(part) = cursor.expected() {
        return Err(invalid(format!(
            "the archive ends before the database dump part {part:?} its manifest lists"
        )));
    }
    // Read to the end of the zstd frame so its checksum is checked too.
    io::copy(&mut counted, &mut io::sink())
        .map_err(|e| invalid(format!("corrupt zstd stream: {e}")))?;
    Ok(Walked {
        tar_bytes: counted.count,
        entries,
        devices,
        setid,
        privileged_xattrs,
        roots,
    })
}

/// Where a walk is in the database dumps an archive begins with, and the running hash of the
/// current one.
struct DumpCursor<'a> {
    /// What the manifest lists.
    dumps: &'a [DumpExpect],
    /// The current dump.
    dump: usize,
    /// Its next part.
    part: usize,
    /// Its bytes so far, hashed.
    hash: sha2::Sha256,
    /// Its bytes so far, counted.
    size: u64,
}

impl<'a> DumpCursor<'a> {
    fn new(dumps: &'a [DumpExpect]) -> Self {
        let mut cursor = DumpCursor {
            dumps,
            dump: 0,
            part: 0,
            hash: sha2::Digest::new(),
            size: 0,
        };
        cursor.skip_empty();
        cursor
    }

    /// The name of the next part the archive must hold, if any is left.
    fn expected(&self) -> Option<&'a str> {
        let dumps = self.dumps;
        dumps.get(self.dump).map(|d| d.parts[self.part].as_str())
    }

    /// Counts a part of `size` bytes read; after a dump's last part, compares the dump with its
    /// manifest.
    fn advance(&mut self, size: u64) -> Result<(), String> {
        self.size += size;
        self.part += 1;
        let d = &self.dumps[self.dump];
        if self.part < d.parts.len() {
            return Ok(());
        }
        let hash = std::mem::replace(&mut self.hash, sha2::Digest::new());
        let sha256 = hex::encode(sha2::Digest::finalize(hash));
        if sha256 != d.sha256 || self.size != d.size {
            let entry = d.parts[0].rsplit_once('.').map_or("", |(e, _)| e);
            return Err(format!(
                "database dump {entry} does not match its manifest: manifest says sha256 {} and {} bytes, the archive holds {sha256} and {}",
                d.sha256, d.size, self.size
            ));
        }
        (self.dump, self.part, self.size) = (self.dump + 1, 0, 0);
        self.skip_empty();
        Ok(())
    }

    /// Moves past dumps without parts (none that a manifest check passed has any).
    fn skip_empty(&mut self) {
        while self
            .dumps
            .get(self.dump)
            .is_some_and(|d| d.parts.is_empty())
        {
            self.dump += 1;
        }
    }
}

/// Hashes what is read through it.
struct HashRead<'h, R> {
    inner: R,
    hash: &'h mut sha2::Sha256,
}

impl<R: Read> Read for HashRead<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        sha2::Digest::update(self.hash, &buf[..n]);
        Ok(n)
    }
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

    /// A dump of one (empty) part named `name`, as a manifest lists it.
    fn empty_dump(parts: &[&str]) -> DumpExpect {
        DumpExpect {
            parts: parts.iter().map(|p| p.to_string()).collect(),
            sha256: hex::encode(Sha256::digest(b"")),
            size: 0,
        }
    }

    /// [`archive`] with `dumps` (each one empty part) listed first in its `Expect`.
    fn with_dumps(entries: &[(&str, Option<&str>)], dumps: &[&str]) -> (Vec<u8>, Expect) {
        let (zst, m) = archive(entries);
        let mut expect = Expect::of(&m);
        expect.dumps = dumps.iter().map(|d| empty_dump(&[d])).collect();
        (zst, expect)
    }

    #[test]
    fn dump_parts_come_first_in_the_manifest_s_order_and_never_reach_a_path() {
        let part = "dumps/db/app.sql.00000";
        let (zst, expect) = with_dumps(&[(part, None), ("srv/media/a", None)], &[part]);
        let mut seen = Vec::new();
        check(&zst[..], &expect, |c, _| {
            seen.push(c.rel);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, vec![b"a".to_vec()]);
        // Not listed: outside every path. Listed but missing, or out of order: refused.
        let (zst, mut expect) = with_dumps(&[(part, None), ("srv/media/a", None)], &[]);
        assert!(verify(&zst[..], &expect)
            .unwrap_err()
            .contains("outside every path"));
        expect.dumps = vec![empty_dump(&[part, "dumps/db/app.sql.00001"])];
        assert!(verify(&zst[..], &expect)
            .unwrap_err()
            .contains("not the database dump part \"dumps/db/app.sql.00001\""));
        let (zst, expect) = with_dumps(&[("srv/media/a", None)], &[part]);
        assert!(verify(&zst[..], &expect)
            .unwrap_err()
            .contains("not the database dump part"));
        let (zst, expect) = with_dumps(&[(part, Some("x"))], &[part]);
        assert!(verify(&zst[..], &expect).unwrap_err().contains("Symlink"));
        // Its bytes are checked against the manifest's sha256 and size.
        let (zst, mut expect) = with_dumps(&[(part, None), ("srv/media/a", None)], &[part]);
        expect.dumps[0].sha256 = "0".repeat(64);
        let err = verify(&zst[..], &expect).unwrap_err();
        assert!(
            err.contains("database dump dumps/db/app.sql does not match its manifest"),
            "{err}"
        );
    }

    #[test]
    fn a_sound_archive_verifies() {
        let (zst, m) = archive(&[("srv/media/a", None), ("srv/media/l", Some("/etc"))]);
        assert_eq!(verify(&zst[..], &Expect::of(&m)).unwrap().entries, 2);
    }

    #[test]
    fn entries_through_an_archive_symlink_are_refused() {
        let (zst, m) = archive(&[("srv/media/l", Some("/etc")), ("srv/media/l/passwd", None)]);
        let err = verify(&zst[..], &Expect::of(&m)).unwrap_err();
        assert!(err.contains("unsafe entry \"srv/media/l/passwd\""), "{err}");
    }

    #[test]
    fn names_in_errors_are_cut_to_200_bytes() {
        let long = format!("etc/{}", "x".repeat(5000));
        let (zst, m) = archive(&[("srv/media/a", None), (&long, None)]);
        let err = verify(&zst[..], &Expect::of(&m)).unwrap_err();
        assert!(
            err.contains(&format!("\"etc/{}…\"", "x".repeat(196))) && err.len() < 400,
            "{err}"
        );
    }

    #[test]
    fn entries_outside_the_manifest_paths_are_refused() {
        let (zst, m) = archive(&[("etc/passwd", None)]);
        assert!(verify(&zst[..], &Expect::of(&m))
            .unwrap_err()
            .contains("outside every path"));
    }

    #[test]
    fn a_flipped_byte_is_a_checksum_mismatch() {
        let (mut zst, m) = archive(&[("srv/media/a", None)]);
        let mid = zst.len() / 2;
        zst[mid] ^= 1;
        assert!(verify(&zst[..], &Expect::of(&m))
            .unwrap_err()
            .starts_with("sha256 mismatch"));
    }
}
