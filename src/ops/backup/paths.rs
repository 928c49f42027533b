//! Which container paths a backup takes, and the mounts nested inside each.

use crate::docker::{ContainerInfo, Mount};
use crate::error::Failure;
use crate::manifest::{MountRecord, PathRecord};

/// Mount points of `info` strictly inside `path`, relative to it: each is another volume (or
/// bind mount), backed up as a path of its own, never as part of `path`.
pub fn nested_mounts(info: &ContainerInfo, path: &str) -> Vec<Vec<u8>> {
    let below = format!("{}/", path.trim_end_matches('/'));
    info.mounts
        .iter()
        .filter_map(|m| m.destination.strip_prefix(&below))
        .filter(|rel| !rel.is_empty())
        .map(|rel| rel.trim_end_matches('/').as_bytes().to_vec())
        .collect()
}

/// Picks the paths to back up: every volume and bind mount by default, else each `--path`, which
/// must lie inside a mount. Errors name the container, the path and its mounts.
pub fn select_paths(info: &ContainerInfo, wanted: &[String]) -> Result<Vec<PathRecord>, Failure> {
    let mounts: Vec<&Mount> = info
        .mounts
        .iter()
        .filter(|m| m.kind == "volume" || m.kind == "bind")
        .collect();
    if mounts.is_empty() {
        return Err(Failure::usage(format!(
            "container {:?} has no volumes or bind mounts; dockyard backs up volumes, and there is nothing to back up",
            info.name
        )));
    }
    let record = |m: &Mount| MountRecord {
        destination: m.destination.clone(),
        kind: m.kind.clone(),
        volume: m.volume.clone(),
    };
    if wanted.is_empty() {
        // In path order (the engine's order varies), so manifests and output are stable.
        let mut all: Vec<PathRecord> = mounts
            .iter()
            .map(|m| PathRecord {
                path: m.destination.clone(),
                mount: record(m),
            })
            .collect();
        all.sort_by(|a, b| a.path.cmp(&b.path));
        return Ok(all);
    }
    let mut out: Vec<PathRecord> = Vec::new();
    for path in wanted {
        let mount = mounts
            .iter()
            .filter(|m| m.contains(path))
            .max_by_key(|m| m.destination.len())
            .ok_or_else(|| {
                let list: Vec<String> = mounts.iter().map(|m| format!("{} ({})", m.destination, m.kind)).collect();
                Failure::usage(format!(
                    "path {path} of container {:?} is not inside a volume or bind mount; its mounts are: {}",
                    info.name,
                    list.join(", ")
                ))
            })?;
        // Nested paths are fine when the inner one is a mount of its own (the outer path leaves it
        // out); within one mount they would store the same files twice.
        if let Some(other) = out.iter().find(|o| {
            (nested(&o.path, path) || nested(path, &o.path))
                && o.mount.destination == mount.destination
        }) {
            return Err(Failure::usage(format!(
                "--path {path} overlaps --path {}; give one of them",
                other.path
            )));
        }
        out.push(PathRecord {
            path: path.clone(),
            mount: record(mount),
        });
    }
    Ok(out)
}

fn nested(outer: &str, inner: &str) -> bool {
    inner.starts_with(&format!("{outer}/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(mounts: &[(&str, &str)]) -> ContainerInfo {
        ContainerInfo::sample(mounts)
    }

    #[test]
    fn defaults_to_every_volume_and_bind_mount() {
        let i = info(&[
            ("/srv/media", "volume"),
            ("/srv/logs", "bind"),
            ("/tmp", "tmpfs"),
        ]);
        let got: Vec<String> = select_paths(&i, &[])
            .unwrap()
            .into_iter()
            .map(|p| p.path)
            .collect();
        assert_eq!(got, vec!["/srv/logs", "/srv/media"]);
    }

    #[test]
    fn path_inside_a_mount_maps_to_that_mount() {
        let i = info(&[("/srv/media", "volume"), ("/srv/media/thumbs", "volume")]);
        let got = select_paths(&i, &["/srv/media/thumbs/small".into()]).unwrap();
        assert_eq!(got[0].mount.destination, "/srv/media/thumbs");
    }

    #[test]
    fn unmounted_path_names_container_path_and_mounts() {
        let i = info(&[("/srv/media", "volume")]);
        let err = select_paths(&i, &["/srv/mediaX".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/srv/mediaX")
                && err.contains("\"web\"")
                && err.contains("/srv/media (volume)"),
            "{err}"
        );
    }

    #[test]
    fn no_mounts_is_an_error_naming_the_container() {
        let err = select_paths(&info(&[]), &[]).unwrap_err().to_string();
        assert!(err.contains("\"web\" has no volumes"), "{err}");
    }

    #[test]
    fn overlapping_paths_are_refused_unless_the_inner_one_is_its_own_mount() {
        let i = info(&[("/srv", "volume")]);
        assert!(select_paths(&i, &["/srv".into(), "/srv/a".into()]).is_err());
        let i = info(&[("/srv", "volume"), ("/srv/media", "volume")]);
        let got = select_paths(&i, &["/srv".into(), "/srv/media".into()]).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(nested_mounts(&i, "/srv"), vec![b"media".to_vec()]);
        assert!(nested_mounts(&i, "/srv/media").is_empty());
    }
}
