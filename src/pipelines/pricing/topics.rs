//! Pricing's topic (§E): `product-events`, one JSON object per event named like
//! `product_events`' columns, `{"event_type", "product_id", "user_id", "timestamp":
//! epoch ms, "price"}`, keyed by product. Invalid events fail `product_events`' CHECK
//! and are counted as bad messages.

use diffmart_dataflows::datum::Record;
use diffmart_dataflows::pricing::ProductEvent;
use serde_json::Value;

use crate::json::{TimestampForm, row_to_object_as};
use crate::sources::kafka::topic::KafkaSource;

pub fn topics() -> Vec<KafkaSource> {
    vec![KafkaSource::json("product-events", ProductEvent::spec(), "product_id").produced_as(|spec, row| {
        Ok(Value::Object(row_to_object_as(spec, row, TimestampForm::EpochMillis)).to_string())
    })]
}
