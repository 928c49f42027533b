//! Encrypted backups with age (the `age` crate, whose format the `age` command reads): an
//! [`Age`] is the [`Transform`] a backup's stream goes through between compression and hashing,
//! on the host only, so no key, identity or passphrase ever enters a helper container.

pub mod keys;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;

use crate::error::Failure;
use crate::pipeline::transform::{Finish, Transform};
pub use keys::{recipients, IdentityFile, Passphrase, Recipient};

/// What a backup is encrypted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seal {
    /// Public keys: any one of their private keys decrypts.
    Recipients(Vec<Recipient>),
    /// A passphrase (scrypt).
    Passphrase(Passphrase),
}

impl Seal {
    /// What `--encrypt-to` (or `encrypt_to`) and `--passphrase-file` (or `passphrase_file`) ask
    /// for: nothing, recipients, or a passphrase; both at once is an error (age encrypts a file to
    /// a passphrase alone).
    pub fn lower(
        encrypt_to: &[String],
        passphrase_file: Option<&Path>,
    ) -> Result<Option<Seal>, Failure> {
        match (encrypt_to.is_empty(), passphrase_file) {
            (true, None) => Ok(None),
            (false, None) => Ok(Some(Seal::Recipients(recipients(encrypt_to)?))),
            (true, Some(file)) => Ok(Some(Seal::Passphrase(Passphrase::read(file)?))),
            (false, Some(file)) => Err(Failure::usage(format!(
                "give recipients (--encrypt-to) or a passphrase file ({}), not both: age encrypts to one or the other",
                file.display()
            ))),
        }
    }

    /// What a manifest records about who can read the backup: the recipients' fingerprints, or
    /// `passphrase`; never a key.
    pub fn fingerprints(&self) -> Vec<String> {
        match self {
            Seal::Recipients(r) => r.iter().map(Recipient::fingerprint).collect(),
            Seal::Passphrase(_) => vec!["passphrase".into()],
        }
    }
}

/// What may decrypt a backup: identity files, and a passphrase.
#[derive(Debug, Clone, Default)]
pub struct Unlock {
    /// Age identity files and SSH private keys, tried in turn.
    pub identities: Vec<IdentityFile>,
    /// For a backup encrypted with a passphrase.
    pub passphrase: Option<Passphrase>,
}

impl Unlock {
    /// Whether nothing was given.
    pub fn is_empty(&self) -> bool {
        self.identities.is_empty() && self.passphrase.is_none()
    }

    /// What to encrypt a new backup with so that what opened a backup made for `made_for` (its
    /// manifest's recipients) opens it too: the passphrase for a passphrase backup, else the
    /// public keys of the identity files (a restore's safety backup of an encrypted backup's
    /// target). An error when nothing given yields one: a safety backup is never written plain
    /// in its place.
    pub fn seal_for(&self, made_for: &[String]) -> Result<Seal, Failure> {
        if made_for == ["passphrase"] {
            return self
                .passphrase
                .clone()
                .map(Seal::Passphrase)
                .ok_or_else(|| {
                    Failure::usage(
                        "no passphrase to encrypt the safety backup with; give --passphrase-file",
                    )
                });
        }
        let mut keys = Vec::new();
        for file in &self.identities {
            keys.extend(file.recipients().map_err(Failure::usage)?);
        }
        if keys.is_empty() {
            return Err(Failure::usage(
                "no public key in the identity files given to encrypt the safety backup to",
            ));
        }
        Ok(Seal::Recipients(keys))
    }

    /// The flags that give the same again (file names; never a key), for a command to copy:
    /// empty when nothing was given.
    pub fn flags(&self) -> String {
        let mut out = String::new();
        for f in &self.identities {
            out.push_str(" --identity ");
            out.push_str(&shell_words::quote(&f.0.display().to_string()));
        }
        if let Some(p) = &self.passphrase {
            out.push_str(" --passphrase-file ");
            out.push_str(&shell_words::quote(&p.file().display().to_string()));
        }
        out
    }

    /// What was given, in words, for messages (file names; never a key).
    pub fn describe(&self) -> String {
        let mut tried: Vec<String> = self
            .identities
            .iter()
            .map(|f| f.0.display().to_string())
            .collect();
        if self.passphrase.is_some() {
            tried.push("the passphrase".into());
        }
        if tried.is_empty() {
            "no identity".into()
        } else {
            tried.join(", ")
        }
    }
}

/// The age transform: encrypts to `seal` when writing, decrypts with `unlock` when reading.
#[derive(Debug, Clone)]
pub struct Age {
    /// What a backup is encrypted to (writing).
    pub seal: Option<Seal>,
    /// What decrypts one (reading).
    pub unlock: Unlock,
}

