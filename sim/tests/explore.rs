//! `flushsim explore`: the same exploration makes the same timelines on
//! any number of threads, a timeline forked at a rare state replays alone
//! from its recipe, and the acceptance run finds
//! `seed-faithful-schedule-next` with a replay line that reproduces it.

use std::process::Command;

use flush_core::bugs::{Bugs, PlantedBug};
use flush_sim::explore::{explore, ExploreOptions};
use flush_sim::recipe::parse_splits;
use flush_sim::report::WorkloadChoice;
use flush_sim::{run, Plan};

fn options(bugs: Bugs, runs: u64, jobs: usize, until_failures: u64) -> ExploreOptions {
    ExploreOptions {
        start_seed: 0,
        jobs,
        bugs,
        workload: WorkloadChoice::Sweep,
        budget_time: None,
        budget_runs: Some(runs),
        until_failures,
        plain: false,
    }
}

/// Each run's replay line and trace hash, in the order explored.
fn timelines(options: &ExploreOptions) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    explore(options, |report| {
        seen.push((report.replay.clone(), report.trace_hash.clone()));
    });
    seen
}

/// The plan a replay line names: its seed and recipe.
fn plan_of(replay: &str) -> Plan {
    let word_after = |flag: &str| {
        let mut words = replay.split_whitespace();
        words.find(|word| *word == flag)?;
        words.next().map(str::to_string)
    };
    let seed: u64 = word_after("--seed")
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| panic!("no seed in {replay:?}"));
    let mut plan = Plan::from_seed(seed);
    if let Some(recipe) = word_after("--recipe") {
        plan.splits = parse_splits(&recipe).unwrap_or_else(|error| panic!("{error}"));
    }
    plan
}

#[test]
fn an_exploration_makes_the_same_timelines_on_one_thread_or_two() {
    let alone = timelines(&options(Bugs::NONE, 24, 1, 1));
    let side_by_side = timelines(&options(Bugs::NONE, 24, 2, 1));
    assert_eq!(alone.len(), 24);
    assert_eq!(alone, side_by_side);
    let forked = alone
        .iter()
        .filter(|(replay, _)| replay.contains("--recipe"));
    assert!(
        forked.count() >= 8,
        "expected the explorer to fork runs at rare states, saw {alone:#?}"
    );
}

#[test]
fn a_forked_timeline_replays_alone_and_differs_from_its_seed() {
    let explored = timelines(&options(Bugs::NONE, 24, 2, 1));
    for (replay, hash) in explored.iter().filter(|(r, _)| r.contains("--recipe")) {
        let plan = plan_of(replay);
        let alone = run(&plan, Bugs::NONE);
        assert_eq!(&alone.trace_hash, hash, "{replay}");
        let seed_alone = run(&Plan::from_seed(plan.seed), Bugs::NONE);
        assert_ne!(
            seed_alone.trace_hash, *hash,
            "expected {replay} to fork from its seed's own run"
        );
    }
}

#[test]
fn a_failure_found_in_a_forked_timeline_replays_alone() {
    let bug = PlantedBug::WalTruncatePastFlushed;
    let exploration = explore(&options(Bugs::only(bug), 300, 2, 8), |_| {});
    let forked = exploration
        .failures
        .iter()
        .find(|failure| failure.replay.contains("--recipe"))
        .unwrap_or_else(|| {
            panic!(
                "expected a forked timeline among the failures, saw {:#?}",
                exploration.failures
            )
        });
    let plan = plan_of(&forked.replay);
    let alone = run(&plan, Bugs::only(bug));
    let check = alone.first_failure().map(|check| check.name.clone());
    assert_eq!(
        check.as_deref(),
        Some(forked.check.as_str()),
        "{}",
        forked.replay
    );
}

#[test]
fn explore_finds_seed_faithful_schedule_next_and_its_line_replays_it() {
    let flushsim = env!("CARGO_BIN_EXE_flushsim");
    let bug = "seed-faithful-schedule-next";
    let output = Command::new(flushsim)
        .args([
            "explore",
            "--budget-runs",
            "200",
            "--jobs",
            "2",
            "--bug",
            bug,
        ])
        .output()
        .expect("flushsim runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let replay = stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix("replay: "))
        .unwrap_or_else(|| panic!("no replay line in {stdout}"));
    let args: Vec<&str> = replay
        .split_once(" -- ")
        .map(|(_, args)| args.split_whitespace().collect())
        .unwrap_or_else(|| panic!("unexpected replay line {replay:?}"));
    let replayed = Command::new(flushsim)
        .args(&args)
        .output()
        .expect("flushsim runs");
    let report = String::from_utf8_lossy(&replayed.stdout);
    assert_eq!(replayed.status.code(), Some(1), "{report}");
    assert!(report.contains("FAIL scheduler_state"), "{report}");
}
