//! Retention: which backups a policy keeps, as a pure function of the backups' manifest timestamps
//! and tags (never file mtimes), with restic's `forget` semantics:
//!
//! - `keep_last N`: the N newest.
//! - `keep_hourly/daily/weekly/monthly/yearly N`: walking from newest to oldest, the newest backup
//!   of each of the last N hours/days/ISO weeks/months/years that have a backup.
//! - `keep_within D`: every backup less than D older than the newest one.
//! - `keep_tags`: every backup with one of these tags.
//!
//! A backup is kept if any rule keeps it. On top of restic: the newest backup is always kept, and
//! tagged backups (snapshots, safety backups) are kept unless `prune_tagged`.

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
    /// Allow removing tagged backups (otherwise they are always kept).
    pub prune_tagged: bool,
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
    let text = String::deserialize(d)?;
    crate::settings::parse_age(&text)
        .map(|s| Some(s as i64))
        .map_err(serde::de::Error::custom)
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
}

/// The verdict on one backup, with every reason it is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Backup id.
    pub id: String,
    /// Kept or removed.
    pub keep: bool,
    /// Why it is kept (empty when removed).
    pub reasons: Vec<String>,
}

/// Maps a time to its hour/day/week/month/year bucket.
type Bucket = fn(&DateTime<Utc>) -> i64;

/// Decides, for the backups of one container, which to keep. Returns decisions newest first.
pub fn decide(items: &[Item], policy: &Policy) -> Vec<Decision> {
    let mut sorted: Vec<&Item> = items.iter().collect();
    sorted.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| b.id.cmp(&a.id)));
    let newest = sorted.first().map(|i| i.created);
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

    sorted
        .iter()
        .enumerate()
        .map(|(i, item)| {
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
            for t in &item.tags {
                if policy.keep_tags.contains(t) {
                    reasons.push(format!("tag {t}"));
                } else if !policy.prune_tagged {
                    reasons.push(format!("tagged {t} (--prune-tagged to remove)"));
                }
            }
            Decision {
                id: item.id.clone(),
                keep: !reasons.is_empty(),
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
        }
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
        decide(items, p)
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
    fn tagged_backups_are_kept_unless_asked() {
        let mut s = series(3);
        s[0].tags = vec!["pre-upgrade".into()]; // the oldest
        let p = Policy {
            keep_last: Some(1),
            ..Default::default()
        };
        let d = decide(&s, &p);
        let old = d.iter().find(|d| d.id == "0101-00").unwrap();
        assert!(
            old.keep && old.reasons[0].contains("tagged pre-upgrade"),
            "{old:?}"
        );
        let p = Policy {
            prune_tagged: true,
            ..p
        };
        assert!(
            !decide(&s, &p)
                .iter()
                .find(|d| d.id == "0101-00")
                .unwrap()
                .keep
        );
        let p = Policy {
            keep_tags: vec!["pre-upgrade".into()],
            ..p
        };
        let kept_by_tag = decide(&s, &p);
        let old = kept_by_tag.iter().find(|d| d.id == "0101-00").unwrap();
        assert_eq!(old.reasons, vec!["tag pre-upgrade".to_string()]);
    }

    #[test]
    fn order_of_input_does_not_matter_and_removed_have_no_reasons() {
        let mut s = series(5);
        s.reverse();
        let p = Policy {
            keep_last: Some(2),
            ..Default::default()
        };
        let d = decide(&s, &p);
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
        assert_eq!(kept(&s, &p), vec!["c", "b", "a"]);
    }
}
