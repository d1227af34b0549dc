//! What to create or open: the ring, the message type, permissions.

use std::path::PathBuf;
use std::time::Duration;

use shmlane_ring::RingKind;

use crate::header::Fixed;

/// Where an open segment came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// Named POSIX shared memory.
    Shm(String),
    /// A mmapped file.
    File(PathBuf),
    /// An anonymous memfd, shared by inheritance.
    Memfd,
    /// A System V segment (`shmget`).
    Sysv {
        /// The key it was found or created under.
        key: i32,
        /// Its id (`shmid`).
        id: i32,
    },
}

/// What a segment carries, so that two sides agree on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeInfo {
    /// Readable name, for messages and tools (cut to 95 bytes in the
    /// header); not compared.
    pub name: String,
    /// What both sides must agree on, as text: the type's structural
    /// schema (see the codec crate). Stored whole after the ring region
    /// and compared byte for byte. Written as lines, the ones that name a
    /// part reading `KEY: VALUE`, so that the first line that differs
    /// says where two types differ.
    pub schema: String,
    /// `size_of` the type.
    pub size: u64,
    /// `align_of` the type.
    pub align: u64,
    /// Which codec frames it.
    pub codec: u32,
}

impl TypeInfo {
    /// The fingerprint stored in the header: FNV-1a over schema, size,
    /// alignment and codec.
    pub fn hash(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        eat(self.schema.as_bytes());
        eat(&self.size.to_le_bytes());
        eat(&self.align.to_le_bytes());
        eat(&self.codec.to_le_bytes());
        h
    }

    /// Whether a segment with `fixed` and `schema` carries this type: the
    /// hash first (one comparison), then the text itself, so that a hash
    /// collision cannot pass.
    pub(super) fn matches(&self, fixed: &Fixed, schema: &[u8]) -> bool {
        fixed.type_hash == self.hash()
            && fixed.type_size == self.size
            && fixed.type_align == self.align
            && fixed.codec == self.codec
            && schema == self.schema.as_bytes()
    }

    /// What differs between this type and the one a segment carries, in
    /// words, or `None` where the names say it all (another codec).
    pub(super) fn difference(&self, fixed: &Fixed, schema: &[u8]) -> Option<String> {
        let theirs = String::from_utf8_lossy(schema);
        if fixed.codec != self.codec {
            None
        } else if theirs != self.schema {
            Some(first_difference(&self.schema, &theirs))
        } else if (fixed.type_size, fixed.type_align) != (self.size, self.align) {
            Some(format!(
                "same structure, but {} bytes aligned to {} here and {} aligned to {} in the \
                 segment (built with other codec settings?)",
                self.size, self.align, fixed.type_size, fixed.type_align
            ))
        } else {
            Some("the header's type hash does not match its schema (a corrupted header?)".into())
        }
    }
}

/// The longest piece of a schema line an error quotes, in characters.
const QUOTE_MAX: usize = 200;

