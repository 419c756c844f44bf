//! The oracles: named checks of DESIGN §4, each with one job and a message
//! saying what was expected and what was seen.
//!
//! Some checks look at the run while it goes ([`Sampler`], the manifest
//! store, the event sink: they record violations in the world); all of them
//! look at the end state ([`Observations`]) and the ledger. Rows are read
//! back from the Parquet SSTs with the core's own reader.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::rc::Rc;

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
use crate::ledger::{LedgerEntry, Origin, Outcome};
use crate::plan::FaultClass;
use crate::world::manifests::{ManifestRecord, ManifestSlot};
use crate::world::metrics::MetricsReading;
use crate::world::objects::region_of_path;
use crate::world::wal::DurableLogs;
use crate::world::{FaultLog, Violations, World, WorldState};

/// Problems listed in full in one message.
const PROBLEMS_SHOWN: usize = 3;

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

fn summarize(problems: &[&String], total: u64) -> String {
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

/// Invariants sampled between requests while the run goes.
#[derive(Debug, Default)]
pub struct Sampler {
    /// Last flush marks seen per (region, incarnation).
    marks: BTreeMap<(RegionId, u64), (u64, u64)>,
}

impl Sampler {
    /// Checks one worker's view; `incarnation` must be read while the
    /// worker is held, so view and incarnation belong together.
    pub fn check_view(
        &mut self,
        world: &World,
        view: &WorkerView,
        incarnation: impl Fn(RegionId) -> u64,
    ) {
        {
            for (region_id, status) in statuses(view) {
                if let Some(problem) = status_problem(region_id, &status) {
                    world.violation(Check::SchedulerState, problem);
                }
            }
            for (region_id, region) in &view.regions {
                let key = (*region_id, incarnation(*region_id));
                let now = (region.flushed_entry_id, region.flushed_sequence);
                if let Some(before) = self.marks.insert(key, now) {
                    if now.0 < before.0 || now.1 < before.1 {
                        world.violation(
                            Check::MonotonicFlushMarks,
                            format!(
                                "{region_id} in worker {}: expected flushed entry/sequence >= {}/{}, saw {}/{}",
                                view.worker_id, before.0, before.1, now.0, now.1
                            ),
                        );
                    }
                }
                if region.flushed_entry_id > region.last_entry_id {
                    world.violation(
                        Check::MonotonicFlushMarks,
                        format!(
                            "{region_id}: expected flushed entry id <= last entry id {}, saw {}",
                            region.last_entry_id, region.flushed_entry_id
                        ),
                    );
                }
            }
        }
    }

    /// Stalled writes must be retried once memory allows: a worker holding
    /// stalled writes while the buffer no longer stalls, with every release
    /// of memory already handled, forgot to retry them.
    pub fn check_stalls(
        &self,
        world: &World,
        view: &WorkerView,
        memory_freed_queued: bool,
        buffer: &WriteBufferManager,
    ) {
        if view.stalled_writes > 0 && !memory_freed_queued && !buffer.should_stall() {
            world.violation(
                Check::Liveness,
                format!(
                    "worker {}: expected stalled writes retried once memory was freed, saw {} still stalled \
                     with used {} below the {} limit",
                    view.worker_id,
                    view.stalled_writes,
                    buffer.used_bytes(),
                    buffer.global_size_bytes()
                ),
            );
        }
    }

    pub fn check_buffer(&self, world: &World, buffer: &WriteBufferManager) {
        let reading = BufferReading::of(buffer);
        if reading.active_bytes > reading.used_bytes {
            world.violation(
                Check::BufferAccounting,
                format!(
                    "expected active <= used, saw active {} > used {}",
                    reading.active_bytes, reading.used_bytes
                ),
            );
        }
    }
}

/// Every flush status a worker holds, open region or not.
fn statuses(view: &WorkerView) -> Vec<(RegionId, FlushStatusView)> {
    view.regions
        .iter()
        .filter_map(|(id, region)| region.flush.map(|status| (*id, status)))
        .chain(
            view.orphan_statuses
                .iter()
                .map(|(id, status)| (*id, *status)),
        )
        .collect()
}

fn status_problem(region_id: RegionId, status: &FlushStatusView) -> Option<String> {
    if status.running_epoch.is_none() && status.pending_task {
        return Some(format!(
            "{region_id}: expected a pending flush task to have a job started for it, \
             saw it waiting with no job running ({} ddls, {} writes waiting)",
            status.pending_ddls, status.pending_writes
        ));
    }
    if status.running_epoch.is_none() && !status.pending_task {
        return Some(format!(
            "{region_id}: expected a flush status to be flushing or to have a pending task, \
             saw neither ({} ddls, {} writes waiting)",
            status.pending_ddls, status.pending_writes
        ));
    }
    None
}

/// Runs every per-run check.
pub fn check_run(observed: &Observations, state: &WorldState) -> (Vec<CheckResult>, OracleStats) {
    let ledger_entries: Vec<&LedgerEntry> = state.ledger.entries().collect();
    let decoded = decode_listed_ssts(observed);
    let mut stats = OracleStats {
        ssts_read: decoded.len() as u64,
        ..OracleStats::default()
    };
    let violations = &state.violations;
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

fn exactly_once_reply(entries: &[&LedgerEntry], violations: &Violations) -> CheckResult {
    let mut problems = Vec::new();
    for entry in entries {
        if matches!(entry.outcome, Outcome::Lost) {
            problems.push(format!(
                "{} got 0 replies (its reply sender was dropped), expected 1",
                entry.describe()
            ));
        } else if entry.replies > 1 {
            problems.push(format!(
                "{} got {} replies, expected 1",
                entry.describe(),
                entry.replies
            ));
        }
    }
    CheckResult::from_problems(
        Check::ExactlyOnceReply,
        format!("{} requests, none lost or answered twice", entries.len()),
        violations.of(Check::ExactlyOnceReply),
        problems,
    )
}

/// What may legitimately cause an error of some kind.
enum Cause {
    Always,
    Never,
    /// A request of one of these kinds on the same region, issued by then.
    Requests(&'static [&'static str]),
    /// An injected fault of one of these classes (on the region, or on no
    /// particular region), by then.
    Faults(&'static [FaultClass]),
    Either(&'static [&'static str], &'static [FaultClass]),
    /// Only while the engine shuts down.
    Shutdown,
    /// Special rule for `RegionNotFound`.
    NotOpen,
    /// An injected fault of one of these classes, and the error says it
    /// was injected (the same kind can come from a real mistake).
    Injected(&'static [FaultClass]),
}

const LIFECYCLE: &[&str] = &[
    "create",
    "open",
    "close",
    "drop",
    "truncate",
    "downgrade",
    "alter",
    "set_role",
];
const MANIFEST_FAULTS: &[FaultClass] = &[
    FaultClass::ManifestFailure,
    FaultClass::ManifestAmbiguousCommit,
];
const FLUSH_FAULTS: &[FaultClass] = &[
    FaultClass::JobLost,
    FaultClass::JobPanic,
    FaultClass::SstWriteError,
    FaultClass::SstPartialObject,
    FaultClass::ManifestFailure,
    FaultClass::ManifestAmbiguousCommit,
];

fn cause_of(kind: ErrorKind) -> Cause {
    match kind {
        ErrorKind::RegionDropped => Cause::Requests(&["drop"]),
        ErrorKind::RegionClosed => Cause::Requests(&["close"]),
        ErrorKind::RegionTruncated => Cause::Requests(&["truncate"]),
        // A region opens as a follower; a downgrade makes one.
        ErrorKind::RegionReadOnly => Cause::Requests(&["downgrade", "open"]),
        ErrorKind::RegionNotFound => Cause::NotOpen,
        ErrorKind::RegionExists | ErrorKind::WriteStallFull => Cause::Always,
        ErrorKind::FlushFailed => Cause::Either(LIFECYCLE, FLUSH_FAULTS),
        ErrorKind::JobRejected => Cause::Faults(&[FaultClass::JobRejection]),
        ErrorKind::FreezeFailed => Cause::Faults(&[FaultClass::FreezeFailure]),
        ErrorKind::Manifest => Cause::Either(LIFECYCLE, MANIFEST_FAULTS),
        ErrorKind::ObjectStore | ErrorKind::Sst => {
            Cause::Faults(&[FaultClass::SstWriteError, FaultClass::SstPartialObject])
        }
        ErrorKind::WorkerStopped => Cause::Shutdown,
        ErrorKind::Wal => {
            Cause::Injected(&[FaultClass::WalAppendFailure, FaultClass::WalTruncateFailure])
        }
        ErrorKind::InvalidRequest => Cause::Never,
        // A client writes the fields its alters added; a drop (and the
        // create after it) starts the region over without them.
        ErrorKind::UnknownColumn => Cause::Requests(&["drop"]),
    }
}

/// `reply_kind` also holds Ok replies to their promise: a manual flush
/// answered Ok means every write acknowledged before it was sent is in the
/// manifest (its flushed sequence covers them) by the time of the answer.
fn reply_kind(
    entries: &[&LedgerEntry],
    faults: &FaultLog,
    observed: &Observations,
    crash_steps: &[u64],
    stop_windows: &[(u64, u64)],
    violations: &Violations,
) -> CheckResult {
    let (history, shutdown_step, unlogged) = (
        &observed.manifest_history[..],
        observed.shutdown_step,
        &observed.unlogged,
    );
    let mut by_region: BTreeMap<RegionId, Vec<&LedgerEntry>> = BTreeMap::new();
    for entry in entries {
        by_region.entry(entry.region_id).or_default().push(entry);
    }
    let mut problems = Vec::new();
    let mut errors = 0;
    for entry in entries {
        let Outcome::Err { kind, message } = &entry.outcome else {
            continue;
        };
        errors += 1;
        let Some(replied) = entry.replied_step else {
            continue;
        };
        if entry.origin == Origin::Final || replied >= shutdown_step {
            continue;
        }
        let stopping = stop_windows
            .iter()
            .any(|(began, ended)| (*began..=*ended).contains(&replied));
        if stopping && matches!(kind, ErrorKind::WorkerStopped | ErrorKind::RegionClosed) {
            continue;
        }
        let region = by_region
            .get(&entry.region_id)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let requested = |kinds: &[&str]| {
            region.iter().any(|other| {
                other.id != entry.id && kinds.contains(&other.kind) && other.issued_step <= replied
            })
        };
        let injected =
            |classes: &[FaultClass]| faults.any_before(classes, entry.region_id, replied);
        let explained = match cause_of(*kind) {
            Cause::Always => true,
            Cause::Never | Cause::Shutdown => false,
            Cause::Requests(kinds) => requested(kinds),
            Cause::Faults(classes) => injected(classes),
            Cause::Either(kinds, classes) => requested(kinds) || injected(classes),
            Cause::NotOpen => not_found_explained(entry, region, crash_steps),
            Cause::Injected(classes) => injected(classes) && message.contains("injected"),
        };
        if !explained {
            problems.push(format!(
                "{} got {} ({message}), expected a cause for it before the reply, saw none",
                entry.describe(),
                kind.as_str()
            ));
        }
    }
    let flushes = covering_promises(&by_region, history, unlogged, "flush", &mut problems);
    CheckResult::from_problems(
        Check::ReplyKind,
        format!("{errors} error replies, each with a cause; {flushes} flushes kept their promise"),
        violations.of(Check::ReplyKind),
        problems,
    )
}

/// Checks every Ok request of `kind` (a manual flush, a downgrade) against
/// the manifest history: the manifest covers every write acknowledged
/// before it was sent. Returns how many were checked.
fn covering_promises(
    by_region: &BTreeMap<RegionId, Vec<&LedgerEntry>>,
    history: &[ManifestRecord],
    unlogged: &BTreeSet<RegionId>,
    kind: &str,
    problems: &mut Vec<String>,
) -> usize {
    let mut checked = 0;
    for (region_id, region) in by_region {
        let records: Vec<&ManifestRecord> = history
            .iter()
            .filter(|r| r.region_id == *region_id)
            .collect();
        for flush in region
            .iter()
            .filter(|e| e.kind == kind && e.outcome.is_ok())
        {
            let Some(replied) = flush.replied_step else {
                continue;
            };

            // The manifest as it stood when the answer was seen.
            let Some(at_reply) = records.iter().rev().find(|r| r.step <= replied) else {
                continue;
            };
            if at_reply.dropped {
                continue;
            }
            // mito2 answers a downgrade of a follower at once: the data is
            // not its to flush. Only an open (or set_role) makes the
            // manifest say follower (a downgrade leaves it downgrading), so
            // a follower anywhere in the request's flight may have met it.
            let follower_in_flight = records
                .iter()
                .rev()
                .skip_while(|r| r.step > replied)
                .take_while(|r| r.step > flush.issued_step)
                .chain(records.iter().rev().find(|r| r.step <= flush.issued_step))
                .any(|r| r.follower);
            if kind == "downgrade" && follower_in_flight {
                continue;
            }
            // Writes of that incarnation: issued after it was created.
            let Some(created) = records
                .iter()
                .find(|r| r.incarnation == at_reply.incarnation)
                .map(|r| r.step)
            else {
                continue;
            };
            let covered = region
                .iter()
                .filter(|w| {
                    w.issued_step > created
                        && w.replied_step.is_some_and(|s| s < flush.issued_step)
                        // Without a WAL, a write of an engine that ended
                        // may be gone, and sequences start over after it.
                        && !(unlogged.contains(region_id) && w.generation != flush.generation)
                })
                .filter_map(|w| match w.outcome {
                    Outcome::Ok(Output::Written {
                        first_sequence,
                        rows,
                        ..
                    }) => Some((first_sequence + rows.saturating_sub(1), w)),
                    _ => None,
                })
                .max_by_key(|(sequence, _)| *sequence);
            checked += 1;
            if let Some((sequence, write)) = covered {
                if at_reply.flushed_sequence < sequence {
                    problems.push(format!(
                        "{} answered ok: expected the manifest to cover sequence {sequence} of {} \
                         acknowledged before it, saw flushed sequence {}",
                        flush.describe(),
                        write.describe(),
                        at_reply.flushed_sequence
                    ));
                }
            }
        }
    }
    checked
}

/// `RegionNotFound` is wrong only when the region was certainly open: a
/// create or open had succeeded before the request was sent, and no close,
/// drop or crash could have come in between (a restart may fail to reopen a
/// region while faults are on).
fn not_found_explained(entry: &LedgerEntry, region: &[&LedgerEntry], crash_steps: &[u64]) -> bool {
    let last_opened = region
        .iter()
        .filter(|other| matches!(other.kind, "create" | "open") && other.outcome.is_ok())
        .filter(|other| {
            other
                .replied_step
                .is_some_and(|step| step < entry.issued_step)
        })
        .map(|other| other.issued_step)
        .max();
    let Some(opened_issued) = last_opened else {
        return true;
    };
    let replied = entry.replied_step.unwrap_or(u64::MAX);
    if crash_steps
        .iter()
        .any(|step| *step > opened_issued && *step < replied)
    {
        return true;
    }
    region.iter().any(|other| {
        matches!(other.kind, "close" | "drop")
            && other.issued_step < replied
            && other.settled_step().is_none_or(|step| step > opened_issued)
    })
}

fn buffer_accounting(observed: &Observations, violations: &Violations) -> CheckResult {
    let mut problems = Vec::new();
    let at_views = observed.buffer_at_views;
    if at_views.accounting_violations > 0 {
        problems.push(format!(
            "expected 0 underflowing frees, saw {}",
            at_views.accounting_violations
        ));
    }
    if let (true, Some(views)) = (observed.quiescent, &observed.views) {
        let memtable_bytes: usize = views
            .iter()
            .flat_map(|view| view.regions.values())
            .map(|region| region.mutable_bytes + region.immutable_bytes)
            .sum();
        if at_views.used_bytes != memtable_bytes {
            problems.push(format!(
                "at quiescence expected used == memtable bytes {memtable_bytes}, saw used {}",
                at_views.used_bytes
            ));
        }
    }
    if let Some(after) = observed.buffer_after_teardown {
        if after.used_bytes != 0 || after.active_bytes != 0 {
            problems.push(format!(
                "after every region was released expected used 0 and active 0, saw used {} and active {}",
                after.used_bytes, after.active_bytes
            ));
        }
        if after.accounting_violations > at_views.accounting_violations {
            problems.push(format!(
                "expected no underflowing frees at teardown, saw {}",
                after.accounting_violations - at_views.accounting_violations
            ));
        }
    }
    CheckResult::from_problems(
        Check::BufferAccounting,
        format!(
            "used {} B at quiescence matches the memtables; 0 after teardown",
            at_views.used_bytes
        ),
        violations.of(Check::BufferAccounting),
        problems,
    )
}

fn scheduler_state(observed: &Observations, violations: &Violations) -> CheckResult {
    let mut problems = Vec::new();
    for view in observed.views.iter().flatten() {
        for (region_id, status) in statuses(view) {
            if let Some(problem) = status_problem(region_id, &status) {
                problems.push(problem);
            } else if observed.quiescent {
                problems.push(format!(
                    "{region_id}: expected no flush status once every flush job ended, saw {status:?}"
                ));
            }
        }
    }
    CheckResult::from_problems(
        Check::SchedulerState,
        "every flush status was flushing or pending; one job per region at a time".to_string(),
        violations.of(Check::SchedulerState),
        problems,
    )
}

pub type Decoded = BTreeMap<String, Result<Vec<Row>, String>>;

/// Decodes every SST some live manifest lists.
fn decode_listed_ssts(observed: &Observations) -> Decoded {
    let mut decoded = Decoded::new();
    for (region_id, slot) in &observed.manifests {
        if slot.manifest.dropped {
            continue;
        }
        for file_id in slot.manifest.files.keys() {
            let path = sst_path(*region_id, *file_id);
            let rows = match observed.objects.get(&path) {
                None => Err("no such object".to_string()),
                Some(bytes) => {
                    flush_core::sst::decode_rows(&path, bytes.clone()).map_err(|e| e.to_string())
                }
            };
            decoded.insert(path, rows);
        }
    }
    decoded
}

fn manifest_consistency(
    observed: &Observations,
    decoded: &Decoded,
    violations: &Violations,
) -> (CheckResult, u64) {
    let mut problems = Vec::new();
    let mut files = 0;
    for (region_id, slot) in &observed.manifests {
        if slot.manifest.dropped {
            continue;
        }
        for (file_id, meta) in &slot.manifest.files {
            files += 1;
            let path = sst_path(*region_id, *file_id);
            match decoded.get(&path) {
                None | Some(Err(_)) if !observed.objects.contains_key(&path) => problems.push(format!(
                    "manifest of {region_id} lists {path}: expected it in the object store, saw no object"
                )),
                Some(Err(reason)) => problems.push(format!(
                    "manifest of {region_id} lists {path}: expected a readable Parquet file, saw {reason}"
                )),
                Some(Ok(rows)) if rows.len() as u64 != meta.num_rows => problems.push(format!(
                    "{path}: expected {} rows as the manifest says, saw {}",
                    meta.num_rows,
                    rows.len()
                )),
                _ => {}
            }
            if meta.region_id != *region_id {
                problems.push(format!(
                    "manifest of {region_id} lists {path} as a file of {}",
                    meta.region_id
                ));
            }
        }
    }
    let orphans = observed
        .objects
        .keys()
        .filter(|path| {
            let slot =
                region_of_path(path).and_then(|region_id| observed.manifests.get(&region_id));
            !slot.is_some_and(|slot| lists(slot, path))
        })
        .count() as u64;
    let check = CheckResult::from_problems(
        Check::ManifestConsistency,
        format!("{files} listed SSTs all readable; {orphans} orphans"),
        violations.of(Check::ManifestConsistency),
        problems,
    );
    (check, orphans)
}

/// Whether the (live) manifest in `slot` lists the SST at `path`.
fn lists(slot: &ManifestSlot, path: &str) -> bool {
    let manifest = &slot.manifest;
    !manifest.dropped
        && manifest
            .files
            .keys()
            .any(|file_id| sst_path(manifest.region_id, *file_id) == path)
}

/// The workers' views when the engine was quiescent at the end; the end
/// state checks judge nothing else.
fn quiescent_views(observed: &Observations) -> Option<&Vec<WorkerView>> {
    observed.views.as_ref().filter(|_| observed.quiescent)
}

fn not_quiescent(check: Check) -> CheckResult {
    CheckResult::pass(check, "not judged: the engine was not quiescent at the end")
}

/// At quiescence, no SST of an open or dropped region is left that its
/// manifest does not list. A flush that fails, or is refused because a
/// truncate or drop overtook it, removes what it wrote; a drop removes
/// everything; what a crash left was purged when the region reopened.
/// Regions closed at the end are not judged: their next open purges.
fn no_orphan_ssts(observed: &Observations, violations: &Violations) -> CheckResult {
    let Some(views) = quiescent_views(observed) else {
        return not_quiescent(Check::NoOrphanSsts);
    };
    let open: BTreeSet<RegionId> = views
        .iter()
        .flat_map(|view| view.regions.keys().copied())
        .collect();
    let mut problems = Vec::new();
    let mut judged = 0;
    for path in observed.objects.keys() {
        let Some(region_id) = region_of_path(path) else {
            continue;
        };
        let slot = observed.manifests.get(&region_id);
        let dropped = slot.is_some_and(|slot| slot.manifest.dropped);
        if !dropped && !open.contains(&region_id) {
            continue;
        }
        judged += 1;
        if !slot.is_some_and(|slot| lists(slot, path)) {
            let state = if dropped { "dropped" } else { "open" };
            problems.push(format!(
                "{path} of {state} {region_id}: expected every SST to be listed by the manifest \
                 or removed, saw an orphan ({} bytes)",
                observed.objects[path].len()
            ));
        }
    }
    CheckResult::from_problems(
        Check::NoOrphanSsts,
        format!("{judged} SSTs of open or dropped regions, all listed"),
        violations.of(Check::NoOrphanSsts),
        problems,
    )
}

/// At quiescence, no worker sits on memory the engine needs: mutable
/// memory over the flush threshold means a flush runs or is pending
/// somewhere. (Memory no open region holds is `buffer_accounting`'s.)
fn idle_memory(observed: &Observations, violations: &Violations) -> CheckResult {
    let reading = &observed.buffer_at_views;
    let Some(views) = quiescent_views(observed) else {
        return not_quiescent(Check::IdleMemory);
    };
    let flushing = reading.flushes_running > 0
        || views.iter().any(|view| {
            !view.orphan_statuses.is_empty() || view.regions.values().any(|r| r.flush.is_some())
        });
    let holders: Vec<String> = views
        .iter()
        .flat_map(|view| {
            view.regions
                .iter()
                // A follower's memory waits for its leadership, as in mito2.
                .filter(|(_, region)| {
                    region.mutable_bytes > 0 && region.leader_state == LeaderState::Writable
                })
                .map(move |(id, region)| {
                    format!(
                        "{id} in worker {} ({} bytes)",
                        view.worker_id, region.mutable_bytes
                    )
                })
        })
        .collect();
    let mut problems = Vec::new();
    if reading.should_flush_engine && !flushing && !holders.is_empty() {
        problems.push(format!(
            "expected a flush running or pending while mutable memory {} is over the flush \
             threshold {} (used {} of {}), saw none; mutable memory held by {}",
            reading.active_bytes,
            reading.mutable_limit_bytes,
            reading.used_bytes,
            reading.global_size_bytes,
            holders.join(", ")
        ));
    }
    CheckResult::from_problems(
        Check::IdleMemory,
        format!(
            "mutable memory {} against a flush threshold of {} at quiescence",
            reading.active_bytes, reading.mutable_limit_bytes
        ),
        violations.of(Check::IdleMemory),
        problems,
    )
}

/// At quiescence each open region's in-memory version agrees with its
/// manifest: the same SSTs, the same flushed marks and epoch, writable in
/// memory exactly when the manifest says so. What reads serve is the
/// version; what a restart serves is the manifest.
fn version_matches_manifest(observed: &Observations, violations: &Violations) -> CheckResult {
    let Some(views) = quiescent_views(observed) else {
        return not_quiescent(Check::VersionMatchesManifest);
    };
    let mut problems = Vec::new();
    let mut judged = 0;
    for (region_id, region) in views.iter().flat_map(|view| &view.regions) {
        judged += 1;
        let Some(slot) = observed.manifests.get(region_id) else {
            problems.push(format!(
                "{region_id} is open: expected a manifest for it, saw none"
            ));
            continue;
        };
        let manifest = &slot.manifest;
        let listed: Vec<FileId> = manifest.files.keys().copied().collect();
        let mut differ = |what: &str, memory: String, stored: String| {
            if memory != stored {
                problems.push(format!(
                    "{region_id}: expected its version's {what} to equal the manifest's {stored}, \
                     saw {memory}"
                ));
            }
        };
        differ(
            "SSTs",
            format!("{:?}", region.file_ids),
            format!("{listed:?}"),
        );
        differ(
            "flushed entry/sequence",
            format!("{}/{}", region.flushed_entry_id, region.flushed_sequence),
            format!(
                "{}/{}",
                manifest.flushed_entry_id, manifest.flushed_sequence
            ),
        );
        differ(
            "epoch",
            region.epoch.to_string(),
            manifest.epoch.to_string(),
        );
        differ(
            "writability",
            (region.leader_state == LeaderState::Writable).to_string(),
            (manifest.leader_state == LeaderState::Writable).to_string(),
        );
    }
    CheckResult::from_problems(
        Check::VersionMatchesManifest,
        format!("{judged} open regions agree with their manifests"),
        violations.of(Check::VersionMatchesManifest),
        problems,
    )
}

/// No write is acknowledged on a region the manifest held read-only for
/// its whole time in flight (from before it was sent until its reply, no
/// reopen in between), and a successful downgrade covers every write
/// acknowledged before it was sent.
fn writability(
    entries: &[&LedgerEntry],
    history: &[ManifestRecord],
    unlogged: &BTreeSet<RegionId>,
    violations: &Violations,
) -> CheckResult {
    let mut problems = Vec::new();
    let mut by_region: BTreeMap<RegionId, Vec<&LedgerEntry>> = BTreeMap::new();
    for entry in entries {
        by_region.entry(entry.region_id).or_default().push(entry);
    }
    let mut writes = 0;
    for write in entries
        .iter()
        .filter(|e| e.kind == "write" && e.outcome.is_ok())
    {
        let Some(replied) = write.replied_step else {
            continue;
        };
        writes += 1;
        let mut records = history.iter().filter(|r| r.region_id == write.region_id);
        let before = records.clone().rev().find(|r| r.step < write.issued_step);
        let read_only_throughout = before.is_some_and(|r| !r.writable && !r.dropped)
            && !records.any(|r| r.step >= write.issued_step && r.step <= replied && r.writable);
        if read_only_throughout {
            problems.push(format!(
                "{} answered ok: expected writes to a read-only region refused, saw the manifest \
                 hold {} read-only from before it was sent until its reply",
                write.describe(),
                write.region_id
            ));
        }
    }
    let downgrades = covering_promises(&by_region, history, unlogged, "downgrade", &mut problems);
    CheckResult::from_problems(
        Check::Writability,
        format!("{writes} acknowledged writes on writable regions; {downgrades} downgrades kept their promise"),
        violations.of(Check::Writability),
        problems,
    )
}

/// At quiescence the core's exported metrics tell the truth: no flush in
/// flight and no write stalled unless the engine says so, and every
/// counter equal to what the core's events (from every engine generation)
/// saw happen.
fn metrics_agree(observed: &Observations, violations: &Violations) -> CheckResult {
    if !observed.quiescent {
        return not_quiescent(Check::MetricsAgree);
    }
    let metrics = &observed.metrics_at_views;
    let alive = &observed.alive_buffers;
    let flushes_running: usize = alive.iter().map(|b| b.flushes_running).sum();
    let stalled_writes: usize = alive.iter().map(|b| b.stalled_writes).sum();
    let events = &metrics.events;
    let mut problems = Vec::new();
    let mut expect = |what: &str, expected: f64, seen: f64| {
        if expected != seen {
            problems.push(format!("{what}: expected {expected}, saw {seen}"));
        }
    };
    expect(
        telemetry::INFLIGHT_FLUSHES,
        flushes_running as f64,
        metrics.gauge(telemetry::INFLIGHT_FLUSHES),
    );
    expect(
        telemetry::WRITE_STALLED,
        stalled_writes as f64,
        metrics.gauge(telemetry::WRITE_STALLED),
    );
    expect(
        telemetry::FLUSH_REQUESTS_TOTAL,
        (events.flushes_scheduled + events.flushes_merged) as f64,
        metrics.counter_total(telemetry::FLUSH_REQUESTS_TOTAL) as f64,
    );
    expect(
        telemetry::FLUSH_ERRORS_TOTAL,
        events.flushes_failed as f64,
        metrics.counter_total(telemetry::FLUSH_ERRORS_TOTAL) as f64,
    );
    expect(
        telemetry::FLUSH_BYTES_TOTAL,
        events.bytes_committed as f64,
        metrics.counter_total(telemetry::FLUSH_BYTES_TOTAL) as f64,
    );
    let total = format!("{}{{stage=total}}", telemetry::FLUSH_ELAPSED);
    expect(
        &total,
        events.flushes_committed as f64,
        metrics.histogram_count(&total) as f64,
    );
    let encode = format!("{}{{stage=encode}}", telemetry::FLUSH_ELAPSED);
    let encoded = metrics.histogram_count(&encode);
    if encoded < events.ssts_written {
        problems.push(format!(
            "{encode}: expected at least one encoding per SST written ({}), saw {encoded}",
            events.ssts_written
        ));
    }
    CheckResult::from_problems(
        Check::MetricsAgree,
        format!(
            "{} flush requests, {} failures, {} bytes flushed: every metric agrees",
            events.flushes_scheduled + events.flushes_merged,
            events.flushes_failed,
            events.bytes_committed
        ),
        violations.of(Check::MetricsAgree),
        problems,
    )
}

/// Where an acknowledged row must be at the end.
#[derive(Clone, Debug, PartialEq)]
enum Expect {
    Present,
    /// Must not be anywhere, and why.
    Absent(String),
    /// Either is fine (a lost reply, a truncate racing the write, ...).
    Either,
}

/// A row found at the end, and where. Borrowed where it can be and with a
/// shared place name: a standard run finds ~100,000 rows.
#[derive(Clone, Debug)]
struct Found<'a> {
    region_id: RegionId,
    row: Cow<'a, Row>,
    place: Rc<str>,
}

fn expect_of(write: &LedgerEntry, erasers: &[&LedgerEntry]) -> Expect {
    match &write.outcome {
        Outcome::Ok(Output::Written { .. }) => {}
        Outcome::Err { kind, .. } => {
            return Expect::Absent(format!("the write failed with {}", kind.as_str()))
        }
        _ => return Expect::Either,
    }
    let Some(acked) = write.replied_step else {
        return Expect::Either;
    };
    let mut either = false;
    for eraser in erasers {
        if eraser
            .settled_step()
            .is_some_and(|settled| settled < write.issued_step)
        {
            continue;
        }
        if eraser.issued_step > acked && eraser.outcome.is_ok() {
            return Expect::Absent(format!(
                "{} succeeded after it was acknowledged",
                eraser.describe()
            ));
        }
        either = true;
    }
    if either {
        Expect::Either
    } else {
        Expect::Present
    }
}

/// Whether a row read back sets exactly the added fields written, to the
/// same bits; the order may differ (a file orders its columns by schema).
fn same_fields(found: &[FieldValue], written: &[FieldValue]) -> bool {
    found.len() == written.len()
        && written.iter().all(|field| {
            found
                .iter()
                .any(|f| f.name == field.name && f.value.to_bits() == field.value.to_bits())
        })
}

fn describe_fields(fields: &[FieldValue]) -> String {
    let parts: Vec<String> = fields
        .iter()
        .map(|field| format!("{}={}", field.name, field.value))
        .collect();
    parts.join(", ")
}

/// Regions that skip the WAL, and what flushed them. An acknowledged
/// write to such a region outlives its engine (a crash, a stop) only if a
/// close, flush or downgrade of the region sent after the ack answered Ok
/// on that same engine: otherwise its rows were only ever in memory, and
/// losing them is the option's contract, not a bug.
pub struct Unlogged<'a> {
    regions: &'a BTreeSet<RegionId>,
    /// The latest engine generation any request went to.
    current_generation: u64,
    flushes: BTreeMap<RegionId, Vec<&'a LedgerEntry>>,
}

impl<'a> Unlogged<'a> {
    pub fn new(regions: &'a BTreeSet<RegionId>, entries: &[&'a LedgerEntry]) -> Self {
        let mut flushes: BTreeMap<RegionId, Vec<&LedgerEntry>> = BTreeMap::new();
        for entry in entries.iter().filter(|entry| {
            matches!(entry.kind, "close" | "flush" | "downgrade") && entry.outcome.is_ok()
        }) {
            flushes.entry(entry.region_id).or_default().push(entry);
        }
        Unlogged {
            regions,
            current_generation: entries.iter().map(|e| e.generation).max().unwrap_or(0),
            flushes,
        }
    }

    fn may_be_lost(&self, write: &LedgerEntry) -> bool {
        if !self.regions.contains(&write.region_id) || write.generation >= self.current_generation {
            return false;
        }
        let Some(acked) = write.replied_step else {
            return true;
        };
        let flushed = self.flushes.get(&write.region_id).is_some_and(|flushes| {
            flushes
                .iter()
                .any(|flush| flush.generation == write.generation && flush.issued_step > acked)
        });
        !flushed
    }
}

