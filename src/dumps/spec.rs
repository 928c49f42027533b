//! `--dump CONTAINER:KIND[:DB]`: which database a backup dumps, from which container, parsed and
//! checked once, so every name that reaches a tar entry or a command inside a container is one
//! dockyard accepted.

use std::fmt;
use std::str::FromStr;

/// One dump a backup streams into its archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpSpec {
    /// The container the dump tool runs in (the database's own container).
    pub container: String,
    /// What dumps it.
    pub kind: DumpKind,
}

/// The dump tools dockyard knows, and `exec` for any other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DumpKind {
    /// `pg_dump` of one database (default: the container's `POSTGRES_DB`, else its user's).
    Postgres {
        /// The database, if named.
        db: Option<String>,
    },
    /// `mariadb-dump`/`mysqldump` of one database (default: the container's
    /// `MARIADB_DATABASE`/`MYSQL_DATABASE`).
    Mysql {
        /// The database, if named.
        db: Option<String>,
    },
    /// A SQLite file's `.dump`.
    Sqlite {
        /// The file, as a container path.
        path: String,
    },
    /// Any command that writes a dump to its standard output (`/bin/sh -c`). Never recorded in
    /// the manifest: it may hold a password.
    Exec {
        /// The command.
        command: String,
    },
}

impl DumpKind {
    /// The kind's name in manifests and messages.
    pub fn name(&self) -> &'static str {
        match self {
            DumpKind::Postgres { .. } => "postgres",
            DumpKind::Mysql { .. } => "mysql",
            DumpKind::Sqlite { .. } => "sqlite",
            DumpKind::Exec { .. } => "exec",
        }
    }

    /// The database named, if any.
    pub fn database(&self) -> Option<&str> {
        match self {
            DumpKind::Postgres { db } | DumpKind::Mysql { db } => db.as_deref(),
            DumpKind::Sqlite { .. } | DumpKind::Exec { .. } => None,
        }
    }
}

impl DumpSpec {
    /// The dump's file name under `dumps/<container>/` (before the part suffix): `<db>.sql`,
    /// `default.sql` for a database the container's environment names, `<file>.sql` for SQLite,
    /// `exec.out` for a command.
    pub fn file(&self) -> String {
        match &self.kind {
            DumpKind::Postgres { db } | DumpKind::Mysql { db } => {
                format!("{}.sql", db.as_deref().unwrap_or(DEFAULT_NAME))
            }
            DumpKind::Sqlite { path } => {
                format!("{}.sql", path.rsplit('/').next().unwrap_or(path))
            }
            DumpKind::Exec { .. } => "exec.out".into(),
        }
    }
}

/// The file name of a dump of the database the container's environment names.
pub const DEFAULT_NAME: &str = "default";

/// Whether `name` is a database name dockyard takes: letters, digits, `_` and `-`, not
/// starting with `-`, at most 63 bytes (PostgreSQL's limit). It goes into a file name and, in the
/// container, into SQL, so nothing else is accepted.
pub fn is_database_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Whether `name` is a container name as Docker allows them (`[a-zA-Z0-9][a-zA-Z0-9_.-]+`).
pub fn is_container_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.len() <= 128
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// Whether `name` is a file name a dump may have (a SQLite file's): letters, digits, `_`, `-`
/// and `.`, not starting with `.`.
fn is_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

const SYNTAX: &str = "CONTAINER:postgres[:DB], CONTAINER:mysql[:DB], CONTAINER:mariadb[:DB], CONTAINER:sqlite:/PATH or CONTAINER:exec:COMMAND";

impl FromStr for DumpSpec {
    type Err = String;

    fn from_str(given: &str) -> Result<Self, Self::Err> {
        // Errors show what was given, but never what follows a kind that is not one of the
        // database kinds (an `exec` command, mistyped or not, may hold a password).
        let s = &match given.splitn(3, ':').collect::<Vec<_>>()[..] {
            [c, k, _] if !["postgres", "postgresql", "mysql", "mariadb", "sqlite"].contains(&k) => {
                format!("{c}:{k}:…")
            }
            _ => given.to_string(),
        };
        let (container, rest) = given
            .split_once(':')
            .ok_or_else(|| format!("{s:?} is not a dump: give {SYNTAX}"))?;
        if !is_container_name(container) {
            return Err(format!(
                "{s:?}: {container:?} is not a container name (letters, digits, `_`, `.`, `-`)"
            ));
        }
        let (kind, arg) = match rest.split_once(':') {
            Some((k, a)) => (k, Some(a)),
            None => (rest, None),
        };
        let db = |arg: Option<&str>| -> Result<Option<String>, String> {
            match arg {
                None => Ok(None),
                Some(db) if is_database_name(db) && db != DEFAULT_NAME => Ok(Some(db.to_string())),
                Some(db) => Err(format!(
                    "{s:?}: dockyard dumps databases named with letters, digits, `_` and `-` (not {db:?}, nor `{DEFAULT_NAME}`, which names the container's own)"
                )),
            }
        };
        let kind = match kind {
            "postgres" | "postgresql" => DumpKind::Postgres { db: db(arg)? },
            "mysql" | "mariadb" => DumpKind::Mysql { db: db(arg)? },
            "sqlite" => {
                let path = arg.unwrap_or_default();
                let parsed: crate::values::ContainerPath = path.parse().map_err(|e| {
                    format!(
                        "{s:?}: sqlite needs the database file as an absolute container path: {e}"
                    )
                })?;
                let file = parsed.as_str().rsplit('/').next().unwrap_or_default();
                if !is_file_name(file) {
                    return Err(format!(
                        "{s:?}: the SQLite file's name {file:?} must be letters, digits, `_`, `-` and `.`"
                    ));
                }
                DumpKind::Sqlite {
                    path: parsed.as_str().to_string(),
                }
            }
            "exec" => match arg {
                Some(c) if !c.trim().is_empty() => DumpKind::Exec {
                    command: c.to_string(),
                },
                _ => {
                    return Err(format!(
                        "{s:?}: exec needs a command: CONTAINER:exec:COMMAND"
                    ))
                }
            },
            other => {
                return Err(format!(
                    "{s:?}: {other:?} is not a dump kind dockyard knows; give {SYNTAX}"
                ))
            }
        };
        Ok(DumpSpec {
            container: container.to_string(),
            kind,
        })
    }
}

