//! The small contracts other code relies on, pinned: the stable names that
//! reports, snapshots and the simulator's oracles match on, what ids print
//! as (every error message carries them), the bug switchboard's set
//! semantics, the manifest's monotonic flush mark, and the SST reader
//! refusing a file with nulls. Found missing by `cargo mutants`
//! (BENCHMARKS.md, "Mutation score").

use std::sync::Arc;

use arrow_array::{
    Float64Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray, UInt64Array,
    UInt8Array,
};
use arrow_schema::{DataType, Field, Schema};
use bytes::Bytes;
use flush_core::buffer::WriteBufferManager;
#[cfg(feature = "planted-bugs")]
use flush_core::bugs::Bugs;
use flush_core::bugs::PlantedBug;
use flush_core::error::{ErrorKind, RequestError};
use flush_core::ids::{FileId, RegionId, RequestId};
use flush_core::manifest::{FileMeta, LeaderState, ManifestChange, RegionEdit, RegionManifest};
use flush_core::ports::JobRejected;
use flush_core::request::{FlushReason, Request};
use flush_core::schema::RegionSchema;
use flush_core::sst;

#[test]
fn error_kinds_have_stable_snake_case_names() {
    let names = [
        (ErrorKind::RegionNotFound, "region_not_found"),
        (ErrorKind::RegionExists, "region_exists"),
        (ErrorKind::RegionDropped, "region_dropped"),
        (ErrorKind::RegionClosed, "region_closed"),
        (ErrorKind::RegionTruncated, "region_truncated"),
        (ErrorKind::RegionReadOnly, "region_read_only"),
        (ErrorKind::FlushFailed, "flush_failed"),
        (ErrorKind::JobRejected, "job_rejected"),
        (ErrorKind::FreezeFailed, "freeze_failed"),
        (ErrorKind::Manifest, "manifest"),
        (ErrorKind::ObjectStore, "object_store"),
        (ErrorKind::Wal, "wal"),
        (ErrorKind::Sst, "sst"),
        (ErrorKind::WriteStallFull, "write_stall_full"),
        (ErrorKind::WriteStallTimeout, "write_stall_timeout"),
        (ErrorKind::WorkerStopped, "worker_stopped"),
        (ErrorKind::InvalidRequest, "invalid_request"),
    ];
    for (kind, name) in names {
        assert_eq!(kind.as_str(), name);
    }
}

#[test]
fn request_kinds_and_flush_reasons_have_stable_names() {
    let region_id = RegionId(1);
    let kinds = [
        (Request::create(region_id), "create"),
        (Request::Open { region_id }, "open"),
        (
            Request::Write {
                region_id,
                rows: Vec::new().into(),
            },
            "write",
        ),
        (Request::Flush { region_id }, "flush"),
        (
            Request::Alter {
                region_id,
                schema_version: 1,
                add_field: None,
            },
            "alter",
        ),
        (Request::Truncate { region_id }, "truncate"),
        (Request::Drop { region_id }, "drop"),
        (Request::Close { region_id }, "close"),
        (Request::Downgrade { region_id }, "downgrade"),
    ];
    for (request, name) in kinds {
        assert_eq!(request.kind(), name);
    }
    let reasons = [
        (FlushReason::EngineFull, "engine_full"),
        (FlushReason::Manual, "manual"),
        (FlushReason::Alter, "alter"),
        (FlushReason::Downgrading, "downgrading"),
        (FlushReason::StallRelief, "stall_relief"),
    ];
    for (reason, name) in reasons {
        assert_eq!(reason.as_str(), name);
    }
}

#[test]
fn ids_and_rejections_print_what_error_messages_need() {
    assert_eq!(RegionId(3).to_string(), "region-3");
    assert_eq!(RequestId(412).to_string(), "request-412");
    let rejected = JobRejected {
        reason: "queue full".to_string(),
    };
    assert_eq!(rejected.to_string(), "queue full");
    let error = RequestError::JobRejected {
        region_id: RegionId(3),
        reason: rejected.reason,
    };
    let message = error.to_string();
    assert!(
        message.contains("region-3") && message.contains("queue full"),
        "{message}"
    );
}

#[test]
fn planted_bugs_print_their_command_line_name() {
    for bug in PlantedBug::ALL {
        assert_eq!(bug.to_string(), bug.name());
    }
}

