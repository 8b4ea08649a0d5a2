//! The seed's test data file, loaded unchanged with `psql -f` into the real server
//! binary, gives the views PostgreSQL gives.
//!
//! Two comparisons, because the file's timestamps are `NOW() - INTERVAL ...` and the
//! two servers' NOW() differ:
//! 1. PostgreSQL loads the same file: the views that do not depend on the clock
//!    (funnel, product metrics, page views without their times) must be equal, and
//!    the funnel must show the seed's 7 sessions and 5 purchases;
//! 2. PostgreSQL loads diffmart's own copy of the three tables (read back over
//!    pgwire): all seven views must be equal, times and hopping windows included.
//!
//! Needs `psql` and PostgreSQL's server binaries (see `tests/support/postgres.rs`).

#[path = "support/ecommerce_sql.rs"]
mod ecommerce_sql;
mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use diffmart_dataflows::datum::RelationSpec;
use diffmart_dataflows::ecommerce;
use support::postgres::{SUPERUSER, TestPostgres};
use support::server::DiffmartProcess;
use support::wire::canonical_wire_value;
use support::{CanonicalRow, canonical_decimal, canonical_float};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

fn test_data_file() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/ecommerce-test-data.sql");
    assert!(path.exists(), "the seed's test data is missing: {}", path.display());
    path
}

/// `psql -f file` with ON_ERROR_STOP: the whole file or a failure with psql's output.
fn psql_file(host: &str, port: u16, user: &str, database: &str, file: &PathBuf) {
    let output = Command::new("psql")
        .args(["-h", host, "-p", &port.to_string(), "-U", user, "-d", database, "-X", "-v", "ON_ERROR_STOP=1"])
        .arg("-f")
        .arg(file)
        .output()
        .expect("psql runs (apt-get install postgresql-client)");
    assert!(
        output.status.success(),
        "psql -f {} on port {port} failed:\n{}\n{}",
        file.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let inserts: Vec<&str> = stdout.lines().filter(|l| l.starts_with("INSERT")).collect();
    assert_eq!(
        inserts,
        [
            "INSERT 0 10",
            "INSERT 0 10",
            "INSERT 0 9",
            "INSERT 0 5",
            "INSERT 0 5",
            "INSERT 0 11",
            "INSERT 0 6",
            "INSERT 0 10"
        ],
        "command tags on port {port}"
    );
}

async fn connect_diffmart(port: u16) -> Client {
    let config = format!("host=127.0.0.1 port={port} user=root dbname=dev");
    let (client, connection) = tokio_postgres::connect(&config, NoTls).await.expect("connects to diffmart");
    tokio::spawn(connection);
    client
}

/// Every row of a relation (or of the first `columns` columns) over the simple
/// protocol, as text.
async fn text_rows(client: &Client, spec: &RelationSpec, columns: usize) -> Vec<Vec<Option<String>>> {
    let names: Vec<String> = spec.columns[..columns].iter().map(|c| format!("\"{}\"", c.name)).collect();
    let sql = format!("SELECT {} FROM {}", names.join(", "), spec.name);
    let messages = client.simple_query(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some((0..columns).map(|i| row.get(i).map(String::from)).collect()),
            _ => None,
        })
        .collect()
}

async fn diffmart_canonical(client: &Client, spec: &RelationSpec, columns: usize) -> Vec<CanonicalRow> {
    let mut rows: Vec<CanonicalRow> = text_rows(client, spec, columns)
        .await
        .iter()
        .map(|row| row.iter().zip(&spec.columns).map(|(v, c)| canonical_wire_value(c.ty, v.as_deref())).collect())
        .collect();
    rows.sort();
    rows
}

async fn pg_canonical(client: &Client, spec: &RelationSpec, columns: usize) -> Vec<CanonicalRow> {
    let mut rows: Vec<CanonicalRow> =
        support::pg_canonical_rows(client, spec).await.into_iter().map(|r| r[..columns].to_vec()).collect();
    rows.sort();
    rows
}

fn view_spec(name: &str) -> &'static RelationSpec {
    ecommerce::view_specs().into_iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no view {name}"))
}

