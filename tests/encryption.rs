//! Encrypted backups (age) end to end: the transform against the `age` tool for each kind of key
//! (age X25519, ssh-ed25519, ssh-rsa: the keys `age-keygen` and `ssh-keygen` make); round trips
//! with each kind and a passphrase on a local directory, sshd and Garage, through the agent and
//! the engine's archive endpoint; the README's recovery by hand; missing, wrong and damaged keys
//! and objects (clear errors, the target untouched); no key in any helper container or output;
//! encrypted log shipping; per-destination encryption from the config file.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use dockyard::encryption::{recipients, Age, IdentityFile, Seal, Unlock};
use dockyard::pipeline::transform::Transform;

/// A writer whose bytes the test keeps.
struct Kept(Arc<Mutex<Vec<u8>>>);

impl Write for Kept {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("it runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The key pairs: (recipient text, identity file).
fn keys(dir: &Path) -> Vec<(String, std::path::PathBuf)> {
    let age_key = dir.join("age.key");
    run(Command::new("age-keygen").arg("-o").arg(&age_key));
    let age_pub = String::from_utf8(run(Command::new("age-keygen").arg("-y").arg(&age_key)))
        .unwrap()
        .trim()
        .to_string();
    let mut out = vec![(age_pub, age_key)];
    for kind in ["ed25519", "rsa"] {
        let key = dir.join(format!("id_{kind}"));
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", kind, "-N", "", "-C", "test", "-f"])
            .arg(&key));
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        out.push((public.trim().to_string(), key));
    }
    out
}

#[test]
fn the_age_tool_and_dockyard_read_each_others_files_for_every_kind_of_key() {
    let dir = tempfile::tempdir().unwrap();
    let plain = b"MARKER-7f3a the archive's bytes\n".repeat(5000);
    for (recipient, identity) in keys(dir.path()) {
        let age = Age {
            seal: Some(Seal::Recipients(
                recipients(std::slice::from_ref(&recipient)).unwrap(),
            )),
            unlock: Unlock {
                identities: vec![IdentityFile(identity.clone())],
                passphrase: None,
            },
        };
        // dockyard encrypts; the stored bytes hold no plaintext; `age -d` decrypts.
        let stored = Arc::new(Mutex::new(Vec::new()));
        let mut w = age.writer(Box::new(Kept(stored.clone()))).unwrap();
        w.write_all(&plain).unwrap();
        w.finish().unwrap();
        let sealed = stored.lock().unwrap().clone();
        assert!(
            !sealed.windows(11).any(|w| w == b"MARKER-7f3a"),
            "{recipient}: plaintext in the stored bytes"
        );
        let file = dir.path().join("archive.age");
        std::fs::write(&file, &sealed).unwrap();
        let by_tool = run(Command::new("age")
            .arg("-d")
            .arg("-i")
            .arg(&identity)
            .arg(&file));
        assert!(by_tool == plain, "{recipient}: age -d gave other bytes");
        // `age -r` encrypts; dockyard decrypts with the identity file.
        let from_tool = dir.path().join("plain");
        std::fs::write(&from_tool, &plain).unwrap();
        let sealed = run(Command::new("age")
            .arg("-r")
            .arg(&recipient)
            .arg(&from_tool));
        let mut r = age.reader(Box::new(std::io::Cursor::new(sealed))).unwrap();
        let mut back = Vec::new();
        r.read_to_end(&mut back).unwrap();
        assert!(back == plain, "{recipient}: dockyard read other bytes");
    }
}

#[test]
fn a_flipped_byte_or_a_cut_file_is_an_error_not_short_data() {
    let dir = tempfile::tempdir().unwrap();
    let (recipient, identity) = keys(dir.path()).remove(0);
    let age = Age {
        seal: Some(Seal::Recipients(recipients(&[recipient]).unwrap())),
        unlock: Unlock {
            identities: vec![IdentityFile(identity)],
            passphrase: None,
        },
    };
    let stored = Arc::new(Mutex::new(Vec::new()));
    let mut w = age.writer(Box::new(Kept(stored.clone()))).unwrap();
    w.write_all(&vec![7u8; 300_000]).unwrap();
    w.finish().unwrap();
    let good = stored.lock().unwrap().clone();
    let read = |bytes: Vec<u8>| -> std::io::Result<Vec<u8>> {
        let mut r = age.reader(Box::new(std::io::Cursor::new(bytes)))?;
        let mut out = Vec::new();
        r.read_to_end(&mut out)?;
        Ok(out)
    };
    assert_eq!(read(good.clone()).unwrap().len(), 300_000);
    let mut flipped = good.clone();
    let at = flipped.len() / 2;
    flipped[at] ^= 1;
    assert!(read(flipped).is_err(), "a flipped byte was read as data");
    let cut = good[..good.len() - 100].to_vec();
    assert!(read(cut).is_err(), "a cut file was read as whole");
}

// ---- End to end, against the engine and the destinations ----

use common::dest::Dest;
use common::fault::Faulted;
use common::peers::pairs;
use common::{docker, dockyard, one_document, App};

/// The zstd frame magic, which no encrypted object may hold at its start.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// One way to encrypt and open: the backup's flags, the restore's, and the secret text that must
/// never show up anywhere (the private key or the passphrase).
struct Way {
    name: &'static str,
    seal: Vec<String>,
    open: Vec<String>,
    secret: String,
}

/// Every way: the three kinds of key pair, and a passphrase.
fn ways(dir: &Path) -> Vec<Way> {
    let mut out = Vec::new();
    for ((recipient, identity), name) in
        keys(dir)
            .into_iter()
            .zip(["x25519", "ssh-ed25519", "ssh-rsa"])
    {
        // Text of the private key itself: the age key's line, or a base64 line from the end of
        // an OpenSSH key (its first lines hold a fixed header and the public key).
        let text = std::fs::read_to_string(&identity).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let secret = match lines.iter().find(|l| l.starts_with("AGE-SECRET-KEY-")) {
            Some(l) => l.to_string(),
            None => lines[lines.len() - 3].to_string(),
        };
        out.push(Way {
            name,
            seal: vec!["--encrypt-to".into(), recipient],
            open: vec!["--identity".into(), identity.to_str().unwrap().into()],
            secret,
        });
    }
    let file = dir.join("passphrase");
    std::fs::write(&file, "correct horse battery staple 7f3a\n").unwrap();
    let file = file.to_str().unwrap().to_string();
    out.push(Way {
        name: "passphrase",
        seal: vec!["--passphrase-file".into(), file.clone()],
        open: vec!["--passphrase-file".into(), file],
        secret: "correct horse battery staple 7f3a".into(),
    });
    out
}

fn args<'a>(base: &[&'a str], more: &'a [String]) -> Vec<&'a str> {
    let mut v = base.to_vec();
    v.extend(more.iter().map(String::as_str));
    v
}

