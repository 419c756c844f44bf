//! Inputs of the `sim_plan` and `cli_input` fuzz targets, shared with the
//! tests below that check them and write their seed corpora.
//!
//! The targets (`fuzz_targets/*.rs`) are thin: they decode bytes into one
//! of the types here (with `arbitrary`, as `fuzz_target!` does) and call
//! [`sim_plan::check`] or [`cli_input::check`].
//!
//! Both byte layouts are hand-written on top of `arbitrary`'s
//! `Unstructured` (one byte per knob, a `u64` seed, raw text), so they are
//! easy to mutate, stable across `arbitrary` versions, and the committed
//! seeds can be written from readable values.
//!
//! Everything but [`planted_bugs`] needs the `sim` feature and `--cfg
//! madsim` (see `Cargo.toml`). The tests build outside cargo-fuzz, where
//! the enclosing workspace's `.cargo/config.toml` supplies the cfg:
//! `cd fuzz && cargo +nightly test --features sim`; add `-- --ignored` to
//! rewrite the seed corpora.

#[cfg(feature = "sim")]
pub mod cli_input;
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
