//! When each scheduled job last fell due and ran, kept on disk so a daemon started after the host
//! was off can tell which runs it missed (`catch_up`).

use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

/// The name of a file of job `job` (its stamp, its lock): the job's name when that is a plain
/// file name, else `x-` and its hex (`edge/web`, names from labels). A plain name never begins
/// `x-` (such a name is hexed too), so no two jobs share a file whatever containers are named.
pub fn file_name(job: &str) -> String {
    let plain = !job.is_empty()
        && !job.starts_with('.')
        && !job.starts_with("x-")
        && job
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if plain {
        job.to_string()
    } else {
        format!("x-{}", hex::encode(job))
    }
}

/// The file holding job `job`'s last run.
fn stamp_path(dir: &Path, job: &str) -> PathBuf {
    dir.join("last-run").join(file_name(job))
}

/// When job `job` last ran, if it ever did here.
pub fn read(dir: &Path, job: &str) -> Option<DateTime<Utc>> {
    let text = std::fs::read_to_string(stamp_path(dir, job)).ok()?;
    DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Records that job `job` ran at `at` (written whole or not at all).
pub fn write(dir: &Path, job: &str, at: DateTime<Utc>) -> std::io::Result<()> {
    let path = stamp_path(dir, job);
    let parent = path.parent().expect("stamp has a directory");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(parent)?;
    let tmp = parent.join(format!(
        ".{}.{}",
        path.file_name().unwrap().to_string_lossy(),
        std::process::id()
    ));
    let mut f = std::fs::File::create(&tmp)?;
    writeln!(f, "{}", at.to_rfc3339())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_whatever_the_job_name() {
        let dir = tempfile::tempdir().unwrap();
        let at = Utc::now();
        for job in ["media", "a/b", "..", "über", "my job", "x-6d79206a6f62"] {
            assert_eq!(read(dir.path(), job), None);
            write(dir.path(), job, at).unwrap();
            assert_eq!(
                read(dir.path(), job).map(|t| t.timestamp()),
                Some(at.timestamp())
            );
        }
        let stamps = std::fs::read_dir(dir.path().join("last-run")).unwrap();
        assert_eq!(stamps.count(), 6, "one file per job");
    }
}
