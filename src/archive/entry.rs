//! One tar entry as dockyard sees it: plain, checked values read from whatever the input wrote
//! (ustar, GNU or PAX fields), so every header dockyard writes is built from these values and never
//! copied from its input. Reading also notes where an input's PAX records and header fields
//! disagree: different tar readers would see different archives there.

use std::io::Read;

use tar::EntryType;

/// The kinds of entry an archive may hold; anything else is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    /// A regular file with data.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (target in [`Meta::link`]).
    Symlink,
    /// A hard link to an earlier entry (target in [`Meta::link`]).
    Hardlink,
    /// A named pipe.
    Fifo,
    /// A character device node.
    CharDevice,
    /// A block device node.
    BlockDevice,
}

impl Kind {
    /// Whether this is a device node.
    pub fn is_device(self) -> bool {
        matches!(self, Kind::CharDevice | Kind::BlockDevice)
    }

    /// The tar type flag written for this kind.
    pub fn type_byte(self) -> u8 {
        match self {
            Kind::File => b'0',
            Kind::Hardlink => b'1',
            Kind::Symlink => b'2',
            Kind::CharDevice => b'3',
            Kind::BlockDevice => b'4',
            Kind::Dir => b'5',
            Kind::Fifo => b'6',
        }
    }
}

/// A modification time: seconds since the epoch (negative before 1970) and nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Mtime {
    /// Whole seconds.
    pub secs: i64,
    /// Nanoseconds, below 1e9.
    pub nanos: u32,
}

impl Mtime {
    /// Parses a PAX time: `-?digits(.digits)?`.
    pub fn parse_pax(text: &[u8]) -> Option<Mtime> {
        let text = std::str::from_utf8(text).ok()?;
        let (int, frac) = text.split_once('.').unwrap_or((text, ""));
        let negative = int.starts_with('-');
        let digits = int.strip_prefix('-').unwrap_or(int);
        if digits.is_empty()
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let whole: i64 = digits.parse().ok()?;
        let mut nanos: u32 = 0;
        for (i, b) in frac.bytes().take(9).enumerate() {
            nanos += (b - b'0') as u32 * 10u32.pow(8 - i as u32);
        }
        // -1.5 means 1.5 s before the epoch: -2 s + 0.5 s.
        if negative {
            if nanos == 0 {
                Some(Mtime {
                    secs: -whole,
                    nanos: 0,
                })
            } else {
                Some(Mtime {
                    secs: -whole - 1,
                    nanos: 1_000_000_000 - nanos,
                })
            }
        } else {
            Some(Mtime { secs: whole, nanos })
        }
    }

    /// The PAX form of this time (the inverse of [`Mtime::parse_pax`]).
    pub fn to_pax(self) -> String {
        if self.nanos == 0 {
            return self.secs.to_string();
        }
        let (secs, nanos) = if self.secs < 0 {
            (self.secs + 1, 1_000_000_000 - self.nanos)
        } else {
            (self.secs, self.nanos)
        };
        let sign = if self.secs < 0 && secs == 0 { "-" } else { "" };
        let frac = format!("{nanos:09}");
        format!("{sign}{secs}.{}", frac.trim_end_matches('0'))
    }
}

/// Everything dockyard keeps about an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// What it is.
    pub kind: Kind,
    /// Its name as stored (no trailing slash).
    pub name: Vec<u8>,
    /// Symlink or hard-link target.
    pub link: Option<Vec<u8>>,
    /// Data bytes (files only; 0 for everything else).
    pub size: u64,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Modification time.
    pub mtime: Mtime,
    /// Extended attributes (name, value), as recorded in `SCHILY.xattr.*` PAX records.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Device numbers (device nodes only).
    pub device: Option<(u32, u32)>,
}

/// Set-user-ID and set-group-ID bits.
pub const SETID_BITS: u32 = 0o6000;

impl Meta {
    /// A regular file that would run with its owner's or group's rights.
    pub fn is_setid_file(&self) -> bool {
        self.kind == Kind::File && self.mode & SETID_BITS != 0
    }

    /// Whether it carries an extended attribute that hands out privileges (see
    /// [`is_privileged_xattr`]).
    pub fn has_privileged_xattrs(&self) -> bool {
        self.xattrs
            .iter()
            .any(|(name, _)| is_privileged_xattr(name))
    }
}

