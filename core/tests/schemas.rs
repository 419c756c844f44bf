//! Schemas that alter: an alter adds a nullable field once the region's
//! memtables are flushed; each flush writes its memtable with the schema
//! it was written under; old and new SSTs read back as the Parquet files
//! they are, nulls where a row did not set a field.

mod common;

use std::sync::Arc;

use common::{rows, Scenario, R1};
use flush_core::error::ErrorKind;
use flush_core::ids::sst_path;
use flush_core::local::block_on;
use flush_core::memtable::{FieldValue, RowValue};
use flush_core::request::Request;
use flush_core::schema::RegionSchema;
use flush_core::sst::{self, DecodedSst};

fn alter(scn: &mut Scenario, version: u64, field: &str) -> common::Ticket {
    let request = Request::Alter {
        region_id: R1,
        schema_version: version,
        add_field: Some(field.to_string()),
    };
    scn.submit(format!("alter to {version} adding {field}"), request)
}

fn with_field(mut rows: Vec<RowValue>, name: &str, every: usize) -> Vec<RowValue> {
    for (index, row) in rows.iter_mut().enumerate() {
        if index % every == 0 {
            row.fields.push(FieldValue {
                name: name.into(),
                value: index as f64 + 0.25,
            });
        }
    }
    rows
}

/// Every committed SST of R1, read back with its schema, oldest first.
fn ssts(scn: &Scenario) -> Vec<DecodedSst> {
    let manifest = scn.engine.ports().manifests.get(R1).expect("a manifest");
    manifest
        .files
        .keys()
        .map(|file_id| {
            let path = sst_path(R1, *file_id);
            let bytes = block_on(scn.engine.ports().objects.get(&path))
                .expect("local ports never wait")
                .expect("a committed SST");
            sst::decode_sst(&path, bytes).expect("a valid SST")
        })
        .collect()
}

#[test]
fn each_flush_writes_its_memtable_with_the_schema_it_was_written_under() {
    let mut scn = Scenario::new(1 << 20);
    scn.create(R1);
    let old_rows = rows("a", 4, 0);
    let write = scn.write("w1", R1, old_rows.clone());
    scn.expect_written(write);
    // The alter waits for the flush of the rows written before it.
    let altered = alter(&mut scn, 3, "cpu");
    scn.expect_waiting(altered);
    scn.run_until_idle();
    scn.expect_ok(altered);
    assert_eq!(scn.view(R1).schema_version, 3);
    let new_rows = with_field(rows("b", 4, 100), "cpu", 2);
    let write = scn.write("w2", R1, new_rows.clone());
    scn.expect_written(write);
    let flush = scn.flush("f2", R1);
    scn.run_until_idle();
    scn.expect_ok(flush);

    let files = ssts(&scn);
    assert_eq!(files.len(), 2);
    assert_eq!(files[0].schema, RegionSchema::default());
    let cpu = RegionSchema {
        version: 3,
        added_fields: vec!["cpu".to_string()],
    };
    assert_eq!(files[1].schema, cpu);
    let values = |file: &DecodedSst| -> Vec<(Arc<str>, i64, Vec<FieldValue>)> {
        let mut rows: Vec<_> = file
            .rows
            .iter()
            .map(|r| (r.series.clone(), r.ts, r.fields.clone()))
            .collect();
        rows.sort_by_key(|(_, ts, _)| *ts);
        rows
    };
    let expected = |rows: &[RowValue]| -> Vec<(Arc<str>, i64, Vec<FieldValue>)> {
        rows.iter()
            .map(|r| (r.series.clone(), r.ts, r.fields.clone()))
            .collect()
    };
    assert_eq!(values(&files[0]), expected(&old_rows));
    assert_eq!(values(&files[1]), expected(&new_rows));
    assert!(
        files[1].rows.iter().any(|r| r.fields.is_empty()),
        "nulls read back as unset"
    );
    scn.finish();
}

#[test]
fn a_write_must_name_fields_the_schema_has_once_each() {
    let mut scn = Scenario::new(1 << 20);
    scn.create(R1);
    let unknown = scn.write("unknown field", R1, with_field(rows("a", 2, 0), "cpu", 1));
    scn.expect_err(unknown, ErrorKind::UnknownColumn);
    let altered = alter(&mut scn, 1, "cpu");
    scn.expect_ok(altered);
    let mut twice = with_field(rows("a", 1, 0), "cpu", 1);
    let again = twice[0].fields[0].clone();
    twice[0].fields.push(again);
    let twice = scn.write("field twice", R1, twice);
    scn.expect_err(twice, ErrorKind::InvalidRequest);
    let known = scn.write("known field", R1, with_field(rows("a", 2, 0), "cpu", 1));
    scn.expect_written(known);
    for name in ["", "ts", "value", "__sequence", "a-b"] {
        let bad = alter(&mut scn, 9, name);
        scn.expect_err(bad, ErrorKind::InvalidRequest);
    }
    scn.finish();
}

/// The schema lives in the manifest: a reopened region keeps its fields,
/// and rows replayed from the WAL keep their values.
#[test]
fn fields_survive_a_reopen_in_the_manifest_and_the_wal() {
    let mut scn = Scenario::new(1 << 20);
    scn.create(R1);
    let altered = alter(&mut scn, 2, "mem");
    scn.expect_ok(altered);
    let written = with_field(rows("a", 3, 0), "mem", 1);
    let write = scn.write("w1", R1, written.clone());
    scn.expect_written(write);
    let close = scn.submit("close", Request::Close { region_id: R1 });
    scn.expect_ok(close);
    scn.reopen_as_leader(R1);
    let view = scn.view(R1);
    assert_eq!((view.schema_version, view.memtable_rows), (2, 3));
    let replayed: Vec<Vec<FieldValue>> = scn
        .engine
        .worker()
        .memtable_rows(R1)
        .into_iter()
        .map(|row| row.fields)
        .collect();
    let fields: Vec<Vec<FieldValue>> = written.into_iter().map(|row| row.fields).collect();
    assert_eq!(replayed, fields);
    scn.finish();
}
