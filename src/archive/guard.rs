//! A reader under every tar stream dockyard parses, so a forged header cannot make it hold
//! gigabytes: the `tar` crate reads a PAX extension header, a GNU long name or long link, and a
//! sparse file's map whole into memory before it hands on the entry they describe, with no
//! limit (a 34 KB archive holding a 1 GiB PAX record took 2.6 GB). This reader follows the
//! stream's headers as the crate will read them and fails the read that brings a header whose
//! extension data is over [`MAX_EXTENSION`], before any of that data is read.

use std::io::{self, Read};

use tar::{EntryType, GnuExtSparseHeader, Header, PaxExtensions};

/// The most extension data one header may carry. Linux xattr values are at most 64 KiB and
/// names at most 4 KiB, so no archive dockyard or the engine writes comes near it.
pub const MAX_EXTENSION: u64 = 1 << 20;

const BLOCK: u64 = 512;

/// A header refused for its size: what it is and how many bytes it says it carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a {kind} of {size} bytes, over the 1 MiB limit")]
pub struct TooLarge {
    /// `PAX header`, `GNU long name`, ...
    pub kind: &'static str,
    /// The size its header gives.
    pub size: u64,
}

impl TooLarge {
    /// The refusal inside an I/O error, if that is what `e` is.
    pub fn of(e: &io::Error) -> Option<&TooLarge> {
        e.get_ref()?.downcast_ref::<TooLarge>()
    }
}

/// A tar archive over `reader` whose extension headers are bounded.
pub fn archive<R: Read>(reader: R) -> tar::Archive<Guarded<R>> {
    tar::Archive::new(Guarded::new(reader))
}

/// Where the reader is in the stream.
enum At {
    /// In a header block (`filled` bytes of it seen).
    Header {
        block: Box<[u8; 512]>,
        filled: usize,
    },
    /// In a sparse file's extension blocks; then `data` bytes (padded) follow.
    SparseMap {
        block: Box<[u8; 512]>,
        filled: usize,
        data: u64,
        blocks: u64,
    },
    /// In a PAX header's records, kept (at most [`MAX_EXTENSION`]) for the `size` they may set.
    Pax {
        records: Vec<u8>,
        left: u64,
        pad: u64,
    },
    /// Passing over data (and padding) the crate reads or skips.
    Skip { left: u64 },
    /// Past the end of the archive, or past something the crate itself refuses: nothing to watch.
    Done,
    /// A header was refused; every later read fails the same way.
    Refused(TooLarge),
}

/// See the module's documentation.
pub struct Guarded<R> {
    inner: R,
    at: At,
    /// Whether a PAX header precedes the coming entry, and the `size` it gives.
    pax: Option<Option<u64>>,
}

impl<R> Guarded<R> {
    /// Watches `inner` from the start of a tar stream.
    pub fn new(inner: R) -> Self {
        Guarded {
            inner,
            at: header(),
            pax: None,
        }
    }
}

fn header() -> At {
    At::Header {
        block: Box::new([0; 512]),
        filled: 0,
    }
}

/// Data of `size` bytes and its padding, then the next header.
fn skip(size: u64) -> At {
    match size.checked_next_multiple_of(BLOCK) {
        Some(0) => header(),
        Some(left) => At::Skip { left },
        // The crate refuses it ("size overflow").
        None => At::Done,
    }
}

impl<R: Read> Read for Guarded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let At::Refused(e) = &self.at {
            return Err(io::Error::new(io::ErrorKind::InvalidData, e.clone()));
        }
        let n = self.inner.read(buf)?;
        self.watch(&buf[..n])?;
        Ok(n)
    }
}

