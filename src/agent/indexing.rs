//! The agent's side of the file index: the new index and an incremental's deletion list written
//! as the walk goes (compressed, to the host in frames), and the parent's index read from stdin
//! in step with the walk, which both follow the walk's order, so neither is held whole.

use std::cmp::Ordering;
use std::io::{self, BufRead, Write};

use base64::Engine as _;

use super::frame::Message;
use crate::index::{at_or_below, deleted, order, Line, Lines, Record, Writer};

/// Compressed bytes are sent once this many are buffered.
const CHUNK: usize = 256 << 10;

/// Which of the two streams a [`FrameSink`] carries.
#[derive(Clone, Copy)]
pub enum Stream {
    /// The new index.
    Index,
    /// The deletion list.
    Deleted,
}

/// Sends what is written to it to the host, a frame per [`CHUNK`].
pub struct FrameSink {
    stream: Stream,
    buf: Vec<u8>,
    /// Compressed bytes sent.
    pub sent: u64,
}

impl FrameSink {
    fn new(stream: Stream) -> FrameSink {
        FrameSink {
            stream,
            buf: Vec::new(),
            sent: 0,
        }
    }

    fn send(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let text = base64::engine::general_purpose::STANDARD.encode(&self.buf);
        self.sent += self.buf.len() as u64;
        self.buf.clear();
        super::say(&match self.stream {
            Stream::Index => Message::Index(text),
            Stream::Deleted => Message::Deleted(text),
        });
    }
}

impl Write for FrameSink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send();
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

type Compressed = zstd::stream::write::Encoder<'static, FrameSink>;

/// The parent's index, read in step with the walk.
pub struct Parent {
    lines: Lines<Box<dyn BufRead>>,
    /// When the parent's walk began.
    pub started: (i64, u32),
}

impl Parent {
    /// The parent index arriving (compressed) on `input`.
    pub fn new(input: impl io::Read + 'static) -> io::Result<Parent> {
        let text: Box<dyn BufRead> = Box::new(io::BufReader::with_capacity(
            1 << 16,
            zstd::stream::read::Decoder::new(input)?,
        ));
        let lines = Lines::new(text).map_err(|e| parent_error(e.to_string()))?;
        let started = lines.header.started;
        Ok(Parent { lines, started })
    }
}

/// The index being written, the deletion list, and the parent's index if there is one.
pub struct Indexing {
    index: Writer<Compressed>,
    deleted: Option<Compressed>,
    parent: Option<Parent>,
    /// Names listed as deleted.
    pub gone: u64,
    /// Entries the parent already holds unchanged (left out of the archive).
    pub unchanged: u64,
    /// Bytes of the deletion list.
    gone_bytes: u64,
    /// The archive name of the path being walked (its own entry is never listed as gone).
    root: Vec<u8>,
    /// Why this backup cannot be an increment after all (a backed-up path changed kind, the
    /// deletion list grew too long): the host makes it again, full.
    pub needs_full: Option<String>,
}

impl Indexing {
    /// Starts the index of a walk that began at `started`; with a parent, the deletion list too.
    pub fn new(started: (i64, u32), parent: Option<Parent>) -> io::Result<Indexing> {
        let index = Writer::new(Compressed::new(FrameSink::new(Stream::Index), 3)?, started)?;
        let deleted = match parent {
            Some(_) => Some(Compressed::new(FrameSink::new(Stream::Deleted), 3)?),
            None => None,
        };
        Ok(Indexing {
            index,
            deleted,
            parent,
            gone: 0,
            unchanged: 0,
            gone_bytes: 0,
            root: Vec::new(),
            needs_full: None,
        })
    }

    /// Whether entries are compared against a parent.
    pub fn incremental(&self) -> bool {
        self.parent.is_some()
    }

    /// Opens path `path`'s section (the parent's must come next, for the same path).
    pub fn path(&mut self, path: &str) -> io::Result<()> {
        self.index.path(path)?;
        self.root = crate::archive::names::prefix_for(path).into_bytes();
        if let Some(p) = &mut self.parent {
            match p.lines.next()? {
                Some(Line::Path(q)) if q == path => {}
                other => {
                    return Err(parent_error(format!(
                        "it has {other:?} where path {path:?} begins"
                    )))
                }
            }
        }
        Ok(())
    }

