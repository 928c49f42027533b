//! Where each path of a backup goes in the target: directories into their mount's work dir,
//! single files beside their host file. Pure: table-tested below.

use anyhow::Result;
use chrono::Utc;

use super::outcome::shorten;
use crate::archive::entry::{Kind, RootMeta};
use crate::docker::{ContainerInfo, Mount};
use crate::error::Failure;
use crate::manifest::Manifest;
use crate::owner::Owner;
use crate::settings::RestoreSettings;
use crate::swap::journal::{Journal, MountWork, PathRecord, State};
use crate::swap::recover;

/// One path to restore into a directory: where it is staged and how it is swapped.
#[derive(Debug, Clone)]
pub(super) struct DirPath {
    /// Its number within its mount's work dir.
    pub(super) k: usize,
    /// The container path.
    pub(super) path: String,
    /// Relative to the mount root.
    pub(super) rel: Vec<u8>,
    /// Names (relative to the path) of the target's own nested mount points directly inside it.
    pub(super) skip: Vec<Vec<u8>>,
    /// Names (relative to the path) that belong to another path of the backup.
    pub(super) elsewhere: Vec<Vec<u8>>,
    /// Owner, mode and time for the path itself.
    pub(super) root: RootMeta,
    /// The path's own entry as planning read it (`None` if the archive has none); staging must
    /// find the same.
    pub(super) archived: Option<RootMeta>,
}

/// All paths restored into one mount.
#[derive(Debug, Clone)]
pub(super) struct DirMember {
    pub(super) mount: String,
    pub(super) paths: Vec<DirPath>,
}

/// A single-file bind mount to restore.
#[derive(Debug, Clone)]
pub(super) struct FileMember {
    /// The container path.
    pub(super) path: String,
    /// The host directory holding the mount's source file.
    pub(super) dir: String,
    /// The source file's name there.
    pub(super) name: String,
}

/// What the restore will do.
#[derive(Debug, Default)]
pub(super) struct Plan {
    pub(super) dirs: Vec<DirMember>,
    pub(super) files: Vec<FileMember>,
}

impl Plan {
    /// The journal of a restore of backup `m` into `target` by this plan, before staging.
    pub(super) fn journal(
        &self,
        m: &Manifest,
        target: &ContainerInfo,
        include: &[String],
    ) -> Journal {
        Journal {
            run: crate::owner::run_id(),
            owner: Owner::current(),
            backup: m.id.clone(),
            container: target.id.clone(),
            state: State::Staging,
            attempts: 0,
            include: include.to_vec(),
            mounts: self
                .dirs
                .iter()
                .map(|d| MountWork {
                    root: d.mount.clone(),
                    volume: mount_identity(target, &d.mount),
                    paths: d
                        .paths
                        .iter()
                        .map(|p| PathRecord {
                            k: p.k,
                            rel: p.rel.clone(),
                            root: p.root,
                        })
                        .collect(),
                    skips: d
                        .paths
                        .iter()
                        .flat_map(|p| p.skip.iter().map(|n| (p.k, n.clone())))
                        .collect(),
                    fixups: vec![],
                })
                .collect(),
            files: self.files.iter().map(|f| f.path.clone()).collect(),
        }
    }
}

/// What is mounted at `root` of `target`: a volume's name, or a bind mount's host path.
pub(super) fn mount_identity(target: &ContainerInfo, root: &str) -> String {
    target
        .mounts
        .iter()
        .find(|m| m.destination.trim_end_matches('/') == root)
        .map(|m| m.volume.clone().unwrap_or_else(|| m.source.clone()))
        .unwrap_or_default()
}

/// Refuses a backup holding device nodes unless `--allow-devices`.
pub(super) fn refuse_devices(m: &Manifest, devices: &[String], s: &RestoreSettings) -> Result<()> {
    if devices.is_empty() || s.privileges.allow_devices {
        return Ok(());
    }
    Err(Failure::verify(format!(
        "backup {} holds device nodes ({}); restoring them would let whoever can open them reach host devices. Nothing was changed; pass --allow-devices if you trust them",
        m.id,
        shorten(devices)
    ))
    .into())
}

/// The backup's paths to restore (all, or the `--path` ones).
pub(super) fn pick_paths(
    m: &Manifest,
    wanted: &[String],
    target: &ContainerInfo,
) -> Result<Vec<String>> {
    let in_archive: Vec<String> = m.paths.iter().map(|p| p.path.clone()).collect();
    let chosen = if wanted.is_empty() {
        in_archive.clone()
    } else {
        wanted.to_vec()
    };
    for p in &chosen {
        if !in_archive.contains(p) {
            return Err(Failure::usage(format!(
                "backup {} has no path {p}; it holds {}",
                m.id,
                in_archive.join(", ")
            ))
            .into());
        }
        if mount_of(target, p).is_none() {
            let list: Vec<&str> = target
                .mounts
                .iter()
                .map(|mt| mt.destination.as_str())
                .collect();
            return Err(Failure::usage(format!(
                "container {:?} has no volume at {p} to restore into; its mounts are: {}",
                target.name,
                if list.is_empty() {
                    "none".to_string()
                } else {
                    list.join(", ")
                }
            ))
            .into());
        }
    }
    Ok(chosen)
}

