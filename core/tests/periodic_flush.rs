//! mito2's periodic flush: on a tick, a writable region whose last flush
//! (or open) is older than the worker's auto-flush interval is flushed
//! through the scheduler; a region already flushing, not writable, or
//! without data is left alone.

mod common;

use common::{rows, Scenario, R1, R2};
use flush_core::request::Request;
use flush_core::worker::{WorkerConfig, DEFAULT_AUTO_FLUSH_INTERVAL_MS};

const INTERVAL_MS: u64 = DEFAULT_AUTO_FLUSH_INTERVAL_MS;

fn scenario() -> Scenario {
    Scenario::with_config(1 << 20, WorkerConfig::default())
}

fn tick_after(scn: &mut Scenario, ms: u64) {
    scn.engine.advance_clock(ms);
    scn.engine
        .tick()
        .expect("local ports complete without waiting");
}

#[test]
fn a_region_unflushed_for_the_interval_is_flushed_on_the_next_tick() {
    let mut scn = scenario();
    scn.create(R1);
    let write = scn.write("w1", R1, rows("a", 3, 0));
    scn.expect_written(write);
    tick_after(&mut scn, INTERVAL_MS - 1);
    assert_eq!(scn.queued_jobs(), 0, "not yet due");
    tick_after(&mut scn, 1);
    assert_eq!(scn.queued_jobs(), 1, "due: one periodic flush");
    scn.run_until_idle();
    let view = scn.view(R1);
    assert_eq!((view.memtable_rows, view.files), (0, 1));
    // The flush reset the timer: nothing is due until a full interval on.
    let write = scn.write("w2", R1, rows("a", 2, 10));
    scn.expect_written(write);
    tick_after(&mut scn, INTERVAL_MS - 1);
    assert_eq!(scn.queued_jobs(), 0);
    scn.finish();
}

#[test]
fn empty_flushing_and_read_only_regions_are_left_alone() {
    let mut scn = scenario();
    scn.create(R1);
    scn.create(R2);
    // R1 flushing already (its job queued), R2 downgraded (read-only).
    let write = scn.write("w1", R1, rows("a", 3, 0));
    scn.expect_written(write);
    let flush = scn.flush("f1", R1);
    let write = scn.write("w2", R2, rows("b", 3, 0));
    scn.expect_written(write);
    let downgrade = scn.submit("downgrade", Request::Downgrade { region_id: R2 });
    assert_eq!(scn.queued_jobs(), 2);
    tick_after(&mut scn, 2 * INTERVAL_MS);
    assert_eq!(scn.queued_jobs(), 2, "no second job for a flushing region");
    scn.run_until_idle();
    scn.expect_ok(flush);
    scn.expect_ok(downgrade);
    // Both are flushed and empty now; R2 is a follower: nothing is due.
    tick_after(&mut scn, 2 * INTERVAL_MS);
    assert_eq!(scn.queued_jobs(), 0);
    scn.finish();
}

#[test]
fn periodic_flushes_are_off_without_an_interval() {
    let config = WorkerConfig {
        auto_flush_interval_ms: None,
        ..WorkerConfig::default()
    };
    let mut scn = Scenario::with_config(1 << 20, config);
    scn.create(R1);
    let write = scn.write("w1", R1, rows("a", 3, 0));
    scn.expect_written(write);
    tick_after(&mut scn, 10 * INTERVAL_MS);
    assert_eq!(scn.queued_jobs(), 0);
    scn.finish();
}