impl<R> Guarded<R> {
    /// Follows the stream over `bytes`, the next ones the crate reads.
    fn watch(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match &mut self.at {
                At::Done | At::Refused(_) => return Ok(()),
                At::Skip { left } => {
                    let n = (*left).min(bytes.len() as u64);
                    *left -= n;
                    bytes = &bytes[n as usize..];
                    if *left == 0 {
                        self.at = header();
                    }
                }
                At::Pax { records, left, pad } => {
                    let n = (*left).min(bytes.len() as u64) as usize;
                    records.extend_from_slice(&bytes[..n]);
                    *left -= n as u64;
                    bytes = &bytes[n..];
                    if *left == 0 {
                        self.pax = Some(pax_size(records));
                        self.at = match *pad {
                            0 => header(),
                            left => At::Skip { left },
                        };
                    }
                }
                At::Header { block, filled } | At::SparseMap { block, filled, .. } => {
                    let n = (512 - *filled).min(bytes.len());
                    block[*filled..*filled + n].copy_from_slice(&bytes[..n]);
                    *filled += n;
                    bytes = &bytes[n..];
                    if *filled == 512 {
                        self.at = match std::mem::replace(&mut self.at, At::Done) {
                            At::Header { block, .. } => self.after_header(&block),
                            At::SparseMap {
                                block,
                                data,
                                blocks,
                                ..
                            } => after_sparse_block(&block, data, blocks),
                            _ => unreachable!("matched above"),
                        };
                        if let At::Refused(e) = &self.at {
                            return Err(io::Error::new(io::ErrorKind::InvalidData, e.clone()));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// What follows a header block, as the crate reads it (`Archive::entries`, not raw).
    fn after_header(&mut self, block: &[u8; 512]) -> At {
        if block.iter().all(|&b| b == 0) {
            return At::Done;
        }
        let mut h = Header::new_old();
        h.as_mut_bytes().copy_from_slice(block);
        let sum: u32 = block[..148]
            .iter()
            .chain(&block[156..])
            .map(|&b| b as u32)
            .sum::<u32>()
            + 8 * 32;
        if h.cksum().ok() != Some(sum) {
            return At::Done;
        }
        let kind = h.entry_type();
        let extension = match kind {
            EntryType::GNULongName => Some("GNU long name"),
            EntryType::GNULongLink => Some("GNU long link name"),
            EntryType::XHeader => Some("PAX header"),
            EntryType::XGlobalHeader => Some("PAX global header"),
            _ => None,
        };
        let Ok(stated) = h.entry_size() else {
            return At::Done;
        };
        if let Some(kind) = extension {
            if stated > MAX_EXTENSION {
                return At::Refused(TooLarge { kind, size: stated });
            }
        }
        // The crate gathers L, K and x headers of a ustar or GNU header for the entry after them,
        // and hands on anything else (a global header too) as an entry of its own.
        let gathered = extension.is_some()
            && kind != EntryType::XGlobalHeader
            && (h.as_ustar().is_some() || h.as_gnu().is_some());
        if gathered {
            if kind == EntryType::XHeader {
                if self.pax.is_some() {
                    return At::Done; // The crate refuses two.
                }
                let pad = stated.next_multiple_of(BLOCK) - stated;
                return if stated == 0 {
                    self.pax = Some(None);
                    header()
                } else {
                    At::Pax {
                        records: Vec::with_capacity(stated as usize),
                        left: stated,
                        pad,
                    }
                };
            }
            return skip(stated);
        }
        // An entry: the PAX size of the header before it wins over its own (not for extension
        // types handed on as entries).
        let pax = self.pax.take().flatten();
        let size = match pax {
            Some(size) if extension.is_none() => size,
            _ => stated,
        };
        if kind == EntryType::GNUSparse {
            return match h.as_gnu() {
                Some(gnu) if gnu.is_extended() => At::SparseMap {
                    block: Box::new([0; 512]),
                    filled: 0,
                    data: size,
                    blocks: 0,
                },
                Some(_) => skip(size),
                None => At::Done,
            };
        }
        skip(size)
    }
}

/// After one extension block of a sparse file's map: another, or its data.
fn after_sparse_block(block: &[u8; 512], data: u64, blocks: u64) -> At {
    let blocks = blocks + 1;
    if blocks * BLOCK > MAX_EXTENSION {
        return At::Refused(TooLarge {
            kind: "GNU sparse map",
            size: blocks * BLOCK,
        });
    }
    let mut ext = GnuExtSparseHeader::new();
    ext.as_mut_bytes().copy_from_slice(block);
    if ext.is_extended() {
        At::SparseMap {
            block: Box::new([0; 512]),
            filled: 0,
            data,
            blocks,
        }
    } else {
        skip(data)
    }
}

/// The `size` record of PAX records, read as the crate reads it (the first `size` key, as a
/// decimal; nothing if a record before it is malformed).
fn pax_size(records: &[u8]) -> Option<u64> {
    for record in PaxExtensions::new(records) {
        let record = record.ok()?;
        if record.key_bytes() == b"size" {
            return record.value().ok()?.parse().ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::entry::{Kind, Meta, Mtime};
    use crate::archive::writer::TarWriter;

    /// A raw header block: `name`, type `kind`, size field `size`, checksum set.
    fn raw(name: &[u8], kind: u8, size: u64) -> Vec<u8> {
        let mut h = Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_entry_type(EntryType::new(kind));
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    fn data(tar: &mut Vec<u8>, bytes: &[u8]) {
        tar.extend_from_slice(bytes);
        tar.resize(tar.len().next_multiple_of(512), 0);
    }

    /// One entry as read: its name, type byte and data, or the error.
    type Got = Result<(Vec<u8>, u8, Vec<u8>), String>;

    /// What a reader makes of `tar`: each entry's name, type and data, or the error.
    fn entries<R: Read>(mut archive: tar::Archive<R>) -> Vec<Got> {
        let mut out = Vec::new();
        for e in archive.entries().unwrap() {
            match e {
                Ok(mut e) => {
                    let mut bytes = Vec::new();
                    e.read_to_end(&mut bytes).unwrap();
                    out.push(Ok((
                        e.path_bytes().to_vec(),
                        e.header().entry_type().as_byte(),
                        bytes,
                    )));
                }
                Err(e) => out.push(Err(e.to_string())),
            }
        }
        out
    }

    fn meta(kind: Kind, name: &[u8]) -> Meta {
        Meta {
            kind,
            name: name.to_vec(),
            link: None,
            size: 0,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: Mtime { secs: 1, nanos: 5 },
            xattrs: vec![(b"user.note".to_vec(), b"hi".to_vec())],
            device: None,
        }
    }

    /// A GNU sparse file of five 512-byte chunks (four in its header, one in an extension
    /// block), 1 KiB apart, then a plain file.
    fn sparse() -> Vec<u8> {
        let octal = |field: &mut [u8], v: u64| {
            let s = format!("{:0w$o}\0", v, w = field.len() - 1);
            field.copy_from_slice(s.as_bytes());
        };
        let mut h = Header::new_gnu();
        h.as_old_mut().name[..6].copy_from_slice(b"sparse");
        h.set_entry_type(EntryType::GNUSparse);
        h.set_size(5 * 512);
        h.set_mode(0o644);
        let gnu = h.as_gnu_mut().unwrap();
        for (i, chunk) in gnu.sparse.iter_mut().enumerate() {
            octal(&mut chunk.offset, i as u64 * 1024);
            octal(&mut chunk.numbytes, 512);
        }
        gnu.isextended = [1];
        octal(&mut gnu.realsize, 4 * 1024 + 512);
        h.set_cksum();
        let mut tar = h.as_bytes().to_vec();
        let mut ext = GnuExtSparseHeader::new();
        octal(&mut ext.sparse[0].offset, 4 * 1024);
        octal(&mut ext.sparse[0].numbytes, 512);
        tar.extend_from_slice(ext.as_bytes());
        for i in 0..5u8 {
            tar.extend_from_slice(&[b'a' + i; 512]);
        }
        tar
    }

    #[test]
    fn every_kind_of_header_reads_the_same_through_the_guard() {
        let mut w = TarWriter::new(Vec::new());
        w.append(&meta(Kind::Dir, b"d"), &mut io::empty()).unwrap();
        let mut long = meta(Kind::File, &[b'n'; 300]);
        long.size = 1000;
        w.append(&long, &mut &[7u8; 1000][..]).unwrap();
        let mut link = meta(Kind::Symlink, b"l");
        link.link = Some(vec![b't'; 300]);
        w.append(&link, &mut io::empty()).unwrap();
        let mut tar = w.finish().unwrap();
        tar.truncate(tar.len() - 1024);
        // A PAX size over a header size of 0 (the crate honours it), a global header, and a
        // sparse file.
        let mut pax = Vec::new();
        let record = b"13 size=1000\n";
        tar.extend(raw(b"././@PaxHeader", b'x', record.len() as u64));
        data(&mut pax, record);
        tar.extend(pax);
        tar.extend(raw(b"big", b'0', 0));
        data(&mut tar, &[9u8; 1000]);
        tar.extend(raw(b"global", b'g', 12));
        data(&mut tar, b"12 comment=\n");
        tar.extend(sparse());
        tar.extend(raw(b"after", b'0', 3));
        data(&mut tar, b"end");
        let mut oversized = tar.clone();
        tar.extend([0u8; 1024]);

        let plain = entries(tar::Archive::new(&tar[..]));
        assert_eq!(plain.len(), 7);
        assert!(plain.iter().all(Result::is_ok));
        assert!(
            entries(archive(&tar[..])) == plain,
            "the guard read differently"
        );
        // It followed every header to the end: one more, too large, is refused.
        oversized.extend(raw(b"././@LongLink", b'L', MAX_EXTENSION + 1));
        let last = entries(archive(&oversized[..])).pop().unwrap();
        assert!(last.unwrap_err().contains("GNU long name"));
    }

    /// Counts the bytes read through it.
    struct Counted<'a>(&'a [u8], std::rc::Rc<std::cell::Cell<usize>>);
    impl Read for Counted<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.read(buf)?;
            self.1.set(self.1.get() + n);
            Ok(n)
        }
    }

    #[test]
    fn an_extension_header_over_1_mib_fails_before_its_data_is_read() {
        for (kind, what) in [
            (b'x', "PAX header"),
            (b'g', "PAX global header"),
            (b'L', "GNU long name"),
            (b'K', "GNU long link name"),
        ] {
            for size in [MAX_EXTENSION, MAX_EXTENSION + 1] {
                let mut tar = raw(b"srv/media", b'5', 0);
                tar.extend(raw(b"././@LongLink", kind, size));
                let mut body = vec![b'a'; size as usize];
                if kind == b'x' || kind == b'g' {
                    let head = format!("{size} c=");
                    body[..head.len()].copy_from_slice(head.as_bytes());
                    body[size as usize - 1] = b'\n';
                }
                data(&mut tar, &body);
                tar.extend(raw(b"srv/media/f", b'0', 0));
                tar.extend([0u8; 1024]);
                let read = std::rc::Rc::new(std::cell::Cell::new(0));
                let got = entries(archive(Counted(&tar, read.clone())));
                if size == MAX_EXTENSION {
                    assert!(got.iter().all(Result::is_ok), "{what}: {got:?}");
                    continue;
                }
                let err = got[1].as_ref().unwrap_err();
                assert_eq!(
                    *err,
                    format!("a {what} of {size} bytes, over the 1 MiB limit")
                );
                assert!(read.get() <= 2 * 512, "{what}: read {} bytes", read.get());
            }
        }
    }

    #[test]
    fn a_sparse_map_over_1_mib_is_refused() {
        // The header, then extension blocks each saying another follows.
        let mut tar = sparse()[..512].to_vec();
        let mut ext = GnuExtSparseHeader::new();
        ext.isextended = [1];
        for _ in 0..2049 {
            tar.extend_from_slice(ext.as_bytes());
        }
        let err = entries(archive(&tar[..])).remove(0).unwrap_err();
        assert_eq!(
            err,
            "a GNU sparse map of 1049088 bytes, over the 1 MiB limit"
        );
    }
}