/// The target's volume or bind mount holding `path` (the innermost one).
pub(super) fn mount_of<'a>(target: &'a ContainerInfo, path: &str) -> Option<&'a Mount> {
    target
        .mounts
        .iter()
        .filter(|m| (m.kind == "volume" || m.kind == "bind") && m.contains(path))
        .max_by_key(|m| m.destination.len())
}

/// Where each path goes: directories into their mount's work dir, single files beside their host
/// file. Nested mount points directly inside a path stay in place; deeper ones cannot.
pub(super) fn plan(
    m: &Manifest,
    wanted: &[String],
    target: &ContainerInfo,
    roots: &[Option<(Kind, RootMeta)>],
    local: bool,
) -> Result<Plan> {
    let mut plan = Plan::default();
    for path in wanted {
        let index = m
            .paths
            .iter()
            .position(|p| &p.path == path)
            .expect("picked from the manifest");
        let mount = mount_of(target, path).expect("checked by pick_paths");
        match roots[index] {
            Some((Kind::File, _)) => {
                if mount.destination != *path || mount.kind != "bind" {
                    return Err(Failure::usage(format!(
                        "backup {} holds a single file at {path}, but {path} in container {:?} is not a single-file bind mount",
                        m.id, target.name
                    ))
                    .into());
                }
                let (dir, name) = recover::file_source(target, path, local)?;
                plan.files.push(FileMember {
                    path: path.clone(),
                    dir,
                    name,
                });
            }
            root => {
                let mut skip = Vec::new();
                let below = format!("{path}/");
                for nested in target
                    .mounts
                    .iter()
                    .filter(|n| n.destination.starts_with(&below))
                {
                    let rel = &nested.destination[path.len() + 1..];
                    if rel.contains('/') {
                        return Err(Failure::usage(format!(
                            "cannot restore {path} into container {:?}: it has a mount at {} below a directory of {path}, which a restore would have to move; restore the paths around it with --path",
                            target.name, nested.destination
                        ))
                        .into());
                    }
                    skip.push(rel.as_bytes().to_vec());
                }
                let elsewhere = m
                    .paths
                    .iter()
                    .filter_map(|p| p.path.strip_prefix(&format!("{path}/")))
                    .map(|r| r.as_bytes().to_vec())
                    .collect();
                let mount_root = mount.destination.trim_end_matches('/').to_string();
                let rel = path
                    .strip_prefix(&mount_root)
                    .unwrap_or("")
                    .trim_start_matches('/')
                    .as_bytes()
                    .to_vec();
                let archived = root.map(|(_, meta)| meta);
                let root = match root {
                    Some((_, meta)) => meta,
                    None => RootMeta {
                        mode: 0o755,
                        uid: 0,
                        gid: 0,
                        mtime: Utc::now().timestamp(),
                    },
                };
                let member = match plan.dirs.iter_mut().find(|d| d.mount == mount_root) {
                    Some(d) => d,
                    None => {
                        plan.dirs.push(DirMember {
                            mount: mount_root.clone(),
                            paths: vec![],
                        });
                        plan.dirs.last_mut().expect("pushed")
                    }
                };
                let k = member.paths.len();
                member.paths.push(DirPath {
                    k,
                    path: path.clone(),
                    rel,
                    skip,
                    elsewhere,
                    root,
                    archived,
                });
            }
        }
    }
    Ok(plan)
}

/// Which names of a path a set of patterns takes: a name matching one, or below a directory
/// that does; with no patterns, every name.
#[derive(Clone)]
pub(super) struct Filter {
    pub(super) globs: crate::archive::exclude::Globs,
    pub(super) path: String,
}

