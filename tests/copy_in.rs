//! `COPY … FROM STDIN` against the real binary, as psql's `\copy` and tokio-postgres'
//! `copy_in` send it: into tables and sources, text and CSV, visible to the next
//! statement; every kind of bad row refused with its SQLSTATE and line, nothing
//! applied; rights, `--max-write-rows`, a client's CopyFail and relations Kafka owns.
//!
//! Run: `cargo test --release --features failpoints --test copy_in` (psql must be
//! installed). `copy_rate` (ignored) measures a retail load; see docs/benchmarks.md.

mod support;

use std::collections::VecDeque;
use std::process::Command;
use std::time::{Duration, Instant};

use diffmart::pipelines::retail::generator::RetailGenerator;
use diffmart_dataflows::datum::{Datum, Record};
use futures::SinkExt;
use support::server::DiffmartProcess;
use support::wire::{parse_wire_timestamp, text_rows};
use tokio_postgres::{Client, NoTls};

const READY: Duration = Duration::from_secs(60);

/// Runs `statement` and sends `data` as its COPY data: the rows copied, or the error.
async fn copy(client: &Client, statement: &str, data: &str) -> Result<u64, tokio_postgres::Error> {
    let sink = client.copy_in::<_, VecDeque<u8>>(statement).await?;
    futures::pin_mut!(sink);
    sink.send(data.as_bytes().iter().copied().collect()).await?;
    sink.finish().await
}

/// The SQLSTATE and the context (`COPY rel, line N…`) of a COPY that must fail.
async fn refused(client: &Client, statement: &str, data: &str) -> (String, String) {
    match copy(client, statement, data).await {
        Ok(n) => panic!("{statement} copied {n} rows of {data:?}"),
        Err(e) => {
            let db = e.as_db_error().unwrap_or_else(|| panic!("{statement}: no server error: {e}"));
            (db.code().code().to_string(), db.where_().unwrap_or_default().to_string())
        }
    }
}

/// The SQLSTATE of a statement refused before any COPY data is sent.
async fn refused_at_start(client: &Client, sql: &str) -> String {
    match client.simple_query(sql).await {
        Ok(_) => panic!("{sql} was not refused"),
        Err(e) => e.code().map(|c| c.code().to_string()).unwrap_or_else(|| format!("no SQLSTATE: {e}")),
    }
}

