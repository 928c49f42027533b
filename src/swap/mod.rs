//! A restore's work inside the target's volumes, made crash-safe. Each restored mount gets one
//! work directory at its root, `.dockyard-restore` (root, mode 0700), holding the phase of its
//! swap, the staged contents (`new-<k>`) and, during the swap, the old ones (`old-<k>`). What the
//! restore is (which paths, owners, modes, times, nested mounts) lives only in its journal on the
//! host (`ledger`): the app can write its volumes, so nothing read from there decides what a root
//! helper does. The swap itself is `src/shell/restore.sh`; `recover` finishes, undoes or cleans
//! up after the restores the ledger knows of. Backups leave these directories out.

pub mod files;
pub mod journal;
pub mod ledger;
pub mod member;
pub mod recover;

/// The work directory's name at the root of each restored mount.
pub use crate::archive::names::WORK_DIR;

/// Where path `k` is staged, relative to the mount root.
pub fn new_dir(k: usize) -> String {
    format!("{WORK_DIR}/new-{k}")
}

/// The phase file's name, relative to the mount root.
pub const PHASE: &str = ".dockyard-restore/0-phase";

/// The name a single file is staged under, beside its live file.
pub fn staged_file_name(name: &str) -> String {
    format!(".{name}.dockyard-restore")
}
