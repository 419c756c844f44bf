//! Reference models of the flush core, written to be read, not to be fast.
//!
//! - [`BufferModel`]: the write-buffer manager as two counters and the
//!   seed's two rules (`should_flush_engine`, `should_stall`).
//! - [`SchedulerModel`]: one region worker as a client of
//!   [`flush_core::local::LocalEngine`] sees it: regions, manifests, WAL,
//!   memtables, flush statuses, queued jobs, stalled writes and the reply
//!   every request must get. It predicts the outcome of each request and the
//!   state after each step; [`crate::ops::run_ops`] compares it with the core.
//!
//! The scheduler model keeps no byte counters. Memory in use is *derived*:
//! a memtable is alive while a region or a queued job refers to it, `used`
//! is the sum over live memtables and `active` the sum over mutable ones.
//! Counting mistakes in the core therefore show up as a difference with a
//! number nobody maintained by hand.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use flush_core::error::ErrorKind;
use flush_core::manifest::LeaderState;

// ---------------------------------------------------------------------------
// The write-buffer manager.
// ---------------------------------------------------------------------------

/// The write-buffer manager: `used` is every memtable byte, `active` the
/// part still in mutable memtables. An impossible release (more than is
/// held) saturates at zero and is counted, as the core does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferModel {
    pub size_bytes: usize,
    pub used_bytes: usize,
    pub active_bytes: usize,
    pub violations: u64,
}

impl BufferModel {
    pub fn new(size_bytes: usize) -> Self {
        Self::with_usage(size_bytes, 0, 0)
    }

    pub fn with_usage(size_bytes: usize, used_bytes: usize, active_bytes: usize) -> Self {
        BufferModel {
            size_bytes,
            used_bytes,
            active_bytes,
            violations: 0,
        }
    }

    /// Half of the buffer may be mutable.
    pub fn mutable_limit_bytes(&self) -> usize {
        self.size_bytes / 2
    }

    /// Flush when mutable memory is over its limit, or when the buffer is
    /// full and at least half of it is still mutable (flushing helps only
    /// then: the rest is already being flushed).
    pub fn should_flush_engine(&self) -> bool {
        let over_mutable_limit = self.active_bytes > self.mutable_limit_bytes();
        let full = self.used_bytes >= self.size_bytes;
        let mostly_mutable = self.active_bytes >= self.size_bytes / 2;
        over_mutable_limit || (full && mostly_mutable)
    }

    /// Writes wait while the buffer is full.
    pub fn should_stall(&self) -> bool {
        self.used_bytes >= self.size_bytes
    }

    pub fn reserve(&mut self, bytes: usize) {
        self.used_bytes += bytes;
        self.active_bytes += bytes;
    }

    pub fn schedule_free(&mut self, bytes: usize) {
        match self.active_bytes.checked_sub(bytes) {
            Some(left) => self.active_bytes = left,
            None => {
                self.active_bytes = 0;
                self.violations += 1;
            }
        }
    }

    pub fn free(&mut self, bytes: usize) {
        match self.used_bytes.checked_sub(bytes) {
            Some(left) => {
                self.used_bytes = left;
                // Mutable memory is part of used memory.
                if self.active_bytes > self.used_bytes {
                    self.violations += 1;
                }
            }
            None => {
                self.used_bytes = 0;
                self.violations += 1;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The region worker.
// ---------------------------------------------------------------------------

/// A region by its index, `0..REGIONS`; the core's id is `index + 1`.
pub type Slot = u8;

/// The number of a request, in the order the driver issued them.
pub type RequestNo = usize;

/// How a request ended: the reply's coarse kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Err(ErrorKind),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Ok => f.write_str("ok"),
            Outcome::Err(kind) => write!(f, "error {}", kind.as_str()),
        }
    }
}

/// A client request as the model sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelRequest {
    Write {
        region: Slot,
        bytes: usize,
    },
    Flush {
        region: Slot,
    },
    Alter {
        region: Slot,
    },
    Truncate {
        region: Slot,
    },
    Drop {
        region: Slot,
    },
    Close {
        region: Slot,
    },
    Open {
        region: Slot,
    },
    Create {
        region: Slot,
    },
    Downgrade {
        region: Slot,
    },
    /// `leader`: set_role(Leader), else set_role(Follower).
    SetRole {
        region: Slot,
        leader: bool,
    },
}

impl ModelRequest {
    pub fn region(self) -> Slot {
        match self {
            ModelRequest::Write { region, .. }
            | ModelRequest::Flush { region }
            | ModelRequest::Alter { region }
            | ModelRequest::Truncate { region }
            | ModelRequest::Drop { region }
            | ModelRequest::Close { region }
            | ModelRequest::Open { region }
            | ModelRequest::Create { region }
            | ModelRequest::Downgrade { region }
            | ModelRequest::SetRole { region, .. } => region,
        }
    }
}

/// What the model can say about one flush status, compared with the core's
/// [`flush_core::flush::FlushStatusView`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusSummary {
    pub running_epoch: Option<u64>,
    pub pending_task: bool,
    pub pending_ddls: usize,
    pub pending_writes: usize,
}

/// One open region, compared with the core's
/// [`flush_core::worker::RegionView`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionSummary {
    pub epoch: u64,
    pub leader_state: LeaderState,
    pub mutable_bytes: usize,
    pub immutable_bytes: usize,
    pub flush: Option<StatusSummary>,
}

/// The whole worker, compared after every step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerSummary {
    pub regions: BTreeMap<Slot, RegionSummary>,
    /// Statuses of regions that are not open (a closed region's job).
    pub orphan_statuses: BTreeMap<Slot, StatusSummary>,
    pub stalled_writes: usize,
    pub queued_jobs: usize,
}

