//! The agent's extractor: writes a tar stream that staging built (every header from checked
//! values) below one directory, through directory file descriptors only. Each parent is opened
//! component by component with `O_NOFOLLOW`, and every entry is created relative to its parent's
//! descriptor, so a symlink the app plants mid-restore cannot send a write outside the directory.
//! Runs of zeros in files are skipped with a seek (files come back sparse); directory times are
//! set last, as their children change them. A name the stream holds twice is handled as tar
//! does: a later entry replaces a non-directory (the name itself is removed, never what a symlink
//! there points to), and a directory over a directory only sets its metadata; staging has refused
//! a non-directory over a directory already.

use std::ffi::CString;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::archive::entry::{self, Kind, Meta};
use crate::archive::names::show;

/// Bytes compared at a time when looking for runs of zeros.
const CHUNK: usize = 64 << 10;

/// Extracts every entry of `tar` below directory `root` (already open); returns entries written.
pub fn extract(tar: impl Read, root: &OwnedFd) -> io::Result<u64> {
    // Modes are set whole at creation (special files) or by fchmod (the rest).
    // SAFETY: umask has no preconditions.
    unsafe { libc::umask(0) };
    let mut archive = crate::archive::guard::archive(tar);
    let mut open = Parents::default();
    let mut dirs: Vec<(Vec<u8>, Meta)> = Vec::new();
    let mut count = 0;
    for e in archive.entries()? {
        let mut e = e?;
        let (meta, _) = entry::read(&mut e).map_err(invalid)?;
        let (parent, base) = split(&meta.name)?;
        let dir = open.get(root, parent)?;
        let c = CString::new(base).map_err(|_| invalid("NUL in a name".into()))?;
        let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", show(&meta.name)));
        match meta.kind {
            Kind::Dir => {
                let existed = make_dir(dir, &c).map_err(named)?;
                let fd = open_dir(dir.as_raw_fd(), &c).map_err(named)?;
                if existed {
                    // An incremental backup's layer over the one before: the attributes this
                    // entry no longer has go (a revoked ACL stays revoked).
                    drop_other_xattrs(&fd, &meta).map_err(named)?;
                }
                own(&fd, &meta, true).map_err(named)?;
                dirs.push((meta.name.clone(), meta));
            }
            Kind::File => {
                // Created with its final mode when that is only permission bits: one fchmod
                // less per file. Set-id bits (which the chown in `own` would clear) and the
                // sticky bit are set by `own` after it.
                let plain = meta.mode & 0o7000 == 0;
                let mode = if plain { meta.mode } else { 0o600 };
                let fd = replacing(dir, &c, || create_file(dir, &c, mode)).map_err(named)?;
                let mut file = std::fs::File::from(fd);
                write_sparse(&mut e, &mut file, meta.size).map_err(named)?;
                let fd = OwnedFd::from(file);
                own(&fd, &meta, !plain).map_err(named)?;
                set_time(&fd, &meta).map_err(named)?;
            }
            Kind::Hardlink => {
                let target = meta.link.as_deref().unwrap_or_default();
                let (tparent, tbase) = split(target)?;
                let tdir = walk_dirs(root, tparent)?;
                let t = CString::new(tbase).map_err(|_| invalid("NUL in a name".into()))?;
                replacing(dir, &c, || {
                    check(unsafe {
                        libc::linkat(tdir.as_raw_fd(), t.as_ptr(), dir.as_raw_fd(), c.as_ptr(), 0)
                    })
                })
                .map_err(named)?;
            }
            Kind::Symlink => {
                let target = CString::new(meta.link.clone().unwrap_or_default())
                    .map_err(|_| invalid("NUL in a link".into()))?;
                replacing(dir, &c, || {
                    check(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), c.as_ptr()) })
                })
                .map_err(named)?;
                own_at(dir, &c, &meta).map_err(named)?;
            }
            Kind::Fifo | Kind::CharDevice | Kind::BlockDevice => {
                let (kind, dev) = match meta.kind {
                    Kind::Fifo => (libc::S_IFIFO, 0),
                    Kind::CharDevice => (libc::S_IFCHR, device(&meta)),
                    _ => (libc::S_IFBLK, device(&meta)),
                };
                // The mode is given whole here (the agent's umask is 0): a chmod by name after
                // this would follow a symlink the app swapped in.
                replacing(dir, &c, || {
                    check(unsafe {
                        libc::mknodat(
                            dir.as_raw_fd(),
                            c.as_ptr(),
                            kind | (meta.mode & 0o7777),
                            dev,
                        )
                    })
                })
                .map_err(named)?;
                own_at(dir, &c, &meta).map_err(named)?;
            }
        }
        count += 1;
    }
    // Deepest first, so setting a directory's time never disturbs its parent's.
    open.clear();
    for (name, meta) in dirs.iter().rev() {
        let fd = walk_dirs(root, name)?;
        set_time(&fd, meta)?;
    }
    Ok(count)
}

