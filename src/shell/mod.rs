//! The shell scripts helper containers run, as files included at build time. Each takes its
//! values as arguments (`sh -c <script> <name> <arg>...`) and never has one interpolated into its
//! text, so no value from a volume, a manifest or the command line can become shell code.

/// A script and the arguments for one run of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// Its name, shown as `$0` in its messages.
    pub name: &'static str,
    /// Its text.
    pub text: &'static str,
    /// Its arguments.
    pub args: Vec<String>,
}

impl Script {
    /// The command line that runs it: `/bin/sh -c <text> <name> <args>...`.
    pub fn argv(&self) -> Vec<String> {
        let mut argv = vec![
            "/bin/sh".to_string(),
            "-c".to_string(),
            self.text.to_string(),
            self.name.to_string(),
        ];
        argv.extend(self.args.iter().cloned());
        argv
    }
}

/// The swap step of a restore and the recovery of an interrupted one (see the file's header).
pub const RESTORE: &str = include_str!("restore.sh");
/// Locks a log directory, rotates due files and lists rotated ones.
pub const LOGS_BEGIN: &str = include_str!("logs-begin.sh");
/// Deletes shipped log files that did not change, records them, releases the lock.
pub const LOGS_FINISH: &str = include_str!("logs-finish.sh");

/// Lists the files the processes of a container hold open (see the file's header).
pub const HELD_OPEN: &str = include_str!("held-open.sh");

/// An SSH destination's operations (see the file's header).
pub const REMOTE: &str = include_str!("remote.sh");

/// `remote.sh OP DIR ARG...`.
pub fn remote(op: &str, dir: &str, args: &[&str]) -> Script {
    let mut all = vec![op.to_string(), dir.to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    Script {
        name: "dockyard-remote",
        text: REMOTE,
        args: all,
    }
}

/// `restore.sh MODE ARG...` (see the file's header for each mode's arguments).
pub fn restore(mode: &str, args: Vec<String>) -> Script {
    let mut all = vec![mode.to_string()];
    all.extend(args);
    Script {
        name: "dockyard-restore",
        text: RESTORE,
        args: all,
    }
}

/// PostgreSQL's dump, probe and load steps (see the file's header).
pub const DB_POSTGRES: &str = include_str!("db-postgres.sh");
/// MySQL's and MariaDB's dump, probe and load steps (see the file's header).
pub const DB_MYSQL: &str = include_str!("db-mysql.sh");
/// SQLite's dump, probe and load steps (see the file's header).
pub const DB_SQLITE: &str = include_str!("db-sqlite.sh");
