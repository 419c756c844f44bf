//! The manifest store as the simulation runs it: the core's own durable
//! store ([`FileManifestStore`]: a checksummed file per region, replaced by
//! temp file, sync, rename and directory sync) over the simulated file
//! system, after a simulated latency. A `manifest_failure` fails the call
//! before anything changes; a `manifest_ambiguous_commit` fails a flush
//! edit's directory sync after the rename, so the edit is saved (not yet
//! durable) and reported failed, and the record notes the commit in doubt
//! until the flush job has read the manifest back. A crash can strike just
//! before a flush's edit commits, or just after any change commits (before
//! the engine acts on it); after it, [`SimManifestStore::reopen`] reads
//! every manifest back from what the file system kept.
//!
//! Beside the files the store keeps the checker's own record: each
//! region's manifest as last committed (or read back after a crash), how
//! many times it was created, and every change in order.
//!
//! The store also watches the flush marks as they are committed: within one
//! incarnation of a region (create to drop) they never go backwards, and the
//! flushed entry id never passes the last entry the WAL holds.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use flush_core::bugs::Bugs;
use flush_core::durable::manifest::{FileManifestStore, MANIFEST_DIR};
use flush_core::error::ManifestError;
use flush_core::fs::{join, FsOp};
use flush_core::ids::RegionId;
use flush_core::manifest::{LeaderState, ManifestChange, RegionManifest};
use flush_core::ports::ManifestStore;
use futures::future::BoxFuture;
use futures::FutureExt;

use super::crash::CrashWindow;
use super::fs::SimFs;
use super::jobs::panic_point;
use super::wal::SimWal;
use super::World;
use crate::plan::FaultClass;

/// A stored manifest and how many times its region was created.
#[derive(Clone, Debug)]
pub struct ManifestSlot {
    pub manifest: RegionManifest,
    pub incarnation: u64,
}

/// A manifest as it was after one change, at one trace step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ManifestRecord {
    pub step: u64,
    pub region_id: RegionId,
    pub incarnation: u64,
    pub flushed_sequence: u64,
    /// The manifest's leader state is `Writable`: writes may be taken.
    pub writable: bool,
    /// The manifest's leader state is `Follower`: a downgrade is a no-op.
    pub follower: bool,
    pub dropped: bool,
}

#[derive(Clone)]
pub struct SimManifestStore {
    world: Arc<World>,
    wal: SimWal,
    fs: Arc<SimFs>,
    bugs: Bugs,
    /// The store as the running engine opened it; a crash replaces it.
    files: Arc<Mutex<Arc<FileManifestStore>>>,
    slots: Arc<Mutex<BTreeMap<RegionId, ManifestSlot>>>,
    history: Arc<Mutex<Vec<ManifestRecord>>>,
}

