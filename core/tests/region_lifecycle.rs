//! A region's life through the worker: create over a closed or dropped
//! region, truncate deleting files, downgrade, SST ids across incarnations,
//! and reopen replaying the WAL past the flushed entry (with the planted
//! bugs that get those marks wrong).
//!
//! Each test drives a [`LocalEngine`](flush_core::local::LocalEngine)
//! through a [`Scenario`](common::Scenario): flush jobs wait until the test
//! runs them, so a flush can be held in flight, and results can be held
//! back to arrive late. Every request goes into the scenario's
//! `ReplyLedger`; `finish` checks that each got exactly one reply and that
//! the write buffer counts exactly the memtables the worker holds.

mod common;

use std::sync::atomic::Ordering;

use bytes::Bytes;
use common::{batch, running, ten_batch_buffer, Scenario, BATCH_ROWS, R1};
#[cfg(feature = "planted-bugs")]
use flush_core::bugs::{Bugs, PlantedBug};
use flush_core::error::ErrorKind;
use flush_core::events::CoreEvent;
use flush_core::ids::{sst_path, FileId};
use flush_core::local::block_on;
use flush_core::manifest::LeaderState;
use flush_core::request::{RegionRole, Request};

#[test]
fn create_of_a_closed_region_opens_it_and_after_drop_starts_a_later_epoch() {
    let mut scn = Scenario::new(ten_batch_buffer());
    scn.create(R1);
    scn.write_batches(R1, 1);
    let flushed = scn.flush("flush", R1);
    scn.run_until_idle();
    scn.expect_ok(flushed);
    assert_eq!(scn.stored_paths(R1).len(), 1);

    let close = scn.submit("close", Request::Close { region_id: R1 });
    scn.expect_ok(close);
    // As mito2's create_or_open: what is on disk is opened, as leader.
    let create = scn.submit("create closed", Request::create(R1));
    scn.expect_ok(create);
    let open = scn.submit("open", Request::Open { region_id: R1 });
    scn.expect_ok(open);
    let epoch_before_drop = scn.manifest(R1).epoch;
    assert_eq!(epoch_before_drop, 1, "a reopen bumps the epoch");
    assert_eq!(scn.manifest(R1).leader_state, LeaderState::Writable);
    assert_eq!(scn.manifest(R1).files.len(), 1, "the closed region's SST");

    let drop = scn.submit("drop", Request::Drop { region_id: R1 });
    scn.expect_ok(drop);
    assert_eq!(
        scn.stored_paths(R1),
        Vec::<String>::new(),
        "drop deletes SSTs"
    );
    let open = scn.submit("open dropped", Request::Open { region_id: R1 });
    scn.expect_err(open, ErrorKind::RegionNotFound);

    scn.create(R1);
    assert_eq!(scn.manifest(R1).epoch, epoch_before_drop + 1);
    assert!(!scn.manifest(R1).dropped);
    scn.finish();
}

#[test]
fn truncate_deletes_the_region_files() {
    let mut scn = Scenario::new(ten_batch_buffer());
    scn.create(R1);
    scn.write_batches(R1, 1);
    let flushed = scn.flush("flush", R1);
    scn.run_until_idle();
    scn.expect_ok(flushed);
    assert_eq!(scn.stored_paths(R1).len(), 1);
    let truncate = scn.submit("truncate", Request::Truncate { region_id: R1 });
    scn.expect_ok(truncate);
    assert_eq!(scn.stored_paths(R1), Vec::<String>::new());
    scn.finish();
}

#[test]
fn downgrading_an_empty_region_makes_it_a_follower_at_once() {
    let mut scn = Scenario::new(ten_batch_buffer());
    scn.create(R1);
    let downgrade = scn.submit("downgrade", Request::Downgrade { region_id: R1 });
    scn.expect_ok(downgrade);
    assert_eq!(scn.queued_jobs(), 0, "nothing to flush");
    let view = scn.engine.worker().inspect();
    assert_eq!(view.regions[&R1].leader_state, LeaderState::Follower);
    scn.finish();
}

