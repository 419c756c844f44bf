//! The durable WAL: per region, append-only segment files of framed
//! entries ([`super::frame`]) over the [`FileSystem`] port.
//!
//! ```text
//! wal/<region id>/<first entry id, 20 digits>.wal
//! ```
//!
//! - **Append** writes one frame and syncs the segment before it returns
//!   `Ok`: an acknowledged write survives a crash. A new segment's name is
//!   made durable (directory sync) before its first entry is acknowledged.
//!   A failed append cuts the segment back to its last good byte at once
//!   (or, if that fails too, before anything else is written to it), so
//!   no frame ever follows bytes of unknown state and a refused entry does
//!   not come back on a reopen. The two halves of an append (write, sync)
//!   are also public, so the simulator can crash between them.
//! - **Open** (the first operation on a region after start) scans every
//!   segment: a torn tail of the last segment is cut off, synced and
//!   counted; a bad frame anywhere else is [`WalError::Corrupt`], never
//!   skipped.
//! - **Truncate** removes whole segments whose entries are all at or below
//!   the flushed entry id; the segment being written stays until a later
//!   segment exists. **Purge** removes the region's directory.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::{self, BoxFuture, FutureExt as _};

use super::frame::{self, ScanEnd};
use crate::bugs::{Bugs, PlantedBug};
use crate::error::WalError;
use crate::fs::{create_dir_durably, create_or_empty, ignore_missing, join, FileSystem, FsError};
use crate::ids::RegionId;
use crate::ports::Wal;
use crate::row::WalEntry;

/// Directory of every region's log, under the file system's root.
pub const WAL_DIR: &str = "wal";
/// Default size after which an append starts a new segment.
pub const DEFAULT_SEGMENT_BYTES: u64 = 256 << 10;
const SEGMENT_SUFFIX: &str = ".wal";

/// Repairs made while opening logs, for tests, reports and the sim.
#[derive(Debug, Default)]
pub struct WalRepairs {
    /// Torn tails cut off.
    pub torn_tails: AtomicU64,
    /// Bytes those tails held.
    pub bytes_dropped: AtomicU64,
}

/// One segment file: its name, the entries it holds, its good length.
#[derive(Clone, Debug)]
struct Segment {
    path: String,
    first_entry_id: u64,
    last_entry_id: Option<u64>,
    len: u64,
}

/// What the WAL knows of one region's log once it has been opened.
#[derive(Debug, Default)]
struct RegionLog {
    /// By first entry id; the last one is where appends go.
    segments: BTreeMap<u64, Segment>,
    last_entry_id: Option<u64>,
    /// The last segment may hold bytes past `len` from a failed append:
    /// they are cut before the next append.
    tail_unsure: bool,
    /// An entry written but not yet synced ([`FileWal::write_entry`]).
    unsynced: Option<Unsynced>,
}

/// What undoing a written-but-unsynced entry needs.
#[derive(Clone, Copy, Debug)]
struct Unsynced {
    entry_id: u64,
    /// The segment's good length before the entry.
    good_len: u64,
    /// The log's and the segment's last entry before it.
    last_before: Option<u64>,
    segment_last_before: Option<u64>,
}

/// A WAL over a file system. Cheap to share; operations on one region are
/// serialised by a lock held only while the (blocking) calls run.
pub struct FileWal {
    fs: Arc<dyn FileSystem>,
    segment_bytes: u64,
    regions: Mutex<BTreeMap<RegionId, RegionLog>>,
    repairs: Arc<WalRepairs>,
    bugs: Bugs,
    /// A reader never repairs (see [`FileWal::reader`]).
    read_only: bool,
}

impl FileWal {
    pub fn new(fs: Arc<dyn FileSystem>) -> FileWal {
        FileWal::with_segment_bytes(fs, DEFAULT_SEGMENT_BYTES)
    }

    pub fn with_segment_bytes(fs: Arc<dyn FileSystem>, segment_bytes: u64) -> FileWal {
        FileWal {
            fs,
            segment_bytes: segment_bytes.max(1),
            regions: Mutex::new(BTreeMap::new()),
            repairs: Arc::new(WalRepairs::default()),
            bugs: Bugs::NONE,
            read_only: false,
        }
    }

    /// A WAL for reading what a reopen would find, changing nothing on
    /// disk (a torn tail is read around, not cut): for oracles and tools.
    /// Appending through it is a bug of the caller.
    pub fn reader(fs: Arc<dyn FileSystem>) -> FileWal {
        FileWal {
            read_only: true,
            ..FileWal::new(fs)
        }
    }

    /// Plants the WAL's bugs (`wal-ack-before-sync`,
    /// `wal-replay-past-torn-tail`); others are ignored. Only for proving
    /// that the simulator and the crash test notice.
    pub fn with_bugs(mut self, bugs: Bugs) -> FileWal {
        self.bugs = bugs;
        self
    }

