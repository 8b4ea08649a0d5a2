//! System relations: what the sources (Kafka, Postgres CDC) report about themselves.
//!
//! Two input relations and no views. The source code writes them through the
//! engine like any other input, so they are queryable over SQL and every
//! snapshot shows them consistent with the data they describe:
//!
//! - `diffmart_sources` (table, key `(kind, name, partition)`): one row per
//!   stream a source reads (a Kafka topic partition, a CDC slot), replaced
//!   (retract + insert) whenever its position, counters or status change;
//! - `diffmart_source_errors` (table, key `(kind, name, partition, error_number)`):
//!   the newest [`SOURCE_ERRORS_KEPT`] messages of each stream that could not be read
//!   or were refused. Every one is counted in its stream's `diffmart_sources.errors`;
//!   the writer deletes a stream's older rows as new ones come, so a source flooded
//!   with bad messages holds a bounded number of rows.

use serde::{Deserialize, Serialize};

use crate::PipelineConfig;
use crate::boundary::{Inputs, View};
use crate::datum::{ColumnType, Micros, Record, RelationSpec};
use crate::relation::relation;
use ColumnType::{Int32, Int64, Text, TimestampTz};

relation! {
    /// A `diffmart_sources` row: one stream of one source.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct SourceStatus: table "diffmart_sources" (primary_key = kind, name, partition) {
        /// `kafka`, `postgres-cdc`, …
        pub kind: String = Text,
        /// Kafka: the topic; CDC: the replication slot.
        pub name: String = Text,
        /// Kafka: the partition, or -1 for the topic as a whole before its partitions are
        /// known; sources without partitions use 0.
        pub partition: i32 = Int32,
        /// The input relation(s) the stream feeds.
        pub relation: Option<String> = Text,
        /// Which reader (one per timely worker) handles the stream.
        pub reader: Option<i32> = Int32,
        /// `connected`, `disconnected`, or `waiting` (e.g. for a topic to be created).
        pub status: String = Text,
        /// Kafka: the next offset to read, every message before it is applied;
        /// CDC: the last applied LSN as a number.
        pub position: Option<i64> = Int64,
        /// Kafka: the partition's high watermark, as last reported by the broker;
        /// CDC: the server's WAL position.
        pub high_watermark: Option<i64> = Int64,
        /// `high_watermark - position`, never negative.
        pub lag: Option<i64> = Int64,
        /// Messages read (good and bad).
        pub messages: i64 = Int64,
        /// Messages that could not be read (see `diffmart_source_errors`).
        pub errors: i64 = Int64,
        /// The latest connection or read problem.
        pub last_error: Option<String> = Text,
        /// When the row last changed (wall clock).
        pub updated_at: Micros = TimestampTz,
    }
}

/// How many `diffmart_source_errors` rows each stream keeps: its newest.
pub const SOURCE_ERRORS_KEPT: i64 = 1000;

relation! {
    /// A `diffmart_source_errors` row: one message that could not be read, or a value
    /// or event the source refused.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct SourceError: table "diffmart_source_errors" (primary_key = kind, name, partition, error_number) {
        pub kind: String = Text,
        pub name: String = Text,
        pub partition: i32 = Int32,
        /// The stream's `n`-th error, from 1: its `diffmart_sources.errors` once counted.
        pub error_number: i64 = Int64,
        /// Kafka: the message's offset; CDC: the change's LSN as a number.
        pub position: i64 = Int64,
        pub relation: Option<String> = Text,
        pub error: String = Text,
        /// The first bytes of the payload, as text (invalid UTF-8 replaced).
        pub payload: Option<String> = Text,
        /// When the error was seen (wall clock).
        pub error_time: Micros = TimestampTz,
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
            error_number: 1,
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
