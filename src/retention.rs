//! Retention: which backups a policy keeps, as a pure function of the backups' manifest timestamps
//! and tags (never file mtimes) and of `now`, with restic's `forget` semantics:
//!
//! - `keep_last N`: the N newest.
//! - `keep_hourly/daily/weekly/monthly/yearly N`: walking from newest to oldest, the newest backup
//!   of each of the last N hours/days/ISO weeks/months/years that have a backup.
//! - `keep_within D`: every backup less than D older than the newest one.
//! - `keep_tags`: every backup with one of these tags.
//!
//! A backup is kept if any rule keeps it. On top of restic, and only these are exempt from the
//! rules (pins): the newest backup; snapshots (unless `prune_snapshots`); backups with a
//! `keep_tags` tag; safety backups (`pre-restore`) younger than `keep_safety` — older ones expire.
//! Other tags (`nightly`) change nothing. Backups dated after `now` (a clock jump, a forged
//! manifest) are kept but counted by no rule, so one cannot become the newest and make
//! `keep_within` drop every real backup. Pinned and future backups take no bucket either.

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Deserializer};

/// A retention policy; an empty policy keeps everything. It is also a job's `[retention]` table in
/// the config file, with the same key names (`keep_within = "2d"`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Keep the N newest.
    pub keep_last: Option<u32>,
    /// Keep the newest of each of the last N hours with backups.
    pub keep_hourly: Option<u32>,
    /// Keep the newest of each of the last N days with backups.
    pub keep_daily: Option<u32>,
    /// Keep the newest of each of the last N ISO weeks with backups.
    pub keep_weekly: Option<u32>,
    /// Keep the newest of each of the last N months with backups.
    pub keep_monthly: Option<u32>,
    /// Keep the newest of each of the last N years with backups.
    pub keep_yearly: Option<u32>,
    /// Keep everything within this many seconds of the newest backup.
    #[serde(deserialize_with = "age")]
    pub keep_within: Option<i64>,
    /// Keep every backup with one of these tags.
    pub keep_tags: Vec<String>,
    /// Let the rules remove snapshots too (they are pinned otherwise). `prune_tagged` is the
    /// name dockyard 0.1.0 used.
    #[serde(alias = "prune_tagged")]
    pub prune_snapshots: bool,
    /// Keep safety backups (`pre-restore`) this many seconds; older ones are removed (default
    /// 7 days).
    #[serde(deserialize_with = "age")]
    pub keep_safety: Option<i64>,
}

impl Policy {
    /// Whether the policy says anything at all (an empty one removes nothing).
    pub fn is_empty(&self) -> bool {
        self.keep_last.is_none()
            && self.keep_hourly.is_none()
            && self.keep_daily.is_none()
            && self.keep_weekly.is_none()
            && self.keep_monthly.is_none()
            && self.keep_yearly.is_none()
            && self.keep_within.is_none()
            && self.keep_tags.is_empty()
    }
}

/// Reads an age such as `"2d"` into seconds.
fn age<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let age = crate::values::Age::deserialize(d)?;
    Ok(Some(age.secs() as i64))
}

/// One backup as retention sees it.
#[derive(Debug, Clone)]
pub struct Item {
    /// Backup id.
    pub id: String,
    /// When it was taken (from its manifest).
    pub created: DateTime<Utc>,
    /// Its tags.
    pub tags: Vec<String>,
    /// Whether it is a snapshot (`dockyard snapshot`).
    pub snapshot: bool,
    /// Whether it is a safety backup a restore took.
    pub safety: bool,
}

/// The verdict on one backup, with every reason it is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Backup id.
    pub id: String,
    /// Kept or removed.
    pub keep: bool,
    /// Why it is kept, or why it goes when that is not just "no rule keeps it".
    pub reasons: Vec<String>,
}

/// Maps a time to its hour/day/week/month/year bucket.
type Bucket = fn(&DateTime<Utc>) -> i64;