    pub fn repairs(&self) -> &WalRepairs {
        &self.repairs
    }

    /// Paths of a region's segment files, oldest first (for tests and
    /// tools).
    pub fn segment_paths(&self, region_id: RegionId) -> Result<Vec<String>, WalError> {
        let dir = region_dir(region_id);
        let names = self
            .fs
            .list(&dir)
            .map_err(|error| read_error(region_id, &error))?;
        Ok(names
            .iter()
            .filter(|name| parse_segment_name(name).is_some())
            .map(|name| join(&dir, name))
            .collect())
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<RegionId, RegionLog>> {
        self.regions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The region's log, scanned (and its torn tail repaired) on first use.
    fn opened<'a>(
        &self,
        regions: &'a mut BTreeMap<RegionId, RegionLog>,
        region_id: RegionId,
    ) -> Result<&'a mut RegionLog, WalError> {
        match regions.entry(region_id) {
            std::collections::btree_map::Entry::Occupied(entry) => Ok(entry.into_mut()),
            std::collections::btree_map::Entry::Vacant(entry) => {
                Ok(entry.insert(self.open_region(region_id)?))
            }
        }
    }

    fn open_region(&self, region_id: RegionId) -> Result<RegionLog, WalError> {
        let paths = self.segment_paths(region_id)?;
        let mut log = RegionLog::default();
        let count = paths.len();
        for (index, path) in paths.into_iter().enumerate() {
            let is_last = index + 1 == count;
            let (segment, entries) = self.open_segment(region_id, path, is_last)?;
            if let Some(last) = entries.last() {
                log.last_entry_id = Some(last.entry_id);
            }
            log.segments.insert(segment.first_entry_id, segment);
        }
        Ok(log)
    }

    /// Scans one segment. Only the last may end torn; its tail is cut off
    /// and synced before the log is used.
    fn open_segment(
        &self,
        region_id: RegionId,
        path: String,
        is_last: bool,
    ) -> Result<(Segment, Vec<WalEntry>), WalError> {
        let bytes = self
            .fs
            .read(&path)
            .map_err(|error| read_error(region_id, &error))?;
        let scanned = frame::scan(&bytes).map_err(|error| WalError::Corrupt {
            region_id,
            reason: format!("{path}: {error}"),
        })?;
        let first_entry_id = parse_segment_name(file_name(&path)).unwrap_or(0);
        check_ids(region_id, &path, first_entry_id, &scanned.entries)?;
        if let ScanEnd::TornTail { dropped_bytes } = scanned.end {
            if !is_last {
                return Err(WalError::Corrupt {
                    region_id,
                    reason: format!(
                        "{path}: {dropped_bytes} bad bytes at its end, but a later segment exists"
                    ),
                });
            }
            let valid_len = scanned.valid_len as u64;
            if !self.read_only && !self.bugs.has(PlantedBug::WalReplayPastTornTail) {
                self.fs
                    .set_len(&path, valid_len)
                    .and_then(|()| self.fs.sync(&path))
                    .map_err(|error| read_error(region_id, &error))?;
            }
            self.repairs.torn_tails.fetch_add(1, Ordering::Relaxed);
            self.repairs
                .bytes_dropped
                .fetch_add(dropped_bytes as u64, Ordering::Relaxed);
            tracing::warn!(%region_id, path, dropped_bytes, "wal: torn tail cut off");
        }
        let segment = Segment {
            path,
            first_entry_id,
            last_entry_id: scanned.entries.last().map(|entry| entry.entry_id),
            len: scanned.valid_len as u64,
        };
        Ok((segment, scanned.entries))
    }

    fn append_now(&self, region_id: RegionId, entry: &WalEntry) -> Result<(), WalError> {
        self.write_entry(region_id, entry)?;
        self.sync_entry(region_id, entry.entry_id)
    }

