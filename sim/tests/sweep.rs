//! End-to-end checks of the simulator itself: determinism, a planted bug
//! caught with a replay line that reproduces it, and the CLI's exit codes.

use std::process::Command;

use flush_core::bugs::{Bugs, PlantedBug};
use flush_sim::run::seed_from_env;
use flush_sim::sweep::{sweep, SweepOptions};
use flush_sim::{run, Plan};

fn options(seeds: Vec<u64>, bugs: Bugs) -> SweepOptions {
    SweepOptions::new(seeds, 2, bugs)
}

#[test]
fn a_seed_replays_to_the_same_trace_alone_and_inside_a_sweep() {
    let first = seed_from_env(3);
    let seeds: Vec<u64> = (first..first + 4).collect();
    let summary = sweep(&options(seeds.clone(), Bugs::NONE), |_| {});
    for seed in seeds {
        let alone = run(&Plan::from_seed(seed), Bugs::NONE);
        let again = run(&Plan::from_seed(seed), Bugs::NONE);
        assert_eq!(
            alone.trace_hash, again.trace_hash,
            "seed {seed} replayed twice"
        );
        assert_eq!(
            Some(&alone.trace_hash),
            summary.trace_hashes.get(&seed),
            "seed {seed} alone vs in a sweep"
        );
        assert!(alone.events > 0);
    }
}

#[test]
fn a_clean_sweep_passes_with_no_lost_request() {
    let summary = sweep(&options((0..6).collect(), Bugs::NONE), |_| {});
    assert_eq!(summary.seeds_failed, 0, "{:#?}", summary.failures);
    assert_eq!(summary.requests.lost, 0);
    assert_eq!(summary.requests.duplicated, 0);
    assert!(summary.requests.issued > 0);
}

#[test]
fn a_lost_reply_in_the_core_fails_a_sweep_with_a_replay_line_that_reproduces_it() {
    // The core "forgets" to answer pending DDLs after a flush: their reply
    // senders are dropped.
    let bug = PlantedBug::ForgetPendingDdls;
    let summary = sweep(&options((0..12).collect(), Bugs::only(bug)), |_| {});
    let failure = summary
        .failures
        .first()
        .unwrap_or_else(|| panic!("{bug} went unnoticed in 12 seeds"));
    assert!(
        failure
            .replay
            .ends_with(&format!("replay --seed {} --bug {bug}", failure.seed)),
        "{}",
        failure.replay
    );
    let replayed = run(&Plan::from_seed(failure.seed), Bugs::only(bug));
    assert!(!replayed.passed);
    let check = replayed.first_failure().map(|check| check.name.clone());
    assert_eq!(check.as_deref(), Some(failure.check.as_str()));
    assert!(replayed.requests.lost > 0);
}

fn flushsim(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_flushsim"))
        .args(args)
        .output()
        .expect("the flushsim binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn bad_usage_exits_2_with_a_clear_message() {
    for (args, needle) in [
        (&["sweep", "--seeds", "abc"][..], "--seeds"),
        (
            &["sweep", "--shard", "3/2"][..],
            "K must be between 1 and N=2",
        ),
        (&["sweep", "--bug", "nope"][..], "unknown bug 'nope'"),
        (&["sweep", "--seed-range", "9..2"][..], "seed range"),
        (&["replay"][..], "--seed"),
    ] {
        let (code, _, stderr) = flushsim(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn an_output_path_that_cannot_be_written_is_refused_before_the_run() {
    // A directory under a file cannot be made.
    let bad = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml/out/file.json");
    for args in [
        &["replay", "--seed", "1", "--timeline", bad][..],
        &["shrink", "--seed", "0", "--bug", "free-twice", "--out", bad][..],
        &["crash-test", "--rounds", "1", "--dir", bad][..],
    ] {
        let (code, stdout, stderr) = flushsim(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains("cannot create"), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("replaying") && !stderr.contains("shrinking"),
            "{args:?} ran before refusing: {stderr}"
        );
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
    }
}

#[test]
fn the_cli_exits_0_on_pass_and_1_on_a_caught_bug() {
    let (code, stdout, _) = flushsim(&["sweep", "--seeds", "3", "--json"]);
    assert_eq!(code, 0, "{stdout}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("sweep --json is JSON");
    for field in [
        "seeds_run",
        "seeds_failed",
        "requests",
        "faults",
        "failures",
        "wall_ms",
        "sim_ms",
    ] {
        assert!(summary.get(field).is_some(), "missing {field}");
    }
    let (code, stdout, _) = flushsim(&[
        "replay",
        "--seed",
        "0",
        "--bug",
        "forget-free-mem",
        "--json",
    ]);
    assert_eq!(code, 1, "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("replay --json is JSON");
    for field in ["seed", "passed", "trace_hash", "events", "checks"] {
        assert!(report.get(field).is_some(), "missing {field}");
    }
    let (code, stdout, _) = flushsim(&["bugs"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("forget-free-mem"));
}

/// `abandon-flush-on-wal-trim-failure` is the planted bug of the
/// `wal_truncate_failure` fault class: the default plans catch it, and the
/// same plans with only that class switched off do not.
#[test]
fn only_wal_truncate_failures_expose_a_flush_abandoned_on_a_failed_trim() {
    use flush_sim::plan::FaultClass;
    let bugs = Bugs::only(PlantedBug::AbandonFlushOnWalTrimFailure);
    let seeds = 0..40;
    let caught = seeds
        .clone()
        .filter(|seed| !run(&Plan::from_seed(*seed), bugs).passed)
        .count();
    assert!(caught > 0, "the default plans of 40 seeds missed the bug");
    for seed in seeds {
        let mut plan = Plan::from_seed(seed);
        if let Some(setting) = plan.faults.classes.get_mut(&FaultClass::WalTruncateFailure) {
            setting.enabled = false;
        }
        let report = run(&plan, bugs);
        assert!(
            report.passed,
            "seed {seed} failed without wal_truncate_failure: {:?}",
            report.first_failure()
        );
    }
}
