//! The oracles: named checks of DESIGN §4, each with one job and a message
//! saying what was expected and what was seen.
//!
//! The run owns one [`Checks`] value: the client ledger, the violations
//! seen while the run goes, and their bookkeeping. The world calls its
//! hooks as things happen (core events, manifest changes, commits in doubt,
//! engines gone); the [`Sampler`] and the crash judge report through it.
//! At the end every check looks at the end state ([`Observations`]) and
//! the ledger. Rows are read back from the Parquet SSTs with the core's own
//! reader.
//!
//! One file per check, named after it ([`Check`] names them all);
//! `replies` holds the two reply checks, `rows` the row judge that
//! `no_lost_rows` and `recovery` share, `sampler` the in-run sampling,
//! `checks` the value the run owns.
//! This file holds what they share: the observations, the results, and
//! [`check_run`], which runs them in report order.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use flush_core::buffer::WriteBufferManager;
use flush_core::error::ErrorKind;
use flush_core::flush::FlushStatusView;
use flush_core::ids::{sst_path, FileId, RegionId};
use flush_core::manifest::LeaderState;
use flush_core::memtable::{FieldValue, Row};
use flush_core::request::Output;
use flush_core::telemetry;
use flush_core::worker::WorkerView;
use serde::{Deserialize, Serialize};

pub use crate::check::Check;

mod buffer_accounting;
mod causes;
mod checks;
mod idle_memory;
mod liveness;
mod manifest_consistency;
mod metrics_agree;
mod monotonic_flush_marks;
mod no_orphan_ssts;
mod rare_states;
mod recovery;
mod replies;
mod rows;
mod sampler;
mod scheduler_state;
mod version_matches_manifest;
mod writability;

use buffer_accounting::buffer_accounting;
pub use checks::{Checks, FlushBook, Violations};
use idle_memory::idle_memory;
use liveness::liveness;
pub use manifest_consistency::Decoded;
pub use manifest_consistency::SstCache;
use manifest_consistency::{decode_listed_ssts, lists, manifest_consistency};
use metrics_agree::metrics_agree;
use monotonic_flush_marks::monotonic_flush_marks;
use no_orphan_ssts::no_orphan_ssts;
pub use rare_states::{RareState, Reach, WatchSettings};
use recovery::recovery;
pub use recovery::{decode_recovered, recovery_problems, RecoveredRegion, RecoveryStats};
use replies::{covering_promises, exactly_once_reply, reply_kind};
pub use rows::Unlogged;
use rows::{no_lost_rows, row_problems, Found};
pub use sampler::Sampler;
use sampler::{status_problem, statuses};
use scheduler_state::scheduler_state;
use version_matches_manifest::version_matches_manifest;
use writability::writability;

use crate::ledger::{LedgerEntry, Origin, Outcome};
use crate::plan::FaultClass;
use crate::world::manifests::{ManifestRecord, ManifestSlot};
use crate::world::metrics::MetricsReading;
use crate::world::objects::region_of_path;
use crate::world::wal::DurableLogs;
use crate::world::{FaultLog, World, WorldState};

/// Problems listed in full in one message.
pub(super) const PROBLEMS_SHOWN: usize = 3;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub passed: bool,
    pub message: String,
}

impl CheckResult {
    pub fn pass(check: Check, message: impl Into<String>) -> Self {
        CheckResult {
            name: check.as_str().to_string(),
            passed: true,
            message: message.into(),
        }
    }

    pub fn fail(check: Check, message: impl Into<String>) -> Self {
        CheckResult {
            name: check.as_str().to_string(),
            passed: false,
            message: message.into(),
        }
    }

    /// Passes with `ok` if `problems` (plus the violations seen during the
    /// run) is empty; otherwise fails listing the first few.
    fn from_problems(
        name: Check,
        ok: String,
        runtime: (u64, &[String]),
        problems: Vec<String>,
    ) -> Self {
        let (runtime_count, runtime_messages) = runtime;
        let total = problems.len() as u64 + runtime_count;
        if total == 0 {
            return CheckResult::pass(name, ok);
        }
        let all: Vec<&String> = runtime_messages.iter().chain(problems.iter()).collect();
        CheckResult::fail(name, format!("{name}: {}", summarize(&all, total)))
    }
}

/// The first few problems, and how many more there are.
pub fn summarize_problems(problems: &[String]) -> String {
    let all: Vec<&String> = problems.iter().collect();
    summarize(&all, problems.len() as u64)
}

pub(super) fn summarize(problems: &[&String], total: u64) -> String {
    let mut message = String::new();
    let shown = &problems[..problems.len().min(PROBLEMS_SHOWN)];
    for (index, problem) in shown.iter().enumerate() {
        if index > 0 {
            message.push_str("; ");
        }
        message.push_str(problem);
    }
    if total > shown.len() as u64 {
        let _ = write!(message, " (and {} more)", total - shown.len() as u64);
    }
    message
}

