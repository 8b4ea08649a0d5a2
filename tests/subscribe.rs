//! SUBSCRIBE against the real binary: the COPY form through psql, the cursor form
//! through tokio-postgres (text and binary) and psycopg. For every relation, the
//! changes folded up to a time equal what a SELECT at that time reads
//! (`dynamic_pricing_enriched`, completed at read time, included); a subscriber that
//! stops reading is dropped and the server's memory stays flat.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::server::DiffmartProcess;
use tokio_postgres::{Client, SimpleQueryMessage};

/// Rows as text (NULL as `None`), counted.
type Folded = BTreeMap<Vec<Option<String>>, i64>;

fn add(folded: &mut Folded, row: Vec<Option<String>>, diff: i64) {
    let count = folded.entry(row.clone()).or_insert(0);
    *count += diff;
    if *count == 0 {
        folded.remove(&row);
    }
}

/// Text rows of a simple query's result (its last statement's rows).
async fn simple_rows(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let messages = client.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {:?}", e.as_db_error()));
    messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some((0..row.len()).map(|i| row.get(i).map(str::to_string)).collect()),
            _ => None,
        })
        .collect()
}

/// What a SELECT at one time reads: the time and the rows, counted.
async fn select_at(client: &Client, relation: &str) -> (i64, Folded) {
    let messages = client
        .simple_query(&format!("BEGIN; SELECT mz_now(); SELECT * FROM {relation}; COMMIT"))
        .await
        .unwrap_or_else(|e| panic!("reading {relation}: {e}"));
    let mut time = None;
    let mut rows = Folded::new();
    for message in messages {
        if let SimpleQueryMessage::Row(row) = message {
            if time.is_none() {
                time = Some(row.get(0).unwrap().parse().unwrap());
            } else {
                add(&mut rows, (0..row.len()).map(|i| row.get(i).map(str::to_string)).collect(), 1);
            }
        }
    }
    (time.expect("mz_now() answered"), rows)
}

/// A SUBSCRIBE cursor read through the simple protocol, folded as it goes.
struct CursorFold {
    cursor: String,
    /// Rows at or before `progress`, and those after it (not yet complete).
    changes: Vec<(i64, Vec<Option<String>>, i64)>,
    /// Every change before it has been fetched.
    progress: i64,
}

impl CursorFold {
    async fn declare(client: &Client, cursor: &str, target: &str) -> CursorFold {
        client
            .simple_query(&format!("DECLARE {cursor} CURSOR FOR SUBSCRIBE {target} WITH (PROGRESS)"))
            .await
            .unwrap_or_else(|e| panic!("declaring a cursor on {target}: {e}"));
        CursorFold { cursor: cursor.into(), changes: Vec::new(), progress: 0 }
    }

    /// Fetches until every change at or before `time` has come.
    async fn until_past(&mut self, client: &Client, time: i64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.progress <= time {
            assert!(Instant::now() < deadline, "{}: no progress past {time} (at {})", self.cursor, self.progress);
            let rows = simple_rows(client, &format!("FETCH ALL {} WITH (timeout = '1s')", self.cursor)).await;
            for row in rows {
                let at: i64 = row[0].as_deref().unwrap().parse().unwrap();
                assert!(at >= self.progress - 1, "{}: time {at} after progress {}", self.cursor, self.progress);
                if row[1].as_deref() == Some("t") {
                    assert!(at >= self.progress, "progress goes forward");
                    self.progress = at;
                } else {
                    let diff: i64 = row[2].as_deref().unwrap().parse().unwrap();
                    assert_ne!(diff, 0);
                    self.changes.push((at, row[3..].to_vec(), diff));
                }
            }
        }
    }

    fn fold_at(&self, time: i64) -> Folded {
        let mut folded = Folded::new();
        for (at, row, diff) in &self.changes {
            if *at <= time {
                add(&mut folded, row.clone(), *diff);
            }
        }
        assert!(folded.values().all(|&count| count > 0), "{}: a negative count at {time}", self.cursor);
        folded
    }
}

/// Every relation, through a SUBSCRIBE cursor: at several times, the changes folded
/// up to the time a SELECT read at are exactly what it read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_relation_folds_to_what_a_select_reads_at_the_same_time() {
    let mut server = DiffmartProcess::start(&["-w", "2"]);
    server.wait_ready(Duration::from_secs(60)).await;
    let reader = server.connect().await;
    let relations: Vec<String> = simple_rows(
        &reader,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    )
    .await
    .into_iter()
    .map(|row| row[0].clone().unwrap())
    .collect();
    assert!(relations.contains(&"dynamic_pricing_enriched".to_string()), "{relations:?}");
    let cursors = compare_subscriptions(&server, &relations, 3).await;
    let enriched = cursors.iter().find(|(r, _)| r.as_str() == "dynamic_pricing_enriched").unwrap();
    assert!(enriched.1.changes.iter().any(|(_, _, diff)| *diff < 0), "dynamic_pricing_enriched saw retractions");
}

