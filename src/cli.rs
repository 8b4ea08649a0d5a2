//! Command-line options.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::builder::TypedValueParser as _;
use clap::{ArgAction, Args, Parser, Subcommand};
use diffmart_dataflows::PipelineConfig;
use diffmart_dataflows::casino::{CasinoConfig, CasinoSettings, Thresholds};
use diffmart_dataflows::datum::{Micros, Record, validate_row};
use rust_decimal::Decimal;

use crate::arg_values::{parse_duration, parse_key_value};
use crate::json::parse_timestamp;
use crate::produce::ProduceOptions;
use crate::sinks::kafka::parse_sink_option;
use crate::sources::kafka::StartFrom;

/// diffmart keeps retail, e-commerce and casino materialized views up to date
/// incrementally and serves them over the Postgres wire protocol.
///
/// With no options it runs the embedded event generator, so
/// `psql -h localhost -p 4566 -d dev -U root` has live data to query.
#[derive(Debug, Parser)]
#[command(name = "diffmart", version, disable_help_flag = true, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Without a command: run the server.
    #[command(flatten)]
    pub server: Options,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write every demo's events to its Kafka topics (and the retail orders to
    /// PostgreSQL with --cdc-url), in the original producers' formats.
    Produce(ProduceOptions),
    /// Measure the engine end to end on the generator's events (freshness, highest
    /// sustained rate, cost versus history, deltas, reads); see README "Benchmarks".
    Bench(Box<crate::bench::BenchOptions>),
}

/// The server's options.
#[derive(Debug, Args)]
pub struct Options {
    /// Address for Postgres clients.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:4566")]
    pub pg_listen: SocketAddr,

    /// Password of the built-in superuser `root`. With one, every Postgres client
    /// logs in with SCRAM-SHA-256; without one, the server trusts the role a client
    /// names and only listens on a loopback address (see --insecure).
    #[arg(long, value_name = "PASSWORD", env = "DIFFMART_ROOT_PASSWORD", hide_env_values = true)]
    pub root_password: Option<String>,

    /// Listen on a non-loopback --pg-listen address without a root password,
    /// trusting every client that reaches the port.
    #[arg(long)]
    pub insecure: bool,

    /// PEM certificate chain for TLS with Postgres clients (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Address of the HTTP API (prices, overrides, history, /ws/prices, /metrics,
    /// generator control).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub http_listen: SocketAddr,

    /// Admin API key for the HTTP API's protected routes (overrides, history, generator
    /// control); without one they refuse every request.
    #[arg(long, value_name = "KEY", env = "ADMIN_API_KEY", hide_env_values = true)]
    pub admin_api_key: Option<String>,

    /// Header that carries the admin API key.
    #[arg(long, value_name = "NAME", env = "API_KEY_HEADER", default_value = "X-API-Key")]
    pub api_key_header: String,

    #[command(flatten)]
    pub http_limits: HttpLimitOptions,

    /// Nice value of the threads that serve clients (pgwire and HTTP: parsing,
    /// planning and answering queries). Above 0, a machine short of cores runs the
    /// workers, the store and the sources first, so reads do not slow ingestion
    /// down; 0 gives clients the same priority as ingestion.
    #[arg(long, value_name = "N", default_value_t = crate::client_runtime::DEFAULT_CLIENT_NICE, value_parser = clap::value_parser!(u8).range(0..=19))]
    pub client_nice: u8,

    /// Most Postgres clients served at once; the next one is refused with SQLSTATE
    /// 53300 (too_many_connections), as PostgreSQL refuses it. Cancel requests still
    /// get through.
    #[arg(long, value_name = "N", default_value_t = crate::pgwire::limits::DEFAULT_MAX_CONNECTIONS, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Longest a SQL statement runs before it is stopped with SQLSTATE 57014
    /// (query_canceled): e.g. 30s, 500ms, 5min; 0 for none. A session changes its own
    /// with `SET statement_timeout`.
    #[arg(long, value_name = "DURATION", default_value = "5min", value_parser = parse_statement_timeout)]
    pub statement_timeout: std::time::Duration,

