//! Log rotation and shipping against a real engine: an app writing numbered lines at thousands per
//! second is rotated and shipped 50 times under load, and every line must end up exactly once in
//! the shipped files plus what is left in the volume. Also copytruncate (loss reported), and a ship
//! that fails (nothing deleted; the next run ships it).

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use common::peers::{pairs, var, S3};
use common::{docker, dockyard, dockyard_env, unique, App};

/// PID 1 of the app: appends numbered lines to /srv/logs/app.log; with `reopen`, reopens it on USR1.
fn writer(reopen: bool) -> String {
    let trap = if reopen {
        "trap 'exec >>/srv/logs/app.log' USR1; "
    } else {
        ""
    };
    format!(
        "{trap}exec >>/srv/logs/app.log; i=0; while :; do i=$((i+1)); echo $i; \
         [ $((i % 20)) = 0 ] && usleep 2000; done"
    )
}

/// A running app whose PID 1 is the writer, with a log volume.
fn app(what: &str, reopen: bool) -> App {
    App::running_sh(what, &["-v", "/srv/logs"], &writer(reopen))
}

/// Waits until the app's writer has written its first lines.
fn writing(app: &App) {
    common::wait_until(
        "the app writes its log",
        std::time::Duration::from_secs(60),
        || {
            app.sh("wc -l < /srv/logs/app.log")
                .trim()
                .parse::<u64>()
                .unwrap_or(0)
                > 100
        },
    );
}

/// Every shipped object under `dest/logs/<container>/`, decompressed, as lines.
fn shipped_lines(dest: &Path, container: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut stack = vec![dest.join("logs").join(container)];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "zst") {
                let mut text = String::new();
                zstd::stream::read::Decoder::new(std::fs::File::open(&p).unwrap())
                    .unwrap()
                    .read_to_string(&mut text)
                    .unwrap();
                lines.extend(text.lines().map(str::to_string));
            }
        }
    }
    lines
}

/// The contents of every file left in the app's /srv/logs (the container may be stopped).
fn volume_lines(app: &App) -> (Vec<String>, Vec<String>) {
    let out = std::process::Command::new("docker")
        .args(["cp", &format!("{}:/srv/logs", app.name), "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut archive = tar::Archive::new(&out.stdout[..]);
    let (mut names, mut lines) = (Vec::new(), Vec::new());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        if entry.header().entry_type().is_file() && !path.contains("/.dockyard/") {
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            lines.extend(text.lines().map(str::to_string));
            names.push(path);
        }
    }
    (names, lines)
}

/// Counts lost and duplicated line numbers in `lines` (numbers 1..=max written).
fn audit(lines: &[String]) -> (u64, u64, u64) {
    let mut seen: BTreeMap<u64, u32> = BTreeMap::new();
    for l in lines {
        let n: u64 = l
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("garbled line {l:?}"));
        *seen.entry(n).or_default() += 1;
    }
    let max = seen.keys().next_back().copied().unwrap_or(0);
    let lost = (1..=max).filter(|n| !seen.contains_key(n)).count() as u64;
    let dup: u64 = seen.values().map(|c| (*c as u64).saturating_sub(1)).sum();
    (max, lost, dup)
}

/// Prints a measurement and appends it to target/tmp/logs-report.txt, which .ci/run shows.
fn report(line: &str) {
    eprintln!("{line}");
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(Path::new(env!("CARGO_TARGET_TMPDIR")).join("logs-report.txt"))
    {
        let _ = writeln!(f, "{line}");
    }
}

fn started_at(app: &App) -> String {
    docker(&[
        "inspect",
        "-f",
        "{{.State.StartedAt}} {{.RestartCount}}",
        &app.name,
    ])
}

#[test]
fn fifty_rotate_and_ship_cycles_under_load_lose_and_duplicate_nothing() {
    let app = app("logs-usr1", true);
    let started = started_at(&app);
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("dest");
    let d = dest.to_str().unwrap();
    writing(&app);
    for cycle in 0..50 {
        let r = dockyard(&["logs", &app.name, "--to", d, "--settle", "0.2", "--json"]);
        assert_eq!(r.code, 0, "cycle {cycle}: {}", r.stderr);
    }
    assert_eq!(started_at(&app), started, "the app restarted");
    docker(&["kill", &app.name]);
    let shipped = shipped_lines(&dest, &app.name);
    let (left_files, left) = volume_lines(&app);
    let mut all = shipped.clone();
    all.extend(left);
    let (max, lost, dup) = audit(&all);
    report(&format!("signal:USR1, 50 cycles: {max} lines written, {} shipped, lost {lost}, duplicated {dup}; left in the volume: {left_files:?}", shipped.len()));
    assert!(max > 10_000, "the writer wrote only {max} lines");
    assert!(
        shipped.len() as u64 > max / 2,
        "most lines should have shipped"
    );
    assert_eq!((lost, dup), (0, 0), "lines lost or duplicated");
    assert!(app.helpers().is_empty());
}

