//! Locks: one per container, so a restore never runs beside a backup, a log run or another
//! restore of the same container. Backups and log runs share the lock; a restore, and the
//! recovery of an interrupted one, holds it alone. On this host it is an `flock`, so the kernel
//! drops it when its holder dies and a killed run never blocks the next one; on the engine it is
//! a lease (`lease.rs`) that dockyards in other containers and on other hosts see too.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::docker::{ContainerInfo, Engine};
use crate::error::Failure;
use crate::lease::{Lease, Subject};
use crate::owner::Owner;

/// How a container's lock is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// With other backups and log runs.
    Shared,
    /// Alone (restores, and finishing an interrupted one).
    Exclusive,
}

/// A held lock on one container; released when dropped.
#[derive(Debug)]
pub struct ContainerLock {
    file: File,
    path: PathBuf,
    name: String,
    access: Access,
    /// The leases on the engine (the container, and each of its volumes), when taken there too.
    leases: Vec<Lease>,
}

impl ContainerLock {
    /// Takes the lock of container `name` (engine id `id`) for `what` (e.g. "restore"), or fails
    /// with exit code 6 naming the container and the lock.
    pub fn take(
        dir: &Path,
        id: &str,
        name: &str,
        what: &str,
        access: Access,
    ) -> Result<ContainerLock, Failure> {
        let dir = dir.join("containers");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| {
                Failure::usage(format!(
                    "cannot create the lock directory {}: {e} (set DOCKYARD_LOCK_DIR to a writable one)",
                    dir.display()
                ))
            })?;
        let path = dir.join(format!("{id}.lock"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| Failure::usage(format!("cannot open the lock {}: {e}", path.display())))?;
        let mut lock = ContainerLock {
            file,
            path,
            name: name.to_string(),
            access,
            leases: Vec::new(),
        };
        lock.acquire(access, what)?;
        Ok(lock)
    }

    /// Takes the lock of `target` here, then its lease on `engine`, or fails with exit code 6
    /// naming the holder.
    pub async fn take_on(
        engine: &Engine,
        dir: &Path,
        target: &ContainerInfo,
        what: &str,
        access: Access,
    ) -> anyhow::Result<ContainerLock> {
        let mut lock = Self::take(dir, &target.id, &target.name, what, access)?;
        let exclusive = access == Access::Exclusive;
        let mut subjects = vec![Subject::container(target)];
        subjects.extend(Subject::mounts(target));
        for subject in subjects {
            lock.leases
                .push(Lease::take(engine, target, subject, what, exclusive).await?);
        }
        Ok(lock)
    }

    /// Turns a shared lock into an exclusive one (to finish an interrupted restore found by a
    /// backup), or fails if another run shares it.
    pub async fn upgrade(&mut self, what: &str) -> anyhow::Result<()> {
        if self.access == Access::Exclusive {
            return Ok(());
        }
        // flock(2) converts by dropping the shared lock first: take it back if the upgrade fails.
        if let Err(e) = self.acquire(Access::Exclusive, what) {
            let _ = self.file.try_lock_shared();
            return Err(e.into());
        }
        self.access = Access::Exclusive;
        for i in 0..self.leases.len() {
            if let Err(e) = self.leases[i].upgrade(what).await {
                self.downgrade().await;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Shares the lock again after [`ContainerLock::upgrade`].
    pub async fn downgrade(&mut self) {
        for lease in &mut self.leases {
            lease.downgrade().await;
        }
        if self.access == Access::Exclusive && self.file.try_lock_shared().is_ok() {
            self.access = Access::Shared;
        }
    }

    fn acquire(&mut self, access: Access, what: &str) -> Result<(), Failure> {
        let taken = match access {
            Access::Shared => self.file.try_lock_shared(),
            Access::Exclusive => self.file.try_lock(),
        };
        if taken.is_err() {
            let mut holder = String::new();
            let _ = self.file.rewind();
            let _ = self.file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(Failure::busy(format!(
                "container {:?} is busy: another dockyard run is using it ({}), so this {what} would interfere; wait for it and run again (lock {})",
                self.name,
                if holder.is_empty() { "a backup or log run" } else { holder },
                self.path.display()
            )));
        }
        if access == Access::Exclusive {
            let _ = self.file.set_len(0);
            let _ = self.file.rewind();
            let _ = writeln!(self.file, "{what} by {}", Owner::current().describe());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_holders_coexist_and_exclude_an_exclusive_one() {
        let dir = tempfile::tempdir().unwrap();
        let a = ContainerLock::take(dir.path(), "c1", "web", "backup", Access::Shared).unwrap();
        let b = ContainerLock::take(dir.path(), "c1", "web", "logs", Access::Shared).unwrap();
        let err = ContainerLock::take(dir.path(), "c1", "web", "restore", Access::Exclusive)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"web\" is busy") && err.contains("restore"),
            "{err}"
        );
        drop((a, b));
        let mut r =
            ContainerLock::take(dir.path(), "c1", "web", "restore", Access::Exclusive).unwrap();
        r.access = Access::Shared;
        r.acquire(Access::Exclusive, "restore").unwrap();
        let err = ContainerLock::take(dir.path(), "c1", "web", "backup", Access::Shared)
            .unwrap_err()
            .to_string();
        assert!(err.contains("restore by"), "{err}");
        // Another container is not affected.
        ContainerLock::take(dir.path(), "c2", "db", "backup", Access::Shared).unwrap();
    }

    #[test]
    fn a_shared_holder_can_upgrade_only_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = ContainerLock::take(dir.path(), "c", "web", "backup", Access::Shared).unwrap();
        let b = ContainerLock::take(dir.path(), "c", "web", "backup", Access::Shared).unwrap();
        assert!(a.acquire(Access::Exclusive, "recovery").is_err());
        let _ = a.file.try_lock_shared();
        // The failed upgrade kept the shared lock.
        assert!(ContainerLock::take(dir.path(), "c", "web", "restore", Access::Exclusive).is_err());
        drop(b);
        a.acquire(Access::Exclusive, "recovery").unwrap();
    }
}
