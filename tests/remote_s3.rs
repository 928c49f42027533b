//! Backups to S3, against a real Garage on 127.0.0.1: the multipart round trip, paginated listing,
//! a run killed mid-upload, each way the store can refuse, a body cut off mid-read (exit 4, the
//! cause said once), and a three-node cluster (replication factor 3) that loses a node during the
//! backup.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::peers::{pairs, var, S3};
use common::{dockyard_cmd, dockyard_env, unique, App, Run, FIXTURE};

fn run(s3: &S3, args: &[&str]) -> Run {
    let env = s3.env();
    let r = dockyard_env(args, &pairs(&env));
    for out in [&r.stdout, &r.stderr] {
        assert!(!out.contains(&s3.secret), "the secret key was printed");
    }
    r
}

fn listed(s3: &S3, url: &str) -> Vec<serde_json::Value> {
    common::backups(&run(s3, &["list", "--json", "--to", url]).ok())
}

/// A unique prefix in the suite's bucket, emptied when dropped.
struct Prefix {
    s3: S3,
    name: String,
}

impl Prefix {
    fn new(s3: &S3) -> Prefix {
        Prefix {
            s3: s3.clone(),
            name: unique("s3"),
        }
    }
    fn url(&self) -> String {
        format!("s3://{}/{}", self.s3.bucket, self.name)
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        self.s3.clear(&self.name);
    }
}

/// Backs up, lists, verifies and restores through `s3`, in 5 MiB parts, and checks the store
/// holds exactly the archive and its manifest afterwards.
fn round_trip(s3: &S3, what: &str, extra: &[&str], during: impl FnOnce(&mut Child, &str)) {
    let app = App::running(what, &["/srv/media", "/srv/logs"]);
    app.sh(FIXTURE);
    app.sh("dd if=/dev/urandom of=/srv/media/video.bin bs=1M count=24 2>/dev/null");
    let prefix = Prefix::new(s3);
    let url = prefix.url();
    let env = s3.env();
    let mut args = vec!["backup", &app.name, "--to", &url, "--s3-part-size", "5"];
    args.extend_from_slice(extra);
    let mut child = dockyard_cmd(&args, &pairs(&env))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    during(&mut child, &prefix.name);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "backup failed: {stderr}");
    assert!(
        !stderr.contains(&s3.secret) && !String::from_utf8_lossy(&out.stdout).contains(&s3.secret)
    );

    let m = listed(s3, &url);
    assert_eq!(m.len(), 1, "{m:?}");
    let id = m[0]["id"].as_str().unwrap();
    assert!(
        m[0]["size"].as_u64().unwrap() > 20 << 20,
        "expected a multipart-sized archive"
    );
    assert_eq!(
        s3.keys(&prefix.name),
        vec![
            format!("{}/{id}.index.zst", prefix.name),
            format!("{}/{id}.json", prefix.name),
            format!("{}/{id}.tar.zst", prefix.name)
        ],
        "the store should hold the archive, its index and its manifest only (no upload markers)"
    );
    assert!(
        s3.uploads(&prefix.name).is_empty(),
        "unfinished upload left"
    );
    assert!(run(s3, &["verify", id, "--to", &url])
        .ok()
        .starts_with("ok "));

    let fresh = App::created(&format!("{what}-new"), &["/srv/media", "/srv/logs"]);
    run(
        s3,
        &[
            "restore",
            &fresh.name,
            "--from",
            &url,
            "--container",
            &app.name,
        ],
    )
    .ok();
    fresh.start();
    for path in ["/srv/media", "/srv/logs"] {
        assert_eq!(fresh.tree(path), app.tree(path), "{path} differs");
    }
    assert!(app.helpers().is_empty() && fresh.helpers().is_empty());
}

#[test]
fn s3_multipart_round_trip_backup_list_verify_restore() {
    round_trip(&S3::garage(), "s3-rt", &[], |_, _| {});
}

