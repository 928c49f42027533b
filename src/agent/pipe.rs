//! The agent's fast transport on a local engine: a FIFO in a private host directory (below
//! dockyard's state directory, `io/`), bound into the helper at [`IN_HELPER_DIR`], so the archive
//! flows between the agent and dockyard through the kernel instead of the engine's attach stream
//! (which moved ~110 MiB/s on the benchmark machine, slower than zstd), and a copy of the agent
//! binary beside it, so the engine need not copy 28 MB into every helper. Where the engine cannot see the directory (a remote engine,
//! dockyard in a container of its own), the agent finds no FIFO and both sides use the attach
//! stream; the host asks the engine what the helper sees before it starts it, so both sides agree.

use std::ffi::CString;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Where the directory is bound inside the helper.
pub const IN_HELPER_DIR: &str = "/.dockyard-io";
/// The FIFO's path inside the helper.
pub const IN_HELPER: &str = "/.dockyard-io/pipe";
/// The agent binary's path inside the helper, when [`Pipe::place_agent`] put it beside the FIFO.
pub const AGENT_IN_HELPER: &str = "/.dockyard-io/agent";

/// The prefix of the FIFOs' directories in the temp directory.
const DIR_PREFIX: &str = "dockyard-io-";

/// A FIFO in a private host directory (with an `owner` file naming this run); removed with the
/// directory when dropped, or by a later run's [`sweep`] once its owner is gone (a killed run).
pub struct Pipe {
    dir: PathBuf,
}

impl Pipe {
    /// Creates the directory (root only) and the FIFO, if the engine is `local` (on this host:
    /// [`crate::docker::Engine::is_local`]); `None` otherwise or if creating them fails.
    pub fn create(local: bool) -> Option<Pipe> {
        if !local {
            return None;
        }
        // Below dockyard's own state directory, not the shared temp directory: an app that has
        // the host's /tmp mounted must not reach the FIFO or the agent beside it.
        let base = crate::settings::dirs::host_state_dir().join("io");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&base)
            .ok()?;
        sweep(&base);
        let dir = base.join(format!("{DIR_PREFIX}{:016x}", rand::random::<u64>()));
        std::fs::DirBuilder::new().mode(0o700).create(&dir).ok()?;
        let pipe = Pipe { dir };
        std::fs::write(
            pipe.dir.join("owner"),
            crate::owner::Owner::current().to_string(),
        )
        .ok()?;
        let c = CString::new(pipe.path().as_os_str().as_bytes()).ok()?;
        // SAFETY: a valid NUL-terminated path.
        if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
            return None;
        }
        Some(pipe)
    }

    /// Puts a copy of the running binary in the directory, as `agent`, for a helper that sees
    /// the directory to run; whether it is there. A copy (of `/proc/self/exe`: this very
    /// version, even if a package upgrade replaced the file since), never a link to the
    /// installed file, which nothing run in a helper may reach. Not on a file system mounted
    /// `noexec` (the helper could not run it there).
    pub fn place_agent(&self) -> impl FnOnce() -> bool + Send + 'static {
        let dir = self.dir.clone();
        move || place_agent_in(&dir)
    }

    /// The bind mount that shows the directory to the helper.
    pub fn bind(&self) -> String {
        format!("{}:{IN_HELPER_DIR}", self.dir.display())
    }

    /// The FIFO on the host.
    pub fn path(&self) -> PathBuf {
        self.dir.join("pipe")
    }

    /// Unblocks a side of the FIFO still waiting in `open` for a peer that will never come (the
    /// agent ended before opening it): opens the other end without blocking and closes it.
    pub fn release(path: &Path) {
        for flags in [libc::O_WRONLY, libc::O_RDONLY] {
            let _ = std::fs::OpenOptions::new()
                .read(flags == libc::O_RDONLY)
                .write(flags == libc::O_WRONLY)
                .custom_flags(libc::O_NONBLOCK)
                .open(path);
        }
    }
}

/// This process's own copy of its binary, made once, in a directory of its own beside the FIFO
/// directories (with an `owner` file: a later run's [`sweep`] removes it once this process is
/// gone), and hard-linked into each FIFO directory: a chain's restore starts a helper a layer.
static COPY: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

