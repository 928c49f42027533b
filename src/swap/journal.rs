//! The journal a restore keeps in each volume it restores into (`.dockyard-restore/0-journal`):
//! which backup, which run and owner, every member of the restore, and each path's own owner, mode
//! and time. The phase lives beside it (`0-phase`). `restore.sh` reads the same lines; every
//! field is a number or an octal escape, so the script can check each before using it.

use crate::archive::names::octal_escape;
use crate::archive::stage::RootMeta;
use crate::owner::Owner;

/// The first line of every journal.
pub const HEADER: &str = "dockyard-restore 1";

/// One path restored within this work dir's mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRecord {
    /// Its number in the work dir (`new-<k>`, `old-<k>`).
    pub k: usize,
    /// The path relative to the mount root (empty for the mount root itself).
    pub rel: Vec<u8>,
    /// Owner, mode and time to give the path after the swap.
    pub root: RootMeta,
}

/// A single-file bind mount restored by the same run, recorded so that finishing an interrupted
/// restore also moves it into place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    /// The host directory holding the bind mount's source file.
    pub host_dir: String,
    /// The source file's name in that directory.
    pub name: String,
    /// The container path, for messages.
    pub path: String,
}

/// Everything a later run needs to finish or undo this restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journal {
    /// The restoring run's id.
    pub run: String,
    /// The restoring process.
    pub owner: Owner,
    /// The backup being restored.
    pub backup: String,
    /// The mount roots of every work dir of this restore (this one included).
    pub members: Vec<String>,
    /// The paths restored into this mount.
    pub paths: Vec<PathRecord>,
    /// Nested mount points (per path number) that stay in place.
    pub skips: Vec<(usize, Vec<u8>)>,
    /// Single-file mounts of this restore.
    pub files: Vec<FileRecord>,
}

impl Journal {
    /// The journal's text.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{HEADER}\nrun {}\nowner {}\nbackup {}\n",
            self.run,
            self.owner,
            octal_escape(self.backup.as_bytes())
        );
        for m in &self.members {
            out += &format!("member {}\n", octal_escape(m.as_bytes()));
        }
        for p in &self.paths {
            out += &format!(
                "path {} {} {} {:o} {} {}\n",
                p.k,
                p.root.uid,
                p.root.gid,
                p.root.mode & 0o7777,
                p.root.mtime,
                octal_escape(&p.rel)
            );
        }
        for (k, name) in &self.skips {
            out += &format!("skip {k} {}\n", octal_escape(name));
        }
        for f in &self.files {
            out += &format!(
                "file {} {} {}\n",
                octal_escape(f.host_dir.as_bytes()),
                octal_escape(f.name.as_bytes()),
                octal_escape(f.path.as_bytes())
            );
        }
        out
    }

    /// Parses a journal; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Journal, String> {
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            return Err("not a dockyard restore journal (unknown first line)".into());
        }
        let mut j = Journal {
            run: String::new(),
            owner: Owner::parse("? 0 0 ? 0").unwrap_or_else(Owner::current),
            backup: String::new(),
            members: vec![],
            paths: vec![],
            skips: vec![],
            files: vec![],
        };
        let mut owner = None;
        for line in lines {
            let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
            let bad = || format!("bad journal line {line:?}");
            let f: Vec<&str> = rest.split(' ').collect();
            match tag {
                "run" => j.run = rest.to_string(),
                "owner" => owner = Some(Owner::parse(rest).ok_or_else(bad)?),
                "backup" => j.backup = text_of(rest).ok_or_else(bad)?,
                "member" => j.members.push(text_of(rest).ok_or_else(bad)?),
                "path" if f.len() == 6 => j.paths.push(PathRecord {
                    k: f[0].parse().map_err(|_| bad())?,
                    root: RootMeta {
                        uid: f[1].parse().map_err(|_| bad())?,
                        gid: f[2].parse().map_err(|_| bad())?,
                        mode: u32::from_str_radix(f[3], 8).map_err(|_| bad())?,
                        mtime: f[4].parse().map_err(|_| bad())?,
                    },
                    rel: unescape(f[5]).ok_or_else(bad)?,
                }),
                "skip" if f.len() == 2 => j.skips.push((
                    f[0].parse().map_err(|_| bad())?,
                    unescape(f[1]).ok_or_else(bad)?,
                )),
                "file" if f.len() == 3 => j.files.push(FileRecord {
                    host_dir: text_of(f[0]).ok_or_else(bad)?,
                    name: text_of(f[1]).ok_or_else(bad)?,
                    path: text_of(f[2]).ok_or_else(bad)?,
                }),
                _ => return Err(bad()),
            }
        }
        j.owner = owner.ok_or("the journal names no owner")?;
        if j.run.is_empty() || j.members.is_empty() {
            return Err("the journal names no run or no members".into());
        }
        Ok(j)
    }
}

