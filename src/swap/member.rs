//! What one staged path's upload holds, whoever extracts it (the engine or the agent): for the
//! first path of a mount, the work directory and its phase; then the path's staging directory
//! and its entries. Times the engine cannot set are returned in [`Staged::fixups`], for the
//! journal on the host.

use std::io::{self, Read, Write};

use crate::archive::stage::{private_dir, private_file, stage, StageSpec, Staged};
use crate::archive::verify::Expect;
use crate::archive::writer::TarWriter;

/// Writes the path of the archive read from `archive` (checked whole against `expect`) as
/// staged by `spec`, with the mount's work directory first when `first`.
pub fn stage_member<W: Write>(
    archive: impl Read,
    expect: &Expect,
    spec: &StageSpec,
    first: bool,
    w: &mut TarWriter<W>,
) -> io::Result<Staged> {
    if first {
        w.append(&private_dir(super::WORK_DIR.as_bytes()), &mut io::empty())?;
        let phase = b"staging\n";
        w.append(
            &private_file(super::PHASE.as_bytes(), phase.len()),
            &mut &phase[..],
        )?;
    }
    w.append(&private_dir(&spec.into), &mut io::empty())?;
    stage(archive, expect, spec, w)
}
