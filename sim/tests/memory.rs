//! A sweep of any length runs in bounded memory: every run frees its world
//! (SSTs, memtables, ledger, trace) before the next one needs the space.
//!
//! madsim frees a task only when it ends, is cancelled or its node is
//! killed, so a run that left a task parked used to keep its whole world
//! alive: ~1.4 MB a seed, and a 20,000-seed sweep was killed by the OOM
//! killer. This file is its own test binary (one process, one test), so the
//! resident set it reads is the sweep's alone.

use flush_core::bugs::Bugs;
use flush_sim::memory::rss_mb;
use flush_sim::sweep::{sweep, SweepOptions};
use flush_sim::world::live_worlds;

/// Seeds swept in all, and how many of them warm the process up (lazy
/// globals, allocator arenas, the thread stacks of the first runs).
const SEEDS: u64 = 300;
const WARM_UP_SEEDS: u64 = 60;
/// Growth of the resident set allowed after the warm-up. A leak of even
/// 0.3 MB a seed (a fifth of the one this test was written for) exceeds it.
const GROWTH_ALLOWED_MB: u64 = 64;
const JOBS: usize = 2;

#[test]
fn a_long_sweep_frees_every_world_and_stops_growing_after_a_warm_up() {
    let mut reports = 0u64;
    let mut most_worlds_alive = 0usize;
    let mut rss_after_warm_up = None;
    let summary = sweep(
        &SweepOptions::new((0..SEEDS).collect(), JOBS, Bugs::NONE),
        |_| {
            reports += 1;
            // A run frees its world before it hands its report over; the
            // sweeping threads may have started their next runs meanwhile.
            most_worlds_alive = most_worlds_alive.max(live_worlds());
            if reports == WARM_UP_SEEDS {
                rss_after_warm_up = rss_mb();
            }
        },
    );
    assert_eq!(summary.seeds_failed, 0, "{:#?}", summary.failures);
    assert_eq!(
        live_worlds(),
        0,
        "expected every run's world freed after the sweep, saw some alive"
    );
    assert!(
        most_worlds_alive <= JOBS,
        "expected at most {JOBS} worlds alive at once ({JOBS} sweeping threads), saw \
         {most_worlds_alive}"
    );
    if let (Some(warm), Some(end)) = (rss_after_warm_up, rss_mb()) {
        assert!(
            end <= warm + GROWTH_ALLOWED_MB,
            "expected the resident set to stop growing after {WARM_UP_SEEDS} seeds, saw it grow \
             from {warm} MiB to {end} MiB over the next {} seeds",
            SEEDS - WARM_UP_SEEDS
        );
    }
    assert!(summary.peak_rss_mb.is_none_or(|mb| mb > 0));
}
