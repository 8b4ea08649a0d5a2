//! The read side: SELECT latency through the real pgwire + DataFusion path while
//! ingesting, and whether reads slow ingestion down.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio_postgres::NoTls;

use super::BenchOptions;
use super::open_loop::{self, OpenLoopResult, Verdict};
use super::process::BENCH_THREAD_PREFIX;
use super::stats::Latency;
use super::workload::{EVENT_TIME_START, Feed, Workload, load_closed_loop, start_engine};

/// A primary-key-style lookup of one product's row in a view.
pub const POINT_LOOKUP: &str =
    "SELECT product_id, product_name, total_orders, revenue_estimate FROM sales_profit WHERE product_id = $1";
/// Every row of the retail pipeline's widest view.
pub const FULL_SCAN: &str = "SELECT * FROM dynamic_pricing_enriched";

/// One query, run back to back by one client during the measured window.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct QueryResult {
    pub sql: String,
    pub queries: u64,
    /// Rows the last execution returned.
    pub rows: u64,
    pub latency_ms: Latency,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReadsResult {
    pub workload: Workload,
    pub workers: usize,
    pub offered_rate: f64,
    /// Event time loaded before measuring, in hours.
    pub prefill_hours: f64,
    /// Nice value of the server's client threads (`--client-nice`).
    pub client_nice: u8,
    /// Ingestion alone.
    pub ingest_only: OpenLoopResult,
    /// The same rate with both queries running back to back.
    pub ingest_with_reads: OpenLoopResult,
    pub point_lookup: QueryResult,
    pub full_scan: QueryResult,
    /// p99 freshness with reads / without.
    pub freshness_p99_ratio: f64,
    /// Reads made ingestion fall behind, or more than doubled its p99 freshness (+10 ms).
    pub reads_stall_ingestion: bool,
}

pub fn reads(options: &BenchOptions, workload: Workload, workers: usize, rate: f64) -> anyhow::Result<ReadsResult> {
    let engine = start_engine(options, workers, options.retention)?;
    let mut feed = Feed::new(workload, &engine, options.seed)?;
    feed.load_bootstrap(&engine)?;
    load_closed_loop(&engine, &mut feed, EVENT_TIME_START + options.read_prefill, u64::MAX)?;
    let prefill_hours = (feed.event_time - EVENT_TIME_START) as f64 / 3.6e9;

    // The server runs as it does in `diffmart` (at `--client-nice`); the clients get a
    // runtime of their own.
    let server = crate::client_runtime::client_runtime("diffmart-pgwire", Some(2), options.client_nice)?;
    let listener = server.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    server.spawn(crate::pgwire::serve(
        engine.clone(),
        listener,
        crate::pgwire::Security::loopback_trust(),
        Default::default(),
    ));
    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(format!("{BENCH_THREAD_PREFIX}client"))
        .enable_all()
        .build()?;

    let window = (rate * options.read_duration.as_secs_f64()).ceil() as usize;
    let events = feed.take(window)?;
    let ingest_only = open_loop::run(&engine, events, rate, Duration::ZERO, Verdict::default())?;

    let phase = Arc::new(AtomicU8::new(WARM_UP));
    let point = clients.spawn(query_loop(addr, POINT_LOOKUP, true, phase.clone()));
    let scan = clients.spawn(query_loop(addr, FULL_SCAN, false, phase.clone()));
    let events = feed.take(window)?;
    // Let both clients connect and run their first queries before the window opens.
    std::thread::sleep(Duration::from_millis(300));
    phase.store(MEASURING, Ordering::Release);
    let ingest_with_reads = open_loop::run(&engine, events, rate, Duration::ZERO, Verdict::default())?;
    phase.store(STOP, Ordering::Release);
    let point_lookup = clients.block_on(point).context("the point-lookup client panicked")??;
    let full_scan = clients.block_on(scan).context("the scan client panicked")??;
    anyhow::ensure!(point_lookup.queries > 0 && full_scan.queries > 0, "a client ran no query during the window");
    let freshness_p99_ratio = ingest_with_reads.freshness_ms.p99 / ingest_only.freshness_ms.p99.max(1e-3);
    let reads_stall_ingestion = (ingest_only.sustained && !ingest_with_reads.sustained)
        || ingest_with_reads.freshness_ms.p99 > 2.0 * ingest_only.freshness_ms.p99 + 10.0;
    server.shutdown_background();
    clients.shutdown_background();
    Ok(ReadsResult {
        workload,
        workers,
        offered_rate: rate,
        prefill_hours,
        client_nice: options.client_nice,
        ingest_only,
        ingest_with_reads,
        point_lookup,
        full_scan,
        freshness_p99_ratio,
        reads_stall_ingestion,
    })
}

const WARM_UP: u8 = 0;
const MEASURING: u8 = 1;
const STOP: u8 = 2;

/// Runs `sql` (prepared once) back to back until the phase is [`STOP`], timing the
/// queries that start while [`MEASURING`]; a point lookup cycles through the 20 retail products.
async fn query_loop(
    addr: std::net::SocketAddr,
    sql: &str,
    point: bool,
    phase: Arc<AtomicU8>,
) -> anyhow::Result<QueryResult> {
    let config = format!("host={} port={} user=root dbname=dev", addr.ip(), addr.port());
    let (client, connection) = tokio_postgres::connect(&config, NoTls).await.context("connecting to diffmart")?;
    tokio::spawn(connection);
    let statement = client.prepare(sql).await.with_context(|| format!("preparing {sql}"))?;
    let mut latencies = Vec::new();
    let mut rows = 0;
    let mut product = 0i32;
    loop {
        let measuring = match phase.load(Ordering::Acquire) {
            STOP => break,
            current => current == MEASURING,
        };
        product = product % 20 + 1;
        let started = Instant::now();
        let result =
            if point { client.query(&statement, &[&product]).await } else { client.query(&statement, &[]).await };
        let result = result.with_context(|| format!("running {sql}"))?;
        if measuring {
            latencies.push(started.elapsed());
        }
        rows = result.len() as u64;
    }
    Ok(QueryResult {
        sql: sql.to_string(),
        queries: latencies.len() as u64,
        rows,
        latency_ms: Latency::of_durations(&latencies),
    })
}