#[test]
fn copytruncate_with_a_writer_that_cannot_reopen_reports_its_losses() {
    let app = app("logs-ct", false);
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("dest");
    let d = dest.to_str().unwrap();
    writing(&app);
    for cycle in 0..20 {
        let r = dockyard(&[
            "logs",
            &app.name,
            "--to",
            d,
            "--reopen",
            "copytruncate",
            "--settle",
            "0",
        ]);
        assert_eq!(r.code, 0, "cycle {cycle}: {}", r.stderr);
    }
    docker(&["kill", &app.name]);
    let mut all = shipped_lines(&dest, &app.name);
    all.extend(volume_lines(&app).1);
    let (max, lost, dup) = audit(&all);
    let report = format!(
        "copytruncate, 20 cycles: {max} lines written, lost {lost} ({:.4}%), duplicated {dup}\n",
        lost as f64 * 100.0 / max.max(1) as f64
    );
    self::report(report.trim_end());
    assert!(max > 5_000, "the writer wrote only {max} lines");
    assert_eq!(dup, 0, "copytruncate duplicated lines");
    assert!(
        lost * 100 <= max,
        "copytruncate lost more than 1% of lines: {report}"
    );
}

#[test]
fn a_failed_ship_deletes_nothing_and_the_next_run_ships_it() {
    let app = App::running("logs-fail", &["/srv/logs"]);
    app.sh("seq 1 5000 > /srv/logs/access.log; seq 1 10 > /srv/logs/gunicorn.log");
    let rw = S3::garage();
    let ro = S3 {
        key_id: var("DOCKYARD_TEST_S3_RO_KEY_ID"),
        secret: var("DOCKYARD_TEST_S3_RO_SECRET"),
        ..rw.clone()
    };
    let prefix = unique("logs");
    let url = format!("s3://{}/{prefix}", rw.bucket);
    // The read-only key passes the bucket check, then fails on the first upload.
    let env = ro.env();
    let r = dockyard_env(
        &[
            "logs", &app.name, "--to", &url, "--reopen", "none", "--settle", "0",
        ],
        &pairs(&env),
    );
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(
        r.stderr.contains("did not ship") && r.stderr.contains("stay in /srv/logs"),
        "{}",
        r.stderr
    );
    let rotated = app.sh("ls /srv/logs | grep -c '\\.log\\.2' || true");
    assert_eq!(
        rotated.trim(),
        "2",
        "rotated files must stay after a failed ship"
    );
    assert!(rw.keys(&prefix).is_empty() && rw.uploads(&prefix).is_empty());

    let env = rw.env();
    let out = dockyard_env(&["logs", "ship", &app.name, "--to", &url], &pairs(&env)).ok();
    assert!(
        out.contains("shipped 2") && out.contains("deleted 2"),
        "{out}"
    );
    assert_eq!(
        app.sh("ls /srv/logs").trim(),
        "",
        "shipped files should be gone"
    );
    let keys = rw.keys(&prefix);
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys
        .iter()
        .all(|k| k.contains(&format!("/logs/{}/", app.name)) && k.ends_with(".zst")));
    rw.clear(&prefix);
    assert!(app.helpers().is_empty());
}

#[test]
fn an_overlapping_run_is_refused_naming_the_holder() {
    let app = App::running("logs-lock", &["/srv/logs"]);
    app.sh("mkdir -p /srv/logs/.dockyard/lock && echo 'otherhost 4242 1' > /srv/logs/.dockyard/lock/owner");
    let r = dockyard(&["logs", "rotate", &app.name, "--reopen", "none"]);
    // A very old lock from another host is taken over; a fresh one is refused.
    assert_eq!(r.code, 0, "{}", r.stderr);
    let now = chrono::Utc::now().timestamp();
    app.sh(&format!("mkdir -p /srv/logs/.dockyard/lock && echo 'otherhost 4242 {now}' > /srv/logs/.dockyard/lock/owner"));
    let r = dockyard(&["logs", "rotate", &app.name, "--reopen", "none"]);
    assert_eq!(r.code, 6, "{}", r.stderr);
    assert!(
        r.stderr.contains("another dockyard run holds the log lock")
            && r.stderr.contains("otherhost")
            && r.stderr.contains("4242"),
        "{}",
        r.stderr
    );
    assert!(app.helpers().is_empty());
}

