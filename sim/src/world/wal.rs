//! The write-ahead log, in memory, one log per region, with durability
//! modelled honestly (madsim's own file system never loses data on a kill,
//! so we do it here).
//!
//! An append is first *buffered* (in the log, not durable), then *synced*
//! after a simulated delay; its future resolves `Ok` only once synced. Each
//! log keeps a `synced_entry_id`: the entries up to it are durable. A crash
//! ([`SimWal::crash`]) loses every unsynced entry and may leave the last one
//! *torn* (half written); replay returns the intact prefix and stops at a
//! torn entry, so the core never sees one as valid. The next append at or
//! past the torn entry overwrites it, as a real log cuts its torn tail on
//! recovery. A `wal_append_failure` fails an append before it logs anything.
//!
//! Entry ids must increase within a log; an append that does not is refused
//! (as a real log would) and traced, so the core's numbering is checked too.
//! Truncation and purge are durable at once (metadata operations); a
//! `wal_truncate_failure` makes one discard nothing and fail.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use flush_core::error::WalError;
use flush_core::ids::RegionId;
use flush_core::memtable::WalEntry;
use flush_core::ports::Wal;
use futures::future::BoxFuture;
use futures::FutureExt;
use rand::Rng;

use super::crash::CrashWindow;
use super::World;
use crate::plan::FaultClass;

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
    /// A half-written entry a crash left behind: replay stops before it.
    pub torn_entry_id: Option<u64>,
}

impl RegionLog {
    /// The entries replay returns after `after_entry_id`: the intact prefix,
    /// up to a torn entry.
    pub fn replayable(&self, after_entry_id: u64) -> impl Iterator<Item = &WalEntry> {
        let torn = self.torn_entry_id.unwrap_or(u64::MAX);
        self.entries
            .range(after_entry_id + 1..)
            .take_while(move |(entry_id, _)| **entry_id < torn)
            .map(|(_, entry)| entry)
    }
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

    /// Buffer, then sync: the delay of one I/O is split between the two.
    async fn append_inner(self, region_id: RegionId, entry: WalEntry) -> Result<(), WalError> {
        let delay = self.world.io_delay(Some(region_id), "wal append");
        super::sleep(delay / 2).await;
        let entry_id = entry.entry_id;
        if self
            .world
            .inject(FaultClass::WalAppendFailure, Some(region_id), "wal append")
        {
            return Err(WalError::Append {
                region_id,
                entry_id,
                reason: "injected: write to the log failed".to_string(),
            });
        }
        self.buffer(region_id, entry)?;
        if self.world.crash_point(CrashWindow::MidWalAppend) {
            std::future::pending::<()>().await;
        }
        super::sleep(delay - delay / 2).await;
        if let Some(log) = self.lock().get_mut(&region_id) {
            log.synced_entry_id = log.synced_entry_id.max(entry_id);
        }
        Ok(())
    }

    /// Puts `entry` in the log, not yet durable.
    fn buffer(&self, region_id: RegionId, entry: WalEntry) -> Result<(), WalError> {
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
        if log.torn_entry_id.is_some_and(|torn| torn <= entry_id) {
            log.torn_entry_id = None;
        }
        log.last_entry_id = entry_id;
        log.entries.insert(entry_id, entry);
        Ok(())
    }

    /// The engine died: every unsynced entry is lost, and the first of them
    /// is sometimes left torn. Returns (entries lost, entries torn).
    pub fn crash(&self) -> (u64, u64) {
        let mut lost = 0;
        let mut torn = 0;
        let mut lines = Vec::new();
        {
            let mut logs = self.lock();
            for (region_id, log) in logs.iter_mut() {
                let unsynced = log.entries.split_off(&(log.synced_entry_id + 1));
                log.last_entry_id = log.synced_entry_id;
                let Some((first, _)) = unsynced.first_key_value() else {
                    continue;
                };
                lost += unsynced.len() as u64;
                let tear = self.world.with(|state| state.rng().gen_bool(0.5));
                if tear {
                    torn += 1;
                    log.torn_entry_id = Some(*first);
                }
                lines.push(format!(
                    "{region_id} lost {} unsynced entries from {first}{}",
                    unsynced.len(),
                    if tear { ", torn" } else { "" }
                ));
            }
        }
        for line in lines {
            self.world.trace("wal", line);
        }
        self.world.with(|state| {
            for _ in 0..lost {
                state.trace.mark("wal_unsynced_lost");
            }
            for _ in 0..torn {
                state.trace.mark("wal_torn_tail");
            }
        });
        (lost, torn)
    }

