//! A region as its worker holds it: the in-memory version (memtables, files,
//! marks) plus the state mirrored from the manifest.
//!
//! Only the owning worker touches a [`Region`]; flush jobs get a
//! [`FlushSnapshot`](crate::flush::FlushSnapshot) holding `Arc`s of the
//! immutable memtables instead, so nothing here needs a lock.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::buffer::WriteBufferManager;
use crate::bugs::{Bugs, PlantedBug};
use crate::error::RequestError;
use crate::ids::{FileId, MemtableId, RegionId};
use crate::manifest::{FileMeta, LeaderState, RegionEdit, RegionManifest};
use crate::memtable::{AllocTracker, Memtable};
use crate::row::{Row, WalEntry};
use crate::schema::RegionSchema;

/// Mutable memtable, frozen immutables, SSTs and the marks that tie them to
/// the WAL.
pub struct RegionVersion {
    mutable: Memtable,
    immutables: Vec<Arc<Memtable>>,
    files: BTreeMap<FileId, FileMeta>,
    /// Entry id of the last write applied.
    pub last_entry_id: u64,
    /// Sequence of the last row applied.
    pub committed_sequence: u64,
    /// Everything up to here is in SSTs (or truncated).
    pub flushed_entry_id: u64,
    pub flushed_sequence: u64,
    next_memtable_id: u64,
    /// The region's schema; new memtables take it.
    schema: Arc<RegionSchema>,
    buffer: Arc<WriteBufferManager>,
    bugs: Bugs,
}

impl RegionVersion {
    /// A version matching `manifest`, with empty memtables.
    pub fn from_manifest(
        manifest: &RegionManifest,
        buffer: Arc<WriteBufferManager>,
        bugs: Bugs,
    ) -> Self {
        let schema = Arc::new(manifest.schema());
        let tracker = AllocTracker::new(buffer.clone(), bugs);
        let mutable = Memtable::new(MemtableId(0), tracker, schema.clone());
        RegionVersion {
            mutable,
            immutables: Vec::new(),
            files: manifest.files.clone(),
            last_entry_id: manifest.replay_from_entry_id(),
            committed_sequence: manifest.flushed_sequence,
            flushed_entry_id: manifest.flushed_entry_id,
            flushed_sequence: manifest.flushed_sequence,
            next_memtable_id: 1,
            schema,
            buffer,
            bugs,
        }
    }

    pub fn schema(&self) -> &Arc<RegionSchema> {
        &self.schema
    }

    /// Takes the schema an alter committed. The memtables are empty (the
    /// alter waited for their flush), so every row keeps one schema.
    pub fn set_schema(&mut self, schema: RegionSchema) {
        strict_assert!(self.memtables_empty(), "an alter waits for the flush");
        self.schema = Arc::new(schema);
        self.mutable.set_schema(self.schema.clone());
    }

    /// True when no memtable holds a row: nothing to flush.
    pub fn memtables_empty(&self) -> bool {
        self.mutable.is_empty() && self.immutables.iter().all(|m| m.is_empty())
    }

    pub fn mutable_bytes(&self) -> usize {
        self.mutable.size_bytes()
    }

    pub fn immutable_bytes(&self) -> usize {
        self.immutables.iter().map(|m| m.size_bytes()).sum()
    }

    pub fn memtable_bytes(&self) -> usize {
        self.mutable_bytes() + self.immutable_bytes()
    }

    pub fn immutables(&self) -> &[Arc<Memtable>] {
        &self.immutables
    }

    pub fn files(&self) -> &BTreeMap<FileId, FileMeta> {
        &self.files
    }

    /// Every row still in a memtable, oldest first.
    pub fn memtable_rows(&self) -> impl Iterator<Item = &Row> {
        self.immutables
            .iter()
            .flat_map(|m| m.rows().iter())
            .chain(self.mutable.rows().iter())
    }

    /// Sequence and entry id the next write would get.
    pub fn next_write_marks(&self) -> (u64, u64) {
        (self.last_entry_id + 1, self.committed_sequence + 1)
    }

    /// Applies a write whose WAL entry is durable.
    pub fn apply_write(&mut self, entry: &WalEntry) {
        strict_assert!(entry.entry_id > self.last_entry_id, "entry ids increase");
        strict_assert!(
            entry.first_sequence > self.committed_sequence,
            "sequences increase"
        );
        self.mutable.insert(entry.to_rows());
        self.last_entry_id = entry.entry_id;
        self.committed_sequence = entry.first_sequence + entry.rows.len() as u64 - 1;
    }

    /// Moves a non-empty mutable memtable to the immutables. Returns whether
    /// anything was frozen.
    pub fn freeze_mutable(&mut self) -> bool {
        if self.mutable.is_empty() {
            return false;
        }
        let id = MemtableId(self.next_memtable_id);
        self.next_memtable_id += 1;
        let tracker = AllocTracker::new(self.buffer.clone(), self.bugs);
        let fresh = Memtable::new(id, tracker, self.schema.clone());
        let mut frozen = std::mem::replace(&mut self.mutable, fresh);
        frozen.freeze();
        self.immutables.push(Arc::new(frozen));
        true
    }

    /// Applies a committed flush: adds its files, drops the memtables it
    /// wrote, advances the marks (never backwards).
    pub fn apply_edit(&mut self, edit: &RegionEdit, flushed: &[MemtableId]) {
        if !self.bugs.has(PlantedBug::VersionForgetsFlushedFiles) {
            for file in &edit.files_to_add {
                self.files.insert(file.file_id, file.clone());
            }
        }
        self.immutables.retain(|m| !flushed.contains(&m.id()));
        self.flushed_entry_id = self.flushed_entry_id.max(edit.flushed_entry_id);
        self.flushed_sequence = self.flushed_sequence.max(edit.flushed_sequence);
        strict_assert!(self.flushed_entry_id <= self.last_entry_id.max(edit.flushed_entry_id));
    }

