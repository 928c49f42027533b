//! Reading dumps back out of an archive: its first entries are the dumps' parts, in the order
//! the manifest lists them, so one dump is read from the archive's start up to its last part,
//! with the checks every archive reader makes, and nothing past it.

use std::io::{self, Read};

use crate::archive::entry::{self, Kind};
use crate::archive::names::show;

/// Reads the (plain) archive `r` from its start through part `to - 1` of `parts` (every dump
/// part's name, in order), checking each entry is the part listed there, and hands the data of
/// parts `from..to` to `each` in chunks. A mismatch is an `InvalidData` error saying what.
pub fn read_parts(
    r: impl Read,
    parts: &[String],
    from: usize,
    to: usize,
    mut each: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
    let decoder =
        crate::archive::decoder(r).map_err(|e| invalid(format!("not a zstd stream: {e}")))?;
    let mut archive = crate::archive::guard::archive(decoder);
    let mut i = 0;
    let mut buf = vec![0u8; 256 << 10];
    for entry in archive
        .entries()
        .map_err(|e| invalid(format!("not a tar archive: {e}")))?
    {
        if i >= to {
            break;
        }
        let mut entry = entry.map_err(|e| invalid(format!("corrupt archive: {e}")))?;
        let (meta, disagreements) = entry::read(&mut entry).map_err(invalid)?;
        let want = &parts[i];
        if meta.name != want.as_bytes() || meta.kind != Kind::File || !disagreements.is_empty() {
            return Err(invalid(format!(
                "entry {:?} is not the database dump part {want:?} its manifest lists there",
                show(&meta.name)
            )));
        }
        let size = entry.size();
        if size > super::PART_SIZE as u64 {
            return Err(invalid(format!(
                "database dump part {want:?} holds {size} bytes, more than a part does"
            )));
        }
        let mut read = 0u64;
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| invalid(format!("corrupt data in {want:?}: {e}")))?;
            if n == 0 {
                break;
            }
            read += n as u64;
            if i >= from {
                each(&buf[..n])?;
            }
        }
        if read != size {
            return Err(invalid(format!(
                "corrupt data in {want:?}: {read} of {size} bytes"
            )));
        }
        i += 1;
    }
    if i < to {
        return Err(invalid(format!(
            "the archive ends before the database dump part {:?} its manifest lists",
            parts[i]
        )));
    }
    Ok(())
}
