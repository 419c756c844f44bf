//! Memory: writes that stall on a full buffer and what releases them, the
//! engine-full rule's pick, stall relief when no flush runs, a full stall
//! queue, and stalls no flush can end (memory a follower holds).
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
    batch, batch_bytes, running, ten_batch_buffer, Scenario, Ticket, BATCH_ROWS, R1, R2, R3,
};
#[cfg(feature = "planted-bugs")]
use flush_core::bugs::{Bugs, PlantedBug};
use flush_core::error::ErrorKind;
use flush_core::events::CoreEvent;
use flush_core::request::{Output, RegionRole, Request};
use flush_core::worker::WorkerConfig;

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
    assert_eq!(scn.manifest_rows(R2), 3 * BATCH_ROWS as u64);
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

#[test]
fn engine_full_skips_a_flushing_region_even_with_the_largest_memtable() {
    let mut scn = Scenario::new(ten_batch_buffer());
    scn.create(R1);
    scn.create(R2);
    scn.write_batches(R1, 1);
    let manual = scn.flush("manual r1", R1);
    scn.write_batches(R1, 3);
    scn.write_batches(R2, 2);
    assert_eq!(
        scn.queued_jobs(),
        1,
        "five mutable batches: not over the limit"
    );
    scn.write_batches(R1, 1);
    let picks: Vec<CoreEvent> = scn
        .events()
        .into_iter()
        .filter(|e| e.mark() == "engine_full_flush")
        .collect();
    assert_eq!(
        picks,
        vec![CoreEvent::EngineFullFlush {
            region_id: R2,
            picked_bytes: 2 * batch_bytes(),
            largest_bytes: 2 * batch_bytes(),
        }],
        "R1's four batches wait behind its running flush"
    );
    assert_eq!(scn.flush_status(R2), running(0));
    assert_eq!(scn.queued_jobs(), 2);
    scn.run_until_idle();
    scn.expect_ok(manual);
    scn.finish();
}

#[test]
fn engine_full_picks_no_empty_region() {
    let mut scn = Scenario::new(ten_batch_buffer());
    scn.create(R1);
    scn.create(R2);
    scn.write_batches(R1, 1);
    let manual = scn.flush("manual r1", R1);
    scn.write_batches(R1, 6);
    assert_eq!(
        scn.count("engine_full_flush"),
        0,
        "R1 is flushing and R2 holds nothing"
    );
    assert_eq!(scn.flush_status(R2), None);
    scn.run_until_idle();
    scn.expect_ok(manual);
    scn.finish();
}

/// R1's engine-full flush (six batches) held in flight, then R2 three
/// batches and R1 one more: the buffer is exactly full, nothing stalled.
fn full_buffer_with_a_held_flush() -> Scenario {
    let mut scn = Scenario::new(ten_batch_buffer());
    scn.create(R1);
    scn.create(R2);
    scn.write_batches(R1, 6);
    assert_eq!(
        scn.queued_jobs(),
        1,
        "six batches are over the mutable limit"
    );
    assert_eq!(scn.flush_status(R1), running(0));
    scn.write_batches(R2, 3);
    let ticket = scn.write("r1 seventh", R1, batch(1_000));
    scn.expect_ok(ticket);
    assert!(scn.engine.buffer().should_stall());
    assert_eq!(scn.queued_jobs(), 1);
    scn
}

/// Fails R1's held flush at its manifest commit: its memory stays used.
fn fail_the_held_flush(scn: &mut Scenario) {
    scn.engine
        .ports()
        .manifests
        .fail_next
        .store(1, Ordering::Relaxed);
    assert!(scn.run_one_job(), "a flush job was queued");
    assert_eq!(scn.count("flush_failed"), 1);
    assert!(
        scn.engine.buffer().should_stall(),
        "a failed flush frees nothing"
    );
}

#[test]
fn stall_relief_flushes_the_fullest_region_once_no_flush_runs() {
    let mut scn = full_buffer_with_a_held_flush();
    let stalled = scn.write("stalled", R2, batch(2_000));
    scn.ledger.assert_waiting(stalled);
    assert_eq!(scn.engine.worker().stalled_writes(), 1);
    scn.tick();
    assert_eq!(
        (scn.queued_jobs(), scn.count("stall_relief_flush")),
        (1, 0),
        "a flush is running: it will free memory, no relief flush"
    );

    fail_the_held_flush(&mut scn);
    let reliefs: Vec<CoreEvent> = scn
        .events()
        .into_iter()
        .filter(|e| e.mark() == "stall_relief_flush")
        .collect();
    assert_eq!(
        reliefs,
        vec![CoreEvent::StallReliefFlush { region_id: R1 }],
        "R1 holds seven batches, R2 three"
    );
    assert_eq!(scn.queued_jobs(), 1);
    assert_eq!(scn.flush_status(R1), running(0));
    assert_eq!(scn.flush_status(R2), None);
    scn.ledger.assert_waiting(stalled);

    assert!(scn.run_one_job(), "a flush job was queued");
    assert!(matches!(
        scn.ledger.reply(stalled),
        Ok(Output::Written { .. })
    ));
    let released: Vec<CoreEvent> = scn
        .events()
        .into_iter()
        .filter(|e| e.mark() == "stall_released")
        .collect();
    assert_eq!(
        released,
        vec![CoreEvent::StallReleased { count: 1 }],
        "stalled writes are released once, when memory allows, never empty"
    );
    assert_eq!(scn.engine.worker().stalled_writes(), 0);
    scn.finish();
}

#[test]
fn a_full_buffer_with_no_stalled_write_starts_no_relief_flush() {
    let mut scn = full_buffer_with_a_held_flush();
    fail_the_held_flush(&mut scn);
    scn.tick();
    assert_eq!(
        (scn.queued_jobs(), scn.count("stall_relief_flush")),
        (0, 0),
        "no write waits: nothing to relieve"
    );
    let flushed = scn.flush("flush r1", R1);
    scn.run_until_idle();
    scn.expect_ok(flushed);
    assert!(!scn.engine.buffer().should_stall());
    assert_eq!(scn.count("stall_released"), 0, "nothing was stalled");
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
