//! Staging for restore: cut one path out of an archive and rename its entries into a staging
//! directory (`.dockyard-restore-<nonce>/...`), as a tar stream the engine extracts into the path.
//! Nothing here touches live data; the swap happens only after every path is staged.

use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::names::{hardlink_target, prefix_for, relative, Scope};
use super::streams::HashingReader;

/// The restored path's own metadata, applied to it after the swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RootMeta {
    /// Permission bits.
    pub mode: u32,
    /// Owner uid.
    pub uid: u64,
    /// Owner gid.
    pub gid: u64,
}

/// What staging wrote.
#[derive(Debug, Clone, Default)]
pub struct Staged {
    /// Entries written (including the staging directory itself).
    pub entries: u64,
    /// The path's own metadata, if the archive has its root entry.
    pub root: Option<RootMeta>,
}

/// Writes the entries of `path` from `archive` into `out` under `staging/`. Fails if the archive's
/// sha256 is not `expected_sha256` (checked after the last byte), so a swapped or damaged archive
/// never reaches the swap step.
pub fn stage<W: Write>(
    archive: impl Read,
    expected_sha256: &str,
    path: &str,
    staging: &str,
    out: W,
) -> io::Result<(Staged, W)> {
    let prefix = prefix_for(path);
    let mut hashing = HashingReader::new(archive);
    let mut builder = tar::Builder::new(out);
    let mut staged = Staged::default();
    let mut scope = Scope::default();
    {
        let decoder = super::decoder(&mut hashing)?;
        let mut archive = tar::Archive::new(decoder);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let name = entry.path_bytes().into_owned();
            let Some(rel) = relative(&name, &prefix).map(<[u8]>::to_vec) else {
                continue;
            };
            let kind = entry.header().entry_type();
            let hardlink = match kind {
                tar::EntryType::Link => {
                    let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                    Some(hardlink_target(&target, &prefix))
                }
                _ => None,
            };
            scope
                .admit(&rel, hardlink.as_deref(), kind == tar::EntryType::Symlink)
                .map_err(|why| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("refusing entry {:?}: {why}", String::from_utf8_lossy(&name)),
                    )
                })?;
            let mut header = entry.header().clone();
            if rel.is_empty() {
                staged.root = Some(RootMeta {
                    mode: header.mode()? & 0o7777,
                    uid: header.uid()?,
                    gid: header.gid()?,
                });
            }
            let staged_name = join(staging, &rel);
            let staged_path = Path::new(OsStr::from_bytes(&staged_name));
            match (kind, hardlink) {
                (tar::EntryType::Link, Some(target)) => {
                    let target = join(staging, &target);
                    builder.append_link(
                        &mut header,
                        staged_path,
                        Path::new(OsStr::from_bytes(&target)),
                    )?;
                }
                (tar::EntryType::Symlink, _) => {
                    let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                    builder.append_link(
                        &mut header,
                        staged_path,
                        Path::new(OsStr::from_bytes(&target)),
                    )?;
                }
                _ => builder.append_data(&mut header, staged_path, &mut entry)?,
            }
            staged.entries += 1;
        }
    }
    let (_, sha256) = hashing.drain()?;
    if sha256 != expected_sha256 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("archive changed since it was verified (sha256 now {sha256})"),
        ));
    }
    builder.finish()?;
    let out = builder.into_inner()?;
    Ok((staged, out))
}

fn join(staging: &str, rel: &[u8]) -> Vec<u8> {
    let mut out = staging.as_bytes().to_vec();
    if !rel.is_empty() {
        out.push(b'/');
        out.extend_from_slice(rel);
    }
    out
}
