//! Reading an index back, line by line (never whole), and checking one from a destination
//! before an incremental backup trusts it: its version, its paths in the manifest's order, every
//! name inside its path and in the walk's order.

use std::cmp::Ordering;
use std::io::{self, BufRead, Read};

use super::{order, Header, PathLine, Record, VERSION};
use crate::archive::names::{check_relative, prefix_for, relative};

/// The longest line read: a name and a link target of up to 1 MiB each, every byte escaped as
/// JSON escapes a control character (6 bytes), and the rest.
pub const MAX_LINE: usize = 16 << 20;

/// One line of an index (read one at a time: an entry is not boxed).
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Line {
    /// A path's section begins.
    Path(String),
    /// An entry.
    Entry(Record),
}

/// The lines of an index after its header, read from its decompressed text.
pub struct Lines<R: BufRead> {
    inner: R,
    buf: Vec<u8>,
    peeked: Option<Line>,
    /// The header.
    pub header: Header,
    /// Lines read (for messages).
    pub line: u64,
}

impl<R: BufRead> Lines<R> {
    /// Reads the header: an index of another version is refused by name.
    pub fn new(mut inner: R) -> io::Result<Lines<R>> {
        let mut buf = Vec::new();
        read_line(&mut inner, &mut buf)?;
        let header: Header = serde_json::from_slice(&buf)
            .map_err(|e| invalid(format!("its first line is not an index header: {e}")))?;
        if header.dockyard_index != VERSION {
            return Err(invalid(format!(
                "it is index format {}, not {VERSION}",
                header.dockyard_index
            )));
        }
        Ok(Lines {
            inner,
            buf,
            peeked: None,
            header,
            line: 1,
        })
    }

    /// The next line without taking it.
    pub fn peek(&mut self) -> io::Result<Option<&Line>> {
        if self.peeked.is_none() {
            self.peeked = self.read()?;
        }
        Ok(self.peeked.as_ref())
    }

    /// The next line.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> io::Result<Option<Line>> {
        match self.peeked.take() {
            Some(l) => Ok(Some(l)),
            None => self.read(),
        }
    }

    fn read(&mut self) -> io::Result<Option<Line>> {
        if read_line(&mut self.inner, &mut self.buf)? == 0 {
            return Ok(None);
        }
        self.line += 1;
        let line = if self.buf.starts_with(b"{\"path\"") {
            let p: PathLine = serde_json::from_slice(&self.buf)
                .map_err(|e| invalid(format!("line {}: {e}", self.line)))?;
            Line::Path(p.path)
        } else {
            let r: Record = serde_json::from_slice(&self.buf)
                .map_err(|e| invalid(format!("line {}: {e}", self.line)))?;
            if r.k.is_none() || r.name().is_empty() {
                return Err(invalid(format!(
                    "line {}: an entry without a kind or a name",
                    self.line
                )));
            }
            Line::Entry(r)
        };
        Ok(Some(line))
    }
}