    /// The first half of an append: `entry`'s frame is written to the
    /// region's active segment (a new one if it is full) but not synced, so
    /// a crash may lose or tear it. One entry per region may wait for its
    /// [`FileWal::sync_entry`]; the simulator splits an append here to
    /// crash between the two halves.
    pub fn write_entry(&self, region_id: RegionId, entry: &WalEntry) -> Result<(), WalError> {
        let mut regions = self.lock();
        let log = self.opened(&mut regions, region_id)?;
        let append_error = |reason: String| WalError::Append {
            region_id,
            entry_id: entry.entry_id,
            reason,
        };
        if let Some(waiting) = log.unsynced {
            return Err(append_error(format!(
                "entry {} is still waiting for its sync",
                waiting.entry_id
            )));
        }
        let last_before = log.last_entry_id;
        if let Some(last) = last_before {
            if entry.entry_id <= last {
                return Err(append_error(format!(
                    "entry id not above the last one ({last})"
                )));
            }
        }
        self.settle_tail(log)
            .map_err(|error| append_error(error.to_string()))?;
        let frame = frame::encode(entry).map_err(append_error)?;
        let needs_segment = log.segments.values().next_back().is_none_or(|active| {
            active.len > 0 && active.len + frame.len() as u64 > self.segment_bytes
        });
        if needs_segment {
            self.start_segment(region_id, log, entry.entry_id)
                .map_err(|error| append_error(error.to_string()))?;
        }
        let Some(active) = log.segments.values_mut().next_back() else {
            return Err(append_error("no segment to append to".to_string()));
        };
        let unsynced = Unsynced {
            entry_id: entry.entry_id,
            good_len: active.len,
            last_before,
            segment_last_before: active.last_entry_id,
        };
        if let Err(error) = self.fs.append(&active.path, &frame) {
            self.undo(log, unsynced);
            return Err(append_error(error.to_string()));
        }
        active.len += frame.len() as u64;
        active.last_entry_id = Some(entry.entry_id);
        log.last_entry_id = Some(entry.entry_id);
        log.unsynced = Some(unsynced);
        Ok(())
    }

    /// The second half of an append: syncs the segment holding entry
    /// `entry_id`, which is durable when this returns `Ok`. On an error
    /// the entry is cut off again: it was refused, so it must not come
    /// back on a reopen.
    pub fn sync_entry(&self, region_id: RegionId, entry_id: u64) -> Result<(), WalError> {
        let mut regions = self.lock();
        let log = self.opened(&mut regions, region_id)?;
        let Some(unsynced) = log.unsynced.filter(|waiting| waiting.entry_id == entry_id) else {
            return Err(WalError::Append {
                region_id,
                entry_id,
                reason: "no such entry waits for a sync".to_string(),
            });
        };
        log.unsynced = None;
        if self.bugs.has(PlantedBug::WalAckBeforeSync) {
            return Ok(());
        }
        let Some(active) = log.segments.values().next_back() else {
            return Ok(());
        };
        if let Err(error) = self.fs.sync(&active.path) {
            self.undo(log, unsynced);
            return Err(WalError::Append {
                region_id,
                entry_id,
                reason: error.to_string(),
            });
        }
        Ok(())
    }

    /// Takes back an entry whose write or sync failed: the segment is cut
    /// to its good length at once (or, if that fails too, before anything
    /// else is written to it), so no frame ever follows bytes of unknown
    /// state and a refused entry does not come back on a reopen.
    fn undo(&self, log: &mut RegionLog, unsynced: Unsynced) {
        log.last_entry_id = unsynced.last_before;
        let Some(active) = log.segments.values_mut().next_back() else {
            return;
        };
        active.len = unsynced.good_len;
        active.last_entry_id = unsynced.segment_last_before;
        let path = active.path.clone();
        log.tail_unsure = self
            .fs
            .set_len(&path, unsynced.good_len)
            .and_then(|()| self.fs.sync(&path))
            .is_err();
    }

    /// Cuts bytes a failed append may have left, so the next frame follows
    /// the last good one.
    fn settle_tail(&self, log: &mut RegionLog) -> Result<(), FsError> {
        if !log.tail_unsure {
            return Ok(());
        }
        if let Some(active) = log.segments.values().next_back() {
            self.fs.set_len(&active.path, active.len)?;
            self.fs.sync(&active.path)?;
        }
        log.tail_unsure = false;
        Ok(())
    }

    /// Creates the segment whose first entry is `first_entry_id` and makes
    /// its name durable.
    fn start_segment(
        &self,
        region_id: RegionId,
        log: &mut RegionLog,
        first_entry_id: u64,
    ) -> Result<(), FsError> {
        let dir = region_dir(region_id);
        if log.segments.is_empty() {
            create_dir_durably(self.fs.as_ref(), &dir)?;
        }
        let path = join(&dir, &segment_name(first_entry_id));
        // Possibly left by an append that failed before its directory sync.
        create_or_empty(self.fs.as_ref(), &path)?;
        self.fs.sync_dir(&dir)?;
        log.segments.insert(
            first_entry_id,
            Segment {
                path,
                first_entry_id,
                last_entry_id: None,
                len: 0,
            },
        );
        Ok(())
    }