/// Every row at the end: SSTs of live manifests, memtables of open regions,
/// and for a closed region the WAL tail its next open would replay.
fn found_rows<'a>(observed: &'a Observations, decoded: &'a Decoded) -> Vec<Found<'a>> {
    let mut found = Vec::new();
    let memtable: Rc<str> = Rc::from("memtable");
    for region_id in &observed.regions {
        let live = observed
            .manifests
            .get(region_id)
            .filter(|slot| !slot.manifest.dropped);
        if let Some(slot) = live {
            for file_id in slot.manifest.files.keys() {
                let path = sst_path(*region_id, *file_id);
                if let Some(Ok(rows)) = decoded.get(&path) {
                    let place: Rc<str> = Rc::from(path);
                    found.extend(rows.iter().map(|row| Found {
                        region_id: *region_id,
                        row: Cow::Borrowed(row),
                        place: place.clone(),
                    }));
                }
            }
        }
        if let Some(rows) = observed.memtable_rows.get(region_id) {
            found.extend(rows.iter().map(|row| Found {
                region_id: *region_id,
                row: Cow::Borrowed(row),
                place: memtable.clone(),
            }));
        } else if let (Some(slot), Some(Ok(log))) = (live, observed.wal.get(region_id)) {
            let after = slot.manifest.replay_from_entry_id();
            let mut next_sequence = slot.manifest.flushed_sequence + 1;
            for entry in log.iter().filter(|entry| entry.entry_id > after) {
                if entry.first_sequence < next_sequence {
                    continue;
                }
                next_sequence = entry.first_sequence + entry.rows.len() as u64;
                let place: Rc<str> = Rc::from(format!("wal entry {}", entry.entry_id));
                found.extend(entry.to_rows().map(|row| Found {
                    region_id: *region_id,
                    row: Cow::Owned(row),
                    place: place.clone(),
                }));
            }
        }
    }
    found
}

