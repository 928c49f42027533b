//! Restores interrupted at the worst moments, against a real engine: a signal during the swap,
//! dockyard killed and its swap helper killed with it (as an engine restart would), a kill while
//! staging with the agent still writing, two restores at once, a swap that keeps failing, and
//! work directories that backups leave out. Every instant is reached through a named fault point
//! (src/fault.rs), never a sleep. After the next ordinary run the volume holds exactly the old
//! tree or exactly the restored one, and nothing else.

mod common;

use common::fault::{helpers_gone, release_helper, Faulted};
use common::{dest_dir, docker, dockyard, list, App};

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

/// Starts `dockyard restore` stopping at `points`.
fn start_restore(app: &App, dest: &str, points: &str, extra: &[&str]) -> Faulted {
    let mut args = vec!["restore", &app.name, "--from", dest, "--no-safety-backup"];
    args.extend_from_slice(extra);
    Faulted::start(&args, points, &[])
}

#[test]
fn sigterm_during_the_swap_waits_for_it_and_leaves_the_restored_tree() {
    let app = App::running("swap-term", &["/srv/media"]);
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    let backed_up = three_thousand_files(&app, d);
    // The swap helper stops after its first batch of moves: the volume is half-swapped.
    let mut run = start_restore(&app, d, "swap-batch", &[]);
    let helper = run.helper_reached(&app, "swap-batch");
    run.signal("TERM");
    run.said("finishing the swap in progress first");
    release_helper(&helper);
    let (code, stderr) = run.finish();
    assert_eq!(code, 0, "the swap completed, so the restore did: {stderr}");
    helpers_gone(&app);
    assert_eq!(app.tree("/srv/media"), backed_up);
}