/// Asserts the stored object is an age file holding none of the plaintext marker, and no zstd
/// frame where one would be in the clear: at its start, or where the payload starts after the
/// header (elsewhere four random bytes may match by chance).
fn opaque(stored: &[u8], what: &str) {
    assert!(
        stored.starts_with(b"age-encryption.org/v1\n"),
        "{what}: not an age file"
    );
    assert!(
        !stored.windows(7).any(|w| w == b"MARKER-"),
        "{what}: the plaintext marker is in the stored object"
    );
    let mac = stored
        .windows(4)
        .position(|w| w == b"\n---")
        .expect("an age header");
    let payload = mac + stored[mac + 1..].iter().position(|b| *b == b'\n').unwrap() + 2;
    for at in [0, payload, payload + 16] {
        assert_ne!(
            stored.get(at..at + 4),
            Some(&ZSTD_MAGIC[..]),
            "{what}: a zstd frame in the clear at byte {at}"
        );
    }
}

/// Each way to encrypt, backed up through one path (agent or engine) and restored through the
/// other, then the other way round: the bytes come back, and the destination holds only opaque
/// `.tar.zst.age` objects whose manifests name fingerprints, never keys.
fn round_trips(dest: Dest) {
    let keys_dir = tempfile::tempdir().unwrap();
    let app = App::running("enc-rt", &["/srv/media"]);
    let url = dest.url();
    let env = dest.env();
    let run = |a: &[&str]| common::dockyard_env(a, &pairs(&env));
    for way in ways(keys_dir.path()) {
        for (backup_mode, restore_mode) in [("auto", "never"), ("never", "auto")] {
            let what = format!("{url}: {} backed up with --agent {backup_mode}", way.name);
            app.sh(&format!(
                "rm -rf /srv/media/*; mkdir -p /srv/media/docs && echo MARKER-{0}-{1} > /srv/media/docs/note.txt && \
                 dd if=/dev/urandom of=/srv/media/photo.jpg bs=1k count=200 2>/dev/null",
                way.name, backup_mode
            ));
            let before = app.tree("/srv/media");
            let out = run(&args(
                &[
                    "backup",
                    &app.name,
                    "--to",
                    &url,
                    "--agent",
                    backup_mode,
                    "--json",
                ],
                &way.seal,
            ));
            let doc = one_document(&out.ok());
            let m = &doc["backup"];
            let id = m["id"].as_str().unwrap().to_string();
            assert_eq!(m["archive"], format!("{id}.tar.zst.age"), "{what}");
            assert_eq!(m["encryption"]["scheme"], "age", "{what}");
            let prints = m["encryption"]["recipients"].as_array().unwrap();
            assert_eq!(prints.len(), 1, "{what}");
            let manifest = String::from_utf8(dest.read(&format!("{id}.json"))).unwrap();
            assert!(
                !manifest.contains(&way.secret),
                "{what}: the key is in the manifest"
            );
            if way.name == "passphrase" {
                assert_eq!(prints[0], "passphrase", "{what}");
            } else {
                let recipient = &way.seal[1];
                let body = recipient.split_whitespace().nth(1).unwrap_or(recipient);
                assert!(
                    !manifest.contains(body),
                    "{what}: the public key is in the manifest"
                );
            }
            opaque(&dest.read(&format!("{id}.tar.zst.age")), &what);
            // Without the key, verify checks the stored bytes; with it, everything.
            let v = one_document(&run(&["verify", &id, "--to", &url, "--json"]).ok());
            assert_eq!(
                (v["ok"].clone(), v["checked"].clone()),
                (true.into(), "stored".into()),
                "{what}"
            );
            let v =
                one_document(&run(&args(&["verify", &id, "--to", &url, "--json"], &way.open)).ok());
            assert_eq!(v["checked"], "archive", "{what}");
            let stored = dest.read(&format!("{id}.tar.zst.age"));
            let real = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&stored));
            assert_eq!(
                v["sha256"],
                real.as_str(),
                "{what}: verify reports the stored sha256"
            );
            app.sh("rm -rf /srv/media/docs; echo changed > /srv/media/photo.jpg");
            run(&args(
                &[
                    "restore",
                    &app.name,
                    "--from",
                    &url,
                    "--backup",
                    &id,
                    "--agent",
                    restore_mode,
                    "--no-safety-backup",
                ],
                &way.open,
            ))
            .ok();
            assert_eq!(
                app.tree("/srv/media"),
                before,
                "{what}, restored with --agent {restore_mode}"
            );
        }
    }
    assert!(
        dest.names().iter().all(|n| n.ends_with(".json")
            || n.ends_with(".tar.zst.age")
            || n.ends_with(".index.zst.age")),
        "{:?}",
        dest.names()
    );
}

