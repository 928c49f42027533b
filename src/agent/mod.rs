//! The agent: dockyard's own static binary, copied into a helper container and run there. As
//! `pack` a backup reads the volumes directly and compresses at the source; as `unpack` a
//! restore's staging decodes, checks and writes each path in the volume itself; as `remove` it
//! deletes a finished restore's work directory through directory descriptors, however deep.
//! Only compressed bytes cross the engine's API either way. `host` decides whether the agent can
//! run and drives it; `walk` (pack) and `extract` (unpack) run inside the helper.
//!
//! The protocol ([`frame`]): the helper runs `dockyard agent <name>` (the name only for `docker
//! ps`); its job comes as one [`frame::Message::Job`] frame first on stdin, which the host
//! attaches to. On stderr it answers in frames only: progress, warnings, then
//! [`frame::Message::Done`] with its report, or an error; a panic becomes an error frame too. The
//! archive is the only other stream: on stdout (pack) or on stdin after the job frame (unpack),
//! or through the FIFO ([`pipe`]) when the engine is local. Exit 0 means the work is whole.

pub mod binary;
pub mod extract;
pub mod frame;
pub mod host;
pub mod indexing;
pub mod merge;
pub mod pipe;
pub mod remove;
pub mod said;
pub mod spool;
pub mod swap;
pub mod walk;

use std::io::{self, Write};

use serde::{Deserialize, Serialize};

use crate::archive::exclude::Globs;
use crate::archive::pack::{encoder, Compression};
use crate::archive::stage::{StageSpec, Staged};
use crate::archive::writer::TarWriter;
use frame::{Job, Message, Report};

/// Where the binary is put inside the helper.
pub const IN_HELPER: &str = "/.dockyard-agent";
/// How the host shows the agent's error message (as it did when the agent wrote it on stderr).
pub const ERROR: &str = "dockyard agent: ";
/// How the host shows the agent's message when it refused the archive's content.
pub const REFUSED: &str = "dockyard agent: refused: ";

/// What `agent pack` is asked to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PackJob {
    /// The paths, in archive order.
    pub paths: Vec<PackPath>,
    /// zstd level.
    pub level: i32,
    /// `--exclude` globs.
    pub exclude: Vec<String>,
    /// An incremental backup: the parent's index (compressed) follows the job on stdin, and
    /// only what changed since goes into the archive.
    #[serde(default)]
    pub parent: bool,
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
    /// Entries in the index.
    #[serde(default)]
    pub indexed: u64,
    /// Entries the parent holds unchanged, left out of the archive (incremental).
    #[serde(default)]
    pub unchanged: u64,
    /// Names in the deletion list (incremental).
    #[serde(default)]
    pub gone: u64,
    /// Why this backup cannot be an increment after all (the host makes it again, full).
    #[serde(default)]
    pub needs_full: Option<String>,
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
    /// An incremental backup's layer: the archive names its deletion list holds (hex), removed
    /// from the staged tree (the layers before it already staged there) before it is unpacked.
    #[serde(default)]
    pub deleted: Vec<String>,
}

/// Sends `message` to the host: one frame on stderr, written whole under its lock.
pub fn say(message: &Message) {
    let _ = frame::write(&mut io::stderr().lock(), message);
}

/// If this process was started as the agent (`dockyard agent ...`), runs it and returns its exit
/// code; `None` for every other command line. Runs before any flag parsing or logging set-up.
pub fn main_if_agent() -> Option<i32> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some("agent") {
        return None;
    }
    // A panic is said as an error frame, not as text in the middle of the frames.
    std::panic::set_hook(Box::new(|info| {
        say(&Message::Error(format!("panicked: {info}")))
    }));
    let job = match frame::read(&mut io::stdin(), frame::MAX_TO_AGENT) {
        Ok(Some(Message::Job(job))) if args.get(1).is_none_or(|n| n == job.name()) => Ok(job),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "usage: dockyard agent [<job name>], its job as a frame on stdin (run by dockyard inside its helper containers)",
        )),
        Err(e) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("reading the job on stdin: {e}"),
        )),
    };
    let result = job.and_then(run);
    Some(match result {
        Ok(report) => {
            say(&Message::Done(report));
            0
        }
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            say(&Message::Refused(e.to_string()));
            1
        }
        Err(e) => {
            say(&Message::Error(e.to_string()));
            1
        }
    })
}