type MemtableNo = u64;

#[derive(Clone, Copy, Debug)]
struct MemtableModel {
    bytes: usize,
}

#[derive(Clone, Debug)]
struct RegionModel {
    epoch: u64,
    leader: LeaderState,
    mutable: MemtableNo,
    immutables: Vec<MemtableNo>,
    last_entry_id: u64,
    /// When the region was opened or last applied a flush.
    last_flush_ms: u64,
}

#[derive(Clone, Debug)]
struct ManifestModel {
    epoch: u64,
    leader: LeaderState,
    flushed_entry_id: u64,
    truncated_entry_id: u64,
    dropped: bool,
}

impl ManifestModel {
    fn new(epoch: u64) -> Self {
        ManifestModel {
            epoch,
            leader: LeaderState::Writable,
            flushed_entry_id: 0,
            truncated_entry_id: 0,
            dropped: false,
        }
    }

    /// WAL entries after this one are replayed on open.
    fn replay_from_entry_id(&self) -> u64 {
        self.flushed_entry_id.max(self.truncated_entry_id)
    }
}

#[derive(Clone, Copy, Debug)]
struct WalEntryModel {
    entry_id: u64,
    bytes: usize,
}

#[derive(Clone, Copy, Debug)]
struct Waiting {
    no: RequestNo,
    request: ModelRequest,
}

/// The scheduler's record of one region that asked for a flush.
#[derive(Clone, Debug, Default)]
struct StatusModel {
    running_epoch: Option<u64>,
    running: Vec<RequestNo>,
    /// `Some` when another flush was asked for; its waiters (maybe none).
    pending_task: Option<Vec<RequestNo>>,
    pending_ddls: Vec<Waiting>,
    pending_writes: Vec<Waiting>,
}

impl StatusModel {
    fn waiters(self) -> impl Iterator<Item = RequestNo> {
        self.running
            .into_iter()
            .chain(self.pending_task.unwrap_or_default())
            .chain(self.pending_ddls.into_iter().map(|w| w.no))
            .chain(self.pending_writes.into_iter().map(|w| w.no))
    }

    fn summary(&self) -> StatusSummary {
        StatusSummary {
            running_epoch: self.running_epoch,
            pending_task: self.pending_task.is_some(),
            pending_ddls: self.pending_ddls.len(),
            pending_writes: self.pending_writes.len(),
        }
    }
}

/// A flush job waiting in the job queue: what it captured at its start.
#[derive(Clone, Debug)]
struct JobModel {
    region: Slot,
    epoch: u64,
    expected_leader: LeaderState,
    memtables: Vec<MemtableNo>,
    last_entry_id: u64,
}

/// What reaches the worker's queue besides client requests.
#[derive(Clone, Debug)]
enum Notice {
    MemoryFreed,
    Tick,
    FlushDone {
        region: Slot,
        epoch: u64,
        committed: bool,
        memtables: Vec<MemtableNo>,
    },
}

enum Input {
    Client(Waiting),
    Notice(Notice),
}

/// Faults armed by the driver; each fires once, on the next chance.
#[derive(Clone, Copy, Debug, Default)]
struct ArmedFaults {
    reject_jobs: usize,
    fail_manifest_changes: usize,
    fail_freezes: usize,
}

fn take_one(counter: &mut usize) -> bool {
    if *counter == 0 {
        return false;
    }
    *counter -= 1;
    true
}

/// One region worker with its engine's ports, as a reference model.
#[derive(Clone, Debug)]
pub struct SchedulerModel {
    buffer_size_bytes: usize,
    max_stalled_writes: usize,
    memtables: BTreeMap<MemtableNo, MemtableModel>,
    next_memtable: MemtableNo,
    regions: BTreeMap<Slot, RegionModel>,
    manifests: BTreeMap<Slot, ManifestModel>,
    wal: BTreeMap<Slot, Vec<WalEntryModel>>,
    statuses: BTreeMap<Slot, StatusModel>,
    jobs: VecDeque<JobModel>,
    /// Stalled writes with the time each stalled.
    stalled: VecDeque<(Waiting, u64)>,
    requeued: VecDeque<Waiting>,
    inbox: VecDeque<Notice>,
    faults: ArmedFaults,
    replies: BTreeMap<RequestNo, Outcome>,
    /// The engine's clock; only [`SchedulerModel::advance_clock`] moves it.
    now_ms: u64,
    auto_flush_interval_ms: Option<u64>,
    stall_timeout_ms: Option<u64>,
}

impl SchedulerModel {
    pub fn new(buffer_size_bytes: usize, max_stalled_writes: usize) -> Self {
        SchedulerModel {
            buffer_size_bytes,
            max_stalled_writes,
            memtables: BTreeMap::new(),
            next_memtable: 0,
            regions: BTreeMap::new(),
            manifests: BTreeMap::new(),
            wal: BTreeMap::new(),
            statuses: BTreeMap::new(),
            jobs: VecDeque::new(),
            stalled: VecDeque::new(),
            requeued: VecDeque::new(),
            inbox: VecDeque::new(),
            faults: ArmedFaults::default(),
            replies: BTreeMap::new(),
            now_ms: 0,
            auto_flush_interval_ms: None,
            stall_timeout_ms: None,
        }
    }

    /// Periodic flushes every `interval_ms` of the model's clock.
    pub fn with_auto_flush(mut self, interval_ms: u64) -> Self {
        self.auto_flush_interval_ms = Some(interval_ms);
        self
    }

    /// Stalled writes time out after `timeout_ms` of the model's clock.
    pub fn with_stall_timeout(mut self, timeout_ms: u64) -> Self {
        self.stall_timeout_ms = Some(timeout_ms);
        self
    }

