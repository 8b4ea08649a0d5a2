//! The `diffmart` command: parses the command line and wires sources, compute,
//! the engine and the servers together (`src/main.rs` only sets the allocator and
//! calls [`main`]). It lives in the library so its code, which instantiates most of
//! the query layer's and the servers' generic code, is compiled once here rather
//! than again in the binary.

use std::process::ExitCode;
use std::sync::Arc;

use axum::http::HeaderName;
use clap::Parser;

use crate::cli::{Cli, Command, Options};
use crate::compute::{Compute, ComputeConfig};
use crate::engine::{Catalog, DataDir, Engine};
use crate::http::{AppState, HttpConfig};
use crate::pipelines::inventory::catalog;
use crate::sinks::kafka::{KafkaSink, KafkaSinks, PreparedSinks, SinkSettings};
use crate::sources::kafka::{KafkaConfig, KafkaSources};
use crate::sources::{self, GeneratorConfig, GeneratorSettings};
use diffmart_dataflows::datum::RelationSpec;

/// Runs the command line's command: the server, `produce` or `bench`.
pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Produce(options)) => crate::produce::run(options),
        Some(Command::Bench(options)) => crate::bench::run(*options),
        None => run(cli.server),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("diffmart: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(options: Options) -> anyhow::Result<()> {
    options.check().map_err(anyhow::Error::msg)?;
    let compute = ComputeConfig {
        workers: options.workers.into(),
        processes: options.processes.into(),
        process: options.process.into(),
        hostfile: options.hostfile.as_ref().map(|p| p.display().to_string()),
        pipelines: options.pipeline_config(),
        operator_profile: None,
        restore: None,
    };
    if compute.process != 0 {
        // Workers only: process 0 owns the inputs and serves clients.
        tracing::info!(process = compute.process, workers = compute.workers, "joining the cluster");
        let (outputs, _) = std::sync::mpsc::channel();
        Compute::start(&compute, outputs)?.join();
        return Ok(());
    }
    // Sources (CDC) run here; clients on a runtime of their own, at a lower priority.
    // Named as engine threads: a panic on them ends the process (engine::panics).
    let runtime = tokio::runtime::Builder::new_multi_thread().thread_name("diffmart-sources").enable_all().build()?;
    let clients = crate::client_runtime::client_runtime("diffmart-client", None, options.client_nice)?;
    let listener = clients
        .block_on(tokio::net::TcpListener::bind(options.pg_listen))
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", options.pg_listen))?;
    let http_listener = clients.block_on(crate::http::bind(options.http_listen))?;
    // The sinks learn where they got to before the engine starts: its replay hands
    // them the store at exactly that point.
    let sinks = prepare_sinks(&options)?;
    let security = pgwire_security(&options)?;
    let (engine, resumed_feed): (Arc<Engine>, _) = if options.ephemeral {
        (Engine::start(&compute)?, None)
    } else {
        let data_dir = DataDir::open(&options.data_dir, &Catalog::all_pipelines())?
            .with_checkpoints_every(options.checkpoint_every_mib.saturating_mul(1 << 20));
        tracing::info!("keeping what comes in in {}", options.data_dir.display());
        Engine::start_holding(&compute, Some(data_dir), sinks.as_ref().map(PreparedSinks::hold))?
    };
    let sinks = sinks.map(|sinks| sinks.run(&engine, resumed_feed)).transpose()?;
    // CDC claims its tables before the generator starts, so the generator skips them.
    let cdc = match options.cdc_config() {
        Some(config) => Some(sources::cdc::spawn(engine.clone(), config, runtime.handle())?),
        None => None,
    };
    // Kafka claims its topics' relations before the generator starts, too.
    let kafka = start_kafka_sources(&engine, &options, compute.workers)?;
    // The casino thresholds' first row, unless the table holds one (a data directory's).
    crate::pipelines::casino::settings::write_initial_row(&engine, options.pipeline_config().casino.thresholds)?;
    let settings = if options.no_generator {
        None
    } else {
        let catalog = options.catalog.as_deref().map(catalog::catalog_checksum).transpose()?;
        Some(GeneratorSettings::settle(engine.data_dir(), options.generator_seed, options.generator_start, catalog)?)
    };
    let start = match &settings {
        Some(settings) => settings.start,
        None => options.generator_start.unwrap_or_else(sources::now_micros),
    };
    // The catalog goes in before the generator starts, which then orders from it.
    let catalog = match &options.catalog {
        Some(path) => catalog::load_catalog(&engine, path, start)?,
        None => Vec::new(),
    };
    let mut http = axum::Router::new();
    let mut generator_control = None;
    if let Some(settings) = settings {
        let config = GeneratorConfig {
            seed: settings.seed,
            start,
            rate: options.generator_rate,
            events: options.generator_events,
        };
        let held = |spec: &RelationSpec| catalog::held_rows(&catalog, spec);
        let simulations = crate::pipelines::simulations(&config, &held);
        let generator = sources::spawn_generator(engine.clone(), config, simulations)?;
        generator_control = Some(generator.control.clone());
        http = http.merge(crate::http::generator::routes(generator.control));
    }
    tracing::info!(
        "serving Postgres clients on {} (psql -h {} -p {} -d dev -U root)",
        options.pg_listen,
        options.pg_listen.ip(),
        options.pg_listen.port()
    );
    tracing::info!(
        "serving HTTP on http://{} (the dashboard at /; /price/PA, /ws/prices, /metrics)",
        options.http_listen
    );
    let http_config = HttpConfig {
        admin_api_key: options.admin_api_key.clone(),
        api_key_header: HeaderName::from_bytes(options.api_key_header.as_bytes())?,
        limits: options.http_limits.limits(),
    };
    if http_config.admin_api_key.is_none() {
        tracing::warn!(
            "no admin API key (--admin-api-key or ADMIN_API_KEY): the HTTP override, history and generator control routes refuse every request"
        );
    }
    // The dashboard logs roles in with pgwire's passwords.
    let http = http.merge(crate::http::dashboard::routes(security.roles.clone(), &http_config.limits.websocket));
    let http_state = AppState::new(engine.clone(), &http_config);
    let pgwire = clients.spawn(crate::pgwire::serve(engine.clone(), listener, security, options.sql_limits()));
    let http_server = clients.spawn(crate::http::serve(http_listener, http_state, crate::pipelines::routes(), http));
    let (pgwire_abort, http_abort) = (pgwire.abort_handle(), http_server.abort_handle());
    let served = |joined: Result<anyhow::Result<()>, tokio::task::JoinError>| joined.unwrap_or_else(|e| Err(e.into()));
    let result = runtime.block_on(async {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            joined = pgwire => served(joined),
            joined = http_server => served(joined),
            why = engine.failure() => Err(anyhow::anyhow!("stopping: {why}")),
            why = sinks_failure(sinks.as_ref()) => Err(anyhow::anyhow!("stopping: {why}")),
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("interrupted (SIGINT), shutting down");
                Ok(())
            }
            _ = terminate.recv() => {
                tracing::info!("terminated (SIGTERM), shutting down");
                Ok(())
            }
        }
    });
    // Stop taking work in: connections, then the sources (Kafka readers hand over
    // what they have read, with its offsets), then ingest, which logs and syncs
    // what it took. Writes handed over before are answered; later ones are refused.
    pgwire_abort.abort();
    http_abort.abort();
    if let Some(control) = generator_control {
        control.stop();
    }
    drop(kafka);
    drop(cdc);
    // What the sinks have written is committed; the rest they write after a restart.
    drop(sinks);
    engine.shut_down();
    let answered = clients.block_on(async {
        let answered = tokio::time::timeout(SHUTDOWN_GRACE, engine.writes_answered()).await.is_ok();
        // The answers' last bytes leave on the sessions' tasks.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        answered
    });
    if !answered {
        tracing::warn!("writes still unanswered after {SHUTDOWN_GRACE:?}; they are on disk, their answers are lost");
    }
    clients.shutdown_background();
    runtime.shutdown_background();
    if result.is_ok() {
        tracing::info!("shut down");
    }
    result
}

