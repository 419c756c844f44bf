//! Rows: as a client writes them, as a region stores them, as the WAL logs
//! them. A leaf module: everything that moves rows (memtables, the WAL, the
//! SST codec, requests, events) depends on it and it on nothing of ours.
//!
//! Names (a row's series, a field's name) are shared `Arc<str>`: a write's
//! rows pass through the WAL, the memtable and a checker's ledger, and a
//! region has few series, so a row copied from one to the next bumps a count
//! instead of allocating its name again.

use std::sync::Arc;

/// A value of a field an alter added, named as a write names its columns.
/// A row carries only the added fields it sets; the others are null.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldValue {
    pub name: Arc<str>,
    pub value: f64,
}

/// A row as a client writes it: the tag, the time index, the base field
/// and values for fields alters added.
#[derive(Clone, Debug, PartialEq)]
pub struct RowValue {
    pub series: Arc<str>,
    pub ts: i64,
    pub value: f64,
    pub fields: Vec<FieldValue>,
}

/// A row as stored: the client's values plus the sequence the region gave it.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub series: Arc<str>,
    pub ts: i64,
    pub value: f64,
    pub sequence: u64,
    pub fields: Vec<FieldValue>,
}

impl Row {
    /// A stored row of the base columns only.
    pub fn new(series: impl Into<Arc<str>>, ts: i64, value: f64, sequence: u64) -> Row {
        Row {
            series: series.into(),
            ts,
            value,
            sequence,
            fields: Vec::new(),
        }
    }

    /// Estimated memory of a row, the unit of write-buffer accounting.
    /// A row without added fields costs what it always did.
    pub fn size_bytes(&self) -> usize {
        let fields: usize = self
            .fields
            .iter()
            .map(|field| FIELD_VALUE_BYTES + field.name.len())
            .sum();
        ROW_OVERHEAD_BYTES + self.series.len() + fields
    }

    /// The value this row has for the added field `name`, if it set one.
    pub fn field(&self, name: &str) -> Option<f64> {
        self.fields
            .iter()
            .find(|field| &*field.name == name)
            .map(|field| field.value)
    }
}

impl RowValue {
    /// The stored row this value becomes once a write gives it `sequence`.
    pub fn at_sequence(self, sequence: u64) -> Row {
        Row {
            series: self.series,
            ts: self.ts,
            value: self.value,
            sequence,
            fields: self.fields,
        }
    }
}

/// Fixed cost of a row: timestamp, value, sequence and the string header.
pub const ROW_OVERHEAD_BYTES: usize = 8 + 8 + 8 + 24;

/// Fixed cost of one added field's value: the value and the name's header.
pub const FIELD_VALUE_BYTES: usize = 8 + 24;

/// One write as logged in the WAL: its entry id, the sequence of its first
/// row (rows take consecutive sequences) and the rows. The rows are shared:
/// the worker hands the entry to the WAL and then applies it to the
/// memtable, and a copy per write would be a copy of every row.
#[derive(Clone, Debug, PartialEq)]
pub struct WalEntry {
    pub entry_id: u64,
    pub first_sequence: u64,
    pub rows: Arc<[RowValue]>,
}

impl WalEntry {
    /// The stored rows this entry stands for.
    pub fn to_rows(&self) -> impl Iterator<Item = Row> + '_ {
        (self.first_sequence..)
            .zip(self.rows.iter())
            .map(|(sequence, row)| row.clone().at_sequence(sequence))
    }
}
