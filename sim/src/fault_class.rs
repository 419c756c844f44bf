//! The fault classes: the kinds of thing the simulated world does wrong,
//! each with its name (as plans, reports and `--bug`-style flags spell it)
//! and the probability range sweeps draw it from.
//!
//! A module of its own so that both the plan ([`crate::plan`], the mix of
//! classes a seed draws) and a script ([`crate::script`], the decisions
//! that fire) can name a class without importing each other.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A fault class: one kind of thing the world does wrong. Every injected
/// fault is counted under its class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultClass {
    /// The injector drops a region.
    RegionDrop,
    /// The injector closes a region.
    RegionClose,
    /// The injector truncates a region.
    RegionTruncate,
    /// An alter arrives while the region's SST is being written.
    AlterDuringFlush,
    /// A downgrade arrives while the region's SST is being written.
    DowngradeDuringFlush,
    /// The job scheduler refuses a flush job.
    JobRejection,
    /// A manifest create, load or update fails (and changes nothing).
    ManifestFailure,
    /// An SST put fails and leaves no object.
    SstWriteError,
    /// An SST put fails and leaves a truncated object behind.
    SstPartialObject,
    /// Freezing the mutable memtable fails (a fault point in the core).
    FreezeFailure,
    /// A flush result finds the worker's queue full.
    NotifyFailure,
    /// An I/O takes much longer than usual.
    SlowIo,
    /// A WAL append fails and logs nothing.
    WalAppendFailure,
    /// The engine is killed (aimed at a crash window, see
    /// [`crate::world::crash::CrashWindow`]) and restarted: reopen from the
    /// manifests, replay the WAL. Its probability is the chance of another
    /// crash after each restart.
    Crash,
    /// Discarding WAL entries fails (a trim after a flush, the trim of a
    /// truncate, the purge of a drop or a create) and discards nothing.
    WalTruncateFailure,
    /// A flush's manifest edit is saved (renamed into place) but reported
    /// failed: the directory sync after the rename fails, as a lost reply
    /// or a timeout of a real store would. A crash before the directory is
    /// synced may still undo it.
    ManifestAmbiguousCommit,
    /// A restart the crash actor decided on is a graceful stop instead of
    /// a kill: the engine's queues close, its workers answer what they
    /// hold and stop, flush jobs still running die with the node, and
    /// nothing is lost from the file system. Its probability is the chance
    /// that a restart of the crash actor is one.
    GracefulStop,
    /// The job scheduler accepts a flush job and then drops it without
    /// running it (a runtime shutting down).
    JobLost,
    /// A flush job panics mid-flush (a bug in an encoder or a store
    /// client): after an SST put, or inside the manifest commit before or
    /// after the edit is saved. Last in [`FaultClass::ALL`], so every
    /// older class draws as before.
    JobPanic,
}

impl FaultClass {
    /// The class's place in [`FaultClass::ALL`].
    pub fn index(self) -> usize {
        FaultClass::ALL
            .iter()
            .position(|class| *class == self)
            .unwrap_or(0)
    }

    /// Every class, in report order.
    pub const ALL: &'static [FaultClass] = &[
        FaultClass::RegionDrop,
        FaultClass::RegionClose,
        FaultClass::RegionTruncate,
        FaultClass::AlterDuringFlush,
        FaultClass::DowngradeDuringFlush,
        FaultClass::JobRejection,
        FaultClass::ManifestFailure,
        FaultClass::SstWriteError,
        FaultClass::SstPartialObject,
        FaultClass::FreezeFailure,
        FaultClass::NotifyFailure,
        FaultClass::SlowIo,
        FaultClass::WalAppendFailure,
        FaultClass::Crash,
        FaultClass::WalTruncateFailure,
        FaultClass::ManifestAmbiguousCommit,
        FaultClass::GracefulStop,
        FaultClass::JobLost,
        FaultClass::JobPanic,
    ];

    /// Stable snake_case name, as in JSON.
    pub fn name(self) -> &'static str {
        match self {
            FaultClass::RegionDrop => "region_drop",
            FaultClass::RegionClose => "region_close",
            FaultClass::RegionTruncate => "region_truncate",
            FaultClass::AlterDuringFlush => "alter_during_flush",
            FaultClass::DowngradeDuringFlush => "downgrade_during_flush",
            FaultClass::JobRejection => "job_rejection",
            FaultClass::ManifestFailure => "manifest_failure",
            FaultClass::SstWriteError => "sst_write_error",
            FaultClass::SstPartialObject => "sst_partial_object",
            FaultClass::FreezeFailure => "freeze_failure",
            FaultClass::NotifyFailure => "notify_failure",
            FaultClass::SlowIo => "slow_io",
            FaultClass::WalAppendFailure => "wal_append_failure",
            FaultClass::Crash => "crash",
            FaultClass::WalTruncateFailure => "wal_truncate_failure",
            FaultClass::ManifestAmbiguousCommit => "manifest_ambiguous_commit",
            FaultClass::GracefulStop => "graceful_stop",
            FaultClass::JobLost => "job_lost",
            FaultClass::JobPanic => "job_panic",
        }
    }

    /// Range the class's probability is drawn from (log-uniform): per
    /// injector tick for region faults, per operation for the others.
    pub fn probability_range(self) -> (f64, f64) {
        match self {
            FaultClass::RegionDrop | FaultClass::RegionClose | FaultClass::RegionTruncate => {
                (0.01, 0.15)
            }
            FaultClass::AlterDuringFlush | FaultClass::DowngradeDuringFlush => (0.02, 0.3),
            FaultClass::JobRejection | FaultClass::FreezeFailure => (0.01, 0.3),
            FaultClass::ManifestFailure | FaultClass::SstWriteError => (0.01, 0.25),
            FaultClass::SstPartialObject => (0.01, 0.25),
            FaultClass::NotifyFailure => (0.02, 0.5),
            FaultClass::SlowIo => (0.01, 0.3),
            FaultClass::WalAppendFailure => (0.002, 0.05),
            FaultClass::Crash => (0.2, 0.8),
            FaultClass::WalTruncateFailure => (0.02, 0.4),
            FaultClass::ManifestAmbiguousCommit => (0.01, 0.2),
            FaultClass::GracefulStop => (0.2, 0.6),
            FaultClass::JobLost => (0.01, 0.2),
            FaultClass::JobPanic => (0.01, 0.2),
        }
    }
}

impl fmt::Display for FaultClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FaultClass {
    /// Whether a script decides this class. The crash actor's two classes
    /// are drawn from the plan's fault mix even in a scripted plan: when a
    /// crash lands is a time, not a decision at a fault point.
    pub fn scripted(self) -> bool {
        !matches!(self, FaultClass::Crash | FaultClass::GracefulStop)
    }
}
