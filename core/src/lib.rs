//! # flush-core
//!
//! Our own implementation of the flush core of a time-series storage engine
//! (modelled on GreptimeDB Mito2): how a write becomes a Parquet file, and
//! every request that can get in the way.
//!
//! Map of the crate, in the order data flows:
//!
//! - [`ports`]: the edges. Job scheduler, object store, manifest store, WAL,
//!   clock, notifiers, fault points, event sink. The simulator implements
//!   them with faults; [`local`] implements them for real.
//! - [`request`]: what crosses a worker's queue; every client request
//!   carries a [`request::Responder`] that is answered exactly once.
//! - [`worker`]: the region worker, a state machine the runtime drives one
//!   request at a time (one file per kind of request).
//! - [`buffer`]: the engine-wide write-buffer manager (when to flush, when
//!   to stall), fed by [`memtable`]'s allocation trackers.
//! - [`region`]: a region's version: mutable and immutable memtables, SSTs,
//!   flush marks.
//! - [`flush`]: the per-worker flush scheduler and the flush job.
//! - [`sst`]: memtable rows ⇄ arrow `RecordBatch` ⇄ Parquet bytes.
//! - [`manifest`]: durable region state and the rules for changing it.
//! - [`fs`]: the file-system port (what survives a crash: synced bytes,
//!   synced directory entries) and its `std::fs` implementation;
//!   [`durable`]: ports written over it (the framed, CRC-checked WAL, the
//!   manifest file, the object store).
//! - `tokio_engine` (feature `tokio`): the workers as tokio tasks behind
//!   bounded queues, a bounded job pool, a graceful stop.
//! - [`bugs`]: the planted-bug switchboard; [`events`]: state transitions
//!   reported to the world; [`error`]: typed errors.
//!
//! A write: `worker::handle_write` → WAL append → mutable memtable (memory
//! reserved) → reply. When the buffer says so, the scheduler freezes the
//! mutable memtable and submits a job; the job encodes each immutable
//! memtable as Parquet, puts it in the object store, commits a
//! [`manifest::RegionEdit`], and notifies the worker, which drops the
//! flushed memtables (memory freed), trims the WAL and answers the waiters.

// No unsafe code in this crate: what a fuzzer's AddressSanitizer would
// watch for cannot happen here (see ci/fuzz-smoke.sh).
#![forbid(unsafe_code)]

/// Whether this build has the `strict` feature: the core's assertions
/// ([`strict_assert!`]) hold in it whatever the profile. The simulator's
/// tests check it is on there.
pub const STRICT: bool = cfg!(feature = "strict");

/// An assertion that holds in debug builds and in every build with the
/// `strict` feature, which the simulator switches on: its sweeps run
/// `--release`, and a pre- or post-condition checked only in debug builds
/// would check nothing during the main job. A violation panics; the
/// simulator reports the panic as a failed `no_panic` check with the
/// seed's replay line.
macro_rules! strict_assert {
    ($($arg:tt)*) => {
        if cfg!(any(debug_assertions, feature = "strict")) {
            assert!($($arg)*);
        }
    };
}

/// [`strict_assert!`] for equality.
macro_rules! strict_assert_eq {
    ($($arg:tt)*) => {
        if cfg!(any(debug_assertions, feature = "strict")) {
            assert_eq!($($arg)*);
        }
    };
}

pub mod buffer;
pub mod bugs;
pub mod durable;
pub mod error;
pub mod events;
pub mod flush;
pub mod fs;
pub mod ids;
pub mod leader;
pub mod local;
pub mod manifest;
pub mod memtable;
pub mod ports;
pub mod region;
pub mod request;
pub mod row;
pub mod schema;
pub mod sst;
pub mod telemetry;
#[cfg(feature = "tokio")]
pub mod tokio_engine;
pub mod worker;
