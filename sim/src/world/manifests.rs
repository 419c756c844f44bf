//! The manifest store: manifests in a `BTreeMap`, changed only through the
//! core's own [`RegionManifest::apply`], atomically, after a simulated
//! latency. A `manifest_failure` fails the call before anything changes. A
//! crash can strike just before a flush's edit commits, or just after any
//! change commits (before the engine acts on it).
//!
//! The store also watches the flush marks as they are committed: within one
//! incarnation of a region (create to drop) they never go backwards, and the
//! flushed entry id never passes the last entry the WAL holds.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use flush_core::error::ManifestError;
use flush_core::ids::RegionId;
use flush_core::manifest::{ManifestChange, RegionManifest};
use flush_core::ports::ManifestStore;
use futures::future::BoxFuture;
use futures::FutureExt;

use super::crash::CrashWindow;
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
    pub dropped: bool,
}

#[derive(Clone)]
pub struct SimManifestStore {
    world: Arc<World>,
    wal: SimWal,
    slots: Arc<Mutex<BTreeMap<RegionId, ManifestSlot>>>,
    history: Arc<Mutex<Vec<ManifestRecord>>>,
}

impl SimManifestStore {
    pub fn new(world: Arc<World>, wal: SimWal) -> Self {
        SimManifestStore {
            world,
            wal,
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
                dropped: manifest.dropped,
            });
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<RegionId, ManifestSlot>> {
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every manifest, for the oracles.
    pub fn snapshot(&self) -> BTreeMap<RegionId, ManifestSlot> {
        self.lock().clone()
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

    async fn create_inner(self, manifest: RegionManifest) -> Result<RegionManifest, ManifestError> {
        let region_id = manifest.region_id;
        self.delay_and_maybe_fail(region_id, "create").await?;
        let mut slots = self.lock();
        let incarnation = match slots.get(&region_id) {
            Some(slot) if !slot.manifest.dropped => {
                return Err(ManifestError::Exists { region_id });
            }
            Some(slot) => slot.incarnation + 1,
            None => 1,
        };
        slots.insert(
            region_id,
            ManifestSlot {
                manifest: manifest.clone(),
                incarnation,
            },
        );
        drop(slots);
        let step = self.world.trace(
            "manifest",
            format!("create {region_id} incarnation {incarnation}"),
        );
        self.remember(step, &manifest, incarnation);
        Ok(manifest)
    }

    async fn load_inner(
        self,
        region_id: RegionId,
    ) -> Result<Option<RegionManifest>, ManifestError> {
        self.delay_and_maybe_fail(region_id, "load").await?;
        Ok(self
            .lock()
            .get(&region_id)
            .map(|slot| slot.manifest.clone()))
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
        let after = self.commit(region_id, &change)?;
        if self.world.crash_point(CrashWindow::AfterCommit) {
            std::future::pending::<()>().await;
        }
        Ok(after)
    }

    /// Applies `change` at once, traced and watched.
    fn commit(
        &self,
        region_id: RegionId,
        change: &ManifestChange,
    ) -> Result<RegionManifest, ManifestError> {
        let mut slots = self.lock();
        let Some(slot) = slots.get_mut(&region_id) else {
            return Err(ManifestError::NotFound { region_id });
        };
        let before = slot.manifest.clone();
        let mut after = before.clone();
        let result = after.apply(change);
        let summary = summarize(change);
        if let Err(error) = result {
            drop(slots);
            self.world.trace(
                "manifest",
                format!("{region_id} refused {summary}: {error}"),
            );
            return Err(error);
        }
        slot.manifest = after.clone();
        let incarnation = slot.incarnation;
        drop(slots);
        let step = self.world.trace(
            "manifest",
            format!(
                "{region_id} v{} {summary} flushed_entry={} flushed_seq={} files={}",
                after.version,
                after.flushed_entry_id,
                after.flushed_sequence,
                after.files.len()
            ),
        );
        self.remember(step, &after, incarnation);
        self.check_marks(&before, &after);
        Ok(after)
    }

    fn check_marks(&self, before: &RegionManifest, after: &RegionManifest) {
        let region_id = after.region_id;
        if after.dropped {
            return;
        }
        if after.flushed_entry_id < before.flushed_entry_id
            || after.flushed_sequence < before.flushed_sequence
        {
            self.world.violation(
                "monotonic_flush_marks",
                format!(
                    "manifest of {region_id}: expected flush marks to stay at or above \
                     entry {} / sequence {}, saw entry {} / sequence {}",
                    before.flushed_entry_id,
                    before.flushed_sequence,
                    after.flushed_entry_id,
                    after.flushed_sequence
                ),
            );
        }
        let last_entry_id = self.wal.last_entry_id(region_id);
        if after.flushed_entry_id > last_entry_id
            && after.flushed_entry_id > before.flushed_entry_id
        {
            self.world.violation(
                "monotonic_flush_marks",
                format!(
                    "manifest of {region_id}: expected flushed entry id <= last WAL entry {last_entry_id}, \
                     saw {}",
                    after.flushed_entry_id
                ),
            );
        }
    }
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
