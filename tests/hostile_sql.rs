//! SQL from clients that mean harm, or make mistakes, against the real binary: DDL
//! on the server's relations, settings meant for everyone, COPY to the server's
//! files, runaway queries (timeouts, cancel requests), too many connections, too
//! much memory, too large a write, and a random-SQL fuzz. Every test ends with the
//! server still answering a known query correctly.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::server::DiffmartProcess;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// Runs until stopped: a cross join of 10^12 rows.
const RUNAWAY: &str = "SELECT count(*) FROM generate_series(1, 1000000) a CROSS JOIN generate_series(1, 1000000) b";

/// Longest a statement the server must stop may run in a test.
const LIMIT: Duration = Duration::from_secs(30);

/// `work`, or a panic if it has not finished within `limit`: a statement that is not
/// stopped fails its test instead of hanging it.
async fn within<T>(limit: Duration, what: &str, work: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(limit, work).await.unwrap_or_else(|_| panic!("{what} still running after {limit:?}"))
}

async fn start(args: &[&str]) -> DiffmartProcess {
    let mut server = DiffmartProcess::start(args);
    server.wait_ready(Duration::from_secs(60)).await;
    server
}

/// The text of every cell of every row `sql` returns (simple protocol).
async fn rows(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let messages = client.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some((0..row.len()).map(|i| row.get(i).map(str::to_string)).collect()),
            _ => None,
        })
        .collect()
}

async fn one_value(client: &Client, sql: &str) -> String {
    let rows = rows(client, sql).await;
    assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
    rows[0][0].clone().unwrap_or_else(|| panic!("{sql}: NULL"))
}

/// The SQLSTATE and message of a statement that must fail.
fn failure<T: std::fmt::Debug>(sql: &str, result: Result<T, tokio_postgres::Error>) -> (String, String) {
    let error = result.expect_err(sql);
    let db = error.as_db_error().unwrap_or_else(|| panic!("{sql}: not a server error: {error:?}"));
    (db.code().code().to_string(), db.message().to_string())
}

/// The statement fails, in the simple protocol and in the extended one, with one of `codes`.
async fn assert_refused(client: &Client, sql: &str, codes: &[&str]) {
    let (code, message) = failure(sql, client.simple_query(sql).await);
    assert!(codes.contains(&code.as_str()), "{sql} (simple): {code} {message}");
    let (code, message) = failure(sql, client.execute(sql, &[]).await);
    assert!(codes.contains(&code.as_str()), "{sql} (extended): {code} {message}");
}