/// How long a shutdown waits for writes in flight to be answered.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Kafka sources, when `--kafka-brokers` is given.
/// Roles (kept beside the input log unless --ephemeral), the root password and TLS.
fn pgwire_security(options: &Options) -> anyhow::Result<crate::pgwire::Security> {
    let data_dir = (!options.ephemeral).then_some(options.data_dir.as_path());
    let roles = crate::pgwire::roles::Roles::open(data_dir, options.root_password.as_deref())?;
    if !roles.passwords_required() {
        tracing::warn!(
            "no root password (--root-password or DIFFMART_ROOT_PASSWORD): Postgres clients log in without one"
        );
    }
    let tls = match (&options.tls_cert, &options.tls_key) {
        (Some(certificate), Some(key)) => Some(crate::pgwire::tls::Tls::load(certificate, key)?),
        _ => None,
    };
    Ok(crate::pgwire::Security { roles: Arc::new(roles), tls })
}

fn start_kafka_sources(
    engine: &Arc<Engine>,
    options: &Options,
    workers: usize,
) -> anyhow::Result<Option<KafkaSources>> {
    let Some(brokers) = &options.kafka_brokers else { return Ok(None) };
    let config = KafkaConfig {
        brokers: brokers.clone(),
        topic_prefix: options.kafka_topic_prefix.clone(),
        start: options.kafka_start,
        group_id: options.kafka_group_id.clone(),
        readers: workers,
        properties: options.kafka_properties.clone(),
        max_event_skew: options.max_event_skew,
    };
    Ok(Some(KafkaSources::start(engine, config, crate::pipelines::kafka_sources())?))
}

/// The Kafka sinks (the built-in ones and `--kafka-sink`s), when `--kafka-brokers` is
/// given, connected and told where they got to; they resume only with a data directory.
fn prepare_sinks(options: &Options) -> anyhow::Result<Option<PreparedSinks>> {
    let Some(brokers) = &options.kafka_brokers else { return Ok(None) };
    let catalog = Catalog::all_pipelines();
    let mut sinks = crate::pipelines::kafka_sinks(&options.kafka_topic_prefix);
    for (relation, topic) in &options.kafka_sinks {
        let spec = catalog
            .lookup(relation)
            .map(|(_, spec)| spec)
            .ok_or_else(|| anyhow::anyhow!("--kafka-sink: no relation named {relation}"))?;
        sinks.push(KafkaSink::changes(spec, topic));
    }
    if sinks.is_empty() {
        return Ok(None);
    }
    let settings = SinkSettings {
        transactional_id: options.kafka_sink_transactional_id.clone(),
        progress_topic: (!options.ephemeral).then(|| options.kafka_sink_progress_topic()),
    };
    Ok(Some(KafkaSinks::prepare(&catalog, brokers, &options.kafka_properties, sinks, settings)?))
}

/// Why the sinks stopped for good; never, without sinks.
async fn sinks_failure(sinks: Option<&KafkaSinks>) -> String {
    match sinks {
        Some(sinks) => sinks.failure().await,
        None => std::future::pending().await,
    }
}
