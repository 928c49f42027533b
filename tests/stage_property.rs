//! A property test of the stager, restore's only producer of headers for the engine (issue 9,
//! point 7): for tar streams built to be hostile (`..`, absolute names, names through symlinks,
//! PAX records overriding size, path and link target, device nodes, set-id files) and then
//! mutated byte by byte, whatever the stager emits
//! - stays inside the staging directory, names and hard-link targets alike;
//! - holds no device node and no set-id bit (the default policy);
//! - is read the same by a reader that honours PAX and one that ignores it (no parser can be
//!   shown another archive than the one checked), with no PAX record but times and xattrs;
//! - passes `verify` itself.

use std::io::Read;

use dockyard::archive::entry::{Kind, Privileges};
use dockyard::archive::stage::{stage, StageSpec};
use dockyard::archive::verify::verify;
use dockyard::archive::verify::Expect;
use dockyard::archive::writer::TarWriter;
use dockyard::manifest::Manifest;
use proptest::prelude::*;
use sha2::{Digest, Sha256};

mod common;
use common::forge;

const INTO: &str = ".dockyard-restore/new-0";

#[derive(Debug, Clone)]
enum Piece {
    Dir(String),
    File(String, usize, u32),
    Symlink(String, String),
    Hardlink(String, String),
    Device(String),
    Fifo(String),
    Pax(Vec<(String, String)>),
}

fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just("..".to_string()),
        Just(".".to_string()),
        Just(String::new()),
        Just("media".to_string()),
        Just("srv".to_string()),
        Just("l".to_string()),
        Just("étoile".to_string()),
    ]
}

fn name() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            4 => Just("srv/media/".to_string()),
            1 => Just("/".to_string()),
            1 => Just(String::new()),
            1 => Just("srv/mediax/".to_string()),
        ],
        prop::collection::vec(component(), 0..4),
    )
        .prop_map(|(prefix, parts)| format!("{prefix}{}", parts.join("/")))
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        name().prop_map(Piece::Dir),
        (
            name(),
            0usize..1500,
            prop::sample::select(vec![0o644u32, 0o4755, 0o2755, 0o7777])
        )
            .prop_map(|(n, len, mode)| Piece::File(n, len, mode)),
        (name(), name()).prop_map(|(n, t)| Piece::Symlink(n, t)),
        (name(), name()).prop_map(|(n, t)| Piece::Hardlink(n, t)),
        name().prop_map(Piece::Device),
        name().prop_map(Piece::Fifo),
        prop::collection::vec(
            (
                prop::sample::select(vec![
                    "size",
                    "path",
                    "linkpath",
                    "mtime",
                    "uid",
                    "SCHILY.xattr.user.x"
                ]),
                prop_oneof![
                    Just("0".to_string()),
                    Just("512".to_string()),
                    Just("1024".to_string()),
                    Just("srv/media/../../etc/passwd".to_string()),
                    Just("-5.5".to_string()),
                    name()
                ],
            )
                .prop_map(|(k, v)| (k.to_string(), v)),
            1..3
        )
        .prop_map(Piece::Pax),
    ]
}

fn build(pieces: &[Piece]) -> Vec<u8> {
    let mut tar = Vec::new();
    for p in pieces {
        match p {
            Piece::Dir(n) => tar.extend(forge::header(n.as_bytes(), b'5', 0, 0o755)),
            Piece::File(n, len, mode) => {
                tar.extend(forge::file(n.as_bytes(), &vec![b'x'; *len], *mode))
            }
            Piece::Symlink(n, t) | Piece::Hardlink(n, t) => {
                let kind = if matches!(p, Piece::Symlink(..)) {
                    b'2'
                } else {
                    b'1'
                };
                let mut h = forge::header(n.as_bytes(), kind, 0, 0o777);
                let t = t.as_bytes();
                let len = t.len().min(100);
                h[157..157 + len].copy_from_slice(&t[..len]);
                // Recompute the checksum over the new link name.
                h[148..156].copy_from_slice(b"        ");
                let sum: u32 = h.iter().map(|&b| b as u32).sum();
                h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
                tar.extend(h);
            }
            Piece::Device(n) => tar.extend(forge::header(n.as_bytes(), b'4', 0, 0o666)),
            Piece::Fifo(n) => tar.extend(forge::header(n.as_bytes(), b'6', 0, 0o644)),
            Piece::Pax(records) => {
                let r: Vec<(&str, &[u8])> = records
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_bytes()))
                    .collect();
                tar.extend(forge::pax(&r));
            }
        }
    }
    tar.extend_from_slice(&[0u8; 1024]);
    tar
}

