//! The swap of a restore, done by the agent through directory descriptors (`restore.sh` does the
//! same where the agent cannot run): each path's old contents moved aside into `old-<k>`, the
//! staged ones in from `new-<k>`, the path's owner, mode and time set; or, to give a restore up,
//! the old contents put back. Every directory is opened once, component by component with
//! `O_NOFOLLOW`, and every move is a `renameat` between two open directories, so an app that
//! swaps a directory for a symlink meanwhile moves only its own files around: nothing is
//! reached through a path it could redirect. The phase file is written with `O_EXCL`, so a FIFO
//! planted there fails the step instead of blocking it.

use std::ffi::{CStr, CString};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use serde::{Deserialize, Serialize};

use super::remove::{open_dir, stat_at, Dir};
use crate::archive::names::{LOG_STATE, WORK_DIR};
use crate::swap::journal::{MountWork, Phase};

/// What `agent swap` is asked to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwapJob {
    /// `commit` (finish every swap from its phase on) or `rollback` (put the old contents back).
    pub mode: String,
    /// Each mount, with the phase its work dir recorded when dockyard read it.
    pub mounts: Vec<(MountWork, String)>,
}

/// Entries moved between two fault-point checks (as the script's batches).
const BATCH: usize = 200;

/// Runs the job, mount after mount; prints a `PHASE <root> <phase>` line at each step.
pub fn run(job: &SwapJob) -> io::Result<()> {
    for (mount, phase) in &job.mounts {
        let mut m = Mount::open(mount)?;
        match job.mode.as_str() {
            "commit" => m.commit(phase)?,
            "rollback" => m.rollback(phase)?,
            other => return Err(io::Error::other(format!("unknown swap mode {other:?}"))),
        }
    }
    Ok(())
}

struct Mount<'a> {
    work: &'a MountWork,
    root: OwnedFd,
    w: OwnedFd,
}

fn c(name: &[u8]) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::other("NUL in a name"))
}

fn fail(root: &str, what: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{root}: {what}"))
}