fn no_lost_rows(
    observed: &Observations,
    decoded: &Decoded,
    entries: &[&LedgerEntry],
    violations: &Violations,
) -> (CheckResult, u64) {
    let found = found_rows(observed, decoded);
    let unlogged = Unlogged::new(&observed.unlogged, entries);
    let (problems, checked) = row_problems(&found, entries, &unlogged, |_| true);
    let check = CheckResult::from_problems(
        Check::NoLostRows,
        format!(
            "{checked} written rows accounted for, {} found",
            found.len()
        ),
        violations.of(Check::NoLostRows),
        problems,
    );
    (check, checked)
}

/// Judges the rows `found` against every write in the ledger: no phantom,
/// none twice, none in the wrong region or with the wrong values or
/// sequence, none that should be gone; and every row of a write to a region
/// `in_scope` that must be present, present. Returns the problems and how
/// many written rows of regions in scope were judged.
fn row_problems(
    found: &[Found<'_>],
    entries: &[&LedgerEntry],
    unlogged: &Unlogged<'_>,
    in_scope: impl Fn(RegionId) -> bool,
) -> (Vec<String>, u64) {
    let mut erasers: BTreeMap<RegionId, Vec<&LedgerEntry>> = BTreeMap::new();
    for entry in entries
        .iter()
        .filter(|e| matches!(e.kind, "truncate" | "drop"))
    {
        erasers.entry(entry.region_id).or_default().push(entry);
    }
    // Writes by their first row id, and what is expected of each. Sorted
    // vectors, not maps: a standard run judges ~100,000 rows here.
    let mut writes: Vec<(u64, &LedgerEntry, Expect)> = entries
        .iter()
        .filter_map(|entry| {
            let rows = entry.write.as_ref()?;
            let region_erasers = erasers
                .get(&entry.region_id)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let expect = match expect_of(entry, region_erasers) {
                Expect::Present if unlogged.may_be_lost(entry) => Expect::Either,
                expect => expect,
            };
            Some((rows.first_row_id, *entry, expect))
        })
        .collect();
    writes.sort_by_key(|(first_row_id, _, _)| *first_row_id);
    // Rows found, as (row id, index in `found`), by row id then place order.
    let mut by_row: Vec<(u64, usize)> = Vec::with_capacity(found.len());
    let mut problems = Vec::new();
    for (index, item) in found.iter().enumerate() {
        let value = item.row.value;
        if value.fract() != 0.0 || value < 1.0 {
            problems.push(format!(
                "{} holds a row with value {value} in {}: expected only rows the clients wrote, saw a phantom",
                item.region_id, item.place
            ));
            continue;
        }
        by_row.push((value as u64, index));
    }
    by_row.sort_unstable();
    // (region, sequence, row id) of every row found, for duplicates.
    let mut sequences: Vec<(RegionId, u64, u64)> = Vec::with_capacity(by_row.len());
    // Row ids ascend, so the write holding each (the last one starting at
    // or before it) only moves forward.
    let mut writes_started = 0;
    for group in by_row.chunk_by(|a, b| a.0 == b.0) {
        let row_id = group[0].0;
        let places = || group.iter().map(|(_, index)| &found[*index]);
        let item = &found[group[0].1];
        while writes
            .get(writes_started)
            .is_some_and(|(first_row_id, _, _)| *first_row_id <= row_id)
        {
            writes_started += 1;
        }
        let Some((_, write, expect)) = writes_started.checked_sub(1).map(|i| &writes[i]) else {
            problems.push(format!(
                "row {row_id} in {}: expected only rows the clients wrote, saw a phantom",
                item.place
            ));
            continue;
        };
        let Some(rows) = &write.write else { continue };
        let index = (row_id - rows.first_row_id) as usize;
        let Some(written) = rows.rows.get(index) else {
            problems.push(format!(
                "row {row_id} in {}: expected only rows the clients wrote, saw a phantom",
                item.place
            ));
            continue;
        };
        if group.len() > 1 {
            let where_: Vec<&str> = places().map(|f| &*f.place).collect();
            problems.push(format!(
                "row {row_id} of {}: expected once, saw {} times (in {})",
                write.describe(),
                group.len(),
                where_.join(", ")
            ));
        }
        if let Expect::Absent(reason) = expect {
            problems.push(format!(
                "row {row_id} of {}: expected gone because {reason}, saw it in {}",
                write.describe(),
                item.place
            ));
        }
        if item.region_id != write.region_id {
            problems.push(format!(
                "row {row_id} of {}: expected in {}, saw it in {} ({})",
                write.describe(),
                write.region_id,
                item.region_id,
                item.place
            ));
        }
        if item.row.series != written.series || item.row.ts != written.ts {
            problems.push(format!(
                "row {row_id} of {}: expected series {} ts {}, saw series {} ts {} in {}",
                write.describe(),
                written.series,
                written.ts,
                item.row.series,
                item.row.ts,
                item.place
            ));
        }
        if !same_fields(&item.row.fields, &written.fields) {
            problems.push(format!(
                "row {row_id} of {}: expected added fields [{}], saw [{}] in {} (a field the \
                 row did not set reads null)",
                write.describe(),
                describe_fields(&written.fields),
                describe_fields(&item.row.fields),
                item.place
            ));
        }
        if let Outcome::Ok(Output::Written { first_sequence, .. }) = write.outcome {
            let expected = first_sequence + index as u64;
            if item.row.sequence != expected {
                problems.push(format!(
                    "row {row_id} of {}: expected sequence {expected}, saw {} in {}",
                    write.describe(),
                    item.row.sequence,
                    item.place
                ));
            }
        }
        sequences.extend(places().map(|place| (place.region_id, place.row.sequence, row_id)));
    }
    sequences.sort_unstable();
    for pair in sequences.windows(2) {
        let ((region_id, sequence, other), (next_region_id, next_sequence, row_id)) =
            (pair[0], pair[1]);
        if (region_id, sequence) == (next_region_id, next_sequence) && other != row_id {
            problems.push(format!(
                "{region_id} sequence {sequence}: expected one row, saw rows {other} and {row_id}"
            ));
        }
    }
    let found_row_ids: Vec<u64> = by_row
        .chunk_by(|a, b| a.0 == b.0)
        .map(|group| group[0].0)
        .collect();
    let mut checked = 0u64;
    // Writes and their rows ascend by row id, and so do the ids found: one
    // walk over both.
    let mut found_before = 0;
    for (_, write, expect) in &writes {
        let Some(rows) = &write.write else { continue };
        if !in_scope(write.region_id) {
            continue;
        }
        checked += rows.rows.len() as u64;
        if *expect != Expect::Present {
            continue;
        }
        for index in 0..rows.rows.len() as u64 {
            let row_id = rows.first_row_id + index;
            while found_row_ids
                .get(found_before)
                .is_some_and(|found_id| *found_id < row_id)
            {
                found_before += 1;
            }
            if found_row_ids.get(found_before) != Some(&row_id) {
                problems.push(format!(
                    "row {row_id} of {} (acknowledged {}): expected in a memtable, a listed SST or the WAL tail, \
                     saw it nowhere",
                    write.describe(),
                    write.outcome.describe()
                ));
            }
        }
    }
    (problems, checked)
}

fn monotonic_flush_marks(observed: &Observations, violations: &Violations) -> CheckResult {
    let mut problems = Vec::new();
    for view in observed.views.iter().flatten() {
        for (region_id, region) in &view.regions {
            if let Some(slot) = observed.manifests.get(region_id) {
                if region.flushed_entry_id < slot.manifest.flushed_entry_id
                    && region.epoch == slot.manifest.epoch
                    && observed.quiescent
                {
                    problems.push(format!(
                        "{region_id}: expected the worker's flushed entry id to reach the manifest's {}, saw {}",
                        slot.manifest.flushed_entry_id, region.flushed_entry_id
                    ));
                }
            }
        }
    }
    CheckResult::from_problems(
        Check::MonotonicFlushMarks,
        "flush marks never went backwards nor past the last entry".to_string(),
        violations.of(Check::MonotonicFlushMarks),
        problems,
    )
}

fn liveness(observed: &Observations, violations: &Violations) -> CheckResult {
    let live = &observed.liveness;
    let mut problems = Vec::new();
    if !live.pending.is_empty() {
        let shown: Vec<&str> = live
            .pending
            .iter()
            .take(PROBLEMS_SHOWN)
            .map(String::as_str)
            .collect();
        problems.push(format!(
            "expected 0 pending requests {} ms after faults stopped, saw {}: {}",
            live.budget_ms,
            live.pending.len(),
            shown.join(", ")
        ));
    }
    if live.clients_running > 0 {
        problems.push(format!(
            "expected every client to finish within {} ms, saw {} still running",
            live.budget_ms, live.clients_running
        ));
    }
    match live.stalled_writes {
        None => problems.push(
            "expected every worker to be idle between requests, saw one stuck inside a request"
                .to_string(),
        ),
        Some(0) => {}
        Some(stalled) => problems.push(format!(
            "expected 0 stalled writes after faults stopped, saw {stalled}"
        )),
    }
    CheckResult::from_problems(
        Check::Liveness,
        format!(
            "every request completed within {} ms of faults stopping",
            live.budget_ms
        ),
        violations.of(Check::Liveness),
        problems,
    )
}

/// SSTs decoded once per run: an object is immutable once written, except
/// that a retried flush may rewrite the same path, so an entry is reused
/// only for the very same bytes.
#[derive(Default)]
pub struct SstCache {
    decoded: BTreeMap<String, (Bytes, Result<Vec<Row>, String>)>,
}

impl SstCache {
    pub fn decode(&mut self, path: &str, bytes: &Bytes) -> Result<Vec<Row>, String> {
        if let Some((cached, rows)) = self.decoded.get(path) {
            if cached.as_ptr() == bytes.as_ptr() && cached.len() == bytes.len() {
                return rows.clone();
            }
        }
        let rows =
            flush_core::sst::decode_rows(path, bytes.clone()).map_err(|error| error.to_string());
        self.decoded
            .insert(path.to_string(), (bytes.clone(), rows.clone()));
        rows
    }
}

/// A region right after a restart reopened it, seen between two requests
/// of its worker: the SSTs its manifest lists (bytes as stored, if any) and
/// the rows WAL replay put in its memtable.
#[derive(Clone, Debug)]
pub struct RecoveredRegion {
    pub region_id: RegionId,
    pub ssts: Vec<(String, Option<Bytes>)>,
    pub memtable_rows: Vec<Row>,
}

/// Each listed SST of `recovered`, decoded (or why it could not be).
pub fn decode_recovered(recovered: &[RecoveredRegion], cache: &mut SstCache) -> Decoded {
    let mut decoded = Decoded::new();
    for region in recovered {
        for (path, bytes) in &region.ssts {
            let rows = match bytes {
                None => Err("no such object".to_string()),
                Some(bytes) => cache.decode(path, bytes),
            };
            decoded.insert(path.clone(), rows);
        }
    }
    decoded
}

/// What one recovery check judged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecoveryStats {
    pub rows_checked: u64,
    pub rows_found: u64,
}

