//! Listing a remote directory: one `remote.sh list` (find, then one `stat -c '%s %n'` for all it
//! found, or `ls -ln` where stat has no `-c`), its lines read back into names and sizes. Neither
//! reads a file (busybox `wc -c` reads every byte) nor runs a process per file. `stat` comes
//! first because busybox `ls` prints a name it cannot show (not UTF-8, say) as `?`; `ls -ln` is
//! the POSIX way, and its first eight fields are the same in GNU, busybox and BSD `ls` (mode,
//! links, uid, gid, size and a three-field date, in the C locale the script sets). Every name is
//! given as `./NAME`, so a name with spaces stays whole.

use super::super::{deep_folder, listed, DestError, Entry};
use super::SshDir;
use crate::shell;

impl SshDir {
    /// The objects [`Destination::list`](super::super::Destination::list) shows for `prefix`
    /// (already checked).
    pub(super) async fn list_files(&self, prefix: &str) -> Result<Vec<Entry>, DestError> {
        let (action, args) = match deep_folder(prefix) {
            Some(folder) => ("list the remote directory tree", vec![folder]),
            None => ("list the remote directory", vec![]),
        };
        let out = self
            .run(action, &shell::remote("list", self.dir(), &args))
            .await?;
        Ok(out
            .lines()
            .filter_map(parse_line)
            .filter(|e| listed(prefix, &e.name))
            .collect())
    }
}

/// One line of the listing: `stat -c '%s %n'`'s `SIZE ./NAME`, or an `ls -ln` line.
fn parse_line(line: &str) -> Option<Entry> {
    let (first, rest) = line.split_once(' ')?;
    if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
        return parse_ls(line);
    }
    let name = rest.strip_prefix("./").filter(|n| !n.is_empty())?;
    Some(Entry {
        name: name.to_string(),
        size: first.parse().ok()?,
    })
}

/// One line of `ls -ln FILE...`: a regular file's size (the fifth field) and its name (after the
/// eighth, as `./NAME`). `None` for anything else: another kind of file, or the second half of a
/// name that holds a newline.
fn parse_ls(line: &str) -> Option<Entry> {
    let mut rest = line;
    let mut fields = [""; 8];
    for field in &mut fields {
        rest = rest.trim_start_matches(' ');
        let end = rest.find(' ')?;
        *field = &rest[..end];
        rest = &rest[end..];
    }
    let name = rest.trim_start_matches(' ').strip_prefix("./")?;
    if !fields[0].starts_with('-') || name.is_empty() {
        return None;
    }
    Some(Entry {
        name: name.to_string(),
        size: fields[4].parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, size: u64) -> Option<Entry> {
        Some(Entry {
            name: name.into(),
            size,
        })
    }

    #[test]
    fn ls_lines_of_gnu_busybox_and_bsd_read_the_same() {
        let cases = [
            // GNU coreutils, this year and an older one.
            (
                "-rw------- 1 1000 1000 1234 Nov 28 01:02 ./web-1.json",
                entry("web-1.json", 1234),
            ),
            (
                "-rw-------. 1 0 0 77 Nov 28  2024 ./logs/web/a.zst",
                entry("logs/web/a.zst", 77),
            ),
            // busybox pads its columns.
            (
                "-rw-r--r--    1 1000     1000       5368709120 Nov 28 01:02 ./big.tar.zst",
                entry("big.tar.zst", 5 << 30),
            ),
            // BSD and macOS (extended attributes, an ACL).
            (
                "-rw-r--r--@ 1 501  20  0 Nov 28 01:02 ./empty",
                entry("empty", 0),
            ),
            (
                "-rw-r--r--+ 1 501  20  9 Jan  3  2025 ./a b  c",
                entry("a b  c", 9),
            ),
            // A name that starts with spaces or looks like a date keeps them.
            ("-rw------- 1 0 0 3 Nov 28 01:02 ./  x", entry("  x", 3)),
            (
                "-rw------- 1 0 0 3 Nov 28 01:02 ./Nov 28 01:02 ./y",
                entry("Nov 28 01:02 ./y", 3),
            ),
        ];
        for (line, want) in cases {
            assert_eq!(parse_ls(line), want, "{line}");
        }
    }

    #[test]
    fn stat_lines_read_as_size_and_name() {
        assert_eq!(parse_line("1234 ./web-1.json"), entry("web-1.json", 1234));
        assert_eq!(parse_line("0 ./a b  c"), entry("a b  c", 0));
        assert_eq!(
            parse_line("5368709120 ./logs/web/x.zst"),
            entry("logs/web/x.zst", 5 << 30)
        );
        assert_eq!(
            parse_line("-rw------- 1 0 0 3 Nov 28 01:02 ./y"),
            entry("y", 3)
        );
        for line in ["12 web-1.json", "12 ./", " 12 ./x", "12x ./x", "b.json", ""] {
            assert_eq!(parse_line(line), None, "{line:?}");
        }
    }

    #[test]
    fn anything_but_a_regular_file_line_is_left_out() {
        for line in [
            "",
            "total 8",
            "lrwxrwxrwx 1 0 0 11 Nov 28 01:02 ./link -> /etc/passwd",
            "drwx------ 2 0 0 4096 Nov 28 01:02 ./logs",
            // The second line of a name with a newline in it.
            "b.json",
            "-rw------- 1 0 0 x Nov 28 01:02 ./bad-size",
            "-rw------- 1 0 0 3 Nov 28 01:02 no-dot-slash",
            "-rw------- 1 0 0 3 Nov 28 01:02 ./",
        ] {
            assert_eq!(parse_ls(line), None, "{line:?}");
        }
    }
}
