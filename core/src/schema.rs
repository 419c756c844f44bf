//! A region's schema, as mito2 shapes a time series: one tag (`series`,
//! the primary key), the time index (`ts`, milliseconds), the base field
//! (`value`) and the nullable fields alters added, in the order they came.
//! A version counts the alters.
//!
//! Why it matters to flushing: a memtable holds rows of one schema (an
//! alter waits for the region's memtables to be flushed), and a flush
//! writes each memtable with the schema it was written under. SSTs of an
//! older version lack the newer columns; reading one, those are null.
//! Every SST also carries mito2's internal columns (`__sequence`,
//! `__op_type`) and its schema version in the Parquet key-value metadata,
//! so any Parquet reader sees a proper time series.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// The tag column: the series a row belongs to.
pub const TAG: &str = "series";
/// The time index column.
pub const TIME_INDEX: &str = "ts";
/// The unit of the time index: a row's `ts` counts milliseconds.
pub const TIME_UNIT: TimeUnit = TimeUnit::Millisecond;
/// The field every schema has.
pub const BASE_FIELD: &str = "value";
/// mito2's internal column: the row's sequence.
pub const SEQUENCE: &str = "__sequence";
/// mito2's internal column: the kind of operation (we only ever put).
pub const OP_TYPE: &str = "__op_type";
/// `__op_type` of a put, as mito2 numbers it.
pub const OP_TYPE_PUT: u8 = 1;
/// Parquet key-value metadata key holding the SST's schema version.
pub const SCHEMA_VERSION_KEY: &str = "flushsim.schema_version";

/// A region's columns at one version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegionSchema {
    pub version: u64,
    /// Nullable `Float64` fields added by alters, oldest first.
    pub added_fields: Vec<String>,
}

/// Why an alter's column cannot be added.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("column name {name:?} is empty, too long, or not [A-Za-z0-9_]")]
    BadName { name: String },
    #[error("column {name} is a built-in column")]
    Reserved { name: String },
}

impl RegionSchema {
    /// The schema after an alter to `version` adding `add_field`, or
    /// `None` if it changes nothing. As in mito2 the request's version is
    /// not checked against the region's: a field not there yet is added
    /// whatever the version (an Ok alter means the field exists), one that
    /// is there is not added twice (a retried alter), and the version only
    /// moves forward.
    pub fn altered(&self, version: u64, add_field: Option<&str>) -> Option<RegionSchema> {
        let new_field = add_field.filter(|name| !self.has_field(name));
        if version <= self.version && new_field.is_none() {
            return None;
        }
        let mut next = RegionSchema {
            version: self.version.max(version),
            added_fields: self.added_fields.clone(),
        };
        next.added_fields.extend(new_field.map(str::to_string));
        Some(next)
    }

    pub fn has_field(&self, name: &str) -> bool {
        self.added_fields.iter().any(|field| field == name)
    }

    /// The arrow schema of this version's SSTs: tag, time index, base
    /// field, added fields (nullable), then the internal columns. Arrow
    /// wants its metadata in a `HashMap`; with one key there is no
    /// iteration order to leak into a trace.
    #[allow(clippy::disallowed_types)]
    pub fn arrow_schema(&self) -> SchemaRef {
        use std::collections::HashMap;

        let mut fields = vec![
            Field::new(TAG, DataType::Utf8, false),
            Field::new(TIME_INDEX, DataType::Timestamp(TIME_UNIT, None), false),
            Field::new(BASE_FIELD, DataType::Float64, false),
        ];
        fields.extend(
            self.added_fields
                .iter()
                .map(|name| Field::new(name, DataType::Float64, true)),
        );
        fields.push(Field::new(SEQUENCE, DataType::UInt64, false));
        fields.push(Field::new(OP_TYPE, DataType::UInt8, false));
        let metadata = HashMap::from([(SCHEMA_VERSION_KEY.to_string(), self.version.to_string())]);
        Arc::new(Schema::new_with_metadata(fields, metadata))
    }
}

/// Checks a column name an alter wants to add.
pub fn check_field_name(name: &str) -> Result<(), SchemaError> {
    let well_formed = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_');
    if !well_formed {
        return Err(SchemaError::BadName {
            name: name.to_string(),
        });
    }
    if [TAG, TIME_INDEX, BASE_FIELD].contains(&name) || name.starts_with("__") {
        return Err(SchemaError::Reserved {
            name: name.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alter_adds_a_field_once_and_never_goes_back() {
        let v0 = RegionSchema::default();
        let v2 = v0.altered(2, Some("cpu")).expect("newer");
        assert_eq!(v2.added_fields, vec!["cpu".to_string()]);
        assert_eq!(v2.altered(2, Some("cpu")), None, "retried");
        assert_eq!(v2.altered(1, None), None, "older, adds nothing");
        let stale = v2.altered(1, Some("mem")).expect("a new field");
        assert_eq!((stale.version, stale.added_fields.len()), (2, 2));
        let v3 = v2.altered(3, Some("cpu")).expect("newer");
        assert_eq!((v3.version, v3.added_fields.len()), (3, 1));
    }

    #[test]
    fn the_arrow_schema_has_a_timestamp_index_internal_columns_and_the_version() {
        let schema = RegionSchema {
            version: 4,
            added_fields: vec!["cpu".to_string()],
        }
        .arrow_schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            ["series", "ts", "value", "cpu", "__sequence", "__op_type"]
        );
        assert_eq!(
            schema.field(1).data_type(),
            &DataType::Timestamp(TimeUnit::Millisecond, None)
        );
        assert!(schema.field(3).is_nullable());
        assert_eq!(schema.metadata()[SCHEMA_VERSION_KEY], "4");
    }

    #[test]
    fn reserved_and_malformed_names_are_refused() {
        for name in ["", "ts", "value", "series", "__sequence", "a b", "é"] {
            assert!(check_field_name(name).is_err(), "{name:?}");
        }
        assert!(check_field_name("cpu_2").is_ok());
    }
}
