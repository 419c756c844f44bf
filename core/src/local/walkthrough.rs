//! The walk-through the `local_flush` example runs: a few thousand rows
//! into two regions on local disk, flushed to Parquet, then every SST listed
//! and read back.
//!
//! It lives in the crate, not in the example, so the example's `main` and
//! the test that checks its files on disk (`core/tests/local_example.rs`)
//! call the very same code. Every request goes through
//! [`LocalEngine::call`], which fails on a request left unanswered or whose
//! reply was lost.

use std::error::Error;
use std::path::Path;

use crate::ids::RegionId;
use crate::local::{block_on, LocalEngine};
use crate::memtable::{Row, RowValue};
use crate::ports::ObjectStore;
use crate::request::{Output, Request};
use crate::sst;
use crate::worker::WorkerConfig;

pub const REGIONS: [RegionId; 2] = [RegionId(1), RegionId(2)];
pub const SERIES_PER_REGION: usize = 4;
pub const WRITES_PER_REGION: usize = 50;
pub const ROWS_PER_WRITE: usize = 30;
/// 64 KiB: a region's mutable memtable passes half of it every ~600 rows.
pub const BUFFER_BYTES: usize = 64 * 1024;

/// One SST as read back from the object store.
pub struct SstFile {
    pub path: String,
    pub size_bytes: usize,
    pub rows: Vec<Row>,
}

/// What one region received and what its SSTs hold.
pub struct RegionReport {
    pub region_id: RegionId,
    /// The rows written, with the sequences the region acknowledged.
    pub written: Vec<Row>,
    pub files: Vec<SstFile>,
}

/// Writes, flushes and reads back everything under `dir`.
pub fn run(dir: &Path) -> Result<Vec<RegionReport>, Box<dyn Error>> {
    let mut engine = LocalEngine::new(dir, BUFFER_BYTES, WorkerConfig::default())?;
    for region_id in REGIONS {
        call(&mut engine, Request::create(region_id))?;
    }
    let mut written: Vec<Vec<Row>> = vec![Vec::new(); REGIONS.len()];
    for write in 0..WRITES_PER_REGION {
        for (index, region_id) in REGIONS.into_iter().enumerate() {
            let rows = write_rows(region_id, write);
            let request = Request::Write {
                region_id,
                rows: rows.clone().into(),
            };
            let Output::Written { first_sequence, .. } = call(&mut engine, request)? else {
                return Err(format!("{region_id}: a write was not acknowledged as one").into());
            };
            written[index].extend(
                (first_sequence..)
                    .zip(rows)
                    .map(|(sequence, row)| row.at_sequence(sequence)),
            );
        }
    }
    for region_id in REGIONS {
        call(&mut engine, Request::Flush { region_id })?;
    }
    let mut reports = Vec::new();
    for (region_id, written) in REGIONS.into_iter().zip(written) {
        let files = read_back(engine.ports().objects.as_ref(), region_id)?;
        reports.push(RegionReport {
            region_id,
            written,
            files,
        });
    }
    engine.shutdown()?;
    Ok(reports)
}

/// Submits `request`, runs every flush it starts, and returns its output;
/// a request answered with an error, or not answered at all, is an error.
fn call(engine: &mut LocalEngine, request: Request) -> Result<Output, Box<dyn Error>> {
    let kind = request.kind();
    let reply = engine
        .call(request)
        .map_err(|error| format!("{kind}: {error}"))?;
    Ok(reply?)
}

/// Rows of write number `write` of a region: every series in turn, one
/// row a second.
fn write_rows(region_id: RegionId, write: usize) -> Vec<RowValue> {
    (0..ROWS_PER_WRITE)
        .map(|index| {
            let n = write * ROWS_PER_WRITE + index;
            RowValue {
                series: format!("region{}/host-{:02}", region_id.0, n % SERIES_PER_REGION).into(),
                ts: 1_700_000_000_000 + n as i64 * 1_000,
                value: (n as f64).sin() * 100.0,
                fields: Vec::new(),
            }
        })
        .collect()
}

/// Lists the region's SSTs and decodes each one.
fn read_back(
    objects: &dyn ObjectStore,
    region_id: RegionId,
) -> Result<Vec<SstFile>, Box<dyn Error>> {
    let prefix = crate::ids::region_sst_prefix(region_id);
    let mut files = Vec::new();
    for path in block_on(objects.list(&prefix))?? {
        let bytes = block_on(objects.get(&path))??;
        let size_bytes = bytes.len();
        let rows = sst::decode_rows(&path, bytes)?;
        files.push(SstFile {
            path,
            size_bytes,
            rows,
        });
    }
    Ok(files)
}