/// A new connection, once a slot is free: a client that just left may hold its slot
/// until the server has seen it go.
async fn connect_when_free(server: &DiffmartProcess) -> Client {
    let config = format!("host=127.0.0.1 port={} user=root dbname=dev connect_timeout=5", server.pg_port);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tokio_postgres::connect(&config, NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                return client;
            }
            Err(e) if Instant::now() >= deadline => panic!("no free connection slot: {e:?}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// A new connection gets a known answer from a literal and from a server relation.
async fn assert_still_answers(server: &DiffmartProcess) {
    let client = connect_when_free(server).await;
    assert_eq!(one_value(&client, "SELECT 6 * 7").await, "42");
    let kinds = one_value(&client, "SELECT count(*) FROM (VALUES ('retail'), ('casino'), ('pricing')) AS v(k)").await;
    assert_eq!(kinds, "3");
    let views: Vec<String> = rows(&client, "SHOW VIEWS").await.into_iter().filter_map(|r| r[0].clone()).collect();
    assert!(views.iter().any(|v| v == "sales_profit"), "SHOW VIEWS: {views:?}");
    one_value(&client, "SELECT count(*) FROM sales_profit").await.parse::<u64>().expect("a count");
}

/// Every relation the server serves, by kind (`SHOW TABLES`, `SHOW SOURCES`, `SHOW VIEWS`).
async fn server_relations(client: &Client) -> Vec<String> {
    let mut names = Vec::new();
    for show in ["SHOW TABLES", "SHOW SOURCES", "SHOW VIEWS"] {
        names.extend(rows(client, show).await.into_iter().filter_map(|r| r[0].clone()));
    }
    assert!(names.len() > 20, "the catalog: {names:?}");
    names
}

/// CPU time (clock ticks) the process has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/<pid>/stat");
    let fields: Vec<&str> = stat.rsplit_once(')').expect("comm").1.split_whitespace().collect();
    // utime and stime: fields 14 and 15 of stat(5), 12 and 13 after the command name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// The server's CPU use falls back under a third of a core within a few seconds: a
/// stopped query is not still running underneath.
async fn assert_cpu_returns(server: &DiffmartProcess) {
    let mut last = Vec::new();
    for _ in 0..8 {
        let before = cpu_ticks(server.pid());
        tokio::time::sleep(Duration::from_secs(1)).await;
        let used = cpu_ticks(server.pid()) - before;
        // Clock ticks are 1/100 s on Linux.
        if used < 33 {
            return;
        }
        last.push(used);
    }
    panic!("the server kept using CPU after the statement stopped: {last:?} ticks per second");
}

/// The columns `relation` has, as a prepared `SELECT *` describes them.
async fn column_names(client: &Client, relation: &str) -> Vec<String> {
    let statement = client.prepare(&format!("SELECT * FROM {relation}")).await.unwrap();
    statement.columns().iter().map(|c| c.name().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_against_the_servers_relations_is_refused() {
    let server = start(&[]).await;
    let (client, other) = (server.connect().await, server.connect().await);
    for relation in server_relations(&client).await {
        let columns_before = column_names(&other, &relation).await;
        let first_column = &columns_before[0];
        for sql in [
            format!("DROP TABLE {relation}"),
            format!("DROP VIEW {relation}"),
            format!("DROP TABLE IF EXISTS public.{relation}"),
            format!("ALTER TABLE {relation} RENAME TO hijacked"),
            format!("ALTER TABLE {relation} ADD COLUMN hijacked int"),
            format!("TRUNCATE {relation}"),
            format!("CREATE TABLE {relation} (x int)"),
            format!("CREATE VIEW {relation} AS SELECT 1 AS x"),
            format!("CREATE OR REPLACE VIEW {relation} AS SELECT 1 AS x"),
            format!("CREATE TABLE {relation}_copy AS SELECT * FROM {relation}"),
            format!("SELECT * INTO {relation}_copy FROM {relation}"),
            format!("CREATE INDEX hijacked ON {relation} ({first_column})"),
        ] {
            assert_refused(&client, &sql, &["0A000", "42501"]).await;
        }
        // Still there, with the same columns, for another session.
        let columns_after = column_names(&other, &relation).await;
        assert_eq!(columns_before, columns_after, "{relation}");
        one_value(&other, &format!("SELECT count(*) FROM {relation}")).await;
    }
    // Relations of a session's own would be every session's: refused too.
    for sql in [
        "CREATE TABLE scratch (x int)",
        "CREATE VIEW scratch AS SELECT 1 AS x",
        "CREATE TABLE scratch AS SELECT 1 AS x",
        "CREATE SCHEMA scratch",
        "DROP SCHEMA public CASCADE",
        "INSERT INTO pg_catalog.pg_namespace SELECT * FROM pg_catalog.pg_namespace",
        // Role statements are a superuser's (tests/hostile_auth.rs); object grants are none.
        "GRANT ALL ON orders TO intruder",
    ] {
        assert_refused(&client, sql, &["0A000", "42501"]).await;
    }
    let (code, _) = failure("scratch", other.simple_query("SELECT * FROM scratch").await);
    assert_eq!(code, "42P01");
    assert_still_answers(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_stay_in_their_session() {
    let server = start(&[]).await;
    let (client, other) = (server.connect().await, server.connect().await);
    let setting = |name: &str| format!("SELECT value FROM information_schema.df_settings WHERE name = '{name}'");
    let batch_size = one_value(&other, &setting("datafusion.execution.batch_size")).await;
    let time_zone = rows(&other, &setting("datafusion.execution.time_zone")).await;

    for sql in [
        "SET datafusion.execution.batch_size = 1",
        "SET datafusion.execution.target_partitions = 64",
        "SET datafusion.catalog.information_schema = false",
        "RESET datafusion.execution.batch_size",
        "SET ROLE postgres",
        "SET SESSION AUTHORIZATION postgres",
    ] {
        assert_refused(&client, sql, &["0A000", "42501"]).await;
    }
    assert_eq!(one_value(&other, &setting("datafusion.execution.batch_size")).await, batch_size);

    // What PostgreSQL clients send at startup works, and stays in the session.
    for sql in [
        "SET application_name = 'hostile'",
        "SET search_path = public",
        "SET DateStyle = 'ISO, MDY'",
        "SET extra_float_digits = 3",
        "SET client_encoding = 'UTF8'",
        "SET TIME ZONE 'UTC'",
        "SET timezone = 'America/New_York'",
        "SET statement_timeout = '7s'",
        "SET standard_conforming_strings = on",
        "SET client_min_messages = warning",
    ] {
        client.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        client.execute(sql, &[]).await.unwrap_or_else(|e| panic!("{sql} (extended): {e:?}"));
    }
    assert_eq!(one_value(&client, "SHOW statement_timeout").await, "7000ms");
    assert_eq!(one_value(&other, "SHOW statement_timeout").await, "300000ms");
    assert_eq!(one_value(&client, "SHOW application_name").await, "hostile");
    assert_ne!(one_value(&other, "SHOW application_name").await, "hostile");
    // `SET timezone` changes the session's own DataFusion configuration, not the server's.
    assert_eq!(rows(&other, &setting("datafusion.execution.time_zone")).await, time_zone);
    client.simple_query("RESET statement_timeout").await.unwrap();
    assert_eq!(one_value(&client, "SHOW statement_timeout").await, "300000ms");
    client.simple_query("SET statement_timeout = 0").await.unwrap();
    assert_eq!(one_value(&client, "SHOW statement_timeout").await, "0");
    let (code, _) = failure("bad timeout", client.simple_query("SET statement_timeout = 'soon'").await);
    assert_eq!(code, "22023");
    assert_still_answers(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_to_a_file_writes_no_file() {
    let server = start(&[]).await;
    let client = server.connect().await;
    let dir = tempfile::tempdir().unwrap();
    for (i, source) in ["(SELECT 1 AS x)", "sales_profit", "orders"].into_iter().enumerate() {
        let path = dir.path().join(format!("copy-{i}.csv"));
        let sql = format!("COPY {source} TO '{}'", path.display());
        assert_refused(&client, &sql, &["42501"]).await;
        let sql = format!("COPY {source} TO '{}' STORED AS CSV", path.display());
        assert_refused(&client, &sql, &["0A000", "42501", "42601"]).await;
        assert!(!path.exists(), "{sql} wrote {}", path.display());
    }
    assert_refused(&client, "COPY orders FROM '/etc/passwd'", &["42501"]).await;
    assert_refused(&client, "COPY (SELECT 1) TO PROGRAM 'touch /tmp/x'", &["0A000", "42501", "42601"]).await;
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    assert_still_answers(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_stops_a_runaway_query() {
    let server = start(&["--statement-timeout", "2s"]).await;
    let client = server.connect().await;

    // The server's timeout, simple protocol.
    let started = Instant::now();
    let (code, message) = failure(RUNAWAY, within(LIMIT, RUNAWAY, client.simple_query(RUNAWAY)).await);
    assert_eq!((code.as_str(), message.as_str()), ("57014", "canceling statement due to statement timeout"));
    assert!(started.elapsed() < Duration::from_secs(15), "stopped after {:?}", started.elapsed());
    assert_cpu_returns(&server).await;

    // The session's own, extended protocol.
    client.simple_query("SET statement_timeout = '300ms'").await.unwrap();
    let started = Instant::now();
    let (code, message) = failure(RUNAWAY, within(LIMIT, RUNAWAY, client.query(RUNAWAY, &[])).await);
    assert_eq!((code.as_str(), message.as_str()), ("57014", "canceling statement due to statement timeout"));
    assert!(started.elapsed() < Duration::from_secs(10), "stopped after {:?}", started.elapsed());
    assert_cpu_returns(&server).await;

    // The session goes on, and quick statements are not affected.
    assert_eq!(one_value(&client, "SELECT count(*) FROM generate_series(1, 1000)").await, "1000");
    assert_still_answers(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_requests_stop_a_runaway_query_even_at_the_connection_cap() {
    let server = start(&["--statement-timeout", "0", "--max-connections", "2"]).await;
    let (client, other) = (connect_when_free(&server).await, connect_when_free(&server).await);
    let token = client.cancel_token();
    for extended in [false, true] {
        let cancel = async {
            tokio::time::sleep(Duration::from_millis(700)).await;
            token.cancel_query(NoTls).await.expect("the cancel request gets through");
        };
        let started = Instant::now();
        let result = async {
            if extended {
                client.query(RUNAWAY, &[]).await.map(|_| ())
            } else {
                client.simple_query(RUNAWAY).await.map(|_| ())
            }
        };
        let (result, ()) = within(LIMIT, RUNAWAY, async { tokio::join!(result, cancel) }).await;
        let (code, message) = failure(RUNAWAY, result);
        assert_eq!((code.as_str(), message.as_str()), ("57014", "canceling statement due to user request"));
        assert!(started.elapsed() < Duration::from_secs(15), "stopped after {:?}", started.elapsed());
        assert_cpu_returns(&server).await;
        assert_eq!(one_value(&client, "SELECT 1 + 1").await, "2");
    }
    // A cancel request between statements stops nothing (once the server has read it:
    // a request still on its way when the next statement starts would stop that one).
    token.cancel_query(NoTls).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(one_value(&client, "SELECT count(*) FROM generate_series(1, 10)").await, "10");
    drop(other);
    assert_still_answers(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_are_refused_and_the_others_served() {
    let server = start(&["--max-connections", "3"]).await;
    let config = format!("host=127.0.0.1 port={} user=root dbname=dev connect_timeout=5", server.pg_port);
    let connect = || async {
        let (client, connection) = tokio_postgres::connect(&config, NoTls).await?;
        tokio::spawn(connection);
        Ok::<_, tokio_postgres::Error>(client)
    };
    // The readiness check's connection may still hold its slot for a moment.
    let mut clients = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while clients.len() < 3 {
        match connect().await {
            Ok(client) => clients.push(client),
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("three connections under a cap of three: {e:?}"),
        }
    }
    for _ in 0..3 {
        let (code, message) = failure("connect", connect().await);
        assert_eq!((code.as_str(), message.as_str()), ("53300", "sorry, too many clients already"));
    }
    // As psql does it: SSL first, declined, then the startup packet.
    assert_eq!(refusal_after_ssl_request(server.pg_port).await, "53300");
    for client in &clients {
        assert_eq!(one_value(client, "SELECT 6 * 7").await, "42");
    }
    // A slot freed is a slot for the next client.
    clients.pop();
    let deadline = Instant::now() + Duration::from_secs(10);
    let replacement = loop {
        match connect().await {
            Ok(client) => break client,
            Err(e) if Instant::now() >= deadline => panic!("no slot after a client left: {e:?}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    assert_eq!(one_value(&replacement, "SELECT 6 * 7").await, "42");
    drop(replacement);
    clients.pop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_still_answers(&server).await;
}

/// Sends an SSLRequest, expects `N`, sends a startup packet, and returns the SQLSTATE
/// of the ErrorResponse that comes back.
async fn refusal_after_ssl_request(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    socket.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).await.unwrap();
    assert_eq!(socket.read_u8().await.unwrap(), b'N');
    let mut startup = vec![0, 3, 0, 0];
    for part in ["user", "root", "database", "dev", ""] {
        startup.extend_from_slice(part.as_bytes());
        startup.push(0);
    }
    let mut packet = ((startup.len() + 4) as u32).to_be_bytes().to_vec();
    packet.extend_from_slice(&startup);
    socket.write_all(&packet).await.unwrap();
    let mut answer = Vec::new();
    socket.read_to_end(&mut answer).await.unwrap();
    assert_eq!(answer.first(), Some(&b'E'), "{answer:?}");
    let fields = &answer[5..];
    let code = fields.split(|b| *b == 0).find(|f| f.first() == Some(&b'C')).expect("a C field");
    String::from_utf8(code[1..].to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_past_the_memory_limit_fails_alone() {
    let server = start(&["--query-memory-limit", "16"]).await;
    let client = server.connect().await;
    let hungry = "SELECT count(*) FROM generate_series(1, 4000000) a(x) JOIN generate_series(1, 4000000) b(y) ON x = y";
    let (code, message) = failure(hungry, within(LIMIT, hungry, client.simple_query(hungry)).await);
    assert_eq!(code, "53200", "{message}");
    let (code, message) = failure(hungry, within(LIMIT, hungry, client.query(hungry, &[])).await);
    assert_eq!(code, "53200", "{message}");
    // Within the limit, the same shape runs; the session's pool was given back.
    let small = "SELECT count(*) FROM generate_series(1, 10000) a(x) JOIN generate_series(1, 10000) b(y) ON x = y";
    assert_eq!(one_value(&client, small).await, "10000");
    assert_still_answers(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_past_the_write_cap_writes_nothing() {
    let server = start(&["--max-write-rows", "100"]).await;
    let client = server.connect().await;
    let insert = |count: u32| {
        format!(
            "INSERT INTO product_inventory (product_id, product_name, stock_level, reorder_threshold, supplier, base_price) \
             SELECT x + 900000, 'fuzz', x, 5, 'S', 1.50 FROM generate_series(1, {count}) t(x)"
        )
    };
    let count = "SELECT count(*) FROM product_inventory WHERE product_id > 900000";
    for sql in [insert(1_000_000), insert(101)] {
        let (code, message) = failure(&sql, client.simple_query(&sql).await);
        assert_eq!(code, "54000", "{message}");
        let (code, message) = failure(&sql, client.execute(&sql, &[]).await);
        assert_eq!(code, "54000", "{message}");
        assert_eq!(one_value(&client, count).await, "0");
    }
    assert_eq!(client.execute(&insert(100), &[]).await.unwrap(), 100);
    assert_eq!(one_value(&server.connect().await, count).await, "100");
    assert_still_answers(&server).await;
}

/// A relation of the server's catalog, as the fuzz sees it.
struct FuzzRelation {
    name: String,
    columns: Vec<(String, String)>,
}

/// Seeded random SQL over the real catalog: well-formed queries and writes, the
/// hostile statements above, and broken and junk text.
struct SqlFuzz {
    rng: StdRng,
    relations: Vec<FuzzRelation>,
}

const JUNK_TOKENS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "(",
    ")",
    ",",
    ";",
    "*",
    "'",
    "\"",
    "--",
    "/*",
    "*/",
    "$1",
    "::",
    "->>",
    "NULL",
    "1e308",
    "-9223372036854775808",
    "'\\x00'",
    "E'\\\\'",
    "ORDER",
    "BY",
    "GROUP",
    "HAVING",
    "UNION",
    "JOIN",
    "ON",
    "LATERAL",
    "WITH",
    "RECURSIVE",
    "AS",
    "CAST",
    "INTERVAL",
    "'1 day'",
    "ARRAY[",
    "]",
    "[1]",
    "DEFAULT",
    "VALUES",
    "INSERT",
    "INTO",
    "UPDATE",
    "SET",
    "DELETE",
    "DROP",
    "CREATE",
    "TABLE",
    "VIEW",
    "COPY",
    "TO",
    "'/tmp/fuzz'",
    "EXPLAIN",
    "ANALYZE",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "DECLARE",
    "CURSOR",
    "FOR",
    "FETCH",
    "PREPARE",
    "EXECUTE",
    "💥",
    "ℵ",
];

const FUNCTIONS: &[&str] = &["abs", "length", "upper", "lower", "coalesce", "round", "md5", "trim", "sqrt", "nullif"];

impl SqlFuzz {
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.rng.random_range(0..items.len())]
    }

    fn relation(&mut self) -> usize {
        self.rng.random_range(0..self.relations.len())
    }

    fn column(&mut self, relation: usize) -> String {
        let columns = &self.relations[relation].columns;
        format!("\"{}\"", columns[self.rng.random_range(0..columns.len())].0)
    }

    fn literal(&mut self) -> String {
        match self.rng.random_range(0..9) {
            0 => "NULL".into(),
            1 => self.rng.random_range(-1000..1000).to_string(),
            2 => format!("{:.3}", self.rng.random_range(-1e6..1e6)),
            3 => format!("'{}'", ["", "a", "O''Brien", "ℵ", "2025-01-01", "1.5", "true"][self.rng.random_range(0..7)]),
            4 => ["true", "false"][self.rng.random_range(0..2)].into(),
            5 => "TIMESTAMP '2025-06-01 12:00:00'".into(),
            6 => "DATE '2025-06-01'".into(),
            7 => i64::MAX.to_string(),
            _ => "CAST(1.25 AS DECIMAL(10, 2))".into(),
        }
    }

    fn expression(&mut self, relation: Option<usize>, depth: u32) -> String {
        let leaf = depth >= 3 || self.rng.random_bool(0.4);
        if leaf {
            return match relation {
                Some(r) if self.rng.random_bool(0.6) => self.column(r),
                _ => self.literal(),
            };
        }
        let (a, b) = (self.expression(relation, depth + 1), self.expression(relation, depth + 1));
        match self.rng.random_range(0..6) {
            0 => format!("({a} {} {b})", self.pick(&["+", "-", "*", "/", "%", "||"])),
            1 => format!("({a} {} {b})", self.pick(&["=", "<>", "<", ">=", "IS DISTINCT FROM"])),
            2 => format!("{}({a})", self.pick(FUNCTIONS)),
            3 => {
                format!("CAST({a} AS {})", self.pick(&["INT", "BIGINT", "TEXT", "DOUBLE PRECISION", "DATE", "BOOLEAN"]))
            }
            4 => format!("CASE WHEN {a} IS NULL THEN {b} ELSE {a} END"),
            _ => format!("coalesce({a}, {b})"),
        }
    }

    fn condition(&mut self, relation: Option<usize>) -> String {
        let (a, b) = (self.expression(relation, 1), self.expression(relation, 1));
        match self.rng.random_range(0..4) {
            0 => format!("{a} IS NOT NULL"),
            1 => format!("{a} {} {b}", self.pick(&["=", "<", ">", "<>", "LIKE"])),
            2 => format!("{a} IN ({b}, {})", self.literal()),
            _ => format!("NOT ({a} = {b}) OR {a} IS NULL"),
        }
    }

    fn select(&mut self) -> String {
        let r = self.relation();
        let name = self.relations[r].name.clone();
        let items: Vec<String> =
            (0..self.rng.random_range(1..4)).map(|i| format!("{} AS c{i}", self.expression(Some(r), 0))).collect();
        let mut sql = format!("SELECT {} FROM {name}", items.join(", "));
        if self.rng.random_bool(0.5) {
            sql += &format!(" WHERE {}", self.condition(Some(r)));
        }
        if self.rng.random_bool(0.3) {
            let column = self.column(r);
            sql = format!("SELECT {column}, count(*), max({}) FROM {name} GROUP BY {column}", self.column(r));
        }
        if self.rng.random_bool(0.3) {
            sql += " ORDER BY 1";
        }
        sql + &format!(" LIMIT {}", self.rng.random_range(0..50))
    }

    fn join(&mut self) -> String {
        let (a, b) = (self.relation(), self.relation());
        let (left, right) = (self.relations[a].name.clone(), self.relations[b].name.clone());
        let (ca, cb) = (self.column(a), self.column(b));
        format!("SELECT l.{ca}, r.{cb} FROM {left} l JOIN {right} r ON l.{ca} = r.{cb} LIMIT 20")
    }

    fn write(&mut self) -> String {
        let r = self.relation();
        let name = self.relations[r].name.clone();
        let columns: Vec<String> = self.relations[r].columns.iter().map(|(c, _)| format!("\"{c}\"")).collect();
        match self.rng.random_range(0..3) {
            0 => {
                let values: Vec<String> = columns.iter().map(|_| self.literal()).collect();
                format!("INSERT INTO {name} ({}) VALUES ({})", columns.join(", "), values.join(", "))
            }
            1 => format!("UPDATE {name} SET {} = {} WHERE {}", self.column(r), self.literal(), self.condition(Some(r))),
            _ => format!("DELETE FROM {name} WHERE {}", self.condition(Some(r))),
        }
    }

    fn hostile(&mut self) -> String {
        let r = self.relation();
        let name = self.relations[r].name.clone();
        let column = self.column(r);
        let templates = [
            format!("DROP TABLE {name}"),
            format!("DROP VIEW {name} CASCADE"),
            format!("ALTER TABLE {name} DROP COLUMN {column}"),
            format!("TRUNCATE {name}"),
            format!("CREATE VIEW fuzz_{r} AS SELECT * FROM {name}"),
            format!("CREATE TABLE fuzz_{r} AS SELECT * FROM {name}"),
            format!("COPY {name} TO '/tmp/fuzz-{r}.csv'"),
            format!("SELECT * INTO fuzz_{r} FROM {name}"),
            "SET datafusion.execution.batch_size = 1".into(),
            "SET datafusion.execution.target_partitions = 1000".into(),
            "CREATE SCHEMA fuzz".into(),
            "CREATE ROLE fuzz".into(),
            format!("EXPLAIN ANALYZE INSERT INTO {name} SELECT * FROM {name}"),
            format!("PREPARE fuzz AS DELETE FROM {name}"),
            format!("WITH gone AS (DELETE FROM {name} RETURNING *) SELECT * FROM gone"),
        ];
        self.pick(&templates).clone()
    }

    fn session(&mut self) -> String {
        let templates = [
            "BEGIN",
            "COMMIT",
            "ROLLBACK",
            "SHOW statement_timeout",
            "SHOW application_name",
            "SHOW TABLES",
            "SET application_name = 'fuzz'",
            "SET extra_float_digits = 3",
            "SET TIME ZONE 'UTC'",
            "RESET application_name",
            "SET DateStyle = 'ISO'",
            "SHOW server_version",
            "DISCARD ALL",
            "SELECT version()",
            "SHOW SOURCES",
        ];
        self.pick(&templates).to_string()
    }

    /// A well-formed statement with a piece cut out, repeated or swapped.
    fn broken(&mut self) -> String {
        let sql: Vec<char> = self.select().chars().collect();
        let cut = self.rng.random_range(0..sql.len());
        let end = (cut + self.rng.random_range(1..8)).min(sql.len());
        let (head, tail): (String, String) = (sql[..cut].iter().collect(), sql[end..].iter().collect());
        match self.rng.random_range(0..3) {
            0 => head + &tail,
            1 => format!("{head} {} {tail}", self.pick(JUNK_TOKENS)),
            _ => format!("{head}{}", sql[cut..].iter().collect::<String>().repeat(2)),
        }
    }

    fn junk(&mut self) -> String {
        let words: Vec<&str> = (0..self.rng.random_range(1..12)).map(|_| *self.pick(JUNK_TOKENS)).collect();
        words.join(" ")
    }

    fn statement(&mut self) -> String {
        match self.rng.random_range(0..100) {
            0..40 => self.select(),
            40..48 => self.join(),
            48..58 => self.write(),
            58..68 => self.hostile(),
            68..76 => self.session(),
            76..90 => self.broken(),
            90..96 => self.junk(),
            _ => format!("SELECT {}", self.expression(None, 0)),
        }
    }
}

/// At least 100,000 random statements, pipelined over a few connections: every
/// error carries a SQLSTATE, no connection is lost, nothing panics, and the server's
/// relations are all still there afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_sql_fuzz() {
    const SEED: u64 = 0x5eed_d1ff;
    const CONNECTIONS: usize = 4;
    const STATEMENTS_PER_CONNECTION: usize = 25_000;
    const IN_FLIGHT: usize = 32;
    let server = start(&["--statement-timeout", "2s"]).await;
    let client = server.connect().await;
    let relation_names = server_relations(&client).await;
    let mut columns: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for row in rows(
        &client,
        "SELECT table_name, column_name, data_type FROM information_schema.columns \
         WHERE table_schema = 'public' ORDER BY table_name, ordinal_position",
    )
    .await
    {
        let [Some(table), Some(column), Some(ty)] = &row[..] else { panic!("{row:?}") };
        columns.entry(table.clone()).or_default().push((column.clone(), ty.clone()));
    }
    let relations: Vec<FuzzRelation> =
        relation_names.iter().map(|name| FuzzRelation { name: name.clone(), columns: columns[name].clone() }).collect();
    let mut fuzz = SqlFuzz { rng: StdRng::seed_from_u64(SEED), relations };
    let workloads: Vec<Vec<String>> =
        (0..CONNECTIONS).map(|_| (0..STATEMENTS_PER_CONNECTION).map(|_| fuzz.statement()).collect()).collect();

    let started = Instant::now();
    let mut runs = Vec::new();
    for workload in workloads {
        let client = std::sync::Arc::new(server.connect().await);
        runs.push(tokio::spawn(async move {
            let mut codes: BTreeMap<String, usize> = BTreeMap::new();
            let mut answers = futures::stream::iter(workload)
                .map(|sql| {
                    let client = client.clone();
                    async move {
                        let result = client.simple_query(&sql).await;
                        (sql, result)
                    }
                })
                .buffered(IN_FLIGHT);
            while let Some((sql, result)) = answers.next().await {
                let code = match result {
                    Ok(_) => "ok".to_string(),
                    Err(e) => match e.as_db_error() {
                        Some(db) => db.code().code().to_string(),
                        None => panic!("{sql}: an error without SQLSTATE (the connection is lost?): {e:?}"),
                    },
                };
                *codes.entry(code).or_default() += 1;
            }
            assert!(!client.is_closed(), "the connection was lost");
            codes
        }));
    }
    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    for run in runs {
        let codes_of_run = within(Duration::from_secs(600), "the fuzz", run).await;
        for (code, count) in codes_of_run.expect("a fuzz connection") {
            *codes.entry(code).or_default() += count;
        }
    }
    let total: usize = codes.values().sum();
    eprintln!("{total} statements in {:?}: {codes:?}", started.elapsed());
    assert_eq!(total, CONNECTIONS * STATEMENTS_PER_CONNECTION);
    assert!(codes.get("ok").copied().unwrap_or(0) > total / 10, "too few statements succeeded: {codes:?}");
    assert!(!server.stderr().contains("panicked"), "the server panicked:\n{}", server.stderr());
    let after = server.connect().await;
    assert_eq!(server_relations(&after).await, relation_names);
    assert_still_answers(&server).await;
}