impl Age {
    /// The transform a backup is written through, encrypting to `seal`.
    pub fn sealing(seal: Seal) -> Age {
        Age {
            seal: Some(seal),
            unlock: Unlock::default(),
        }
    }

    /// The transform a backup is read through, decrypting with `unlock`.
    pub fn unlocking(unlock: Unlock) -> Age {
        Age { seal: None, unlock }
    }

    /// What a manifest records about the recipients: their fingerprints (`passphrase` for a
    /// passphrase), never a key.
    pub fn fingerprints(&self) -> Vec<String> {
        self.seal
            .as_ref()
            .map(Seal::fingerprints)
            .unwrap_or_default()
    }

    /// `plain` encrypted whole, for small objects (an encrypted snapshot's data).
    pub fn seal_bytes(&self, plain: &[u8]) -> io::Result<Vec<u8>> {
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut w = self.writer(Box::new(SharedVec(out.clone())))?;
        w.write_all(plain)?;
        w.finish()?;
        let bytes = std::mem::take(&mut *out.lock().unwrap());
        Ok(bytes)
    }

    /// Reads the age header at the start of `stored` and finds the identity (or passphrase) that
    /// opens it, reading no further: so a restore can fail before it touches anything.
    pub fn open_header(&self, stored: impl Read) -> Result<(), Locked> {
        let limited = bounded(stored).map_err(|e| match e.kind() {
            io::ErrorKind::InvalidData => Locked::Damaged(e.to_string()),
            _ => Locked::Io(e),
        })?;
        let decryptor =
            age::Decryptor::new_buffered(BufReader::new(limited)).map_err(|e| match e {
                age::DecryptError::Io(e) if e.kind() == io::ErrorKind::InvalidData => {
                    Locked::Damaged(e.to_string())
                }
                age::DecryptError::Io(e) => Locked::Io(e),
                e => Locked::Damaged(format!("its age header cannot be read: {e}")),
            })?;
        let identities = self.identities(&decryptor).map_err(Locked::NoKey)?;
        let scrypt = decryptor.is_scrypt();
        match decryptor.decrypt(identities.iter().map(|i| i.as_ref())) {
            Ok(_) => Ok(()),
            Err(age::DecryptError::NoMatchingKeys) => Err(Locked::NoKey(format!(
                "no identity given opens it (tried {})",
                self.unlock.describe()
            ))),
            Err(age::DecryptError::DecryptionFailed) if scrypt => Err(Locked::NoKey(
                "the passphrase given does not open it".into(),
            )),
            Err(age::DecryptError::Io(e)) => Err(Locked::Io(e)),
            Err(e) => Err(Locked::Damaged(format!("its age header is damaged: {e}"))),
        }
    }

    /// The identities to try on `decryptor`'s file: the passphrase for a passphrase file, else
    /// every identity file's. The error says what is missing.
    fn identities<R: Read>(
        &self,
        decryptor: &age::Decryptor<R>,
    ) -> Result<Vec<Box<dyn age::Identity>>, String> {
        if decryptor.is_scrypt() {
            return match &self.unlock.passphrase {
                Some(p) => {
                    // A forged header may ask for any amount of scrypt work: at most 2^20
                    // (1 GiB of memory, a few seconds), more than age's own default of about
                    // one second on the machine that wrote it.
                    let mut id = age::scrypt::Identity::new(p.secret());
                    id.set_max_work_factor(MAX_SCRYPT_LOG_N);
                    Ok(vec![Box::new(id)])
                }
                None => Err(
                    "it was encrypted with a passphrase; give it with --passphrase-file (or DOCKYARD_PASSPHRASE_FILE)"
                        .into(),
                ),
            };
        }
        if self.unlock.identities.is_empty() {
            return Err(
                "it was encrypted to public keys; give a matching private key with --identity (or DOCKYARD_IDENTITY_FILE)"
                    .into(),
            );
        }
        // Each file is tried: one that cannot be read is named, and only fails the whole when
        // none can.
        let mut all = Vec::new();
        let mut unusable = Vec::new();
        for file in &self.unlock.identities {
            match file.load() {
                Ok(ids) => all.extend(ids),
                Err(why) => unusable.push(why),
            }
        }
        if all.is_empty() {
            return Err(unusable.join("; "));
        }
        for why in unusable {
            tracing::warn!("an identity file was skipped: {why}");
        }
        Ok(all)
    }
}

/// The largest scrypt work factor (log2 N) a passphrase backup may ask for.
const MAX_SCRYPT_LOG_N: u8 = 20;