/// The open directories of the last entry's parent, reused while entries stay in it.
#[derive(Default)]
struct Parents {
    names: Vec<Vec<u8>>,
    fds: Vec<OwnedFd>,
}

impl Parents {
    /// The directory `parent` (relative to `root`, `/`-separated), opened without following any
    /// symlink on the way.
    fn get<'a>(&'a mut self, root: &'a OwnedFd, parent: &[u8]) -> io::Result<&'a OwnedFd> {
        let parts: Vec<&[u8]> = if parent.is_empty() {
            Vec::new()
        } else {
            parent.split(|&b| b == b'/').collect()
        };
        let same = self
            .names
            .iter()
            .zip(&parts)
            .take_while(|(a, b)| a.as_slice() == **b)
            .count();
        self.names.truncate(same);
        self.fds.truncate(same);
        for part in &parts[same..] {
            let at = self.fds.last().unwrap_or(root).as_raw_fd();
            let c = CString::new(*part).map_err(|_| invalid("NUL in a name".into()))?;
            let fd = open_dir(at, &c)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", show(parent))))?;
            self.names.push(part.to_vec());
            self.fds.push(fd);
        }
        Ok(self.fds.last().unwrap_or(root))
    }

    fn clear(&mut self) {
        self.names.clear();
        self.fds.clear();
    }
}

/// Opens directory `path` below `root`, one component at a time, following no symlink.
pub(super) fn walk_dirs(root: &OwnedFd, path: &[u8]) -> io::Result<OwnedFd> {
    let mut cur = root.try_clone()?;
    if path.is_empty() {
        return Ok(cur);
    }
    for part in path.split(|&b| b == b'/') {
        let c = CString::new(part).map_err(|_| invalid("NUL in a name".into()))?;
        cur = open_dir(cur.as_raw_fd(), &c)?;
    }
    Ok(cur)
}

/// Opens `root` (a directory dockyard names, e.g. a mount point) for [`extract`].
pub fn open_root(path: &str) -> io::Result<OwnedFd> {
    let c = CString::new(path).map_err(|_| invalid("NUL in a path".into()))?;
    open_dir(libc::AT_FDCWD, &c).map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))
}

fn split(name: &[u8]) -> io::Result<(&[u8], &[u8])> {
    let name = entry::trim_slash(name);
    if name.is_empty() || name.starts_with(b"/") {
        return Err(invalid(format!("refusing entry {:?}", show(name))));
    }
    let (parent, base) = match name.iter().rposition(|&b| b == b'/') {
        Some(i) => (&name[..i], &name[i + 1..]),
        None => (&[][..], name),
    };
    if base == b"."
        || base == b".."
        || parent
            .split(|&b| b == b'/')
            .any(|p| p == b".." || p == b".")
    {
        return Err(invalid(format!("refusing entry {:?}", show(name))));
    }
    Ok((parent, base))
}

fn open_dir(at: i32, name: &CString) -> io::Result<OwnedFd> {
    let fd = unsafe {
        libc::openat(
            at,
            name.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    check(fd)?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Creates a directory; one that exists is used as it is (staging's own layout comes first), and
/// anything else there is replaced.
fn make_dir(dir: &OwnedFd, name: &CString) -> io::Result<bool> {
    let mkdir = || check(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o700) });
    match mkdir() {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            check(unsafe {
                libc::fstatat(
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    &mut st,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            })?;
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                return Ok(true);
            }
            check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) })?;
            mkdir().map(|_| false)
        }
        other => other.map(|_| false),
    }
}