    /// Time passes (nothing else happens until the next input).
    pub fn advance_clock(&mut self, ms: u64) {
        self.now_ms += ms;
    }

    // --- what the driver does -------------------------------------------

    /// A client request arrives; everything it causes runs, except jobs.
    pub fn submit(&mut self, no: RequestNo, request: ModelRequest) {
        self.handle(Input::Client(Waiting { no, request }));
        self.drain_inbox();
    }

    /// Runs the oldest queued flush job. False when none was queued.
    pub fn run_one_job(&mut self) -> bool {
        let Some(job) = self.jobs.pop_front() else {
            return false;
        };
        let committed = self.commit_flush(&job);
        // The job lets go of its memtables before it reports.
        self.release_unreferenced_memtables();
        self.inbox.push_back(Notice::FlushDone {
            region: job.region,
            epoch: job.epoch,
            committed,
            memtables: job.memtables,
        });
        self.drain_inbox();
        true
    }

    /// The oldest queued job is dropped unrun: it commits nothing and
    /// reports a failure, like a job whose flush failed before its commit.
    pub fn lose_one_job(&mut self) -> bool {
        let Some(job) = self.jobs.pop_front() else {
            return false;
        };
        self.release_unreferenced_memtables();
        self.inbox.push_back(Notice::FlushDone {
            region: job.region,
            epoch: job.epoch,
            committed: false,
            memtables: job.memtables,
        });
        self.drain_inbox();
        true
    }

    /// A graceful stop: every region closes, every waiter (on a flush, a
    /// DDL, memory) is answered `RegionClosed`. Queued jobs stay queued;
    /// their results find no region.
    pub fn stop(&mut self) {
        let open: Vec<Slot> = self.regions.keys().copied().collect();
        for region in open {
            self.remove_region(region, ErrorKind::RegionClosed);
        }
        for (_, status) in std::mem::take(&mut self.statuses) {
            self.fail_all(status, ErrorKind::RegionClosed);
        }
        let stalled: Vec<RequestNo> = self.stalled.drain(..).map(|(w, _)| w.no).collect();
        self.answer_all(stalled, Outcome::Err(ErrorKind::RegionClosed));
        self.release_unreferenced_memtables();
        self.drain_inbox();
    }

    pub fn tick(&mut self) {
        self.handle(Input::Notice(Notice::Tick));
        self.drain_inbox();
    }

    pub fn reject_next_job(&mut self) {
        self.faults.reject_jobs += 1;
    }

    pub fn fail_next_manifest_change(&mut self) {
        self.faults.fail_manifest_changes += 1;
    }

    pub fn fail_next_freeze(&mut self) {
        self.faults.fail_freezes += 1;
    }

    // --- what the driver compares ----------------------------------------

    /// The reply request `no` has got, or `None` while it waits.
    pub fn outcome(&self, no: RequestNo) -> Option<Outcome> {
        self.replies.get(&no).copied()
    }

    pub fn buffer(&self) -> BufferModel {
        BufferModel::with_usage(
            self.buffer_size_bytes,
            self.used_bytes(),
            self.active_bytes(),
        )
    }

    /// Bytes of every memtable a region or a queued job refers to.
    pub fn used_bytes(&self) -> usize {
        self.referenced_memtables()
            .iter()
            .map(|no| self.memtables[no].bytes)
            .sum()
    }

    /// Bytes of mutable memtables (jobs only ever hold frozen ones).
    pub fn active_bytes(&self) -> usize {
        self.regions.values().map(|r| self.bytes(r.mutable)).sum()
    }

    /// Bytes only queued jobs hold: their region was closed, dropped or
    /// truncated after the flush started.
    pub fn job_only_bytes(&self) -> usize {
        let in_regions: BTreeSet<MemtableNo> = self
            .regions
            .values()
            .flat_map(|r| r.immutables.iter().copied().chain([r.mutable]))
            .collect();
        let in_jobs: BTreeSet<MemtableNo> = self
            .jobs
            .iter()
            .flat_map(|j| j.memtables.iter().copied())
            .collect();
        in_jobs
            .difference(&in_regions)
            .map(|no| self.bytes(*no))
            .sum()
    }

    pub fn queued_jobs(&self) -> usize {
        self.jobs.len()
    }

    pub fn summary(&self) -> WorkerSummary {
        let regions = self
            .regions
            .iter()
            .map(|(slot, region)| {
                let summary = RegionSummary {
                    epoch: region.epoch,
                    leader_state: region.leader,
                    mutable_bytes: self.bytes(region.mutable),
                    immutable_bytes: region.immutables.iter().map(|m| self.bytes(*m)).sum(),
                    flush: self.statuses.get(slot).map(StatusModel::summary),
                };
                (*slot, summary)
            })
            .collect();
        let orphan_statuses = self
            .statuses
            .iter()
            .filter(|(slot, _)| !self.regions.contains_key(slot))
            .map(|(slot, status)| (*slot, status.summary()))
            .collect();
        WorkerSummary {
            regions,
            orphan_statuses,
            stalled_writes: self.stalled.len(),
            queued_jobs: self.jobs.len(),
        }
    }

    // --- the worker's loop -------------------------------------------------

    fn drain_inbox(&mut self) {
        while let Some(notice) = self.inbox.pop_front() {
            self.handle(Input::Notice(notice));
        }
    }

