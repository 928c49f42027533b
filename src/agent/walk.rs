//! The agent's file-system walk: each backed-up path read straight from the volume, one directory
//! file descriptor at a time (`openat` with `O_NOFOLLOW`), so an app that swaps a directory for a
//! symlink mid-walk cannot lead the walk out of its volume. Entries come in the engine's order
//! (each directory, then its children sorted by name) as [`Meta`] values for [`TarWriter`].

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::archive::entry::{Kind, Meta, Mtime};
use crate::archive::guard::MAX_EXTENSION;
use crate::archive::names::{check_relative, prefix_for, show};
use crate::archive::pack::excluded;
use crate::archive::writer::TarWriter;

use crate::archive::exclude::Globs;
use crate::index::{self, Record};
use sha2::{Digest, Sha256};

use super::indexing::Indexing;

/// One path to walk and what to leave out of it.
pub struct WalkPath<'a> {
    /// The container path (`/srv/media`).
    pub path: &'a str,
    /// Names relative to the path left out with everything below (nested mounts).
    pub exclude: &'a [Vec<u8>],
    /// The user's `--exclude` globs, matched against names relative to the path.
    pub globs: &'a Globs,
}

/// Counts of one walk, and what the operator should hear about.
#[derive(Debug, Default)]
pub struct Walked {
    /// Entries written.
    pub entries: u64,
    /// Entries left out by `--exclude`.
    pub excluded: u64,
    /// Files that shrank while read (padded with zeros, as GNU tar does) or vanished.
    pub warnings: Vec<String>,
}

/// Writes every entry of `p` into `w`, each in the index `ix` too; with a parent index, only
/// what changed since goes into `w` (every directory does, so each archive has the tree's shape
/// and its directories' times).
pub fn walk<W: Write>(
    w: &mut TarWriter<W>,
    p: &WalkPath<'_>,
    done: &mut Walked,
    ix: &mut Indexing,
) -> io::Result<()> {
    let prefix = prefix_for(p.path);
    let c = CString::new(p.path).map_err(|_| invalid(format!("{:?}: NUL in path", p.path)))?;
    // The path itself is a mount point in the helper; the app cannot replace it.
    let fd = open_at(libc::AT_FDCWD, &c, libc::O_RDONLY | libc::O_NONBLOCK)
        .map_err(|e| named(e, "open", p.path.as_bytes()))?;
    let st = fstat(&fd).map_err(|e| named(e, "stat", p.path.as_bytes()))?;
    let mut links = HashMap::new();
    ix.path(p.path)?;
    let mut walker = Walker {
        w,
        links: &mut links,
        done,
        p,
        ix,
    };
    walker.entry(prefix.into_bytes(), Vec::new(), fd, st, None)?;
    walker.ix.end_path()
}

/// The first name written of each multiply-linked file, by (device, inode), with its hash.
type Links = HashMap<(u64, u64), (Vec<u8>, Option<String>)>;

struct Walker<'a, 'b, W: Write> {
    w: &'a mut TarWriter<W>,
    /// First name written of each multiply-linked file, by (device, inode), and its hash.
    links: &'a mut Links,
    done: &'a mut Walked,
    p: &'a WalkPath<'b>,
    ix: &'a mut Indexing,
}

