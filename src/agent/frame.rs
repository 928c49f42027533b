//! The agent's wire format, both ways: each message is one frame, a 4-byte big-endian length and
//! that many bytes of JSON ([`Message`]). The host sends one [`Message::Job`] first on the
//! agent's stdin; the agent answers on its stderr with frames only ([`Message::Progress`],
//! [`Message::Warning`], ..., [`Message::Done`] last). Room is left for more kinds (a file
//! index, in either direction) without touching argv or text prefixes.
//!
//! Whatever comes from a helper is untrusted (the app in the container may be root and hostile),
//! so every read names a cap: a length over it is refused before a byte of the body is kept,
//! and a body that is not a message is a clean error, never a panic.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use super::merge::MergeJob;
use super::remove::RemoveDir;
use super::swap::SwapJob;
use super::{PackJob, PackReport, UnpackJob};
use crate::archive::stage::Staged;

/// The largest frame the host reads from a helper: 16 MiB. A report lists what staging
/// stripped or skipped, a few hundred bytes a name; anything larger is refused, not buffered.
pub const MAX_FROM_AGENT: usize = 16 << 20;

/// The largest frame the agent reads from the host: 256 MiB, for a job carrying the journal
/// records of every path of a large restore.
pub const MAX_TO_AGENT: usize = 256 << 20;

/// One message between the host and the agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", content = "body", rename_all = "snake_case")]
pub enum Message {
    /// Host to agent, first on its stdin: what to do.
    Job(Job),
    /// Uncompressed tar bytes packed so far (pack, at most four a second).
    Progress(u64),
    /// The quick count of what the paths hold, in bytes (pack), for a percentage.
    Total(u64),
    /// Something the operator should know that did not stop the work.
    Warning(String),
    /// The agent failed; why.
    Error(String),
    /// The agent refused the archive's content (a failed check, not an I/O failure); why.
    Refused(String),
    /// The next piece of the backup's file index (pack; zstd-compressed bytes, base64).
    Index(String),
    /// The next piece of an incremental backup's deletion list (pack; as [`Message::Index`]).
    Deleted(String),
    /// The work is whole; what it did. The last message.
    Done(Report),
}

/// What the agent is asked to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "job", content = "spec", rename_all = "snake_case")]
pub enum Job {
    /// Walk paths into one compressed archive (a backup).
    Pack(PackJob),
    /// Stage one path of an archive into its mount (a restore).
    Unpack(UnpackJob),
    /// Hard-link the live names a backup left out into the staged trees.
    Keep(MergeJob),
    /// Rename staged entries into the live tree (`restore --include`).
    Merge(MergeJob),
    /// Swap staged trees in, or roll a swap back.
    Swap(SwapJob),
    /// Delete finished restores' work directories.
    Remove(Vec<RemoveDir>),
}

impl Job {
    /// Its name, as the helper's command line shows it (`docker ps`).
    pub fn name(&self) -> &'static str {
        match self {
            Job::Pack(_) => "pack",
            Job::Unpack(_) => "unpack",
            Job::Keep(_) => "keep",
            Job::Merge(_) => "merge",
            Job::Swap(_) => "swap",
            Job::Remove(_) => "remove",
        }
    }
}

/// What a finished job did.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "report", content = "of", rename_all = "snake_case")]
pub enum Report {
    /// A pack's counts.
    Packed(PackReport),
    /// What staging wrote.
    Staged(Staged),
    /// How many entries a keep or merge linked or moved.
    Count(u64),
    /// Nothing to say (a swap, a removal).
    Nothing,
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Its length is over the reader's cap.
    #[error("a message of {len} bytes, over the {cap}-byte limit")]
    Oversized {
        /// The length it claimed.
        len: usize,
        /// The cap.
        cap: usize,
    },
    /// The stream ended inside a frame.
    #[error("a message cut short ({have} of {want} bytes)")]
    Truncated {
        /// Bytes there.
        have: usize,
        /// Bytes the frame needs (header included).
        want: usize,
    },
    /// The body is not a message.
    #[error("not a message: {0}")]
    Malformed(serde_json::Error),
}

