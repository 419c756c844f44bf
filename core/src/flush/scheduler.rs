//! The per-worker flush scheduler.
//!
//! It keeps, for every region that asked for a flush, a [`FlushStatus`]: the
//! running job (if any, by epoch) and the responders waiting on it, a
//! pending task merged from later requests, and the DDLs and writes that
//! must wait until the flush is done. The seed's transitions are kept; where
//! the seed drops a status or a task with responders inside, this scheduler
//! answers every one of them with a typed error (the `seed-faithful-*`
//! planted bugs restore the seed's behaviour).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::bugs::{Bugs, PlantedBug};
use crate::error::{ErrorKind, FlushError, RequestError};
use crate::events::CoreEvent;
use crate::ids::RegionId;
use crate::ports::{EventSink, FaultPoint};
use crate::region::Region;
use crate::request::{ClientRequest, FlushReason, Output, Responder};
use crate::telemetry;

use super::task::{end_flush, flush_job, FlushEnv, FlushSnapshot};

/// A request to flush one region, with whoever waits for it.
#[derive(Debug)]
pub struct FlushTask {
    pub reason: FlushReason,
    pub senders: Vec<Responder>,
}

impl FlushTask {
    pub fn new(reason: FlushReason, sender: Option<Responder>) -> Self {
        FlushTask {
            reason,
            senders: sender.into_iter().collect(),
        }
    }

    /// Merging keeps the first reason and every waiter.
    fn merge(&mut self, mut other: FlushTask) {
        self.senders.append(&mut other.senders);
    }

    fn succeed(self) {
        answer_ok(self.senders);
    }
}

fn answer_ok(senders: Vec<Responder>) {
    for sender in senders {
        sender.send(Ok(Output::Done));
    }
}

fn answer_err(senders: impl IntoIterator<Item = Responder>, error: &RequestError) {
    for sender in senders {
        sender.send(Err(error.clone()));
    }
}

/// Flush state of one region.
#[derive(Debug, Default)]
struct FlushStatus {
    /// Epoch of the running flush job, if one runs.
    running_epoch: Option<u64>,
    /// Waiters of the running job.
    running_senders: Vec<Responder>,
    pending_task: Option<FlushTask>,
    pending_ddls: Vec<ClientRequest>,
    pending_writes: Vec<ClientRequest>,
}

impl FlushStatus {
    fn merge_task(&mut self, task: FlushTask) {
        match &mut self.pending_task {
            Some(pending) => pending.merge(task),
            None => self.pending_task = Some(task),
        }
    }

    fn waiter_count(&self) -> usize {
        self.running_senders.len()
            + self.pending_task.as_ref().map_or(0, |t| t.senders.len())
            + self.pending_ddls.len()
            + self.pending_writes.len()
    }

    /// Answers every waiter with `error`, or drops the pending writes
    /// unanswered when that planted bug is on.
    fn fail_all(self, error: &RequestError, lose_writes: bool) {
        answer_err(self.running_senders, error);
        if let Some(task) = self.pending_task {
            answer_err(task.senders, error);
        }
        answer_err(self.pending_ddls.into_iter().map(|r| r.responder), error);
        if lose_writes {
            self.pending_writes
                .into_iter()
                .for_each(|r| r.responder.lose());
        } else {
            answer_err(self.pending_writes.into_iter().map(|r| r.responder), error);
        }
    }
}

/// What the scheduler holds for one region, for oracles and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlushStatusView {
    pub running_epoch: Option<u64>,
    pub pending_task: bool,
    pub pending_ddls: usize,
    pub pending_writes: usize,
}

/// Requests released after a region's last flush: run DDLs, then writes.
pub type ReleasedRequests = (Vec<ClientRequest>, Vec<ClientRequest>);

pub struct FlushScheduler {
    statuses: BTreeMap<RegionId, FlushStatus>,
    bugs: Bugs,
    events: Arc<dyn EventSink>,
}

impl FlushScheduler {
    pub fn new(bugs: Bugs, events: Arc<dyn EventSink>) -> Self {
        FlushScheduler {
            statuses: BTreeMap::new(),
            bugs,
            events,
        }
    }

    pub fn is_flush_requested(&self, region_id: RegionId) -> bool {
        self.statuses.contains_key(&region_id)
    }

    pub fn has_pending_ddls(&self, region_id: RegionId) -> bool {
        self.statuses
            .get(&region_id)
            .is_some_and(|s| !s.pending_ddls.is_empty())
    }

