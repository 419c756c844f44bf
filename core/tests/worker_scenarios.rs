//! The region worker around its scheduler, with numbers: stalls, engine-full
//! flushes, DDLs and writes waiting behind a flush, lifecycle requests
//! during a flush, downgrade, manifest failures, reopen, and an SST round
//! trip through the worker.
//!
//! Each test drives a [`LocalEngine`](flush_core::local::LocalEngine)
//! through a [`Scenario`]: flush jobs wait until the test runs them, so a
//! flush can be held in flight. Every request goes into the scenario's
//! `ReplyLedger`, and `finish` checks that each got exactly one reply and
//! that the write buffer counts exactly the memtables the worker holds.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use common::{row_bytes, rows, ReplyState, Scenario, Ticket, R1, R2, R3};
use flush_core::bugs::Bugs;
#[cfg(feature = "planted-bugs")]
use flush_core::bugs::PlantedBug;
use flush_core::error::ErrorKind;
use flush_core::flush::FlushStatusView;
use flush_core::ids::{sst_path, FileId, RegionId};
use flush_core::local::block_on;
use flush_core::manifest::{LeaderState, RegionManifest};
use flush_core::memtable::{Row, RowValue};
use flush_core::request::{Output, RegionRole, Request};
use flush_core::sst;
use flush_core::worker::WorkerConfig;

/// Rows per write batch in the sized scenarios.
const BATCH_ROWS: usize = 20;
const SERIES: &str = "cpu";

/// Buffer bytes of one write batch of [`SERIES`].
fn batch_bytes() -> usize {
    BATCH_ROWS * row_bytes(SERIES)
}

fn batch(first_ts: i64) -> Vec<RowValue> {
    rows(SERIES, BATCH_ROWS, first_ts)
}

/// A buffer of ten batches: mutable limit five batches, stall at ten.
fn ten_batch_buffer() -> usize {
    10 * batch_bytes()
}

fn manifest(scn: &Scenario, region_id: RegionId) -> RegionManifest {
    scn.engine
        .ports()
        .manifests
        .get(region_id)
        .unwrap_or_else(|| panic!("{region_id} has a manifest"))
}

fn manifest_rows(scn: &Scenario, region_id: RegionId) -> u64 {
    manifest(scn, region_id)
        .files
        .values()
        .map(|f| f.num_rows)
        .sum()
}

/// Paths of every object under `data/<region>/`.
fn stored_paths(scn: &Scenario, region_id: RegionId) -> Vec<String> {
    let prefix = format!("data/{}/", region_id.0);
    block_on(scn.engine.ports().objects.list(&prefix))
        .expect("local ports never wait")
        .expect("listing a local directory")
}

fn running(epoch: u64) -> Option<FlushStatusView> {
    Some(FlushStatusView {
        running_epoch: Some(epoch),
        pending_task: false,
        pending_ddls: 0,
        pending_writes: 0,
    })
}

#[test]
fn a_write_over_the_buffer_limit_stalls_until_a_flush_frees_memory() {
    let mut scn = Scenario::new(ten_batch_buffer());
    let batch_size = batch_bytes();
    assert_eq!(scn.engine.buffer().mutable_limit_bytes(), 5 * batch_size);
    scn.create(R1);

    // Six batches push active memory over the mutable limit: the worker
    // freezes the region for an engine-full flush, held in flight.
    let mut writes: Vec<Ticket> = (0..6)
        .map(|i| scn.write(format!("w{i}"), R1, batch(i * 100)))
        .collect();
    assert_eq!(scn.buffer_bytes(), (6 * batch_size, 0));
    assert_eq!(scn.queued_jobs(), 1);
    assert_eq!(scn.view(R1).flush, running(0));

    // Four more fill the buffer exactly (used == size): not yet stalled.
    for i in 6..10 {
        writes.push(scn.write(format!("w{i}"), R1, batch(i * 100)));
    }
    assert_eq!(scn.buffer_bytes(), (10 * batch_size, 4 * batch_size));
    assert!(scn.engine.buffer().should_stall());

    // The next write stalls.
    let stalled = scn.write("w10 stalled", R1, batch(1_000));
    scn.expect_waiting(stalled);
    assert_eq!(scn.engine.worker().stalled_writes(), 1);
    assert_eq!(scn.engine.buffer().stalled_writes(), 1);
    assert_eq!(
        scn.buffer_bytes(),
        (10 * batch_size, 4 * batch_size),
        "nothing reserved"
    );
    let view = scn.view(R1);
    assert_eq!(
        (view.immutable_bytes, view.mutable_bytes),
        (6 * batch_size, 4 * batch_size)
    );

    // The flush frees the six frozen batches; the stalled write goes in.
    assert!(scn.run_one_job());
    assert_eq!(
        scn.expect_written(stalled),
        (11, 10 * BATCH_ROWS as u64 + 1)
    );
    assert_eq!(scn.engine.worker().stalled_writes(), 0);
    assert_eq!(scn.engine.buffer().stalled_writes(), 0);
    assert_eq!(scn.buffer_bytes(), (5 * batch_size, 5 * batch_size));
    let view = scn.view(R1);
    assert_eq!(
        (view.immutable_bytes, view.mutable_bytes),
        (0, 5 * batch_size)
    );
    assert_eq!((view.files, view.flushed_entry_id), (1, 6));
    assert_eq!(scn.queued_jobs(), 0, "five batches are not over the limit");
    for (index, write) in writes.into_iter().enumerate() {
        assert_eq!(scn.expect_written(write).0, index as u64 + 1);
    }
    scn.assert_accounting_balanced();
    scn.finish();
}

