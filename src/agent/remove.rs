//! The agent's remover: deletes a finished restore's work directory below a mount root through
//! directory descriptors only (`openat` with `O_NOFOLLOW`, `unlinkat`), so no path is ever longer
//! than one name: a tree deeper than PATH_MAX, which `rm -rf` cannot remove, goes like any other.
//! The directory must be dockyard's own (root's, mode 0700); nothing is followed on the way.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use serde::{Deserialize, Serialize};

/// One work directory for `agent remove` to delete.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoveDir {
    /// The mount root it is in.
    pub root: String,
    /// Its name there.
    pub name: String,
    /// The root's modification time to set back afterwards, if known.
    pub mtime: Option<i64>,
}

/// Removes `root/name` (dockyard's work directory) and everything below it, then gives `root`
/// the time `mtime` (removing an entry changed it), when given.
pub fn remove_work_dir(root: &str, name: &str, mtime: Option<i64>) -> io::Result<()> {
    raise_fd_limit();
    let root_fd = super::extract::open_root(root)?;
    let c = CString::new(name).map_err(|_| invalid("NUL in a name"))?;
    match stat_at(&root_fd, &c) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return set_mtime(&root_fd, mtime),
        Err(e) => return Err(e),
        Ok(st) => {
            if st.st_mode & libc::S_IFMT != libc::S_IFDIR
                || st.st_uid != 0
                || st.st_mode & 0o7777 != 0o700
            {
                return Err(invalid(&format!(
                    "{root}/{name} is not dockyard's work directory (uid {}, mode {:o}); refusing to remove it",
                    st.st_uid,
                    st.st_mode & 0o7777
                )));
            }
        }
    }
    if crate::fault::in_helper("remove-begin") {
        return Err(io::Error::other("stopped at fault point remove-begin"));
    }
    // What the swap put in place reaches the disk before anything is deleted: after a power cut,
    // the old contents are never gone while the restored files' data is still only in memory.
    // SAFETY: syncfs on a descriptor held open here; a failure only loses that ordering.
    unsafe { libc::syncfs(root_fd.as_raw_fd()) };
    remove_tree(&root_fd, &c)
        .map_err(|e| io::Error::new(e.kind(), format!("{root}/{name}: {e}")))?;
    set_mtime(&root_fd, mtime)
}

/// Removes entry `name` (`/`-separated, below `root`) and, for a directory, everything below
/// it, following no symlink on the way: an incremental backup's deletion applied to a staged
/// tree. A name that is not there (or not below directories) is no error: `false`.
pub fn remove_entry(root: &OwnedFd, name: &[u8]) -> io::Result<bool> {
    let (parent, base) = match name.iter().rposition(|&b| b == b'/') {
        Some(i) => (&name[..i], &name[i + 1..]),
        None => (&[][..], name),
    };
    let absent = |e: &io::Error| {
        matches!(
            e.raw_os_error(),
            Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)
        )
    };
    let dir = match super::extract::walk_dirs(root, parent) {
        Ok(d) => d,
        Err(e) if absent(&e) => return Ok(false),
        Err(e) => return Err(e),
    };
    let c = CString::new(base).map_err(|_| invalid("NUL in a name"))?;
    let st = match stat_at(&dir, &c) {
        Ok(st) => st,
        Err(e) if absent(&e) => return Ok(false),
        Err(e) => return Err(e),
    };
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        remove_tree(&dir, &c)?;
    } else {
        unlink(&dir, &c, 0)?;
    }
    Ok(true)
}

/// Removes directory `name` in `parent` and everything below it, depth first, holding one
/// descriptor per level.
fn remove_tree(parent: &OwnedFd, name: &CStr) -> io::Result<()> {
    // Each level: the open directory, its name in the level above.
    let mut stack: Vec<(Dir, CString)> = vec![(Dir::open(parent, name)?, name.to_owned())];
    while let Some((dir, _)) = stack.last_mut() {
        match dir.next_child()? {
            Some((child, is_dir)) => {
                if !is_dir {
                    match unlink(dir.fd(), &child, 0) {
                        Ok(()) => continue,
                        // A directory the listing did not say was one (d_type unknown).
                        Err(e) if e.raw_os_error() == Some(libc::EISDIR) => {}
                        Err(e) => return Err(e),
                    }
                }
                match unlink(dir.fd(), &child, libc::AT_REMOVEDIR) {
                    Ok(()) => {}
                    Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) => {
                        let sub = Dir::open(dir.fd(), &child)?;
                        stack.push((sub, child));
                    }
                    Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                        unlink(dir.fd(), &child, 0)?
                    }
                    Err(e) => return Err(e),
                }
            }
            None => {
                let (done, done_name) = stack.pop().expect("not empty");
                drop(done);
                let above = stack.last().map(|(d, _)| d.fd()).unwrap_or(parent);
                unlink(above, &done_name, libc::AT_REMOVEDIR)?;
            }
        }
    }
    Ok(())
}

/// An open directory being listed (or emptied).
pub(crate) struct Dir {
    fd: OwnedFd,
    stream: *mut libc::DIR,
}