#[test]
fn s3_listing_pages_past_a_thousand_objects() {
    let s3 = S3::garage();
    let app = App::running("s3-page", &["/srv/media"]);
    app.sh("echo hello > /srv/media/a");
    let prefix = Prefix::new(&s3);
    let url = prefix.url();
    // 1001 unrelated objects that sort before the backup push it onto the second page.
    let client = s3.client();
    let (bucket, name) = (s3.bucket.clone(), prefix.name.clone());
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async move {
            let mut set = tokio::task::JoinSet::new();
            for i in 0..1001 {
                let (c, b, k) = (
                    client.clone(),
                    bucket.clone(),
                    format!("{name}/aaa-{i:04}.bin"),
                );
                set.spawn(async move { c.put_object().bucket(b).key(k).send().await.map(|_| ()) });
                if set.len() >= 32 {
                    set.join_next().await.unwrap().unwrap().unwrap();
                }
            }
            while let Some(r) = set.join_next().await {
                r.unwrap().unwrap();
            }
        });
    run(&s3, &["backup", &app.name, "--to", &url]).ok();
    let m = listed(&s3, &url);
    assert_eq!(m.len(), 1, "the backup on the second page is missing");
    assert_eq!(m[0]["container"], app.name.as_str());
}

#[test]
fn s3_killed_mid_upload_is_invisible_and_aborted_by_the_next_run() {
    let s3 = S3::garage();
    let app = App::running("s3-kill", &["/srv/media", "/srv/logs"]);
    app.sh("dd if=/dev/urandom of=/srv/media/big bs=1M count=64 2>/dev/null; echo x > /srv/logs/l");
    let prefix = Prefix::new(&s3);
    let url = prefix.url();
    let env = s3.env();
    let mut child = dockyard_cmd(
        &[
            "backup",
            &app.name,
            "--to",
            &url,
            "--level",
            "19",
            "--path",
            "/srv/media",
            "--s3-part-size",
            "5",
        ],
        &pairs(&env),
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    common::wait_until(
        "a multipart upload started",
        Duration::from_secs(90),
        || {
            assert!(child.try_wait().unwrap().is_none(), "backup ended too soon");
            !s3.uploads(&prefix.name).is_empty()
        },
    );
    child.kill().unwrap();
    child.wait().unwrap();

    assert!(listed(&s3, &url).is_empty(), "a killed backup is listed");
    assert_eq!(s3.uploads(&prefix.name).len(), 1);

    run(
        &s3,
        &["backup", &app.name, "--to", &url, "--path", "/srv/logs"],
    )
    .ok();
    assert!(
        s3.uploads(&prefix.name).is_empty(),
        "the killed run's multipart upload was not aborted"
    );
    let m = listed(&s3, &url);
    assert_eq!(m.len(), 1);
    assert_eq!(
        s3.keys(&prefix.name).len(),
        3,
        "marker left: {:?}",
        s3.keys(&prefix.name)
    );
    assert!(app.helpers().is_empty(), "stale helper not removed");
}

/// The marker dockyard writes before it starts uploading `key`, for a writer on this host.
fn marker(s3: &S3, prefix: &str, key: &str, pid: u32, start: u64) {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let host = host.trim();
    let now = chrono::Utc::now();
    let body = serde_json::json!({
        "host": host, "pid": pid, "key": key, "started": now.to_rfc3339(),
        "owner": format!("{host} {pid} {start} testrun {}", now.timestamp()),
    });
    let name = format!("{prefix}/.dockyard-uploads/k-{}", hex::encode(key));
    s3.put(&name, body.to_string().as_bytes());
}

/// This process's start time in clock ticks since boot, as dockyard's owner rule reads it.
fn my_start_time() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split(' ').nth(19).unwrap().parse().unwrap()
}

