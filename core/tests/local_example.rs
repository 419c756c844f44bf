//! The `local_flush` example, run in a temporary directory: the Parquet
//! files it leaves on disk hold exactly the rows it wrote.
//!
//! The example's `main` calls [`flush_core::local::walkthrough::run`], and
//! so does this test: it checks the code `cargo run --example local_flush`
//! runs, not a copy of it.

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use flush_core::durable::objects::OBJECT_DIR;
use flush_core::memtable::Row;
use flush_core::sst;

use flush_core::local::walkthrough::{self, REGIONS, ROWS_PER_WRITE, WRITES_PER_REGION};

/// Every `.parquet` file under `dir`, by path relative to it, decoded
/// straight from disk (not through the engine's object store).
fn parquet_files_on_disk(dir: &Path) -> BTreeMap<String, Vec<Row>> {
    let mut files = BTreeMap::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(current) = dirs.pop() {
        for entry in std::fs::read_dir(&current).expect("a readable directory") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let relative = path
                .strip_prefix(dir)
                .expect("under the root")
                .to_string_lossy()
                .replace('\\', "/");
            assert!(relative.ends_with(".parquet"), "unexpected file {relative}");
            let bytes = Bytes::from(std::fs::read(&path).expect("a readable file"));
            assert_eq!(&bytes[..4], b"PAR1", "{relative} is Parquet");
            let rows = sst::decode_rows(&relative, bytes).expect("a valid SST");
            files.insert(relative, rows);
        }
    }
    files
}

#[test]
fn the_example_leaves_parquet_files_holding_exactly_the_rows_written() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let reports = walkthrough::run(dir.path()).expect("the example runs");
    // The durable object store keeps every object under `objects/`.
    let objects_dir = dir.path().join(OBJECT_DIR);
    let on_disk = parquet_files_on_disk(&objects_dir);

    assert_eq!(reports.len(), REGIONS.len());
    let mut reported_paths = 0;
    for report in &reports {
        assert_eq!(report.written.len(), WRITES_PER_REGION * ROWS_PER_WRITE);
        assert!(
            report.files.len() >= 2,
            "{}: engine-full flushes plus the final one, got {} files",
            report.region_id,
            report.files.len()
        );
        let mut read_back: Vec<Row> = Vec::new();
        for file in &report.files {
            reported_paths += 1;
            assert!(!file.rows.is_empty(), "{}: an empty SST", file.path);
            assert_eq!(
                on_disk.get(&file.path),
                Some(&file.rows),
                "{}: what the engine read back is what is on disk",
                file.path
            );
            let size_on_disk = std::fs::metadata(objects_dir.join(&file.path))
                .expect("the file exists")
                .len();
            assert_eq!(size_on_disk, file.size_bytes as u64);
            read_back.extend(file.rows.iter().cloned());
        }
        read_back.sort_by_key(|row| row.sequence);
        assert_eq!(
            read_back, report.written,
            "{}: SST rows equal the acknowledged rows, sequence for sequence",
            report.region_id
        );
    }
    assert_eq!(
        reported_paths,
        on_disk.len(),
        "no file on disk went unreported"
    );
}