/// `line` as an error may quote it: a segment's schema was written by a
/// peer, so control characters (terminal escapes, newlines) are escaped
/// and a long line is cut.
fn printable(line: &str) -> String {
    let mut out = String::new();
    for (i, c) in line.chars().enumerate() {
        if i == QUOTE_MAX {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The first line where two schema texts differ, in words: for lines
/// `KEY: A` and `KEY: B`, "KEY: A here, B in the segment"; otherwise both
/// lines whole. Quoted text is escaped and cut (see [`printable`]), as the
/// segment's side comes from a peer.
pub(crate) fn first_difference(ours: &str, theirs: &str) -> String {
    let p = printable;
    let (mut a, mut b) = (ours.lines(), theirs.lines());
    loop {
        match (a.next(), b.next()) {
            (Some(x), Some(y)) if x == y => continue,
            (Some(x), Some(y)) => {
                return match (x.split_once(": "), y.split_once(": ")) {
                    (Some((kx, vx)), Some((ky, vy))) if kx == ky => {
                        format!("{}: {} here, {} in the segment", p(kx), p(vx), p(vy))
                    }
                    _ => format!("`{}` here, `{}` in the segment", p(x), p(y)),
                }
            }
            (Some(x), None) => return format!("`{}` here, nothing more in the segment", p(x)),
            (None, Some(y)) => return format!("nothing more here, `{}` in the segment", p(y)),
            (None, None) => return "no difference".into(),
        }
    }
}

/// The shape of a new segment.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Ring algorithm.
    pub kind: RingKind,
    /// Messages held at most.
    pub capacity: u64,
    /// Payload bytes per slot.
    pub slot_size: usize,
    /// Payload alignment.
    pub slot_align: usize,
    /// The message type.
    pub ty: TypeInfo,
}

/// Options for [`Segment::create`](super::Segment::create).
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// Permission bits (default `0o600`); applied exactly, not through the
    /// umask.
    pub mode: u32,
    /// Keep the name or file after the creator drops the segment (default:
    /// unlink it).
    pub keep: bool,
}

impl Default for CreateOptions {
    fn default() -> Self {
        Self {
            mode: 0o600,
            keep: false,
        }
    }
}

/// Options for [`Segment::open`](super::Segment::open).
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// How long to wait for the creator to publish the segment (default 1 s).
    pub ready_timeout: Duration,
    /// The uid that must own the file (default: this process's euid).
    pub owner: Option<u32>,
    /// Accept a file writable by group or others (default: refuse).
    pub allow_group_write: bool,
    /// Map read-only; such a segment cannot be attached to (for tools).
    pub read_only: bool,
    /// The ring kind this side needs, if it needs one.
    pub kind: Option<RingKind>,
    /// The message type this side needs, if it needs one.
    pub ty: Option<TypeInfo>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            ready_timeout: Duration::from_secs(1),
            owner: None,
            allow_group_write: false,
            read_only: false,
            kind: None,
            ty: None,
        }
    }
}

/// The side a participant plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Pushes messages.
    Sender,
    /// Pops messages.
    Receiver,
}

impl Role {
    pub(super) fn index(self) -> usize {
        match self {
            Self::Sender => 0,
            Self::Receiver => 1,
        }
    }

    pub(super) fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            0 => Some(Self::Sender),
            1 => Some(Self::Receiver),
            _ => None,
        }
    }

    /// "sender" or "receiver".
    pub fn name(self) -> &'static str {
        match self {
            Self::Sender => "sender",
            Self::Receiver => "receiver",
        }
    }
}

/// What an opener says about a segment's schema text that differs from
/// `ours`: for the fuzz target that feeds it peer-written bytes.
#[doc(hidden)]
pub fn schema_difference(ours: &str, theirs: &[u8]) -> String {
    first_difference(ours, &String::from_utf8_lossy(theirs))
}

#[cfg(test)]
mod tests {
    use super::first_difference;

    #[test]
    fn a_peers_schema_is_quoted_escaped_and_cut() {
        let theirs = format!("message: R\nfield `R.a`: \x1b[2J{}", "x".repeat(500));
        let d = first_difference("message: R\nfield `R.a`: u8", &theirs);
        assert!(!d.contains('\x1b'), "{d}");
        assert!(d.contains("\\u{1b}[2J"), "{d}");
        assert!(d.len() < 300, "{} bytes", d.len());
    }

    #[test]
    fn the_first_differing_line_is_named() {
        let a = "message: R\nstruct `R`: { a, b }\nfield `R.a`: u8\nfield `R.b`: Vec<f32>";
        let b = "message: R\nstruct `R`: { a, b }\nfield `R.a`: u8\nfield `R.b`: Vec<f64>";
        assert_eq!(
            first_difference(a, b),
            "field `R.b`: Vec<f32> here, Vec<f64> in the segment"
        );
        let swapped = "message: R\nstruct `R`: { b, a }\nfield `R.b`: Vec<f32>\nfield `R.a`: u8";
        assert_eq!(
            first_difference(a, swapped),
            "struct `R`: { a, b } here, { b, a } in the segment"
        );
        assert_eq!(
            first_difference("u64", "my::Tick"),
            "`u64` here, `my::Tick` in the segment"
        );
        assert_eq!(
            first_difference("message: R\nx: 1", "message: R"),
            "`x: 1` here, nothing more in the segment"
        );
        assert_eq!(
            first_difference("message: R", "message: R\nx: 1"),
            "nothing more here, `x: 1` in the segment"
        );
        assert_eq!(
            first_difference("a: 1\nb: 2", "a: 1\nc: 2"),
            "`b: 2` here, `c: 2` in the segment"
        );
    }
}
