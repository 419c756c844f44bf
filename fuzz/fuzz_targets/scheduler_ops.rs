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

use flush_tests::ops::{describe, run_ops, Op};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|ops: Vec<Op>| {
    if let Err(violation) = run_ops(&ops, flush_tests::fuzz::planted_bugs()) {
        panic!("{violation}\nops: {}", describe(&ops));
    }
});