#[test]
fn real_gunicorn_rotated_under_load_loses_no_request_line() {
    let image = var("DOCKYARD_TEST_GUNICORN_IMAGE");
    let name = unique("gunicorn");
    docker(&["run", "-d", "--name", &name, "--network", "none", &image]);
    let app = App::named(name);
    let started = started_at(&app);
    // Wait for Gunicorn, then load it from inside the container until told to stop (after three
    // rotations under load, however fast this machine is), each request with its own number in
    // the path, so every access-log line can be accounted for; the count goes to /tmp/load-done.
    let client = r#"
import os, time, urllib.request
for _ in range(100):
    try:
        urllib.request.urlopen("http://127.0.0.1:8000/up").read(); break
    except Exception:
        time.sleep(0.1)
i = 0
while i < 1000 or not os.path.exists("/tmp/stop-load"):
    i += 1
    urllib.request.urlopen(f"http://127.0.0.1:8000/req/{i}").read()
open("/tmp/load-done.tmp", "w").write(str(i))
os.rename("/tmp/load-done.tmp", "/tmp/load-done")
"#;
    docker(&["exec", "-d", &app.name, "python3", "-c", client]);
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("dest");
    let d = dest.to_str().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    let (mut cycles, mut under_load) = (0, 0);
    loop {
        let done = std::process::Command::new("docker")
            .args(["exec", &app.name, "test", "-f", "/tmp/load-done"])
            .status()
            .unwrap()
            .success();
        let r = dockyard(&["logs", &app.name, "--to", d, "--settle", "0.5"]);
        assert_eq!(r.code, 0, "cycle {cycles}: {}", r.stderr);
        cycles += 1;
        if !done {
            under_load += 1;
            if under_load == 3 {
                docker(&["exec", &app.name, "touch", "/tmp/stop-load"]);
            }
        } else if cycles >= 5 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the load never finished"
        );
    }
    assert_eq!(started_at(&app), started, "gunicorn restarted");
    let requests: u64 = docker(&["exec", &app.name, "cat", "/tmp/load-done"])
        .trim()
        .parse()
        .unwrap();
    let mut lines = shipped_lines(&dest, &app.name);
    let shipped = lines.len();
    lines.extend(volume_lines(&app).1);
    let mut seen: BTreeMap<u64, u32> = BTreeMap::new();
    for l in &lines {
        if let Some(rest) = l.split("GET /req/").nth(1) {
            let n: u64 = rest.split_whitespace().next().unwrap().parse().unwrap();
            *seen.entry(n).or_default() += 1;
        }
    }
    let lost: Vec<u64> = (1..=requests).filter(|n| !seen.contains_key(n)).collect();
    let dup: Vec<u64> = seen
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(n, _)| *n)
        .collect();
    report(&format!(
        "gunicorn: {cycles} cycles ({under_load} during the load), {requests} requests, {shipped} lines shipped, lost {}, duplicated {}",
        lost.len(),
        dup.len()
    ));
    assert!(
        lost.is_empty() && dup.is_empty(),
        "lost {lost:?}, duplicated {dup:?}"
    );
    assert!(
        under_load >= 3,
        "only {under_load} rotations happened during the load"
    );
    assert!(app.helpers().is_empty());
}

#[test]
fn logs_ship_over_ssh_under_the_deterministic_key() {
    let app = App::running("logs-ssh", &["/srv/logs"]);
    app.sh("seq 1 300 > /srv/logs/access.log");
    let dir = unique("logs-ssh-dest");
    let url = format!("ssh://dockyard-test/~/{dir}");
    let env = common::peers::ssh_env();
    let out = dockyard_env(
        &["logs", &app.name, "--to", &url, "--reopen", "none"],
        &pairs(&env),
    )
    .ok();
    assert!(
        out.contains("shipped 1") && out.contains("deleted 1"),
        "{out}"
    );
    let found = common::peers::ssh(&format!("find {dir} -type f | sort"));
    let key = found.trim();
    assert!(
        key.starts_with(&format!("{dir}/logs/{}/access.log/", app.name)) && key.ends_with(".zst"),
        "{found}"
    );
    let text = common::peers::ssh(&format!("zstd -dc {key} | wc -l; rm -rf {dir}"));
    assert_eq!(text.trim(), "300");
}

