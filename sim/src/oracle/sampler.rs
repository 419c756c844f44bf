//! Invariants sampled between requests while the run goes: each worker's
//! flush statuses, stalled writes, the buffer's counters.

use std::sync::Arc;

use super::*;

/// Invariants sampled between requests while the run goes.
pub struct Sampler {
    /// Off: the run samples nothing (its trace must not change).
    enabled: bool,
    /// Where it reports what it finds.
    checks: Arc<Checks>,
    /// Last flush marks seen per (region, incarnation).
    marks: BTreeMap<(RegionId, u64), (u64, u64)>,
}

impl Sampler {
    pub fn new(enabled: bool, checks: Arc<Checks>) -> Self {
        Sampler {
            enabled,
            checks,
            marks: BTreeMap::new(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

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
                    self.checks.violation(world, Check::SchedulerState, problem);
                }
            }
            for (region_id, region) in &view.regions {
                let key = (*region_id, incarnation(*region_id));
                let now = (region.flushed_entry_id, region.flushed_sequence);
                if let Some(before) = self.marks.insert(key, now) {
                    if now.0 < before.0 || now.1 < before.1 {
                        self.checks.violation(
                            world,
                            Check::MonotonicFlushMarks,
                            format!(
                                "{region_id} in worker {}: expected flushed entry/sequence >= {}/{}, saw {}/{}",
                                view.worker_id, before.0, before.1, now.0, now.1
                            ),
                        );
                    }
                }
                if region.flushed_entry_id > region.last_entry_id {
                    self.checks.violation(
                        world,
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
            self.checks.violation(
                world,
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
            self.checks.violation(
                world,
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
pub(super) fn statuses(view: &WorkerView) -> Vec<(RegionId, FlushStatusView)> {
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

pub(super) fn status_problem(region_id: RegionId, status: &FlushStatusView) -> Option<String> {
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
