//! The inputs of the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`), one
//! module per target, with the tests that check them and write their seed
//! corpora. They live here, not in the fuzz crate, so those tests run in
//! the workspace's own `cargo test` build: the fuzz crate holds only the
//! thin targets, and CI builds it once, for fuzzing.
//!
//! - [`scheduler_ops`]: bytes ⇄ op sequences for the op-level driver.
//! - [`sim_plan`] and [`cli_input`] (feature `sim`): a plan of the whole
//!   simulation, and command lines of `flushsim`; their byte layouts are
//!   hand-written on top of `arbitrary`'s `Unstructured` (one byte per
//!   knob, a `u64` seed, raw text), so they are easy to mutate, stable
//!   across `arbitrary` versions, and the committed seeds can be written
//!   from readable values ([`seeds`]).
//!
//! A target decodes bytes into one of these types (with `arbitrary`, as
//! `fuzz_target!` does) and calls its `check`.

#[cfg(feature = "sim")]
pub mod cli_input;
pub mod scheduler_ops;
#[cfg(feature = "sim")]
pub mod seeds;
#[cfg(feature = "sim")]
pub mod sim_plan;

use flush_core::bugs::{Bugs, PlantedBug};

/// The bugs named in `FLUSHSIM_FUZZ_BUG=name[,name…]` (unset: none), read
/// once per process, to measure how fast a target finds them. Panics on an
/// unknown name: a typo must not look like a clean run.
pub fn planted_bugs() -> Bugs {
    static BUGS: std::sync::OnceLock<Bugs> = std::sync::OnceLock::new();
    *BUGS.get_or_init(|| {
        std::env::var("FLUSHSIM_FUZZ_BUG")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .fold(Bugs::NONE, |bugs, name| match name.parse::<PlantedBug>() {
                Ok(bug) => bugs.with(bug),
                Err(error) => panic!("FLUSHSIM_FUZZ_BUG: {error}"),
            })
    })
}
