//! Several engines in one config (`[engines]`): the shared engine by its socket, and the second
//! dockerd that `.ci/peers.sh` starts, reached over TCP with TLS and through the test sshd. One
//! `dockyard run` backs up containers of one name on both, and their backups never mix
//! (manifests, ids and retention groups carry the engine); labelled containers are found on each
//! engine; an engine that is down fails only its own jobs, naming it.

mod common;

use std::path::{Path, PathBuf};

use common::{dest_dir, docker_on, dockyard, image_on, job_events, list, peers, unique, App};

/// The second engine's socket, for the test's own `docker -H` calls.
fn engine2() -> String {
    peers::var("DOCKYARD_TEST_ENGINE2")
}

/// A running container named `name` with a volume at `/srv/media` on the engine at `engine`
/// (`None`: the shared one), with `extra` `docker create` arguments.
fn container_on(engine: Option<&str>, name: &str, extra: &[&str]) -> App {
    let image = match engine {
        Some(e) => image_on(e),
        None => common::image(),
    };
    let mut args = vec![
        "create",
        "--name",
        name,
        "--network",
        "none",
        "-v",
        "/srv/media",
    ];
    args.extend_from_slice(extra);
    args.extend([image, "sleep", "100000"]);
    docker_on(engine, &args);
    let app = App {
        name: name.to_string(),
        engine: engine.map(str::to_string),
    };
    app.start();
    app
}

/// `<tmp>/dockyard.toml`: engines `here` (the shared socket), `tls` (the second engine over TCP
/// with TLS), `viassh` (the same engine through sshd) and `down` (a socket nobody listens on);
/// one local destination; `[labels] instance = INSTANCE`; then `rest`.
fn config(tmp: &Path, dest: &Path, instance: &str, rest: &str) -> PathBuf {
    let path = tmp.join("dockyard.toml");
    std::fs::write(
        &path,
        format!(
            "lock_dir = \"{tmp}/locks\"\nstate_dir = \"{tmp}/state\"\nparallel_jobs = 1\n\
             [labels]\ninstance = \"{instance}\"\n\
             [engines.here]\nhost = \"unix:///var/run/docker.sock\"\n\
             [engines.tls]\nhost = \"{tls}\"\ntls_cert_path = \"{certs}\"\n\
             [engines.viassh]\nhost = \"ssh://dockyard-test\"\nssh_config = \"{ssh}\"\n\
             [engines.down]\nhost = \"unix://{tmp}/nobody.sock\"\n\
             [destinations.local]\nurl = \"{dest}\"\n{rest}",
            tmp = tmp.display(),
            tls = peers::var("DOCKYARD_TEST_ENGINE2_TLS"),
            certs = peers::var("DOCKYARD_TEST_ENGINE2_CERTS"),
            ssh = peers::ssh_config(),
            dest = dest.display(),
        ),
    )
    .unwrap();
    path
}