impl<W: Write> Walker<'_, '_, W> {
    /// Writes the entry `fd` (already opened and checked) named `name`, `rel` below the path,
    /// and for a directory everything below it. `known`: the parent index's record of a file,
    /// when it was looked up already.
    fn entry(
        &mut self,
        name: Vec<u8>,
        rel: Vec<u8>,
        fd: OwnedFd,
        st: libc::stat,
        known: Option<Option<Record>>,
    ) -> io::Result<()> {
        let kind = st.st_mode & libc::S_IFMT;
        let mut meta = meta_of(&name, &st);
        meta.xattrs = xattrs(&fd);
        if !restorable_xattrs(&meta.xattrs) {
            self.done.warnings.push(format!(
                "{}: its extended attributes take over 1 MiB, more than a restore reads; left out",
                show(&name)
            ));
            meta.xattrs.clear();
        }
        let mut rec = record_of(&name, &st, &meta);
        match kind {
            libc::S_IFDIR => {
                meta.kind = Kind::Dir;
                rec.k = Some(index::Kind::Dir);
                self.ix.parent_of(&name, &rec)?;
                self.ix.entry(&rec)?;
                self.w.append(&meta, &mut io::empty())?;
                self.done.entries += 1;
                self.children(&name, &rel, &fd)
            }
            libc::S_IFREG => {
                rec.k = Some(index::Kind::File);
                rec.s = st.st_size as u64;
                // A path that is a single file is in every archive, so each restores alone.
                let before = match known {
                    Some(before) => before,
                    None => self.ix.parent_of(&name, &rec)?,
                };
                if let Some(before) = before {
                    if !rel.is_empty() && self.ix.unchanged(&before, &rec) {
                        rec.h = before.h;
                        self.ix.unchanged += 1;
                        return self.ix.entry(&rec);
                    }
                }
                let key = (st.st_dev, st.st_ino);
                if st.st_nlink > 1 {
                    if let Some((first, hash)) = self.links.get(&key) {
                        meta.kind = Kind::Hardlink;
                        meta.link = Some(first.clone());
                        meta.size = 0;
                        meta.xattrs.clear();
                        rec.h = hash.clone();
                        self.done.entries += 1;
                        self.ix.entry(&rec)?;
                        return self.w.append(&meta, &mut io::empty());
                    }
                }
                meta.kind = Kind::File;
                meta.size = st.st_size as u64;
                let mut data = Hashing {
                    inner: FileData::new(fd, &st),
                    hash: Sha256::new(),
                };
                self.w.append(&meta, &mut data)?;
                let hash = hex::encode(data.hash.finalize());
                if data.inner.short > 0 {
                    self.done.warnings.push(format!(
                        "{}: shrank by {} bytes while read; padded with zeros",
                        show(&name),
                        data.inner.short
                    ));
                }
                if st.st_nlink > 1 {
                    self.links.insert(key, (name.clone(), Some(hash.clone())));
                }
                rec.h = Some(hash);
                self.done.entries += 1;
                self.ix.entry(&rec)
            }
            _ => Err(invalid(format!(
                "{}: not a directory or a regular file",
                show(&name)
            ))),
        }
    }