/// The most an age header may take: [`keys::MAX_RECIPIENTS`] stanzas of the largest kind (an
/// ssh-rsa one is about a dozen lines) fit. age reads a header line by line, parsing all of it
/// again after each line and without a bound, so a forged header of a million lines would take
/// hours; one over these is refused before age sees it.
const HEADER_LIMIT: u64 = 64 << 10;
const HEADER_LINES: usize = 512;

/// `stored` with its age header read ahead and checked against [`HEADER_LIMIT`] and
/// [`HEADER_LINES`] (what does not start like an age file is left for age to refuse).
fn bounded<R: Read>(stored: R) -> io::Result<impl Read> {
    let mut rest = BufReader::new(stored);
    let mut header = Vec::new();
    for line in 0.. {
        let before = header.len();
        let room = HEADER_LIMIT + 1 - before as u64;
        if (&mut rest).take(room).read_until(b'\n', &mut header)? == 0 {
            break;
        }
        let text = &header[before..];
        if (line == 0 && text != b"age-encryption.org/v1\n") || text.starts_with(b"---") {
            break;
        }
        if header.len() as u64 > HEADER_LIMIT || line >= HEADER_LINES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "its age header is larger than {} KiB or {HEADER_LINES} lines: not one dockyard writes",
                    HEADER_LIMIT >> 10
                ),
            ));
        }
    }
    Ok(io::Cursor::new(header).chain(rest))
}