/// Removes the extended attributes of directory `fd` that `meta` does not have, of the kinds a
/// backup holds and a restore sets (`user.*`, `trusted.*`, ACLs, file capabilities); those the
/// file system sets itself (an SELinux label, `btrfs.*`, IMA) stay, as in a full restore.
fn drop_other_xattrs(fd: &OwnedFd, meta: &Meta) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: a size query with no buffer.
    let size = unsafe { libc::flistxattr(raw, std::ptr::null_mut(), 0) };
    if size <= 0 {
        return Ok(());
    }
    let mut names = vec![0u8; size as usize];
    // SAFETY: a buffer of the given length.
    let n = unsafe { libc::flistxattr(raw, names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return Ok(());
    }
    names.truncate(n as usize);
    for key in names.split(|&b| b == 0).filter(|k| !k.is_empty()) {
        let restorable = key.starts_with(b"user.")
            || key.starts_with(b"trusted.")
            || key.starts_with(b"system.posix_acl_")
            || key == b"security.capability";
        if !restorable || meta.xattrs.iter().any(|(k, _)| k == key) {
            continue;
        }
        let k = CString::new(key).map_err(|_| invalid("NUL in an xattr name".into()))?;
        // SAFETY: a valid descriptor and name.
        if unsafe { libc::fremovexattr(raw, k.as_ptr()) } < 0 {
            let e = io::Error::last_os_error();
            if !matches!(
                e.raw_os_error(),
                Some(libc::EPERM | libc::ENOTSUP | libc::ENODATA)
            ) {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Runs `create`; if the name exists, removes it and runs `create` again, as tar does. The
/// removal is `unlinkat` of the name itself: a symlink goes, never what it points to, and a
/// directory is not removed (the error says so).
fn replacing<T>(
    dir: &OwnedFd,
    name: &CString,
    mut create: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    match create() {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) })?;
            create()
        }
        other => other,
    }
}

/// Creates a file with permission bits `mode` (the umask is 0); the descriptor is writable
/// whatever the mode.
fn create_file(dir: &OwnedFd, name: &CString, mode: u32) -> io::Result<OwnedFd> {
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            (mode & 0o777) as libc::c_uint,
        )
    };
    check(fd)?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Copies `size` bytes, seeking over runs of zeros; the length is set at the end if it ends in
/// a hole.
fn write_sparse(data: &mut impl Read, file: &mut std::fs::File, size: u64) -> io::Result<()> {
    use std::io::{Seek, SeekFrom};
    let mut buf = vec![0u8; CHUNK];
    let mut left = size;
    let mut hole = 0u64;
    while left > 0 {
        let want = buf.len().min(left as usize);
        data.read_exact(&mut buf[..want])?;
        left -= want as u64;
        if buf[..want].iter().all(|&b| b == 0) {
            hole += want as u64;
            continue;
        }
        if hole > 0 {
            file.seek(SeekFrom::Current(hole as i64))?;
            hole = 0;
        }
        file.write_all(&buf[..want])?;
    }
    if hole > 0 {
        file.set_len(size)?;
    }
    Ok(())
}

