//! A topic diffmart reads, as a pipeline declares it: the relation it feeds, how a
//! message becomes rows, and how `diffmart produce` writes a row back as a message.

use diffmart_dataflows::datum::{Datum, RelationSpec, Row};
use serde_json::Value;

use crate::json;

/// One message, as a decoder sees it.
pub struct KafkaMessage<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// The message's timestamp (producer or broker time), milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
}

/// Turns a message into rows of the source's relation, or says why it cannot.
/// The rows are checked against the relation's types before they are applied;
/// a message is applied whole or not at all.
pub type Decoder = fn(&RelationSpec, &KafkaMessage<'_>) -> Result<Vec<Row>, String>;

/// Turns a row of the source's relation into the JSON `diffmart produce` writes, which
/// the decoder reads back as the same row (up to what the format keeps, e.g. whole seconds).
pub type Encoder = fn(&RelationSpec, &Row) -> Result<String, String>;

/// A topic feeding an input relation.
#[derive(Clone)]
pub struct KafkaSource {
    /// The topic's name, before `--kafka-topic-prefix`.
    pub topic: &'static str,
    /// The input relation its rows go to.
    pub relation: &'static RelationSpec,
    pub decode: Decoder,
    pub encode: Encoder,
    /// The column whose value keys `diffmart produce`'s messages, so one key's messages
    /// stay in one partition, in order (a table's primary key, for upserts).
    pub key_column: &'static str,
    /// Whether `diffmart produce` sets each message's timestamp to its event's time
    /// (for a decoder that reads it, see [`KafkaMessage::timestamp_ms`]).
    pub stamps_event_time: bool,
}

impl KafkaSource {
    /// One JSON object per message, fields named like the relation's columns (see
    /// [`crate::json`] for the accepted JSON of each column type); `produce` writes
    /// the columns with RFC 3339 timestamps.
    pub fn json(topic: &'static str, relation: &'static RelationSpec, key_column: &'static str) -> KafkaSource {
        KafkaSource {
            topic,
            relation,
            decode: json_columns,
            encode: |spec, row| Ok(Value::Object(json::row_to_object(spec, row)).to_string()),
            key_column,
            stamps_event_time: false,
        }
    }

    /// A source with its own decoder and encoder (other field names, several rows per message…).
    pub fn custom(
        topic: &'static str,
        relation: &'static RelationSpec,
        key_column: &'static str,
        decode: Decoder,
        encode: Encoder,
    ) -> KafkaSource {
        KafkaSource { topic, relation, decode, encode, key_column, stamps_event_time: false }
    }

    /// The same source, `diffmart produce` writing its rows with `encode` (the
    /// original producers' spelling of the same fields, say).
    pub fn produced_as(self, encode: Encoder) -> KafkaSource {
        KafkaSource { encode, ..self }
    }

    /// The same source, `diffmart produce` stamping each message with its event's time.
    pub fn stamped_with_event_time(self) -> KafkaSource {
        KafkaSource { stamps_event_time: true, ..self }
    }

    /// A row as `diffmart produce` writes it: the message's key and JSON.
    pub fn encode_row(&self, row: &Row) -> Result<(String, String), String> {
        let key = self
            .relation
            .columns
            .iter()
            .position(|c| c.name == self.key_column)
            .map(|i| key_text(&row[i]))
            .ok_or_else(|| format!("{}: no column {}", self.relation.name, self.key_column))?;
        Ok((key, (self.encode)(self.relation, row)?))
    }
}

/// The decoder of [`KafkaSource::json`].
pub fn json_columns(spec: &RelationSpec, message: &KafkaMessage<'_>) -> Result<Vec<Row>, String> {
    let object = json::parse_object(message.payload)?;
    Ok(vec![json::row_from_object(spec, &object)?])
}

/// A message key: text as is, NULL as empty, anything else as its JSON.
fn key_text(datum: &Datum) -> String {
    match datum {
        Datum::Text(s) => s.clone(),
        Datum::Null => String::new(),
        other => json::datum_to_json(other).to_string(),
    }
}
