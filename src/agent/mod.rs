//! The agent: dockyard's own static binary, copied into a helper container and run there. As
//! `dockyard agent pack <job>` a backup reads the volumes directly and compresses at the source;
//! as `dockyard agent unpack <job>` a restore's staging decodes, checks and writes each path in
//! the volume itself; as `dockyard agent remove` it deletes a finished restore's work directory
//! through directory descriptors, however deep. Only compressed bytes cross the engine's API either way. `host` decides
//! whether the agent can run and drives it; `walk` (pack) and `extract` (unpack) run inside the
//! helper.
//!
//! The protocol: the job is one JSON argument; the archive goes to stdout (pack) or comes on
//! stdin (unpack); stderr carries lines starting with [`STATS`] (one JSON object at the end) or
//! [`WARN`], and anything else is an error message. Exit 0 means the work is whole.

pub mod extract;
pub mod host;
pub mod merge;
pub mod pipe;
pub mod remove;
pub mod swap;
pub mod walk;

use std::io::{self, Write};

use serde::{Deserialize, Serialize};

use crate::archive::exclude::Globs;
use crate::archive::pack::{encoder, Compression};
use crate::archive::stage::{StageSpec, Staged};
use crate::archive::writer::TarWriter;

/// Where the binary is put inside the helper.
pub const IN_HELPER: &str = "/.dockyard-agent";
/// Prefix of the agent's closing stats line on stderr.
pub const STATS: &str = "dockyard-agent-stats ";
/// Prefix of the agent's error message on stderr.
pub const ERROR: &str = "dockyard agent: ";
/// Prefix of the agent's message when it refused the archive's content (not an I/O failure).
pub const REFUSED: &str = "dockyard agent: refused: ";
/// Prefix of a warning line on stderr.
pub const WARN: &str = "dockyard-agent-warning ";
/// Prefix of a progress line on stderr: uncompressed tar bytes written so far.
pub const PROGRESS: &str = "dockyard-agent-progress ";
/// Prefix of the line giving the quick count of what the paths hold (bytes), for a percentage.
pub const TOTAL: &str = "dockyard-agent-total ";

/// What `agent pack` is asked to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PackJob {
    /// The paths, in archive order.
    pub paths: Vec<PackPath>,
    /// zstd level.
    pub level: i32,
    /// `--exclude` globs.
    pub exclude: Vec<String>,
}

/// One path of a [`PackJob`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PackPath {
    /// The container path.
    pub path: String,
    /// Nested mount points below it, relative (backed up as paths of their own).
    pub nested: Vec<String>,
}

/// What `agent pack` reports when done.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PackReport {
    /// Entries written.
    pub entries: u64,
    /// Uncompressed tar bytes.
    pub tar_bytes: u64,
    /// Entries left out by `--exclude`.
    pub excluded: u64,
}

/// What `agent unpack` is asked to do: stage one path of an archive into its mount.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnpackJob {
    /// The mount point the staging goes into (the extraction root).
    pub mount: String,
    /// What to stage.
    pub spec: StageSpec,
    /// Whether this is the mount's first path (its work directory comes first).
    pub first: bool,
    /// What the manifest promises about the archive (checked whole while staging).
    pub expect: crate::archive::verify::Expect,
}

