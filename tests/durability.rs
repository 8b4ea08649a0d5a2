//! Crash recovery of the binary on a `--data-dir`:
//!
//! - every write acknowledged to a client (SQL over pgwire, HTTP overrides) is there
//!   after `kill -9` and a restart, and a statement is applied whole or not at all;
//! - a torn last record of the input log is dropped at start-up; a flipped byte
//!   before the end stops start-up with an error naming the segment and the offset;
//! - the generator, killed midway and restarted, ends with exactly what one
//!   uninterrupted `--ephemeral` run ends with;
//! - SIGTERM exits with status 0 and keeps what was acknowledged;
//! - one data directory serves one server at a time.
//!
//! The writers' choices and the kill delays come from a seed each test prints;
//! `DURABILITY_SEED=<seed>` repeats them (the timing of a kill cannot be repeated).
//!
//! Run: `cargo test --release --test durability`.

mod support;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use diffmart::engine::Catalog;
use diffmart::engine::log::MAGIC;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use support::engine_contents;
use support::overrides::{OverrideWriter, Overrides, price_overrides};
use support::server::DiffmartProcess;
use support::wire::text_rows;
use tempfile::TempDir;
use tokio_postgres::Client;

/// Start-up replays the log before it serves: generous.
const READY: Duration = Duration::from_secs(60);
/// How long a server may take to exit once it has reason to.
const EXIT: Duration = Duration::from_secs(10);
/// Crash-and-restart rounds of the kill -9 tests.
const ROUNDS: usize = 8;
/// Clients writing side by side in each round, each on keys of its own.
const WRITERS: usize = 3;
/// Length and checksum before each log record's body.
const RECORD_HEADER: usize = 8;

// ------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------

/// A data directory that does not exist yet (the server creates it), in a temporary
/// directory removed with the guard.
fn data_dir() -> (TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let dir = tmp.path().join("data");
    (tmp, dir)
}

/// The seed of a test's random choices: `DURABILITY_SEED`, or the clock's. Printed,
/// so a failure can be repeated.
fn seed(test: &str) -> u64 {
    let seed = match std::env::var("DURABILITY_SEED") {
        Ok(seed) => seed.parse().expect("DURABILITY_SEED is a number"),
        Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
    };
    println!("{test}: seed {seed} (DURABILITY_SEED={seed} repeats its choices)");
    seed
}

/// A server on `dir` without the generator, ready for clients.
async fn start_without_generator(dir: &Path) -> DiffmartProcess {
    let mut server = DiffmartProcess::start_on(dir, &["--no-generator"]);
    server.wait_ready(READY).await;
    server
}

/// What differs between two keyed states, readably (at most 20 lines).
fn differences<K: Ord + Debug, V: PartialEq + Debug>(expected: &BTreeMap<K, V>, found: &BTreeMap<K, V>) -> String {
    let mut lines = Vec::new();
    for (key, want) in expected {
        match found.get(key) {
            None => lines.push(format!("  missing {key:?}: {want:?}")),
            Some(got) if got != want => lines.push(format!("  {key:?}: expected {want:?}, found {got:?}")),
            Some(_) => {}
        }
    }
    lines.extend(
        found.iter().filter(|(key, _)| !expected.contains_key(key)).map(|(k, v)| format!("  extra {k:?}: {v:?}")),
    );
    let more = lines.len().saturating_sub(20);
    lines.truncate(20);
    if more > 0 {
        lines.push(format!("  ... and {more} more"));
    }
    lines.join("\n")
}

/// After a crash, one writer's keys hold every write it saw acknowledged, and the
/// write in flight at the kill (if any) either whole or not at all.
fn assert_recovered<K: Ord + Debug, V: PartialEq + Debug>(
    writer: &str,
    acknowledged: &BTreeMap<K, V>,
    in_flight: Option<&BTreeMap<K, V>>,
    found: &BTreeMap<K, V>,
) {
    if found == acknowledged || in_flight == Some(found) {
        return;
    }
    let mut report = format!(
        "{writer}: after the restart its keys hold neither its acknowledged writes nor those and the write in flight, whole.\n\
         against the acknowledged writes:\n{}",
        differences(acknowledged, found)
    );
    if let Some(in_flight) = in_flight {
        report.push_str(&format!("\nagainst those and the write in flight:\n{}", differences(in_flight, found)));
    }
    panic!("{report}");
}