/// `recovery` (DESIGN §4 check 9) for one restart: every reopened region
/// holds exactly the acknowledged rows not truncated or dropped since (plus
/// perhaps rows of writes the crash interrupted), each once, nothing
/// truncated come back; and every SST its manifest lists is there.
pub fn recovery_problems(
    recovered: &[RecoveredRegion],
    decoded: &Decoded,
    entries: &[&LedgerEntry],
    unlogged: &BTreeSet<RegionId>,
) -> (Vec<String>, RecoveryStats) {
    let mut problems = Vec::new();
    let mut found = Vec::new();
    for region in recovered {
        for (path, _) in &region.ssts {
            match decoded.get(path) {
                Some(Ok(rows)) => {
                    let place: Rc<str> = Rc::from(path.as_str());
                    found.extend(rows.iter().map(|row| Found {
                        region_id: region.region_id,
                        row: Cow::Borrowed(row),
                        place: place.clone(),
                    }));
                }
                Some(Err(reason)) => problems.push(format!(
                    "manifest of {} lists {path}: expected a readable SST after reopening, saw {reason}",
                    region.region_id
                )),
                None => {}
            }
        }
        let place: Rc<str> = Rc::from("memtable after WAL replay");
        found.extend(region.memtable_rows.iter().map(|row| Found {
            region_id: region.region_id,
            row: Cow::Borrowed(row),
            place: place.clone(),
        }));
    }
    let in_scope = |region_id: RegionId| recovered.iter().any(|r| r.region_id == region_id);
    let unlogged = Unlogged::new(unlogged, entries);
    let (row_problems, rows_checked) = row_problems(&found, entries, &unlogged, in_scope);
    problems.extend(row_problems);
    let stats = RecoveryStats {
        rows_checked,
        rows_found: found.len() as u64,
    };
    (problems, stats)
}