    /// One turn of the worker: the input, whatever it released, then the
    /// engine-wide flush rules; released memory is announced afterwards.
    fn handle(&mut self, input: Input) {
        match input {
            Input::Client(request) => self.dispatch(request),
            Input::Notice(Notice::FlushDone {
                region,
                epoch,
                committed,
                memtables,
            }) => {
                if committed {
                    self.on_flush_committed(region, epoch, &memtables);
                } else {
                    self.on_flush_failed(region, epoch);
                }
                self.retry_stalled();
            }
            Input::Notice(Notice::MemoryFreed) => self.retry_stalled(),
            Input::Notice(Notice::Tick) => {
                self.retry_stalled();
                self.expire_stalled();
                self.flush_periodically();
            }
        }
        while let Some(next) = self.requeued.pop_front() {
            self.dispatch(next);
        }
        self.maybe_flush_engine();
        self.maybe_relieve_stall();
        self.release_unreferenced_memtables();
    }

    fn dispatch(&mut self, request: Waiting) {
        let region = request.request.region();
        match request.request {
            ModelRequest::Write { bytes, .. } => self.handle_write(request, region, bytes),
            ModelRequest::Flush { .. } => self.handle_flush(request.no, region),
            ModelRequest::Alter { .. } => self.handle_alter(request, region),
            ModelRequest::Truncate { .. } => self.handle_truncate(request.no, region),
            ModelRequest::Drop { .. } => self.handle_drop(request.no, region),
            ModelRequest::Close { .. } => self.handle_close(request.no, region),
            ModelRequest::Open { .. } => self.handle_open(request.no, region),
            ModelRequest::Create { .. } => self.handle_create(request.no, region),
            ModelRequest::Downgrade { .. } => self.handle_downgrade(request.no, region),
            ModelRequest::SetRole { leader, .. } => {
                self.handle_set_role(request.no, region, leader)
            }
        }
    }

    // --- requests ----------------------------------------------------------

    fn handle_write(&mut self, request: Waiting, region: Slot, bytes: usize) {
        let Some(leader) = self.regions.get(&region).map(|r| r.leader) else {
            return self.answer_err(request.no, ErrorKind::RegionNotFound);
        };
        if leader != LeaderState::Writable {
            return self.answer_err(request.no, ErrorKind::RegionReadOnly);
        }
        if bytes == 0 {
            return self.answer_err(request.no, ErrorKind::InvalidRequest);
        }
        if self.has_pending_ddls(region) {
            let status = self.statuses.get_mut(&region).expect("has pending ddls");
            return status.pending_writes.push(request);
        }
        if self.buffer().should_stall() {
            if self.stalled.len() >= self.max_stalled_writes {
                return self.answer_err(request.no, ErrorKind::WriteStallFull);
            }
            return self.stalled.push_back((request, self.now_ms));
        }
        let open = self.regions.get_mut(&region).expect("checked above");
        let entry_id = open.last_entry_id + 1;
        open.last_entry_id = entry_id;
        let mutable = open.mutable;
        self.wal
            .entry(region)
            .or_default()
            .push(WalEntryModel { entry_id, bytes });
        self.memtables
            .get_mut(&mutable)
            .expect("a region's mutable memtable is alive")
            .bytes += bytes;
        self.answer(request.no, Outcome::Ok);
    }

    fn handle_flush(&mut self, no: RequestNo, region: Slot) {
        let Some(leader) = self.regions.get(&region).map(|r| r.leader) else {
            return self.answer_err(no, ErrorKind::RegionNotFound);
        };
        if leader == LeaderState::Follower {
            return self.answer_err(no, ErrorKind::RegionReadOnly);
        }
        let _ = self.schedule_flush(region, vec![no]);
    }

    /// An alter of a region holding data waits for a flush; alters of one
    /// region run in arrival order.
    fn handle_alter(&mut self, request: Waiting, region: Slot) {
        let Some(leader) = self.regions.get(&region).map(|r| r.leader) else {
            return self.answer_err(request.no, ErrorKind::RegionNotFound);
        };
        if leader != LeaderState::Writable {
            return self.answer_err(request.no, ErrorKind::RegionReadOnly);
        }
        if self.has_pending_ddls(region) {
            let status = self.statuses.get_mut(&region).expect("has pending ddls");
            return status.pending_ddls.push(request);
        }
        if !self.memtables_empty(region) {
            if let Err(kind) = self.schedule_flush(region, Vec::new()) {
                return self.answer_err(request.no, kind);
            }
            if let Some(status) = self.statuses.get_mut(&region) {
                return status.pending_ddls.push(request);
            }
        }
        let outcome = if self.manifest_change_fails() {
            Outcome::Err(ErrorKind::Manifest)
        } else {
            Outcome::Ok
        };
        self.answer(request.no, outcome);
    }

    /// Writable → Downgrading (in the manifest), flush, then Follower.
    fn handle_downgrade(&mut self, no: RequestNo, region: Slot) {
        let Some(leader) = self.regions.get(&region).map(|r| r.leader) else {
            return self.answer_err(no, ErrorKind::RegionNotFound);
        };
        match leader {
            LeaderState::Follower => return self.answer(no, Outcome::Ok),
            LeaderState::Downgrading => {}
            LeaderState::Writable => {
                if self.manifest_change_fails() {
                    return self.answer_err(no, ErrorKind::Manifest);
                }
                self.manifest_mut(region).leader = LeaderState::Downgrading;
            }
        }
        let nothing_to_flush = self.memtables_empty(region) && !self.statuses.contains_key(&region);
        let open = self.regions.get_mut(&region).expect("checked above");
        if nothing_to_flush {
            open.leader = LeaderState::Follower;
            return self.answer(no, Outcome::Ok);
        }
        open.leader = LeaderState::Downgrading;
        let _ = self.schedule_flush(region, vec![no]);
    }

