//! Packing: the engine's per-path tar streams in, one zstd-compressed archive out, in one pass.
//! Every entry is read into checked values and written again with a header dockyard builds, so an
//! engine quirk (a PAX size for files of 8 GiB and more, PAX names) cannot corrupt the archive.

use std::io::{self, Read, Write};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::entry::{self, Kind};
use super::exclude::Globs;
use super::names::{check_relative, prefix_for, rebase, relative};
use super::writer::TarWriter;
use crate::pipeline::streams::CountingWriter;

/// Bytes per zstd worker job. zstd's default at level 3 is 8 MiB, and a few jobs are buffered per
/// worker: peak RSS was 67 MB on a 1 GiB volume with it, 26 MB with 2 MiB jobs, at the same speed
/// and ratio (benches/backup.sh, 2 cores).
const ZSTD_JOB_SIZE: u32 = 2 << 20;

/// One path to pack: its container path, the engine's tar stream for it, and what to leave out.
pub struct Source {
    /// The container path, e.g. `/srv/media`.
    pub path: String,
    /// The engine's tar stream (entries rooted at the path's base name).
    pub reader: Box<dyn Read + Send>,
    /// Names relative to the path to leave out, each with everything below it: nested mount points
    /// (backed up as paths of their own). dockyard's restore work directories are always left out.
    pub exclude: Vec<Vec<u8>>,
    /// The user's `--exclude` globs.
    pub globs: Globs,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    let encoder = encoder(CountingWriter::new(out, written), compression)?;
    let mut writer = TarWriter::new(encoder);
    let mut entries = 0;
    for source in sources {
        let path = source.path.clone();
        entries += copy_entries(&mut writer, source).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("while reading {path} from the engine: {e}"),
            )
        })?;
    }
    let tar_bytes = writer.bytes;
    let compressed = writer.finish()?.finish()?;
    let size = compressed.count;
    Ok((
        PackStats {
            tar_bytes: tar_bytes + 1024,
            entries,
            size,
        },
        compressed.into_inner(),
    ))
}

/// The archive's zstd encoder over `out`: frames with a content checksum, multi-threaded with
/// small jobs when `compression` has workers.
pub fn encoder<W: Write>(
    out: W,
    compression: Compression,
) -> io::Result<zstd::stream::write::Encoder<'static, W>> {
    let mut encoder = zstd::stream::write::Encoder::new(out, compression.level)?;
    encoder.include_checksum(true)?;
    if compression.workers > 0 {
        encoder.multithread(compression.workers)?;
        encoder.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB_SIZE))?;
    }
    Ok(encoder)
}

/// Whether `rel` is one of `exclude` or lies below one.
pub fn excluded(rel: &[u8], exclude: &[Vec<u8>]) -> bool {
    exclude
        .iter()
        .any(|x| rel == x.as_slice() || (rel.starts_with(x) && rel.get(x.len()) == Some(&b'/')))
}

/// Copies every entry of one engine stream into the archive under the path's prefix, keeping
/// type, mode, owner, times, link targets and xattrs, with names rebased onto the prefix.
fn copy_entries<W: Write>(writer: &mut TarWriter<W>, source: Source) -> io::Result<u64> {
    let Source {
        path,
        reader,
        mut exclude,
        globs,
    } = source;
    let prefix = prefix_for(&path);
    let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
    let mut archive = super::guard::archive(reader);
    let mut count = 0;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let (mut meta, _) = entry::read(&mut entry).map_err(invalid)?;
        let name = rebase(&meta.name, &prefix);
        let rel = relative(&name, &prefix).unwrap_or_default().to_vec();
        let top = rel.split(|&b| b == b'/').next().unwrap_or_default();
        if excluded(&rel, &exclude) || super::names::is_reserved(top) {
            continue;
        }
        if globs.matches(&path, &rel) {
            // Everything below a left-out directory goes too.
            exclude.push(rel);
            continue;
        }
        check_relative(&rel)
            .map_err(|why| invalid(format!("the engine sent {:?}: {why}", meta.name)))?;
        meta.name = name;
        if meta.kind == Kind::Hardlink {
            meta.link = meta.link.map(|target| rebase(&target, &prefix));
        }
        writer.append(&meta, &mut entry)?;
        count += 1;
    }
    Ok(count)
}
