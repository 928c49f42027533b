//! dockyard's agent in the helper (issue 12), against the real engine: the agent path and the
//! engine path each round-trip a tricky tree exactly; the agent keeps xattrs and sparse files;
//! `--exclude` leaves the same names out on both; a helper image the agent cannot run in falls
//! back to the engine path and says why.

mod common;

use common::{dest_dir, docker, dockyard_env, getxattr, list, unique, App, TRICKY_NOTE};

/// Runs dockyard with `DOCKYARD_AGENT=mode` and info logs; asserts success and returns stderr.
fn run(mode: &str, args: &[&str]) -> String {
    let r = dockyard_env(
        args,
        &[("DOCKYARD_AGENT", mode), ("RUST_LOG", "dockyard=info")],
    );
    assert_eq!(r.code, 0, "{args:?} failed:\n{}\n{}", r.stdout, r.stderr);
    r.stderr
}

#[test]
fn the_agent_and_the_engine_path_each_round_trip_the_tricky_tree_exactly() {
    let app = App::running("agent-tricky", &["/srv/media"]);
    app.fill_tricky();
    let note = TRICKY_NOTE;
    let before = app.tree("/srv/media");
    let mut entries = Vec::new();
    for (mode, says) in [
        ("auto", "through dockyard's agent in the helper"),
        (
            "never",
            "through the engine's archive endpoint: --agent never",
        ),
    ] {
        let (_tmp, dest) = dest_dir();
        let d = dest.to_str().unwrap();
        let err = run(mode, &["backup", &app.name, "--to", d]);
        assert!(err.contains(says), "{mode}: {err}");
        // The agent announces itself before it runs: it must not have fallen back after.
        assert_eq!(
            err.contains("engine's archive endpoint"),
            mode == "never",
            "{mode}: {err}"
        );
        entries.push(list(&dest)[0]["entries"].clone());

        let fresh = App::created("agent-tricky-new", &["/srv/media"]);
        let err = run(
            mode,
            &[
                "restore",
                &fresh.name,
                "--from",
                d,
                "--container",
                &app.name,
            ],
        );
        assert_eq!(
            err.contains("staging through the engine's archive endpoint"),
            mode == "never",
            "{err}"
        );
        fresh.start();
        assert_eq!(fresh.tree("/srv/media"), before, "{mode}");
        if mode == "auto" {
            // The engine's own archive keeps only security.capability; the agent keeps every
            // xattr, and writes the image's holes as holes.
            let restored = fresh.mount_source("/srv/media").join("owned");
            assert_eq!(getxattr(&restored, "user.note").as_deref(), Some(note));
            let (blocks, size) = blocks_and_size(&fresh, "/srv/media/disk.img");
            assert_eq!(size, 300 << 20);
            assert!(blocks * 512 < 1 << 20, "not sparse: {blocks} blocks");
        }
    }
    assert_eq!(entries[0], entries[1], "both paths see the same entries");
}

