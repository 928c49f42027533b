//! `--stop` on a container that is a task of a Swarm service, on a private engine made a
//! one-node Swarm: the service is scaled to 0 around the backup and back to its replica count
//! (stopping the task would only make the orchestrator start another), the backup is
//! consistent, and the count comes back when the run is stopped by SIGTERM while the service is
//! down; a global service, which cannot be scaled, is refused before anything changes.

mod common;

use std::time::Duration;

use common::fault::Faulted;
use common::swarm::{Swarm, PAIRED_WRITER};
use common::{dest_dir, dockyard_cmd, list, output_within, unique, wait_until};

/// How long a backup run may take before the test fails instead of hanging.
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// Runs dockyard (`-v`: its info lines say what it scales) against `swarm`'s engine; returns
/// (exit code, stderr).
fn run_on(swarm: &Swarm, args: &[&str]) -> (i32, String) {
    let host = swarm.host();
    let args = [&["-v"], args].concat();
    let out = output_within(dockyard_cmd(&args, &[("DOCKER_HOST", &host)]), RUN_LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), stderr)
}

/// A service of `replicas` paired writers on `swarm`, with a volume of its own; its name and
/// its first task's container.
fn paired_service(swarm: &Swarm, replicas: u64) -> (String, String) {
    let (svc, vol) = (unique("svc"), unique("svcvol"));
    let n = replicas.to_string();
    swarm.service(
        &svc,
        &vol,
        &["--replicas", &n],
        PAIRED_WRITER,
        replicas as usize,
    );
    let task = swarm.containers(&svc)[0].clone();
    (svc, task)
}

/// File `path` of backup `id` at `dest`, as `dockyard dump` writes it.
fn dump(dest: &str, id: &str, path: &str) -> String {
    let out = dockyard_cmd(&["dump", id, path, "--to", dest], &[])
        .output()
        .unwrap();
    assert!(out.status.success(), "dump {path}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn stop_scales_a_service_to_zero_and_back_around_a_consistent_backup() {
    let swarm = Swarm::start();
    let (svc, vol) = (unique("svc"), unique("svcvol"));
    swarm.service(&svc, &vol, &["--replicas", "2"], PAIRED_WRITER, 2);
    let before = swarm.running_tasks(&svc);
    let spec = swarm.docker(&["service", "inspect", "--format", "{{json .Spec}}", &svc]);
    let task = swarm.containers(&svc)[0].clone();
    let slot = task.split('.').nth(1).unwrap().to_string();
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();

    let hook = "echo $SLOT > /srv/media/post-hook-slot";
    let args = ["backup", &task, "--to", d, "--stop", "--post-hook", hook];
    let (code, stderr) = run_on(&swarm, &args);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!("scaling service {svc} to 0 (was 2 replicas)"))
            && stderr.contains(&format!("scaling service {svc} back to 2")),
        "{stderr}"
    );

    // As it was, but for its tasks: back at its count, with two new tasks: the old ones were shut down, not replaced one by
    // one, and nothing failed or was restarted by the orchestrator.
    assert_eq!(swarm.replicas(&svc), 2);
    let now = swarm.docker(&["service", "inspect", "--format", "{{json .Spec}}", &svc]);
    assert_eq!(now, spec, "the service's spec is as it was");
    let after = swarm.running_tasks(&svc);
    assert_eq!(after.len(), 2, "{:?}", swarm.tasks(&svc));
    assert!(
        after.iter().all(|t| !before.contains(t)),
        "{before:?} {after:?}"
    );
    for t in swarm.tasks(&svc) {
        let old_and_down = before.contains(&t.id) && t.desired != "Running";
        assert!(
            after.contains(&t.id) || old_and_down,
            "a task neither original nor new: {t:?}"
        );
        assert!(
            t.error.is_empty() && !t.state.starts_with("Failed"),
            "{t:?}"
        );
    }
    // The new tasks write again, to the same files.
    let container = swarm.containers(&svc)[0].clone();
    let lines = || {
        let out = swarm.docker(&[
            "exec",
            &container,
            "sh",
            "-c",
            "cat /srv/media/slot*.a | wc -l",
        ]);
        out.trim().parse::<usize>().unwrap()
    };
    let written = lines();
    wait_until("the new tasks write", Duration::from_secs(60), || {
        lines() > written
    });
    // The post-hook ran in the task that took the old one's slot (the old container is gone).
    let ran = swarm.docker(&["exec", &container, "cat", "/srv/media/post-hook-slot"]);
    assert_eq!(ran.trim(), slot);

    // The backup holds both writers' files, each pair equal: nothing wrote while it was read.
    let backups = list(&dest);
    assert_eq!(backups.len(), 1, "{backups:?}");
    let id = backups[0]["id"].as_str().unwrap();
    for slot in ["slot1", "slot2"] {
        let a = dump(d, id, &format!("/srv/media/{slot}.a"));
        let b = dump(d, id, &format!("/srv/media/{slot}.b"));
        assert!(
            a.lines().count() > 0,
            "{slot} was written before the backup"
        );
        assert_eq!(a, b, "{slot}: a and b differ in the backup");
    }
}

