//! `flushsim shrink`: a typical planted-bug failure shrinks to a plan ten
//! times smaller (size = requests issued + faults injected) that fails the
//! same check, saved to a file that `flushsim replay --plan FILE` runs and
//! fails.

use std::process::Command;

use flush_core::bugs::{Bugs, PlantedBug};
use flush_sim::run::seed_from_env;
use flush_sim::shrink::{shrink, PlanFile, PlanSize, ShrinkOptions};
use flush_sim::sweep::{sweep, SweepOptions};
use flush_sim::{run, Plan};
use serde_json::Value;

/// The first seed from `MADSIM_TEST_SEED` (default 0) on where `bug` fails.
fn failing_seed(bug: PlantedBug) -> u64 {
    let first = seed_from_env(0);
    let summary = sweep(
        &SweepOptions::new((first..first + 16).collect(), 2, Bugs::only(bug)),
        |_| {},
    );
    summary
        .failures
        .first()
        .unwrap_or_else(|| panic!("{bug} went unnoticed in 16 seeds"))
        .seed
}

/// The first `count` standard seeds from `MADSIM_TEST_SEED` (default 0) on
/// where `bug` fails: the standard workload is the big plan a shrink
/// starts from.
fn failing_standard_seeds(bug: PlantedBug, count: usize) -> Vec<u64> {
    let first = seed_from_env(0);
    let seeds: Vec<u64> = (first..first + 16)
        .filter(|seed| !run(&Plan::standard(*seed), Bugs::only(bug)).passed)
        .take(count)
        .collect();
    assert_eq!(
        seeds.len(),
        count,
        "{bug} went unnoticed in 16 standard seeds"
    );
    seeds
}

/// Shrinks one failing seed; checks the minimal plan fails the same check
/// when run again alone. Returns the factor (original size / minimal).
fn shrink_and_confirm(bug: PlantedBug, seed: u64) -> f64 {
    let plan = Plan::standard(seed);
    let options = ShrinkOptions {
        bugs: Bugs::only(bug),
        ..ShrinkOptions::default()
    };
    let shrunk = shrink(&plan, &options, |_| {}).expect("the seed fails");
    println!(
        "standard seed {seed} --bug {bug}: {} -> {} ({:.1}x) in {} runs; kept: {:?}",
        shrunk.original_size,
        shrunk.minimal_size,
        shrunk.factor(),
        shrunk.runs,
        shrunk.kept
    );
    let again = run(&shrunk.minimal, Bugs::only(bug));
    assert_eq!(
        again.first_failure().map(|check| check.name.as_str()),
        Some(shrunk.check.as_str())
    );
    assert_eq!(PlanSize::of(&again), shrunk.minimal_size);
    assert_eq!(again.trace_hash, shrunk.report.trace_hash);
    shrunk.original_size.total() as f64 / shrunk.minimal_size.total().max(1) as f64
}

/// A greedy shrinker's result on one seed is luck as much as power (a
/// change anywhere in the simulator moves it), so the promise is about the
/// typical failure: the median of the first three failing seeds shrinks at
/// least ten times (BENCHMARKS.md has the factors per seed).
#[test]
fn a_lost_ddl_reply_shrinks_to_a_plan_ten_times_smaller_that_still_fails() {
    let bug = PlantedBug::ForgetPendingDdls;
    let mut factors: Vec<f64> = failing_standard_seeds(bug, 3)
        .into_iter()
        .map(|seed| shrink_and_confirm(bug, seed))
        .collect();
    factors.sort_by(f64::total_cmp);
    assert!(
        factors[1] >= 10.0,
        "expected the median shrink at least 10x, saw factors {factors:?}"
    );
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
fn the_cli_shrinks_saves_and_replays_the_minimal_plan() {
    let bug = PlantedBug::ForgetFreeMem;
    let seed = failing_seed(bug).to_string();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("minimal.json");
    let out = path.to_string_lossy().into_owned();
    let (code, stdout, stderr) = flushsim(&[
        "shrink",
        "--seed",
        &seed,
        "--bug",
        bug.name(),
        "--out",
        &out,
        "--json",
    ]);
    assert_eq!(code, 1, "shrink exits 1 on a failing plan: {stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("shrink --json is JSON");
    let before = report["original_total"].as_u64().expect("original_total");
    let after = report["minimal_total"].as_u64().expect("minimal_total");
    assert!(after * 10 <= before, "{before} -> {after}");
    assert_eq!(report["saved"], out.as_str());

    // The saved file names its bug: replay needs nothing else.
    let file = PlanFile::read(&path).expect("the saved plan reads back");
    assert_eq!(file.bugs, vec![bug.name().to_string()]);
    let (code, stdout, _) = flushsim(&["replay", "--plan", &out, "--json"]);
    assert_eq!(code, 1, "the minimal plan fails on replay: {stdout}");
    let replayed: Value = serde_json::from_str(&stdout).expect("replay --json is JSON");
    assert_eq!(replayed["passed"], false);
    assert!(
        replayed["replay"]
            .as_str()
            .is_some_and(|line| line.contains("--plan")),
        "{}",
        replayed["replay"]
    );
    let issued = replayed["requests"]["issued"].as_u64().unwrap_or(u64::MAX);
    assert_eq!(
        issued,
        report["minimal_size"]["requests"].as_u64().unwrap_or(0)
    );

    // The human form prints the sizes before and after.
    let (code, stdout, _) = flushsim(&[
        "shrink",
        "--seed",
        &seed,
        "--bug",
        bug.name(),
        "--out",
        &out,
    ]);
    assert_eq!(code, 1);
    assert!(
        stdout.contains(&format!("plan size {before} (")),
        "{stdout}"
    );
    assert!(stdout.contains("replay: "), "{stdout}");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_passing_seed_has_nothing_to_shrink() {
    let (code, stdout, _) = flushsim(&[
        "shrink",
        "--seed",
        "1",
        "--out",
        "/nonexistent/never-written.json",
    ]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("nothing to shrink"), "{stdout}");
}

/// A plan file the simulator cannot run is refused by `replay` and
/// `shrink` alike with exit 2 and the bad field, before anything runs: no
/// report, no "replaying" line, no file saved.
#[test]
fn a_plan_file_that_cannot_run_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("zero-workers.json");
    let mut plan = Plan::from_seed(1);
    plan.workload.workers = 0;
    PlanFile::new(plan, Bugs::NONE)
        .write(&path)
        .expect("the plan file is written");
    let plan_arg = path.to_string_lossy().into_owned();
    let expected = format!(
        "error: plan {plan_arg} is not a valid plan: workload.workers = 0: expected at least 1\n"
    );

    let (code, stdout, stderr) = flushsim(&["replay", "--plan", &plan_arg]);
    assert_eq!((code, stdout.as_str()), (2, ""), "{stderr}");
    assert_eq!(stderr, expected);

    let out = dir.path().join("never-written.json");
    let out_arg = out.to_string_lossy().into_owned();
    let (code, stdout, stderr) = flushsim(&["shrink", "--plan", &plan_arg, "--out", &out_arg]);
    assert_eq!((code, stdout.as_str()), (2, ""), "{stderr}");
    assert_eq!(stderr, expected);
    assert!(!out.exists(), "shrink saved a plan it never ran");
}
