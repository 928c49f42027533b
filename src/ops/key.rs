//! The key an archive is read with: nothing for a plain backup; for an encrypted one the age
//! transform, whose header is opened with the identities given before any work starts (so a
//! restore without a usable key fails before it touches anything), and the stored bytes' sha256
//! and size checked on the way (the plain side, which `archive::verify` reads, cannot).

use std::io::Read;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use anyhow::Result;

use crate::archive::verify::Expect;
use crate::destination::{DestError, Destination};
use crate::encryption::{Age, Locked, Unlock};
use crate::error::Failure;
use crate::manifest::{Manifest, Stored};
use crate::pipeline::{ArchiveSource, Feed, Transform};

/// How one backup's archive is read: plain, or through age with a key that opens it.
#[derive(Clone, Default)]
pub struct Key(Option<Arc<Age>>);

impl Key {
    /// The key for backup `m` at `dest`: none if it is plain; else the age transform made of
    /// `unlock`, once its header opens with it. No usable identity is a usage error (exit 2)
    /// naming the backup's recipients and what was tried; a damaged header is a verification
    /// failure (exit 5); a destination that cannot be read, its error (exit 4).
    pub async fn open(dest: &dyn Destination, m: &Manifest, unlock: &Unlock) -> Result<Key> {
        Key::open_object(dest, m, unlock, &m.archive).await
    }

    /// As [`Key::open`], with the header of `object` (one of `m`'s, such as its index).
    pub async fn open_object(
        dest: &dyn Destination,
        m: &Manifest,
        unlock: &Unlock,
        object: &str,
    ) -> Result<Key> {
        let Some(encryption) = &m.encryption else {
            return Ok(Key(None));
        };
        let made_for = || {
            if encryption.recipients == ["passphrase"] {
                "a passphrase".to_string()
            } else {
                format!("recipients {}", encryption.recipients.join(", "))
            }
        };
        let age = Arc::new(Age::unlocking(unlock.clone()));
        let opener = age.clone();
        let opened = ArchiveSource::new(dest, object)
            .read_blocking(None, move |r| opener.open_header(r))
            .await?
            .value;
        match opened {
            Ok(()) => Ok(Key(Some(age))),
            Err(Locked::NoKey(why)) => Err(Failure::usage(format!(
                "backup {} at {} is encrypted with age to {}: {why}{}; nothing was changed",
                m.id,
                dest.describe(),
                made_for(),
                given(unlock),
            ))
            .into()),
            Err(Locked::Damaged(why)) => Err(damaged(m, dest, &why)),
            Err(Locked::Io(e)) => Err(damaged(m, dest, &format!("its age header: {e}"))),
        }
    }

    /// Whether the archive is read through age.
    pub fn is_sealed(&self) -> bool {
        self.0.is_some()
    }

    /// What `m` promises about the bytes this key's reads hand on: for an encrypted backup, its
    /// sha256 and size are the stored bytes', checked here, not by the plain side's reader.
    pub fn expect(&self, m: &Manifest) -> Expect {
        Expect {
            sealed: self.is_sealed(),
            ..Expect::of(m)
        }
    }

    /// The archive of `m` at `dest` as a source: through age, its stored bytes hashed, when
    /// sealed.
    pub fn source<'a>(&self, dest: &'a dyn Destination, m: &Manifest) -> ArchiveSource<'a> {
        let source = ArchiveSource::new(dest, &m.archive);
        match &self.0 {
            Some(age) => source
                .with_transform(age.clone() as Arc<dyn Transform>)
                .hashed(),
            None => source,
        }
    }

    /// Streams the (plain) archive of `m` into `work`, which reads all of it, on a blocking
    /// thread; when sealed, checks the stored bytes against the manifest's sha256 and size once
    /// `work` succeeded. A transport failure is the destination's error (exit 4), a mismatch a
    /// verification failure (exit 5).
    pub async fn read<T, E, F>(
        &self,
        dest: &dyn Destination,
        m: &Manifest,
        counted: Option<Arc<AtomicU64>>,
        work: F,
    ) -> Result<Result<T, E>>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnOnce(Box<dyn Read + Send>) -> Result<T, E> + Send + 'static,
    {
        let reading = self.source(dest, m).read_blocking(counted, work).await?;
        if let (Some(sha256), Ok(_)) = (&reading.sha256, &reading.value) {
            stored_match(dest, m, sha256, reading.stored)?;
        }
        Ok(reading.value)
    }

    /// Streams the start of the (plain) archive of `m` into `work`, which may stop early (the
    /// stored bytes are checked by the pass that reads them all).
    pub async fn read_start<T, F>(&self, dest: &dyn Destination, m: &Manifest, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Box<dyn Read + Send>) -> T + Send + 'static,
    {
        Ok(self.source(dest, m).read_blocking(None, work).await?.value)
    }

    /// Streams object `stored` of `m` (its index, its deletion list) into `work`, which reads
    /// all of it, its stored bytes hashed and checked against the record once `work` succeeded;
    /// through age when sealed. A mismatch is a verification failure naming the object.
    pub async fn read_stored<T, F>(
        &self,
        dest: &dyn Destination,
        m: &Manifest,
        stored: &Stored,
        work: F,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Box<dyn Read + Send>) -> std::io::Result<T> + Send + 'static,
    {
        let source = ArchiveSource::new(dest, &stored.object).hashed();
        let source = match &self.0 {
            Some(age) => source.with_transform(age.clone() as Arc<dyn Transform>),
            None => source,
        };
        let reading = source.read_blocking(None, work).await?;
        let value = reading
            .value
            .map_err(|e| damaged(m, dest, &format!("its object {}: {e}", stored.object)))?;
        let sha256 = reading.sha256.unwrap_or_default();
        if sha256 != stored.sha256 || reading.stored != stored.size {
            return Err(damaged(
                m,
                dest,
                &format!(
                    "its object {} does not match its manifest: manifest says sha256 {} and {} bytes, the object has {sha256} and {}",
                    stored.object, stored.sha256, stored.size, reading.stored
                ),
            ));
        }
        Ok(value)
    }

    /// The archive as a feed for the agent's unpack (decrypted on the host when sealed); its
    /// stored bytes' sha256 is checked by the caller against the manifest.
    pub async fn feed(&self, dest: &dyn Destination, m: &Manifest) -> Result<Feed, DestError> {
        self.source(dest, m).feed().await
    }
}

/// Checks stored bytes (their sha256 and count) against manifest `m`: a mismatch is a
/// verification failure naming the backup.
pub fn stored_match(dest: &dyn Destination, m: &Manifest, sha256: &str, size: u64) -> Result<()> {
    if size != m.size || sha256 != m.sha256 {
        return Err(damaged(
            m,
            dest,
            &format!(
                "the stored object does not match its manifest: manifest says sha256 {} and {} bytes, the object has {sha256} and {size}",
                m.sha256, m.size
            ),
        ));
    }
    Ok(())
}

/// What was given to open a backup, for the message when nothing did.
fn given(unlock: &Unlock) -> String {
    let mut prints = Vec::new();
    for file in &unlock.identities {
        if let Ok(keys) = file.recipients() {
            prints.extend(keys.iter().map(|k| k.fingerprint()));
        }
    }
    if prints.is_empty() {
        String::new()
    } else {
        format!(" (the identities given are for {})", prints.join(", "))
    }
}

/// A verification failure of backup `m` at `dest`.
fn damaged(m: &Manifest, dest: &dyn Destination, why: &str) -> anyhow::Error {
    Failure::verify(format!(
        "backup {} at {} failed verification: {why}",
        m.id,
        dest.describe()
    ))
    .into()
}
