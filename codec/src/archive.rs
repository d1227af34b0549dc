//! rkyv messages: serialized straight into a slot, read in place.
//!
//! Any type that derives `shmlane::Message` (rkyv's `Archive`, `Serialize`
//! and `Deserialize`, and a [`Schema`]) is a [`Message`], as long as it
//! needs no shared-pointer support (`Rc`, `Arc`): the serializer here is
//! rkyv's low-level one, which never touches the heap for sharing maps.
//! Strings, vectors, options, enums and nested structs all work.

use core::mem::{align_of, size_of};

use rkyv::api::low::{self, LowDeserializer, LowSerializer, LowValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::{Arena, ArenaHandle};
use rkyv::ser::{Positional, Writer};
use rkyv::util::AlignedVec;
use rkyv::{Archive, Archived, Deserialize, Serialize};

use crate::schema::{self, Schema};
use crate::{kind, EncodeError, Fingerprint, InvalidMessage, Trust};

/// Alignment of an archive's first byte in a slot (and in private copies):
/// rkyv's own aligned buffers use 16, which covers every archived primitive.
pub const ALIGN: usize = 16;

/// Writes into a slot; past its end it only counts, so that a message too
/// large for the slot reports how large it is instead of failing half-way.
pub struct SlotWriter<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> SlotWriter<'a> {
    /// A writer at the start of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, pos: 0 }
    }
}

impl Positional for SlotWriter<'_> {
    fn pos(&self) -> usize {
        self.pos
    }
}

impl<E> Writer<E> for SlotWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), E> {
        let end = self.pos.saturating_add(bytes.len());
        if let Some(dst) = self.buf.get_mut(self.pos..end) {
            dst.copy_from_slice(bytes);
        }
        self.pos = end;
        Ok(())
    }
}

/// The serializer's reusable scratch space: one per sending handle. It
/// allocates while it warms up, then never again for messages of the same
/// shape.
pub struct Scratch {
    arena: Arena,
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Scratch {
    /// Empty scratch space.
    pub fn new() -> Self {
        Self {
            arena: Arena::new(),
        }
    }
}

/// A private, aligned buffer that [`Trust::hostile`] copies received
/// messages into. Allocates nothing until first used, and reuses its
/// capacity after that.
pub type CopyBuf = AlignedVec<ALIGN>;

/// Copies `bytes` into `buf` (replacing what it held) and returns the copy.
pub fn copy_into<'a>(buf: &'a mut CopyBuf, bytes: &[u8]) -> &'a [u8] {
    buf.clear();
    buf.extend_from_slice(bytes);
    buf.as_slice()
}

/// The serializer of every send: its error keeps nothing (rancor's
/// `Failure`), as `Val`'s.
type Ser<'w, 'a> = LowSerializer<SlotWriter<'w>, ArenaHandle<'a>, rancor::Failure>;
/// The serializer that says why a message failed `Ser` (as `Explain`).
type SerExplain<'w, 'a> = LowSerializer<SlotWriter<'w>, ArenaHandle<'a>, rancor::BoxedError>;
/// The validator of every receive: its error keeps nothing (rancor's
/// `Failure`), so a valid message costs no more than it must.
type Val<'a> = LowValidator<'a, rancor::Failure>;
/// The validator that says why a message failed `Val` (rancor's
/// `BoxedError` keeps the text in every build; its `Error` keeps it only
/// where debug assertions are on, so a release build said "failed without
/// error information").
type Explain<'a> = LowValidator<'a, rancor::BoxedError>;
/// The deserializer of every owned receive, and the one that says why it
/// failed (as `Val` and `Explain`).
type De = LowDeserializer<rancor::Failure>;
type DeExplain = LowDeserializer<rancor::BoxedError>;

/// A type that can travel as an rkyv archive.
///
/// Implemented for every type whose derives allow it; see the module docs.
/// The [`Schema`] is what the segment header records, so that a process
/// that opens a channel with a type of another structure is refused.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot travel as an rkyv message",
    note = "derive it with `#[derive(shmlane::Message)]`: that derives rkyv's `Archive`, \
            `Serialize` and `Deserialize` and shmlane's `Schema`"
)]
pub trait Message: Archive + Schema + Sized {
    /// Serializes `self` into the start of `buf` (which must be aligned to
    /// [`ALIGN`]) and returns the archive's length.
    ///
    /// # Errors
    ///
    /// [`EncodeError::TooLarge`] (with the length needed) when `buf` is too
    /// short: then `buf` holds garbage and must not be published.
    /// [`EncodeError::Failed`] when a `Serialize` impl fails; the value is
    /// then serialized a second time, with an error type that keeps the
    /// reason (so a `Serialize` with side effects sees two calls).
    fn encode_into(&self, buf: &mut [u8], scratch: &mut Scratch) -> Result<usize, EncodeError>;

    /// Validates `bytes` as an archive of `Self` and returns its root.
    ///
    /// # Errors
    ///
    /// [`InvalidMessage::Check`] for anything that is not a valid archive.
    fn check(bytes: &[u8]) -> Result<&Self::Archived, InvalidMessage>;

