//! Memtables.
//!
//! A memtable is an append-only list of rows. Its memory is tracked by an
//! [`AllocTracker`] that reports to the [`WriteBufferManager`]: reserve on
//! insert, schedule-free on freeze, free on drop. Freeing on drop is what
//! makes the accounting hold whoever releases the memtable last: the worker
//! after a flush, or a flush job still holding it after its region was
//! dropped.

use std::sync::Arc;

use crate::buffer::WriteBufferManager;
use crate::bugs::{Bugs, PlantedBug};
use crate::ids::MemtableId;
pub use crate::row::{FieldValue, Row, RowValue, WalEntry, ROW_OVERHEAD_BYTES};
use crate::schema::RegionSchema;

/// Reports a memtable's memory to the buffer manager.
pub struct AllocTracker {
    buffer: Arc<WriteBufferManager>,
    bugs: Bugs,
    allocated_bytes: usize,
    done_allocating: bool,
}

impl AllocTracker {
    pub fn new(buffer: Arc<WriteBufferManager>, bugs: Bugs) -> Self {
        AllocTracker {
            buffer,
            bugs,
            allocated_bytes: 0,
            done_allocating: false,
        }
    }

    fn on_allocation(&mut self, bytes: usize) {
        strict_assert!(!self.done_allocating, "allocating in a frozen memtable");
        self.allocated_bytes += bytes;
        self.buffer.reserve_mem(bytes);
    }

    /// The memtable is frozen: its bytes no longer count as mutable.
    fn done_allocating(&mut self) {
        if self.done_allocating {
            return;
        }
        self.done_allocating = true;
        // An underflow is counted by the manager; the oracle reports it.
        let _ = self.buffer.schedule_free_mem(self.allocated_bytes);
    }

    pub fn allocated_bytes(&self) -> usize {
        self.allocated_bytes
    }
}

impl Drop for AllocTracker {
    fn drop(&mut self) {
        let frozen = self.done_allocating;
        self.done_allocating();
        if self.allocated_bytes == 0 {
            return;
        }
        if self.bugs.has(PlantedBug::ForgetFreeMem)
            || (frozen && self.bugs.has(PlantedBug::ScheduleFreeWithoutFree))
        {
            return;
        }
        let _ = self.buffer.free_mem(self.allocated_bytes);
        if self.bugs.has(PlantedBug::FreeTwice) {
            let _ = self.buffer.free_mem(self.allocated_bytes);
        }
    }
}

/// Rows of one region, appended in sequence order, all of one schema.
pub struct Memtable {
    id: MemtableId,
    rows: Vec<Row>,
    tracker: AllocTracker,
    /// The schema its rows were written under; its flush writes that.
    schema: Arc<RegionSchema>,
}

impl std::fmt::Debug for Memtable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memtable")
            .field("id", &self.id)
            .field("rows", &self.rows.len())
            .field("size_bytes", &self.size_bytes())
            .finish()
    }
}

impl Memtable {
    pub fn new(id: MemtableId, tracker: AllocTracker, schema: Arc<RegionSchema>) -> Self {
        Memtable {
            id,
            rows: Vec::new(),
            tracker,
            schema,
        }
    }

    pub fn schema(&self) -> &Arc<RegionSchema> {
        &self.schema
    }

    /// Moves an empty memtable to a newer schema (an alter found the
    /// region's memtables flushed).
    pub fn set_schema(&mut self, schema: Arc<RegionSchema>) {
        strict_assert!(
            self.rows.is_empty(),
            "a memtable with rows keeps its schema"
        );
        self.schema = schema;
    }

    pub fn id(&self) -> MemtableId {
        self.id
    }

    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn size_bytes(&self) -> usize {
        self.tracker.allocated_bytes()
    }

    pub fn max_sequence(&self) -> Option<u64> {
        self.rows.last().map(|row| row.sequence)
    }

