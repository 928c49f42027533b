//! An incremental backup's deletion list: the archive names its parent held that are gone, or
//! whose type changed (a file that is now a directory), each ending in a NUL, zstd-compressed.
//! Applied before the increment's archive is extracted (`xargs -0 rm -rf --` by hand): a
//! removed directory is listed alone, never with what it held.

use std::io::{self, BufRead};

/// The most names a deletion list holds, in bytes: a forged one is refused past it, not held,
/// and a backup whose list would be longer is made full (a restore sends each path's list to
/// its agent in one message, as hex, under that message's 256 MiB cap).
pub const MAX_BYTES: u64 = 64 << 20;

/// Reads a deletion list's decompressed bytes: each name checked to be sound and inside one of
/// `prefixes` (archive prefixes, `srv/media`). Returns the names.
pub fn read(r: impl BufRead, prefixes: &[String]) -> Result<Vec<Vec<u8>>, String> {
    let mut names = Vec::new();
    let mut total = 0u64;
    for name in r.take(MAX_BYTES + 1).split(0) {
        let name = name.map_err(|e| format!("cannot read it: {e}"))?;
        total += name.len() as u64 + 1;
        if name.is_empty() {
            return Err("it lists an empty name".into());
        }
        if total > MAX_BYTES {
            return Err(format!("it is over {MAX_BYTES} bytes"));
        }
        let inside = prefixes.iter().any(|p| {
            crate::archive::names::relative(&name, p).is_some_and(|rel| {
                !rel.is_empty() && crate::archive::names::check_relative(rel).is_ok()
            })
        });
        if !inside {
            return Err(format!(
                "it lists {}, which is not a sound name below a backed-up path",
                crate::archive::names::show(&name)
            ));
        }
        names.push(name);
    }
    Ok(names)
}

/// Writes one name.
pub fn write(out: &mut impl io::Write, name: &[u8]) -> io::Result<()> {
    out.write_all(name)?;
    out.write_all(&[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_inside_the_paths_read_back_and_others_are_refused() {
        let prefixes = ["srv/media".to_string()];
        let mut list = Vec::new();
        write(&mut list, b"srv/media/a\nb").unwrap();
        write(&mut list, b"srv/media/d").unwrap();
        assert_eq!(
            read(&list[..], &prefixes).unwrap(),
            vec![b"srv/media/a\nb".to_vec(), b"srv/media/d".to_vec()]
        );
        for bad in [
            &b"srv/media\0"[..],
            b"srv/media/../x\0",
            b"etc/x\0",
            b"/srv/media/a\0",
        ] {
            assert!(read(bad, &prefixes).is_err(), "{bad:?}");
        }
    }
}