    /// Memory (MiB) DataFusion's operators (sorts, aggregations, joins) may hold for
    /// one SQL statement; past it the statement fails with SQLSTATE 53200
    /// (out_of_memory). 0 for no limit.
    #[arg(long, value_name = "MIB", default_value_t = crate::pgwire::limits::DEFAULT_QUERY_MEMORY_MIB)]
    pub query_memory_limit: u64,

    /// Most rows one INSERT writes; a larger one fails with SQLSTATE 54000
    /// (program_limit_exceeded) and writes nothing.
    #[arg(long, value_name = "N", default_value_t = crate::pgwire::limits::DEFAULT_MAX_WRITE_ROWS)]
    pub max_write_rows: u64,

    /// Directory that keeps what the server has taken in (the input log and source
    /// positions), so a restart continues where it stopped. One server at a time.
    #[arg(long, value_name = "DIR", default_value = "diffmart-data", env = "DIFFMART_DATA_DIR")]
    pub data_dir: PathBuf,

    /// Keep nothing on disk: every start begins empty (tests, benchmarks, demos).
    #[arg(long, conflicts_with = "data_dir")]
    pub ephemeral: bool,

    /// Checkpoint the state once this much input log (MiB) has been written since the
    /// last checkpoint (and at least the last checkpoint's size); the log a checkpoint
    /// covers is deleted, so restart time and disk use follow the retained state.
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    pub checkpoint_every_mib: u64,

    /// Timely worker threads in this process.
    #[arg(short = 'w', long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub workers: u16,

    /// Number of processes in the timely cluster (timely's -n).
    #[arg(short = 'n', long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub processes: u16,

    /// This process's index in the cluster, 0-based (timely's -p). Process 0 serves clients.
    #[arg(short = 'p', long, value_name = "I", default_value_t = 0)]
    pub process: u16,

    /// Timely hostfile: one host:port per line, one line per process (timely's -h).
    #[arg(short = 'h', long, value_name = "FILE")]
    pub hostfile: Option<PathBuf>,

    /// Generator events per wall-clock second [default: the demos' natural rates,
    /// so event time follows the wall clock]. Changeable at run time over HTTP.
    #[arg(long, value_name = "R")]
    pub generator_rate: Option<f64>,

    /// Event time at which the generator's simulated clock starts, e.g.
    /// "2025-06-01 12:00:00" (UTC) or RFC 3339 [default: now].
    #[arg(long, value_name = "TIMESTAMP", value_parser = parse_timestamp)]
    pub generator_start: Option<Micros>,

    /// Seed of the generator's random choices: same seed, start and count, same events
    /// [default: 1]. A data directory keeps the seed and start it first ran with.
    #[arg(long, value_name = "N")]
    pub generator_seed: Option<u64>,

    /// Stop the generator after N events.
    #[arg(long, value_name = "N")]
    pub generator_events: Option<u64>,

    /// Event time that source relations (web_clicks, purchases, …) and windowed or
    /// append-only view state keep behind the newest event, e.g. 24h, 90m, 2d.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
    pub retention: Micros,

    /// Kafka sources refuse an event whose event time is more than this ahead of the
    /// newest event its relation has taken (into diffmart_source_errors), so one
    /// far-future event cannot expire a source's history, e.g. 1h, 30m.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub max_event_skew: Micros,

    /// Casino: tumbling window of member_daily_summary (and the views built on it), e.g. 5m or 1d.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub casino_window: Micros,

    /// Casino: hotel_room_offers needs a window's total_spend at or above this. The
    /// first value of casino_settings.hotel_threshold (a data directory keeps the
    /// table's row, changed at run time or not; UPDATE it to change the threshold).
    #[arg(long, value_name = "AMOUNT", default_value = "5000")]
    pub hotel_threshold: Decimal,