    /// Writes the children of directory `fd`, sorted by name.
    fn children(&mut self, name: &[u8], rel: &[u8], fd: &OwnedFd) -> io::Result<()> {
        let names = read_dir(fd).map_err(|e| named(e, "list", name))?;
        for child in names {
            let mut child_rel = rel.to_vec();
            if !child_rel.is_empty() {
                child_rel.push(b'/');
            }
            child_rel.extend_from_slice(&child);
            if excluded(&child_rel, self.p.exclude)
                || (rel.is_empty() && crate::archive::names::is_reserved(&child))
            {
                continue;
            }
            if self.p.globs.matches(self.p.path, &child_rel) {
                self.done.excluded += 1;
                continue;
            }
            check_relative(&child_rel)
                .map_err(|why| invalid(format!("{:?}: {why}", show(&child))))?;
            let mut child_name = name.to_vec();
            child_name.push(b'/');
            child_name.extend_from_slice(&child);
            if !restorable_name(&child_name) {
                self.done.warnings.push(format!(
                    "{}: a name of {} bytes, over the 1 MiB a restore reads; left out with all below it",
                    show(&child_name),
                    child_name.len()
                ));
                continue;
            }
            let c = CString::new(child.clone()).expect("directory entries hold no NUL");
            let st = match lstat_at(fd, &c) {
                Ok(st) => st,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    self.vanished(&child_name);
                    continue;
                }
                Err(e) => return Err(named(e, "stat", &child_name)),
            };
            let kind = st.st_mode & libc::S_IFMT;
            // An increment: a file its parent holds unchanged is not even opened. Its status
            // time would have changed with its xattrs, so the parent's digest of them stands.
            let mut known = None;
            if kind == libc::S_IFREG && self.ix.incremental() {
                let mut rec = record_of(&child_name, &st, &meta_of(&child_name, &st));
                rec.k = Some(index::Kind::File);
                rec.s = st.st_size as u64;
                let before = self.ix.parent_of(&child_name, &rec)?;
                if let Some(b) = &before {
                    rec.x = b.x.clone();
                    if self.ix.unchanged(b, &rec) {
                        rec.h = b.h.clone();
                        self.ix.unchanged += 1;
                        self.ix.entry(&rec)?;
                        continue;
                    }
                }
                known = Some(before);
            }
            match kind {
                libc::S_IFDIR | libc::S_IFREG => {
                    let flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY;
                    let opened = match open_at(fd.as_raw_fd(), &c, flags) {
                        Ok(f) => f,
                        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                            // Its parent record was read already: it is gone since.
                            if let Some(Some(_)) = known {
                                self.ix.list_gone(&child_name)?;
                            }
                            self.vanished(&child_name);
                            continue;
                        }
                        Err(e) => return Err(named(e, "open", &child_name)),
                    };
                    // What was opened is what was looked at, or it changed under us (a swap for a
                    // symlink fails the open with ELOOP; anything else is caught here).
                    let now = fstat(&opened).map_err(|e| named(e, "stat", &child_name))?;
                    if now.st_mode & libc::S_IFMT != kind || now.st_ino != st.st_ino {
                        return Err(invalid(format!(
                            "{}: changed type while read; run the backup again",
                            show(&child_name)
                        )));
                    }
                    self.entry(child_name, child_rel, opened, now, known)?;
                }
                libc::S_IFLNK => {
                    let mut meta = meta_of(&child_name, &st);
                    meta.kind = Kind::Symlink;
                    meta.link = Some(read_link(fd, &c).map_err(|e| named(e, "read", &child_name))?);
                    self.other(meta, &st, index::Kind::Symlink)?;
                }
                libc::S_IFIFO | libc::S_IFCHR | libc::S_IFBLK => {
                    let mut meta = meta_of(&child_name, &st);
                    meta.kind = match kind {
                        libc::S_IFIFO => Kind::Fifo,
                        libc::S_IFCHR => Kind::CharDevice,
                        _ => Kind::BlockDevice,
                    };
                    if kind != libc::S_IFIFO {
                        meta.device = Some((libc::major(st.st_rdev), libc::minor(st.st_rdev)));
                    }
                    let k = match kind {
                        libc::S_IFIFO => index::Kind::Fifo,
                        libc::S_IFCHR => index::Kind::Char,
                        _ => index::Kind::Block,
                    };
                    self.other(meta, &st, k)?;
                }
                // Sockets are left out, as the engine's archive does.
                _ => {}
            }
        }
        Ok(())
    }

    /// Writes a symlink, FIFO or device node (no data), unless the parent holds it unchanged.
    fn other(&mut self, meta: Meta, st: &libc::stat, k: index::Kind) -> io::Result<()> {
        let mut rec = record_of(&meta.name, st, &meta);
        rec.k = Some(k);
        if let Some(before) = self.ix.parent_of(&meta.name, &rec)? {
            if self.ix.unchanged(&before, &rec) {
                self.ix.unchanged += 1;
                return self.ix.entry(&rec);
            }
        }
        self.w.append(&meta, &mut io::empty())?;
        self.done.entries += 1;
        self.ix.entry(&rec)
    }

    fn vanished(&mut self, name: &[u8]) {
        self.done.warnings.push(format!(
            "{}: removed while the backup ran; left out",
            show(name)
        ));
    }
}

/// The values every kind shares; `kind` is set by the caller.
fn meta_of(name: &[u8], st: &libc::stat) -> Meta {
    Meta {
        kind: Kind::File,
        name: name.to_vec(),
        link: None,
        size: 0,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid as u64,
        gid: st.st_gid as u64,
        mtime: Mtime {
            secs: st.st_mtime,
            nanos: st.st_mtime_nsec as u32,
        },
        xattrs: Vec::new(),
        device: None,
    }
}

/// The index record of an entry (its kind, size and hash set by the caller).
fn record_of(name: &[u8], st: &libc::stat, meta: &Meta) -> Record {
    let mut r = Record {
        mt: (st.st_mtime, st.st_mtime_nsec as u32),
        ct: (st.st_ctime, st.st_ctime_nsec as u32),
        ino: st.st_ino,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid as u64,
        gid: st.st_gid as u64,
        dev: meta.device,
        x: index::xattr_digest(&meta.xattrs),
        ..Default::default()
    };
    r.set_name(name);
    if let Some(link) = &meta.link {
        r.set_link(link);
    }
    r
}

