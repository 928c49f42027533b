//! The shell scripts helpers run inside the log volume (POSIX sh; busybox and Debian both work).
//! Everything they print for dockyard is one record per line: `LOCKED <owner>`, `ROTATED <name>`,
//! `FILE <size> <name>`, `DELETED <name>`, `KEPT <name>`.

use super::reopen::Reopen;

/// Where a run's lock and state live, inside the log directory.
pub const STATE_DIR: &str = ".dockyard";
/// Exit code of the begin script when another run holds the lock.
pub const LOCKED: i64 = 75;

/// Quotes `s` for a POSIX shell.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A `case` pattern matching rotated names (`<name>.<YYYYmmddTHHMMSS.mmmZ>[.<n>]`).
const ROTATED_CASE: &str = "*.[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9].[0-9][0-9][0-9]Z|*.[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9].[0-9][0-9][0-9]Z.[0-9]*";

/// What the begin script should rotate, if anything.
#[derive(Debug, Clone)]
pub struct Rotation {
    /// Glob patterns of live files, e.g. `*.log`.
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
) -> String {
    let mut s = format!(
        "set -u\ncd {d} 2>/dev/null || {{ echo \"no directory {dir} in the volume\" >&2; exit 3; }}\n\
         mkdir -p {STATE_DIR} || exit 1\n",
        d = quote(dir)
    );
    if let Some(old) = stale_owner {
        s += &format!(
            "[ \"$(cat {STATE_DIR}/lock/owner 2>/dev/null)\" = {o} ] && rm -rf {STATE_DIR}/lock\n",
            o = quote(old)
        );
    }
    s += &format!(
        "if ! mkdir {STATE_DIR}/lock 2>/dev/null; then echo \"LOCKED $(cat {STATE_DIR}/lock/owner 2>/dev/null)\"; exit {LOCKED}; fi\n\
         echo {o} > {STATE_DIR}/lock/owner\n",
        o = quote(owner)
    );
    if let Some(r) = rotation {
        let copy = r.method == Reopen::CopyTruncate;
        let due = match (r.min_size, r.max_age) {
            (None, None) => "due=1".to_string(),
            (min, age) => {
                let mut d = "due=0".to_string();
                if let Some(min) = min {
                    d += &format!("; [ \"$size\" -ge {min} ] && due=1");
                }
                if let Some(age) = age {
                    d += &format!(
                        "; last=$(cat \"{STATE_DIR}/last-$f\" 2>/dev/null) || {{ echo {now} > \"{STATE_DIR}/last-$f\"; last={now}; }}\
                         ; [ $(({now} - last)) -ge {age} ] && due=1",
                        now = r.now
                    );
                }
                d
            }
        };
        let rotate = if copy {
            // Copy, copy again what grew during the first copy, then truncate: lines written
            // between the second copy and the truncation are lost (the documented window).
            "cp -p \"$f\" \"$t\" && s=$(wc -c < \"$t\") && tail -c +$((s + 1)) \"$f\" >> \"$t\" && : > \"$f\""
        } else {
            "mv \"$f\" \"$t\""
        };
        // Patterns are validated (no quotes, spaces or slashes), so they may stay unquoted to glob.
        s += &format!(
            "for f in {pats}; do\n\
               [ -f \"$f\" ] && [ -s \"$f\" ] || continue\n\
               case \"$f\" in .*|{ROTATED_CASE}) continue;; esac\n\
               size=$(wc -c < \"$f\"); {due}\n\
               [ \"$due\" = 1 ] || continue\n\
               t=\"$f\".{stamp}; n=1\n\
               while [ -e \"$t\" ]; do t=\"$f\".{stamp}.$n; n=$((n + 1)); done\n\
               {rotate} || {{ echo \"cannot rotate $f\" >&2; continue; }}\n\
               echo {now} > \"{STATE_DIR}/last-$f\"\n\
               echo \"ROTATED $t\"\n\
             done\n",
            pats = r.patterns.join(" "),
            stamp = quote(&r.stamp),
            now = r.now,
        );
    }
    s += &format!(
        "for f in *; do case \"$f\" in {ROTATED_CASE}) [ -f \"$f\" ] && echo \"FILE $(wc -c < \"$f\") $f\";; esac; done\nexit 0\n"
    );
    s
}

/// Deletes `shipped` files whose size is still what was shipped (one that grew, because the app
/// had not reopened yet, stays and ships again next time), deletes `surplus` files, records what
/// shipped, and releases the lock if `owner` still holds it.
pub fn finish(
    dir: &str,
    owner: &str,
    shipped: &[(String, u64, String)],
    surplus: &[String],
) -> String {
    let mut s = format!("cd {} || exit 3\n", quote(dir));
    for (name, size, key) in shipped {
        let n = quote(name);
        s += &format!(
            "if [ \"$(wc -c < {n})\" -eq {size} ]; then rm -f -- {n} && echo \"DELETED \"{n} && echo \"$(date -u +%Y-%m-%dT%H:%M:%SZ) \"{n}\" {size} \"{k} >> {STATE_DIR}/shipped.log; else echo \"KEPT \"{n}; fi\n",
            k = quote(key)
        );
    }
    for name in surplus {
        s += &format!("rm -f -- {n} && echo \"DELETED \"{n}\n", n = quote(name));
    }
    s += &format!(
        "if [ -f {STATE_DIR}/shipped.log ] && [ $(wc -l < {STATE_DIR}/shipped.log) -gt 2000 ]; then tail -n 1000 {STATE_DIR}/shipped.log > {STATE_DIR}/shipped.tmp && mv {STATE_DIR}/shipped.tmp {STATE_DIR}/shipped.log; fi\n\
         [ \"$(cat {STATE_DIR}/lock/owner 2>/dev/null)\" = {o} ] && rm -rf {STATE_DIR}/lock\nexit 0\n",
        o = quote(owner)
    );
    s
}

/// Parses `FILE <size> <name>` lines.
pub fn files(stdout: &str) -> Vec<(u64, String)> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("FILE "))
        .filter_map(|l| {
            let (size, name) = l.split_once(' ')?;
            Some((size.trim().parse().ok()?, name.to_string()))
        })
        .collect()
}

/// Lines with `tag ` prefix, without it.
pub fn tagged<'a>(stdout: &'a str, tag: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    stdout
        .lines()
        .filter_map(move |l| l.strip_prefix(tag)?.strip_prefix(' '))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_are_valid_sh_and_quote_names() {
        let r = Rotation {
            patterns: vec!["*.log".into()],
            stamp: "20261128T023000.123Z".into(),
            now: 1,
            min_size: Some(10),
            max_age: Some(3600),
            method: Reopen::CopyTruncate,
        };
        for script in [
            begin("/srv/logs", "h 1 2", Some("h 0 1"), Some(&r)),
            finish(
                "/srv/logs",
                "h 1 2",
                &[("it's.log.x".into(), 3, "k".into())],
                &["a b".into()],
            ),
        ] {
            let out = std::process::Command::new("sh")
                .args(["-n", "-c", &script])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{script}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(finish("/d", "o", &[("it's".into(), 1, "k".into())], &[]).contains("'it'\\''s'"));
    }

    #[test]
    fn parses_records() {
        let out = "ROTATED a.log.x\nFILE 12 a.log.x\nFILE bad\nLOCKED h 1 2\n";
        assert_eq!(files(out), vec![(12, "a.log.x".to_string())]);
        assert_eq!(tagged(out, "LOCKED").collect::<Vec<_>>(), vec!["h 1 2"]);
    }
}