/// Three regions holding one, three and two batches; the write that takes
/// active memory over the limit is R2's third batch.
fn fill_three_regions(scn: &mut Scenario) {
    for region_id in [R1, R2, R3] {
        scn.create(region_id);
    }
    scn.write("r1 a", R1, batch(0));
    scn.write("r3 a", R3, batch(0));
    scn.write("r3 b", R3, batch(100));
    scn.write("r2 a", R2, batch(0));
    scn.write("r2 b", R2, batch(100));
    assert_eq!(scn.queued_jobs(), 0, "five batches are not over the limit");
    scn.write("r2 c", R2, batch(200));
}

#[test]
fn engine_full_flushes_the_region_with_the_largest_mutable_memtable() {
    let mut scn = Scenario::new(ten_batch_buffer());
    let batch_size = batch_bytes();
    fill_three_regions(&mut scn);

    assert_eq!(scn.queued_jobs(), 1);
    assert_eq!(scn.buffer_bytes(), (6 * batch_size, 3 * batch_size));
    let r2 = scn.view(R2);
    assert_eq!((r2.mutable_bytes, r2.immutable_bytes), (0, 3 * batch_size));
    assert_eq!(r2.flush, running(0));
    for (region_id, held) in [(R1, batch_size), (R3, 2 * batch_size)] {
        let view = scn.view(region_id);
        assert_eq!((view.mutable_bytes, view.flush), (held, None));
    }

    scn.run_until_idle();
    assert_eq!(manifest_rows(&scn, R2), 3 * BATCH_ROWS as u64);
    assert_eq!(scn.buffer_bytes(), (3 * batch_size, 3 * batch_size));
    scn.finish();
}

#[cfg(feature = "planted-bugs")]
#[test]
fn engine_full_picks_smallest_planted_bug_flushes_the_wrong_region() {
    let config = WorkerConfig {
        bugs: Bugs::only(PlantedBug::EngineFullPicksSmallest),
        ..Default::default()
    };
    let mut scn = Scenario::with_config(ten_batch_buffer(), config);
    fill_three_regions(&mut scn);
    assert_eq!(scn.view(R1).flush, running(0), "the smallest region");
    assert_eq!(scn.view(R2).flush, None);
    scn.finish();
}

/// R1 with a flush held in flight (`f1`, one batch) and a second batch in
/// its mutable memtable.
fn flushing_region(scn: &mut Scenario) -> Ticket {
    scn.create(R1);
    scn.write("w1", R1, batch(0));
    let f1 = scn.flush("f1", R1);
    scn.write("w2", R1, batch(100));
    assert_eq!(scn.queued_jobs(), 1);
    scn.expect_waiting(f1);
    f1
}