/// Hashes what passes through.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// A regular file's bytes: holes of a sparse file are produced as zeros without reading them, and
/// a file that shrinks while read is padded with zeros (counted in `short`).
struct FileData {
    file: std::fs::File,
    pos: u64,
    size: u64,
    /// Where the current run of data ends (a hole or the end); `None` when not sparse.
    data_end: Option<u64>,
    /// Zero bytes owed for a hole or a shrunk file, before reading again.
    zeros: u64,
    short: u64,
}

impl FileData {
    fn new(fd: OwnedFd, st: &libc::stat) -> FileData {
        let size = st.st_size as u64;
        let sparse = (st.st_blocks as u64) * 512 < size;
        FileData {
            file: std::fs::File::from(fd),
            pos: 0,
            size,
            data_end: sparse.then_some(0),
            zeros: 0,
            short: 0,
        }
    }

    /// At a sparse file's run boundary: finds the next data and owes zeros for the hole before it.
    fn next_run(&mut self) {
        let fd = self.file.as_raw_fd();
        let seek = |whence| unsafe { libc::lseek(fd, self.pos as i64, whence) };
        let data = seek(libc::SEEK_DATA);
        if data < 0 {
            // ENXIO: only a hole up to the end.
            self.zeros = self.size - self.pos;
            self.data_end = Some(self.size);
            return;
        }
        let data = (data as u64).min(self.size);
        self.zeros = data - self.pos;
        let hole = unsafe { libc::lseek(fd, data as i64, libc::SEEK_HOLE) };
        self.data_end = Some(if hole < 0 {
            self.size
        } else {
            (hole as u64).min(self.size)
        });
        unsafe { libc::lseek(fd, data as i64, libc::SEEK_SET) };
    }
}

impl Read for FileData {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        if self.zeros == 0 && self.data_end.is_some_and(|end| self.pos >= end) {
            self.next_run();
        }
        let left = (self.size - self.pos) as usize;
        if self.zeros > 0 {
            let n = buf.len().min(self.zeros as usize).min(left);
            buf[..n].fill(0);
            self.zeros -= n as u64;
            self.pos += n as u64;
            return Ok(n);
        }
        let until = self.data_end.unwrap_or(self.size);
        let want = buf.len().min((until - self.pos) as usize).min(left);
        let n = self.file.read(&mut buf[..want])?;
        if n == 0 {
            // Shrunk: the header already says `size`; the rest is zeros.
            self.short = self.size - self.pos;
            self.zeros = self.short;
            self.data_end = Some(self.size);
            return self.read(buf);
        }
        self.pos += n as u64;
        Ok(n)
    }
}