    fn handle_truncate(&mut self, no: RequestNo, region: Slot) {
        let Some(open) = self.regions.get(&region) else {
            return self.answer_err(no, ErrorKind::RegionNotFound);
        };
        if open.leader != LeaderState::Writable {
            return self.answer_err(no, ErrorKind::RegionReadOnly);
        }
        let truncated_entry_id = open.last_entry_id;
        if self.manifest_change_fails() {
            return self.answer_err(no, ErrorKind::Manifest);
        }
        let manifest = self.manifest_mut(region);
        manifest.truncated_entry_id = manifest.truncated_entry_id.max(truncated_entry_id);
        manifest.flushed_entry_id = manifest.flushed_entry_id.max(truncated_entry_id);
        manifest.epoch += 1;
        let epoch = manifest.epoch;
        // Waiters are answered; a running job stays on record until it ends.
        if let Some(mut status) = self.statuses.remove(&region) {
            if let Some(running_epoch) = status.running_epoch {
                let kept = StatusModel {
                    running_epoch: Some(running_epoch),
                    ..StatusModel::default()
                };
                self.statuses.insert(region, kept);
            }
            status.running_epoch = None;
            self.fail_all(status, ErrorKind::RegionTruncated);
        }
        self.fail_stalled_of(region, ErrorKind::RegionTruncated);
        let fresh = self.new_memtable();
        let open = self.regions.get_mut(&region).expect("checked above");
        open.epoch = epoch;
        open.immutables.clear();
        open.mutable = fresh;
        self.answer(no, Outcome::Ok);
    }

    fn handle_drop(&mut self, no: RequestNo, region: Slot) {
        let Some(leader) = self.regions.get(&region).map(|r| r.leader) else {
            return self.answer_err(no, ErrorKind::RegionNotFound);
        };
        if leader != LeaderState::Writable {
            return self.answer_err(no, ErrorKind::RegionReadOnly);
        }
        if self.manifest_change_fails() {
            return self.answer_err(no, ErrorKind::Manifest);
        }
        self.manifest_mut(region).dropped = true;
        self.remove_region(region, ErrorKind::RegionDropped);
        self.wal.remove(&region);
        self.answer(no, Outcome::Ok);
    }

    /// Closing a region that is not open succeeds, as in mito2.
    fn handle_close(&mut self, no: RequestNo, region: Slot) {
        if !self.regions.contains_key(&region) {
            return self.answer(no, Outcome::Ok);
        }
        self.remove_region(region, ErrorKind::RegionClosed);
        self.answer(no, Outcome::Ok);
    }

    /// Reopens from the manifest (new epoch, a follower) and replays the
    /// WAL after the flushed (or truncated) entry id into the mutable
    /// memtable.
    fn handle_open(&mut self, no: RequestNo, region: Slot) {
        if self.regions.contains_key(&region) {
            return self.answer(no, Outcome::Ok);
        }
        let outcome = self.open_region(region);
        self.answer(no, outcome);
    }

    fn open_region(&mut self, region: Slot) -> Outcome {
        if self.manifests.get(&region).is_none_or(|m| m.dropped) {
            return Outcome::Err(ErrorKind::RegionNotFound);
        }
        if self.manifest_change_fails() {
            return Outcome::Err(ErrorKind::Manifest);
        }
        let manifest = self.manifest_mut(region);
        manifest.epoch += 1;
        manifest.leader = LeaderState::Follower;
        let (epoch, replay_from) = (manifest.epoch, manifest.replay_from_entry_id());
        let replayed: Vec<WalEntryModel> = self
            .wal
            .get(&region)
            .into_iter()
            .flatten()
            .filter(|e| e.entry_id > replay_from)
            .copied()
            .collect();
        let mutable = self.new_memtable();
        self.memtables.get_mut(&mutable).expect("just made").bytes =
            replayed.iter().map(|e| e.bytes).sum();
        let last_entry_id = replayed.last().map_or(replay_from, |e| e.entry_id);
        self.regions.insert(
            region,
            RegionModel {
                epoch,
                leader: LeaderState::Follower,
                mutable,
                immutables: Vec::new(),
                last_entry_id,
                last_flush_ms: self.now_ms,
            },
        );
        Outcome::Ok
    }

    /// set_role: at once, no flush; a region that has the role already is
    /// left alone.
    fn handle_set_role(&mut self, no: RequestNo, region: Slot, leader: bool) {
        let Some(current) = self.regions.get(&region).map(|r| r.leader) else {
            return self.answer_err(no, ErrorKind::RegionNotFound);
        };
        let next = if leader {
            LeaderState::Writable
        } else {
            LeaderState::Follower
        };
        if current == next {
            return self.answer(no, Outcome::Ok);
        }
        if self.manifest_change_fails() {
            return self.answer_err(no, ErrorKind::Manifest);
        }
        self.manifest_mut(region).leader = next;
        self.regions.get_mut(&region).expect("checked above").leader = next;
        if next != LeaderState::Writable {
            self.fail_stalled_of(region, ErrorKind::RegionReadOnly);
        }
        self.answer(no, Outcome::Ok);
    }

    /// Creates a region, or a new incarnation of a dropped one (a later
    /// epoch, an empty WAL).
    /// Creating a region that is open succeeds; one on disk is opened and
    /// made leader (mito2's create_or_open).
    fn handle_create(&mut self, no: RequestNo, region: Slot) {
        if self.regions.contains_key(&region) {
            return self.answer(no, Outcome::Ok);
        }
        let epoch = match self.manifests.get(&region) {
            Some(old) if !old.dropped => {
                let opened = self.open_region(region);
                if opened != Outcome::Ok {
                    return self.answer(no, opened);
                }
                if self.manifest_change_fails() {
                    // Opened but not led: the core drops what it opened.
                    self.regions.remove(&region);
                    return self.answer_err(no, ErrorKind::Manifest);
                }
                self.manifest_mut(region).leader = LeaderState::Writable;
                self.regions.get_mut(&region).expect("just opened").leader = LeaderState::Writable;
                return self.answer(no, Outcome::Ok);
            }
            Some(old) => old.epoch + 1,
            None => 0,
        };
        self.wal.remove(&region);
        if self.manifest_change_fails() {
            return self.answer_err(no, ErrorKind::Manifest);
        }
        self.manifests.insert(region, ManifestModel::new(epoch));
        let mutable = self.new_memtable();
        self.regions.insert(
            region,
            RegionModel {
                epoch,
                leader: LeaderState::Writable,
                mutable,
                immutables: Vec::new(),
                last_entry_id: 0,
                last_flush_ms: self.now_ms,
            },
        );
        self.answer(no, Outcome::Ok);
    }

