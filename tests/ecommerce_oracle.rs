//! Oracle test of the e-commerce pipeline (`shared/spec/PIPELINES.md` §B, seed 001).
//!
//! A seeded random history of sessions (partial funnels, late and re-timed events,
//! NULL referrers, sessions, users and times, purchases across hours and windows,
//! JSON fields missing, null or held as strings) and of product changes is applied
//! batch by batch both to diffmart and to a real PostgreSQL, where the seven views
//! are plain SQL VIEWs (`support/ecommerce_sql.rs`). Events and products are also
//! updated and deleted. After every batch all seven views must be equal as multisets
//! of rows. Runs with 1 and with 2 timely workers.
//!
//! Run: `cargo test --release --test ecommerce_oracle` (PostgreSQL server binaries must
//! be installed). Knobs: `ECOMMERCE_ORACLE_SEEDS=1,2,3` and `ECOMMERCE_ORACLE_BATCHES=40`.
//! On a mismatch the panic names seed, workers, batch and view, shows the differing
//! rows, and points to a SQL script that replays the history into PostgreSQL.

#[path = "support/ecommerce_sql.rs"]
mod ecommerce_sql;
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use diffmart::compute::ComputeConfig;
use diffmart::engine::{Engine, Update};
use diffmart_dataflows::datum::{F64, MICROS_PER_MINUTE, MICROS_PER_SECOND, Micros, Record, parse_json};
use diffmart_dataflows::ecommerce::{Product, User, UserEvent};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use support::oracle::{self, Batch, OracleViews};
use support::postgres::TestPostgres;

/// Which corners of the views the histories reached, summed over batches.
const COVERAGE_SQL: &str = r#"
SELECT
  (SELECT count(*) FROM funnel_analysis WHERE total_sessions = 0),
  (SELECT count(*) FROM funnel_analysis WHERE total_sessions > 0 AND purchase_count > 0),
  (SELECT count(*) FROM user_events WHERE session_id IS NULL),
  (SELECT count(*) FROM pageview_metrics WHERE referrer_url IS NULL),
  (SELECT count(*) FROM pageview_metrics WHERE first_view IS NULL),
  (SELECT count(*) FROM revenue_tracker WHERE total_revenue IS NULL OR items_sold IS NULL),
  (SELECT count(*) FROM revenue_tracker WHERE purchase_count > 1),
  (SELECT count(*) FROM product_performance WHERE purchases > 0),
  (SELECT count(*) FROM product_performance WHERE view_count = 0),
  (SELECT count(*) FROM anomaly_detection WHERE is_anomaly),
  (SELECT count(*) FROM anomaly_detection WHERE z_score IS NOT NULL),
  (SELECT count(*) FROM anomaly_detection WHERE hour IS NULL),
  (SELECT count(*) FROM anomaly_detection WHERE max_count IS NOT NULL AND max_count > min_count + 3)
"#;
const COVERAGE_NAMES: [&str; 13] = [
    "funnel with no sessions",
    "funnel with purchases",
    "events without a session",
    "pageviews with a NULL referrer",
    "pageview groups without times",
    "windows with a NULL sum",
    "windows with several purchases",
    "products with purchases",
    "products without views",
    "anomalous hours",
    "hours with a z-score",
    "the NULL hour",
    "hours with a wide spread",
];

// ------------------------------------------------------------------------------------------
// Random history
// ------------------------------------------------------------------------------------------

/// 2024-05-01T10:00:00: the first instant of the history (`timestamp`, no time zone).
const T0: Micros = 1_714_557_600 * MICROS_PER_SECOND;

/// Products events refer to; the last two are never in the `products` table.
const PRODUCT_IDS: [&str; 8] = ["P001", "P002", "P003", "P004", "P005", "P006", "P098", "P099"];
const CATEGORIES: [&str; 3] = ["Electronics", "Home & Kitchen", "Clothing"];
const DEVICES: [&str; 3] = ["mobile", "desktop", "tablet"];
const REFERRERS: [&str; 4] = ["https://google.com", "https://bing.com", "https://instagram.com", "https://twitter.com"];
const PAGES: [&str; 4] = [
    "https://example.com/home",
    "https://example.com/products",
    "https://example.com/cart",
    "https://example.com/deals",
];
const USER_IDS: [&str; 6] = ["U001", "U002", "U003", "U004", "U005", "U006"];