    /// Casino: drink_offers needs a window's net loss at least this large. The first
    /// value of casino_settings.drink_threshold (as --hotel-threshold).
    #[arg(long, value_name = "AMOUNT", default_value = "1000")]
    pub drink_threshold: Decimal,

    /// Do not run the embedded generator (tables start empty).
    #[arg(long)]
    pub no_generator: bool,

    /// Inventory: load this catalog into product_updates at start-up (a JSON array of
    /// products, like the demo's initial-products.json); the generator then orders from
    /// it instead of its own 200-product catalog.
    #[arg(long, value_name = "FILE")]
    pub catalog: Option<PathBuf>,

    /// Read the demo's Kafka topics (web_clicks, competitor_prices, purchases,
    /// restocks, …) from these brokers. Their relations are then the topics' alone:
    /// the embedded generator keeps feeding everything else.
    #[arg(long, value_name = "HOST:PORT[,…]")]
    pub kafka_brokers: Option<String>,

    /// Prefix of every Kafka topic name (sources and built-in sinks).
    #[arg(long, value_name = "PREFIX", default_value = "")]
    pub kafka_topic_prefix: String,

    /// Where reading Kafka starts: all history, or only messages written after start-up.
    /// Partitions read before (on the same --data-dir) resume where they stopped.
    #[arg(long, value_name = "WHERE", value_enum, default_value = "earliest")]
    pub kafka_start: StartFrom,

    /// Consumer group id diffmart's Kafka consumers identify with (partitions are
    /// assigned by diffmart; offsets are not committed).
    #[arg(long, value_name = "ID", default_value = "diffmart")]
    pub kafka_group_id: String,

    /// Write a relation's changes to a Kafka topic as JSON: its columns plus "op"
    /// (insert/delete) and "diff" (repeatable).
    #[arg(long = "kafka-sink", value_name = "RELATION=TOPIC", value_parser = parse_sink_option)]
    pub kafka_sinks: Vec<(String, String)>,

    /// The Kafka sinks' transactional.id: one per server (another producer with the
    /// same id is fenced off). Their committed upper is kept under it in the progress topic.
    #[arg(long, value_name = "ID", default_value = "diffmart-sink")]
    pub kafka_sink_transactional_id: String,

    /// The topic where each sink transaction records the logical time it delivered up
    /// to, read at start-up to resume there (default: <prefix>diffmart-sink-progress).
    #[arg(long, value_name = "TOPIC")]
    pub kafka_sink_progress_topic: Option<String>,

    /// Extra librdkafka property for Kafka sources and sinks, e.g.
    /// security.protocol=SSL (repeatable; overrides diffmart's settings).
    #[arg(long = "kafka-property", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub kafka_properties: Vec<(String, String)>,

    /// Mirror PostgreSQL tables by logical replication (pgoutput), e.g.
    /// postgres://user:password@host:5432/db. The upstream needs wal_level=logical;
    /// the mirrored tables then refuse SQL writes and the generator leaves them alone.
    #[arg(long, value_name = "URL", env = "DIFFMART_CDC_URL")]
    pub cdc_url: Option<String>,

    /// Upstream tables CDC mirrors (comma-separated, `schema.table`), each into the
    /// diffmart table of the same name.
    #[arg(
        long,
        value_name = "TABLES",
        value_delimiter = ',',
        default_value = "public.product_inventory,public.orders"
    )]
    pub cdc_tables: Vec<String>,

    /// Publication CDC reads (created for the tables when missing).
    #[arg(long, value_name = "NAME", default_value = crate::sources::cdc::DEFAULT_PUBLICATION)]
    pub cdc_publication: String,

    /// Replication slot CDC creates and streams from. A restart on the same --data-dir
    /// resumes from it without a new snapshot; otherwise an existing one is dropped
    /// and recreated.
    #[arg(long, value_name = "NAME", default_value = crate::sources::cdc::DEFAULT_SLOT)]
    pub cdc_slot: String,

    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
}

