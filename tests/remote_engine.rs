//! A remote engine (issue 12): `DOCKER_HOST=ssh://dockyard-test` reaches the second dockerd that
//! `.ci/peers.sh` starts, through the test sshd. The tricky tree round-trips exactly through the
//! agent over that connection, only compressed bytes come back over it, and ssh failures name the
//! engine and what to check.

mod common;

use common::peers::ssh_config;
use common::{dest_dir, dockyard_env, getxattr, list, peers, App, TRICKY_NOTE};

/// The second engine's socket, for the test's own `docker -H` calls.
fn engine2() -> String {
    peers::var("DOCKYARD_TEST_ENGINE2")
}

/// Runs dockyard against the remote engine with info logs; returns the run.
fn remote(host: &str, args: &[&str]) -> common::Run {
    let config = ssh_config();
    dockyard_env(
        args,
        &[
            ("DOCKER_HOST", host),
            ("DOCKYARD_SSH_CONFIG", &config),
            ("RUST_LOG", "dockyard=info"),
        ],
    )
}

/// The value of `key=` in the log line containing `line`.
fn logged(stderr: &str, line: &str, key: &str) -> u64 {
    let l = stderr
        .lines()
        .find(|l| l.contains(line))
        .unwrap_or_else(|| panic!("no {line:?} in:\n{stderr}"));
    let v = l
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {l}"));
    v.parse().unwrap()
}

#[test]
fn a_remote_engine_over_ssh_round_trips_the_tricky_tree_and_only_compressed_bytes_cross() {
    let engine = engine2();
    let app = App::created_on(&engine, "remote-tricky", &["/srv/media"]);
    app.start();
    app.fill_tricky();
    // 24 MiB of text: what the engine's archive endpoint would send as is, the agent as ~100 KiB.
    app.sh("cd /srv/media && yes 'GET /media/photos/2024/harbour.jpg 200 5120' | head -c 25165824 > access.log");
    let note = TRICKY_NOTE;
    let before = app.tree("/srv/media");

    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    let r = remote("ssh://dockyard-test", &["backup", &app.name, "--to", d]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("backing up through dockyard's agent in the helper"),
        "{}",
        r.stderr
    );
    let archive = list(&dest)[0]["size"].as_u64().unwrap();
    let line = "bytes over ssh to and from the remote engine";
    let received = logged(&r.stderr, line, "received");
    assert_eq!(logged(&r.stderr, line, "archive"), archive);
    // What came back is the compressed archive plus HTTP framing, not the 24 MiB tar.
    assert!(
        received >= archive && received < archive + (256 << 10),
        "received {received} bytes for an archive of {archive}"
    );
    assert!(archive < 4 << 20, "archive of {archive} bytes");

    let fresh = App::created_on(&engine, "remote-tricky-new", &["/srv/media"]);
    let r = remote(
        "ssh://dockyard-test",
        &[
            "restore",
            &fresh.name,
            "--from",
            d,
            "--container",
            &app.name,
        ],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        !r.stderr
            .contains("staging through the engine's archive endpoint"),
        "{}",
        r.stderr
    );
    fresh.start();
    assert_eq!(fresh.tree("/srv/media"), before);
    assert_eq!(
        getxattr(&fresh.mount_source("/srv/media").join("owned"), "user.note").as_deref(),
        Some(note)
    );
    assert!(app.helpers().is_empty() && fresh.helpers().is_empty());
}

#[test]
fn an_engine_behind_an_unknown_host_key_or_a_bad_url_is_refused_with_what_to_check() {
    let r = remote(
        "ssh://dockyard-test-unknown-key",
        &["backup", "anything", "--to", "/nonexistent-dockyard-dest"],
    );
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "cannot reach the Docker Engine at ssh://dockyard-test-unknown-key: ssh://dockyard-test-unknown-key: the host key"
        ) && r.stderr.contains("not in known_hosts"),
        "{}",
        r.stderr
    );

    let r = remote(
        "ssh://dockyard-test/var/run/docker.sock",
        &["backup", "anything", "--to", "/nonexistent-dockyard-dest"],
    );
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("expected ssh://[user@]host[:port]"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_remote_engine_over_tcp_with_tls_round_trips_and_a_client_without_certificates_is_told_what_to_set(
) {
    let engine = engine2();
    let tls = peers::var("DOCKYARD_TEST_ENGINE2_TLS");
    let certs = peers::var("DOCKYARD_TEST_ENGINE2_CERTS");
    let app = App::created_on(&engine, "remote-tls", &["/srv/media"]);
    app.start();
    app.sh("mkdir -p /srv/media/a && echo tls > /srv/media/a/one && dd if=/dev/urandom of=/srv/media/a/photo.jpg bs=64k count=40 2>/dev/null");
    let before = app.tree("/srv/media");
    let over_tls = |args: &[&str]| {
        dockyard_env(
            args,
            &[
                ("DOCKER_HOST", tls.as_str()),
                ("DOCKER_TLS_VERIFY", "1"),
                ("DOCKER_CERT_PATH", certs.as_str()),
                ("RUST_LOG", "dockyard=info"),
            ],
        )
    };
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    let r = over_tls(&["backup", &app.name, "--to", d]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("through dockyard's agent"),
        "{}",
        r.stderr
    );
    let fresh = App::created_on(&engine, "remote-tls-new", &["/srv/media"]);
    let r = over_tls(&[
        "restore",
        &fresh.name,
        "--from",
        d,
        "--container",
        &app.name,
    ]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    fresh.start();
    assert_eq!(fresh.tree("/srv/media"), before);

    // Plain HTTP to the TLS port: refused, and the message says what to set.
    let r = dockyard_env(
        &["backup", &app.name, "--to", d],
        &[("DOCKER_HOST", tls.as_str())],
    );
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("cannot reach the Docker Engine ({tls})"))
            && r.stderr
                .contains("set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH"),
        "{}",
        r.stderr
    );
    assert_eq!(list(&dest).len(), 1, "nothing half-written");
}
