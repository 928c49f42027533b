//! Who owns a piece of work that may be left behind (a helper container, a temp file, an upload
//! marker, a restore journal, a lock), and the one rule for deciding that its owner is gone.
//!
//! An owner is a process on a host: its host name, pid, the kernel's start time of that process
//! (so a reused pid, or dockyard restarted as PID 1 of its own container, is not mistaken for the
//! original), a random run id, when the work began, and its namespace: the boot and the PID
//! namespace its pid is counted in (two dockyards with one host name, one in a container of its
//! own, see different pids). In the same namespace the answer is exact; from the host's initial
//! PID namespace, which sees every process, a run in a container's is found by its pid there;
//! otherwise (another host, or a sibling container) it cannot be checked, so callers pass how long
//! such work may take.

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
    /// `<boot id>.<pid namespace>`: which boot of the host and which PID namespace `pid` is
    /// counted in (empty when unknown: dockyard 0.1.0's records).
    pub ns: String,
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
        let me = this_process();
        let too_old = Utc::now().timestamp() - self.since > foreign_limit_secs;
        let unknown = if too_old {
            Liveness::Gone
        } else {
            Liveness::Unknown
        };
        let exact = || {
            if process_matches(self.pid, self.start) {
                Liveness::Alive
            } else {
                Liveness::Gone
            }
        };
        if self.ns.is_empty() {
            // dockyard 0.1's records: the host name alone says whether it is this host.
            return if self.host == me.host {
                exact()
            } else {
                unknown
            };
        }
        if self.ns == me.ns {
            return exact();
        }
        let (boot, pidns) = self.ns.split_once('.').unwrap_or((&self.ns, ""));
        let my_boot = me.ns.split_once('.').map_or("", |(b, _)| b);
        if boot == my_boot {
            // This boot of this machine, whatever the host name (a container has its own): found
            // by its pid in its namespace when this process can see that one.
            return match find_in_namespace(pidns, self.pid, self.start) {
                Some(true) => Liveness::Alive,
                Some(false) => Liveness::Gone,
                None => unknown,
            };
        }
        // Another boot: of this host (it rebooted since, if the work began before) or of another.
        match boot_time() {
            Some(booted) if self.host == me.host && self.since < booted => Liveness::Gone,
            _ => unknown,
        }
    }

    /// Whether this owner is the current process.
    pub fn is_me(&self) -> bool {
        let me = this_process();
        self.host == me.host && self.pid == me.pid && self.run == me.run
    }

    /// Parses the form [`fmt::Display`] writes: `<host> <pid> <start> <run> <since> <ns>` (the
    /// namespace absent in records of dockyard 0.1.0 and of 0.2.0's development builds before
    /// issue 21).
    pub fn parse(text: &str) -> Option<Owner> {
        let mut parts = text.split_whitespace();
        let owner = Owner {
            host: parts.next()?.to_string(),
            pid: parts.next()?.parse().ok()?,
            start: parts.next()?.parse().ok()?,
            run: parts.next()?.to_string(),
            since: parts.next()?.parse().ok()?,
            ns: parts.next().unwrap_or_default().to_string(),
        };
        let plain = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        };
        let ns_ok = owner.ns.bytes().all(|b| b.is_ascii_hexdigit() || b == b'.');
        (parts.next().is_none() && plain(&owner.host) && plain(&owner.run) && ns_ok)
            .then_some(owner)
    }

    /// The owner for messages: `pid 123 on web1, since 2026-12-05T02:30:00Z`.
    pub fn describe(&self) -> String {
        format!(
            "pid {} on {}, since {}",
            self.pid,
            self.host,
            self.since_text()
        )
    }

    /// The owner's start, for messages: an RFC 3339 time in UTC.
    pub fn since_text(&self) -> String {
        chrono::DateTime::from_timestamp(self.since, 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| self.since.to_string())
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {} {}",
            self.host, self.pid, self.start, self.run, self.since, self.ns
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
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|b| b.trim().replace('-', ""))
            .unwrap_or_default();
        Owner {
            host,
            pid,
            start: start_time(pid).unwrap_or(0),
            run: format!("{:016x}", rand::random::<u64>()),
            since: Utc::now().timestamp(),
            ns: match pid_namespace("self") {
                Some(ns) if !boot.is_empty() => format!("{boot}.{ns:x}"),
                _ => String::new(),
            },
        }
    })
}

