//! What a restore did, or would do, as values (the JSON documents of docs/json.md); the
//! restore itself prints nothing.

use serde::Serialize;

use crate::archive::listing::Diff;

/// How a `dockyard restore` ended.
#[derive(Debug)]
pub enum Outcome {
    /// The backup is in place.
    Restored(Restored),
    /// `--dry-run`: what would change.
    DryRun(DryRun),
}

/// A finished restore.
#[derive(Debug, Serialize)]
pub struct Restored {
    /// Always `"ok"`.
    pub result: &'static str,
    /// The backup's id.
    pub restored: String,
    /// The target container.
    pub into: String,
    /// The container paths restored.
    pub paths: Vec<String>,
    /// The safety backup taken before the swap, if any.
    pub safety_backup: Option<SafetyBackup>,
    /// Files whose set-id bits were removed.
    pub stripped_setid: Vec<String>,
    /// Entries whose `security.*`/`trusted.*` extended attributes (file capabilities) were
    /// dropped.
    pub dropped_xattrs: Vec<String>,
    /// Entries left out because the target holds them as separate mounts.
    pub skipped: Vec<String>,
    /// Remarks (single-file bind mounts seen after a restart).
    pub notes: Vec<String>,
    /// What an interrupted earlier restore left, and how it was finished or rolled back.
    pub recovered: Vec<String>,
    /// What became of the old contents the swap moved aside: `deleted` (`--wait-cleanup`), being
    /// deleted in the background, or why they are still there.
    pub old_contents: String,
    /// Seconds the containers were stopped (`--stop`).
    pub downtime_seconds: Option<f64>,
}

/// The safety backup a restore took.
#[derive(Debug, Serialize)]
pub struct SafetyBackup {
    /// Its id.
    pub id: String,
    /// Where it is.
    pub destination: String,
    /// The command that puts the old contents back.
    pub undo: String,
    /// Its size in bytes (compressed).
    pub size: u64,
    /// Seconds it took.
    pub seconds: f64,
}

/// What a restore would change (the `restore --dry-run` JSON document).
#[derive(Debug, Serialize)]
pub struct DryRun {
    /// Always true.
    pub dry_run: bool,
    /// The backup's id.
    pub backup: String,
    /// The target container.
    pub into: String,
    /// Per directory path, what would be added, changed and removed, and how many live entries
    /// stay as they are (left out of the backup, or not `--include`d).
    pub paths: Vec<PathDiff>,
    /// Single-file mounts that would be replaced.
    pub files: Vec<String>,
    /// What would happen about the safety backup, in words.
    #[serde(rename = "safety_backup")]
    pub safety: String,
    /// Set-id files in the backup.
    pub setid: Vec<String>,
    /// Device nodes in the backup.
    pub devices: Vec<String>,
    /// Entries in the backup with `security.*`/`trusted.*` extended attributes.
    pub privileged_xattrs: Vec<String>,
    /// Whether set-id bits would be kept.
    #[serde(skip)]
    pub keep_setid: bool,
    /// Whether those extended attributes would be kept.
    #[serde(skip)]
    pub keep_capabilities: bool,
}

/// What a restore would do to one directory path: the first 1,000 names of each kind of change,
/// the exact counts, and the live entries left as they are.
#[derive(Debug, Serialize)]
pub struct PathDiff {
    /// The container path.
    pub path: String,
    /// In the archive, not in the target.
    pub add: Vec<String>,
    /// In both, different.
    pub change: Vec<String>,
    /// In the target, not in the archive.
    pub remove: Vec<String>,
    /// How many to add in all.
    pub add_total: u64,
    /// How many to change in all.
    pub change_total: u64,
    /// How many to remove in all.
    pub remove_total: u64,
    /// Live entries kept as they are (left out of the backup, or not `--include`d).
    pub keep_total: u64,
}

impl PathDiff {
    /// `diff` of `path`, with `kept` live entries left alone.
    pub fn new(path: String, diff: Diff, kept: u64) -> PathDiff {
        let [add_total, change_total, remove_total] = diff.totals;
        PathDiff {
            path,
            add: diff.added,
            change: diff.changed,
            remove: diff.removed,
            add_total,
            change_total,
            remove_total,
            keep_total: kept,
        }
    }
}

/// At most ten names, then how many more.
pub fn shorten<T: AsRef<str>>(names: &[T]) -> String {
    let mut out: Vec<&str> = names.iter().take(10).map(AsRef::as_ref).collect();
    let more = names.len().saturating_sub(10);
    let extra = format!("and {more} more");
    if more > 0 {
        out.push(&extra);
    }
    out.join(", ")
}
