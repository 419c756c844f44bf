//! Level-0 SSTs as real Parquet files.
//!
//! A flushed memtable becomes one arrow `RecordBatch` in the columns of
//! the schema it was written under (tag, millisecond time index, fields,
//! then mito2's `__sequence` and `__op_type`; the schema version in the
//! file's metadata, see [`crate::schema`]) written with arrow-rs's
//! `ArrowWriter`; [`decode_sst`] reads a file back with the Parquet reader,
//! which is how the simulator's oracles check that no acknowledged row was
//! lost.

use std::sync::Arc;

use arrow_array::builder::Float64Builder;
use arrow_array::types::Int32Type;
use arrow_array::{
    Array, ArrayRef, DictionaryArray, Float64Array, RecordBatch, StringArray,
    TimestampMillisecondArray, UInt64Array, UInt8Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::error::SstError;
use crate::row::{FieldValue, Row};
use crate::schema::{
    RegionSchema, BASE_FIELD, OP_TYPE, OP_TYPE_PUT, SCHEMA_VERSION_KEY, SEQUENCE, TAG, TIME_INDEX,
    TIME_UNIT,
};

/// Rows per row group; a flush of the standard workload fits in one.
pub const ROW_GROUP_ROWS: usize = 8192;

/// Builds the arrow batch holding `rows`, in order, in `schema`'s columns.
/// A row setting a field `schema` does not have is an error: a memtable's
/// rows are all of its schema, and a silent drop would lose a value.
pub fn rows_to_batch(schema: &RegionSchema, rows: &[Row]) -> Result<RecordBatch, SstError> {
    let encode_error = |reason: String| SstError::Encode {
        path: String::new(),
        reason,
    };
    if let Some(field) = rows
        .iter()
        .flat_map(|row| &row.fields)
        .find(|field| !schema.has_field(&field.name))
    {
        return Err(encode_error(format!(
            "a row sets field {}, not in schema version {}",
            field.name, schema.version
        )));
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| &*r.series),
        )),
        Arc::new(TimestampMillisecondArray::from_iter_values(
            rows.iter().map(|r| r.ts),
        )),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.value))),
    ];
    for name in &schema.added_fields {
        let mut builder = Float64Builder::with_capacity(rows.len());
        for row in rows {
            builder.append_option(row.field(name));
        }
        columns.push(Arc::new(builder.finish()));
    }
    columns.push(Arc::new(UInt64Array::from_iter_values(
        rows.iter().map(|r| r.sequence),
    )));
    columns.push(Arc::new(UInt8Array::from_iter_values(
        rows.iter().map(|_| OP_TYPE_PUT),
    )));
    RecordBatch::try_new(schema.arrow_schema(), columns).map_err(|e| encode_error(e.to_string()))
}

/// Writer settings for our schema. Timestamps, values and sequences are
/// (nearly) unique per flush, so dictionary encoding them only costs time:
/// the writer builds a dictionary, then falls back to plain. Without it a
/// flush encodes in ~60% of the time of a default `ArrowWriter` and the
/// file is smaller (`flushsim bench`, BENCHMARKS.md). Series names and op
/// types repeat and keep their dictionary. Statistics are per column
/// chunk: a level-0 file is one row group read whole.
fn sst_writer_properties(schema: &RegionSchema) -> WriterProperties {
    let plain = |column: &str| ColumnPath::from(column);
    let mut builder = WriterProperties::builder()
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_column_dictionary_enabled(plain(TIME_INDEX), false)
        .set_column_dictionary_enabled(plain(BASE_FIELD), false)
        .set_column_dictionary_enabled(plain(SEQUENCE), false);
    for name in &schema.added_fields {
        builder = builder.set_column_dictionary_enabled(plain(name), false);
    }
    builder.build()
}

/// Encodes one batch as a complete Parquet file.
pub fn encode_batch(path: &str, batch: &RecordBatch) -> Result<Bytes, SstError> {
    let encode_error = |e: parquet::errors::ParquetError| SstError::Encode {
        path: path.to_string(),
        reason: e.to_string(),
    };
    let schema = schema_of(batch.schema_ref()).unwrap_or_default();
    let props = sst_writer_properties(&schema);
    let mut buffer = Vec::with_capacity(batch.get_array_memory_size() / 2 + 1024);
    let mut writer =
        ArrowWriter::try_new(&mut buffer, batch.schema(), Some(props)).map_err(encode_error)?;
    writer.write(batch).map_err(encode_error)?;
    writer.close().map_err(encode_error)?;
    Ok(Bytes::from(buffer))
}

