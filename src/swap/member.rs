//! What one staged path's upload holds, whoever extracts it (the engine or the agent): for the
//! first path of a mount, the work directory, journal and phase; then the path's staging
//! directory and its entries; last its time fix-ups.

use std::io::{self, Read, Write};

use crate::archive::stage::{private_dir, private_file, stage, StageSpec, Staged};
use crate::archive::verify::Expect;
use crate::archive::writer::TarWriter;

/// Writes path `k` of the archive read from `archive` (checked whole against `expect`) as
/// staged by `spec`, with the mount's `journal` first when given.
pub fn stage_member<W: Write>(
    archive: impl Read,
    expect: &Expect,
    spec: &StageSpec,
    k: usize,
    journal: Option<&str>,
    w: &mut TarWriter<W>,
) -> io::Result<Staged> {
    if let Some(text) = journal {
        w.append(&private_dir(super::WORK_DIR.as_bytes()), &mut io::empty())?;
        w.append(
            &private_file(super::JOURNAL.as_bytes(), text.len()),
            &mut text.as_bytes(),
        )?;
        let phase = b"staging\n";
        w.append(
            &private_file(super::PHASE.as_bytes(), phase.len()),
            &mut &phase[..],
        )?;
    }
    w.append(&private_dir(&spec.into), &mut io::empty())?;
    let staged = stage(archive, expect, spec, w)?;
    let mut fixups = String::new();
    for f in &staged.fixups {
        fixups += &format!(
            "{} {}\n",
            f.secs,
            crate::archive::names::octal_escape(&f.rel)
        );
    }
    w.append(
        &private_file(super::fixups_file(k).as_bytes(), fixups.len()),
        &mut fixups.as_bytes(),
    )?;
    Ok(staged)
}
