//! Sinks: relations' changes leaving diffmart, fed by the store's change feed
//! (`Store::subscribe`: a snapshot, then every change batch in order).

pub mod kafka;

use self::kafka::KafkaSink;
use crate::pipelines::PIPELINES;

/// Every registered pipeline's sinks (see `Pipeline::sinks`), each topic named
/// with `--kafka-topic-prefix` first.
pub fn declared_sinks(topic_prefix: &str) -> Vec<KafkaSink> {
    PIPELINES.iter().flat_map(|pipeline| pipeline.sinks(topic_prefix)).collect()
}
