//! Where restore journals live: on the host, in `<state dir>/restores/<engine>/<container id>/
//! <run>.journal` (directories 0700, files 0600, written to a temp name, synced and renamed).
//! A work directory in a volume that no journal here vouches for is not dockyard's to finish:
//! the app could have made it. Every dockyard on this host sharing the state directory
//! (`DOCKYARD_STATE_DIR`, default /var/lib/dockyard) sees the same journals.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::journal::Journal;

/// Journals larger than this are not dockyard's.
const LIMIT: u64 = 64 << 20;

/// The journals of one engine.
#[derive(Debug, Clone)]
pub struct Ledger {
    dir: PathBuf,
}

/// A journal as found in the ledger.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its file.
    pub path: PathBuf,
    /// What it says (or why it cannot be read).
    pub journal: Result<Journal, String>,
}

impl Ledger {
    /// The ledger of the engine with id `engine` (any text; reduced to a safe file name) under
    /// the state directory `state`.
    pub fn for_engine(state: &Path, engine: &str) -> Ledger {
        Ledger::at(&state.join("restores"), engine)
    }

    /// The ledger of engine `engine` under `base`.
    pub fn at(base: &Path, engine: &str) -> Ledger {
        Ledger {
            dir: base.join(file_name(engine)),
        }
    }

    fn container_dir(&self, container: &str) -> PathBuf {
        self.dir.join(file_name(container))
    }

    fn path_of(&self, j: &Journal) -> PathBuf {
        self.container_dir(&j.container)
            .join(format!("{}.journal", file_name(&j.run)))
    }

    /// Writes (or replaces) `j` durably: when this returns, a crash cannot lose it.
    pub fn write(&self, j: &Journal) -> std::io::Result<()> {
        let dir = self.container_dir(&j.container);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| named(&dir, e))?;
        let path = self.path_of(j);
        let tmp = dir.join(format!(".{}.tmp", file_name(&j.run)));
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(|e| named(&tmp, e))?;
        f.write_all(j.render().as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| named(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| named(&path, e))?;
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| named(&dir, e))
    }

    /// Removes `j`'s journal (done with that restore).
    pub fn remove(&self, j: &Journal) -> std::io::Result<()> {
        match std::fs::remove_file(self.path_of(j)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(named(&self.path_of(j), e)),
            _ => Ok(()),
        }
    }

    /// Every journal of this engine, of whatever container.
    pub fn all(&self) -> Vec<Entry> {
        let Ok(read) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        read.filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .flat_map(|e| {
                let dir = e.path();
                std::fs::read_dir(&dir)
                    .into_iter()
                    .flatten()
                    .filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".journal"))
                    .map(|e| Entry {
                        journal: read_journal(&e.path()),
                        path: e.path(),
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Every journal of container `container` (by engine id), oldest run first.
    pub fn of_container(&self, container: &str) -> Vec<Entry> {
        let dir = self.container_dir(container);
        let Ok(read) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut out: Vec<Entry> = read
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".journal"))
            .map(|e| Entry {
                journal: read_journal(&e.path()).and_then(|j| {
                    if j.container == container {
                        Ok(j)
                    } else {
                        Err(format!("it is of container {}", j.container))
                    }
                }),
                path: e.path(),
            })
            .collect();
        out.sort_by_key(|e| {
            e.journal
                .as_ref()
                .map(|j| j.owner.since)
                .unwrap_or(i64::MAX)
        });
        out
    }
}

fn read_journal(path: &Path) -> Result<Journal, String> {
    use std::io::Read;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| e.to_string())?;
    let meta = f.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() || meta.len() > LIMIT {
        return Err("not a regular file of a journal's size".into());
    }
    let mut text = String::new();
    f.take(LIMIT)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    Journal::parse(&text)
}

/// `text` as a file name: letters, digits, `-`, `_` and `.` kept (no leading dot), anything else
/// hex-encoded.
fn file_name(text: &str) -> String {
    let plain = !text.is_empty()
        && !text.starts_with('.')
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if plain {
        text.to_string()
    } else {
        format!("x-{}", hex::encode(text))
    }
}

fn named(path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("restore journal {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::owner::Owner;
    use crate::swap::journal::{MountWork, State};

    fn journal(container: &str, run: &str) -> Journal {
        Journal {
            run: run.into(),
            owner: Owner::current(),
            backup: "b".into(),
            container: container.into(),
            state: State::Staging,
            attempts: 0,
            include: vec![],
            mounts: vec![MountWork {
                volume: String::new(),
                root: "/srv/media".into(),
                paths: vec![],
                skips: vec![],
                fixups: vec![],
            }],
            files: vec![],
        }
    }

    #[test]
    fn journals_are_kept_per_engine_and_container() {
        let tmp = tempfile::tempdir().unwrap();
        let a = Ledger::at(tmp.path(), "ENGINE:A/B");
        let b = Ledger::at(tmp.path(), "other");
        let mut j = journal("c1", "r1");
        a.write(&j).unwrap();
        a.write(&journal("c2", "r2")).unwrap();
        j.state = State::Committed;
        a.write(&j).unwrap();
        let found = a.of_container("c1");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].journal.as_ref().unwrap().state, State::Committed);
        assert!(b.of_container("c1").is_empty());
        a.remove(&j).unwrap();
        a.remove(&j).unwrap();
        assert!(a.of_container("c1").is_empty());
    }

    #[test]
    fn a_fifo_or_a_journal_of_another_container_is_not_trusted() {
        let tmp = tempfile::tempdir().unwrap();
        let l = Ledger::at(tmp.path(), "e");
        l.write(&journal("c1", "r1")).unwrap();
        let dir = tmp.path().join("e/c1");
        // A journal copied from another container's directory says so.
        std::fs::write(dir.join("r9.journal"), journal("c2", "r9").render()).unwrap();
        let fifo = std::ffi::CString::new(dir.join("r8.journal").to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let found = l.of_container("c1");
        assert_eq!(found.len(), 3);
        assert_eq!(found.iter().filter(|e| e.journal.is_ok()).count(), 1);
    }
}