/// Runs the writers side by side, kills the server with SIGKILL at a random moment
/// meanwhile, and waits for each to notice: returns them, each with the state it
/// would have had the write in flight at the kill been applied.
async fn kill_while_writing<W: Send + 'static, S: Send + 'static>(
    server: &mut DiffmartProcess,
    rng: &mut StdRng,
    writes: Vec<impl Future<Output = (W, Option<S>)> + Send + 'static>,
) -> (Vec<W>, Vec<Option<S>>) {
    let tasks: Vec<_> = writes.into_iter().map(tokio::spawn).collect();
    // Not a wait for something: the moment of the crash.
    tokio::time::sleep(Duration::from_millis(rng.random_range(50..=500))).await;
    server.kill9();
    let mut stopped = (Vec::new(), Vec::new());
    for task in tasks {
        let (writer, in_flight) = tokio::time::timeout(EXIT, task)
            .await
            .expect("a writer notices the server is gone")
            .expect("a writer's checks pass");
        stopped.0.push(writer);
        stopped.1.push(in_flight);
    }
    stopped
}

// ------------------------------------------------------------------------------------------
// The input log's files
// ------------------------------------------------------------------------------------------

/// The newest segment of the input log in `data_dir`.
fn newest_segment(data_dir: &Path) -> PathBuf {
    let log = data_dir.join("log");
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&log)
        .unwrap_or_else(|e| panic!("reading {}: {e}", log.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_string_lossy();
            name.starts_with("seg-") && name.ends_with(".log")
        })
        .collect();
    segments.sort();
    segments.pop().unwrap_or_else(|| panic!("no seg-*.log in {}", log.display()))
}

/// A log record's place in its segment: where it starts and ends, and its time.
#[derive(Debug)]
struct RecordAt {
    offset: usize,
    end: usize,
    time: u64,
}

/// The records of a segment, as far as they parse (to describe it in failures).
fn records(segment: &[u8]) -> Vec<RecordAt> {
    assert!(segment.starts_with(MAGIC), "a segment starts with the log's magic");
    let mut found: Vec<RecordAt> = Vec::new();
    let mut at = MAGIC.len();
    while at + RECORD_HEADER + 8 <= segment.len() {
        let len = u32::from_le_bytes(segment[at..at + 4].try_into().unwrap()) as usize;
        let end = at + RECORD_HEADER + len;
        if len < 8 || end > segment.len() {
            break;
        }
        let time = u64::from_le_bytes(segment[at + RECORD_HEADER..at + RECORD_HEADER + 8].try_into().unwrap());
        if let Some(before) = found.last() {
            assert!(time > before.time, "times increase along the log: {found:?}, then {time} at {at}");
        }
        found.push(RecordAt { offset: at, end, time });
        at = end;
    }
    found
}

// ------------------------------------------------------------------------------------------
// SQL writes: product_inventory rows
// ------------------------------------------------------------------------------------------

/// A `product_inventory` row but its key, `product_id`.
#[derive(Clone, Debug, PartialEq)]
struct Item {
    name: String,
    stock: i32,
    reorder_threshold: i32,
    supplier: String,
    price: Decimal,
}

type Items = BTreeMap<i32, Item>;

/// Each writer's product ids are `writer * KEYS_PER_WRITER + 1 ..`.
const KEYS_PER_WRITER: i32 = 1_000_000;

