//! Two ways a restore moves entries between a path's staged tree (`.dockyard-restore/new-<k>`)
//! and the live one, through directory descriptors only (`openat` with `O_NOFOLLOW`, `linkat`,
//! `renameat`), so nothing the app plants can send them elsewhere:
//! - `keep`: names the backup left out (`--exclude`) are hard-linked from the live tree into the
//!   staged one before the swap, so they stay as they are: same file, same inode, an app writing
//!   to one loses nothing;
//! - `merge` (`restore --include`): the staged entries are renamed into the live tree, replacing
//!   what has their names and deleting nothing else. Run again after a crash, it goes on from what
//!   is left.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use serde::{Deserialize, Serialize};

use super::remove::{open_dir, stat_at, Dir};
use crate::archive::exclude::Globs;
use crate::archive::names::is_reserved;

/// One restored path of a mount.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MergePath {
    /// Its number in the work dir (`new-<k>`).
    pub k: usize,
    /// The container path, which the patterns are matched against.
    pub path: String,
    /// The path relative to the mount root (empty for the root itself).
    pub rel: String,
    /// Nested mount points directly inside it (left alone).
    pub skip: Vec<String>,
}

/// What `agent keep` or `agent merge` is asked to do in one mount.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MergeJob {
    /// The mount point.
    pub mount: String,
    /// Its restored paths.
    pub paths: Vec<MergePath>,
    /// `keep`: the backup's `--exclude` patterns; `merge`: the `--include` ones.
    pub patterns: Vec<String>,
}

/// Hard-links every live entry matching the job's patterns (with everything below a matching
/// directory) into the staged tree at the same name; returns how many entries.
pub fn keep(job: &MergeJob) -> io::Result<u64> {
    let globs = Globs::new(&job.patterns).map_err(io::Error::other)?;
    let root = super::extract::open_root(&job.mount)?;
    let mut linked = 0;
    for p in &job.paths {
        let live = walk(&root, p.rel.as_bytes())?;
        let staged = walk(
            &root,
            format!("{}/new-{}", crate::swap::WORK_DIR, p.k).as_bytes(),
        )?;
        let mut found = Vec::new();
        matching(&live, &globs, p, b"", &mut found)?;
        for rel in found {
            linked += link_into(&live, &staged, &rel)?;
        }
    }
    Ok(linked)
}

/// Renames every staged entry into the live tree (creating the directories they need, replacing
/// a non-directory of the same name), after dropping staged directories that hold nothing the
/// patterns match; returns how many entries moved.
pub fn merge(job: &MergeJob) -> io::Result<u64> {
    let globs = Globs::new(&job.patterns).map_err(io::Error::other)?;
    let root = super::extract::open_root(&job.mount)?;
    let mut moved = 0;
    for p in &job.paths {
        let staged_name = format!("{}/new-{}", crate::swap::WORK_DIR, p.k);
        let staged = match walk(&root, staged_name.as_bytes()) {
            Ok(fd) => fd,
            // Merged and removed by a run before this one.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(e),
        };
        let live = walk(&root, p.rel.as_bytes())?;
        prune(&staged, &globs, &p.path, b"", false)?;
        moved += merge_dir(&staged, &live, &globs, &p.path, b"", false)?;
    }
    Ok(moved)
}

/// Opens directory `rel` below `root`, one component at a time, following no symlink.
fn walk(root: &OwnedFd, rel: &[u8]) -> io::Result<OwnedFd> {
    let mut cur = root.try_clone()?;
    for part in rel.split(|&b| b == b'/').filter(|p| !p.is_empty()) {
        cur = open_dir(&cur, &c(part)?)?;
    }
    Ok(cur)
}

fn c(name: &[u8]) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::other("NUL in a name"))
}

