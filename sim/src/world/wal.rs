//! The write-ahead log as the simulation runs it: the core's own durable
//! WAL ([`FileWal`], segment files of framed entries) over the simulated
//! file system ([`SimFs`]), so every sweep tests the code a real engine
//! ships. This adapter adds only what a world adds: latency, the plan's
//! faults, crash windows, and a trace.
//!
//! - An append is split where a real one can be cut short: the frame is
//!   *written* after half of its latency, *synced* after the rest, and the
//!   future resolves `Ok` only once synced. A crash in between
//!   ([`CrashWindow::MidWalAppend`], or any crash while an append waits)
//!   loses the unsynced frame or leaves it torn at a drawn byte; the next
//!   open of the log cuts the torn tail.
//! - A `wal_append_failure` fails the write or the sync inside the durable
//!   code (an I/O error of the file system, armed for that one step), so
//!   the WAL's own undo runs; a `wal_truncate_failure` fails a segment
//!   removal of a truncation or purge (or the call, if it removes nothing).
//! - A crash ([`SimWal::reopen`]) throws the engine's WAL object away: the
//!   next engine opens the log afresh from what the file system kept.
//!
//! Entry ids must increase within a log; the durable WAL refuses one that
//! does not, and the refusal is traced, so the core's numbering is checked
//! too.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use flush_core::bugs::Bugs;
use flush_core::durable::wal::{FileWal, WAL_DIR};
use flush_core::error::WalError;
use flush_core::fs::FsOp;
use flush_core::ids::RegionId;
use flush_core::memtable::WalEntry;
use flush_core::ports::Wal;
use futures::future::BoxFuture;
use futures::FutureExt;
use rand::Rng;

use super::crash::CrashWindow;
use super::fs::SimFs;
use super::World;
use crate::plan::FaultClass;

/// Segment size in the simulation: small, so that truncation removes
/// whole segments often and appends start new ones.
pub const SIM_SEGMENT_BYTES: u64 = 2 << 10;

/// Every region's entries as a reopen would read them (or why it could
/// not), for the oracles.
pub type DurableLogs = BTreeMap<RegionId, Result<Vec<WalEntry>, WalError>>;

#[derive(Clone)]
pub struct SimWal {
    world: Arc<World>,
    fs: Arc<SimFs>,
    bugs: Bugs,
    /// The log as the running engine opened it; a crash replaces it.
    log: Arc<Mutex<Arc<FileWal>>>,
    /// Per region, the highest entry id known durable: synced, or found
    /// in the log after a crash. A purge forgets the region.
    durable_marks: Arc<Mutex<BTreeMap<RegionId, u64>>>,
}