/// A reader that ignores PAX records (skipping their data) and honours GNU long names: the view
/// of a tar tool that knows nothing of PAX. Returns (name, type, size) per entry.
fn naive(tar: &[u8]) -> Vec<(Vec<u8>, u8, u64)> {
    let mut out = Vec::new();
    let mut pos = 0;
    let (mut long_name, mut long_link): (Option<Vec<u8>>, Option<Vec<u8>>) = (None, None);
    while pos + 512 <= tar.len() {
        let h = &tar[pos..pos + 512];
        if h.iter().all(|&b| b == 0) {
            break;
        }
        let field = |r: std::ops::Range<usize>| {
            let f = &h[r];
            f[..f.iter().position(|&b| b == 0).unwrap_or(f.len())].to_vec()
        };
        let size_field = &h[124..136];
        let size = if size_field[0] & 0x80 != 0 {
            size_field[1..]
                .iter()
                .fold(0u64, |a, &b| (a << 8) | b as u64)
        } else {
            let t = String::from_utf8_lossy(&field(124..136)).trim().to_string();
            u64::from_str_radix(if t.is_empty() { "0" } else { &t }, 8).unwrap()
        };
        let kind = h[156];
        let data = &tar[pos + 512..pos + 512 + size as usize];
        pos += 512 + size.div_ceil(512) as usize * 512;
        match kind {
            b'L' => long_name = Some(data[..data.len() - 1].to_vec()),
            b'K' => long_link = Some(data[..data.len() - 1].to_vec()),
            b'x' => {
                let text = String::from_utf8_lossy(data);
                for record in text.lines() {
                    let key = record.split_once(' ').unwrap().1.split_once('=').unwrap().0;
                    assert!(
                        key == "mtime" || key.starts_with("SCHILY.xattr."),
                        "the stager wrote a PAX {key:?} record"
                    );
                }
            }
            _ => {
                let name = long_name.take().unwrap_or_else(|| field(0..100));
                let _ = long_link.take();
                out.push((name, kind, size));
            }
        }
    }
    out
}

fn manifest_for(zst: &[u8], tar_bytes: u64, entries: u64, path: &str) -> Manifest {
    serde_json::from_value(serde_json::json!({
        "id": "x-20260101T000000Z-0000", "container": "x", "container_id": "x", "image": "i",
        "image_id": "i", "host": "h",
        "paths": [{"path": path, "mount": {"destination": path, "type": "volume"}}],
        "created": "2026-01-01T00:00:00Z", "tags": [], "tool_version": "0", "size": zst.len(),
        "sha256": hex::encode(Sha256::digest(zst)), "tar_bytes": tar_bytes, "entries": entries,
        "level": 3, "archive": "x-20260101T000000Z-0000.tar.zst"
    }))
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn the_stager_only_emits_safe_canonical_entries(
        pieces in prop::collection::vec(piece(), 1..12),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
    ) {
        let mut tar = build(&pieces);
        for (at, byte) in &flips {
            let i = at.index(tar.len());
            tar[i] ^= byte;
        }
        let zst = zstd::encode_all(&tar[..], 1).unwrap();
        // What a manifest of this (possibly damaged) tar would promise: every pass checks it.
        let entries = tar::Archive::new(&tar[..]).entries().unwrap().take_while(Result::is_ok).count();
        let expect = Expect {
            sealed: false,
            sha256: hex::encode(Sha256::digest(&zst)),
            size: zst.len() as u64,
            tar_bytes: tar.len() as u64,
            entries: entries as u64,
            paths: vec!["/srv/media".into()],
            dumps: vec![],
        };
        let spec = StageSpec {
            path: "/srv/media".into(),
            into: INTO.as_bytes().to_vec(),
            skip: vec![],
            privileges: Privileges::default(),
            root: Kind::Dir,
            include: vec![],
        };
        let mut writer = TarWriter::new(Vec::new());
        let Ok(_staged) = stage(&zst[..], &expect, &spec, &mut writer) else {
            return Ok(()); // refused: nothing reaches the engine
        };
        let out = writer.finish().unwrap();

        // Two readers, one view.
        let mut archive = tar::Archive::new(&out[..]);
        let mut seen = Vec::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path_bytes().into_owned();
            let kind = e.header().entry_type().as_byte();
            let size = e.size();
            let mode = e.header().mode().unwrap();
            prop_assert!(kind != b'3' && kind != b'4', "device node {:?}", name);
            prop_assert!(kind != b'0' || mode & 0o6000 == 0, "set-id file {:?}", name);
            let name_str = String::from_utf8_lossy(&name).into_owned();
            let inside = name.starts_with(format!("{INTO}/").as_bytes());
            prop_assert!(inside, "{} outside the staging directory", name_str);
            if kind == b'1' {
                let target = e.link_name_bytes().unwrap().into_owned();
                prop_assert!(target.starts_with(format!("{INTO}/").as_bytes()), "hard link to {:?}", String::from_utf8_lossy(&target));
            }
            let mut sink = Vec::new();
            e.read_to_end(&mut sink).unwrap();
            prop_assert_eq!(sink.len() as u64, size);
            let trimmed = name.strip_suffix(b"/").unwrap_or(&name).to_vec();
            seen.push((trimmed, kind, size));
        }
        let plain: Vec<_> = naive(&out)
            .into_iter()
            .map(|(n, k, s)| (n.strip_suffix(b"/").unwrap_or(&n).to_vec(), k, s))
            .collect();
        prop_assert_eq!(&plain, &seen);

        // What reaches the engine passes verify, as a path of its own.
        let out_zst = zstd::encode_all(&out[..], 1).unwrap();
        let m = manifest_for(&out_zst, out.len() as u64, seen.len() as u64, &format!("/{INTO}"));
        if let Err(why) = verify(&out_zst[..], &Expect::of(&m)) {
            prop_assert!(false, "verify refuses the stager's output: {}", why);
        }
    }
}