#[test]
fn every_kind_of_key_round_trips_on_a_local_directory() {
    round_trips(Dest::local());
}

#[test]
fn every_kind_of_key_round_trips_over_ssh() {
    round_trips(Dest::ssh());
}

#[test]
fn every_kind_of_key_round_trips_on_s3() {
    round_trips(Dest::s3());
}

/// The shell block of README.md's "Encryption" section that recovers a backup by hand.
fn readme_recipe() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let at = readme
        .find("Recovery by hand, encrypted")
        .expect("README has the encrypted recovery recipe");
    let rest = &readme[at..];
    let start = rest.find("```sh\n").unwrap() + 6;
    let end = rest[start..].find("```").unwrap();
    rest[start..start + end].to_string()
}

#[test]
fn the_readmes_recipe_recovers_an_encrypted_snapshot_with_the_age_tool() {
    let keys_dir = tempfile::tempdir().unwrap();
    let (recipient, identity) = keys(keys_dir.path()).remove(0);
    let app = App::create_with(
        "enc-hand",
        &["-v", "/srv/media", "-e", "APP_SECRET_NAME_7f3a=hunter2"],
        common::image(),
    );
    app.start();
    app.sh(
        "mkdir -p /srv/media/docs && echo MARKER-contract > /srv/media/docs/contract.pdf && \
            dd if=/dev/urandom of=/srv/media/photo.jpg bs=1k count=300 2>/dev/null",
    );
    let dest = Dest::local();
    let url = dest.url();
    let snapshot = || {
        let args = [
            "snapshot",
            &app.name,
            "--tag",
            "pre-upgrade",
            "--to",
            &url,
            "--encrypt-to",
            &recipient,
            "--json",
        ];
        one_document(&dockyard(&args).ok())["backup"].clone()
    };
    let m = snapshot();
    let id = m["id"].as_str().unwrap();
    // The plain manifest says it is a snapshot, and nothing of the container's inspect data.
    let manifest = String::from_utf8(dest.read(&format!("{id}.json"))).unwrap();
    assert!(!manifest.contains("APP_SECRET_NAME_7f3a"), "{manifest}");
    assert_eq!(m["snapshot"]["sealed"], format!("{id}.snapshot.json.age"));
    opaque(
        &dest.read(&format!("{id}.snapshot.json.age")),
        "the sealed snapshot",
    );
    // The README's recipe, as written, with its ID and KEY set.
    let recipe = readme_recipe();
    let Dest::Local(_, dir) = &dest else {
        unreachable!()
    };
    let done = Command::new("sh")
        .arg("-ec")
        .arg(
            recipe
                .lines()
                .filter(|l| !l.starts_with("ID="))
                .collect::<Vec<_>>()
                .join("\n"),
        )
        .env("ID", id)
        .env("KEY", &identity)
        .current_dir(dir)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&done.stdout);
    assert!(
        done.status.success(),
        "{recipe}: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(
        said.contains("srv/media/docs/contract.pdf"),
        "tar -t lists the files: {said}"
    );
    assert!(
        said.contains("APP_SECRET_NAME_7f3a"),
        "the snapshot's inspect data: {said}"
    );
    assert!(
        !said.contains("hunter2"),
        "an environment value in clear: {said}"
    );
    let restored =
        std::fs::read_to_string(dir.join("restore/srv/media/docs/contract.pdf")).unwrap();
    assert_eq!(restored, "MARKER-contract\n");
    let live = app.sh("md5sum /srv/media/photo.jpg | cut -c1-32");
    let by_hand = Command::new("sh")
        .arg("-c")
        .arg("md5sum restore/srv/media/photo.jpg | cut -c1-32")
        .current_dir(dir)
        .output()
        .unwrap();
    assert_eq!(live, String::from_utf8_lossy(&by_hand.stdout));
    // prune works unchanged: a newer snapshot, and the older one goes with all its objects.
    snapshot();
    dockyard(&[
        "prune",
        "--to",
        &url,
        "--keep-last",
        "1",
        "--prune-snapshots",
    ])
    .ok();
    let left: Vec<String> = dest
        .names()
        .into_iter()
        .filter(|n| !n.starts_with("restore/"))
        .collect();
    // The newer snapshot: its manifest, archive, index and sealed inspect data.
    assert_eq!(left.len(), 4, "{left:?}");
    assert!(left.iter().all(|n| !n.starts_with(id)), "{left:?}");
}

