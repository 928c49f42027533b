//! The file index a backup made through the agent records beside its archive (docs/index.md):
//! every entry the walk visited, with what tells a change (size, times to the nanosecond, inode,
//! mode, owner, link target, an xattr digest) and for files a sha256 of the bytes read. An
//! incremental backup compares the volume against its parent's index, streaming both in the
//! walk's order, so neither side is held whole.
//!
//! The format is zstd-compressed JSON Lines: a header line, then for each backed-up path a
//! `{"path": ...}` line followed by its entries in the walk's order ([`order`]).

pub mod deleted;
pub mod read;

use std::cmp::Ordering;
use std::io::{self, Write};

use serde::{Deserialize, Serialize};

pub use read::{check, Line, Lines, MAX_LINE};

/// The index format this dockyard writes and reads.
pub const VERSION: u32 = 1;

/// An entry changed within this long before its walk began may change again within the same
/// clock tick unseen: the next incremental backup reads it again ("racily clean" files).
pub const RACY_NANOS: i128 = 2_000_000_000;

/// The first line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Header {
    /// [`VERSION`].
    pub dockyard_index: u32,
    /// When the walk began (seconds, nanoseconds since the epoch, the helper's clock).
    pub started: (i64, u32),
}

/// The line that opens one backed-up path's entries.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PathLine {
    /// The container path, as in the manifest.
    pub path: String,
}

/// What an entry is, as the index says it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file (each name of a hard-linked file is one, with the same inode).
    File,
    /// A symbolic link.
    Symlink,
    /// A named pipe.
    Fifo,
    /// A character device.
    Char,
    /// A block device.
    Block,
}

/// One entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Record {
    /// Its archive name (`srv/media/a.jpg`) when that is UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// Its archive name as hex, when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nx: Option<String>,
    /// What it is.
    pub k: Option<Kind>,
    /// Size in bytes (files).
    #[serde(default)]
    pub s: u64,
    /// Modification time: seconds, nanoseconds.
    pub mt: (i64, u32),
    /// Status change time: seconds, nanoseconds.
    pub ct: (i64, u32),
    /// Inode number.
    pub ino: u64,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Symlink target when UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l: Option<String>,
    /// Symlink target as hex when not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lx: Option<String>,
    /// Device numbers (devices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<(u32, u32)>,
    /// sha256 of the extended attributes (names and values), when it has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// sha256 of the file's bytes as the backup read them (files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub h: Option<String>,
}

impl Record {
    /// Its archive name's bytes (an empty name if the record has neither form, which [`check`]
    /// refuses).
    pub fn name(&self) -> Vec<u8> {
        text_or_hex(&self.n, &self.nx)
    }

    /// Sets its name.
    pub fn set_name(&mut self, name: &[u8]) {
        (self.n, self.nx) = split_text(name);
    }

    /// Its symlink target's bytes, if it has one.
    pub fn link(&self) -> Option<Vec<u8>> {
        (self.l.is_some() || self.lx.is_some()).then(|| text_or_hex(&self.l, &self.lx))
    }

    /// Sets its symlink target.
    pub fn set_link(&mut self, link: &[u8]) {
        (self.l, self.lx) = split_text(link);
    }

    /// Whether `now` describes the same entry unchanged: the same kind, size, times, inode,
    /// mode, owner, link target, device and xattrs (its content hash aside).
    pub fn same_as(&self, now: &Record) -> bool {
        self.k == now.k
            && self.s == now.s
            && self.mt == now.mt
            && self.ct == now.ct
            && self.ino == now.ino
            && self.mode == now.mode
            && (self.uid, self.gid) == (now.uid, now.gid)
            && self.link() == now.link()
            && self.dev == now.dev
            && self.x == now.x
    }

    /// Whether it changed so close to `started` (its walk's start) that a change after it was
    /// read may not show in its times.
    pub fn racy(&self, started: (i64, u32)) -> bool {
        let at = |(s, n): (i64, u32)| s as i128 * 1_000_000_000 + n as i128;
        at(self.ct).max(at(self.mt)) >= at(started) - RACY_NANOS
    }
}

fn text_or_hex(text: &Option<String>, hex: &Option<String>) -> Vec<u8> {
    match (text, hex) {
        (Some(t), _) => t.as_bytes().to_vec(),
        (None, Some(h)) => ::hex::decode(h).unwrap_or_default(),
        (None, None) => Vec::new(),
    }
}

fn split_text(bytes: &[u8]) -> (Option<String>, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(t) => (Some(t.to_string()), None),
        Err(_) => (None, Some(::hex::encode(bytes))),
    }
}