    /// The parent's record of `name` (everything the parent has before it is gone: listed),
    /// when it is of the same kind as `now`; a record of another kind is listed as gone too.
    pub fn parent_of(&mut self, name: &[u8], now: &Record) -> io::Result<Option<Record>> {
        loop {
            let Some(p) = &mut self.parent else {
                return Ok(None);
            };
            let (ord, same_kind) = match p.lines.peek()? {
                Some(Line::Entry(r)) => (order(&r.name(), name), r.k == now.k),
                _ => return Ok(None),
            };
            match ord {
                Ordering::Less => self.gone_with_all_below()?,
                Ordering::Greater => return Ok(None),
                Ordering::Equal if !same_kind => {
                    if name == self.root.as_slice() {
                        // A restore stages a path as the kind its archive holds; a chain whose
                        // path changed kind cannot be staged.
                        self.needs_full.get_or_insert_with(|| {
                            format!(
                                "{} is now a {:?}, and was not in the parent backup",
                                crate::archive::names::show(name),
                                now.k
                            )
                        });
                    }
                    self.gone_with_all_below()?;
                    return Ok(None);
                }
                Ordering::Equal => {
                    return match p.lines.next()? {
                        Some(Line::Entry(r)) => Ok(Some(r)),
                        _ => Ok(None),
                    }
                }
            }
        }
    }

    /// Whether the parent's `r` describes `now` unchanged, and was not changed so close to the
    /// parent's walk that a later change could hide.
    pub fn unchanged(&self, r: &Record, now: &Record) -> bool {
        let started = self.parent.as_ref().map_or((0, 0), |p| p.started);
        r.same_as(now)
            && !r.racy(started)
            && r.h.is_some() == (now.k == Some(crate::index::Kind::File))
    }

    /// Records an entry of the new index.
    pub fn entry(&mut self, r: &Record) -> io::Result<()> {
        self.index.entry(r)?;
        Ok(())
    }

    /// Ends a path: what the parent has left of it is gone.
    pub fn end_path(&mut self) -> io::Result<()> {
        while let Some(p) = &mut self.parent {
            match p.lines.peek()? {
                Some(Line::Entry(_)) => self.gone_with_all_below()?,
                _ => break,
            }
        }
        Ok(())
    }

    /// Takes the parent's next entry, lists it as gone, and skips what the parent has below it.
    fn gone_with_all_below(&mut self) -> io::Result<()> {
        let p = self.parent.as_mut().expect("a parent");
        let Some(Line::Entry(r)) = p.lines.next()? else {
            return Ok(());
        };
        let name = r.name();
        while let Some(Line::Entry(below)) = p.lines.peek()? {
            if !at_or_below(&below.name(), &name) {
                break;
            }
            p.lines.next()?;
        }
        self.list_gone(&name)
    }

    /// Lists `name` as gone (an entry of the parent's the walk no longer finds); never the
    /// path's own entry.
    pub fn list_gone(&mut self, name: &[u8]) -> io::Result<()> {
        if name == self.root {
            return Ok(());
        }
        if let Some(d) = &mut self.deleted {
            deleted::write(d, name)?;
        }
        self.gone += 1;
        self.gone_bytes += name.len() as u64 + 1;
        if self.gone_bytes > deleted::MAX_BYTES {
            self.needs_full.get_or_insert_with(|| {
                format!(
                    "its deletion list would be over {} MiB",
                    deleted::MAX_BYTES >> 20
                )
            });
        }
        Ok(())
    }

    /// Ends both streams (the parent must have been read to its end): entries written.
    pub fn finish(mut self) -> io::Result<u64> {
        if let Some(p) = &mut self.parent {
            if let Some(line) = p.lines.next()? {
                return Err(parent_error(format!("it has more than the walk: {line:?}")));
            }
        }
        let entries = self.index.entries;
        self.index.finish().finish()?.send();
        if let Some(d) = self.deleted {
            d.finish()?.send();
        }
        Ok(entries)
    }
}

fn parent_error(why: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("the parent backup's index: {why}"),
    )
}
