//! Op sequences against the real worker and the reference model, side by
//! side.
//!
//! An [`Op`] is one thing a client or the world can do to a
//! [`LocalEngine`] (SSTs in a [`MemoryObjectStore`]): a request, running one queued flush job, arming a fault,
//! a periodic tick. [`run_ops`] applies each op to a fresh engine and to a
//! [`SchedulerModel`], and after every step checks:
//!
//! - `exactly_once_reply`: no responder was dropped unanswered (lost);
//! - `reply_kind`: each request is answered when the model answers it, with
//!   the same outcome, and waits while the model says it waits;
//! - `buffer_accounting`: no accounting violation; `used` and `active` equal
//!   the model's; `used` is the memory of the regions' memtables plus what
//!   queued jobs alone hold; `active <= used`;
//! - `scheduler_state`: the scheduler's own invariant, and regions, flush
//!   statuses, stalled writes and queued jobs equal to the model's.
//!
//! At the end it drains (runs jobs, ticks) and requires every reply.
//! The proptest suites, the fuzz target and the regression replays all call
//! [`run_ops`]; none has a harness of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use flush_core::bugs::Bugs;
use flush_core::error::panic_message;
use flush_core::ids::RegionId;
use flush_core::local::{LocalEngine, MemoryObjectStore, StuckFuture};
use flush_core::manifest::LeaderState;
use flush_core::memtable::{RowValue, ROW_OVERHEAD_BYTES};
use flush_core::request::{RegionRole, Reply, Request};
use flush_core::worker::WorkerConfig;
use futures::channel::oneshot;
use proptest::prelude::*;

use crate::model::{
    ModelRequest, Outcome, RegionSummary, SchedulerModel, Slot, StatusSummary, WorkerSummary,
};

/// Regions the ops address; each is created before the first op.
pub const REGIONS: u8 = 3;
/// Rows in one write are `0..=MAX_ROWS_PER_WRITE` (0 is an invalid write).
pub const MAX_ROWS_PER_WRITE: u8 = 8;
/// Simulated time one `Tick` op lets pass.
pub const TICK_MS: u64 = 1_000;
/// The worker's auto-flush interval: a region unflushed for five ticks is
/// flushed on the next one (rare enough in a 40-op sequence not to flush
/// away the states the other rules need).
pub const AUTO_FLUSH_INTERVAL_MS: u64 = 5 * TICK_MS;
/// A write stalled this long is answered `WriteStallTimeout`: within the
/// drain's ticks, so a stall no flush can relieve (memory a follower
/// holds) still ends with every request answered.
pub const STALL_TIMEOUT_MS: u64 = 20 * TICK_MS;
/// Small enough that a handful of writes flushes and stalls.
pub const BUFFER_BYTES: usize = 1024;
/// Small enough that the stall queue overflows now and then.
pub const MAX_STALLED_WRITES: usize = 4;
/// Longer inputs (from the fuzzer) are cut here.
pub const MAX_OPS: usize = 256;
/// Every row has this series name, so its size is known up front.
const SERIES: &str = "cpu";
/// Memory of one row in the write buffer.
pub const ROW_BYTES: usize = ROW_OVERHEAD_BYTES + SERIES.len();

/// One step of a run. Region numbers and row counts are taken modulo
/// [`REGIONS`] and `MAX_ROWS_PER_WRITE + 1`, so every value is valid input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Op {
    Write {
        region: u8,
        rows: u8,
    },
    Flush {
        region: u8,
    },
    Alter {
        region: u8,
    },
    Truncate {
        region: u8,
    },
    Drop {
        region: u8,
    },
    Close {
        region: u8,
    },
    Open {
        region: u8,
    },
    Create {
        region: u8,
    },
    Downgrade {
        region: u8,
    },
    /// set_role(Leader) if `leader`, else set_role(Follower).
    SetRole {
        region: u8,
        leader: bool,
    },
    /// Runs the oldest queued flush job and delivers its result.
    RunJob,
    /// The job scheduler refuses the next job.
    RejectNextJob,
    /// The next manifest change fails.
    FailNextManifest,
    /// The next memtable freeze fails.
    FailNextFreeze,
    /// The worker's periodic wake-up.
    Tick,
    /// The job scheduler drops the oldest queued job unrun (`job_lost`).
    LoseJob,
    /// A graceful stop: the worker answers everything it holds with
    /// `RegionClosed` and closes every region; the stores stay, so `Open`
    /// ops bring regions back as a restart would.
    Stop,
}

