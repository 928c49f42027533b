//! Who owns a piece of work that may be left behind (a helper container, a temp file, an upload
//! marker, a restore journal, a lock), and the one rule for deciding that its owner is gone.
//!
//! An owner is a process on a host: its host name, pid, the kernel's start time of that process
//! (so a reused pid, or dockyard restarted as PID 1 of its own container, is not mistaken for the
//! original), a random run id, and when the work began. On the same host the answer is exact; for
//! another host it cannot be checked, so callers pass how long such work may take.

use std::fmt;
use std::sync::OnceLock;

use chrono::Utc;

/// The process that began some work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Host name (`/proc/sys/kernel/hostname`).
    pub host: String,
    /// Process id on that host.
    pub pid: u32,
    /// The process's start time in clock ticks since boot (`/proc/<pid>/stat` field 22); 0 if unknown.
    pub start: u64,
    /// A random id for this run of dockyard.
    pub run: String,
    /// When the work began, in seconds since the epoch.
    pub since: i64,
}

/// What is known about an owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// The process still runs (same host, same pid, same start time).
    Alive,
    /// The process is gone (same host), or its work is older than the caller's limit (another host).
    Gone,
    /// Another host, within the caller's limit: it may still be working.
    Unknown,
}

impl Owner {
    /// This process, now.
    pub fn current() -> Owner {
        Owner {
            since: Utc::now().timestamp(),
            ..this_process().clone()
        }
    }

    /// Whether the owner still runs; work from another host counts as gone once older than
    /// `foreign_limit_secs`.
    pub fn liveness(&self, foreign_limit_secs: i64) -> Liveness {
        if self.host == this_process().host {
            return if process_matches(self.pid, self.start) {
                Liveness::Alive
            } else {
                Liveness::Gone
            };
        }
        if Utc::now().timestamp() - self.since > foreign_limit_secs {
            Liveness::Gone
        } else {
            Liveness::Unknown
        }
    }

    /// Whether this owner is the current process.
    pub fn is_me(&self) -> bool {
        let me = this_process();
        self.host == me.host && self.pid == me.pid && self.run == me.run
    }

    /// Parses the form [`fmt::Display`] writes: `<host> <pid> <start> <run> <since>`.
    pub fn parse(text: &str) -> Option<Owner> {
        let mut parts = text.split_whitespace();
        let owner = Owner {
            host: parts.next()?.to_string(),
            pid: parts.next()?.parse().ok()?,
            start: parts.next()?.parse().ok()?,
            run: parts.next()?.to_string(),
            since: parts.next()?.parse().ok()?,
        };
        let plain = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        };
        (parts.next().is_none() && plain(&owner.host) && plain(&owner.run)).then_some(owner)
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {}",
            self.host, self.pid, self.start, self.run, self.since
        )
    }
}

/// This host's name, recorded on helpers, markers, journals and manifests.
pub fn hostname() -> String {
    this_process().host.clone()
}

/// This run's random id.
pub fn run_id() -> String {
    this_process().run.clone()
}

fn this_process() -> &'static Owner {
    static ME: OnceLock<Owner> = OnceLock::new();
    ME.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty() && !h.contains(char::is_whitespace))
            .unwrap_or_else(|| "unknown".into());
        let pid = std::process::id();
        Owner {
            host,
            pid,
            start: start_time(pid).unwrap_or(0),
            run: format!("{:016x}", rand::random::<u64>()),
            since: Utc::now().timestamp(),
        }
    })
}

/// Whether process `pid` runs and, if `start` is known, started at that time.
fn process_matches(pid: u32, start: u64) -> bool {
    match start_time(pid) {
        None => false,
        Some(now) => start == 0 || now == start,
    }
}

/// The start time of process `pid` in clock ticks since boot, or `None` if it does not exist.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // Fields after the name start at field 3; the start time is field 22.
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        let me = Owner::current();
        let back = Owner::parse(&me.to_string()).unwrap();
        assert_eq!(back, me);
        assert!(back.is_me());
        assert_eq!(back.liveness(0), Liveness::Alive);
    }

    #[test]
    fn a_reused_pid_or_a_dead_one_is_gone() {
        let mut other = Owner::current();
        other.start += 1; // same pid, different process (e.g. PID 1 of a restarted container)
        assert_eq!(other.liveness(0), Liveness::Gone);
        let mut dead = Owner::current();
        dead.pid = u32::MAX - 7;
        assert_eq!(dead.liveness(0), Liveness::Gone);
    }

    #[test]
    fn another_host_is_unknown_until_the_limit() {
        let mut far = Owner::current();
        far.host = "elsewhere".into();
        assert_eq!(far.liveness(3600), Liveness::Unknown);
        far.since -= 7200;
        assert_eq!(far.liveness(3600), Liveness::Gone);
    }

    #[test]
    fn refuses_odd_text() {
        for bad in [
            "",
            "h 1 2 r",
            "h x 2 r 3",
            "h 1 2 r 3 extra",
            "h;rm 1 2 r 3",
        ] {
            assert!(Owner::parse(bad).is_none(), "{bad}");
        }
    }
}
