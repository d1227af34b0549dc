//! One module per command.

pub mod bench;
pub mod bridge;
pub mod ls;
pub mod recv;
pub mod rm;
pub mod send;
pub mod stat;
