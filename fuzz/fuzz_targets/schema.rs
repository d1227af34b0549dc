//! A segment's schema text is written by its creator, a peer that may be
//! buggy or hostile; an opener whose type differs quotes the first
//! difference in its error. Arbitrary bytes as the segment's schema,
//! against a real message type's schema: the description must come back
//! without a panic, without control characters (terminal escapes, line
//! breaks) from the peer, and bounded in length whatever the input.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shmlane::codec::sample::{Order, Tick};

/// The longest description: two quoted lines of at most 200 characters
/// (each escaped character up to 10 bytes) and the words around them.
const MAX_DESCRIPTION: usize = 2 * (200 * 10 + 3) + 200;

fn check(ours: &str, theirs: &[u8]) {
    let d = shmlane_shm::schema_difference(ours, theirs);
    assert!(
        !d.chars().any(char::is_control),
        "a control character in {d:?}"
    );
    assert!(d.len() <= MAX_DESCRIPTION, "{} bytes", d.len());
}

fuzz_target!(|data: &[u8]| {
    check(&shmlane::schema::canonical::<Order>(), data);
    check(&shmlane::schema::canonical::<Tick>(), data);
    // A peer's text on our side too (the tools compare two segments).
    check(&String::from_utf8_lossy(data), b"message: Order");
});
