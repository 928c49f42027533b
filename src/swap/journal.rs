//! A restore's journal: which backup, which run and owner, every mount it restores into with each
//! path's own owner, mode and time, and how far it got (staging, committed, swapped). It is kept
//! on the host (the ledger), never in a volume: the app in the container can read and
//! write its volumes, so nothing read from there may choose what a root helper touches. Names
//! are octal escapes, so the text stays one plain line per record whatever the bytes.

use crate::archive::names::octal_escape;
use crate::archive::stage::RootMeta;
use crate::owner::Owner;

/// The first line of every journal (format 2: kept on the host).
pub const HEADER: &str = "dockyard-restore 2";

/// One path restored within a mount.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PathRecord {
    /// Its number in the mount's work dir (`new-<k>`, `old-<k>`).
    pub k: usize,
    /// The path relative to the mount root (empty for the mount root itself).
    pub rel: Vec<u8>,
    /// Owner, mode and time to give the path after the swap.
    pub root: RootMeta,
}

/// Everything restored into one mount: its work dir lives at the mount root.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MountWork {
    /// The mount point in the container (`/srv/media`).
    pub root: String,
    /// What is mounted there: the volume's name, or a bind mount's host path (empty if unknown).
    /// A container made again on the same volumes finds the restore by it.
    #[serde(default)]
    pub volume: String,
    /// The paths restored into it.
    pub paths: Vec<PathRecord>,
    /// Nested mount points (per path number) that stay in place.
    pub skips: Vec<(usize, Vec<u8>)>,
    /// Times the engine could not set while staging: (path number, seconds, name in the path).
    pub fixups: Vec<(usize, i64, Vec<u8>)>,
}

impl MountWork {
    /// The records `restore.sh` takes for this mount: `path …` and `skip …` lines, every value
    /// a number or an octal escape.
    pub fn spec(&self) -> String {
        let mut out = String::new();
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
        for (k, secs, name) in &self.fixups {
            out += &format!("fixup {k} {secs} {}\n", octal_escape(name));
        }
        out
    }

    /// The mount root's own time after the restore, when a path is the mount root itself.
    pub fn root_mtime(&self) -> Option<i64> {
        self.paths
            .iter()
            .find(|p| p.rel.is_empty())
            .map(|p| p.root.mtime)
    }
}

/// How far a restore got; only ever moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    /// Staging into the work dirs; nothing live touched. Undone if its owner is gone.
    Staging,
    /// Every path staged and checked: from here the restore is only ever finished.
    Committed,
    /// Every path swapped; only the old contents are left to delete.
    Swapped,
    /// Given up: neither finishing nor rolling back worked. Its work directories are left as they
    /// are (out of backups) for a person to sort out; every run says so, none fails for it.
    Abandoned,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Staging => "staging",
            State::Committed => "committed",
            State::Swapped => "swapped",
            State::Abandoned => "abandoned",
        }
    }

    fn parse(text: &str) -> Option<State> {
        match text {
            "staging" => Some(State::Staging),
            "committed" => Some(State::Committed),
            "swapped" => Some(State::Swapped),
            "abandoned" => Some(State::Abandoned),
            _ => None,
        }
    }
}

/// Everything a later run needs to finish, undo or clean up after one restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journal {
    /// The restoring run's id.
    pub run: String,
    /// The restoring process.
    pub owner: Owner,
    /// The backup being restored.
    pub backup: String,
    /// The target container's engine id.
    pub container: String,
    /// How far it got.
    pub state: State,
    /// Attempts to finish it that failed; after two, the restore is given up and rolled back.
    pub attempts: u32,
    /// `restore --include` patterns: when given, the staged entries are merged into the live
    /// paths (nothing deleted) instead of swapped for them.
    pub include: Vec<String>,
    /// Each mount with a work dir.
    pub mounts: Vec<MountWork>,
    /// Container paths of the single-file bind mounts it restores (staged beside their host
    /// files, found again through the container's current mounts).
    pub files: Vec<String>,
}