/// Encodes `rows` (all of `schema`) as a Parquet SST destined for `path`.
pub fn encode_rows(path: &str, schema: &RegionSchema, rows: &[Row]) -> Result<Bytes, SstError> {
    let batch = rows_to_batch(schema, rows).map_err(|e| with_path(e, path))?;
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

/// An SST read back: the schema it was written with and its rows (a row
/// holds the added fields that are not null in the file).
#[derive(Clone, Debug, PartialEq)]
pub struct DecodedSst {
    pub schema: RegionSchema,
    pub rows: Vec<Row>,
}

/// Reads every row of a Parquet SST back. A truncated or foreign file is a
/// [`SstError::Decode`], never a panic.
pub fn decode_rows(path: &str, bytes: Bytes) -> Result<Vec<Row>, SstError> {
    decode_sst(path, bytes).map(|sst| sst.rows)
}

/// Reads a Parquet SST back with its schema: the version from the file's
/// metadata, the added fields from its columns, which must be ours (a
/// millisecond time index, the internal columns, puts only).
pub fn decode_sst(path: &str, bytes: Bytes) -> Result<DecodedSst, SstError> {
    let decode_error = |reason: String| SstError::Decode {
        path: path.to_string(),
        reason,
    };
    let parquet_error = |e: parquet::errors::ParquetError| decode_error(e.to_string());
    let written =
        ArrowReaderMetadata::load(&bytes, ArrowReaderOptions::new()).map_err(parquet_error)?;
    let schema = schema_of(written.schema()).map_err(decode_error)?;
    let options = ArrowReaderOptions::new().with_schema(series_as_dictionary(written.schema()));
    let metadata =
        ArrowReaderMetadata::try_new(written.metadata().clone(), options).map_err(parquet_error)?;
    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(bytes, metadata)
        .build()
        .map_err(parquet_error)?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| decode_error(e.to_string()))?;
        append_batch_rows(&batch, &schema, &mut rows).map_err(decode_error)?;
    }
    Ok(DecodedSst { schema, rows })
}

/// `written` with the series column read as a dictionary: the file stores
/// it dictionary-encoded (a region has few series), and reading it so
/// hands each row a key into the few names instead of a copy of its name
/// to look up. Anything that is not our string series column stays as
/// written (and fails where the rows are read, with its type named).
fn series_as_dictionary(written: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = written
        .fields()
        .iter()
        .map(|field| {
            let is_series = field.name() == TAG && field.data_type() == &DataType::Utf8;
            let field = field.as_ref().clone();
            if is_series {
                let dictionary =
                    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
                field.with_data_type(dictionary)
            } else {
                field
            }
        })
        .collect();
    Arc::new(Schema::new_with_metadata(
        fields,
        written.metadata().clone(),
    ))
}

