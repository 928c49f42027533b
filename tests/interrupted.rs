//! Restores interrupted at the worst moments (issue 9, points 11-13), against a real engine: a
//! signal during the swap, dockyard killed and its swap helper killed with it (as an engine
//! restart would), a kill while staging, two restores at once, and work directories that backups
//! leave out. After the next ordinary run the volume holds exactly the old tree or exactly the
//! restored one, and nothing else.

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{dest_dir, docker, dockyard, dockyard_cmd, list, slow_mv_image, App};

/// 3000 top-level files (and a directory), backed up; then the volume is changed so a restore
/// has work to do. Returns the backed-up tree.
fn three_thousand_files(app: &App, dest: &str) -> String {
    app.sh(
        "cd /srv/media && i=0; while [ $i -lt 3000 ]; do i=$((i+1)); echo $i > f$i; done; \
         mkdir d && echo inner > d/x",
    );
    dockyard(&["backup", &app.name, "--to", dest]).ok();
    let tree = app.tree("/srv/media");
    app.sh(
        "cd /srv/media && i=0; while [ $i -lt 1000 ]; do i=$((i+1)); rm f$i; echo n > new$i; done; \
         echo changed > f2000 && rm -r d",
    );
    tree
}

/// Starts `dockyard restore` with the slow-`mv` helper image (so its swap takes seconds).
fn start_restore(app: &App, dest: &str, extra: &[&str]) -> Child {
    let mut args = vec![
        "restore",
        &app.name,
        "--from",
        dest,
        "--no-safety-backup",
        "--helper-image",
        slow_mv_image(),
    ];
    args.extend_from_slice(extra);
    dockyard_cmd(&args, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The running swap helper of `app`, once there is one.
fn wait_for_swap(app: &App, child: &mut Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = docker(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=dockyard.for={}", app.name),
            "--filter",
            "label=dockyard.role=swap",
        ]);
        if let Some(id) = out.lines().next() {
            return id.to_string();
        }
        assert!(Instant::now() < deadline, "the swap never started");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the restore ended before its swap could be interrupted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn output(child: Child) -> (i32, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn sigterm_during_the_swap_waits_for_it_and_leaves_the_restored_tree() {
    let app = App::running("swap-term", &["/srv/media"]);
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    let backed_up = three_thousand_files(&app, d);
    let mut child = start_restore(&app, d, &[]);
    wait_for_swap(&app, &mut child);
    std::thread::sleep(Duration::from_millis(1500)); // well into moving entries
    common::sigterm(&child);
    let (code, stderr) = output(child);
    assert!(
        stderr.contains("finishing the swap in progress first"),
        "{stderr}"
    );
    assert_eq!(code, 0, "the swap completed, so the restore did: {stderr}");
    assert_eq!(app.tree("/srv/media"), backed_up);
    assert!(app.helpers().is_empty());
}

#[test]
fn a_swap_cut_short_by_sigkill_and_an_engine_death_is_finished_by_the_next_run() {
    let app = App::running("swap-kill", &["/srv/media"]);
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    let backed_up = three_thousand_files(&app, d);
    let entries = list(&dest)[0]["entries"].clone();
    let mut child = start_restore(&app, d, &[]);
    let helper = wait_for_swap(&app, &mut child);
    std::thread::sleep(Duration::from_millis(1500));
    // dockyard dies, then its swap helper dies with the engine: the volume is half-swapped.
    child.kill().unwrap();
    child.wait().unwrap();
    docker(&["kill", &helper]);
    let half = app.sh("ls -a /srv/media | grep -c . ; ls -a /srv/media/.dockyard-restore");
    assert!(
        half.contains("0-journal"),
        "no journal left to finish from: {half}"
    );

    // The next ordinary run on that container finishes the swap first, and says so.
    let (_tmp2, dest2) = dest_dir();
    let r = dockyard(&["backup", &app.name, "--to", dest2.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("finished the interrupted restore"),
        "{}",
        r.stderr
    );
    assert_eq!(app.tree("/srv/media"), backed_up);
    // ...and what it backed up is exactly the restored tree, no leftovers.
    assert_eq!(list(&dest2)[0]["entries"], entries);
    assert!(app.helpers().is_empty());
}

/// Starts a restore and SIGKILLs it while it stages into the volume (whose host directory is
/// `source`); returns once it is dead.
fn kill_while_staging(app: &App, d: &str, signal: &str) -> (i32, String) {
    let source = app.mount_source("/srv/media");
    let mut child = dockyard_cmd(
        &["restore", &app.name, "--from", d, "--no-safety-backup"],
        &[],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let staged = source.join(".dockyard-restore/new-0/big");
    while !std::fs::metadata(&staged).is_ok_and(|m| m.len() > 0) {
        assert!(Instant::now() < deadline, "staging never started");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the restore ended before staging"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    if signal == "KILL" {
        child.kill().unwrap();
    } else {
        common::sigterm(&child);
    }
    output(child)
}

#[test]
fn a_restore_killed_while_staging_changes_nothing_after_the_next_run() {
    let app = App::running("stage-kill", &["/srv/media"]);
    app.sh(
        "dd if=/dev/urandom of=/srv/media/big bs=1M count=400 2>/dev/null; echo a > /srv/media/a",
    );
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    dockyard(&["backup", &app.name, "--to", d, "--level", "1"]).ok();
    app.sh("rm /srv/media/big && echo after > /srv/media/added");
    let before = app.tree("/srv/media");

    let (_, _) = kill_while_staging(&app, d, "KILL");
    assert!(app.sh("ls -a /srv/media").contains(".dockyard-restore"));
    let (_tmp2, dest2) = dest_dir();
    let r = dockyard(&["backup", &app.name, "--to", dest2.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("removed the staging"), "{}", r.stderr);
    assert_eq!(app.tree("/srv/media"), before);
    assert_eq!(
        list(&dest2)[0]["entries"],
        3,
        "the backup holds exactly a and added"
    );

    // SIGTERM while staging removes the staging at once.
    let (code, stderr) = kill_while_staging(&app, d, "TERM");
    assert_eq!(code, 130, "{stderr}");
    app.assert_as_before("/srv/media", &before);
}

#[test]
fn two_restores_of_one_container_never_interleave() {
    let app = App::running("two", &["/srv/media"]);
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    let backed_up = three_thousand_files(&app, d);
    let mut first = start_restore(&app, d, &[]);
    wait_for_swap(&app, &mut first);
    let second = dockyard(&["restore", &app.name, "--from", d, "--no-safety-backup"]);
    assert_eq!(second.code, 6, "{}", second.stderr);
    assert!(
        second
            .stderr
            .contains(&format!("container {:?} is busy", app.name))
            && second.stderr.contains("restore by"),
        "{}",
        second.stderr
    );
    let backup = dockyard(&["backup", &app.name, "--to", d]);
    assert_eq!(
        backup.code, 6,
        "a backup during a restore: {}",
        backup.stderr
    );
    let (code, stderr) = output(first);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(app.tree("/srv/media"), backed_up);
}

#[test]
fn backups_leave_out_dockyard_work_directories_on_both_paths() {
    // Work directories at a path's top level (today's, one the app planted, and 0.1's) are never
    // data; a name like them deeper down is the app's and is kept.
    let app = App::running("workdirs", &["/srv/media"]);
    app.sh(
        "cd /srv/media && mkdir -p .dockyard-restore .dockyard-restore-9 .dockyard-old-9 \
         sub/.dockyard-restore-1 && echo j > .dockyard-restore/junk && \
         echo x > .dockyard-restore-9/x && echo y > .dockyard-old-9/y && \
         echo z > sub/.dockyard-restore-1/z && echo a > a",
    );
    for agent in ["auto", "never"] {
        let (_tmp, dest) = dest_dir();
        let r = dockyard(&[
            "backup",
            &app.name,
            "--to",
            dest.to_str().unwrap(),
            "--agent",
            agent,
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(r.stderr.contains("left out of backups"), "{}", r.stderr);
        let archive = dest.join(list(&dest)[0]["archive"].as_str().unwrap());
        let names = std::process::Command::new("sh")
            .arg("-c")
            .arg(r#"zstd -dc "$1" | tar -t"#)
            .args(["sh", archive.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&names.stdout),
            "srv/media/\nsrv/media/a\nsrv/media/sub/\nsrv/media/sub/.dockyard-restore-1/\n\
             srv/media/sub/.dockyard-restore-1/z\n",
            "--agent {agent}"
        );
    }
    // They are still there: a backup reads, it does not clean the app's files.
    assert!(app.sh("ls -a /srv/media").contains(".dockyard-old-9"));
}
