//! System relations: what the sources (Kafka, Postgres CDC) report about themselves.
//!
//! Two input relations and no views. The source code writes them through the
//! engine like any other input, so they are queryable over SQL and every
//! snapshot shows them consistent with the data they describe:
//!
//! - `diffmart_sources` (table, key `(kind, name, partition)`): one row per
//!   stream a source reads (a Kafka topic partition, a CDC slot), replaced
//!   (retract + insert) whenever its position, counters or status change;
//! - `diffmart_source_errors` (an event stream, kept for the `--retention`
//!   window of `error_time`): one row per message that could not be read.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use crate::PipelineConfig;
use crate::boundary::{Inputs, View};
use crate::datum::{
    Column, ColumnType, Datum, Micros, Record, RelationKind, RelationSpec, Row, RowError, RowReader, col, col_not_null,
};
use ColumnType::{Int32, Int64, Text, TimestampTz};

/// A `diffmart_sources` row: one stream of one source.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SourceStatus {
    /// `kafka`, `postgres-cdc`, …
    pub kind: String,
    /// Kafka: the topic; CDC: the replication slot.
    pub name: String,
    /// Kafka: the partition, or -1 for the topic as a whole before its partitions are
    /// known; sources without partitions use 0.
    pub partition: i32,
    /// The input relation(s) the stream feeds.
    pub relation: Option<String>,
    /// Which reader (one per timely worker) handles the stream.
    pub reader: Option<i32>,
    /// `connected`, `disconnected`, or `waiting` (e.g. for a topic to be created).
    pub status: String,
    /// Kafka: the next offset to read, every message before it is applied;
    /// CDC: the last applied LSN as a number.
    pub position: Option<i64>,
    /// Kafka: the partition's high watermark, as last reported by the broker;
    /// CDC: the server's WAL position.
    pub high_watermark: Option<i64>,
    /// `high_watermark - position`, never negative.
    pub lag: Option<i64>,
    /// Messages read (good and bad).
    pub messages: i64,
    /// Messages that could not be read (see `diffmart_source_errors`).
    pub errors: i64,
    /// The latest connection or read problem.
    pub last_error: Option<String>,
    /// When the row last changed (wall clock).
    pub updated_at: Micros,
}

/// A `diffmart_source_errors` row: one message that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SourceError {
    pub kind: String,
    pub name: String,
    pub partition: i32,
    /// Kafka: the message's offset; CDC: its LSN.
    pub position: i64,
    pub relation: Option<String>,
    pub error: String,
    /// The first bytes of the payload, as text (invalid UTF-8 replaced).
    pub payload: Option<String>,
    /// When the error was seen (wall clock).
    pub error_time: Micros,
}

fn status_columns() -> Vec<Column> {
    vec![
        col_not_null("kind", Text),
        col_not_null("name", Text),
        col_not_null("partition", Int32),
        col("relation", Text),
        col("reader", Int32),
        col_not_null("status", Text),
        col("position", Int64),
        col("high_watermark", Int64),
        col("lag", Int64),
        col_not_null("messages", Int64),
        col_not_null("errors", Int64),
        col("last_error", Text),
        col_not_null("updated_at", TimestampTz),
    ]
}

static SOURCES: LazyLock<RelationSpec> = LazyLock::new(|| RelationSpec {
    name: "diffmart_sources",
    kind: RelationKind::Table { primary_key: vec![0, 1, 2] },
    columns: status_columns(),
});

/// Index of `error_time` in `diffmart_source_errors`.
const ERROR_TIME_COLUMN: usize = 7;

static SOURCE_ERRORS: LazyLock<RelationSpec> = LazyLock::new(|| RelationSpec {
    name: "diffmart_source_errors",
    kind: RelationKind::Source { event_time_column: ERROR_TIME_COLUMN },
    columns: vec![
        col_not_null("kind", Text),
        col_not_null("name", Text),
        col_not_null("partition", Int32),
        col_not_null("position", Int64),
        col("relation", Text),
        col_not_null("error", Text),
        col("payload", Text),
        col_not_null("error_time", TimestampTz),
    ],
});