impl Op {
    /// The same op with its numbers brought into range.
    pub fn normalized(self) -> Op {
        let slot = |region: u8| region % REGIONS;
        match self {
            Op::Write { region, rows } => Op::Write {
                region: slot(region),
                rows: rows % (MAX_ROWS_PER_WRITE + 1),
            },
            Op::Flush { region } => Op::Flush {
                region: slot(region),
            },
            Op::Alter { region } => Op::Alter {
                region: slot(region),
            },
            Op::Truncate { region } => Op::Truncate {
                region: slot(region),
            },
            Op::Drop { region } => Op::Drop {
                region: slot(region),
            },
            Op::Close { region } => Op::Close {
                region: slot(region),
            },
            Op::Open { region } => Op::Open {
                region: slot(region),
            },
            Op::Create { region } => Op::Create {
                region: slot(region),
            },
            Op::Downgrade { region } => Op::Downgrade {
                region: slot(region),
            },
            Op::SetRole { region, leader } => Op::SetRole {
                region: slot(region),
                leader,
            },
            other => other,
        }
    }

    /// The request this op sends, if it sends one.
    fn request(self) -> Option<ModelRequest> {
        let request = match self.normalized() {
            Op::Write { region, rows } => ModelRequest::Write {
                region,
                bytes: usize::from(rows) * ROW_BYTES,
            },
            Op::Flush { region } => ModelRequest::Flush { region },
            Op::Alter { region } => ModelRequest::Alter { region },
            Op::Truncate { region } => ModelRequest::Truncate { region },
            Op::Drop { region } => ModelRequest::Drop { region },
            Op::Close { region } => ModelRequest::Close { region },
            Op::Open { region } => ModelRequest::Open { region },
            Op::Create { region } => ModelRequest::Create { region },
            Op::Downgrade { region } => ModelRequest::Downgrade { region },
            Op::SetRole { region, leader } => ModelRequest::SetRole { region, leader },
            Op::RunJob
            | Op::RejectNextJob
            | Op::FailNextManifest
            | Op::FailNextFreeze
            | Op::Tick
            | Op::LoseJob
            | Op::Stop => return None,
        };
        Some(request)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.normalized() {
            Op::Write { region, rows } => write!(f, "write(r{region}, {rows} rows)"),
            Op::Flush { region } => write!(f, "flush(r{region})"),
            Op::Alter { region } => write!(f, "alter(r{region})"),
            Op::Truncate { region } => write!(f, "truncate(r{region})"),
            Op::Drop { region } => write!(f, "drop(r{region})"),
            Op::Close { region } => write!(f, "close(r{region})"),
            Op::Open { region } => write!(f, "open(r{region})"),
            Op::Create { region } => write!(f, "create(r{region})"),
            Op::Downgrade { region } => write!(f, "downgrade(r{region})"),
            Op::SetRole {
                region,
                leader: true,
            } => write!(f, "lead(r{region})"),
            Op::SetRole {
                region,
                leader: false,
            } => write!(f, "follow(r{region})"),
            Op::RunJob => f.write_str("run-job"),
            Op::RejectNextJob => f.write_str("reject-next-job"),
            Op::FailNextManifest => f.write_str("fail-next-manifest"),
            Op::FailNextFreeze => f.write_str("fail-next-freeze"),
            Op::Tick => f.write_str("tick"),
            Op::LoseJob => f.write_str("lose-job"),
            Op::Stop => f.write_str("stop"),
        }
    }
}