#[test]
fn prune_after_deletes_only_old_shipped_logs() {
    let app = App::running("logs-prune", &["/srv/logs"]);
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("dest");
    let d = dest.to_str().unwrap();
    // A shipped log from 40 days ago, and one from today.
    let old_day = chrono::Utc::now() - chrono::Duration::days(40);
    let old = dest.join(format!(
        "logs/{}/access.log/{}",
        app.name,
        old_day.format("%Y/%m/%d")
    ));
    std::fs::create_dir_all(&old).unwrap();
    let old_file = old.join(format!(
        "access.log.{}.zst",
        old_day.format("%Y%m%dT%H%M%S%.3fZ")
    ));
    std::fs::write(&old_file, b"old").unwrap();
    app.sh("seq 1 10 > /srv/logs/access.log");
    let out = dockyard(&[
        "logs",
        &app.name,
        "--to",
        d,
        "--reopen",
        "none",
        "--prune-after",
        "30d",
    ])
    .ok();
    assert!(
        out.contains("shipped 1") && out.contains("pruned 1"),
        "{out}"
    );
    assert!(!old_file.exists(), "the 40-day-old log was not pruned");
    assert_eq!(
        shipped_lines(&dest, &app.name).len(),
        10,
        "today's log must stay"
    );
}

#[test]
fn rotate_only_keeps_the_newest_rotated_files_with_keep_local() {
    let app = App::running("logs-keep", &["/srv/logs"]);
    for i in 0..4 {
        app.sh(&format!("echo round {i} >> /srv/logs/app.log"));
        dockyard(&[
            "logs",
            "rotate",
            &app.name,
            "--reopen",
            "none",
            "--keep-local",
            "2",
        ])
        .ok();
    }
    let left = app.sh("ls /srv/logs");
    let rotated: Vec<&str> = left.lines().filter(|l| l.starts_with("app.log.")).collect();
    assert_eq!(rotated.len(), 2, "{left}");
    let newest = app.sh(&format!("cat /srv/logs/{}", rotated[1]));
    assert_eq!(
        newest.trim(),
        "round 3",
        "the newest rotated files must be the ones kept"
    );
    assert!(app.helpers().is_empty());
}

#[test]
fn an_unprivileged_app_cannot_turn_the_log_helper_against_files_it_cannot_write() {
    // The app runs as uid 1000 and owns its log directory; another volume holds a file only root
    // may write. The app plants symlinks where dockyard keeps state and where it finds logs.
    let app = App::create_with(
        "logs-evil",
        &["--user", "1000:1000", "-v", "/srv/logs", "-v", "/srv/data"],
        common::image(),
    );
    app.start();
    app.root_sh(
        "chown 1000:1000 /srv/logs && echo secret > /srv/data/root-only && chmod 600 /srv/data/root-only",
    );
    app.sh(
        "cd /srv/logs && mkdir .dockyard && ln -s /srv/data/root-only .dockyard/last-app.log && \
         ln -s /srv/data/created-by-root .dockyard/shipped.log && echo line > app.log && \
         ln -s /srv/data/root-only evil.log",
    );
    let (_tmp, dest) = common::dest_dir();
    let logs = |dest: &std::path::Path| {
        dockyard(&[
            "logs",
            &app.name,
            "--to",
            dest.to_str().unwrap(),
            "--reopen",
            "copytruncate",
            "--max-age",
            "1s",
            "--settle",
            "0",
        ])
    };
    // The first run records the rotation time (through the planted symlink, if it followed it),
    // the second rotates, ships and records what shipped (likewise).
    let r = logs(&dest);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("evil.log") && r.stderr.contains("not a regular file"),
        "{}",
        r.stderr
    );
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let r = logs(&dest);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("rotated 1, shipped 1"), "{}", r.stdout);
    assert_eq!(
        app.root_sh("cat /srv/data/root-only"),
        "secret\n",
        "root-only file was written"
    );
    assert_eq!(
        app.root_sh("ls /srv/data"),
        "root-only\n",
        "a file was created as root"
    );
    assert_eq!(
        app.root_sh("stat -c '%U %a' /srv/data/root-only").trim(),
        "root 600"
    );
    assert_eq!(
        app.sh("[ -L /srv/logs/evil.log ] && echo untouched"),
        "untouched\n"
    );

    // A symlinked state directory is refused outright, naming it.
    app.sh("cd /srv/logs && rm -rf .dockyard && ln -s /srv/data .dockyard && echo more > app.log");
    let r = dockyard(&["logs", "rotate", &app.name, "--reopen", "none"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("/srv/logs/.dockyard is a symlink"),
        "{}",
        r.stderr
    );
    assert_eq!(app.root_sh("ls /srv/data"), "root-only\n");
}

