//! Requests that wait behind a running flush, and how its end answers them:
//! alters and the writes queued behind them, merged flushes, a rejected or
//! failed flush, a truncate, drop or close arriving mid-flush, a result
//! that arrives after a truncate, and the planted bugs that lose or answer
//! such requests wrongly.
//!
//! Each test drives a [`LocalEngine`](flush_core::local::LocalEngine)
//! through a [`Scenario`](common::Scenario): flush jobs wait until the test
//! runs them, so a flush can be held in flight, and results can be held
//! back to arrive late. Every request goes into the scenario's
//! `ReplyLedger`; `finish` checks that each got exactly one reply and that
//! the write buffer counts exactly the memtables the worker holds.

mod common;

use std::sync::atomic::Ordering;

use common::{
    batch, batch_bytes, rows, running, ten_batch_buffer, Scenario, Ticket, BATCH_ROWS, R1, R2,
};
use flush_core::bugs::Bugs;
#[cfg(feature = "planted-bugs")]
use flush_core::bugs::PlantedBug;
use flush_core::error::ErrorKind;
use flush_core::events::CoreEvent;
use flush_core::flush::FlushStatusView;
use flush_core::manifest::LeaderState;
use flush_core::request::Request;
use flush_core::worker::WorkerConfig;

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
    assert_eq!(scn.manifest(R1).schema_version, 0);

    // The first flush does not cover w2: the alter waits for a second one.
    assert!(scn.run_one_job());
    scn.expect_ok(f1);
    scn.expect_waiting(alter);
    assert_eq!(scn.queued_jobs(), 1);
    assert_eq!(scn.manifest(R1).schema_version, 0);

    assert!(scn.run_one_job());
    scn.expect_ok(alter);
    assert_eq!(scn.manifest(R1).schema_version, 3);
    assert_eq!(scn.view(R1).schema_version, 3);
    assert_eq!(scn.manifest_rows(R1), 2 * BATCH_ROWS as u64);
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
        .map(|row| row.series.to_string())
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
    assert_eq!(scn.manifest_rows(R1), 0);
    assert_eq!(scn.buffer_bytes(), (batch_size, batch_size));
    scn.assert_accounting_balanced();

    // The truncated region takes writes and flushes again.
    let after = scn.write("after truncate", R1, batch(300));
    assert_eq!(scn.expect_written(after), (3, 2 * BATCH_ROWS as u64 + 1));
    let flush = scn.flush("flush after truncate", R1);
    scn.run_until_idle();
    scn.expect_ok(flush);
    assert_eq!(scn.manifest_rows(R1), BATCH_ROWS as u64);
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
    assert_eq!(scn.manifest_rows(R1), BATCH_ROWS as u64);
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
fn dropping_a_busy_region_counts_every_waiter_it_fails() {
    let mut scn = Scenario::new(ten_batch_buffer());
    scn.create(R1);
    scn.write_batches(R1, 1);
    let running_flush = scn.flush("running flush", R1);
    scn.write_batches(R1, 1);
    let pending_flush = scn.flush("pending flush", R1);
    let alter = scn.submit(
        "alter",
        Request::Alter {
            region_id: R1,
            schema_version: 2,
            add_field: None,
        },
    );
    let behind = [
        scn.write("behind alter 1", R1, batch(500)),
        scn.write("behind alter 2", R1, batch(600)),
    ];
    let drop = scn.submit("drop", Request::Drop { region_id: R1 });
    scn.expect_ok(drop);
    for ticket in [running_flush, pending_flush, alter]
        .into_iter()
        .chain(behind)
    {
        scn.expect_err(ticket, ErrorKind::RegionDropped);
    }
    let failed: Vec<CoreEvent> = scn
        .events()
        .into_iter()
        .filter(|e| e.mark() == "pending_failed")
        .collect();
    assert_eq!(
        failed,
        vec![CoreEvent::PendingFailed {
            region_id: R1,
            kind: ErrorKind::RegionDropped,
            count: 5,
        }],
        "one running flush, one pending flush, one DDL, two writes"
    );
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
    assert_eq!(scn.manifest(R1).flushed_entry_id, 1);

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
fn a_flush_result_arriving_after_a_truncate_is_ignored() {
    let mut scn = Scenario::new(ten_batch_buffer());
    scn.create(R1);
    scn.write_batches(R1, 1);
    let flushed = scn.flush("flush", R1);
    // The job commits, but its result reaches the worker only after the
    // truncate (a full queue retried, say).
    scn.hold_results();
    assert!(scn.run_one_job(), "a flush job was queued");
    let truncate = scn.submit("truncate", Request::Truncate { region_id: R1 });
    scn.expect_ok(truncate);
    scn.expect_err(flushed, ErrorKind::RegionTruncated);
    scn.write_batches(R1, 1);
    let mut before = scn.engine.worker().inspect().regions[&R1].clone();
    assert_eq!(before.flush, running(0), "the fenced job still counts");

    scn.deliver_held_results();
    assert_eq!(scn.count("stale_flush_ignored"), 1);
    assert_eq!(scn.count("flush_applied"), 0);
    let after = scn.engine.worker().inspect().regions[&R1].clone();
    assert_eq!(
        after.files, 0,
        "the truncated incarnation's SST is not added"
    );
    before.flush = None;
    assert_eq!(after, before, "only the fenced job's status is gone");
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
    assert_eq!(scn.manifest_rows(R1), 0);
    assert_eq!(
        scn.engine.ports().wal.entries(R1).len(),
        1,
        "the WAL keeps w1"
    );
    scn.assert_accounting_balanced();

    let retry = scn.flush("retry", R1);
    scn.run_until_idle();
    scn.expect_ok(retry);
    assert_eq!(scn.manifest_rows(R1), BATCH_ROWS as u64);
    assert_eq!(scn.view(R1).memtable_rows, 0);
    assert_eq!(scn.buffer_bytes(), (0, 0));
    assert!(scn.engine.ports().wal.entries(R1).is_empty(), "trimmed");
    scn.finish();
}

#[test]
fn a_flush_with_no_waiter_fails_without_a_pending_failed_event() {
    let mut scn = Scenario::new(ten_batch_buffer());
    scn.create(R1);
    scn.engine
        .ports()
        .faults
        .fail_freezes
        .store(1, Ordering::Relaxed);
    scn.write_batches(R1, 6);
    assert_eq!(scn.count("freeze_failed"), 1, "the engine-full flush");
    assert_eq!(scn.count("pending_failed"), 0, "nobody waited on it");
    let flushed = scn.flush("flush", R1);
    scn.run_until_idle();
    scn.expect_ok(flushed);
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
    assert_eq!(scn.manifest_rows(R1), 2 * BATCH_ROWS as u64);
    assert_eq!(scn.view(R1).leader_state, LeaderState::Follower);
    scn.finish();
}

#[cfg(feature = "planted-bugs")]
#[test]
fn reply_before_commit_answers_a_manual_flush_while_its_job_waits() {
    for (bugs, answered_early) in [
        (Bugs::NONE, false),
        (Bugs::only(PlantedBug::ReplyBeforeCommit), true),
    ] {
        let mut scn = Scenario::with_bugs(ten_batch_buffer(), bugs);
        scn.create(R1);
        scn.write_batches(R1, 1);
        let flushed = scn.flush("flush", R1);
        assert_eq!(scn.queued_jobs(), 1);
        if answered_early {
            scn.expect_ok(flushed);
        } else {
            scn.ledger.assert_waiting(flushed);
        }
        scn.run_until_idle();
        scn.expect_ok(flushed);
        scn.finish();
    }
}
