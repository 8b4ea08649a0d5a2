use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

fn txn_producer(brokers: &str) -> BaseProducer {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("transactional.id", "exp")
        .create()
        .unwrap();
    p.init_transactions(Duration::from_secs(10)).unwrap();
    p
}

fn read(brokers: &str, topic: &str) -> Vec<String> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "x")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        assert!(std::time::Instant::now() < deadline, "no eof; got {out:?}");
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => out.push(format!("{}@{}", String::from_utf8_lossy(m.payload().unwrap()), m.offset())),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => panic!("{e}"),
            None => {}
        }
    }
    let (lo, hi) = c.fetch_watermarks(topic, 0, Duration::from_secs(5)).unwrap();
    out.push(format!("watermarks {lo} {hi}"));
    out
}

#[test]
fn experiment() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("a", 1, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let p = txn_producer(&brokers);
    p.begin_transaction().unwrap();
    p.send(BaseRecord::<str, str>::to("a").payload("c1")).unwrap();
    p.commit_transaction(Duration::from_secs(10)).unwrap();
    p.begin_transaction().unwrap();
    p.send(BaseRecord::<str, str>::to("a").payload("aborted")).unwrap();
    p.flush(Duration::from_secs(5)).unwrap();
    p.abort_transaction(Duration::from_secs(10)).unwrap();
    p.begin_transaction().unwrap();
    p.send(BaseRecord::<str, str>::to("a").payload("zombie")).unwrap();
    p.flush(Duration::from_secs(5)).unwrap();
    println!("after abort, open txn: {:?}", read(&brokers, "a"));
    std::mem::forget(p);
    let p2 = txn_producer(&brokers);
    println!("after fence: {:?}", read(&brokers, "a"));
    p2.begin_transaction().unwrap();
    p2.send(BaseRecord::<str, str>::to("a").payload("c2")).unwrap();
    p2.commit_transaction(Duration::from_secs(10)).unwrap();
    println!("end: {:?}", read(&brokers, "a"));
}
