//! The `flushsim` CLI's input parsing: seed ranges, shard specs, bug
//! names, plan files and whole command lines, through the functions the
//! CLI calls (see `flush_tests::fuzz::cli_input`). Errors are expected; a panic,
//! a hang or a parse that does not survive a round trip is a finding.
//!
//! Build with `--cfg madsim` like `sim_plan` (it links the simulator crate):
//! `RUSTFLAGS="--cfg madsim" cargo +nightly fuzz run --features sim cli_input`.

#![no_main]

use flush_tests::fuzz::cli_input::{check, CliInput};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: CliInput| {
    check(&input);
});