#[test]
fn s3_sweep_aborts_only_uploads_whose_writer_is_gone_and_clears_their_markers() {
    let s3 = S3::garage();
    let app = App::running("s3-sweep", &["/srv/logs"]);
    app.sh("echo x > /srv/logs/l");
    let prefix = Prefix::new(&s3);
    let url = prefix.url();
    let p = &prefix.name;
    // A killed run's upload with its marker; a killed run's marker with no upload yet (killed
    // between the two requests); a live writer's upload (this test process) with its marker.
    let dead = 999_999_999;
    let (gone_key, orphan_key, live_key) = (
        format!("{p}/c-20260101T000000Z-aaaa.tar.zst"),
        format!("{p}/c-20260101T000000Z-bbbb.tar.zst"),
        format!("{p}/c-20260101T000000Z-cccc.tar.zst"),
    );
    s3.start_upload(&gone_key);
    marker(&s3, p, &gone_key, dead, 1);
    marker(&s3, p, &orphan_key, dead, 1);
    s3.start_upload(&live_key);
    marker(&s3, p, &live_key, std::process::id(), my_start_time());

    run(&s3, &["backup", &app.name, "--to", &url]).ok();
    assert_eq!(
        s3.uploads(p),
        vec![live_key.clone()],
        "only the live writer's upload may remain"
    );
    let markers: Vec<String> = s3
        .keys(p)
        .into_iter()
        .filter(|k| k.contains("/.dockyard-uploads/"))
        .collect();
    assert_eq!(
        markers,
        vec![format!(
            "{p}/.dockyard-uploads/k-{}",
            hex::encode(&live_key)
        )],
        "the gone writers' markers must be removed, the live one's kept"
    );
    assert_eq!(listed(&s3, &url).len(), 1);
}

/// Backs up to `url` with `s3`'s credentials expecting a destination error containing `wants`.
fn refused(s3: &S3, what: &str, url: &str, wants: &[&str]) {
    let app = App::created(what, &["/srv/media"]);
    let r = run(s3, &["backup", &app.name, "--to", url]);
    assert_eq!(r.code, 4, "{url}: {}", r.stderr);
    for want in wants {
        assert!(
            r.stderr.contains(want),
            "{url}: missing {want:?} in: {}",
            r.stderr
        );
    }
    assert!(app.helpers().is_empty(), "helper left behind");
}

#[test]
fn wrong_credentials_name_the_destination_and_never_print_the_secret() {
    let good = S3::garage();
    let bad = S3 {
        secret: "not-the-secret-0123456789abcdef0123456789abcdef".into(),
        ..good.clone()
    };
    let url = format!("s3://{}/never", good.bucket);
    refused(
        &bad,
        "s3-creds",
        &url,
        &[&url, "rejected the credentials", "AWS_SECRET_ACCESS_KEY"],
    );
}

/// What every command says when the AWS chain finds no credentials.
const NO_CREDENTIALS: &str =
    "no AWS credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE)";