/// Buffer counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BufferReading {
    pub used_bytes: usize,
    pub active_bytes: usize,
    pub accounting_violations: u64,
    pub flushes_running: usize,
    pub stalled_writes: usize,
    /// The engine-wide flush rule fires at this reading.
    pub should_flush_engine: bool,
    pub mutable_limit_bytes: usize,
    pub global_size_bytes: usize,
}

impl BufferReading {
    pub fn of(buffer: &WriteBufferManager) -> Self {
        BufferReading {
            used_bytes: buffer.used_bytes(),
            active_bytes: buffer.active_bytes(),
            accounting_violations: buffer.accounting_violations(),
            flushes_running: buffer.flushes_running(),
            stalled_writes: buffer.stalled_writes(),
            should_flush_engine: buffer.should_flush_engine(),
            mutable_limit_bytes: buffer.mutable_limit_bytes(),
            global_size_bytes: buffer.global_size_bytes(),
        }
    }
}

/// What the liveness phase ended with.
#[derive(Clone, Debug, Default)]
pub struct LivenessObservation {
    pub budget_ms: u64,
    /// Requests without a reply when the budget ran out, described.
    pub pending: Vec<String>,
    /// Requests without a reply when faults stopped.
    pub pending_when_faults_stopped: usize,
    /// How long before the phase ended the last reply came (`None`: no
    /// reply ever). Tells an engine still answering a backlog from one
    /// that answers nothing.
    pub last_reply_before_end_ms: Option<u64>,
    pub clients_running: usize,
    /// Stalled writes per the workers, if they could be inspected.
    pub stalled_writes: Option<usize>,
}

/// The end state of a run, gathered after the liveness phase.
#[derive(Clone, Debug, Default)]
pub struct Observations {
    pub regions: Vec<RegionId>,
    /// The regions that skip the WAL.
    pub unlogged: BTreeSet<RegionId>,
    pub liveness: LivenessObservation,
    /// `None` when a worker could not be inspected (stuck in a request).
    pub views: Option<Vec<WorkerView>>,
    pub memtable_rows: BTreeMap<RegionId, Vec<Row>>,
    pub manifests: BTreeMap<RegionId, ManifestSlot>,
    /// Every manifest change with its trace step.
    pub manifest_history: Vec<ManifestRecord>,
    pub objects: BTreeMap<String, Bytes>,
    pub wal: DurableLogs,
    /// No flush job ran and no request was pending when `views` were taken.
    pub quiescent: bool,
    pub buffer_at_views: BufferReading,
    /// The core's metrics and the events' tally when `views` were taken.
    pub metrics_at_views: MetricsReading,
    /// The buffers of every engine generation still alive at that moment
    /// (crashed ones are buried only at the end): a process-wide gauge
    /// counts them all.
    pub alive_buffers: Vec<BufferReading>,
    /// After the workers stopped and dropped their regions.
    pub buffer_after_teardown: Option<BufferReading>,
    /// Trace step at which the engine began to shut down.
    pub shutdown_step: u64,
}

/// Numbers the oracles computed that the report shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OracleStats {
    pub orphans: u64,
    pub rows_checked: u64,
    pub ssts_read: u64,
}

/// Runs every per-run check.
pub fn check_run(
    observed: &Observations,
    checks: &Checks,
    state: &WorldState,
) -> (Vec<CheckResult>, OracleStats) {
    let ledger = checks.ledger();
    let ledger_entries: Vec<&LedgerEntry> = ledger.entries().collect();
    let decoded = decode_listed_ssts(observed, &mut checks.ssts());
    let mut stats = OracleStats {
        ssts_read: decoded.len() as u64,
        ..OracleStats::default()
    };
    let violations = &*checks.violations();
    let (manifest_check, orphans) = manifest_consistency(observed, &decoded, violations);
    stats.orphans = orphans;
    let (rows_check, rows_checked) = no_lost_rows(observed, &decoded, &ledger_entries, violations);
    stats.rows_checked = rows_checked;
    let crash_steps = state.crash.steps();
    let checks = vec![
        exactly_once_reply(&ledger_entries, violations),
        reply_kind(
            &ledger_entries,
            &state.faults,
            observed,
            &crash_steps,
            &state.crash.stop_windows,
            violations,
        ),
        buffer_accounting(observed, violations),
        scheduler_state(observed, violations),
        rows_check,
        manifest_check,
        monotonic_flush_marks(observed, violations),
        liveness(observed, violations),
        recovery(state, violations),
        no_orphan_ssts(observed, violations),
        idle_memory(observed, violations),
        version_matches_manifest(observed, violations),
        writability(
            &ledger_entries,
            &observed.manifest_history,
            &observed.unlogged,
            violations,
        ),
        metrics_agree(observed, violations),
    ];
    (checks, stats)
}

/// The workers' views when the engine was quiescent at the end; the end
/// state checks judge nothing else.
pub(super) fn quiescent_views(observed: &Observations) -> Option<&Vec<WorkerView>> {
    observed.views.as_ref().filter(|_| observed.quiescent)
}

pub(super) fn not_quiescent(check: Check) -> CheckResult {
    CheckResult::pass(check, "not judged: the engine was not quiescent at the end")
}