impl Filter {
    pub(super) fn new(patterns: &[String], path: &str) -> Filter {
        Filter {
            globs: crate::archive::exclude::Globs::new(patterns).unwrap_or_default(),
            path: path.to_string(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.globs.is_empty()
    }

    /// Whether `rel` (a name relative to the path) is taken.
    pub(super) fn takes(&self, rel: &[u8]) -> bool {
        self.globs.is_empty() || self.globs.matches_or_above(&self.path, rel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{MountRecord, PathRecord as ManifestPath};

    fn target(mounts: &[(&str, &str)]) -> ContainerInfo {
        ContainerInfo {
            id: "cid".into(),
            name: "web".into(),
            image: "img".into(),
            image_id: "sha256:i".into(),
            running: true,
            mounts: mounts
                .iter()
                .map(|(d, k)| Mount {
                    destination: d.to_string(),
                    kind: k.to_string(),
                    volume: (*k == "volume").then(|| format!("vol{}", d.replace('/', "-"))),
                    source: format!("/host{d}"),
                    rw: true,
                })
                .collect(),
            inspect: serde_json::Value::Null,
        }
    }

    fn backup(paths: &[&str]) -> Manifest {
        Manifest {
            exclude: vec![],
            encryption: None,
            format: crate::manifest::FORMAT,
            id: "web-1".into(),
            container: "web".into(),
            container_id: "cid".into(),
            image: "img".into(),
            image_id: "sha256:i".into(),
            host: "h".into(),
            paths: paths
                .iter()
                .map(|p| ManifestPath {
                    path: p.to_string(),
                    mount: MountRecord {
                        destination: p.to_string(),
                        kind: "volume".into(),
                        volume: None,
                    },
                })
                .collect(),
            created: Utc::now(),
            tags: vec![],
            tool_version: "0".into(),
            size: 0,
            sha256: String::new(),
            tar_bytes: 0,
            entries: 0,
            level: 3,
            archive: "web-1.tar.zst".into(),
            snapshot: None,
        }
    }

    fn dir(mode: u32) -> Option<(Kind, RootMeta)> {
        Some((
            Kind::Dir,
            RootMeta {
                mode,
                uid: 1,
                gid: 2,
                mtime: 3,
            },
        ))
    }

    #[test]
    fn picks_every_path_or_the_named_ones_and_names_what_is_missing() {
        let m = backup(&["/srv/media", "/srv/logs"]);
        let t = target(&[("/srv/media", "volume"), ("/srv/logs", "volume")]);
        type Case<'a> = (&'a [&'a str], Result<&'a [&'a str], &'a str>);
        let cases: &[Case] = &[
            (&[], Ok(&["/srv/media", "/srv/logs"])),
            (&["/srv/logs"], Ok(&["/srv/logs"])),
            (
                &["/etc"],
                Err("backup web-1 has no path /etc; it holds /srv/media, /srv/logs"),
            ),
        ];
        for (wanted, expected) in cases {
            let wanted: Vec<String> = wanted.iter().map(|s| s.to_string()).collect();
            let got = pick_paths(&m, &wanted, &t).map_err(|e| e.to_string());
            match expected {
                Ok(paths) => assert_eq!(got.unwrap(), *paths, "{wanted:?}"),
                Err(text) => assert_eq!(got.unwrap_err(), *text, "{wanted:?}"),
            }
        }
        let elsewhere = target(&[("/data", "volume")]);
        let err = pick_paths(&m, &[], &elsewhere).unwrap_err().to_string();
        assert_eq!(
            err,
            "container \"web\" has no volume at /srv/media to restore into; its mounts are: /data"
        );
    }

    #[test]
    fn paths_share_their_mounts_work_dir_and_keep_nested_mounts_in_place() {
        // /srv is one volume holding /srv/media (a path of its own in the backup) and /srv/cache
        // (the target's own mount): both stay where they are.
        let m = backup(&["/srv", "/srv/media"]);
        let t = target(&[
            ("/srv", "volume"),
            ("/srv/media", "volume"),
            ("/srv/cache", "volume"),
        ]);
        let wanted = vec!["/srv".to_string(), "/srv/media".to_string()];
        let p = plan(&m, &wanted, &t, &[dir(0o750), dir(0o700)], true).unwrap();
        assert!(p.files.is_empty());
        type Shape<'a> = (&'a str, Vec<(usize, &'a str, &'a [u8], u32)>);
        let shape: Vec<Shape> = p
            .dirs
            .iter()
            .map(|d| {
                (
                    d.mount.as_str(),
                    d.paths
                        .iter()
                        .map(|x| (x.k, x.path.as_str(), x.rel.as_slice(), x.root.mode))
                        .collect(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                ("/srv", vec![(0, "/srv", &b""[..], 0o750)]),
                ("/srv/media", vec![(0, "/srv/media", &b""[..], 0o700)]),
            ]
        );
        let srv = &p.dirs[0].paths[0];
        assert_eq!(srv.skip, vec![b"media".to_vec(), b"cache".to_vec()]);
        assert_eq!(srv.elsewhere, vec![b"media".to_vec()]);
    }

    #[test]
    fn a_mount_deeper_inside_a_path_or_a_file_over_a_directory_is_refused() {
        let m = backup(&["/srv"]);
        let deep = target(&[("/srv", "volume"), ("/srv/a/b", "volume")]);
        let err = plan(&m, &["/srv".into()], &deep, &[dir(0o755)], true)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("has a mount at /srv/a/b below a directory of /srv"),
            "{err}"
        );
        let file = Some((Kind::File, dir(0o644).unwrap().1));
        let volume = target(&[("/srv", "volume")]);
        let err = plan(&m, &["/srv".into()], &volume, &[file], true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not a single-file bind mount"), "{err}");
    }
}