fn blocks_and_size(app: &App, path: &str) -> (u64, u64) {
    let out = app.sh(&format!("stat -c '%b %s' {path}"));
    let mut it = out.split_whitespace().map(|n| n.parse::<u64>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

#[test]
fn excludes_leave_the_same_names_out_on_both_paths() {
    let app = App::running("agent-exclude", &["/srv/media"]);
    app.sh("set -e; cd /srv/media; mkdir -p thumbs/deep cache/x docs; \
         echo a > thumbs/1.jpg; echo b > thumbs/deep/2.jpg; echo c > cache/x/big; \
         echo d > docs/keep.txt; echo e > docs/scratch.tmp; echo f > top.tmp");
    let mut trees = Vec::new();
    for mode in ["auto", "never"] {
        let (_tmp, dest) = dest_dir();
        let d = dest.to_str().unwrap();
        run(
            mode,
            &[
                "backup",
                &app.name,
                "--to",
                d,
                "--exclude",
                "*.tmp",
                "--exclude",
                "cache",
                "--exclude",
                "/srv/media/thumbs/*.jpg",
            ],
        );
        let fresh = App::created("agent-exclude-new", &["/srv/media"]);
        run(
            mode,
            &[
                "restore",
                &fresh.name,
                "--from",
                d,
                "--container",
                &app.name,
            ],
        );
        fresh.start();
        let names = fresh.sh("cd /srv/media && find . | sort");
        assert_eq!(
            names, ".\n./docs\n./docs/keep.txt\n./thumbs\n./thumbs/deep\n./thumbs/deep/2.jpg\n",
            "{mode}"
        );
        trees.push(fresh.tree("/srv/media"));
    }
    assert_eq!(trees[0], trees[1]);
    let bad = dockyard_env(&["backup", &app.name, "--exclude", "a/b"], &[]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("--exclude \"a/b\""), "{}", bad.stderr);
}

/// The test image re-labelled as another architecture (the agent's binary would not run there).
struct ForeignImage(String);

impl ForeignImage {
    fn new() -> ForeignImage {
        let tag = format!("{}:1", unique("arm64"));
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let script = format!(
            r#"set -e; cd {d}; docker save {image} -o saved.tar; mkdir x; tar -xf saved.tar -C x; cd x
config=$(sed 's/.*"Config":"\([^"]*\)".*/\1/' manifest.json)
sed -i 's/"architecture":"[a-z0-9]*"/"architecture":"arm64"/' "$config"
sed -i 's#"RepoTags":\[[^]]*\]#"RepoTags":["{tag}"]#' manifest.json
tar -cf ../foreign.tar . && docker load -i ../foreign.tar >/dev/null"#,
            image = common::image()
        );
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        ForeignImage(tag)
    }
}

impl Drop for ForeignImage {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rmi", &self.0])
            .output();
    }
}

#[test]
fn a_helper_image_of_another_architecture_falls_back_to_the_engine_path_and_says_why() {
    let foreign = ForeignImage::new();
    assert_eq!(
        docker(&["image", "inspect", "-f", "{{.Architecture}}", &foreign.0]).trim(),
        "arm64"
    );
    let app = App::running("agent-arch", &["/srv/media"]);
    app.sh("echo kept > /srv/media/f");
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    let err = run(
        "auto",
        &["backup", &app.name, "--to", d, "--helper-image", &foreign.0],
    );
    assert!(
        err.contains("through the engine's archive endpoint")
            && err.contains(&format!("the helper image {} is arm64", foreign.0)),
        "{err}"
    );
    let fresh = App::created("agent-arch-new", &["/srv/media"]);
    let err = run(
        "auto",
        &[
            "restore",
            &fresh.name,
            "--from",
            d,
            "--container",
            &app.name,
            "--helper-image",
            &foreign.0,
        ],
    );
    assert!(err.contains("is arm64"), "{err}");
    fresh.start();
    assert_eq!(fresh.sh("cat /srv/media/f"), "kept\n");
}

/// Runs dockyard in a mount namespace of its own whose temp and state directories the engine
/// cannot see (as when dockyard runs in a container): the FIFO is invisible to the helper, so the
/// archive must travel over the engine's attach stream, both ways.
fn run_unseen(tmp: &std::path::Path, args: &[&str]) -> String {
    let bin = env!("CARGO_BIN_EXE_dockyard");
    let t = tmp.to_str().unwrap();
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs none {t} && TMPDIR={t} DOCKYARD_STATE_DIR={t}/state exec \"$0\" \"$@\""
        ))
        .arg(bin)
        .args(args)
        .env("RUST_LOG", "dockyard=debug")
        .env_remove("DOCKYARD_AGENT");
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{args:?}: {stderr}");
    stderr
}

#[test]
fn the_attach_stream_carries_the_archive_when_the_engine_cannot_see_the_pipe() {
    let app = App::running("agent-attach", &["/srv/media"]);
    app.sh(
        "set -e; cd /srv/media; head -c 3000000 /dev/urandom > photo.jpg; \
         mkdir docs; for i in 1 2 3 4 5; do echo doc $i > docs/$i.txt; done",
    );
    let before = app.tree("/srv/media");
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    let unseen = tempfile::tempdir().unwrap();
    let err = run_unseen(unseen.path(), &["backup", &app.name, "--to", d]);
    assert!(
        err.contains("piped=false") && !err.contains("piped=true"),
        "{err}"
    );
    assert!(err.contains("through dockyard's agent"), "{err}");
    let fresh = App::created("agent-attach-new", &["/srv/media"]);
    let err = run_unseen(
        unseen.path(),
        &[
            "restore",
            &fresh.name,
            "--from",
            d,
            "--container",
            &app.name,
        ],
    );
    assert!(
        err.contains("piped=false") && !err.contains("piped=true"),
        "{err}"
    );
    fresh.start();
    assert_eq!(fresh.tree("/srv/media"), before);
    // And on the same host without the namespace, the FIFO carries it.
    let r = dockyard_env(
        &["backup", &app.name, "--to", d],
        &[("RUST_LOG", "dockyard=debug")],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("piped=true"), "{}", r.stderr);
}