/// What one HTTP or WebSocket client may ask of the server (README, "HTTP API").
#[derive(Debug, Args)]
pub struct HttpLimitOptions {
    /// Largest HTTP request body, in bytes; larger ones get 413.
    #[arg(long, value_name = "BYTES", default_value_t = crate::http::limits::DEFAULT_MAX_BODY_BYTES, value_parser = clap::value_parser!(u64).range(1..).map(|n| n as usize))]
    pub http_max_body_bytes: usize,

    /// Time to answer an HTTP request (body included); slower ones get 408.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub http_request_timeout: Micros,

    /// WebSocket clients streaming at once; more are refused with 503.
    #[arg(long, value_name = "N", default_value_t = crate::http::limits::DEFAULT_WS_MAX_CLIENTS, value_parser = clap::value_parser!(u64).range(1..).map(|n| n as usize))]
    pub ws_max_clients: usize,

    /// Largest message a WebSocket client may send, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = crate::http::limits::DEFAULT_WS_MAX_MESSAGE_BYTES, value_parser = clap::value_parser!(u64).range(1..).map(|n| n as usize))]
    pub ws_max_message_bytes: usize,

    /// A WebSocket client is pinged every third of this, and closed when nothing
    /// (message or pong) is heard from it for this long, or a message waits this long
    /// for it to take it.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub ws_idle_timeout: Micros,

    /// Changes a WebSocket client may fall behind the store; past it it is closed
    /// (code 1008, "client too slow"), rather than buffered for.
    #[arg(long, value_name = "N", default_value_t = crate::http::limits::DEFAULT_WS_MAX_PENDING_CHANGES, value_parser = clap::value_parser!(u64).range(1..).map(|n| n as usize))]
    pub ws_max_pending_changes: usize,
}

impl HttpLimitOptions {
    pub fn limits(&self) -> crate::http::HttpLimits {
        let duration = |micros: Micros| std::time::Duration::from_micros(micros as u64);
        crate::http::HttpLimits {
            max_body_bytes: self.http_max_body_bytes,
            request_timeout: duration(self.http_request_timeout),
            websocket: crate::http::limits::WebSocketLimits {
                max_clients: self.ws_max_clients,
                max_message_bytes: self.ws_max_message_bytes,
                idle_timeout: duration(self.ws_idle_timeout),
                max_pending_changes: self.ws_max_pending_changes,
            },
        }
    }
}

fn parse_statement_timeout(text: &str) -> Result<std::time::Duration, String> {
    crate::pgwire::limits::parse_timeout(text).map(Option::unwrap_or_default)
}

impl Options {
    /// The Postgres front end's limits, from the flags above.
    pub fn sql_limits(&self) -> crate::pgwire::limits::SqlLimits {
        crate::pgwire::limits::SqlLimits {
            max_connections: self.max_connections as usize,
            statement_timeout: (!self.statement_timeout.is_zero()).then_some(self.statement_timeout),
            query_memory_limit: (self.query_memory_limit > 0).then_some((self.query_memory_limit << 20) as usize),
            max_write_rows: self.max_write_rows,
        }
    }