    /// A `wal_truncate_failure`: the log discards nothing this time.
    fn refuse_truncation(&self, region_id: RegionId, what: &str) -> Result<(), WalError> {
        if self
            .world
            .inject(FaultClass::WalTruncateFailure, Some(region_id), what)
        {
            return Err(WalError::Truncate {
                region_id,
                reason: format!("injected: {what} failed"),
            });
        }
        Ok(())
    }

    async fn replay_inner(
        self,
        region_id: RegionId,
        after_entry_id: u64,
    ) -> Result<Vec<WalEntry>, WalError> {
        super::sleep(self.world.io_delay(Some(region_id), "wal replay")).await;
        let (entries, torn) = self
            .lock()
            .get(&region_id)
            .map(|log| {
                let entries: Vec<WalEntry> = log.replayable(after_entry_id).cloned().collect();
                (entries, log.torn_entry_id)
            })
            .unwrap_or_default();
        let stop = torn.map_or(String::new(), |torn| {
            format!(", stopped at torn entry {torn}")
        });
        self.world.trace(
            "wal",
            format!(
                "{region_id} replay after {after_entry_id}: {} entries{stop}",
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
        self.refuse_truncation(region_id, "wal truncate")?;
        if let Some(log) = self.lock().get_mut(&region_id) {
            log.entries = log.entries.split_off(&(up_to_entry_id + 1));
            log.truncated_entry_id = log.truncated_entry_id.max(up_to_entry_id);
            if log.torn_entry_id.is_some_and(|torn| torn <= up_to_entry_id) {
                log.torn_entry_id = None;
            }
        }
        self.world.trace(
            "wal",
            format!("{region_id} truncate up to {up_to_entry_id}"),
        );
        Ok(())
    }

    async fn purge_inner(self, region_id: RegionId) -> Result<(), WalError> {
        super::sleep(self.world.io_delay(Some(region_id), "wal purge")).await;
        self.refuse_truncation(region_id, "wal purge")?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Plan;
    use flush_core::memtable::RowValue;

    const REGION: RegionId = RegionId(1);

    fn entry(entry_id: u64) -> WalEntry {
        WalEntry {
            entry_id,
            first_sequence: entry_id,
            rows: vec![RowValue {
                series: "s".to_string(),
                ts: 0,
                value: entry_id as f64,
            }],
        }
    }

    fn ids(entries: &[WalEntry]) -> Vec<u64> {
        entries.iter().map(|entry| entry.entry_id).collect()
    }

    #[test]
    fn replay_stops_at_a_torn_entry() {
        let log = RegionLog {
            entries: (1..=3).map(|id| (id, entry(id))).collect(),
            torn_entry_id: Some(3),
            ..RegionLog::default()
        };
        let replayed: Vec<u64> = log.replayable(0).map(|entry| entry.entry_id).collect();
        assert_eq!(replayed, vec![1, 2]);
        assert_eq!(log.replayable(2).count(), 0);
    }

    #[test]
    fn a_crash_loses_what_was_not_synced_and_the_log_goes_on_after_it() {
        let runtime = madsim::runtime::Runtime::with_seed_and_config(7, madsim::Config::default());
        runtime.block_on(async {
            let (during_flush, _asks) = futures::channel::mpsc::unbounded();
            let plan = Plan::from_seed(7).without_faults();
            let world = Arc::new(World::new(&plan, false, during_flush));
            let wal = SimWal::new(world);
            wal.append(REGION, entry(1)).await.expect("append 1");
            wal.buffer(REGION, entry(2)).expect("buffer 2");
            assert_eq!(wal.snapshot()[&REGION].synced_entry_id, 1);

            let (lost, torn) = wal.crash();
            assert_eq!(lost, 1);
            let log = wal.snapshot()[&REGION].clone();
            assert_eq!(log.entries.keys().copied().collect::<Vec<_>>(), vec![1]);
            assert_eq!(log.last_entry_id, 1);
            assert_eq!(log.torn_entry_id, (torn == 1).then_some(2));
            let replayed = wal.replay(REGION, 0).await.expect("replay");
            assert_eq!(ids(&replayed), vec![1]);

            // The core numbers its next write 2 again: the log takes it.
            wal.append(REGION, entry(2)).await.expect("append 2 again");
            let log = wal.snapshot()[&REGION].clone();
            assert_eq!((log.synced_entry_id, log.torn_entry_id), (2, None));
            assert_eq!(
                ids(&wal.replay(REGION, 0).await.expect("replay")),
                vec![1, 2]
            );
        });
    }
}