#[test]
fn one_run_backs_up_one_name_on_two_engines_and_their_backups_never_mix() {
    let name = unique("multi");
    let e2 = engine2();
    let here = container_on(None, &name, &[]);
    let there = container_on(Some(&e2), &name, &[]);
    here.sh("echo here > /srv/media/where");
    there.sh("echo there > /srv/media/where");
    let tmp = tempfile::tempdir().unwrap();
    let (_d, dest) = dest_dir();
    let instance = unique("inst");
    let job = |job: &str, engine: &str| {
        format!(
            "[jobs.{job}]\ncontainer = \"{name}\"\nengine = \"{engine}\"\ndestinations = [\"local\"]\n\
             [jobs.{job}.retention]\nkeep_last = 1\n"
        )
    };
    let cfg = config(
        tmp.path(),
        &dest,
        &instance,
        &[
            job("a", "here"),
            job("b", "tls"),
            job("c", "viassh"),
            job("d", "down"),
        ]
        .concat(),
    );
    let cfg = cfg.to_str().unwrap();
    // b and c share a container (one engine, two roads; parallel_jobs = 1 runs them one after
    // the other); with keep_last = 1 each run leaves one backup per engine name.
    for round in 0..2 {
        let r = dockyard(&["run", "--config", cfg, "--json"]);
        assert_ne!(r.code, 0, "engine down fails its job: {}", r.stdout);
        let jobs = job_events(&r.stdout);
        for ok in ["a", "b", "c"] {
            assert_eq!(
                jobs[ok]["ok"], true,
                "round {round}, job {ok}: {}\n{}",
                r.stdout, r.stderr
            );
        }
        let down = jobs["d"]["error"].as_str().unwrap();
        assert!(
            down.contains("\"down\"") && down.contains("nobody.sock"),
            "{down}"
        );
    }
    let backups = list(&dest);
    let of = |engine: &str| {
        backups
            .iter()
            .filter(|m| m["engine"] == engine)
            .cloned()
            .collect::<Vec<_>>()
    };
    // Retention kept one of each engine's container: `here/NAME` is not `tls/NAME`.
    let (h, t, s) = (of("here"), of("tls"), of("viassh"));
    assert_eq!((h.len(), t.len(), s.len()), (1, 1, 1), "{backups:#?}");
    for (m, engine) in [(&h[0], "here"), (&t[0], "tls"), (&s[0], "viassh")] {
        assert_eq!(m["container"], name.as_str());
        assert!(
            m["id"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{engine}.{name}-")),
            "{m}"
        );
    }
    // Each engine's backup holds its own container's file.
    for (engine, want) in [("here", "here\n"), ("tls", "there\n")] {
        let r = dockyard(&[
            "dump",
            "latest",
            "/srv/media/where",
            "--to",
            dest.to_str().unwrap(),
            "--container",
            &format!("{engine}/{name}"),
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.stdout, want);
    }
    // `list --container` takes the qualified name.
    let r = dockyard(&[
        "list",
        "--json",
        "--to",
        dest.to_str().unwrap(),
        "--container",
        &format!("tls/{name}"),
    ]);
    let listed = common::backups(&r.ok());
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["engine"], "tls");
    drop((here, there));
}

#[test]
fn labelled_containers_are_found_on_each_engine_and_named_after_it() {
    let instance = unique("inst");
    let labels = [
        "--label",
        "dockyard.enable=true",
        "--label",
        &format!("dockyard.instance={instance}"),
        "--label",
        "dockyard.to=local",
    ]
    .map(str::to_string);
    let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
    let name = unique("lblmulti");
    let e2 = engine2();
    let _here = container_on(None, &name, &labels);
    let _there = container_on(Some(&e2), &name, &labels);
    let tmp = tempfile::tempdir().unwrap();
    let (_d, dest) = dest_dir();
    let cfg = config(tmp.path(), &dest, &instance, "");
    let r = dockyard(&["run", "--config", cfg.to_str().unwrap(), "--json"]);
    let jobs = job_events(&r.stdout);
    // The second engine is reached two ways: the same container is found on both.
    for engine in ["here", "tls", "viassh"] {
        let job = format!("{engine}/{name}");
        assert_eq!(jobs[&job]["ok"], true, "{job}: {}\n{}", r.stdout, r.stderr);
    }
    let down = jobs["down/labels"]["error"].as_str().unwrap();
    assert!(down.contains("\"down\""), "{down}");
    assert_eq!(r.code, 3, "{}", r.stderr);
}

#[test]
fn engines_are_checked_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let (_d, dest) = dest_dir();
    let cfg = config(
        tmp.path(),
        &dest,
        "x",
        "[jobs.a]\ncontainer = \"web\"\ndestinations = [\"local\"]\n",
    );
    let r = dockyard(&["run", "--config", cfg.to_str().unwrap()]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("job \"a\" names no engine") && r.stderr.contains("here"),
        "{}",
        r.stderr
    );
    let path = tmp.path().join("bad.toml");
    std::fs::write(
        &path,
        "[engines.edge]\nhost = \"http://10.0.0.5\"\n[destinations.l]\nurl = \"/b\"\n",
    )
    .unwrap();
    let r = dockyard(&["run", "--config", path.to_str().unwrap()]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("[engines.edge]") && r.stderr.contains("http://10.0.0.5"),
        "{}",
        r.stderr
    );
}
