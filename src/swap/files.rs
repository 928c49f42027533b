//! Single-file bind mounts in a restore: the host directory behind each (found again through the
//! target's current mounts, never from a journal alone) and the names a helper that binds those
//! directories sees the staged and live files under.

use anyhow::Result;

use super::staged_file_name;
use crate::docker::ContainerInfo;

/// A staged single file and the live one it replaces, as a helper sees them.
pub type StagedPair = (String, String);

/// Bind mounts for the host directories of the single-file mounts at container paths `files`,
/// found through the target's current mounts, and the (staged, live) pairs as the helper sees
/// them.
pub fn file_binds(
    target: &ContainerInfo,
    files: &[String],
    local: bool,
) -> Result<(Vec<String>, Vec<StagedPair>)> {
    let mut binds = Vec::new();
    let mut pairs = Vec::new();
    for (i, path) in files.iter().enumerate() {
        let (dir, name) = file_source(target, path, local)?;
        let inside = format!("/.dockyard-file-{i}");
        binds.push(format!("{dir}:{inside}"));
        pairs.push((
            format!("{inside}/{}", staged_file_name(&name)),
            format!("{inside}/{name}"),
        ));
    }
    Ok((binds, pairs))
}

/// The host directory and file name behind the single-file bind mount at `path` of `target`.
pub fn file_source(target: &ContainerInfo, path: &str, local: bool) -> Result<(String, String)> {
    let mount = target
        .mounts
        .iter()
        .find(|m| m.kind == "bind" && m.destination == path)
        .ok_or_else(|| {
            crate::error::Failure::usage(format!(
                "container {:?} has no single-file bind mount at {path} (any more)",
                target.name
            ))
        })?;
    let source = std::path::Path::new(&mount.source);
    // On this host (`local`: the engine's): the source must still be a file (a deleted one comes back as a directory
    // the engine made).
    if let Ok(meta) = std::fs::symlink_metadata(source) {
        if local && !meta.is_file() {
            return Err(crate::error::Failure::usage(format!(
                "cannot restore {path} of container {:?}: its bind mount source {} is not a file (any more)",
                target.name, mount.source
            ))
            .into());
        }
    }
    match (
        source.parent().and_then(|d| d.to_str()),
        source.file_name().and_then(|n| n.to_str()),
    ) {
        (Some(dir), Some(name)) if !dir.is_empty() && !dir.contains(':') => {
            Ok((dir.to_string(), name.to_string()))
        }
        _ => Err(crate::error::Failure::usage(format!(
            "cannot restore {path} of container {:?}: its bind mount source {:?} has no usable directory and name",
            target.name, mount.source
        ))
        .into()),
    }
}