#[test]
fn a_swap_cut_short_by_sigkill_and_an_engine_death_is_finished_by_the_next_run() {
    let app = App::running("swap-kill", &["/srv/media"]);
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    let backed_up = three_thousand_files(&app, d);
    let entries = list(&dest)[0]["entries"].clone();
    let mut run = start_restore(&app, d, "swap-batch", &[]);
    let helper = run.helper_reached(&app, "swap-batch");
    // dockyard dies, then its swap helper dies with the engine: the volume is half-swapped.
    run.signal("KILL");
    run.finish();
    docker(&["kill", &helper]);
    let half = app.sh("ls /srv/media/.dockyard-restore/old-0 | wc -l");
    assert_eq!(half.trim(), "200", "one batch moved aside");

    // The next ordinary run on that container finishes the swap first, and says so.
    let (_tmp2, dest2) = dest_dir();
    let r = dockyard(&["backup", &app.name, "--to", dest2.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("finished the interrupted restore"),
        "{}",
        r.stderr
    );
    // ...and what it backed up is exactly the restored tree, without the work directory whose
    // old contents a helper deletes meanwhile.
    assert_eq!(list(&dest2)[0]["entries"], entries);
    helpers_gone(&app);
    assert_eq!(app.tree("/srv/media"), backed_up);
}

#[test]
fn a_restore_killed_while_staging_changes_nothing_after_the_next_run() {
    let app = App::running("stage-kill", &["/srv/media"]);
    app.sh("dd if=/dev/urandom of=/srv/media/big bs=1M count=8 2>/dev/null; echo a > /srv/media/a");
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    dockyard(&["backup", &app.name, "--to", d, "--level", "1"]).ok();
    app.sh("rm /srv/media/big && echo after > /srv/media/added");
    let before = app.tree("/srv/media");

    // SIGKILL while the agent stages: its helper outlives dockyard, still able to write.
    let mut run = start_restore(&app, d, "unpack-midway", &[]);
    let agent = run.helper_reached(&app, "unpack-midway");
    run.signal("KILL");
    run.finish();
    common::wait_until(
        "the agent wrote into the volume",
        std::time::Duration::from_secs(60),
        || app.sh("ls -a /srv/media").contains(".dockyard-restore"),
    );
    assert!(app.helpers().contains(&agent));
    // The next backup stops and removes that helper before it removes the staging.
    let (_tmp2, dest2) = dest_dir();
    let r = dockyard(&["backup", &app.name, "--to", dest2.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("removed the staging"), "{}", r.stderr);
    assert!(
        r.stderr.contains("removing a helper of a run that is gone"),
        "{}",
        r.stderr
    );
    app.assert_as_before("/srv/media", &before);
    assert_eq!(
        list(&dest2)[0]["entries"],
        3,
        "the backup holds exactly a and added"
    );

    // SIGTERM while staging removes the staging at once.
    let mut run = start_restore(&app, d, "unpack-midway", &[]);
    run.helper_reached(&app, "unpack-midway");
    run.signal("TERM");
    let (code, stderr) = run.finish();
    assert_eq!(code, 130, "{stderr}");
    app.assert_as_before("/srv/media", &before);
}

#[test]
fn two_restores_of_one_container_never_interleave() {
    let app = App::running("two", &["/srv/media"]);
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    let backed_up = three_thousand_files(&app, d);
    let mut first = start_restore(&app, d, "swap-batch", &["--wait-cleanup"]);
    let helper = first.helper_reached(&app, "swap-batch");
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
    release_helper(&helper);
    let (code, stderr) = first.finish();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(app.tree("/srv/media"), backed_up);
}

#[test]
fn a_swap_that_keeps_failing_is_given_up_and_the_old_contents_put_back() {
    let app = App::running("give-up", &["/srv/media"]);
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    three_thousand_files(&app, d);
    let before = app.tree("/srv/media");
    // Moving the restored contents in fails, every time: the restore tries twice, then puts
    // every path back as it was.
    let run = start_restore(&app, d, "swap-in=fail", &[]);
    let (code, stderr) = run.finish();
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("gave up the restore") && stderr.contains("previous contents back"),
        "{stderr}"
    );
    app.assert_as_before("/srv/media", &before);
    // Nothing is left for later runs to retry.
    let r = dockyard(&["backup", &app.name, "--to", d]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("restore"), "{}", r.stderr);
}

#[test]
fn the_old_contents_are_deleted_by_the_next_run_when_the_restore_is_killed_first() {
    let app = App::running("clean-kill", &["/srv/media"]);
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    let backed_up = three_thousand_files(&app, d);
    // Killed right after the swap, before the old contents are deleted.
    let run = start_restore(&app, d, "clean=kill", &[]);
    let (code, _) = run.finish();
    assert_eq!(code, -1, "killed");
    assert!(app.sh("ls -a /srv/media").contains(".dockyard-restore"));
    let r = dockyard(&["backup", &app.name, "--to", d]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    helpers_gone(&app);
    assert_eq!(app.tree("/srv/media"), backed_up);
}

#[test]
fn backups_leave_out_only_dockyards_own_work_directory() {
    // `.dockyard-restore` is reserved and left out (with a warning when no journal vouches for
    // it); dockyard 0.1's names are the app's data now; a same-named directory deeper down too.
    let app = App::running("workdirs", &["/srv/media"]);
    app.sh(
        "cd /srv/media && mkdir -p .dockyard-restore .dockyard-restore-9 .dockyard-old-9 \
         sub/.dockyard-restore && echo j > .dockyard-restore/junk && \
         echo x > .dockyard-restore-9/x && echo y > .dockyard-old-9/y && \
         echo z > sub/.dockyard-restore/z && echo a > a",
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
        assert!(
            r.stderr
                .contains("no restore journal on this host vouches for it"),
            "{}",
            r.stderr
        );
        let archive = dest.join(list(&dest)[0]["archive"].as_str().unwrap());
        let names = std::process::Command::new("sh")
            .arg("-c")
            .arg(r#"zstd -dc "$1" | tar -t"#)
            .args(["sh", archive.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&names.stdout),
            "srv/media/\nsrv/media/.dockyard-old-9/\nsrv/media/.dockyard-old-9/y\n\
             srv/media/.dockyard-restore-9/\nsrv/media/.dockyard-restore-9/x\nsrv/media/a\n\
             srv/media/sub/\nsrv/media/sub/.dockyard-restore/\nsrv/media/sub/.dockyard-restore/z\n",
            "--agent {agent}"
        );
    }
    // They are still there: a backup reads, it does not clean the app's files.
    assert!(app.sh("ls -a /srv/media").contains(".dockyard-restore"));
}
