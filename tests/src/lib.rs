//! Test support for flush-tests.
//!
//! - [`model`]: reference models of the write-buffer manager and of one
//!   region worker, written for clarity.
//! - [`ops`]: op sequences run against `LocalEngine` and the model side by
//!   side, checked after every step; shared by the proptest suites, the
//!   cargo-fuzz target and the fuzz regression replays.
//! - [`fuzz`] (feature `arbitrary`): the inputs of the cargo-fuzz targets,
//!   their seed corpora and the tests that keep both honest.

// No unsafe code in this crate: what a fuzzer's AddressSanitizer would
// watch for cannot happen here (see ci/fuzz-smoke.sh).
#![forbid(unsafe_code)]

#[cfg(feature = "arbitrary")]
pub mod fuzz;
pub mod model;
pub mod ops;
