//! age interoperability of dockyard's encryption transform (issue 24, first step): what dockyard
//! encrypts, the `age` tool decrypts, and the other way round, for each kind of key: age X25519,
//! ssh-ed25519 and ssh-rsa (the keys made by `age-keygen` and `ssh-keygen`).

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
