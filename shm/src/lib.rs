//! Shared-memory segments for shmlane (POSIX shm, mmapped files, memfd).
//!
//! Not written yet: the segment layer (create/open protocol, header,
//! permissions, liveness) is the next piece of work. This crate exists so
//! the workspace has its final shape; it exports nothing.