    /// Deserializes an archived value into an owned one.
    ///
    /// # Errors
    ///
    /// [`InvalidMessage::Check`] if a `Deserialize` impl fails.
    fn decode(archived: &Self::Archived) -> Result<Self, InvalidMessage>;

    /// The fingerprint of `Self` as an rkyv message: its structural
    /// schema, and its archived size and alignment.
    fn fingerprint() -> Fingerprint {
        Fingerprint {
            name: core::any::type_name::<Self>(),
            schema: schema::canonical::<Self>(),
            size: size_of::<Archived<Self>>(),
            align: align_of::<Archived<Self>>(),
            codec: kind::RKYV,
        }
    }
}

impl<T> Message for T
where
    T: Archive
        + Schema
        + for<'w, 'a> Serialize<Ser<'w, 'a>>
        + for<'w, 'a> Serialize<SerExplain<'w, 'a>>,
    T::Archived: for<'a> CheckBytes<Val<'a>>
        + for<'a> CheckBytes<Explain<'a>>
        + Deserialize<T, De>
        + Deserialize<T, DeExplain>,
{
    fn encode_into(&self, buf: &mut [u8], scratch: &mut Scratch) -> Result<usize, EncodeError> {
        debug_assert!(
            buf.is_empty() || buf.as_ptr() as usize % ALIGN == 0,
            "unaligned slot"
        );
        let max = buf.len();
        let written = low::to_bytes_in_with_alloc::<_, _, rancor::Failure>(
            self,
            SlotWriter::new(buf),
            scratch.arena.acquire(),
        );
        let pos = match written {
            Ok(writer) => writer.pos,
            // Only a message that failed is serialized again, for the reason.
            Err(rancor::Failure) => {
                return Err(EncodeError::Failed(explain_encode(self, buf, scratch)));
            }
        };
        match pos {
            len if len <= max => Ok(len),
            len => Err(EncodeError::TooLarge { len, max }),
        }
    }

    fn check(bytes: &[u8]) -> Result<&Self::Archived, InvalidMessage> {
        match low::access::<T::Archived, rancor::Failure>(bytes) {
            Ok(root) => Ok(root),
            // Only a message that failed is checked again, for the reason.
            Err(rancor::Failure) => Err(InvalidMessage::Check(explain::<T>(bytes))),
        }
    }

    fn decode(archived: &Self::Archived) -> Result<Self, InvalidMessage> {
        // As `check`: the reason is looked for only after a failure (only a
        // type's own `Deserialize` can fail on a checked archive).
        low::deserialize::<T, rancor::Failure>(archived).or_else(|rancor::Failure| {
            low::deserialize::<T, rancor::BoxedError>(archived).map_err(InvalidMessage::Check)
        })
    }
}

/// Why `bytes` are not a valid archive of `T`: the check made again with an
/// error that keeps its text.
#[cold]
#[inline(never)]
fn explain<T>(bytes: &[u8]) -> rancor::BoxedError
where
    T: Archive,
    T::Archived: for<'a> CheckBytes<Explain<'a>>,
{
    match low::access::<T::Archived, rancor::BoxedError>(bytes) {
        Err(e) => e,
        // A message is checked where it lies: a peer may write it between
        // the two checks.
        Ok(_) => <rancor::BoxedError as rancor::Source>::new(ChangedWhileChecked),
    }
}

/// Why `value` failed to serialize: serialized again with an error that
/// keeps its text.
#[cold]
#[inline(never)]
fn explain_encode<T>(value: &T, buf: &mut [u8], scratch: &mut Scratch) -> rancor::BoxedError
where
    T: for<'w, 'a> Serialize<SerExplain<'w, 'a>>,
{
    let again = low::to_bytes_in_with_alloc::<_, _, rancor::BoxedError>(
        value,
        SlotWriter::new(buf),
        scratch.arena.acquire(),
    );
    match again {
        Err(e) => e,
        Ok(_) => <rancor::BoxedError as rancor::Source>::new(SerializedOnSecondTry),
    }
}

/// A value whose `Serialize` failed, then succeeded when called again.
#[derive(Debug)]
struct SerializedOnSecondTry;

impl core::fmt::Display for SerializedOnSecondTry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(
            "serializing the message failed, then succeeded when tried again \
             for the reason: its type's Serialize gives different results for \
             the same value",
        )
    }
}

impl core::error::Error for SerializedOnSecondTry {}

/// A message that failed its check and passed a second one just after.
#[derive(Debug)]
struct ChangedWhileChecked;

impl core::fmt::Display for ChangedWhileChecked {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(
            "the message failed validation, then passed a second check: \
             a peer wrote it while it was read (receive with Trust::hostile \
             to check a private copy)",
        )
    }
}

impl core::error::Error for ChangedWhileChecked {}

