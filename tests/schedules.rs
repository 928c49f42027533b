//! Schedules as operators write them: crontab's five fields and `@daily` read in the host's time
//! zone (`TZ`) or the job's `timezone`, the daemon saying each next run in that zone, and
//! `catch_up` running a job once when the daemon starts after a missed run. (Daylight saving
//! days are checked with a fixed clock in `src/schedule.rs`.)

mod common;

use std::path::Path;

use chrono::{DateTime, Utc};
use common::daemon::Daemon;
use common::{dest_dir, App};
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
