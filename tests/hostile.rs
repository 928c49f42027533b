//! The app in the container is hostile (root in its own container, or not), against a real
//! engine: nothing it leaves in its volumes (a forged restore journal, a FIFO where dockyard keeps
//! state, a tree deeper than PATH_MAX) may steer a root helper, hang a run, or wedge the
//! container; and two dockyards in different PID namespaces never take each other's live runs
//! for dead. Instants are reached through named fault points (src/fault.rs).

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use common::daemon::Daemon;
use common::engine::PrivateEngine;
use common::fault::{helpers_gone, Faulted};
use common::{dest_dir, dockyard, dockyard_env, list, App};

/// A host directory only root may use, holding one file: what an attacker would like to write
/// into, empty or take over.
fn victim() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("root-only");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(dir.join("keep"), "precious\n").unwrap();
    (tmp, dir)
}

fn assert_untouched(dir: &std::path::Path) {
    let meta = std::fs::metadata(dir).unwrap();
    assert_eq!(
        meta.mode() & 0o7777,
        0o700,
        "{} mode changed",
        dir.display()
    );
    assert_eq!(
        (meta.uid(), meta.gid()),
        (0, 0),
        "{} owner changed",
        dir.display()
    );
    let names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["keep"], "{} gained or lost files", dir.display());
    assert_eq!(
        std::fs::read_to_string(dir.join("keep")).unwrap(),
        "precious\n"
    );
}