/// Source rows that expire (`--retention`) leave what a SELECT reads, and the
/// subscription retracts them at the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_source_rows_are_retracted() {
    // Event time runs far ahead of the wall clock: a minute of it expires in moments.
    let mut server = DiffmartProcess::start(&[
        "-w",
        "1",
        "--retention",
        "1m",
        "--generator-rate",
        "3000",
        "--subscribe-max-pending-changes",
        "1000000",
    ]);
    server.wait_ready(Duration::from_secs(60)).await;
    let relations = ["web_clicks", "purchases", "competitor_prices", "web_clicks_minutely"].map(String::from);
    let cursors = compare_subscriptions(&server, &relations, 4).await;
    let clicks = &cursors[0].1;
    assert!(clicks.changes.iter().any(|(_, _, diff)| *diff < 0), "web_clicks rows expired");
}

/// Subscribes to each of `relations` with a cursor, then `rounds` times compares each
/// fold with a SELECT; returns the cursors with what they fetched.
async fn compare_subscriptions<'r>(
    server: &DiffmartProcess,
    relations: &'r [String],
    rounds: usize,
) -> Vec<(&'r String, CursorFold)> {
    let subscriber = server.connect().await;
    let reader = server.connect().await;
    subscriber.simple_query("BEGIN").await.unwrap();
    let mut cursors = Vec::new();
    for (i, relation) in relations.iter().enumerate() {
        cursors.push((relation, CursorFold::declare(&subscriber, &format!("c{i}"), relation).await));
    }
    let mut compared = 0;
    for round in 0..rounds {
        tokio::time::sleep(Duration::from_millis(700)).await;
        for (relation, cursor) in &mut cursors {
            let (time, rows) = select_at(&reader, relation).await;
            cursor.until_past(&subscriber, time).await;
            let folded = cursor.fold_at(time);
            assert_eq!(
                folded,
                rows,
                "{relation} at time {time} (round {round}): subscription vs SELECT; progress {}, changes {:?}",
                cursor.progress,
                cursor.changes.iter().rev().take(20).collect::<Vec<_>>()
            );
            compared += rows.len();
        }
    }
    assert!(compared > 1000, "the generator fed the relations ({compared} rows compared)");
    subscriber.simple_query("COMMIT").await.unwrap();
    cursors
}