/// Every `product_inventory` row, by `product_id`.
async fn inventory(client: &Client) -> Items {
    let sql =
        "SELECT product_id, product_name, stock_level, reorder_threshold, supplier, base_price FROM product_inventory";
    let rows = client.query(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.iter()
        .map(|r| {
            let item = Item {
                name: r.get(1),
                stock: r.get(2),
                reorder_threshold: r.get(3),
                supplier: r.get(4),
                price: r.get(5),
            };
            (r.get(0), item)
        })
        .collect()
}

/// One SQL statement, what it reports, and the writer's rows once it is applied.
struct Statement {
    sql: String,
    rows_affected: u64,
    after: Items,
}

/// One client's writes over all rounds: the rows it knows are in the table, and its
/// random choices.
struct SqlWriter {
    index: usize,
    rows: Items,
    next_id: i32,
    rng: StdRng,
    acknowledged: u64,
}

impl SqlWriter {
    fn new(index: usize, seed: u64) -> SqlWriter {
        SqlWriter {
            index,
            rows: Items::new(),
            next_id: index as i32 * KEYS_PER_WRITER + 1,
            rng: StdRng::seed_from_u64(seed.wrapping_add(index as u64 + 1)),
            acknowledged: 0,
        }
    }

    /// This writer's rows among `table`'s.
    fn own(&self, table: &Items) -> Items {
        let first = self.index as i32 * KEYS_PER_WRITER + 1;
        table.range(first..first + KEYS_PER_WRITER).map(|(k, v)| (*k, v.clone())).collect()
    }

    /// A random statement on this writer's rows: an INSERT of one to four rows, an
    /// UPDATE or DELETE of one row, or of a range of rows.
    fn next_statement(&mut self, tag: &str) -> Statement {
        let keys: Vec<i32> = self.rows.keys().copied().collect();
        let mut after = self.rows.clone();
        let choice = if keys.len() < 4 { 0 } else { self.rng.random_range(0..10) };
        let (sql, rows_affected) = match choice {
            0..=3 => {
                let mut values = Vec::new();
                for _ in 0..self.rng.random_range(1..=4) {
                    let id = self.next_id;
                    self.next_id += 1;
                    let item = Item {
                        name: tag.to_string(),
                        stock: self.rng.random_range(0..1000),
                        reorder_threshold: 5,
                        supplier: format!("w{}", self.index),
                        price: Decimal::new(self.rng.random_range(1..100_000), 2),
                    };
                    values.push(format!(
                        "({id}, '{}', {}, {}, '{}', {})",
                        item.name, item.stock, item.reorder_threshold, item.supplier, item.price
                    ));
                    after.insert(id, item);
                }
                (format!("INSERT INTO product_inventory VALUES {}", values.join(", ")), values.len())
            }
            4 | 5 => {
                let id = keys[self.rng.random_range(0..keys.len())];
                let stock = self.rng.random_range(0..1000);
                let item = after.get_mut(&id).unwrap();
                (item.name, item.stock) = (tag.to_string(), stock);
                let sql = format!(
                    "UPDATE product_inventory SET product_name = '{tag}', stock_level = {stock} WHERE product_id = {id}"
                );
                (sql, 1)
            }
            6 | 7 => {
                let (first, last) = self.key_range(&keys, 6);
                let mut count = 0;
                for item in after.range_mut(first..=last).map(|(_, item)| item) {
                    (item.name, item.stock) = (tag.to_string(), item.stock + 1);
                    count += 1;
                }
                let sql = format!(
                    "UPDATE product_inventory SET product_name = '{tag}', stock_level = stock_level + 1 \
                     WHERE product_id BETWEEN {first} AND {last}"
                );
                (sql, count)
            }
            8 => {
                let id = keys[self.rng.random_range(0..keys.len())];
                after.remove(&id);
                (format!("DELETE FROM product_inventory WHERE product_id = {id}"), 1)
            }
            _ => {
                let (first, last) = self.key_range(&keys, 3);
                after.retain(|id, _| !(first..=last).contains(id));
                let deleted = self.rows.len() - after.len();
                (format!("DELETE FROM product_inventory WHERE product_id BETWEEN {first} AND {last}"), deleted)
            }
        };
        Statement { sql, rows_affected: rows_affected as u64, after }
    }

    /// The first and last of two to `most` adjacent keys of `keys` (at least two long).
    fn key_range(&mut self, keys: &[i32], most: usize) -> (i32, i32) {
        let start = self.rng.random_range(0..keys.len() - 1);
        let len = self.rng.random_range(2..=most).min(keys.len() - start);
        (keys[start], keys[start + len - 1])
    }

    /// Writes until the server goes away. Returns the writer, its rows those of every
    /// acknowledged statement, and the rows it would have had the statement in flight
    /// been applied.
    async fn write_until_killed(mut self, client: Client, round: usize) -> (SqlWriter, Option<Items>) {
        for step in 0.. {
            let tag = format!("r{round}w{}s{step}", self.index);
            let statement = self.next_statement(&tag);
            match client.execute(statement.sql.as_str(), &[]).await {
                Ok(rows) => {
                    assert_eq!(rows, statement.rows_affected, "{}", statement.sql);
                    self.rows = statement.after;
                    self.acknowledged += 1;
                }
                Err(e) if e.code().is_some() => panic!("diffmart refused {}: {e}", statement.sql),
                Err(_) => return (self, Some(statement.after)),
            }
        }
        unreachable!("a writer writes until the server goes away")
    }
}

/// Several rounds of: clients write to `product_inventory` side by side (INSERTs of one
/// to four rows, UPDATEs and DELETEs of one row or a range), the server is killed with
/// SIGKILL at a random moment and restarted on the same data directory. Each client's
/// keys then hold every statement it saw acknowledged, and the one in flight whole or
/// not at all; the next round writes on top.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_sql_writes_survive_kill_9() {
    let seed = seed("acknowledged_sql_writes_survive_kill_9");
    let mut rng = StdRng::seed_from_u64(seed);
    let (_tmp, dir) = data_dir();
    let mut writers: Vec<SqlWriter> = (0..WRITERS).map(|i| SqlWriter::new(i, seed)).collect();
    let mut in_flight: Vec<Option<Items>> = vec![None; WRITERS];
    for round in 0..=ROUNDS {
        let mut server = start_without_generator(&dir).await;
        let table = inventory(&server.connect().await).await;
        for (writer, cut) in writers.iter_mut().zip(&in_flight) {
            let found = writer.own(&table);
            assert_recovered(&format!("round {round}, writer {}", writer.index), &writer.rows, cut.as_ref(), &found);
            writer.rows = found;
        }
        let owned: usize = writers.iter().map(|w| w.rows.len()).sum();
        assert_eq!(owned, table.len(), "rows no writer wrote: {table:?}");
        if round == ROUNDS {
            break;
        }
        let mut clients = Vec::new();
        for _ in 0..WRITERS {
            clients.push(server.connect().await);
        }
        let writes = writers.drain(..).zip(clients).map(|(writer, client)| writer.write_until_killed(client, round));
        (writers, in_flight) = kill_while_writing(&mut server, &mut rng, writes.collect()).await;
    }
    let acknowledged: u64 = writers.iter().map(|w| w.acknowledged).sum();
    println!("{acknowledged} statements acknowledged over {ROUNDS} rounds");
    assert!(acknowledged >= ROUNDS as u64, "only {acknowledged} statements were acknowledged: too few to test");
}

