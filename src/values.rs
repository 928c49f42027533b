//! Value types shared by the command line (clap) and the config file (serde), each parsed and
//! checked in one place, and every default the program has. A leaf module: it imports nothing
//! from the rest of dockyard, so `cli`, `config`, `retention` and `settings` can all use it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Defaults, in one place. The command line's `--help` and the config file's docs show these.
pub mod defaults {
    /// Where backups go when neither `--to`/`--from` nor `DOCKYARD_DEST` says otherwise.
    pub const DEST: &str = "/var/backups/dockyard";
    /// Where the config is read from when neither `--config` nor `DOCKYARD_CONFIG` says.
    pub const CONFIG: &str = "/etc/dockyard/dockyard.toml";
    /// zstd level of backups and shipped logs.
    pub const LEVEL: i32 = 3;
    /// Seconds the engine waits for a container to stop gracefully.
    pub const STOP_TIMEOUT: u32 = 30;
    /// The log directory in the container.
    pub const LOG_DIR: &str = "/srv/logs";
    /// Which files in it are logs.
    pub const LOG_PATTERN: &str = "*.log";
    /// How the app is told to reopen its logs.
    pub const REOPEN: &str = "signal:USR1";
    /// Seconds between the reopen and shipping.
    pub const SETTLE: &str = "1";
    /// How long pre-restore safety backups are kept, in seconds: a week.
    pub const SAFETY_KEEP_SECS: i64 = 7 * 86400;
}

