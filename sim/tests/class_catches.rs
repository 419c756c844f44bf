//! A fault class and the planted bug only it exposes. With the class
//! switched off in every plan, no seed of the first hundred fails with the
//! bug planted; with the default mixes, one does (the bug catalogue bounds
//! how soon).
//!
//! - `manifest_ambiguous_commit` (a commit saved but reported failed)
//!   exposes `delete-ssts-on-failed-commit`: plain manifest failures
//!   change nothing, so deleting the SSTs after them is harmless.
//! - `graceful_stop` (the engine stopped mid-run, then restarted) exposes
//!   `stop-drops-stalled-writes`: the stop at the end of a run comes when
//!   nothing is stalled.
//! - `job_lost` (a flush job accepted, then dropped unrun) exposes
//!   `no-guard-on-lost-job`: otherwise only a kill drops a job, and the
//!   whole engine goes with it.
//! - `job_panic` (a flush job panics mid-flush) exposes
//!   `panic-skips-read-back`: only a panic leaves the job without the
//!   store's answer; every error the store gives is read back as before.
//!
//! - periodic flushes (sweep plans draw an auto-flush interval) expose
//!   `periodic-flush-bypasses-scheduler`: only the periodic path has it.
//! - alters that add fields (the clients' alters; their writes then set
//!   the fields, and `region_altered` counts them) expose
//!   `sst-drops-added-fields`: without them every row is base columns.
//! - regions that skip the WAL (sweep plans make some) expose
//!   `close-drops-unlogged-rows`: a region with a WAL replays what a close
//!   dropped, so only an unlogged one loses it (its closing flush is the
//!   `closing_flush` mark).
//!
//! And each end-state check with a bug only it sees (some seed fails that
//! check alone): `no_orphan_ssts` with `keep-files-of-failed-flush` (rows
//! and manifest are right, the object store holds garbage), `idle_memory`
//! with `engine-flush-waits-for-full` (nothing is lost or stuck, memory
//! just sits), `version_matches_manifest` with
//! `version-forgets-flushed-files` (the manifest and the rows are right,
//! the in-memory version is not), `writability` with
//! `write-ignores-leader-state` (the rows are all kept, on a region that
//! should have refused them), `metrics_agree` with
//! `inflight-gauge-kept-on-failure` (the engine is right, its exported
//! gauge is not).

use flush_core::bugs::{Bugs, PlantedBug};
use flush_sim::oracle::Check;
use flush_sim::plan::FaultClass;
use flush_sim::{run, Plan};

const SEEDS: u64 = 100;

fn first_failing_seed(bug: PlantedBug, plan_of: impl Fn(u64) -> Plan) -> Option<u64> {
    (0..SEEDS).find(|seed| {
        run(&plan_of(*seed), Bugs::only(bug))
            .first_failure()
            .is_some()
    })
}

fn without(class: FaultClass) -> impl Fn(u64) -> Plan {
    move |seed| {
        let mut plan = Plan::from_seed(seed);
        if let Some(setting) = plan.faults.classes.get_mut(&class) {
            setting.enabled = false;
        }
        plan
    }
}

fn assert_only(class: FaultClass, bug: PlantedBug) {
    assert_only_with(&format!("{class} off"), without(class), bug);
}

/// With `plan_without` (the default plans less one thing, named by
/// `what`), no seed fails with `bug` planted; with the default plans, one
/// does.
fn assert_only_with(what: &str, plan_without: impl Fn(u64) -> Plan, bug: PlantedBug) {
    let seen_without = first_failing_seed(bug, plan_without);
    assert_eq!(
        seen_without, None,
        "expected {bug} to pass every seed with {what}, saw seed {seen_without:?} fail"
    );
    let seen_with = first_failing_seed(bug, Plan::from_seed);
    assert!(
        seen_with.is_some(),
        "expected a default mix to expose {bug} within {SEEDS} seeds, saw none"
    );
}

#[test]
fn only_an_ambiguous_commit_exposes_deleting_the_ssts_of_a_failed_commit() {
    assert_only(
        FaultClass::ManifestAmbiguousCommit,
        PlantedBug::DeleteSstsOnFailedCommit,
    );
}

#[test]
fn only_a_graceful_stop_exposes_dropping_stalled_writes_on_stop() {
    assert_only(FaultClass::GracefulStop, PlantedBug::StopDropsStalledWrites);
}

#[test]
fn only_a_lost_job_exposes_a_flush_job_without_its_end_guard() {
    assert_only(FaultClass::JobLost, PlantedBug::NoGuardOnLostJob);
}

#[test]
fn only_a_job_panic_exposes_a_panic_taken_as_not_saved() {
    assert_only(FaultClass::JobPanic, PlantedBug::PanicSkipsReadBack);
}

/// Some seed of the first hundred fails `check` and nothing else with
/// `bug` planted: the check sees what no other check does.
fn assert_check_alone_sees(check: Check, bug: PlantedBug) {
    let alone = (0..SEEDS).find(|seed| {
        let report = run(&Plan::from_seed(*seed), Bugs::only(bug));
        let failed: Vec<&str> = report
            .checks
            .iter()
            .filter(|result| !result.passed)
            .map(|result| result.name.as_str())
            .collect();
        failed == [check.as_str()]
    });
    assert!(
        alone.is_some(),
        "expected a seed of {SEEDS} to fail {check} alone with {bug} planted, saw none"
    );
}

#[test]
fn only_the_orphan_check_sees_a_failed_flush_keeping_its_files() {
    assert_check_alone_sees(Check::NoOrphanSsts, PlantedBug::KeepFilesOfFailedFlush);
}

#[test]
fn only_the_idle_memory_check_sees_an_engine_flush_that_waits_for_a_full_buffer() {
    assert_check_alone_sees(Check::IdleMemory, PlantedBug::EngineFlushWaitsForFull);
}

#[test]
fn only_the_version_check_sees_a_version_that_forgets_flushed_files() {
    assert_check_alone_sees(
        Check::VersionMatchesManifest,
        PlantedBug::VersionForgetsFlushedFiles,
    );
}

#[test]
fn only_the_writability_check_sees_writes_taken_by_a_read_only_region() {
    assert_check_alone_sees(Check::Writability, PlantedBug::WriteIgnoresLeaderState);
}

#[test]
fn only_the_metrics_check_sees_a_gauge_that_keeps_failed_flushes() {
    assert_check_alone_sees(Check::MetricsAgree, PlantedBug::InflightGaugeKeptOnFailure);
}

#[test]
fn only_periodic_flushes_expose_a_periodic_flush_that_bypasses_the_scheduler() {
    let without_periodic = |seed| {
        let mut plan = Plan::from_seed(seed);
        plan.workload.auto_flush_interval_ms = None;
        plan
    };
    assert_only_with(
        "periodic flushes off",
        without_periodic,
        PlantedBug::PeriodicFlushBypassesScheduler,
    );
}

#[test]
fn only_regions_without_a_wal_expose_a_close_that_drops_unlogged_rows() {
    let all_logged = |seed| {
        let mut plan = Plan::from_seed(seed);
        plan.workload.skip_wal_regions = 0;
        plan
    };
    assert_only_with(
        "every region logged",
        all_logged,
        PlantedBug::CloseDropsUnloggedRows,
    );
}

#[test]
fn only_alters_that_add_fields_expose_an_sst_that_drops_them() {
    let no_client_alters = |seed| {
        let mut plan = Plan::from_seed(seed);
        plan.workload.mix.alter = 0;
        plan
    };
    assert_only_with(
        "no client alters",
        no_client_alters,
        PlantedBug::SstDropsAddedFields,
    );
}
