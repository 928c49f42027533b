//! When a scheduled job runs: its cron schedule read in its time zone (the host's by default, as
//! cron does), the next run after an instant, and whether a run was missed between two instants
//! (for `catch_up`). Daylight saving time follows cron: a time skipped by the spring change runs
//! once, right after the change; a time repeated in autumn runs once.

use std::fmt;

use chrono::{DateTime, Local, SecondsFormat, Timelike, Utc};
use chrono_tz::Tz;

use crate::values::{Schedule, TimeZone};

/// The zone a schedule is read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// A named IANA zone.
    Named(Tz),
    /// The host's zone when it has no IANA name dockyard knows (e.g. a POSIX `TZ` rule).
    Local,
}

impl Zone {
    /// The zone configured, or the host's (`TZ`, then `/etc/localtime`).
    pub fn or_host(configured: Option<TimeZone>) -> Zone {
        configured.map_or_else(host_zone, |z| Zone::Named(z.0))
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Zone::Named(tz) => f.write_str(tz.name()),
            Zone::Local => f.write_str("local time"),
        }
    }
}

/// The host's zone, as cron reads it: `TZ` if set, else the zone `/etc/localtime` names.
fn host_zone() -> Zone {
    let named = std::env::var("TZ")
        .ok()
        .filter(|v| !v.is_empty())
        .map(|v| v.trim_start_matches(':').to_string())
        .or_else(|| iana_time_zone::get_timezone().ok())
        .and_then(|name| name.parse::<Tz>().ok());
    named.map_or(Zone::Local, Zone::Named)
}

/// A schedule in its zone.
#[derive(Debug, Clone)]
pub struct Timing {
    /// The cron expression.
    pub schedule: Schedule,
    /// The zone it is read in.
    pub zone: Zone,
}

impl Timing {
    /// The first run strictly after `after`; `None` if the schedule never fires again.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let cron = self.schedule.cron();
        match self.zone {
            Zone::Named(tz) => cron
                .find_next_occurrence(&after.with_timezone(&tz), false)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
            Zone::Local => cron
                .find_next_occurrence(&after.with_timezone(&Local), false)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
        }
    }

    /// Whether a run fell due after `last` and no later than `now`.
    pub fn missed(&self, last: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self.next_after(last).is_some_and(|t| t <= now)
    }

    /// `at` as a person reads the zone's wall clock, weekday first: `Sat 2026-12-05 02:30
    /// Europe/Berlin` (with seconds when they are not zero; the host's unnamed zone as `local
    /// time` with its offset).
    pub fn wall(&self, at: DateTime<Utc>) -> String {
        fn clock<Z: chrono::TimeZone>(t: DateTime<Z>) -> String
        where
            Z::Offset: fmt::Display,
        {
            let format = if t.second() == 0 {
                "%a %Y-%m-%d %H:%M"
            } else {
                "%a %Y-%m-%d %H:%M:%S"
            };
            t.format(format).to_string()
        }
        match self.zone {
            Zone::Named(tz) => format!("{} {}", clock(at.with_timezone(&tz)), tz.name()),
            Zone::Local => {
                let t = at.with_timezone(&Local);
                format!("{} local time ({})", clock(t), t.format("%:z"))
            }
        }
    }

    /// `at` as the zone's wall clock, RFC 3339 with its offset.
    pub fn local(&self, at: DateTime<Utc>) -> String {
        match self.zone {
            Zone::Named(tz) => at
                .with_timezone(&tz)
                .to_rfc3339_opts(SecondsFormat::Secs, false),
            Zone::Local => at
                .with_timezone(&Local)
                .to_rfc3339_opts(SecondsFormat::Secs, false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(expr: &str, zone: &str) -> Timing {
        Timing {
            schedule: expr.parse().unwrap(),
            zone: Zone::Named(zone.parse().unwrap()),
        }
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// Every run between two instants, in the zone's wall clock.
    fn runs(t: &Timing, from: &str, to: &str) -> Vec<String> {
        let (mut at, end) = (utc(from), utc(to));
        let mut out = Vec::new();
        while let Some(next) = t.next_after(at).filter(|n| *n <= end) {
            out.push(t.local(next));
            at = next;
        }
        out
    }

    #[test]
    fn a_job_in_the_spring_gap_runs_once_right_after_it() {
        // Berlin skips 02:00-03:00 on 2026-03-29.
        let t = timing("30 2 * * *", "Europe/Berlin");
        assert_eq!(
            runs(&t, "2026-03-27T12:00:00Z", "2026-03-30T12:00:00Z"),
            [
                "2026-03-28T02:30:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-30T02:30:00+02:00"
            ]
        );
    }

    #[test]
    fn a_job_in_the_repeated_autumn_hour_runs_once() {
        // Berlin repeats 02:00-03:00 on 2026-10-25.
        let t = timing("30 2 * * *", "Europe/Berlin");
        assert_eq!(
            runs(&t, "2026-10-24T12:00:00Z", "2026-10-26T12:00:00Z"),
            ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]
        );
    }

    #[test]
    fn schedules_are_read_in_their_zone_in_every_dialect() {
        let from = "2026-11-28T12:00:00Z";
        let next = |expr: &str, zone: &str| {
            let t = timing(expr, zone);
            t.local(t.next_after(utc(from)).unwrap())
        };
        assert_eq!(
            next("30 2 * * *", "America/New_York"),
            "2026-11-29T02:30:00-05:00"
        );
        assert_eq!(next("@daily", "Asia/Tokyo"), "2026-11-29T00:00:00+09:00");
        assert_eq!(next("@hourly", "UTC"), "2026-11-28T13:00:00+00:00");
        // Six fields keep dockyard 0.1.0's meaning: day of week 1 is Sunday (2026-11-29).
        assert_eq!(next("0 0 3 * * 1", "UTC"), "2026-11-29T03:00:00+00:00");
        // Five fields are a crontab's: 1 is Monday (2026-11-30).
        assert_eq!(next("0 3 * * 1", "UTC"), "2026-11-30T03:00:00+00:00");
    }

    #[test]
    fn the_next_run_reads_with_its_weekday_in_its_zone() {
        let from = utc("2026-11-28T12:00:00Z");
        let wall = |expr: &str, zone: &str| {
            let t = timing(expr, zone);
            t.wall(t.next_after(from).unwrap())
        };
        assert_eq!(
            wall("30 2 5 12 *", "Europe/Berlin"),
            "Sat 2026-12-05 02:30 Europe/Berlin"
        );
        // Five fields: day of week 5 is Friday, in the zone of the schedule.
        assert_eq!(
            wall("30 20 * * 5", "America/New_York"),
            "Fri 2026-12-04 20:30 America/New_York"
        );
        assert_eq!(wall("15 0 3 * * *", "UTC"), "Sun 2026-11-29 03:00:15 UTC");
    }

    #[test]
    fn a_run_is_missed_only_when_one_fell_due_in_between() {
        let t = timing("0 3 * * *", "UTC");
        assert!(t.missed(utc("2026-11-27T04:00:00Z"), utc("2026-11-28T03:00:00Z")));
        assert!(!t.missed(utc("2026-11-28T03:00:00Z"), utc("2026-11-28T12:00:00Z")));
    }
}