// ------------------------------------------------------------------------------------------
// HTTP writes: price overrides
// ------------------------------------------------------------------------------------------

const ADMIN_KEY: &str = "durability-test-key";
/// Products each HTTP writer sets and removes overrides of.
const PRODUCTS_PER_WRITER: usize = 6;

/// Writer `index`'s products, and a writer for them.
fn http_writer(index: usize, seed: u64) -> OverrideWriter {
    let products = (0..PRODUCTS_PER_WRITER).map(|p| format!("W{index}P{p}")).collect();
    OverrideWriter::new(&format!("w{index}"), products, ADMIN_KEY, seed.wrapping_add(index as u64 + 1))
}

/// As for SQL, with HTTP clients setting (`POST /override`) and removing
/// (`DELETE /override/{id}`) price overrides of catalog products, killed with SIGKILL
/// at a random moment: after each restart, `price_overrides` holds every acknowledged
/// request, and the one in flight or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_http_overrides_survive_kill_9() {
    let seed = seed("acknowledged_http_overrides_survive_kill_9");
    let mut rng = StdRng::seed_from_u64(seed);
    let (_tmp, dir) = data_dir();
    let mut writers: Vec<OverrideWriter> = (0..WRITERS).map(|i| http_writer(i, seed)).collect();
    let mut in_flight: Vec<Option<Overrides>> = vec![None; WRITERS];
    let products: Vec<String> = writers.iter().flat_map(|w| w.products.clone()).collect();
    for round in 0..=ROUNDS {
        let mut server = DiffmartProcess::start_on(&dir, &["--no-generator", "--admin-api-key", ADMIN_KEY]);
        server.wait_ready(READY).await;
        let client = server.connect().await;
        if round == 0 {
            // Overrides need a known product: the catalog, one acknowledged SQL write.
            let values: Vec<String> = products.iter().map(|p| format!("('{p}', 10.0)")).collect();
            let sql = format!("INSERT INTO pricing_products (product_id, base_price) VALUES {}", values.join(", "));
            client.batch_execute(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        let catalog = text_rows(&client, "SELECT product_id FROM pricing_products ORDER BY product_id").await;
        assert_eq!(catalog.concat(), products, "round {round}: the catalog written over SQL");
        let table = price_overrides(&client).await;
        for (writer, cut) in writers.iter_mut().zip(&in_flight) {
            let found = writer.own(&table);
            let who = format!("round {round}, HTTP writer {}", writer.name);
            assert_recovered(&who, &writer.overrides, cut.as_ref(), &found);
            writer.overrides = found;
        }
        let owned: usize = writers.iter().map(|w| w.overrides.len()).sum();
        assert_eq!(owned, table.len(), "overrides no writer set: {table:?}");
        if round == ROUNDS {
            break;
        }
        let http_port = server.http_port;
        let writes = writers.drain(..).map(|writer| writer.write_until_killed(http_port, round));
        (writers, in_flight) = kill_while_writing(&mut server, &mut rng, writes.collect()).await;
    }
    let acknowledged: u64 = writers.iter().map(|w| w.acknowledged).sum();
    println!("{acknowledged} requests acknowledged over {ROUNDS} rounds");
    assert!(acknowledged >= ROUNDS as u64, "only {acknowledged} requests were acknowledged: too few to test");
}

// ------------------------------------------------------------------------------------------
// One server per data directory
// ------------------------------------------------------------------------------------------

/// Inserts `product_inventory` rows `ids`, one acknowledged statement (so one log
/// record) each.
async fn insert_items(client: &Client, ids: impl IntoIterator<Item = i32>) {
    for id in ids {
        let sql = format!("INSERT INTO product_inventory VALUES ({id}, 'item {id}', 10, 5, 'S', 1.50)");
        client.batch_execute(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// The `product_id`s of `product_inventory`, in order.
async fn item_ids(client: &Client) -> Vec<i32> {
    let rows = client.query("SELECT product_id FROM product_inventory ORDER BY product_id", &[]).await.unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

/// A second server on a data directory in use exits with an error saying so, and
/// leaves the first one and its data alone; once the first is killed, the lock goes
/// with it and a new server starts on the directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_data_dir_is_refused() {
    let (_tmp, dir) = data_dir();
    let mut first = start_without_generator(&dir).await;
    insert_items(&first.connect().await, 1..=3).await;

    let mut second = DiffmartProcess::start_on(&dir, &["--no-generator"]);
    let status = second.wait_exit(READY).expect("the second server exits");
    let stderr = second.stderr();
    assert!(!status.success(), "the second server exited with {status}; stderr:\n{stderr}");
    assert!(stderr.contains("is in use by another diffmart"), "stderr:\n{stderr}");

    assert_eq!(item_ids(&first.connect().await).await, [1, 2, 3], "the first server still serves its data");
    insert_items(&first.connect().await, [4]).await;
    first.kill9();
    let third = start_without_generator(&dir).await;
    assert_eq!(item_ids(&third.connect().await).await, [1, 2, 3, 4]);
}

// ------------------------------------------------------------------------------------------
// A damaged log
// ------------------------------------------------------------------------------------------

/// Rows 1 to 5, each its own record, then kill -9 and the newest segment cut by 3
/// bytes, inside its last record: start-up warns of the torn record and drops it, so
/// row 5 is gone and rows 1 to 4 remain. Writes then continue after the valid data
/// and survive another crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_last_record_is_dropped_at_start() {
    let (_tmp, dir) = data_dir();
    let mut server = start_without_generator(&dir).await;
    insert_items(&server.connect().await, 1..=5).await;
    server.kill9();

    let segment = newest_segment(&dir);
    let bytes = std::fs::read(&segment).unwrap();
    let layout = records(&bytes);
    assert_eq!(layout.last().map(|r| r.end), Some(bytes.len()), "whole records before the damage: {layout:?}");
    let last = layout.last().unwrap();
    assert!(last.end - 3 > last.offset + RECORD_HEADER, "the cut falls inside the last record's body: {layout:?}");
    let file = std::fs::OpenOptions::new().write(true).open(&segment).unwrap();
    file.set_len(bytes.len() as u64 - 3).unwrap();
    drop(file);

    let mut server = start_without_generator(&dir).await;
    let stderr = server.stderr();
    assert!(stderr.to_lowercase().contains("torn"), "no warning of the torn record; stderr:\n{stderr}");
    let client = server.connect().await;
    assert_eq!(item_ids(&client).await, [1, 2, 3, 4], "{} records were {layout:?}", segment.display());

    insert_items(&client, [6]).await;
    server.kill9();
    let server = start_without_generator(&dir).await;
    assert_eq!(item_ids(&server.connect().await).await, [1, 2, 3, 4, 6]);
}

/// Rows 1 to 5, each its own record, then kill -9 and one byte of the newest segment's
/// first record flipped (its body, so its checksum fails, with records after it):
/// start-up fails with an error naming the segment and the offset, and leaves the file
/// as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_stops_start_up_naming_the_file_and_offset() {
    let (_tmp, dir) = data_dir();
    let mut server = start_without_generator(&dir).await;
    insert_items(&server.connect().await, 1..=5).await;
    server.kill9();

    let segment = newest_segment(&dir);
    let mut bytes = std::fs::read(&segment).unwrap();
    let layout = records(&bytes);
    assert!(layout.len() >= 2, "a record followed by others: {layout:?}");
    bytes[MAGIC.len() + RECORD_HEADER] ^= 0xff;
    std::fs::write(&segment, &bytes).unwrap();

    let mut server = DiffmartProcess::start_on(&dir, &["--no-generator"]);
    let status = server.wait_exit(READY).expect("start-up stops");
    let stderr = server.stderr();
    assert!(!status.success(), "exited with {status}; stderr:\n{stderr}");
    let canonical = segment.canonicalize().unwrap();
    assert!(
        stderr.contains(&*segment.to_string_lossy()) || stderr.contains(&*canonical.to_string_lossy()),
        "{} is not named; stderr:\n{stderr}",
        segment.display()
    );
    assert!(stderr.contains("offset"), "no offset; stderr:\n{stderr}");
    assert!(std::fs::read(&segment).unwrap() == bytes, "the failed start-up changed {}", segment.display());
}

// ------------------------------------------------------------------------------------------
// The generator
// ------------------------------------------------------------------------------------------

const GENERATOR_EVENTS: i64 = 20_000;

/// The generator's `diffmart_sources` row: its status and how many events it emitted.
async fn generator_status(client: &Client) -> Option<(String, i64)> {
    let sql = "SELECT status, messages FROM diffmart_sources WHERE kind = 'generator'";
    let rows = client.query(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.first().map(|r| (r.get(0), r.get(1)))
}

/// Waits until the generator's row satisfies `done`; returns it.
async fn wait_for_generator(client: &Client, what: &str, done: impl Fn(&str, i64) -> bool) -> (String, i64) {
    let deadline = Instant::now() + READY;
    loop {
        let status = generator_status(client).await;
        if let Some((state, messages)) = &status
            && done(state, *messages)
        {
            return (state.clone(), *messages);
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; the generator's row: {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for the generator to finish all its events; returns every relation but the
/// system ones, as sorted rows of text.
async fn contents_once_finished(client: &Client) -> BTreeMap<&'static str, Vec<Vec<String>>> {
    let (_, messages) = wait_for_generator(client, "the generator to finish", |status, _| status == "finished").await;
    assert_eq!(messages, GENERATOR_EVENTS, "events the generator emitted in all");
    relation_contents(client).await
}

/// The generator on a data directory, killed with SIGKILL after a quarter or more of its
/// events and restarted with the same options, finishes with the same contents in every
/// relation (the system relations aside) as one uninterrupted `--ephemeral` run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generator_continues_where_it_stopped() {
    let events = GENERATOR_EVENTS.to_string();
    let options = [
        "--generator-rate",
        "5000",
        "--generator-events",
        &events,
        "--generator-start",
        "2025-06-01 12:00:00",
        "--generator-seed",
        "7",
    ];
    let (_tmp, dir) = data_dir();
    let mut server = DiffmartProcess::start_on(&dir, &options);
    server.wait_ready(READY).await;
    let client = server.connect().await;
    let (status, emitted) =
        wait_for_generator(&client, "a quarter of the events", |_, n| n >= GENERATOR_EVENTS / 4).await;
    server.kill9();
    assert!(status != "finished" && emitted < GENERATOR_EVENTS, "nothing left to resume: {status}, {emitted} events");
    println!("killed after {emitted} or more events");
    let mut server = DiffmartProcess::start_on(&dir, &options);
    server.wait_ready(READY).await;
    let resumed = contents_once_finished(&server.connect().await).await;
    drop(server);

    let mut reference = DiffmartProcess::start(&options);
    reference.wait_ready(READY).await;
    let uninterrupted = contents_once_finished(&reference.connect().await).await;
    drop(reference);

    let total: usize = uninterrupted.values().map(Vec::len).sum();
    assert!(total > 0, "the uninterrupted run has no rows at all");
    assert_same_contents(&uninterrupted, &resumed);
}

/// A restart shows exactly what was shown before the kill, in every relation (the
/// generator finished first, so nothing new comes after the restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_shows_exactly_what_was_shown_before() {
    let events = GENERATOR_EVENTS.to_string();
    let options =
        ["--generator-rate", "20000", "--generator-events", &events, "--generator-start", "2025-06-01 12:00:00"];
    let (_tmp, dir) = data_dir();
    let mut server = DiffmartProcess::start_on(&dir, &options);
    server.wait_ready(READY).await;
    let before = contents_once_finished(&server.connect().await).await;
    server.kill9();
    let mut server = DiffmartProcess::start_on(&dir, &options);
    server.wait_ready(READY).await;
    let after = contents_once_finished(&server.connect().await).await;
    assert_same_contents(&before, &after);
}

// ------------------------------------------------------------------------------------------
// SIGTERM
// ------------------------------------------------------------------------------------------

/// SIGTERM after acknowledged writes: the server exits with status 0 within a few
/// seconds, and a restart on the same data directory has the writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_cleanly() {
    let (_tmp, dir) = data_dir();
    let mut server = start_without_generator(&dir).await;
    let client = server.connect().await;
    insert_items(&client, 1..=3).await;
    client
        .batch_execute(
            "INSERT INTO product_inventory VALUES (4, 'four', 1, 1, 'S', 4.00), (5, 'five', 1, 1, 'S', 5.00)",
        )
        .await
        .unwrap();
    client.batch_execute("DELETE FROM product_inventory WHERE product_id = 2").await.unwrap();

    server.terminate();
    let status = server.wait_exit(EXIT);
    let stderr = server.stderr();
    let status = status.unwrap_or_else(|| panic!("still running {EXIT:?} after SIGTERM; stderr:\n{stderr}"));
    assert_eq!(status.code(), Some(0), "exit status {status}; stderr:\n{stderr}");

    let server = start_without_generator(&dir).await;
    assert_eq!(item_ids(&server.connect().await).await, [1, 3, 4, 5]);
}

// ------------------------------------------------------------------------------------------
// Kafka sources
// ------------------------------------------------------------------------------------------

/// The retail topics, with their partition counts.
const RETAIL_TOPICS: [(&str, i32); 4] =
    [("web_clicks", 2), ("purchases", 2), ("competitor_prices", 1), ("restocks", 1)];

/// Every Kafka partition's `diffmart_sources` row: (topic, partition) → (next offset, lag).
async fn kafka_positions(client: &Client) -> BTreeMap<(String, i32), (Option<i64>, Option<i64>)> {
    let sql = "SELECT name, partition, position, lag FROM diffmart_sources WHERE kind = 'kafka' AND partition >= 0";
    let rows = client.query(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.iter().map(|r| ((r.get(0), r.get(1)), (r.get(2), r.get(3)))).collect()
}

/// Messages read over every partition: the sum of their next offsets.
async fn kafka_read(client: &Client) -> i64 {
    kafka_positions(client).await.values().filter_map(|(next, _)| *next).sum()
}

/// Waits until every partition of the retail topics is read to its end, `messages` in
/// all; returns every relation but the system ones, as sorted rows of text.
async fn contents_once_read(client: &Client, messages: i64) -> BTreeMap<&'static str, Vec<Vec<String>>> {
    let partitions: usize = RETAIL_TOPICS.iter().map(|(_, p)| *p as usize).sum();
    let deadline = Instant::now() + READY;
    loop {
        let positions = kafka_positions(client).await;
        let read: i64 = positions.values().filter_map(|(next, _)| *next).sum();
        if positions.len() == partitions && read == messages && positions.values().all(|(_, lag)| *lag == Some(0)) {
            break;
        }
        assert!(read <= messages, "{read} messages read of {messages}: some twice; {positions:?}");
        assert!(Instant::now() < deadline, "timed out reading {messages} messages: {positions:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The counts go on across restarts too.
    let counted = text_rows(client, "SELECT sum(messages) FROM diffmart_sources WHERE kind = 'kafka'").await;
    assert_eq!(counted, [[messages.to_string()]], "messages diffmart_sources counts");
    relation_contents(client).await
}

/// Every relation but the system ones, as sorted rows of text.
async fn relation_contents(client: &Client) -> BTreeMap<&'static str, Vec<Vec<String>>> {
    let system: Vec<&str> = diffmart_dataflows::system::input_specs().iter().map(|s| s.name).collect();
    let mut contents = BTreeMap::new();
    for (_, spec) in Catalog::all_pipelines().iter().filter(|(_, spec)| !system.contains(&spec.name)) {
        let mut rows = text_rows(client, &format!("SELECT * FROM \"{}\"", spec.name)).await;
        rows.sort();
        contents.insert(spec.name, rows);
    }
    contents
}

/// Every relation of a resumed run holds the rows of the uninterrupted one.
fn assert_same_contents(
    uninterrupted: &BTreeMap<&'static str, Vec<Vec<String>>>,
    resumed: &BTreeMap<&'static str, Vec<Vec<String>>>,
) {
    let catalog = Catalog::all_pipelines();
    let mut failures = Vec::new();
    for (name, expected) in uninterrupted {
        let columns: Vec<&str> = catalog.lookup(name).unwrap().1.columns.iter().map(|c| c.name).collect();
        let diff = support::multiset_diff(&columns, 1, expected, &resumed[name], "uninterrupted", "resumed", 10);
        if let Some(diff) = diff {
            failures.push(format!("{name}: {diff}"));
        }
    }
    assert!(failures.is_empty(), "{} relations differ:\n{}", failures.len(), failures.join("\n"));
}

/// Kafka sources on a data directory, killed with SIGKILL at random moments while
/// they read a backlog (slowly: one message per broker batch, 5 ms a round trip) and
/// restarted, end with exactly what one uninterrupted `--ephemeral` run reads from the
/// same topics, in every relation: no message applied twice, none skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_sources_resume_exactly_after_kill_9() {
    use diffmart::pipelines::retail::generator::RetailGenerator;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    let seed = seed("kafka_sources_resume_exactly_after_kill_9");
    let mut rng = StdRng::seed_from_u64(seed);
    let mock = rdkafka::mocking::MockCluster::new(1).expect("the mock cluster starts");
    for (topic, partitions) in RETAIL_TOPICS {
        mock.create_topic(topic, partitions, 1).expect("topic created");
    }
    let brokers = mock.bootstrap_servers();
    // One message per batch: the mock broker answers a fetch with one batch per
    // partition, so the backlog takes a while to read.
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("batch.num.messages", "1")
        .set("linger.ms", "0")
        .create()
        .expect("a producer");
    let mut messages = 0i64;
    for event in RetailGenerator::new(seed, 1_748_779_200_000_000).take(6000) {
        let Some((topic, key, json)) = diffmart::produce::encode_event(&event).unwrap() else { continue };
        loop {
            match producer.send(BaseRecord::to(topic).key(&key).payload(&json)) {
                Ok(()) => break,
                Err(_) => {
                    producer.poll(Duration::from_millis(20));
                }
            }
        }
        messages += 1;
    }
    producer.flush(Duration::from_secs(60)).expect("messages delivered");
    mock.broker_round_trip_time(-1, Duration::from_millis(5)).unwrap();

    let options = ["--no-generator", "--workers", "2", "--kafka-brokers", &brokers];
    let (_tmp, dir) = data_dir();
    let mut read_before = 0;
    for round in 1..=2 {
        let mut server = DiffmartProcess::start_on(&dir, &options);
        server.wait_ready(READY).await;
        let client = server.connect().await;
        let target = read_before + rng.random_range(messages / 8..=messages / 4);
        let deadline = Instant::now() + READY;
        loop {
            let read = kafka_read(&client).await;
            assert!(read >= read_before, "round {round}: {read} messages read, {read_before} before the kill");
            if read >= target {
                read_before = read;
                break;
            }
            assert!(Instant::now() < deadline, "round {round}: reading stalled at {read} of {messages} messages");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Not a wait for something: the moment of the crash.
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..=300))).await;
        server.kill9();
        println!("round {round}: killed after {read_before} or more of {messages} messages");
    }
    assert!(read_before < messages, "everything was read before the last kill: the test proves nothing");
    mock.broker_round_trip_time(-1, Duration::ZERO).unwrap();
    let mut server = DiffmartProcess::start_on(&dir, &options);
    server.wait_ready(READY).await;
    let resumed = contents_once_read(&server.connect().await, messages).await;
    drop(server);

    let mut reference = DiffmartProcess::start(&options);
    reference.wait_ready(READY).await;
    let uninterrupted = contents_once_read(&reference.connect().await, messages).await;
    drop(reference);

    assert!(!uninterrupted["purchases"].is_empty(), "no purchases were read");
    assert_same_contents(&uninterrupted, &resumed);
}

