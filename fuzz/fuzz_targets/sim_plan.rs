//! Whole simulations: bytes → a scripted `Plan` → `flush_sim::run` on madsim.
//!
//! The byte layout is in `flush_tests::fuzz::sim_plan`: a seed and a small
//! header (engine shape, buffer, crashes, timing), then entries, each one
//! client request (write, flush, alter, truncate, drop, close, downgrade),
//! a pause, or a fault decision that fires (`job_rejection#1`: the second
//! job submission is rejected). Requests and faults are data, so one
//! mutation changes one request or moves one fault. Panics only when a
//! check fails, after printing the report, the plan file and the command
//! that replays it. `cargo +nightly fuzz fmt sim_plan FILE` prints an
//! input's plan file.
//!
//! Build with `--cfg madsim` (the simulator needs it; cargo-fuzz appends an
//! existing `RUSTFLAGS` to its own):
//! `RUSTFLAGS="--cfg madsim" cargo +nightly fuzz run --features sim sim_plan
//! -- -max_len=600 -entropic=0` (libFuzzer's entropic schedule costs this
//! target ten times its speed: BENCHMARKS.md).
//!
//! `FLUSHSIM_FUZZ_BUG=name[,name…]` plants bugs from the catalogue.

#![no_main]

use flush_tests::fuzz::sim_plan::{check, PlanInput};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: PlanInput| {
    check(&input, flush_tests::fuzz::planted_bugs());
});
