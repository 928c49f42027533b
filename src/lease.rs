//! Container locks every dockyard on an engine sees, whatever host, container or PID namespace
//! it runs in: a lease is a container created on the engine (never started) whose name the
//! engine hands out once. An exclusive lease (a restore) is `dockyard-lock-<container>`; a shared
//! one (a backup, a log run) is `dockyard-share-<container>-<run>`, and each checks for the other
//! after taking its own, so the two never both hold. A lease of a run that is gone (the owner
//! rule) is removed and taken over; the host's `flock` (`lock.rs`) stays the quick first check.

use std::collections::HashMap;

use crate::docker::{ContainerInfo, DockerError, Engine, Helper, OWNER};
use crate::error::Failure;
use crate::owner::{Liveness, Owner};

/// The label naming the container a lease is of (its engine id).
const LEASE_OF: &str = "dockyard.lease.of";
/// The label saying `shared` or `exclusive`.
const LEASE_ACCESS: &str = "dockyard.lease.access";
/// The label saying what the holder does (`restore`, `backup`, ...).
const LEASE_WHAT: &str = "dockyard.lease.what";
/// A lease whose holder cannot be checked (another host, a sibling container) counts as gone
/// after this long.
const FOREIGN_LIMIT_SECS: i64 = 24 * 3600;

/// Leases held on one subject (a container, or a volume it shares with others); each is a
/// [`Helper`] guard, so removed on drop (and by main's clean-up on every way out).
pub struct Lease {
    engine: Engine,
    target: ContainerInfo,
    subject: Subject,
    shared: Option<Helper>,
    exclusive: Option<Helper>,
}

/// What a lease is on.
#[derive(Debug, Clone)]
pub struct Subject {
    /// A key unique on the engine (a container id, a volume's hashed name), in labels and names.
    pub key: String,
    /// What it is, for messages: `container "web"`, `volume "media"`.
    pub label: String,
}

impl Subject {
    /// The container itself.
    pub fn container(c: &ContainerInfo) -> Subject {
        Subject {
            key: c.id.clone(),
            label: format!("container {:?}", c.name),
        }
    }