/// The archived root of a message received as `bytes`, as far as `trust`
/// allows: validated in place, copied into `copy` and validated there,
/// or taken as it is.
///
/// # Errors
///
/// [`InvalidMessage`] when validation fails (never with
/// [`Trust::unchecked`], short of a length or alignment no encoder writes).
pub fn view<'a, T: Message>(
    bytes: &'a [u8],
    trust: Trust,
    copy: &'a mut CopyBuf,
) -> Result<&'a T::Archived, InvalidMessage> {
    if trust.copies() {
        return T::check(copy_into(copy, bytes));
    }
    view_in_place::<T>(bytes, trust)
}

/// As [`view`], never copying: [`Trust::hostile`] validates in place like
/// [`Trust::validate`] (for bytes already copied to private memory).
///
/// # Errors
///
/// As [`view`].
pub fn view_in_place<T: Message>(
    bytes: &[u8],
    trust: Trust,
) -> Result<&T::Archived, InvalidMessage> {
    if trust.validates() {
        return T::check(bytes);
    }
    // Even unchecked, a length or address our own encoder never produces
    // is refused: it costs a comparison and keeps a stray bug out of UB.
    if bytes.len() < size_of::<T::Archived>() {
        return Err(InvalidMessage::TooShort {
            len: bytes.len(),
            need: size_of::<T::Archived>(),
        });
    }
    let align = align_of::<T::Archived>().max(ALIGN);
    if bytes.as_ptr() as usize % align != 0 {
        return Err(InvalidMessage::Misaligned { align });
    }
    // SAFETY: `Trust::unchecked` was created by a caller who promised that
    // every peer writes only archives of `T` encoded by `encode_into`; the
    // length and alignment were checked above.
    Ok(unsafe { rkyv::access_unchecked::<T::Archived>(bytes) })
}

/// The exact archive length of `value`: for choosing a channel's message
/// size from a sample of the largest messages it will carry. Allocates.
pub fn archived_len<T: Message>(value: &T) -> usize {
    let mut scratch = Scratch::new();
    match value.encode_into(&mut [], &mut scratch) {
        Ok(len) | Err(EncodeError::TooLarge { len, .. }) => len,
        Err(EncodeError::Failed(_)) => 0,
    }
}

/// The archive length of any value of `T` when `T` has no out-of-line
/// data (no strings, vectors or boxes), in which case every value archives
/// to this many bytes. For types with out-of-line data it is a lower bound;
/// use [`archived_len`] on a large sample instead.
pub const fn fixed_archived_len<T: Archive>() -> usize {
    size_of::<Archived<T>>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::Order;
    use alloc::string::ToString;

    #[test]
    fn a_failed_check_says_why_in_every_build() {
        let mut buf = AlignedVec::<ALIGN>::new();
        buf.resize(512, 0);
        let len = Order::sample(1)
            .encode_into(&mut buf, &mut Scratch::new())
            .unwrap();
        let bytes = &buf[..len];
        assert!(Order::check(bytes).is_ok());
        // Too short for the root: the reason is kept, with or without
        // debug assertions (rancor's `Error` said "failed without error
        // information" in release builds).
        match Order::check(&bytes[..len - 8]) {
            Err(InvalidMessage::Check(e)) => {
                let text = e.to_string();
                assert!(!text.contains("without error information"), "{text}");
                assert!(!text.is_empty());
            }
            other => panic!("{other:?}"),
        }
        // Bytes that pass the second look: a peer wrote them between the
        // two checks, and the error says so.
        let e = explain::<Order>(bytes);
        assert!(e.to_string().contains("second check"), "{e}");
    }

    /// A type whose `Serialize` always fails, with a reason.
    struct Refuses;

    #[derive(Debug)]
    struct Why;

    impl core::fmt::Display for Why {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.write_str("this value refuses to be sent")
        }
    }

    impl core::error::Error for Why {}

    impl Archive for Refuses {
        type Archived = ();
        type Resolver = ();
        fn resolve(&self, (): (), _: rkyv::Place<()>) {}
    }

    impl<S: rancor::Fallible + ?Sized> Serialize<S> for Refuses
    where
        S::Error: rancor::Source,
    {
        fn serialize(&self, _: &mut S) -> Result<(), S::Error> {
            Err(<S::Error as rancor::Source>::new(Why))
        }
    }

    impl<D: rancor::Fallible + ?Sized> Deserialize<Refuses, D> for () {
        fn deserialize(&self, _: &mut D) -> Result<Refuses, D::Error> {
            Ok(Refuses)
        }
    }

    impl Schema for Refuses {
        fn describe(_: &mut crate::schema::Describer) -> alloc::string::String {
            "Refuses".into()
        }
    }

    #[test]
    fn a_failed_encode_says_why_in_every_build() {
        let mut buf = AlignedVec::<ALIGN>::new();
        buf.resize(64, 0);
        match Refuses.encode_into(&mut buf, &mut Scratch::new()) {
            Err(EncodeError::Failed(e)) => {
                // The reason's type keeps its text in every build (the
                // assertion below also passes with `rancor::Error` where
                // debug assertions are on; this line would not compile).
                let e: rancor::BoxedError = e;
                let text = e.to_string();
                assert!(text.contains("refuses to be sent"), "{text}");
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
        // Measuring a value that cannot be encoded says 0, not a panic.
        assert_eq!(archived_len(&Refuses), 0);
    }
}
