//! The commands a dump, a probe and a load run in a database's container: dockyard's scripts
//! (src/shell/db-*.sh) with the database or file as an argument, never in their text, and as
//! which user.

use super::DumpKind;
use crate::shell::Script;

/// What runs in the container, and as whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The command line.
    pub argv: Vec<String>,
    /// The user it runs as (`None`: the container's own).
    pub user: Option<&'static str>,
}

/// The step a command does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Write the dump on stdout.
    Dump,
    /// Print `absent`, `empty` or `tables N` for the target.
    Probe,
    /// Read a dump on stdin into the target's stand-in (`true`: even when the target is not
    /// empty).
    Load(bool),
    /// Put the loaded stand-in in the target's place (`true`: even when it is not empty).
    Promote(bool),
    /// Remove what a load wrote, its dump found damaged.
    Discard,
}

impl Step {
    /// The script's mode, and its FORCE argument when the step takes one.
    fn args(self) -> (&'static str, Option<&'static str>) {
        match self {
            Step::Dump => ("dump", None),
            Step::Probe => ("probe", None),
            Step::Load(force) => ("load", Some(if force { "force" } else { "keep" })),
            Step::Promote(force) => ("promote", Some(if force { "force" } else { "keep" })),
            Step::Discard => ("discard", None),
        }
    }
}

/// The command for `step` of a dump of `kind`; `target` is the database (or SQLite file) to
/// use instead of the one `kind` names. An `exec` dump's load runs its command (the operator's
/// own, given at restore); it has no other step.
pub fn command(kind: &DumpKind, step: Step, target: Option<&str>) -> Option<Command> {
    let (mode, force) = step.args();
    let (name, text, user, object) = match kind {
        DumpKind::Postgres { db } => (
            "dockyard-postgres",
            crate::shell::DB_POSTGRES,
            Some("postgres"),
            target.or(db.as_deref()).unwrap_or_default(),
        ),
        DumpKind::Mysql { db } => (
            "dockyard-mysql",
            crate::shell::DB_MYSQL,
            None,
            target.or(db.as_deref()).unwrap_or_default(),
        ),
        DumpKind::Sqlite { path } => (
            "dockyard-sqlite",
            crate::shell::DB_SQLITE,
            None,
            target.unwrap_or(path),
        ),
        DumpKind::Exec { command } => {
            return matches!(step, Step::Dump | Step::Load(_)).then(|| Command {
                argv: vec!["/bin/sh".into(), "-c".into(), command.clone()],
                user: None,
            })
        }
    };
    let mut args = vec![mode.to_string(), object.to_string()];
    args.extend(force.map(str::to_string));
    Some(Command {
        argv: Script { name, text, args }.argv(),
        user,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_arguments_never_script_text() {
        let kind = DumpKind::Postgres {
            db: Some("app".into()),
        };
        let c = command(&kind, Step::Load(true), Some("app2")).unwrap();
        assert_eq!(c.user, Some("postgres"));
        assert_eq!(&c.argv[3..], ["dockyard-postgres", "load", "app2", "force"]);
        assert!(!c.argv[2].contains("app2"));
        let exec = DumpKind::Exec {
            command: "x".into(),
        };
        assert!(command(&exec, Step::Probe, None).is_none());
        assert_eq!(command(&exec, Step::Dump, None).unwrap().argv[2], "x");
    }
}