/// Ops for proptest, weighted towards writes and job runs so that flushes,
/// stalls and waiting requests are common. Shrinks towards writes.
pub fn op_strategy() -> impl Strategy<Value = Op> {
    let region = || 0..REGIONS;
    prop_oneof![
        6 => (region(), 0..=MAX_ROWS_PER_WRITE).prop_map(|(region, rows)| Op::Write { region, rows }),
        4 => Just(Op::RunJob),
        2 => region().prop_map(|region| Op::Flush { region }),
        2 => region().prop_map(|region| Op::Alter { region }),
        1 => region().prop_map(|region| Op::Truncate { region }),
        1 => region().prop_map(|region| Op::Drop { region }),
        1 => region().prop_map(|region| Op::Close { region }),
        1 => region().prop_map(|region| Op::Open { region }),
        1 => region().prop_map(|region| Op::Create { region }),
        1 => region().prop_map(|region| Op::Downgrade { region }),
        3 => region().prop_map(|region| Op::SetRole { region, leader: true }),
        1 => region().prop_map(|region| Op::SetRole { region, leader: false }),
        1 => Just(Op::RejectNextJob),
        1 => Just(Op::FailNextManifest),
        1 => Just(Op::FailNextFreeze),
        2 => Just(Op::Tick),
        1 => Just(Op::LoseJob),
        1 => Just(Op::Stop),
    ]
}

/// Sequences of up to `max_len` ops.
pub fn ops_strategy(max_len: usize) -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op_strategy(), 0..=max_len)
}

/// A failed check: where, which check, expected vs seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// `setup N`, `op N` (0-based index into the ops) or `drain N`.
    pub step: String,
    /// The op of that step.
    pub op: String,
    pub check: &'static str,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}: {}",
            self.step, self.op, self.check, self.message
        )
    }
}

impl std::error::Error for Violation {}

/// Applies `ops` to a fresh engine (with `bugs` planted) and to the model,
/// checking after every step; then drains and requires every reply.
pub fn run_ops(ops: &[Op], bugs: Bugs) -> Result<(), Violation> {
    run_ops_with_coverage(ops, bugs).map(|_| ())
}

/// What a run reached: reply outcomes per request kind, and named states
/// seen after some step. Tests use it to check that generated sequences
/// still reach the interesting corners (the "sometimes" assertions).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    /// `(request kind, outcome)` → count, e.g. `("write", "error write_stall_full")`.
    pub replies: BTreeMap<(&'static str, String), usize>,
    /// Named states seen after at least one step.
    pub states: BTreeSet<&'static str>,
}

impl Coverage {
    pub fn merge(&mut self, other: Coverage) {
        for (key, count) in other.replies {
            *self.replies.entry(key).or_default() += count;
        }
        self.states.extend(other.states);
    }

    fn note_state(&mut self, summary: &WorkerSummary, job_only_bytes: usize) {
        let statuses = summary
            .regions
            .values()
            .filter_map(|r| r.flush)
            .chain(summary.orphan_statuses.values().copied());
        for status in statuses {
            if status.pending_task {
                self.states.insert("flush_merged_behind_running_job");
            }
            if status.pending_ddls > 0 {
                self.states.insert("ddl_queued_behind_flush");
            }
            if status.pending_writes > 0 {
                self.states.insert("write_queued_behind_ddl");
            }
        }
        if !summary.orphan_statuses.is_empty() {
            self.states.insert("status_of_region_not_open");
        }
        if summary.stalled_writes > 0 {
            self.states.insert("write_stalled");
        }
        if summary.queued_jobs > 1 {
            self.states.insert("several_jobs_queued");
        }
        if job_only_bytes > 0 {
            self.states.insert("memory_held_only_by_a_job");
        }
        for region in summary.regions.values() {
            match region.leader_state {
                LeaderState::Downgrading => self.states.insert("region_downgrading"),
                LeaderState::Follower => self.states.insert("region_follower"),
                LeaderState::Writable => false,
            };
            if region.immutable_bytes > 0 && region.flush.is_none() {
                self.states.insert("immutable_left_by_failed_flush");
            }
        }
    }
}

/// [`run_ops`], also returning what the run reached.
pub fn run_ops_with_coverage(ops: &[Op], bugs: Bugs) -> Result<Coverage, Violation> {
    let ops = &ops[..ops.len().min(MAX_OPS)];
    // Panics inside a step are caught there, with the step's name; this
    // catches the rest (making or dropping the engine).
    catch_unwind(AssertUnwindSafe(|| Harness::new(bugs).run(ops))).unwrap_or_else(|panic| {
        Err(Violation {
            step: "run".to_string(),
            op: "-".to_string(),
            check: "no_panic",
            message: panic_message(panic.as_ref()),
        })
    })
}