/// `security.*` (file capabilities: `security.capability` with `cap_setuid=ep` makes whoever runs
/// the file root; SELinux and IMA labels) and `trusted.*` extended attributes: restored only when
/// asked for, like set-id bits.
pub fn is_privileged_xattr(name: &[u8]) -> bool {
    name.starts_with(b"security.") || name.starts_with(b"trusted.")
}

/// A PAX record that disagrees with the header field it overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disagreement {
    /// The PAX key (`size`, `path`, `linkpath`).
    pub key: &'static str,
    /// What the header field says.
    pub header: String,
    /// What the PAX record says.
    pub pax: String,
}

/// Reads an entry's values (not its data) and notes PAX/header disagreements. Errors name the
/// entry; an unsupported entry type is an error.
pub fn read<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<(Meta, Vec<Disagreement>), String> {
    let name = trim_slash(&entry.path_bytes()).to_vec();
    // Error text only: built when needed (this runs once per entry, millions of times).
    let shown = || show(&name);
    let has_pax = entry
        .pax_extensions()
        .map_err(|e| format!("entry {:?}: unreadable PAX records: {e}", shown()))?
        .is_some();
    let header = entry.header();
    let kind = match header.entry_type() {
        EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => Kind::File,
        EntryType::Directory => Kind::Dir,
        EntryType::Symlink => Kind::Symlink,
        EntryType::Link => Kind::Hardlink,
        EntryType::Fifo => Kind::Fifo,
        EntryType::Char => Kind::CharDevice,
        EntryType::Block => Kind::BlockDevice,
        other => {
            return Err(format!(
                "entry {:?} has unsupported type {:?} (byte {:#04x})",
                shown(),
                other,
                other.as_byte()
            ))
        }
    };
    let bad = |what: &str, e: std::io::Error| format!("entry {:?}: bad {what} field: {e}", shown());
    let mode = header.mode().map_err(|e| bad("mode", e))? & 0o7777;
    let uid = header.uid().map_err(|e| bad("uid", e))?;
    let gid = header.gid().map_err(|e| bad("gid", e))?;
    let header_mtime = header.mtime().map_err(|e| bad("mtime", e))?;
    let header_size = header.size().map_err(|e| bad("size", e))?;
    // The header's own name and link target, to compare with PAX records (only if there are any).
    let (header_path, header_link) = if has_pax {
        (
            trim_slash(&header.path_bytes()).to_vec(),
            header.link_name_bytes().map(|l| l.into_owned()),
        )
    } else {
        (Vec::new(), None)
    };
    let device = match kind {
        Kind::CharDevice | Kind::BlockDevice => Some((
            header
                .device_major()
                .map_err(|e| bad("device major", e))?
                .unwrap_or(0),
            header
                .device_minor()
                .map_err(|e| bad("device minor", e))?
                .unwrap_or(0),
        )),
        _ => None,
    };
    let link = match kind {
        Kind::Symlink | Kind::Hardlink => Some(
            entry
                .link_name_bytes()
                .map(|l| l.into_owned())
                .ok_or_else(|| format!("link {:?} has no target", shown()))?,
        ),
        _ => None,
    };
    let size = if kind == Kind::File { entry.size() } else { 0 };
    let is_sparse = header.entry_type() == EntryType::GNUSparse;
    let data_size = entry.size();

    let mut mtime = Mtime {
        secs: i64::try_from(header_mtime)
            .map_err(|_| format!("entry {:?}: mtime out of range", shown()))?,
        nanos: 0,
    };
    let mut xattrs = Vec::new();
    let mut disagreements = Vec::new();
    if let Some(records) = entry
        .pax_extensions()
        .map_err(|e| format!("entry {:?}: unreadable PAX records: {e}", shown()))?
    {
        for record in records {
            let record = record.map_err(|e| format!("entry {:?}: bad PAX record: {e}", shown()))?;
            let key = record.key_bytes();
            let value = record.value_bytes();
            match key {
                b"mtime" => {
                    mtime = Mtime::parse_pax(value).ok_or_else(|| {
                        format!("entry {:?}: bad PAX mtime {:?}", shown(), show(value))
                    })?;
                }
                b"size" if !is_sparse && data_size != header_size => {
                    disagreements.push(Disagreement {
                        key: "size",
                        header: header_size.to_string(),
                        pax: show(value),
                    });
                }
                b"path" if trim_slash(value) != header_path => {
                    disagreements.push(Disagreement {
                        key: "path",
                        header: show(&header_path),
                        pax: show(value),
                    });
                }
                b"linkpath" if Some(value) != header_link.as_deref() => {
                    disagreements.push(Disagreement {
                        key: "linkpath",
                        header: show(header_link.as_deref().unwrap_or_default()),
                        pax: show(value),
                    });
                }
                _ => {
                    if let Some(attr) = key.strip_prefix(b"SCHILY.xattr.") {
                        if attr.is_empty() || attr.contains(&0) {
                            return Err(format!("entry {:?}: bad xattr name", shown()));
                        }
                        xattrs.push((attr.to_vec(), value.to_vec()));
                    }
                }
            }
        }
    }
    Ok((
        Meta {
            kind,
            name,
            link,
            size,
            mode,
            uid,
            gid,
            mtime,
            xattrs,
            device,
        },
        disagreements,
    ))
}

