//! Core events: the state transitions the core reports through
//! [`crate::ports::EventSink`].
//!
//! The simulator folds them into its trace hash and counts each kind, so a
//! sweep can prove that rare branches were reached (TigerBeetle's marks,
//! Antithesis' "sometimes").

use crate::error::ErrorKind;
use crate::ids::{FileId, RegionId};
use crate::request::FlushReason;

#[derive(Clone, Debug, PartialEq, Hash)]
pub enum CoreEvent {
    FlushScheduled {
        region_id: RegionId,
        reason: FlushReason,
    },
    /// A flush request joined one already running or pending.
    FlushMerged {
        region_id: RegionId,
    },
    FlushJobStarted {
        region_id: RegionId,
        epoch: u64,
    },
    SstWritten {
        region_id: RegionId,
        file_id: FileId,
        rows: u64,
    },
    FlushCommitted {
        region_id: RegionId,
        epoch: u64,
        flushed_entry_id: u64,
        files: usize,
        /// Bytes of the SSTs the edit adds.
        bytes: u64,
    },
    FlushFailed {
        region_id: RegionId,
        epoch: u64,
        reason: String,
    },
    /// A finished flush was applied to the region version.
    FlushApplied {
        region_id: RegionId,
    },
    /// A flush result arrived for a region that is gone or reset.
    StaleFlushIgnored {
        region_id: RegionId,
    },
    FreezeFailed {
        region_id: RegionId,
    },
    /// An alter committed a newer schema; `added_field` if it added one.
    RegionAltered {
        region_id: RegionId,
        schema_version: u64,
        added_field: Option<String>,
    },
    JobRejected {
        region_id: RegionId,
    },
    NotifyRetried {
        region_id: RegionId,
        attempt: u32,
    },
    /// A notification found its worker stopped; the worker answered the
    /// region's waiters itself when it shut down.
    NotifyGaveUp {
        region_id: RegionId,
    },
    WriteStalled {
        region_id: RegionId,
        stalled: usize,
    },
    StallReleased {
        count: usize,
    },
    /// `count` stalled writes waited past the stall timeout and were
    /// answered with `WriteStallTimeout`.
    StallTimedOut {
        count: usize,
    },
    /// An engine-full flush picked `region_id`, whose mutable memtable holds
    /// `picked_bytes`; `largest_bytes` is the largest candidate's.
    EngineFullFlush {
        region_id: RegionId,
        picked_bytes: usize,
        largest_bytes: usize,
    },
    StallReliefFlush {
        region_id: RegionId,
    },
    DdlQueued {
        region_id: RegionId,
    },
    WriteQueuedBehindDdl {
        region_id: RegionId,
    },
    /// Pending requests answered with an error when their region went away.
    PendingFailed {
        region_id: RegionId,
        kind: ErrorKind,
        count: usize,
    },
    WalReplayed {
        region_id: RegionId,
        entries: usize,
    },
    OrphanPurged {
        region_id: RegionId,
        path: String,
    },
    /// A flush that did not commit removed an SST it had written.
    FailedFlushFileRemoved {
        region_id: RegionId,
        path: String,
    },
}

impl CoreEvent {
    /// Stable name of the event kind: the "mark" a sweep counts.
    pub fn mark(&self) -> &'static str {
        match self {
            CoreEvent::FlushScheduled { .. } => "flush_scheduled",
            CoreEvent::FlushMerged { .. } => "flush_merged",
            CoreEvent::FlushJobStarted { .. } => "flush_job_started",
            CoreEvent::SstWritten { .. } => "sst_written",
            CoreEvent::FlushCommitted { .. } => "flush_committed",
            CoreEvent::FlushFailed { .. } => "flush_failed",
            CoreEvent::FlushApplied { .. } => "flush_applied",
            CoreEvent::StaleFlushIgnored { .. } => "stale_flush_ignored",
            CoreEvent::FreezeFailed { .. } => "freeze_failed",
            CoreEvent::RegionAltered { .. } => "region_altered",
            CoreEvent::JobRejected { .. } => "job_rejected",
            CoreEvent::NotifyRetried { .. } => "notify_retried",
            CoreEvent::NotifyGaveUp { .. } => "notify_gave_up",
            CoreEvent::WriteStalled { .. } => "write_stalled",
            CoreEvent::StallReleased { .. } => "stall_released",
            CoreEvent::StallTimedOut { .. } => "stall_timed_out",
            CoreEvent::EngineFullFlush { .. } => "engine_full_flush",
            CoreEvent::StallReliefFlush { .. } => "stall_relief_flush",
            CoreEvent::DdlQueued { .. } => "ddl_queued",
            CoreEvent::WriteQueuedBehindDdl { .. } => "write_queued_behind_ddl",
            CoreEvent::PendingFailed { .. } => "pending_failed",
            CoreEvent::WalReplayed { .. } => "wal_replayed",
            CoreEvent::OrphanPurged { .. } => "orphan_purged",
            CoreEvent::FailedFlushFileRemoved { .. } => "failed_flush_file_removed",
        }
    }
}