/// If this process was started as the agent (`dockyard agent ...`), runs it and returns its exit
/// code; `None` for every other command line. Runs before any flag parsing or logging set-up.
pub fn main_if_agent() -> Option<i32> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some("agent") {
        return None;
    }
    let result = match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("pack"), Some(job)) => serde_json::from_str::<PackJob>(job)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
            .and_then(|job| match pipe::in_helper() {
                Some(p) => pack(&job, std::fs::OpenOptions::new().write(true).open(p)?),
                None => pack(&job, io::stdout().lock()),
            }),
        (Some("unpack"), Some(job)) => serde_json::from_str::<UnpackJob>(job)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
            .and_then(|job| match pipe::in_helper() {
                Some(p) => unpack(&job, std::fs::File::open(p)?),
                None => unpack(&job, io::stdin()),
            })
            .and_then(|staged| {
                let line = serde_json::to_string(&staged).expect("serialises");
                writeln!(io::stderr(), "{STATS}{line}")
            }),
        (Some(mode @ ("keep" | "merge")), Some(job)) => serde_json::from_str::<merge::MergeJob>(job)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
            .and_then(|job| if mode == "keep" { merge::keep(&job) } else { merge::merge(&job) })
            .and_then(|n| writeln!(io::stderr(), "{STATS}{n}")),
        (Some("swap"), Some(job)) => job_text(job)
            .and_then(|text| {
                serde_json::from_str::<swap::SwapJob>(&text)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
            })
            .and_then(|job| swap::run(&job)),
        (Some("remove"), Some(_)) if args.len() % 3 == 2 => args[2..]
            .chunks(3)
            .try_for_each(|t| remove::remove_work_dir(&t[0], &t[1], t[2].parse().ok())),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "usage: dockyard agent pack|unpack <job> | remove [<root> <name> <mtime|->]... (run by dockyard inside its helper containers)",
        )),
    };
    Some(match result {
        Ok(()) => 0,
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            eprintln!("{REFUSED}{e}");
            1
        }
        Err(e) => {
            eprintln!("{ERROR}{e}");
            1
        }
    })
}

/// Walks every path of `job` into one compressed archive on `out`; stats and warnings go to
/// stderr.
pub fn pack<W: Write>(job: &PackJob, out: W) -> io::Result<()> {
    let globs =
        Globs::new(&job.exclude).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let compression = Compression {
        level: job.level,
        workers,
    };
    // A quick count (sizes only, no data read) beside the walk, so the host can show a
    // percentage; the walk itself says how far it got every quarter second.
    let counted: Vec<(String, Vec<Vec<u8>>)> = job
        .paths
        .iter()
        .map(|p| {
            let nested = p.nested.iter().map(|n| n.as_bytes().to_vec()).collect();
            (p.path.clone(), nested)
        })
        .collect();
    std::thread::spawn(move || {
        let total: u64 = counted
            .iter()
            .map(|(path, nested)| quick_count(std::path::Path::new(path), nested))
            .sum();
        // One write of the whole line: the walk's progress lines come from another thread.
        let _ = io::stderr()
            .lock()
            .write_all(format!("{TOTAL}{total}\n").as_bytes());
    });
    let mut w = TarWriter::new(Reporting::new(encoder(
        io::BufWriter::with_capacity(1 << 20, out),
        compression,
    )?));
    let mut done = walk::Walked::default();
    for p in &job.paths {
        let nested: Vec<Vec<u8>> = p.nested.iter().map(|n| n.as_bytes().to_vec()).collect();
        let wp = walk::WalkPath {
            path: &p.path,
            exclude: &nested,
            globs: &globs,
        };
        walk::walk(&mut w, &wp, &mut done)?;
    }
    let tar_bytes = w.bytes + 1024;
    w.finish()?.inner.finish()?.flush()?;
    let mut err = io::stderr().lock();
    for warning in &done.warnings {
        writeln!(err, "{WARN}{warning}")?;
    }
    let report = PackReport {
        entries: done.entries,
        tar_bytes,
        excluded: done.excluded,
    };
    writeln!(
        err,
        "{STATS}{}",
        serde_json::to_string(&report).expect("serialises")
    )?;
    Ok(())
}