/// Implements `Deserialize` through `FromStr`, so a value in the config file is checked exactly
/// as the same value on the command line, with the same message.
macro_rules! deserialize_from_str {
    ($($t:ty),*) => {$(
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}

/// A byte count: `10M`, `1G`, `512k` (binary units) or plain bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

impl FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Size, String> {
        parse_size::Config::new()
            .with_binary()
            .parse_size(s.trim())
            .map(Size)
            .map_err(|_| format!("size {s:?}: use a number with k, M or G, e.g. 10M"))
    }
}

/// A length of time: `45s`, `30m`, `12h`, `7d`, `2w`, or combined (`1d 12h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Age(pub Duration);

impl Age {
    /// Whole seconds.
    pub fn secs(self) -> u64 {
        self.0.as_secs()
    }
}

impl FromStr for Age {
    type Err = String;
    fn from_str(s: &str) -> Result<Age, String> {
        let bad = || format!("age {s:?}: use a number with s, m, h, d or w, e.g. 1h or 30d");
        let t = s.trim();
        // A bare number is ambiguous (seconds? days?): ask for a unit.
        if t.is_empty() || t.ends_with(|c: char| c.is_ascii_digit()) {
            return Err(bad());
        }
        humantime::parse_duration(t).map(Age).map_err(|_| bad())
    }
}

/// An absolute path inside a container, normalised: no `.`/`..`, no trailing or doubled slashes,
/// not `/` itself.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContainerPath(String);

impl ContainerPath {
    /// The normalised path.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ContainerPath {
    type Err = String;
    fn from_str(p: &str) -> Result<ContainerPath, String> {
        if !p.starts_with('/') {
            return Err(format!(
                "path {p:?}: give an absolute path inside the container, e.g. /srv/media"
            ));
        }
        let parts: Vec<&str> = p.split('/').filter(|c| !c.is_empty()).collect();
        if parts.iter().any(|c| *c == "." || *c == "..") {
            return Err(format!("path {p:?}: `.` and `..` are not allowed"));
        }
        if parts.is_empty() {
            return Err(format!(
                "path {p:?}: give a mount point such as /srv/media, not the root"
            ));
        }
        Ok(ContainerPath(format!("/{}", parts.join("/"))))
    }
}

/// The paths as strings, first occurrence kept when one is given twice.
pub fn unique_paths(paths: &[ContainerPath]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in paths {
        if !out.iter().any(|o| o == p.as_str()) {
            out.push(p.as_str().to_string());
        }
    }
    out
}

/// A backup tag: letters, digits and `. _ - :`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag(String);

impl Tag {
    /// The tag.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = String;
    fn from_str(t: &str) -> Result<Tag, String> {
        let ok = !t.is_empty()
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-:".contains(c));
        if ok {
            Ok(Tag(t.to_string()))
        } else {
            Err(format!("tag {t:?}: use letters, digits and . _ - : only"))
        }
    }
}

/// The tags as strings.
pub fn tag_strings(tags: &[Tag]) -> Vec<String> {
    tags.iter().map(|t| t.0.clone()).collect()
}

/// A log file glob: a plain name pattern (letters, digits, `. _ - * ? [ ]`), handed to the helper
/// script as an argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPattern(String);

impl LogPattern {
    /// The glob.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for LogPattern {
    type Err = String;
    fn from_str(p: &str) -> Result<LogPattern, String> {
        let ok = !p.is_empty()
            && !p.starts_with('.')
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-*?[]".contains(c));
        if ok {
            Ok(LogPattern(p.to_string()))
        } else {
            Err(format!(
                "pattern {p:?}: use a file name glob such as '*.log' (letters, digits, . _ - * ? [ ]; no / or spaces)"
            ))
        }
    }
}

/// A zstd level, 1 to 19.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level(pub i32);

impl Default for Level {
    fn default() -> Level {
        Level(defaults::LEVEL)
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Level, String> {
        match s.trim().parse::<i32>() {
            Ok(n) if (1..=19).contains(&n) => Ok(Level(n)),
            _ => Err(format!("level {s:?}: give a zstd level from 1 to 19")),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Level {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        n.to_string().parse().map_err(serde::de::Error::custom)
    }
}

/// A wait between 0 and 3600 seconds, fractions allowed (`0.5`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settle(pub Duration);

impl FromStr for Settle {
    type Err = String;
    fn from_str(s: &str) -> Result<Settle, String> {
        match s.trim().parse::<f64>() {
            Ok(secs) if (0.0..=3600.0).contains(&secs) => Ok(Settle(Duration::from_secs_f64(secs))),
            _ => Err(format!(
                "settle {s:?}: give seconds between 0 and 3600, e.g. 1 or 0.5"
            )),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Settle {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// TOML writes `1` and `1.5` differently; both are seconds.
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Secs {
            Whole(i64),
            Fraction(f64),
        }
        let text = match Secs::deserialize(d)? {
            Secs::Whole(n) => n.to_string(),
            Secs::Fraction(f) => f.to_string(),
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// How an S3 bucket is addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Addressing {
    /// `https://endpoint/bucket/key` (self-hosted stores: Garage, MinIO).
    Path,
    /// `https://bucket.endpoint/key` (AWS).
    Virtual,
}

/// Where a backup's tar is made and a restore's is unpacked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentMode {
    /// dockyard's own (static) binary runs inside the helper: it reads the volume directly and
    /// compresses there, so only compressed bytes leave the helper. Falls back to the engine's
    /// archive endpoint, saying why, when the binary cannot run there.
    #[default]
    Auto,
    /// Always the engine's archive endpoint (slower; the tar crosses the engine's API
    /// uncompressed).
    Never,
}

/// A cron schedule, in any of the dialects operators write:
/// - five fields, `min hour day-of-month month day-of-week`, as in a crontab (day of week 0-7,
///   0 and 7 are Sunday; a day-of-month and a day-of-week both given match either, as in cron);
/// - `@hourly`, `@daily` (`@midnight`), `@weekly`, `@monthly`, `@yearly` (`@annually`), in any case;
/// - six or seven fields with seconds first (and a year last), as dockyard 0.1.0 read them: day of
///   week 1-7 with 1 = Sunday, and both day fields must match.
///
/// Read by croner in the job's time zone (see `schedule`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    text: String,
    cron: croner::Cron,
}

impl Schedule {
    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parsed expression.
    pub fn cron(&self) -> &croner::Cron {
        &self.cron
    }
}

/// The forms a schedule may take, for every message that refuses one.
pub const SCHEDULE_FORMS: &str = "write five fields as in a crontab (minute hour day-of-month \
month day-of-week, e.g. \"30 2 * * *\"), six with seconds first (\"0 30 2 * * *\"; a seventh \
is the year), or one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly";

/// The `@` names a schedule may be, and what each means in croner's terms.
const SCHEDULE_NAMES: [(&str, &str); 7] = [
    ("@yearly", "@yearly"),
    ("@annually", "@annually"),
    ("@monthly", "@monthly"),
    ("@weekly", "@weekly"),
    ("@daily", "@daily"),
    // cron's other name for @daily, which croner does not know.
    ("@midnight", "@daily"),
    ("@hourly", "@hourly"),
];

impl FromStr for Schedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Schedule, String> {
        use croner::parser::{CronParser, Seconds};
        let text = s.trim();
        let fields = text.split_whitespace().count();
        let parser = if text.starts_with('@') || fields == 5 {
            CronParser::builder().seconds(Seconds::Disallowed).build()
        } else if fields == 6 || fields == 7 {
            CronParser::builder()
                .seconds(Seconds::Required)
                .alternative_weekdays(true)
                .dom_and_dow(true)
                .sloppy_ranges(true)
                .build()
        } else {
            return Err(format!(
                "schedule {s:?} has {fields} fields; {SCHEDULE_FORMS}"
            ));
        };
        let pattern = if text.starts_with('@') {
            SCHEDULE_NAMES
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(text))
                .map(|(_, pattern)| *pattern)
                .ok_or_else(|| {
                    format!("schedule {s:?} is not a name dockyard knows; {SCHEDULE_FORMS}")
                })?
        } else {
            text
        };
        let cron = parser
            .parse(pattern)
            .map_err(|e| format!("schedule {s:?}: {e}; {SCHEDULE_FORMS}"))?;
        Ok(Schedule {
            text: text.to_string(),
            cron,
        })
    }
}

/// A value that must never be printed (a webhook URL carrying its token, an SMTP URL with a
/// password): `Debug` and `Display` show `<secret>`; [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl FromStr for Secret {
    type Err = String;
    fn from_str(s: &str) -> Result<Secret, String> {
        Ok(Secret(s.to_string()))
    }
}

/// A time zone by its IANA name (`Europe/Berlin`, `America/New_York`, `UTC`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeZone(pub chrono_tz::Tz);

impl FromStr for TimeZone {
    type Err = String;
    fn from_str(s: &str) -> Result<TimeZone, String> {
        s.trim().parse::<chrono_tz::Tz>().map(TimeZone).map_err(|_| {
            format!("time zone {s:?} is not an IANA zone name; write e.g. \"Europe/Berlin\" or \"UTC\"")
        })
    }
}

deserialize_from_str!(
    Size,
    Age,
    ContainerPath,
    Tag,
    LogPattern,
    Schedule,
    TimeZone,
    Secret
);

impl fmt::Display for ContainerPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// zstd workers: one per core (zstd's `-T0`).
pub fn zstd_workers() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_ages_parse_with_units() {
        assert_eq!("10M".parse(), Ok(Size(10 << 20)));
        assert_eq!("512k".parse(), Ok(Size(512 << 10)));
        assert_eq!("100".parse(), Ok(Size(100)));
        assert!("ten".parse::<Size>().is_err() && "5X".parse::<Size>().is_err());
        assert_eq!("30d".parse::<Age>().map(Age::secs), Ok(30 * 86400));
        assert_eq!("1h".parse::<Age>().map(Age::secs), Ok(3600));
        assert_eq!("1d 12h".parse::<Age>().map(Age::secs), Ok(36 * 3600));
        assert_eq!("1h30m".parse::<Age>().map(Age::secs), Ok(5400));
        assert_eq!("2w".parse::<Age>().map(Age::secs), Ok(14 * 86400));
        assert_eq!("30days".parse::<Age>().map(Age::secs), Ok(30 * 86400));
        assert_eq!("1.5GiB".parse(), Ok(Size(3 << 29)));
        assert!("10MB".parse::<Size>().is_ok_and(|s| s.0 >= 10_000_000));
        for bad in ["", "5x", "h", "30"] {
            assert!(bad.parse::<Age>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn log_patterns_must_be_plain_globs() {
        assert!("*.log".parse::<LogPattern>().is_ok());
        assert!("access-[0-9].log".parse::<LogPattern>().is_ok());
        for bad in ["../x", "a b", "*.log;rm", ".hidden", "", "$(x)"] {
            assert!(bad.parse::<LogPattern>().is_err(), "{bad}");
        }
    }

    #[test]
    fn normalises_paths_and_names_bad_ones() {
        let got: Vec<ContainerPath> = ["/srv/media/", "//srv//logs", "/srv/media"]
            .iter()
            .map(|p| p.parse().unwrap())
            .collect();
        assert_eq!(unique_paths(&got), vec!["/srv/media", "/srv/logs"]);
        for bad in ["srv/media", "/srv/../etc", "/"] {
            let err = bad.parse::<ContainerPath>().unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
    }

    #[test]
    fn rejects_odd_tags_levels_settles_and_schedules() {
        assert!("pre-upgrade".parse::<Tag>().is_ok() && "v1.2".parse::<Tag>().is_ok());
        assert!("has space"
            .parse::<Tag>()
            .unwrap_err()
            .contains("has space"));
        assert!("0".parse::<Level>().is_err() && "20".parse::<Level>().is_err());
        assert_eq!("19".parse(), Ok(Level(19)));
        assert!("-1".parse::<Settle>().is_err() && "3601".parse::<Settle>().is_err());
        for good in [
            "0 15 2 * * *",
            "0 15 2 * * * 2030",
            "15 2 * * *",
            "*/10 * * * 1-5",
            "@daily",
            "@hourly",
            "@weekly",
            "@monthly",
            "0 0/15 * * * *",
        ] {
            assert!(good.parse::<Schedule>().is_ok(), "{good}");
        }
        assert!("2 * * *"
            .parse::<Schedule>()
            .unwrap_err()
            .contains("4 fields"));
        // Every refusal lists the forms that work.
        for bad in [
            "2 * * *",
            "0 99 2 * * *",
            "99 2 * * *",
            "@fortnightly",
            "@reboot",
        ] {
            let err = bad.parse::<Schedule>().unwrap_err();
            assert!(err.contains(SCHEDULE_FORMS), "{bad}: {err}");
        }
        // @midnight is cron's name for @daily.
        let (midnight, daily) = (
            "@midnight".parse::<Schedule>().unwrap(),
            "@daily".parse::<Schedule>().unwrap(),
        );
        assert_eq!(midnight.as_str(), "@midnight");
        assert!(midnight.cron() == daily.cron());
        assert!("Europe/Berlin".parse::<TimeZone>().is_ok());
        assert!("Mars/Olympus"
            .parse::<TimeZone>()
            .unwrap_err()
            .contains("IANA"));
    }

    #[test]
    fn the_file_is_checked_like_the_command_line() {
        #[derive(serde::Deserialize, Debug)]
        struct T {
            settle: Settle,
            level: Level,
            max_age: Age,
        }
        let bad: Result<T, _> = toml::from_str("settle = 5000.0\nlevel = 3\nmax_age = \"1d\"");
        let err = bad.unwrap_err().to_string();
        assert!(err.contains("between 0 and 3600"), "{err}");
        let bad: Result<T, _> = toml::from_str("settle = 1.0\nlevel = 30\nmax_age = \"1d\"");
        assert!(bad.unwrap_err().to_string().contains("1 to 19"));
        let good: T = toml::from_str("settle = 2\nlevel = 19\nmax_age = \"1d\"").unwrap();
        assert_eq!(
            (good.settle, good.level, good.max_age.secs()),
            (Settle(Duration::from_secs(2)), Level(19), 86400)
        );
    }
}