#[test]
fn a_sigterm_while_the_service_is_scaled_down_scales_it_back() {
    let swarm = Swarm::start();
    let (svc, task) = paired_service(&swarm, 2);
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    let host = swarm.host();

    let mut run = Faulted::start(
        &["-v", "backup", &task, "--to", d, "--stop"],
        "service-scaled-down",
        &[("DOCKER_HOST", &host)],
    );
    run.reached("service-scaled-down");
    assert_eq!(swarm.replicas(&svc), 0, "scaled down at the point");
    assert!(
        swarm.running_tasks(&svc).is_empty(),
        "{:?}",
        swarm.tasks(&svc)
    );
    run.signal("TERM");
    let (code, stderr) = run.finish();
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!("scaling service {svc} back to 2")),
        "{stderr}"
    );

    // dockyard waited for the tasks before it exited.
    assert_eq!(swarm.replicas(&svc), 2);
    assert_eq!(
        swarm.running_tasks(&svc).len(),
        2,
        "{:?}",
        swarm.tasks(&svc)
    );
    assert_eq!(swarm.containers(&svc).len(), 2);
    assert!(list(&dest).is_empty(), "no backup was made");
}

#[test]
fn a_global_service_is_refused_before_anything_changes() {
    let swarm = Swarm::start();
    let (svc, vol) = (unique("svc"), unique("svcvol"));
    swarm.service(&svc, &vol, &["--mode", "global"], PAIRED_WRITER, 1);
    let before = swarm.running_tasks(&svc);
    let task = swarm.containers(&svc)[0].clone();
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();

    let (code, stderr) = run_on(&swarm, &["backup", &task, "--to", d, "--stop"]);
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&task) && stderr.contains(&svc) && stderr.contains("global mode"),
        "the error names the container, the service and why: {stderr}"
    );
    assert!(!stderr.contains("scaling"), "{stderr}");
    // The same task still runs, the only one; no backup was made.
    assert_eq!(swarm.running_tasks(&svc), before);
    assert_eq!(swarm.tasks(&svc).len(), 1, "{:?}", swarm.tasks(&svc));
    assert_eq!(swarm.containers(&svc), [task]);
    assert!(list(&dest).is_empty());
}

#[test]
fn a_snapshot_stops_a_service_too_and_a_restore_with_stop_is_refused() {
    let swarm = Swarm::start();
    let (svc, task) = paired_service(&swarm, 1);
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();

    // A snapshot records the container as inspected before its service was scaled away.
    let (code, stderr) = run_on(
        &swarm,
        &[
            "snapshot",
            &task,
            "--to",
            d,
            "--stop",
            "--tag",
            "pre-upgrade",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(list(&dest).len(), 1);
    assert_eq!(swarm.replicas(&svc), 1);
    let running = swarm.running_tasks(&svc);
    assert_eq!(running.len(), 1, "{:?}", swarm.tasks(&svc));

    // A restore works through its target container, which scaling to 0 removes: refused, and
    // nothing is stopped.
    let now = swarm.containers(&svc)[0].clone();
    let args = ["restore", &now, "--from", d, "--container", &task, "--stop"];
    let (code, stderr) = run_on(&swarm, &args);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&now) && stderr.contains(&format!("Swarm service {svc:?}")),
        "{stderr}"
    );
    assert!(!stderr.contains("scaling"), "{stderr}");
    assert_eq!(swarm.running_tasks(&svc), running);
    assert_eq!(swarm.containers(&svc), [now]);
}