    /// Appends rows; their sequences must keep increasing. The memory of
    /// the whole write is reported at once, after its rows are in (as
    /// mito2's memtables report a write's key-values): nothing reads the
    /// buffer manager between two rows of one write.
    pub fn insert(&mut self, rows: impl IntoIterator<Item = Row>) {
        let rows = rows.into_iter();
        self.rows.reserve(rows.size_hint().0);
        let mut bytes = 0;
        for row in rows {
            strict_assert!(
                self.max_sequence().is_none_or(|max| row.sequence > max),
                "sequence {} not above {:?}",
                row.sequence,
                self.max_sequence()
            );
            strict_assert!(
                row.fields.iter().all(|f| self.schema.has_field(&f.name)),
                "a row's fields are in its memtable's schema"
            );
            bytes += row.size_bytes();
            self.rows.push(row);
        }
        if bytes > 0 {
            self.tracker.on_allocation(bytes);
        }
    }

    /// Stops accepting rows; the memory is now "being freed".
    pub fn freeze(&mut self) {
        self.tracker.done_allocating();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(sequence: u64) -> Row {
        Row {
            series: "host-1".into(),
            ts: sequence as i64,
            value: 1.0,
            sequence,
            fields: Vec::new(),
        }
    }

    fn memtable(buffer: &Arc<WriteBufferManager>, bugs: Bugs) -> Memtable {
        Memtable::new(
            MemtableId(1),
            AllocTracker::new(buffer.clone(), bugs),
            Arc::default(),
        )
    }

    #[test]
    fn tracker_reserves_schedules_and_frees() {
        let buffer = Arc::new(WriteBufferManager::new(10_000));
        let mut table = memtable(&buffer, Bugs::NONE);
        table.insert([row(1), row(2)]);
        let size = 2 * (ROW_OVERHEAD_BYTES + 6);
        assert_eq!(table.size_bytes(), size);
        assert_eq!((buffer.used_bytes(), buffer.active_bytes()), (size, size));
        table.freeze();
        assert_eq!((buffer.used_bytes(), buffer.active_bytes()), (size, 0));
        drop(table);
        assert_eq!((buffer.used_bytes(), buffer.active_bytes()), (0, 0));
        assert_eq!(buffer.accounting_violations(), 0);
    }

    #[test]
    fn dropping_a_mutable_memtable_releases_both_counters() {
        let buffer = Arc::new(WriteBufferManager::new(10_000));
        let mut table = memtable(&buffer, Bugs::NONE);
        table.insert([row(1)]);
        drop(table);
        assert_eq!((buffer.used_bytes(), buffer.active_bytes()), (0, 0));
    }

    #[cfg(feature = "planted-bugs")]
    #[test]
    fn planted_free_bugs_unbalance_the_accounting() {
        let buffer = Arc::new(WriteBufferManager::new(10_000));
        let mut table = memtable(&buffer, Bugs::only(PlantedBug::ForgetFreeMem));
        table.insert([row(1)]);
        drop(table);
        assert!(buffer.used_bytes() > 0);

        let buffer = Arc::new(WriteBufferManager::new(10_000));
        let mut other = memtable(&buffer, Bugs::NONE);
        other.insert([row(1)]);
        let mut table = memtable(&buffer, Bugs::only(PlantedBug::FreeTwice));
        table.insert([row(2)]);
        drop(table);
        // The second free leaves `other`'s active bytes above used bytes.
        assert_eq!(buffer.accounting_violations(), 1);
        drop(other);
        assert_eq!(buffer.accounting_violations(), 2);
    }

    #[test]
    fn wal_entry_rows_take_consecutive_sequences() {
        let entry = WalEntry {
            entry_id: 7,
            first_sequence: 10,
            rows: vec![
                RowValue {
                    series: "a".into(),
                    ts: 1,
                    value: 0.5,
                    fields: Vec::new(),
                },
                RowValue {
                    series: "b".into(),
                    ts: 2,
                    value: 1.5,
                    fields: Vec::new(),
                },
            ]
            .into(),
        };
        let rows: Vec<_> = entry.to_rows().map(|r| r.sequence).collect();
        assert_eq!(rows, vec![10, 11]);
    }
}