/// Does `job`, its archive on stdout or stdin unless the host bound the FIFO.
fn run(job: Job) -> io::Result<Report> {
    match job {
        Job::Pack(job) => match pipe::in_helper() {
            Some(p) => pack(&job, std::fs::OpenOptions::new().write(true).open(p)?),
            None => pack(&job, io::stdout().lock()),
        }
        .map(Report::Packed),
        Job::Unpack(job) => match pipe::in_helper() {
            Some(p) => unpack(&job, std::fs::File::open(p)?),
            // The same handle the job was read from: what it buffered past the frame is the
            // archive's start.
            None => unpack(&job, io::stdin()),
        }
        .map(Report::Staged),
        Job::Keep(job) => merge::keep(&job).map(Report::Count),
        Job::Merge(job) => merge::merge(&job).map(Report::Count),
        Job::Swap(job) => swap::run(&job).map(|()| Report::Nothing),
        Job::Remove(dirs) => dirs
            .iter()
            .try_for_each(|d| remove::remove_work_dir(&d.root, &d.name, d.mtime))
            .map(|()| Report::Nothing),
    }
}

/// Walks every path of `job` into one compressed archive on `out`; progress and warnings go to
/// the host as they come, the counts come back.
pub fn pack<W: Write>(job: &PackJob, out: W) -> io::Result<PackReport> {
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
        say(&Message::Total(total));
    });
    let mut w = TarWriter::new(Reporting::new(encoder(
        io::BufWriter::with_capacity(1 << 20, out),
        compression,
    )?));
    let mut done = walk::Walked::default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let parent = match job.parent {
        true => Some(indexing::Parent::new(io::stdin())?),
        false => None,
    };
    let mut ix = indexing::Indexing::new((now.as_secs() as i64, now.subsec_nanos()), parent)?;
    for p in &job.paths {
        let nested: Vec<Vec<u8>> = p.nested.iter().map(|n| n.as_bytes().to_vec()).collect();
        let wp = walk::WalkPath {
            path: &p.path,
            exclude: &nested,
            globs: &globs,
        };
        walk::walk(&mut w, &wp, &mut done, &mut ix)?;
    }
    let tar_bytes = w.bytes + 1024;
    w.finish()?.inner.finish()?.flush()?;
    let (unchanged, gone, needs_full) = (ix.unchanged, ix.gone, ix.needs_full.clone());
    let indexed = ix.finish()?;
    for warning in &done.warnings {
        say(&Message::Warning(warning.clone()));
    }
    Ok(PackReport {
        entries: done.entries,
        tar_bytes,
        excluded: done.excluded,
        indexed,
        unchanged,
        gone,
        needs_full,
    })
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
    delete_staged(job, &root)?;
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

/// Applies a layer's deletion list to the staged tree of its path: each name below the path
/// (and not in a nested mount the target holds apart) is removed from the staging directory.
fn delete_staged(job: &UnpackJob, root: &std::os::fd::OwnedFd) -> io::Result<()> {
    let prefix = crate::archive::names::prefix_for(&job.spec.path);
    for name in &job.deleted {
        let name = hex::decode(name).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "a deleted name not in hex")
        })?;
        let Some(rel) = crate::archive::names::relative(&name, &prefix) else {
            continue;
        };
        if rel.is_empty()
            || crate::archive::names::check_relative(rel).is_err()
            || crate::archive::pack::excluded(rel, &job.spec.skip)
        {
            continue;
        }
        let mut staged = job.spec.into.clone();
        staged.push(b'/');
        staged.extend_from_slice(rel);
        remove::remove_entry(root, &staged)?;
    }
    Ok(())
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

/// Passes the tar stream on to the compressor and tells the host, at most four times a second,
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
            say(&Message::Progress(self.bytes));
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
