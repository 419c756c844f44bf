//! Rows and memtables.
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

/// A row as a client writes it.
#[derive(Clone, Debug, PartialEq)]
pub struct RowValue {
    pub series: String,
    pub ts: i64,
    pub value: f64,
}

/// A row as stored: the client's values plus the sequence the region gave it.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub series: String,
    pub ts: i64,
    pub value: f64,
    pub sequence: u64,
}

impl Row {
    /// Estimated memory of a row, the unit of write-buffer accounting.
    pub fn size_bytes(&self) -> usize {
        ROW_OVERHEAD_BYTES + self.series.len()
    }
}

/// Fixed cost of a row: timestamp, value, sequence and the string header.
pub const ROW_OVERHEAD_BYTES: usize = 8 + 8 + 8 + 24;

/// One write as logged in the WAL: its entry id, the sequence of its first
/// row (rows take consecutive sequences) and the rows.
#[derive(Clone, Debug, PartialEq)]
pub struct WalEntry {
    pub entry_id: u64,
    pub first_sequence: u64,
    pub rows: Vec<RowValue>,
}

impl WalEntry {
    /// The stored rows this entry stands for.
    pub fn to_rows(&self) -> impl Iterator<Item = Row> + '_ {
        self.rows.iter().enumerate().map(|(index, row)| Row {
            series: row.series.clone(),
            ts: row.ts,
            value: row.value,
            sequence: self.first_sequence + index as u64,
        })
    }
}

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

/// Rows of one region, appended in sequence order.
pub struct Memtable {
    id: MemtableId,
    rows: Vec<Row>,
    tracker: AllocTracker,
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
    pub fn new(id: MemtableId, tracker: AllocTracker) -> Self {
        Memtable {
            id,
            rows: Vec::new(),
            tracker,
        }
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

    /// Appends rows; their sequences must keep increasing.
    pub fn insert(&mut self, rows: impl IntoIterator<Item = Row>) {
        for row in rows {
            strict_assert!(
                self.max_sequence().is_none_or(|max| row.sequence > max),
                "sequence {} not above {:?}",
                row.sequence,
                self.max_sequence()
            );
            self.tracker.on_allocation(row.size_bytes());
            self.rows.push(row);
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
            series: "host-1".to_string(),
            ts: sequence as i64,
            value: 1.0,
            sequence,
        }
    }

    fn memtable(buffer: &Arc<WriteBufferManager>, bugs: Bugs) -> Memtable {
        Memtable::new(MemtableId(1), AllocTracker::new(buffer.clone(), bugs))
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
                },
                RowValue {
                    series: "b".into(),
                    ts: 2,
                    value: 1.5,
                },
            ],
        };
        let rows: Vec<_> = entry.to_rows().map(|r| r.sequence).collect();
        assert_eq!(rows, vec![10, 11]);
    }
}
