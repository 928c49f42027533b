//! One destination suite, run against every backend (a local directory, sshd, Garage): a round
//! trip keeps every byte; a backup killed mid-upload leaves nothing listed and the next run
//! leaves nothing behind; a destination that refuses writes fails the backup with exit 4 naming
//! it, leaving nothing; a manifest whose archive is missing fails verify and restore with exit 4
//! naming the missing object, and touches nothing; a prune whose archive is already gone still
//! removes the backup; shipped logs past their age are pruned, and only the container's own.

mod common;

use std::time::Duration;

use common::dest::Dest;
use common::peers::pairs;
use common::{backups, wait_until, App};

fn round_trip(dest: Dest) {
    let app = App::running("be-rt", &["/srv/media"]);
    app.sh("mkdir -p /srv/media/a/b && echo one > /srv/media/a/b/1.txt && dd if=/dev/urandom of=/srv/media/photo.jpg bs=1k count=700 2>/dev/null");
    let before = app.tree("/srv/media");
    let url = dest.url();
    dest.run(&["backup", &app.name, "--to", &url]).ok();
    let listed = backups(&dest.run(&["list", "--to", &url, "--json"]).ok());
    assert_eq!(listed.len(), 1, "{url}");
    let id = listed[0]["id"].as_str().unwrap();
    dest.run(&["verify", id, "--to", &url]).ok();
    app.sh("rm -rf /srv/media/a; echo changed > /srv/media/photo.jpg");
    dest.run(&[
        "restore",
        &app.name,
        "--from",
        &url,
        "--archive",
        id,
        "--no-safety-backup",
    ])
    .ok();
    assert_eq!(app.tree("/srv/media"), before, "{url}");
    // The archive, its file index and the manifest.
    assert_eq!(dest.names().len(), 3, "{url}: {:?}", dest.files());
}

