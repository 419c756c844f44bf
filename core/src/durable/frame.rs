//! WAL frames: one entry, framed with its length and a CRC32 of its bytes,
//! and the scan that tells a torn tail from corruption.
//!
//! ```text
//! frame   = len: u32 LE | crc32(payload): u32 LE | payload (len bytes)
//! payload = entry_id: u64 | first_sequence: u64 | rows: u32 | row*
//! row     = series_len: u32 | series (UTF-8) | ts: i64 | value: f64 bits
//!           [ fields: u16 | (name_len: u16 | name (UTF-8) | value: f64 bits)* ]
//! ```
//!
//! The bracketed part is there only when bit 31 of `rows` is set: an entry
//! whose rows set no added field is written exactly as before alters
//! added fields, and a log written then reads the same now.
//!
//! A crash can only hurt what was written after the last sync, and a write
//! that did not finish leaves a *prefix* of its bytes. So a bad frame that
//! reaches the end of the file is a torn tail (cut it off, count it), while
//! a bad frame with bytes after it cannot come from a crash: that is
//! corruption, and the scan says where instead of skipping it.

use std::sync::Arc;

use thiserror::Error;

use super::codec::{PutLe as _, Reader};
use crate::row::{FieldValue, RowValue, WalEntry};

/// Bytes before the payload.
pub const HEADER_BYTES: usize = 8;
/// The largest payload a frame may claim; a bigger length is garbage.
pub const MAX_PAYLOAD_BYTES: usize = 64 << 20;
const PAYLOAD_FIXED_BYTES: usize = 8 + 8 + 4;
const ROW_FIXED_BYTES: usize = 4 + 8 + 8;
/// Bit of `rows` saying every row carries its added fields.
const WITH_FIELDS: u32 = 1 << 31;
/// The most added fields one row may carry in a frame.
const MAX_ROW_FIELDS: usize = u16::MAX as usize;

/// A frame that is bad and is not the file's tail.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("frame at byte {offset}: {reason}")]
pub struct FrameError {
    pub offset: usize,
    pub reason: String,
}

/// How a scan ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanEnd {
    /// Every byte belonged to a good frame.
    Clean,
    /// The bytes from `valid_len` on are an unfinished or damaged last
    /// frame.
    TornTail { dropped_bytes: usize },
}

/// The good entries of one file, how many bytes they span, and what came
/// after them.
#[derive(Clone, Debug, PartialEq)]
pub struct Scanned {
    pub entries: Vec<WalEntry>,
    pub valid_len: usize,
    pub end: ScanEnd,
}

/// `entry` as one frame, or why it cannot be one: an entry whose payload
/// would pass [`MAX_PAYLOAD_BYTES`] (a client's write of that size is
/// refused by the WAL, not a panic).
pub fn encode(entry: &WalEntry) -> Result<Vec<u8>, String> {
    let with_fields = entry.rows.iter().any(|row| !row.fields.is_empty());
    let rows_bytes: usize = entry
        .rows
        .iter()
        .map(|row| {
            ROW_FIXED_BYTES.saturating_add(row.series.len()) + fields_bytes(row, with_fields)
        })
        .fold(0, usize::saturating_add);
    let payload_len = PAYLOAD_FIXED_BYTES.saturating_add(rows_bytes);
    if let Some(row) = entry.rows.iter().find(|row| {
        row.fields.len() > MAX_ROW_FIELDS
            || row.fields.iter().any(|f| f.name.len() > u16::MAX as usize)
    }) {
        return Err(format!(
            "entry {} has a row with {} added fields or a name over {} bytes",
            entry.entry_id,
            row.fields.len(),
            u16::MAX
        ));
    }
    if payload_len > MAX_PAYLOAD_BYTES {
        return Err(format!(
            "entry {} is {payload_len} bytes, over the {MAX_PAYLOAD_BYTES}-byte frame limit",
            entry.entry_id
        ));
    }
    // Every length below is at most `payload_len`, so it fits a u32.
    let mut frame = Vec::with_capacity(HEADER_BYTES + payload_len);
    frame.put_u32(payload_len as u32);
    frame.put_u32(0); // the checksum, once the payload is in
    frame.put_u64(entry.entry_id);
    frame.put_u64(entry.first_sequence);
    let flag = if with_fields { WITH_FIELDS } else { 0 };
    frame.put_u32(entry.rows.len() as u32 | flag);
    for row in entry.rows.iter() {
        frame.put_u32(row.series.len() as u32);
        frame.extend_from_slice(row.series.as_bytes());
        frame.put_i64(row.ts);
        frame.put_u64(row.value.to_bits());
        if with_fields {
            frame.put_u16(row.fields.len() as u16);
            for field in &row.fields {
                frame.put_u16(field.name.len() as u16);
                frame.extend_from_slice(field.name.as_bytes());
                frame.put_u64(field.value.to_bits());
            }
        }
    }
    let crc = crc32fast::hash(&frame[HEADER_BYTES..]);
    frame[4..HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
    Ok(frame)
}

/// Bytes a row's added fields take in a frame.
fn fields_bytes(row: &RowValue, with_fields: bool) -> usize {
    if !with_fields {
        return 0;
    }
    row.fields
        .iter()
        .map(|field| 2 + field.name.len() + 8)
        .fold(2, usize::saturating_add)
}

/// Reads every frame of `bytes`. A bad last frame is a torn tail; a bad
/// frame before the end is a [`FrameError`].
pub fn scan(bytes: &[u8]) -> Result<Scanned, FrameError> {
    let mut entries = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        match next_frame(bytes, offset) {
            Frame::Good { entry, end } => {
                entries.push(entry);
                offset = end;
            }
            Frame::Tail => {
                return Ok(Scanned {
                    entries,
                    valid_len: offset,
                    end: ScanEnd::TornTail {
                        dropped_bytes: bytes.len() - offset,
                    },
                })
            }
            Frame::Bad(reason) => return Err(FrameError { offset, reason }),
        }
    }
    Ok(Scanned {
        entries,
        valid_len: offset,
        end: ScanEnd::Clean,
    })
}

