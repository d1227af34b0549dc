//! Placeholder until the first fuzz target (see Cargo.toml).
