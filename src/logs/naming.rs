//! Names: a rotated file is `<name>.<UTC timestamp>` beside the live one (sortable; the rotate
//! script adds `.1`, `.2`, ... in the rare case of a clash), and it ships to the deterministic key
//! `logs/<container>/<name>/<YYYY>/<MM>/<DD>/<rotated>.zst` (`.zst.age` encrypted), so shipping it
//! twice overwrites.

use chrono::{DateTime, NaiveDateTime, Utc};

/// The timestamp format of rotated names: `20261128T023000.123Z`.
const STAMP: &str = "%Y%m%dT%H%M%S%.3fZ";

/// The suffix a rotation at `at` appends to a file name.
pub fn stamp(at: DateTime<Utc>) -> String {
    at.format(STAMP).to_string()
}

/// A rotated file, split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    /// The live file's name, e.g. `access.log`.
    pub base: String,
    /// When it was rotated.
    pub at: DateTime<Utc>,
    /// The rotated file's own name.
    pub name: String,
}

/// Recognises a rotated file name; `None` for anything else (live logs, other files).
pub fn parse_rotated(name: &str) -> Option<Rotated> {
    // <base>.<stamp>[.<n>]; the stamp is 20 characters.
    let mut stem = name;
    if let Some((head, n)) = name.rsplit_once('.') {
        if !n.is_empty() && n.len() < 6 && n.chars().all(|c| c.is_ascii_digit()) {
            stem = head;
        }
    }
    let (base, stamp) = stem.rsplit_once('.').and_then(|(b, _)| {
        // The stamp itself contains a '.', so split 20 characters from the end instead.
        let cut = stem.len().checked_sub(21)?;
        (stem.as_bytes().get(cut) == Some(&b'.') && !b.is_empty())
            .then(|| (&stem[..cut], &stem[cut + 1..]))
    })?;
    let at = NaiveDateTime::parse_from_str(stamp, STAMP).ok()?.and_utc();
    if base.is_empty() {
        return None;
    }
    Some(Rotated {
        base: base.to_string(),
        at,
        name: name.to_string(),
    })
}

/// The destination key a rotated file ships to.
pub fn ship_key(container: &str, r: &Rotated, encrypted: bool) -> String {
    format!(
        "logs/{container}/{}/{}/{}.zst{}",
        r.base,
        r.at.format("%Y/%m/%d"),
        r.name,
        if encrypted { ".age" } else { "" }
    )
}

/// Of `rotated` files, those beyond the newest `keep` per base name, oldest first.
pub fn surplus(rotated: &[Rotated], keep: usize) -> Vec<Rotated> {
    let mut by_base: std::collections::BTreeMap<&str, Vec<&Rotated>> = Default::default();
    for r in rotated {
        by_base.entry(&r.base).or_default().push(r);
    }
    let mut out = Vec::new();
    for (_, mut files) in by_base {
        files.sort_by(|a, b| (a.at, &a.name).cmp(&(b.at, &b.name)));
        let extra = files.len().saturating_sub(keep);
        out.extend(files.into_iter().take(extra).cloned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 2, 30, 0).unwrap() + chrono::Duration::milliseconds(123)
    }

    #[test]
    fn stamps_sort_and_parse_back() {
        let s = stamp(at());
        assert_eq!(s, "20261128T023000.123Z");
        let r = parse_rotated(&format!("access.log.{s}")).unwrap();
        assert_eq!((r.base.as_str(), r.at), ("access.log", at()));
        let clash = parse_rotated(&format!("access.log.{s}.2")).unwrap();
        assert_eq!(clash.base, "access.log");
        assert!(stamp(at()) < stamp(at() + chrono::Duration::milliseconds(1)));
    }

    #[test]
    fn live_and_foreign_files_are_not_rotated_ones() {
        for name in [
            "access.log",
            "gunicorn.log.1",
            "x.20261128T023000Z",
            ".20261128T023000.123Z",
            "notes.txt",
        ] {
            assert_eq!(parse_rotated(name), None, "{name}");
        }
    }

    #[test]
    fn ship_keys_are_deterministic_and_dated() {
        let r = parse_rotated("gunicorn.log.20261128T023000.123Z").unwrap();
        assert_eq!(
            ship_key("web", &r, false),
            "logs/web/gunicorn.log/2026/11/28/gunicorn.log.20261128T023000.123Z.zst"
        );
        // A file shipped twice (a retry) lands on the same key, so the destination holds one
        // copy; another container's file of the same name does not collide with it.
        let again = parse_rotated("gunicorn.log.20261128T023000.123Z").unwrap();
        assert_eq!(ship_key("web", &again, false), ship_key("web", &r, false));
        assert_ne!(ship_key("worker", &r, false), ship_key("web", &r, false));
        assert!(ship_key("web", &r, true).ends_with(".123Z.zst.age"));
    }

    #[test]
    fn surplus_keeps_the_newest_per_base() {
        let names = [
            "a.log.20261128T010000.000Z",
            "a.log.20261128T020000.000Z",
            "a.log.20261128T030000.000Z",
            "b.log.20261128T010000.000Z",
        ];
        let all: Vec<Rotated> = names.iter().map(|n| parse_rotated(n).unwrap()).collect();
        let gone: Vec<String> = surplus(&all, 1).into_iter().map(|r| r.name).collect();
        assert_eq!(gone, vec![names[0], names[1]]);
        assert!(surplus(&all, 5).is_empty());
    }
}