async fn count(client: &Client, relation: &str) -> i64 {
    let sql = format!("SELECT count(*) FROM {relation}");
    client.query_one(&sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}

fn psql(port: u16, user: &str, command: &str) -> std::process::Output {
    let conninfo = format!("host=127.0.0.1 port={port} user={user} dbname=dev connect_timeout=10");
    Command::new("psql")
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-d", &conninfo, "-c", command])
        .output()
        .expect("psql runs (apt-get install postgresql-client)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_and_tokio_postgres_copy_into_tables_and_sources() {
    let mut server = DiffmartProcess::start(&["--no-generator"]);
    server.wait_ready(READY).await;
    let client = server.connect().await;

    // psql's \copy: a file on the client's side, CSV with a header, a quoted comma,
    // an empty unquoted field (NULL) and a quoted empty one (an empty string).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("products.csv");
    std::fs::write(
        &file,
        "product_id,product_name,stock_level,reorder_threshold,supplier,base_price\n\
         1,\"Widget, large\",10,5,Acme,19.99\n\
         2,Gadget,,3,\"\",5.5\n\
         3,Gizmo,7,2,Initech,0.125\n",
    )
    .unwrap();
    let command = format!("\\copy product_inventory FROM '{}' CSV HEADER", file.display());
    let out = psql(server.pg_port, "root", &command);
    assert!(out.status.success(), "{command}: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "COPY 3");
    assert_eq!(
        text_rows(
            &client,
            "SELECT product_id, product_name, stock_level, supplier, base_price FROM product_inventory ORDER BY 1"
        )
        .await,
        vec![
            vec!["1", "Widget, large", "10", "Acme", "19.99"],
            vec!["2", "Gadget", "NULL", "", "5.50"],
            vec!["3", "Gizmo", "7", "Initech", "0.13"],
        ]
    );

    // tokio-postgres (extended protocol), text format, a column list: the others are NULL.
    let orders = "COPY orders (order_id, product_id, quantity, order_time) FROM STDIN";
    let data = "10\t1\t2\t2025-01-02 03:04:05+00\n11\t2\t\\N\t2025-01-02T03:05:00Z\n";
    assert_eq!(copy(&client, orders, data).await.unwrap(), 2);
    // Acknowledged when visible: the next statement sees the rows.
    let orders = text_rows(&client, "SELECT order_id, quantity, customer_id, order_time FROM orders ORDER BY 1").await;
    assert_eq!(orders.iter().map(|row| &row[..3]).collect::<Vec<_>>(), [["10", "2", "NULL"], ["11", "NULL", "NULL"]]);
    let noon_ish = 1_735_787_045_000_000; // 2025-01-02 03:04:05 UTC
    assert_eq!(parse_wire_timestamp(&orders[0][3]), noon_ish);
    assert_eq!(parse_wire_timestamp(&orders[1][3]), noon_ish + 55_000_000);

    // A source: a backfill of events, which the views take in as any source's.
    let clicks = "COPY web_clicks FROM STDIN WITH (FORMAT csv, HEADER true)";
    let data = "event_time,product_id,event_type\n\
                2025-01-02 03:04:05+00,1,view\n2025-01-02 03:04:35+00,1,view\n2025-01-02 03:05:10+00,2,cart\n";
    assert_eq!(copy(&client, clicks, data).await.unwrap(), 3);
    assert_eq!(count(&client, "web_clicks").await, 3);
    let minutely: i64 =
        client.query_one("SELECT CAST(sum(clicks) AS BIGINT) FROM web_clicks_minutely", &[]).await.unwrap().get(0);
    assert_eq!(minutely, 3, "the view counts the copied clicks");

    // Inside a transaction, the rows are visible to its next statement too.
    client.batch_execute("BEGIN").await.unwrap();
    let before = count(&client, "web_clicks").await;
    assert_eq!(copy(&client, "COPY web_clicks FROM STDIN", "2025-01-02 03:06:00+00\t3\tview\n").await.unwrap(), 1);
    assert_eq!(count(&client, "web_clicks").await, before + 1);
    client.batch_execute("COMMIT").await.unwrap();

    // The simple protocol's COPY of psql with the data on stdin, ended by `\.`.
    let out = Command::new("psql")
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(format!("host=127.0.0.1 port={} user=root dbname=dev", server.pg_port))
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"COPY restocks FROM STDIN;\n2025-01-02 03:04:05+00\t1\t50\n\\.\n")?;
            child.wait_with_output()
        })
        .expect("psql runs");
    assert!(out.status.success(), "psql -f: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(count(&client, "restocks").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_row_refuses_the_whole_copy_with_its_sqlstate_and_line() {
    let mut server = DiffmartProcess::start(&["--no-generator"]);
    server.wait_ready(READY).await;
    let client = server.connect().await;
    client.batch_execute("INSERT INTO orders VALUES (1, '2025-01-02 03:00:00+00', 1, 1, 'c1')").await.unwrap();
    let csv = "COPY orders FROM STDIN (FORMAT csv)";
    let good = "2,2025-01-02 03:00:00+00,1,1,c2\n";
    for (data, sqlstate, line) in [
        // Wrong type on line 2.
        (format!("{good}3,2025-01-02 03:00:00+00,x,1,c3\n"), "22P02", "line 2, column product_id: \"x\""),
        // Missing column, extra data.
        (format!("{good}3,2025-01-02 03:00:00+00,1\n"), "22P04", "line 2"),
        (format!("{good}3,2025-01-02 03:00:00+00,1,1,c3,extra\n"), "22P04", "line 2"),
        // Duplicate keys: within the COPY, and with a row the table holds.
        (format!("{good}{good}"), "23505", "line 2"),
        (format!("{good}1,2025-01-02 03:00:00+00,1,1,again\n"), "23505", "line 2"),
        // NULL in the key.
        (format!("{good},2025-01-02 03:00:00+00,1,1,c3\n"), "23502", "line 2"),
        // An integer out of range.
        (format!("{good}3,2025-01-02 03:00:00+00,3000000000,1,c3\n"), "22003", "line 2"),
    ] {
        let (code, context) = refused(&client, csv, &data).await;
        assert_eq!(code, sqlstate, "{data:?}: {context}");
        assert!(context.contains(&format!("COPY orders, {line}")), "{data:?}: context {context:?}");
        assert_eq!(count(&client, "orders").await, 1, "nothing applied after {data:?}");
    }
    // A bad event in a source: nothing of the COPY is applied either.
    let (code, context) =
        refused(&client, "COPY purchases FROM STDIN", "2025-01-02 03:00:00+00\t1\t2\tc\nyesterday\t1\t2\tc\n").await;
    assert_eq!((code.as_str(), context.contains("line 2")), ("22P02", true), "{context}");
    assert_eq!(count(&client, "purchases").await, 0);

    // Refused before any data: unknown relation or column, a view, a file. (Through the
    // simple protocol: tokio-postgres' `copy_in` sends a second Sync after a COPY refused
    // before its data, whose ReadyForQuery, from PostgreSQL as from diffmart, confuses
    // its next statement: rust-postgres issue 789.)
    for (sql, sqlstate) in [
        ("COPY nowhere FROM STDIN", "42P01"),
        ("COPY orders (nope) FROM STDIN", "42703"),
        ("COPY orders (order_id, order_id) FROM STDIN", "42701"),
        ("COPY web_clicks_minutely FROM STDIN", "42809"),
        ("COPY orders FROM STDIN (FORMAT binary)", "0A000"),
        ("COPY orders FROM '/etc/passwd'", "42501"),
        ("SELECT 1; COPY orders FROM STDIN", "0A000"),
    ] {
        assert_eq!(refused_at_start(&client, sql).await, sqlstate, "{sql}");
    }

    // After all that the connection is fine and a good COPY goes in.
    assert_eq!(copy(&client, csv, good).await.unwrap(), 1);
    assert_eq!(count(&client, "orders").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_is_bounded_authorised_and_cancellable() {
    let mock = rdkafka::mocking::MockCluster::new(1).expect("mock Kafka cluster");
    let brokers = mock.bootstrap_servers();
    let mut server = DiffmartProcess::start(&[
        "--no-generator",
        "--max-write-rows",
        "5",
        "--root-password",
        "root-pw",
        "--kafka-brokers",
        &brokers,
    ]);
    server.wait_ready(READY).await;
    let root = server.connect().await;

    // Past --max-write-rows: 54000, nothing applied.
    let six: String = (1..=6).map(|i| format!("{i}\t2025-01-02 03:00:00+00\t1\t1\tc\n")).collect();
    let (code, context) = refused(&root, "COPY orders FROM STDIN", &six).await;
    assert_eq!(code, "54000", "{context}");
    assert_eq!(count(&root, "orders").await, 0);
    let five: String = six.lines().take(5).map(|line| format!("{line}\n")).collect();
    assert_eq!(copy(&root, "COPY orders FROM STDIN", &five).await.unwrap(), 5);

    // A client that gives up (CopyFail): the statement is cancelled, nothing applied.
    {
        let sink = root.copy_in::<_, VecDeque<u8>>("COPY orders FROM STDIN").await.unwrap();
        futures::pin_mut!(sink);
        sink.send(b"99\t2025-01-02 03:00:00+00\t1\t1\tc\n".iter().copied().collect()).await.unwrap();
        // Dropped without finishing: tokio-postgres sends CopyFail.
    }
    assert_eq!(count(&root, "orders").await, 5);

    // A relation a Kafka topic feeds: 42501, as for SQL writes.
    assert_eq!(refused_at_start(&root, "COPY web_clicks FROM STDIN").await, "42501");

    // A role that may only read.
    root.batch_execute("CREATE ROLE reader LOGIN PASSWORD 'reader-pw'; GRANT pg_read_all_data TO reader")
        .await
        .unwrap();
    let config = format!("host=127.0.0.1 port={} user=reader password=reader-pw dbname=dev", server.pg_port);
    let (reader, connection) = tokio_postgres::connect(&config, NoTls).await.unwrap();
    tokio::spawn(connection);
    assert_eq!(count(&reader, "orders").await, 5);
    assert_eq!(refused_at_start(&reader, "COPY orders FROM STDIN").await, "42501");
    assert_eq!(count(&root, "orders").await, 5);
}

/// A retail history from the generator as CSV files, one per input relation, loaded
/// with COPY into a fresh server: the rate from the first COPY until the last one is
/// acknowledged (so visible, views included). `COPY_ROWS` events (default 1,000,000)
/// in COPYs of at most `COPY_BATCH` rows (default 1,000,000, `--max-write-rows`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn copy_rate() {
    let rows: usize = std::env::var("COPY_ROWS").map(|v| v.parse().unwrap()).unwrap_or(1_000_000);
    let batch: usize = std::env::var("COPY_BATCH").map(|v| v.parse().unwrap()).unwrap_or(1_000_000);
    let workers = std::env::var("COPY_WORKERS").unwrap_or_else(|_| "2".into());
    let started = Instant::now();
    let files = generated_csv(rows, 7);
    let total: usize = files.iter().map(|(_, lines)| lines.len()).sum();
    let bytes: usize = files.iter().flat_map(|(_, lines)| lines.iter().map(String::len)).sum();
    eprintln!("generated {total} rows ({} MB of CSV) in {:?}", bytes >> 20, started.elapsed());

    let nice = std::env::var("COPY_CLIENT_NICE").unwrap_or_else(|_| "19".into());
    let max = batch.to_string();
    let args = ["--no-generator", "-w", &workers, "--max-write-rows", &max, "--client-nice", &nice];
    let mut server = DiffmartProcess::start(&args);
    server.wait_ready(READY).await;
    let client = server.connect().await;
    let started = Instant::now();
    for (relation, lines) in &files {
        for chunk in lines.chunks(batch) {
            let sink =
                client.copy_in::<_, VecDeque<u8>>(&format!("COPY {relation} FROM STDIN (FORMAT csv)")).await.unwrap();
            futures::pin_mut!(sink);
            let copy_started = Instant::now();
            for piece in chunk.chunks(2_000) {
                let data: VecDeque<u8> = piece.iter().flat_map(|line| line.bytes()).collect();
                sink.send(data).await.unwrap();
            }
            let sent = copy_started.elapsed();
            sink.finish().await.unwrap();
            eprintln!(
                "  {relation}: {} rows, data sent in {sent:.2?}, acknowledged {:.2?} later",
                chunk.len(),
                copy_started.elapsed() - sent
            );
        }
    }
    let elapsed = started.elapsed();
    eprintln!(
        "COPY of {total} rows into {} relations: {elapsed:.2?}, {:.0} rows/s, {:.1} MB/s",
        files.len(),
        total as f64 / elapsed.as_secs_f64(),
        bytes as f64 / 1e6 / elapsed.as_secs_f64()
    );
    // Tables hold every row; sources keep --retention of event time behind their newest event.
    for (relation, lines) in &files {
        let held = count(&client, relation).await as usize;
        match *relation {
            "product_inventory" | "orders" => assert_eq!(held, lines.len(), "{relation}"),
            _ => assert!(held > 0 && held <= lines.len(), "{relation}: {held} of {}", lines.len()),
        }
    }
}

/// `rows` events of the retail generator (and its 20-product catalog) as CSV lines,
/// grouped by relation, the catalog first.
fn generated_csv(rows: usize, seed: u64) -> Vec<(&'static str, Vec<String>)> {
    const START: i64 = 1_748_779_200_000_000; // 2025-06-01 12:00 UTC
    let mut files: Vec<(&'static str, Vec<String>)> =
        vec![("product_inventory", RetailGenerator::catalog().iter().map(|p| csv_line(&p.to_row())).collect())];
    for event in RetailGenerator::new(seed, START).take(rows) {
        match files.iter_mut().find(|(relation, _)| *relation == event.relation) {
            Some((_, lines)) => lines.push(csv_line(&event.row)),
            None => files.push((event.relation, vec![csv_line(&event.row)])),
        }
    }
    files
}

/// A row as a CSV line, in PostgreSQL's text forms (empty for NULL).
fn csv_line(row: &[Datum]) -> String {
    let fields: Vec<String> = row
        .iter()
        .map(|datum| match datum {
            Datum::Null => String::new(),
            Datum::Text(text) if text.contains([',', '"', '\n', '\r']) || text.is_empty() => {
                format!("\"{}\"", text.replace('"', "\"\""))
            }
            Datum::Text(text) => text.clone(),
            Datum::Timestamp(micros) => chrono::DateTime::from_timestamp_micros(*micros)
                .expect("a timestamp in range")
                .format("%Y-%m-%d %H:%M:%S%.6f+00")
                .to_string(),
            Datum::Int32(v) => v.to_string(),
            Datum::Int64(v) => v.to_string(),
            Datum::Numeric(v) => v.to_string(),
            other => panic!("no retail column holds {other:?}"),
        })
        .collect();
    let mut line = fields.join(",");
    line.push('\n');
    line
}
