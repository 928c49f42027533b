//! A backup's dumps, written into its archive before the volumes: each dump tool runs in its
//! container by `docker exec` while its standard output is cut into parts of at most
//! [`PART_SIZE`] bytes, each a tar entry with a header dockyard builds, all in one zstd frame
//! that the volumes' frame follows (zstd and tar read the two as one stream). Nothing of a dump
//! touches a disk; one part is in memory at a time.

use std::io::{self, Read, Write};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::tools::{self, Step};
use super::{part_name, DumpRecord, DumpSpec, MAX_PARTS, PART_SIZE};
use crate::archive::entry::{Kind, Meta, Mtime};
use crate::archive::pack::{encoder, Compression};
use crate::archive::writer::TarWriter;
use crate::docker::Engine;
use crate::pipeline::streams::{CountingReader, ReadAhead};

/// The dumps of one backup, ready to run.
pub struct Dumper {
    /// The engine the databases' containers run on.
    pub engine: Engine,
    /// The runtime the engine's calls run on (the writer runs on a blocking thread).
    pub handle: tokio::runtime::Handle,
    /// The dumps, in order, each naming its container as the engine does.
    pub dumps: Vec<DumpSpec>,
    /// How the frame is compressed (the archive's level).
    pub compression: Compression,
    /// Bytes read from the dump tools, for progress.
    pub read: Option<Arc<AtomicU64>>,
}

/// A dump that failed: its message says which, where and why, whatever stream carried it.
#[derive(Debug)]
pub struct DumpFailed(pub String);

impl std::fmt::Display for DumpFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DumpFailed {}

impl DumpFailed {
    /// The dump failure `e` carries, if it is one.
    pub fn of(e: &io::Error) -> Option<&DumpFailed> {
        e.get_ref().and_then(|inner| inner.downcast_ref())
    }
}

/// What [`Dumper::write`] wrote.
#[derive(Debug, Clone, Default)]
pub struct Dumped {
    /// Each dump, for the manifest.
    pub records: Vec<DumpRecord>,
    /// Uncompressed tar bytes.
    pub tar_bytes: u64,
    /// Tar entries (parts).
    pub entries: u64,
}

impl Dumper {
    /// Runs each dump in turn and writes its parts to `out` as one zstd frame of tar entries
    /// without an end-of-archive (the volumes' archive follows); returns what it wrote and
    /// `out`. A dump tool that fails (a non-zero exit, a lost stream) is an error naming its
    /// container and its last lines on standard error.
    pub fn write<W: Write>(&self, out: W) -> io::Result<(Dumped, W)> {
        let mut tar = TarWriter::new(encoder(out, self.compression)?);
        let mut dumped = Dumped::default();
        let mtime = Mtime {
            secs: chrono::Utc::now().timestamp(),
            nanos: 0,
        };
        let mut buf = vec![0u8; PART_SIZE];
        for spec in &self.dumps {
            let record = self.one(&mut tar, spec, &mut buf, mtime)?;
            dumped.entries += record.parts;
            tracing::info!(dump = %spec, size = record.size, parts = record.parts, "dump streamed into the archive");
            dumped.records.push(record);
        }
        dumped.tar_bytes = tar.bytes;
        let out = tar.into_inner().finish()?;
        Ok((dumped, out))
    }