/// One change, as both systems see it.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant, reason = "a test script of a few hundred operations; boxing buys nothing")]
enum Op {
    ProductInsert(Product),
    ProductUpdate { old: Product, new: Product },
    ProductDelete(Product),
    UserInsert(User),
    EventInsert(UserEvent),
    EventUpdate { old: UserEvent, new: UserEvent },
    EventDelete(UserEvent),
}

/// A session walking down the funnel.
struct Session {
    id: Option<String>,
    user: Option<String>,
    device: Option<String>,
    /// 0 landed, 1 browsing, 2 has a cart, 3 checked out.
    stage: u8,
    time: Micros,
    last_page: Option<String>,
    cart_items: i32,
    cart_value_cents: i64,
}

struct History {
    rng: StdRng,
    /// "Now" in event time.
    cursor: Micros,
    sessions: Vec<Session>,
    next_session: u32,
    next_event: u32,
    next_order: u32,
    events: BTreeMap<String, UserEvent>,
    products: BTreeMap<String, Product>,
    version: u32,
}

impl History {
    fn new(seed: u64) -> History {
        History {
            rng: StdRng::seed_from_u64(seed),
            cursor: T0,
            sessions: Vec::new(),
            next_session: 1,
            next_event: 1,
            next_order: 1,
            events: BTreeMap::new(),
            products: BTreeMap::new(),
            version: 0,
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items.choose(&mut self.rng).expect("non-empty")
    }

    fn product_row(&mut self, product_id: &str) -> Product {
        self.version += 1;
        let price = if self.chance(0.08) {
            None
        } else {
            // Whole cents, sometimes exactly whole, sometimes with binary-unfriendly decimals.
            Some(F64::new(self.rng.random_range(100..=90_000) as f64 / 100.0))
        };
        Product {
            product_id: product_id.to_string(),
            name: if self.chance(0.05) { None } else { Some(format!("product {product_id} v{}", self.version % 3)) },
            category: if self.chance(0.05) { None } else { Some(self.pick(&CATEGORIES).to_string()) },
            price,
            inventory_count: Some(self.rng.random_range(0..1000)),
            created_at: Some(T0 - self.rng.random_range(1..90) * 24 * 60 * MICROS_PER_MINUTE),
            is_active: Some(self.chance(0.9)),
        }
    }

    fn user_row(&mut self, user_id: &str) -> User {
        User {
            user_id: user_id.to_string(),
            email: Some(format!("{}@example.com", user_id.to_lowercase())),
            country: Some("Canada".into()),
            city: if self.chance(0.3) { None } else { Some("Toronto".into()) },
            device_type: Some(self.pick(&DEVICES).to_string()),
            created_at: Some(T0 - 30 * 24 * 60 * MICROS_PER_MINUTE),
            last_login: None,
        }
    }

    fn start_session(&mut self) {
        let id = if self.chance(0.04) {
            None
        } else {
            let id = format!("S{:03}", self.next_session);
            self.next_session += 1;
            Some(id)
        };
        let user = if self.chance(0.05) { None } else { Some(self.pick(&USER_IDS).to_string()) };
        let device = if self.chance(0.05) { None } else { Some(self.pick(&DEVICES).to_string()) };
        let time = self.cursor + self.rng.random_range(-600..=600) * MICROS_PER_SECOND;
        self.sessions.push(Session {
            id,
            user,
            device,
            stage: 0,
            time,
            last_page: None,
            cart_items: 0,
            cart_value_cents: 0,
        });
    }

    /// The purchase's `event_data`: usually the seed's shape, sometimes with fields
    /// missing, `null`, or numbers held in strings (all things PostgreSQL's casts accept).
    fn purchase_data(&mut self, session: &Session) -> String {
        self.next_order += 1;
        let amount = session.cart_value_cents.max(1) as f64 / 100.0;
        let mut fields = vec![format!("\"order_id\": \"ORD{:04}\"", self.next_order)];
        let roll: f64 = self.rng.random();
        if roll < 0.08 {
            // no total_amount
        } else if roll < 0.13 {
            fields.push("\"total_amount\": null".into());
        } else if roll < 0.22 {
            fields.push(format!("\"total_amount\": \"{amount}\""));
        } else {
            fields.push(format!("\"total_amount\": {amount}"));
        }
        let roll: f64 = self.rng.random();
        let items = session.cart_items.max(1);
        if roll < 0.08 {
            // no item_count
        } else if roll < 0.14 {
            fields.push(format!("\"item_count\": \" {items}\""));
        } else {
            fields.push(format!("\"item_count\": {items}"));
        }
        fields.push(format!("\"payment_method\": \"{}\"", self.pick(&["credit_card", "paypal"])));
        format!("{{{}}}", fields.join(", "))
    }

    /// The next event of session `i`, or `None` when the session ends.
    fn session_event(&mut self, i: usize) -> Option<UserEvent> {
        let step = self.rng.random_range(20..=240) * MICROS_PER_SECOND + self.rng.random_range(0..MICROS_PER_SECOND);
        self.sessions[i].time += step;
        let stage = self.sessions[i].stage;
        let abandon = match stage {
            0 => 0.1,
            1 => 0.15,
            2 => 0.12,
            _ => 0.1,
        };
        if self.chance(abandon) {
            return None;
        }
        let roll: f64 = self.rng.random();
        let product = self.pick(&PRODUCT_IDS).to_string();
        let (event_type, product_id, page, data, next_stage): (Option<&str>, Option<String>, String, String, u8) =
            match stage {
                0 => (Some("pageview"), None, self.pick(&PAGES).to_string(), "{\"scroll_depth\": 40}".into(), 1),
                1 if roll < 0.45 => {
                    let page = format!("https://example.com/products/{product}");
                    (Some("product_view"), Some(product), page, "{\"view_duration\": 30}".into(), 1)
                }
                1 if roll < 0.75 => {
                    let cents = self.rng.random_range(500..20_000);
                    let session = &mut self.sessions[i];
                    session.cart_items += 1;
                    session.cart_value_cents += cents;
                    let page = format!("https://example.com/products/{product}");
                    (Some("add_to_cart"), Some(product), page, "{\"quantity\": 1}".into(), 2)
                }
                1 | 2 if roll < 0.85 => (Some("pageview"), None, self.pick(&PAGES).to_string(), "{}".into(), stage),
                2 if roll < 0.9 => {
                    let page = format!("https://example.com/products/{product}");
                    (Some("remove_from_cart"), Some(product), page, "{\"quantity\": 1}".into(), 2)
                }
                1 => (None, None, "https://example.com/unknown".into(), "{}".into(), 1),
                2 => {
                    let data = format!("{{\"cart_value\": {}, \"item_count\": {}}}", 1, self.sessions[i].cart_items);
                    (Some("checkout"), None, "https://example.com/checkout".into(), data, 3)
                }
                _ => {
                    let session = &self.sessions[i];
                    let snapshot = Session {
                        id: None,
                        user: None,
                        device: None,
                        stage: 3,
                        time: 0,
                        last_page: None,
                        cart_items: session.cart_items,
                        cart_value_cents: session.cart_value_cents,
                    };
                    let data = self.purchase_data(&snapshot);
                    // Some purchases name a product, so product_performance counts them.
                    let product_id = self.chance(0.3).then_some(product);
                    (Some("purchase"), product_id, "https://example.com/order-confirmation".into(), data, 4)
                }
            };
        let referrer = if self.chance(0.2) {
            None
        } else {
            match self.sessions[i].last_page.clone() {
                Some(previous) if self.chance(0.7) => Some(previous),
                _ => Some(self.pick(&REFERRERS).to_string()),
            }
        };
        let event_time = if self.chance(0.02) { None } else { Some(self.sessions[i].time) };
        let session = &mut self.sessions[i];
        session.stage = next_stage;
        session.last_page = Some(page.clone());
        let event = UserEvent {
            event_id: format!("E{:05}", self.next_event),
            user_id: session.user.clone(),
            session_id: session.id.clone(),
            event_type: event_type.map(String::from),
            product_id,
            page_url: Some(page),
            referrer_url: referrer,
            device_type: session.device.clone(),
            event_time,
            event_data: Some(data),
        };
        self.next_event += 1;
        Some(event)
    }

    fn insert_event(&mut self, event: UserEvent, ops: &mut Vec<Op>) {
        self.events.insert(event.event_id.clone(), event.clone());
        ops.push(Op::EventInsert(event));
    }

    fn random_event_id(&mut self) -> Option<String> {
        let ids: Vec<&String> = self.events.keys().collect();
        ids.choose(&mut self.rng).map(|id| (*id).clone())
    }

    /// An existing event with one thing changed: its type, time, session or data.
    fn changed_event(&mut self, old: &UserEvent) -> UserEvent {
        let mut new = old.clone();
        match self.rng.random_range(0..5) {
            0 => new.event_type = Some(self.pick(&["purchase", "pageview", "product_view", "checkout"]).to_string()),
            1 => new.event_time = old.event_time.map(|t| t + self.rng.random_range(-180..=180) * MICROS_PER_MINUTE),
            2 => new.session_id = Some(format!("S{:03}", self.rng.random_range(1..self.next_session.max(2)))),
            3 => {
                new.event_data =
                    Some(format!("{{\"total_amount\": {}, \"item_count\": 3}}", self.rng.random_range(1..500)))
            }
            _ => new.referrer_url = None,
        }
        new
    }

    /// The changes of batch `n` of `total`.
    fn batch(&mut self, n: usize, total: usize) -> Vec<Op> {
        let mut ops = Vec::new();
        if n == 0 {
            for id in &PRODUCT_IDS[..5] {
                let row = self.product_row(id);
                self.products.insert(id.to_string(), row.clone());
                ops.push(Op::ProductInsert(row));
            }
            for id in USER_IDS {
                let row = self.user_row(id);
                ops.push(Op::UserInsert(row));
            }
        }
        // Time moves 15 to 75 minutes per batch, so purchases spread over more than 24 hours.
        self.cursor += self.rng.random_range(15..=75) * MICROS_PER_MINUTE;

        // Near the end everything goes, and the funnel is back to its empty row; then a few return.
        if n + 3 == total {
            let all: Vec<UserEvent> = std::mem::take(&mut self.events).into_values().collect();
            ops.extend(all.into_iter().map(Op::EventDelete));
            self.sessions.clear();
            return ops;
        }

        // A flash sale now and then: a burst of purchases in one hour.
        let burst = self.chance(0.1);
        let new_sessions = if burst { 10 } else { self.rng.random_range(0..=3) };
        for _ in 0..new_sessions {
            self.start_session();
            if burst {
                let last = self.sessions.len() - 1;
                self.sessions[last].stage = 3;
                self.sessions[last].cart_items = 2;
                self.sessions[last].cart_value_cents = 4_999;
            }
        }
        let mut i = 0;
        while i < self.sessions.len() {
            if !burst && !self.chance(0.7) {
                i += 1;
                continue;
            }
            match self.session_event(i) {
                Some(event) => {
                    let done = self.sessions[i].stage > 3;
                    self.insert_event(event, &mut ops);
                    if done {
                        self.sessions.swap_remove(i);
                    } else {
                        i += 1;
                    }
                }
                None => {
                    self.sessions.swap_remove(i);
                }
            }
        }

        // A late purchase, hours back, for an hour that already has rows after it.
        if self.chance(0.2) {
            let event = UserEvent {
                event_id: format!("E{:05}", self.next_event),
                user_id: Some(self.pick(&USER_IDS).to_string()),
                session_id: Some(format!("S{:03}", self.rng.random_range(1..self.next_session.max(2)))),
                event_type: Some("purchase".into()),
                product_id: None,
                page_url: Some("https://example.com/order-confirmation".into()),
                referrer_url: None,
                device_type: Some("desktop".into()),
                event_time: Some(self.cursor - self.rng.random_range(60..=20 * 60) * MICROS_PER_MINUTE),
                event_data: Some(format!(
                    "{{\"total_amount\": {}.25, \"item_count\": 1}}",
                    self.rng.random_range(1..90)
                )),
            };
            self.next_event += 1;
            self.insert_event(event, &mut ops);
        }

        // Updates and deletes of events.
        for _ in 0..self.rng.random_range(0..=2) {
            if let Some(id) = self.random_event_id() {
                let old = self.events[&id].clone();
                let new = self.changed_event(&old);
                self.events.insert(id, new.clone());
                ops.push(Op::EventUpdate { old, new });
            }
        }
        if self.chance(0.35)
            && let Some(id) = self.random_event_id()
        {
            let old = self.events.remove(&id).expect("present");
            ops.push(Op::EventDelete(old));
        }

        // Products change, vanish and come back.
        if self.chance(0.3) {
            let id = self.pick(&PRODUCT_IDS[..6]).to_string();
            match self.products.get(&id).cloned() {
                Some(old) if self.chance(0.2) => {
                    self.products.remove(&id);
                    ops.push(Op::ProductDelete(old));
                }
                Some(old) => {
                    let new = self.product_row(&id);
                    self.products.insert(id, new.clone());
                    ops.push(Op::ProductUpdate { old, new });
                }
                None => {
                    let row = self.product_row(&id);
                    self.products.insert(id, row.clone());
                    ops.push(Op::ProductInsert(row));
                }
            }
        }
        ops
    }
}

// ------------------------------------------------------------------------------------------
// The same change for diffmart and for PostgreSQL
// ------------------------------------------------------------------------------------------

struct Ids {
    products: usize,
    users: usize,
    user_events: usize,
}

impl Ids {
    fn of(engine: &Engine) -> Ids {
        let id = |name: &str| engine.catalog().id(name).unwrap_or_else(|| panic!("diffmart has no relation {name}"));
        Ids { products: id("products"), users: id("users"), user_events: id("user_events") }
    }
}

/// An event as diffmart stores it: `event_data` in canonical jsonb form.
fn stored(event: &UserEvent) -> UserEvent {
    let mut event = event.clone();
    event.event_data = event.event_data.map(|text| parse_json(&text).expect("the history writes valid JSON"));
    event
}

fn engine_updates(op: &Op, ids: &Ids, out: &mut Vec<Update>) {
    match op {
        Op::ProductInsert(p) => out.push(Update::insert(ids.products, p.to_row())),
        Op::ProductUpdate { old, new } => {
            out.push(Update::delete(ids.products, old.to_row()));
            out.push(Update::insert(ids.products, new.to_row()));
        }
        Op::ProductDelete(p) => out.push(Update::delete(ids.products, p.to_row())),
        Op::UserInsert(u) => out.push(Update::insert(ids.users, u.to_row())),
        Op::EventInsert(e) => out.push(Update::insert(ids.user_events, stored(e).to_row())),
        Op::EventUpdate { old, new } => {
            out.push(Update::delete(ids.user_events, stored(old).to_row()));
            out.push(Update::insert(ids.user_events, stored(new).to_row()));
        }
        Op::EventDelete(e) => out.push(Update::delete(ids.user_events, stored(e).to_row())),
    }
}

fn sql_ts(t: Micros) -> String {
    let time = chrono::DateTime::from_timestamp_micros(t).expect("timestamp in range");
    format!("'{}'::timestamp", time.format("%Y-%m-%d %H:%M:%S%.6f"))
}
fn sql_text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
fn sql_opt<T>(value: &Option<T>, render: impl Fn(&T) -> String) -> String {
    value.as_ref().map_or_else(|| "NULL".to_string(), render)
}
fn sql_product_values(p: &Product) -> String {
    format!(
        "{}, {}, {}, {}, {}, {}, {}",
        sql_text(&p.product_id),
        sql_opt(&p.name, |s| sql_text(s)),
        sql_opt(&p.category, |s| sql_text(s)),
        sql_opt(&p.price, |v| format!("{}::float8", v.get())),
        sql_opt(&p.inventory_count, i32::to_string),
        sql_opt(&p.created_at, |t| sql_ts(*t)),
        sql_opt(&p.is_active, bool::to_string),
    )
}
fn sql_user_values(u: &User) -> String {
    format!(
        "{}, {}, {}, {}, {}, {}, {}",
        sql_text(&u.user_id),
        sql_opt(&u.email, |s| sql_text(s)),
        sql_opt(&u.country, |s| sql_text(s)),
        sql_opt(&u.city, |s| sql_text(s)),
        sql_opt(&u.device_type, |s| sql_text(s)),
        sql_opt(&u.created_at, |t| sql_ts(*t)),
        sql_opt(&u.last_login, |t| sql_ts(*t)),
    )
}
fn sql_event_values(e: &UserEvent) -> String {
    let text = |v: &Option<String>| sql_opt(v, |s| sql_text(s));
    format!(
        "{}, {}, {}, {}, {}, {}, {}, {}, {}, {}",
        sql_text(&e.event_id),
        text(&e.user_id),
        text(&e.session_id),
        text(&e.event_type),
        text(&e.product_id),
        text(&e.page_url),
        text(&e.referrer_url),
        text(&e.device_type),
        sql_opt(&e.event_time, |t| sql_ts(*t)),
        sql_opt(&e.event_data, |s| format!("{}::jsonb", sql_text(s))),
    )
}

/// The statement that makes the same change in PostgreSQL.
fn pg_statement(op: &Op) -> String {
    match op {
        Op::ProductInsert(p) => format!("INSERT INTO products VALUES ({});", sql_product_values(p)),
        Op::ProductUpdate { old, new } => format!(
            "DELETE FROM products WHERE product_id = {}; INSERT INTO products VALUES ({});",
            sql_text(&old.product_id),
            sql_product_values(new)
        ),
        Op::ProductDelete(p) => format!("DELETE FROM products WHERE product_id = {};", sql_text(&p.product_id)),
        Op::UserInsert(u) => format!("INSERT INTO users VALUES ({});", sql_user_values(u)),
        Op::EventInsert(e) => format!("INSERT INTO user_events VALUES ({});", sql_event_values(e)),
        Op::EventUpdate { old, new } => format!(
            "UPDATE user_events SET (event_id, user_id, session_id, event_type, product_id, page_url, referrer_url, \
             device_type, event_time, event_data) = ({}) WHERE event_id = {};",
            sql_event_values(new),
            sql_text(&old.event_id)
        ),
        Op::EventDelete(e) => format!("DELETE FROM user_events WHERE event_id = {};", sql_text(&e.event_id)),
    }
}

// ------------------------------------------------------------------------------------------
// The test
// ------------------------------------------------------------------------------------------

fn env_list(name: &str, default: &[u64]) -> Vec<u64> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => {
            v.split(',').map(|s| s.trim().parse().unwrap_or_else(|_| panic!("{name}: bad number {s:?}"))).collect()
        }
        _ => default.to_vec(),
    }
}

