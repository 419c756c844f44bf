//! Durable ports written once over the [`crate::fs::FileSystem`] port, so
//! the code a real engine ships is the code every simulated crash tests
//! (DESIGN §9).
//!
//! - [`frame`]: a WAL entry framed with its length and a CRC32; the scan
//!   that tells a torn tail (cut it, count it) from corruption (an error).
//! - [`wal`]: [`wal::FileWal`], segment files per region, synced before an
//!   append is acknowledged, torn tails repaired on open.
//! - [`manifest`]: [`manifest::FileManifestStore`], one checksummed file per
//!   region, replaced by temp file, sync, rename and directory sync.
//! - [`objects`]: [`objects::FileObjectStore`], SSTs written under a temp
//!   name, synced and renamed into place.

mod codec;
pub mod frame;
pub mod manifest;
pub mod objects;
pub mod wal;