#[test]
fn alter_during_a_flush_waits_for_the_data_to_be_flushed_then_applies() {
    let mut scn = Scenario::new(1 << 20);
    let f1 = flushing_region(&mut scn);
    let alter = scn.alter("alter to v3", R1, 3);
    let behind = scn.write("w3 behind alter", R1, batch(200));
    scn.expect_waiting(alter);
    scn.expect_waiting(behind);
    assert_eq!(
        scn.view(R1).flush,
        Some(FlushStatusView {
            running_epoch: Some(0),
            pending_task: true,
            pending_ddls: 1,
            pending_writes: 1,
        })
    );
    assert_eq!(manifest(&scn, R1).schema_version, 0);

    // The first flush does not cover w2: the alter waits for a second one.
    assert!(scn.run_one_job());
    scn.expect_ok(f1);
    scn.expect_waiting(alter);
    assert_eq!(scn.queued_jobs(), 1);
    assert_eq!(manifest(&scn, R1).schema_version, 0);

    assert!(scn.run_one_job());
    scn.expect_ok(alter);
    assert_eq!(manifest(&scn, R1).schema_version, 3);
    assert_eq!(scn.view(R1).schema_version, 3);
    assert_eq!(manifest_rows(&scn, R1), 2 * BATCH_ROWS as u64);
    // The write behind the alter ran after it, into a fresh memtable.
    assert_eq!(scn.expect_written(behind), (3, 2 * BATCH_ROWS as u64 + 1));
    let view = scn.view(R1);
    assert_eq!((view.memtable_rows, view.flush), (BATCH_ROWS, None));
    scn.finish();
}

#[test]
fn writes_behind_a_pending_ddl_are_applied_in_request_order() {
    let mut scn = Scenario::new(1 << 20);
    flushing_region(&mut scn);
    scn.create(R2);
    scn.alter("alter", R1, 1);
    let sizes = [3, 1, 7, 2];
    let queued: Vec<(Ticket, usize)> = sizes
        .iter()
        .enumerate()
        .map(|(index, &count)| {
            let rows = rows(&format!("queued-{index}"), count, 10 * index as i64);
            (scn.write(format!("queued {index}"), R1, rows), count)
        })
        .collect();
    // Another region is not held up by R1's DDL.
    let other = scn.write("r2 meanwhile", R2, batch(0));
    assert_eq!(scn.expect_written(other), (1, 1));
    assert_eq!(scn.view(R1).flush.map(|s| s.pending_writes), Some(4));

    scn.run_until_idle();
    let mut expected_sequence = 2 * BATCH_ROWS as u64 + 1;
    for (index, (ticket, count)) in queued.into_iter().enumerate() {
        let (entry_id, first_sequence) = scn.expect_written(ticket);
        assert_eq!(entry_id, 3 + index as u64, "entry ids follow request order");
        assert_eq!(
            first_sequence, expected_sequence,
            "sequences follow request order"
        );
        expected_sequence += count as u64;
    }
    let series: Vec<String> = scn
        .engine
        .worker()
        .memtable_rows(R1)
        .into_iter()
        .map(|row| row.series)
        .collect();
    let expected: Vec<String> = sizes
        .iter()
        .enumerate()
        .flat_map(|(index, &count)| std::iter::repeat_n(format!("queued-{index}"), count))
        .collect();
    assert_eq!(series, expected);
    scn.finish();
}

/// R1 flushing (`f1`) with an alter, a write and a manual flush waiting
/// behind it; R2 a bystander holding one batch.
fn busy_region(scn: &mut Scenario) -> [Ticket; 4] {
    let f1 = flushing_region(scn);
    scn.create(R2);
    scn.write("r2 w1", R2, batch(0));
    let alter = scn.alter("alter", R1, 1);
    let write = scn.write("w3 behind alter", R1, batch(200));
    let f2 = scn.flush("f2", R1);
    assert_eq!(
        scn.view(R1).flush,
        Some(FlushStatusView {
            running_epoch: Some(0),
            pending_task: true,
            pending_ddls: 1,
            pending_writes: 1,
        })
    );
    [f1, alter, write, f2]
}

/// R1 flushing with an alter and a write queued behind it; the flush the
/// alter needs next is rejected by the job scheduler.
fn rejected_alter_flush(bugs: Bugs) -> (Scenario, [Ticket; 2]) {
    let config = WorkerConfig {
        bugs,
        ..Default::default()
    };
    let mut scn = Scenario::with_config(1 << 20, config);
    let f1 = flushing_region(&mut scn);
    let alter = scn.alter("alter", R1, 2);
    let behind = scn.write("w3 behind alter", R1, batch(200));
    scn.engine
        .ports()
        .jobs
        .reject_next
        .store(1, Ordering::Relaxed);
    assert!(scn.run_one_job());
    scn.expect_ok(f1);
    assert_eq!(scn.queued_jobs(), 0);
    let view = scn.view(R1);
    assert_eq!((view.flush, view.schema_version), (None, 0));
    assert_eq!(view.memtable_rows, BATCH_ROWS, "w2 stays, frozen");
    (scn, [alter, behind])
}