impl Journal {
    /// The journal's text.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{HEADER}\nrun {}\nowner {}\nbackup {}\ncontainer {}\nstate {}\nattempts {}\n",
            self.run,
            self.owner,
            octal_escape(self.backup.as_bytes()),
            self.container,
            self.state.as_str(),
            self.attempts
        );
        for i in &self.include {
            out += &format!("include {}\n", octal_escape(i.as_bytes()));
        }
        for m in &self.mounts {
            out += &format!("mount {}\n", octal_escape(m.root.as_bytes()));
            if !m.volume.is_empty() {
                out += &format!("volume {}\n", octal_escape(m.volume.as_bytes()));
            }
            out += &m.spec();
        }
        for f in &self.files {
            out += &format!("file {}\n", octal_escape(f.as_bytes()));
        }
        out
    }

    /// Whether its staged entries are merged into the live paths (`--include`).
    pub fn merge(&self) -> bool {
        !self.include.is_empty()
    }

    /// The mount roots with work dirs.
    pub fn roots(&self) -> Vec<String> {
        self.mounts.iter().map(|m| m.root.clone()).collect()
    }

    /// Parses a journal; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Journal, String> {
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            return Err("not a dockyard restore journal (unknown first line)".into());
        }
        let mut j = Journal {
            run: String::new(),
            owner: Owner::current(),
            backup: String::new(),
            container: String::new(),
            state: State::Staging,
            attempts: 0,
            include: vec![],
            mounts: vec![],
            files: vec![],
        };
        let (mut owner, mut state) = (None, None);
        for line in lines {
            let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
            let bad = || format!("bad journal line {line:?}");
            let f: Vec<&str> = rest.split(' ').collect();
            match tag {
                "run" if plain(rest) => j.run = rest.to_string(),
                "owner" => owner = Some(Owner::parse(rest).ok_or_else(bad)?),
                "backup" => j.backup = text_of(rest).ok_or_else(bad)?,
                "container" if plain(rest) => j.container = rest.to_string(),
                "state" => state = Some(State::parse(rest).ok_or_else(bad)?),
                "attempts" => j.attempts = rest.parse().map_err(|_| bad())?,
                "include" => j.include.push(text_of(rest).ok_or_else(bad)?),
                "mount" => {
                    let root = text_of(rest).ok_or_else(bad)?;
                    if !root.starts_with('/') || root.split('/').any(|c| c == "..") {
                        return Err(bad());
                    }
                    j.mounts.push(MountWork {
                        root,
                        volume: String::new(),
                        paths: vec![],
                        skips: vec![],
                        fixups: vec![],
                    });
                }
                "volume" => {
                    last(&mut j.mounts).ok_or_else(bad)?.volume = text_of(rest).ok_or_else(bad)?
                }
                "path" if f.len() == 6 => {
                    let record = PathRecord {
                        k: f[0].parse().map_err(|_| bad())?,
                        root: RootMeta {
                            uid: f[1].parse().map_err(|_| bad())?,
                            gid: f[2].parse().map_err(|_| bad())?,
                            mode: u32::from_str_radix(f[3], 8).map_err(|_| bad())?,
                            mtime: f[4].parse().map_err(|_| bad())?,
                        },
                        rel: unescape(f[5]).ok_or_else(bad)?,
                    };
                    crate::archive::names::check_relative(&record.rel).map_err(|_| bad())?;
                    last(&mut j.mounts).ok_or_else(bad)?.paths.push(record);
                }
                "skip" if f.len() == 2 => {
                    let k = f[0].parse().map_err(|_| bad())?;
                    let name = unescape(f[1]).ok_or_else(bad)?;
                    if name.is_empty() || name.contains(&b'/') || name == b".." || name == b"." {
                        return Err(bad());
                    }
                    last(&mut j.mounts).ok_or_else(bad)?.skips.push((k, name));
                }
                "fixup" if f.len() == 3 => {
                    let k = f[0].parse().map_err(|_| bad())?;
                    let secs = f[1].parse().map_err(|_| bad())?;
                    let name = unescape(f[2]).ok_or_else(bad)?;
                    crate::archive::names::check_relative(&name).map_err(|_| bad())?;
                    last(&mut j.mounts)
                        .ok_or_else(bad)?
                        .fixups
                        .push((k, secs, name));
                }
                "file" => j.files.push(text_of(rest).ok_or_else(bad)?),
                _ => return Err(bad()),
            }
        }
        j.owner = owner.ok_or("the journal names no owner")?;
        j.state = state.ok_or("the journal has no state")?;
        if j.run.is_empty() || j.container.is_empty() {
            return Err("the journal names no run or no container".into());
        }
        Ok(j)
    }
}