/// A name without trailing slashes (directories are written with one).
pub fn trim_slash(name: &[u8]) -> &[u8] {
    let mut n = name;
    while n.len() > 1 && n.ends_with(b"/") {
        n = &n[..n.len() - 1];
    }
    n
}

/// What a restore does with entries that can hand out privileges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Privileges {
    /// Create device nodes (refused by default: a device node in a volume can expose the host's
    /// disks to whoever can open it).
    pub allow_devices: bool,
    /// Keep set-user-ID/set-group-ID bits on files (stripped by default, with a warning).
    pub keep_setid: bool,
    /// Keep `security.*` and `trusted.*` extended attributes, file capabilities among them
    /// (dropped by default, with a warning). Independent of `keep_setid`.
    #[serde(default)]
    pub keep_capabilities: bool,
}

/// The restored path's own metadata, applied to it after the swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct RootMeta {
    /// Permission bits.
    pub mode: u32,
    /// Owner uid.
    pub uid: u64,
    /// Owner gid.
    pub gid: u64,
    /// Modification time, seconds.
    pub mtime: i64,
}

impl RootMeta {
    /// What a path's own entry says of it.
    pub fn of(meta: &Meta) -> RootMeta {
        RootMeta {
            mode: meta.mode,
            uid: meta.uid,
            gid: meta.gid,
            mtime: meta.mtime.secs,
        }
    }
}

/// Bytes of a name shown in messages: a name can be up to a megabyte long (an archive's GNU
/// long name), and every message lands in cron mail, `--json` and notifications.
pub const SHOWN: usize = 200;

/// An entry name for messages and reports: its first [`SHOWN`] bytes, then "…" if there was
/// more (bytes that are not UTF-8 shown as U+FFFD).
pub fn show(name: &[u8]) -> String {
    match name.get(..SHOWN) {
        Some(head) if name.len() > SHOWN => format!("{}…", String::from_utf8_lossy(head)),
        _ => String::from_utf8_lossy(name).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_and_trusted_xattrs_are_the_privileged_ones() {
        for (name, privileged) in [
            (&b"security.capability"[..], true),
            (b"security.selinux", true),
            (b"trusted.overlay.opaque", true),
            (b"user.note", false),
            (b"system.posix_acl_access", false),
            (b"securityx", false),
        ] {
            assert_eq!(is_privileged_xattr(name), privileged, "{name:?}");
        }
    }

    #[test]
    fn pax_times_parse_and_print_both_ways() {
        let cases: &[(&str, i64, u32)] = &[
            ("0", 0, 0),
            ("1600000000.123456789", 1600000000, 123456789),
            ("1600000000.5", 1600000000, 500000000),
            ("-152391233", -152391233, 0),
            ("-1.25", -2, 750000000),
            ("-0.5", -1, 500000000),
            ("10413792000", 10413792000, 0),
        ];
        for (text, secs, nanos) in cases {
            let t = Mtime::parse_pax(text.as_bytes()).unwrap();
            assert_eq!((t.secs, t.nanos), (*secs, *nanos), "{text}");
            assert_eq!(t.to_pax(), *text, "{text}");
        }
        for bad in ["", "-", "1.2.3", "x", "1e9", " 1", "--1"] {
            assert!(Mtime::parse_pax(bad.as_bytes()).is_none(), "{bad}");
        }
    }
}