/// Shown as given, but an `exec` command, which may hold a password, is left out.
impl fmt::Display for DumpSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            DumpKind::Postgres { db } | DumpKind::Mysql { db } => match db {
                Some(db) => write!(f, "{}:{}:{db}", self.container, self.kind.name()),
                None => write!(f, "{}:{}", self.container, self.kind.name()),
            },
            DumpKind::Sqlite { path } => write!(f, "{}:sqlite:{path}", self.container),
            DumpKind::Exec { .. } => write!(f, "{}:exec:…", self.container),
        }
    }
}

/// Checks that no two of `specs` would be stored under the same name.
pub fn check_unique(specs: &[DumpSpec]) -> Result<(), String> {
    for (i, a) in specs.iter().enumerate() {
        if let Some(b) = specs[..i]
            .iter()
            .find(|b| b.container == a.container && b.file() == a.file())
        {
            return Err(format!(
                "dumps {b} and {a} would both be stored as {}; give each its own database or file",
                super::entry_dir(&a.container, &a.file())
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<DumpSpec, String> {
        s.parse()
    }

    #[test]
    fn each_kind_parses_and_names_its_file() {
        for (given, kind, file) in [
            ("db:postgres:app", "postgres", "app.sql"),
            ("db:postgres", "postgres", "default.sql"),
            ("db:mariadb:shop", "mysql", "shop.sql"),
            ("db:mysql", "mysql", "default.sql"),
            (
                "web:sqlite:/srv/data/db.sqlite3",
                "sqlite",
                "db.sqlite3.sql",
            ),
            ("mongo:exec:mongodump --archive", "exec", "exec.out"),
            ("redis:exec:sh -c 'a:b'", "exec", "exec.out"),
        ] {
            let spec = parse(given).unwrap();
            assert_eq!(
                (spec.kind.name(), spec.file().as_str()),
                (kind, file),
                "{given}"
            );
        }
    }

    #[test]
    fn what_could_reach_a_name_or_a_command_is_refused() {
        for (given, want) in [
            ("db", "is not a dump"),
            ("../x:postgres", "not a container name"),
            ("db:postgres:a;drop", "letters, digits"),
            ("db:postgres:-v", "letters, digits"),
            ("db:postgres:default", "container's own"),
            ("db:oracle", "not a dump kind"),
            ("web:sqlite:relative.db", "absolute"),
            ("web:sqlite:/srv/../etc/x", "absolute"),
            ("web:sqlite:/srv/.hidden", "must be letters"),
            ("db:exec:", "needs a command"),
        ] {
            let err = parse(given).unwrap_err();
            assert!(err.contains(want), "{given}: {err}");
        }
    }

    #[test]
    fn a_command_is_never_shown() {
        let spec = parse("db:exec:mysqldump -psecret").unwrap();
        assert!(!spec.to_string().contains("secret"));
        for (given, shown) in [
            ("d b:exec:mysqldump -psecret", "d b:exec:…"),
            ("db:EXEC:mysqldump -psecret", "db:EXEC:…"),
        ] {
            let err = parse(given).unwrap_err();
            assert!(err.contains(shown) && !err.contains("secret"), "{err}");
        }
    }

    #[test]
    fn two_dumps_under_one_name_are_refused() {
        let specs = [parse("db:exec:a").unwrap(), parse("db:exec:b").unwrap()];
        assert!(check_unique(&specs)
            .unwrap_err()
            .contains("dumps/db/exec.out"));
        let specs = [
            parse("db:postgres:a").unwrap(),
            parse("db2:postgres:a").unwrap(),
        ];
        check_unique(&specs).unwrap();
    }
}
