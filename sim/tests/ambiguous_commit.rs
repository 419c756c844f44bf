//! A manifest commit saved but reported failed (`manifest_ambiguous_commit`)
//! is what catches a flush that treats every failed commit as "not saved"
//! and deletes its SSTs (`delete-ssts-on-failed-commit`): with that fault
//! class switched off, plain manifest failures change nothing, so deleting
//! is harmless and no seed fails; with the default mixes a seed does.

use flush_core::bugs::{Bugs, PlantedBug};
use flush_sim::plan::FaultClass;
use flush_sim::{run, Plan};

const SEEDS: u64 = 100;

fn first_failing_seed(plan_of: impl Fn(u64) -> Plan) -> Option<u64> {
    let bugs = Bugs::only(PlantedBug::DeleteSstsOnFailedCommit);
    (0..SEEDS).find(|seed| run(&plan_of(*seed), bugs).first_failure().is_some())
}

#[test]
fn only_an_ambiguous_commit_exposes_deleting_the_ssts_of_a_failed_commit() {
    let without = first_failing_seed(|seed| {
        let mut plan = Plan::from_seed(seed);
        if let Some(setting) = plan
            .faults
            .classes
            .get_mut(&FaultClass::ManifestAmbiguousCommit)
        {
            setting.enabled = false;
        }
        plan
    });
    assert_eq!(
        without, None,
        "expected no failure without manifest_ambiguous_commit, saw seed {without:?} fail"
    );
    let with = first_failing_seed(Plan::from_seed);
    assert!(
        with.is_some(),
        "expected a default mix to expose the bug within {SEEDS} seeds, saw none"
    );
}