fn open_at(dir: i32, name: &CStr, flags: i32) -> io::Result<OwnedFd> {
    let fd = unsafe {
        libc::openat(
            dir,
            name.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fstat(fd: &OwnedFd) -> io::Result<libc::stat> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

fn lstat_at(dir: &OwnedFd, name: &CStr) -> io::Result<libc::stat> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let r = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

fn read_link(dir: &OwnedFd, name: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// The names in directory `fd` (without `.` and `..`), sorted as the engine sorts them.
fn read_dir(fd: &OwnedFd) -> io::Result<Vec<Vec<u8>>> {
    let dup = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(io::Error::last_os_error());
    }
    let dir = unsafe { libc::fdopendir(dup) };
    if dir.is_null() {
        let e = io::Error::last_os_error();
        unsafe { libc::close(dup) };
        return Err(e);
    }
    unsafe { libc::rewinddir(dir) };
    let mut names = Vec::new();
    loop {
        let ent = unsafe { libc::readdir64(dir) };
        if ent.is_null() {
            break;
        }
        let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) }.to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    unsafe { libc::closedir(dir) };
    names.sort();
    Ok(names)
}

/// Every extended attribute of an open file or directory; none where the file system has none.
fn xattrs(fd: &OwnedFd) -> Vec<(Vec<u8>, Vec<u8>)> {
    let raw = fd.as_raw_fd();
    // Asked for the size first: a fixed buffer would drop every xattr of a file with many.
    let size = unsafe { libc::flistxattr(raw, std::ptr::null_mut(), 0) };
    if size <= 0 {
        return Vec::new();
    }
    let mut names = vec![0u8; size as usize];
    let n = unsafe { libc::flistxattr(raw, names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return Vec::new();
    }
    names.truncate(n as usize);
    let mut out = Vec::new();
    for key in names.split(|&b| b == 0).filter(|k| !k.is_empty()) {
        let c = CString::new(key).expect("split at NUL");
        let mut value = vec![0u8; 65536];
        let n = unsafe { libc::fgetxattr(raw, c.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
        if n >= 0 {
            value.truncate(n as usize);
            out.push((key.to_vec(), value));
        }
    }
    out.sort();
    out
}

/// Whether a restore reads a name this long: its GNU long-name header (the name, a slash, a NUL)
/// stays within [`MAX_EXTENSION`], so no backup holds an entry every restore would refuse.
fn restorable_name(name: &[u8]) -> bool {
    name.len() as u64 + 2 <= MAX_EXTENSION
}

/// Whether a restore reads these xattrs: their PAX header (each record's key, value and a little
/// framing, and room for a time record) stays within [`MAX_EXTENSION`].
fn restorable_xattrs(xattrs: &[(Vec<u8>, Vec<u8>)]) -> bool {
    let records: usize = xattrs
        .iter()
        .map(|(key, value)| key.len() + value.len() + 32)
        .sum();
    records as u64 + 64 <= MAX_EXTENSION
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn named(e: io::Error, action: &str, name: &[u8]) -> io::Error {
    io::Error::new(e.kind(), format!("{action} {}: {e}", show(name)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn walk_to_entries(dir: &std::path::Path, globs: &Globs) -> Vec<(Meta, Vec<u8>)> {
        let mut w = TarWriter::new(Vec::new());
        let path = dir.to_str().unwrap();
        let p = WalkPath {
            path,
            exclude: &[b"skip".to_vec()],
            globs,
        };
        let mut done = Walked::default();
        let mut ix = Indexing::new((0, 0), None).unwrap();
        walk(&mut w, &p, &mut done, &mut ix).unwrap();
        let bytes = w.finish().unwrap();
        let mut archive = tar::Archive::new(&bytes[..]);
        let mut out = Vec::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let (m, _) = crate::archive::entry::read(&mut e).unwrap();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            out.push((m, data));
        }
        out
    }

    #[test]
    fn names_and_xattrs_a_restore_would_refuse_are_left_out() {
        assert!(restorable_name(&[b'a'; 4096]));
        assert!(restorable_name(&vec![b'a'; (MAX_EXTENSION - 2) as usize]));
        assert!(!restorable_name(&vec![b'a'; (MAX_EXTENSION - 1) as usize]));
        let xattr = |n: usize| (b"user.x".to_vec(), vec![0u8; n]);
        assert!(restorable_xattrs(&[xattr(65536), xattr(65536)]));
        assert!(!restorable_xattrs(&vec![xattr(65536); 16]));
        // What the writer makes of the largest it lets through, the guard reads.
        let mut meta = meta_of(b"srv/media/f", &unsafe { std::mem::zeroed() });
        meta.mtime = Mtime {
            secs: -1,
            nanos: 123_456_789,
        };
        let value = (MAX_EXTENSION - 64 - 32) as usize - b"user.x".len();
        meta.xattrs = vec![xattr(value)];
        assert!(restorable_xattrs(&meta.xattrs));
        let mut w = TarWriter::new(Vec::new());
        w.append(&meta, &mut io::empty()).unwrap();
        let tar = w.finish().unwrap();
        let mut archive = crate::archive::guard::archive(&tar[..]);
        for e in archive.entries().unwrap() {
            e.unwrap();
        }
    }

    #[test]
    fn the_walk_keeps_links_holes_and_order_and_follows_no_symlink() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::create_dir(d.join("b")).unwrap();
        std::fs::write(d.join("b/one"), b"one").unwrap();
        std::fs::hard_link(d.join("b/one"), d.join("b/two")).unwrap();
        std::fs::create_dir(d.join("skip")).unwrap();
        std::fs::write(d.join("skip/x"), b"x").unwrap();
        std::fs::write(d.join("a.log"), b"log").unwrap();
        symlink("/etc", d.join("c")).unwrap();
        let sparse = std::fs::File::create(d.join("disk.img")).unwrap();
        sparse.set_len(3 << 20).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(d.join("disk.img"))
            .unwrap();
        std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(1 << 20)).unwrap();
        f.write_all(b"middle").unwrap();
        drop(f);
        let globs = Globs::new(&["*.log".to_string()]).unwrap();
        let got = walk_to_entries(d, &globs);
        let prefix = prefix_for(d.to_str().unwrap());
        let names: Vec<String> = got
            .iter()
            .map(|(m, _)| String::from_utf8_lossy(&m.name).replacen(&prefix, "", 1))
            .collect();
        assert_eq!(names, ["", "/b", "/b/one", "/b/two", "/c", "/disk.img"]);
        assert_eq!(got[3].0.kind, Kind::Hardlink);
        assert_eq!(got[3].0.link.as_deref(), Some(got[2].0.name.as_slice()));
        assert_eq!(got[4].0.kind, Kind::Symlink);
        assert_eq!(got[4].0.link.as_deref(), Some(&b"/etc"[..]));
        let img = &got[5].1;
        assert_eq!(img.len(), 3 << 20);
        assert_eq!(&img[1 << 20..(1 << 20) + 6], b"middle");
        assert!(img[..1 << 20].iter().all(|&b| b == 0));
        assert!(img[(1 << 20) + 6..].iter().all(|&b| b == 0));
    }

    /// The parent index of `dir` as it is now, its walk dated `started`.
    fn index_of(dir: &std::path::Path, started: (i64, u32)) -> Vec<u8> {
        use std::os::unix::fs::MetadataExt;
        let prefix = prefix_for(dir.to_str().unwrap());
        let mut w = index::Writer::new(Vec::new(), started).unwrap();
        w.path(dir.to_str().unwrap()).unwrap();
        let mut names = vec![String::new()];
        for e in std::fs::read_dir(dir).unwrap() {
            names.push(format!("/{}", e.unwrap().file_name().to_str().unwrap()));
        }
        names.sort();
        for n in names {
            let m = std::fs::symlink_metadata(format!("{}{n}", dir.display())).unwrap();
            let mut r = Record {
                k: Some(if m.is_dir() {
                    index::Kind::Dir
                } else {
                    index::Kind::File
                }),
                s: if m.is_dir() { 0 } else { m.len() },
                mt: (m.mtime(), m.mtime_nsec() as u32),
                ct: (m.ctime(), m.ctime_nsec() as u32),
                ino: m.ino(),
                mode: m.mode() & 0o7777,
                uid: m.uid() as u64,
                gid: m.gid() as u64,
                h: (!m.is_dir()).then(|| "parent's".to_string()),
                ..Default::default()
            };
            r.set_name(format!("{prefix}{n}").as_bytes());
            w.entry(&r).unwrap();
        }
        zstd::encode_all(&w.finish()[..], 3).unwrap()
    }

    #[test]
    fn an_increment_holds_a_file_changed_in_place_with_its_size_and_mtime_kept() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::write(d.join("edited"), b"before").unwrap();
        std::fs::write(d.join("same"), b"untouched").unwrap();
        // Dated well after the files' times: nothing is "racily clean".
        let now = chrono::Utc::now().timestamp();
        let parent = index_of(d, (now + 60, 0));
        // The same bytes' count, the old mtime: only the status change time tells.
        let mtime = std::fs::metadata(d.join("edited"))
            .unwrap()
            .modified()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(d.join("edited"))
            .unwrap();
        std::os::unix::fs::FileExt::write_at(&f, b"AFTER!", 0).unwrap();
        f.set_modified(mtime).unwrap();
        drop(f);
        let parent = super::super::indexing::Parent::new(std::io::Cursor::new(parent)).unwrap();
        let mut ix = Indexing::new((now + 61, 0), Some(parent)).unwrap();
        let mut w = TarWriter::new(Vec::new());
        let globs = Globs::new(&[]).unwrap();
        let p = WalkPath {
            path: d.to_str().unwrap(),
            exclude: &[],
            globs: &globs,
        };
        let mut done = Walked::default();
        walk(&mut w, &p, &mut done, &mut ix).unwrap();
        assert_eq!((ix.unchanged, ix.gone), (1, 0));
        let tar = w.finish().unwrap();
        let mut archive = tar::Archive::new(&tar[..]);
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        // The directory (every increment has it) and the edited file; not the untouched one.
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names[1].ends_with("/edited"), "{names:?}");
    }
}