#[test]
fn missing_wrong_or_damaged_keys_and_objects_fail_clearly_and_touch_nothing() {
    let keys_dir = tempfile::tempdir().unwrap();
    let mut all = ways(keys_dir.path());
    let pass = all.pop().unwrap();
    let right = all.remove(0);
    let wrong = all.remove(0);
    let app = App::running("enc-bad", &["/srv/media"]);
    app.sh("echo MARKER-one > /srv/media/a.txt; dd if=/dev/urandom of=/srv/media/b bs=1k count=600 2>/dev/null");
    let dest = Dest::local();
    let url = dest.url();
    let id_of = |out: String| {
        one_document(&out)["backup"]["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let id = id_of(
        dockyard(&args(
            &["backup", &app.name, "--to", &url, "--json"],
            &right.seal,
        ))
        .ok(),
    );
    let by_pass = id_of(
        dockyard(&args(
            &["backup", &app.name, "--to", &url, "--json"],
            &pass.seal,
        ))
        .ok(),
    );
    let print = one_document(&dockyard(&["list", "--to", &url, "--json"]).ok())["backups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == id.as_str())
        .unwrap()["encryption"]["recipients"][0]
        .as_str()
        .unwrap()
        .to_string();
    app.sh("echo live > /srv/media/a.txt");
    let before = app.tree("/srv/media");
    let restore = |id: &str, open: &[String]| {
        let r = dockyard(&args(
            &["restore", &app.name, "--from", &url, "--backup", id],
            open,
        ));
        assert_eq!(
            app.tree("/srv/media"),
            before,
            "the target changed: {}",
            r.stderr
        );
        assert!(app.helpers().is_empty(), "helpers left: {}", r.stderr);
        r
    };
    // No identity: exit 2, naming the recipients and what to give.
    let r = restore(&id, &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(&print) && r.stderr.contains("--identity"),
        "{}",
        r.stderr
    );
    // Another key: exit 2, naming the file tried.
    let r = restore(&id, &wrong.open);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("no identity given opens it") && r.stderr.contains(&wrong.open[1]),
        "{}",
        r.stderr
    );
    // A passphrase backup with a key only, and with the wrong passphrase.
    let r = restore(&by_pass, &right.open);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--passphrase-file"), "{}", r.stderr);
    let other = keys_dir.path().join("other-passphrase");
    std::fs::write(&other, "not it\n").unwrap();
    let r = restore(
        &by_pass,
        &["--passphrase-file".into(), other.to_str().unwrap().into()],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("passphrase given does not open it"),
        "{}",
        r.stderr
    );
    // A flipped byte in the payload, then a cut object: exit 5 for restore and for verify with
    // or without the key.
    let name = format!("{id}.tar.zst.age");
    let good = dest.read(&name);
    let mut flipped = good.clone();
    let at = flipped.len() * 2 / 3;
    flipped[at] ^= 0x40;
    let cut = good[..good.len() - 1000].to_vec();
    for (what, bytes) in [("flipped", flipped), ("cut", cut)] {
        dest.replace(&name, &bytes);
        // Through the agent (decrypted on the host, fed to the helper) and the engine's endpoint.
        for mode in [&[][..], &["--agent".to_string(), "never".to_string()][..]] {
            let r = restore(&id, &[right.open.clone(), mode.to_vec()].concat());
            assert_eq!(r.code, 5, "{what} {mode:?}: {}", r.stderr);
            assert!(r.stderr.contains(&id), "{what}: {}", r.stderr);
        }
        let d = dockyard(&args(
            &["dump", &id, "/srv/media/b", "--to", &url],
            &right.open,
        ));
        assert_eq!(d.code, 5, "{what}, dump: {}", d.stderr);
        let v = dockyard(&["verify", &id, "--to", &url]);
        assert_eq!(v.code, 5, "{what}, verify without the key: {}", v.stderr);
        let v = dockyard(&args(&["verify", &id, "--to", &url], &right.open));
        assert_eq!(v.code, 5, "{what}, verify with the key: {}", v.stderr);
    }
    dest.replace(&name, &good);
    // A flipped byte in the header: the key no longer opens it, or the header is damaged;
    // either way nothing changes.
    let mut header = good.clone();
    header[40] ^= 0x01;
    dest.replace(&name, &header);
    let r = restore(&id, &right.open);
    assert!(r.code == 2 || r.code == 5, "{}", r.stderr);
    dest.replace(&name, &good);
    // dump: a key is needed, and with it the file comes out as it was.
    let d = dockyard(&["dump", &id, "/srv/media/a.txt", "--to", &url]);
    assert_eq!(d.code, 2, "{}", d.stderr);
    let d = dockyard(&args(
        &["dump", &id, "/srv/media/a.txt", "--to", &url],
        &right.open,
    ));
    assert_eq!(d.ok(), "MARKER-one\n");
    restore_ok(&app, &url, &id, &right.open);
}

fn restore_ok(app: &App, url: &str, id: &str, open: &[String]) {
    dockyard(&args(
        &[
            "restore",
            &app.name,
            "--from",
            url,
            "--backup",
            id,
            "--no-safety-backup",
        ],
        open,
    ))
    .ok();
    assert_eq!(app.sh("cat /srv/media/a.txt"), "MARKER-one\n");
}

/// Everything a helper container shows of itself: its configuration as the engine keeps it
/// (environment, command, mounts), and the argv and environment of every process in it (the
/// agent and any exec). Read from the engine's files and /proc: during an archive upload the
/// engine holds the helper's lock, and `docker ps` and `docker inspect` wait for it.
fn helper_view(app: &App, root: &Path) -> String {
    let mut seen = String::new();
    let mut found = 0;
    for entry in std::fs::read_dir(root.join("containers"))
        .unwrap()
        .flatten()
    {
        let Ok(config) = std::fs::read_to_string(entry.path().join("config.v2.json")) else {
            continue;
        };
        let parsed: serde_json::Value = serde_json::from_str(&config).unwrap();
        if parsed["Config"]["Labels"]["dockyard.for"] != app.name.as_str() {
            continue;
        }
        found += 1;
        seen.push_str(&config);
        seen.push_str(
            &std::fs::read_to_string(entry.path().join("hostconfig.json")).unwrap_or_default(),
        );
        if parsed["State"]["Running"] == true {
            // `docker top`'s second column is the host PID of each process in it.
            let id = entry.file_name().to_string_lossy().into_owned();
            let top = docker(&["top", &id]);
            for pid in top
                .lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().nth(1))
            {
                for part in ["cmdline", "environ"] {
                    if let Ok(bytes) = std::fs::read(format!("/proc/{pid}/{part}")) {
                        seen.push_str(&String::from_utf8_lossy(&bytes).replace('\0', " "));
                    }
                }
            }
            seen.push_str(&top);
        }
    }
    assert!(found > 0, "no helper of {} to look at", app.name);
    seen
}