    /// Close and drop: the region goes, and so does everyone waiting on it.
    fn remove_region(&mut self, region: Slot, kind: ErrorKind) {
        self.regions.remove(&region);
        if let Some(status) = self.statuses.remove(&region) {
            self.fail_all(status, kind);
        }
        self.fail_stalled_of(region, kind);
    }

    // --- the flush scheduler -----------------------------------------------

    /// Asks for a flush of an open region. `waiters` are answered on every
    /// path: now (nothing to flush, or the flush cannot start) or when the
    /// flush they joined ends.
    fn schedule_flush(&mut self, region: Slot, waiters: Vec<RequestNo>) -> Result<(), ErrorKind> {
        if self.memtables_empty(region) {
            self.answer_all(waiters, Outcome::Ok);
            return Ok(());
        }
        let status = self.statuses.entry(region).or_default();
        if status.running_epoch.is_some() || status.pending_task.is_some() {
            status
                .pending_task
                .get_or_insert_with(Vec::new)
                .extend(waiters);
            return Ok(());
        }
        self.start_flush(region, waiters)
    }

    /// Freezes the mutable memtable and queues a job that flushes every
    /// immutable memtable of the region.
    fn start_flush(&mut self, region: Slot, waiters: Vec<RequestNo>) -> Result<(), ErrorKind> {
        if take_one(&mut self.faults.fail_freezes) {
            self.abandon_start(region, waiters, ErrorKind::FreezeFailed);
            return Err(ErrorKind::FreezeFailed);
        }
        let fresh = self.new_memtable();
        let open = self
            .regions
            .get_mut(&region)
            .expect("flushes start for open regions");
        if self.memtables[&open.mutable].bytes > 0 {
            let frozen = std::mem::replace(&mut open.mutable, fresh);
            open.immutables.push(frozen);
        }
        let job = JobModel {
            region,
            epoch: open.epoch,
            expected_leader: open.leader,
            memtables: open.immutables.clone(),
            last_entry_id: open.last_entry_id,
        };
        if take_one(&mut self.faults.reject_jobs) {
            self.abandon_start(region, waiters, ErrorKind::JobRejected);
            return Err(ErrorKind::JobRejected);
        }
        let status = self.statuses.entry(region).or_default();
        status.running_epoch = Some(job.epoch);
        status.running = waiters;
        self.jobs.push_back(job);
        Ok(())
    }

    /// A flush could not start: its waiters and the region's status go.
    fn abandon_start(&mut self, region: Slot, waiters: Vec<RequestNo>, kind: ErrorKind) {
        self.answer_all(waiters, Outcome::Err(kind));
        if let Some(status) = self.statuses.remove(&region) {
            self.fail_all(status, kind);
        }
    }

    /// The job's manifest edit: it commits only into the incarnation and
    /// leader state it started in.
    fn commit_flush(&mut self, job: &JobModel) -> bool {
        if self.manifest_change_fails() {
            return false;
        }
        let Some(manifest) = self.manifests.get_mut(&job.region) else {
            return false;
        };
        let fenced = manifest.dropped
            || manifest.leader != job.expected_leader
            || manifest.epoch != job.epoch
            || job.last_entry_id < manifest.flushed_entry_id;
        if fenced {
            return false;
        }
        manifest.flushed_entry_id = job.last_entry_id;
        true
    }

    fn on_flush_committed(&mut self, region: Slot, epoch: u64, flushed: &[MemtableNo]) {
        let same_incarnation = self.regions.get(&region).is_some_and(|r| r.epoch == epoch);
        if same_incarnation {
            let open = self.regions.get_mut(&region).expect("checked above");
            open.immutables.retain(|m| !flushed.contains(m));
            open.last_flush_ms = self.now_ms;
            if open.leader == LeaderState::Downgrading && self.memtables_empty(region) {
                self.regions.get_mut(&region).expect("open").leader = LeaderState::Follower;
            }
        }
        if self
            .statuses
            .get(&region)
            .is_none_or(|s| s.running_epoch != Some(epoch))
        {
            return;
        }
        let status = self.statuses.get_mut(&region).expect("checked above");
        status.running_epoch = None;
        let done = std::mem::take(&mut status.running);
        self.answer_all(done, Outcome::Ok);
        let nothing_left = !self.regions.contains_key(&region) || self.memtables_empty(region);
        let status = &self.statuses[&region];
        let released = if status.pending_task.is_none() {
            self.statuses.remove(&region)
        } else if nothing_left {
            let mut status = self.statuses.remove(&region).expect("checked above");
            let waiters = status.pending_task.take().unwrap_or_default();
            self.answer_all(waiters, Outcome::Ok);
            Some(status)
        } else {
            None
        };
        self.schedule_next_flush();
        if let Some(status) = released {
            // DDLs first, then writes, ahead of anything already requeued.
            let runnable: Vec<Waiting> = status
                .pending_ddls
                .into_iter()
                .chain(status.pending_writes)
                .collect();
            for request in runnable.into_iter().rev() {
                self.requeued.push_front(request);
            }
        }
    }

