//! The region worker: the state machine that owns a set of regions and
//! drives their flushes.
//!
//! A runtime feeds it [`WorkerRequest`]s one at a time through
//! [`RegionWorker::handle`] (a madsim task in the simulator, a plain loop in
//! [`crate::local`]). Requests are handled to completion in order; the only
//! concurrency is the flush jobs, which talk back through notifications.
//! One file per kind of request, as in mito2: `handle_write`,
//! `handle_flush`, `handle_ddl`, `handle_lifecycle`.
//!
//! # What each request answers, by the region's state
//!
//! Learned from mito2's worker (GreptimeDB, `src/mito2/src/worker/`);
//! `core/tests/ddl_answers.rs` tests every row and the reference model
//! (`tests/src/model.rs`) agrees. "Not open" covers never created, closed
//! and dropped alike: mito2 cannot tell them apart either. `ReadOnly` is
//! our `RegionReadOnly { state }`, mito2's `RegionState` error.
//!
//! | request   | not open            | follower            | downgrading          | retried / stale |
//! |-----------|---------------------|---------------------|----------------------|-----------------|
//! | create    | creates; on disk: opens it as leader (options must match) | Ok if options match, else `RegionExists` | same | Ok (idempotent) |
//! | open      | opens as follower; dropped: finishes the drop, `RegionNotFound`; none: `RegionNotFound` | Ok, no-op | Ok, no-op | Ok, no-op |
//! | close     | Ok                  | closes (no flush)   | closes; skip-WAL: flushes first | Ok |
//! | drop      | `RegionNotFound`    | `ReadOnly`          | `ReadOnly`           | `RegionNotFound` |
//! | truncate  | `RegionNotFound`    | `ReadOnly`          | `ReadOnly`           | truncates again |
//! | alter     | `RegionNotFound`    | `ReadOnly`          | `ReadOnly`           | Ok; a field is added once, the version never goes back |
//! | flush     | `RegionNotFound`    | `ReadOnly`          | flushes              | Ok |
//! | downgrade | `RegionNotFound`    | Ok, no transition   | waits for the flush  | Ok |
//! | set_role  | `RegionNotFound`    | leader: writable    | leader: writable (the downgrade's flush then fails) | Ok, no-op |
//! | write     | `RegionNotFound`    | `ReadOnly`          | `ReadOnly`           | — |
//!
//! A writable leader accepts all of them. Closing a writable (or
//! downgrading) region that skips the WAL flushes it first with
//! `FlushReason::Closing`; if that flush fails the close fails and the
//! region stays open. An engine stop never flushes, and a drop discards
//! the memtables, so a skip-WAL region loses its unflushed rows there, by
//! design.

mod handle_ddl;
mod handle_flush;
mod handle_lifecycle;
mod handle_write;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::buffer::WriteBufferManager;
use crate::bugs::{Bugs, PlantedBug};
use crate::error::RequestError;
use crate::flush::{FlushEnv, FlushScheduler, FlushStatusView};
use crate::ids::{FileId, RegionId};
use crate::manifest::LeaderState;
use crate::ports::{Ports, WorkerNotifier};
use crate::region::Region;
use crate::request::{ClientRequest, Request, WorkerRequest};
use crate::row::Row;

/// Settings of one worker.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub worker_id: u32,
    /// Bound on the stall queue; a write beyond it is refused at once.
    pub max_stalled_writes: usize,
    /// Retries of a full worker queue after which a flush job logs its
    /// result as stuck. It keeps retrying: a committed result is never
    /// dropped while the worker runs.
    pub notify_retry_limit: u32,
    /// Base of the doubling backoff between those retries.
    pub notify_retry_backoff_ms: u64,
    /// A region whose last flush is older than this is flushed on the
    /// worker's next tick (mito2's `auto_flush_interval`, 30 minutes by
    /// default); `None` turns periodic flushes off.
    pub auto_flush_interval_ms: Option<u64>,
    /// A write stalled longer than this is answered `WriteStallTimeout` on
    /// the worker's next tick; `None` lets stalled writes wait forever
    /// (mito2). Memory held by followers cannot be flushed, so without it
    /// a stalled write can wait for a DDL that never comes.
    pub stall_timeout_ms: Option<u64>,
    pub bugs: Bugs,
}

/// mito2's default auto-flush interval: 30 minutes.
pub const DEFAULT_AUTO_FLUSH_INTERVAL_MS: u64 = 30 * 60 * 1_000;

