//! Bind mount sources are host paths, and the engine resolves them again each time a helper
//! borrows the container's mounts. If the app can change a directory on such a path (because it
//! lies inside another of its writable mounts), it can swap it for a symlink and send a root
//! helper's writes, or a backup's reads, anywhere on the host. Before any helper borrows a
//! container's mounts, each bind source is checked on this host (a local engine's): no directory
//! on its way may lie inside another writable mount of the container, and no symlink on its way
//! may sit where anyone but root could have put it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::docker::ContainerInfo;
use crate::error::Failure;

/// Refuses `target` when one of its bind mount sources could have been redirected by the app
/// (or by another user of the host).
pub fn check(target: &ContainerInfo) -> Result<(), Failure> {
    let writable: Vec<PathBuf> = target
        .mounts
        .iter()
        .filter(|m| m.rw && !m.source.is_empty())
        .map(|m| PathBuf::from(&m.source))
        .collect();
    for m in target.mounts.iter().filter(|m| m.kind == "bind") {
        let source = Path::new(&m.source);
        if let Some(why) = problem(source, &writable) {
            return Err(Failure::usage(format!(
                "container {:?}: the bind mount at {} comes from {}, and {why}; dockyard will not let a helper borrow it (the app could point it anywhere on this host). Move the bind source out of there",
                target.name, m.destination, m.source
            )));
        }
    }
    Ok(())
}

/// What is wrong with the way to `source`, if anything.
fn problem(source: &Path, writable: &[PathBuf]) -> Option<String> {
    let mut at = PathBuf::from("/");
    for part in source.components().skip(1) {
        let parent = at.clone();
        at.push(part);
        // The container can change what is in `parent` through another mount of its own.
        if let Some(other) = writable.iter().find(|w| parent.starts_with(w) && **w != at) {
            return Some(format!(
                "{} lies inside {}, another mount the container may write",
                parent.display(),
                other.display()
            ));
        }
        let Ok(meta) = std::fs::symlink_metadata(&at) else {
            return None; // missing: the engine makes it, as root
        };
        if meta.file_type().is_symlink() {
            let p = std::fs::symlink_metadata(&parent).ok()?;
            let locked = p.uid() == 0
                && (p.mode() & 0o022 == 0 || (p.mode() & 0o1000 != 0 && meta.uid() == 0));
            if !locked {
                return Some(format!(
                    "{} is a symlink in {}, which others than root may change",
                    at.display(),
                    parent.display()
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bind_below_another_writable_mount_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let app = tmp.path().join("app");
        std::fs::create_dir_all(app.join("sub")).unwrap();
        std::fs::write(app.join("sub/conf"), "x").unwrap();
        let writable = vec![app.clone()];
        let why = problem(&app.join("sub/conf"), &writable).unwrap();
        assert!(
            why.contains("another mount the container may write"),
            "{why}"
        );
        // A bind of its own, under root-owned directories: fine.
        assert!(problem(&app.join("sub/conf"), &[]).is_none());
        // A symlink on the way in a directory anyone may write: refused.
        let open = tmp.path().join("open");
        std::fs::create_dir_all(&open).unwrap();
        std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        std::os::unix::fs::symlink(&app, open.join("link")).unwrap();
        let why = problem(&open.join("link/sub/conf"), &[]).unwrap();
        assert!(why.contains("is a symlink in"), "{why}");
    }
}