/// [`Pipe::place_agent`]'s work, in directory `dir`.
fn place_agent_in(dir: &Path) -> bool {
    let Ok(c) = CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a zeroed statvfs is a valid out-parameter; the path is NUL-terminated.
    let mut vfs: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statvfs(c.as_ptr(), &mut vfs) } != 0 || vfs.f_flag & libc::ST_NOEXEC != 0 {
        return false;
    }
    let to = dir.join("agent");
    let mut copy = COPY.lock().unwrap_or_else(|p| p.into_inner());
    if copy.is_none() {
        *copy = dir.parent().and_then(own_copy);
    }
    match &*copy {
        Some(made) if std::fs::hard_link(made, &to).is_ok() => true,
        _ => copy_running_binary(&to),
    }
}

/// Removes this process's copy of its binary, once its helpers are gone (on the way out; a
/// killed process's is swept by a later run).
pub fn remove_own_copy() {
    let copy = COPY.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(dir) = copy.as_deref().and_then(Path::parent) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Makes this process's copy of its binary in a new directory below `base`.
fn own_copy(base: &Path) -> Option<PathBuf> {
    let dir = base.join(format!("{DIR_PREFIX}{:016x}", rand::random::<u64>()));
    std::fs::DirBuilder::new().mode(0o700).create(&dir).ok()?;
    std::fs::write(
        dir.join("owner"),
        crate::owner::Owner::current().to_string(),
    )
    .ok()?;
    let to = dir.join("agent");
    copy_running_binary(&to).then_some(to)
}

/// Copies the running binary (`/proc/self/exe`: this very version, even if a package upgrade
/// replaced the file since) to `to`, executable.
fn copy_running_binary(to: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::copy("/proc/self/exe", to).is_ok()
        && std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755)).is_ok()
}

impl Drop for Pipe {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes the FIFO directories in `tmp` that runs now gone left (killed before their clean-up):
/// only real directories of this user, whose `owner` names a process that is gone, or that have
/// none and are over an hour old.
pub fn sweep(tmp: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    for entry in entries.flatten() {
        if !entry
            .file_name()
            .as_bytes()
            .starts_with(DIR_PREFIX.as_bytes())
        {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if !meta.is_dir() || meta.uid() != me {
            continue;
        }
        let gone = match std::fs::read_to_string(entry.path().join("owner")) {
            Ok(text) => crate::owner::Owner::parse(&text)
                .is_some_and(|o| o.liveness(86_400) == crate::owner::Liveness::Gone),
            Err(_) => meta
                .modified()
                .ok()
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|age| age.as_secs() > 3600),
        };
        if gone {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Inside the helper: the FIFO, if the host bound one.
pub fn in_helper() -> Option<&'static Path> {
    let path = Path::new(IN_HELPER);
    std::fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.file_type().is_fifo())
        .map(|_| path)
}

/// Makes the pipe behind `fifo` hold 1 MiB (Linux's default limit for it) instead of 64 KiB: the
/// agent moves 1 MiB at a time, so each side wakes the other 16 times less often. A failure leaves
/// the default.
pub fn widen(fifo: &impl std::os::fd::AsRawFd) {
    // SAFETY: fcntl on a descriptor the caller holds open.
    unsafe { libc::fcntl(fifo.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
}

/// Reads the FIFO on the host, opening it (which waits for the agent) on the first read.
pub struct Reader {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl Reader {
    /// A reader of the FIFO at `path`.
    pub fn new(path: PathBuf) -> Reader {
        Reader { path, file: None }
    }
}

impl Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.file.is_none() {
            let file = std::fs::File::open(&self.path)?;
            widen(&file);
            self.file = Some(file);
        }
        self.file.as_mut().expect("opened above").read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_removes_only_the_directories_of_runs_that_are_gone() {
        let tmp = tempfile::tempdir().unwrap();
        let mut gone = crate::owner::Owner::current();
        gone.start += 1; // the same pid, started at another time: another process
        let make = |name: &str, owner: Option<String>| {
            let d = tmp.path().join(name);
            std::fs::create_dir(&d).unwrap();
            if let Some(o) = owner {
                std::fs::write(d.join("owner"), o).unwrap();
            }
            d
        };
        let dead = make("dockyard-io-dead", Some(gone.to_string()));
        let live = make(
            "dockyard-io-live",
            Some(crate::owner::Owner::current().to_string()),
        );
        let fresh = make("dockyard-io-fresh", None);
        let other = make("not-ours", Some(gone.to_string()));
        sweep(tmp.path());
        assert!(!dead.exists());
        assert!(live.exists() && fresh.exists() && other.exists());
    }
}
