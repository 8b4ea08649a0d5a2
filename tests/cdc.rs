//! Postgres CDC against a real, throwaway PostgreSQL (`wal_level=logical`):
//!
//! - the initial snapshot and the stream line up exactly while a writer inserts,
//!   updates and deletes continuously during start-up (1 and 2 workers);
//! - updates, deletes, primary-key changes, multi-statement transactions and
//!   TRUNCATE, with REPLICA IDENTITY DEFAULT and FULL;
//! - PostgreSQL stopped and started again, and the walsender killed, mid-stream:
//!   resumed from the slot, no re-snapshot, nothing lost or doubled;
//! - SQL writes to the mirrored tables are refused, the generator leaves them alone;
//! - the retail views fed by CDC equal the views computed from the same rows;
//! - the binary on a data directory, killed with SIGKILL, resumes from its slot with
//!   no new snapshot, and takes one (retracting the old mirror) only if the slot was lost.
//!
//! After every step diffmart's tables must equal PostgreSQL's as multisets of rows.
//! Run: `cargo test --release --test cdc` (PostgreSQL server binaries must be installed).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use diffmart::compute::ComputeConfig;
use diffmart::engine::{Engine, Update};
use diffmart::pipelines::retail::generator::RetailGenerator;
use diffmart::sources::cdc::{self, CdcConfig, CdcHandle, CdcState, CdcStatus};
use diffmart::sources::{GeneratorConfig, spawn_generator};
use diffmart_dataflows::datum::{Datum, Record, RelationSpec, Row};
use diffmart_dataflows::retail::{Order, ProductInventory};
use support::postgres::TestPostgres;
use support::server::DiffmartProcess;
use support::{canonical_rows, multiset_diff, pg_canonical_rows};
use tokio_postgres::Client;

/// The upstream tables, as the original demo's PostgreSQL has them.
const UPSTREAM_SCHEMA: &str = r#"
CREATE TABLE product_inventory (
  product_id int PRIMARY KEY,
  product_name varchar,
  stock_level int,
  reorder_threshold int,
  supplier varchar,
  base_price decimal
);
CREATE TABLE orders (
  order_id int PRIMARY KEY,
  order_time timestamptz,
  product_id int,
  quantity int,
  customer_id varchar
);
"#;

