//! Message codecs for shmlane (rkyv zero-copy, bytemuck Pod, raw bytes).
//!
//! Not written yet: the codecs arrive with the cross-process channel. This
//! crate exists so the workspace has its final shape; it exports nothing.

#![no_std]
