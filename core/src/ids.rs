//! Identifiers shared by every part of the core.
//!
//! They are plain newtypes over integers so they order, hash and print the
//! same way in every run: the simulator's trace hash depends on that.

use std::fmt;

/// A region: one table shard owned by exactly one worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RegionId(pub u64);

impl fmt::Display for RegionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "region-{}", self.0)
    }
}

/// A client request, numbered by whoever issued it (the simulator's ledger).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request-{}", self.0)
    }
}

/// An SST file. Unique per region; the path is derived from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileId(pub u64);

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A memtable inside one region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemtableId(pub u64);

/// Object-store path of an SST: `data/<region>/<file>.parquet`.
pub fn sst_path(region_id: RegionId, file_id: FileId) -> String {
    format!("data/{}/{}.parquet", region_id.0, file_id)
}

/// Object-store prefix under which all SSTs of a region live.
pub fn region_sst_prefix(region_id: RegionId) -> String {
    format!("data/{}/", region_id.0)
}
