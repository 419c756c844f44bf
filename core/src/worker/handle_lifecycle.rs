//! Region lifecycle: create, open (manifest + WAL replay), close, drop,
//! truncate. Each answers or fails every request waiting on the region, with
//! the error kind of its cause.

use crate::bugs::PlantedBug;
use crate::error::RequestError;
use crate::events::CoreEvent;
use crate::flush::FlushTask;
use crate::ids::{region_sst_prefix, sst_path, RegionId};
use crate::manifest::LeaderState;
use crate::manifest::{ManifestChange, RegionManifest};
use crate::region::Region;
use crate::request::{ClientRequest, FlushReason, Output, RegionOptions, RegionRole, Request};

use super::RegionWorker;

impl RegionWorker {
    pub(super) async fn handle_create(&mut self, request: ClientRequest) {
        let region_id = request.request.region_id();
        let options = match &request.request {
            Request::Create { options, .. } => *options,
            _ => RegionOptions::default(),
        };
        // As mito2: creating a region that exists succeeds if it is the
        // same region (here: the same options), and opens it as leader if
        // it was closed.
        if let Some(region) = self.regions.get(&region_id) {
            return if region.skip_wal == options.skip_wal {
                request.responder.send(Ok(Output::Done))
            } else {
                Self::reply_err(request, RequestError::RegionExists { region_id })
            };
        }
        let manifests = self.env.ports.manifests.clone();
        let mut manifest = RegionManifest::new(region_id);
        manifest.skip_wal = options.skip_wal;
        match manifests.load(region_id).await {
            Err(source) => {
                return Self::reply_err(request, RequestError::Manifest { region_id, source })
            }
            Ok(Some(old)) if !old.dropped && old.skip_wal != options.skip_wal => {
                return Self::reply_err(request, RequestError::RegionExists { region_id })
            }
            Ok(Some(old)) if !old.dropped => return self.open_as_leader(request).await,
            // A new incarnation: a later epoch fences the old one's flushes.
            Ok(Some(old)) => manifest.epoch = old.epoch + 1,
            Ok(None) => {}
        }
        // Entry ids restart at 1: an old incarnation's log must be gone.
        if let Err(source) = self.env.ports.wal.purge(region_id).await {
            return Self::reply_err(request, RequestError::Wal { region_id, source });
        }
        // SSTs a dropped incarnation's late flush left behind.
        self.delete_region_files(region_id).await;
        match manifests.create(manifest).await {
            Ok(manifest) => {
                let mut region =
                    Region::from_manifest(&manifest, self.env.buffer.clone(), self.config.bugs);
                region.last_flush_ms = self.env.ports.clock.now_ms();
                self.regions.insert(region_id, region);
                request.responder.send(Ok(Output::Done));
            }
            Err(source) => Self::reply_err(request, RequestError::Manifest { region_id, source }),
        }
    }

    /// Reopens a region: new epoch, SSTs from the manifest, memtable from
    /// the WAL after the flushed entry id, a follower until
    /// [`Request::SetRole`] makes it leader. Opening an open region is a
    /// no-op.
    pub(super) async fn handle_open(&mut self, request: ClientRequest) {
        let region_id = request.request.region_id();
        if self.regions.contains_key(&region_id) {
            return request.responder.send(Ok(Output::Done));
        }
        match self.open_region(region_id).await {
            Ok(region) => {
                self.regions.insert(region_id, region);
                request.responder.send(Ok(Output::Done));
            }
            Err(error) => Self::reply_err(request, error),
        }
    }

    /// mito2's `create_or_open` for a region that is on disk: open it and
    /// make it leader, as a create would have.
    async fn open_as_leader(&mut self, request: ClientRequest) {
        let region_id = request.request.region_id();
        let mut region = match self.open_region(region_id).await {
            Ok(region) => region,
            Err(error) => return Self::reply_err(request, error),
        };
        let change = ManifestChange::SetLeaderState(LeaderState::Writable);
        if let Err(source) = self.env.ports.manifests.apply(region_id, change).await {
            return Self::reply_err(request, RequestError::Manifest { region_id, source });
        }
        region.leader_state = LeaderState::Writable;
        self.regions.insert(region_id, region);
        request.responder.send(Ok(Output::Done));
    }