/// The PID namespace's inode of process `pid` (`self` for this one).
fn pid_namespace(pid: &str) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()?;
    let text = link.to_str()?;
    text.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
}

/// The kernel's initial PID namespace, which sees every process of the host.
const INITIAL_PID_NAMESPACE: u64 = 0xEFFF_FFFC;

/// Whether a process runs in PID namespace `ns` (hex inode) as pid `pid`, started at `start`:
/// `None` when this process cannot see that namespace's processes (it is not the host's initial
/// one).
fn find_in_namespace(ns: &str, pid: u32, start: u64) -> Option<bool> {
    let ns = u64::from_str_radix(ns, 16).ok()?;
    if pid_namespace("self")? != INITIAL_PID_NAMESPACE {
        return None;
    }
    let found = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .any(|e| {
            let name = e.file_name();
            let Some(p) = name
                .to_str()
                .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
            else {
                return false;
            };
            if pid_namespace(p) != Some(ns) {
                return false;
            }
            let inner = std::fs::read_to_string(format!("/proc/{p}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("NSpid:"))
                        .and_then(|l| l.split_whitespace().last()?.parse::<u32>().ok())
                });
            let started = p.parse().ok().and_then(start_time);
            inner == Some(pid) && started.is_some() && (start == 0 || started == Some(start))
        });
    Some(found)
}

/// When this host booted, in seconds since the epoch.
fn boot_time() -> Option<i64> {
    std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// Whether process `pid` runs and, if `start` is known, started at that time.
fn process_matches(pid: u32, start: u64) -> bool {
    match start_time(pid) {
        None => false,
        Some(now) => start == 0 || now == start,
    }
}

/// The start time of process `pid` in clock ticks since boot, or `None` if it does not exist or
/// has exited (a zombie not yet reaped is gone too).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // Fields after the name start at field 3 (the state); the start time is field 22.
    if matches!(fields.next(), Some("Z" | "X" | "x")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
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
        far.ns = "0.1".into(); // another machine's boot
                               // The same boot and namespace under another name (a container's own host name) is this
                               // very process.
        let mut renamed = Owner::current();
        renamed.host = "container-hostname".into();
        assert_eq!(renamed.liveness(3600), Liveness::Alive);
        assert_eq!(far.liveness(3600), Liveness::Unknown);
        far.since -= 7200;
        assert_eq!(far.liveness(3600), Liveness::Gone);
    }

    #[test]
    fn a_run_in_another_pid_namespace_is_found_by_its_pid_there() {
        let me = Owner::current();
        assert!(!me.ns.is_empty(), "boot id and PID namespace are known");
        // Another namespace of this boot: this test process, seen from a namespace that holds it
        // (from the initial one every process is visible), under its pid there.
        let mut other = me.clone();
        other.ns = format!("{}.{:x}", me.ns.split_once('.').unwrap().0, 0xdead_u64);
        other.since -= 10;
        // No process is in namespace 0xdead: from the initial namespace that is known for sure.
        let seen = pid_namespace("self") == Some(INITIAL_PID_NAMESPACE);
        assert_eq!(
            other.liveness(3600),
            if seen {
                Liveness::Gone
            } else {
                Liveness::Unknown
            }
        );
        // Begun before this host booted, in another boot: gone.
        let mut rebooted = me.clone();
        rebooted.ns = format!("0.{:x}", INITIAL_PID_NAMESPACE);
        rebooted.since = 0;
        assert_eq!(rebooted.liveness(i64::MAX), Liveness::Gone);
        // dockyard 0.1.0's records (no namespace) are judged as before.
        let legacy = Owner::parse("h 1 0 r 0").unwrap();
        assert!(legacy.ns.is_empty());
    }

    #[test]
    fn refuses_odd_text() {
        for bad in [
            "",
            "h 1 2 r",
            "h x 2 r 3",
            "h 1 2 r 3 ns extra",
            "h 1 2 r 3 not-hex",
            "h;rm 1 2 r 3",
        ] {
            assert!(Owner::parse(bad).is_none(), "{bad}");
        }
    }
}