impl SimWal {
    pub fn new(world: Arc<World>, fs: Arc<SimFs>, bugs: Bugs) -> Self {
        let log = Arc::new(Mutex::new(Arc::new(open_log(&fs, bugs))));
        SimWal {
            world,
            fs,
            bugs,
            log,
            durable_marks: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    fn current(&self) -> Arc<FileWal> {
        self.log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn marks(&self) -> MutexGuard<'_, BTreeMap<RegionId, u64>> {
        self.durable_marks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The highest entry id of the region known durable (0 if none).
    pub fn last_entry_id(&self, region_id: RegionId) -> u64 {
        self.marks().get(&region_id).copied().unwrap_or(0)
    }

    /// After a crash (or a graceful stop): the next engine opens the log
    /// afresh, and the entries that survived unacknowledged count as
    /// durable from now on.
    pub fn reopen(&self) {
        *self
            .log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) =
            Arc::new(open_log(&self.fs, self.bugs));
        let regions: Vec<RegionId> = self.marks().keys().copied().collect();
        let logs = self.durable_logs(&regions);
        let mut marks = self.marks();
        for (region_id, entries) in logs {
            let last = entries
                .ok()
                .and_then(|entries| entries.last().map(|e| e.entry_id));
            if let (Some(last), Some(mark)) = (last, marks.get_mut(&region_id)) {
                *mark = (*mark).max(last);
            }
        }
    }

    /// What a reopen would read for each of `regions`, read without
    /// changing the file system.
    pub fn durable_logs(&self, regions: &[RegionId]) -> DurableLogs {
        let reader = FileWal::reader(self.fs.clone());
        regions
            .iter()
            .map(|region_id| (*region_id, reader.replay_now(*region_id, 0)))
            .collect()
    }

    /// Which step of an append a `wal_append_failure` fails, if any.
    fn draw_append_failure(&self, region_id: RegionId) -> Option<FsOp> {
        if !self
            .world
            .inject(FaultClass::WalAppendFailure, Some(region_id), "wal append")
        {
            return None;
        }
        let at_sync = self.world.with(|state| state.rng().gen_bool(0.5));
        Some(if at_sync { FsOp::Sync } else { FsOp::Append })
    }

    /// Runs `step` with the file system's `op` failing once if `fail` says
    /// so.
    fn with_failure<T>(&self, fail: Option<FsOp>, op: FsOp, step: impl FnOnce() -> T) -> T {
        if fail == Some(op) {
            self.fs.fail_next(op, WAL_DIR);
        }
        let result = step();
        self.fs.disarm();
        result
    }

    /// Write after half of the latency, sync after the rest.
    async fn append_inner(self, region_id: RegionId, entry: WalEntry) -> Result<(), WalError> {
        let delay = self.world.io_delay(Some(region_id), "wal append");
        super::sleep(delay / 2).await;
        let entry_id = entry.entry_id;
        let fail = self.draw_append_failure(region_id);
        let log = self.current();
        let written = self.with_failure(fail, FsOp::Append, || log.write_entry(region_id, &entry));
        if let Err(error) = written {
            self.world.trace(
                "wal",
                format_args!("{region_id} append {entry_id} refused: {error}"),
            );
            return Err(error);
        }
        // The entry is in the log now, synced or not: a reopen after a crash
        // must look at this region's log even if none of its appends was
        // acknowledged yet (its first entry may survive the crash and be
        // replayed, then flushed).
        self.marks().entry(region_id).or_default();
        if self.world.crash_point(CrashWindow::MidWalAppend) {
            std::future::pending::<()>().await;
        }
        super::sleep(delay - delay / 2).await;
        let synced = self.with_failure(fail, FsOp::Sync, || log.sync_entry(region_id, entry_id));
        if let Err(error) = synced {
            self.world.trace(
                "wal",
                format_args!("{region_id} append {entry_id} not synced: {error}"),
            );
            return Err(error);
        }
        let mut marks = self.marks();
        let mark = marks.entry(region_id).or_default();
        *mark = (*mark).max(entry_id);
        Ok(())
    }

    /// Runs a truncation or purge with a `wal_truncate_failure` failing its
    /// first segment removal, or the call itself if it removes nothing.
    fn trim(
        &self,
        region_id: RegionId,
        what: &str,
        step: impl FnOnce() -> Result<(), WalError>,
    ) -> Result<(), WalError> {
        let fail = self
            .world
            .inject(FaultClass::WalTruncateFailure, Some(region_id), what);
        if fail {
            self.fs.fail_next(FsOp::Remove, WAL_DIR);
        }
        let result = step();
        if self.fs.disarm() {
            return Err(WalError::Truncate {
                region_id,
                reason: format!("injected: {what} failed"),
            });
        }
        result
    }

    async fn replay_inner(
        self,
        region_id: RegionId,
        after_entry_id: u64,
    ) -> Result<Vec<WalEntry>, WalError> {
        super::sleep(self.world.io_delay(Some(region_id), "wal replay")).await;
        let log = self.current();
        let torn_before = log
            .repairs()
            .torn_tails
            .load(std::sync::atomic::Ordering::Relaxed);
        let replayed = log.replay_now(region_id, after_entry_id);
        let torn_after = log
            .repairs()
            .torn_tails
            .load(std::sync::atomic::Ordering::Relaxed);
        let repaired = if torn_after > torn_before {
            self.world
                .with(|state| state.trace.mark("wal_tail_repaired"));
            ", torn tail cut off"
        } else {
            ""
        };
        let outcome = match &replayed {
            Ok(entries) => format!("{} entries{repaired}", entries.len()),
            Err(error) => format!("failed: {error}"),
        };
        self.world.trace(
            "wal",
            format_args!("{region_id} replay after {after_entry_id}: {outcome}"),
        );
        replayed
    }

    async fn truncate_inner(
        self,
        region_id: RegionId,
        up_to_entry_id: u64,
    ) -> Result<(), WalError> {
        super::sleep(self.world.io_delay(Some(region_id), "wal truncate")).await;
        let log = self.current();
        self.trim(region_id, "wal truncate", || {
            log.truncate_now(region_id, up_to_entry_id)
        })?;
        self.world.trace(
            "wal",
            format_args!("{region_id} truncate up to {up_to_entry_id}"),
        );
        Ok(())
    }

    async fn purge_inner(self, region_id: RegionId) -> Result<(), WalError> {
        super::sleep(self.world.io_delay(Some(region_id), "wal purge")).await;
        let log = self.current();
        self.trim(region_id, "wal purge", || log.purge_now(region_id))?;
        self.marks().remove(&region_id);
        self.world.trace("wal", format_args!("{region_id} purged"));
        Ok(())
    }
}

fn open_log(fs: &Arc<SimFs>, bugs: Bugs) -> FileWal {
    FileWal::with_segment_bytes(fs.clone(), SIM_SEGMENT_BYTES).with_bugs(bugs)
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
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    const REGION: RegionId = RegionId(1);

    fn entry(entry_id: u64) -> WalEntry {
        WalEntry {
            entry_id,
            first_sequence: entry_id,
            rows: vec![RowValue {
                series: "s".into(),
                ts: 0,
                value: entry_id as f64,
                fields: Vec::new(),
            }]
            .into(),
        }
    }

    fn ids(entries: &[WalEntry]) -> Vec<u64> {
        entries.iter().map(|entry| entry.entry_id).collect()
    }

    #[test]
    fn a_crash_between_write_and_sync_loses_the_entry_and_the_log_goes_on() {
        for seed in 0..8 {
            let runtime =
                madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
            runtime.block_on(async move {
                let (during_flush, _asks) = futures::channel::mpsc::unbounded();
                let plan = Plan::from_seed(seed).without_faults();
                let hooks = Arc::new(crate::world::hooks::NoHooks);
                let world = Arc::new(World::new(&plan, false, during_flush, hooks));
                let fs = Arc::new(SimFs::reliable());
                let wal = SimWal::new(world, fs.clone(), Bugs::NONE);
                wal.append(REGION, entry(1)).await.expect("append 1");
                wal.current()
                    .write_entry(REGION, &entry(2))
                    .expect("write 2");
                assert_eq!(wal.last_entry_id(REGION), 1);

                fs.crash(&mut ChaCha8Rng::seed_from_u64(seed));
                wal.reopen();
                let replayed = wal.replay(REGION, 0).await.expect("replay");
                // Entry 2 was never synced: gone, torn (and cut), or whole.
                let survived = ids(&replayed) == vec![1, 2];
                assert!(
                    survived || ids(&replayed) == vec![1],
                    "{:?}",
                    ids(&replayed)
                );
                assert_eq!(wal.last_entry_id(REGION), if survived { 2 } else { 1 });

                // The core numbers its next write after what it replayed.
                let next = if survived { 3 } else { 2 };
                wal.append(REGION, entry(next)).await.expect("append next");
                let logs = wal.durable_logs(&[REGION]);
                let expected: Vec<u64> = (1..=next).collect();
                assert_eq!(ids(logs[&REGION].as_ref().expect("readable")), expected);
            });
        }
    }
}