#[test]
fn no_key_passphrase_or_key_file_ever_enters_a_helper_or_the_output() {
    let keys_dir = tempfile::tempdir().unwrap();
    let mut all = ways(keys_dir.path());
    let pass = all.pop().unwrap();
    let key = all.remove(0);
    let app = App::running("enc-helper", &["/srv/media"]);
    app.sh("dd if=/dev/urandom of=/srv/media/big bs=1M count=24 2>/dev/null; echo MARKER-x > /srv/media/a.txt");
    let dest = Dest::local();
    let url = dest.url();
    let dir = keys_dir.path().to_str().unwrap().to_string();
    let root = std::path::PathBuf::from(docker(&["info", "--format", "{{.DockerRootDir}}"]).trim());
    // Inside a helper: no key, no passphrase, and not the directory holding them (a mount).
    let clean = |seen: &str, when: &str| {
        for secret in [&pass.secret, &key.secret, &dir] {
            assert!(
                !seen.contains(secret.as_str()),
                "{when}: {secret:?} is visible"
            );
        }
    };
    // In the output: no key and no passphrase (file names are no secret: `undo` names them).
    let quiet = |said: &str, when: &str| {
        for secret in [&pass.secret, &key.secret] {
            assert!(
                !said.contains(secret.as_str()),
                "{when}: {secret:?} is printed"
            );
        }
    };
    // A backup, stopped while the helper packs and the host encrypts.
    for mode in ["auto", "never"] {
        let mut run = Faulted::start(
            &args(
                &[
                    "backup", &app.name, "--to", &url, "--agent", mode, "-vv", "--json",
                ],
                &pass.seal,
            ),
            "write-midway",
            &[],
        );
        run.reached("write-midway");
        let seen = helper_view(&app, &root);
        clean(&seen, &format!("backup --agent {mode}"));
        run.release("write-midway");
        let (code, stderr) = run.finish();
        assert_eq!(code, 0, "{stderr}");
        quiet(&stderr, "backup's log");
    }
    let latest = one_document(&dockyard(&["list", "--to", &url, "--json"]).ok())["backups"][0]
        ["id"]
        .as_str()
        .unwrap()
        .to_string();
    // A restore, stopped while the host decrypts and a helper unpacks.
    for mode in ["auto", "never"] {
        let mut run = Faulted::start(
            &args(
                &[
                    "restore", &app.name, "--from", &url, "--backup", &latest, "--agent", mode,
                    "-vv", "--json",
                ],
                &pass.open,
            ),
            "read-midway",
            &[],
        );
        run.reached("read-midway");
        clean(
            &helper_view(&app, &root),
            &format!("restore --agent {mode}"),
        );
        run.release("read-midway");
        let (code, stderr) = run.finish();
        assert_eq!(code, 0, "{stderr}");
        quiet(&stderr, "restore's log");
    }
    // The identity file too, through --identity and DOCKYARD_IDENTITY_FILE.
    let id = one_document(
        &dockyard(&args(
            &["backup", &app.name, "--to", &url, "--json", "-vv"],
            &key.seal,
        ))
        .ok(),
    )["backup"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut run = Faulted::start(
        &[
            "restore",
            &app.name,
            "--from",
            &url,
            "--backup",
            &id,
            "-vv",
            "--no-safety-backup",
        ],
        "read-midway",
        &[("DOCKYARD_IDENTITY_FILE", key.open[1].as_str())],
    );
    run.reached("read-midway");
    clean(
        &helper_view(&app, &root),
        "restore with DOCKYARD_IDENTITY_FILE",
    );
    run.release("read-midway");
    let (code, stderr) = run.finish();
    assert_eq!(code, 0, "{stderr}");
    quiet(&stderr, "its log");
    // The JSON and -vv log of a restore with a key file and a safety backup: no key in either;
    // the safety backup is encrypted to the key's public half, and its `undo` command (which
    // names the key file) puts the old contents back.
    app.sh("echo before-undo > /srv/media/a.txt");
    let r = dockyard(&args(
        &[
            "restore", &app.name, "--from", &url, "--backup", &id, "--json", "-vv",
        ],
        &key.open,
    ));
    quiet(&r.stdout, "restore's JSON");
    quiet(&r.stderr, "restore's log");
    let doc = one_document(&r.ok());
    let undo = doc["safety_backup"]["undo"].as_str().unwrap().to_string();
    assert!(undo.contains("--identity"), "{undo}");
    assert_eq!(app.sh("cat /srv/media/a.txt"), "MARKER-x\n");
    let words = shell_words::split(&undo).unwrap();
    let undone = dockyard(&words[1..].iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(undone.code, 0, "{undo}: {}", undone.stderr);
    assert_eq!(app.sh("cat /srv/media/a.txt"), "before-undo\n");
    // What the runs leave: the safety backups of encrypted restores are encrypted too.
    let listed = one_document(&dockyard(&["list", "--to", &url, "--json"]).ok());
    let backups = listed["backups"].as_array().unwrap();
    assert!(
        backups.iter().any(|b| b["tags"][0] == "pre-restore"),
        "{listed}"
    );
    for b in backups {
        assert_eq!(
            b["encryption"]["scheme"], "age",
            "a plain backup was left: {b}"
        );
    }
}

#[test]
fn shipped_logs_are_encrypted_when_asked() {
    let keys_dir = tempfile::tempdir().unwrap();
    let (recipient, identity) = keys(keys_dir.path()).remove(0);
    let app = App::running("enc-logs", &["/srv/logs"]);
    app.sh("for i in $(seq 1 300); do echo MARKER-line-$i; done > /srv/logs/access.log");
    let dest = Dest::local();
    let url = dest.url();
    let out = dockyard(&[
        "logs",
        &app.name,
        "--to",
        &url,
        "--reopen",
        "none",
        "--encrypt-to",
        &recipient,
    ])
    .ok();
    assert!(out.contains("shipped 1"), "{out}");
    let names = dest.names();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].ends_with(".zst.age"), "{names:?}");
    let stored = dest.read(&names[0]);
    opaque(&stored, "a shipped log");
    let Dest::Local(_, dir) = &dest else {
        unreachable!()
    };
    let text = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "age -d -i {} {} | zstd -d | wc -l",
            identity.display(),
            names[0]
        ))
        .current_dir(dir)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&text.stdout).trim(), "300");
}

