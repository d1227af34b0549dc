//! The only place in this crate that names `std::sync` atomics or `loom`.

#[cfg(shmlane_loom)]
pub(crate) use loom::sync::{
    atomic::{AtomicBool, AtomicUsize, Ordering},
    Arc,
};

#[cfg(not(shmlane_loom))]
pub(crate) use std::sync::{
    atomic::{AtomicBool, AtomicUsize, Ordering},
    Arc,
};
