//! Manual flushes, downgrades, and the results flush jobs send back.

use crate::bugs::PlantedBug;
use crate::error::RequestError;
use crate::events::CoreEvent;
use crate::flush::FlushTask;
use crate::ids::RegionId;
use crate::manifest::{LeaderState, ManifestChange};
use crate::request::{BackgroundNotify, ClientRequest, FlushFinished, FlushReason, Output};

use super::RegionWorker;

impl RegionWorker {
    pub(super) fn handle_flush_request(&mut self, request: ClientRequest) {
        let region_id = request.request.region_id();
        let Some(region) = self.regions.get_mut(&region_id) else {
            return Self::reply_err(request, RequestError::RegionNotFound { region_id });
        };
        if !region.is_flushable() {
            return Self::reply_err(request, region.read_only());
        }
        let task = FlushTask::new(FlushReason::Manual, Some(request.responder));
        let _ = self.scheduler.schedule_flush(region, task, &self.env);
    }

    /// Writable → Downgrading (in the manifest) → flush → Follower.
    pub(super) async fn handle_downgrade(&mut self, request: ClientRequest) {
        let region_id = request.request.region_id();
        let Some(region) = self.regions.get(&region_id) else {
            return Self::reply_err(request, RequestError::RegionNotFound { region_id });
        };
        match region.leader_state {
            LeaderState::Follower => return request.responder.send(Ok(Output::Done)),
            LeaderState::Downgrading => {}
            LeaderState::Writable => {
                let change = ManifestChange::SetLeaderState(LeaderState::Downgrading);
                if let Err(source) = self.env.ports.manifests.apply(region_id, change).await {
                    return Self::reply_err(request, RequestError::Manifest { region_id, source });
                }
            }
        }
        let Some(region) = self.regions.get_mut(&region_id) else {
            return Self::reply_err(request, RequestError::RegionNotFound { region_id });
        };
        region.leader_state = LeaderState::Downgrading;
        if region.version.memtables_empty() && !self.scheduler.is_flush_requested(region_id) {
            region.leader_state = LeaderState::Follower;
            return request.responder.send(Ok(Output::Done));
        }
        let task = FlushTask::new(FlushReason::Downgrading, Some(request.responder));
        let _ = self.scheduler.schedule_flush(region, task, &self.env);
    }

    /// mito2's periodic flush, on every tick: each writable region that is
    /// not already flushing and whose last flush (or open) is older than
    /// the auto-flush interval is flushed, through the scheduler like any
    /// other flush. A region with nothing in its memtables is left alone
    /// (and asked again on the next tick).
    pub(super) fn flush_periodically(&mut self) {
        let Some(interval_ms) = self.config.auto_flush_interval_ms else {
            return;
        };
        let now_ms = self.env.ports.clock.now_ms();
        let bypass = self
            .config
            .bugs
            .has(PlantedBug::PeriodicFlushBypassesScheduler);
        let due: Vec<RegionId> = self
            .regions
            .iter()
            .filter(|(id, region)| {
                region.is_writable()
                    && (bypass || !self.scheduler.is_flush_requested(**id))
                    && !region.version.memtables_empty()
                    && now_ms.saturating_sub(region.last_flush_ms) >= interval_ms
            })
            .map(|(id, _)| *id)
            .collect();
        for region_id in due {
            if bypass {
                if let Some(region) = self.regions.get_mut(&region_id) {
                    self.scheduler.start_unscheduled(region, &self.env);
                }
            } else {
                self.flush_for(region_id, FlushReason::Periodically);
            }
        }
    }

    pub(super) async fn handle_background(&mut self, notify: BackgroundNotify) {
        match notify {
            BackgroundNotify::FlushFinished(done) => self.handle_flush_finished(done).await,
            BackgroundNotify::FlushFailed(failed) => {
                self.scheduler.on_flush_failed(
                    failed.region_id,
                    failed.epoch,
                    failed.error,
                    &mut self.regions,
                    &self.env,
                );
            }
        }
        self.retry_stalled();
    }

    /// Applies a committed flush to the region (if it is still the same
    /// incarnation), trims the WAL, answers the waiters and runs what waited.
    async fn handle_flush_finished(&mut self, done: FlushFinished) {
        let region_id = done.region_id;
        let mut wal_trim = None;
        match self.regions.get_mut(&region_id) {
            Some(region) if region.epoch == done.epoch => {
                region
                    .version
                    .apply_edit(&done.edit, &done.flushed_memtables);
                region.last_flush_ms = self.env.ports.clock.now_ms();
                if region.leader_state == LeaderState::Downgrading
                    && region.version.memtables_empty()
                {
                    region.leader_state = LeaderState::Follower;
                }
                wal_trim = Some(region.version.flushed_entry_id);
                self.env
                    .ports
                    .events
                    .record(CoreEvent::FlushApplied { region_id });
            }
            _ => self
                .env
                .ports
                .events
                .record(CoreEvent::StaleFlushIgnored { region_id }),
        }
        if let Some(flushed_entry_id) = wal_trim {
            let up_to = if self.config.bugs.has(PlantedBug::WalTruncatePastFlushed) {
                flushed_entry_id + 1
            } else {
                flushed_entry_id
            };
            // A failed trim only keeps entries longer; replay skips them.
            // The flush itself is done and must be finished below.
            if let Err(error) = self.env.ports.wal.truncate(region_id, up_to).await {
                tracing::warn!(%region_id, %error, "wal truncation failed");
                if self
                    .config
                    .bugs
                    .has(PlantedBug::AbandonFlushOnWalTrimFailure)
                {
                    return;
                }
            }
        }
        let released =
            self.scheduler
                .on_flush_success(region_id, done.epoch, &mut self.regions, &self.env);
        if let Some((ddls, writes)) = released {
            for request in ddls.into_iter().chain(writes).rev() {
                self.requeued.push_front(request);
            }
        }
    }
}
