//! # flush-sim
//!
//! Deterministic simulation of `flush-core` on madsim, read top to bottom as
//! the data flows:
//!
//! - [`plan`]: a seed becomes a [`plan::Plan`]: the workload and the swarm
//!   fault mix, drawn with ChaCha8.
//! - [`world`]: the simulated world: one module per core port (job
//!   scheduler, object store, manifest store, WAL, clock, fault points,
//!   notifiers, event sink), each injecting its faults and counting them.
//! - [`engine`]: the workers under test, as madsim tasks on their own node.
//! - [`actors`]: workload clients, the fault injector, the ticker.
//! - [`run`]: one run, on a fresh madsim runtime on a fresh thread: setup,
//!   safety phase (faults on), liveness phase (faults off), final checks.
//! - [`ledger`] and [`oracle`]: every request and its reply; the named
//!   checks of DESIGN §4.
//! - [`report`]: the verdict, the trace hash, the replay line.
//! - [`sweep`]: many seeds in parallel, summed up, with `fault_coverage`.
//! - [`cli`]: the `flushsim` command line, a thin layer over the above.
//!
//! Tests, fuzz targets and benchmarks call [`run::run`] and
//! [`sweep::sweep`]; nothing has a harness of its own.

pub mod actors;
pub mod cli;
pub mod engine;
pub mod ledger;
pub mod oracle;
pub mod plan;
pub mod report;
pub mod run;
pub mod sweep;
pub mod world;

pub use plan::Plan;
pub use report::Report;
pub use run::{run, run_with, RunOptions};