/// A writer into a shared buffer (the transform owns its output).
struct SharedVec(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for SharedVec {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Why an encrypted archive cannot be opened.
#[derive(Debug)]
pub enum Locked {
    /// No usable identity or passphrase was given (what is missing, in words).
    NoKey(String),
    /// The header is not a sound age header.
    Damaged(String),
    /// Reading the stored bytes failed.
    Io(io::Error),
}

/// age's writer, finished at the end of the stream (its last chunk and tag).
struct AgeWriter(age::stream::StreamWriter<Box<dyn Write + Send>>);

impl Write for AgeWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl Finish for AgeWriter {
    fn finish(self: Box<Self>) -> io::Result<()> {
        let mut out = self.0.finish()?;
        out.flush()
    }
}

impl Transform for Age {
    fn writer(&self, stored: Box<dyn Write + Send>) -> io::Result<Box<dyn Finish>> {
        let encryptor = match &self.seal {
            Some(Seal::Recipients(r)) => {
                let keys: Vec<Box<dyn age::Recipient + Send>> =
                    r.iter().map(Recipient::to_age).collect();
                age::Encryptor::with_recipients(
                    keys.iter().map(|k| k.as_ref() as &dyn age::Recipient),
                )
                .map_err(|e| io::Error::other(format!("cannot encrypt: {e}")))?
            }
            Some(Seal::Passphrase(p)) => age::Encryptor::with_user_passphrase(p.secret()),
            None => return Err(io::Error::other("no recipient to encrypt to")),
        };
        Ok(Box::new(AgeWriter(encryptor.wrap_output(stored)?)))
    }

    fn reader(&self, stored: Box<dyn Read + Send>) -> io::Result<Box<dyn Read + Send>> {
        let limited = bounded(stored)?;
        let decryptor = age::Decryptor::new_buffered(BufReader::with_capacity(128 << 10, limited))
            .map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("not an age file: {e}"))
            })?;
        let identities = self.identities(&decryptor).map_err(io::Error::other)?;
        let plain = decryptor
            .decrypt(identities.iter().map(|i| i.as_ref()))
            .map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => io::Error::other(format!(
                    "no identity given matches it (tried {})",
                    self.unlock.describe()
                )),
                e => io::Error::other(format!("cannot decrypt: {e}")),
            })?;
        Ok(Box::new(plain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    fn round_trip(writer: &Age, reader: &Age, plain: &[u8]) -> io::Result<Vec<u8>> {
        let stored = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut w = writer.writer(Box::new(Shared(stored.clone())))?;
        w.write_all(plain)?;
        w.finish()?;
        let bytes = stored.lock().unwrap().clone();
        assert!(
            !bytes
                .windows(plain.len().min(16))
                .any(|win| win == &plain[..plain.len().min(16)]),
            "plaintext in the stored bytes"
        );
        let mut r = reader.reader(Box::new(io::Cursor::new(bytes)))?;
        let mut out = Vec::new();
        r.read_to_end(&mut out)?;
        Ok(out)
    }

    fn identity_file(dir: &std::path::Path, id: &age::x25519::Identity) -> IdentityFile {
        let path = dir.join("key.txt");
        std::fs::write(
            &path,
            format!("# test\n{}\n", id.to_string().expose_secret()),
        )
        .unwrap();
        IdentityFile(path)
    }

    #[test]
    fn x25519_and_passphrase_round_trip_and_the_wrong_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let id = age::x25519::Identity::generate();
        let to = Recipient::parse(&id.to_public().to_string()).unwrap();
        let plain = b"MARKER-PLAINTEXT zstd frame would be here".repeat(100);
        let seal = Age {
            seal: Some(Seal::Recipients(vec![to])),
            unlock: Unlock::default(),
        };
        let open = Age {
            seal: None,
            unlock: Unlock {
                identities: vec![identity_file(dir.path(), &id)],
                passphrase: None,
            },
        };
        assert_eq!(round_trip(&seal, &open, &plain).unwrap(), plain);
        // Another key: a clear error naming what was tried.
        let other = age::x25519::Identity::generate();
        let other_dir = tempfile::tempdir().unwrap();
        let wrong = Age {
            seal: None,
            unlock: Unlock {
                identities: vec![identity_file(other_dir.path(), &other)],
                passphrase: None,
            },
        };
        let err = round_trip(&seal, &wrong, &plain).unwrap_err().to_string();
        assert!(
            err.contains("no identity given matches it") && err.contains("key.txt"),
            "{err}"
        );

        let file = dir.path().join("pass");
        std::fs::write(&file, "correct horse\n").unwrap();
        let p = Passphrase::read(&file).unwrap();
        assert_eq!(format!("{p:?}"), "Passphrase(<hidden>)");
        let by_pass = Age {
            seal: Some(Seal::Passphrase(p.clone())),
            unlock: Unlock {
                identities: vec![],
                passphrase: Some(p),
            },
        };
        assert_eq!(round_trip(&by_pass, &by_pass, &plain).unwrap(), plain);
        let err = round_trip(&by_pass, &open, &plain).unwrap_err().to_string();
        assert!(err.contains("--passphrase-file"), "{err}");
    }

    #[test]
    fn recipients_are_parsed_from_keys_and_files_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let a = age::x25519::Identity::generate().to_public().to_string();
        let b = age::x25519::Identity::generate().to_public().to_string();
        let file = dir.path().join("recipients");
        std::fs::write(&file, format!("# the NAS key\n{b}\n\n")).unwrap();
        let got = recipients(&[a.clone(), format!("@{}", file.display())]).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].fingerprint().len(), 16);
        assert!(!format!("{got:?}").contains(&a[..20]), "Debug shows a key");
        let err = recipients(&["age1nope".into()]).unwrap_err().to_string();
        assert!(err.contains("not a valid age public key"), "{err}");
        // A rejected value is never echoed: it may be a secret given by mistake.
        let err = recipients(&["hunter2".into()]).unwrap_err().to_string();
        assert!(
            err.contains("not a recipient") && err.contains("@FILE") && !err.contains("hunter2"),
            "{err}"
        );
        std::fs::write(&file, "age1bad\n").unwrap();
        let err = recipients(&[format!("@{}", file.display())])
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1"), "{err}");
        // An identity file given as recipients (age-keygen puts the public key in a comment):
        // named for what it is, no byte of the key shown.
        let id = age::x25519::Identity::generate();
        let secret = id.to_string().expose_secret().to_string();
        std::fs::write(
            &file,
            format!("# public key: {}\n{secret}\n", id.to_public()),
        )
        .unwrap();
        let err = recipients(&[format!("@{}", file.display())])
            .unwrap_err()
            .to_string();
        assert!(err.contains("private key"), "{err}");
        assert!(!err.contains(&secret[15..23]), "{err}");
        let many = vec![a; keys::MAX_RECIPIENTS + 1];
        assert!(recipients(&many)
            .unwrap_err()
            .to_string()
            .contains("at most"));
    }

    #[test]
    fn a_forged_header_that_never_ends_is_refused_in_bounded_time() {
        let mut forged = b"age-encryption.org/v1\n".to_vec();
        while forged.len() < 8 << 20 {
            forged.extend_from_slice(b"-> X25519 AAAA\nAAAA\n");
        }
        let open = Age::unlocking(Unlock::default());
        let started = std::time::Instant::now();
        match open.open_header(io::Cursor::new(forged.clone())) {
            Err(Locked::Damaged(why)) => assert!(why.contains("larger than"), "{why}"),
            other => panic!("{other:?}"),
        }
        let err = open
            .reader(Box::new(io::Cursor::new(forged)))
            .err()
            .expect("refused");
        assert!(err.to_string().contains("larger than"), "{err}");
        // Not a timing test: the bound is what makes it end at all (age re-parses the header
        // after each line), and a debug build takes well under this.
        assert!(started.elapsed() < std::time::Duration::from_secs(60));
    }
}
