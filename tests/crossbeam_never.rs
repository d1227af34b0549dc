//! crossbeam-channel's own `tests/never.rs`, unchanged but for the crate
//! name, run against shmlane (see `tests/crossbeam/README.md`).
#![allow(
    missing_docs,
    unsafe_op_in_unsafe_fn,
    clippy::all,
    clippy::undocumented_unsafe_blocks
)]

#[path = "crossbeam/never.rs"]
mod never;
