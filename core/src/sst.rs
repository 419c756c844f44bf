//! Level-0 SSTs as real Parquet files.
//!
//! A flushed memtable becomes one arrow `RecordBatch` (series, ts, value,
//! sequence) written with arrow-rs's `ArrowWriter`; [`decode_rows`] reads a
//! file back with the Parquet reader, which is how the simulator's oracles
//! check that no acknowledged row was lost.

use std::sync::Arc;

use arrow_array::{Array, Float64Array, Int64Array, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::error::SstError;
use crate::memtable::Row;

/// Rows per row group; a flush of the standard workload fits in one.
pub const ROW_GROUP_ROWS: usize = 8192;

/// The SST schema, shared by writer and reader.
pub fn sst_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("series", DataType::Utf8, false),
        Field::new("ts", DataType::Int64, false),
        Field::new("value", DataType::Float64, false),
        Field::new("sequence", DataType::UInt64, false),
    ]))
}

/// Builds the arrow batch holding `rows`, in order.
pub fn rows_to_batch(rows: &[Row]) -> Result<RecordBatch, SstError> {
    let series = StringArray::from_iter_values(rows.iter().map(|r| r.series.as_str()));
    let ts = Int64Array::from_iter_values(rows.iter().map(|r| r.ts));
    let value = Float64Array::from_iter_values(rows.iter().map(|r| r.value));
    let sequence = UInt64Array::from_iter_values(rows.iter().map(|r| r.sequence));
    RecordBatch::try_new(
        sst_schema(),
        vec![
            Arc::new(series),
            Arc::new(ts),
            Arc::new(value),
            Arc::new(sequence),
        ],
    )
    .map_err(|e| SstError::Encode {
        path: String::new(),
        reason: e.to_string(),
    })
}

/// Writer settings for our schema. Timestamps, values and sequences are
/// (nearly) unique per flush, so dictionary encoding them only costs time:
/// the writer builds a dictionary, then falls back to plain. Without it a
/// flush encodes in ~60% of the time of a default `ArrowWriter` and the
/// file is smaller (`flushsim bench`, BENCHMARKS.md). Series names repeat
/// and keep their dictionary. Statistics are per column chunk: a level-0
/// file is one row group read whole.
fn sst_writer_properties() -> WriterProperties {
    let plain = |column: &str| ColumnPath::from(column);
    WriterProperties::builder()
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_column_dictionary_enabled(plain("ts"), false)
        .set_column_dictionary_enabled(plain("value"), false)
        .set_column_dictionary_enabled(plain("sequence"), false)
        .build()
}

/// Encodes one batch as a complete Parquet file.
pub fn encode_batch(path: &str, batch: &RecordBatch) -> Result<Bytes, SstError> {
    let encode_error = |e: parquet::errors::ParquetError| SstError::Encode {
        path: path.to_string(),
        reason: e.to_string(),
    };
    let props = sst_writer_properties();
    let mut buffer = Vec::with_capacity(batch.get_array_memory_size() / 2 + 1024);
    let mut writer =
        ArrowWriter::try_new(&mut buffer, batch.schema(), Some(props)).map_err(encode_error)?;
    writer.write(batch).map_err(encode_error)?;
    writer.close().map_err(encode_error)?;
    Ok(Bytes::from(buffer))
}

/// Encodes `rows` as a Parquet SST destined for `path`.
pub fn encode_rows(path: &str, rows: &[Row]) -> Result<Bytes, SstError> {
    let batch = rows_to_batch(rows).map_err(|e| with_path(e, path))?;
    encode_batch(path, &batch)
}

fn with_path(error: SstError, path: &str) -> SstError {
    match error {
        SstError::Encode { reason, .. } => SstError::Encode {
            path: path.to_string(),
            reason,
        },
        SstError::Decode { reason, .. } => SstError::Decode {
            path: path.to_string(),
            reason,
        },
    }
}

