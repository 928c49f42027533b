//! The only place dockyard writes tar headers. Every header is built from a checked [`Meta`]:
//! numbers that do not fit their octal field are written in base-256 (GNU), names and link
//! targets over 100 bytes go in GNU long-name entries, and PAX records carry only what no header
//! field can (times before 1970, after 2242 or with nanoseconds, and xattrs). No PAX `size`,
//! `path`, `linkpath`, `uid` or `gid` is ever written, so every tar reader sees the same entries.
//! An entry's data must be exactly as long as its header says, or writing fails.

use std::io::{self, Read, Write};

use super::entry::{Kind, Meta};

const BLOCK: usize = 512;
/// The largest value a 12-byte octal field holds (11 digits): 8 GiB - 1, or year 2242.
const OCTAL12_MAX: u64 = 0o77777777777;

/// Writes tar entries to `out`.
pub struct TarWriter<W: Write> {
    out: W,
    /// Bytes written so far (the uncompressed tar size).
    pub bytes: u64,
}

impl<W: Write> TarWriter<W> {
    /// A writer over `out`.
    pub fn new(out: W) -> Self {
        TarWriter { out, bytes: 0 }
    }

    /// Appends one entry; `data` must yield at least `meta.size` bytes (files only), of which
    /// exactly that many are written.
    pub fn append(&mut self, meta: &Meta, data: &mut dyn Read) -> io::Result<()> {
        let mut pax: Vec<u8> = Vec::new();
        if meta.mtime.nanos != 0 || meta.mtime.secs < 0 || meta.mtime.secs as u64 > OCTAL12_MAX {
            pax_record(&mut pax, b"mtime", meta.mtime.to_pax().as_bytes());
        }
        for (key, value) in &meta.xattrs {
            let mut k = b"SCHILY.xattr.".to_vec();
            k.extend_from_slice(key);
            pax_record(&mut pax, &k, value);
        }
        if !pax.is_empty() {
            self.special(b'x', b"././@PaxHeader", &pax)?;
        }
        // Directories are written with a trailing slash, as tar tools expect.
        let slash = meta.kind == Kind::Dir && !meta.name.ends_with(b"/");
        let name_len = meta.name.len() + slash as usize;
        if name_len > 100 {
            let mut long = Vec::with_capacity(name_len + 1);
            long.extend_from_slice(&meta.name);
            if slash {
                long.push(b'/');
            }
            long.push(0);
            self.special(b'L', b"././@LongLink", &long)?;
        }
        let link = meta.link.as_deref().unwrap_or_default();
        if link.len() > 100 {
            let mut long = link.to_vec();
            long.push(0);
            self.special(b'K', b"././@LongLink", &long)?;
        }
        let size = if meta.kind == Kind::File {
            meta.size
        } else {
            0
        };
        let mut h = tar::Header::new_gnu();
        {
            let old = h.as_old_mut();
            copy_truncated(&mut old.name, &meta.name);
            if slash && meta.name.len() < old.name.len() {
                old.name[meta.name.len()] = b'/';
            }
            copy_truncated(&mut old.linkname, link);
            old.linkflag = [meta.kind.type_byte()];
        }
        h.set_mode(meta.mode & 0o7777);
        h.set_uid(meta.uid);
        h.set_gid(meta.gid);
        h.set_size(size);
        h.set_mtime(
            if meta.mtime.secs >= 0 && meta.mtime.secs as u64 <= OCTAL12_MAX {
                meta.mtime.secs as u64
            } else {
                0
            },
        );
        if let Some((major, minor)) = meta.device {
            if major > 0o7777777 || minor > 0o7777777 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "device {major}:{minor} of {:?} does not fit a tar header",
                        super::names::show(&meta.name)
                    ),
                ));
            }
            h.set_device_major(major)?;
            h.set_device_minor(minor)?;
        }
        h.set_cksum();
        self.write(h.as_bytes())?;
        if size > 0 {
            let copied = io::copy(&mut data.take(size), &mut self.out)?;
            self.bytes += copied;
            if copied != size {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "{:?}: the header declares {size} bytes but the source ended after {copied}",
                        super::names::show(&meta.name)
                    ),
                ));
            }
            self.pad(size)?;
        }
        Ok(())
    }

    /// The output, without ending the archive: for entries another writer's archive continues
    /// (a backup's dumps, before its volumes).
    pub fn into_inner(self) -> W {
        self.out
    }

    /// Ends the archive (two zero blocks) and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.write(&[0u8; 2 * BLOCK])?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn special(&mut self, kind: u8, name: &[u8], data: &[u8]) -> io::Result<()> {
        let mut h = tar::Header::new_gnu();
        {
            let old = h.as_old_mut();
            copy_truncated(&mut old.name, name);
            old.linkflag = [kind];
        }
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.write(h.as_bytes())?;
        self.write(data)?;
        self.pad(data.len() as u64)
    }

    fn pad(&mut self, len: u64) -> io::Result<()> {
        let rest = (BLOCK as u64 - len % BLOCK as u64) % BLOCK as u64;
        self.write(&[0u8; BLOCK][..rest as usize])
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.out.write_all(data)?;
        self.bytes += data.len() as u64;
        Ok(())
    }
}

