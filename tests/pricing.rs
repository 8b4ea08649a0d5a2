//! Demand-driven pricing (spec §E): the views against a sequential fold, 1 = 2
//! workers, the HTTP API (every route and error path, over real TCP), the WebSocket
//! stream, and Kafka in and out (librdkafka's mock cluster).
//!
//! Run: `cargo test --release --test pricing`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diffmart::compute::ComputeConfig;
use diffmart::engine::{Engine, Update};
use diffmart::http::{AppState, HttpConfig};
use diffmart::pipelines::pricing::generator::PricingGenerator;
use diffmart::pipelines::{kafka_sinks, kafka_sources};
use diffmart::sinks::kafka::KafkaSinks;
use diffmart::sources::GeneratedEvent;
use diffmart::sources::kafka::{KafkaConfig, KafkaSources};
use diffmart_dataflows::datum::{F64, MICROS_PER_MINUTE, MICROS_PER_SECOND, Micros, Record, Row};
use diffmart_dataflows::pricing::{
    self, CatalogProduct, OverrideRemoval, PriceHistoryRow, PriceOverride, PriceUpdate, ProductEvent, ProductPrice,
    demand_weight, dynamic_price,
};
use diffmart_dataflows::system::{SourceError, SourceStatus};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// 2025-06-01 12:00:00 UTC.
const START: Micros = 1_748_779_200_000_000;
const KEY: &str = "s3cret-key";

fn start_engine(workers: usize, retention: Option<Micros>) -> Arc<Engine> {
    let mut config = ComputeConfig { workers, ..Default::default() };
    if let Some(retention) = retention {
        config.pipelines.retention = retention;
    }
    Engine::start(&config).expect("engine starts")
}

fn id(engine: &Engine, name: &str) -> usize {
    engine.catalog().id(name).unwrap_or_else(|| panic!("no relation {name}"))
}

fn load_catalog(engine: &Engine) {
    let table = id(engine, CatalogProduct::spec().name);
    let rows = PricingGenerator::catalog(START).iter().map(|p| Update::insert(table, p.to_row())).collect();
    engine.apply_blocking(rows).unwrap();
}

fn rows(engine: &Engine, name: &str) -> Vec<Row> {
    let mut rows = engine.snapshot().rows(id(engine, name));
    rows.sort();
    rows
}

fn event_of(e: &GeneratedEvent) -> ProductEvent {
    ProductEvent::from_row(&e.row).unwrap()
}

// ------------------------------------------------------------------------------------------
// The oracle: the spec's rules as a plain sequential fold over the batches
// ------------------------------------------------------------------------------------------

/// One batch of the scripted workload.
#[derive(Clone, Debug, Default)]
struct Batch {
    /// Overrides set (or replaced) in this batch.
    set: Vec<PriceOverride>,
    /// Overrides removed in this batch, with the removal time.
    removed: Vec<(String, Micros)>,
    events: Vec<ProductEvent>,
}

#[derive(Default)]
struct OracleProduct {
    base: Option<(f64, Option<Micros>)>,
    demand: i64,
    last: Option<f64>,
    active: Option<PriceOverride>,
    removed_at: Option<Micros>,
    changes: i64,
    history: Vec<PriceHistoryRow>,
    updates: Vec<PriceUpdate>,
}

impl OracleProduct {
    fn price(&self) -> Option<(f64, &'static str)> {
        match (&self.active, self.last, self.base) {
            (Some(o), _, _) => Some((o.override_price.get(), "override")),
            (None, Some(p), _) => Some((p, "dynamic")),
            (None, None, Some((b, _))) => Some((b, "base")),
            _ => None,
        }
    }

    fn change(&mut self, id: &str, price: f64, source: &str, time: Option<Micros>, history: bool) {
        self.changes += 1;
        if history {
            self.history.push(PriceHistoryRow {
                product_id: id.into(),
                price: F64::new(price),
                price_source: source.into(),
                event_time: time,
                seq: self.changes,
            });
        }
        self.updates.push(PriceUpdate {
            product_id: id.into(),
            seq: self.changes,
            new_price: F64::new(price),
            timestamp: time,
        });
    }
}