impl<'a> Mount<'a> {
    /// Opens the mount root and its work dir, which must be dockyard's own: a directory of
    /// root's with mode 0700.
    fn open(work: &'a MountWork) -> io::Result<Mount<'a>> {
        let root = super::extract::open_root(&work.root)?;
        let name = c(WORK_DIR.as_bytes())?;
        let st = stat_at(&root, &name).map_err(|e| fail(&work.root, format!("{WORK_DIR}: {e}")))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFDIR
            || st.st_uid != 0
            || st.st_mode & 0o7777 != 0o700
        {
            return Err(fail(
                &work.root,
                format!(
                    "{WORK_DIR} is not dockyard's work directory (uid {}, mode {:o}); refusing to touch it",
                    st.st_uid,
                    st.st_mode & 0o7777
                ),
            ));
        }
        let w = open_dir(&root, &name)?;
        Ok(Mount { work, root, w })
    }

    fn set_phase(&self, phase: &str) -> io::Result<()> {
        let tmp = c(b"0-phase.tmp")?;
        // SAFETY: a valid descriptor and name; a missing file is fine.
        unsafe { libc::unlinkat(self.w.as_raw_fd(), tmp.as_ptr(), 0) };
        // SAFETY: a valid descriptor and name.
        let fd = unsafe {
            libc::openat(
                self.w.as_raw_fd(),
                tmp.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600,
            )
        };
        if fd < 0 {
            return Err(fail(
                &self.work.root,
                format!(
                    "cannot record phase {phase}: {}",
                    io::Error::last_os_error()
                ),
            ));
        }
        // SAFETY: fd was just opened and is owned here.
        let mut f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        f.write_all(format!("{phase}\n").as_bytes())?;
        drop(f);
        rename(&self.w, &tmp, &self.w, &c(b"0-phase")?)?;
        println!("PHASE {} {phase}", self.work.root);
        Ok(())
    }

    /// Path `rel`'s directory below the mount root, created if missing, reached through no
    /// symlink.
    fn target(&self, rel: &[u8], create: bool) -> io::Result<OwnedFd> {
        let mut cur = self.root.try_clone()?;
        for part in rel.split(|&b| b == b'/').filter(|p| !p.is_empty()) {
            let name = c(part)?;
            cur = match open_dir(&cur, &name) {
                Ok(fd) => fd,
                Err(e) if create && e.raw_os_error() == Some(libc::ENOENT) => {
                    // SAFETY: a valid descriptor and name.
                    unsafe { libc::mkdirat(cur.as_raw_fd(), name.as_ptr(), 0o755) };
                    open_dir(&cur, &name)?
                }
                Err(e) => {
                    return Err(fail(
                        &self.work.root,
                        format!(
                            "{} is not a directory reached without a symlink ({e}); refusing to restore through it",
                            String::from_utf8_lossy(rel)
                        ),
                    ))
                }
            };
        }
        Ok(cur)
    }

    fn sub(&self, name: &str, create: bool) -> io::Result<Option<OwnedFd>> {
        let n = c(name.as_bytes())?;
        if create {
            // SAFETY: a valid descriptor and name.
            unsafe { libc::mkdirat(self.w.as_raw_fd(), n.as_ptr(), 0o700) };
        }
        match open_dir(&self.w, &n) {
            Ok(fd) => Ok(Some(fd)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Names to leave in place on the live side of path `k`: the work dir (at the mount root),
    /// the log state, and nested mount points.
    fn stays(&self, k: usize, rel_empty: bool, name: &[u8]) -> bool {
        (rel_empty && name == WORK_DIR.as_bytes())
            || name == LOG_STATE.as_bytes()
            || self
                .work
                .skips
                .iter()
                .any(|(sk, n)| *sk == k && n.as_slice() == name)
    }

    /// Moves every entry of `from` into `to`, leaving what `keep` says in place.
    fn move_all(
        &self,
        from: &OwnedFd,
        to: &OwnedFd,
        keep: &dyn Fn(&[u8]) -> bool,
    ) -> io::Result<()> {
        let mut dir = Dir::open(from, c".")?;
        let mut names = Vec::new();
        while let Some((name, _)) = dir.next_entry()? {
            if !keep(name.as_bytes()) {
                names.push(name);
            }
        }
        for (i, name) in names.iter().enumerate() {
            rename(from, name, to, name)?;
            if (i + 1) % BATCH == 0 && super::super::fault::in_helper("swap-batch") {
                return Err(io::Error::other("stopped at fault point swap-batch"));
            }
        }
        Ok(())
    }

    fn fixups(&self) -> io::Result<()> {
        for (k, secs, rel) in &self.work.fixups {
            let Some(new) = self.sub(&format!("new-{k}"), false)? else {
                continue;
            };
            let parts: Vec<&[u8]> = rel.split(|&b| b == b'/').collect();
            let (name, parents) = parts.split_last().expect("a name");
            let mut dir = new;
            for p in parents {
                dir = open_dir(&dir, &c(p)?)?;
            }
            let times = [
                libc::timespec {
                    tv_sec: 0,
                    tv_nsec: libc::UTIME_OMIT,
                },
                libc::timespec {
                    tv_sec: *secs,
                    tv_nsec: 0,
                },
            ];
            let n = c(name)?;
            // SAFETY: a valid descriptor, name and two timespecs.
            let r = unsafe {
                libc::utimensat(
                    dir.as_raw_fd(),
                    n.as_ptr(),
                    times.as_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            };
            if r < 0 {
                return Err(fail(
                    &self.work.root,
                    format!("cannot set the time of {}", String::from_utf8_lossy(rel)),
                ));
            }
        }
        Ok(())
    }

    fn commit(&mut self, phase: &str) -> io::Result<()> {
        let p = Phase::parse(phase)
            .ok_or_else(|| fail(&self.work.root, format!("unknown phase {phase:?}")))?;
        let mut resumed = phase.to_string();
        match p {
            Phase::Swapped | Phase::RolledBack => return Ok(()),
            Phase::Staging => {
                self.fixups()?;
                resumed = "ready".into();
            }
            Phase::Swapping(_) => {}
        }
        if super::super::fault::in_helper("swap-begin") {
            return Err(io::Error::other("stopped at fault point swap-begin"));
        }
        for path in &self.work.paths {
            let k = path.k;
            let here = [format!("aside {k}"), format!("in {k}"), format!("meta {k}")];
            if resumed != "ready" && !here.contains(&resumed) {
                continue; // done before the interruption
            }
            let target = self.target(&path.rel, true)?;
            let rel_empty = path.rel.is_empty();
            if resumed == "ready" || resumed == here[0] {
                self.set_phase(&here[0])?;
                let old = self.sub(&format!("old-{k}"), true)?.expect("made");
                self.move_all(&target, &old, &|n| self.stays(k, rel_empty, n))?;
                resumed = here[1].clone();
            }
            if resumed == here[1] {
                self.set_phase(&here[1])?;
                if super::super::fault::in_helper("swap-in") {
                    return Err(io::Error::other("stopped at fault point swap-in"));
                }
                let new = self.sub(&format!("new-{k}"), false)?.ok_or_else(|| {
                    fail(&self.work.root, format!("{WORK_DIR}/new-{k} is missing"))
                })?;
                self.move_all(&new, &target, &|_| false)?;
            }
            self.set_phase(&here[2])?;
            let m = path.root;
            // SAFETY: a valid descriptor.
            let ok = unsafe {
                libc::fchown(target.as_raw_fd(), m.uid as u32, m.gid as u32) == 0
                    && libc::fchmod(target.as_raw_fd(), m.mode & 0o7777) == 0
            };
            let times = [
                libc::timespec {
                    tv_sec: 0,
                    tv_nsec: libc::UTIME_OMIT,
                },
                libc::timespec {
                    tv_sec: m.mtime,
                    tv_nsec: 0,
                },
            ];
            // SAFETY: a valid descriptor and two timespecs.
            if !ok || unsafe { libc::futimens(target.as_raw_fd(), times.as_ptr()) } < 0 {
                return Err(fail(
                    &self.work.root,
                    format!(
                        "cannot set the owner, mode or time of {}: {}",
                        String::from_utf8_lossy(&path.rel),
                        io::Error::last_os_error()
                    ),
                ));
            }
            resumed = "ready".into();
        }
        self.set_phase("swapped")?;
        if super::super::fault::in_helper("swap-swapped") {
            return Err(io::Error::other("stopped at fault point swap-swapped"));
        }
        Ok(())
    }

    fn rollback(&mut self, phase: &str) -> io::Result<()> {
        if super::super::fault::in_helper("rollback-begin") {
            return Err(io::Error::other("stopped at fault point rollback-begin"));
        }
        match Phase::parse(phase) {
            Some(Phase::Staging | Phase::RolledBack) => return Ok(()),
            Some(_) => {}
            None => return Err(fail(&self.work.root, format!("unknown phase {phase:?}"))),
        }
        let mut p = phase.to_string();
        for path in self.work.paths.iter().rev() {
            let k = path.k;
            let Some(old) = self.sub(&format!("old-{k}"), false)? else {
                continue; // never moved aside
            };
            let target = self.target(&path.rel, false)?;
            let rel_empty = path.rel.is_empty();
            // Cut short while moving aside, the path holds only old entries: nothing of the
            // restore to move out of the way first.
            if p != format!("aside {k}") && p != format!("undo {k}") {
                let back = self.sub(&format!("back-{k}"), true)?.expect("made");
                self.move_all(&target, &back, &|n| self.stays(k, rel_empty, n))?;
                p = format!("undo {k}");
                self.set_phase(&p)?;
            }
            self.move_all(&old, &target, &|_| false)?;
            drop(old);
            let n = c(format!("old-{k}").as_bytes())?;
            // SAFETY: a valid descriptor and name; the directory is empty now.
            unsafe { libc::unlinkat(self.w.as_raw_fd(), n.as_ptr(), libc::AT_REMOVEDIR) };
        }
        self.set_phase("rolledback")
    }
}

fn rename(from: &OwnedFd, a: &CStr, to: &OwnedFd, b: &CStr) -> io::Result<()> {
    // SAFETY: valid descriptors and names.
    if unsafe { libc::renameat(from.as_raw_fd(), a.as_ptr(), to.as_raw_fd(), b.as_ptr()) } < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("{}: {e}", String::from_utf8_lossy(a.to_bytes())),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::stage::RootMeta;
    use crate::swap::journal::PathRecord;
    use std::os::unix::fs::PermissionsExt;

    fn staged(root: &std::path::Path) -> MountWork {
        std::fs::create_dir_all(root.join("old-a")).unwrap();
        std::fs::write(root.join("old-a/x"), "old").unwrap();
        std::fs::write(root.join("gone"), "old").unwrap();
        std::fs::create_dir_all(root.join(".dockyard")).unwrap();
        let w = root.join(WORK_DIR);
        std::fs::create_dir_all(w.join("new-0/new-a")).unwrap();
        std::fs::set_permissions(&w, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(w.join("new-0/new-a/y"), "new").unwrap();
        MountWork {
            volume: String::new(),
            root: root.to_str().unwrap().into(),
            paths: vec![PathRecord {
                k: 0,
                rel: vec![],
                root: RootMeta {
                    mode: 0o750,
                    uid: 0,
                    gid: 0,
                    mtime: 1_000_000_000,
                },
            }],
            skips: vec![],
            fixups: vec![],
        }
    }

    fn names(dir: &std::path::Path) -> Vec<String> {
        let mut n: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        n.sort();
        n
    }

    #[test]
    fn commit_swaps_and_rollback_puts_back() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("m");
        let work = staged(&root);
        let job = SwapJob {
            mode: "commit".into(),
            mounts: vec![(work.clone(), "staging".into())],
        };
        run(&job).unwrap();
        assert_eq!(names(&root), [".dockyard", ".dockyard-restore", "new-a"]);
        let meta = std::fs::metadata(&root).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o750);
        // Given up after all: the old contents come back, the log state never moved.
        let job = SwapJob {
            mode: "rollback".into(),
            mounts: vec![(work, "swapped".into())],
        };
        run(&job).unwrap();
        assert_eq!(
            names(&root),
            [".dockyard", ".dockyard-restore", "gone", "old-a"]
        );
    }

    #[test]
    fn a_path_swapped_for_a_symlink_is_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("m");
        let mut work = staged(&root);
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("keep"), "x").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("sub")).unwrap();
        work.paths[0].rel = b"sub".to_vec();
        let job = SwapJob {
            mode: "commit".into(),
            mounts: vec![(work, "staging".into())],
        };
        let err = run(&job).unwrap_err().to_string();
        assert!(err.contains("without a symlink"), "{err}");
        assert_eq!(names(&outside), ["keep"]);
    }
}
