//! Typed errors.
//!
//! Every request gets exactly one reply; an error reply says which region,
//! which operation and why. [`ErrorKind`] is the coarse classification the
//! simulator's `reply_kind` oracle compares against the cause it injected.

use std::sync::Arc;

use thiserror::Error;

use crate::ids::RegionId;
use crate::leader::LeaderState;

/// Coarse error classes, stable for oracles and reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    RegionNotFound,
    RegionExists,
    RegionDropped,
    RegionClosed,
    RegionTruncated,
    RegionReadOnly,
    FlushFailed,
    JobRejected,
    FreezeFailed,
    Manifest,
    ObjectStore,
    Wal,
    Sst,
    WriteStallFull,
    WriteStallTimeout,
    WorkerStopped,
    InvalidRequest,
    UnknownColumn,
}

impl ErrorKind {
    /// Stable lower-case name, used in reports and snapshots.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::RegionNotFound => "region_not_found",
            ErrorKind::RegionExists => "region_exists",
            ErrorKind::RegionDropped => "region_dropped",
            ErrorKind::RegionClosed => "region_closed",
            ErrorKind::RegionTruncated => "region_truncated",
            ErrorKind::RegionReadOnly => "region_read_only",
            ErrorKind::FlushFailed => "flush_failed",
            ErrorKind::JobRejected => "job_rejected",
            ErrorKind::FreezeFailed => "freeze_failed",
            ErrorKind::Manifest => "manifest",
            ErrorKind::ObjectStore => "object_store",
            ErrorKind::Wal => "wal",
            ErrorKind::Sst => "sst",
            ErrorKind::WriteStallFull => "write_stall_full",
            ErrorKind::WriteStallTimeout => "write_stall_timeout",
            ErrorKind::WorkerStopped => "worker_stopped",
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::UnknownColumn => "unknown_column",
        }
    }
}

/// Errors of the object-store port.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    #[error("object {path} not found")]
    NotFound { path: String },
    #[error("object store i/o error on {path}: {reason}")]
    Io { path: String, reason: String },
}

/// Errors of the manifest-store port and of manifest rules.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ManifestError {
    #[error("manifest of {region_id} not found")]
    NotFound { region_id: RegionId },
    #[error("manifest of {region_id} already exists")]
    Exists { region_id: RegionId },
    #[error("manifest of {region_id} is dropped")]
    Dropped { region_id: RegionId },
    #[error(
        "manifest update of {region_id} expected leader state {expected:?}, region is {actual:?}"
    )]
    UnexpectedState {
        region_id: RegionId,
        expected: LeaderState,
        actual: LeaderState,
    },
    #[error("manifest edit of {region_id} is stale: made in epoch {edit_epoch}, manifest is at epoch {manifest_epoch}")]
    StaleEpoch {
        region_id: RegionId,
        edit_epoch: u64,
        manifest_epoch: u64,
    },
    #[error(
        "manifest edit of {region_id} moves flushed entry id backwards: {current} -> {proposed}"
    )]
    FlushedEntryBackwards {
        region_id: RegionId,
        current: u64,
        proposed: u64,
    },
    #[error("manifest store i/o error for {region_id}: {reason}")]
    Io { region_id: RegionId, reason: String },
    #[error("manifest of {region_id} is corrupt: {reason}")]
    Corrupt { region_id: RegionId, reason: String },
}

impl ManifestError {
    /// An I/O error leaves the change's fate open: a store may have saved
    /// it and still failed to say so (a failed directory sync after the
    /// rename, a lost reply). Every other error is a ruling: nothing
    /// changed.
    pub fn is_unsettled(&self) -> bool {
        matches!(self, ManifestError::Io { .. })
    }
}

/// Errors of the write-ahead-log port.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WalError {
    #[error("wal append for {region_id} entry {entry_id} failed: {reason}")]
    Append {
        region_id: RegionId,
        entry_id: u64,
        reason: String,
    },
    #[error("wal read for {region_id} failed: {reason}")]
    Read { region_id: RegionId, reason: String },
    #[error("wal entry of {region_id} is corrupt: {reason}")]
    Corrupt { region_id: RegionId, reason: String },
    #[error("wal truncation for {region_id} failed: {reason}")]
    Truncate { region_id: RegionId, reason: String },
}

/// Errors encoding or decoding an SST.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SstError {
    #[error("encoding sst {path}: {reason}")]
    Encode { path: String, reason: String },
    #[error("decoding sst {path}: {reason}")]
    Decode { path: String, reason: String },
}

/// Why a flush job failed. Shared by every request waiting on the flush.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FlushError {
    #[error("writing sst of {region_id}: {source}")]
    Store {
        region_id: RegionId,
        #[source]
        source: StoreError,
    },
    #[error("encoding sst of {region_id}: {source}")]
    Sst {
        region_id: RegionId,
        #[source]
        source: SstError,
    },
    #[error("committing flush of {region_id}: {source}")]
    Manifest {
        region_id: RegionId,
        #[source]
        source: ManifestError,
    },
    #[error("flush job of {region_id} was dropped before it finished")]
    JobLost { region_id: RegionId },
    #[error("flush job of {region_id} panicked: {message}")]
    JobPanicked {
        region_id: RegionId,
        message: String,
    },
}