/// Folds the catalog and the batches; returns the three views (sorted rows) under `retention`.
fn oracle(batches: &[Batch], retention: Micros) -> [Vec<Row>; 3] {
    let mut products: BTreeMap<String, OracleProduct> = BTreeMap::new();
    for p in PricingGenerator::catalog(START) {
        let state = products.entry(p.product_id.clone()).or_default();
        state.base = Some((p.base_price.get(), p.added_at));
        state.change(&p.product_id, p.base_price.get(), "base", p.added_at, true);
    }
    for batch in batches {
        for (product, removed_at) in &batch.removed {
            let state = products.get_mut(product).unwrap();
            state.active.take().expect("removing an override that exists");
            state.removed_at = Some(*removed_at);
            let (price, source) = state.price().unwrap();
            state.change(product, price, source, Some(*removed_at), false);
        }
        for o in &batch.set {
            let state = products.entry(o.product_id.clone()).or_default();
            state.active = Some(o.clone());
            state.change(&o.product_id, o.override_price.get(), "override", o.set_time, true);
        }
        let mut events = batch.events.clone();
        events.sort_by(|a, b| {
            (a.timestamp, &a.event_type, &a.user_id, a.price).cmp(&(b.timestamp, &b.event_type, &b.user_id, b.price))
        });
        for e in events {
            let state = products.entry(e.product_id.clone()).or_default();
            if state.active.is_some() || state.removed_at.is_some_and(|r| e.timestamp <= r) {
                continue;
            }
            state.demand += demand_weight(&e.event_type).unwrap();
            let price = dynamic_price(e.price.get(), state.demand);
            state.last = Some(price);
            state.change(&e.product_id, price, "dynamic", Some(e.timestamp), true);
        }
    }
    let mut views: [Vec<Row>; 3] = Default::default();
    for (id, state) in &products {
        if let Some((price, source)) = state.price() {
            let row = ProductPrice {
                product_id: id.clone(),
                price: F64::new(price),
                demand: state.demand,
                price_source: source.into(),
            };
            views[0].push(row.to_row());
        }
        let newest = state.updates.iter().filter_map(|u| u.timestamp).max();
        let kept = |t: Option<Micros>| newest.is_none_or(|n| t.is_some_and(|t| t >= n - retention));
        views[1].extend(state.history.iter().filter(|h| kept(h.event_time)).map(PriceHistoryRow::to_row));
        views[2].extend(state.updates.iter().filter(|u| kept(u.timestamp)).map(PriceUpdate::to_row));
    }
    for view in &mut views {
        view.sort();
    }
    views
}

/// 40 batches of generated events, with overrides set, replaced and removed along the
/// way; removal times fall after the batch's events, so later events at or before them
/// are skipped.
fn scripted_workload() -> Vec<Batch> {
    let events: Vec<ProductEvent> = PricingGenerator::new(7, START).take(4000).map(|e| event_of(&e)).collect();
    let mut batches: Vec<Batch> =
        events.chunks(100).map(|chunk| Batch { events: chunk.to_vec(), ..Batch::default() }).collect();
    let over = |product: &str, price: f64, at: Micros| PriceOverride {
        product_id: product.into(),
        override_price: F64::new(price),
        reason: Some("scripted".into()),
        set_time: Some(at),
    };
    let last_time = |batch: &Batch| batch.events.iter().map(|e| e.timestamp).max().unwrap();
    let t5 = last_time(&batches[5]);
    batches[5].set = vec![over("PA", 250.0, t5), over("PC", 100.0, t5)];
    let t12 = last_time(&batches[12]) + 20 * MICROS_PER_SECOND;
    batches[12].removed = vec![("PA".into(), t12)];
    let t20 = last_time(&batches[20]);
    batches[20].set = vec![over("PC", 90.0, t20), over("PA", 260.0, t20)];
    let t25 = last_time(&batches[25]) + 5 * MICROS_PER_SECOND;
    batches[25].removed = vec![("PC".into(), t25), ("PA".into(), t25)];
    batches
}

/// Applies the workload the way tables and sources feed the engine: overrides as
/// table rows (an update retracts the old row), removals as `price_override_removals` upserts.
fn run_workload(engine: &Engine, batches: &[Batch]) {
    load_catalog(engine);
    let overrides = id(engine, PriceOverride::spec().name);
    let removals = id(engine, OverrideRemoval::spec().name);
    let events = id(engine, ProductEvent::spec().name);
    let mut active: HashMap<String, PriceOverride> = HashMap::new();
    let mut removed: HashMap<String, Micros> = HashMap::new();
    for batch in batches {
        let mut updates = Vec::new();
        for (product, at) in &batch.removed {
            let old = active.remove(product).unwrap();
            updates.push(Update::delete(overrides, old.to_row()));
            if let Some(previous) = removed.insert(product.clone(), *at) {
                updates.push(Update::delete(
                    removals,
                    OverrideRemoval { product_id: product.clone(), removed_at: previous }.to_row(),
                ));
            }
            updates.push(Update::insert(
                removals,
                OverrideRemoval { product_id: product.clone(), removed_at: *at }.to_row(),
            ));
        }
        for o in &batch.set {
            if let Some(old) = active.insert(o.product_id.clone(), o.clone()) {
                updates.push(Update::delete(overrides, old.to_row()));
            }
            updates.push(Update::insert(overrides, o.to_row()));
        }
        updates.extend(batch.events.iter().map(|e| Update::insert(events, e.to_row())));
        engine.apply_blocking(updates).unwrap();
    }
}

