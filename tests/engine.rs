//! The engine without the network: worker counts agree, retention bounds sources and windows.

use diffmart::compute::ComputeConfig;
use diffmart::engine::{Engine, Update};
use diffmart::pipelines::every_pipeline;
use diffmart_dataflows::datum::{Datum, MICROS_PER_MINUTE, Record};
use diffmart_dataflows::retail::WebClick;

/// Relations the generator never writes: users redeem offers, set price overrides and
/// casino thresholds (whose first row the server writes at start), and the system
/// relations describe live sources (this test applies events directly).
const NOT_GENERATED: [&str; 6] = [
    "redeemed_offers",
    "casino_settings",
    "price_overrides",
    "price_override_removals",
    "diffmart_sources",
    "diffmart_source_errors",
];

/// Same events (every pipeline's) into 1 and 2 workers: every relation, view by
/// view, is identical.
#[test]
fn two_workers_compute_what_one_does() {
    let contents = |workers: usize| {
        let engine = Engine::start(&ComputeConfig { workers, ..Default::default() }).unwrap();
        let id = |name: &str| engine.catalog().id(name).unwrap();
        let simulation = every_pipeline(11, 1_748_779_200_000_000);
        let updates = simulation.bootstrap.iter().map(|e| Update::insert(id(e.relation), e.row.clone())).collect();
        engine.apply_blocking(updates).unwrap();
        let events: Vec<_> = simulation.events.take(40_000).collect();
        for chunk in events.chunks(997) {
            engine
                .apply_blocking(chunk.iter().map(|e| Update::insert(id(e.relation), e.row.clone())).collect())
                .unwrap();
        }
        let snapshot = engine.snapshot();
        engine.catalog().iter().map(|(id, spec)| (spec.name, snapshot.rows(id))).collect::<Vec<_>>()
    };
    let one = contents(1);
    let two = contents(2);
    for ((name, rows_one), (_, rows_two)) in one.iter().zip(&two) {
        assert!(
            !rows_one.is_empty() || NOT_GENERATED.contains(name),
            "{name} is empty: the workload does not exercise it"
        );
        assert_eq!(rows_one, rows_two, "{name} differs between 1 and 2 workers");
    }
}

#[test]
fn retention_bounds_source_relations_and_windowed_views() {
    let retention = 10 * MICROS_PER_MINUTE;
    let mut config = ComputeConfig::default();
    config.pipelines.retention = retention;
    let engine = Engine::start(&config).unwrap();
    let clicks = engine.catalog().id("web_clicks").unwrap();
    let minutely = engine.catalog().id("web_clicks_minutely").unwrap();
    let start = 1_748_779_200_000_000; // 2025-06-01 12:00:00 UTC
    let click = |minute: i64| {
        let event =
            WebClick { event_time: start + minute * MICROS_PER_MINUTE, product_id: 1, event_type: "view".into() };
        Update::insert(clicks, event.to_row())
    };
    engine.apply_blocking(vec![click(0), click(5)]).unwrap();
    assert_eq!(engine.snapshot().rows(clicks).len(), 2);
    // Newest event at minute 12: the horizon is minute 2, so minute 0 leaves.
    engine.apply_blocking(vec![click(12)]).unwrap();
    let times: Vec<Datum> = engine.snapshot().rows(clicks).into_iter().map(|row| row[0].clone()).collect();
    assert_eq!(
        times,
        vec![Datum::Timestamp(start + 5 * MICROS_PER_MINUTE), Datum::Timestamp(start + 12 * MICROS_PER_MINUTE)]
    );
    // A late event already behind the horizon is never shown in the source.
    engine.apply_blocking(vec![click(1)]).unwrap();
    assert_eq!(engine.snapshot().rows(clicks).len(), 2);
    // The per-minute view keeps the windows that end after the horizon: minute 0
    // expired, and the late click's minute 1 had expired before it came.
    let windows: Vec<Datum> = engine.snapshot().rows(minutely).into_iter().map(|row| row[1].clone()).collect();
    assert_eq!(
        windows,
        vec![Datum::Timestamp(start + 5 * MICROS_PER_MINUTE), Datum::Timestamp(start + 12 * MICROS_PER_MINUTE)]
    );
}

/// A source that waits for each request's stamp before sending the next (the Kafka
/// reader, the benchmark's driver) gets stamped on arrival: while compute is busy, its
/// requests join the batch being gathered instead of each waiting for a time of its own.
#[test]
fn requests_sent_while_compute_is_busy_share_a_time() {
    let engine = Engine::start(&ComputeConfig::default()).unwrap();
    let id = |name: &str| engine.catalog().id(name).unwrap();
    let simulation = every_pipeline(5, 1_748_779_200_000_000);
    let bootstrap = simulation.bootstrap.iter().map(|e| Update::insert(id(e.relation), e.row.clone())).collect();
    engine.apply_blocking(bootstrap).unwrap();
    let events: Vec<_> = simulation.events.take(60_500).collect();
    let (load, singles) = events.split_at(60_000);
    let ingest = engine.ingest();
    // Keeps compute busy for a while.
    ingest.send_stamped(load.iter().map(|e| Update::insert(id(e.relation), e.row.clone())).collect()).unwrap();
    let times: Vec<_> = singles
        .iter()
        .map(|e| ingest.send_stamped(vec![Update::insert(id(e.relation), e.row.clone())]).unwrap())
        .collect();
    let distinct = times.windows(2).filter(|pair| pair[0] != pair[1]).count() + 1;
    assert!(times.is_sorted(), "times go forward: {times:?}");
    assert!(distinct < singles.len() / 2, "{} requests went out at {distinct} times", singles.len());
    // Each was stamped with the time it became visible at.
    assert!(engine.store().wait_visible_blocking(*times.last().unwrap()));
    let clicks = engine.snapshot().rows(id("web_clicks")).len();
    let sent = events.iter().filter(|e| e.relation == "web_clicks").count();
    assert_eq!(clicks, sent, "every click is visible");
}
