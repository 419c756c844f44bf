//! Whole simulations: bytes → a small `Plan` → `flush_sim::run` on madsim.
//!
//! The byte layout and the bounds are in `flush_tests::fuzz::sim_plan` (a `u64`
//! seed, one byte per workload knob, one per fault class: at most 160
//! writes, every fault class on or off with its own probability). Panics
//! only when a check fails, after printing the report, the plan file and
//! the command that replays it. `cargo +nightly fuzz fmt sim_plan FILE`
//! prints an input's plan file.
//!
//! Build with `--cfg madsim` (the simulator needs it; cargo-fuzz appends an
//! existing `RUSTFLAGS` to its own):
//! `RUSTFLAGS="--cfg madsim" cargo +nightly fuzz run --features sim sim_plan`.
//!
//! `FLUSHSIM_FUZZ_BUG=name[,name…]` plants bugs from the catalogue.

#![no_main]

use flush_tests::fuzz::sim_plan::{check, PlanInput};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: PlanInput| {
    check(&input, flush_tests::fuzz::planted_bugs());
});