#[test]
fn a_config_encrypts_only_the_destination_that_asks() {
    let keys_dir = tempfile::tempdir().unwrap();
    let (recipient, _) = keys(keys_dir.path()).remove(0);
    let recipients = keys_dir.path().join("recipients.txt");
    std::fs::write(&recipients, format!("# the off-site key\n{recipient}\n")).unwrap();
    let app = App::running("enc-cfg", &["/srv/media"]);
    app.sh("echo MARKER-cfg > /srv/media/a.txt");
    let (local, offsite) = (Dest::local(), Dest::local());
    let config = keys_dir.path().join("dockyard.toml");
    std::fs::write(
        &config,
        format!(
            "[destinations.local]\nurl = \"{}\"\n\
             [destinations.offsite]\nurl = \"{}\"\nencrypt_to = [\"@{}\"]\n\
             [jobs.media]\ncontainer = \"{}\"\ndestinations = [\"local\", \"offsite\"]\n",
            local.url(),
            offsite.url(),
            recipients.display(),
            app.name
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let check = dockyard(&["config", "check", "--config", config]).ok();
    assert!(
        check.contains("encrypted with age at offsite (to 1 recipient(s))"),
        "{check}"
    );
    dockyard(&["run", "--config", config]).ok();
    assert!(
        local.names().iter().any(|n| n.ends_with(".tar.zst")),
        "{:?}",
        local.names()
    );
    assert!(
        offsite.names().iter().any(|n| n.ends_with(".tar.zst.age")),
        "{:?}",
        offsite.names()
    );
    // Recipients and a passphrase on one destination are refused, naming it.
    std::fs::write(keys_dir.path().join("bad.toml"), format!(
        "[destinations.d]\nurl = \"{}\"\nencrypt_to = [\"{recipient}\"]\npassphrase_file = \"/nonexistent\"\n\
         [jobs.j]\ncontainer = \"{}\"\ndestinations = [\"d\"]\n",
        local.url(), app.name
    )).unwrap();
    let bad = dockyard(&[
        "run",
        "--config",
        keys_dir.path().join("bad.toml").to_str().unwrap(),
    ]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("destination \"d\"") && bad.stderr.contains("not both"),
        "{}",
        bad.stderr
    );
}