/// Reads one line (without its newline) into `buf`; 0 at the end.
fn read_line(r: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<usize> {
    buf.clear();
    let n = Read::take(&mut *r, MAX_LINE as u64 + 1).read_until(b'\n', buf)?;
    if n > MAX_LINE {
        return Err(invalid(format!("a line over {MAX_LINE} bytes")));
    }
    if n > 0 && buf.last() != Some(&b'\n') {
        return Err(invalid("it ends inside a line".into()));
    }
    buf.pop();
    Ok(n)
}

/// Reads a whole index and checks it describes `paths` (in that order), every name inside its
/// path, sound, and after the one before it in the walk's order. Returns its entries.
pub fn check(text: impl BufRead, paths: &[String]) -> Result<u64, String> {
    let mut lines = Lines::new(text).map_err(|e| e.to_string())?;
    let mut entries = 0u64;
    let mut at = 0usize;
    let mut last: Option<Vec<u8>> = None;
    let mut prefix = String::new();
    while let Some(line) = lines.next().map_err(|e| e.to_string())? {
        match line {
            Line::Path(p) => {
                if paths.get(at) != Some(&p) {
                    return Err(format!(
                        "line {}: path {p:?} where the manifest lists {:?}",
                        lines.line,
                        paths.get(at)
                    ));
                }
                at += 1;
                prefix = prefix_for(&p);
                last = None;
            }
            Line::Entry(r) => {
                let name = r.name();
                if at == 0 {
                    return Err(format!("line {}: an entry before any path", lines.line));
                }
                let sound = !name.contains(&0)
                    && !r.link().is_some_and(|l| l.contains(&0))
                    && relative(&name, &prefix).is_some_and(|rel| {
                        name.last() != Some(&b'/') && check_relative(rel).is_ok()
                    });
                if !sound {
                    return Err(format!(
                        "line {}: entry {} is not a sound name inside {}",
                        lines.line,
                        crate::archive::names::show(&name),
                        paths[at - 1]
                    ));
                }
                if last
                    .as_deref()
                    .is_some_and(|l| order(l, &name) != Ordering::Less)
                {
                    return Err(format!(
                        "line {}: entry {} is out of order",
                        lines.line,
                        crate::archive::names::show(&name)
                    ));
                }
                last = Some(name);
                entries += 1;
            }
        }
    }
    if at != paths.len() {
        return Err(format!(
            "it has {at} of the manifest's {} paths",
            paths.len()
        ));
    }
    Ok(entries)
}

fn invalid(m: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, m)
}

#[cfg(test)]
mod tests {
    use super::super::{Kind, Writer};
    use super::*;

    fn entry(name: &[u8]) -> Record {
        let mut r = Record {
            k: Some(Kind::File),
            ..Default::default()
        };
        r.set_name(name);
        r
    }

    fn index(names: &[&[u8]]) -> Vec<u8> {
        let mut w = Writer::new(Vec::new(), (1, 0)).unwrap();
        w.path("/srv/media").unwrap();
        for n in names {
            w.entry(&entry(n)).unwrap();
        }
        w.finish()
    }

    #[test]
    fn a_sound_index_reads_back_line_by_line() {
        let text = index(&[
            b"srv/media",
            b"srv/media/a",
            b"srv/media/a/b",
            b"srv/media/a-c",
        ]);
        assert_eq!(check(&text[..], &["/srv/media".into()]), Ok(4));
        let mut lines = Lines::new(&text[..]).unwrap();
        assert_eq!(lines.header.started, (1, 0));
        assert_eq!(lines.next().unwrap(), Some(Line::Path("/srv/media".into())));
        assert!(matches!(lines.peek().unwrap(), Some(Line::Entry(_))));
        assert_eq!(
            lines.next().unwrap(),
            Some(Line::Entry(entry(b"srv/media")))
        );
    }

    #[test]
    fn a_forged_index_is_refused_saying_why() {
        let paths = ["/srv/media".to_string()];
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (index(&[b"srv/media/b", b"srv/media/a"]), "out of order"),
            (index(&[b"srv/media/../x"]), "not a sound name"),
            (index(&[b"etc/passwd"]), "not a sound name"),
            (index(&[b"srv/media/a\0b"]), "not a sound name"),
            (index(&[b"srv/media/a", b"srv/media/a"]), "out of order"),
            (
                b"{\"dockyard_index\":9,\"started\":[0,0]}\n".to_vec(),
                "format 9",
            ),
            (b"not json\n".to_vec(), "not an index header"),
            (index(&[b"srv/media/a"])[..60].to_vec(), "ends inside"),
        ];
        for (text, why) in cases {
            let e = check(&text[..], &paths).unwrap_err();
            assert!(e.contains(why), "{why}: {e}");
        }
        let e = check(&index(&[])[..], &["/srv/media".into(), "/srv/logs".into()]).unwrap_err();
        assert!(e.contains("1 of the manifest's 2 paths"), "{e}");
    }
}