#[test]
fn a_config_job_with_stop_during_backup_scales_the_service_too() {
    let swarm = Swarm::start();
    let (svc, vol) = (unique("svc"), unique("svcvol"));
    swarm.service(&svc, &vol, &["--replicas", "1"], PAIRED_WRITER, 1);
    let before = swarm.running_tasks(&svc);
    let task = swarm.containers(&svc)[0].clone();
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("backups");
    let config = common::media_job(tmp.path(), &dest, &task, "stop_during_backup = true\n");

    let (code, stderr) = run_on(&swarm, &["run", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!("scaling service {svc} to 0 (was 1 replicas)")),
        "{stderr}"
    );
    assert_eq!(swarm.replicas(&svc), 1);
    let after = swarm.running_tasks(&svc);
    assert!(after.len() == 1 && after != before, "{before:?} {after:?}");
    let backups = list(&dest);
    assert_eq!(backups.len(), 1, "{backups:?}");
    let id = backups[0]["id"].as_str().unwrap();
    let d = dest.to_str().unwrap();
    let (a, b) = (
        dump(d, id, "/srv/media/slot1.a"),
        dump(d, id, "/srv/media/slot1.b"),
    );
    assert!(!a.is_empty() && a == b, "a and b differ in the backup");
}

#[test]
fn without_stop_a_tasks_volumes_back_up_and_restore_through_helpers_that_mount_them_by_name() {
    let swarm = Swarm::start();
    let (svc, vol) = (unique("svc"), unique("svcvol"));
    let script = "echo one > /srv/media/note && exec sleep 100000";
    swarm.service(&svc, &vol, &["--replicas", "1"], script, 1);
    let task = swarm.containers(&svc)[0].clone();
    let before = swarm.running_tasks(&svc);
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();

    let (code, stderr) = run_on(&swarm, &["backup", &task, "--to", d]);
    assert_eq!(code, 0, "{stderr}");
    swarm.docker(&[
        "exec",
        &task,
        "sh",
        "-c",
        "echo two > /srv/media/note && echo x > /srv/media/extra",
    ]);
    let (code, stderr) = run_on(
        &swarm,
        &["restore", &task, "--from", d, "--no-safety-backup"],
    );
    assert_eq!(code, 0, "{stderr}");

    let now = swarm.docker(&[
        "exec",
        &task,
        "sh",
        "-c",
        "cat /srv/media/note; ls /srv/media",
    ]);
    assert_eq!(now, "one\nnote\n");
    assert_eq!(
        swarm.running_tasks(&svc),
        before,
        "the service was left alone"
    );
}

#[test]
fn a_tasks_backups_follow_its_service_and_slot_across_scale_ups() {
    let swarm = Swarm::start();
    let (svc, first) = paired_service(&swarm, 1);
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    let (code, stderr) = run_on(&swarm, &["backup", &first, "--to", d, "--stop"]);
    assert_eq!(code, 0, "{stderr}");
    // The task that came back runs in a container of another name.
    let second = swarm.containers(&svc)[0].clone();
    assert_ne!(first, second);
    let (code, stderr) = run_on(&swarm, &["backup", &second, "--to", d, "--stop"]);
    assert_eq!(code, 0, "{stderr}");
    // Both are backups of the service's slot 1: one retention group, one `latest`.
    let slot = format!("{svc}.1");
    let backups = list(&dest);
    assert_eq!(backups.len(), 2);
    assert!(
        backups.iter().all(|m| m["container"] == slot.as_str()),
        "{backups:?}"
    );
    let (code, stderr) = run_on(
        &swarm,
        &["prune", "--to", d, "--container", &slot, "--keep-last", "1"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(list(&dest).len(), 1);
    // `restore` into the task running now finds its slot's latest backup by itself.
    let third = swarm.containers(&svc)[0].clone();
    let (code, stderr) = run_on(&swarm, &["restore", &third, "--from", d, "--dry-run"]);
    assert_eq!(code, 0, "{stderr}");
}