    fn on_flush_failed(&mut self, region: Slot, epoch: u64) {
        if self
            .statuses
            .get(&region)
            .is_none_or(|s| s.running_epoch != Some(epoch))
        {
            return;
        }
        // The job of a truncated incarnation failed (its epoch is fenced):
        // its waiters were answered at the truncate; flushes asked for since
        // then have not run yet, so they start now instead of failing.
        let truncated_since = self.regions.get(&region).is_some_and(|r| r.epoch != epoch);
        if truncated_since {
            let status = self.statuses.get_mut(&region).expect("checked above");
            status.running_epoch = None;
            if status.pending_task.is_none() {
                self.statuses.remove(&region);
            }
            return self.schedule_next_flush();
        }
        let status = self.statuses.remove(&region).expect("checked above");
        self.fail_all(status, ErrorKind::FlushFailed);
        self.schedule_next_flush();
    }

    /// Starts the flushes that waited for a previous job of their region.
    fn schedule_next_flush(&mut self) {
        let ready: Vec<Slot> = self
            .statuses
            .iter()
            .filter(|(_, s)| s.running_epoch.is_none() && s.pending_task.is_some())
            .map(|(slot, _)| *slot)
            .collect();
        for region in ready {
            let Some(waiters) = self
                .statuses
                .get_mut(&region)
                .and_then(|s| s.pending_task.take())
            else {
                continue;
            };
            if !self.regions.contains_key(&region) {
                self.abandon_start(region, waiters, ErrorKind::RegionNotFound);
                continue;
            }
            let _ = self.start_flush(region, waiters);
        }
    }

    fn has_pending_ddls(&self, region: Slot) -> bool {
        self.statuses
            .get(&region)
            .is_some_and(|s| !s.pending_ddls.is_empty())
    }

    // --- the engine-wide rules -------------------------------------------------

    /// mito2's periodic flush, on a tick: every writable region with data,
    /// no flush of its own, and a last flush older than the interval.
    fn flush_periodically(&mut self) {
        let Some(interval_ms) = self.auto_flush_interval_ms else {
            return;
        };
        let due: Vec<Slot> = self
            .regions
            .iter()
            .filter(|(slot, r)| {
                r.leader == LeaderState::Writable
                    && !self.statuses.contains_key(slot)
                    && !self.memtables_empty(**slot)
                    && self.now_ms.saturating_sub(r.last_flush_ms) >= interval_ms
            })
            .map(|(slot, _)| *slot)
            .collect();
        for region in due {
            let _ = self.schedule_flush(region, Vec::new());
        }
    }

    /// The seed's rule: flush the open region with the largest mutable
    /// memtable that has no flush yet.
    fn maybe_flush_engine(&mut self) {
        if !self.buffer().should_flush_engine() {
            return;
        }
        let largest = self
            .regions
            .iter()
            .filter(|(slot, r)| {
                r.leader == LeaderState::Writable
                    && self.bytes(r.mutable) > 0
                    && !self.statuses.contains_key(slot)
            })
            .map(|(slot, r)| (self.bytes(r.mutable), *slot))
            .max();
        if let Some((_, region)) = largest {
            let _ = self.schedule_flush(region, Vec::new());
        }
    }

    /// Our rule: writes stalled and no job queued anywhere means no memory
    /// will ever be freed, so flush the region holding the most.
    fn maybe_relieve_stall(&mut self) {
        if self.stalled.is_empty() || !self.jobs.is_empty() || !self.buffer().should_stall() {
            return;
        }
        let largest = self
            .regions
            .iter()
            .filter(|(_, r)| r.leader != LeaderState::Follower)
            .map(|(slot, _)| slot)
            .filter(|slot| !self.memtables_empty(**slot) && !self.statuses.contains_key(slot))
            .map(|slot| (self.region_bytes(*slot), *slot))
            .max();
        if let Some((_, region)) = largest {
            let _ = self.schedule_flush(region, Vec::new());
        }
    }

    /// Stalled writes go back to the front of the queue once memory allows.
    fn retry_stalled(&mut self) {
        if self.stalled.is_empty() || self.buffer().should_stall() {
            return;
        }
        while let Some((request, _)) = self.stalled.pop_back() {
            self.requeued.push_front(request);
        }
    }

    fn fail_stalled_of(&mut self, region: Slot, kind: ErrorKind) {
        let (failed, kept) = std::mem::take(&mut self.stalled)
            .into_iter()
            .partition::<Vec<_>, _>(|(w, _)| w.request.region() == region);
        self.stalled = kept.into();
        self.answer_all(failed.into_iter().map(|(w, _)| w.no), Outcome::Err(kind));
    }

    /// Stalled writes that waited the stall timeout are answered with
    /// `WriteStallTimeout`; the rest keep their order.
    fn expire_stalled(&mut self) {
        let Some(timeout_ms) = self.stall_timeout_ms else {
            return;
        };
        let now_ms = self.now_ms;
        let (expired, kept) = std::mem::take(&mut self.stalled)
            .into_iter()
            .partition::<Vec<_>, _>(|(_, since)| now_ms.saturating_sub(*since) >= timeout_ms);
        self.stalled = kept.into();
        let expired = expired.into_iter().map(|(w, _)| w.no);
        self.answer_all(expired, Outcome::Err(ErrorKind::WriteStallTimeout));
    }

    // --- memory ------------------------------------------------------------------

    fn new_memtable(&mut self) -> MemtableNo {
        let no = self.next_memtable;
        self.next_memtable += 1;
        self.memtables.insert(no, MemtableModel { bytes: 0 });
        no
    }

    fn bytes(&self, memtable: MemtableNo) -> usize {
        self.memtables.get(&memtable).map_or(0, |m| m.bytes)
    }