#[test]
fn downgrade_flushes_and_commits_under_the_downgrading_state() {
    let mut scn = Scenario::new(1 << 20);
    scn.create(R1);
    scn.write("w1", R1, batch(0));
    let downgrade = scn.submit("downgrade", Request::Downgrade { region_id: R1 });
    scn.expect_waiting(downgrade);
    assert_eq!(scn.manifest(R1).leader_state, LeaderState::Downgrading);
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
    let committed = scn.manifest(R1);
    assert_eq!(committed.leader_state, LeaderState::Downgrading);
    assert_eq!((committed.files.len(), committed.flushed_entry_id), (1, 1));
    assert_eq!(scn.manifest_rows(R1), BATCH_ROWS as u64);
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
fn sst_ids_differ_across_incarnations_so_no_flush_overwrites_another() {
    let mut scn = Scenario::new(ten_batch_buffer());
    scn.create(R1);
    for round in 0..2 {
        scn.write_batches(R1, 1);
        let flushed = scn.flush("flush", R1);
        scn.run_until_idle();
        scn.expect_ok(flushed);
        if round == 0 {
            let close = scn.submit("close", Request::Close { region_id: R1 });
            scn.expect_ok(close);
            let open = scn.submit("open", Request::Open { region_id: R1 });
            scn.expect_ok(open);
            let lead = scn.submit(
                "lead",
                Request::SetRole {
                    region_id: R1,
                    role: RegionRole::Leader,
                },
            );
            scn.expect_ok(lead);
        }
    }
    let manifest = scn.manifest(R1);
    assert_eq!(manifest.files.len(), 2, "{:?}", manifest.files.keys());
    let rows: u64 = manifest.files.values().map(|file| file.num_rows).sum();
    assert_eq!(rows, 2 * BATCH_ROWS as u64);
    assert_eq!(scn.stored_paths(R1).len(), 2);
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
    let committed = scn.manifest(R1);
    let listed: Vec<String> = committed
        .files
        .keys()
        .map(|file_id| sst_path(R1, *file_id))
        .collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        scn.stored_paths(R1),
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
        scn.stored_paths(R1).len(),
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
    assert_eq!(scn.stored_paths(R1), listed, "the orphan is purged");

    let next = scn.write("w5", R1, batch(400));
    assert_eq!(scn.expect_written(next), (5, 4 * BATCH_ROWS as u64 + 1));
    scn.finish();
}

#[test]
fn reopen_reports_how_many_wal_entries_it_replayed() {
    let mut scn = Scenario::new(ten_batch_buffer());
    scn.create(R1);
    scn.write_batches(R1, 3);
    let close = scn.submit("close", Request::Close { region_id: R1 });
    scn.expect_ok(close);
    let open = scn.submit("open", Request::Open { region_id: R1 });
    scn.expect_ok(open);
    let replayed: Vec<CoreEvent> = scn
        .events()
        .into_iter()
        .filter(|e| e.mark() == "wal_replayed")
        .collect();
    assert_eq!(
        replayed,
        vec![CoreEvent::WalReplayed {
            region_id: R1,
            entries: 3,
        }]
    );
    scn.finish();
}

#[cfg(feature = "planted-bugs")]
#[test]
fn flushed_entry_past_last_records_one_entry_too_many() {
    for (bugs, expected) in [
        (Bugs::NONE, 3),
        (Bugs::only(PlantedBug::FlushedEntryPastLast), 4),
    ] {
        let mut scn = Scenario::with_bugs(ten_batch_buffer(), bugs);
        scn.create(R1);
        scn.write_batches(R1, 3);
        let flushed = scn.flush("flush", R1);
        scn.run_until_idle();
        scn.expect_ok(flushed);
        assert_eq!(scn.manifest(R1).flushed_entry_id, expected, "{bugs:?}");
        scn.finish();
    }
}

#[cfg(feature = "planted-bugs")]
#[test]
fn wal_truncate_past_flushed_discards_the_next_entry() {
    for (bugs, expected) in [
        (Bugs::NONE, vec![4]),
        (Bugs::only(PlantedBug::WalTruncatePastFlushed), vec![]),
    ] {
        let mut scn = Scenario::with_bugs(ten_batch_buffer(), bugs);
        scn.create(R1);
        scn.write_batches(R1, 3);
        let flushed = scn.flush("flush", R1);
        scn.write_batches(R1, 1);
        scn.run_until_idle();
        scn.expect_ok(flushed);
        let left: Vec<u64> = scn
            .engine
            .ports()
            .wal
            .entries(R1)
            .iter()
            .map(|e| e.entry_id)
            .collect();
        assert_eq!(left, expected, "{bugs:?}");
        scn.finish();
    }
}
