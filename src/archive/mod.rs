//! The archive format: one zstd-compressed tar whose entries sit under each backed-up path
//! (`srv/media/...`), written, checked and unpacked as streams.
//!
//! `entry` reads any tar entry into checked values and `writer` is the only place headers are
//! written, from those values. `pack` turns the engine's per-path tar streams into one archive,
//! `verify` walks an archive end to end, `stage` cuts one path out of an archive for upload into a
//! container, and `names` holds the pure rules that keep every entry inside its path. `guard` sits
//! under every tar stream read, so no header can make the reader hold more than 1 MiB.

pub mod entry;
pub mod exclude;
pub mod guard;
pub mod listing;
pub mod names;
pub mod pack;
pub mod stage;
pub mod verify;
pub mod writer;

/// zstd frames carry a content checksum, so a flipped byte fails decoding as well as the sha256.
pub(crate) fn decoder<R: std::io::Read>(
    reader: R,
) -> std::io::Result<zstd::stream::read::Decoder<'static, std::io::BufReader<R>>> {
    zstd::stream::read::Decoder::new(reader)
}