/// Our default stall timeout: 30 seconds, a common client request timeout,
/// so the engine answers before its client gives up.
pub const DEFAULT_STALL_TIMEOUT_MS: u64 = 30 * 1_000;

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            worker_id: 0,
            max_stalled_writes: 1024,
            notify_retry_limit: 64,
            notify_retry_backoff_ms: 1,
            auto_flush_interval_ms: Some(DEFAULT_AUTO_FLUSH_INTERVAL_MS),
            stall_timeout_ms: Some(DEFAULT_STALL_TIMEOUT_MS),
            bugs: Bugs::NONE,
        }
    }
}

/// What a worker holds for one region, for oracles and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionView {
    pub epoch: u64,
    pub leader_state: LeaderState,
    pub schema_version: u64,
    pub mutable_bytes: usize,
    pub immutable_bytes: usize,
    pub memtable_rows: usize,
    pub files: usize,
    /// The SSTs the region's version lists: its manifest must list the same.
    pub file_ids: Vec<FileId>,
    pub last_entry_id: u64,
    pub committed_sequence: u64,
    pub flushed_entry_id: u64,
    pub flushed_sequence: u64,
    pub flush: Option<FlushStatusView>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerView {
    pub worker_id: u32,
    pub regions: BTreeMap<RegionId, RegionView>,
    /// Flush statuses of regions no longer open here (a truncated or
    /// closed region's job still running).
    pub orphan_statuses: BTreeMap<RegionId, FlushStatusView>,
    pub stalled_writes: usize,
}

pub struct RegionWorker {
    config: WorkerConfig,
    env: FlushEnv,
    regions: BTreeMap<RegionId, Region>,
    scheduler: FlushScheduler,
    /// Writes waiting for memory, oldest first.
    stalled: VecDeque<Stalled>,
    /// Requests released by a flush, handled before the next one arrives.
    requeued: VecDeque<ClientRequest>,
}

impl RegionWorker {
    pub fn new(
        config: WorkerConfig,
        ports: Ports,
        buffer: Arc<WriteBufferManager>,
        notifier: Arc<dyn WorkerNotifier>,
    ) -> Self {
        let scheduler = FlushScheduler::new(config.bugs, ports.events.clone());
        let env = FlushEnv {
            ports,
            notifier,
            buffer,
            bugs: config.bugs,
            notify_retry_limit: config.notify_retry_limit,
            notify_retry_backoff_ms: config.notify_retry_backoff_ms,
            lost_reports: Arc::default(),
        };
        RegionWorker {
            config,
            env,
            regions: BTreeMap::new(),
            scheduler,
            stalled: VecDeque::new(),
            requeued: VecDeque::new(),
        }
    }

    pub fn worker_id(&self) -> u32 {
        self.config.worker_id
    }

    /// Handles one request to completion, then whatever it released, then
    /// the engine-wide flush rules.
    pub async fn handle(&mut self, request: WorkerRequest) {
        // Lost jobs whose report a full queue refused come first.
        for report in self.env.lost_reports.take() {
            self.handle_background(report).await;
        }
        match request {
            WorkerRequest::Client(request) => self.dispatch(request).await,
            WorkerRequest::Background(notify) => self.handle_background(notify).await,
            WorkerRequest::MemoryFreed => self.retry_stalled(),
            WorkerRequest::Tick => {
                self.retry_stalled();
                self.expire_stalled();
                self.flush_periodically();
            }
        }
        // Bounded: every requeued request is answered, queued behind a
        // flush, or stalled; none is requeued again in this loop.
        while let Some(next) = self.requeued.pop_front() {
            self.dispatch(next).await;
        }
        self.maybe_flush_engine();
        self.maybe_relieve_stall();
        self.assert_scheduler_invariants();
        self.assert_buffer_post_conditions();
    }

    /// Post-condition of every request handled: each flush status has a
    /// job running or a task pending. A planted bug that breaks exactly
    /// this (and no other) is allowed to.
    fn assert_scheduler_invariants(&self) {
        if cfg!(any(debug_assertions, feature = "strict"))
            && !self.config.bugs.breaks_scheduler_invariants()
        {
            if let Err(broken) = self.scheduler.check_invariants() {
                panic!("scheduler invariant broken after a request: {broken}");
            }
        }
    }

    /// Post-condition of every request handled, on the shared buffer: it
    /// counts at least the bytes this worker's memtables hold (their
    /// trackers reserved them and free them only when dropped), and its
    /// mutable count at least this worker's mutable memtables. What other
    /// workers' memtables (and flush jobs still holding frozen ones) count
    /// is never negative, so the check holds under any runtime and any
    /// interleaving. Only a bug that frees bytes it does not own breaks it.
    fn assert_buffer_post_conditions(&self) {
        if !cfg!(any(debug_assertions, feature = "strict"))
            || self.config.bugs.breaks_buffer_post_condition()
        {
            return;
        }
        let versions = || self.regions.values().map(|region| &region.version);
        let held: usize = versions().map(|version| version.memtable_bytes()).sum();
        let mutable: usize = versions().map(|version| version.mutable_bytes()).sum();
        let buffer = &self.env.buffer;
        strict_assert!(
            buffer.used_bytes() >= held,
            "the buffer counts {} bytes used, but this worker's memtables hold {held}",
            buffer.used_bytes()
        );
        strict_assert!(
            buffer.active_bytes() >= mutable,
            "the buffer counts {} mutable bytes, but this worker's mutable memtables hold {mutable}",
            buffer.active_bytes()
        );
    }