fn pricing_views(engine: &Engine) -> [Vec<Row>; 3] {
    [rows(engine, "product_prices"), rows(engine, "price_history"), rows(engine, "price_updates")]
}

#[test]
fn views_match_a_sequential_fold_and_two_workers_agree() {
    let batches = scripted_workload();
    let expected = oracle(&batches, 24 * 60 * MICROS_PER_MINUTE);
    let one = start_engine(1, None);
    run_workload(&one, &batches);
    let got = pricing_views(&one);
    let names = ["product_prices", "price_history", "price_updates"];
    for ((name, got), want) in names.iter().zip(&got).zip(&expected) {
        assert!(!want.is_empty(), "{name}: the workload leaves it empty");
        assert_eq!(got.len(), want.len(), "{name}: row counts differ");
        assert!(got == want, "{name} differs from the sequential fold");
    }
    // The workload exercises every rule: overrides skipped events, removals skipped more.
    let demand: i64 = expected[0].iter().map(|r| ProductPrice::from_row(r).unwrap().demand).sum();
    let all: i64 = batches.iter().flat_map(|b| &b.events).map(|e| demand_weight(&e.event_type).unwrap()).sum();
    assert!(demand < all, "some demand was skipped ({demand} of {all})");
    let sources: Vec<String> = expected[1].iter().map(|r| PriceHistoryRow::from_row(r).unwrap().price_source).collect();
    for source in ["base", "override", "dynamic"] {
        assert!(sources.iter().any(|s| s == source), "no {source} row in price_history");
    }

    let two = start_engine(2, None);
    run_workload(&two, &batches);
    assert_eq!(pricing_views(&two), got, "2 workers compute what 1 does");
}

#[test]
fn history_and_updates_keep_the_retention_window() {
    let batches = scripted_workload();
    let retention = 5 * MICROS_PER_MINUTE;
    let engine = start_engine(2, Some(retention));
    run_workload(&engine, &batches);
    let expected = oracle(&batches, retention);
    let full = oracle(&batches, i64::MAX / 2);
    assert!(expected[1].len() < full[1].len() / 2, "retention drops most of the history");
    assert_eq!(pricing_views(&engine), expected);
}

#[test]
fn the_spec_examples_through_the_engine() {
    let engine = start_engine(1, None);
    let events = id(&engine, ProductEvent::spec().name);
    let event = |kind: &str, product: &str, at_s: i64, price: f64| {
        let e = ProductEvent {
            event_type: kind.into(),
            product_id: product.into(),
            user_id: None,
            timestamp: START + at_s * MICROS_PER_SECOND,
            price: F64::new(price),
        };
        Update::insert(events, e.to_row())
    };
    engine.apply_blocking(vec![event("purchase", "X1", 1, 100.0), event("cart", "X1", 2, 100.0)]).unwrap();
    engine.apply_blocking(vec![event("view", "X1", 3, 100.0)]).unwrap();
    let prices: Vec<ProductPrice> =
        rows(&engine, "product_prices").iter().map(|r| ProductPrice::from_row(r).unwrap()).collect();
    assert_eq!(
        prices,
        vec![ProductPrice {
            product_id: "X1".into(),
            price: F64::new(115.0),
            demand: 9,
            price_source: "dynamic".into()
        }]
    );
    // Invalid events never get in: a CHECK on product_events refuses them.
    let error = engine.apply_blocking(vec![event("click", "X1", 4, 100.0)]).unwrap_err();
    assert_eq!(error.sqlstate, "23514", "{error}");
    assert!(error.message.contains("event_type must be view, cart or purchase"), "{error}");
    assert!(engine.apply_blocking(vec![event("view", "X1", 4, -1.0)]).is_err());
    assert!(engine.apply_blocking(vec![event("view", " ", 4, 1.0)]).is_err());
    assert_eq!(rows(&engine, "product_events").len(), 3);
}

// ------------------------------------------------------------------------------------------
// HTTP
// ------------------------------------------------------------------------------------------

/// An HTTP API (and a pgwire server) on free ports, in this process.
async fn start_http(engine: &Arc<Engine>, config: HttpConfig) -> SocketAddr {
    let listener = diffmart::http::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    diffmart::http::spawn(
        listener,
        AppState::new(engine.clone(), &config),
        diffmart::pipelines::routes(),
        axum::Router::new(),
    );
    addr
}

