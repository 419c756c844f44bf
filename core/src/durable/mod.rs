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

use std::sync::Arc;

use crate::fs::FileSystem;

/// The three durable stores over one file system, as an engine opens them
/// on a directory.
#[derive(Clone)]
pub struct DurableStores {
    pub fs: Arc<dyn FileSystem>,
    pub wal: Arc<wal::FileWal>,
    pub manifests: Arc<manifest::FileManifestStore>,
    pub objects: Arc<objects::FileObjectStore>,
}

impl DurableStores {
    pub fn new(fs: Arc<dyn FileSystem>) -> DurableStores {
        DurableStores {
            wal: Arc::new(wal::FileWal::new(fs.clone())),
            manifests: Arc::new(manifest::FileManifestStore::new(fs.clone())),
            objects: Arc::new(objects::FileObjectStore::new(fs.clone())),
            fs,
        }
    }
}
