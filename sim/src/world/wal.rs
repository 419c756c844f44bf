//! The write-ahead log, in memory, one log per region.
//!
//! Each log keeps a `synced_entry_id`: the entries up to it are durable.
//! Appends are synced before they return, so today every acknowledged entry
//! is durable; the crash fault (issue 8) will cut the log back to its synced
//! boundary and may tear the unsynced tail.
//!
//! Entry ids must increase within a log; an append that does not is refused
//! (as a real log would) and traced, so the core's numbering is checked too.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use flush_core::error::WalError;
use flush_core::ids::RegionId;
use flush_core::memtable::WalEntry;
use flush_core::ports::Wal;
use futures::future::BoxFuture;
use futures::FutureExt;

use super::World;

/// The log of one region.
#[derive(Clone, Debug, Default)]
pub struct RegionLog {
    pub entries: BTreeMap<u64, WalEntry>,
    /// Highest entry id ever appended (truncation does not lower it).
    pub last_entry_id: u64,
    /// Entries up to here survive a crash.
    pub synced_entry_id: u64,
    /// Entries up to here were discarded by truncation.
    pub truncated_entry_id: u64,
}

#[derive(Clone)]
pub struct SimWal {
    world: Arc<World>,
    logs: Arc<Mutex<BTreeMap<RegionId, RegionLog>>>,
}

impl SimWal {
    pub fn new(world: Arc<World>) -> Self {
        SimWal {
            world,
            logs: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<RegionId, RegionLog>> {
        self.logs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn last_entry_id(&self, region_id: RegionId) -> u64 {
        self.lock()
            .get(&region_id)
            .map_or(0, |log| log.last_entry_id)
    }

    /// Every log, for the oracles.
    pub fn snapshot(&self) -> BTreeMap<RegionId, RegionLog> {
        self.lock().clone()
    }

    async fn append_inner(self, region_id: RegionId, entry: WalEntry) -> Result<(), WalError> {
        super::sleep(self.world.io_delay(Some(region_id), "wal append")).await;
        let entry_id = entry.entry_id;
        let mut logs = self.lock();
        let log = logs.entry(region_id).or_default();
        if entry_id <= log.last_entry_id {
            let last = log.last_entry_id;
            drop(logs);
            self.world.trace(
                "wal",
                format!("{region_id} refused entry {entry_id}: not after {last}"),
            );
            return Err(WalError::Append {
                region_id,
                entry_id,
                reason: format!("entry ids must increase: last is {last}"),
            });
        }
        log.last_entry_id = entry_id;
        log.synced_entry_id = entry_id;
        log.entries.insert(entry_id, entry);
        Ok(())
    }

    async fn replay_inner(
        self,
        region_id: RegionId,
        after_entry_id: u64,
    ) -> Result<Vec<WalEntry>, WalError> {
        super::sleep(self.world.io_delay(Some(region_id), "wal replay")).await;
        let entries: Vec<WalEntry> = self
            .lock()
            .get(&region_id)
            .map(|log| {
                log.entries
                    .range(after_entry_id + 1..)
                    .map(|(_, entry)| entry.clone())
                    .collect()
            })
            .unwrap_or_default();
        self.world.trace(
            "wal",
            format!(
                "{region_id} replay after {after_entry_id}: {} entries",
                entries.len()
            ),
        );
        Ok(entries)
    }

    async fn truncate_inner(
        self,
        region_id: RegionId,
        up_to_entry_id: u64,
    ) -> Result<(), WalError> {
        super::sleep(self.world.io_delay(Some(region_id), "wal truncate")).await;
        if let Some(log) = self.lock().get_mut(&region_id) {
            log.entries = log.entries.split_off(&(up_to_entry_id + 1));
            log.truncated_entry_id = log.truncated_entry_id.max(up_to_entry_id);
        }
        self.world.trace(
            "wal",
            format!("{region_id} truncate up to {up_to_entry_id}"),
        );
        Ok(())
    }

    async fn purge_inner(self, region_id: RegionId) -> Result<(), WalError> {
        super::sleep(self.world.io_delay(Some(region_id), "wal purge")).await;
        self.lock().remove(&region_id);
        self.world.trace("wal", format!("{region_id} purged"));
        Ok(())
    }
}

impl Wal for SimWal {
    fn append(
        &self,
        region_id: RegionId,
        entry: WalEntry,
    ) -> BoxFuture<'static, Result<(), WalError>> {
        self.clone().append_inner(region_id, entry).boxed()
    }

    fn replay(
        &self,
        region_id: RegionId,
        after_entry_id: u64,
    ) -> BoxFuture<'static, Result<Vec<WalEntry>, WalError>> {
        self.clone().replay_inner(region_id, after_entry_id).boxed()
    }

    fn truncate(
        &self,
        region_id: RegionId,
        up_to_entry_id: u64,
    ) -> BoxFuture<'static, Result<(), WalError>> {
        self.clone()
            .truncate_inner(region_id, up_to_entry_id)
            .boxed()
    }

    fn purge(&self, region_id: RegionId) -> BoxFuture<'static, Result<(), WalError>> {
        self.clone().purge_inner(region_id).boxed()
    }
}
