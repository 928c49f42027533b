//! One destination as a test sees it from outside dockyard, for suites written once and run
//! against every backend: a local directory, a directory over SSH (the test sshd), a prefix in
//! an S3 bucket (Garage). Each has its URL, the environment dockyard needs for it, what it
//! holds, and removes what it made when dropped.
#![allow(dead_code)]

use super::peers::{pairs, ssh, ssh_env, S3};
use super::{dockyard_env, unique, Run};

/// One destination under test, seen from outside dockyard.
pub enum Dest {
    /// A directory (the temp dir that holds it lives as long as the value).
    Local(#[allow(dead_code)] tempfile::TempDir, std::path::PathBuf),
    Ssh(String),
    S3(S3, String),
}

impl Dest {
    pub fn url(&self) -> String {
        match self {
            Dest::Local(_, p) => p.to_str().unwrap().to_string(),
            Dest::Ssh(rel) => format!("ssh://dockyard-test/~/{rel}"),
            Dest::S3(s3, prefix) => format!("s3://{}/{prefix}", s3.bucket),
        }
    }

    pub fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            Dest::Local(..) => vec![],
            Dest::Ssh(_) => ssh_env(),
            Dest::S3(s3, _) => s3.env(),
        }
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let env = self.env();
        dockyard_env(args, &pairs(&env))
    }

    /// Object names at any depth, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = match self {
            Dest::Local(_, p) => {
                let mut out = Vec::new();
                let mut dirs = vec![String::new()];
                while let Some(rel) = dirs.pop() {
                    for e in std::fs::read_dir(p.join(&rel)).unwrap() {
                        let e = e.unwrap();
                        let n = e.file_name().to_string_lossy().into_owned();
                        let n = if rel.is_empty() {
                            n
                        } else {
                            format!("{rel}/{n}")
                        };
                        if e.file_type().unwrap().is_dir() {
                            dirs.push(n);
                        } else {
                            out.push(n);
                        }
                    }
                }
                out
            }
            Dest::Ssh(rel) => ssh(&format!("cd {rel} && find . -type f | sed 's|^\\./||'"))
                .lines()
                .map(str::to_string)
                .collect(),
            Dest::S3(s3, prefix) => s3
                .keys(prefix)
                .into_iter()
                .map(|k| k[prefix.len() + 1..].to_string())
                .filter(|k| !k.starts_with('.'))
                .collect(),
        };
        v.sort();
        v
    }

    pub fn write(&self, name: &str, data: &str) {
        match self {
            Dest::Local(_, p) => {
                std::fs::create_dir_all(p.join(name).parent().unwrap()).unwrap();
                std::fs::write(p.join(name), data).unwrap();
            }
            Dest::Ssh(rel) => {
                ssh(&format!(
                    "mkdir -p \"$(dirname {rel}/{name})\" && printf '%s' '{data}' > {rel}/{name}"
                ));
            }
            Dest::S3(s3, prefix) => s3.put(&format!("{prefix}/{name}"), data.as_bytes()),
        }
    }

    /// The entry names of the (plain) archive of backup `m` (its manifest as JSON), as `tar -t`
    /// lists them.
    pub fn archive_names(&self, m: &serde_json::Value) -> Vec<String> {
        let archive = self.read(m["archive"].as_str().expect("a manifest"));
        let tar = zstd::decode_all(&archive[..]).unwrap();
        tar::Archive::new(&tar[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    /// The bytes of object `name`.
    pub fn read(&self, name: &str) -> Vec<u8> {
        match self {
            Dest::Local(_, p) => std::fs::read(p.join(name)).unwrap(),
            Dest::Ssh(rel) => {
                let out = std::process::Command::new("ssh")
                    .args(["-F", &super::peers::ssh_config(), "dockyard-test"])
                    .arg(format!("cat {rel}/{name}"))
                    .output()
                    .unwrap();
                assert!(out.status.success());
                out.stdout
            }
            Dest::S3(s3, prefix) => s3.get(&format!("{prefix}/{name}")),
        }
    }

    /// Replaces object `name` with `data` (an attacker's edit).
    pub fn replace(&self, name: &str, data: &[u8]) {
        match self {
            Dest::Local(_, p) => std::fs::write(p.join(name), data).unwrap(),
            Dest::Ssh(rel) => {
                use std::io::Write;
                let mut child = std::process::Command::new("ssh")
                    .args(["-F", &super::peers::ssh_config(), "dockyard-test"])
                    .arg(format!("cat > {rel}/{name}"))
                    .stdin(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                child.stdin.take().unwrap().write_all(data).unwrap();
                assert!(child.wait().unwrap().success());
            }
            Dest::S3(s3, prefix) => s3.put(&format!("{prefix}/{name}"), data),
        }
    }

    pub fn copy(&self, from: &str, to: &str) {
        match self {
            Dest::Local(_, p) => {
                std::fs::copy(p.join(from), p.join(to)).unwrap();
            }
            Dest::Ssh(rel) => {
                ssh(&format!("cp {rel}/{from} {rel}/{to}"));
            }
            Dest::S3(s3, prefix) => {
                let data = s3.get(&format!("{prefix}/{from}"));
                s3.put(&format!("{prefix}/{to}"), &data);
            }
        }
    }

    pub fn remove(&self, name: &str) {
        match self {
            Dest::Local(_, p) => std::fs::remove_file(p.join(name)).unwrap(),
            Dest::Ssh(rel) => {
                ssh(&format!("rm {rel}/{name}"));
            }
            Dest::S3(s3, prefix) => s3.delete(&format!("{prefix}/{name}")),
        }
    }
}

impl Drop for Dest {
    fn drop(&mut self) {
        match self {
            Dest::Local(..) => {}
            Dest::Ssh(rel) => {
                let _ = std::process::Command::new("ssh")
                    .args([
                        "-F",
                        &super::peers::ssh_config(),
                        "dockyard-test",
                        &format!("rm -rf {rel}"),
                    ])
                    .output();
            }
            Dest::S3(s3, prefix) => s3.clear(prefix),
        }
    }
}

impl Dest {
    /// A fresh local directory.
    pub fn local() -> Dest {
        let (tmp, path) = super::dest_dir();
        Dest::Local(tmp, path)
    }

    /// A fresh directory in the SSH peer's home.
    pub fn ssh() -> Dest {
        Dest::Ssh(unique("ssh-dest"))
    }

    /// A fresh prefix in the S3 peer's bucket.
    pub fn s3() -> Dest {
        Dest::S3(S3::garage(), unique("s3-dest"))
    }

    /// A destination of the same kind that refuses writes: a path below a regular file (local,
    /// SSH; root ignores permissions, not file types), or the read-only key (S3).
    pub fn refusing(&self) -> Dest {
        match self {
            Dest::Local(..) => {
                let tmp = tempfile::tempdir().unwrap();
                let file = tmp.path().join("file");
                std::fs::write(&file, "not a directory").unwrap();
                Dest::Local(tmp, file.join("backups"))
            }
            Dest::Ssh(rel) => {
                ssh(&format!("mkdir -p {rel} && echo x > {rel}/file"));
                Dest::Ssh(format!("{rel}/file/backups"))
            }
            Dest::S3(s3, prefix) => Dest::S3(
                S3 {
                    key_id: super::peers::var("DOCKYARD_TEST_S3_RO_KEY_ID"),
                    secret: super::peers::var("DOCKYARD_TEST_S3_RO_SECRET"),
                    ..s3.clone()
                },
                format!("{prefix}-ro"),
            ),
        }
    }

    /// Whether an upload is under way: a temp file (local, SSH) or a multipart upload (S3).
    pub fn uploading(&self) -> bool {
        match self {
            Dest::Local(_, p) => std::fs::read_dir(p).is_ok_and(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().ends_with(".partial"))
            }),
            Dest::Ssh(rel) => !ssh(&format!(
                "ls -a {rel} 2>/dev/null | grep '\\.partial$' || true"
            ))
            .trim()
            .is_empty(),
            Dest::S3(s3, prefix) => !s3.uploads(prefix).is_empty(),
        }
    }

    /// Everything it holds, hidden temp files and S3 multipart uploads included, sorted.
    pub fn files(&self) -> Vec<String> {
        let mut v = match self {
            Dest::Local(_, p) => super::files(p),
            Dest::Ssh(rel) => ssh(&format!(
                "cd {rel} 2>/dev/null && find . -type f | sed 's|^\\./||' || true"
            ))
            .lines()
            .map(str::to_string)
            .collect(),
            Dest::S3(s3, prefix) => {
                let mut v: Vec<String> = s3
                    .keys(prefix)
                    .into_iter()
                    .map(|k| k[prefix.len() + 1..].to_string())
                    .collect();
                v.extend(
                    s3.uploads(prefix)
                        .into_iter()
                        .map(|u| format!("upload:{u}")),
                );
                v
            }
        };
        v.sort();
        v
    }
}