/// Decides, for the backups of one container, which to keep. Returns decisions newest first.
pub fn decide(items: &[Item], policy: &Policy, now: DateTime<Utc>) -> Vec<Decision> {
    let mut sorted: Vec<&Item> = items.iter().collect();
    sorted.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| b.id.cmp(&a.id)));
    let future =
        |i: &Item| i.created > now + chrono::Duration::seconds(crate::manifest::FUTURE_SKEW_SECS);
    let keep_safety = policy
        .keep_safety
        .unwrap_or(crate::values::defaults::SAFETY_KEEP_SECS);
    // Pinned backups are kept whatever the rules say, and take no part in them.
    let pin = |i: &Item| -> Option<String> {
        if future(i) {
            return Some("dated in the future: kept, but counted by no rule".into());
        }
        if let Some(t) = i.tags.iter().find(|t| policy.keep_tags.contains(t)) {
            return Some(format!("tag {t}"));
        }
        if i.snapshot && !policy.prune_snapshots {
            return Some("snapshot (--prune-snapshots to let the rules remove it)".into());
        }
        None
    };
    let counted: Vec<&Item> = sorted
        .iter()
        .copied()
        .filter(|i| pin(i).is_none() && !i.safety)
        .collect();
    let newest = counted.first().map(|i| i.created);
    let buckets: [(&str, Option<u32>, Bucket); 5] = [
        ("hourly", policy.keep_hourly, |t| {
            t.timestamp().div_euclid(3600)
        }),
        ("daily", policy.keep_daily, |t| {
            t.year() as i64 * 1000 + t.ordinal() as i64
        }),
        ("weekly", policy.keep_weekly, |t| {
            let w = t.iso_week();
            w.year() as i64 * 100 + w.week() as i64
        }),
        ("monthly", policy.keep_monthly, |t| {
            t.year() as i64 * 100 + t.month() as i64
        }),
        ("yearly", policy.keep_yearly, |t| t.year() as i64),
    ];
    let mut left: Vec<Option<u32>> = buckets.iter().map(|b| b.1).collect();
    let mut last_bucket: Vec<Option<i64>> = vec![None; buckets.len()];
    let mut last_left = policy.keep_last;
    let empty = policy.is_empty();

    let mut verdicts: std::collections::HashMap<&str, Vec<String>> = Default::default();
    for (i, item) in counted.iter().enumerate() {
        let mut reasons = Vec::new();
        if empty {
            reasons.push("no policy: everything is kept".to_string());
        }
        if i == 0 {
            reasons.push("newest backup".to_string());
        }
        if let Some(n) = last_left.as_mut() {
            if *n > 0 {
                *n -= 1;
                reasons.push("last".to_string());
            }
        }
        for (k, (name, _, bucket)) in buckets.iter().enumerate() {
            let Some(n) = left[k].as_mut() else { continue };
            let value = bucket(&item.created);
            if *n > 0 && last_bucket[k] != Some(value) {
                *n -= 1;
                last_bucket[k] = Some(value);
                reasons.push(name.to_string());
            }
        }
        if let (Some(within), Some(newest)) = (policy.keep_within, newest) {
            if (newest - item.created).num_seconds() < within {
                reasons.push("within".to_string());
            }
        }
        verdicts.insert(&item.id, reasons);
    }
    sorted
        .iter()
        .map(|item| {
            let (keep, reasons) = if let Some(why) = pin(item) {
                (true, vec![why])
            } else if item.safety {
                let age = (now - item.created).num_seconds();
                if age < keep_safety {
                    (
                        true,
                        vec![format!(
                            "safety backup, kept {} days",
                            keep_safety.div_euclid(86400).max(1)
                        )],
                    )
                } else {
                    (false, vec!["safety backup expired".to_string()])
                }
            } else {
                let r = verdicts.remove(item.id.as_str()).unwrap_or_default();
                (!r.is_empty(), r)
            };
            Decision {
                id: item.id.clone(),
                keep,
                reasons,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, 0, 0).unwrap()
    }

    fn item(id: &str, t: DateTime<Utc>) -> Item {
        Item {
            id: id.into(),
            created: t,
            tags: vec![],
            snapshot: false,
            safety: false,
        }
    }

    /// "Now" in these tables: just after the last backup of a 40-day series.
    fn now() -> DateTime<Utc> {
        at(2026, 2, 9, 20)
    }

    /// Backups every 6 hours from 2026-01-01 00:00 for `days` days, named by their time.
    fn series(days: u32) -> Vec<Item> {
        (0..days * 4)
            .map(|i| {
                let t = at(2026, 1, 1, 0) + chrono::Duration::hours(6 * i as i64);
                item(&t.format("%m%d-%H").to_string(), t)
            })
            .collect()
    }

    fn kept(items: &[Item], p: &Policy) -> Vec<String> {
        decide(items, p, now())
            .into_iter()
            .filter(|d| d.keep)
            .map(|d| d.id)
            .collect()
    }

    #[test]
    fn table() {
        let s = series(40); // 2026-01-01 .. 2026-02-09 18:00
        let cases: Vec<(&str, Policy, Vec<&str>)> = vec![
            (
                "keep-last 3",
                Policy {
                    keep_last: Some(3),
                    ..Default::default()
                },
                vec!["0209-18", "0209-12", "0209-06"],
            ),
            (
                "keep-daily 3: newest of each of the last 3 days",
                Policy {
                    keep_daily: Some(3),
                    ..Default::default()
                },
                vec!["0209-18", "0208-18", "0207-18"],
            ),
            (
                "keep-hourly 2: every backup is its own hour",
                Policy {
                    keep_hourly: Some(2),
                    ..Default::default()
                },
                vec!["0209-18", "0209-12"],
            ),
            (
                "keep-weekly 2 (ISO weeks start Monday; 2026-02-09 is a Monday)",
                Policy {
                    keep_weekly: Some(2),
                    ..Default::default()
                },
                vec!["0209-18", "0208-18"],
            ),
            (
                "keep-monthly 5: only two months have backups",
                Policy {
                    keep_monthly: Some(5),
                    ..Default::default()
                },
                vec!["0209-18", "0131-18"],
            ),
            (
                "keep-yearly 1",
                Policy {
                    keep_yearly: Some(1),
                    ..Default::default()
                },
                vec!["0209-18"],
            ),
            (
                "keep-within 12h of the newest (not of now); exactly 12h older is out",
                Policy {
                    keep_within: Some(12 * 3600),
                    ..Default::default()
                },
                vec!["0209-18", "0209-12"],
            ),
            (
                "rules add up: last 1 + daily 2",
                Policy {
                    keep_last: Some(1),
                    keep_daily: Some(2),
                    ..Default::default()
                },
                vec!["0209-18", "0208-18"],
            ),
            (
                "keep-daily 0 still keeps the newest",
                Policy {
                    keep_daily: Some(0),
                    ..Default::default()
                },
                vec!["0209-18"],
            ),
        ];
        for (name, policy, want) in cases {
            assert_eq!(kept(&s, &policy), want, "{name}");
        }
    }

    #[test]
    fn empty_policy_keeps_everything() {
        let s = series(2);
        assert_eq!(kept(&s, &Policy::default()).len(), 8);
    }

    #[test]
    fn only_pins_are_exempt_not_ordinary_tags() {
        let mut s = series(3);
        for i in &mut s {
            i.tags = vec!["nightly".into()]; // the shipped example config tags every backup
        }
        s[0].snapshot = true; // the oldest
        s[0].tags.push("pre-upgrade".into());
        let p = Policy {
            keep_last: Some(1),
            ..Default::default()
        };
        let d = decide(&s, &p, now());
        assert_eq!(d.iter().filter(|d| d.keep).count(), 2, "{d:?}");
        let old = d.iter().find(|d| d.id == "0101-00").unwrap();
        assert!(
            old.keep && old.reasons[0].starts_with("snapshot"),
            "{old:?}"
        );
        let p = Policy {
            prune_snapshots: true,
            ..p
        };
        assert!(
            !decide(&s, &p, now())
                .iter()
                .find(|d| d.id == "0101-00")
                .unwrap()
                .keep
        );
        let p = Policy {
            keep_tags: vec!["pre-upgrade".into()],
            ..p
        };
        let kept_by_tag = decide(&s, &p, now());
        let old = kept_by_tag.iter().find(|d| d.id == "0101-00").unwrap();
        assert_eq!(old.reasons, vec!["tag pre-upgrade".to_string()]);
    }

    #[test]
    fn safety_backups_are_kept_a_week_then_expire_and_take_no_bucket() {
        let mut s = vec![
            item("nightly-0209", at(2026, 2, 9, 2)),
            item("safety-0209", at(2026, 2, 9, 14)),
            item("safety-0120", at(2026, 1, 20, 14)),
        ];
        s[1].safety = true;
        s[2].safety = true;
        let p = Policy {
            keep_daily: Some(7),
            ..Default::default()
        };
        let d = decide(&s, &p, now());
        let by = |id: &str| d.iter().find(|d| d.id == id).unwrap().clone();
        // The same-day safety backup does not take the nightly's daily slot.
        assert!(by("nightly-0209").keep && by("nightly-0209").reasons.contains(&"daily".into()));
        assert!(by("safety-0209").keep);
        assert_eq!(
            by("safety-0120").reasons,
            vec!["safety backup expired".to_string()]
        );
        assert!(!by("safety-0120").keep);
        let p = Policy {
            keep_safety: Some(30 * 86400),
            ..p
        };
        assert!(decide(&s, &p, now()).iter().all(|d| d.keep));
    }

    #[test]
    fn a_future_dated_backup_anchors_nothing() {
        let mut s = series(5);
        s.push(item("forged-2030", at(2030, 1, 1, 0)));
        let p = Policy {
            keep_within: Some(2 * 86400),
            ..Default::default()
        };
        let d = decide(&s, &p, at(2026, 1, 5, 20));
        let forged = d.iter().find(|d| d.id == "forged-2030").unwrap();
        assert!(
            forged.keep && forged.reasons[0].contains("future"),
            "{forged:?}"
        );
        // keep-within counts from the newest real backup: two days of them survive.
        assert_eq!(d.iter().filter(|d| d.keep).count(), 1 + 8, "{d:?}");
    }

    #[test]
    fn order_of_input_does_not_matter_and_removed_have_no_reasons() {
        let mut s = series(5);
        s.reverse();
        let p = Policy {
            keep_last: Some(2),
            ..Default::default()
        };
        let d = decide(&s, &p, now());
        assert_eq!(d[0].id, "0105-18");
        assert!(d.iter().filter(|d| !d.keep).all(|d| d.reasons.is_empty()));
        assert_eq!(d.iter().filter(|d| d.keep).count(), 2);
    }

    #[test]
    fn restic_daily_skips_days_without_backups() {
        // Backups on days 1, 2 and 10: keep-daily 3 keeps all three (it counts days that have
        // backups, not calendar days).
        let s = vec![
            item("a", at(2026, 3, 1, 1)),
            item("b", at(2026, 3, 2, 1)),
            item("c", at(2026, 3, 10, 1)),
            item("c-early", at(2026, 3, 10, 0)),
        ];
        let p = Policy {
            keep_daily: Some(3),
            ..Default::default()
        };
        let kept: Vec<String> = decide(&s, &p, at(2026, 3, 11, 0))
            .into_iter()
            .filter(|d| d.keep)
            .map(|d| d.id)
            .collect();
        assert_eq!(kept, vec!["c", "b", "a"]);
    }
}