/// Shrinks a failing sequence further than proptest does (its `Vec`
/// shrinker stops deleting once it starts simplifying elements): fills
/// writes up to [`MAX_ROWS_PER_WRITE`] rows (one full write can stand in
/// for several), deletes single ops, and merges two writes to the same
/// region into one, while `still_fails` holds, pass after pass, until a
/// pass leaves the sequence no shorter. Bounded: rows only grow to the
/// maximum, and every other kept change makes the sequence shorter.
pub fn minimize(mut ops: Vec<Op>, mut still_fails: impl FnMut(&[Op]) -> bool) -> Vec<Op> {
    loop {
        let before = ops.len();
        // Fuller writes first: one full write can stand in for several.
        for index in 0..ops.len() {
            if let Op::Write { region, rows } = ops[index].normalized() {
                if rows < MAX_ROWS_PER_WRITE {
                    let mut candidate = ops.clone();
                    candidate[index] = Op::Write {
                        region,
                        rows: MAX_ROWS_PER_WRITE,
                    };
                    if still_fails(&candidate) {
                        ops = candidate;
                    }
                }
            }
        }
        let mut index = 0;
        while index < ops.len() {
            let mut candidate = ops.clone();
            candidate.remove(index);
            if still_fails(&candidate) {
                ops = candidate;
            } else {
                index += 1;
            }
        }
        let mut index = 0;
        while index + 1 < ops.len() {
            match merged_writes(ops[index], ops[index + 1]) {
                Some(merged) => {
                    let mut candidate = ops.clone();
                    candidate.splice(index..index + 2, [merged]);
                    if still_fails(&candidate) {
                        ops = candidate;
                        continue;
                    }
                    index += 1;
                }
                None => index += 1,
            }
        }
        if ops.len() == before {
            return ops;
        }
    }
}

/// Two writes to one region as one write with their rows, if they fit.
fn merged_writes(first: Op, second: Op) -> Option<Op> {
    match (first.normalized(), second.normalized()) {
        (
            Op::Write { region, rows: a },
            Op::Write {
                region: other,
                rows: b,
            },
        ) if region == other && a + b <= MAX_ROWS_PER_WRITE => Some(Op::Write {
            region,
            rows: a + b,
        }),
        _ => None,
    }
}

/// Renders ops as one line, for failure reports.
pub fn describe(ops: &[Op]) -> String {
    let parts: Vec<String> = ops.iter().map(Op::to_string).collect();
    format!("[{}]", parts.join(", "))
}

/// Drain rounds allowed per op (and a floor): each round runs a job or
/// ticks, and every armed fault is consumed by at most one round.
const DRAIN_ROUNDS_PER_OP: usize = 4;
const DRAIN_ROUNDS_MIN: usize = 32;

struct Tracked {
    kind: &'static str,
    label: String,
    receiver: oneshot::Receiver<Reply>,
    answered: bool,
}

struct Harness {
    engine: LocalEngine,
    model: SchedulerModel,
    requests: Vec<Tracked>,
    step: String,
    op: String,
    coverage: Coverage,
}

fn region_id(slot: Slot) -> RegionId {
    RegionId(u64::from(slot) + 1)
}

fn slot_of(region_id: RegionId) -> Slot {
    Slot::try_from(region_id.0 - 1).expect("the driver only uses small region ids")
}

impl Harness {
    fn new(bugs: Bugs) -> Self {
        let config = WorkerConfig {
            bugs,
            max_stalled_writes: MAX_STALLED_WRITES,
            auto_flush_interval_ms: Some(AUTO_FLUSH_INTERVAL_MS),
            stall_timeout_ms: Some(STALL_TIMEOUT_MS),
            ..WorkerConfig::default()
        };
        Harness {
            engine: LocalEngine::with_object_store(
                Arc::new(MemoryObjectStore::default()),
                BUFFER_BYTES,
                config,
            ),
            model: SchedulerModel::new(BUFFER_BYTES, MAX_STALLED_WRITES)
                .with_auto_flush(AUTO_FLUSH_INTERVAL_MS)
                .with_stall_timeout(STALL_TIMEOUT_MS),
            requests: Vec::new(),
            step: String::new(),
            op: String::new(),
            coverage: Coverage::default(),
        }
    }