const DEFAULT_SEEDS: [u64; 4] = [1, 2, 3, 4];
const DEFAULT_BATCHES: u64 = 45;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecommerce_views_match_postgres_with_1_worker() {
    run_oracle(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecommerce_views_match_postgres_with_2_workers() {
    run_oracle(2).await;
}

async fn run_oracle(workers: usize) {
    let seeds = env_list("ECOMMERCE_ORACLE_SEEDS", &DEFAULT_SEEDS);
    let batches = env_list("ECOMMERCE_ORACLE_BATCHES", &[DEFAULT_BATCHES])[0] as usize;
    let started = Instant::now();
    let pg = tokio::task::spawn_blocking(TestPostgres::start).await.expect("starting PostgreSQL");
    let client = pg.connect().await;
    let schema = format!("{}{}", ecommerce_sql::TABLES, ecommerce_sql::VIEWS);
    client.batch_execute(&schema).await.unwrap_or_else(|e| panic!("creating the oracle schema: {e:?}"));
    eprintln!("[workers={workers}] PostgreSQL {} up after {:?}", pg.port(), started.elapsed());

    let mut coverage = [0i64; COVERAGE_NAMES.len()];
    for &seed in &seeds {
        let seed_started = Instant::now();
        let truncate = format!("TRUNCATE {};", ecommerce_sql::INPUT_TABLES.join(", "));
        client.batch_execute(&truncate).await.expect("truncating the oracle tables");
        let engine = Engine::start(&ComputeConfig { workers, ..Default::default() }).expect("starting diffmart");
        let stats = run_seed(&engine, &client, seed, workers, batches, &mut coverage).await;
        drop(engine);
        eprintln!(
            "[workers={workers}] seed {seed}: {batches} batches, {} updates, largest view sizes {:?}, {} shrinking \
             comparisons, {:?}",
            stats.updates,
            stats.largest_sizes,
            stats.shrinks,
            seed_started.elapsed()
        );
        assert!(stats.shrinks > 0, "seed {seed}: no batch made any view shrink; the history misses retractions");
    }
    let report: Vec<String> = COVERAGE_NAMES.iter().zip(coverage).map(|(name, n)| format!("{name}: {n}")).collect();
    eprintln!("[workers={workers}] rows compared, by case: {}", report.join(", "));
    let defaults =
        std::env::var_os("ECOMMERCE_ORACLE_SEEDS").is_none() && std::env::var_os("ECOMMERCE_ORACLE_BATCHES").is_none();
    if defaults {
        for (name, n) in COVERAGE_NAMES.iter().zip(coverage) {
            assert!(n > 0, "the histories never reached case \"{name}\"");
        }
    }
    eprintln!("[workers={workers}] done in {:?}", started.elapsed());
}

struct SeedStats {
    updates: usize,
    shrinks: usize,
    largest_sizes: Vec<usize>,
}

async fn run_seed(
    engine: &Arc<Engine>,
    client: &tokio_postgres::Client,
    seed: u64,
    workers: usize,
    batches: usize,
    coverage: &mut [i64],
) -> SeedStats {
    let ids = Ids::of(engine);
    let mut views = OracleViews::new(engine, &ecommerce_sql::VIEW_NAMES, ecommerce_sql::key_columns);
    let mut history = History::new(seed);
    let mut script = format!(
        "-- ecommerce oracle: seed {seed}, workers {workers}\n{}{}\n",
        ecommerce_sql::TABLES,
        ecommerce_sql::VIEWS
    );
    let mut stats = SeedStats { updates: 0, shrinks: 0, largest_sizes: Vec::new() };

    // Batch 0 is the empty state: every view empty but the funnel's one row.
    for batch in 0..=batches {
        let label = format!("ecommerce oracle: seed {seed}, workers {workers}, batch {batch} of {batches}");
        let mut batch_sql = String::new();
        if batch > 0 {
            let ops = history.batch(batch - 1, batches);
            let mut updates = Vec::new();
            for op in &ops {
                engine_updates(op, &ids, &mut updates);
                batch_sql.push_str(&pg_statement(op));
                batch_sql.push('\n');
            }
            stats.updates += updates.len();
            oracle::apply_batch(client, engine, Batch { label: &label, sql: &batch_sql, updates }, &mut script).await;
        }
        let failures = views.compare(client, &engine.snapshot()).await;
        if !failures.is_empty() {
            let file = format!("ecommerce_oracle_seed{seed}_workers{workers}_batch{batch}");
            oracle::fail_with_history(&label, &file, &failures, &script, &batch_sql);
        }

        let row = client.query_one(COVERAGE_SQL, &[]).await.expect("coverage query");
        for (i, slot) in coverage.iter_mut().enumerate() {
            *slot += row.get::<_, i64>(i);
        }
    }
    stats.shrinks = views.shrinks;
    stats.largest_sizes = views.largest;
    stats
}
