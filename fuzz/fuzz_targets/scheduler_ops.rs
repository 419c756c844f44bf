//! Op sequences against the region worker and the reference model.
//!
//! Bytes → `Vec<Op>` (structure-aware, via `arbitrary`) → the same
//! `flush_tests::ops::run_ops` the proptest suites use. Panics only on a
//! violated check (or a panic inside the core), never on odd input: every
//! decoded op is valid by construction.
//!
//! `FLUSHSIM_FUZZ_BUG=name[,name…]` plants bugs from the catalogue
//! (`flushsim bugs`), to measure how fast the target finds them.

#![no_main]

use std::sync::OnceLock;

use flush_core::bugs::{Bugs, PlantedBug};
use flush_tests::ops::{describe, run_ops, Op};
use libfuzzer_sys::fuzz_target;

/// The planted bugs, read once from `FLUSHSIM_FUZZ_BUG`.
fn planted_bugs() -> Bugs {
    static BUGS: OnceLock<Bugs> = OnceLock::new();
    *BUGS.get_or_init(|| {
        let names = std::env::var("FLUSHSIM_FUZZ_BUG").unwrap_or_default();
        names
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .fold(Bugs::NONE, |bugs, name| match name.parse::<PlantedBug>() {
                Ok(bug) => bugs.with(bug),
                Err(error) => panic!("FLUSHSIM_FUZZ_BUG: {error}"),
            })
    })
}

fuzz_target!(|ops: Vec<Op>| {
    if let Err(violation) = run_ops(&ops, planted_bugs()) {
        panic!("{violation}\nops: {}", describe(&ops));
    }
});