enum Frame {
    Good {
        entry: WalEntry,
        end: usize,
    },
    /// Unfinished or damaged, and nothing after it: a torn tail.
    Tail,
    /// Damaged with bytes after it.
    Bad(String),
}

fn next_frame(bytes: &[u8], offset: usize) -> Frame {
    let rest = &bytes[offset..];
    let Some(header) = rest.get(..HEADER_BYTES) else {
        return Frame::Tail;
    };
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let end = HEADER_BYTES.saturating_add(len);
    if len > MAX_PAYLOAD_BYTES || end > rest.len() {
        // A length that runs past the end is a frame cut short (or a
        // length field itself torn): nothing after it exists.
        return Frame::Tail;
    }
    let payload = &rest[HEADER_BYTES..end];
    let at_end = end == rest.len();
    if crc32fast::hash(payload) != crc {
        return if at_end {
            Frame::Tail
        } else {
            Frame::Bad(format!(
                "crc mismatch over {len} bytes, with bytes after it"
            ))
        };
    }
    match decode_payload(payload) {
        Ok(entry) => Frame::Good {
            entry,
            end: offset + end,
        },
        Err(reason) => Frame::Bad(format!("good crc but {reason}")),
    }
}

fn decode_payload(payload: &[u8]) -> Result<WalEntry, String> {
    let mut reader = Reader::new(payload);
    let entry_id = reader.u64("the entry id")?;
    let first_sequence = reader.u64("the first sequence")?;
    let rows_word = reader.u32("the row count")?;
    let with_fields = rows_word & WITH_FIELDS != 0;
    let count = (rows_word & !WITH_FIELDS) as usize;
    if count > reader.remaining() / ROW_FIXED_BYTES {
        return Err(format!(
            "{count} rows claimed in {} bytes",
            reader.remaining()
        ));
    }
    let mut rows = Vec::with_capacity(count);
    for _ in 0..count {
        let series_len = reader.u32("a series length")? as usize;
        let series = reader.take(series_len, "a series name")?;
        let series: Arc<str> = std::str::from_utf8(series)
            .map_err(|_| "a series name that is not UTF-8".to_string())?
            .into();
        let ts = reader.i64("a timestamp")?;
        let value = f64::from_bits(reader.u64("a value")?);
        let fields = if with_fields {
            decode_fields(&mut reader)?
        } else {
            Vec::new()
        };
        rows.push(RowValue {
            series,
            ts,
            value,
            fields,
        });
    }
    reader.finish("row")?;
    Ok(WalEntry {
        entry_id,
        first_sequence,
        rows: rows.into(),
    })
}