/// The sha256 (hex) of extended attributes as the walk reads them (sorted), `None` for none.
pub fn xattr_digest(xattrs: &[(Vec<u8>, Vec<u8>)]) -> Option<String> {
    use sha2::{Digest, Sha256};
    if xattrs.is_empty() {
        return None;
    }
    let mut h = Sha256::new();
    for (k, v) in xattrs {
        h.update((k.len() as u64).to_be_bytes());
        h.update(k);
        h.update((v.len() as u64).to_be_bytes());
        h.update(v);
    }
    Some(::hex::encode(h.finalize()))
}

/// The walk's order of two archive names: component by component, each compared as bytes, a
/// directory before everything below it (`a`, `a/b`, `a-c`).
pub fn order(a: &[u8], b: &[u8]) -> Ordering {
    let mut x = a.split(|&c| c == b'/');
    let mut y = b.split(|&c| c == b'/');
    loop {
        match (x.next(), y.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(p), Some(q)) => match p.cmp(q) {
                Ordering::Equal => continue,
                other => return other,
            },
        }
    }
}

/// Whether `name` is `dir` or below it.
pub fn at_or_below(name: &[u8], dir: &[u8]) -> bool {
    name.starts_with(dir) && (name.len() == dir.len() || name[dir.len()] == b'/')
}

/// Writes index lines into `out` (the caller compresses).
pub struct Writer<W: Write> {
    out: W,
    /// Entries written.
    pub entries: u64,
}

impl<W: Write> Writer<W> {
    /// Starts an index: its header.
    pub fn new(mut out: W, started: (i64, u32)) -> io::Result<Writer<W>> {
        line(
            &mut out,
            &Header {
                dockyard_index: VERSION,
                started,
            },
        )?;
        Ok(Writer { out, entries: 0 })
    }

    /// Opens a path's section.
    pub fn path(&mut self, path: &str) -> io::Result<()> {
        line(
            &mut self.out,
            &PathLine {
                path: path.to_string(),
            },
        )
    }

    /// Writes one entry.
    pub fn entry(&mut self, r: &Record) -> io::Result<()> {
        self.entries += 1;
        line(&mut self.out, r)
    }

    /// The writer underneath.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// Ends the index, returning the writer underneath.
    pub fn finish(self) -> W {
        self.out
    }
}

fn line<W: Write>(out: &mut W, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_is_the_walks_a_directory_before_what_it_holds() {
        let mut names: Vec<&[u8]> = vec![b"a-c", b"a/b", b"a", b"a/b/c", b"b", b"a.d", b"a/a"];
        names.sort_by(|a, b| order(a, b));
        let want: Vec<&[u8]> = vec![b"a", b"a/a", b"a/b", b"a/b/c", b"a-c", b"a.d", b"b"];
        assert_eq!(names, want);
        assert!(at_or_below(b"a/b", b"a") && at_or_below(b"a", b"a"));
        assert!(!at_or_below(b"a-c", b"a") && !at_or_below(b"ab", b"a"));
    }

    #[test]
    fn names_that_are_not_utf8_go_as_hex_and_come_back() {
        let mut r = Record::default();
        r.set_name(b"srv/\xff\n");
        r.set_link(b"x");
        let text = serde_json::to_string(&r).unwrap();
        assert!(!text.contains('\n'), "{text}");
        let back: Record = serde_json::from_str(&text).unwrap();
        assert_eq!(back.name(), b"srv/\xff\n");
        assert_eq!(back.link().unwrap(), b"x");
    }

    #[test]
    fn any_difference_but_the_hash_is_a_change_and_recent_ones_are_racy() {
        let a = Record {
            k: Some(Kind::File),
            s: 5,
            mt: (100, 1),
            ct: (100, 2),
            ino: 7,
            mode: 0o644,
            h: Some("aa".into()),
            ..Default::default()
        };
        let mut b = a.clone();
        b.h = None;
        assert!(a.same_as(&b));
        for change in [
            |r: &mut Record| r.ct.1 += 1,
            |r: &mut Record| r.ino += 1,
            |r: &mut Record| r.uid = 1,
            |r: &mut Record| r.mode = 0o600,
            |r: &mut Record| r.x = Some("x".into()),
            |r: &mut Record| r.k = Some(Kind::Symlink),
        ] {
            let mut c = a.clone();
            change(&mut c);
            assert!(!a.same_as(&c), "{c:?}");
        }
        assert!(a.racy((101, 0)));
        assert!(!a.racy((103, 0)));
    }
}