#[test]
fn a_restore_journal_forged_in_a_volume_reaches_nothing_on_the_host() {
    let (_v, victim) = victim();
    let app = App::running("forged", &["/srv/media"]);
    app.sh("echo data > /srv/media/a");
    // Container root forges what earlier dockyards kept in the volume: a work directory of
    // root's, mode 0700, whose journal names a host directory as a single-file mount to finish,
    // phase swapped, with a staged authorized_keys.
    let esc = |b: &[u8]| dockyard::archive::names::octal_escape(b);
    let journal = format!(
        "dockyard-restore 1\nrun r1\nowner h 1 0 r1 0\nbackup {}\nmember {}\npath 0 1000 1000 777 0 \nfile {} {} {}\n",
        esc(b"b"),
        esc(b"/srv/media"),
        esc(victim.to_str().unwrap().as_bytes()),
        esc(b"keep"),
        esc(b"/etc/app.conf"),
    );
    app.root_sh(&format!(
        "mkdir -p /srv/media/.dockyard-restore/new-0 && chmod 700 /srv/media/.dockyard-restore && \
         printf '{}' > /srv/media/.dockyard-restore/0-journal && \
         echo swapped > /srv/media/.dockyard-restore/0-phase && \
         echo 'ssh-ed25519 AAAA attacker' > /srv/media/.dockyard-restore/new-0/authorized_keys && \
         echo 'ssh-ed25519 AAAA attacker' > /srv/media/.dockyard-restore/.keep.dockyard-restore",
        journal.replace('\\', "\\\\").replace('\n', "\\n")
    ));
    let before = app.tree("/srv/media");

    // A plain nightly backup: it says what it found and leaves it alone.
    let (_tmp, dest) = dest_dir();
    let r = dockyard(&["backup", &app.name, "--to", dest.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("/srv/media/.dockyard-restore")
            && r.stderr
                .contains("no restore journal on this host vouches for it"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("finished"), "{}", r.stderr);
    assert_untouched(&victim);
    assert_eq!(
        app.tree("/srv/media"),
        before,
        "the forged work dir was acted on"
    );
    assert_eq!(list(&dest)[0]["entries"], 2, "the backup holds / and a");

    // A restore into it refuses to begin, naming the directory.
    let r = dockyard(&["restore", &app.name, "--from", dest.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("/srv/media/.dockyard-restore") && r.stderr.contains("move it away"),
        "{}",
        r.stderr
    );
    assert_untouched(&victim);
    assert_eq!(app.tree("/srv/media"), before);
    helpers_gone(&app);
}

#[test]
fn a_tree_deeper_than_path_max_never_wedges_the_container() {
    // An unprivileged app builds 2,000 levels (22,000 bytes of path, five times PATH_MAX).
    let app = App::create_with(
        "deep",
        &["--user", "1000:1000", "-v", "/srv/media"],
        common::image(),
    );
    app.start();
    app.root_sh("chown 1000:1000 /srv/media && echo kept > /srv/media/a");
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    dockyard(&["backup", &app.name, "--to", d]).ok();
    let backed_up = app.tree("/srv/media");
    // Built from the bottom up (a shell cannot `cd` past PATH_MAX): each round nests the chain
    // one level deeper by renames.
    app.sh(
        "cd /srv/media && mkdir c && echo bottom > c/f && i=0; while [ $i -lt 2000 ]; do \
         mkdir n && mv c n/dddddddddd && mv n c || exit 1; i=$((i+1)); done; mv c deep",
    );
    // The restore is done once the swap is; the old tree (the deep one) is deleted through
    // directory descriptors.
    let r = dockyard(&[
        "restore",
        &app.name,
        "--from",
        d,
        "--no-safety-backup",
        "--wait-cleanup",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("old contents: deleted"), "{}", r.stdout);
    assert_eq!(app.tree("/srv/media"), backed_up);
    // And backups go on.
    let r = dockyard(&["backup", &app.name, "--to", d]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    helpers_gone(&app);
}

#[test]
fn leftovers_that_cannot_be_removed_yet_never_fail_a_backup() {
    let app = App::running("leftover", &["/srv/media"]);
    app.sh("echo a > /srv/media/a");
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    dockyard(&["backup", &app.name, "--to", d]).ok();
    let backed_up = app.tree("/srv/media");
    app.sh("echo b > /srv/media/b");
    // Killed right after its swap, before the old contents are deleted; then container root
    // makes the work dir something dockyard will not delete.
    let run = Faulted::start(
        &["restore", &app.name, "--from", d, "--no-safety-backup"],
        "clean=kill",
        &[],
    );
    let (code, _) = run.finish();
    assert_eq!(code, -1, "killed");
    app.sh("chmod 755 /srv/media/.dockyard-restore");
    let r = dockyard(&["backup", &app.name, "--to", d]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("could not be deleted yet") && r.stderr.contains("not dockyard's"),
        "{}",
        r.stderr
    );
    // The restore itself is complete; the backup left the work dir out.
    let listed = list(&dest);
    assert_eq!(listed[0]["entries"], 2);
    app.sh("chmod 700 /srv/media/.dockyard-restore");
    let r = dockyard(&["backup", &app.name, "--to", d]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    helpers_gone(&app);
    assert_eq!(app.tree("/srv/media"), backed_up);
}

#[test]
fn a_fifo_where_dockyard_keeps_log_state_never_hangs_a_run() {
    let app = App::create_with(
        "logs-fifo",
        &["--user", "1000:1000", "-v", "/srv/logs"],
        common::image(),
    );
    app.start();
    app.root_sh("chown 1000:1000 /srv/logs");
    // An unprivileged app plants FIFOs where dockyard reads and appends its state.
    app.sh(
        "cd /srv/logs && mkdir -p .dockyard/lock && mkfifo .dockyard/lock/owner && \
         mkfifo .dockyard/shipped.log && echo line > app.log",
    );
    let (_tmp, dest) = dest_dir();
    let logs = || {
        common::output_within(
            common::dockyard_cmd(
                &[
                    "logs",
                    &app.name,
                    "--to",
                    dest.to_str().unwrap(),
                    "--reopen",
                    "copytruncate",
                    "--settle",
                    "0",
                ],
                &[],
            ),
            Duration::from_secs(300),
        )
    };
    // Reading the lock's owner would block forever: it is not read, and the lock is reported.
    let out = logs();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("/srv/logs/.dockyard/lock"), "{stderr}");
    // With the lock gone, appending to the shipped log would block: the FIFO is replaced.
    app.sh("rm -r /srv/logs/.dockyard/lock");
    let out = logs();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("shipped 1"));
    assert_eq!(
        app.sh("stat -c %F /srv/logs/.dockyard/shipped.log").trim(),
        "regular file"
    );
}

#[test]
fn a_helper_past_its_deadline_is_killed_and_the_daemon_runs_the_other_jobs_meanwhile() {
    let hung = App::running("hung", &["/srv/logs"]);
    hung.sh("echo line > /srv/logs/app.log");
    let other = App::running("other", &["/srv/media"]);
    other.sh("echo a > /srv/media/a");
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("backups");
    let config = common::local_config(
        tmp.path(),
        &dest,
        &format!(
            "[logs.hung]\ncontainer = \"{}\"\ndestination = \"local\"\nreopen = \"copytruncate\"\nsettle = 0\nschedule = \"* * * * * *\"\n\
             [jobs.other]\ncontainer = \"{}\"\ndestinations = [\"local\"]\nschedule = \"* * * * * *\"\n",
            hung.name, other.name
        ),
    );
    // The log job's helper stops for good (as one opening a FIFO would); its deadline is 20s.
    let daemon = Daemon::start(
        &config,
        &[
            ("DOCKYARD_FAULT", "logs-begin"),
            ("DOCKYARD_HELPER_TIMEOUT", "20s"),
        ],
    );
    let mut other_ok = 0;
    let hung_result = loop {
        let e = daemon.next();
        if e["type"] != "job" {
            continue;
        }
        if e["job"] == "other" {
            assert_eq!(e["ok"], true, "{e}");
            other_ok += 1;
        } else {
            break e;
        }
    };
    assert!(
        other_ok >= 2,
        "the backup job ran {other_ok} times while the log job hung"
    );
    assert_eq!(hung_result["ok"], false, "{hung_result}");
    assert!(
        hung_result["error"]
            .as_str()
            .unwrap()
            .contains("did not finish within 20s and was killed"),
        "{hung_result}"
    );
    daemon.interrupt();
}

#[test]
fn dockyards_in_two_pid_namespaces_never_take_each_others_live_runs_for_dead() {
    let app = App::running("pidns", &["/srv/media"]);
    app.sh("echo a > /srv/media/a");
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    dockyard(&["backup", &app.name, "--to", d]).ok();
    let backed_up = app.tree("/srv/media");
    app.sh("echo b > /srv/media/b");
    // A restore in a PID namespace of its own (as `docker compose run dockyard restore` beside
    // a daemon), with lock files of its own (its own /run), stops once staged.
    let locks = tempfile::tempdir().unwrap();
    let unshare = [
        "unshare",
        "--pid",
        "--fork",
        "--kill-child",
        "--mount-proc",
        "--uts",
        "sh",
        "-c",
        "hostname dyd-compose && exec \"$0\" \"$@\"",
    ];
    let mut restore = Faulted::start_in(
        &unshare,
        &["restore", &app.name, "--from", d, "--no-safety-backup"],
        "staged",
        &[("DOCKYARD_LOCK_DIR", locks.path().to_str().unwrap())],
    );
    restore.reached("staged");
    // A backup here meanwhile: the restore's run is alive, whatever its pid looks like from here.
    let r = dockyard(&["backup", &app.name, "--to", d]);
    assert_eq!(r.code, 6, "{}", r.stderr);
    assert!(
        r.stderr.contains("is busy") && r.stderr.contains("restore by pid 1 on dyd-compose"),
        "{}",
        r.stderr
    );
    assert!(app.sh("ls -a /srv/media").contains(".dockyard-restore"));
    restore.release("staged");
    let (code, stderr) = restore.finish();
    assert_eq!(code, 0, "{stderr}");
    helpers_gone(&app);
    assert_eq!(app.tree("/srv/media"), backed_up);

    // Killed in its namespace, it is gone from here too: the next backup takes over.
    app.sh("echo c > /srv/media/c");
    let after = app.tree("/srv/media");
    let mut restore = Faulted::start_in(
        &unshare,
        &["restore", &app.name, "--from", d, "--no-safety-backup"],
        "staged",
        &[("DOCKYARD_LOCK_DIR", locks.path().to_str().unwrap())],
    );
    restore.reached("staged");
    restore.signal("KILL");
    restore.finish();
    let r = dockyard(&["backup", &app.name, "--to", d]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("removed the staging"), "{}", r.stderr);
    app.assert_as_before("/srv/media", &after);
}

#[test]
fn a_swap_that_finished_while_the_engine_stopped_is_reported_done() {
    let mut engine = PrivateEngine::start();
    let host = engine.host();
    let app = App::created_on(&host, "engine-stop", &["/srv/media"]);
    app.start();
    app.sh("i=0; while [ $i -lt 50 ]; do i=$((i+1)); echo $i > /srv/media/f$i; done");
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    let env = [("DOCKER_HOST", host.as_str())];
    let r = dockyard_env(&["backup", &app.name, "--to", d], &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let backed_up = app.tree("/srv/media");
    app.sh("rm /srv/media/f1 && echo new > /srv/media/new");
    // The swap helper finishes every move, records `swapped`, and the engine stops under it.
    let mut run = Faulted::start(
        &["restore", &app.name, "--from", d, "--no-safety-backup"],
        "swap-swapped",
        &env,
    );
    wait_for_marker(&host, &app, "swap-swapped", &mut run);
    engine.restart();
    let (code, stderr) = run.finish();
    assert_eq!(code, 0, "the swap was complete: {stderr}");
    assert!(!stderr.contains("mid-swap"), "{stderr}");
    app.start();
    common::wait_until("the clean-up is done", Duration::from_secs(120), || {
        app.tree("/srv/media") == backed_up
    });
}

/// Waits until a helper on engine `host` of `app` stopped at fault point `point`.
fn wait_for_marker(host: &str, app: &App, point: &str, run: &mut Faulted) {
    let marker = format!("/.dockyard-fault-reached-{point}");
    common::wait_until(
        &format!("a helper reached {point}"),
        Duration::from_secs(300),
        || {
            assert!(run.child.try_wait().unwrap().is_none(), "{}", run.stderr());
            app.helpers().iter().any(|id| {
                std::process::Command::new("docker")
                    .args(["-H", host, "diff", id])
                    .output()
                    .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&marker))
            })
        },
    );
}

/// An app running as uid 1000 that owns /data (plus `extra` `docker create` arguments), with
/// `files` written into /data/sub, backed up as path /data/sub into a fresh destination.
fn backed_up_sub(
    name: &str,
    extra: &[&str],
    files: &str,
) -> (App, tempfile::TempDir, std::path::PathBuf) {
    let mut args = vec!["--user", "1000:1000", "-v", "/data"];
    args.extend_from_slice(extra);
    let app = App::create_with(name, &args, common::image());
    app.start();
    app.root_sh("chown 1000:1000 /data");
    app.sh(&format!("mkdir -p /data/sub && {files}"));
    let (tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    dockyard(&["backup", &app.name, "--to", d, "--path", "/data/sub"]).ok();
    (app, tmp, dest)
}

/// `restore --path /data/sub` of `app` from `dest`, stopping at the fault points `faults`.
fn restore_sub(app: &App, dest: &std::path::Path, faults: &str) -> Faulted {
    let d = dest.to_str().unwrap();
    let args = [
        "restore",
        &app.name,
        "--from",
        d,
        "--path",
        "/data/sub",
        "--no-safety-backup",
    ];
    Faulted::start(&args, faults, &[])
}

#[test]
fn a_path_swapped_for_a_symlink_mid_swap_never_takes_the_swap_outside() {
    // An unprivileged app owns /data; the host directory bound at /hostdir is root's alone.
    let (_v, host) = victim();
    let bind = format!("{}:/hostdir", host.display());
    let (app, _tmp, dest) = backed_up_sub(
        "swap-race",
        &["-v", &bind],
        "echo v1 > /data/sub/a && echo v1 > /data/sub/b",
    );
    app.sh("echo v2 > /data/sub/a && rm /data/sub/b");
    // Once the old contents are aside, the app swaps its directory for a symlink to /hostdir.
    let mut run = restore_sub(&app, &dest, "swap-in");
    let helper = run.helper_reached(&app, "swap-in");
    app.sh("mv /data/sub /data/sub.x && ln -s /hostdir /data/sub");
    common::fault::release_helper(&helper);
    let (code, stderr) = run.finish();
    assert_eq!(code, 0, "{stderr}");
    assert_untouched(&host);
    // The restore went where it began: into the directory the app renamed.
    assert_eq!(app.sh("cat /data/sub.x/a /data/sub.x/b"), "v1\nv1\n");
}

#[test]
fn two_containers_sharing_a_volume_never_restore_into_it_at_once() {
    let volume = common::unique("shared");
    let a = App::create_with(
        "share-a",
        &["-v", &format!("{volume}:/data")],
        common::image(),
    );
    let b = App::create_with(
        "share-b",
        &["-v", &format!("{volume}:/srv")],
        common::image(),
    );
    a.start();
    b.start();
    a.sh("echo a > /data/f");
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    dockyard(&["backup", &a.name, "--to", d]).ok();
    dockyard(&["backup", &b.name, "--to", d]).ok();
    a.sh("echo changed > /data/f");
    let mut first = Faulted::start(
        &["restore", &a.name, "--from", d, "--no-safety-backup"],
        "staged",
        &[],
    );
    first.reached("staged");
    let second = dockyard(&["restore", &b.name, "--from", d, "--no-safety-backup"]);
    assert_eq!(second.code, 6, "{}", second.stderr);
    assert!(
        second.stderr.contains("is busy") && second.stderr.contains(&volume),
        "{}",
        second.stderr
    );
    first.release("staged");
    let (code, stderr) = first.finish();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(a.sh("cat /data/f"), "a\n");
    drop((a, b));
    let _ = std::process::Command::new("docker")
        .args(["volume", "rm", &volume])
        .output();
}

#[test]
fn a_container_made_again_on_the_same_volume_finishes_the_restore_it_lost() {
    let volume = common::unique("remade");
    let make = || {
        let app = App::create_with(
            "remade",
            &["-v", &format!("{volume}:/srv/media")],
            common::image(),
        );
        app.start();
        app
    };
    let app = make();
    app.sh("i=0; while [ $i -lt 500 ]; do i=$((i+1)); echo $i > /srv/media/f$i; done");
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    dockyard(&["backup", &app.name, "--to", d]).ok();
    let backed_up = app.tree("/srv/media");
    app.sh("rm /srv/media/f1 && echo new > /srv/media/new");
    let mut run = Faulted::start(
        &["restore", &app.name, "--from", d, "--no-safety-backup"],
        "swap-batch",
        &[],
    );
    let helper = run.helper_reached(&app, "swap-batch");
    run.signal("KILL");
    run.finish();
    common::docker(&["kill", &helper]);
    let name = app.name.clone();
    // The container is made again, same name, same volume, new id.
    common::docker(&["rm", "-f", &name]);
    common::docker(&["rm", "-f", &helper]);
    common::docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "none",
        "-v",
        &format!("{volume}:/srv/media"),
        common::image(),
        "sleep",
        "100000",
    ]);
    let again = App::named(name);
    let r = dockyard(&["backup", &again.name, "--to", d]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("taking over the restore")
            && r.stderr.contains("finished the interrupted restore"),
        "{}",
        r.stderr
    );
    assert_eq!(again.tree("/srv/media"), backed_up);
    drop((app, again));
    let _ = std::process::Command::new("docker")
        .args(["volume", "rm", &volume])
        .output();
}

#[test]
fn a_bind_source_inside_another_writable_mount_is_never_borrowed() {
    let tmp = tempfile::tempdir().unwrap();
    let outer = tmp.path().join("app");
    std::fs::create_dir_all(outer.join("sub")).unwrap();
    std::fs::write(outer.join("sub/conf"), "setting = 1\n").unwrap();
    let app = App::create_with(
        "bind-in-bind",
        &[
            "-v",
            &format!("{}:/app", outer.display()),
            "-v",
            &format!("{}:/etc/conf", outer.join("sub/conf").display()),
        ],
        common::image(),
    );
    let (_t, dest) = dest_dir();
    for args in [
        vec!["backup", &app.name, "--to", dest.to_str().unwrap()],
        vec!["restore", &app.name, "--from", dest.to_str().unwrap()],
    ] {
        let r = dockyard(&args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("another mount the container may write"),
            "{args:?}: {}",
            r.stderr
        );
    }
    assert!(app.helpers().is_empty());
}

#[test]
fn a_log_directory_of_roots_that_the_app_may_write_is_worked_in_as_nobody() {
    let app = App::create_with(
        "logs-group",
        &["--user", "1000:1000", "-v", "/srv/logs"],
        common::image(),
    );
    app.start();
    app.root_sh("chown 0:1000 /srv/logs && chmod 0775 /srv/logs");
    app.sh("echo line > /srv/logs/app.log");
    let (_tmp, dest) = dest_dir();
    let r = dockyard(&[
        "logs",
        &app.name,
        "--to",
        dest.to_str().unwrap(),
        "--reopen",
        "none",
        "--settle",
        "0",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // What the helper made is nobody's, not root's.
    assert_eq!(app.sh("stat -c %u /srv/logs/.dockyard").trim(), "65534");
}

#[test]
fn a_restore_that_can_be_neither_finished_nor_put_back_is_abandoned_not_retried_forever() {
    let (app, _tmp, dest) = backed_up_sub("abandon", &[], "echo v1 > /data/sub/a");
    app.sh("echo v2 > /data/sub/a");
    // Moving in fails every time; as the rollback begins, the app swaps the path for a symlink.
    let mut run = restore_sub(&app, &dest, "swap-in=fail,rollback-begin");
    let helper = run.helper_reached(&app, "rollback-begin");
    app.sh("mv /data/sub /data/sub.x && ln -s /nonexistent /data/sub");
    common::fault::release_helper(&helper);
    let (code, stderr) = run.finish();
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("later runs only warn"), "{stderr}");
    // Later runs say so and go on.
    for _ in 0..2 {
        let r = dockyard(&["backup", &app.name, "--to", dest.to_str().unwrap()]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(r.stderr.contains("was given up"), "{}", r.stderr);
    }
}

#[test]
fn a_signal_while_waiting_for_the_clean_up_still_reports_the_restore_done() {
    let app = App::running("wait-clean", &["/srv/media"]);
    app.sh("echo a > /srv/media/a");
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    dockyard(&["backup", &app.name, "--to", d]).ok();
    app.sh("echo b > /srv/media/b");
    let mut run = Faulted::start(
        &[
            "restore",
            &app.name,
            "--from",
            d,
            "--no-safety-backup",
            "--wait-cleanup",
            "--json",
        ],
        "remove-begin",
        &[],
    );
    let helper = run.helper_reached(&app, "remove-begin");
    run.signal("TERM");
    run.said("finishing the swap in progress first");
    common::fault::release_helper(&helper);
    let (code, stderr) = run.finish();
    assert_eq!(code, 0, "{stderr}");
}