/// `SUBSCRIBE (SELECT …)`: a query's changes, over the extended protocol (binary
/// results, typed), with a timeout that returns nothing when nothing changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_subscription_over_the_extended_protocol() {
    let mut server = DiffmartProcess::start(&["-w", "1", "--no-generator"]);
    server.wait_ready(Duration::from_secs(60)).await;
    let client = server.connect().await;
    let writer = server.connect().await;
    writer
        .batch_execute("INSERT INTO product_inventory VALUES (1, 'Lamp', 12, 5, 'Lights', 24.50), (2, 'Desk', 3, 5, 'Wood', 99.00)")
        .await
        .unwrap();
    client.batch_execute("BEGIN").await.unwrap();
    client
        .batch_execute(
            "DECLARE q CURSOR FOR SUBSCRIBE (SELECT product_id, CAST(current_inventory * 2 AS TEXT) AS doubled \
             FROM product_stock_status WHERE product_id < 10) WITH (SNAPSHOT = true)",
        )
        .await
        .unwrap();
    let fetch = |sql: &'static str| {
        let client = &client;
        async move {
            let rows = client.query(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
            rows.iter()
                .map(|r| {
                    (
                        r.get::<_, i64>("mz_timestamp"),
                        r.get::<_, i64>("mz_diff"),
                        r.get::<_, i32>(2),
                        r.get::<_, String>(3),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    let mut snapshot = fetch("FETCH ALL q WITH (timeout = '5s')").await;
    snapshot.sort();
    assert_eq!(snapshot.len(), 2, "{snapshot:?}");
    assert_eq!((snapshot[0].1, snapshot[0].2, snapshot[0].3.as_str()), (1, 1, "24"));
    assert!(fetch("FETCH ALL q WITH (timeout = '200ms')").await.is_empty(), "nothing changed");
    writer.batch_execute("UPDATE product_inventory SET stock_level = 20 WHERE product_id = 1").await.unwrap();
    let mut changes = fetch("FETCH ALL q WITH (timeout = '5s')").await;
    changes.sort_by_key(|c| c.1);
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!((changes[0].1, changes[0].3.as_str()), (-1, "24"));
    assert_eq!((changes[1].1, changes[1].3.as_str()), (1, "40"));
    assert!(changes[0].0 > snapshot[0].0, "later changes at a later time");
    // The write's time is what a SELECT after it reads at.
    let now: i64 = writer.query_one("SELECT mz_now()", &[]).await.unwrap().get(0);
    assert!(changes[0].0 <= now);
    client.batch_execute("COMMIT").await.unwrap();
    // Without a transaction there is no cursor.
    let error = client.batch_execute("DECLARE q CURSOR FOR SUBSCRIBE product_inventory").await.unwrap_err();
    assert_eq!(error.code().unwrap().code(), "25P01");
    let error = client.batch_execute("BEGIN; DECLARE z CURSOR FOR SUBSCRIBE no_such_relation").await.unwrap_err();
    assert_eq!(error.code().unwrap().code(), "42P01");
}

/// psql's `COPY (SUBSCRIBE …) TO STDOUT`: the snapshot, then a table write's changes,
/// as the lines psql prints; Ctrl-C (a cancel request) stops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_streams_a_subscription_with_copy() {
    let mut server = DiffmartProcess::start(&["-w", "1", "--no-generator"]);
    server.wait_ready(Duration::from_secs(60)).await;
    let writer = server.connect().await;
    writer.batch_execute("INSERT INTO product_inventory VALUES (7, 'Fan', 40, 5, 'Air', 30.00)").await.unwrap();
    // Line-buffered: psql's stdout into a pipe is block-buffered otherwise.
    let mut psql = Command::new("stdbuf")
        .args(["-oL", "psql", "-X", "-h", "127.0.0.1", "-p", &server.pg_port.to_string(), "-U", "root", "-d", "dev"])
        .args(["-c", "COPY (SUBSCRIBE TO product_inventory WITH (PROGRESS)) TO STDOUT"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql runs");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    let stdout = psql.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines_tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let next_line = || lines_rx.recv_timeout(Duration::from_secs(10)).expect("psql prints a line");
    let snapshot = next_line();
    let fields: Vec<&str> = snapshot.split('\t').collect();
    assert_eq!(&fields[1..], ["f", "1", "7", "Fan", "40", "5", "Air", "30.00"], "{snapshot}");
    let progress = next_line();
    assert!(progress.contains("\tt\t\\N"), "a progress line: {progress}");
    writer.batch_execute("UPDATE product_inventory SET stock_level = 39 WHERE product_id = 7").await.unwrap();
    let mut changes = Vec::new();
    while changes.len() < 2 {
        let line = next_line();
        if !line.contains("\tt\t") {
            changes.push(line.split('\t').skip(2).collect::<Vec<_>>().join(" "));
        }
    }
    changes.sort();
    assert_eq!(changes, ["-1 7 Fan 40 5 Air 30.00", "1 7 Fan 39 5 Air 30.00"]);
    // Ctrl-C: psql sends a cancel request and reports the error.
    Command::new("kill").args(["-INT", &psql.id().to_string()]).status().unwrap();
    let status = psql.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut psql.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(stderr.contains("canceling statement due to user request"), "{stderr}");
    // The server goes on.
    assert_eq!(simple_rows(&writer, "SELECT 1").await, vec![vec![Some("1".to_string())]]);
}

/// psycopg 3: a SUBSCRIBE cursor fetched with a timeout, as a Python app would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_follows_a_subscription() {
    let mut server = DiffmartProcess::start(&["-w", "1", "--no-generator"]);
    server.wait_ready(Duration::from_secs(60)).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/psycopg_subscribe.py");
    let output = Command::new("python3").args([script, &server.pg_port.to_string()]).output().expect("python3 runs");
    assert!(
        output.status.success(),
        "psycopg_subscribe.py failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A COPY subscriber that stops reading (psql writing into a pipe nobody reads) is
/// dropped once its queue is full: its connection is closed, the server's memory
/// stays flat, and other clients go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_is_dropped() {
    let mut server =
        DiffmartProcess::start(&["-w", "1", "--generator-rate", "20000", "--subscribe-max-pending-changes", "5000"]);
    server.wait_ready(Duration::from_secs(60)).await;
    let mut psql = Command::new("psql")
        .args(["-X", "-h", "127.0.0.1", "-p", &server.pg_port.to_string(), "-U", "root", "-d", "dev"])
        .args(["-c", "COPY (SUBSCRIBE web_clicks) TO STDOUT"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql runs");
    // Nobody reads psql's stdout: the pipe fills, psql stops reading its socket.
    let before = rss_kib(server.pid());
    let deadline = Instant::now() + Duration::from_secs(120);
    while !server.stderr().contains("closing a SUBSCRIBE client: subscriber too slow") {
        assert!(Instant::now() < deadline, "the slow subscriber was not dropped; stderr:\n{}", server.stderr());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Its connection is closed: psql ends once what it had is written.
    drop(psql.stdout.take());
    let ended = Instant::now() + Duration::from_secs(10);
    while psql.try_wait().unwrap().is_none() {
        assert!(Instant::now() < ended, "psql's connection was not closed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(server.pid());
    assert!(after < before + 150 * 1024, "memory grew from {before} KiB to {after} KiB");
    let client = server.connect().await;
    assert_eq!(simple_rows(&client, "SELECT 1").await, vec![vec![Some("1".to_string())]]);
}
