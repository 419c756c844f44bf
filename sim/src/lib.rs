//! # flush-sim
//!
//! Deterministic simulation of `flush-core` on madsim, read top to bottom as
//! the data flows:
//!
//! - [`plan`]: a seed becomes a [`plan::Plan`]: the workload and the swarm
//!   fault mix, drawn with ChaCha8; [`plan_check`]: what a plan must hold
//!   to run (a plan file is input, checked before anything runs);
//!   [`script`]: a plan's requests and fault decisions written out as
//!   data instead of drawn (what the `sim_plan` fuzzer mutates).
//! - [`world`]: the simulated world: one module per core port (job
//!   scheduler, object store, manifest store, WAL, clock, fault points,
//!   notifiers, event sink), each injecting its faults and counting them.
//! - [`engine`]: the workers under test, as madsim tasks on their own node.
//! - [`actors`]: workload clients, the fault injector, the ticker.
//! - [`crash_test`]: `flushsim crash-test`, the same crash rules held
//!   against a real child process (the tokio engine on real files) killed
//!   with SIGKILL.
//! - [`crash`]: the crash actor: kills the engine (aimed at windows inside
//!   operations), restarts it, reopens every region, checks `recovery`.
//! - [`run`]: one run, on a fresh madsim runtime on a fresh thread: setup,
//!   safety phase (faults on), liveness phase (faults off), final checks.
//! - [`ledger`] and [`oracle`]: every request and its reply; the named
//!   checks of DESIGN §4.
//! - [`report`]: the verdict, the trace hash, the replay line.
//! - [`sweep`]: many seeds in parallel, summed up, with `fault_coverage`
//!   and the process's peak resident memory ([`memory`]); which seeds, in
//!   which order ([`seeds`]); when a long sweep stops ([`budget`]); its
//!   per-seed JSON Lines stream ([`stream`]).
//! - [`shard_env`]: `--shard auto`, the shard from a CI or batch engine's
//!   environment; [`merge`]: many shards' reports checked and made one.
//! - [`shrink`]: a failing plan made smaller while it fails the same check.
//! - [`timeline`]: a run's trace as a Chrome trace file (Perfetto).
//! - [`catalogue`]: seeds-to-detect for each planted bug, over the sweep's
//!   own plans.
//! - [`draw`]: what a client asks for next, drawn from its RNG stream;
//!   the simulated and the bench's direct clients share it.
//! - [`bench`]: `flushsim bench`: seeds/s, sim overhead over a plain
//!   executor, Parquet encoding against a bare arrow-rs writer.
//! - [`bench_engine`]: `flushsim bench-engine`: the standard workload on the
//!   tokio engine over real files (rows/s, flushes/s, syncs per write).
//! - [`cli`]: the `flushsim` command line, a thin layer over the above.
//!
//! Tests, fuzz targets and benchmarks call [`run::run`] and
//! [`sweep::sweep`]; nothing has a harness of its own.

// No unsafe code in this crate: what a fuzzer's AddressSanitizer would
// watch for cannot happen here (see ci/fuzz-smoke.sh).
#![forbid(unsafe_code)]

pub mod actors;
pub mod bench;
pub mod bench_engine;
pub mod budget;
pub mod catalogue;
pub mod check;
pub mod cli;
pub mod client;
pub mod crash;
pub mod crash_test;
pub mod draw;
pub mod engine;
pub mod explore;
pub mod fault_class;
pub mod ledger;
pub mod memory;
pub mod merge;
pub mod oracle;
pub mod plain;
pub mod plan;
pub mod plan_check;
pub mod recipe;
pub mod report;
pub mod run;
pub mod script;
pub mod seeds;
pub mod shard_env;
pub mod shrink;
pub mod stream;
pub mod sweep;
pub mod timeline;
pub mod world;

pub use plan::Plan;
pub use report::Report;
pub use run::{run, run_with, RunOptions};