fn join(rel: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = rel.to_vec();
    if !out.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// The names of `dir`'s entries.
fn names(dir: &OwnedFd) -> io::Result<Vec<CString>> {
    let mut d = Dir::open(dir, c".")?;
    let mut out = Vec::new();
    while let Some((name, _)) = d.next_entry()? {
        out.push(name);
    }
    Ok(out)
}

/// Collects (relative to the path) every entry below `dir` matching `globs`, not descending into
/// a match.
fn matching(
    dir: &OwnedFd,
    globs: &Globs,
    p: &MergePath,
    rel: &[u8],
    found: &mut Vec<Vec<u8>>,
) -> io::Result<()> {
    for name in names(dir)? {
        let n = name.as_bytes();
        if rel.is_empty() && (is_reserved(n) || p.skip.iter().any(|s| s.as_bytes() == n)) {
            continue;
        }
        let child = join(rel, n);
        if globs.matches(&p.path, &child) {
            found.push(child);
            continue;
        }
        if is_dir(&stat_at(dir, &name)?) {
            matching(&open_dir(dir, &name)?, globs, p, &child, found)?;
        }
    }
    Ok(())
}

/// Links live entry `rel` (a whole directory: re-created, its entries linked) into `staged` at the
/// same name, creating the directories above it that the staged tree lacks (with the live ones'
/// owner and mode). Something the staged tree already holds there wins. Returns the entries
/// linked.
fn link_into(live: &OwnedFd, staged: &OwnedFd, rel: &[u8]) -> io::Result<u64> {
    let parts: Vec<&[u8]> = rel.split(|&b| b == b'/').collect();
    let (name, parents) = parts.split_last().expect("a name");
    let (mut l, mut s) = (live.try_clone()?, staged.try_clone()?);
    for part in parents {
        let part = c(part)?;
        let next_l = open_dir(&l, &part)?;
        let next_s = match open_dir(&s, &part) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                let st = stat_at(&l, &part)?;
                make_like(&s, &part, &st)?;
                open_dir(&s, &part)?
            }
            Err(e) => return Err(e),
        };
        (l, s) = (next_l, next_s);
    }
    link_tree(&l, &s, &c(name)?)
}

fn link_tree(live: &OwnedFd, staged: &OwnedFd, name: &CStr) -> io::Result<u64> {
    let st = stat_at(live, name)?;
    if !is_dir(&st) {
        // SAFETY: valid descriptors and names; flags 0 links a symlink itself.
        let r = unsafe {
            libc::linkat(
                live.as_raw_fd(),
                name.as_ptr(),
                staged.as_raw_fd(),
                name.as_ptr(),
                0,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return if e.raw_os_error() == Some(libc::EEXIST) {
                Ok(0)
            } else {
                Err(named(name, e))
            };
        }
        return Ok(1);
    }
    match make_like(staged, name, &st) {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
        other => other?,
    }
    let (l, s) = (open_dir(live, name)?, open_dir(staged, name)?);
    let mut n = 1;
    for child in names(&l)? {
        n += link_tree(&l, &s, &child)?;
    }
    set_times(&s, &st)?;
    Ok(n)
}

/// Creates directory `name` in `dir` with the owner and mode of `like`.
fn make_like(dir: &OwnedFd, name: &CStr, like: &libc::stat) -> io::Result<()> {
    // SAFETY: a valid descriptor and name.
    if unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o700) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = open_dir(dir, name)?;
    meta_from(&fd, like)
}

