//! What a load reads on its standard input around a dump's bytes. PostgreSQL: psql's restricted
//! mode first, under a key of this run, so a forged dump's `\!`, `\connect` or `\copy` is refused
//! (pg_dump's own `\restrict KEY` line, which would end in an error there, and its closing
//! `\unrestrict KEY` are left out). MySQL and MariaDB: a last statement whose output says the
//! client read the whole dump, so a load cut short at a statement's end is undone, not kept.

use std::io::Read;

/// The longest line start looked at for pg_dump's own `\restrict` lines.
const LOOK: usize = 160;

/// The line a MySQL load prints last when it read the whole dump (its script checks it).
pub const MYSQL_DONE: &str = "dockyard-load-complete";

/// The bytes around a dump's on a load's standard input.
pub struct Framing {
    /// `\restrict` under this key first (PostgreSQL).
    restrict: Option<String>,
    /// A MySQL load: the completion statement last.
    mysql: bool,
    /// The start of the current line, held until it is known not to be pg_dump's.
    line: Vec<u8>,
    /// Past [`LOOK`] bytes of the current line: the rest passes as it comes.
    passing: bool,
    /// pg_dump's own key, once its `\restrict` line went by.
    dump_key: Option<Vec<u8>>,
    /// A line other than a comment or a blank one went by: pg_dump's `\restrict` comes before
    /// any, so no later line is taken for it (a COPY row could read like one).
    statements: bool,
}

impl Framing {
    /// The framing for a load of `kind`.
    pub fn for_kind(kind: &super::DumpKind) -> Framing {
        Framing {
            restrict: matches!(kind, super::DumpKind::Postgres { .. }).then(random_key),
            mysql: matches!(kind, super::DumpKind::Mysql { .. }),
            line: Vec::new(),
            passing: false,
            dump_key: None,
            statements: false,
        }
    }

    /// What goes before the dump.
    pub fn start(&self) -> Vec<u8> {
        match &self.restrict {
            Some(key) => format!("\\restrict {key}\n").into_bytes(),
            None => Vec::new(),
        }
    }

    /// The dump's next bytes, as the load reads them.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.restrict.is_none() {
            return chunk.to_vec();
        }
        let mut out = Vec::with_capacity(chunk.len() + LOOK);
        let mut rest = chunk;
        while !rest.is_empty() {
            let newline = rest.iter().position(|&b| b == b'\n');
            let (piece, more) = match newline {
                Some(i) => (&rest[..=i], &rest[i + 1..]),
                None => (rest, &[][..]),
            };
            rest = more;
            if self.passing {
                out.extend_from_slice(piece);
            } else {
                self.line.extend_from_slice(piece);
                if self.line.len() > LOOK {
                    out.append(&mut self.line);
                    self.passing = true;
                    self.statements = true;
                } else if newline.is_some() {
                    self.end_line(&mut out);
                }
            }
            if newline.is_some() {
                self.passing = false;
            }
        }
        out
    }

    /// What goes after the dump; `whole`: it was read whole and matched its manifest.
    pub fn end(&mut self, whole: bool) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.line);
        if whole && self.mysql {
            out.extend_from_slice(format!("\nSELECT '{MYSQL_DONE}';\n").as_bytes());
        }
        out
    }

    /// A whole line of at most [`LOOK`] bytes: out, unless it is pg_dump's `\restrict KEY`
    /// (the first) or the `\unrestrict` of that key.
    fn end_line(&mut self, out: &mut Vec<u8>) {
        let line = std::mem::take(&mut self.line);
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if self.dump_key.is_none() && !self.statements {
            if let Some(key) = meta_key(text, b"\\restrict ") {
                self.dump_key = Some(key.to_vec());
                return;
            }
        }
        if !text.is_empty() && !text.starts_with(b"--") {
            self.statements = true;
        }
        if let (Some(key), Some(mine)) = (meta_key(text, b"\\unrestrict "), &self.dump_key) {
            if key == mine.as_slice() {
                return;
            }
        }
        out.extend_from_slice(&line);
    }
}

/// The key of `line` if it is `command` and one key of letters and digits.
fn meta_key<'a>(line: &'a [u8], command: &[u8]) -> Option<&'a [u8]> {
    let key = line.strip_prefix(command)?;
    (!key.is_empty() && key.iter().all(u8::is_ascii_alphanumeric)).then_some(key)
}

/// 32 hex digits from the system's random source.
fn random_key() -> String {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("/dev/urandom is readable");
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dumps::DumpKind;

    fn framed(kind: &DumpKind, dump: &[u8], chunk: usize, whole: bool) -> (Framing, Vec<u8>) {
        let mut f = Framing::for_kind(kind);
        let mut out = f.start();
        for c in dump.chunks(chunk) {
            out.extend(f.feed(c));
        }
        out.extend(f.end(whole));
        (f, out)
    }

    #[test]
    fn postgres_loads_restricted_under_its_own_key_without_pg_dump_s() {
        let pg = DumpKind::Postgres { db: None };
        let long = "x".repeat(500);
        let dump = format!(
            "--\n-- dump\n\\restrict abcDEF123\nCREATE TABLE t (v text);\nCOPY t (v) FROM stdin;\n{long}\n\\restrict not-a-key\n\\.\n\\unrestrict other\n\\unrestrict abcDEF123\n-- done\n"
        );
        for chunk in [1, 7, 64, 4096] {
            let (f, out) = framed(&pg, dump.as_bytes(), chunk, true);
            let key = f.restrict.clone().unwrap();
            let want = format!(
                "\\restrict {key}\n--\n-- dump\nCREATE TABLE t (v text);\nCOPY t (v) FROM stdin;\n{long}\n\\restrict not-a-key\n\\.\n\\unrestrict other\n-- done\n"
            );
            assert_eq!(String::from_utf8(out).unwrap(), want, "chunks of {chunk}");
        }
        let (a, _) = framed(&pg, b"", 1, true);
        let (b, _) = framed(&pg, b"", 1, true);
        assert_ne!(a.restrict, b.restrict);
    }

    #[test]
    fn only_a_restrict_line_before_any_statement_is_pg_dump_s() {
        let pg = DumpKind::Postgres { db: None };
        let dump = "SET x = 1;\nCOPY t (v) FROM stdin;\n\\restrict abc\n\\.\n";
        let (_, out) = framed(&pg, dump.as_bytes(), 5, true);
        assert!(String::from_utf8(out).unwrap().ends_with(dump));
    }

    #[test]
    fn a_forged_dump_s_second_restrict_line_is_kept_for_psql_to_refuse() {
        let pg = DumpKind::Postgres { db: None };
        let (_, out) = framed(&pg, b"\\restrict a\n\\restrict b\n\\! id\n", 3, true);
        let out = String::from_utf8(out).unwrap();
        assert!(out.ends_with("\n\\restrict b\n\\! id\n"), "{out}");
    }

    #[test]
    fn mysql_ends_with_its_completion_statement_only_when_whole() {
        let my = DumpKind::Mysql { db: None };
        let (_, out) = framed(&my, b"INSERT INTO t VALUES (1);", 5, true);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("INSERT INTO t VALUES (1);\nSELECT '{MYSQL_DONE}';\n")
        );
        let (_, out) = framed(&my, b"INSERT INTO t VALUES (1);", 5, false);
        assert_eq!(out, b"INSERT INTO t VALUES (1);");
    }
}