impl Record for SourceStatus {
    fn spec() -> &'static RelationSpec {
        &SOURCES
    }
    fn to_row(&self) -> Row {
        vec![
            self.kind.as_str().into(),
            self.name.as_str().into(),
            self.partition.into(),
            self.relation.clone().into(),
            self.reader.into(),
            self.status.as_str().into(),
            self.position.into(),
            self.high_watermark.into(),
            self.lag.into(),
            self.messages.into(),
            self.errors.into(),
            self.last_error.clone().into(),
            Datum::Timestamp(self.updated_at),
        ]
    }
    fn read(r: &RowReader<'_>) -> Result<Self, RowError> {
        Ok(SourceStatus {
            kind: r.text(0)?,
            name: r.text(1)?,
            partition: r.i32(2)?,
            relation: r.opt_text(3)?,
            reader: r.opt_i32(4)?,
            status: r.text(5)?,
            position: r.opt_i64(6)?,
            high_watermark: r.opt_i64(7)?,
            lag: r.opt_i64(8)?,
            messages: r.i64(9)?,
            errors: r.i64(10)?,
            last_error: r.opt_text(11)?,
            updated_at: r.timestamp(12)?,
        })
    }
}

impl Record for SourceError {
    fn spec() -> &'static RelationSpec {
        &SOURCE_ERRORS
    }
    fn to_row(&self) -> Row {
        vec![
            self.kind.as_str().into(),
            self.name.as_str().into(),
            self.partition.into(),
            self.position.into(),
            self.relation.clone().into(),
            self.error.as_str().into(),
            self.payload.clone().into(),
            Datum::Timestamp(self.error_time),
        ]
    }
    fn read(r: &RowReader<'_>) -> Result<Self, RowError> {
        Ok(SourceError {
            kind: r.text(0)?,
            name: r.text(1)?,
            partition: r.i32(2)?,
            position: r.i64(3)?,
            relation: r.opt_text(4)?,
            error: r.text(5)?,
            payload: r.opt_text(6)?,
            error_time: r.timestamp(ERROR_TIME_COLUMN)?,
        })
    }
}

pub fn input_specs() -> Vec<&'static RelationSpec> {
    vec![SourceStatus::spec(), SourceError::spec()]
}

pub fn view_specs() -> Vec<&'static RelationSpec> {
    Vec::new()
}

/// No views: the system relations are only read, and the dataflow takes no input for them.
pub fn build<'s>(_config: &PipelineConfig, inputs: &mut Inputs<'s>) -> Vec<View<'s>> {
    inputs.unread(SourceStatus::spec());
    inputs.unread(SourceError::spec());
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datum::validate_row;

    #[test]
    fn rows_round_trip_and_validate() {
        let status = SourceStatus {
            kind: "kafka".into(),
            name: "web_clicks".into(),
            partition: 2,
            relation: Some("web_clicks".into()),
            reader: Some(1),
            status: "connected".into(),
            position: Some(10),
            high_watermark: Some(12),
            lag: Some(2),
            messages: 10,
            errors: 1,
            last_error: None,
            updated_at: 1_700_000_000_000_000,
        };
        validate_row(SourceStatus::spec(), &status.to_row()).unwrap();
        assert_eq!(SourceStatus::from_row(&status.to_row()).unwrap(), status);
        let error = SourceError {
            kind: "kafka".into(),
            name: "web_clicks".into(),
            partition: 2,
            position: 7,
            relation: Some("web_clicks".into()),
            error: "invalid JSON".into(),
            payload: Some("{oops".into()),
            error_time: 1_700_000_000_000_000,
        };
        validate_row(SourceError::spec(), &error.to_row()).unwrap();
        assert_eq!(SourceError::from_row(&error.to_row()).unwrap(), error);
    }
}