/// Gives open directory `fd` the owner, mode and time of `like`.
fn meta_from(fd: &OwnedFd, like: &libc::stat) -> io::Result<()> {
    // SAFETY: a valid descriptor.
    unsafe {
        if libc::fchown(fd.as_raw_fd(), like.st_uid, like.st_gid) < 0
            || libc::fchmod(fd.as_raw_fd(), like.st_mode & 0o7777) < 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    set_times(fd, like)
}

fn set_times(fd: &OwnedFd, like: &libc::stat) -> io::Result<()> {
    let times = [
        libc::timespec {
            tv_sec: like.st_atime,
            tv_nsec: like.st_atime_nsec,
        },
        libc::timespec {
            tv_sec: like.st_mtime,
            tv_nsec: like.st_mtime_nsec,
        },
    ];
    // SAFETY: a valid descriptor and two timespecs.
    if unsafe { libc::futimens(fd.as_raw_fd(), times.as_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Removes the staged directories below `dir` that match nothing and hold nothing that does
/// (staging keeps every directory, in case a match lies below it).
fn prune(dir: &OwnedFd, globs: &Globs, path: &str, rel: &[u8], under: bool) -> io::Result<()> {
    for name in names(dir)? {
        if !is_dir(&stat_at(dir, &name)?) {
            continue;
        }
        let child = join(rel, name.as_bytes());
        let matched = under || globs.matches(path, &child);
        prune(&open_dir(dir, &name)?, globs, path, &child, matched)?;
        if !matched {
            // Only an empty directory goes; one holding matches below stays.
            // SAFETY: a valid descriptor and name.
            unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) };
        }
    }
    Ok(())
}

/// Renames the entries of staged directory `staged` into live directory `live`; a directory
/// that matched (or lies below a match) gets its staged owner, mode and time.
fn merge_dir(
    staged: &OwnedFd,
    live: &OwnedFd,
    globs: &Globs,
    path: &str,
    rel: &[u8],
    under: bool,
) -> io::Result<u64> {
    let mut moved = 0;
    for name in names(staged)? {
        let child = join(rel, name.as_bytes());
        let st = stat_at(staged, &name)?;
        if !is_dir(&st) {
            rename(staged, live, &name)?;
            moved += 1;
            continue;
        }
        let matched = under || globs.matches(path, &child);
        let created = match stat_at(live, &name) {
            Ok(l) if is_dir(&l) => false,
            Ok(_) => {
                // A non-directory where the backup has a directory: the directory replaces it.
                // SAFETY: a valid descriptor and name.
                if unsafe { libc::unlinkat(live.as_raw_fd(), name.as_ptr(), 0) } < 0 {
                    return Err(named(&name, io::Error::last_os_error()));
                }
                make_like(live, &name, &st)?;
                true
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                make_like(live, &name, &st)?;
                true
            }
            Err(e) => return Err(e),
        };
        let (s, l) = (open_dir(staged, &name)?, open_dir(live, &name)?);
        moved += merge_dir(&s, &l, globs, path, &child, matched)?;
        if matched || created {
            meta_from(&l, &st)?;
        }
        // SAFETY: a valid descriptor and name; the directory is empty now.
        unsafe { libc::unlinkat(staged.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) };
        moved += u64::from(matched);
    }
    Ok(moved)
}

fn rename(from: &OwnedFd, to: &OwnedFd, name: &CStr) -> io::Result<()> {
    // SAFETY: valid descriptors and names.
    let r = unsafe {
        libc::renameat(
            from.as_raw_fd(),
            name.as_ptr(),
            to.as_raw_fd(),
            name.as_ptr(),
        )
    };
    if r < 0 {
        return Err(named(name, io::Error::last_os_error()));
    }
    Ok(())
}

fn named(name: &CStr, e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("{}: {e}", String::from_utf8_lossy(name.to_bytes())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn job(root: &std::path::Path, patterns: &[&str]) -> MergeJob {
        MergeJob {
            mount: root.to_str().unwrap().into(),
            paths: vec![MergePath {
                k: 0,
                path: "/srv/media".into(),
                rel: String::new(),
                skip: vec![],
            }],
            patterns: patterns.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn excluded_live_names_are_linked_into_the_staged_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let new = root.join(".dockyard-restore/new-0");
        std::fs::create_dir_all(new.join("docs")).unwrap();
        std::fs::write(new.join("docs/a.txt"), "restored").unwrap();
        std::fs::create_dir_all(root.join("docs")).unwrap();
        std::fs::write(root.join("docs/a.txt"), "live").unwrap();
        std::fs::write(root.join("docs/b.tmp"), "scratch").unwrap();
        std::fs::create_dir_all(root.join("cache/x")).unwrap();
        std::fs::write(root.join("cache/x/blob"), "cached").unwrap();
        std::fs::create_dir_all(root.join("gone")).unwrap();
        std::fs::write(root.join("gone/c.tmp"), "deep").unwrap();
        let n = keep(&job(root, &["*.tmp", "/srv/media/cache"])).unwrap();
        assert_eq!(n, 5, "b.tmp, cache, cache/x, cache/x/blob, gone/c.tmp");
        assert_eq!(
            std::fs::read_to_string(new.join("docs/a.txt")).unwrap(),
            "restored"
        );
        let live = std::fs::metadata(root.join("docs/b.tmp")).unwrap();
        let kept = std::fs::metadata(new.join("docs/b.tmp")).unwrap();
        assert_eq!(live.ino(), kept.ino(), "the same file");
        assert_eq!(
            std::fs::read_to_string(new.join("cache/x/blob")).unwrap(),
            "cached"
        );
        assert_eq!(
            std::fs::read_to_string(new.join("gone/c.tmp")).unwrap(),
            "deep"
        );
    }

    #[test]
    fn merge_moves_only_what_was_staged_and_deletes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let new = root.join(".dockyard-restore/new-0");
        std::fs::create_dir_all(new.join("photos/2024")).unwrap();
        std::fs::create_dir_all(new.join("docs")).unwrap();
        std::fs::write(new.join("photos/2024/a.jpg"), "restored").unwrap();
        std::fs::create_dir_all(root.join("photos")).unwrap();
        std::fs::write(root.join("photos/b.jpg"), "live").unwrap();
        std::fs::write(root.join("keep.txt"), "live").unwrap();
        let moved = merge(&job(root, &["*.jpg"])).unwrap();
        assert_eq!(moved, 1);
        assert_eq!(
            std::fs::read_to_string(root.join("photos/2024/a.jpg")).unwrap(),
            "restored"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("photos/b.jpg")).unwrap(),
            "live"
        );
        assert!(root.join("keep.txt").exists());
        assert!(
            !root.join("docs").exists(),
            "an empty unmatched directory is not made"
        );
        // Run again (after a crash): nothing left to do, nothing undone.
        assert_eq!(merge(&job(root, &["*.jpg"])).unwrap(), 0);
        assert!(root.join("photos/2024/a.jpg").exists());
    }
}