    fn run(mut self, ops: &[Op]) -> Result<Coverage, Violation> {
        for slot in 0..REGIONS {
            self.step(format!("setup {slot}"), Op::Create { region: slot })?;
        }
        for (index, op) in ops.iter().enumerate() {
            self.step(format!("op {index}"), *op)?;
        }
        self.drain(ops.len())?;
        Ok(self.coverage)
    }

    /// Runs jobs and ticks until nothing is queued and the model has
    /// answered everything, then requires every reply.
    fn drain(&mut self, ops: usize) -> Result<(), Violation> {
        let rounds_max = DRAIN_ROUNDS_MIN + DRAIN_ROUNDS_PER_OP * ops;
        for round in 0..rounds_max {
            let model_waits = self
                .requests
                .iter()
                .enumerate()
                .any(|(no, _)| self.model.outcome(no).is_none());
            let jobs_queued = self.model.queued_jobs() > 0 || !self.engine.ports().jobs.is_empty();
            if !model_waits && !jobs_queued {
                break;
            }
            let op = if jobs_queued { Op::RunJob } else { Op::Tick };
            self.step(format!("drain {round}"), op)?;
        }
        self.step = "end".to_string();
        self.op = "after drain".to_string();
        let waiting: Vec<String> = self
            .requests
            .iter()
            .enumerate()
            .filter(|(no, tracked)| !tracked.answered || self.model.outcome(*no).is_none())
            .map(|(no, tracked)| format!("request {no} ({})", tracked.label))
            .collect();
        if !waiting.is_empty() {
            return Err(self.violation(
                "liveness",
                format!(
                    "after {rounds_max} drain rounds still waiting: {}; expected every request answered",
                    waiting.join(", ")
                ),
            ));
        }
        Ok(())
    }

    fn step(&mut self, step: String, op: Op) -> Result<(), Violation> {
        self.step = step;
        self.op = op.to_string();
        // A panic in the core (a debug assertion) is a failed check of
        // this step, not the end of the whole run's report.
        let stepped = catch_unwind(AssertUnwindSafe(|| {
            self.apply(op.normalized())?;
            self.check()
        }));
        stepped
            .unwrap_or_else(|panic| Err(self.violation("no_panic", panic_message(panic.as_ref()))))
    }

    fn apply(&mut self, op: Op) -> Result<(), Violation> {
        if let Some(request) = op.request() {
            return self.submit(request);
        }
        match op {
            Op::RunJob => {
                let ran = self.engine.run_one_job().map_err(|e| self.stuck(e))?;
                let model_ran = self.model.run_one_job();
                if ran != model_ran {
                    return Err(self.violation(
                        "scheduler_state",
                        format!("a queued job: expected {model_ran}, seen {ran}"),
                    ));
                }
            }
            Op::RejectNextJob => {
                let jobs = &self.engine.ports().jobs;
                jobs.reject_next.fetch_add(1, Ordering::Relaxed);
                self.model.reject_next_job();
            }
            Op::FailNextManifest => {
                let manifests = &self.engine.ports().manifests;
                manifests.fail_next.fetch_add(1, Ordering::Relaxed);
                self.model.fail_next_manifest_change();
            }
            Op::FailNextFreeze => {
                let faults = &self.engine.ports().faults;
                faults.fail_freezes.fetch_add(1, Ordering::Relaxed);
                self.model.fail_next_freeze();
            }
            Op::Tick => {
                self.engine.advance_clock(TICK_MS);
                self.model.advance_clock(TICK_MS);
                self.engine.tick().map_err(|e| self.stuck(e))?;
                self.model.tick();
            }
            Op::LoseJob => {
                let lost = self.engine.lose_one_job().map_err(|e| self.stuck(e))?;
                let model_lost = self.model.lose_one_job();
                if lost != model_lost {
                    return Err(self.violation(
                        "scheduler_state",
                        format!("a queued job to lose: expected {model_lost}, seen {lost}"),
                    ));
                }
            }
            Op::Stop => {
                self.engine.shutdown().map_err(|e| self.stuck(e))?;
                self.model.stop();
            }
            _ => unreachable!("requests are handled above"),
        }
        Ok(())
    }

