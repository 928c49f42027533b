//! Archives written by an attacker who can write the destination: any tar bytes, compressed, with
//! a manifest whose checksums match, so dockyard has only its own checks to stop them.
#![allow(dead_code)]

use std::path::Path;

use sha2::{Digest, Sha256};

/// One raw 512-byte header: name, type flag, size field, mode, uid/gid 0, checksum computed.
pub fn header(name: &[u8], kind: u8, size: u64, mode: u32) -> Vec<u8> {
    let mut h = vec![0u8; 512];
    h[..name.len()].copy_from_slice(name);
    let octal = |field: &mut [u8], v: u64| {
        let s = format!("{:0width$o}\0", v, width = field.len() - 1);
        field.copy_from_slice(s.as_bytes());
    };
    octal(&mut h[100..108], mode as u64);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], 1_600_000_000);
    h[156] = kind;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    h
}

/// A PAX extended header ('x') carrying `records`, for the entry after it.
pub fn pax(records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (k, v) in records {
        let rest = 1 + k.len() + 1 + v.len() + 1;
        let mut len = rest + 1;
        while len != rest + len.to_string().len() {
            len = rest + len.to_string().len();
        }
        body.extend_from_slice(format!("{len} {k}=").as_bytes());
        body.extend_from_slice(v);
        body.push(b'\n');
    }
    let mut out = header(b"././@PaxHeader", b'x', body.len() as u64, 0o644);
    out.extend_from_slice(&body);
    pad(&mut out);
    out
}

/// Pads `tar` to a whole number of 512-byte blocks.
pub fn pad(tar: &mut Vec<u8>) {
    while !tar.len().is_multiple_of(512) {
        tar.push(0);
    }
}

/// A regular file entry with its data.
pub fn file(name: &[u8], data: &[u8], mode: u32) -> Vec<u8> {
    let mut out = header(name, b'0', data.len() as u64, mode);
    out.extend_from_slice(data);
    pad(&mut out);
    out
}

/// Writes `tar` (end blocks appended) as `<id>.tar.zst` and a matching manifest for container
/// `container` with `paths` (each a volume at that path) into the local destination `dest`.
pub fn write_backup(dest: &Path, id: &str, container: &str, paths: &[&str], tar: Vec<u8>) {
    write_backup_at(dest, id, container, paths, tar, chrono::Utc::now(), &[]);
}

/// [`write_backup`] dated `created`, with `tags`.
pub fn write_backup_at(
    dest: &Path,
    id: &str,
    container: &str,
    paths: &[&str],
    mut tar: Vec<u8>,
    created: chrono::DateTime<chrono::Utc>,
    tags: &[&str],
) {
    tar.extend_from_slice(&[0u8; 1024]);
    // What a tar reader sees (a PAX size honoured), as an attacker would write it.
    let entries = tar::Archive::new(&tar[..])
        .entries()
        .map(|e| e.count())
        .unwrap_or(0);
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    std::fs::create_dir_all(dest).unwrap();
    std::fs::write(dest.join(format!("{id}.tar.zst")), &zst).unwrap();
    let paths: Vec<serde_json::Value> = paths
        .iter()
        .map(|p| serde_json::json!({"path": p, "mount": {"destination": p, "type": "volume"}}))
        .collect();
    let m = serde_json::json!({
        "id": id, "container": container, "container_id": "forged", "image": "i",
        "image_id": "sha256:i", "host": "attacker", "paths": paths,
        "created": created.to_rfc3339(), "tags": tags, "tool_version": "0.1.0",
        "size": zst.len(), "sha256": hex::encode(Sha256::digest(&zst)),
        "tar_bytes": tar.len(), "entries": entries, "level": 3, "archive": format!("{id}.tar.zst"),
    });
    std::fs::write(
        dest.join(format!("{id}.json")),
        serde_json::to_vec_pretty(&m).unwrap(),
    )
    .unwrap();
}

/// A symlink entry `name` -> `target`.
pub fn symlink(name: &[u8], target: &[u8]) -> Vec<u8> {
    let mut h = header(name, b'2', 0, 0o777);
    h[157..157 + target.len()].copy_from_slice(target);
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// [`write_backup`] for a tar too large to hold: `write` produces it into a stream that is
/// compressed and hashed on the way to the destination; the manifest claims `entries` entries.
pub fn write_streamed_backup(
    dest: &Path,
    id: &str,
    container: &str,
    paths: &[&str],
    entries: u64,
    write: impl FnOnce(&mut dyn std::io::Write),
) {
    use std::io::Write;
    /// Hashes and counts what passes through to the file.
    struct Hashing {
        file: std::fs::File,
        sha: Sha256,
        bytes: u64,
    }
    impl Write for Hashing {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = self.file.write(buf)?;
            self.sha.update(&buf[..n]);
            self.bytes += n as u64;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.file.flush()
        }
    }
    /// Counts the tar bytes written into the encoder.
    struct Counting<W: Write>(W, u64);
    impl<W: Write> Write for Counting<W> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = self.0.write(buf)?;
            self.1 += n as u64;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.0.flush()
        }
    }
    std::fs::create_dir_all(dest).unwrap();
    let file = std::fs::File::create(dest.join(format!("{id}.tar.zst"))).unwrap();
    let hashing = Hashing {
        file,
        sha: Sha256::new(),
        bytes: 0,
    };
    let mut tar = Counting(zstd::Encoder::new(hashing, 1).unwrap(), 0);
    write(&mut tar);
    tar.write_all(&[0u8; 1024]).unwrap();
    let tar_bytes = tar.1;
    let hashing = tar.0.finish().unwrap();
    let paths: Vec<serde_json::Value> = paths
        .iter()
        .map(|p| serde_json::json!({"path": p, "mount": {"destination": p, "type": "volume"}}))
        .collect();
    let m = serde_json::json!({
        "id": id, "container": container, "container_id": "forged", "image": "i",
        "image_id": "sha256:i", "host": "attacker", "paths": paths,
        "created": chrono::Utc::now().to_rfc3339(), "tags": [], "tool_version": "0.1.0",
        "size": hashing.bytes, "sha256": hex::encode(hashing.sha.finalize()),
        "tar_bytes": tar_bytes, "entries": entries, "level": 1, "archive": format!("{id}.tar.zst"),
    });
    std::fs::write(
        dest.join(format!("{id}.json")),
        serde_json::to_vec_pretty(&m).unwrap(),
    )
    .unwrap();
}
