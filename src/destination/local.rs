//! A directory on this host: objects are written to a locked temp file, fsynced, then renamed.
//!
//! The temp file holds an exclusive `flock` for as long as its writer lives, so a later run can tell a
//! temp file of a killed run (lock free: remove it) from one a concurrent run is still writing.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use std::io::Write;

use super::{DestError, Destination, Entry, ObjectReader, Upload};

const TEMP_SUFFIX: &str = ".partial";
/// Written bytes after which the kernel is asked to start writing them back, so the final fsync
/// waits only for the tail instead of the whole archive.
const WRITEBACK_STEP: u64 = 8 << 20;

/// A local directory destination.
pub struct LocalDir {
    root: PathBuf,
}

impl LocalDir {
    /// A destination rooted at `root` (created on [`Destination::prepare`]).
    pub fn new(root: PathBuf) -> Self {
        LocalDir { root }
    }

    fn io(&self, action: impl Into<String>) -> impl FnOnce(std::io::Error) -> DestError + '_ {
        let action = action.into();
        move |error| DestError::Io {
            dest: self.describe(),
            action,
            error,
        }
    }

    fn object_path(&self, name: &str) -> Result<PathBuf, DestError> {
        super::check_name(self, name)?;
        Ok(self.root.join(name))
    }
}

#[async_trait]
impl Destination for LocalDir {
    fn describe(&self) -> String {
        format!("local directory {}", self.root.display())
    }