/// The phase of one work dir, in the order a restore goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Staging (or staged, but not every member yet).
    Staging,
    /// Every member staged completely; nothing live touched yet.
    Ready,
    /// Swapping path k (moving old contents aside, restored ones in, setting its metadata).
    Swapping(usize),
    /// Swapped; only the old contents are left to delete.
    Swapped,
}

impl Phase {
    /// Parses the phase file's line.
    pub fn parse(line: &str) -> Option<Phase> {
        let line = line.trim();
        match line.split_once(' ') {
            None => match line {
                "" | "staging" => Some(Phase::Staging),
                "ready" => Some(Phase::Ready),
                "swapped" => Some(Phase::Swapped),
                _ => None,
            },
            Some(("aside" | "in" | "meta", k)) => k.parse().ok().map(Phase::Swapping),
            Some(_) => None,
        }
    }

    /// Whether the swap began: from here on a restore can only be finished, not undone.
    pub fn began_swap(self) -> bool {
        self > Phase::Ready
    }
}

fn unescape(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    bytes
        .chunks(4)
        .map(|c| {
            (c[0] == b'\\' && c[1..].iter().all(|d| (b'0'..=b'7').contains(d)))
                .then(|| u8::from_str_radix(std::str::from_utf8(&c[1..]).ok()?, 8).ok())
                .flatten()
        })
        .collect()
}

fn text_of(escaped: &str) -> Option<String> {
    String::from_utf8(unescape(escaped)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal() -> Journal {
        Journal {
            run: "0123abcd".into(),
            owner: Owner::current(),
            backup: "web-20261128T010203Z-beef".into(),
            members: vec!["/srv/media".into(), "/srv/my logs".into()],
            paths: vec![
                PathRecord {
                    k: 0,
                    rel: vec![],
                    root: RootMeta {
                        mode: 0o750,
                        uid: 1000,
                        gid: 1001,
                        mtime: -5,
                    },
                },
                PathRecord {
                    k: 1,
                    rel: b"thumbs/a b\n'\xff".to_vec(),
                    root: RootMeta::default(),
                },
            ],
            skips: vec![(0, b"nested".to_vec())],
            files: vec![FileRecord {
                host_dir: "/etc/app".into(),
                name: "app.conf".into(),
                path: "/etc/app.conf".into(),
            }],
        }
    }

    #[test]
    fn round_trips_and_keeps_odd_bytes_out_of_the_text() {
        let j = journal();
        let text = j.render();
        assert!(text.is_ascii() && !text.contains('\''), "{text}");
        assert!(text.contains("path 0 1000 1001 750 -5 \n"), "{text}");
        assert_eq!(Journal::parse(&text).unwrap(), j);
    }

    #[test]
    fn refuses_tampered_journals() {
        let text = journal().render();
        for bad in [
            text.replace("dockyard-restore 1", "dockyard-restore 9"),
            text.replace("path 0 1000", "path x 1000"),
            text.replace("\\", "$"),
            format!("{text}rm -rf /\n"),
            text.replace("owner ", "owner x "),
            text.replace("member ", "member ../"),
        ] {
            assert!(Journal::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn phases_parse_in_order() {
        let p = |s| Phase::parse(s).unwrap();
        assert!(p("staging") < p("ready") && p("ready") < p("aside 0"));
        assert_eq!(p("in 3"), Phase::Swapping(3));
        assert!(p("meta 1").began_swap() && !p("ready").began_swap());
        assert!(Phase::parse("swapping").is_none());
    }
}