#[test]
fn missing_credentials_are_said_as_such_without_sdk_noise() {
    let s3 = S3::garage();
    let app = App::created("s3-nocreds", &["/srv/media"]);
    let url = format!("s3://{}/never", s3.bucket);
    let r = dockyard_env(
        &["backup", &app.name, "--to", &url],
        &[
            ("AWS_REGION", "garage"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
            ("AWS_CONFIG_FILE", "/nonexistent"),
            ("DOCKYARD_S3_ENDPOINT", &s3.endpoint),
        ],
    );
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(
        r.stderr.contains(NO_CREDENTIALS) && r.stderr.contains(&url),
        "{}",
        r.stderr
    );
    // One line: the error, said once; no page of SDK warnings before it.
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
}

#[test]
fn missing_credentials_read_the_same_in_every_command_whatever_the_metadata_service_says() {
    let s3 = S3::garage();
    let app = App::created("s3-nocreds-all", &["/srv/media", "/srv/logs"]);
    let url = format!("s3://{}/never", s3.bucket);
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("dockyard.toml");
    std::fs::write(
        &cfg,
        format!(
            "lock_dir = \"{}\"\n[destinations.s3]\nurl = \"{url}\"\n[jobs.media]\ncontainer = \"{}\"\ndestinations = [\"s3\"]\n",
            tmp.path().join("locks").display(),
            app.name
        ),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let a = app.name.as_str();
    let commands: [&[&str]; 7] = [
        &["backup", a, "--to", &url],
        &["list", "--to", &url],
        &["verify", "latest", "--to", &url],
        &["prune", "--to", &url, "--keep-last", "1"],
        &["restore", a, "--from", &url],
        &["logs", "ship", a, "--to", &url],
        &["config", "check", "--config", c],
    ];
    // An instance metadata service that refuses (EC2 with IMDS turned off answers 403), and none.
    let refusing = common::sinks::Http::refusing();
    for imds in [refusing.base.as_str(), "http://127.0.0.1:9"] {
        for args in commands {
            let mut cmd = dockyard_cmd(
                args,
                &[
                    ("AWS_REGION", "garage"),
                    ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
                    ("AWS_CONFIG_FILE", "/nonexistent"),
                    ("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds),
                    ("DOCKYARD_S3_ENDPOINT", s3.endpoint.as_str()),
                ],
            );
            for var in [
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_SESSION_TOKEN",
                "AWS_EC2_METADATA_DISABLED",
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            ] {
                cmd.env_remove(var);
            }
            let out = cmd.output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(4), "{args:?} ({imds}): {stderr}");
            assert!(
                stderr.contains(NO_CREDENTIALS) && !stderr.contains("cannot reach"),
                "{args:?} ({imds}): {stderr}"
            );
        }
    }
    assert!(app.helpers().is_empty(), "helper left behind");
}

#[test]
fn unknown_bucket_is_named() {
    let s3 = S3::garage();
    let bucket = unique("nobucket");
    refused(
        &s3,
        "s3-bucket",
        &format!("s3://{bucket}/x"),
        &[&format!("bucket {bucket:?} does not exist")],
    );
}

#[test]
fn read_only_key_is_denied_and_leaves_no_upload() {
    let rw = S3::garage();
    let ro = S3 {
        key_id: var("DOCKYARD_TEST_S3_RO_KEY_ID"),
        secret: var("DOCKYARD_TEST_S3_RO_SECRET"),
        ..rw.clone()
    };
    let prefix = Prefix::new(&rw);
    refused(
        &ro,
        "s3-ro",
        &prefix.url(),
        &["access denied", "may read and write"],
    );
    assert!(rw.uploads(&prefix.name).is_empty());
    assert!(rw.keys(&prefix.name).is_empty());
}

#[test]
fn unreachable_endpoint_says_so() {
    let s3 = S3 {
        endpoint: "http://127.0.0.1:9".into(),
        ..S3::garage()
    };
    refused(
        &s3,
        "s3-down",
        "s3://b/x",
        &["cannot reach the S3 endpoint", "--s3-endpoint"],
    );
}

/// A Garage cluster this test starts on free ports and stops (only its own processes) when dropped.
struct Cluster {
    nodes: Vec<Option<Child>>,
    _dir: tempfile::TempDir,
    s3: S3,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Cluster {
    fn start(n: usize) -> Cluster {
        let bin = var("DOCKYARD_TEST_GARAGE_BIN");
        let dir = tempfile::tempdir().unwrap();
        let secret: String = (0..32)
            .map(|i| format!("{:02x}", (i * 37 + 11) as u8))
            .collect();
        let mut configs = Vec::new();
        let mut nodes = Vec::new();
        let mut s3_port = 0;
        for i in 0..n {
            let (rpc, api) = (free_port(), free_port());
            if i == 0 {
                s3_port = api;
            }
            let d = dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(&d).unwrap();
            let conf = d.join("garage.toml");
            std::fs::write(
                &conf,
                format!(
                    "metadata_dir = \"{d}/meta\"\ndata_dir = \"{d}/data\"\ndb_engine = \"sqlite\"\n\
                     replication_factor = {n}\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
                     rpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{secret}\"\n\
                     [s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{api}\"\n\
                     root_domain = \".s3.garage.localhost\"\n",
                    d = d.display()
                ),
            )
            .unwrap();
            let log = std::fs::File::create(d.join("log")).unwrap();
            let child = Command::new(&bin)
                .args(["-c", conf.to_str().unwrap(), "server"])
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            nodes.push(Some(child));
            configs.push(conf);
        }
        let garage = |i: usize, args: &[&str]| -> String {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let out = Command::new(&bin)
                    .args(["-c", configs[i].to_str().unwrap()])
                    .args(args)
                    .output()
                    .unwrap();
                if out.status.success() {
                    return String::from_utf8_lossy(&out.stdout).into_owned();
                }
                assert!(
                    Instant::now() < deadline,
                    "garage {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        };
        let ids: Vec<String> = (0..n)
            .map(|i| garage(i, &["node", "id", "-q"]).trim().to_string())
            .collect();
        for id in &ids[1..] {
            garage(0, &["node", "connect", id]);
        }
        for (i, id) in ids.iter().enumerate() {
            let short = id.split('@').next().unwrap();
            garage(
                0,
                &[
                    "layout",
                    "assign",
                    "-z",
                    &format!("dc{i}"),
                    "-c",
                    "1G",
                    short,
                ],
            );
        }
        garage(0, &["layout", "apply", "--version", "1"]);
        let bucket = unique("cluster");
        garage(0, &["bucket", "create", &bucket]);
        let key = garage(0, &["key", "create", "dockyard-cluster"]);
        let field = |name: &str| {
            key.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split(':').nth(1))
                .unwrap()
                .trim()
                .to_string()
        };
        garage(
            0,
            &[
                "bucket",
                "allow",
                "--read",
                "--write",
                "--owner",
                &bucket,
                "--key",
                "dockyard-cluster",
            ],
        );
        let s3 = S3 {
            endpoint: format!("http://127.0.0.1:{s3_port}"),
            bucket,
            key_id: field("Key ID"),
            secret: field("Secret key"),
        };
        Cluster {
            nodes,
            _dir: dir,
            s3,
        }
    }

    fn stop(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.stop(i);
        }
    }
}

#[test]
fn three_node_cluster_survives_losing_a_node_during_the_backup() {
    let mut cluster = Cluster::start(3);
    let s3 = cluster.s3.clone();
    // Level 12 makes the backup take a few seconds, so the node stops mid-upload.
    round_trip(
        &s3.clone(),
        "s3-cluster",
        &["--level", "12"],
        |child, prefix| {
            common::wait_until(
                "a multipart upload started",
                Duration::from_secs(60),
                || !s3.uploads(prefix).is_empty(),
            );
            assert!(
                child.try_wait().unwrap().is_none(),
                "the backup finished before a node could be stopped"
            );
            cluster.stop(2);
        },
    );
}

#[test]
fn s3_part_size_grows_so_an_archive_fits_the_part_limit_and_one_that_cannot_fit_leaves_nothing() {
    let s3 = S3::garage();
    let app = App::running("s3-grow", &["/srv/media"]);
    app.sh("dd if=/dev/urandom of=/srv/media/video.bin bs=1M count=38 2>/dev/null");
    let base = s3.env();
    // A backup into a fresh prefix from `part` MiB parts, with `extra` in its environment.
    let backup = |part: &str, extra: &[(&str, &str)]| {
        let prefix = Prefix::new(&s3);
        let mut env = pairs(&base);
        env.extend_from_slice(extra);
        let args = [
            "backup",
            &app.name,
            "--to",
            &prefix.url(),
            "--s3-part-size",
            part,
        ];
        (dockyard_env(&args, &env), prefix)
    };
    let part_mib = |prefix: &Prefix| -> Vec<u64> {
        let keys = s3.keys(&prefix.name);
        let archive = keys
            .iter()
            .find(|k| k.ends_with(".tar.zst"))
            .expect("an archive");
        s3.part_sizes(archive).iter().map(|s| s >> 20).collect()
    };
    let verified = |prefix: &Prefix| {
        let args = [
            "verify",
            "latest",
            "--container",
            &app.name,
            "--to",
            &prefix.url(),
        ];
        let r = dockyard_env(&args, &pairs(&base));
        assert_eq!(r.code, 0, "{}", r.stderr);
    };
    let nothing_left = |prefix: &Prefix| {
        let keys = s3.keys(&prefix.name);
        assert!(
            keys.iter()
                .all(|k| !k.ends_with(".tar.zst") && !k.ends_with(".json")),
            "{keys:?}"
        );
        assert!(s3.uploads(&prefix.name).is_empty());
    };

    // A limit of 4 parts from 5 MiB: 5 + 10 + 20 MiB, then the rest. Fixed 5 MiB parts would
    // need 8.
    let (r, prefix) = backup("5", &[("DOCKYARD_S3_PART_LIMIT", "4")]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mib = part_mib(&prefix);
    assert_eq!(mib[..3], [5, 10, 20], "part sizes {mib:?}");
    assert_eq!(mib.len(), 4, "part sizes {mib:?}");
    verified(&prefix);

    // Two parts hold 15 MiB: the backup fails saying so, and leaves no object and no upload.
    let (r, prefix) = backup("5", &[("DOCKYARD_S3_PART_LIMIT", "2")]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr
            .contains("is larger than one S3 upload can hold: 2 parts growing from 5 MiB"),
        "{}",
        r.stderr
    );
    nothing_left(&prefix);

    // Parts past 32 MiB wait on disk, not in memory: from 17 MiB, doubling every part under a
    // limit of 10, the second part (34 MiB at most, 21 MiB here) is spooled to an unnamed file
    // in TMPDIR, which is empty afterwards.
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().to_str().unwrap();
    let (r, prefix) = backup("17", &[("DOCKYARD_S3_PART_LIMIT", "10"), ("TMPDIR", spool)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(part_mib(&prefix), [17, 21]);
    assert!(std::fs::read_dir(tmp.path()).unwrap().next().is_none());
    verified(&prefix);

    // With nowhere to spool, the backup says so and leaves nothing behind.
    let nowhere = [
        ("DOCKYARD_S3_PART_LIMIT", "10"),
        ("TMPDIR", "/nonexistent/dockyard-spool"),
    ];
    let (r, prefix) = backup("17", &nowhere);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(
        r.stderr.contains("cannot spool a part") && r.stderr.contains("TMPDIR"),
        "{}",
        r.stderr
    );
    nothing_left(&prefix);
}

/// A TCP relay to `upstream` on a free loopback port that cuts every connection once more than
/// `limit` bytes came back through it (an S3 body torn off mid-object). Runs until the test ends.
fn cutting_relay(upstream: &str, limit: u64) -> String {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let upstream = upstream.to_string();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(&upstream) else {
                continue;
            };
            let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_in, &mut s_out);
                let _ = s_out.shutdown(Shutdown::Write);
            });
            std::thread::spawn(move || {
                let (mut server, mut client) = (server, client);
                let mut buf = vec![0u8; 64 << 10];
                let mut sent = 0u64;
                while let Ok(n) = server.read(&mut buf) {
                    if n == 0 || client.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    sent += n as u64;
                    if sent > limit {
                        break;
                    }
                }
                let _ = client.shutdown(Shutdown::Both);
                let _ = server.shutdown(Shutdown::Both);
            });
        }
    });
    format!("http://127.0.0.1:{port}")
}