impl SimManifestStore {
    pub fn new(world: Arc<World>, wal: SimWal, fs: Arc<SimFs>, bugs: Bugs) -> Self {
        let files = Arc::new(Mutex::new(Arc::new(open_store(&fs, bugs))));
        SimManifestStore {
            world,
            wal,
            fs,
            bugs,
            files,
            slots: Arc::new(Mutex::new(BTreeMap::new())),
            history: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Every successful create and change, in order.
    pub fn history(&self) -> Vec<ManifestRecord> {
        self.history
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn remember(&self, step: u64, manifest: &RegionManifest, incarnation: u64) {
        self.history
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(ManifestRecord {
                step,
                region_id: manifest.region_id,
                incarnation,
                flushed_sequence: manifest.flushed_sequence,
                writable: manifest.leader_state == LeaderState::Writable,
                follower: manifest.leader_state == LeaderState::Follower,
                dropped: manifest.dropped,
            });
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<RegionId, ManifestSlot>> {
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every manifest, for the oracles.
    /// Every manifest as a restart would read it from the files now: a
    /// region whose manifest is gone or unreadable is left out (its rows
    /// then count as lost).
    pub fn snapshot(&self) -> BTreeMap<RegionId, ManifestSlot> {
        let reader = FileManifestStore::new(self.fs.clone());
        let slots = self.lock().clone();
        slots
            .into_iter()
            .filter_map(|(region_id, slot)| match reader.load_now(region_id) {
                Ok(Some(manifest)) => Some((region_id, ManifestSlot { manifest, ..slot })),
                Ok(None) | Err(_) => None,
            })
            .collect()
    }

    /// One region's manifest, read at once, for the oracles.
    pub fn peek(&self, region_id: RegionId) -> Option<ManifestSlot> {
        self.lock().get(&region_id).cloned()
    }

    pub fn incarnation(&self, region_id: RegionId) -> u64 {
        self.lock()
            .get(&region_id)
            .map_or(0, |slot| slot.incarnation)
    }

    async fn delay_and_maybe_fail(
        &self,
        region_id: RegionId,
        what: &str,
    ) -> Result<(), ManifestError> {
        super::sleep(self.world.io_delay(Some(region_id), what)).await;
        if self
            .world
            .inject(FaultClass::ManifestFailure, Some(region_id), what)
        {
            return Err(ManifestError::Io {
                region_id,
                reason: format!("injected: manifest {what} failed"),
            });
        }
        Ok(())
    }

    fn files(&self) -> Arc<FileManifestStore> {
        self.files
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// After a crash (or a graceful stop): the next engine opens the
    /// store afresh, and the record takes each manifest as the files now
    /// hold it. A manifest that cannot be read keeps its last record (the
    /// region will fail to open, and the checks say so).
    pub fn reopen(&self) {
        let files = Arc::new(open_store(&self.fs, self.bugs));
        *self
            .files
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = files.clone();
        let mut reverted = Vec::new();
        let mut slots = self.lock();
        for (region_id, slot) in slots.iter_mut() {
            match files.load_now(*region_id) {
                Ok(Some(manifest)) if manifest != slot.manifest => {
                    reverted.push(format!(
                        "{region_id} back to v{} (was v{})",
                        manifest.version, slot.manifest.version
                    ));
                    slot.manifest = manifest;
                }
                Ok(Some(_)) => {}
                Ok(None) => reverted.push(format!("{region_id} manifest gone")),
                Err(error) => reverted.push(format!("{region_id} unreadable: {error}")),
            }
        }
        drop(slots);
        for line in reverted {
            self.world
                .trace("manifest", format_args!("on reopen: {line}"));
        }
    }

    async fn create_inner(self, manifest: RegionManifest) -> Result<RegionManifest, ManifestError> {
        let region_id = manifest.region_id;
        self.delay_and_maybe_fail(region_id, "create").await?;
        let created = self.files().create_now(manifest)?;
        let mut slots = self.lock();
        let incarnation = slots.get(&region_id).map_or(0, |slot| slot.incarnation) + 1;
        slots.insert(
            region_id,
            ManifestSlot {
                manifest: created.clone(),
                incarnation,
            },
        );
        drop(slots);
        let step = self.world.trace(
            "manifest",
            format_args!("create {region_id} incarnation {incarnation}"),
        );
        self.remember(step, &created, incarnation);
        Ok(created)
    }

    async fn load_inner(
        self,
        region_id: RegionId,
    ) -> Result<Option<RegionManifest>, ManifestError> {
        self.delay_and_maybe_fail(region_id, "load").await?;
        self.files().load_now(region_id)
    }

    async fn apply_inner(
        self,
        region_id: RegionId,
        change: ManifestChange,
    ) -> Result<RegionManifest, ManifestError> {
        self.delay_and_maybe_fail(region_id, "apply").await?;
        let flush_edit =
            matches!(&change, ManifestChange::Edit { edit, .. } if !edit.files_to_add.is_empty());
        if flush_edit && self.world.crash_point(CrashWindow::BetweenSstAndCommit) {
            std::future::pending::<()>().await;
        }
        if flush_edit {
            panic_point(&self.world, region_id, "before the manifest commit", false);
        }
        let after = self.commit(region_id, &change)?;
        if flush_edit {
            panic_point(
                &self.world,
                region_id,
                "after the manifest saved the edit",
                true,
            );
        }
        if self.world.crash_point(CrashWindow::AfterCommit) {
            std::future::pending::<()>().await;
        }
        Ok(after)
    }

    /// Applies `change` at once through the durable store, traced and
    /// watched. A `manifest_ambiguous_commit` fails the directory sync
    /// after the rename: the caller sees an error, the files hold the
    /// change.
    fn commit(
        &self,
        region_id: RegionId,
        change: &ManifestChange,
    ) -> Result<RegionManifest, ManifestError> {
        let summary = summarize(change);
        let flush_edit =
            matches!(change, ManifestChange::Edit { edit, .. } if !edit.files_to_add.is_empty());
        let ambiguous = flush_edit
            && self.world.inject(
                FaultClass::ManifestAmbiguousCommit,
                Some(region_id),
                "manifest commit",
            );
        if ambiguous {
            let dir = join(MANIFEST_DIR, &region_id.0.to_string());
            self.fs.fail_next(FsOp::SyncDir, &dir);
        }
        let applied = self.files().apply_now(region_id, change);
        let fired = ambiguous && !self.fs.disarm();
        match applied {
            Ok(after) => {
                self.record(region_id, &summary, &after);
                Ok(after)
            }
            Err(error) => {
                self.world.trace(
                    "manifest",
                    format_args!("{region_id} refused {summary}: {error}"),
                );
                let saved =
                    fired.then(|| FileManifestStore::new(self.fs.clone()).load_now(region_id));
                if let Some(Ok(Some(after))) = saved {
                    self.world.hooks().on_commit_in_doubt(region_id);
                    self.record(
                        region_id,
                        &format!("{summary} (saved, reported failed)"),
                        &after,
                    );
                }
                Err(error)
            }
        }
    }

    /// Takes `after` as the region's manifest in the record: traced,
    /// remembered, its marks watched.
    fn record(&self, region_id: RegionId, summary: &str, after: &RegionManifest) {
        let mut slots = self.lock();
        let Some(slot) = slots.get_mut(&region_id) else {
            return;
        };
        let before = std::mem::replace(&mut slot.manifest, after.clone());
        let incarnation = slot.incarnation;
        drop(slots);
        let step = self.world.trace(
            "manifest",
            format_args!(
                "{region_id} v{} {summary} flushed_entry={} flushed_seq={} files={}",
                after.version,
                after.flushed_entry_id,
                after.flushed_sequence,
                after.files.len()
            ),
        );
        self.remember(step, after, incarnation);
        self.tell_hooks(&before, after);
    }

    fn tell_hooks(&self, before: &RegionManifest, after: &RegionManifest) {
        let last_entry_id = self.wal.last_entry_id(after.region_id);
        let hooks = self.world.hooks();
        hooks.on_manifest_change(&self.world, before, after, last_entry_id);
    }
}

fn open_store(fs: &Arc<SimFs>, bugs: Bugs) -> FileManifestStore {
    FileManifestStore::new(fs.clone()).with_bugs(bugs)
}

fn summarize(change: &ManifestChange) -> String {
    match change {
        ManifestChange::Edit {
            edit,
            expected_state,
            epoch,
        } => format!(
            "edit(files={}, entry={}, seq={}, expect={expected_state:?}, epoch={epoch})",
            edit.files_to_add.len(),
            edit.flushed_entry_id,
            edit.flushed_sequence
        ),
        other => format!("{other:?}"),
    }
}

impl ManifestStore for SimManifestStore {
    fn create(
        &self,
        manifest: RegionManifest,
    ) -> BoxFuture<'static, Result<RegionManifest, ManifestError>> {
        self.clone().create_inner(manifest).boxed()
    }

    fn load(
        &self,
        region_id: RegionId,
    ) -> BoxFuture<'static, Result<Option<RegionManifest>, ManifestError>> {
        self.clone().load_inner(region_id).boxed()
    }

    fn apply(
        &self,
        region_id: RegionId,
        change: ManifestChange,
    ) -> BoxFuture<'static, Result<RegionManifest, ManifestError>> {
        self.clone().apply_inner(region_id, change).boxed()
    }
}
