//! The two log scripts (`src/shell/logs-begin.sh`, `logs-finish.sh`) as dockyard calls them: their
//! arguments, and the NUL-terminated records they print (`LOCKED <owner>`, `ROTATED <name>`,
//! `FAILED <name>: <why>`, `SKIPPED <name>: <why>`, `FILE <size> <name>`, `DELETED <name>`,
//! `KEPT <name>`). A record ends at a NUL, so no file name can forge another record.

use super::reopen::Reopen;
use crate::shell::{Script, LOGS_BEGIN, LOGS_FINISH};

/// Where a run's lock and state live, inside the log directory.
pub const STATE_DIR: &str = ".dockyard";
/// Exit code of the begin script when another run holds the lock.
pub const LOCKED: i64 = 75;

/// What the begin script should rotate, if anything.
#[derive(Debug, Clone)]
pub struct Rotation {
    /// Glob patterns of live files, e.g. `*.log` (checked by `values::LogPattern`).
    pub patterns: Vec<String>,
    /// Suffix for this rotation (see `naming::stamp`).
    pub stamp: String,
    /// Now, in seconds since the epoch (for `max_age`).
    pub now: i64,
    /// Rotate only files at least this big (with `max_age`: either trigger).
    pub min_size: Option<u64>,
    /// Rotate files last rotated at least this many seconds ago.
    pub max_age: Option<u64>,
    /// Rename (signal/exec/none) or copy and truncate.
    pub method: Reopen,
}

/// Takes the lock (or takes over `stale_owner`'s), optionally rotates, and lists rotated files.
pub fn begin(
    dir: &str,
    owner: &str,
    stale_owner: Option<&str>,
    rotation: Option<&Rotation>,
) -> Script {
    let opt = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_default();
    let mut args = vec![
        dir.to_string(),
        owner.to_string(),
        stale_owner.unwrap_or_default().to_string(),
    ];
    match rotation {
        Some(r) => {
            args.extend([
                "1".to_string(),
                r.stamp.clone(),
                r.now.to_string(),
                opt(r.min_size),
                opt(r.max_age),
                if r.method == Reopen::CopyTruncate {
                    "copytruncate".into()
                } else {
                    "rename".into()
                },
            ]);
            args.extend(r.patterns.iter().cloned());
        }
        None => args.extend(["0", "", "0", "", "", "rename"].map(String::from)),
    }
    Script {
        name: "dockyard-logs-begin",
        text: LOGS_BEGIN,
        args,
    }
}

/// Takes no lock and changes nothing: reports the files `rotation` would rotate now (`DUE`) and
/// the rotated files already waiting (`FILE`).
pub fn plan(dir: &str, rotation: &Rotation) -> Script {
    let mut script = begin(dir, "", None, Some(rotation));
    script.args[3] = "plan".into();
    script
}

/// Deletes `shipped` files (name, size, key) whose size is still what was shipped, deletes
/// `surplus` files, records what shipped, and releases the lock if `owner` still holds it.
pub fn finish(
    dir: &str,
    owner: &str,
    shipped: &[(String, u64, String)],
    surplus: &[String],
) -> Script {
    let mut args = vec![
        dir.to_string(),
        owner.to_string(),
        shipped.len().to_string(),
    ];
    for (name, size, key) in shipped {
        args.extend([name.clone(), size.to_string(), key.clone()]);
    }
    args.extend(surplus.iter().cloned());
    Script {
        name: "dockyard-logs-finish",
        text: LOGS_FINISH,
        args,
    }
}

/// The records of a script's output, as text (a record that is not UTF-8 is shown lossily; its
/// name cannot be used with the engine's archive endpoint anyway).
pub fn records(stdout: &[u8]) -> Vec<String> {
    stdout
        .split(|&b| b == 0)
        .filter(|r| !r.is_empty())
        .map(|r| String::from_utf8_lossy(r).into_owned())
        .collect()
}

/// Records with `tag ` prefix, without it.
pub fn tagged<'a>(records: &'a [String], tag: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    records
        .iter()
        .filter_map(move |l| l.strip_prefix(tag)?.strip_prefix(' '))
}

/// Parses `FILE <size> <name>` records.
pub fn files(records: &[String]) -> Vec<(u64, String)> {
    sized(records, "FILE")
}

/// `<tag> <size> <name>` records as (size, name).
pub fn sized(records: &[String], tag: &str) -> Vec<(u64, String)> {
    tagged(records, tag)
        .filter_map(|l| {
            let (size, name) = l.split_once(' ')?;
            Some((size.trim().parse().ok()?, name.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nul_terminated_records() {
        let out = b"ROTATED a.log.x\0FILE 12 a\nb.log.x\0FILE bad\0LOCKED h 1 2\0";
        let r = records(out);
        assert_eq!(files(&r), vec![(12, "a\nb.log.x".to_string())]);
        assert_eq!(tagged(&r, "LOCKED").collect::<Vec<_>>(), vec!["h 1 2"]);
    }

    #[test]
    fn values_are_arguments_never_script_text() {
        let s = finish(
            "/srv/logs",
            "h 1 2 r 3",
            &[("it's $(x).log".into(), 3, "k".into())],
            &[],
        );
        assert!(!s.text.contains("it's"));
        assert_eq!(s.args[3], "it's $(x).log");
    }
}