    fn submit(&mut self, request: ModelRequest) -> Result<(), Violation> {
        let no = self.requests.len();
        let core_request = core_request(request, no);
        let kind = core_request.kind();
        let label = format!("{kind} r{}", request.region());
        let receiver = self
            .engine
            .submit(core_request)
            .map_err(|e| self.stuck(e))?;
        self.requests.push(Tracked {
            kind,
            label,
            receiver,
            answered: false,
        });
        self.model.submit(no, request);
        Ok(())
    }

    fn check_replies(&mut self) -> Result<(), Violation> {
        for no in 0..self.requests.len() {
            let tracked = &mut self.requests[no];
            if tracked.answered {
                continue;
            }
            let expected = self.model.outcome(no);
            let seen = match tracked.receiver.try_recv() {
                Ok(Some(reply)) => Some(outcome_of(&reply)),
                Ok(None) => None,
                Err(oneshot::Canceled) => {
                    let message = format!(
                        "request {no} ({}) lost: its responder was dropped without an answer; \
                         expected {}",
                        tracked.label,
                        describe_outcome(expected)
                    );
                    return Err(self.violation("exactly_once_reply", message));
                }
            };
            tracked.answered = seen.is_some();
            if let Some(outcome) = seen {
                let key = (tracked.kind, outcome.to_string());
                *self.coverage.replies.entry(key).or_default() += 1;
            }
            if seen != expected {
                let message = format!(
                    "request {no} ({}): expected {}, seen {}",
                    tracked.label,
                    describe_outcome(expected),
                    describe_outcome(seen)
                );
                return Err(self.violation("reply_kind", message));
            }
        }
        Ok(())
    }

    fn check_buffer(&self) -> Result<(), Violation> {
        let buffer = self.engine.buffer();
        let violations = buffer.accounting_violations();
        let (used, active) = (buffer.used_bytes(), buffer.active_bytes());
        let regions = self.engine.worker().regions();
        let region_bytes: usize = regions.values().map(|r| r.version.memtable_bytes()).sum();
        let job_only = self.model.job_only_bytes();
        let problems = [
            (violations != 0)
                .then(|| format!("accounting violations: expected 0, seen {violations}")),
            (active > used).then(|| format!("active {active} > used {used}")),
            (used != self.model.used_bytes()).then(|| {
                format!(
                    "used bytes: expected {}, seen {used}",
                    self.model.used_bytes()
                )
            }),
            (active != self.model.active_bytes()).then(|| {
                format!(
                    "active bytes: expected {}, seen {active}",
                    self.model.active_bytes()
                )
            }),
            (used != region_bytes + job_only).then(|| {
                format!(
                    "used bytes {used} != memtables of open regions {region_bytes} + held only by \
                     queued jobs {job_only}"
                )
            }),
        ];
        match problems.into_iter().flatten().next() {
            Some(message) => Err(self.violation("buffer_accounting", message)),
            None => Ok(()),
        }
    }

    fn check_scheduler(&self) -> Result<(), Violation> {
        let worker = self.engine.worker();
        if let Err(message) = worker.scheduler().check_invariants() {
            return Err(self.violation("scheduler_state", message));
        }
        let seen = core_summary(&self.engine);
        let expected = self.model.summary();
        if seen != expected {
            let message = summary_diff(&expected, &seen);
            return Err(self.violation("scheduler_state", message));
        }
        Ok(())
    }

    fn check(&mut self) -> Result<(), Violation> {
        self.check_replies()?;
        self.check_buffer()?;
        self.check_scheduler()?;
        let job_only_bytes = self.model.job_only_bytes();
        self.coverage
            .note_state(&self.model.summary(), job_only_bytes);
        Ok(())
    }

    fn violation(&self, check: &'static str, message: String) -> Violation {
        Violation {
            step: self.step.clone(),
            op: self.op.clone(),
            check,
            message,
        }
    }

    fn stuck(&self, error: StuckFuture) -> Violation {
        self.violation("no_stuck_future", error.to_string())
    }
}

