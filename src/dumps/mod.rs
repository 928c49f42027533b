//! Database dumps streamed into a backup's archive and back into a database: what is asked for
//! (`spec`), the commands run in the database's container (`tools`), the tar entries a dump
//! becomes (`stream`), and what the manifest records of each ([`DumpRecord`]).
//!
//! A dump's size is known only at its end, and a tar header states its entry's size first, so a
//! dump is stored as parts of at most [`PART_SIZE`] bytes, each held in memory once:
//! `dumps/<container>/<file>.00000`, `.00001`, …, which `cat` joins in name order.

pub mod load;
pub mod read;
pub mod spec;
pub mod stream;
pub mod tools;

use serde::{Deserialize, Serialize};

pub use spec::{DumpKind, DumpSpec};

/// The largest part of a dump: the memory one dump holds. 8 MiB keeps a backup's peak RSS
/// under 64 MiB with zstd's workers beside it (16 MiB peaked at 60 MiB: benches/dumps.sh).
pub const PART_SIZE: usize = 8 << 20;

/// The digits of a part's number: 100,000 parts of 8 MiB, over 780 GiB, keep name order.
const PART_DIGITS: usize = 5;

/// The most parts a dump may have.
pub const MAX_PARTS: u64 = 100_000;

/// The top-level directory of dumps in an archive.
pub const DIR: &str = "dumps";

/// `dumps/<container>/<file>`: a dump's name in an archive, before its part suffix.
pub fn entry_dir(container: &str, file: &str) -> String {
    format!("{DIR}/{container}/{file}")
}

/// The name of part `i` of a dump.
pub fn part_name(container: &str, file: &str, i: u64) -> String {
    format!(
        "{}.{i:0width$}",
        entry_dir(container, file),
        width = PART_DIGITS
    )
}

/// One dump in a backup (the manifest's `dumps`, docs/json.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DumpRecord {
    /// The container it was dumped from.
    pub container: String,
    /// `postgres`, `mysql`, `sqlite` or `exec`.
    pub kind: String,
    /// The database named (none: the one the container's environment names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// A SQLite dump's file, as a container path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Its file name under `dumps/<container>/`, before the part suffix.
    pub file: String,
    /// How many parts it is stored as.
    pub parts: u64,
    /// Its bytes, all parts together.
    pub size: u64,
    /// SHA-256 of those bytes, hex.
    pub sha256: String,
}

impl DumpRecord {
    /// The names of its parts in the archive, in order.
    pub fn part_names(&self) -> Vec<String> {
        (0..self.parts)
            .map(|i| part_name(&self.container, &self.file, i))
            .collect()
    }

    /// `dumps/<container>/<file>`.
    pub fn entry(&self) -> String {
        entry_dir(&self.container, &self.file)
    }

    /// The spec that makes such a dump again (an `exec` one without its command).
    pub fn kind(&self) -> Option<DumpKind> {
        Some(match self.kind.as_str() {
            "postgres" => DumpKind::Postgres {
                db: self.database.clone(),
            },
            "mysql" => DumpKind::Mysql {
                db: self.database.clone(),
            },
            "sqlite" => DumpKind::Sqlite {
                path: self.path.clone()?,
            },
            "exec" => DumpKind::Exec {
                command: String::new(),
            },
            _ => return None,
        })
    }

    /// Checks it as if an attacker wrote it: a kind dockyard knows, names that stay inside
    /// `dumps/<container>/`, the file name its kind gives, parts that fit its size.
    pub fn check(&self) -> Result<(), String> {
        let kind = self
            .kind()
            .ok_or_else(|| format!("it lists a dump of kind {:?}", self.kind))?;
        if !spec::is_container_name(&self.container) {
            return Err(format!(
                "it lists a dump of {:?}, not a container name",
                self.container
            ));
        }
        let spec = DumpSpec {
            container: self.container.clone(),
            kind,
        };
        if let Some(db) = &self.database {
            if !spec::is_database_name(db) || db == spec::DEFAULT_NAME {
                return Err(format!("it lists a dump of database {db:?}"));
            }
        }
        if let Some(path) = &self.path {
            let again: Result<DumpSpec, _> = format!("{}:sqlite:{path}", self.container).parse();
            if again.is_err() || self.kind != "sqlite" {
                return Err(format!("it lists a dump of SQLite file {path:?}"));
            }
        }
        if self.file != spec.file() {
            return Err(format!(
                "it lists a {} dump stored as {:?}, not {:?}",
                self.kind,
                self.file,
                spec.file()
            ));
        }
        let want = self.size.div_ceil(PART_SIZE as u64).max(1);
        if self.parts != want || self.parts > MAX_PARTS {
            return Err(format!(
                "it lists dump {} of {} bytes in {} parts",
                self.entry(),
                self.size,
                self.parts
            ));
        }
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("it lists dump {} without a sha256", self.entry()));
        }
        Ok(())
    }
}

/// Checks `dumps` (a manifest's) each, and that no two share a name.
pub fn check_all(dumps: &[DumpRecord]) -> Result<(), String> {
    for (i, d) in dumps.iter().enumerate() {
        d.check()?;
        if dumps[..i].iter().any(|e| e.entry() == d.entry()) {
            return Err(format!("it lists dump {} twice", d.entry()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> DumpRecord {
        DumpRecord {
            container: "db".into(),
            kind: "postgres".into(),
            database: Some("app".into()),
            path: None,
            file: "app.sql".into(),
            parts: 2,
            size: PART_SIZE as u64 + 1,
            sha256: "0".repeat(64),
        }
    }

    #[test]
    fn parts_are_named_in_an_order_cat_keeps() {
        let r = record();
        assert_eq!(
            r.part_names(),
            ["dumps/db/app.sql.00000", "dumps/db/app.sql.00001"]
        );
        check_all(&[r]).unwrap();
    }

    #[test]
    fn a_forged_record_is_refused() {
        type Forge = fn(&mut DumpRecord);
        let cases: Vec<(Forge, &str)> = vec![
            (|r| r.container = "../etc".into(), "not a container name"),
            (|r| r.file = "../../x.sql".into(), "stored as"),
            (|r| r.database = Some("a'b".into()), "database"),
            (|r| r.parts = 1, "parts"),
            (|r| r.parts = 3, "parts"),
            (|r| r.kind = "shell".into(), "kind"),
            (|r| r.sha256 = "x".into(), "sha256"),
            (
                |r| {
                    r.kind = "sqlite".into();
                    r.path = Some("/srv/../etc/app.sql".into());
                    r.database = None;
                    r.file = "app.sql.sql".into();
                },
                "SQLite",
            ),
        ];
        for (forge, want) in cases {
            let mut r = record();
            forge(&mut r);
            let err = r.check().unwrap_err();
            assert!(err.contains(want), "{err}");
        }
        let err = check_all(&[record(), record()]).unwrap_err();
        assert!(err.contains("twice"), "{err}");
    }
}
