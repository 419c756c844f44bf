//! The core's own assertions run in every sweep, `--release` included:
//! flush-sim switches on flush-core's `strict` feature (features do not
//! depend on the profile), and a planted violation of a pre-condition
//! fails a sweep as a `no_panic` check with the seed's replay line, not as
//! a crash of the sweep.
//!
//! The bug is `alter-skips-flush-wait`: an alter applied while its
//! region's memtables hold rows. No oracle sees it (the rows keep the
//! schema they were written under either way); the region's own
//! pre-condition "an alter finds its memtables empty" does.

use flush_core::bugs::{Bugs, PlantedBug};
use flush_sim::oracle::Check;
use flush_sim::sweep::{sweep, SweepOptions};
use flush_sim::{run, Plan};

const BUG: PlantedBug = PlantedBug::AlterSkipsFlushWait;
const PRE_CONDITION: &str = "an alter waits for the flush";

#[test]
// The constant is what is tested: the features this build of the core has.
#[allow(clippy::assertions_on_constants)]
fn the_simulator_builds_the_core_with_its_assertions_on() {
    assert!(
        flush_core::STRICT,
        "expected flush-sim to switch on flush-core's `strict` feature (so a --release \
         sweep checks the core's assertions), saw it off"
    );
}

#[test]
fn a_violated_pre_condition_fails_the_sweep_with_a_replay_line() {
    let seeds: Vec<u64> = (0..20).collect();
    let summary = sweep(
        &SweepOptions::new(seeds.clone(), 1, Bugs::only(BUG)),
        |_| {},
    );
    assert_eq!(summary.seeds_run, seeds.len() as u64, "every seed ran");
    let failure = summary
        .failures
        .first()
        .unwrap_or_else(|| panic!("expected some of seeds 0..20 to fail with {BUG}, none did"));
    assert_eq!(failure.check, Check::NoPanic.as_str(), "{failure:?}");
    assert!(
        failure.message.contains(PRE_CONDITION),
        "expected the pre-condition's message, saw {:?}",
        failure.message
    );
    let replay = format!("--seed {} --bug {}", failure.seed, BUG.name());
    assert!(
        failure.replay.contains(&replay),
        "expected a replay line with `{replay}`, saw {:?}",
        failure.replay
    );

    let alone = run(&Plan::from_seed(failure.seed), Bugs::only(BUG));
    let seen = alone.first_failure().map(|check| check.message.clone());
    assert!(
        seen.as_deref().is_some_and(|m| m.contains(PRE_CONDITION)),
        "expected seed {} to fail alone the same way, saw {seen:?}",
        failure.seed
    );
    let clean = run(&Plan::from_seed(failure.seed), Bugs::NONE);
    assert!(
        clean.first_failure().is_none(),
        "expected seed {} to pass without the bug, saw {:?}",
        failure.seed,
        clean.first_failure()
    );
}