impl From<FrameError> for io::Error {
    fn from(e: FrameError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
    }
}

/// The frame of `message`: length, then JSON.
pub fn encode(message: &Message) -> Vec<u8> {
    let json = serde_json::to_vec(message).expect("a message serialises");
    let len = u32::try_from(json.len()).expect("a message is under 4 GiB");
    let mut frame = Vec::with_capacity(4 + json.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&json);
    frame
}

/// Writes `message` as one frame, in one `write_all`: frames from threads sharing a locked
/// writer never interleave.
pub fn write(w: &mut impl Write, message: &Message) -> io::Result<()> {
    w.write_all(&encode(message))?;
    w.flush()
}

/// Reads one frame of at most `cap` bytes from `r`: `None` if the stream ends before its first
/// byte. Reads exactly the frame, nothing after it (what follows on the stream, such as an
/// archive, stays there).
pub fn read(r: &mut impl Read, cap: usize) -> Result<Option<Message>, io::Error> {
    let mut head = [0u8; 4];
    let mut have = 0;
    while have < 4 {
        match r.read(&mut head[have..])? {
            0 if have == 0 => return Ok(None),
            0 => return Err(FrameError::Truncated { have, want: 4 }.into()),
            n => have += n,
        }
    }
    let len = u32::from_be_bytes(head) as usize;
    if len > cap {
        return Err(FrameError::Oversized { len, cap }.into());
    }
    let mut body = Vec::new();
    let got = r.take(len as u64).read_to_end(&mut body)?;
    if got < len {
        return Err(FrameError::Truncated {
            have: 4 + got,
            want: 4 + len,
        }
        .into());
    }
    Ok(Some(
        serde_json::from_slice(&body).map_err(FrameError::Malformed)?,
    ))
}

/// Frames from a stream that arrives in pieces of any size (the engine's attach stream): bytes
/// in with [`Decoder::push`], whole messages out with [`Decoder::next`]. It holds at most one
/// frame of `cap` bytes, and only as its bytes arrive: a claimed length allocates nothing.
pub struct Decoder {
    buf: Vec<u8>,
    cap: usize,
}

impl Decoder {
    /// A decoder of frames of at most `cap` bytes.
    pub fn new(cap: usize) -> Decoder {
        Decoder {
            buf: Vec::new(),
            cap,
        }
    }

    /// Takes the next piece of the stream.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole message, `None` until one is in; an error if the frame at hand can never
    /// be read (the bytes from there on are [`Decoder::rest`]).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Message>, FrameError> {
        let Some(head) = self.buf.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(head.try_into().expect("four bytes")) as usize;
        if len > self.cap {
            return Err(FrameError::Oversized { len, cap: self.cap });
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let message =
            serde_json::from_slice(&self.buf[4..4 + len]).map_err(FrameError::Malformed)?;
        self.buf.drain(..4 + len);
        Ok(Some(message))
    }