fn assert_same(view: &str, spec: &RelationSpec, columns: usize, expected: &[CanonicalRow], actual: &[CanonicalRow]) {
    let names: Vec<&str> = spec.columns[..columns].iter().map(|c| c.name).collect();
    if let Some(diff) = support::multiset_diff(
        &names,
        ecommerce_sql::key_columns(view).min(columns),
        expected,
        actual,
        "postgres",
        "diffmart",
        20,
    ) {
        panic!("view {view}: {diff}");
    }
}

/// `INSERT INTO <table> VALUES ...` holding diffmart's rows of an input table, literals
/// cast to the column types so PostgreSQL reads exactly what diffmart printed.
fn copy_statement(spec: &RelationSpec, rows: &[Vec<Option<String>>]) -> String {
    let values: Vec<String> = rows
        .iter()
        .map(|row| {
            let literals: Vec<String> = row
                .iter()
                .zip(&spec.columns)
                .map(|(v, c)| match v {
                    None => "NULL".into(),
                    Some(text) => format!("'{}'::{}", text.replace('\'', "''"), c.ty.sql_name()),
                })
                .collect();
            format!("({})", literals.join(", "))
        })
        .collect();
    format!("INSERT INTO {} VALUES {};", spec.name, values.join(",\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_test_data_loads_with_psql_and_matches_postgres() {
    let file = test_data_file();
    let server = DiffmartProcess::start(&["-w", "2", "--no-generator"]);
    let port = server.pg_port;
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "diffmart never listened on port {port}");
        std::thread::sleep(Duration::from_millis(100));
    }

    let load = {
        let file = file.clone();
        tokio::task::spawn_blocking(move || psql_file("127.0.0.1", port, "root", "dev", &file))
    };
    load.await.expect("psql -f into diffmart");
    let diffmart = connect_diffmart(port).await;

    // The seed's funnel: 7 sessions, 5 of them bought.
    let funnel = text_rows(&diffmart, view_spec("funnel_analysis"), 6).await;
    let counts: Vec<Option<&str>> = funnel[0].iter().map(|v| v.as_deref()).collect();
    assert_eq!(counts, [Some("7"), Some("7"), Some("7"), Some("6"), Some("5"), Some("5")], "funnel counts");

    let pg = tokio::task::spawn_blocking(TestPostgres::start).await.expect("starting PostgreSQL");

    // 1. PostgreSQL loads the same file.
    let same_file = pg.create_database("same_file").await;
    same_file.batch_execute(&format!("{}{}", ecommerce_sql::TABLES, ecommerce_sql::VIEWS)).await.unwrap();
    let pg_port = pg.port();
    tokio::task::spawn_blocking(move || psql_file("127.0.0.1", pg_port, SUPERUSER, "same_file", &file))
        .await
        .expect("psql -f into PostgreSQL");
    // Views and columns that do not depend on NOW().
    for (view, columns) in
        [("funnel_analysis", 11), ("product_view_metrics", 7), ("product_performance", 10), ("pageview_metrics", 6)]
    {
        let spec = view_spec(view);
        let expected = pg_canonical(&same_file, spec, columns).await;
        let actual = diffmart_canonical(&diffmart, spec, columns).await;
        assert!(!expected.is_empty(), "{view} is empty in PostgreSQL");
        assert_same(view, spec, columns, &expected, &actual);
    }
    // Every purchase is in 12 windows whatever the clock; totals agree.
    let totals = "SELECT sum(purchase_count), sum(items_sold), sum(total_revenue) FROM revenue_tracker";
    let first_row = |messages: &[SimpleQueryMessage]| -> Vec<String> {
        let values: Vec<String> = messages
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(r) => Some((0..3).map(|i| r.get(i).unwrap_or("NULL").to_string()).collect()),
                _ => None,
            })
            .expect("one row");
        vec![
            canonical_decimal(values[0].parse().unwrap()),
            canonical_decimal(values[1].parse().unwrap()),
            canonical_float(values[2].parse().unwrap()),
        ]
    };
    let expected = first_row(&same_file.simple_query(totals).await.unwrap());
    assert_eq!(expected, ["60", "120", &canonical_float(14698.8)]);
    assert_eq!(first_row(&diffmart.simple_query(totals).await.unwrap()), expected);

    // 2. PostgreSQL loads diffmart's copy of the tables: every view, every column.
    let copied = pg.create_database("copied").await;
    copied.batch_execute(&format!("{}{}", ecommerce_sql::TABLES, ecommerce_sql::VIEWS)).await.unwrap();
    for spec in ecommerce::input_specs() {
        let rows = text_rows(&diffmart, spec, spec.columns.len()).await;
        assert!(!rows.is_empty(), "diffmart's {} is empty", spec.name);
        copied.batch_execute(&copy_statement(spec, &rows)).await.unwrap_or_else(|e| panic!("{}: {e:?}", spec.name));
    }
    for spec in ecommerce::view_specs() {
        let columns = spec.columns.len();
        let expected = pg_canonical(&copied, spec, columns).await;
        let actual = diffmart_canonical(&diffmart, spec, columns).await;
        assert!(!expected.is_empty(), "{} is empty in PostgreSQL", spec.name);
        assert_same(spec.name, spec, columns, &expected, &actual);
    }

    // The JSON operators work on jsonb columns.
    let amounts = diffmart
        .simple_query(
            "SELECT event_id, event_data->>'total_amount' FROM user_events WHERE event_type = 'purchase' ORDER BY event_id",
        )
        .await
        .expect("->> on jsonb");
    let amounts: Vec<(String, String)> = amounts
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some((r.get(0).unwrap().to_string(), r.get(1).unwrap_or("NULL").to_string())),
            _ => None,
        })
        .collect();
    assert_eq!(amounts.len(), 5);
    assert_eq!(amounts[0], ("E009".to_string(), "149.98".to_string()));
    let with_items = diffmart
        .simple_query("SELECT count(*) FROM user_events WHERE event_data->>'item_count' IS NOT NULL")
        .await
        .expect("->> in a filter");
    assert!(with_items.iter().any(|m| matches!(m, SimpleQueryMessage::Row(r) if r.get(0) == Some("10"))));
    let order = diffmart
        .simple_query("SELECT event_data->'order_id' FROM user_events WHERE event_id = 'E046'")
        .await
        .expect("-> on jsonb");
    assert!(
        order.iter().any(|m| matches!(m, SimpleQueryMessage::Row(r) if r.get(0).is_some_and(|v| v.contains("ORD005")))),
        "{order:?}"
    );
}