    fn one<W: Write>(
        &self,
        tar: &mut TarWriter<W>,
        spec: &DumpSpec,
        buf: &mut [u8],
        mtime: Mtime,
    ) -> io::Result<DumpRecord> {
        let failed = |why: String| {
            io::Error::other(DumpFailed(format!(
                "the dump {spec} in container {:?} failed: {why}; the backup was not written",
                spec.container
            )))
        };
        let command = tools::command(&spec.kind, Step::Dump, None).expect("every kind dumps");
        let (running, stdout, _) = self
            .handle
            .block_on(self.engine.exec_streaming(
                &spec.container,
                command.argv,
                command.user,
                false,
            ))
            .map_err(|e| failed(e.to_string()))?;
        // A dump that writes nothing for --helper-timeout fails, as a hung helper would.
        let idle = self.engine.helper_timeout();
        let stdout = futures_util::stream::unfold(stdout, move |mut s| async move {
            use futures_util::StreamExt;
            match tokio::time::timeout(idle, s.next()).await {
                Ok(Some(item)) => Some((item, s)),
                Ok(None) => None,
                Err(_) => Some((
                    Err(io::Error::other(format!(
                        "it wrote nothing for {} (--helper-timeout)",
                        humantime::format_duration(idle)
                    ))),
                    s,
                )),
            }
        });
        let stdout = ReadAhead::new(self.handle.clone(), stdout);
        let mut reader = CountingReader::new(stdout, self.read.clone().unwrap_or_default());
        let file = spec.file();
        let (mut parts, mut size, mut sha) = (0u64, 0u64, Sha256::new());
        // Why the dump ended early: its output (`Err(Ok(e))`), or the archive (`Err(Err(e))`).
        let read: Result<(), Result<io::Error, io::Error>> = loop {
            let n = match fill(&mut reader, buf) {
                Ok(n) => n,
                Err(e) => break Err(Ok(e)),
            };
            if n == 0 && parts > 0 {
                break Ok(());
            }
            if parts == MAX_PARTS {
                break Err(Ok(io::Error::other(format!(
                    "it is larger than {MAX_PARTS} parts of {PART_SIZE} bytes"
                ))));
            }
            let meta = Meta {
                kind: Kind::File,
                name: part_name(&spec.container, &file, parts).into_bytes(),
                link: None,
                size: n as u64,
                mode: 0o600,
                uid: 0,
                gid: 0,
                mtime,
                xattrs: Vec::new(),
                device: None,
            };
            if let Err(e) = tar.append(&meta, &mut &buf[..n]) {
                break Err(Err(e));
            }
            sha.update(&buf[..n]);
            (parts, size) = (parts + 1, size + n as u64);
            // Tests stop a backup here, a dump's first part in the archive, the tool still running.
            if parts == 1 {
                crate::fault::point_blocking("dump-part-written");
            }
            if n < buf.len() {
                break Ok(());
            }
        };
        let said = || match running.stderr_tail() {
            said if said.is_empty() => "it said nothing on standard error".to_string(),
            said => format!("its last lines: {said}"),
        };
        // Ended early: the tool may well still run (its output not read), and is stopped.
        if let Err(e) = read {
            self.handle.block_on(self.engine.stop_running(&running));
            return Err(match e {
                Ok(e) => failed(format!("reading its output: {e}; {}", said())),
                Err(e) => e,
            });
        }
        match self.handle.block_on(self.engine.exit_code(&running)) {
            Err(e) => return Err(failed(e.to_string())),
            Ok(0) => {}
            Ok(code) => return Err(failed(format!("exit code {code}; {}", said()))),
        }
        if size == 0 {
            tracing::warn!(dump = %spec, "the dump is empty: its tool wrote nothing on stdout and exited 0");
        }
        Ok(DumpRecord {
            container: spec.container.clone(),
            kind: spec.kind.name().to_string(),
            database: spec.kind.database().map(str::to_string),
            path: match &spec.kind {
                super::DumpKind::Sqlite { path } => Some(path.clone()),
                _ => None,
            },
            file,
            parts,
            size,
            sha256: hex::encode(sha.finalize()),
        })
    }
}

/// Reads from `r` until `buf` is full or the input ends; how many bytes it holds.
fn fill(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_reads_across_short_reads_and_stops_at_the_end() {
        let data: Vec<u8> = (0..100u8).collect();
        let mut r = io::Cursor::new(&data).chain(io::Cursor::new(vec![7u8; 10]));
        let mut buf = [0u8; 64];
        assert_eq!(fill(&mut r, &mut buf).unwrap(), 64);
        assert_eq!(fill(&mut r, &mut buf).unwrap(), 46);
        assert_eq!(fill(&mut r, &mut buf).unwrap(), 0);
    }
}
