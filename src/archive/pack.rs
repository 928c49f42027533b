//! Packing: the engine's per-path tar streams in, one zstd-compressed archive out, in one pass.

use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tar::EntryType;

use super::names::{prefix_for, rebase};
use super::streams::CountingWriter;

/// Bytes per zstd worker job. zstd's default at level 3 is 8 MiB, and a few jobs are buffered per
/// worker: peak RSS was 67 MB on a 1 GiB volume with it, 26 MB with 2 MiB jobs, at the same speed
/// and ratio (benches/backup.sh, 2 cores).
const ZSTD_JOB_SIZE: u32 = 2 << 20;

/// One path to pack: its container path and the engine's tar stream for it.
pub struct Source {
    /// The container path, e.g. `/srv/media`.
    pub path: String,
    /// The engine's tar stream (entries rooted at the path's base name).
    pub reader: Box<dyn Read + Send>,
}

/// What a finished archive contains.
#[derive(Debug, Clone, Default)]
pub struct PackStats {
    /// Uncompressed tar bytes.
    pub tar_bytes: u64,
    /// Entries written.
    pub entries: u64,
    /// Compressed archive bytes.
    pub size: u64,
}

/// Compression settings.
#[derive(Debug, Clone, Copy)]
pub struct Compression {
    /// zstd level (1-19; 3 is zstd's default).
    pub level: i32,
    /// zstd worker threads (0 = single-threaded).
    pub workers: u32,
}

/// Packs `sources` into `out` and returns the stats and `out` (so the caller can close it). The
/// archive's hash is the consumer's job: it runs there in parallel with compression.
pub fn pack<W: Write>(
    sources: Vec<Source>,
    out: W,
    compression: Compression,
    written: Option<Arc<AtomicU64>>,
) -> io::Result<(PackStats, W)> {
    let mut encoder =
        zstd::stream::write::Encoder::new(CountingWriter::new(out, written), compression.level)?;
    encoder.include_checksum(true)?;
    if compression.workers > 0 {
        encoder.multithread(compression.workers)?;
        encoder.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB_SIZE))?;
    }
    let mut builder = tar::Builder::new(CountingWriter::new(encoder, None));
    let mut entries = 0;
    for source in sources {
        let prefix = prefix_for(&source.path);
        entries += copy_entries(&mut builder, source.reader, &prefix).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("while reading {} from the engine: {e}", source.path),
            )
        })?;
    }
    builder.finish()?;
    let counting = builder.into_inner()?;
    let tar_bytes = counting.count;
    let compressed = counting.into_inner().finish()?;
    let size = compressed.count;
    Ok((
        PackStats {
            tar_bytes,
            entries,
            size,
        },
        compressed.into_inner(),
    ))
}

/// Copies every entry of one engine stream into the archive under `prefix`, keeping type, mode,
/// owner, times, link targets and PAX records (xattrs) but not the engine's names.
fn copy_entries<W: Write>(
    builder: &mut tar::Builder<W>,
    reader: impl Read,
    prefix: &str,
) -> io::Result<u64> {
    let mut archive = tar::Archive::new(reader);
    let mut count = 0;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = rebase(&entry.path_bytes(), prefix);
        let kind = entry.header().entry_type();
        let pax: Vec<(String, Vec<u8>)> = match entry.pax_extensions()? {
            Some(exts) => exts
                .filter_map(|e| e.ok())
                .filter_map(|e| Some((e.key().ok()?.to_string(), e.value_bytes().to_vec())))
                .filter(|(k, _)| !matches!(k.as_str(), "path" | "linkpath" | "size"))
                .collect(),
            None => Vec::new(),
        };
        if !pax.is_empty() {
            builder.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
        }
        let mut header = entry.header().clone();
        let path = Path::new(OsStr::from_bytes(&name));
        match kind {
            EntryType::Link => {
                let target = entry.link_name_bytes().unwrap_or_default();
                let target = rebase(&target, prefix);
                builder.append_link(&mut header, path, Path::new(OsStr::from_bytes(&target)))?;
            }
            EntryType::Symlink => {
                let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                builder.append_link(&mut header, path, Path::new(OsStr::from_bytes(&target)))?;
            }
            _ => builder.append_data(&mut header, path, &mut entry)?,
        }
        count += 1;
    }
    Ok(count)
}