#[test]
fn a_rejected_flush_fails_the_alter_and_writes_behind_it_with_job_rejected() {
    let (mut scn, waiting) = rejected_alter_flush(Bugs::NONE);
    for ticket in waiting {
        scn.expect_err(ticket, ErrorKind::JobRejected);
    }
    scn.finish();
}

#[cfg(feature = "planted-bugs")]
#[test]
fn seed_faithful_status_removed_loses_the_alter_and_writes_behind_it() {
    let bugs = Bugs::only(PlantedBug::SeedFaithfulStatusRemoved);
    let (scn, waiting) = rejected_alter_flush(bugs);
    scn.finish_expecting_lost(&waiting);
}

#[test]
fn truncate_during_a_flush_fails_pending_requests_with_region_truncated() {
    let mut scn = Scenario::new(1 << 20);
    let batch_size = batch_bytes();
    let waiting = busy_region(&mut scn);
    let truncate = scn.submit("truncate", Request::Truncate { region_id: R1 });
    scn.expect_ok(truncate);
    for ticket in waiting {
        scn.expect_err(ticket, ErrorKind::RegionTruncated);
    }
    let view = scn.view(R1);
    assert_eq!(
        (view.memtable_rows, view.mutable_bytes, view.immutable_bytes),
        (0, 0, 0)
    );
    assert_eq!(view.flush, running(0), "the old job is still remembered");
    // The job in flight still holds R1's first batch; R2 holds one.
    assert_eq!(scn.buffer_bytes(), (2 * batch_size, batch_size));

    // The old job's commit is fenced off by the truncate.
    scn.run_until_idle();
    assert_eq!(scn.view(R1).flush, None);
    assert_eq!(manifest_rows(&scn, R1), 0);
    assert_eq!(scn.buffer_bytes(), (batch_size, batch_size));
    scn.assert_accounting_balanced();

    // The truncated region takes writes and flushes again.
    let after = scn.write("after truncate", R1, batch(300));
    assert_eq!(scn.expect_written(after), (3, 2 * BATCH_ROWS as u64 + 1));
    let flush = scn.flush("flush after truncate", R1);
    scn.run_until_idle();
    scn.expect_ok(flush);
    assert_eq!(manifest_rows(&scn, R1), BATCH_ROWS as u64);
    scn.finish();
}

#[test]
fn a_flush_asked_for_after_a_truncate_runs_after_the_fenced_job() {
    let mut scn = Scenario::new(1 << 20);
    let f1 = flushing_region(&mut scn);
    let truncate = scn.submit("truncate", Request::Truncate { region_id: R1 });
    scn.expect_ok(truncate);
    scn.expect_err(f1, ErrorKind::RegionTruncated);
    scn.write("after truncate", R1, batch(300));
    let flush = scn.flush("flush after truncate", R1);
    assert_eq!(scn.queued_jobs(), 1, "no second job beside the old one");

    // The old job fails its commit; the new flush is started, not failed.
    assert!(scn.run_one_job());
    scn.expect_waiting(flush);
    assert_eq!(scn.view(R1).flush, running(1));
    assert!(scn.run_one_job());
    scn.expect_ok(flush);
    assert_eq!(manifest_rows(&scn, R1), BATCH_ROWS as u64);
    scn.finish();
}

#[test]
fn drop_during_a_flush_fails_pending_requests_with_region_dropped() {
    let mut scn = Scenario::new(1 << 20);
    let batch_size = batch_bytes();
    let waiting = busy_region(&mut scn);
    let drop = scn.submit("drop", Request::Drop { region_id: R1 });
    scn.expect_ok(drop);
    for ticket in waiting {
        scn.expect_err(ticket, ErrorKind::RegionDropped);
    }
    assert!(!scn.engine.worker().regions().contains_key(&R1));
    assert_eq!(
        scn.buffer_bytes(),
        (2 * batch_size, batch_size),
        "the job holds one batch"
    );

    scn.run_until_idle();
    assert_eq!(
        scn.buffer_bytes(),
        (batch_size, batch_size),
        "only R2's batch is left"
    );
    scn.assert_accounting_balanced();
    let late = scn.write("write after drop", R1, batch(0));
    scn.expect_err(late, ErrorKind::RegionNotFound);
    scn.finish();
}