/// Stages one path of the archive read from `archive` into its mount: staging (every check
/// `verify` makes, the sha256 last) on one thread, extraction on this one, through a pipe.
pub fn unpack(job: &UnpackJob, archive: impl io::Read + Send) -> io::Result<Staged> {
    let root = extract::open_root(&job.mount)?;
    if job.first && exists_at(&root, crate::swap::WORK_DIR)? {
        // dockyard checked there was none before it began: someone else made it since.
        return Err(io::Error::other(format!(
            "{}/{} appeared while the restore began; dockyard stages only into a work directory it creates",
            job.mount,
            crate::swap::WORK_DIR
        )));
    }
    let archive = FaultAfter {
        inner: archive,
        read: 0,
    };
    let (reader, writer) = io::pipe()?;
    // Staging and extraction hand over 1 MiB at a time; a 64 KiB pipe between them made each
    // wake the other sixteen times as often.
    pipe::widen(&writer);
    std::thread::scope(|scope| {
        let staging = scope.spawn(move || -> io::Result<Staged> {
            let mut w = TarWriter::new(io::BufWriter::with_capacity(1 << 20, writer));
            let staged = crate::swap::member::stage_member(
                archive,
                &job.expect,
                &job.spec,
                job.first,
                &mut w,
            )?;
            w.finish()?.flush()?;
            Ok(staged)
        });
        let extracted = extract::extract(io::BufReader::with_capacity(1 << 20, reader), &root);
        let staged = staging.join().expect("staging thread panicked");
        // Staging's error says why (a refused entry, a changed archive) and the extractor then
        // only saw the stream end early; unless the extractor stopped first (a write refused).
        match (staged, extracted) {
            (Ok(staged), Ok(_)) => Ok(staged),
            (Err(e), Err(x)) if e.kind() == io::ErrorKind::BrokenPipe => Err(x),
            (Err(e), _) | (Ok(_), Err(e)) => Err(e),
        }
    })
}

/// Whether `name` exists in directory `dir` (a symlink counts; nothing is followed).
fn exists_at(dir: &std::os::fd::OwnedFd, name: &str) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let c = std::ffi::CString::new(name).map_err(|_| io::Error::other("NUL in a name"))?;
    // SAFETY: a zeroed stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor, name and out-parameter.
    let r = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOENT) => Ok(false),
        _ => Err(e),
    }
}

/// Passes reads through; in test builds, stops at the fault point `unpack-midway` once 4 MiB of
/// the archive went by (staging has then written into the volume).
struct FaultAfter<R> {
    inner: R,
    read: u64,
}

impl<R: io::Read> io::Read for FaultAfter<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let before = self.read;
        self.read += n as u64;
        if before < 4 << 20 && self.read >= 4 << 20 && crate::fault::in_helper("unpack-midway") {
            return Err(io::Error::other("stopped at fault point unpack-midway"));
        }
        Ok(n)
    }
}

/// The bytes below `path` as a backup would hold them (a header per entry, file data rounded to
/// blocks), by `lstat` only, leaving out the `nested` mount points; what cannot be read counts 0.
fn quick_count(path: &std::path::Path, nested: &[Vec<u8>]) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let mut total = 0u64;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(path).unwrap_or(&p).as_os_str().as_bytes();
            if nested.iter().any(|n| n.as_slice() == rel) {
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            total += 512;
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file() {
                total += meta.len().div_ceil(512) * 512;
            }
        }
    }
    total
}

/// Passes the tar stream on to the compressor and says on stderr, at most four times a second,
/// how many bytes went by.
struct Reporting<W> {
    inner: W,
    bytes: u64,
    said: std::time::Instant,
}

impl<W> Reporting<W> {
    fn new(inner: W) -> Self {
        Reporting {
            inner,
            bytes: 0,
            said: std::time::Instant::now(),
        }
    }
}

impl<W: Write> Write for Reporting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        if self.said.elapsed() >= std::time::Duration::from_millis(250) {
            self.said = std::time::Instant::now();
            let line = format!("{PROGRESS}{}\n", self.bytes);
            let _ = io::stderr().lock().write_all(line.as_bytes());
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A job given as an argument: its JSON, or `@FILE` naming a file in the helper's own root that
/// holds it (a job too large for an argument).
fn job_text(arg: &str) -> io::Result<String> {
    match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path),
        None => Ok(arg.to_string()),
    }
}
