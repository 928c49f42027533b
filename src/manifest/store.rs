//! The backups at one destination: which objects make up a backup and what they are named, the
//! order they are written in (complete or absent), removing one, listing and reading manifests,
//! and sweeping what killed runs left. The destination below knows only names and bytes.
//!
//! A backup is committed in this order, so a crash at any point leaves either a whole backup or
//! something the sweep removes: the archive is streamed to an upload that is not yet visible; a
//! pending record naming the run is written; the archive is committed; the manifest is written
//! (from then on the backup exists); the pending record is removed. An archive without a manifest
//! is removed by a later sweep once its pending record's run is gone.

use std::sync::Arc;

use super::catalog::{self, Catalog, Select};
use super::names::Object;
use super::Manifest;
use crate::destination::{put_bytes, DestError, Destination, Upload};
use crate::owner::Owner;

/// The backups at one opened destination. Cheap to clone and share: every clone uses the same
/// destination (one S3 client, one SSH connection).
#[derive(Clone)]
pub struct Store {
    dest: Arc<dyn Destination>,
}

impl Store {
    /// The store over `dest`, which is opened once and shared from then on.
    pub fn new(dest: Arc<dyn Destination>) -> Store {
        Store { dest }
    }

    /// The destination, for streaming archives in and out.
    pub fn dest(&self) -> &Arc<dyn Destination> {
        &self.dest
    }

    /// The destination as the operator would recognise it, for messages.
    pub fn describe(&self) -> String {
        self.dest.describe()
    }

    /// The ids of the backups whose manifest is there, from one listing (nothing is read).
    pub async fn manifests(&self) -> Result<Vec<String>, DestError> {
        let listed = self.dest.list("").await?;
        Ok(manifest_ids(listed.iter().map(|e| e.name.as_str())))
    }

    /// Reads the manifests `select` picks (see [`Select`]), each checked before it is trusted. A
    /// destination that is not there at all is an error that says so, not an empty answer.
    pub async fn load(&self, select: Select<'_>) -> Result<Catalog, DestError> {
        let listed = self.dest.list("").await?;
        if listed.is_empty() && !self.dest.exists().await? {
            return Err(DestError::Unusable {
                dest: self.dest.describe(),
                message: "it does not exist: nothing was ever backed up here (a typo in the path?)"
                    .into(),
            });
        }
        let ids = manifest_ids(listed.iter().map(|e| e.name.as_str()));
        catalog::load(self.dest.as_ref(), ids, select).await
    }

    /// Reads the manifests of `ids` (known to be there, e.g. from [`Store::manifests`]) without
    /// listing the destination again, each checked as [`Store::load`] checks them.
    pub async fn read(&self, ids: &[String]) -> Result<Catalog, DestError> {
        catalog::load(self.dest.as_ref(), ids.to_vec(), Select::All).await
    }

    /// Starts backup `id`: its object names are fixed from here; nothing is written yet.
    pub fn begin(&self, id: &str) -> Draft {
        Draft {
            store: self.clone(),
            id: id.to_string(),
            small: Vec::new(),
            uploads: Vec::new(),
        }
    }

    /// Removes backup `id`: the manifest first (from then on it is not listed, even if the rest
    /// fails), then the archive. Removing what is not there (any more) is no error.
    pub async fn remove(&self, id: &str) -> Result<(), DestError> {
        for object in Object::COMMITTED {
            self.dest.delete(&object.name(id)).await?;
        }
        Ok(())
    }

    /// Removes what killed runs left: the destination's temp files and unfinished uploads, then
    /// archives whose manifest was never written and pending records, once their run is gone.
    /// Returns what it removed.
    pub async fn sweep(&self) -> Result<Vec<String>, DestError> {
        let mut removed = self.dest.remove_stale().await?;
        removed.extend(super::sweep::sweep(self.dest.as_ref()).await?);
        Ok(removed)
    }
}

/// The ids of the manifests among `names`.
fn manifest_ids<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    names
        .filter_map(Object::parse)
        .filter(|(_, object)| *object == Object::Manifest)
        .map(|(id, _)| id.to_string())
        .collect()
}

/// A backup being written: nothing of it is visible until [`Draft::commit`].
pub struct Draft {
    store: Store,
    id: String,
    /// Small objects written whole beside the archive at the commit.
    small: Vec<(Object, Vec<u8>)>,
    /// Objects streamed beside the archive (its index, a deletion list), committed with it.
    uploads: Vec<Box<dyn Upload>>,
}