/// Owner, mode (if `chmod`: not already set at creation) and extended attributes of an open file
/// or directory (owner first: changing it clears set-id bits).
fn own(fd: &OwnedFd, meta: &Meta, chmod: bool) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    check(unsafe { libc::fchown(raw, meta.uid as u32, meta.gid as u32) })?;
    if chmod {
        check(unsafe { libc::fchmod(raw, meta.mode & 0o7777) })?;
    }
    for (key, value) in &meta.xattrs {
        let k = CString::new(key.clone()).map_err(|_| invalid("NUL in an xattr name".into()))?;
        let r = unsafe { libc::fsetxattr(raw, k.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
        // As the engine does: a file system or namespace that refuses an attribute (trusted.*
        // without CAP_SYS_ADMIN) is not a failed restore.
        if r < 0 {
            let e = io::Error::last_os_error();
            if !matches!(e.raw_os_error(), Some(libc::EPERM | libc::ENOTSUP)) {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Owner and time of a symlink or special file, not following it.
fn own_at(dir: &OwnedFd, name: &CString, meta: &Meta) -> io::Result<()> {
    check(unsafe {
        libc::fchownat(
            dir.as_raw_fd(),
            name.as_ptr(),
            meta.uid as u32,
            meta.gid as u32,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    let times = times(meta);
    check(unsafe {
        libc::utimensat(
            dir.as_raw_fd(),
            name.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(())
}

fn set_time(fd: &OwnedFd, meta: &Meta) -> io::Result<()> {
    let times = times(meta);
    check(unsafe { libc::futimens(fd.as_raw_fd(), times.as_ptr()) })?;
    Ok(())
}

/// Access and modification time, both the entry's mtime.
fn times(meta: &Meta) -> [libc::timespec; 2] {
    let t = libc::timespec {
        tv_sec: meta.mtime.secs,
        tv_nsec: meta.mtime.nanos as i64,
    };
    [t, t]
}

fn device(meta: &Meta) -> libc::dev_t {
    let (major, minor) = meta.device.unwrap_or_default();
    libc::makedev(major, minor)
}

fn check(r: i32) -> io::Result<i32> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::entry::Mtime;
    use crate::archive::writer::TarWriter;
    use std::os::unix::fs::MetadataExt;

    fn meta(kind: Kind, name: &[u8]) -> Meta {
        Meta {
            kind,
            name: name.to_vec(),
            link: None,
            size: 0,
            mode: 0o640,
            uid: 0,
            gid: 0,
            mtime: Mtime {
                secs: 1_500_000_000,
                nanos: 5,
            },
            xattrs: vec![],
            device: None,
        }
    }

    #[test]
    fn entries_land_below_the_root_sparse_and_timed_and_no_symlink_is_followed() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let mut w = TarWriter::new(Vec::new());
        w.append(&meta(Kind::Dir, b"d"), &mut io::empty()).unwrap();
        let mut img = meta(Kind::File, b"d/img");
        img.size = 4 * CHUNK as u64;
        let mut data = vec![0u8; 4 * CHUNK];
        data[2 * CHUNK] = 7;
        w.append(&img, &mut &data[..]).unwrap();
        let mut hl = meta(Kind::Hardlink, b"d/img2");
        hl.link = Some(b"d/img".to_vec());
        w.append(&hl, &mut io::empty()).unwrap();
        let mut sl = meta(Kind::Symlink, b"escape");
        sl.link = Some(outside.path().to_str().unwrap().as_bytes().to_vec());
        w.append(&sl, &mut io::empty()).unwrap();
        let mut through = meta(Kind::File, b"escape/planted");
        through.size = 1;
        w.append(&through, &mut &b"x"[..]).unwrap();
        let tar = w.finish().unwrap();

        let root = open_root(t.path().to_str().unwrap()).unwrap();
        let err = extract(&tar[..], &root).unwrap_err();
        assert!(err.to_string().contains("escape"), "{err}");
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
        let got = std::fs::read(t.path().join("d/img")).unwrap();
        assert_eq!(got, data);
        let m = std::fs::metadata(t.path().join("d/img")).unwrap();
        assert!(
            m.blocks() * 512 < m.len(),
            "not sparse: {} blocks",
            m.blocks()
        );
        assert_eq!((m.mtime(), m.mtime_nsec()), (1_500_000_000, 5));
        assert_eq!(m.mode() & 0o7777, 0o640);
        assert_eq!(m.nlink(), 2);
    }

    #[test]
    fn a_later_entry_replaces_a_non_directory_and_never_writes_through_a_symlink() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("passwd");
        std::fs::write(&victim, "root\n").unwrap();
        let mut w = TarWriter::new(Vec::new());
        let mut sl = meta(Kind::Symlink, b"l");
        sl.link = Some(victim.to_str().unwrap().as_bytes().to_vec());
        w.append(&sl, &mut io::empty()).unwrap();
        let mut file = meta(Kind::File, b"l");
        file.size = 5;
        w.append(&file, &mut &b"mine\n"[..]).unwrap();
        w.append(&meta(Kind::Fifo, b"p"), &mut io::empty()).unwrap();
        w.append(&meta(Kind::Dir, b"p"), &mut io::empty()).unwrap();
        w.append(&meta(Kind::Dir, b"p"), &mut io::empty()).unwrap();
        let mut hl = meta(Kind::Hardlink, b"h");
        hl.link = Some(b"l".to_vec());
        w.append(&sl, &mut io::empty()).unwrap();
        w.append(&file, &mut &b"mine\n"[..]).unwrap();
        w.append(&meta(Kind::Fifo, b"h"), &mut io::empty()).unwrap();
        w.append(&hl, &mut io::empty()).unwrap();
        let tar = w.finish().unwrap();

        let root = open_root(t.path().to_str().unwrap()).unwrap();
        assert_eq!(extract(&tar[..], &root).unwrap(), 9);
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root\n");
        let l = std::fs::symlink_metadata(t.path().join("l")).unwrap();
        assert!(l.is_file() && l.nlink() == 2, "{l:?}");
        assert_eq!(
            std::fs::read_to_string(t.path().join("h")).unwrap(),
            "mine\n"
        );
        assert!(std::fs::symlink_metadata(t.path().join("p"))
            .unwrap()
            .is_dir());
    }
}