    async fn open_region(&self, region_id: RegionId) -> Result<Region, RequestError> {
        let ports = &self.env.ports;
        let manifest_error = |source| RequestError::Manifest { region_id, source };
        match ports
            .manifests
            .load(region_id)
            .await
            .map_err(manifest_error)?
        {
            Some(manifest) if !manifest.dropped => {}
            Some(_) => {
                self.finish_drop(region_id).await;
                return Err(RequestError::RegionNotFound { region_id });
            }
            None => return Err(RequestError::RegionNotFound { region_id }),
        }
        let manifest = ports
            .manifests
            .apply(region_id, ManifestChange::Reopen)
            .await
            .map_err(manifest_error)?;
        let replay_all = self.config.bugs.has(PlantedBug::ReplayIgnoresFlushedMarks);
        let after = if replay_all {
            0
        } else {
            manifest.replay_from_entry_id()
        };
        let entries = ports
            .wal
            .replay(region_id, after)
            .await
            .map_err(|source| RequestError::Wal { region_id, source })?;
        let mut region =
            Region::from_manifest(&manifest, self.env.buffer.clone(), self.config.bugs);
        region.last_flush_ms = ports.clock.now_ms();
        if self.config.bugs.has(PlantedBug::OpenAsLeader) {
            region.leader_state = LeaderState::Writable;
        }
        let mut replayed = 0;
        for entry in &entries {
            let (next_entry_id, next_sequence) = region.version.next_write_marks();
            // Entries at or below the marks are already in SSTs.
            if replay_all
                || (entry.entry_id >= next_entry_id && entry.first_sequence >= next_sequence)
            {
                region.version.apply_write(entry);
                replayed += 1;
            }
        }
        ports.events.record(CoreEvent::WalReplayed {
            region_id,
            entries: replayed,
        });
        self.purge_orphans(&manifest).await;
        Ok(region)
    }

    /// Deletes SSTs under the region's prefix that the manifest does not
    /// list: written by flushes that never committed. Best effort.
    async fn purge_orphans(&self, manifest: &RegionManifest) {
        let region_id = manifest.region_id;
        let objects = &self.env.ports.objects;
        let Ok(paths) = objects.list(&region_sst_prefix(region_id)).await else {
            return;
        };
        for path in paths {
            let listed = manifest
                .files
                .keys()
                .any(|file_id| sst_path(region_id, *file_id) == path);
            if !listed && objects.delete(&path).await.is_ok() {
                self.env
                    .ports
                    .events
                    .record(CoreEvent::OrphanPurged { region_id, path });
            }
        }
    }

    /// What a drop does after its manifest commit, again: a crash between
    /// the commit and the end of the drop leaves the WAL and the SSTs of a
    /// region no one opens, so opening a dropped region finishes its drop.
    /// Best effort, like the drop itself.
    async fn finish_drop(&self, region_id: RegionId) {
        if let Err(error) = self.env.ports.wal.purge(region_id).await {
            tracing::warn!(%region_id, %error, "wal purge of a dropped region failed");
        }
        self.delete_region_files(region_id).await;
    }

    /// Deletes every SST of the region. Best effort: what is left is an
    /// orphan for the next open to purge.
    async fn delete_region_files(&self, region_id: RegionId) {
        let objects = &self.env.ports.objects;
        if let Ok(paths) = objects.list(&region_sst_prefix(region_id)).await {
            for path in paths {
                let _ = objects.delete(&path).await;
            }
        }
    }

    /// Closes a region; closing one that is not open succeeds (as in
    /// mito2). A leader that skips the WAL flushes first: its memtables
    /// are the only copy of its unflushed rows. If that flush fails, so
    /// does the close, and the region stays open.
    pub(super) fn handle_close(&mut self, request: ClientRequest) {
        let region_id = request.request.region_id();
        let Some(region) = self.regions.get_mut(&region_id) else {
            return request.responder.send(Ok(Output::Done));
        };
        let must_flush = region.skip_wal
            && region.is_flushable()
            && !region.version.memtables_empty()
            && !self.config.bugs.has(PlantedBug::CloseDropsUnloggedRows);
        if !must_flush {
            return self.close_now(request);
        }
        // Always a task of this incarnation, merged into what runs: a job
        // still running may be an older incarnation's, whose end answers
        // nothing of ours.
        let task = FlushTask::new(FlushReason::Closing, None);
        if let Err(error) = self.scheduler.schedule_flush(region, task, &self.env) {
            return Self::reply_err(request, error);
        }
        // The close runs again once the flush succeeds (and flushes again
        // if writes came in meanwhile); a failed flush fails it.
        if let Err(request) = self.scheduler.add_ddl_request_to_pending(request) {
            self.close_now(request);
        }
    }