const MIRRORED: [fn() -> &'static RelationSpec; 2] = [ProductInventory::spec, Order::spec];

/// An upstream database with the schema and the 20 catalog products, plus `orders` orders.
async fn upstream(pg: &TestPostgres, database: &str, orders: i32) -> Client {
    let client = pg.create_database(database).await;
    client.batch_execute(UPSTREAM_SCHEMA).await.unwrap();
    let products: Vec<String> = RetailGenerator::catalog().iter().map(|p| values_sql(&p.to_row())).collect();
    client.batch_execute(&format!("INSERT INTO product_inventory VALUES {}", products.join(", "))).await.unwrap();
    if orders > 0 {
        client
            .batch_execute(&format!(
                "INSERT INTO orders SELECT i, timestamptz '2025-06-01 12:00:00+00' + i * interval '1.5 seconds', \
                 1 + i % 20, 1 + i % 4, 'cust_' || i FROM generate_series(1, {orders}) i"
            ))
            .await
            .unwrap();
    }
    client
}

/// `(v1, v2, ...)` of a row, as SQL literals.
fn values_sql(row: &Row) -> String {
    let literals: Vec<String> = row
        .iter()
        .map(|d| match d {
            Datum::Null => "NULL".to_string(),
            Datum::Int32(v) => v.to_string(),
            Datum::Numeric(v) => v.to_string(),
            Datum::Text(s) => format!("'{}'", s.replace('\'', "''")),
            Datum::Timestamp(t) => format!("timestamptz 'epoch' + {t} * interval '1 microsecond'"),
            other => panic!("no literal for {other:?} in these tests"),
        })
        .collect();
    format!("({})", literals.join(", "))
}

struct Mirror {
    engine: Arc<Engine>,
    cdc: CdcHandle,
}

fn start_mirror(pg: &TestPostgres, database: &str, workers: usize) -> Mirror {
    let engine = Engine::start(&ComputeConfig { workers, ..Default::default() }).expect("engine starts");
    let config = CdcConfig::new(format!("postgres://postgres@127.0.0.1:{}/{database}", pg.port()));
    let cdc = cdc::spawn(engine.clone(), config, &tokio::runtime::Handle::current()).expect("CDC starts");
    Mirror { engine, cdc }
}

/// Waits until the status satisfies `done`; panics with the status after `timeout`.
async fn wait_status(cdc: &CdcHandle, timeout: Duration, what: &str, done: impl Fn(&CdcStatus) -> bool) -> CdcStatus {
    let deadline = Instant::now() + timeout;
    loop {
        let status = cdc.status();
        if done(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "CDC not {what} after {timeout:?}: {status:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until diffmart's mirrored tables equal PostgreSQL's; panics with the difference after `timeout`.
async fn wait_mirrored(mirror: &Mirror, upstream: &Client, timeout: Duration, step: &str) {
    let deadline = Instant::now() + timeout;
    loop {
        let mut difference = None;
        for spec in MIRRORED.map(|spec| spec()) {
            let expected = pg_canonical_rows(upstream, spec).await;
            let id = mirror.engine.catalog().id(spec.name).unwrap();
            let actual = canonical_rows(&mirror.engine.snapshot().rows(id));
            let columns: Vec<&str> = spec.columns.iter().map(|c| c.name).collect();
            if let Some(diff) = multiset_diff(&columns, 1, &expected, &actual, "postgres", "diffmart", 8) {
                difference = Some(format!("{}: {diff}", spec.name));
                break;
            }
        }
        let Some(difference) = difference else { return };
        assert!(
            Instant::now() < deadline,
            "{step}: diffmart's tables still differ from PostgreSQL's after {timeout:?}\n{difference}\nCDC status: {:#?}",
            mirror.cdc.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Keeps writing orders until stopped: each transaction inserts a new order and
/// sometimes updates, re-keys or deletes older ones. Reconnects when the server goes
/// away. Returns how many transactions committed.
fn spawn_writer(connection_string: String, stop: Arc<AtomicBool>, first_id: i32) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let committed = AtomicU64::new(0);
        let mut id = first_id;
        while !stop.load(Ordering::Relaxed) {
            let Ok((client, connection)) = tokio_postgres::connect(&connection_string, tokio_postgres::NoTls).await
            else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            tokio::spawn(connection);
            while !stop.load(Ordering::Relaxed) {
                id += 1;
                let mut sql = format!(
                    "BEGIN; INSERT INTO orders VALUES ({id}, timestamptz '2025-06-01 13:00:00+00' + {id} * interval '1 second', \
                     {}, {}, 'writer_{id}');",
                    1 + id % 20,
                    1 + id % 5
                );
                if id % 3 == 0 {
                    sql += &format!("UPDATE orders SET quantity = quantity + 1 WHERE order_id = {};", id - 1);
                }
                if id % 5 == 0 {
                    sql += &format!("DELETE FROM orders WHERE order_id = {};", id - 2);
                }
                if id % 7 == 0 {
                    sql += &format!("UPDATE orders SET order_id = {} WHERE order_id = {};", -id, id - 3);
                }
                if id % 11 == 0 {
                    sql += &format!(
                        "UPDATE product_inventory SET stock_level = stock_level - 1 WHERE product_id = {};",
                        1 + id % 20
                    );
                }
                sql += "COMMIT;";
                if client.batch_execute(&sql).await.is_err() {
                    break;
                }
                committed.fetch_add(1, Ordering::Relaxed);
                if id % 16 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }
        committed.load(Ordering::Relaxed)
    })
}

async fn snapshot_and_stream_line_up(workers: usize) {
    let pg = TestPostgres::start();
    let client = upstream(&pg, "shop", 2000).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(pg.connection_string_for("shop"), stop.clone(), 100_000);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Start while the writer commits transaction after transaction.
    let mirror = start_mirror(&pg, "shop", workers);
    let streaming =
        wait_status(&mirror.cdc, Duration::from_secs(30), "streaming", |s| s.state == CdcState::Streaming).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    let committed = writer.await.unwrap();
    wait_mirrored(&mirror, &client, Duration::from_secs(30), "after the concurrent writer").await;

    let status = mirror.cdc.status();
    assert!(committed > 50, "the writer committed only {committed} transactions");
    assert!(streaming.snapshot_rows > 2020, "the snapshot missed the writer's rows: {streaming:#?}");
    assert!(status.transactions_applied > 0, "nothing came through the stream: {status:#?}");
    assert_eq!((status.reconnects, status.last_error.as_deref()), (0, None), "{status:#?}");
    eprintln!(
        "workers {workers}: writer committed {committed} transactions; snapshot {} rows, then {} transactions streamed",
        status.snapshot_rows, status.transactions_applied
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_and_stream_line_up_1_worker() {
    snapshot_and_stream_line_up(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_and_stream_line_up_2_workers() {
    snapshot_and_stream_line_up(2).await;
}

/// Every kind of change, one step at a time, each followed by a full comparison.
async fn changes_flow_through(replica_identity: &str) {
    let pg = TestPostgres::start();
    let client = upstream(&pg, "shop", 200).await;
    client
        .batch_execute(&format!(
            "ALTER TABLE orders REPLICA IDENTITY {replica_identity}; \
             ALTER TABLE product_inventory REPLICA IDENTITY {replica_identity};"
        ))
        .await
        .unwrap();
    let mirror = start_mirror(&pg, "shop", 2);
    wait_mirrored(&mirror, &client, Duration::from_secs(30), "snapshot").await;

    let steps = [
        (
            "update without key change",
            "UPDATE product_inventory SET stock_level = stock_level + 5 WHERE product_id <= 3",
        ),
        ("update to NULLs", "UPDATE product_inventory SET supplier = NULL, base_price = NULL WHERE product_id = 4"),
        ("primary-key change", "UPDATE orders SET order_id = order_id + 1000 WHERE order_id <= 5"),
        (
            "key and value change",
            "UPDATE product_inventory SET product_id = 100, base_price = 12.34 WHERE product_id = 5",
        ),
        ("deletes", "DELETE FROM orders WHERE order_id % 7 = 0"),
        (
            "one transaction touching a row several times",
            "BEGIN; INSERT INTO orders VALUES (5000, now(), 1, 1, 'a'); UPDATE orders SET quantity = 9 WHERE order_id = 5000; \
             INSERT INTO orders VALUES (5001, now(), 2, 2, 'b'); DELETE FROM orders WHERE order_id = 5001; \
             UPDATE orders SET order_id = 6000 WHERE order_id = 5000; UPDATE product_inventory SET product_name = NULL WHERE product_id = 6; COMMIT",
        ),
        (
            "keys swapped inside a transaction",
            "BEGIN; UPDATE orders SET order_id = -1 WHERE order_id = 10; UPDATE orders SET order_id = 10 WHERE order_id = 11; \
             UPDATE orders SET order_id = 11 WHERE order_id = -1; COMMIT",
        ),
        ("rolled back", "BEGIN; INSERT INTO orders VALUES (7000, now(), 1, 1, 'x'); DELETE FROM orders; ROLLBACK"),
        (
            "delete then insert the same key",
            "BEGIN; DELETE FROM orders WHERE order_id = 12; INSERT INTO orders VALUES (12, now(), 3, 3, 'again'); COMMIT",
        ),
        ("truncate", "TRUNCATE orders"),
        (
            "inserts after truncate",
            "INSERT INTO orders SELECT i, now(), i % 20 + 1, 1, 'new' FROM generate_series(1, 50) i",
        ),
        (
            "a table outside the publication",
            "CREATE TABLE other (id int PRIMARY KEY); INSERT INTO other VALUES (1); UPDATE orders SET quantity = 0 WHERE order_id = 1",
        ),
    ];
    for (step, sql) in steps {
        client.batch_execute(sql).await.unwrap_or_else(|e| panic!("{step}: {sql}: {e}"));
        wait_mirrored(&mirror, &client, Duration::from_secs(20), &format!("{replica_identity}: {step}")).await;
    }
    let status = mirror.cdc.status();
    assert_eq!((status.reconnects, status.last_error.as_deref()), (0, None), "{status:#?}");
    assert!(status.transactions_applied >= steps.len() as u64 - 2, "{status:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_with_replica_identity_default() {
    changes_flow_through("DEFAULT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_with_replica_identity_full() {
    changes_flow_through("FULL").await;
}

/// PostgreSQL stopped and started again, then the walsender killed, while a writer
/// keeps committing: the source resumes from its slot each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_after_restart_without_loss_or_duplicates() {
    let mut pg = TestPostgres::start();
    let client = upstream(&pg, "shop", 500).await;
    let mirror = start_mirror(&pg, "shop", 2);
    let first =
        wait_status(&mirror.cdc, Duration::from_secs(30), "streaming", |s| s.state == CdcState::Streaming).await;

    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(pg.connection_string_for("shop"), stop.clone(), 100_000);
    tokio::time::sleep(Duration::from_millis(800)).await;

    // A fast shutdown cuts every connection, the replication one included.
    drop(client);
    tokio::task::block_in_place(|| pg.stop());
    wait_status(&mirror.cdc, Duration::from_secs(10), "disconnected", |s| s.state == CdcState::Disconnected).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    tokio::task::block_in_place(|| pg.start_again());
    let client = pg.connect_to("shop").await;
    wait_status(&mirror.cdc, Duration::from_secs(30), "streaming again", |s| {
        s.state == CdcState::Streaming && s.reconnects >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;

    // Now only the replication connection dies.
    let killed = client
        .query("SELECT pg_terminate_backend(pid) FROM pg_stat_replication WHERE application_name = 'diffmart-cdc'", &[])
        .await
        .unwrap();
    assert_eq!(killed.len(), 1, "one walsender serves diffmart");
    wait_status(&mirror.cdc, Duration::from_secs(30), "reconnected", |s| {
        s.state == CdcState::Streaming && s.reconnects >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, Ordering::Relaxed);
    let committed = writer.await.unwrap();
    wait_mirrored(&mirror, &client, Duration::from_secs(180), "after restarts").await;

    let status = mirror.cdc.status();
    assert_eq!(status.snapshot_rows, first.snapshot_rows, "resumed with a new snapshot: {status:#?}");
    assert!(committed > 50, "the writer committed only {committed} transactions");
    // The slot hears of applied transactions: its confirmed position catches up with ours.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let confirmed: String = client
            .query_one(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'diffmart_cdc'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let ours = mirror.cdc.status().confirmed_lsn;
        if ours.as_deref() == Some(confirmed.as_str()) {
            break;
        }
        assert!(Instant::now() < deadline, "slot confirmed {confirmed}, diffmart {ours:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "writer committed {committed}; {} transactions applied, {} resent and skipped, {} reconnects",
        status.transactions_applied, status.transactions_skipped, status.reconnects
    );
}

/// The source owns its tables: pgwire writes are refused, the generator skips them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_owns_its_tables() {
    let pg = TestPostgres::start();
    let upstream_client = upstream(&pg, "shop", 100).await;
    let mirror = start_mirror(&pg, "shop", 1);
    wait_mirrored(&mirror, &upstream_client, Duration::from_secs(30), "snapshot").await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    diffmart::pgwire::spawn(mirror.engine.clone(), listener);
    let (client, connection) = tokio_postgres::connect(
        &format!("host={} port={} user=root dbname=dev", addr.ip(), addr.port()),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    for sql in [
        "INSERT INTO orders VALUES (99999, now(), 1, 1, 'sql')",
        "UPDATE orders SET quantity = 0",
        "DELETE FROM orders WHERE order_id = 1",
        "DELETE FROM product_inventory",
    ] {
        let error = client.simple_query(sql).await.expect_err(sql);
        let db = error.as_db_error().unwrap_or_else(|| panic!("{sql}: {error}"));
        assert_eq!(db.code().code(), "42501", "{sql}: {db}");
        assert!(db.message().contains("CDC source"), "{sql}: {}", db.message());
    }
    // Reads still work.
    let rows = client.simple_query("SELECT count(*) FROM orders").await.unwrap();
    assert!(rows.iter().any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("100"))));

    // The generator writes its streams but neither the catalog nor orders.
    let config = GeneratorConfig { seed: 3, start: 1_750_000_000_000_000, rate: Some(5000.0), events: Some(400) };
    let simulations = diffmart::pipelines::simulations(&config, &diffmart::sources::nothing_held);
    let generator = spawn_generator(mirror.engine.clone(), config, simulations).unwrap();
    tokio::task::block_in_place(|| generator.join().unwrap());
    let purchases = mirror.engine.catalog().id("purchases").unwrap();
    let wait = Instant::now() + Duration::from_secs(10);
    while mirror.engine.snapshot().rows(purchases).is_empty() {
        assert!(Instant::now() < wait, "the generator wrote no purchases");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    upstream_client.batch_execute("UPDATE orders SET quantity = 7 WHERE order_id = 3").await.unwrap();
    wait_mirrored(&mirror, &upstream_client, Duration::from_secs(20), "with the generator running").await;
}

/// The retail views of a diffmart fed by CDC equal those of a diffmart given the
/// same table rows and events directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retail_views_fed_by_cdc_equal_views_of_the_same_rows() {
    let pg = TestPostgres::start();
    let upstream_client = upstream(&pg, "shop", 0).await;
    let fed = start_mirror(&pg, "shop", 2);
    let direct = Engine::start(&ComputeConfig { workers: 1, ..Default::default() }).unwrap();
    wait_mirrored(&fed, &upstream_client, Duration::from_secs(30), "snapshot").await;

    // The generator's history: orders go upstream (a transaction per 25 events),
    // everything else straight into both engines.
    let start = 1_750_000_000_000_000;
    let events: Vec<_> = RetailGenerator::new(11, start).take(1500).collect();
    for chunk in events.chunks(25) {
        let mut orders = Vec::new();
        let mut fed_updates = Vec::new();
        let mut direct_updates = Vec::new();
        for event in chunk {
            if event.relation == Order::spec().name {
                orders.push(values_sql(&event.row));
                continue;
            }
            fed_updates.push(Update::insert(fed.engine.catalog().id(event.relation).unwrap(), event.row.clone()));
            direct_updates.push(Update::insert(direct.catalog().id(event.relation).unwrap(), event.row.clone()));
        }
        if !orders.is_empty() {
            upstream_client.batch_execute(&format!("INSERT INTO orders VALUES {}", orders.join(", "))).await.unwrap();
        }
        fed.engine.apply(fed_updates).await.unwrap();
        direct.apply(direct_updates).await.unwrap();
    }
    // Table changes after the events: stock, price, a re-keyed and a deleted order.
    upstream_client
        .batch_execute(
            "UPDATE product_inventory SET stock_level = stock_level + 100, base_price = round(base_price * 1.10, 2) WHERE product_id % 3 = 0; \
             UPDATE orders SET order_id = order_id + 100000 WHERE order_id % 10 = 1; \
             DELETE FROM orders WHERE order_id % 10 = 2;",
        )
        .await
        .unwrap();
    wait_mirrored(&fed, &upstream_client, Duration::from_secs(30), "after the history").await;

    // The direct engine gets the tables' final rows, as read from PostgreSQL through diffmart's types.
    let mut direct_updates = Vec::new();
    for spec in MIRRORED.map(|spec| spec()) {
        let fed_id = fed.engine.catalog().id(spec.name).unwrap();
        for row in fed.engine.snapshot().rows(fed_id) {
            direct_updates.push(Update::insert(direct.catalog().id(spec.name).unwrap(), row));
        }
        let expected = pg_canonical_rows(&upstream_client, spec).await;
        assert_eq!(canonical_rows(&fed.engine.snapshot().rows(fed_id)), expected);
    }
    direct.apply(direct_updates).await.unwrap();

    let (fed_snapshot, direct_snapshot) = (fed.engine.snapshot(), direct.snapshot());
    let mut compared = 0;
    for spec in diffmart_dataflows::retail::view_specs() {
        let fed_rows = canonical_rows(&fed_snapshot.rows(fed.engine.catalog().id(spec.name).unwrap()));
        let direct_rows = canonical_rows(&direct_snapshot.rows(direct.catalog().id(spec.name).unwrap()));
        let columns: Vec<&str> = spec.columns.iter().map(|c| c.name).collect();
        if let Some(diff) = multiset_diff(&columns, 1, &direct_rows, &fed_rows, "direct", "cdc", 8) {
            panic!("view {} differs:\n{diff}", spec.name);
        }
        assert!(!fed_rows.is_empty(), "view {} is empty: the test proves nothing", spec.name);
        compared += fed_rows.len();
    }
    eprintln!("{compared} view rows equal");
}

// ------------------------------------------------------------------------------------------
// The binary on a data directory: restarts
// ------------------------------------------------------------------------------------------

/// The mirrored tables' rows as text, numbers canonical, timestamps left out (the
/// writer derives them from the key): the same query on PostgreSQL and on diffmart.
async fn table_texts(client: &Client) -> Vec<Vec<String>> {
    let queries = [
        "SELECT 'product', product_id, product_name, stock_level, reorder_threshold, supplier, base_price FROM product_inventory",
        "SELECT 'order', order_id, product_id, quantity, customer_id FROM orders",
    ];
    let mut rows = Vec::new();
    for sql in queries {
        for message in client.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")) {
            if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
                let values = (0..row.len()).map(|i| match row.get(i) {
                    None => "NULL".to_string(),
                    Some(text) => match text.parse::<rust_decimal::Decimal>() {
                        Ok(number) => support::canonical_decimal(number),
                        Err(_) => text.to_string(),
                    },
                });
                rows.push(values.collect());
            }
        }
    }
    rows.sort();
    rows
}

/// Waits until diffmart's mirrored tables, read over pgwire, equal PostgreSQL's.
async fn wait_mirrored_over_pgwire(server: &DiffmartProcess, upstream: &Client, step: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let diffmart = server.connect().await;
    loop {
        let (expected, found) = (table_texts(upstream).await, table_texts(&diffmart).await);
        let columns = ["kind", "id", "…"];
        let Some(diff) = multiset_diff(&columns, 2, &expected, &found, "postgres", "diffmart", 8) else { return };
        assert!(Instant::now() < deadline, "{step}: the mirror still differs after 60 s:\n{diff}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The server mirroring on a data directory, killed with SIGKILL while a writer
/// commits, restarted while the writer goes on: it recovers the mirror from its log
/// and resumes from the slot without a new snapshot, and ends equal to PostgreSQL.
/// Killed again and the slot dropped meanwhile (with orders deleted and added
/// upstream): it takes a new snapshot, which retracts what the old mirror held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_resumes_from_the_slot_and_resnapshots_only_a_lost_one() {
    let pg = TestPostgres::start();
    let client = upstream(&pg, "shop", 300).await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("postgres://postgres@127.0.0.1:{}/shop", pg.port());
    let options = ["--no-generator", "--cdc-url", &url];

    let mut server = DiffmartProcess::start_on(dir.path(), &options);
    server.wait_ready(Duration::from_secs(60)).await;
    wait_mirrored_over_pgwire(&server, &client, "the snapshot").await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(pg.connection_string_for("shop"), stop.clone(), 100_000);
    tokio::time::sleep(Duration::from_millis(700)).await;
    server.kill9();
    // The writer goes on while diffmart is down.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut server = DiffmartProcess::start_on(dir.path(), &options);
    server.wait_ready(Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    let committed = writer.await.unwrap();
    assert!(committed > 50, "the writer committed only {committed} transactions");
    wait_mirrored_over_pgwire(&server, &client, "after kill -9 and a restart").await;
    let stderr = server.stderr();
    assert!(stderr.contains("without a new snapshot"), "no resumption from the data directory:\n{stderr}");
    assert!(!stderr.contains("snapshot loaded"), "the restart took a new snapshot:\n{stderr}");

    // Down again, and the slot goes while it is (the walsender lets go of it shortly).
    server.kill9();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client
        .query("SELECT pg_drop_replication_slot('diffmart_cdc') FROM pg_replication_slots WHERE slot_name = 'diffmart_cdc'", &[])
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the slot stayed active after diffmart was killed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client
        .batch_execute(
            "DELETE FROM orders WHERE order_id % 4 = 0; \
             INSERT INTO orders SELECT i, now(), 1, 1, 'late_' || i FROM generate_series(900001, 900050) i; \
             UPDATE product_inventory SET stock_level = 0 WHERE product_id < 5;",
        )
        .await
        .unwrap();
    let mut server = DiffmartProcess::start_on(dir.path(), &options);
    server.wait_ready(Duration::from_secs(60)).await;
    wait_mirrored_over_pgwire(&server, &client, "after the slot was lost").await;
    let stderr = server.stderr();
    assert!(stderr.contains("taking a new snapshot"), "the lost slot was not noticed:\n{stderr}");
}