fn decode_fields(reader: &mut Reader<'_>) -> Result<Vec<FieldValue>, String> {
    let count = reader.u16("a field count")? as usize;
    let mut fields = Vec::with_capacity(count.min(reader.remaining() / 10));
    for _ in 0..count {
        let len = reader.u16("a field name length")? as usize;
        let name = reader.take(len, "a field name")?;
        let name: Arc<str> = std::str::from_utf8(name)
            .map_err(|_| "a field name that is not UTF-8".to_string())?
            .into();
        let value = f64::from_bits(reader.u64("a field value")?);
        fields.push(FieldValue { name, value });
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(entry_id: u64, rows: usize) -> WalEntry {
        WalEntry {
            entry_id,
            first_sequence: entry_id * 10,
            rows: (0..rows)
                .map(|index| RowValue {
                    series: format!("host-{index}").into(),
                    ts: index as i64 * 1_000 - 5,
                    value: index as f64 / 3.0,
                    fields: Vec::new(),
                })
                .collect(),
        }
    }

    fn log(entries: &[WalEntry]) -> Vec<u8> {
        entries
            .iter()
            .flat_map(|entry| encode(entry).expect("a small entry"))
            .collect()
    }

    #[test]
    fn an_entry_too_big_for_a_frame_is_refused_not_a_panic() {
        let huge = WalEntry {
            entry_id: 9,
            first_sequence: 1,
            rows: vec![RowValue {
                series: "x".repeat(MAX_PAYLOAD_BYTES).into(),
                ts: 0,
                value: 0.0,
                fields: Vec::new(),
            }]
            .into(),
        };
        let error = encode(&huge).expect_err("over the limit");
        assert!(error.contains("frame limit"), "{error}");
    }

    #[test]
    fn frames_round_trip() {
        let entries = vec![entry(1, 0), entry(2, 3), entry(3, 1)];
        let bytes = log(&entries);
        let scanned = scan(&bytes).expect("a clean log");
        assert_eq!(scanned.entries, entries);
        assert_eq!(scanned.valid_len, bytes.len());
        assert_eq!(scanned.end, ScanEnd::Clean);
    }

    /// Rows that set added fields round-trip; an entry whose rows set none
    /// is framed exactly as before fields existed (no flag, no counts).
    #[test]
    fn added_fields_round_trip_and_entries_without_them_keep_the_old_layout() {
        let plain = entry(4, 2);
        let mut with_fields = entry(5, 2);
        let mut rows = with_fields.rows.to_vec();
        rows[1].fields.push(FieldValue {
            name: "cpu".into(),
            value: 2.5,
        });
        with_fields.rows = rows.into();
        let bytes = log(&[plain.clone(), with_fields.clone()]);
        let scanned = scan(&bytes).expect("a clean log");
        assert_eq!(scanned.entries, vec![plain.clone(), with_fields]);
        let framed = encode(&plain).expect("a small entry");
        let old_layout = HEADER_BYTES
            + PAYLOAD_FIXED_BYTES
            + plain
                .rows
                .iter()
                .map(|row| ROW_FIXED_BYTES + row.series.len())
                .sum::<usize>();
        assert_eq!(framed.len(), old_layout);
        let rows_word = &framed[HEADER_BYTES + 16..HEADER_BYTES + 20];
        assert_eq!(rows_word, &2u32.to_le_bytes(), "no flag, the plain count");
    }

    #[test]
    fn every_cut_of_the_last_frame_is_a_torn_tail() {
        let entries = vec![entry(1, 2), entry(2, 2)];
        let bytes = log(&entries);
        let first_len = encode(&entries[0]).expect("a small entry").len();
        for cut in first_len + 1..bytes.len() {
            let scanned = scan(&bytes[..cut]).expect("a torn tail is not an error");
            assert_eq!(scanned.entries, entries[..1], "cut at {cut}");
            assert_eq!(scanned.valid_len, first_len);
            assert_eq!(
                scanned.end,
                ScanEnd::TornTail {
                    dropped_bytes: cut - first_len
                }
            );
        }
    }

    #[test]
    fn a_flipped_bit_in_the_last_frame_is_a_torn_tail_and_before_it_an_error() {
        let entries = vec![entry(1, 2), entry(2, 2), entry(3, 2)];
        let bytes = log(&entries);
        let first_len = encode(&entries[0]).expect("a small entry").len();
        let last_start = bytes.len() - encode(&entries[2]).expect("a small entry").len();

        let mut last = bytes.clone();
        last[last_start + HEADER_BYTES + 3] ^= 0x10;
        let scanned = scan(&last).expect("a damaged last frame is a torn tail");
        assert_eq!(scanned.entries, entries[..2]);
        assert!(matches!(scanned.end, ScanEnd::TornTail { .. }));

        let mut middle = bytes;
        middle[first_len + HEADER_BYTES + 3] ^= 0x10;
        let error = scan(&middle).expect_err("a damaged middle frame is corruption");
        assert_eq!(error.offset, first_len);
        assert!(error.reason.contains("crc"), "{}", error.reason);
    }

    #[test]
    fn garbage_never_panics_nor_allocates_what_it_claims() {
        let mut bytes = vec![0u8; 64];
        // A claimed length past the end: torn.
        bytes[..4].copy_from_slice(&1_000u32.to_le_bytes());
        assert!(matches!(
            scan(&bytes).map(|scanned| scanned.end),
            Ok(ScanEnd::TornTail { dropped_bytes: 64 })
        ));
        // A good crc over a payload claiming a billion rows: corruption
        // (bytes follow) with no allocation of a billion rows.
        let mut payload = Vec::new();
        payload.extend_from_slice(&1u64.to_le_bytes());
        payload.extend_from_slice(&1u64.to_le_bytes());
        payload.extend_from_slice(&1_000_000_000u32.to_le_bytes());
        let mut frame = Vec::new();
        frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        frame.extend_from_slice(&payload);
        frame.extend(encode(&entry(2, 1)).expect("a small entry"));
        let error = scan(&frame).expect_err("a lying row count");
        assert!(error.reason.contains("rows claimed"), "{}", error.reason);
        for len in 0..40 {
            let noise: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let _ = scan(&noise);
        }
    }
}
