//! The e-commerce events (§B): `user_events`, JSON objects named like the table's
//! columns (`event_data` any JSON value). The topic feeds a table: a message is an
//! upsert by `event_id`, which keys the messages.

use diffmart_dataflows::datum::Record;
use diffmart_dataflows::ecommerce::UserEvent;

use crate::sources::kafka::topic::KafkaSource;

pub fn topics() -> Vec<KafkaSource> {
    vec![KafkaSource::json("user_events", UserEvent::spec(), "event_id")]
}
