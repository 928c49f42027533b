//! A restore's work inside the target's volumes, made crash-safe. Each restored mount gets one
//! work directory at its root, `.dockyard-restore` (root, mode 0700), holding a journal, a phase,
//! the staged contents (`new-<k>`) and, during the swap, the old ones (`old-<k>`). The swap itself
//! is `src/shell/restore.sh`; `recover` finds the work of an interrupted restore and finishes it
//! (once its swap began) or removes it (before that). Backups leave these directories out.

pub mod journal;
pub mod member;
pub mod recover;

/// The work directory's name at the root of each restored mount.
pub const WORK_DIR: &str = ".dockyard-restore";

/// Where path `k` is staged, relative to the mount root.
pub fn new_dir(k: usize) -> String {
    format!("{WORK_DIR}/new-{k}")
}

/// The journal's name, relative to the mount root.
pub const JOURNAL: &str = ".dockyard-restore/0-journal";
/// The phase file's name, relative to the mount root.
pub const PHASE: &str = ".dockyard-restore/0-phase";

/// The fix-up list of path `k`, relative to the mount root.
pub fn fixups_file(k: usize) -> String {
    format!("{WORK_DIR}/0-fixups-{k}")
}

/// The name a single file is staged under, beside its live file.
pub fn staged_file_name(name: &str) -> String {
    format!(".{name}.dockyard-restore")
}

/// Whether a top-level name in a backed-up path is dockyard's own restore work, never data:
/// today's work directory, and those of dockyard 0.1 (`.dockyard-restore-<n>`, `.dockyard-old-<n>`).
pub fn is_work_name(name: &[u8]) -> bool {
    name == WORK_DIR.as_bytes()
        || name.starts_with(b".dockyard-restore-")
        || name.starts_with(b".dockyard-old-")
}