#[test]
fn close_during_a_flush_fails_pending_requests_and_reopen_replays_the_rest() {
    let mut scn = Scenario::new(1 << 20);
    let batch_size = batch_bytes();
    let waiting = busy_region(&mut scn);
    let close = scn.submit("close", Request::Close { region_id: R1 });
    scn.expect_ok(close);
    for ticket in waiting {
        scn.expect_err(ticket, ErrorKind::RegionClosed);
    }
    assert_eq!(scn.buffer_bytes(), (2 * batch_size, batch_size));

    // Closing does not fence the job: its commit lands in the manifest.
    scn.run_until_idle();
    assert_eq!(scn.buffer_bytes(), (batch_size, batch_size));
    scn.assert_accounting_balanced();
    assert_eq!(manifest(&scn, R1).flushed_entry_id, 1);

    // Reopening replays w2 (entry 2); the write behind the alter never ran.
    let open = scn.submit("open", Request::Open { region_id: R1 });
    scn.expect_ok(open);
    let view = scn.view(R1);
    assert_eq!(
        (
            view.epoch,
            view.files,
            view.memtable_rows,
            view.last_entry_id
        ),
        (1, 1, BATCH_ROWS, 2)
    );
    assert_eq!(scn.buffer_bytes(), (2 * batch_size, 2 * batch_size));
    scn.finish();
}

#[test]
fn close_fails_stalled_writes_with_region_closed() {
    let mut scn = Scenario::new(2 * batch_bytes());
    scn.create(R1);
    scn.create(R2);
    scn.write("w1", R1, batch(0));
    scn.write("w2", R2, batch(0));
    let stalled_r1 = scn.write("stalled r1", R1, batch(100));
    let stalled_r2 = scn.write("stalled r2", R2, batch(100));
    // The full buffer froze both regions for engine-full flushes.
    assert_eq!(scn.queued_jobs(), 2);
    assert_eq!(scn.engine.worker().stalled_writes(), 2);
    assert_eq!(scn.engine.buffer().stalled_writes(), 2);

    let close = scn.submit("close", Request::Close { region_id: R1 });
    scn.expect_ok(close);
    scn.expect_err(stalled_r1, ErrorKind::RegionClosed);
    scn.expect_waiting(stalled_r2);
    assert_eq!(scn.engine.worker().stalled_writes(), 1);
    assert_eq!(scn.engine.buffer().stalled_writes(), 1);
    // R1's job still holds its batch: the buffer stays full until it ends.
    assert_eq!(scn.buffer_bytes(), (2 * batch_bytes(), 0));

    scn.run_until_idle();
    scn.expect_written(stalled_r2);
    assert_eq!(scn.engine.buffer().stalled_writes(), 0);
    // R2's flush made room for the stalled write; the buffer, full again,
    // flushed R2 a second time.
    assert_eq!(scn.buffer_bytes(), (0, 0));
    assert_eq!(scn.view(R2).files, 2);
    scn.finish();
}

#[test]
fn a_full_stall_queue_refuses_the_next_write_at_once() {
    let config = WorkerConfig {
        max_stalled_writes: 1,
        ..Default::default()
    };
    let mut scn = Scenario::with_config(batch_bytes(), config);
    scn.create(R1);
    scn.write("fills the buffer", R1, batch(0));
    let stalled = scn.write("stalled", R1, batch(100));
    let refused = scn.write("refused", R1, batch(200));
    scn.expect_waiting(stalled);
    scn.expect_err(refused, ErrorKind::WriteStallFull);
    // A flush frees the buffer and lets the stalled write through.
    let flush = scn.flush("flush", R1);
    scn.run_until_idle();
    scn.expect_ok(flush);
    scn.expect_written(stalled);
    scn.finish();
}

