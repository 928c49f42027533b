//! Where the host keeps what the agent sends beside the archive (the file index, a deletion
//! list) until the archive is whole and they can be stored: in memory up to 8 MiB, then in an
//! unnamed temporary file (tens of bytes a file backed up, never the data itself).

use std::io::{self, Read, Seek, Write};

use base64::Engine as _;

/// Kept in memory up to this, then in a temporary file.
const IN_MEMORY: usize = 8 << 20;

/// The most a spool takes (a helper that sends more is refused, not stored).
pub const MAX: u64 = 4 << 30;

/// Bytes received in pieces.
pub struct Spool {
    file: tempfile::SpooledTempFile,
    /// Bytes held.
    pub bytes: u64,
    failed: Option<String>,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Spool({} bytes)", self.bytes)
    }
}

impl Default for Spool {
    fn default() -> Spool {
        Spool {
            file: tempfile::SpooledTempFile::new(IN_MEMORY),
            bytes: 0,
            failed: None,
        }
    }
}

impl Spool {
    /// Takes the next piece, as the agent sends it (base64).
    pub fn push_base64(&mut self, text: &str) {
        if self.failed.is_some() {
            return;
        }
        let piece = match base64::engine::general_purpose::STANDARD.decode(text) {
            Ok(p) => p,
            Err(e) => {
                self.failed = Some(format!("a piece that is not base64: {e}"));
                return;
            }
        };
        self.bytes += piece.len() as u64;
        if self.bytes > MAX {
            self.failed = Some(format!("over {MAX} bytes"));
            return;
        }
        if let Err(e) = self.file.write_all(&piece) {
            self.failed = Some(format!("cannot keep it: {e}"));
        }
    }

    /// What it holds so far, from its start (for a check before it is sent on).
    pub fn reader(&mut self) -> io::Result<&mut (impl Read + Send)> {
        if let Some(why) = &self.failed {
            return Err(io::Error::other(why.clone()));
        }
        self.file.rewind()?;
        Ok(&mut self.file)
    }

    /// Everything received, from its start; an error if a piece was refused or lost.
    pub fn into_reader(mut self) -> io::Result<impl Read + Send> {
        if let Some(why) = self.failed {
            return Err(io::Error::other(why));
        }
        self.file.rewind()?;
        Ok(self.file)
    }
}

impl Write for Spool {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.bytes += data.len() as u64;
        if self.bytes > MAX {
            return Err(io::Error::other(format!("over {MAX} bytes")));
        }
        self.file.write(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_come_back_whole_and_a_bad_piece_fails_the_spool() {
        let mut s = Spool::default();
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        s.push_base64(&b64(b"hello "));
        s.push_base64(&b64(&vec![7u8; IN_MEMORY]));
        let mut back = Vec::new();
        s.into_reader().unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(&back[..6], b"hello ");
        assert_eq!(back.len(), 6 + IN_MEMORY);
        let mut s = Spool::default();
        s.push_base64("%%%");
        assert!(s.into_reader().is_err());
    }
}