    /// Every volume and bind mount source of `c`: a volume another container also mounts is
    /// locked with it, so two restores (or a restore and a backup) of one volume through two
    /// containers never overlap.
    pub fn mounts(c: &ContainerInfo) -> Vec<Subject> {
        use sha2::{Digest, Sha256};
        let mut out: Vec<Subject> = c
            .mounts
            .iter()
            // What the container only reads (`/etc/localtime:ro`) no restore writes.
            .filter(|m| m.rw)
            .filter_map(|m| {
                let (kind, id) = match (m.kind.as_str(), &m.volume) {
                    ("volume", Some(name)) => ("volume", name.clone()),
                    ("bind", _) if !m.source.is_empty() => ("bind mount", m.source.clone()),
                    _ => return None,
                };
                let key = hex::encode(Sha256::digest(format!("{kind}\0{id}")))[..24].to_string();
                Some(Subject {
                    key,
                    label: format!("{kind} {id:?}"),
                })
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out.dedup_by(|a, b| a.key == b.key);
        out
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("container", &self.target.name)
            .field("subject", &self.subject.label)
            .field("shared", &self.shared)
            .field("exclusive", &self.exclusive)
            .finish()
    }
}

/// Someone else's lease.
struct Holder {
    id: String,
    access: String,
    what: String,
    owner: Option<Owner>,
}

impl Holder {
    fn gone(&self) -> bool {
        self.owner
            .as_ref()
            .is_some_and(|o| o.liveness(FOREIGN_LIMIT_SECS) == Liveness::Gone)
    }

    fn describe(&self) -> String {
        match &self.owner {
            Some(o) => format!("{} by {}", self.what, o.describe()),
            None => format!("{} by an unknown run", self.what),
        }
    }
}

impl Lease {
    /// Takes a lease on `target` for `what`, or fails with exit code 6 naming the holder.
    pub async fn take(
        engine: &Engine,
        target: &ContainerInfo,
        subject: Subject,
        what: &str,
        exclusive: bool,
    ) -> anyhow::Result<Lease> {
        let mut lease = Lease {
            engine: engine.clone(),
            target: target.clone(),
            subject,
            shared: None,
            exclusive: None,
        };
        if exclusive {
            lease.exclude(what).await?;
        } else {
            lease.share(what).await?;
        }
        Ok(lease)
    }

    /// Also takes the exclusive lease (to finish an interrupted restore found by a backup).
    pub async fn upgrade(&mut self, what: &str) -> anyhow::Result<()> {
        if self.exclusive.is_none() {
            self.exclude(what).await?;
        }
        Ok(())
    }

    /// Gives the exclusive lease back after [`Lease::upgrade`].
    pub async fn downgrade(&mut self) {
        if self.shared.is_some() {
            if let Some(lease) = self.exclusive.take() {
                let _ = lease.remove().await;
            }
        }
    }

    fn short(&self) -> &str {
        &self.subject.key[..self.subject.key.len().min(12)]
    }

    fn labels(&self, access: &str, what: &str) -> HashMap<String, String> {
        HashMap::from([
            (LEASE_OF.to_string(), self.subject.key.clone()),
            (LEASE_ACCESS.to_string(), access.to_string()),
            (LEASE_WHAT.to_string(), what.to_string()),
        ])
    }

    async fn holders(&self) -> Result<Vec<Holder>, DockerError> {
        let mine = [&self.shared, &self.exclusive];
        Ok(self
            .engine
            .leases(LEASE_OF, &self.subject.key)
            .await?
            .into_iter()
            .filter(|(id, _, _)| !mine.iter().any(|m| m.as_ref().map(Helper::id) == Some(id)))
            .map(|(id, _, labels)| Holder {
                id,
                access: labels.get(LEASE_ACCESS).cloned().unwrap_or_default(),
                what: labels.get(LEASE_WHAT).cloned().unwrap_or_default(),
                owner: labels.get(OWNER).and_then(|o| Owner::parse(o)),
            })
            .collect())
    }

    /// Removes `h` if its run is gone (saying so); whether it was.
    async fn clear(&self, h: &Holder) -> Result<bool, DockerError> {
        if !h.gone() {
            return Ok(false);
        }
        tracing::warn!(container = %self.target.name, lease = %h.id, holder = %h.describe(), "removing the lease of a run that is gone");
        self.engine.remove_helper(&h.id).await?;
        Ok(true)
    }

    fn busy(&self, what: &str, h: &Holder) -> anyhow::Error {
        let of = if self.subject.key == self.target.id {
            "it".to_string()
        } else {
            format!("its {}", self.subject.label)
        };
        Failure::busy(format!(
            "container {:?} is busy: another dockyard run is using {of} ({}), so this {what} would interfere; wait for it and run again (lease container {} on the engine)",
            self.target.name,
            h.describe(),
            &h.id[..h.id.len().min(12)]
        ))
        .into()
    }

    async fn share(&mut self, what: &str) -> anyhow::Result<()> {
        let name = format!(
            "dockyard-share-{}-{}-{:08x}",
            self.short(),
            crate::owner::run_id(),
            rand::random::<u32>()
        );
        let lease = self
            .engine
            .create_lease(&name, &self.target, self.labels("shared", what))
            .await?
            .ok_or_else(|| anyhow::anyhow!("a lease named {name} exists already"))?;
        self.shared = Some(lease);
        for h in self.holders().await? {
            if h.access == "exclusive" && !self.clear(&h).await? {
                let err = self.busy(what, &h);
                self.release().await;
                return Err(err);
            }
        }
        Ok(())
    }

    async fn exclude(&mut self, what: &str) -> anyhow::Result<()> {
        let name = format!("dockyard-lock-{}", self.short());
        let mut took_over = false;
        let lease = loop {
            if let Some(lease) = self
                .engine
                .create_lease(&name, &self.target, self.labels("exclusive", what))
                .await?
            {
                break lease;
            }
            let holders = self.holders().await?;
            let Some(h) = holders.iter().find(|h| h.access == "exclusive") else {
                // Released in between: try once more.
                if took_over {
                    return Err(Failure::busy(format!(
                        "container {:?} is busy: its exclusive lease keeps being taken; run again",
                        self.target.name
                    ))
                    .into());
                }
                took_over = true;
                continue;
            };
            if took_over || !self.clear(h).await? {
                return Err(self.busy(what, h));
            }
            took_over = true;
        };
        self.exclusive = Some(lease);
        for h in self.holders().await? {
            if h.access == "shared" && !self.clear(&h).await? {
                let err = self.busy(what, &h);
                if let Some(lease) = self.exclusive.take() {
                    let _ = lease.remove().await;
                }
                return Err(err);
            }
        }
        Ok(())
    }

    async fn release(&mut self) {
        for lease in [self.shared.take(), self.exclusive.take()]
            .into_iter()
            .flatten()
        {
            let _ = lease.remove().await;
        }
    }
}