/// `recovery` over the run: the violations each restart's check recorded,
/// and every crash's restart completed.
fn recovery(state: &WorldState, violations: &Violations) -> CheckResult {
    let crashes = &state.crash.records;
    let recoveries = &state.crash.recoveries;
    let mut problems = Vec::new();
    if recoveries.len() < crashes.len() {
        problems.push(format!(
            "expected every crash's restart to complete, saw {} of {} complete at the end",
            recoveries.len(),
            crashes.len()
        ));
    }
    let ok = if crashes.is_empty() {
        "no crash in this run".to_string()
    } else {
        let windows: Vec<&str> = crashes.iter().map(|crash| crash.window.name()).collect();
        let reopened: u64 = recoveries.iter().map(|r| r.regions_reopened).sum();
        let not_reopened: u64 = recoveries.iter().map(|r| r.regions_not_reopened).sum();
        let skipped: u64 = recoveries.iter().map(|r| r.regions_skipped).sum();
        let rows: u64 = recoveries.iter().map(|r| r.rows_checked).sum();
        format!(
            "{} crashes ({}): {reopened} regions reopened ({not_reopened} failed to reopen, \
             {skipped} skipped mid-flush), {rows} written rows judged after reopening; \
             none lost, duplicated or resurrected",
            crashes.len(),
            windows.join(", ")
        )
    };
    CheckResult::from_problems(
        Check::Recovery,
        ok,
        violations.of(Check::Recovery),
        problems,
    )
}