/// One request over a fresh connection: the status and the body.
async fn request(addr: SocketAddr, method: &str, path: &str, key: Option<&str>, body: Option<&str>) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = body.unwrap_or("");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    if let Some(key) = key {
        head.push_str(&format!("X-API-Key: {key}\r\n"));
    }
    stream.write_all(format!("{head}\r\n{body}").as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_string() };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

fn error_body(message: &str) -> String {
    json!({ "error": message }).to_string()
}

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{body}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_routes_answer_as_the_spec_says() {
    let engine = start_engine(1, None);
    load_catalog(&engine);
    let addr = start_http(&engine, HttpConfig::with_admin_key(KEY)).await;
    let get = |path: &'static str| request(addr, "GET", path, None, None);

    // GET /price/{id}
    let (status, body) = get("/price/PA").await;
    assert_eq!(
        (status, parse(&body)),
        (200, json!({"product_id": "PA", "price": 299.0, "demand": 0, "price_source": "base"}))
    );
    assert_eq!(get("/price/NOPE").await, (404, error_body("unknown product \"NOPE\"")));
    assert_eq!(
        get("/price/P$A").await,
        (400, error_body("invalid product id \"P$A\": it must match ^[A-Za-z0-9_-]+$"))
    );
    assert_eq!(get("/price/P%20A").await.0, 400);
    assert_eq!(get("/nowhere").await, (404, error_body("no such route")));

    // Auth: without a key, with a wrong one.
    let body = r#"{"product_id": "PA", "override_price": 199.5}"#;
    let missing = error_body("missing API key: send it in the x-api-key header");
    assert_eq!(request(addr, "POST", "/override", None, Some(body)).await, (401, missing.clone()));
    assert_eq!(
        request(addr, "POST", "/override", Some("wrong"), Some(body)).await,
        (401, error_body("invalid API key"))
    );
    assert_eq!(request(addr, "POST", "/override", Some("s3cret-kez"), Some(body)).await.0, 401);
    assert_eq!(request(addr, "DELETE", "/override/PA", None, None).await, (401, missing.clone()));
    assert_eq!(request(addr, "GET", "/history/PA", Some("nope"), None).await, (401, error_body("invalid API key")));
    assert_eq!(request(addr, "GET", "/history/PA", None, None).await, (401, missing));
    // Authorisation comes before validation: a bad request without a key is still 401.
    assert_eq!(request(addr, "POST", "/override", None, Some("{")).await.0, 401);

    // POST /override: bad bodies, unknown product, then an upsert.
    let post = |body: &'static str| request(addr, "POST", "/override", Some(KEY), Some(body));
    let (status, error) = post("{not json").await;
    assert_eq!(status, 400);
    assert!(parse(&error)["error"].as_str().unwrap().starts_with("invalid JSON body"), "{error}");
    assert_eq!(
        post(r#"{"product_id": "PA", "override_price": 0}"#).await,
        (400, error_body("override_price must be greater than 0, got 0"))
    );
    assert_eq!(
        post(r#"{"product_id": "PA", "override_price": -5}"#).await,
        (400, error_body("override_price must be greater than 0, got -5"))
    );
    assert_eq!(
        post(r#"{"product_id": "PA"}"#).await,
        (400, error_body("override_price is required and must be a number"))
    );
    assert_eq!(
        post(r#"{"override_price": 5}"#).await,
        (400, error_body("product_id is required and must be a string"))
    );
    assert_eq!(post(r#"{"product_id": "P/A", "override_price": 5}"#).await.0, 400);
    assert_eq!(post(r#"{"product_id": "ZZ", "override_price": 5}"#).await, (404, error_body("unknown product \"ZZ\"")));
    let (status, answer) = post(r#"{"product_id": "PA", "override_price": 199.5}"#).await;
    assert_eq!(
        (status, parse(&answer)),
        (200, json!({"product_id": "PA", "override_price": 199.5, "reason": "manual override", "status": "upserted"}))
    );
    // Read-your-writes, and the same table SQL sees.
    let (_, price) = get("/price/PA").await;
    assert_eq!(parse(&price), json!({"product_id": "PA", "price": 199.5, "demand": 0, "price_source": "override"}));
    let (_, answer) = post(r#"{"product_id": "PA", "override_price": 180, "reason": "clearance"}"#).await;
    assert_eq!(parse(&answer)["reason"], "clearance");
    let overrides: Vec<PriceOverride> =
        rows(&engine, "price_overrides").iter().map(|r| PriceOverride::from_row(r).unwrap()).collect();
    assert_eq!(overrides.len(), 1, "an upsert, not a second row");
    assert_eq!((overrides[0].override_price.get(), overrides[0].reason.as_deref()), (180.0, Some("clearance")));
    assert!(overrides[0].set_time.is_some());

    // GET /history/{id}
    let history = |path: &'static str| request(addr, "GET", path, Some(KEY), None);
    let (status, body) = history("/history/PA").await;
    assert_eq!(status, 200);
    let entries = parse(&body);
    let sources: Vec<&str> = entries.as_array().unwrap().iter().map(|e| e["price_source"].as_str().unwrap()).collect();
    // The base row (added in 2025) is more than --retention (24 h) behind the overrides (set
    // now): it has left the history.
    assert_eq!(sources, ["override", "override"], "newest first: {body}");
    assert_eq!(entries[0]["price"], 180.0);
    assert_eq!(
        history("/history/PA?limit=abc").await,
        (400, error_body("limit must be a positive integer, got \"abc\""))
    );
    assert_eq!(history("/history/PA?limit=0").await, (400, error_body("limit must be a positive integer, got \"0\"")));
    assert_eq!(history("/history/PA?limit=-3").await.0, 400);
    assert_eq!(history("/history/NOPE").await, (404, error_body("unknown product \"NOPE\"")));
    assert_eq!(history("/history/P$A").await.0, 400);
    let (_, body) = history("/history/PA?limit=1").await;
    assert_eq!(parse(&body).as_array().unwrap().len(), 1);

    // DELETE /override/{id}
    assert_eq!(
        request(addr, "DELETE", "/override/PB", Some(KEY), None).await,
        (404, error_body("no override for product \"PB\""))
    );
    let (status, body) = request(addr, "DELETE", "/override/PA", Some(KEY), None).await;
    assert_eq!((status, parse(&body)), (200, json!({"product_id": "PA", "deleted": true})));
    assert_eq!(request(addr, "DELETE", "/override/PA", Some(KEY), None).await.0, 404, "deleted already");
    let (_, price) = get("/price/PA").await;
    assert_eq!(parse(&price)["price_source"], "base", "back to the catalog price");
    let removals: Vec<OverrideRemoval> =
        rows(&engine, "price_override_removals").iter().map(|r| OverrideRemoval::from_row(r).unwrap()).collect();
    assert_eq!(removals.len(), 1, "the removal time is recorded");
    assert!(rows(&engine, "price_overrides").is_empty());

    // /metrics
    let (status, metrics) = get("/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("diffmart_relation_rows{relation=\"product_prices\",kind=\"view\"} 10\n"), "{metrics}");
    assert!(metrics.contains("diffmart_relation_rows{relation=\"pricing_products\",kind=\"table\"} 10\n"));
    assert!(metrics.contains("# TYPE diffmart_snapshot_time counter\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_newest_first_and_its_limit_is_clamped() {
    let engine = start_engine(1, None);
    load_catalog(&engine);
    let addr = start_http(&engine, HttpConfig::with_admin_key(KEY)).await;
    let events = id(&engine, ProductEvent::spec().name);
    // 600 views of PB, one second apart, in shuffled batches: history is by event time.
    let mut times: Vec<i64> = (0..600).collect();
    times.reverse();
    for chunk in times.chunks(150) {
        let updates = chunk
            .iter()
            .map(|s| {
                let e = ProductEvent {
                    event_type: "view".into(),
                    product_id: "PB".into(),
                    user_id: None,
                    timestamp: START + 1000 + s * MICROS_PER_SECOND,
                    price: F64::new(349.0),
                };
                Update::insert(events, e.to_row())
            })
            .collect();
        engine.apply(updates).await.unwrap();
    }
    let history = |path: &'static str| request(addr, "GET", path, Some(KEY), None);
    let count = |body: &str| parse(body).as_array().unwrap().len();
    let (_, body) = history("/history/PB").await;
    assert_eq!(count(&body), 50, "default 50");
    let (_, body) = history("/history/PB?limit=100000").await;
    assert_eq!(count(&body), 500, "at most 500");
    let (_, body) = history("/history/PB?limit=3").await;
    let entries = parse(&body);
    let times: Vec<&str> = entries.as_array().unwrap().iter().map(|e| e["event_time"].as_str().unwrap()).collect();
    assert_eq!(times, ["2025-06-01T12:09:59.001Z", "2025-06-01T12:09:58.001Z", "2025-06-01T12:09:57.001Z"]);
    // The newest event came in the first batch, priced last of its 150 (demand 150).
    assert_eq!(entries[0]["price"], 349.0 + 150f64.sqrt() * 5.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_routes_refuse_everything_without_a_configured_key() {
    let engine = start_engine(1, None);
    load_catalog(&engine);
    let addr = start_http(&engine, HttpConfig::without_admin_key()).await;
    let refused = error_body(
        "admin API disabled: no admin API key is configured (start diffmart with --admin-api-key or ADMIN_API_KEY)",
    );
    let body = Some(r#"{"product_id": "PA", "override_price": 1}"#);
    assert_eq!(request(addr, "POST", "/override", Some("anything"), body).await, (401, refused.clone()));
    assert_eq!(request(addr, "POST", "/override", Some(""), body).await, (401, refused.clone()));
    assert_eq!(request(addr, "DELETE", "/override/PA", None, None).await, (401, refused.clone()));
    assert_eq!(request(addr, "GET", "/history/PA", Some("x"), None).await, (401, refused));
    assert_eq!(request(addr, "GET", "/price/PA", None, None).await.0, 200, "the public route still answers");
    assert!(rows(&engine, "price_overrides").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_and_http_write_the_same_overrides() {
    let engine = start_engine(1, None);
    load_catalog(&engine);
    let addr = start_http(&engine, HttpConfig::with_admin_key(KEY)).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pg = listener.local_addr().unwrap();
    diffmart::pgwire::spawn(engine.clone(), listener);
    let config = format!("host={} port={} user=root dbname=dev", pg.ip(), pg.port());
    let (client, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);

    // SQL insert: defaults filled, HTTP sees it at once.
    client.simple_query("INSERT INTO price_overrides (product_id, override_price) VALUES ('PC', 99.5)").await.unwrap();
    let (_, price) = request(addr, "GET", "/price/PC", None, None).await;
    assert_eq!(parse(&price), json!({"product_id": "PC", "price": 99.5, "demand": 0, "price_source": "override"}));
    let row = client
        .query_one("SELECT reason, set_time IS NOT NULL FROM price_overrides WHERE product_id = 'PC'", &[])
        .await
        .unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, bool>(1)), ("manual override".to_string(), true));
    // The key is enforced across both: SQL cannot insert a second PC override.
    let error = client
        .simple_query("INSERT INTO price_overrides (product_id, override_price) VALUES ('PC', 5)")
        .await
        .unwrap_err();
    assert_eq!(error.code().unwrap().code(), "23505");
    // The CHECK: override_price > 0.
    let error = client
        .simple_query("INSERT INTO price_overrides (product_id, override_price) VALUES ('PD', 0)")
        .await
        .unwrap_err();
    assert_eq!(error.code().unwrap().code(), "23514", "{error}");
    // HTTP upsert replaces it; SQL sees the new row.
    request(addr, "POST", "/override", Some(KEY), Some(r#"{"product_id": "PC", "override_price": 88}"#)).await;
    let row =
        client.query_one("SELECT override_price FROM price_overrides WHERE product_id = 'PC'", &[]).await.unwrap();
    assert_eq!(row.get::<_, f64>(0), 88.0);
    // SQL DELETE records the removal time like HTTP DELETE does.
    client.simple_query("DELETE FROM price_overrides WHERE product_id = 'PC'").await.unwrap();
    let row =
        client.query_one("SELECT count(*) FROM price_override_removals WHERE product_id = 'PC'", &[]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    let (_, price) = request(addr, "GET", "/price/PC", None, None).await;
    assert_eq!(parse(&price)["price_source"], "base");
    // Events produced before the removal (timestamp ≤ removal time) are still skipped.
    let events = id(&engine, ProductEvent::spec().name);
    let at = diffmart::sources::now_micros() - 60 * MICROS_PER_SECOND;
    let e = ProductEvent {
        event_type: "purchase".into(),
        product_id: "PC".into(),
        user_id: None,
        timestamp: at,
        price: F64::new(129.0),
    };
    engine.apply(vec![Update::insert(events, e.to_row())]).await.unwrap();
    let (_, price) = request(addr, "GET", "/price/PC", None, None).await;
    assert_eq!(parse(&price)["demand"], 0, "an event older than the removal was skipped");
    let later = ProductEvent { timestamp: diffmart::sources::now_micros() + 60 * MICROS_PER_SECOND, ..e };
    engine.apply(vec![Update::insert(events, later.to_row())]).await.unwrap();
    let (_, price) = request(addr, "GET", "/price/PC", None, None).await;
    let price = parse(&price);
    assert_eq!((price["demand"].as_i64(), price["price_source"].as_str()), (Some(5), Some("dynamic")));
    assert!((price["price"].as_f64().unwrap() - dynamic_price(129.0, 5)).abs() < 1e-9, "{price}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_streams_every_price_change_in_order() {
    // A retention longer than the test's span of event time (the override is set "now",
    // the events in 2025), so the view keeps every change the socket was sent.
    let engine = start_engine(2, Some(3650 * 86_400 * MICROS_PER_SECOND));
    load_catalog(&engine);
    let addr = start_http(&engine, HttpConfig::with_admin_key(KEY)).await;
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws/prices")).await.expect("WebSocket connects");

    let events: Vec<GeneratedEvent> = PricingGenerator::new(3, START).take(400).collect();
    let table = id(&engine, ProductEvent::spec().name);
    for (i, chunk) in events.chunks(40).enumerate() {
        engine.apply(chunk.iter().map(|e| Update::insert(table, e.row.clone())).collect()).await.unwrap();
        if i == 4 {
            let (status, _) =
                request(addr, "POST", "/override", Some(KEY), Some(r#"{"product_id": "PD", "override_price": 450}"#))
                    .await;
            assert_eq!(status, 200);
        }
    }
    // What the socket should carry: every price_updates row after the catalog load.
    let mut expected: Vec<PriceUpdate> =
        rows(&engine, "price_updates").iter().map(|r| PriceUpdate::from_row(r).unwrap()).collect();
    expected.retain(|u| u.seq > 1);
    let mut received: Vec<Value> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.len() < expected.len() {
        let message = tokio::time::timeout_at(deadline.into(), socket.next()).await.expect("updates arrive in time");
        let message = message.expect("the stream stays open").unwrap();
        received.push(parse(message.to_text().unwrap()));
    }
    for message in &received {
        assert_eq!(message["type"], "price_update");
        assert_eq!(message.as_object().unwrap().len(), 4, "{message}");
    }
    // Each product's changes arrive in order, and together they are exactly the view's rows.
    let mut per_product: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for m in &received {
        per_product.entry(m["product_id"].as_str().unwrap().to_string()).or_default().push(m.clone());
    }
    let mut want: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for u in &expected {
        let mut m = u.to_json();
        m["type"] = json!("price_update");
        // Through text, as the received ones came: parsing rounds the same way.
        want.entry(u.product_id.clone()).or_default().push(parse(&m.to_string()));
    }
    assert_eq!(per_product, want);
    let pd = &per_product["PD"];
    assert!(pd.iter().any(|m| m["new_price"] == 450.0), "the override is a price change");
}

// ------------------------------------------------------------------------------------------
// Kafka
// ------------------------------------------------------------------------------------------

type Mock = rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>;

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn product_events_from_kafka_price_and_price_updates_go_back_out() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

    let mock: Mock = rdkafka::mocking::MockCluster::new(1).unwrap();
    mock.create_topic("product-events", 2, 1).unwrap();
    mock.create_topic("price-updates", 1, 1).unwrap();
    let brokers = mock.bootstrap_servers();

    // The generator's events, as `diffmart produce` writes them, plus bad ones.
    let events: Vec<GeneratedEvent> = PricingGenerator::new(5, START).take(1500).collect();
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", &brokers).set("linger.ms", "1").create().unwrap();
    let send = |key: &str, payload: &str| loop {
        match producer.send(BaseRecord::to("product-events").key(key).payload(payload)) {
            Ok(()) => break,
            Err(_) => {
                producer.poll(Duration::from_millis(50));
            }
        }
    };
    for (i, event) in events.iter().enumerate() {
        let (topic, key, json) = diffmart::produce::encode_event(event).unwrap().unwrap();
        assert_eq!(topic, "product-events");
        send(&key, &json);
        if i == 700 {
            send(
                "PA",
                r#"{"event_type": "click", "product_id": "PA", "user_id": "u", "timestamp": 1748779200000, "price": 10}"#,
            );
            send(
                "PA",
                r#"{"event_type": "view", "product_id": "", "user_id": "u", "timestamp": 1748779200000, "price": 10}"#,
            );
            send(
                "PA",
                r#"{"event_type": "view", "product_id": "PA", "user_id": "u", "timestamp": 1748779200000, "price": 0}"#,
            );
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let json: Value = parse(&diffmart::produce::encode_event(&events[0]).unwrap().unwrap().2);
    assert_eq!(json.as_object().unwrap().keys().collect::<Vec<_>>().len(), 5, "{json}");
    assert_eq!(json["timestamp"].as_i64(), Some(event_of(&events[0]).timestamp / 1000), "epoch ms");

    let engine = start_engine(2, None);
    load_catalog(&engine);
    let sinks = KafkaSinks::start(&engine, &brokers, &[], kafka_sinks("")).unwrap();
    let pricing_sources = kafka_sources().into_iter().filter(|s| s.relation.name == "product_events").collect();
    let sources =
        KafkaSources::start(&engine, KafkaConfig { readers: 2, ..KafkaConfig::new(&brokers) }, pricing_sources)
            .unwrap();
    let statuses = |engine: &Engine| -> Vec<SourceStatus> {
        rows(engine, SourceStatus::spec().name).iter().map(|r| SourceStatus::from_row(r).unwrap()).collect()
    };
    wait_for("every message read", Duration::from_secs(90), || {
        let partitions: Vec<SourceStatus> = statuses(&engine).into_iter().filter(|s| s.partition >= 0).collect();
        partitions.len() == 2
            && partitions.iter().map(|s| s.messages).sum::<i64>() == events.len() as i64 + 3
            && partitions.iter().all(|s| s.lag == Some(0))
    });
    // The three bad messages are counted and kept with their reason; nothing stopped.
    let errors: i64 = statuses(&engine).iter().map(|s| s.errors).sum();
    assert_eq!(errors, 3);
    let reasons: Vec<String> =
        rows(&engine, SourceError::spec().name).iter().map(|r| SourceError::from_row(r).unwrap().error).collect();
    assert!(reasons.iter().any(|r| r.contains("event_type must be view, cart or purchase")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("product_id must not be blank")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("price must be a positive number")), "{reasons:?}");

    // The views equal those of the same events applied directly.
    let direct = start_engine(1, None);
    load_catalog(&direct);
    let table = id(&direct, ProductEvent::spec().name);
    direct.apply_blocking(events.iter().map(|e| Update::insert(table, e.row.clone())).collect()).unwrap();
    assert_eq!(rows(&engine, "product_events").len(), events.len());
    assert_eq!(pricing_views(&engine), pricing_views(&direct));

    // price-updates holds every change, in each product's order.
    let expected: Vec<PriceUpdate> =
        rows(&engine, "price_updates").iter().map(|r| PriceUpdate::from_row(r).unwrap()).collect();
    let counters = sinks.counters.clone();
    wait_for("price updates delivered", Duration::from_secs(60), || {
        counters.delivered.load(std::sync::atomic::Ordering::Acquire) >= expected.len() as u64
    });
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "pricing-test")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset("price-updates", 0, Offset::Beginning).unwrap();
    consumer.assign(&assignment).unwrap();
    let mut messages: Vec<(String, Value)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while messages.len() < expected.len() {
        assert!(Instant::now() < deadline, "read {} of {} price updates", messages.len(), expected.len());
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.unwrap();
            let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
            messages.push((key, serde_json::from_slice(message.payload().unwrap()).unwrap()));
        }
    }
    let mut by_product: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (key, message) in messages {
        let mut fields: Vec<&str> = message.as_object().unwrap().keys().map(String::as_str).collect();
        fields.sort();
        assert_eq!(fields, ["new_price", "product_id", "timestamp"]);
        assert_eq!(message["product_id"].as_str(), Some(key.as_str()), "keyed by product");
        by_product.entry(key).or_default().push(message);
    }
    let mut want: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for u in &expected {
        want.entry(u.product_id.clone()).or_default().push(parse(&u.to_json().to_string()));
    }
    assert_eq!(by_product, want);
    let pa = &by_product["PA"];
    assert_eq!(
        pa[0],
        json!({"product_id": "PA", "new_price": 299.0, "timestamp": START / MICROS_PER_SECOND}),
        "the base price first"
    );
    sources.stop();
    sinks.stop();
}

// ------------------------------------------------------------------------------------------
// The binary
// ------------------------------------------------------------------------------------------

#[test]
fn a_port_in_use_is_a_one_line_error_and_exit_status_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let http = taken.local_addr().unwrap();
    let pg = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_diffmart"))
        .args(["--pg-listen", &pg.to_string(), "--http-listen", &http.to_string(), "--no-generator", "--ephemeral"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].starts_with(&format!("diffmart: error: cannot listen on {http} for HTTP: ")), "{stderr}");
    drop(taken);
}

#[test]
fn the_generator_prices_the_catalog() {
    let engine = start_engine(1, None);
    let config =
        diffmart::sources::GeneratorConfig { seed: 1, start: START, rate: Some(100_000.0), events: Some(3000) };
    let simulations = diffmart::pipelines::simulations(&config, &diffmart::sources::nothing_held);
    diffmart::sources::spawn_generator(engine.clone(), config, simulations).unwrap();
    wait_for("the generator to finish", Duration::from_secs(60), || {
        rows(&engine, SourceStatus::spec().name).iter().any(|r| SourceStatus::from_row(r).unwrap().status == "finished")
    });
    let prices: Vec<ProductPrice> =
        rows(&engine, "product_prices").iter().map(|r| ProductPrice::from_row(r).unwrap()).collect();
    assert_eq!(prices.iter().map(|p| p.product_id.as_str()).collect::<Vec<_>>(), pricing::CATALOG.map(|(id, _)| id));
    assert!(prices.iter().any(|p| p.price_source == "dynamic" && p.demand > 0), "{prices:?}");
    for p in &prices {
        let base = pricing::CATALOG.iter().find(|(id, _)| *id == p.product_id).unwrap().1;
        assert_eq!(p.price.get(), if p.demand == 0 { base } else { dynamic_price(base, p.demand) }, "{p:?}");
    }
}