    /// At the end of the stream: an error if it ended inside a frame.
    pub fn end(&self) -> Result<(), FrameError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let want = match self.buf.get(..4) {
            Some(head) => 4 + u32::from_be_bytes(head.try_into().expect("four bytes")) as usize,
            None => 4,
        };
        Err(FrameError::Truncated {
            have: self.buf.len(),
            want,
        })
    }

    /// The bytes not decoded (after an error, what the stream said instead of a frame).
    pub fn rest(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Message> {
        vec![
            Message::Job(Job::Remove(vec![RemoveDir {
                root: "/srv/media".into(),
                name: ".dockyard-restore".into(),
                mtime: Some(-5),
            }])),
            Message::Job(Job::Pack(PackJob {
                paths: vec![super::super::PackPath {
                    path: "/srv/ü".into(),
                    nested: vec!["a\nb".into()],
                }],
                level: 3,
                exclude: vec!["*.tmp".into()],
                parent: true,
            })),
            Message::Index("KLUv/QBYAQAA".into()),
            Message::Deleted(String::new()),
            Message::Progress(u64::MAX),
            Message::Total(0),
            Message::Warning("file changed as we read it".into()),
            Message::Error("Permission denied".into()),
            Message::Refused("sha256 mismatch".into()),
            Message::Done(Report::Staged(Staged {
                entries: 7,
                stripped: vec!["/x".into()],
                ..Default::default()
            })),
            Message::Done(Report::Count(3)),
            Message::Done(Report::Nothing),
        ]
    }

    #[test]
    fn every_message_round_trips_through_a_reader_and_a_decoder_fed_byte_by_byte() {
        let mut stream = Vec::new();
        for m in all() {
            write(&mut stream, &m).unwrap();
        }
        let frames = stream.len();
        stream.extend_from_slice(b"archive bytes after the frames");
        let mut r = &stream[..];
        let mut d = Decoder::new(MAX_FROM_AGENT);
        let mut decoded = Vec::new();
        for b in &stream[..frames] {
            d.push(std::slice::from_ref(b));
            while let Some(m) = d.next().unwrap() {
                decoded.push(m);
            }
        }
        for m in all() {
            let read = read(&mut r, MAX_TO_AGENT).unwrap().unwrap();
            let want = format!("{m:?}");
            assert_eq!(format!("{read:?}"), want);
            assert_eq!(format!("{:?}", decoded.remove(0)), want);
        }
        // The reader took exactly the frames: what follows is still there.
        assert_eq!(r, b"archive bytes after the frames");
        assert!(decoded.is_empty());
        assert!(d.end().is_ok());
    }

    #[test]
    fn a_truncated_frame_is_an_error_and_an_empty_stream_is_none() {
        assert!(read(&mut &b""[..], 100).unwrap().is_none());
        let frame = encode(&Message::Warning("careful".into()));
        for cut in [1, 3, 4, 10, frame.len() - 1] {
            let e = read(&mut &frame[..cut], 100).unwrap_err();
            assert!(e.to_string().contains("cut short"), "{cut}: {e}");
            let mut d = Decoder::new(100);
            d.push(&frame[..cut]);
            assert!(d.next().unwrap().is_none());
            assert!(
                matches!(d.end(), Err(FrameError::Truncated { .. })),
                "{cut}"
            );
        }
    }

    #[test]
    fn an_oversized_frame_is_refused_before_its_body_is_kept() {
        let frame = encode(&Message::Warning("x".repeat(200)));
        let e = read(&mut &frame[..], 100).unwrap_err();
        assert!(e.to_string().contains("over the 100-byte limit"), "{e}");
        let mut d = Decoder::new(100);
        // A forged length of 4 GiB with no body: refused at once.
        d.push(&u32::MAX.to_be_bytes());
        assert!(matches!(
            d.next(),
            Err(FrameError::Oversized { len, cap: 100 }) if len == u32::MAX as usize
        ));
    }

    #[test]
    fn text_where_a_frame_should_be_is_an_error_with_the_text_left_to_show() {
        let mut d = Decoder::new(MAX_FROM_AGENT);
        d.push(b"exec format error\n");
        assert!(d.next().is_err());
        assert_eq!(d.rest(), b"exec format error\n");
        let mut d = Decoder::new(MAX_FROM_AGENT);
        let mut bad = 5u32.to_be_bytes().to_vec();
        bad.extend_from_slice(b"{oops");
        d.push(&bad);
        assert!(matches!(d.next(), Err(FrameError::Malformed(_))));
        let mut bad = 4u32.to_be_bytes().to_vec();
        bad.extend_from_slice(b"null");
        assert!(read(&mut &bad[..], 100).is_err());
    }
}