// ------------------------------------------------------------------------------------------
// Replay, in process
// ------------------------------------------------------------------------------------------

/// The generator's events of every pipeline, applied in small batches with some
/// neighbouring batches swapped, so events arrive late and out of order across logical
/// times (late casino transactions, retail events behind the clock): after a shutdown,
/// an engine started on the same data directory shows exactly what the first one
/// showed, in every relation. Replay must give each logged batch its own logical time:
/// merging batches changes which events count as late.
#[test]
fn replay_gives_every_relation_exactly_its_contents_with_events_out_of_order() {
    use diffmart::compute::ComputeConfig;
    use diffmart::engine::{DataDir, Engine, Update};
    use diffmart::sources::{GeneratorConfig, MergedEvents, nothing_held};
    use diffmart_dataflows::datum::RelationKind;

    let (_tmp, dir) = data_dir();
    let config = ComputeConfig { workers: 2, ..ComputeConfig::default() };
    let start = |dir: &Path| {
        // No checkpoint at the stop: the start replays the whole log.
        let data_dir = DataDir::open(dir, &Catalog::all_pipelines()).expect("the data directory opens");
        Engine::start_with(&config, Some(data_dir.with_checkpoint_at_stop(false))).expect("the engine starts")
    };
    let engine = start(&dir);
    let generator = GeneratorConfig { seed: 11, start: 1_748_779_200_000_000, rate: None, events: None };
    let simulations = diffmart::pipelines::simulations(&generator, &nothing_held);
    let update = |relation: &str, row| {
        let (id, spec) = engine.catalog().lookup(relation).expect("a generated relation exists");
        match spec.kind {
            RelationKind::Table { .. } => Update::insert_if_absent(id, row),
            _ => Update::insert(id, row),
        }
    };
    let bootstrap: Vec<Update> =
        simulations.iter().flat_map(|s| &s.bootstrap).map(|e| update(e.relation, e.row.clone())).collect();
    engine.apply_blocking(bootstrap).unwrap();
    let events: Vec<_> = MergedEvents::new(simulations.into_iter().map(|s| s.events)).take(12_000).collect();
    let mut batches: Vec<Vec<Update>> =
        events.chunks(60).map(|chunk| chunk.iter().map(|e| update(e.relation, e.row.clone())).collect()).collect();
    let mut rng = StdRng::seed_from_u64(11);
    for i in 1..batches.len() {
        if rng.random_bool(0.3) {
            batches.swap(i - 1, i);
        }
    }
    for batch in batches {
        engine.apply_blocking(batch).unwrap();
    }
    let before = engine_contents(&engine);
    assert!(before.values().filter(|rows| !rows.is_empty()).count() > 20, "most relations hold rows");
    engine.shut_down();
    drop(engine);

    let engine = start(&dir);
    let after = engine_contents(&engine);
    for (name, rows) in &before {
        assert!(
            after[name] == *rows,
            "{name} differs after the replay: {} rows before, {} after",
            rows.len(),
            after[name].len()
        );
    }
}