#[test]
fn a_bash_sh_image_never_runs_code_found_in_the_volume() {
    let image = common::bash_sh_image();
    let app = App::create_with("logs-bash", &["-v", "/srv/logs"], &image);
    app.start();
    assert!(app.sh("readlink /bin/sh").contains("bash"));
    // The rotation time dockyard keeps in the volume, as a compromised app would rewrite it.
    app.sh(
        "mkdir -p /srv/logs/.dockyard && echo line > /srv/logs/app.log && \
         echo 'size[$(id>/srv/logs/pwned)]' > /srv/logs/.dockyard/last-app.log",
    );
    let r = dockyard(&[
        "logs",
        "rotate",
        &app.name,
        "--reopen",
        "none",
        "--max-age",
        "1h",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        app.sh("ls /srv/logs; cat /srv/logs/.dockyard/last-app.log"),
        format!(
            "app.log\n{}\n",
            app.sh("cat /srv/logs/.dockyard/last-app.log").trim()
        )
    );
    assert!(
        !app.sh("ls -a /srv/logs").contains("pwned"),
        "code from the volume ran"
    );
    assert!(
        app.sh("cat /srv/logs/.dockyard/last-app.log")
            .trim()
            .chars()
            .all(|c| c.is_ascii_digit()),
        "the tampered value was not replaced"
    );
}

#[test]
fn a_log_named_like_an_option_is_rotated_and_a_failed_rotation_is_reported() {
    // A log file that is itself a single-file bind mount cannot be renamed (EBUSY): that rotation
    // fails and must be reported, while `-f.log` rotates like any other.
    let host = tempfile::tempdir().unwrap();
    let mounted = host.path().join("mounted.log");
    std::fs::write(&mounted, "bound\n").unwrap();
    let bind = format!("{}:/srv/logs/root.log", mounted.display());
    let app = App::create_with(
        "logs-dash",
        &["-v", "/srv/logs", "-v", &bind],
        common::image(),
    );
    app.start();
    app.sh("echo dash > /srv/logs/-f.log");
    let r = dockyard(&["logs", "rotate", &app.name, "--reopen", "none"]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("root.log") && r.stderr.contains("did not rotate or ship"),
        "{}",
        r.stderr
    );
    let listing = app.sh("ls /srv/logs");
    assert!(listing.contains("-f.log.20"), "{listing}");
    assert!(!listing.lines().any(|l| l == "-f.log"), "{listing}");
    assert!(listing.lines().any(|l| l == "root.log"), "{listing}");
}

#[test]
fn rotate_warns_when_a_process_still_holds_the_rotated_file_open() {
    let app = App::running("held", &["/srv/logs"]);
    app.sh("echo one > /srv/logs/app.log; echo two > /srv/logs/quiet.log");
    // As the seed's entrypoint does: `tail -f` keeps the old file after a rename.
    common::docker(&["exec", "-d", &app.name, "tail", "-f", "/srv/logs/app.log"]);
    common::wait_until(
        "tail is running",
        std::time::Duration::from_secs(10),
        || app.sh("ps | grep -c '[t]ail -f' || true").trim() != "0",
    );
    let r = dockyard(&["logs", "rotate", &app.name, "--reopen", "none"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("(tail) still has /srv/logs/app.log.") && r.stderr.contains("tail -F"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("quiet.log."),
        "nobody holds quiet.log: {}",
        r.stderr
    );
    let json = dockyard(&["logs", "rotate", &app.name, "--reopen", "none", "--json"]);
    let doc = common::one_document(&json.stdout);
    // Nothing new to rotate: nothing to check.
    assert_eq!(doc["report"]["held_open"], serde_json::json!([]), "{doc}");
}
