//! `dockyard dump BACKUP PATH`: one file of a backup on stdout, for disaster recovery or a
//! single lost document. The archive is checked whole as it streams (the same walk as `verify`);
//! the file's bytes go out as they are read, and a checksum that fails at the end is exit 5.

use anyhow::Result;
use chrono::Utc;

use super::Ctx;
use crate::archive::entry::Kind;
use crate::archive::names::prefix_for;
use crate::archive::verify::check;
use crate::destination::DestSpec;
use crate::encryption::Unlock;
use crate::error::Failure;
use crate::manifest::{self, Store};
use crate::ops::key::Key;

/// Writes file `path` of backup `wanted` (an id, or `latest` of `container`) to stdout.
pub async fn run(
    ctx: &Ctx,
    spec: &DestSpec,
    wanted: &str,
    container: Option<&str>,
    path: &str,
    unlock: &Unlock,
) -> Result<()> {
    let dest = spec.open().await;
    let store = Store::new(dest.clone());
    let select = match (wanted, container) {
        ("latest", Some(c)) => manifest::Select::Container(c),
        ("latest", None) => {
            return Err(Failure::usage(
                "dump latest needs --container NAME (whose newest backup to read)",
            )
            .into())
        }
        (id, _) => manifest::Select::Id(id),
    };
    let catalog = store.load(select).await?;
    let m = catalog
        .select(
            wanted,
            container.unwrap_or_default(),
            &spec.to_string(),
            Utc::now(),
        )?
        .clone();
    let index = m
        .paths
        .iter()
        .enumerate()
        .filter(|(_, p)| path == p.path || path.starts_with(&format!("{}/", p.path)))
        .max_by_key(|(_, p)| p.path.len())
        .map(|(i, _)| i)
        .ok_or_else(|| {
            let paths: Vec<&str> = m.paths.iter().map(|p| p.path.as_str()).collect();
            Failure::usage(format!(
                "backup {} holds no path above {path}; it holds {}",
                m.id,
                paths.join(", ")
            ))
        })?;
    let rel = path[m.paths[index].path.len()..]
        .trim_start_matches('/')
        .as_bytes()
        .to_vec();
    let key = Key::open(dest.as_ref(), &m, unlock).await?;
    // An incremental backup: the file is in its tree if its index says so, and its bytes are
    // in the newest layer of the chain that archived it.
    let layers = match m.is_incremental() {
        false => vec![crate::ops::chain::Layer {
            m: m.clone(),
            key: key.clone(),
        }],
        true => {
            let mut name = prefix_for(&m.paths[index].path).into_bytes();
            if !rel.is_empty() {
                name.push(b'/');
                name.extend_from_slice(&rel);
            }
            if !indexed(dest.as_ref(), &m, &key, name).await? {
                return Err(Failure::usage(format!(
                    "backup {} has no file {path}; `dockyard restore --dry-run` lists what it holds",
                    m.id
                ))
                .into());
            }
            let links = crate::ops::chain::manifests(&store, &m).await?;
            let mut layers = crate::ops::chain::open(dest.as_ref(), links, unlock).await?;
            layers.reverse();
            layers
        }
    };
    let mut read = Ok(None);
    let mut from = m.clone();
    for layer in layers {
        read = dump_from(ctx, dest.as_ref(), &layer.m, &layer.key, index, rel.clone()).await?;
        from = layer.m;
        if !matches!(read, Ok(None)) {
            break;
        }
    }
    let m = from;
    let shown = prefix_for(path);
    match read {
        Ok(Some(Kind::File)) => Ok(()),
        Ok(Some(kind)) => Err(Failure::usage(format!(
            "{path} in backup {} is a {kind:?}, not a file; restore it with `dockyard restore --include '{path}'`",
            m.id
        ))
        .into()),
        Ok(None) => Err(Failure::usage(format!(
            "backup {} has no file {path} (entry {shown:?}); `dockyard restore --dry-run` lists what it holds",
            m.id
        ))
        .into()),
        Err(e) => Err(Failure::verify(format!(
            "backup {} at {} failed verification: {e}; do not trust what was written",
            m.id,
            dest.describe()
        ))
        .into()),
    }
}

/// Whether the index of `m` lists `name` (an archive name).
async fn indexed(
    dest: &dyn crate::destination::Destination,
    m: &manifest::Manifest,
    key: &Key,
    name: Vec<u8>,
) -> Result<bool> {
    let Some(stored) = &m.index else {
        return Ok(false);
    };
    key.read_stored(dest, m, stored, move |r| {
        let text = std::io::BufReader::new(zstd::stream::read::Decoder::new(r)?);
        let mut lines = crate::index::Lines::new(text)?;
        let mut found = false;
        while let Some(line) = lines.next()? {
            if let crate::index::Line::Entry(e) = line {
                found |= e.name() == name;
            }
        }
        Ok(found)
    })
    .await
}

/// Streams file `rel` of path `index` from the archive of `m` to stdout, checking the archive
/// whole: what kind the entry is (`None`: not in this archive), or why the archive failed.
async fn dump_from(
    ctx: &Ctx,
    dest: &dyn crate::destination::Destination,
    m: &manifest::Manifest,
    key: &Key,
    index: usize,
    rel: Vec<u8>,
) -> Result<Result<Option<Kind>, std::io::Error>> {
    let expect = key.expect(m);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let reading = key.read(dest, m, None, move |r| {
        let mut found = None;
        let walked = check(r, &expect, |c, data| {
            if c.index != index || c.rel != rel {
                return Ok(());
            }
            found = Some(c.meta.kind);
            if c.meta.kind != Kind::File {
                return Ok(());
            }
            let mut buf = vec![0u8; 256 << 10];
            loop {
                let n = data.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                if tx.blocking_send(buf[..n].to_vec()).is_err() {
                    // stdout was closed: a normal end.
                    break;
                }
            }
            Ok(())
        });
        walked.map(|_| found)
    });
    let writing = async {
        while let Some(chunk) = rx.recv().await {
            ctx.out.raw(&chunk);
        }
    };
    let (read, ()) = tokio::join!(reading, writing);
    read
}
