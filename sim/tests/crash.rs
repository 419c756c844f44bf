//! Crash and restart end to end: a sweep of seeds whose fault mix crashes
//! the engine passes (acknowledged rows survive every restart, in-flight
//! requests are interrupted, not lost), and a durability bug planted in the
//! core is caught by the `recovery` check with a replay line that
//! reproduces it alone.

use flush_core::bugs::{Bugs, PlantedBug};
use flush_sim::oracle::Check;
use flush_sim::plan::{FaultClass, FaultMix, FaultSetting};
use flush_sim::run::seed_from_env;
use flush_sim::sweep::{sweep, SweepOptions};
use flush_sim::{run, Plan};

/// The first `count` seeds from `start` whose plan has crashes on.
fn crash_seeds(start: u64, count: usize) -> Vec<u64> {
    (start..)
        .filter(|seed| {
            Plan::from_seed(*seed)
                .faults
                .probability(FaultClass::Crash)
                .is_some()
        })
        .take(count)
        .collect()
}

fn options(seeds: Vec<u64>, bugs: Bugs) -> SweepOptions {
    SweepOptions::new(seeds, 2, bugs)
}

#[test]
fn a_sweep_with_crashes_loses_no_acknowledged_row() {
    let seeds = crash_seeds(seed_from_env(0), 10);
    let summary = sweep(&options(seeds, Bugs::NONE), |_| {});
    assert_eq!(summary.seeds_failed, 0, "{:#?}", summary.failures);
    assert!(
        summary.crashes > 0,
        "no crash in {} seeds",
        summary.seeds_run
    );
    assert_eq!(summary.requests.lost, 0);
    assert_eq!(summary.requests.duplicated, 0);
    assert!(
        summary.requests.interrupted > 0,
        "no request was in flight at a crash"
    );
    assert!(
        summary.rows_recovered_checked > 0,
        "no row judged after a reopen"
    );
    let recovery = summary
        .checks
        .get(Check::Recovery.as_str())
        .copied()
        .unwrap_or_default();
    assert_eq!((recovery.passed, recovery.failed), (10, 0));
    let windows = summary
        .marks
        .keys()
        .filter(|mark| mark.starts_with("crash_"))
        .count();
    assert!(
        windows >= 2,
        "crashes hit only {windows} windows: {:?}",
        summary.marks
    );
}

#[test]
fn an_ack_before_the_wal_is_durable_is_caught_by_recovery_and_replays_alone() {
    let bug = PlantedBug::AckBeforeWalDurable;
    let caught = crash_seeds(seed_from_env(0), 20)
        .into_iter()
        .map(|seed| run(&Plan::from_seed(seed), Bugs::only(bug)))
        .find(|report| {
            report
                .checks
                .iter()
                .any(|c| c.name == Check::Recovery.as_str() && !c.passed)
        })
        .unwrap_or_else(|| panic!("{bug}: no crash seed of 20 failed `recovery`"));
    assert!(
        caught
            .replay
            .ends_with(&format!("replay --seed {} --bug {bug}", caught.seed)),
        "{}",
        caught.replay
    );
    let again = run(&Plan::from_seed(caught.seed), Bugs::only(bug));
    assert_eq!(again.trace_hash, caught.trace_hash);
    let recovery = again
        .checks
        .iter()
        .find(|check| check.name == Check::Recovery.as_str())
        .expect("every report has a recovery check");
    assert!(!recovery.passed);
    assert!(
        recovery.message.contains("acknowledged") && recovery.message.contains("saw it nowhere"),
        "{}",
        recovery.message
    );
    assert!(run(&Plan::from_seed(caught.seed), Bugs::NONE).passed);
}

/// A graceful stop drains what the clients hold before it judges what is
/// left unanswered. With 256 clients and I/O slowed by up to 471 ms the
/// drain takes longer than the restart's usual 5 s; the stop waits as long
/// as the load may need (`Workload::patience_ms`), so every one of these
/// seeds passes instead of failing `exactly_once_reply` on its load.
#[test]
fn a_graceful_stop_under_a_heavy_load_waits_for_the_engine_to_drain() {
    for seed in 0..3 {
        let mut plan = Plan::standard(seed);
        plan.workload.clients = 256;
        plan.workload.writes_per_client = 20;
        plan.workload.slow_io_ms_max = 471;
        plan.faults = FaultMix::none();
        for (class, probability) in [
            (FaultClass::Crash, 0.5),
            (FaultClass::GracefulStop, 1.0),
            (FaultClass::SlowIo, 0.5),
        ] {
            plan.faults.classes.insert(
                class,
                FaultSetting {
                    enabled: true,
                    probability,
                },
            );
        }
        let report = run(&plan, Bugs::NONE);
        assert!(
            report.passed,
            "seed {seed}: {:?}",
            report.first_failure().map(|check| &check.message)
        );
        assert!(
            report
                .crash_windows()
                .iter()
                .any(|window| window.starts_with("graceful_stop")),
            "seed {seed}: no graceful stop ({:?})",
            report.crash_windows()
        );
    }
}