    async fn prepare(&self) -> Result<(), DestError> {
        // 0700 whatever the umask: backups hold the volumes' data, owners and modes.
        private_dirs(&self.root).map_err(self.io("create the directory"))?;
        let meta = tokio::fs::metadata(&self.root)
            .await
            .map_err(self.io("inspect the directory"))?;
        if !meta.is_dir() {
            return Err(DestError::Unusable {
                dest: self.describe(),
                message: "exists but is not a directory".into(),
            });
        }
        // A random name, created exclusively and never through a symlink: whoever else can write
        // the directory cannot make this probe truncate a file elsewhere.
        let nonce: u64 = rand::random();
        let probe = self.root.join(format!(".dockyard-probe-{nonce:016x}"));
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&probe)
            .map_err(self.io("write into the directory (is it writable?)"))?;
        let _ = std::fs::remove_file(&probe);
        Ok(())
    }

    async fn put(&self, name: &str) -> Result<Box<dyn Upload>, DestError> {
        let final_path = self.object_path(name)?;
        let (parent, file) = super::split_name(name);
        let dir = self.root.join(parent);
        if !parent.is_empty() {
            private_dirs(&dir).map_err(self.io(format!("create {}", dir.display())))?;
        }
        let nonce: u32 = rand::random();
        let temp = dir.join(format!(
            ".{file}.{}-{nonce:08x}{TEMP_SUFFIX}",
            std::process::id()
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(self.io(format!("create {}", temp.display())))?;
        file.try_lock().map_err(|e| DestError::Io {
            dest: self.describe(),
            action: format!("lock {}", temp.display()),
            error: std::io::Error::other(e.to_string()),
        })?;
        Ok(Box::new(LocalUpload {
            dest: self.describe(),
            file: Some(file),
            temp,
            final_path,
            size: 0,
            writeback_from: 0,
        }))
    }

    async fn get(&self, name: &str) -> Result<ObjectReader, DestError> {
        let path = self.object_path(name)?;
        // Never through a symlink: someone who can write the directory must not make dockyard
        // read (and restore) a file they cannot read themselves.
        let opened = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path);
        match opened {
            Ok(f) => Ok(Box::new(tokio::fs::File::from_std(f))),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Err(DestError::Unusable {
                dest: self.describe(),
                message: format!("{name} is a symlink; dockyard reads only regular files here"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(DestError::NotFound {
                dest: self.describe(),
                name: name.to_string(),
            }),
            Err(e) => Err(self.io(format!("open {name}"))(e)),
        }
    }

    async fn exists(&self) -> Result<bool, DestError> {
        match tokio::fs::metadata(&self.root).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.io("look at the directory")(e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Entry>, DestError> {
        super::check_prefix(self, prefix)?;
        let action = match super::deep_folder(prefix) {
            Some(_) => "list the directory tree",
            None => "list the directory",
        };
        let (root, prefix) = (self.root.clone(), prefix.to_string());
        tokio::task::spawn_blocking(move || list_files(&root, &prefix))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r)
            .map_err(self.io(action))
    }

    async fn delete(&self, name: &str) -> Result<(), DestError> {
        let path = self.object_path(name)?;
        match tokio::fs::remove_file(&path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(self.io(format!("delete {name}"))(e))
            }
            _ => Ok(()),
        }
    }

    async fn remove_stale(&self) -> Result<Vec<String>, DestError> {
        let root = self.root.clone();
        let found = tokio::task::spawn_blocking(move || remove_unlocked_temps(&root))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r)
            .map_err(self.io("clean up temp files of earlier runs"))?;
        Ok(found)
    }
}

/// Creates `dir` and any missing parents with mode 0700 (whatever the umask).
fn private_dirs(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// The regular files a listing of `prefix` shows ([`Destination::list`]), with their sizes: in
/// `root` itself, or at any depth below the folder `prefix` reaches into. Hidden names are
/// neither listed nor descended into; a file gone between reading its directory and looking at
/// it is left out.
fn list_files(root: &Path, prefix: &str) -> std::io::Result<Vec<Entry>> {
    let deep = super::deep_folder(prefix);
    let mut out = Vec::new();
    let mut stack = vec![deep.unwrap_or("").to_string()];
    while let Some(rel) = stack.pop() {
        let dir = match std::fs::read_dir(root.join(&rel)) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in dir {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let full = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let kind = entry.file_type()?;
            if kind.is_dir() && deep.is_some() && full.starts_with(prefix) {
                stack.push(full);
            } else if kind.is_file() && full.starts_with(prefix) {
                match entry.metadata() {
                    Ok(meta) => out.push(Entry {
                        name: full,
                        size: meta.len(),
                    }),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(out)
}

/// Removes temp files whose writer is gone: their lock is free.
fn remove_unlocked_temps(root: &Path) -> std::io::Result<Vec<String>> {
    let mut removed = Vec::new();
    let dir = match std::fs::read_dir(root) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(e),
    };
    for entry in dir {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with('.') && name.ends_with(TEMP_SUFFIX)) {
            continue;
        }
        let Ok(file) = File::open(entry.path()) else {
            continue;
        };
        if file.try_lock().is_ok() {
            std::fs::remove_file(entry.path())?;
            tracing::warn!(file = %entry.path().display(), "removed temp file left by a run that is gone");
            removed.push(name);
        }
    }
    Ok(removed)
}

struct LocalUpload {
    dest: String,
    file: Option<File>,
    temp: PathBuf,
    final_path: PathBuf,
    size: u64,
    /// Start of the range not yet handed to writeback.
    writeback_from: u64,
}

impl LocalUpload {
    fn err(&self, action: &str, error: std::io::Error) -> DestError {
        DestError::Io {
            dest: self.dest.clone(),
            action: format!("{action} {}", self.temp.display()),
            error,
        }
    }
}

#[async_trait]
impl Upload for LocalUpload {
    async fn write(&mut self, chunk: Bytes) -> Result<(), DestError> {
        let file = self.file.as_mut().expect("write after commit");
        if self.size - self.writeback_from >= WRITEBACK_STEP {
            start_writeback(file, self.writeback_from, self.size - self.writeback_from);
            self.writeback_from = self.size;
        }
        // A write into the page cache is short: do it on this worker (telling the runtime to move
        // other tasks away) rather than handing every chunk to another thread.
        match tokio::task::block_in_place(|| file.write_all(&chunk)) {
            Ok(()) => {
                self.size += chunk.len() as u64;
                Ok(())
            }
            Err(e) => Err(self.err("write", e)),
        }
    }

    async fn commit(mut self: Box<Self>) -> Result<u64, DestError> {
        let file = self.file.take().expect("commit twice");
        if let Err(e) = tokio::task::block_in_place(|| file.sync_all()) {
            return Err(self.err("fsync", e));
        }
        drop(file);
        if let Err(e) = tokio::fs::rename(&self.temp, &self.final_path).await {
            return Err(self.err("rename into place", e));
        }
        // Make the rename itself durable.
        if let Some(parent) = self.final_path.parent() {
            if let Ok(dir) = File::open(parent) {
                let _ = dir.sync_all();
            }
        }
        self.temp = PathBuf::new();
        Ok(self.size)
    }

    async fn abort(self: Box<Self>) {
        // Drop removes the temp file.
    }
}

/// Asks the kernel to start writing `len` bytes at `offset` to disk without waiting for it
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`); durability still comes from the fsync at commit.
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: the fd is open for the life of `file`; the call only reads its arguments.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

impl Drop for LocalUpload {
    fn drop(&mut self) {
        if !self.temp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(mut entries: Vec<Entry>) -> Vec<(String, u64)> {
        entries.sort();
        entries.into_iter().map(|e| (e.name, e.size)).collect()
    }

    #[tokio::test]
    async fn lists_regular_files_with_sizes_flat_at_the_top_deep_below() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("logs/web/g/2026")).unwrap();
        std::fs::create_dir_all(root.join("logs/db")).unwrap();
        std::fs::write(root.join("web-1.json"), "12345").unwrap();
        std::fs::write(root.join("web-1.tar.zst"), "").unwrap();
        std::fs::write(root.join(".web-2.tar.zst.1-2.partial"), "x").unwrap();
        std::fs::write(root.join("logs/web/g/2026/a.zst"), "abc").unwrap();
        std::fs::write(root.join("logs/db/b.zst"), "b").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("db-1.json")).unwrap();
        let dest = LocalDir::new(root.to_path_buf());
        assert_eq!(
            names(dest.list("").await.unwrap()),
            [("web-1.json".into(), 5), ("web-1.tar.zst".into(), 0)]
        );
        assert_eq!(
            names(dest.list("web-1.j").await.unwrap()),
            [("web-1.json".into(), 5)]
        );
        assert_eq!(
            names(dest.list("logs/web/").await.unwrap()),
            [("logs/web/g/2026/a.zst".into(), 3)]
        );
        assert_eq!(names(dest.list("logs/").await.unwrap()).len(), 2);
        assert!(dest.list("nothing/").await.unwrap().is_empty());
        let missing = LocalDir::new(root.join("missing"));
        assert!(missing.list("").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn deleting_what_is_not_there_is_no_error() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = LocalDir::new(tmp.path().to_path_buf());
        std::fs::write(tmp.path().join("a.json"), "{}").unwrap();
        dest.delete("a.json").await.unwrap();
        dest.delete("a.json").await.unwrap();
        assert!(!tmp.path().join("a.json").exists());
        assert!(dest.delete("../a.json").await.is_err());
    }
}