impl Draft {
    /// The backup's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The name of one of the backup's objects (the archive to stream into: [`Object::Archive`]).
    pub fn name(&self, object: Object) -> String {
        object.name(&self.id)
    }

    /// Adds a small object (an encrypted snapshot's data) that [`Draft::commit`] writes after
    /// the archive and before the manifest.
    pub fn attach(&mut self, object: Object, bytes: Vec<u8>) {
        self.small.push((object, bytes));
    }

    /// Adds an object streamed beside the archive (an upload not yet committed: the index, a
    /// deletion list) that [`Draft::commit`] commits after the archive.
    pub fn attach_upload(&mut self, upload: Box<dyn Upload>) {
        self.uploads.push(upload);
    }

    /// Gives the backup up: the objects attached so far are aborted (never committed).
    pub async fn abort(mut self) {
        for upload in std::mem::take(&mut self.uploads) {
            upload.abort().await;
        }
    }

    /// Makes the backup visible, whole: writes the pending record, commits `archive` (an upload
    /// of the archive object, streamed and not yet committed) and writes the attached objects,
    /// writes `manifest`, removes the record. `hold` is kept until the manifest is written and dropped before any clean-up (the
    /// caller's critical section: a signal then waits, so a stopped run leaves a whole backup).
    /// If any step fails, the archive is deleted and the record removed, and the error returned.
    pub async fn commit<G: Send>(
        mut self,
        archive: Box<dyn Upload>,
        manifest: &Manifest,
        hold: G,
    ) -> Result<(), DestError> {
        let dest = self.store.dest.as_ref();
        let text = serde_json::to_vec_pretty(manifest).expect("manifest serialises");
        let mut committed = match self.mark_pending().await {
            Ok(()) => archive.commit().await.map(|_| ()),
            Err(e) => {
                archive.abort().await;
                Err(e)
            }
        };
        for upload in std::mem::take(&mut self.uploads) {
            match &committed {
                Ok(()) => committed = upload.commit().await.map(|_| ()),
                Err(_) => upload.abort().await,
            }
        }
        if committed.is_ok() {
            // Tests kill a run here: its data committed, no manifest yet.
            crate::fault::point("data-committed").await;
        }
        for (object, bytes) in std::mem::take(&mut self.small) {
            if committed.is_ok() {
                committed = put_bytes(dest, &self.name(object), bytes).await.map(|_| ());
            }
        }
        let stored = match committed {
            Ok(_) => put_bytes(dest, &self.name(Object::Manifest), text).await,
            Err(e) => Err(e),
        };
        drop(hold);
        if let Err(e) = stored {
            // Without its manifest the archive is invisible; do not leave it taking space.
            for object in Object::DATA {
                let _ = dest.delete(&self.name(object)).await;
            }
            self.clear_pending().await;
            return Err(e);
        }
        self.clear_pending().await;
        Ok(())
    }

    /// Records that this process writes the backup (its owner text), so a sweep can tell a live
    /// run's archive from a dead one's.
    async fn mark_pending(&self) -> Result<(), DestError> {
        let owner = Owner::current().to_string();
        put_bytes(
            self.store.dest.as_ref(),
            &self.name(Object::Pending),
            owner.into_bytes(),
        )
        .await
        .map(|_| ())
    }

