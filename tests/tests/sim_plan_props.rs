//! Sim-plan properties: proptest generates whole plans (workload sizes and
//! fault mixes as data, not just seeds), runs each through the same
//! `flush_sim::run` as the CLI (every run on a fresh thread, so a shrunk
//! case replays alone), and shrinks a failing plan to a minimal one that
//! prints and saves for `flushsim replay --plan FILE`.
//!
//! The default case count keeps `cargo test` fast; `PROPTEST_CASES=200`
//! (or more) makes it a nightly-style run. A failure of the healthy property
//! is kept in `sim_plan_props.proptest-regressions` and replayed first.

use std::path::PathBuf;

use flush_core::bugs::{Bugs, PlantedBug};
use flush_sim::plan::{FaultClass, FaultMix, FaultSetting, OpMix, Plan, Workload};
use flush_sim::run;
use flush_sim::shrink::{PlanFile, PlanSize};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

/// Cases of the healthy property unless `PROPTEST_CASES` says otherwise.
const DEFAULT_CASES: u32 = 32;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.trim().parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

/// Small workloads: every knob from its floor up to a size that runs in
/// tens of milliseconds in a debug build. Knobs shrink towards their floor.
fn workload() -> impl Strategy<Value = Workload> {
    let sizes = (
        1u32..=3,            // workers
        1u32..=4,            // regions
        1u32..=3,            // clients
        1u32..=40,           // writes per client
        1u32..=20,           // rows per write (max)
        1u32..=4,            // series
        1u32..=4,            // max in flight
        2_048usize..=32_768, // global buffer
    );
    let mix = (
        0u32..=120,
        0u32..=40,
        0u32..=25,
        0u32..=15,
        0u32..=25,
        0u32..=15,
    )
        .prop_map(|(flush, alter, truncate, drop, close, downgrade)| OpMix {
            flush,
            alter,
            truncate,
            drop,
            close,
            downgrade,
        });
    let timing = (0u64..=10, 0u64..=3, 5u64..=40);
    (sizes, mix, timing).prop_map(
        |(
            (workers, regions, clients, writes, rows_max, series, in_flight, buffer),
            mix,
            (think_ms_max, io_latency_ms_max, injector_tick_ms),
        )| Workload {
            name: "proptest-v1".to_string(),
            workers,
            regions,
            clients,
            writes_per_client: writes,
            rows_per_write_min: 1,
            rows_per_write_max: rows_max,
            series,
            max_in_flight: in_flight,
            think_ms_max,
            global_buffer_bytes: buffer,
            max_stalled_writes: 16,
            mix,
            io_latency_ms_max,
            injector_tick_ms,
            ..Workload::standard()
        },
    )
}

/// A swarm fault mix: each class on or off (shrinks to off), with a
/// probability from the class's own range (shrinks to its low end).
fn fault_mix() -> impl Strategy<Value = FaultMix> {
    let classes: Vec<BoxedStrategy<(FaultClass, FaultSetting)>> = FaultClass::ALL
        .iter()
        .map(|class| {
            let class = *class;
            let (low, high) = class.probability_range();
            (any::<bool>(), low..=high)
                .prop_map(move |(enabled, probability)| {
                    let probability = (probability * 10_000.0).round() / 10_000.0;
                    (
                        class,
                        FaultSetting {
                            enabled,
                            probability,
                        },
                    )
                })
                .boxed()
        })
        .collect();
    classes.prop_map(|classes| FaultMix {
        classes: classes.into_iter().collect(),
    })
}

fn plan() -> impl Strategy<Value = Plan> {
    (0u64..10_000, workload(), fault_mix()).prop_map(|(seed, workload, faults)| Plan {
        seed,
        workload,
        faults,
        splits: Vec::new(),
        script: None,
    })
}

fn failure_message(plan: &Plan, bugs: Bugs) -> Result<(), TestCaseError> {
    let report = run(plan, bugs);
    match report.first_failure() {
        None => Ok(()),
        Some(check) => Err(TestCaseError::fail(format!(
            "{}: {} (plan size {})",
            check.name,
            check.message,
            PlanSize::of(&report)
        ))),
    }
}

fn save(name: &str, plan: &Plan, bugs: Bugs) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("sim-plan-props")
        .join(name);
    PlanFile::new(plan.clone(), bugs)
        .write(&path)
        .unwrap_or_else(|error| panic!("{error}"));
    path
}

proptest! {
    #![proptest_config(Config {
        cases: cases(),
        // A shrink step is a whole run: bound them.
        max_shrink_iters: 300,
        ..Config::default()
    })]

    /// Every generated plan passes every check with no bug planted. A
    /// failing plan shrinks, and the panic message shows the minimal plan.
    #[test]
    fn every_generated_plan_passes(plan in plan()) {
        let result = failure_message(&plan, Bugs::NONE);
        if result.is_err() {
            let path = save(&format!("failing-seed-{}.json", plan.seed), &plan, Bugs::NONE);
            eprintln!(
                "failing plan saved; replay: cargo run -p flush-sim --release -- replay --plan {}",
                path.display()
            );
        }
        result?;
    }
}

/// The broken variant: with a planted bug, proptest finds a failing plan
/// and shrinks it to a minimal one, which prints, saves and fails again on
/// replay. The search is seeded, so the test is the same on every run.
#[test]
fn a_planted_bug_shrinks_to_a_minimal_plan() {
    let bug = PlantedBug::ForgetFreeMem;
    let bugs = Bugs::only(bug);
    let config = Config {
        cases: 16,
        max_shrink_iters: 300,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let outcome = runner.run(&plan(), |plan| failure_message(&plan, bugs));
    let (reason, minimal) = match outcome {
        Err(TestError::Fail(reason, minimal)) => (reason, minimal),
        other => panic!("expected {bug} to fail a generated plan, saw {other:?}"),
    };
    let file = PlanFile::new(minimal.clone(), bugs);
    let path = save("minimal-forget-free-mem.json", &minimal, bugs);
    println!("minimal plan ({reason}):\n{}", file.to_json());
    println!(
        "replay: cargo run -p flush-sim --release -- replay --plan {}",
        path.display()
    );

    // Shrunk to the floor of what makes this bug show: one client writing
    // once to one region on one worker, no other request, no fault.
    let workload = &minimal.workload;
    assert_eq!(
        (
            workload.workers,
            workload.regions,
            workload.clients,
            workload.writes_per_client
        ),
        (1, 1, 1, 1),
        "{}",
        file.to_json()
    );
    assert_eq!(minimal.faults.enabled().count(), 0, "{}", file.to_json());

    // The saved plan replays alone and fails the same way.
    let read = PlanFile::read(&path).expect("the saved plan reads back");
    assert_eq!(read.bugs(), Ok(bugs));
    let replayed = run(&read.plan, bugs);
    let check = replayed.first_failure().map(|check| check.name.clone());
    assert_eq!(
        check.as_deref(),
        Some("buffer_accounting"),
        "{}",
        replayed.render()
    );
    assert!(
        PlanSize::of(&replayed).total() <= 5,
        "minimal plan size {}",
        PlanSize::of(&replayed)
    );
}