fn last(mounts: &mut [MountWork]) -> Option<&mut MountWork> {
    mounts.last_mut()
}

/// Whether `s` is a plain token (ids, run ids): letters, digits, `-`, `_`, `.`.
fn plain(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// The phase a mount's work dir records (`0-phase` in the volume). The app can write it, so it
/// only says where a swap the host journal ordered stands, never whether to do one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Staging (or staged).
    Staging,
    /// Swapping path k (moving old contents aside, restored ones in, setting its metadata).
    Swapping(usize),
    /// Swapped; only the old contents are left to delete.
    Swapped,
    /// Rolled back (`undo <k>` while under way): every path has its old contents again.
    RolledBack,
}

impl Phase {
    /// Parses the phase file's line.
    pub fn parse(line: &str) -> Option<Phase> {
        let line = line.trim();
        match line.split_once(' ') {
            None => match line {
                "" | "staging" | "ready" => Some(Phase::Staging),
                "swapped" => Some(Phase::Swapped),
                "rolledback" => Some(Phase::RolledBack),
                _ => None,
            },
            Some(("aside" | "in" | "meta" | "undo", k)) => k.parse().ok().map(Phase::Swapping),
            Some(_) => None,
        }
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
            container: "f00d".into(),
            state: State::Committed,
            attempts: 1,
            include: vec!["*.jpg".into()],
            mounts: vec![
                MountWork {
                    root: "/srv/media".into(),
                    volume: "media".into(),
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
                    fixups: vec![(1, -100, b"old file".to_vec())],
                },
                MountWork {
                    root: "/srv/my logs".into(),
                    volume: String::new(),
                    paths: vec![],
                    skips: vec![],
                    fixups: vec![],
                },
            ],
            files: vec!["/etc/app.conf".into()],
        }
    }

    #[test]
    fn round_trips_and_keeps_odd_bytes_out_of_the_text() {
        let j = journal();
        let text = j.render();
        assert!(text.is_ascii() && !text.contains('\''), "{text}");
        assert!(text.contains("path 0 1000 1001 750 -5 \n"), "{text}");
        assert_eq!(Journal::parse(&text).unwrap(), j);
        assert_eq!(j.mounts[0].root_mtime(), Some(-5));
    }

    #[test]
    fn refuses_tampered_journals() {
        let text = journal().render();
        for bad in [
            text.replace("dockyard-restore 2", "dockyard-restore 1"),
            text.replace("path 0 1000", "path x 1000"),
            text.replace("\\", "$"),
            format!("{text}rm -rf /\n"),
            text.replace("owner ", "owner x "),
            text.replace("state committed", "state done"),
            text.replace("container f00d", "container ../x"),
            text.replace("run 0123abcd", "run a/b"),
            // A path with a `..` component, and a mount root that is not absolute.
            text.replace(
                &format!(" {}\n", octal_escape(b"thumbs/a b\n'\xff")),
                &format!(" {}\n", octal_escape(b"../etc")),
            ),
            text.replace(&octal_escape(b"/srv/media"), &octal_escape(b"srv/../media")),
            format!("dockyard-restore 2\npath 0 0 0 755 0 \n{}", &text[19..]),
        ] {
            assert!(Journal::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn phases_parse_in_order() {
        let p = |s| Phase::parse(s).unwrap();
        assert!(p("staging") < p("aside 0") && p("aside 0") < p("swapped"));
        assert_eq!(p("in 3"), Phase::Swapping(3));
        assert_eq!(p("ready"), Phase::Staging);
        assert!(Phase::parse("swapping").is_none());
    }
}