#[test]
fn a_body_cut_off_mid_read_is_a_destination_error_said_once_and_changes_nothing() {
    let s3 = S3::garage();
    let app = App::running("s3-cut", &["/srv/media"]);
    app.sh("dd if=/dev/urandom of=/srv/media/big bs=1M count=64 2>/dev/null");
    let prefix = Prefix::new(&s3);
    let url = prefix.url();
    run(&s3, &["backup", &app.name, "--to", &url, "--level", "1"]).ok();
    let id = listed(&s3, &url)[0]["id"].as_str().unwrap().to_string();
    app.sh("echo after > /srv/media/after");
    let before = app.tree("/srv/media");

    // The same store, reached through a link that breaks 16 MiB into any response.
    let upstream = s3.endpoint.trim_start_matches("http://").to_string();
    let cut = S3 {
        endpoint: cutting_relay(&upstream, 16 << 20),
        ..s3.clone()
    };
    for args in [
        vec!["verify", &id, "--to", &url],
        vec!["restore", &app.name, "--from", &url, "--no-safety-backup"],
    ] {
        let r = run(&cut, &args);
        assert_eq!(r.code, 4, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains(&format!("cannot read {id}.tar.zst")),
            "{args:?}: {}",
            r.stderr
        );
        assert_eq!(
            r.stderr.matches(&url).count(),
            1,
            "said twice: {}",
            r.stderr
        );
        assert!(!r.stderr.contains("verification"), "{args:?}: {}", r.stderr);
        // The SDK's own text ("streaming error") is followed by what broke.
        assert!(
            !r.stderr.trim_end().ends_with("streaming error"),
            "the cause is missing: {}",
            r.stderr
        );
    }
    app.assert_as_before("/srv/media", &before);
}
