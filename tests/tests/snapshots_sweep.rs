//! insta snapshot of the sweep summary of a pinned seed range, as
//! `flushsim sweep --json` prints it, minus the wall-clock time and the
//! process's peak memory (the only fields that differ between runs).
//!
//! Accept an intended change with `cargo insta review`, or
//! `INSTA_UPDATE=always cargo test -p flush-tests --test snapshots_sweep`.

use flush_core::bugs::{Bugs, PlantedBug};
use flush_sim::sweep::{sweep, SweepOptions};
use serde_json::Value;

fn summary_json(seeds: std::ops::Range<u64>, bugs: Bugs) -> Value {
    let summary = sweep(&SweepOptions::new(seeds.collect(), 2, bugs), |_| {});
    let mut value = serde_json::to_value(&summary).expect("summaries serialise");
    if let Some(object) = value.as_object_mut() {
        object.remove("wall_ms");
        object.remove("peak_rss_mb");
    }
    value
}

#[test]
fn sweep_summary_of_seeds_0_to_8() {
    insta::assert_json_snapshot!("sweep_0_8", summary_json(0..8, Bugs::NONE));
}

#[test]
fn sweep_summary_with_a_planted_bug() {
    let bugs = Bugs::only(PlantedBug::ForgetPendingDdls);
    insta::assert_json_snapshot!("sweep_0_4_forget_pending_ddls", summary_json(0..4, bugs));
}
