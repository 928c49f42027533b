//! `restore --dry-run`: what a restore would add, change and remove, in bounded memory whatever
//! the file count; changes nothing.

use anyhow::{Context, Result};

use super::outcome::{DryRun, PathDiff};
use super::plan::{Filter, Plan};
use super::stage::Backup;
use super::survey::{live_each, occupied_paths};
use crate::archive::listing::{self, Origin};
use crate::destination::DestSpec;
use crate::docker::{ContainerInfo, Engine};
use crate::manifest::SAFETY_TAG;
use crate::settings::RestoreSettings;

/// Says what a restore would add, change and remove, and what it would refuse, strip and save;
/// changes nothing.
#[allow(clippy::too_many_arguments)]
pub(super) async fn dry_run(
    engine: &Engine,
    backup: Backup<'_>,
    target: &ContainerInfo,
    plan: &Plan,
    image: &str,
    s: &RestoreSettings,
    safety_dest: &DestSpec,
    report: &crate::archive::verify::Report,
) -> Result<DryRun> {
    let Backup {
        dest,
        m,
        key,
        chain,
    } = backup;
    let mut report_paths = Vec::new();
    for d in &plan.dirs {
        for p in &d.paths {
            let owned = p.path.clone();
            let mut skip = p.skip.clone();
            skip.extend(p.elsewhere.iter().cloned());
            skip.push(crate::archive::names::LOG_STATE.as_bytes().to_vec());
            // What a restore would take from the archive (`--include`), and which live names it
            // keeps as they are: those the backup left out, or with `--include` everything.
            let include = Filter::new(&s.include, &owned);
            let excluded = Filter::new(&m.exclude, &owned);
            // Bounded memory whatever the file count: the archive's side as hashes, the target
            // streamed past them, the archive read again for the names only if it has some the
            // target lacks.
            let archive_pass = |compare: listing::Compare, added: bool| {
                let (owned, skip, include) = (owned.clone(), skip.clone(), include.clone());
                async move {
                    let visit = move |compare: &mut listing::Compare, name: &[u8], sig| {
                        if !include.takes(name) {
                            return;
                        }
                        if added {
                            compare.added(name)
                        } else {
                            compare.wanted(name, &sig)
                        }
                    };
                    // An incremental backup's tree is its index's (its archive holds only
                    // what changed).
                    if let (false, Some(stored)) = (chain.is_empty(), &m.index) {
                        let compare = key
                            .read_stored(dest, m, stored, move |r| {
                                let mut compare = compare;
                                let text =
                                    std::io::BufReader::new(zstd::stream::read::Decoder::new(r)?);
                                index_each(text, &owned, &skip, |name, sig| {
                                    visit(&mut compare, name, sig)
                                })?;
                                Ok(compare)
                            })
                            .await?;
                        return Ok(Ok(compare));
                    }
                    // The verify pass before this one checked the stored bytes.
                    key.read_start(dest, m, move |r| {
                        let mut compare = compare;
                        listing::each(r, Origin::Archive, &owned, &skip, None, |name, sig| {
                            visit(&mut compare, name, sig)
                        })
                        .map(|_| compare)
                    })
                    .await
                }
            };
            let mut compare = archive_pass(listing::Compare::default(), false)
                .await?
                .with_context(|| format!("list {} in backup {}", p.path, m.id))?;
            compare.wanted_done();
            let merging = !s.include.is_empty();
            let (mut compare, _, _, mut kept) = live_each(
                engine,
                target,
                &p.path,
                skip.clone(),
                image,
                None,
                (compare, include.clone(), excluded.clone(), 0u64),
                |(c, include, excluded, kept), name, sig| {
                    if excluded.takes(name) && !excluded.is_empty() {
                        *kept += 1;
                    } else if include.takes(name) {
                        c.current(name, &sig);
                    } else {
                        *kept += 1;
                    }
                },
            )
            .await?;
            if compare.missing() > 0 {
                compare = archive_pass(compare, true)
                    .await?
                    .with_context(|| format!("list {} in backup {}", p.path, m.id))?;
            }
            let mut diff = compare.finish();
            if merging {
                // A merge deletes nothing: what only the target has stays.
                kept += diff.totals[2];
                diff.removed.clear();
                diff.totals[2] = 0;
            }
            report_paths.push(PathDiff::new(p.path.clone(), diff, kept));
        }
    }
    let safety = if !s.safety_backup {
        "no safety backup (--no-safety-backup)".to_string()
    } else {
        let occupied = occupied_paths(engine, target, plan, image).await?;
        if occupied.is_empty() {
            "no safety backup: the target's paths are empty".to_string()
        } else {
            format!(
                "a safety backup (tag {SAFETY_TAG}) of {} would first be written to {safety_dest}",
                occupied.join(", ")
            )
        }
    };
    Ok(DryRun {
        dry_run: true,
        backup: m.id.clone(),
        into: target.name.clone(),
        paths: report_paths,
        files: plan.files.iter().map(|f| f.path.clone()).collect(),
        safety,
        setid: report.setid.clone(),
        keep_setid: s.privileges.keep_setid,
        privileged_xattrs: report.privileged_xattrs.clone(),
        keep_capabilities: s.privileges.keep_capabilities,
        devices: report.devices.clone(),
    })
}

/// Each entry of `path` an index lists (`text`, decompressed), as the archive listing gives
/// them: its name relative to the path and its signature; names at or below `exclude` left out.
fn index_each(
    text: impl std::io::BufRead,
    path: &str,
    exclude: &[Vec<u8>],
    mut each: impl FnMut(&[u8], listing::Signature),
) -> std::io::Result<()> {
    use crate::archive::entry::Kind;
    use crate::index::{Kind as K, Line, Lines};
    let prefix = crate::archive::names::prefix_for(path);
    let mut lines = Lines::new(text)?;
    let mut inside = false;
    while let Some(line) = lines.next()? {
        let r = match line {
            Line::Path(p) => {
                inside = p == path;
                continue;
            }
            Line::Entry(r) if inside => r,
            Line::Entry(_) => continue,
        };
        let name = r.name();
        let Some(rel) = crate::archive::names::relative(&name, &prefix) else {
            continue;
        };
        if rel.is_empty() || crate::archive::pack::excluded(rel, exclude) {
            continue;
        }
        let kind = match r.k {
            Some(K::Dir) => Kind::Dir,
            Some(K::Symlink) => Kind::Symlink,
            Some(K::Fifo) => Kind::Fifo,
            Some(K::Char) => Kind::CharDevice,
            Some(K::Block) => Kind::BlockDevice,
            _ => Kind::File,
        };
        let sig = listing::Signature {
            kind: kind.type_byte(),
            size: if kind == Kind::File { r.s } else { 0 },
            mtime: r.mt.0,
            mode: r.mode,
            uid: r.uid,
            gid: r.gid,
            link: if kind == Kind::Symlink {
                r.link()
            } else {
                None
            },
        };
        each(rel, sig);
    }
    Ok(())
}