impl Dir {
    pub(crate) fn open(at: &OwnedFd, name: &CStr) -> io::Result<Dir> {
        let fd = open_dir(at, name)?;
        // The stream gets a descriptor of its own; `fd` stays for the *at calls.
        let dup = fd.try_clone()?;
        // SAFETY: a valid directory descriptor, handed over to the stream.
        let stream = unsafe { libc::fdopendir(dup.as_raw_fd()) };
        if stream.is_null() {
            return Err(io::Error::last_os_error());
        }
        std::mem::forget(dup);
        Ok(Dir { fd, stream })
    }

    fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// The next entry other than `.` and `..`, and whether it is a directory, once each.
    pub(crate) fn next_entry(&mut self) -> io::Result<Option<(CString, bool)>> {
        self.read(true)
    }

    /// The next entry other than `.` and `..`, and whether it is a directory; when the listing
    /// ends, it is read once more from the start (removing entries while listing may hide some),
    /// and `None` only when that finds nothing.
    fn next_child(&mut self) -> io::Result<Option<(CString, bool)>> {
        self.read(false)
    }

    fn read(&mut self, once: bool) -> io::Result<Option<(CString, bool)>> {
        let mut rewound = once;
        loop {
            // SAFETY: errno is thread-local; readdir on a stream this struct owns.
            unsafe { *libc::__errno_location() = 0 };
            let e = unsafe { libc::readdir(self.stream) };
            if e.is_null() {
                let err = io::Error::last_os_error();
                if err.raw_os_error().unwrap_or(0) != 0 {
                    return Err(err);
                }
                if rewound {
                    return Ok(None);
                }
                // SAFETY: as above.
                unsafe { libc::rewinddir(self.stream) };
                rewound = true;
                continue;
            }
            // SAFETY: readdir returned a valid entry, valid until the next call.
            let (name, kind) =
                unsafe { (CStr::from_ptr((*e).d_name.as_ptr()).to_owned(), (*e).d_type) };
            if name.as_bytes() == b"." || name.as_bytes() == b".." {
                continue;
            }
            return Ok(Some((name, kind == libc::DT_DIR)));
        }
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        // SAFETY: the stream was opened by fdopendir and is closed once.
        unsafe { libc::closedir(self.stream) };
    }
}

/// Opens directory `name` in `at`, following no symlink.
pub(crate) fn open_dir(at: &OwnedFd, name: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: a valid descriptor and NUL-terminated name.
    let fd = unsafe {
        libc::openat(
            at.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just opened and is owned here.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn unlink(dir: &OwnedFd, name: &CStr, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: a valid descriptor and NUL-terminated name.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `lstat` of `name` in `dir`.
pub(crate) fn stat_at(dir: &OwnedFd, name: &CStr) -> io::Result<libc::stat> {
    // SAFETY: a zeroed stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor, name and out-parameter.
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

fn set_mtime(dir: &OwnedFd, mtime: Option<i64>) -> io::Result<()> {
    let Some(secs) = mtime else {
        return Ok(());
    };
    let times = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
    ];
    // SAFETY: a valid descriptor and two timespecs.
    if unsafe { libc::futimens(dir.as_raw_fd(), times.as_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One descriptor per level of a deep tree: lift the soft limit to the hard one.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out-parameter, then the same struct back.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn invalid(m: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, m.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_a_tree_deeper_than_path_max_and_refuses_what_is_not_its_own() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let work = root.join(".dockyard-restore");
        std::fs::create_dir(&work).unwrap();
        std::fs::set_permissions(&work, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        // 400 levels of 40-byte names: 16 KB, four times PATH_MAX; built through descriptors.
        let name = CString::new("d".repeat(40)).unwrap();
        let mut at = super::super::extract::open_root(work.to_str().unwrap()).unwrap();
        for i in 0..400 {
            // SAFETY: valid descriptor and name.
            assert_eq!(
                unsafe { libc::mkdirat(at.as_raw_fd(), name.as_ptr(), 0o755) },
                0
            );
            at = Dir::open(&at, &name).unwrap().fd.try_clone().unwrap();
            if i % 100 == 0 {
                let f = CString::new("f").unwrap();
                // SAFETY: valid descriptor and name.
                let fd = unsafe {
                    libc::openat(
                        at.as_raw_fd(),
                        f.as_ptr(),
                        libc::O_CREAT | libc::O_WRONLY,
                        0o600,
                    )
                };
                assert!(fd >= 0);
                unsafe { libc::close(fd) };
            }
        }
        drop(at);
        // A symlink inside is removed, never followed.
        let outside = root.join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "x").unwrap();
        std::os::unix::fs::symlink(&outside, work.join("link")).unwrap();
        remove_work_dir(
            root.to_str().unwrap(),
            ".dockyard-restore",
            Some(1_000_000_000),
        )
        .unwrap();
        assert!(!work.exists());
        assert!(outside.join("keep").exists());
        let mtime = std::os::unix::fs::MetadataExt::mtime(&std::fs::metadata(root).unwrap());
        assert_eq!(mtime, 1_000_000_000);

        // Not root's 0700 directory: refused, untouched.
        let other = root.join(".dockyard-restore");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("keep"), "x").unwrap();
        let err = remove_work_dir(root.to_str().unwrap(), ".dockyard-restore", None).unwrap_err();
        assert!(err.to_string().contains("not dockyard's"), "{err}");
        assert!(other.join("keep").exists());
    }
}