    fn close_now(&mut self, request: ClientRequest) {
        let region_id = request.request.region_id();
        if self.regions.remove(&region_id).is_none() {
            return request.responder.send(Ok(Output::Done));
        }
        let error = RequestError::RegionClosed { region_id };
        self.scheduler.on_region_closed(region_id);
        self.fail_stalled_of(region_id, &error);
        request.responder.send(Ok(Output::Done));
    }

    pub(super) async fn handle_drop(&mut self, request: ClientRequest) {
        let region_id = request.request.region_id();
        let Some(region) = self.regions.get(&region_id) else {
            return Self::reply_err(request, RequestError::RegionNotFound { region_id });
        };
        // Only the leader drops (mito2 moves Writable to Dropping).
        if !region.is_writable() {
            return Self::reply_err(request, region.read_only());
        }
        let dropped = self
            .env
            .ports
            .manifests
            .apply(region_id, ManifestChange::Drop)
            .await;
        if let Err(source) = dropped {
            return Self::reply_err(request, RequestError::Manifest { region_id, source });
        }
        self.regions.remove(&region_id);
        let error = RequestError::RegionDropped { region_id };
        self.scheduler.on_region_dropped(region_id);
        self.fail_stalled_of(region_id, &error);
        self.finish_drop(region_id).await;
        request.responder.send(Ok(Output::Done));
    }

    /// Empties the region. Rows acknowledged before the truncate are gone;
    /// a flush that raced it cannot commit (the epoch moved on).
    pub(super) async fn handle_truncate(&mut self, request: ClientRequest) {
        let region_id = request.request.region_id();
        let Some(region) = self.regions.get(&region_id) else {
            return Self::reply_err(request, RequestError::RegionNotFound { region_id });
        };
        if !region.is_writable() {
            return Self::reply_err(request, region.read_only());
        }
        let truncated_entry_id = region.version.last_entry_id;
        let truncated_sequence = region.version.committed_sequence;
        let change = ManifestChange::Truncate {
            truncated_entry_id,
            truncated_sequence,
        };
        let manifest = match self.env.ports.manifests.apply(region_id, change).await {
            Ok(manifest) => manifest,
            Err(source) => {
                return Self::reply_err(request, RequestError::Manifest { region_id, source })
            }
        };
        let error = RequestError::RegionTruncated { region_id };
        self.scheduler.on_region_truncated(region_id);
        self.fail_stalled_of(region_id, &error);
        if let Some(region) = self.regions.get_mut(&region_id) {
            region.epoch = manifest.epoch;
            region
                .version
                .truncate(truncated_entry_id, truncated_sequence);
        }
        if let Err(error) = self
            .env
            .ports
            .wal
            .truncate(region_id, truncated_entry_id)
            .await
        {
            tracing::warn!(%region_id, %error, "wal truncation after truncate failed");
        }
        self.delete_region_files(region_id).await;
        request.responder.send(Ok(Output::Done));
    }

    /// mito2's `set_region_role`: at once, without a flush. A region that
    /// already has the role is left alone.
    pub(super) async fn handle_set_role(&mut self, request: ClientRequest) {
        let region_id = request.request.region_id();
        let Request::SetRole { role, .. } = request.request else {
            let reason = format!("{} routed to set_role", request.request.kind());
            return Self::reply_err(request, RequestError::InvalidRequest { region_id, reason });
        };
        let Some(region) = self.regions.get(&region_id) else {
            return Self::reply_err(request, RequestError::RegionNotFound { region_id });
        };
        let next = match role {
            RegionRole::Leader => LeaderState::Writable,
            RegionRole::Follower => LeaderState::Follower,
        };
        if region.leader_state == next {
            return request.responder.send(Ok(Output::Done));
        }
        let change = ManifestChange::SetLeaderState(next);
        if let Err(source) = self.env.ports.manifests.apply(region_id, change).await {
            return Self::reply_err(request, RequestError::Manifest { region_id, source });
        }
        let Some(region) = self.regions.get_mut(&region_id) else {
            return Self::reply_err(request, RequestError::RegionNotFound { region_id });
        };
        region.leader_state = next;
        if !region.is_writable() {
            // A follower refuses writes: its stalled ones are answered now,
            // not when memory (that it may itself hold) is freed.
            let refusal = region.read_only();
            self.fail_stalled_of(region_id, &refusal);
        }
        request.responder.send(Ok(Output::Done));
    }
}