    pub fn status(&self, region_id: RegionId) -> Option<FlushStatusView> {
        self.statuses.get(&region_id).map(|s| FlushStatusView {
            running_epoch: s.running_epoch,
            pending_task: s.pending_task.is_some(),
            pending_ddls: s.pending_ddls.len(),
            pending_writes: s.pending_writes.len(),
        })
    }

    pub fn statuses(&self) -> impl Iterator<Item = (RegionId, FlushStatusView)> + '_ {
        self.statuses
            .keys()
            .filter_map(|id| self.status(*id).map(|view| (*id, view)))
    }

    /// The seed's invariant: a region in the map is flushing or waits to.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (region_id, status) in &self.statuses {
            if status.running_epoch.is_none() && status.pending_task.is_some() {
                return Err(format!(
                    "{region_id} has a pending flush task but no running job: \
                     nothing will start it"
                ));
            }
            if status.running_epoch.is_none() && status.pending_task.is_none() {
                return Err(format!(
                    "{region_id} has a flush status with no running job and no pending task \
                     ({} waiters would never be answered)",
                    status.waiter_count()
                ));
            }
        }
        Ok(())
    }

    /// Requests a flush of `region`. Answers the task's waiters on every
    /// path: at once if there is nothing to flush, later when the job ends,
    /// or with the error returned here if the flush cannot start.
    pub fn schedule_flush(
        &mut self,
        region: &mut Region,
        task: FlushTask,
        env: &FlushEnv,
    ) -> Result<(), RequestError> {
        let region_id = region.region_id;
        if region.version.memtables_empty() {
            task.succeed();
            return Ok(());
        }
        let reason = task.reason;
        telemetry::flush_requested(reason);
        let status = self.statuses.entry(region_id).or_default();
        if status.running_epoch.is_some() || status.pending_task.is_some() {
            status.merge_task(task);
            self.events.record(CoreEvent::FlushMerged { region_id });
            return Ok(());
        }
        self.events
            .record(CoreEvent::FlushScheduled { region_id, reason });
        self.start_flush(region, task, env)
    }

    /// Freezes and submits a job for a region whose status exists and has
    /// neither a running job nor a pending task.
    fn start_flush(
        &mut self,
        region: &mut Region,
        task: FlushTask,
        env: &FlushEnv,
    ) -> Result<(), RequestError> {
        let region_id = region.region_id;
        strict_assert!(self
            .statuses
            .get(&region_id)
            .is_some_and(|s| s.running_epoch.is_none() && s.pending_task.is_none()));
        if env
            .ports
            .faults
            .should_fail(FaultPoint::FreezeMemtable, region_id)
        {
            self.events.record(CoreEvent::FreezeFailed { region_id });
            let error = RequestError::FreezeFailed { region_id };
            self.abandon_start(region_id, task, &error, false);
            return Err(error);
        }
        region.version.freeze_mutable();
        let snapshot = FlushSnapshot::capture(region, task.reason);
        // Counted before submission: an inline job scheduler may run the
        // whole job, and its `flush_ended`, inside `schedule`.
        env.buffer.flush_started();
        telemetry::flush_started();
        let (job, acceptance) = flush_job(env.clone(), snapshot);
        if let Err(rejected) = env.ports.jobs.schedule(job) {
            end_flush(env);
            self.events.record(CoreEvent::JobRejected { region_id });
            let error = RequestError::JobRejected {
                region_id,
                reason: rejected.reason,
            };
            self.abandon_start(region_id, task, &error, true);
            return Err(error);
        }
        acceptance.accepted();
        let status = self.statuses.entry(region_id).or_default();
        status.running_epoch = Some(region.epoch);
        if self.bugs.has(PlantedBug::ReplyBeforeCommit) && task.reason == FlushReason::Manual {
            answer_ok(task.senders);
        } else {
            status.running_senders = task.senders;
        }
        Ok(())
    }

    /// Planted bug `periodic-flush-bypasses-scheduler` only: submits a
    /// flush job for `region` without a flush status, as if no flush could
    /// be running. Nothing waits on it and nothing records it.
    pub(crate) fn start_unscheduled(&mut self, region: &mut Region, env: &FlushEnv) {
        strict_assert!(self.bugs.has(PlantedBug::PeriodicFlushBypassesScheduler));
        if region.version.memtables_empty() {
            return;
        }
        region.version.freeze_mutable();
        let snapshot = FlushSnapshot::capture(region, FlushReason::Periodically);
        env.buffer.flush_started();
        telemetry::flush_started();
        let (job, acceptance) = flush_job(env.clone(), snapshot);
        match env.ports.jobs.schedule(job) {
            Ok(()) => acceptance.accepted(),
            Err(_) => end_flush(env),
        }
    }

    /// A flush could not start: the status goes, and so does everyone
    /// waiting on it, each with `error`.
    fn abandon_start(
        &mut self,
        region_id: RegionId,
        task: FlushTask,
        error: &RequestError,
        rejected: bool,
    ) {
        if rejected && self.bugs.has(PlantedBug::SeedFaithfulRejectedSenders) {
            task.senders.into_iter().for_each(Responder::lose);
        } else {
            answer_err(task.senders, error);
        }
        let Some(status) = self.statuses.remove(&region_id) else {
            return;
        };
        if self.bugs.has(PlantedBug::SeedFaithfulStatusRemoved) {
            status
                .pending_ddls
                .into_iter()
                .for_each(|r| r.responder.lose());
            status
                .pending_writes
                .into_iter()
                .for_each(|r| r.responder.lose());
            return;
        }
        self.record_failed(region_id, error.kind(), status.waiter_count());
        status.fail_all(error, false);
    }

    fn record_failed(&self, region_id: RegionId, kind: ErrorKind, count: usize) {
        if count > 0 {
            self.events.record(CoreEvent::PendingFailed {
                region_id,
                kind,
                count,
            });
        }
    }

    /// The job of `region_id` started in `epoch` committed. Answers its
    /// waiters; returns the DDLs and writes to run if the region needs no
    /// further flush, and starts the flushes that were waiting.
    pub fn on_flush_success(
        &mut self,
        region_id: RegionId,
        epoch: u64,
        regions: &mut BTreeMap<RegionId, Region>,
        env: &FlushEnv,
    ) -> Option<ReleasedRequests> {
        let status = self.statuses.get_mut(&region_id)?;
        if status.running_epoch != Some(epoch) {
            return None;
        }
        status.running_epoch = None;
        answer_ok(std::mem::take(&mut status.running_senders));
        let nothing_left = regions
            .get(&region_id)
            .is_none_or(|r| r.version.memtables_empty());
        let released = if status.pending_task.is_none() {
            if self.bugs.has(PlantedBug::KeepStatusAfterFlush) {
                None
            } else {
                self.statuses.remove(&region_id).map(release)
            }
        } else if nothing_left {
            let mut status = self.statuses.remove(&region_id)?;
            if let Some(task) = status.pending_task.take() {
                task.succeed();
            }
            Some(release(status))
        } else {
            None
        };
        self.schedule_next_flush(regions, env);
        let (mut ddls, writes) = released?;
        if self.bugs.has(PlantedBug::ForgetPendingDdls) {
            ddls.drain(..).for_each(|r| r.responder.lose());
        }
        Some((ddls, writes))
    }

    /// The job of `region_id` started in `epoch` failed: every waiter of the
    /// region gets the flush error, then waiting regions are scheduled.
    pub fn on_flush_failed(
        &mut self,
        region_id: RegionId,
        epoch: u64,
        error: FlushError,
        regions: &mut BTreeMap<RegionId, Region>,
        env: &FlushEnv,
    ) {
        let Some(status) = self.statuses.get_mut(&region_id) else {
            return;
        };
        if status.running_epoch != Some(epoch) {
            return;
        }
        // A job of a truncated incarnation, fenced off by the new epoch: its
        // waiters were answered at the truncate, and the flushes asked for
        // since then never ran, so they start now instead of failing.
        if regions.get(&region_id).is_some_and(|r| r.epoch != epoch) {
            strict_assert!(status.running_senders.is_empty());
            status.running_epoch = None;
            if status.pending_task.is_none() {
                strict_assert_eq!(status.waiter_count(), 0);
                self.statuses.remove(&region_id);
            }
            self.schedule_next_flush(regions, env);
            return;
        }
        let Some(status) = self.statuses.remove(&region_id) else {
            return;
        };
        let error = RequestError::FlushFailed {
            region_id,
            source: Arc::new(error),
        };
        self.record_failed(region_id, error.kind(), status.waiter_count());
        let lose_writes = self.bugs.has(PlantedBug::DropPendingWritesOnFailure);
        status.fail_all(&error, lose_writes);
        self.schedule_next_flush(regions, env);
    }

    pub fn on_region_dropped(&mut self, region_id: RegionId) {
        self.remove_region(region_id, RequestError::RegionDropped { region_id }, false);
    }

    pub fn on_region_closed(&mut self, region_id: RegionId) {
        self.remove_region(region_id, RequestError::RegionClosed { region_id }, false);
    }

    /// Truncation answers every waiter but remembers a running job: until it
    /// reports, a new flush of the same region must wait behind it.
    pub fn on_region_truncated(&mut self, region_id: RegionId) {
        self.remove_region(region_id, RequestError::RegionTruncated { region_id }, true);
    }

    fn remove_region(&mut self, region_id: RegionId, error: RequestError, keep_running: bool) {
        let Some(mut status) = self.statuses.remove(&region_id) else {
            return;
        };
        let running_epoch = status.running_epoch;
        if keep_running && running_epoch.is_some() {
            let waiting = FlushStatus {
                running_epoch,
                ..FlushStatus::default()
            };
            answer_err(std::mem::take(&mut status.running_senders), &error);
            self.statuses.insert(region_id, waiting);
        }
        self.record_failed(region_id, error.kind(), status.waiter_count());
        status.fail_all(&error, false);
    }

    /// Queues a DDL behind the region's flush. Gives the request back if the
    /// region has no flush status (the caller must then answer it).
    pub fn add_ddl_request_to_pending(
        &mut self,
        request: ClientRequest,
    ) -> Result<(), ClientRequest> {
        let region_id = request.request.region_id();
        match self.statuses.get_mut(&region_id) {
            Some(status) => {
                status.pending_ddls.push(request);
                self.events.record(CoreEvent::DdlQueued { region_id });
                Ok(())
            }
            None => Err(request),
        }
    }

    /// Queues a write behind the region's pending DDLs, like
    /// [`Self::add_ddl_request_to_pending`].
    pub fn add_write_request_to_pending(
        &mut self,
        request: ClientRequest,
    ) -> Result<(), ClientRequest> {
        let region_id = request.request.region_id();
        match self.statuses.get_mut(&region_id) {
            Some(status) => {
                status.pending_writes.push(request);
                self.events
                    .record(CoreEvent::WriteQueuedBehindDdl { region_id });
                Ok(())
            }
            None => Err(request),
        }
    }

    /// Starts a flush for every region whose pending task waits and whose
    /// previous job has ended. The seed looks only at the first region with
    /// a pending task, even one still flushing, and stops there (and at its
    /// failure); here each region is independent.
    pub fn schedule_next_flush(
        &mut self,
        regions: &mut BTreeMap<RegionId, Region>,
        env: &FlushEnv,
    ) {
        let seed_faithful = self.bugs.has(PlantedBug::SeedFaithfulScheduleNext);
        let waiting: Vec<RegionId> = self
            .statuses
            .iter()
            .filter(|(_, s)| s.pending_task.is_some())
            .take(if seed_faithful { 1 } else { usize::MAX })
            .filter(|(_, s)| s.running_epoch.is_none())
            .map(|(id, _)| *id)
            .collect();
        for region_id in waiting {
            let Some(task) = self
                .statuses
                .get_mut(&region_id)
                .and_then(|s| s.pending_task.take())
            else {
                continue;
            };
            let Some(region) = regions.get_mut(&region_id) else {
                let error = RequestError::RegionNotFound { region_id };
                self.abandon_start(region_id, task, &error, false);
                continue;
            };
            let _ = self.start_flush(region, task, env);
        }
    }

    /// Answers every waiter of every region with `RegionClosed`: the worker
    /// is shutting down.
    pub fn fail_all_closed(&mut self) {
        for (region_id, status) in std::mem::take(&mut self.statuses) {
            let error = RequestError::RegionClosed { region_id };
            self.record_failed(region_id, error.kind(), status.waiter_count());
            status.fail_all(&error, false);
        }
    }
}

impl Drop for FlushScheduler {
    fn drop(&mut self) {
        self.fail_all_closed();
    }
}

fn release(status: FlushStatus) -> ReleasedRequests {
    strict_assert!(status.running_senders.is_empty());
    (status.pending_ddls, status.pending_writes)
}
