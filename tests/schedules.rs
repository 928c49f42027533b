//! Schedules as operators write them: crontab's five fields and `@daily` read in the host's time
//! zone (`TZ`) or the job's `timezone`, the daemon saying each next run in that zone, and
//! `catch_up` running a job once when the daemon starts after a missed run; `config check` saying
//! each next run with its weekday; a bad schedule (or any TOML error) shown where it is in the file,
//! with the forms dockyard accepts. (Daylight saving days are checked with a fixed clock in
//! `src/schedule.rs`.)

mod common;

use std::path::Path;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use common::daemon::Daemon;
use common::{dest_dir, dockyard, App};
use serde_json::Value;

#[test]
fn the_daemon_reads_schedules_in_the_host_zone_or_the_jobs_and_says_each_next_run_in_it() {
    let app = App::running("tz", &["/srv/media"]);
    let (tmp, dest) = dest_dir();
    let state = tmp.path().join("state");
    let cfg = common::local_config(
        tmp.path(),
        &dest,
        &format!(
            "[jobs.crontab]\ncontainer = \"{c}\"\ndestinations = [\"local\"]\nschedule = \"30 2 * * *\"\n\
             [jobs.tokyo]\ncontainer = \"{c}\"\ndestinations = [\"local\"]\nschedule = \"@daily\"\ntimezone = \"Asia/Tokyo\"\n",
            c = app.name
        ),
    );
    let d = Daemon::start(
        &cfg,
        &[
            ("TZ", "America/New_York"),
            ("DOCKYARD_STATE_DIR", state.to_str().unwrap()),
        ],
    );
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..2 {
        let e = d.next();
        assert_eq!(e["type"], "scheduled", "{e}");
        seen.insert(e["job"].as_str().unwrap().to_string(), e);
    }
    let rest = d.stop();
    assert!(rest.is_empty(), "nothing ran: {rest:?}");
    for (job, zone, wall) in [
        ("crontab", "America/New_York", "T02:30:00-0"),
        ("tokyo", "Asia/Tokyo", "T00:00:00+09:00"),
    ] {
        let e = &seen[job];
        assert_eq!(e["timezone"], zone, "{e}");
        let local = e["next_local"].as_str().unwrap();
        assert!(local.contains(wall), "{job}: {e}");
        // The UTC time and the wall clock are the same instant, within the next day.
        let utc: DateTime<Utc> = e["next"].as_str().unwrap().parse().unwrap();
        let wall_clock = DateTime::parse_from_rfc3339(local).unwrap();
        assert_eq!(utc, wall_clock, "{e}");
        let ahead = utc - Utc::now();
        assert!(
            ahead > chrono::Duration::zero() && ahead <= chrono::Duration::days(1),
            "{e}"
        );
    }
    assert!(
        !dest.exists() || std::fs::read_dir(&dest).unwrap().next().is_none(),
        "a job ran"
    );
}

/// Writes job `job`'s last-run record as the daemon does.
fn last_ran(state: &Path, job: &str, at: DateTime<Utc>) {
    std::fs::create_dir_all(state.join("last-run")).unwrap();
    std::fs::write(state.join("last-run").join(job), at.to_rfc3339()).unwrap();
}

#[test]
fn catch_up_runs_a_missed_job_once_at_start_and_only_that_job() {
    let app = App::running("catchup", &["/srv/media"]);
    app.sh("echo photo > /srv/media/a.jpg");
    let (tmp, dest) = dest_dir();
    let state = tmp.path().join("state");
    // Both yearly jobs last ran two years ago, so the daemon was down through a run of each;
    // only the `catch_up` one runs now. A third, with no record, just starts its record.
    let yearly = "schedule = \"0 0 1 1 *\"\n";
    let cfg = common::local_config(
        tmp.path(),
        &dest,
        &format!(
            "[jobs.caught]\ncontainer = \"{c}\"\ndestinations = [\"local\"]\n{yearly}catch_up = true\ntags = [\"caught\"]\n\
             [jobs.missed]\ncontainer = \"{c}\"\ndestinations = [\"local\"]\n{yearly}tags = [\"missed\"]\n\
             [jobs.fresh]\ncontainer = \"{c}\"\ndestinations = [\"local\"]\n{yearly}catch_up = true\ntags = [\"fresh\"]\n",
            c = app.name
        ),
    );
    let two_years_ago = Utc::now() - chrono::Duration::days(730);
    last_ran(&state, "caught", two_years_ago);
    last_ran(&state, "missed", two_years_ago);
    let d = Daemon::start(&cfg, &[("DOCKYARD_STATE_DIR", state.to_str().unwrap())]);
    let mut events = Vec::new();
    loop {
        let e = d.next();
        let done = e["type"] == "job";
        events.push(e);
        if done {
            break;
        }
    }
    // After the run, the job is scheduled again.
    let again = d.next();
    assert_eq!(
        (&again["type"], &again["job"]),
        (&"scheduled".into(), &"caught".into())
    );
    events.extend(d.stop());
    let ran: Vec<&Value> = events.iter().filter(|e| e["type"] == "job").collect();
    assert_eq!(ran.len(), 1, "{events:?}");
    assert_eq!(
        (&ran[0]["job"], &ran[0]["ok"]),
        (&"caught".into(), &true.into()),
        "{events:?}"
    );

    let listed = common::backups(
        &common::dockyard(&["list", "--to", dest.to_str().unwrap(), "--json"]).ok(),
    );
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["tags"], serde_json::json!(["caught"]));
    // The run is recorded; the fresh job's record now starts; the other stays as it was.
    let read = |job: &str| {
        std::fs::read_to_string(state.join("last-run").join(job))
            .ok()
            .map(|t| t.trim().parse::<DateTime<Utc>>().unwrap())
    };
    let recent =
        |t: Option<DateTime<Utc>>| t.is_some_and(|t| Utc::now() - t < chrono::Duration::minutes(5));
    assert!(recent(read("caught")) && recent(read("fresh")));
    assert_eq!(
        read("missed").map(|t| t.timestamp()),
        Some(two_years_ago.timestamp())
    );
}