    /// Removes the pending record (the manifest is written, or the backup was abandoned).
    async fn clear_pending(&self) {
        let id = &self.id;
        if let Err(e) = self.store.dest.delete(&self.name(Object::Pending)).await {
            tracing::warn!(error = %e, "could not remove the pending record of {id}; the next run will");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destination::memory::Memory;
    use crate::manifest::sample;

    fn store(dest: &Memory) -> Store {
        Store::new(Arc::new(dest.clone()))
    }

    async fn archive(dest: &Memory, draft: &Draft) -> Box<dyn Upload> {
        let mut up = dest.put(&draft.name(Object::Archive)).await.unwrap();
        up.write(bytes::Bytes::from_static(b"zstd")).await.unwrap();
        up
    }

    #[tokio::test]
    async fn a_commit_writes_the_record_then_the_archive_then_the_manifest() {
        let dest = Memory::default();
        let draft = store(&dest).begin("web-1");
        let up = archive(&dest, &draft).await;
        assert!(
            dest.names().is_empty(),
            "nothing is visible before the commit"
        );
        let m = sample("web-1", "web", 5);
        draft.commit(up, &m, ()).await.unwrap();
        assert_eq!(
            dest.log(),
            [
                "put web-1.pending",
                "put web-1.tar.zst",
                "put web-1.json",
                "delete web-1.pending"
            ]
        );
        assert_eq!(dest.names(), ["web-1.json", "web-1.tar.zst"]);
        let text = crate::destination::get_at_most(&dest, "web-1.json", 1 << 20)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(serde_json::from_slice::<Manifest>(&text).unwrap(), m);
        assert_eq!(store(&dest).manifests().await.unwrap(), ["web-1"]);
    }

    #[tokio::test]
    async fn a_commit_that_fails_leaves_nothing_and_releases_the_hold_first() {
        for failing in ["web-1.json", "web-1.tar.zst", "web-1.pending"] {
            let dest = Memory::default();
            dest.fail_commit(failing);
            let draft = store(&dest).begin("web-1");
            let up = archive(&dest, &draft).await;
            let held = std::sync::Arc::new(());
            let err = draft
                .commit(up, &sample("web-1", "web", 5), held.clone())
                .await
                .unwrap_err();
            assert!(err.to_string().contains(failing), "{err}");
            assert_eq!(std::sync::Arc::strong_count(&held), 1);
            assert!(dest.names().is_empty(), "{failing}: {:?}", dest.names());
        }
    }

    #[tokio::test]
    async fn remove_takes_the_manifest_first_and_what_is_gone_is_no_error() {
        let dest = Memory::with(&[("a.json", "{}"), ("a.tar.zst", "z"), ("b.json", "{}")]);
        let s = store(&dest);
        s.remove("a").await.unwrap();
        s.remove("b").await.unwrap();
        s.remove("nothing").await.unwrap();
        assert!(dest.names().is_empty());
        assert_eq!(
            &dest.log()[..2],
            ["delete a.json".to_string(), "delete a.tar.zst".to_string()]
        );
    }

    #[tokio::test]
    async fn the_sweep_removes_a_dead_runs_archive_and_keeps_a_live_ones() {
        let mut dead = Owner::current();
        dead.pid = u32::MAX - 3;
        let me = Owner::current().to_string();
        let dead = dead.to_string();
        let dest = Memory::with(&[
            ("dead.tar.zst", "z"),
            ("dead.pending", &dead),
            ("live.tar.zst", "z"),
            ("live.pending", &me),
            ("done.tar.zst", "z"),
            ("done.json", "{}"),
            ("web-20200101T000000Z-0001.tar.zst", "z"),
            ("logs/web/x.tar.zst", "z"),
        ]);
        let removed = store(&dest).sweep().await.unwrap();
        assert_eq!(
            removed,
            ["dead.tar.zst", "web-20200101T000000Z-0001.tar.zst"]
        );
        assert_eq!(
            dest.names(),
            [
                "done.json",
                "done.tar.zst",
                "live.pending",
                "live.tar.zst",
                "logs/web/x.tar.zst"
            ]
        );
    }

    #[tokio::test]
    async fn load_reads_the_manifests_the_names_pick() {
        let (web, db) = ("web-20261128T010203Z-0001", "db-20261128T010203Z-0002");
        let text = |id: &str, container: &str| {
            let mut m = sample(id, container, 5);
            m.paths = vec![crate::manifest::PathRecord {
                path: "/srv".into(),
                mount: crate::manifest::MountRecord {
                    destination: "/srv".into(),
                    kind: "volume".into(),
                    volume: Some("v".into()),
                },
            }];
            serde_json::to_string(&m).unwrap()
        };
        let (web_json, db_json) = (text(web, "web"), text(db, "db"));
        let dest = Memory::with(&[
            (&format!("{web}.json"), &web_json),
            (&format!("{web}.tar.zst"), "z"),
            (&format!("{db}.json"), &db_json),
            ("notes.txt", "x"),
        ]);
        let catalog = store(&dest).load(Select::Container("web")).await.unwrap();
        let ids: Vec<&str> = catalog.manifests.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, [web]);
        assert_eq!(catalog.others.get("db"), Some(&1));
        assert!(catalog.rejected.is_empty());
        let mut all = store(&dest).manifests().await.unwrap();
        all.sort();
        assert_eq!(all, [db, web]);
    }
}
