//! The Postgres front end with real clients: tokio-postgres (extended protocol,
//! binary results) against an in-process server, and psql against the binary
//! running the README's commands.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diffmart::compute::ComputeConfig;
use diffmart::engine::Engine;
use rust_decimal::Decimal;
use support::server::DiffmartProcess;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

/// A server on a free port, in this process.
async fn start_server(workers: usize) -> (Arc<Engine>, SocketAddr) {
    let engine = Engine::start(&ComputeConfig { workers, ..Default::default() }).expect("engine starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    diffmart::pgwire::spawn(engine.clone(), listener);
    (engine, addr)
}

async fn connect(addr: SocketAddr) -> Client {
    let config = format!("host={} port={} user=root dbname=dev", addr.ip(), addr.port());
    let (client, connection) = tokio_postgres::connect(&config, NoTls).await.expect("connects");
    tokio::spawn(connection);
    client
}

async fn sqlstate_of(client: &Client, sql: &str) -> SqlState {
    let error = client.simple_query(sql).await.expect_err(sql);
    error.code().cloned().unwrap_or_else(|| panic!("no SQLSTATE for {sql}: {error}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_read_back_through_prepared_statements_and_views() {
    let (_engine, addr) = start_server(1).await;
    let client = connect(addr).await;

    let insert = client
        .prepare("INSERT INTO product_inventory (product_id, product_name, stock_level, reorder_threshold, supplier, base_price) VALUES ($1, $2, $3, $4, $5, $6)")
        .await
        .unwrap();
    for (id, name, stock, price) in [(1, "Mouse", 10, "19.99"), (2, "Desk", 35, "349.99"), (3, "Hub", 120, "34.99")] {
        let price: Decimal = price.parse().unwrap();
        let rows = client.execute(&insert, &[&id, &name, &stock, &5i32, &"S", &price]).await.unwrap();
        assert_eq!(rows, 1);
    }

    // Read-your-writes: the view already reflects every acknowledged insert.
    let rows = client
        .query(
            "SELECT product_id, stock_level_category, current_inventory, base_price FROM product_stock_status WHERE product_id >= $1 ORDER BY product_id",
            &[&1i32],
        )
        .await
        .unwrap();
    let got: Vec<(i32, String, Decimal, Decimal)> =
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect();
    assert_eq!(
        got,
        vec![
            (1, "Low".to_string(), Decimal::from(10), "19.99".parse().unwrap()),
            (2, "Medium".to_string(), Decimal::from(35), "349.99".parse().unwrap()),
            (3, "High".to_string(), Decimal::from(120), "34.99".parse().unwrap()),
        ]
    );

    // UPDATE (including a primary-key change) and DELETE report row counts.
    assert_eq!(
        client
            .execute("UPDATE product_inventory SET stock_level = stock_level + 40 WHERE product_id = 1", &[])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        client.execute("UPDATE product_inventory SET product_id = 30 WHERE product_id = 3", &[]).await.unwrap(),
        1
    );
    assert_eq!(client.execute("DELETE FROM product_inventory WHERE product_id = 2", &[]).await.unwrap(), 1);
    let rows = client
        .query("SELECT product_id, stock_level_category FROM dynamic_pricing_enriched ORDER BY product_id", &[])
        .await
        .unwrap();
    let got: Vec<(i32, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, vec![(1, "Medium".to_string()), (30, "High".to_string())]);

    // Timestamps and joins between tables and views.
    client
        .batch_execute("INSERT INTO orders VALUES (1, '2025-06-01 12:00:30Z', 1, 2, 'c1'), (2, '2025-06-01 12:01:00Z', 9, 1, 'c2')")
        .await
        .unwrap();
    let rows = client
        .query(
            "SELECT o.order_id, s.total_orders, s.product_name FROM orders o JOIN sales_profit s ON s.product_id = o.product_id ORDER BY o.order_id",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(i32, i64, Option<String>)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(got, vec![(1, 2, Some("Mouse".to_string())), (2, 1, None)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_right_sqlstate_and_the_server_keeps_serving() {
    let (_engine, addr) = start_server(1).await;
    let client = connect(addr).await;
    let other = connect(addr).await;
    client.batch_execute("INSERT INTO product_inventory VALUES (1, 'Mouse', 10, 5, 'S', 19.99)").await.unwrap();

    let cases = [
        ("SELECT * FROM no_such_view", SqlState::UNDEFINED_TABLE),
        ("SELEC 1", SqlState::SYNTAX_ERROR),
        ("SELECT no_such_column FROM orders", SqlState::UNDEFINED_COLUMN),
        ("INSERT INTO product_inventory VALUES (1, 'Again', 1, 1, 'x', 1.00)", SqlState::UNIQUE_VIOLATION),
        ("INSERT INTO orders (order_id, quantity) VALUES (7, 'many')", SqlState::INVALID_TEXT_REPRESENTATION),
        ("INSERT INTO orders (order_id) VALUES (NULL)", SqlState::NOT_NULL_VIOLATION),
        ("INSERT INTO sales_profit VALUES (1, 'x', 1, 1.00)", SqlState::WRONG_OBJECT_TYPE),
        ("DELETE FROM minute_join", SqlState::WRONG_OBJECT_TYPE),
        ("INSERT INTO purchases VALUES (now(), 1, 1, 'c')", SqlState::WRONG_OBJECT_TYPE),
    ];
    for (sql, expected) in cases {
        assert_eq!(sqlstate_of(&client, sql).await, expected, "{sql}");
        // Both this connection and another one still work, and nothing changed.
        for c in [&client, &other] {
            let row = c.query_one("SELECT count(*) FROM product_inventory", &[]).await.unwrap();
            assert_eq!(row.get::<_, i64>(0), 1, "after {sql}");
        }
    }
    // The refused duplicate left the original row alone.
    let row = client.query_one("SELECT product_name FROM product_inventory WHERE product_id = 1", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "Mouse");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_reads_one_snapshot() {
    let (_engine, addr) = start_server(1).await;
    let reader = connect(addr).await;
    let writer = connect(addr).await;
    writer.batch_execute("INSERT INTO orders VALUES (1, '2025-06-01 12:00:00Z', 1, 1, 'c')").await.unwrap();

    reader.batch_execute("BEGIN").await.unwrap();
    async fn count(c: &Client) -> (i64, Option<i64>) {
        let sql =
            "SELECT (SELECT count(*) FROM orders) AS orders, (SELECT sum(total_orders) FROM sales_profit) AS total";
        let row = c.query_one(sql, &[]).await.unwrap();
        (row.get(0), row.get(1))
    }
    let before = count(&reader).await;
    writer.batch_execute("INSERT INTO orders VALUES (2, '2025-06-01 12:00:00Z', 1, 4, 'c')").await.unwrap();
    assert_eq!(count(&reader).await, before, "a transaction keeps its snapshot");
    reader.batch_execute("COMMIT").await.unwrap();
    assert_eq!(count(&reader).await.0, before.0 + 1, "after COMMIT the new order is visible");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_works() {
    let (_engine, addr) = start_server(1).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/psycopg_client.py");
    let port = addr.port().to_string();
    let output = tokio::task::spawn_blocking(move || Command::new("python3").args([script, &port]).output())
        .await
        .unwrap()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "psycopg client failed (pip install 'psycopg[binary]'):\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// psql against the real binary, with the README's commands.
// ---------------------------------------------------------------------------------------------

fn psql(port: u16, sql: &str) -> String {
    let output = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-d", "dev", "-U", "root", "-X", "-v", "ON_ERROR_STOP=1"])
        .args(["-c", sql])
        .output()
        .expect("psql runs (apt-get install postgresql-client)");
    assert!(output.status.success(), "psql failed on {sql}:\n{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

fn psql_value(port: u16, sql: &str) -> String {
    psql_try(port, sql).unwrap_or_else(|stderr| panic!("psql failed on {sql}:\n{stderr}"))
}

/// psql's unaligned output, or its error output if it failed.
fn psql_try(port: u16, sql: &str) -> Result<String, String> {
    let output = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-d", "dev", "-U", "root", "-X", "-At", "-c", sql])
        .output()
        .expect("psql runs (apt-get install postgresql-client)");
    if output.status.success() {
        Ok(String::from_utf8(output.stdout).unwrap().trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// The SQL blocks of the README's "Example queries" section.
fn readme_queries() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme.split("## Example queries").nth(1).expect("README has an Example queries section");
    let section = section.split("\n## ").next().unwrap();
    section
        .split("```sql")
        .skip(1)
        .map(|block| block.split("```").next().unwrap().trim().to_string())
        .filter(|q| !q.is_empty())
        .collect()
}

/// Each thread of a process: its name and its nice value (`/proc/PID/task/TID/stat`:
/// the name is in parentheses, and the nice value is the 19th field).
fn threads_and_nice_values(pid: u32) -> Vec<(String, i64)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let Ok(stat) = std::fs::read_to_string(task.unwrap().path().join("stat")) else { continue };
        let (open, close) = (stat.find('(').unwrap(), stat.rfind(')').unwrap());
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        // fields[0] is the state, the 3rd field of the line; the nice value is the 19th.
        threads.push((stat[open + 1..close].to_string(), fields[19 - 3].parse().unwrap()));
    }
    threads
}

#[test]
fn client_threads_run_at_the_client_nice_value_and_compute_at_full_priority() {
    let server = DiffmartProcess::start(&["--no-generator", "--client-nice", "7"]);
    let port = server.pg_port;
    let deadline = Instant::now() + Duration::from_secs(60);
    while psql_try(port, "SELECT 1").is_err() {
        assert!(Instant::now() < deadline, "diffmart did not start serving");
        std::thread::sleep(Duration::from_millis(100));
    }
    let threads = threads_and_nice_values(server.pid());
    let nice_of = |name: &str| -> Vec<i64> {
        threads.iter().filter(|(thread, _)| thread.starts_with(name)).map(|(_, nice)| *nice).collect()
    };
    let clients = nice_of("diffmart-client");
    assert!(!clients.is_empty(), "no client threads in {threads:?}");
    assert!(clients.iter().all(|&nice| nice == 7), "{threads:?}");
    let workers = nice_of("timely:work");
    assert!(!workers.is_empty() && workers.iter().all(|&nice| nice == 0), "{threads:?}");
    // The query that answered ran on those threads, and they still answer.
    assert_eq!(psql_value(port, "SELECT count(*) FROM orders"), "0");
}

#[test]
fn psql_runs_the_readme_examples() {
    let events = 20_000;
    let server = DiffmartProcess::start(&[
        "-w",
        "2",
        "--generator-seed",
        "3",
        "--generator-start",
        "2025-06-01 12:00:00",
        "--generator-rate",
        "100000",
        "--generator-events",
        &events.to_string(),
    ]);
    let port = server.pg_port;
    let deadline = Instant::now() + Duration::from_secs(60);
    let all_events = "SELECT messages FROM diffmart_sources WHERE kind = 'generator' AND status = 'finished'";
    loop {
        let ready = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-d",
                "dev",
                "-U",
                "root",
                "-X",
                "-At",
                "-c",
                all_events,
            ])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        if ready.as_deref() == Some(&events.to_string()) {
            break;
        }
        assert!(Instant::now() < deadline, "the generator's {events} events never all arrived (last count {ready:?})");
        std::thread::sleep(Duration::from_millis(200));
    }

    let queries = readme_queries();
    assert!(queries.len() >= 5, "expected the README's example queries, found {}", queries.len());
    for query in &queries {
        let output = psql(port, query);
        let is_read = query.starts_with("SELECT") || query.starts_with("WITH");
        // Every example must show something: an empty answer means the README promises what the
        // generator's data cannot show.
        let answered = if is_read {
            output.contains(" row") && !output.contains("(0 rows)")
        } else {
            output.starts_with("UPDATE 1")
        };
        assert!(answered, "unexpected answer to {query}:\n{output}");
    }

    // The answers agree with each other (and so with the spec's definitions).
    assert_eq!(
        psql_value(port, "SELECT sum(total_orders) FROM sales_profit"),
        psql_value(port, "SELECT sum(quantity) FROM orders")
    );
    assert_eq!(
        psql_value(port, "SELECT sum(clicks) FROM web_clicks_minutely"),
        psql_value(port, "SELECT count(*) FROM web_clicks")
    );
    assert_eq!(psql_value(port, "SELECT count(DISTINCT product_id) FROM product_stock_status"), "20");
    assert_eq!(
        psql_value(port, "SELECT count(*) FROM dynamic_pricing_enriched"),
        psql_value(port, "SELECT count(*) FROM product_stock_status")
    );
    let tables = psql(port, "SHOW TABLES");
    assert!(tables.contains("orders") && tables.contains("product_inventory"), "{tables}");
    let describe = psql(port, "\\d dynamic_pricing_enriched");
    assert!(describe.contains("final_price") && describe.contains("numeric"), "{describe}");
    drop(server);
}

/// `WHERE first_column = value` on a view reads that range of the view (the plan
/// shows the filter pushed into the scan) and returns exactly the rows a scan of the
/// whole view has with that value: for every view the generator fills, for a view
/// completed at read time before and after a query completes it whole, and for
/// values no row has.
#[test]
fn a_lookup_by_a_views_first_column_reads_its_range_and_agrees_with_a_scan() {
    use diffmart::engine::Update;
    use diffmart_dataflows::datum::ColumnType;

    let engine = Engine::start(&ComputeConfig::default()).unwrap();
    let id = |name: &str| engine.catalog().id(name).unwrap();
    let simulation = diffmart::pipelines::every_pipeline(5, 1_748_779_200_000_000);
    let updates = simulation.bootstrap.iter().map(|e| Update::insert(id(e.relation), e.row.clone())).collect();
    engine.apply_blocking(updates).unwrap();
    let events: Vec<_> = simulation.events.take(30_000).collect();
    for chunk in events.chunks(1_000) {
        engine.apply_blocking(chunk.iter().map(|e| Update::insert(id(e.relation), e.row.clone())).collect()).unwrap();
    }
    let sorted = |mut rows: Vec<Vec<Option<String>>>| {
        rows.sort();
        rows
    };
    let mut checked = 0;
    for (_, spec) in engine.catalog().iter() {
        let first = &spec.columns[0];
        let literal = |text: &str| match first.ty {
            ColumnType::Int32 | ColumnType::Int64 => text.to_string(),
            ColumnType::Text => format!("'{}'", text.replace('\'', "''")),
            _ => String::new(),
        };
        if spec.kind != diffmart_dataflows::datum::RelationKind::View || literal("0").is_empty() {
            continue;
        }
        let lookup = |value: &str| {
            let sql = format!("SELECT * FROM {} WHERE {} = {}", spec.name, first.name, literal(value));
            let plan = support::query(&engine, &format!("EXPLAIN {sql}"));
            let plan: Vec<_> = plan.iter().flatten().flatten().collect();
            assert!(
                plan.iter().any(|line| line.contains("partial_filters=[")),
                "{sql} did not narrow the scan: {plan:?}"
            );
            sorted(support::query(&engine, &sql))
        };
        // The first lookups complete only their range; after the scan, the snapshot's whole completed view.
        let values = match first.ty {
            ColumnType::Text => ["PA", "1", "no such value", "O'Brien"],
            _ => ["1", "3", "-7", "2147483000"],
        };
        let before: Vec<_> = values.iter().map(|value| lookup(value)).collect();
        let all = support::query(&engine, &format!("SELECT * FROM {}", spec.name));
        if all.is_empty() {
            continue;
        }
        for (value, found) in values.iter().zip(before) {
            let expected = sorted(all.iter().filter(|row| row[0].as_deref() == Some(*value)).cloned().collect());
            assert_eq!(found, expected, "{} WHERE {} = {value}", spec.name, first.name);
            assert_eq!(lookup(value), expected, "{} WHERE {} = {value}, after a full scan", spec.name, first.name);
        }
        let present = all[0][0].clone().expect("a first column that is not NULL");
        let expected = sorted(all.iter().filter(|row| row[0] == Some(present.clone())).cloned().collect());
        assert!(!expected.is_empty());
        assert_eq!(lookup(&present), expected, "{} WHERE {} = {present}", spec.name, first.name);
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} views with rows and an integer or text first column");
    assert!(
        support::query(&engine, "EXPLAIN SELECT * FROM dynamic_pricing_enriched WHERE product_id = 3")
            .iter()
            .flatten()
            .flatten()
            .any(|line| line.contains("partial_filters=[")),
        "the read-time completed view is among them"
    );
}
