//! The sinks' progress records: how far their committed transactions reach.
//!
//! Every sink transaction ends with a record in the progress topic, keyed by the
//! producer's transactional id: `{"upper": U, "sinks": ["relation→topic", …]}`, saying
//! that every change before logical time `U` of those sinks is in the committed
//! transactions. Being in the same transaction as the messages, it is committed with
//! them or not at all. At start-up the newest committed record for our id is where
//! the sinks resume ([`read_newest`]).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use diffmart_dataflows::Time;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

/// What one progress record says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Every change before this logical time is delivered.
    pub upper: Time,
    /// The sinks it speaks for, as [`sink_name`] names them.
    pub sinks: Vec<String>,
}

/// How a sink is named in progress records.
pub fn sink_name(relation: &str, topic: &str) -> String {
    format!("{relation}→{topic}")
}

impl Progress {
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("a progress record encodes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Progress, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("not a diffmart sink progress record: {e}"))
    }
}

/// How long reading the progress topic waits for the brokers, per request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Records read from the end of a partition at first; more if our key is not among them.
const FIRST_WINDOW: i64 = 1000;

/// The newest committed progress record keyed `key` in `topic` (`None` if there is
/// none, or no such topic). Call it after `init_transactions` of the producer with
/// that transactional id: that fences off an older producer and ends its open
/// transaction, so nothing it wrote can be committed after this read.
pub fn read_newest(
    brokers: &str,
    properties: &[(String, String)],
    topic: &str,
    key: &str,
) -> anyhow::Result<Option<Progress>> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{key}-progress-reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true");
    for (k, v) in properties {
        config.set(k, v);
    }
    // The reading depends on these, whatever the properties say.
    config.set("isolation.level", "read_committed").set("enable.partition.eof", "true");
    let consumer: BaseConsumer = config.create().context("creating the sink progress reader")?;
    let metadata = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .with_context(|| format!("reading the metadata of the sink progress topic {topic}"))?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else { return Ok(None) };
    match found.error().map(RDKafkaErrorCode::from) {
        None => {}
        Some(RDKafkaErrorCode::UnknownTopicOrPartition) => return Ok(None),
        Some(code) => bail!("the sink progress topic {topic}: {code}"),
    }
    let mut newest: Option<Progress> = None;
    for partition in found.partitions() {
        let id = partition.id();
        let (low, high) = consumer
            .fetch_watermarks(topic, id, REQUEST_TIMEOUT)
            .with_context(|| format!("reading the offsets of {topic}/{id}"))?;
        if high <= low {
            continue;
        }
        let mut window = FIRST_WINDOW;
        loop {
            let from = (high - window).max(low);
            if let Some(found) = newest_in(&consumer, topic, id, from, key)? {
                // Only one partition holds a key, but a repartitioned topic may hold
                // older records elsewhere: the highest upper is the newest.
                if newest.as_ref().is_none_or(|n| n.upper < found.upper) {
                    newest = Some(found);
                }
                break;
            }
            if from <= low {
                break;
            }
            window = window.saturating_mul(4);
        }
    }
    Ok(newest)
}

/// The last committed record keyed `key` in `topic`/`partition` from offset `from` on.
fn newest_in(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    from: i64,
    key: &str,
) -> anyhow::Result<Option<Progress>> {
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Offset(from))?;
    consumer.assign(&assignment)?;
    let mut newest = None;
    let mut deadline = Instant::now() + REQUEST_TIMEOUT;
    loop {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                deadline = Instant::now() + REQUEST_TIMEOUT;
                if message.key() != Some(key.as_bytes()) {
                    continue;
                }
                let Some(payload) = message.payload() else { continue };
                let progress = Progress::decode(payload)
                    .map_err(|why| anyhow::anyhow!("{topic}/{partition} at offset {}: {why}", message.offset()))?;
                newest = Some(progress);
            }
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => tracing::warn!("reading the sink progress topic {topic}: {e}"),
            None if Instant::now() > deadline => {
                bail!("reading the sink progress topic {topic}/{partition}: no answer for {REQUEST_TIMEOUT:?}")
            }
            None => {}
        }
    }
    consumer.unassign()?;
    Ok(newest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_records_round_trip() {
        let progress = Progress { upper: 42, sinks: vec![sink_name("sales_profit", "kpis")] };
        assert_eq!(Progress::decode(progress.encode().as_bytes()), Ok(progress));
        assert!(Progress::decode(b"{}").is_err());
    }
}
