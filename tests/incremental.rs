//! Incremental backups end to end on a real engine: a week of changes (new files, edits in place
//! that keep size and mtime, deletions, renames, mode and owner changes, a new hard link, a file
//! replaced by a directory and a directory by a symlink, a sparse file grown, an xattr set), each day's backup
//! restored into a fresh container and compared with that day's tree; the README's restore of a
//! chain by hand with tar, zstd and xargs; a broken chain named by `list`, `verify` and `restore`
//! and the next backup full, saying why; prune keeping what kept backups need; a killed
//! incremental leaving nothing listed; SSH and S3.

mod common;

use common::dest::Dest;
use common::App;
use serde_json::Value;

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Backs up `app` incrementally to `dest`; the JSON document.
fn backup(dest: &Dest, app: &App) -> Value {
    let r = dest.run(&[
        "backup",
        &app.name,
        "--to",
        &dest.url(),
        "--incremental",
        "--json",
        "--no-progress",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    json(&r.stdout)
}

/// Restores backup `id` of `app` at `dest` into a fresh container; its tree.
fn restored(dest: &Dest, app: &App, id: &str) -> String {
    let target = App::created("incr-r", &["/srv/media"]);
    let r = dest.run(&[
        "restore",
        &target.name,
        "--backup",
        id,
        "--from",
        &dest.url(),
        "--container",
        &app.name,
        "--no-safety-backup",
        "--no-progress",
    ]);
    assert_eq!(r.code, 0, "restore {id}: {}", r.stderr);
    target.start();
    state(&target)
}

/// What a user compares after a restore: the tree, and the xattrs the week's test sets.
fn state(app: &App) -> String {
    let dir = app.mount_source("/srv/media");
    let file = common::getxattr(&dir.join("docs/d2.txt"), "user.tag");
    let old = common::getxattr(&dir.join("old"), "user.dir");
    format!(
        "{}\nuser.tag of docs/d2.txt: {file:?}\nuser.dir of old: {old:?}",
        app.tree("/srv/media")
    )
}

/// Removes an xattr of a file on this host (a volume's directory).
fn removexattr(path: &std::path::Path, name: &str) {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid NUL-terminated strings.
    assert_eq!(unsafe { libc::lremovexattr(p.as_ptr(), n.as_ptr()) }, 0);
}

const DAY0: &str = "cd /srv/media && mkdir -p photos docs old gone && \
    for i in 1 2 3 4 5; do head -c 200000 /dev/urandom > photos/p$i.jpg; done && \
    for i in 1 2 3; do seq 1 5000 > docs/d$i.txt; done && \
    echo keep > old/k && echo bye > gone/x && echo f > becomes-dir && \
    mkdir becomes-link && echo inside > becomes-link/y && \
    dd if=/dev/zero of=disk.img bs=1 count=0 seek=3000000 2>/dev/null && echo tail >> disk.img";

/// One day's changes each.
const DAYS: [&str; 6] = [
    // New uploads, a deletion, a rename.
    "cd /srv/media && head -c 100000 /dev/urandom > photos/p6.jpg && rm photos/p2.jpg && mv docs/d3.txt docs/d3-renamed.txt",
    // An edit in place keeping size and mtime; a mode and an owner change.
    "cd /srv/media && t=$(stat -c %Y docs/d1.txt) && sed -i 's/^1$/X/' docs/d1.txt && touch -d @$t docs/d1.txt && chmod 600 photos/p1.jpg && chown 1000:1000 photos/p3.jpg",
    // A new hard link; a file replaced by a directory.
    "cd /srv/media && ln photos/p4.jpg photos/p4-again.jpg && rm becomes-dir && mkdir becomes-dir && echo now > becomes-dir/z",
    // A directory replaced by a symlink; a whole directory gone.
    "cd /srv/media && rm -r becomes-link && ln -s photos becomes-link && rm -r gone",
    // A sparse file grown (and an xattr set: the test does that on the host).
    "cd /srv/media && dd if=/dev/zero of=disk.img bs=1 count=0 seek=6000000 2>/dev/null && echo more >> disk.img",
    // Nothing at all.
    "true",
];

#[test]
fn a_week_of_changes_restores_each_days_tree_and_by_hand() {
    let app = App::running("incr-week", &["/srv/media"]);
    app.sh(DAY0);
    let volume = app.mount_source("/srv/media");
    common::setxattr(&volume.join("old"), "user.dir", b"granted");
    let dest = Dest::local();
    let first = backup(&dest, &app);
    assert_eq!(first["incremental"]["parent"], Value::Null);
    assert!(
        first["incremental"]["full_because"]
            .as_str()
            .unwrap()
            .contains("no earlier backup"),
        "{first}"
    );
    let mut days = vec![(
        first["backup"]["id"].as_str().unwrap().to_string(),
        state(&app),
    )];
    for (day, change) in DAYS.iter().enumerate() {
        app.sh(change);
        // An xattr removed from a directory (a revoked ACL), another set on a file.
        if day == 1 {
            removexattr(&volume.join("old"), "user.dir");
        }
        if day == 4 {
            common::setxattr(&volume.join("docs/d2.txt"), "user.tag", b"reviewed");
        }
        let out = backup(&dest, &app);
        let m = &out["backup"];
        assert_eq!(
            m["parent"].as_str(),
            Some(days.last().unwrap().0.as_str()),
            "{out}"
        );
        assert_eq!(m["chain"].as_str(), Some(days[0].0.as_str()), "{out}");
        assert_eq!(m["format"], 4);
        days.push((m["id"].as_str().unwrap().to_string(), state(&app)));
    }
    // Each day's backup restores that day's tree exactly.
    for (id, tree) in &days {
        assert_eq!(&restored(&dest, &app, id), tree, "the tree of {id}");
    }
    // `list` says which are incremental; `verify` checks the whole chain.
    let list = dest.run(&["list", "--to", &dest.url()]);
    assert_eq!(
        list.stdout.matches(" incremental ").count(),
        6,
        "{}",
        list.stdout
    );
    let v = dest.run(&["verify", &days[6].0, "--from", &dest.url()]);
    assert_eq!(v.code, 0, "{}", v.stderr);
    // `dump` finds a file unchanged since the full backup in the chain, and not a deleted one.
    let dump = |path: &str| dest.run(&["dump", &days[6].0, path, "--to", &dest.url()]);
    for file in ["/srv/media/old/k", "/srv/media/docs/d3-renamed.txt"] {
        let d = dump(file);
        assert_eq!(d.code, 0, "{file}: {}", d.stderr);
        assert_eq!(d.stdout, app.sh(&format!("cat {file}")), "{file}");
    }
    let gone = dump("/srv/media/photos/p2.jpg");
    assert_eq!(gone.code, 2, "{}", gone.stderr);
    assert!(gone.stderr.contains("has no file"), "{}", gone.stderr);

    // The README's recipe: the full, then each increment (its deletion list first).
    let Dest::Local(_, dir) = &dest else {
        unreachable!()
    };
    let out = tempfile::tempdir().unwrap();
    let o = out.path().display();
    let mut script = String::from("set -e\n");
    for (i, (id, _)) in days.iter().enumerate() {
        if i > 0 {
            script.push_str(&format!(
                "zstd -dc {d}/{id}.deleted.zst | (cd {o} && xargs -0 -r rm -rf --)\n",
                d = dir.display()
            ));
        }
        script.push_str(&format!(
            "zstd -dc {d}/{id}.tar.zst | tar -x -C {o}\n",
            d = dir.display()
        ));
    }
    let ok = std::process::Command::new("sh")
        .args(["-c", &script])
        .status()
        .unwrap();
    assert!(ok.success(), "{script}");
    let by_hand = std::process::Command::new("sh")
        .args([
            "-c",
            &format!("cd {o}/srv/media && find . -type f | sort | xargs md5sum"),
        ])
        .output()
        .unwrap();
    let in_app = app.sh("cd /srv/media && find . -type f | sort | xargs md5sum");
    assert_eq!(String::from_utf8_lossy(&by_hand.stdout), in_app);
}

#[test]
fn a_broken_chain_is_named_and_the_next_backup_is_full_saying_why() {
    let app = App::running("incr-broken", &["/srv/media"]);
    app.sh("echo one > /srv/media/a");
    let dest = Dest::local();
    let full = backup(&dest, &app)["backup"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.sh("echo two > /srv/media/b");
    let mid = backup(&dest, &app)["backup"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.sh("echo three > /srv/media/c");
    let last = backup(&dest, &app)["backup"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Prune keeps what a kept backup needs, saying so.
    let p = dest.run(&["prune", "--to", &dest.url(), "--keep-last", "1", "--json"]);
    assert_eq!(p.code, 0, "{}", p.stderr);
    let pruned = json(&p.stdout);
    assert_eq!(pruned["removed"], 0, "{pruned}");
    assert!(
        p.stdout.contains(&format!("needed by {last}")),
        "{}",
        p.stdout
    );
    // The middle link gone: list, verify and restore name it; nothing changes.
    dest.remove(&format!("{mid}.json"));
    let list = dest.run(&["list", "--to", &dest.url()]);
    assert!(
        list.stdout.contains("incremental, BROKEN chain")
            && list.stderr.contains(&format!("its link {mid} is missing")),
        "{}{}",
        list.stdout,
        list.stderr
    );
    let v = dest.run(&["verify", &last, "--from", &dest.url()]);
    assert_eq!(v.code, 5, "{}", v.stderr);
    assert!(
        v.stderr.contains(&format!("its link {mid} is missing")),
        "{}",
        v.stderr
    );
    let target = App::created("incr-broken-r", &["/srv/media"]);
    let r = dest.run(&[
        "restore",
        &target.name,
        "--backup",
        &last,
        "--from",
        &dest.url(),
        "--container",
        &app.name,
        "--no-safety-backup",
    ]);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(r.stderr.contains("nothing was changed"), "{}", r.stderr);
    let next = backup(&dest, &app);
    assert_eq!(next["incremental"]["parent"], Value::Null, "{next}");
    let why = next["incremental"]["full_because"].as_str().unwrap();
    assert!(why.contains("broken") && why.contains(&mid), "{why}");
    // A chain none of whose backups is kept goes whole; the new full stays.
    let p = dest.run(&["prune", "--to", &dest.url(), "--keep-last", "1"]);
    assert_eq!(p.code, 0, "{}", p.stderr);
    let left: Vec<String> = dest
        .names()
        .into_iter()
        .filter(|n| n.contains(&full) || n.contains(&last))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_killed_incremental_leaves_nothing_listed_and_the_next_run_removes_its_objects() {
    let app = App::running("incr-kill", &["/srv/media"]);
    app.sh("echo one > /srv/media/a && echo two > /srv/media/b");
    let dest = Dest::local();
    let full = backup(&dest, &app)["backup"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.sh("echo three > /srv/media/c && rm /srv/media/b");
    let url = dest.url();
    for point in [
        format!("written-{}", app.name),
        "data-committed".to_string(),
    ] {
        let mut run = common::fault::Faulted::start(
            &["backup", &app.name, "--to", &url, "--incremental"],
            &point,
            &[],
        );
        run.reached(&point);
        run.signal("KILL");
        run.finish();
        let list = dest.run(&["list", "--to", &url, "--json"]);
        let listed = json(&list.stdout);
        assert_eq!(
            listed["backups"].as_array().unwrap().len(),
            1,
            "{point}: {listed}"
        );
    }
    // The next ordinary run sweeps what the killed ones left and makes its own increment.
    let next = backup(&dest, &app);
    assert_eq!(
        next["backup"]["parent"].as_str(),
        Some(full.as_str()),
        "{next}"
    );
    let id = next["backup"]["id"].as_str().unwrap();
    let mut want: Vec<String> = [".index.zst", ".json", ".tar.zst"]
        .iter()
        .map(|s| format!("{full}{s}"))
        .chain(
            [".deleted.zst", ".index.zst", ".json", ".tar.zst"]
                .iter()
                .map(|s| format!("{id}{s}")),
        )
        .collect();
    want.sort();
    assert_eq!(dest.names(), want);
    assert_eq!(restored(&dest, &app, id), state(&app));
}

#[test]
fn a_forged_plain_link_in_an_encrypted_chain_is_refused() {
    let app = App::running("incr-enc", &["/srv/media"]);
    app.sh("echo secret > /srv/media/a");
    let dest = Dest::local();
    let dir = tempfile::tempdir().unwrap();
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    let pass = pass.to_str().unwrap();
    let url = dest.url();
    let run = |args: &[&str]| dest.run(args);
    let b = |_: ()| {
        let r = run(&[
            "backup",
            &app.name,
            "--to",
            &url,
            "--incremental",
            "--passphrase-file",
            pass,
            "--json",
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        json(&r.stdout)["backup"]["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let full = b(());
    // The identity variable, set for restores, does not stop a plain backup.
    let plain = common::dockyard_env(
        &["backup", &app.name, "--to", &format!("{url}-plain")],
        &[("DOCKYARD_IDENTITY_FILE", "/nonexistent")],
    );
    assert_eq!(plain.code, 0, "{}", plain.stderr);
    app.sh("echo more > /srv/media/b");
    let last = b(());
    // The destination's owner swaps the full backup's manifest for a plain one (checksums
    // fixed): a restore of the increment refuses the chain before it reads anything.
    let mut m = json(&String::from_utf8(dest.read(&format!("{full}.json"))).unwrap());
    m["encryption"] = Value::Null;
    m["format"] = 2.into();
    m["archive"] = format!("{full}.tar.zst").into();
    m.as_object_mut().unwrap().remove("index");
    dest.copy(&format!("{full}.tar.zst.age"), &format!("{full}.tar.zst"));
    dest.replace(&format!("{full}.json"), m.to_string().as_bytes());
    let target = App::created("incr-enc-r", &["/srv/media"]);
    let r = run(&[
        "restore",
        &target.name,
        "--backup",
        &last,
        "--from",
        &url,
        "--container",
        &app.name,
        "--passphrase-file",
        pass,
        "--no-safety-backup",
    ]);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(r.stderr.contains("encrypted otherwise"), "{}", r.stderr);
    let v = run(&["verify", &last, "--from", &url, "--passphrase-file", pass]);
    assert_eq!(v.code, 5, "{}", v.stderr);
}

#[test]
fn a_path_that_changed_kind_makes_the_next_backup_full() {
    let host = tempfile::tempdir().unwrap();
    let (d, f) = (host.path().join("d"), host.path().join("f"));
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("x"), "in a directory").unwrap();
    std::fs::write(&f, "a single file").unwrap();
    let dest = Dest::local();
    let first = App::create_with(
        "incr-kind",
        &["-v", &format!("{}:/srv/x", d.display())],
        common::image(),
    );
    first.start();
    backup(&dest, &first);
    // The same name, now with a single file there.
    let name = first.name.clone();
    drop(first);
    common::docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "none",
        "-v",
        &format!("{}:/srv/x", f.display()),
        common::image(),
        "sleep",
        "100000",
    ]);
    let app = App::named(name);
    let out = backup(&dest, &app);
    assert_eq!(out["backup"]["parent"], Value::Null, "{out}");
    let why = out["incremental"]["full_because"].as_str().unwrap();
    assert!(why.contains("srv/x is now a"), "{why}");
    let v = dest.run(&[
        "verify",
        out["backup"]["id"].as_str().unwrap(),
        "--from",
        &dest.url(),
    ]);
    assert_eq!(v.code, 0, "{}", v.stderr);
}

#[test]
fn chains_round_trip_over_ssh_and_s3() {
    for dest in [Dest::ssh(), Dest::s3()] {
        let app = App::running("incr-remote", &["/srv/media"]);
        app.sh("mkdir -p /srv/media/d && echo one > /srv/media/d/a && echo two > /srv/media/b");
        backup(&dest, &app);
        app.sh("echo three > /srv/media/d/c && rm /srv/media/b");
        let out = backup(&dest, &app);
        assert!(out["backup"]["parent"].is_string(), "{out}");
        assert_eq!(out["incremental"]["deleted"], 1, "{out}");
        let id = out["backup"]["id"].as_str().unwrap().to_string();
        assert_eq!(restored(&dest, &app, &id), state(&app), "{}", dest.url());
    }
}