#[test]
fn config_check_says_each_next_run_with_its_weekday_in_the_jobs_zone() {
    let app = App::created("weekday", &["/srv/media"]);
    let (tmp, dest) = dest_dir();
    let cfg = common::local_config(
        tmp.path(),
        &dest,
        &format!(
            "[jobs.media]\ncontainer = \"{}\"\ndestinations = [\"local\"]\nschedule = \"30 2 5 12 *\"\ntimezone = \"Europe/Berlin\"\n",
            app.name
        ),
    );
    let out = dockyard(&["config", "check", "--config", cfg.to_str().unwrap()]).ok();
    // The next 5 December, 02:30 in Berlin (2026-12-05 is a Saturday).
    let berlin = chrono_tz::Europe::Berlin;
    let now = Utc::now().with_timezone(&berlin);
    let at = |year| berlin.with_ymd_and_hms(year, 12, 5, 2, 30, 0).unwrap();
    let next = if at(now.year()) > now {
        at(now.year())
    } else {
        at(now.year() + 1)
    };
    let want = next
        .format("next %a %Y-%m-%d 02:30 Europe/Berlin")
        .to_string();
    assert!(out.contains(&want), "no {want:?} in:\n{out}");
}

/// `config check` of a file whose job `media` has `line` added.
fn check_with(line: &str) -> common::Run {
    let (tmp, dest) = dest_dir();
    let cfg = common::local_config(
        tmp.path(),
        &dest,
        &format!("[jobs.media]\ncontainer = \"web\"\ndestinations = [\"local\"]\n{line}\n"),
    );
    dockyard(&["config", "check", "--config", cfg.to_str().unwrap()])
}

#[test]
fn a_bad_schedule_is_refused_with_the_forms_dockyard_accepts() {
    for bad in ["@dayly", "61 2 * * *", "30 2 * *", "30 2 * * mon-fry"] {
        let r = check_with(&format!("schedule = \"{bad}\""));
        assert_eq!(r.code, 2, "{bad}: {}", r.stderr);
        for form in [
            "\"30 2 * * *\"",
            "\"0 30 2 * * *\"",
            "@yearly",
            "@monthly",
            "@weekly",
            "@daily",
            "@hourly",
        ] {
            assert!(r.stderr.contains(form), "{bad}: no {form} in: {}", r.stderr);
        }
    }
}

#[test]
fn toml_errors_keep_their_snippet_on_its_own_lines() {
    let r = check_with("level = \"high\"");
    assert_eq!(r.code, 2, "{}", r.stderr);
    let lines: Vec<&str> = r.stderr.lines().collect();
    // `N | level = "high"`, then the carets under the value, each on its own line.
    let at = lines
        .iter()
        .position(|l| {
            l.ends_with("| level = \"high\"")
                && l.trim_start().starts_with(|c: char| c.is_ascii_digit())
        })
        .unwrap_or_else(|| panic!("no line of the file in:\n{}", r.stderr));
    assert!(
        lines[at + 1].trim_start().starts_with('|') && lines[at + 1].ends_with("^^^^^^"),
        "{}",
        r.stderr
    );
    assert!(
        lines[0].starts_with("dockyard: error: config file ") && lines[0].contains("line "),
        "{}",
        r.stderr
    );
}