fn copy_truncated(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
    for b in &mut field[n..] {
        *b = 0;
    }
}

/// Appends one PAX record: `<len> <key>=<value>\n`, where `<len>` counts the whole record.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let rest = 1 + key.len() + 1 + value.len() + 1; // ' ' key '=' value '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::super::entry::{self, Mtime};
    use super::*;

    fn meta(kind: Kind, name: &[u8]) -> Meta {
        Meta {
            kind,
            name: name.to_vec(),
            link: None,
            size: 0,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: Mtime::default(),
            xattrs: vec![],
            device: None,
        }
    }

    /// Writes `entries` and reads them back with the tar crate.
    fn round_trip(entries: &[(Meta, Vec<u8>)]) -> Vec<(Meta, Vec<u8>)> {
        let mut w = TarWriter::new(Vec::new());
        for (m, data) in entries {
            w.append(m, &mut &data[..]).unwrap();
        }
        let bytes = w.finish().unwrap();
        let mut archive = tar::Archive::new(&bytes[..]);
        let mut out = Vec::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let (m, disagreements) = entry::read(&mut e).unwrap();
            assert!(disagreements.is_empty(), "{disagreements:?}");
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            out.push((m, data));
        }
        out
    }

    #[test]
    fn odd_values_survive_a_round_trip() {
        let long = [b'n'; 300];
        let mut long_name = b"srv/media/".to_vec();
        long_name.extend_from_slice(&long[..120]);
        long_name.extend_from_slice(b"/");
        long_name.extend_from_slice(&long[..200]);
        let mut file = meta(Kind::File, &long_name);
        file.size = 5;
        file.uid = 3_000_000;
        file.gid = 1 << 33;
        file.mtime = Mtime {
            secs: -152391233,
            nanos: 0,
        };
        file.xattrs = vec![(b"security.capability".to_vec(), vec![1, 0, 0, 2, 0, 0xff])];
        let mut link = meta(Kind::Symlink, b"srv/media/bad\xffname");
        link.link = Some([b'x'; 150].to_vec());
        link.mtime = Mtime {
            secs: 1600000000,
            nanos: 123456789,
        };
        let mut future = meta(Kind::Dir, b"srv/media/d");
        future.mtime = Mtime {
            secs: 10413792000,
            nanos: 0,
        };
        let mut dev = meta(Kind::BlockDevice, b"srv/media/sda");
        dev.device = Some((8, 0));
        dev.mode = 0o4666;
        let entries = vec![
            (file, b"hello".to_vec()),
            (link, vec![]),
            (future, vec![]),
            (dev, vec![]),
            (meta(Kind::Fifo, b"srv/media/fifo"), vec![]),
        ];
        assert_eq!(round_trip(&entries), entries);
    }

    #[test]
    fn sizes_past_the_octal_field_use_base_256() {
        let mut h = tar::Header::new_gnu();
        h.set_size(8200 << 20);
        assert_eq!(h.as_gnu().unwrap().size[0] & 0x80, 0x80);
        assert_eq!(h.size().unwrap(), 8200 << 20);
    }

    #[test]
    fn data_shorter_than_the_header_says_is_an_error() {
        let mut m = meta(Kind::File, b"a");
        m.size = 10;
        let mut w = TarWriter::new(Vec::new());
        let err = w.append(&m, &mut &b"short"[..]).unwrap_err();
        assert!(err.to_string().contains("declares 10 bytes"), "{err}");
        // Only the declared bytes are written from a longer source.
        let mut w = TarWriter::new(Vec::new());
        m.size = 3;
        w.append(&m, &mut &b"abcdef"[..]).unwrap();
        assert_eq!(w.bytes, 1024);
    }

    #[test]
    fn pax_record_lengths_count_themselves() {
        for n in [0usize, 1, 80, 89, 90, 95, 990, 995, 9990] {
            let mut out = Vec::new();
            pax_record(&mut out, b"k", &vec![b'v'; n]);
            let text = String::from_utf8(out.clone()).unwrap();
            let len: usize = text.split(' ').next().unwrap().parse().unwrap();
            assert_eq!(len, out.len(), "{n}");
        }
    }
}