    pub fn check(&self) -> Result<(), String> {
        if self.process >= self.processes {
            return Err(format!(
                "--process {} is out of range for a cluster of {} processes",
                self.process, self.processes
            ));
        }
        if self.processes > 1 && self.hostfile.is_none() {
            return Err("a cluster of several processes needs a hostfile (-h FILE)".into());
        }
        if let Some(rate) = self.generator_rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err(format!("--generator-rate must be a positive number, got {rate}"));
        }
        if self.casino_window <= 0 {
            return Err("--casino-window must be longer than zero".into());
        }
        if self.root_password.as_deref().is_some_and(str::is_empty) {
            return Err("--root-password (DIFFMART_ROOT_PASSWORD) must not be empty".into());
        }
        if self.root_password.is_none() && !self.pg_listen.ip().is_loopback() && !self.insecure {
            return Err(format!(
                "refusing to serve Postgres clients on {} without a password: set --root-password \
                 (DIFFMART_ROOT_PASSWORD), listen on a loopback address, or pass --insecure to trust \
                 every client that reaches the port",
                self.pg_listen
            ));
        }
        if self.admin_api_key.as_deref().is_some_and(|k| k.trim().is_empty()) {
            return Err("--admin-api-key (ADMIN_API_KEY) must not be empty".into());
        }
        if axum::http::HeaderName::from_bytes(self.api_key_header.as_bytes()).is_err() {
            return Err(format!("--api-key-header {:?} is not a valid HTTP header name", self.api_key_header));
        }
        if self.kafka_sink_transactional_id.trim().is_empty() {
            return Err("--kafka-sink-transactional-id must not be empty".into());
        }
        if !self.kafka_sinks.is_empty() && self.kafka_brokers.is_none() {
            return Err("--kafka-sink needs --kafka-brokers".into());
        }
        // The flags become casino_settings' row: it must take them (its errors name the column).
        let thresholds = Thresholds { hotel: self.hotel_threshold, drink: self.drink_threshold };
        if let Err(e) = validate_row(CasinoSettings::spec(), &CasinoSettings::of(thresholds).into_row()) {
            return Err(format!("--hotel-threshold / --drink-threshold: {e}"));
        }
        Ok(())
    }

    /// Where the Kafka sinks record what they delivered.
    pub fn kafka_sink_progress_topic(&self) -> String {
        match &self.kafka_sink_progress_topic {
            Some(topic) => topic.clone(),
            None => format!("{}diffmart-sink-progress", self.kafka_topic_prefix),
        }
    }

    /// The CDC source's configuration, when `--cdc-url` is given.
    pub fn cdc_config(&self) -> Option<crate::sources::cdc::CdcConfig> {
        self.cdc_url.as_ref().map(|url| crate::sources::cdc::CdcConfig {
            url: url.clone(),
            tables: self.cdc_tables.iter().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect(),
            publication: self.cdc_publication.clone(),
            slot: self.cdc_slot.clone(),
        })
    }

    /// The pipelines' launch options.
    pub fn pipeline_config(&self) -> PipelineConfig {
        PipelineConfig {
            retention: self.retention,
            casino: CasinoConfig {
                window: self.casino_window,
                thresholds: Thresholds { hotel: self.hotel_threshold, drink: self.drink_threshold },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Cli, Command};
    use clap::Parser;

    #[test]
    fn the_server_is_the_default_and_produce_a_subcommand() {
        let cli = Cli::try_parse_from(["diffmart", "-w", "2", "--kafka-brokers", "k:9092"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.server.workers, 2);
        assert_eq!(cli.server.kafka_brokers.as_deref(), Some("k:9092"));
        let cli = Cli::try_parse_from(["diffmart", "produce", "--kafka-brokers", "k:9092", "--events", "10"]).unwrap();
        match cli.command {
            Some(Command::Produce(options)) => assert_eq!(options.events, Some(10)),
            _ => panic!("produce not parsed"),
        }
        assert!(Cli::try_parse_from(["diffmart", "--kafka-sink", "nope"]).is_err());
        let help = Cli::try_parse_from(["diffmart", "produce", "--help"]).unwrap_err();
        assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
        let help = Cli::try_parse_from(["diffmart", "bench", "--help"]).unwrap_err();
        assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
    }

    #[test]
    fn the_data_directory_is_the_default_and_ephemeral_excludes_it() {
        let cli = Cli::try_parse_from(["diffmart"]).unwrap();
        assert_eq!(cli.server.data_dir, std::path::Path::new("diffmart-data"));
        assert!(!cli.server.ephemeral);
        let cli = Cli::try_parse_from(["diffmart", "--ephemeral"]).unwrap();
        assert!(cli.server.ephemeral);
        let both = Cli::try_parse_from(["diffmart", "--ephemeral", "--data-dir", "d"]).unwrap_err();
        assert_eq!(both.kind(), clap::error::ErrorKind::ArgumentConflict);
    }
}