    /// Empties the region after a truncate; the marks move to the truncation
    /// point so the WAL is replayed only after it.
    pub fn truncate(&mut self, truncated_entry_id: u64, truncated_sequence: u64) {
        self.immutables.clear();
        let fresh = Memtable::new(
            MemtableId(self.next_memtable_id),
            AllocTracker::new(self.buffer.clone(), self.bugs),
            self.schema.clone(),
        );
        self.next_memtable_id += 1;
        self.mutable = fresh;
        self.files.clear();
        self.flushed_entry_id = self.flushed_entry_id.max(truncated_entry_id);
        self.flushed_sequence = self.flushed_sequence.max(truncated_sequence);
        self.last_entry_id = self.last_entry_id.max(truncated_entry_id);
        self.committed_sequence = self.committed_sequence.max(truncated_sequence);
    }
}

/// A region open in a worker.
pub struct Region {
    pub region_id: RegionId,
    /// The manifest epoch this incarnation runs in; flushes carry it.
    pub epoch: u64,
    pub leader_state: LeaderState,
    pub version: RegionVersion,
    /// When the region last flushed (or was opened): the periodic flush
    /// flushes it once this is older than the auto-flush interval.
    pub last_flush_ms: u64,
    /// Writes skip the WAL (the region option, from the manifest).
    pub skip_wal: bool,
}

impl Region {
    pub fn from_manifest(
        manifest: &RegionManifest,
        buffer: Arc<WriteBufferManager>,
        bugs: Bugs,
    ) -> Self {
        Region {
            region_id: manifest.region_id,
            epoch: manifest.epoch,
            leader_state: manifest.leader_state,
            version: RegionVersion::from_manifest(manifest, buffer, bugs),
            last_flush_ms: 0,
            skip_wal: manifest.skip_wal,
        }
    }

    pub fn is_writable(&self) -> bool {
        self.leader_state == LeaderState::Writable
    }

    /// The answer to a request this region's leader state refuses.
    pub fn read_only(&self) -> RequestError {
        RequestError::RegionReadOnly {
            region_id: self.region_id,
            state: self.leader_state,
        }
    }

    /// mito2's `is_flushable`: a leader, writable or being downgraded. A
    /// follower's data is someone else's to flush.
    pub fn is_flushable(&self) -> bool {
        matches!(
            self.leader_state,
            LeaderState::Writable | LeaderState::Downgrading
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::row::RowValue;

    fn entry(entry_id: u64, first_sequence: u64, rows: usize) -> WalEntry {
        WalEntry {
            entry_id,
            first_sequence,
            rows: (0..rows)
                .map(|i| RowValue {
                    series: format!("s{i}").into(),
                    ts: i as i64,
                    value: i as f64,
                    fields: Vec::new(),
                })
                .collect(),
        }
    }

    fn region(buffer: &Arc<WriteBufferManager>) -> Region {
        Region::from_manifest(
            &RegionManifest::new(RegionId(1)),
            buffer.clone(),
            Bugs::NONE,
        )
    }

    #[test]
    fn write_freeze_and_apply_edit_balance_memory() {
        let buffer = Arc::new(WriteBufferManager::new(1 << 20));
        let mut region = region(&buffer);
        region.version.apply_write(&entry(1, 1, 3));
        assert_eq!(region.version.committed_sequence, 3);
        assert!(region.version.freeze_mutable());
        assert!(
            !region.version.freeze_mutable(),
            "empty mutable is not frozen"
        );
        let frozen = region.version.immutables()[0].id();
        assert_eq!(buffer.active_bytes(), 0);
        assert!(buffer.used_bytes() > 0);
        let edit = RegionEdit {
            files_to_add: Vec::new(),
            flushed_entry_id: 1,
            flushed_sequence: 3,
        };
        region.version.apply_edit(&edit, &[frozen]);
        assert!(region.version.memtables_empty());
        assert_eq!(buffer.used_bytes(), 0);
        assert_eq!(region.version.flushed_entry_id, 1);
    }

    /// SST file ids are built from memtable ids, so a memtable id that came
    /// back after a truncate could let a new flush overwrite an old file.
    #[test]
    fn memtable_ids_never_repeat_across_freeze_and_truncate() {
        let buffer = Arc::new(WriteBufferManager::new(1 << 20));
        let mut region = region(&buffer);
        let mut seen = vec![region.version.mutable.id()];
        let mut entry_id = 0;
        for step in 0..6 {
            entry_id += 1;
            region
                .version
                .apply_write(&entry(entry_id, entry_id * 10, 1));
            if step % 3 == 1 {
                region.version.truncate(entry_id, entry_id * 10);
            } else {
                assert!(region.version.freeze_mutable());
            }
            let id = region.version.mutable.id();
            assert!(
                !seen.contains(&id),
                "step {step}: expected a fresh memtable id, saw {id:?} again (seen {seen:?})"
            );
            seen.push(id);
        }
    }

    #[test]
    fn truncate_frees_memory_and_moves_marks() {
        let buffer = Arc::new(WriteBufferManager::new(1 << 20));
        let mut region = region(&buffer);
        region.version.apply_write(&entry(1, 1, 2));
        region.version.freeze_mutable();
        region.version.apply_write(&entry(2, 3, 2));
        region.version.truncate(2, 4);
        assert_eq!((buffer.used_bytes(), buffer.active_bytes()), (0, 0));
        assert_eq!(region.version.next_write_marks(), (3, 5));
        assert_eq!(region.version.flushed_entry_id, 2);
    }
}
