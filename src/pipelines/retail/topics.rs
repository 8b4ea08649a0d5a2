//! The retail demo's four topics (§A), each named like its relation: one JSON object
//! per message, fields named like the columns, keyed by product id. `diffmart produce` writes what the original Python
//! producers wrote: `json.dumps` of the fields in column order, timestamps as
//! `"YYYY-MM-DD HH:MM:SSZ"`.

use diffmart_dataflows::datum::{Record, RelationSpec, Row};
use diffmart_dataflows::retail::{CompetitorPrice, Purchase, Restock, WebClick};

use crate::json::{TimestampForm, python_object};
use crate::sources::kafka::topic::KafkaSource;

pub fn topics() -> Vec<KafkaSource> {
    [WebClick::spec(), CompetitorPrice::spec(), Purchase::spec(), Restock::spec()]
        .into_iter()
        .map(|spec| KafkaSource::json(spec.name, spec, "product_id").produced_as(producers_json))
        .collect()
}

fn producers_json(spec: &RelationSpec, row: &Row) -> Result<String, String> {
    python_object(spec, row, TimestampForm::SecondsZ)
}