/// The error a client sees in a reply.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RequestError {
    #[error("{region_id} not found")]
    RegionNotFound { region_id: RegionId },
    #[error("{region_id} already exists")]
    RegionExists { region_id: RegionId },
    #[error("{region_id} was dropped")]
    RegionDropped { region_id: RegionId },
    #[error("{region_id} was closed")]
    RegionClosed { region_id: RegionId },
    #[error("{region_id} was truncated")]
    RegionTruncated { region_id: RegionId },
    #[error("{region_id} is not writable, it is {state:?}")]
    RegionReadOnly {
        region_id: RegionId,
        state: LeaderState,
    },
    #[error("flush of {region_id} failed: {source}")]
    FlushFailed {
        region_id: RegionId,
        #[source]
        source: Arc<FlushError>,
    },
    #[error("flush job of {region_id} was rejected by the job scheduler: {reason}")]
    JobRejected { region_id: RegionId, reason: String },
    #[error("freezing the mutable memtable of {region_id} failed")]
    FreezeFailed { region_id: RegionId },
    #[error("manifest operation on {region_id} failed: {source}")]
    Manifest {
        region_id: RegionId,
        #[source]
        source: ManifestError,
    },
    #[error("object store operation on {region_id} failed: {source}")]
    ObjectStore {
        region_id: RegionId,
        #[source]
        source: StoreError,
    },
    #[error("wal operation on {region_id} failed: {source}")]
    Wal {
        region_id: RegionId,
        #[source]
        source: WalError,
    },
    #[error("reading sst of {region_id} failed: {source}")]
    Sst {
        region_id: RegionId,
        #[source]
        source: SstError,
    },
    #[error("write to {region_id} refused: {stalled} writes already stalled (limit {limit})")]
    WriteStallFull {
        region_id: RegionId,
        stalled: usize,
        limit: usize,
    },
    /// A write stalled longer than the worker's stall timeout: it was
    /// never applied. Memory a follower holds cannot be flushed, so
    /// without a bound such a write would wait for a DDL that may never
    /// come (mito2 leaves it stalled; its client's timeout then reports a
    /// failure for a write that may still be applied later).
    #[error(
        "write to {region_id} stalled {waited_ms} ms, past the stall timeout of {timeout_ms} ms"
    )]
    WriteStallTimeout {
        region_id: RegionId,
        waited_ms: u64,
        timeout_ms: u64,
    },
    #[error("worker stopped before {region_id}'s request completed")]
    WorkerStopped { region_id: RegionId },
    #[error("invalid request for {region_id}: {reason}")]
    InvalidRequest { region_id: RegionId, reason: String },
    /// A write sets a field the region's schema does not have (mito2:
    /// column not found).
    #[error("{region_id} has no column {column}")]
    UnknownColumn { region_id: RegionId, column: String },
}

impl RequestError {
    /// The coarse class of this error, for oracles.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RequestError::RegionNotFound { .. } => ErrorKind::RegionNotFound,
            RequestError::RegionExists { .. } => ErrorKind::RegionExists,
            RequestError::RegionDropped { .. } => ErrorKind::RegionDropped,
            RequestError::RegionClosed { .. } => ErrorKind::RegionClosed,
            RequestError::RegionTruncated { .. } => ErrorKind::RegionTruncated,
            RequestError::RegionReadOnly { .. } => ErrorKind::RegionReadOnly,
            RequestError::FlushFailed { .. } => ErrorKind::FlushFailed,
            RequestError::JobRejected { .. } => ErrorKind::JobRejected,
            RequestError::FreezeFailed { .. } => ErrorKind::FreezeFailed,
            RequestError::Manifest { .. } => ErrorKind::Manifest,
            RequestError::ObjectStore { .. } => ErrorKind::ObjectStore,
            RequestError::Wal { .. } => ErrorKind::Wal,
            RequestError::Sst { .. } => ErrorKind::Sst,
            RequestError::WriteStallFull { .. } => ErrorKind::WriteStallFull,
            RequestError::WriteStallTimeout { .. } => ErrorKind::WriteStallTimeout,
            RequestError::WorkerStopped { .. } => ErrorKind::WorkerStopped,
            RequestError::InvalidRequest { .. } => ErrorKind::InvalidRequest,
            RequestError::UnknownColumn { .. } => ErrorKind::UnknownColumn,
        }
    }

    /// The region the failed request was about.
    pub fn region_id(&self) -> RegionId {
        match self {
            RequestError::RegionNotFound { region_id }
            | RequestError::RegionExists { region_id }
            | RequestError::RegionDropped { region_id }
            | RequestError::RegionClosed { region_id }
            | RequestError::RegionTruncated { region_id }
            | RequestError::RegionReadOnly { region_id, .. }
            | RequestError::FlushFailed { region_id, .. }
            | RequestError::JobRejected { region_id, .. }
            | RequestError::FreezeFailed { region_id }
            | RequestError::Manifest { region_id, .. }
            | RequestError::ObjectStore { region_id, .. }
            | RequestError::Wal { region_id, .. }
            | RequestError::Sst { region_id, .. }
            | RequestError::WriteStallFull { region_id, .. }
            | RequestError::WriteStallTimeout { region_id, .. }
            | RequestError::WorkerStopped { region_id }
            | RequestError::InvalidRequest { region_id, .. }
            | RequestError::UnknownColumn { region_id, .. } => *region_id,
        }
    }
}

/// Errors of the write-buffer manager's accounting.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum BufferError {
    #[error("freeing {requested} bytes but only {used} are used")]
    FreeUnderflow { requested: usize, used: usize },
    #[error("scheduling {requested} bytes to be freed but only {active} are active")]
    ScheduleFreeUnderflow { requested: usize, active: usize },
}

/// The text a panic carried (`panic!` with a message gives a `&str` or a
/// `String`), for reports of a caught panic.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic with a non-text payload".to_string()
    }
}
