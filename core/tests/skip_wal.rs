//! Regions that skip the WAL (mito2's `skip_wal` region option): writes
//! are acknowledged without a log entry, so the memtables are the only
//! copy of unflushed rows. Closing such a region flushes it first and
//! fails if that flush fails; a stop or a drop loses them by design.

mod common;

use common::{rows, Scenario, R1};
use flush_core::bugs::Bugs;
#[cfg(feature = "planted-bugs")]
use flush_core::bugs::PlantedBug;
use flush_core::error::ErrorKind;
use flush_core::request::{RegionOptions, RegionRole, Request};
use flush_core::worker::WorkerConfig;

fn scenario(bugs: Bugs) -> Scenario {
    let config = WorkerConfig {
        bugs,
        ..WorkerConfig::default()
    };
    Scenario::with_config(1 << 20, config)
}

fn create_unlogged(scn: &mut Scenario) {
    let create = Request::Create {
        region_id: R1,
        options: RegionOptions::SKIP_WAL,
    };
    let ticket = scn.submit("create without wal", create);
    scn.expect_ok(ticket);
}

fn write_rows(scn: &mut Scenario, label: &str, count: usize) {
    let write = scn.write(label, R1, rows("a", count, 0));
    scn.expect_written(write);
}

fn reopen(scn: &mut Scenario) {
    let open = scn.submit("open", Request::Open { region_id: R1 });
    scn.expect_ok(open);
    let role = RegionRole::Leader;
    let lead = scn.submit(
        "lead",
        Request::SetRole {
            region_id: R1,
            role,
        },
    );
    scn.expect_ok(lead);
}

#[test]
fn writes_are_acknowledged_without_a_wal_entry_and_the_option_survives_reopen() {
    let mut scn = scenario(Bugs::NONE);
    create_unlogged(&mut scn);
    write_rows(&mut scn, "w1", 3);
    assert!(scn.engine.ports().wal.entries(R1).is_empty());
    assert!(scn
        .engine
        .ports()
        .manifests
        .get(R1)
        .is_some_and(|m| m.skip_wal));
    assert_eq!(scn.view(R1).memtable_rows, 3);
    scn.finish();
}

#[test]
fn close_flushes_first_and_answers_after_the_flush() {
    let mut scn = scenario(Bugs::NONE);
    create_unlogged(&mut scn);
    write_rows(&mut scn, "w1", 3);
    let close = scn.submit("close", Request::Close { region_id: R1 });
    scn.expect_waiting(close);
    assert_eq!(scn.queued_jobs(), 1, "a closing flush");
    // A write that arrives meanwhile waits behind the close, which wins.
    let late = scn.write("late write", R1, rows("b", 1, 10));
    scn.run_until_idle();
    scn.expect_ok(close);
    scn.expect_err(late, ErrorKind::RegionNotFound);
    reopen(&mut scn);
    let view = scn.view(R1);
    assert_eq!((view.files, view.memtable_rows), (1, 0));
    let manifest = scn.engine.ports().manifests.get(R1).expect("a manifest");
    let flushed: u64 = manifest.files.values().map(|file| file.num_rows).sum();
    assert_eq!(flushed, 3, "every acknowledged row is in the SST");
    scn.finish();
}

#[test]
fn a_close_whose_flush_fails_fails_and_the_region_stays_open() {
    let mut scn = scenario(Bugs::NONE);
    create_unlogged(&mut scn);
    write_rows(&mut scn, "w1", 3);
    let close = scn.submit("close", Request::Close { region_id: R1 });
    assert!(scn.engine.lose_one_job().expect("local ports"));
    scn.expect_err(close, ErrorKind::FlushFailed);
    assert_eq!(scn.view(R1).memtable_rows, 3, "still open, rows kept");
    let close = scn.submit("close again", Request::Close { region_id: R1 });
    scn.run_until_idle();
    scn.expect_ok(close);
    scn.finish();
}

#[test]
fn a_stop_and_a_drop_lose_unflushed_rows_by_design() {
    let mut scn = scenario(Bugs::NONE);
    create_unlogged(&mut scn);
    write_rows(&mut scn, "w1", 3);
    let flush = scn.flush("flush", R1);
    scn.run_until_idle();
    scn.expect_ok(flush);
    write_rows(&mut scn, "w2", 2);
    scn.engine.shutdown().expect("local ports");
    reopen(&mut scn);
    let view = scn.view(R1);
    assert_eq!(
        (view.files, view.memtable_rows),
        (1, 0),
        "the flushed SST only"
    );
    write_rows(&mut scn, "w3", 2);
    let drop = scn.submit("drop", Request::Drop { region_id: R1 });
    scn.expect_ok(drop);
    assert!(scn
        .engine
        .ports()
        .manifests
        .get(R1)
        .is_some_and(|m| m.dropped));
    scn.finish();
}

#[test]
fn a_region_with_the_wal_closes_without_a_flush() {
    let mut scn = scenario(Bugs::NONE);
    scn.create(R1);
    write_rows(&mut scn, "w1", 3);
    let close = scn.submit("close", Request::Close { region_id: R1 });
    scn.expect_ok(close);
    assert_eq!(scn.queued_jobs(), 0);
    assert_eq!(scn.engine.ports().wal.entries(R1).len(), 1);
    scn.finish();
}

#[cfg(feature = "planted-bugs")]
#[test]
fn planted_close_drops_unlogged_rows_loses_them() {
    let mut scn = scenario(Bugs::only(PlantedBug::CloseDropsUnloggedRows));
    create_unlogged(&mut scn);
    write_rows(&mut scn, "w1", 3);
    let close = scn.submit("close", Request::Close { region_id: R1 });
    scn.expect_ok(close);
    reopen(&mut scn);
    let view = scn.view(R1);
    assert_eq!(
        (view.files, view.memtable_rows),
        (0, 0),
        "acknowledged rows gone"
    );
    scn.finish();
}