/// Memory a follower holds cannot be flushed. A stalled write of that
/// region is answered as soon as it becomes a follower; another region's
/// stalled write waits out the stall timeout and is then answered too,
/// unapplied (the op-level fuzzer found both waiting forever).
#[test]
fn writes_stalled_behind_follower_memory_are_answered() {
    let config = WorkerConfig {
        stall_timeout_ms: Some(5_000),
        ..Default::default()
    };
    let mut scn = Scenario::with_config(batch_bytes(), config);
    scn.create(R1);
    scn.create(R2);
    scn.write("fills the buffer", R1, batch(0));
    let stalled_r2 = scn.write("stalled r2", R2, batch(100));
    let stalled_r1 = scn.write("stalled r1", R1, batch(200));
    let follow = scn.submit(
        "follow",
        Request::SetRole {
            region_id: R1,
            role: RegionRole::Follower,
        },
    );
    scn.expect_ok(follow);
    scn.expect_err(stalled_r1, ErrorKind::RegionReadOnly);
    scn.expect_waiting(stalled_r2);
    // The engine-full flush of R1 is lost: R1's memory stays, and no flush
    // may free it while R1 follows.
    assert!(scn
        .engine
        .lose_one_job()
        .expect("the lost job's report is handled"));
    assert_eq!(scn.queued_jobs(), 0);
    scn.engine.advance_clock(4_999);
    scn.engine.tick().expect("a tick");
    scn.expect_waiting(stalled_r2);
    scn.engine.advance_clock(1);
    scn.engine.tick().expect("a tick");
    scn.expect_err(stalled_r2, ErrorKind::WriteStallTimeout);
    assert_eq!(scn.engine.buffer().stalled_writes(), 0);
    assert_eq!(
        scn.view(R2).memtable_rows,
        0,
        "the timed-out write is not applied"
    );
    scn.finish();
}

#[test]
fn downgrade_flushes_and_commits_under_the_downgrading_state() {
    let mut scn = Scenario::new(1 << 20);
    scn.create(R1);
    scn.write("w1", R1, batch(0));
    let downgrade = scn.submit("downgrade", Request::Downgrade { region_id: R1 });
    scn.expect_waiting(downgrade);
    assert_eq!(manifest(&scn, R1).leader_state, LeaderState::Downgrading);
    let view = scn.view(R1);
    assert_eq!(
        (view.leader_state, view.flush),
        (LeaderState::Downgrading, running(0))
    );
    let refused = scn.write("write while downgrading", R1, batch(100));
    scn.expect_err(refused, ErrorKind::RegionReadOnly);

    scn.run_until_idle();
    scn.expect_ok(downgrade);
    // The edit committed while the manifest said Downgrading: a flush
    // expecting Writable would have been refused.
    let committed = manifest(&scn, R1);
    assert_eq!(committed.leader_state, LeaderState::Downgrading);
    assert_eq!((committed.files.len(), committed.flushed_entry_id), (1, 1));
    assert_eq!(manifest_rows(&scn, R1), BATCH_ROWS as u64);
    let view = scn.view(R1);
    assert_eq!(
        (view.leader_state, view.memtable_rows),
        (LeaderState::Follower, 0)
    );
    let refused = scn.write("write to a follower", R1, batch(200));
    scn.expect_err(refused, ErrorKind::RegionReadOnly);
    scn.finish();
}

#[test]
fn downgrade_during_a_writable_flush_fails_both_and_a_retry_commits() {
    let mut scn = Scenario::new(1 << 20);
    let f1 = flushing_region(&mut scn);
    let downgrade = scn.submit("downgrade", Request::Downgrade { region_id: R1 });
    scn.expect_waiting(downgrade);

    // The running flush expected Writable; the manifest now says
    // Downgrading, so its commit is refused and the merged downgrade with it.
    scn.run_until_idle();
    scn.expect_err(f1, ErrorKind::FlushFailed);
    scn.expect_err(downgrade, ErrorKind::FlushFailed);
    assert_eq!(scn.view(R1).memtable_rows, 2 * BATCH_ROWS, "no row lost");

    let retry = scn.submit("downgrade again", Request::Downgrade { region_id: R1 });
    scn.run_until_idle();
    scn.expect_ok(retry);
    assert_eq!(manifest_rows(&scn, R1), 2 * BATCH_ROWS as u64);
    assert_eq!(scn.view(R1).leader_state, LeaderState::Follower);
    scn.finish();
}