/// Reads every row of a Parquet SST back. A truncated or foreign file is a
/// [`SstError::Decode`], never a panic.
pub fn decode_rows(path: &str, bytes: Bytes) -> Result<Vec<Row>, SstError> {
    let decode_error = |reason: String| SstError::Decode {
        path: path.to_string(),
        reason,
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| decode_error(e.to_string()))?
        .build()
        .map_err(|e| decode_error(e.to_string()))?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| decode_error(e.to_string()))?;
        append_batch_rows(&batch, &mut rows).map_err(decode_error)?;
    }
    Ok(rows)
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, String> {
    let array = batch
        .column_by_name(name)
        .ok_or_else(|| format!("missing column {name}"))?;
    if array.null_count() > 0 {
        return Err(format!("column {name} has nulls"));
    }
    array
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| format!("column {name} has type {}", array.data_type()))
}

fn append_batch_rows(batch: &RecordBatch, rows: &mut Vec<Row>) -> Result<(), String> {
    let series = column::<StringArray>(batch, "series")?;
    let ts = column::<Int64Array>(batch, "ts")?;
    let value = column::<Float64Array>(batch, "value")?;
    let sequence = column::<UInt64Array>(batch, "sequence")?;
    rows.reserve(batch.num_rows());
    for index in 0..batch.num_rows() {
        rows.push(Row {
            series: series.value(index).to_string(),
            ts: ts.value(index),
            value: value.value(index),
            sequence: sequence.value(index),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(series_count: usize, per_series: usize) -> Vec<Row> {
        let mut rows = Vec::new();
        let mut sequence = 1;
        for s in 0..series_count {
            for t in 0..per_series {
                rows.push(Row {
                    series: format!("host-{s}"),
                    ts: 1_000 + t as i64,
                    value: (s * 100 + t) as f64 / 3.0,
                    sequence,
                });
                sequence += 1;
            }
        }
        rows
    }

    #[test]
    fn round_trip_several_series() {
        let original = rows(5, 40);
        let bytes = encode_rows("t.parquet", &original).unwrap();
        assert_eq!(&bytes[..4], b"PAR1");
        assert_eq!(decode_rows("t.parquet", bytes).unwrap(), original);
    }

    #[test]
    fn round_trip_empty() {
        let bytes = encode_rows("e.parquet", &[]).unwrap();
        assert_eq!(decode_rows("e.parquet", bytes).unwrap(), Vec::<Row>::new());
    }

    fn metadata(bytes: Bytes) -> parquet::file::metadata::ParquetMetaData {
        ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .metadata()
            .as_ref()
            .clone()
    }

    #[test]
    fn round_trip_spans_row_groups() {
        let original = rows(3, ROW_GROUP_ROWS);
        let bytes = encode_rows("big.parquet", &original).unwrap();
        let groups = metadata(bytes.clone()).num_row_groups();
        assert_eq!(groups, 3, "expected {ROW_GROUP_ROWS} rows per row group");
        assert_eq!(decode_rows("big.parquet", bytes).unwrap(), original);
    }

    /// The writer settings `flushsim bench` measured as faster than the
    /// default: unique-per-row columns plain, series with a dictionary,
    /// statistics per column chunk (a level-0 file is read whole).
    #[test]
    fn only_the_series_column_is_dictionary_encoded() {
        let meta = metadata(encode_rows("d.parquet", &rows(4, 50)).unwrap());
        let group = meta.row_group(0);
        for column in group.columns() {
            let name = column.column_path().string();
            let has_dictionary = column.dictionary_page_offset().is_some();
            assert_eq!(
                has_dictionary,
                name == "series",
                "column {name}: expected a dictionary only for series, saw dictionary={has_dictionary}"
            );
            assert!(
                column.statistics().is_some(),
                "column {name}: expected chunk statistics, saw none"
            );
        }
        assert_eq!(group.columns().len(), 4);
    }

    #[test]
    fn truncated_file_is_a_decode_error() {
        let bytes = encode_rows("t.parquet", &rows(2, 10)).unwrap();
        for cut in [0, 3, bytes.len() / 2, bytes.len() - 1] {
            let err = decode_rows("t.parquet", bytes.slice(..cut)).unwrap_err();
            assert!(
                matches!(&err, SstError::Decode { path, .. } if path == "t.parquet"),
                "{err:?}"
            );
        }
    }
}