#[cfg(feature = "planted-bugs")]
#[test]
fn planting_a_bug_twice_keeps_it_planted() {
    let bug = PlantedBug::FreeTwice;
    let twice = Bugs::only(bug).with(bug);
    assert!(twice.has(bug));
    assert_eq!(twice, Bugs::only(bug));
}

#[test]
fn the_buffer_reports_its_size() {
    let buffer = WriteBufferManager::new(12_345);
    assert_eq!(buffer.global_size_bytes(), 12_345);
    assert_eq!(buffer.mutable_limit_bytes(), 12_345 / 2);
}

fn commit(flushed_entry_id: u64, file: u64) -> ManifestChange {
    ManifestChange::Edit {
        edit: RegionEdit {
            files_to_add: vec![FileMeta {
                region_id: RegionId(1),
                file_id: FileId(file),
                time_range: (0, 1),
                num_rows: 2,
                size_bytes: 100,
                max_sequence: flushed_entry_id,
                level: 0,
            }],
            flushed_entry_id,
            flushed_sequence: flushed_entry_id,
        },
        expected_state: LeaderState::Writable,
        epoch: 0,
    }
}

/// The flushed entry id may stay where it is (never go back): an edit at
/// the same mark is accepted.
#[test]
fn an_edit_at_the_current_flushed_entry_is_accepted() {
    let mut manifest = RegionManifest::new(RegionId(1));
    manifest.apply(&commit(5, 1)).expect("first edit");
    manifest
        .apply(&commit(5, 2))
        .expect("an edit at the same mark");
    assert_eq!(manifest.flushed_entry_id, 5);
    assert_eq!(manifest.files.len(), 2);
    assert!(
        manifest.apply(&commit(4, 3)).is_err(),
        "backwards is refused"
    );
}

/// A file with our column names but nulls in them is foreign: decoding it
/// is an error, not rows made of default values. So is a file without our
/// schema version, or with a time index that is not a millisecond
/// timestamp.
#[test]
fn an_sst_with_nulls_or_without_our_schema_is_refused() {
    let ours = RegionSchema::default().arrow_schema();
    let nullable = Arc::new(Schema::new_with_metadata(
        ours.fields()
            .iter()
            .map(|field| field.as_ref().clone().with_nullable(true))
            .collect::<Vec<Field>>(),
        ours.metadata().clone(),
    ));
    let batch = RecordBatch::try_new(
        nullable,
        vec![
            Arc::new(StringArray::from(vec![Some("cpu"), None])),
            Arc::new(TimestampMillisecondArray::from(vec![Some(1), Some(2)])),
            Arc::new(Float64Array::from(vec![Some(0.5), Some(1.5)])),
            Arc::new(UInt64Array::from(vec![Some(1), Some(2)])),
            Arc::new(UInt8Array::from(vec![Some(1), Some(1)])),
        ],
    )
    .expect("a valid batch");
    let bytes: Bytes = sst::encode_batch("x.parquet", &batch).expect("encodes");
    let error = sst::decode_rows("x.parquet", bytes).expect_err("nulls are refused");
    assert!(error.to_string().contains("series has nulls"), "{error}");

    let foreign = Arc::new(Schema::new(vec![
        Field::new("series", DataType::Utf8, false),
        Field::new("ts", DataType::Int64, false),
    ]));
    let batch = RecordBatch::try_new(
        foreign.clone(),
        vec![
            Arc::new(StringArray::from(vec!["cpu"])),
            Arc::new(Int64Array::from(vec![1])),
        ],
    )
    .expect("a valid batch");
    let bytes = sst::encode_batch("y.parquet", &batch).expect("encodes");
    let error = sst::decode_rows("y.parquet", bytes).expect_err("no schema version");
    assert!(
        error.to_string().contains("flushsim.schema_version"),
        "{error}"
    );
    let versioned = Arc::new(Schema::new_with_metadata(
        foreign.fields().to_vec(),
        ours.metadata().clone(),
    ));
    let batch = batch.with_schema(versioned).expect("same columns");
    let bytes = sst::encode_batch("z.parquet", &batch).expect("encodes");
    let error = sst::decode_rows("z.parquet", bytes).expect_err("an Int64 time index");
    assert!(
        error.to_string().contains("millisecond timestamp"),
        "{error}"
    );
}