    /// The entries after `after_entry_id`, in order: the blocking call
    /// behind [`Wal::replay`].
    pub fn replay_now(
        &self,
        region_id: RegionId,
        after_entry_id: u64,
    ) -> Result<Vec<WalEntry>, WalError> {
        let mut regions = self.lock();
        let log = self.opened(&mut regions, region_id)?;
        let mut entries = Vec::new();
        for segment in log.segments.values() {
            if segment
                .last_entry_id
                .is_none_or(|last| last <= after_entry_id)
            {
                continue;
            }
            let bytes = self
                .fs
                .read(&segment.path)
                .map_err(|error| read_error(region_id, &error))?;
            let good = bytes.get(..segment.len as usize).unwrap_or(&bytes);
            let scanned = frame::scan(good).map_err(|error| WalError::Corrupt {
                region_id,
                reason: format!("{}: {error}", segment.path),
            })?;
            entries.extend(
                scanned
                    .entries
                    .into_iter()
                    .filter(|entry| entry.entry_id > after_entry_id),
            );
        }
        Ok(entries)
    }

    /// Removes the segments wholly at or below `up_to_entry_id`: the
    /// blocking call behind [`Wal::truncate`].
    pub fn truncate_now(&self, region_id: RegionId, up_to_entry_id: u64) -> Result<(), WalError> {
        let mut regions = self.lock();
        let log = self.opened(&mut regions, region_id)?;
        // A segment is obsolete when the next one starts at or below
        // `up_to + 1`: every entry it holds is then at or below `up_to`.
        let firsts: Vec<u64> = log.segments.keys().copied().collect();
        let obsolete: Vec<u64> = firsts
            .windows(2)
            .filter(|pair| pair[1] <= up_to_entry_id.saturating_add(1))
            .map(|pair| pair[0])
            .collect();
        if obsolete.is_empty() {
            return Ok(());
        }
        for first in &obsolete {
            if let Some(segment) = log.segments.get(first) {
                self.fs
                    .remove(&segment.path)
                    .map_err(|error| truncate_error(region_id, &error))?;
            }
            log.segments.remove(first);
        }
        self.fs
            .sync_dir(&region_dir(region_id))
            .map_err(|error| truncate_error(region_id, &error))
    }

    /// Removes the region's log: the blocking call behind [`Wal::purge`].
    pub fn purge_now(&self, region_id: RegionId) -> Result<(), WalError> {
        let mut regions = self.lock();
        regions.remove(&region_id);
        let dir = region_dir(region_id);
        for path in self.segment_paths(region_id)? {
            self.fs
                .remove(&path)
                .map_err(|error| truncate_error(region_id, &error))?;
        }
        let purged = ignore_missing(self.fs.sync_dir(&dir))
            .and_then(|()| self.fs.remove_dir(&dir))
            .and_then(|()| ignore_missing(self.fs.sync_dir(WAL_DIR)));
        purged.map_err(|error| truncate_error(region_id, &error))
    }
}

impl Wal for FileWal {
    fn append(
        &self,
        region_id: RegionId,
        entry: WalEntry,
    ) -> BoxFuture<'static, Result<(), WalError>> {
        future::ready(self.append_now(region_id, &entry)).boxed()
    }

    fn replay(
        &self,
        region_id: RegionId,
        after_entry_id: u64,
    ) -> BoxFuture<'static, Result<Vec<WalEntry>, WalError>> {
        future::ready(self.replay_now(region_id, after_entry_id)).boxed()
    }

    fn truncate(
        &self,
        region_id: RegionId,
        up_to_entry_id: u64,
    ) -> BoxFuture<'static, Result<(), WalError>> {
        future::ready(self.truncate_now(region_id, up_to_entry_id)).boxed()
    }

    fn purge(&self, region_id: RegionId) -> BoxFuture<'static, Result<(), WalError>> {
        future::ready(self.purge_now(region_id)).boxed()
    }
}

/// Entry ids rise through a segment and start at or above its name.
fn check_ids(
    region_id: RegionId,
    path: &str,
    first_entry_id: u64,
    entries: &[WalEntry],
) -> Result<(), WalError> {
    let mut previous: Option<u64> = None;
    for entry in entries {
        let below_name = entry.entry_id < first_entry_id;
        let not_rising = previous.is_some_and(|previous| entry.entry_id <= previous);
        if below_name || not_rising {
            return Err(WalError::Corrupt {
                region_id,
                reason: format!(
                    "{path}: entry {} out of order (segment starts at {first_entry_id}, \
                     previous entry {previous:?})",
                    entry.entry_id
                ),
            });
        }
        previous = Some(entry.entry_id);
    }
    Ok(())
}

fn region_dir(region_id: RegionId) -> String {
    join(WAL_DIR, &region_id.0.to_string())
}

fn segment_name(first_entry_id: u64) -> String {
    format!("{first_entry_id:020}{SEGMENT_SUFFIX}")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn file_name(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, name)| name)
}

fn read_error(region_id: RegionId, error: &FsError) -> WalError {
    WalError::Read {
        region_id,
        reason: error.to_string(),
    }
}

fn truncate_error(region_id: RegionId, error: &FsError) -> WalError {
    WalError::Truncate {
        region_id,
        reason: error.to_string(),
    }
}
