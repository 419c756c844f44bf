//! What the worker holds, read back: SSTs and memtables together hold
//! exactly the acknowledged rows, and the worker's views show its id,
//! regions and flush statuses.
//!
//! Each test drives a [`LocalEngine`](flush_core::local::LocalEngine)
//! through a [`Scenario`](common::Scenario): flush jobs wait until the test
//! runs them, so a flush can be held in flight, and results can be held
//! back to arrive late. Every request goes into the scenario's
//! `ReplyLedger`; `finish` checks that each got exactly one reply and that
//! the write buffer counts exactly the memtables the worker holds.

mod common;

use std::collections::BTreeMap;

use common::{batch_bytes, rows, running, ten_batch_buffer, ReplyState, Scenario, Ticket, R1, R2};
use flush_core::flush::FlushStatusView;
use flush_core::ids::{sst_path, RegionId};
use flush_core::local::block_on;
use flush_core::memtable::{Row, RowValue};
use flush_core::request::Output;
use flush_core::sst;
use flush_core::worker::WorkerConfig;

/// Every row in the regions' SSTs (decoded from the object store) and
/// memtables, keyed by (region, sequence); panics on a row stored twice.
fn stored_rows(scn: &Scenario, regions: &[RegionId]) -> BTreeMap<(RegionId, u64), Row> {
    let objects = &scn.engine.ports().objects;
    let mut found = BTreeMap::new();
    let mut add = |region_id: RegionId, row: Row, place: &str| {
        let key = (region_id, row.sequence);
        if let Some(earlier) = found.insert(key, row) {
            panic!(
                "{region_id} sequence {} is stored twice ({place}): {earlier:?}",
                key.1
            );
        }
    };
    for &region_id in regions {
        let files = scn.manifest(region_id).files;
        let committed: Vec<String> = files.keys().map(|id| sst_path(region_id, *id)).collect();
        assert_eq!(
            scn.stored_paths(region_id),
            committed,
            "the store holds exactly the committed SSTs"
        );
        for (file_id, meta) in &files {
            let path = sst_path(region_id, *file_id);
            let bytes = block_on(objects.get(&path))
                .expect("local ports never wait")
                .expect("a committed SST is readable");
            assert_eq!(bytes.len() as u64, meta.size_bytes, "{path}");
            let file_rows = sst::decode_rows(&path, bytes).expect("a valid Parquet SST");
            assert_eq!(file_rows.len() as u64, meta.num_rows, "{path}");
            let min_ts = file_rows.iter().map(|r| r.ts).min();
            let max_ts = file_rows.iter().map(|r| r.ts).max();
            assert_eq!(
                (min_ts, max_ts),
                (Some(meta.time_range.0), Some(meta.time_range.1))
            );
            let max_sequence = file_rows.iter().map(|r| r.sequence).max();
            assert_eq!(max_sequence, Some(meta.max_sequence), "{path}");
            for row in file_rows {
                add(region_id, row, &path);
            }
        }
        for row in scn.engine.worker().memtable_rows(region_id) {
            add(region_id, row, "memtable");
        }
    }
    found
}

/// The rows the writes acknowledged so far stand for, keyed like
/// [`stored_rows`]. Writes still stalled are skipped.
fn acknowledged_rows(
    scn: &mut Scenario,
    writes: &[(Ticket, RegionId, Vec<RowValue>)],
) -> BTreeMap<(RegionId, u64), Row> {
    let mut acknowledged = BTreeMap::new();
    for (ticket, region_id, values) in writes {
        let first_sequence = match scn.ledger.state(*ticket) {
            ReplyState::Answered(Ok(Output::Written { first_sequence, .. })) => *first_sequence,
            ReplyState::Waiting => continue,
            other => panic!("write to {region_id}: unexpected {other:?}"),
        };
        for (index, value) in values.iter().enumerate() {
            let sequence = first_sequence + index as u64;
            let row = Row {
                series: value.series.clone(),
                ts: value.ts,
                value: value.value,
                sequence,
                fields: Vec::new(),
            };
            acknowledged.insert((*region_id, sequence), row);
        }
    }
    acknowledged
}

#[test]
fn ssts_and_memtables_hold_exactly_the_acknowledged_rows() {
    // Small enough that engine-full flushes and stalls happen on the way.
    let mut scn = Scenario::new(5 * batch_bytes());
    scn.create(R1);
    scn.create(R2);
    let mut writes = Vec::new();
    for step in 0..40_i64 {
        let region_id = if step % 3 == 0 { R2 } else { R1 };
        let series = format!("host-{}", step % 4);
        let values = rows(&series, 5 + (step as usize % 7), step * 1_000);
        let ticket = scn.write(format!("write {step}"), region_id, values.clone());
        writes.push((ticket, region_id, values));
        if step == 17 {
            scn.flush("manual flush r2", R2);
        }
        if step % 10 == 9 {
            scn.run_one_job();
        }
    }
    // Mid-run, with a flush in flight and writes stalled: everything
    // acknowledged so far is stored exactly once, nothing else is.
    let mid_acked = acknowledged_rows(&mut scn, &writes);
    assert!(scn.queued_jobs() > 0, "a flush is in flight");
    assert!(
        scn.engine.worker().stalled_writes() > 0,
        "writes are stalled"
    );
    let mid_stored = stored_rows(&scn, &[R1, R2]);
    assert_eq!(mid_stored, mid_acked);

    scn.run_until_idle();
    let acked = acknowledged_rows(&mut scn, &writes);
    assert_eq!(
        acked.len(),
        writes.iter().map(|(_, _, v)| v.len()).sum::<usize>(),
        "every write was acknowledged in the end"
    );
    assert_eq!(stored_rows(&scn, &[R1, R2]), acked);
    assert!(scn.manifest(R1).files.len() >= 2, "engine-full flushes ran");
    scn.finish();
}

#[test]
fn the_worker_shows_its_id_regions_and_flush_statuses() {
    let config = WorkerConfig {
        worker_id: 7,
        ..Default::default()
    };
    let mut scn = Scenario::with_config(ten_batch_buffer(), config);
    scn.create(R1);
    scn.create(R2);
    scn.write_batches(R1, 1);
    let flushed = scn.flush("flush", R1);
    assert_eq!(scn.engine.worker().worker_id(), 7);
    let view = scn.engine.worker().inspect();
    assert_eq!(view.worker_id, 7);
    assert!(
        view.orphan_statuses.is_empty(),
        "R1 flushes but is open: no orphan"
    );
    assert_eq!(
        scn.engine
            .worker()
            .regions()
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        vec![R1, R2]
    );
    let statuses: Vec<(RegionId, FlushStatusView)> =
        scn.engine.worker().scheduler().statuses().collect();
    assert_eq!(statuses.len(), 1);
    assert_eq!((statuses[0].0, Some(statuses[0].1)), (R1, running(0)));
    scn.run_until_idle();
    scn.expect_ok(flushed);
    scn.finish();
}
