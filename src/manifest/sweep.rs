//! The orphan sweep: archives whose manifest was never written (their run was killed, or the
//! engine went away, between the two commits) are removed once their run is gone, and so are the
//! pending records of runs that are gone. What to remove is decided from one listing ([`plan`]);
//! whether a run is gone, from its pending record by the one owner rule.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::names::Object;
use crate::destination::{get_at_most, DestError, Destination};
use crate::owner::{Liveness, Owner};

/// Manifest-less archives older than this, with no pending record at all (left by dockyard 0.1.0),
/// are removed.
const UNMARKED_ORPHAN_SECS: i64 = 24 * 3600;
/// A pending record's owner on another host is taken as gone after this long.
const FOREIGN_LIMIT_SECS: i64 = 24 * 3600;
/// Pending records are a line of owner text; anything larger is not one.
const RECORD_LIMIT: u64 = 4096;

/// What a sweep removes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Archives without a manifest whose run is gone.
    pub archives: Vec<String>,
    /// Pending records of runs that are gone, whose archive is not there or goes with them.
    pub pending: Vec<String>,
}

/// Decides a sweep from the object names of the top folder and whether the run that wrote backup
/// `id` is gone.
pub fn plan(names: &[String], gone: impl Fn(&str) -> bool) -> Plan {
    let present: HashSet<&str> = names.iter().map(String::as_str).collect();
    let mut out = Plan::default();
    for name in names {
        if let Some((id, _)) = Object::parse(name).filter(|(_, o)| Object::DATA.contains(o)) {
            if !present.contains(Object::Manifest.name(id).as_str()) && gone(id) {
                out.archives.push(name.clone());
            }
        }
    }
    for name in names {
        if let Some((id, Object::Pending)) = Object::parse(name) {
            let unfinished = Object::DATA
                .map(|o| o.name(id))
                .iter()
                .any(|a| present.contains(a.as_str()) && !out.archives.contains(a));
            if gone(id) && !unfinished {
                out.pending.push(name.clone());
            }
        }
    }
    out
}

/// Whether the run of a backup with no pending record at all (dockyard 0.1.0 wrote none) is gone:
/// its id is dated more than a day before `now`.
pub fn unmarked_gone(id: &str, now: DateTime<Utc>) -> bool {
    super::id_time(id).is_some_and(|t| (now - t).num_seconds() > UNMARKED_ORPHAN_SECS)
}

/// Sweeps `dest`'s top folder; returns the archives it removed.
pub(super) async fn sweep(dest: &dyn Destination) -> Result<Vec<String>, DestError> {
    let names: Vec<String> = dest.list("").await?.into_iter().map(|e| e.name).collect();
    // Each pending record names its run; one that cannot be read or parsed names none.
    let mut owners: HashMap<&str, Option<Owner>> = HashMap::new();
    for name in &names {
        if let Some((id, Object::Pending)) = Object::parse(name) {
            let text = get_at_most(dest, name, RECORD_LIMIT)
                .await
                .ok()
                .flatten()
                .unwrap_or_default();
            owners.insert(id, Owner::parse(&String::from_utf8_lossy(&text)));
        }
    }
    let now = Utc::now();
    let decided = plan(&names, |id| match owners.get(id) {
        Some(Some(owner)) => owner.liveness(FOREIGN_LIMIT_SECS) == Liveness::Gone,
        Some(None) => true,
        None => unmarked_gone(id, now),
    });
    for name in &decided.archives {
        dest.delete(name).await?;
        tracing::warn!(dest = %dest.describe(), archive = %name, "removed an archive whose manifest was never written (its run was interrupted)");
    }
    for name in &decided.pending {
        dest.delete(name).await?;
    }
    Ok(decided.archives)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn only_archives_without_a_manifest_whose_run_is_gone_are_removed() {
        let listing = names(&[
            "done.tar.zst",
            "done.json",
            "dead.tar.zst",
            "dead.pending",
            "live.tar.zst",
            "live.pending",
            "old.tar.zst",
            "notes.txt",
            "x.json",
        ]);
        let gone = |id: &str| matches!(id, "dead" | "old" | "done");
        assert_eq!(
            plan(&listing, gone),
            Plan {
                archives: names(&["dead.tar.zst", "old.tar.zst"]),
                pending: names(&["dead.pending"]),
            }
        );
    }

    #[test]
    fn encrypted_archives_are_swept_like_plain_ones() {
        let listing = names(&[
            "done.tar.zst.age",
            "done.json",
            "done.snapshot.json.age",
            "dead.tar.zst.age",
            "dead.snapshot.json.age",
            "dead.pending",
            "live.tar.zst.age",
            "live.snapshot.json.age",
            "live.pending",
            "half.snapshot.json.age",
            "half.pending",
        ]);
        let gone = |id: &str| matches!(id, "dead" | "done" | "half");
        // A sealed snapshot goes with its archive; a run that died with only that written
        // leaves its record until the object is gone.
        assert_eq!(
            plan(&listing, gone),
            Plan {
                archives: names(&[
                    "dead.tar.zst.age",
                    "dead.snapshot.json.age",
                    "half.snapshot.json.age"
                ]),
                pending: names(&["dead.pending", "half.pending"]),
            }
        );
    }

    #[test]
    fn a_pending_record_goes_with_its_run_unless_its_archive_stays() {
        // A record whose archive is already gone (the run died before committing it, or the
        // archive was removed by an earlier sweep that died before the record).
        let listing = names(&["a.pending", "b.pending", "b.tar.zst", "b.json"]);
        assert_eq!(
            plan(&listing, |_| true),
            Plan {
                archives: vec![],
                pending: names(&["a.pending"]),
            }
        );
        // A live run's record and archive stay whatever else is there.
        let listing = names(&["c.pending", "c.tar.zst"]);
        assert_eq!(plan(&listing, |_| false), Plan::default());
    }

    #[test]
    fn an_unmarked_archive_is_gone_a_day_after_its_id_says() {
        let now = Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap();
        assert!(unmarked_gone("web-20261127T115959Z-0001", now));
        assert!(!unmarked_gone("web-20261127T120001Z-0001", now));
        assert!(!unmarked_gone("no-time-in-it", now));
    }
}
