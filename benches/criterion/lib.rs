//! Nothing here: the crate exists for its criterion bench,
//! `benches/channel.rs` (`cargo bench -p shmlane-criterion`).
