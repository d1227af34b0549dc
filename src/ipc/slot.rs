//! Views of one ring slot's bytes, as a side's layout divides them: a
//! length word of `meta` bytes (none for bare Pod slots), then room for
//! `cap` bytes of message.
//!
//! The rings hand out a slot as a raw payload pointer, because the bytes
//! are shared with other processes. This module is the one place where
//! the facade turns that pointer into something it reads and writes: the
//! unsafe step is [`Writing::new`] or [`Reading::new`], made once where a
//! slot is taken (reserved, claimed, or the SPSC producer's next slot and
//! consumer's front), with the promise that this side holds the slot for
//! the view's lifetime; every offset, length and bound after that is
//! checked here, and callers never do arithmetic on shared memory. The
//! one exception is bare Pod values on an SPSC ring (single and batched),
//! the per-message hot path: the message kind's typed write or read goes
//! straight to the payload, which measured 7-9% faster than through a view.
//!
//! A peer may scribble on a slot it does not hold. That cannot make a view
//! read or write outside the slot: the length word is loaded once and
//! checked against `cap` ([`Reading::frame`]); the bytes themselves are
//! taken as they are (validated by the message kind, or copied first under
//! `Trust::hostile`).

use std::marker::PhantomData;
use std::ptr::NonNull;

use shmlane_codec::InvalidMessage;

use super::Side;

/// A slot this side holds for writing: reserved (MPMC) or the producer's
/// next slot (SPSC), until it is published.
pub(super) struct Writing<'a> {
    payload: NonNull<u8>,
    meta: usize,
    cap: usize,
    _held: PhantomData<&'a mut [u8]>,
}

impl<'a> Writing<'a> {
    /// # Safety
    ///
    /// - `payload` is the payload of a slot of `side`'s layout (at least
    ///   `side.meta + side.cap` bytes, aligned to the layout's slot
    ///   alignment, which is at least 8 when there is a length word), and
    ///   this side holds it for writing for all of `'a`.
    #[inline]
    pub(super) unsafe fn new(payload: *mut u8, side: &Side) -> Self {
        debug_assert!(!payload.is_null());
        debug_assert!(side.meta == 0 || payload as usize % 8 == 0);
        Self {
            // SAFETY: a slot's payload is never null (the caller's promise).
            payload: unsafe { NonNull::new_unchecked(payload) },
            meta: side.meta,
            cap: side.cap,
            _held: PhantomData,
        }
    }

    /// Writes the length word in front of the message (nothing for bare
    /// slots, which have none).
    #[inline]
    pub(super) fn set_meta(&mut self, word: u64) {
        if self.meta > 0 {
            // SAFETY: `new`'s contract: at least 8 bytes, 8-aligned, held
            // for writing. Volatile: a peer reads (or scribbles on) it.
            unsafe { self.payload.cast::<u64>().write_volatile(word) };
        }
    }

    /// The `cap` bytes after the length word, for the message.
    #[inline]
    pub(super) fn data(&mut self) -> &mut [u8] {
        // SAFETY: `new`'s contract: `meta + cap` bytes held for writing,
        // borrowed mutably through `self` for no longer than the view.
        unsafe { std::slice::from_raw_parts_mut(self.payload.as_ptr().add(self.meta), self.cap) }
    }
}

/// A published slot this side holds for reading: claimed (MPMC) or the
/// consumer's front (SPSC), until it is released.
#[derive(Clone, Copy)]
pub(super) struct Reading<'a> {
    payload: NonNull<u8>,
    meta: usize,
    cap: usize,
    _held: PhantomData<&'a [u8]>,
}

impl<'a> Reading<'a> {
    /// # Safety
    ///
    /// - `payload` is the payload of a published slot of `side`'s layout
    ///   (as for [`Writing::new`]), and this side holds it for reading for
    ///   all of `'a`.
    #[inline]
    pub(super) unsafe fn new(payload: *const u8, side: &Side) -> Self {
        debug_assert!(!payload.is_null());
        debug_assert!(side.meta == 0 || payload as usize % 8 == 0);
        Self {
            // SAFETY: a slot's payload is never null (the caller's promise).
            payload: unsafe { NonNull::new_unchecked(payload.cast_mut()) },
            meta: side.meta,
            cap: side.cap,
            _held: PhantomData,
        }
    }

    /// The length word in front of the message, loaded once; `None` for
    /// bare slots, which have none.
    #[inline]
    pub(super) fn meta_word(&self) -> Option<u64> {
        // SAFETY: `new`'s contract: at least 8 bytes, 8-aligned, held.
        // Volatile: shared bytes.
        (self.meta > 0).then(|| unsafe { self.payload.cast::<u64>().read_volatile() })
    }

    /// The message bytes, given the length word as the caller loaded it
    /// (once, with [`meta_word`](Self::meta_word)): checked against the
    /// slot's room, never trusted. A bare slot's message is all `cap`
    /// bytes.
    ///
    /// # Errors
    ///
    /// [`InvalidMessage::Length`] for a length above `cap` or with bits set
    /// above the low 32.
    #[inline]
    pub(super) fn frame(&self, word: Option<u64>) -> Result<&'a [u8], InvalidMessage> {
        let len = match word {
            None => self.cap,
            Some(word) => {
                let len = word & 0xffff_ffff;
                if word >> 32 != 0 || len > self.cap as u64 {
                    return Err(InvalidMessage::Length {
                        len: word,
                        max: self.cap,
                    });
                }
                len as usize
            }
        };
        // SAFETY: `new`'s contract: `len <= cap` bytes follow the length
        // word, held for `'a`.
        Ok(unsafe { std::slice::from_raw_parts(self.payload.as_ptr().add(self.meta), len) })
    }
}