fn core_request(request: ModelRequest, no: usize) -> Request {
    let region = region_id(request.region());
    match request {
        ModelRequest::Write { bytes, .. } => Request::Write {
            region_id: region,
            rows: (0..bytes / ROW_BYTES)
                .map(|i| RowValue {
                    series: SERIES.into(),
                    ts: (no * 1000 + i) as i64,
                    value: i as f64,
                    fields: Vec::new(),
                })
                .collect(),
        },
        ModelRequest::Flush { .. } => Request::Flush { region_id: region },
        // Each alter adds a field: the core's schema path runs, and the
        // model's answer (the alter waits for the flush) does not change.
        ModelRequest::Alter { .. } => Request::Alter {
            region_id: region,
            schema_version: no as u64,
            add_field: Some(format!("f{no}")),
        },
        ModelRequest::Truncate { .. } => Request::Truncate { region_id: region },
        ModelRequest::Drop { .. } => Request::Drop { region_id: region },
        ModelRequest::Close { .. } => Request::Close { region_id: region },
        ModelRequest::Open { .. } => Request::Open { region_id: region },
        ModelRequest::Create { .. } => Request::create(region),
        ModelRequest::Downgrade { .. } => Request::Downgrade { region_id: region },
        ModelRequest::SetRole { leader, .. } => Request::SetRole {
            region_id: region,
            role: if leader {
                RegionRole::Leader
            } else {
                RegionRole::Follower
            },
        },
    }
}

fn outcome_of(reply: &Reply) -> Outcome {
    match reply {
        Ok(_) => Outcome::Ok,
        Err(error) => Outcome::Err(error.kind()),
    }
}

fn describe_outcome(outcome: Option<Outcome>) -> String {
    match outcome {
        Some(outcome) => outcome.to_string(),
        None => "still waiting".to_string(),
    }
}

/// The core's state in the model's terms.
fn core_summary(engine: &LocalEngine) -> WorkerSummary {
    let view = engine.worker().inspect();
    let status = |s: flush_core::flush::FlushStatusView| StatusSummary {
        running_epoch: s.running_epoch,
        pending_task: s.pending_task,
        pending_ddls: s.pending_ddls,
        pending_writes: s.pending_writes,
    };
    WorkerSummary {
        regions: view
            .regions
            .iter()
            .map(|(id, r)| {
                let summary = RegionSummary {
                    epoch: r.epoch,
                    leader_state: r.leader_state,
                    mutable_bytes: r.mutable_bytes,
                    immutable_bytes: r.immutable_bytes,
                    flush: r.flush.map(status),
                };
                (slot_of(*id), summary)
            })
            .collect(),
        orphan_statuses: view
            .orphan_statuses
            .iter()
            .map(|(id, s)| (slot_of(*id), status(*s)))
            .collect(),
        stalled_writes: view.stalled_writes,
        queued_jobs: engine.ports().jobs.len(),
    }
}

/// The parts of two summaries that differ, one per line.
fn summary_diff(expected: &WorkerSummary, seen: &WorkerSummary) -> String {
    let mut lines = Vec::new();
    let slots: std::collections::BTreeSet<Slot> = expected
        .regions
        .keys()
        .chain(seen.regions.keys())
        .copied()
        .collect();
    for slot in slots {
        let (e, s) = (expected.regions.get(&slot), seen.regions.get(&slot));
        if e != s {
            lines.push(format!("region r{slot}: expected {e:?}, seen {s:?}"));
        }
    }
    if expected.orphan_statuses != seen.orphan_statuses {
        lines.push(format!(
            "statuses of regions not open: expected {:?}, seen {:?}",
            expected.orphan_statuses, seen.orphan_statuses
        ));
    }
    if expected.stalled_writes != seen.stalled_writes {
        lines.push(format!(
            "stalled writes: expected {}, seen {}",
            expected.stalled_writes, seen.stalled_writes
        ));
    }
    if expected.queued_jobs != seen.queued_jobs {
        lines.push(format!(
            "queued jobs: expected {}, seen {}",
            expected.queued_jobs, seen.queued_jobs
        ));
    }
    lines.join("; ")
}
