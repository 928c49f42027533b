//! The job lock: two runs of one job never overlap, and a killed run never blocks the next.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;

use chrono::Utc;

use crate::error::Failure;
use crate::owner::Owner;

/// A job lock held longer than this is taken over (its holder is taken to be hung).
const LOCK_LIMIT_SECS: i64 = 24 * 3600;

/// An exclusive `flock` on `<dir>/<job>.lock`, held while the job runs. The kernel releases it when
/// the holder dies, so a killed run never blocks the next one; the file names the last holder.
pub struct JobLock {
    file: File,
}

impl JobLock {
    /// Takes the lock of `job` in `dir`, or says who holds it (exit 6).
    pub fn take(dir: &Path, job: &str) -> Result<JobLock, Failure> {
        std::fs::create_dir_all(dir).map_err(|e| {
            Failure::usage(format!(
                "cannot create the lock directory {}: {e}",
                dir.display()
            ))
        })?;
        let path = dir.join(format!("{}.lock", crate::last_run::file_name(job)));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Failure::usage(format!("cannot open the lock {}: {e}", path.display())))?;
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = holder.trim().to_string();
        let owner = holder.strip_prefix("owner ").and_then(Owner::parse);
        if file.try_lock().is_err() {
            // Held by a live process. Normally that is a run in progress; a holder stuck for longer
            // than LOCK_LIMIT_SECS is taken over, so a hung run cannot block cron for weeks.
            let since = owner.as_ref().map(|o| o.since).or_else(|| {
                holder
                    .split_whitespace()
                    .nth(3)
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.timestamp())
            });
            match since.map(|t| Utc::now().timestamp() - t) {
                Some(age) if age > LOCK_LIMIT_SECS => {
                    tracing::warn!(job, holder = %holder, "the lock has been held for over {} hours: taking it over", LOCK_LIMIT_SECS / 3600);
                }
                _ => {
                    let who = match &owner {
                        Some(o) => o.describe(),
                        None if holder.is_empty() => "holder unknown".to_string(),
                        None => holder.clone(),
                    };
                    return Err(Failure::busy(format!(
                        "job {job:?} is already running ({who}); lock {}",
                        path.display()
                    )));
                }
            }
        } else if let Some(o) = &owner {
            tracing::warn!(job, previous = %o, "taking over the lock of a run that is gone");
        } else if !holder.is_empty() {
            tracing::warn!(job, previous = %holder, "taking over the lock of a run that is gone");
        }
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = writeln!(file, "owner {}", Owner::current());
        Ok(JobLock { file })
    }
}

impl Drop for JobLock {
    /// A clean end empties the file, so a non-empty one names a run that did not end cleanly.
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
    }
}