    fn region_bytes(&self, region: Slot) -> usize {
        self.regions.get(&region).map_or(0, |r| {
            self.bytes(r.mutable) + r.immutables.iter().map(|m| self.bytes(*m)).sum::<usize>()
        })
    }

    /// A region has nothing to flush (a memtable holds bytes iff it holds rows).
    fn memtables_empty(&self, region: Slot) -> bool {
        self.region_bytes(region) == 0
    }

    fn referenced_memtables(&self) -> BTreeSet<MemtableNo> {
        let in_regions = self
            .regions
            .values()
            .flat_map(|r| r.immutables.iter().copied().chain([r.mutable]));
        let in_jobs = self.jobs.iter().flat_map(|j| j.memtables.iter().copied());
        in_regions.chain(in_jobs).collect()
    }

    /// Forgets memtables nobody refers to; if any held memory, the worker
    /// hears about it (one notice, however many were released).
    fn release_unreferenced_memtables(&mut self) {
        let referenced = self.referenced_memtables();
        let mut freed_bytes = 0;
        self.memtables.retain(|no, m| {
            let alive = referenced.contains(no);
            if !alive {
                freed_bytes += m.bytes;
            }
            alive
        });
        if freed_bytes > 0 && !matches!(self.inbox.back(), Some(Notice::MemoryFreed)) {
            self.inbox.push_back(Notice::MemoryFreed);
        }
    }

    // --- manifests and replies ----------------------------------------------------

    /// Consumes one armed manifest failure, if any.
    fn manifest_change_fails(&mut self) -> bool {
        take_one(&mut self.faults.fail_manifest_changes)
    }

    fn manifest_mut(&mut self, region: Slot) -> &mut ManifestModel {
        self.manifests
            .get_mut(&region)
            .expect("an open region has a manifest")
    }

    fn answer(&mut self, no: RequestNo, outcome: Outcome) {
        let previous = self.replies.insert(no, outcome);
        assert!(
            previous.is_none(),
            "model bug: request {no} answered twice ({previous:?}, then {outcome:?})"
        );
    }

    fn answer_err(&mut self, no: RequestNo, kind: ErrorKind) {
        self.answer(no, Outcome::Err(kind));
    }

    fn answer_all(&mut self, waiters: impl IntoIterator<Item = RequestNo>, outcome: Outcome) {
        for no in waiters {
            self.answer(no, outcome);
        }
    }

    fn fail_all(&mut self, status: StatusModel, kind: ErrorKind) {
        self.answer_all(status.waiters(), Outcome::Err(kind));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed's `test_over_mutable_limit`, against the model.
    #[test]
    fn seed_over_mutable_limit() {
        let mut buffer = BufferModel::new(1000);
        buffer.reserve(400);
        assert!(!buffer.should_flush_engine());
        assert!(!buffer.should_stall());
        buffer.reserve(400);
        assert!(buffer.should_flush_engine());
        buffer.schedule_free(400);
        assert!(!buffer.should_flush_engine());
        assert_eq!((buffer.used_bytes, buffer.active_bytes), (800, 400));
        buffer.free(400);
        assert_eq!((buffer.used_bytes, buffer.active_bytes), (400, 400));
        assert_eq!(buffer.violations, 0);
    }

    /// The seed's `test_over_global`, against the model.
    #[test]
    fn seed_over_global() {
        let mut buffer = BufferModel::new(1000);
        buffer.reserve(1100);
        assert!(buffer.should_stall());
        buffer.schedule_free(200);
        assert!(buffer.should_flush_engine());
        buffer.schedule_free(450);
        assert!(!buffer.should_flush_engine());
        buffer.reserve(50);
        assert!(buffer.should_flush_engine());
        buffer.reserve(100);
        assert!(buffer.should_flush_engine());
    }

    #[test]
    fn seed_mutable_limit() {
        for (size, limit) in [(8, 4), (10, 5), (64, 32), (0, 0)] {
            assert_eq!(BufferModel::new(size).mutable_limit_bytes(), limit);
        }
    }

    #[test]
    fn write_flush_commit_frees_memory() {
        let mut model = SchedulerModel::new(1 << 20, 4);
        model.submit(0, ModelRequest::Create { region: 0 });
        model.submit(
            1,
            ModelRequest::Write {
                region: 0,
                bytes: 100,
            },
        );
        assert_eq!((model.used_bytes(), model.active_bytes()), (100, 100));
        model.submit(2, ModelRequest::Flush { region: 0 });
        assert_eq!(model.outcome(2), None, "waits for the job");
        assert_eq!((model.used_bytes(), model.active_bytes()), (100, 0));
        assert!(model.run_one_job());
        assert_eq!(model.outcome(2), Some(Outcome::Ok));
        assert_eq!(model.used_bytes(), 0);
        assert!(model.summary().regions[&0].flush.is_none());
    }

    #[test]
    fn closed_region_memory_lives_until_its_job_ends() {
        let mut model = SchedulerModel::new(1 << 20, 4);
        model.submit(0, ModelRequest::Create { region: 0 });
        model.submit(
            1,
            ModelRequest::Write {
                region: 0,
                bytes: 100,
            },
        );
        model.submit(2, ModelRequest::Flush { region: 0 });
        model.submit(3, ModelRequest::Close { region: 0 });
        assert_eq!(
            model.outcome(2),
            Some(Outcome::Err(ErrorKind::RegionClosed))
        );
        assert_eq!(model.job_only_bytes(), 100);
        assert!(model.run_one_job());
        assert_eq!(model.used_bytes(), 0);
        // Reopening replays nothing: the job committed the closed region's rows.
        model.submit(4, ModelRequest::Open { region: 0 });
        assert_eq!(model.summary().regions[&0].mutable_bytes, 0);
    }
}
