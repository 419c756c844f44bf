//! Each fault class decides on its own stream: switching off a class that
//! never fired in a run leaves the run as it was (the same requests, the
//! same faults of every other class, the same number of events). With one
//! shared stream, every draw of the class switched off shifted the draws of
//! all the others, and the shrinker's "fault X off" step changed the run.
//!
//! Crashes and graceful stops are left out: they are not a port's draw but
//! an actor that sleeps until its moment, and a sleeping task that wakes is
//! a scheduling event of its own, so with it switched off madsim's
//! schedule differs even when it never struck.

use flush_core::bugs::Bugs;
use flush_sim::plan::FaultClass;
use flush_sim::{run, Plan, Report};

const SEEDS: u64 = 12;

/// What a run did, without the plan line (which prints the fault mix).
fn shape(report: &Report) -> (String, u64, Vec<(String, u64)>) {
    let requests = format!("{:?}", report.requests);
    let faults = report
        .faults
        .iter()
        .map(|(name, count)| (name.clone(), *count))
        .collect();
    (requests, report.events, faults)
}

#[test]
fn switching_off_a_class_that_never_fired_changes_nothing_else() {
    let mut compared = 0;
    for seed in 0..SEEDS {
        let plan = Plan::from_seed(seed);
        let report = run(&plan, Bugs::NONE);
        let silent: Vec<FaultClass> = plan
            .faults
            .enabled()
            .filter(|class| report.faults.get(class.name()).copied().unwrap_or(0) == 0)
            .filter(|class| !matches!(class, FaultClass::Crash | FaultClass::GracefulStop))
            .collect();
        for class in silent {
            let mut without = plan.clone();
            if let Some(setting) = without.faults.classes.get_mut(&class) {
                setting.enabled = false;
            }
            let again = run(&without, Bugs::NONE);
            assert_eq!(
                shape(&again),
                shape(&report),
                "seed {seed}: expected switching off {class} (never fired) to leave the run \
                 as it was"
            );
            compared += 1;
        }
    }
    assert!(
        compared > 0,
        "expected some enabled class never to fire in {SEEDS} seeds, saw none"
    );
}