    async fn dispatch(&mut self, request: ClientRequest) {
        match &request.request {
            Request::Write { .. } => self.handle_write(request).await,
            Request::Flush { .. } => self.handle_flush_request(request),
            Request::Alter { .. } => self.handle_alter(request).await,
            Request::Downgrade { .. } => self.handle_downgrade(request).await,
            Request::Truncate { .. } => self.handle_truncate(request).await,
            Request::Drop { .. } => self.handle_drop(request).await,
            Request::Close { .. } => self.handle_close(request),
            Request::SetRole { .. } => self.handle_set_role(request).await,
            Request::Open { .. } => self.handle_open(request).await,
            Request::Create { .. } => self.handle_create(request).await,
        }
    }

    /// Answers everything the worker still holds with `RegionClosed` and
    /// releases every region: the worker is stopping.
    pub fn shutdown(&mut self) {
        self.scheduler.fail_all_closed();
        let mut waiting: Vec<ClientRequest> = self.stalled.drain(..).map(|s| s.request).collect();
        self.env.buffer.writes_released(waiting.len());
        if self.config.bugs.has(PlantedBug::StopDropsStalledWrites) {
            waiting.clear();
        }
        for request in waiting.into_iter().chain(self.requeued.drain(..)) {
            let region_id = request.request.region_id();
            request
                .responder
                .send(Err(RequestError::RegionClosed { region_id }));
        }
        self.regions.clear();
    }

    pub fn regions(&self) -> &BTreeMap<RegionId, Region> {
        &self.regions
    }

    pub fn scheduler(&self) -> &FlushScheduler {
        &self.scheduler
    }

    pub fn stalled_writes(&self) -> usize {
        self.stalled.len()
    }

    /// Rows still in memtables of `region_id`, oldest first.
    pub fn memtable_rows(&self, region_id: RegionId) -> Vec<Row> {
        self.regions
            .get(&region_id)
            .map(|r| r.version.memtable_rows().cloned().collect())
            .unwrap_or_default()
    }

    pub fn inspect(&self) -> WorkerView {
        let regions = self
            .regions
            .iter()
            .map(|(id, region)| (*id, self.region_view(region)))
            .collect();
        let orphan_statuses = self
            .scheduler
            .statuses()
            .filter(|(id, _)| !self.regions.contains_key(id))
            .collect();
        WorkerView {
            worker_id: self.config.worker_id,
            regions,
            orphan_statuses,
            stalled_writes: self.stalled.len(),
        }
    }

    fn region_view(&self, region: &Region) -> RegionView {
        let version = &region.version;
        RegionView {
            epoch: region.epoch,
            leader_state: region.leader_state,
            schema_version: region.version.schema().version,
            mutable_bytes: version.mutable_bytes(),
            immutable_bytes: version.immutable_bytes(),
            memtable_rows: version.memtable_rows().count(),
            files: version.files().len(),
            file_ids: version.files().keys().copied().collect(),
            last_entry_id: version.last_entry_id,
            committed_sequence: version.committed_sequence,
            flushed_entry_id: version.flushed_entry_id,
            flushed_sequence: version.flushed_sequence,
            flush: self.scheduler.status(region.region_id),
        }
    }

    /// Answers `request` with an error.
    fn reply_err(request: ClientRequest, error: RequestError) {
        request.responder.send(Err(error));
    }

    /// Answers with `error` every stalled write of `region_id`.
    fn fail_stalled_of(&mut self, region_id: RegionId, error: &RequestError) {
        let (failed, kept): (Vec<_>, Vec<_>) = self
            .stalled
            .drain(..)
            .partition(|s| s.request.request.region_id() == region_id);
        self.stalled = kept.into();
        self.env.buffer.writes_released(failed.len());
        for stalled in failed {
            Self::reply_err(stalled.request, error.clone());
        }
    }
}

/// A write waiting for memory, and since when (the worker's clock).
struct Stalled {
    request: ClientRequest,
    since_ms: u64,
}

/// A worker dropped without [`RegionWorker::shutdown`] (say, a dropped
/// `LocalEngine`) must not take its stalled writes' replies with it, nor
/// leave them counted as stalled in the shared buffer manager.
impl Drop for RegionWorker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests;
