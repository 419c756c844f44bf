//! Monitoring never steers the run: the in-run sampling only looks at
//! workers that are idle at that moment, synchronously, without waiting or
//! registering a waker, so switching it off leaves every seed's trace, and
//! so every decision the run made, byte for byte the same.

use flush_core::bugs::Bugs;
use flush_sim::run::{run_with, RunOptions};
use flush_sim::Plan;

const SEEDS: u64 = 12;

#[test]
fn turning_the_sampling_off_leaves_the_trace_hash_unchanged() {
    for seed in 0..SEEDS {
        let plan = Plan::from_seed(seed);
        let sampled = run_with(&plan, Bugs::NONE, RunOptions::default());
        let unsampled = run_with(
            &plan,
            Bugs::NONE,
            RunOptions {
                skip_sampling: true,
                silenced_rare_state: None,
                ..RunOptions::default()
            },
        );
        assert!(
            sampled.events > 0,
            "seed {seed}: expected a trace, saw none"
        );
        assert_eq!(
            (sampled.trace_hash.as_str(), sampled.events),
            (unsampled.trace_hash.as_str(), unsampled.events),
            "seed {seed}: expected the same trace with and without sampling"
        );
    }
}
