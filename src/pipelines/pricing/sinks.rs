//! Pricing's sink (§E): every row of `price_updates` (one per price change) to
//! `price-updates`.

use diffmart_dataflows::datum::{RelationSpec, Row};
use diffmart_dataflows::pricing::PriceUpdate;
use serde_json::Value;

use crate::sinks::kafka::{KafkaSink, SinkFormat};

/// `price_updates` as `{"product_id", "new_price", "timestamp"}` (epoch seconds), keyed
/// by product so a product's changes stay in order in one partition.
pub fn price_updates_sink(topic: &str) -> KafkaSink {
    KafkaSink {
        relation: PriceUpdate::spec().name.into(),
        topic: topic.into(),
        format: SinkFormat::Inserts(encode_price_update),
        key_column: Some(0),
    }
}

fn encode_price_update(_spec: &RelationSpec, row: &Row) -> Value {
    match PriceUpdate::from_row(row) {
        Ok(update) => update.to_json(),
        // The relation's rows are built from `PriceUpdate`s: this cannot fail.
        Err(e) => panic!("a price_updates row that is not a price update: {e}"),
    }
}