/// The region schema an SST's arrow schema stands for.
fn schema_of(arrow: &arrow_schema::Schema) -> Result<RegionSchema, String> {
    let version = arrow
        .metadata()
        .get(SCHEMA_VERSION_KEY)
        .ok_or_else(|| format!("no {SCHEMA_VERSION_KEY} in the file's metadata"))?
        .parse::<u64>()
        .map_err(|e| format!("{SCHEMA_VERSION_KEY}: {e}"))?;
    let time_index = arrow
        .field_with_name(TIME_INDEX)
        .map_err(|_| format!("missing column {TIME_INDEX}"))?;
    if time_index.data_type() != &DataType::Timestamp(TIME_UNIT, None) {
        return Err(format!(
            "time index {TIME_INDEX} has type {}, expected a millisecond timestamp",
            time_index.data_type()
        ));
    }
    let fixed = [TAG, TIME_INDEX, BASE_FIELD, SEQUENCE, OP_TYPE];
    let added_fields = arrow
        .fields()
        .iter()
        .filter(|field| !fixed.contains(&field.name().as_str()))
        .map(|field| match field.data_type() {
            DataType::Float64 if field.is_nullable() => Ok(field.name().clone()),
            other => Err(format!("added field {} has type {other}", field.name())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RegionSchema {
        version,
        added_fields,
    })
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, String> {
    let array = batch
        .column_by_name(name)
        .ok_or_else(|| format!("missing column {name}"))?;
    if array.null_count() > 0 {
        return Err(format!("column {name} has nulls"));
    }
    typed(array, name)
}

fn typed<'a, T: 'static>(array: &'a ArrayRef, name: &str) -> Result<&'a T, String> {
    array
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| format!("column {name} has type {}", array.data_type()))
}

fn append_batch_rows(
    batch: &RecordBatch,
    schema: &RegionSchema,
    rows: &mut Vec<Row>,
) -> Result<(), String> {
    let series = column::<DictionaryArray<Int32Type>>(batch, TAG)?;
    // Each name once per batch, shared by the rows that carry it.
    let series_names = typed::<StringArray>(series.values(), TAG)?;
    if series_names.null_count() > 0 {
        return Err(format!("column {TAG} has nulls"));
    }
    let names: Vec<Arc<str>> = series_names
        .iter()
        .map(|name| Arc::from(name.unwrap_or_default()))
        .collect();
    let ts = column::<TimestampMillisecondArray>(batch, TIME_INDEX)?;
    let value = column::<Float64Array>(batch, BASE_FIELD)?;
    let sequence = column::<UInt64Array>(batch, SEQUENCE)?;
    let op_type = column::<UInt8Array>(batch, OP_TYPE)?;
    let added = schema
        .added_fields
        .iter()
        .map(|name| {
            let array = batch
                .column_by_name(name)
                .ok_or_else(|| format!("missing column {name}"))?;
            Ok((
                Arc::<str>::from(name.as_str()),
                typed::<Float64Array>(array, name)?,
            ))
        })
        .collect::<Result<Vec<_>, String>>()?;
    rows.reserve(batch.num_rows());
    for index in 0..batch.num_rows() {
        if op_type.value(index) != OP_TYPE_PUT {
            return Err(format!(
                "row {index} has {OP_TYPE} {}, expected a put",
                op_type.value(index)
            ));
        }
        let fields = added
            .iter()
            .filter(|(_, array)| array.is_valid(index))
            .map(|(name, array)| FieldValue {
                name: name.clone(),
                value: array.value(index),
            })
            .collect();
        let key = series.keys().value(index);
        let series = usize::try_from(key)
            .ok()
            .and_then(|key| names.get(key))
            .ok_or_else(|| format!("row {index}: {TAG} key {key} names no series"))?
            .clone();
        rows.push(Row {
            series,
            ts: ts.value(index),
            value: value.value(index),
            sequence: sequence.value(index),
            fields,
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
                rows.push(Row::new(
                    format!("host-{s}"),
                    1_000 + t as i64,
                    (s * 100 + t) as f64 / 3.0,
                    sequence,
                ));
                sequence += 1;
            }
        }
        rows
    }

    #[test]
    fn round_trip_several_series() {
        let original = rows(5, 40);
        let bytes = encode_rows("t.parquet", &RegionSchema::default(), &original).unwrap();
        assert_eq!(&bytes[..4], b"PAR1");
        assert_eq!(decode_rows("t.parquet", bytes).unwrap(), original);
    }

    #[test]
    fn round_trip_empty() {
        let bytes = encode_rows("e.parquet", &RegionSchema::default(), &[]).unwrap();
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
        let bytes = encode_rows("big.parquet", &RegionSchema::default(), &original).unwrap();
        let groups = metadata(bytes.clone()).num_row_groups();
        assert_eq!(groups, 3, "expected {ROW_GROUP_ROWS} rows per row group");
        assert_eq!(decode_rows("big.parquet", bytes).unwrap(), original);
    }

    /// The writer settings `flushsim bench` measured as faster than the
    /// default: unique-per-row columns plain, series with a dictionary,
    /// statistics per column chunk (a level-0 file is read whole).
    #[test]
    fn only_the_series_column_is_dictionary_encoded() {
        let meta =
            metadata(encode_rows("d.parquet", &RegionSchema::default(), &rows(4, 50)).unwrap());
        let group = meta.row_group(0);
        for column in group.columns() {
            let name = column.column_path().string();
            let has_dictionary = column.dictionary_page_offset().is_some();
            assert_eq!(
                has_dictionary,
                name == "series" || name == "__op_type",
                "column {name}: expected a dictionary only for series and op types, saw dictionary={has_dictionary}"
            );
            assert!(
                column.statistics().is_some(),
                "column {name}: expected chunk statistics, saw none"
            );
        }
        assert_eq!(group.columns().len(), 5);
    }

    /// An added field is a nullable column: rows that set it read back
    /// with their value, the others without; the file says its version.
    #[test]
    fn added_fields_round_trip_with_nulls_and_the_schema_version() {
        let schema = RegionSchema {
            version: 3,
            added_fields: vec!["cpu".to_string(), "mem".to_string()],
        };
        let mut original = rows(2, 3);
        original[1].fields.push(FieldValue {
            name: "mem".into(),
            value: 0.5,
        });
        original[4].fields.push(FieldValue {
            name: "cpu".into(),
            value: 7.0,
        });
        let bytes = encode_rows("f.parquet", &schema, &original).unwrap();
        let decoded = decode_sst("f.parquet", bytes).unwrap();
        assert_eq!(decoded.schema, schema);
        assert_eq!(decoded.rows, original);
    }

    #[test]
    fn a_row_with_a_field_outside_the_schema_is_refused() {
        let mut original = rows(1, 1);
        original[0].fields.push(FieldValue {
            name: "cpu".into(),
            value: 1.0,
        });
        let error = encode_rows("x.parquet", &RegionSchema::default(), &original).unwrap_err();
        assert!(error.to_string().contains("not in schema"), "{error}");
    }

    #[test]
    fn truncated_file_is_a_decode_error() {
        let bytes = encode_rows("t.parquet", &RegionSchema::default(), &rows(2, 10)).unwrap();
        for cut in [0, 3, bytes.len() / 2, bytes.len() - 1] {
            let err = decode_rows("t.parquet", bytes.slice(..cut)).unwrap_err();
            assert!(
                matches!(&err, SstError::Decode { path, .. } if path == "t.parquet"),
                "{err:?}"
            );
        }
    }
}