fn killed_mid_upload(dest: Dest) {
    let app = App::running("be-kill", &["/srv/media"]);
    app.sh("dd if=/dev/urandom of=/srv/media/big bs=1M count=48 2>/dev/null");
    let url = dest.url();
    let mut child = common::dockyard_cmd(
        &["backup", &app.name, "--to", &url, "--level", "19"],
        &pairs(&dest.env()),
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    wait_until("the upload is under way", Duration::from_secs(90), || {
        dest.uploading()
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let listed = backups(&dest.run(&["list", "--to", &url, "--json"]).ok());
    assert!(listed.is_empty(), "{url}: a killed backup is listed");
    // The next ordinary run removes what the killed one left, and adds only its own backup.
    dest.run(&["backup", &app.name, "--to", &url]).ok();
    let files = dest.files();
    assert_eq!(files.len(), 3, "{url}: {files:?}");
    assert!(
        files.iter().any(|f| f.ends_with(".tar.zst"))
            && files.iter().any(|f| f.ends_with(".index.zst"))
            && files.iter().any(|f| f.ends_with(".json")),
        "{url}: {files:?}"
    );
    // (The helper of the killed run is removed by the next run too.)
    assert!(app.helpers().is_empty(), "{url}: helper left");
}

fn refused_write(dest: Dest) {
    let app = App::running("be-refuse", &["/srv/media"]);
    app.sh("echo a > /srv/media/a");
    let refusing = dest.refusing();
    let url = refusing.url();
    let r = refusing.run(&["backup", &app.name, "--to", &url]);
    assert_eq!(r.code, 4, "{url}: {}", r.stderr);
    let shown = url.trim_start_matches("ssh://dockyard-test/~/");
    assert!(r.stderr.contains(shown), "{url}: {}", r.stderr);
    assert!(app.helpers().is_empty(), "{url}: helper left");
    // Nothing was written: only the file the refusal is made of is there.
    let left: Vec<String> = dest.files().into_iter().filter(|f| f != "file").collect();
    assert!(
        left.is_empty() && refusing.files().is_empty(),
        "{url}: {left:?}"
    );
}

fn missing_object(dest: Dest) {
    let app = App::running("be-missing", &["/srv/media"]);
    app.sh("echo keep > /srv/media/a");
    let url = dest.url();
    dest.run(&["backup", &app.name, "--to", &url]).ok();
    let id = backups(&dest.run(&["list", "--to", &url, "--json"]).ok())[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let archive = format!("{id}.tar.zst");
    dest.remove(&archive);
    let v = dest.run(&["verify", &id, "--to", &url]);
    assert_eq!(v.code, 4, "{url}: {}", v.stderr);
    assert!(v.stderr.contains(&archive), "{url}: {}", v.stderr);
    let before = app.tree("/srv/media");
    let r = dest.run(&["restore", &app.name, "--from", &url, "--archive", &id]);
    assert_eq!(r.code, 4, "{url}: {}", r.stderr);
    assert!(r.stderr.contains(&archive), "{url}: {}", r.stderr);
    assert_eq!(app.tree("/srv/media"), before, "{url}: the target changed");
}

/// A destination holding more manifests than one batch read (64 over SSH): `list --container`
/// reads exactly that container's, and one whose name says this container but whose content is
/// another's is refused and reported, not listed.
fn many_manifests(dest: Dest) {
    let app = App::running("be-many", &["/srv/media"]);
    app.sh("echo keep > /srv/media/a");
    let url = dest.url();
    dest.run(&["backup", &app.name, "--to", &url]).ok();
    let real = backups(&dest.run(&["list", "--to", &url, "--json"]).ok())[0].clone();
    let copy = |n: u32, container: &str| {
        let id = format!(
            "{}-2025{:02}{:02}T000000Z-{n:04x}",
            app.name,
            1 + n / 28,
            1 + n % 28
        );
        let mut m = real.clone();
        m["id"] = id.clone().into();
        m["archive"] = format!("{id}.tar.zst").into();
        m.as_object_mut().unwrap().remove("index");
        m["container"] = container.into();
        m["created"] = format!("2025-{:02}-{:02}T00:00:00Z", 1 + n / 28, 1 + n % 28).into();
        dest.write(&format!("{id}.json"), &m.to_string());
        id
    };
    for n in 0..70 {
        copy(n, &app.name);
    }
    let forged = copy(70, "someone-else");
    let env = dest.env();
    let mut env = pairs(&env);
    env.push(("RUST_LOG", "dockyard=debug"));
    let r = common::dockyard_env(
        &["list", "--to", &url, "--json", "--container", &app.name],
        &env,
    );
    assert_eq!(r.code, 0, "{url}: {}", r.stderr);
    // Over SSH all 72 come in two remote commands (64 + 8), none one by one.
    let read_in_batches = matches!(dest, Dest::Ssh(_));
    assert!(
        r.stderr.contains(if read_in_batches {
            "batched=72 one_by_one=0"
        } else {
            "batched=0 one_by_one=72"
        }),
        "{url}: {}",
        r.stderr
    );
    let doc = common::one_document(&r.stdout);
    assert_eq!(doc["backups"].as_array().unwrap().len(), 71, "{url}");
    assert_eq!(
        doc["rejected"][0]["object"],
        format!("{forged}.json"),
        "{url}"
    );
    assert!(
        doc["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("but it holds a backup of \"someone-else\""),
        "{url}: {doc}"
    );
}

/// Deleting is idempotent: a backup whose archive someone already removed is pruned all the same.
fn prune_after_a_lost_archive(dest: Dest) {
    let app = App::running("be-prune", &["/srv/media"]);
    app.sh("echo keep > /srv/media/a");
    let url = dest.url();
    dest.run(&["backup", &app.name, "--to", &url]).ok();
    dest.run(&["backup", &app.name, "--to", &url]).ok();
    let listed = backups(&dest.run(&["list", "--to", &url, "--json"]).ok());
    let (newer, older) = (
        listed[0]["id"].as_str().unwrap(),
        listed[1]["id"].as_str().unwrap(),
    );
    dest.remove(&format!("{older}.tar.zst"));
    dest.run(&["prune", "--to", &url, "--keep-last", "1"]).ok();
    assert_eq!(
        dest.names(),
        [
            format!("{newer}.index.zst"),
            format!("{newer}.json"),
            format!("{newer}.tar.zst")
        ],
        "{url}"
    );
}

/// `logs --prune-after` lists the container's folder at any depth and deletes what is past the
/// age, not another container's whose name starts the same.
fn shipped_logs_pruned(dest: Dest) {
    let app = App::running("be-logs", &["/srv/logs"]);
    let url = dest.url();
    let old_day = chrono::Utc::now() - chrono::Duration::days(40);
    let shipped = |container: &str| {
        format!(
            "logs/{container}/access.log/{}/access.log.{}.zst",
            old_day.format("%Y/%m/%d"),
            old_day.format("%Y%m%dT%H%M%S%.3fZ")
        )
    };
    let (mine, other) = (shipped(&app.name), shipped(&format!("{}x", app.name)));
    dest.write(&mine, "old");
    dest.write(&other, "old");
    app.sh("seq 1 10 > /srv/logs/access.log");
    let out = dest
        .run(&[
            "logs",
            &app.name,
            "--to",
            &url,
            "--reopen",
            "none",
            "--prune-after",
            "30d",
        ])
        .ok();
    assert!(
        out.contains("shipped 1") && out.contains("pruned 1"),
        "{url}: {out}"
    );
    let names = dest.names();
    assert!(
        !names.contains(&mine) && names.contains(&other),
        "{url}: {names:?}"
    );
    assert_eq!(names.len(), 2, "{url}: {names:?}");
}

/// Runs a scenario against each backend, one test per backend.
macro_rules! on_every_backend {
    ($($scenario:ident),*) => {
        mod local { $( #[test] fn $scenario() { super::$scenario(super::Dest::local()); } )* }
        mod ssh { $( #[test] fn $scenario() { super::$scenario(super::Dest::ssh()); } )* }
        mod s3 { $( #[test] fn $scenario() { super::$scenario(super::Dest::s3()); } )* }
    };
}

on_every_backend!(
    round_trip,
    killed_mid_upload,
    refused_write,
    missing_object,
    many_manifests,
    prune_after_a_lost_archive,
    shipped_logs_pruned
);