#[test]
fn manifest_failure_fails_waiters_keeps_the_data_and_a_later_flush_succeeds() {
    let mut scn = Scenario::new(1 << 20);
    scn.create(R1);
    scn.write("w1", R1, batch(0));
    let f1 = scn.flush("f1", R1);
    let alter = scn.alter("alter", R1, 1);
    let behind = scn.write("w2 behind alter", R1, batch(100));
    scn.engine
        .ports()
        .manifests
        .fail_next
        .store(1, Ordering::Relaxed);

    assert!(scn.run_one_job());
    for ticket in [f1, alter, behind] {
        scn.expect_err(ticket, ErrorKind::FlushFailed);
    }
    let view = scn.view(R1);
    assert_eq!(
        (view.memtable_rows, view.files, view.flush),
        (BATCH_ROWS, 0, None)
    );
    assert_eq!(manifest_rows(&scn, R1), 0);
    assert_eq!(
        scn.engine.ports().wal.entries(R1).len(),
        1,
        "the WAL keeps w1"
    );
    scn.assert_accounting_balanced();

    let retry = scn.flush("retry", R1);
    scn.run_until_idle();
    scn.expect_ok(retry);
    assert_eq!(manifest_rows(&scn, R1), BATCH_ROWS as u64);
    assert_eq!(scn.view(R1).memtable_rows, 0);
    assert_eq!(scn.buffer_bytes(), (0, 0));
    assert!(scn.engine.ports().wal.entries(R1).is_empty(), "trimmed");
    scn.finish();
}

#[test]
fn reopen_replays_the_wal_after_the_flushed_entry_and_purges_orphan_ssts() {
    let mut scn = Scenario::new(1 << 20);
    scn.create(R1);
    scn.write("w1", R1, batch(0));
    scn.write("w2", R1, batch(100));
    let f1 = scn.flush("f1", R1);
    scn.run_until_idle();
    scn.expect_ok(f1);
    scn.write("w3", R1, batch(200));
    scn.write("w4", R1, batch(300));
    // This flush writes its SST, then fails to commit it: it removes the
    // SST it wrote.
    scn.engine
        .ports()
        .manifests
        .fail_next
        .store(1, Ordering::Relaxed);
    let f2 = scn.flush("f2", R1);
    scn.run_until_idle();
    scn.expect_err(f2, ErrorKind::FlushFailed);
    let committed = manifest(&scn, R1);
    let listed: Vec<String> = committed
        .files
        .keys()
        .map(|file_id| sst_path(R1, *file_id))
        .collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        stored_paths(&scn, R1),
        listed,
        "the failed flush removed its SST"
    );
    // What a flush killed mid-way leaves: an object no manifest lists.
    let stray = sst_path(R1, FileId(0xdead));
    block_on(
        scn.engine
            .ports()
            .objects
            .put(&stray, Bytes::from_static(b"PAR1")),
    )
    .expect("local ports never wait")
    .expect("writing a local file");
    assert_eq!(
        stored_paths(&scn, R1).len(),
        2,
        "one committed SST, one orphan"
    );

    let close = scn.submit("close", Request::Close { region_id: R1 });
    scn.expect_ok(close);
    assert_eq!(scn.buffer_bytes(), (0, 0));
    scn.reopen_as_leader(R1);

    let view = scn.view(R1);
    assert_eq!(
        (view.epoch, view.flushed_entry_id, view.last_entry_id),
        (1, 2, 4)
    );
    assert_eq!(view.committed_sequence, 4 * BATCH_ROWS as u64);
    let replayed: Vec<u64> = scn
        .engine
        .worker()
        .memtable_rows(R1)
        .iter()
        .map(|row| row.sequence)
        .collect();
    let expected: Vec<u64> = (2 * BATCH_ROWS as u64 + 1..=4 * BATCH_ROWS as u64).collect();
    assert_eq!(replayed, expected, "w3 and w4, nothing flushed before");
    assert_eq!(stored_paths(&scn, R1), listed, "the orphan is purged");

    let next = scn.write("w5", R1, batch(400));
    assert_eq!(scn.expect_written(next), (5, 4 * BATCH_ROWS as u64 + 1));
    scn.finish();
}

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
        let files = manifest(scn, region_id).files;
        let committed: Vec<String> = files.keys().map(|id| sst_path(region_id, *id)).collect();
        assert_eq!(
            stored_paths(scn, region_id),
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
    assert!(
        manifest(&scn, R1).files.len() >= 2,
        "engine-full flushes ran"
    );
    scn.finish();
}