/// The seed's file loads while the embedded generator runs: the generator's own
/// products, users and events use ids of their own (`G-…`), so a user's data with
/// the seed's ids (P001…, U001…) never collides with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_test_data_loads_while_the_generator_runs() {
    let file = test_data_file();
    let server = DiffmartProcess::start(&["-w", "1", "--generator-rate", "2000"]);
    let port = server.pg_port;
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "diffmart never listened on port {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let diffmart = connect_diffmart(port).await;
    let count = |sql: &'static str| {
        let diffmart = &diffmart;
        async move {
            let rows = diffmart.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
            rows.iter()
                .find_map(|m| match m {
                    SimpleQueryMessage::Row(row) => row.get(0).map(|v| v.parse::<i64>().unwrap()),
                    _ => None,
                })
                .unwrap()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while count("SELECT count(*) FROM user_events").await == 0 {
        assert!(Instant::now() < deadline, "the generator wrote no user_events");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    tokio::task::spawn_blocking(move || psql_file("127.0.0.1", port, "root", "dev", &file))
        .await
        .expect("psql -f into diffmart while the generator runs");
    assert_eq!(count("SELECT count(*) FROM products WHERE product_id LIKE 'P0%'").await, 10, "the seed's products");
    assert_eq!(count("SELECT count(*) FROM users WHERE user_id LIKE 'U0%'").await, 10, "the seed's users");
    assert_eq!(count("SELECT count(*) FROM user_events WHERE event_id LIKE 'E0%'").await, 46, "the seed's events");
    assert_eq!(
        count("SELECT count(*) FROM products WHERE product_id LIKE 'G-P%'").await,
        10,
        "the generator's products"
    );
    let generated = count("SELECT count(*) FROM user_events WHERE event_id LIKE 'G-E%'").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while count("SELECT count(*) FROM user_events WHERE event_id LIKE 'G-E%'").await == generated {
        assert!(Instant::now() < deadline, "the generator stopped after the load");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
