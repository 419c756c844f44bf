//! Rare states are counted per seed, and a sweep long enough to be judged
//! fails `fault_coverage` when one of them is never reached: shown by
//! switching one state's trigger off over CI's fixed seed range, where
//! every state is otherwise reached (CI's own sweep of that range passes).

use flush_core::bugs::Bugs;
use flush_sim::oracle::RareState;
use flush_sim::sweep::{sweep, SweepOptions, RARE_STATE_MIN_SEEDS};

/// Reached by many seeds, so only the switch can leave it at zero.
const SILENCED: RareState = RareState::StallWithNoFlushRunning;

#[test]
fn a_sweep_that_never_reaches_a_rare_state_fails_coverage_naming_it() {
    let seeds: Vec<u64> = (0..RARE_STATE_MIN_SEEDS).collect();
    let mut options = SweepOptions::new(seeds, 2, Bugs::NONE);
    options.silenced_rare_state = Some(SILENCED);
    let summary = sweep(&options, |_| {});

    assert_eq!(summary.seeds_failed, 0, "{:#?}", summary.failures);
    assert_eq!(summary.rare_states.len(), RareState::ALL.len());
    let unreached: Vec<&str> = summary
        .rare_states
        .iter()
        .filter(|(_, seeds)| **seeds == 0)
        .map(|(state, _)| state.as_str())
        .collect();
    assert_eq!(
        unreached,
        [SILENCED.as_str()],
        "expected only the silenced state unreached in seeds 0..{RARE_STATE_MIN_SEEDS}, \
         saw {:?}",
        summary.rare_states
    );
    let coverage = &summary.fault_coverage;
    assert!(
        !coverage.passed,
        "expected fault_coverage to fail, saw {coverage:?}"
    );
    assert!(
        coverage
            .message
            .contains(&format!("rare states [{SILENCED}]")),
        "expected the message to name {SILENCED}, saw {:?}",
        coverage.message
    );
    assert!(
        coverage.message.contains("faults [] marks []"),
        "expected nothing else missing, saw {:?}",
        coverage.message
    );
}
