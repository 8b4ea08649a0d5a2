//! Postgres CDC: mirrors upstream tables into diffmart's tables of the same
//! names by logical replication (`pgoutput`).
//!
//! - **Start**: the publication is created when missing; the replication slot is
//!   (re)created with an exported snapshot, the tables are copied inside that
//!   snapshot and loaded as one batch, and streaming starts at the slot's
//!   consistent point: every upstream transaction is either in the copy or in
//!   the stream, never both. A slot left by an earlier run diffmart has no record
//!   of (`--ephemeral`, a new data directory) is dropped and recreated.
//! - **Restart**: the snapshot's load and every applied transaction are logged with
//!   the stream's position (see [`Position`]) in the input log, in the same record
//!   as their changes. A restart on the same data directory recovers the mirror
//!   from the log and resumes streaming from the slot at that position, with no new
//!   snapshot; transactions the log already has are skipped like any resent ones.
//! - **Stream**: each upstream transaction becomes one request to the engine's
//!   write path ([`mirror::Transaction`]): upserts, patches and deletes by primary
//!   key, which the write path resolves against the table, so REPLICA IDENTITY
//!   DEFAULT (key only) and FULL both work. The commit's end LSN is acknowledged
//!   to the slot only once the batch is visible.
//! - **Bad values**: a row diffmart cannot read (a `NaN` numeric, an `infinity`
//!   timestamp, a value that breaks a NOT NULL or CHECK rule) is left out of its
//!   table, and an update's old row is still removed; the change is counted in
//!   `diffmart_sources` and kept in `diffmart_source_errors` (with its LSN), in the
//!   same batch as the rest of its transaction, and the stream goes on and
//!   confirms the LSN. The same holds for a snapshot's rows.
//! - **Faults**: on any other error (connection cut, PostgreSQL restarted, a
//!   table whose columns no longer fit) the source reports itself disconnected,
//!   waits with exponential backoff and resumes from the slot without a new
//!   snapshot. The slot resends from its confirmed position; transactions whose
//!   commit LSN is not after the last applied one are skipped, so nothing is
//!   applied twice. Only if the slot itself disappeared is the snapshot taken
//!   again: the tables are emptied and loaded in one step, so readers see the net difference.
//!
//! The source owns its tables ([`Engine::claim_relations`]): SQL writes to them are
//! refused and the generator leaves them alone.

pub mod mirror;
pub mod pgoutput;
mod refused;
pub mod status;
pub mod values;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use diffmart_dataflows::system::{SourceError, SourceStatus};
use pgwire_replication::{Lsn, ReplicationClient, ReplicationConfig, ReplicationEvent, TlsConfig};
use tokio::sync::watch;
use tokio_postgres::SimpleQueryMessage;

use self::mirror::{ColumnMap, MirroredTable, Transaction};
use self::pgoutput::{Message, OldTuple, RelationOid};
use self::refused::{Refused, RowRead, checked, checked_partial, values_preview};
pub use self::status::{CdcState, CdcStatus};
use crate::engine::{Engine, SourcePosition, SourcePositions, Update};
use crate::sources::status::{StatusBoard, StatusRelations, StreamErrors};

/// `kind` of the CDC source's rows in `diffmart_sources` and `diffmart_source_errors`.
pub const SOURCE_KIND: &str = "postgres-cdc";

/// The tables mirrored unless configured otherwise.
pub const DEFAULT_TABLES: &[&str] = &["public.product_inventory", "public.orders"];
pub const DEFAULT_PUBLICATION: &str = "diffmart_cdc";
pub const DEFAULT_SLOT: &str = "diffmart_cdc";

/// First wait after a failure; doubles up to [`MAX_BACKOFF`] and resets once streaming.
const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Rows fetched per round trip while copying the snapshot.
const SNAPSHOT_FETCH: usize = 10_000;
/// Session settings that make PostgreSQL print values the way [`values::parse`] reads them.
const SESSION_OPTIONS: &str = "-c TimeZone=UTC -c DateStyle=ISO -c extra_float_digits=3 -c IntervalStyle=postgres";

/// How to reach the upstream database and what to mirror.
#[derive(Clone, Debug)]
pub struct CdcConfig {
    /// `postgres://user[:password]@host[:port]/database` (or a libpq key=value string).
    pub url: String,
    /// Upstream tables, `schema.table` or `table` (schema `public`); each is mirrored
    /// into the diffmart table of the same name.
    pub tables: Vec<String>,
    pub publication: String,
    pub slot: String,
}

impl CdcConfig {
    /// The default tables, publication and slot.
    pub fn new(url: impl Into<String>) -> CdcConfig {
        CdcConfig {
            url: url.into(),
            tables: DEFAULT_TABLES.iter().map(|t| t.to_string()).collect(),
            publication: DEFAULT_PUBLICATION.into(),
            slot: DEFAULT_SLOT.into(),
        }
    }
}

/// A running CDC source.
pub struct CdcHandle {
    status: watch::Receiver<CdcStatus>,
    task: tokio::task::JoinHandle<()>,
}

impl CdcHandle {
    /// The source's status now.
    pub fn status(&self) -> CdcStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change (for `diffmart_sources`).
    pub fn watch(&self) -> watch::Receiver<CdcStatus> {
        self.status.clone()
    }

    /// Stops streaming. The slot stays (and keeps WAL) until dropped upstream.
    pub fn stop(self) {
        self.task.abort();
    }
}

/// Connection parameters, from the URL.
#[derive(Clone, Debug)]
struct Upstream {
    config: tokio_postgres::Config,
    /// Host name, or the socket directory (starting with `/`).
    host: String,
    port: u16,
    user: String,
    password: String,
    database: String,
}

impl Upstream {
    fn parse(url: &str) -> anyhow::Result<Upstream> {
        let config = tokio_postgres::Config::from_str(url).context("--cdc-url is not a PostgreSQL URL")?;
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            Some(tokio_postgres::config::Host::Unix(dir)) => dir.display().to_string(),
            None => bail!("--cdc-url names no host"),
        };
        let user = config.get_user().context("--cdc-url names no user")?.to_string();
        let password = config.get_password().map(|p| String::from_utf8_lossy(p).into_owned()).unwrap_or_default();
        let database = config.get_dbname().unwrap_or(&user).to_string();
        let port = config.get_ports().first().copied().unwrap_or(5432);
        Ok(Upstream { config, host, port, user, password, database })
    }

    /// `host:port/database`, without credentials.
    fn display(&self) -> String {
        format!("{}:{}/{}", self.host, self.port, self.database)
    }
}

/// Checks the configuration, claims the mirrored tables and starts the source on
/// `runtime`. Returns once the tables are claimed; connecting, the snapshot and
/// streaming happen in the background (see [`CdcHandle::status`]).
pub fn spawn(engine: Arc<Engine>, config: CdcConfig, runtime: &tokio::runtime::Handle) -> anyhow::Result<CdcHandle> {
    let upstream = Upstream::parse(&config.url)?;
    for (what, name) in [("--cdc-slot", &config.slot), ("--cdc-publication", &config.publication)] {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            bail!("{what} {name:?} must be 1 to 63 lowercase letters, digits or underscores");
        }
    }
    if config.tables.is_empty() {
        bail!("--cdc-tables names no table");
    }
    let mut tables = Vec::new();
    for qualified in &config.tables {
        let (schema, name) = qualified.split_once('.').unwrap_or(("public", qualified.as_str()));
        let (id, spec) = engine
            .catalog()
            .lookup(name)
            .with_context(|| format!("--cdc-tables: diffmart has no table \"{name}\" to mirror {qualified} into"))?;
        tables.push(MirroredTable::new(schema, name, id, spec).map_err(|e| anyhow!("--cdc-tables: {e}"))?);
    }
    let owner = format!("the CDC source of postgres://{}", upstream.display());
    let ids: Vec<_> = tables.iter().map(|t| t.id).collect();
    engine.claim_relations(&ids, &owner, "change the upstream table instead").map_err(|e| anyhow!(e))?;
    let status = CdcStatus::new(
        upstream.display(),
        config.slot.clone(),
        config.publication.clone(),
        tables.iter().map(|t| t.display()).collect(),
    );
    let position = Position::recovered(&engine.recovered_positions(), &config.slot);
    if let Some(position) = position {
        tracing::info!(
            slot = %config.slot,
            confirmed = %position.confirmed,
            last_commit = %position.last_commit,
            "CDC: resuming from the data directory's position, without a new snapshot"
        );
    }
    let (status_tx, status_rx) = watch::channel(status);
    let counts = Counts::recovered(&engine.recovered_positions(), &config.slot);
    let board = StatusBoard::new(StatusRelations::of(engine.catalog())?);
    let source = Source {
        engine,
        config,
        upstream,
        tables,
        status: status_tx,
        position,
        board,
        changes: counts.changes,
        errors: StreamErrors::resumed(counts.errors),
    };
    let task = runtime.spawn(source.run());
    Ok(CdcHandle { status: status_rx, task })
}

/// Where the stream stands.
#[derive(Clone, Copy, Debug)]
struct Position {
    /// Acknowledged to the slot: streaming resumes here.
    confirmed: Lsn,
    /// Commit LSN of the last transaction applied; resent ones up to it are skipped.
    last_commit: Lsn,
}

impl Position {
    /// The keys of a slot's position in the input log's source positions.
    fn keys(slot: &str) -> [String; 2] {
        [format!("cdc/{slot}/confirmed"), format!("cdc/{slot}/last_commit")]
    }

    /// The position logged last for `slot`, if the log has one.
    fn recovered(positions: &SourcePositions, slot: &str) -> Option<Position> {
        let [confirmed, last_commit] = Position::keys(slot);
        let lsn = |key: &str| positions.get(key).map(|&lsn| Lsn::from_u64(lsn as u64));
        Some(Position { confirmed: lsn(&confirmed)?, last_commit: lsn(&last_commit)? })
    }

    /// This position as logged with the batch that got the stream here.
    fn logged(&self, slot: &str, counts: Counts) -> Vec<SourcePosition> {
        let [confirmed, last_commit] = Position::keys(slot);
        let [changes, errors] = Counts::keys(slot);
        vec![
            (confirmed, self.confirmed.as_u64() as i64),
            (last_commit, self.last_commit.as_u64() as i64),
            (changes, counts.changes),
            (errors, counts.errors),
        ]
    }
}

/// What `diffmart_sources` counts for the slot, logged beside its position so the
/// counts go on after a restart.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    /// Row changes received (snapshot rows included), read or not.
    changes: i64,
    /// Row changes that could not be read (see `diffmart_source_errors`).
    errors: i64,
}

impl Counts {
    fn keys(slot: &str) -> [String; 2] {
        [format!("cdc/{slot}/changes"), format!("cdc/{slot}/errors")]
    }

    fn recovered(positions: &SourcePositions, slot: &str) -> Counts {
        let [changes, errors] = Counts::keys(slot);
        let count = |key: &str| positions.get(key).copied().unwrap_or(0);
        Counts { changes: count(&changes), errors: count(&errors) }
    }
}

struct Source {
    engine: Arc<Engine>,
    config: CdcConfig,
    upstream: Upstream,
    tables: Vec<MirroredTable>,
    status: watch::Sender<CdcStatus>,
    /// `None` until a snapshot is loaded (and again if the slot was lost).
    position: Option<Position>,
    /// The slot's `diffmart_sources` row as last written.
    board: StatusBoard,
    /// Row changes received so far (see [`Counts`]).
    changes: i64,
    errors: StreamErrors,
}

/// A transaction being received: its changes, each with its LSN.
struct Pending {
    /// Already applied before a reconnect: drop its changes.
    skip: bool,
    changes: Vec<(Lsn, Message)>,
}

impl Source {
    async fn run(mut self) {
        let mut backoff = MIN_BACKOFF;
        loop {
            let error = match self.session(&mut backoff).await {
                Ok(()) => anyhow!("the replication stream ended"),
                Err(e) => e,
            };
            let message = format!("{error:#}");
            tracing::warn!(upstream = %self.upstream.display(), "CDC: {message}; retrying in {backoff:?}");
            self.status.send_modify(|s| {
                s.state = CdcState::Disconnected;
                s.reconnects += 1;
                s.last_error = Some(message);
                s.last_error_at = Some(super::now_micros());
            });
            self.report_status().await;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn set_state(&self, state: CdcState) {
        self.status.send_modify(|s| s.state = state);
    }

    /// Counts a row that cannot be read and keeps it for `diffmart_source_errors`
    /// (written with the next batch).
    fn refuse(&mut self, lsn: Lsn, table: &MirroredTable, refused: Refused) {
        if self.errors.counted() == 0 {
            tracing::warn!(slot = %self.config.slot, %lsn, "CDC: a row left out (see diffmart_source_errors): {}", refused.error);
        }
        self.status.send_modify(|s| {
            s.rows_refused += 1;
            s.last_error = Some(refused.error.clone());
            s.last_error_at = Some(super::now_micros());
        });
        self.errors.push(SourceError {
            kind: SOURCE_KIND.into(),
            name: self.config.slot.clone(),
            partition: 0,
            error_number: 0,
            position: lsn.as_u64() as i64,
            relation: Some(table.name.clone()),
            error: refused.error,
            payload: Some(refused.values),
            error_time: super::now_micros(),
        });
    }

    /// The slot's `diffmart_sources` row at `position`, if it changed, into `updates`.
    fn status_row(&mut self, position: Option<Position>, updates: &mut Vec<Update>) {
        let status = self.status.borrow().clone();
        let row = SourceStatus {
            kind: SOURCE_KIND.into(),
            name: self.config.slot.clone(),
            partition: 0,
            relation: Some(self.tables.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(",")),
            reader: None,
            status: status.state.as_str().into(),
            position: position.map(|p| p.last_commit.as_u64() as i64),
            high_watermark: None,
            lag: None,
            messages: self.changes,
            errors: self.errors.counted(),
            last_error: status.last_error,
            updated_at: super::now_micros(),
        };
        self.board.set(row, updates);
    }

    /// Writes the slot's `diffmart_sources` row when it changed (a state change
    /// between batches).
    async fn report_status(&mut self) {
        let mut updates = Vec::new();
        self.status_row(self.position, &mut updates);
        if updates.is_empty() {
            return;
        }
        if let Err(e) = self.engine.apply(updates).await {
            tracing::warn!(slot = %self.config.slot, "CDC: cannot write its diffmart_sources row: {e}");
        }
    }

    /// One connection: (snapshot or resume, then) stream until something fails.
    async fn session(&mut self, backoff: &mut Duration) -> anyhow::Result<()> {
        self.set_state(CdcState::Connecting);
        let control = self.connect_control().await?;
        self.check_server(&control).await?;
        self.ensure_publication(&control).await?;
        let mut client = match self.position {
            None => self.snapshot(&control).await?,
            Some(position) => {
                let mut client = ReplicationClient::connect(self.replication_config(position.confirmed)).await?;
                if let Err(e) = client.wait_started().await {
                    if e.to_string().contains("SQLSTATE 42704") {
                        tracing::warn!(slot = %self.config.slot, "CDC: the replication slot is gone; taking a new snapshot");
                        self.position = None;
                    }
                    return Err(e).context("resuming replication");
                }
                client
            }
        };
        drop(control);
        self.set_state(CdcState::Streaming);
        self.report_status().await;
        tracing::info!(upstream = %self.upstream.display(), slot = %self.config.slot, "CDC: streaming");
        *backoff = MIN_BACKOFF;
        self.stream(&mut client).await
    }

    /// An ordinary connection for the publication, slot housekeeping and the snapshot copy.
    async fn connect_control(&self) -> anyhow::Result<tokio_postgres::Client> {
        let (client, connection) = self
            .upstream
            .config
            .connect(tokio_postgres::NoTls)
            .await
            .with_context(|| format!("connecting to {}", self.upstream.display()))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
            .batch_execute("SET TimeZone = 'UTC'; SET DateStyle = 'ISO'; SET extra_float_digits = 3")
            .await
            .context("setting up the session")?;
        Ok(client)
    }

    async fn check_server(&self, control: &tokio_postgres::Client) -> anyhow::Result<()> {
        let row = control.query_one("SELECT current_setting('wal_level')", &[]).await?;
        let wal_level: String = row.get(0);
        if wal_level != "logical" {
            bail!("the upstream server runs with wal_level={wal_level}; CDC needs wal_level=logical");
        }
        Ok(())
    }

    /// Creates the publication when missing; an existing one must publish every mirrored table.
    async fn ensure_publication(&self, control: &tokio_postgres::Client) -> anyhow::Result<()> {
        let publication = &self.config.publication;
        let exists = control.query_opt("SELECT 1 FROM pg_publication WHERE pubname = $1", &[publication]).await?;
        if exists.is_none() {
            let tables: Vec<String> = self.tables.iter().map(|t| t.quoted()).collect();
            let sql =
                format!("CREATE PUBLICATION {} FOR TABLE {}", mirror::quote_ident(publication), tables.join(", "));
            control.batch_execute(&sql).await.with_context(|| format!("creating the publication: {sql}"))?;
            tracing::info!(%publication, "CDC: created the publication");
            return Ok(());
        }
        let published = control
            .query(
                "SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1",
                &[publication],
            )
            .await?;
        let published: Vec<(String, String)> = published.iter().map(|r| (r.get(0), r.get(1))).collect();
        for table in &self.tables {
            if !published.iter().any(|(s, n)| *s == table.schema && *n == table.name) {
                bail!(
                    "publication {publication} exists but does not publish {}: \
                     ALTER PUBLICATION {publication} ADD TABLE {}, or choose another --cdc-publication",
                    table.display(),
                    table.quoted()
                );
            }
        }
        Ok(())
    }

    fn replication_config(&self, start: Lsn) -> ReplicationConfig {
        let u = &self.upstream;
        ReplicationConfig::new(
            u.host.clone(),
            u.user.clone(),
            u.password.clone(),
            u.database.clone(),
            self.config.slot.clone(),
            self.config.publication.as_str(),
        )
        .with_port(u.port)
        .with_tls(TlsConfig::disabled())
        .with_start_lsn(start)
        .with_options(SESSION_OPTIONS)
        .with_application_name("diffmart-cdc")
        .with_status_interval(Duration::from_millis(500))
    }

    /// Recreates the slot with an exported snapshot, copies the tables inside it,
    /// loads them, and starts streaming at the slot's consistent point.
    async fn snapshot(&mut self, control: &tokio_postgres::Client) -> anyhow::Result<ReplicationClient> {
        let slot = &self.config.slot;
        // What an earlier run left is useless to us: our tables start empty.
        let dropped = control
            .query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", &[slot])
            .await
            .with_context(|| format!("dropping the replication slot {slot} left by an earlier run"))?;
        if !dropped.is_empty() {
            tracing::info!(%slot, "CDC: dropped the replication slot of an earlier run");
        }
        let mut creator = ReplicationClient::connect_gated(self.replication_config(Lsn::ZERO)).await?;
        let created = creator
            .simple_query(&format!("CREATE_REPLICATION_SLOT {slot} LOGICAL pgoutput EXPORT_SNAPSHOT"))
            .await
            .with_context(|| format!("creating the replication slot {slot}"))?;
        let text = |i: usize| -> anyhow::Result<String> {
            let value = created.first().and_then(|row| row.get(i)).cloned().flatten();
            let value = value.context("CREATE_REPLICATION_SLOT answered without a consistent point and snapshot")?;
            Ok(String::from_utf8_lossy(&value).into_owned())
        };
        let consistent_point = Lsn::parse(&text(1)?).map_err(|e| anyhow!("consistent point: {e}"))?;
        let snapshot_name = text(2)?;
        tracing::info!(%slot, %consistent_point, "CDC: created the replication slot; copying the tables");
        self.set_state(CdcState::Snapshotting);

        // The exported snapshot lives as long as the creating session stays idle.
        control.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?;
        control
            .batch_execute(&format!("SET TRANSACTION SNAPSHOT '{}'", snapshot_name.replace('\'', "''")))
            .await
            .context("importing the slot's snapshot")?;
        let copied = self.copy_tables(control).await;
        control.batch_execute("COMMIT").await?;
        drop(creator);
        let copied = copied?;

        // What the tables held (an earlier snapshot's rows) is replaced in one step.
        let mut load = Transaction::default();
        let mut rows = 0u64;
        for (table, table_rows) in copied {
            load.truncate(&table);
            self.changes += table_rows.len() as i64;
            for row in table_rows {
                match row {
                    Ok(row) => {
                        load.insert(&table, row);
                        rows += 1;
                    }
                    Err(refused) => self.refuse(consistent_point, &table, refused),
                }
            }
        }
        let position = Position { confirmed: consistent_point, last_commit: Lsn::ZERO };
        self.apply(load.into_updates(), position).await.context("loading the snapshot")?;
        self.position = Some(position);
        self.status.send_modify(|s| {
            s.snapshot_rows += rows;
            s.confirmed_lsn = Some(consistent_point.to_string());
        });
        tracing::info!(rows, "CDC: snapshot loaded");

        let mut client = ReplicationClient::connect(self.replication_config(consistent_point)).await?;
        client.wait_started().await.context("starting replication")?;
        Ok(client)
    }

    /// Every mirrored table's rows, read in the current transaction; a row diffmart
    /// cannot read is an `Err` with why and its values.
    async fn copy_tables(
        &self,
        control: &tokio_postgres::Client,
    ) -> anyhow::Result<Vec<(MirroredTable, Vec<RowRead>)>> {
        let mut copied = Vec::new();
        for table in &self.tables {
            let columns = control
                .query(
                    "SELECT attname::text, atttypid::int8 FROM pg_attribute \
                     WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                    &[&table.quoted()],
                )
                .await
                .with_context(|| format!("reading the columns of {}", table.display()))?;
            let columns: Vec<(String, u32)> = columns.iter().map(|r| (r.get(0), r.get::<_, i64>(1) as u32)).collect();
            let map = ColumnMap::new(table, &columns).map_err(|e| anyhow!(e))?;
            let select: Vec<String> = map.selected_columns().iter().map(|c| mirror::quote_ident(c)).collect();
            control
                .batch_execute(&format!(
                    "DECLARE diffmart_snapshot NO SCROLL CURSOR FOR SELECT {} FROM {}",
                    select.join(", "),
                    table.quoted()
                ))
                .await?;
            let mut rows = Vec::new();
            loop {
                let fetched = control.simple_query(&format!("FETCH {SNAPSHOT_FETCH} FROM diffmart_snapshot")).await?;
                let before = rows.len();
                for message in &fetched {
                    if let SimpleQueryMessage::Row(row) = message {
                        let values: Vec<Option<&str>> = (0..row.len()).map(|i| row.get(i)).collect();
                        let read = map
                            .row_from_selected(&values)
                            .and_then(|row| checked(&map.table, row))
                            .map_err(|error| Refused { error, values: values_preview(values.iter().copied()) });
                        rows.push(read);
                    }
                }
                if rows.len() == before {
                    break;
                }
            }
            control.batch_execute("CLOSE diffmart_snapshot").await?;
            copied.push((table.clone(), rows));
        }
        Ok(copied)
    }

    /// Applies updates as one batch, logged with the position they bring the stream
    /// to, and waits until they are visible (and on disk, with a data directory).
    async fn apply(&mut self, mut updates: Vec<Update>, position: Position) -> anyhow::Result<()> {
        self.errors.write(self.board.relations(), &mut updates);
        // Nothing to log either: after a restart the slot resends it, and it is nothing again.
        if updates.is_empty() {
            return Ok(());
        }
        self.status_row(Some(position), &mut updates);
        let engine = self.engine.clone();
        let counts = Counts { changes: self.changes, errors: self.errors.counted() };
        let positions = position.logged(&self.config.slot, counts);
        tokio::task::spawn_blocking(move || engine.apply_blocking_from(updates, positions))
            .await?
            .map_err(|e| anyhow!(e))?;
        Ok(())
    }

    /// Receives transactions and applies each once committed.
    async fn stream(&mut self, client: &mut ReplicationClient) -> anyhow::Result<()> {
        let mut position = self.position.context("streaming needs a position")?;
        let mut relations: HashMap<RelationOid, Option<ColumnMap>> = HashMap::new();
        let mut pending: Option<Pending> = None;
        while let Some(event) = client.recv().await? {
            match event {
                ReplicationEvent::Begin { final_lsn, .. } => {
                    pending = Some(Pending { skip: final_lsn <= position.last_commit, changes: Vec::new() });
                }
                ReplicationEvent::XLogData { data, wal_start, .. } => {
                    let message = pgoutput::decode(&data).with_context(|| format!("at LSN {wal_start}"))?;
                    match message {
                        Message::Relation(relation) => {
                            let table =
                                self.tables.iter().find(|t| t.schema == relation.namespace && t.name == relation.name);
                            let map = match table {
                                Some(table) => Some(ColumnMap::for_relation(table, &relation).map_err(|e| anyhow!(e))?),
                                None => None,
                            };
                            relations.insert(relation.oid, map);
                        }
                        Message::Ignored(_) => {}
                        change => match &mut pending {
                            Some(p) if !p.skip => p.changes.push((wal_start, change)),
                            Some(_) => {}
                            None => bail!("a row change outside a transaction at LSN {wal_start}"),
                        },
                    }
                }
                ReplicationEvent::Commit { lsn, end_lsn, .. } => {
                    let transaction = pending.take().context("a commit without a begin")?;
                    if transaction.skip {
                        self.status.send_modify(|s| s.transactions_skipped += 1);
                    } else {
                        let applied = Position { confirmed: end_lsn.max(position.confirmed), last_commit: lsn };
                        let changes = self
                            .apply_transaction(&relations, transaction.changes, applied)
                            .await
                            .with_context(|| format!("applying the transaction committed at LSN {lsn}"))?;
                        position.last_commit = lsn;
                        self.status.send_modify(|s| {
                            s.transactions_applied += 1;
                            s.rows_applied += changes;
                            s.last_applied_lsn = Some(lsn.to_string());
                        });
                    }
                    self.confirm(client, &mut position, end_lsn);
                }
                // Between transactions everything the server sent is applied, so its
                // position can be confirmed: the slot then frees WAL that only held
                // changes of unpublished tables.
                ReplicationEvent::KeepAlive { wal_end, .. } if pending.is_none() => {
                    self.confirm(client, &mut position, wal_end);
                }
                ReplicationEvent::KeepAlive { .. } | ReplicationEvent::Message { .. } => {}
                ReplicationEvent::StoppedAt { .. } => break,
            }
        }
        Ok(())
    }

    fn confirm(&mut self, client: &ReplicationClient, position: &mut Position, lsn: Lsn) {
        if lsn > position.confirmed {
            position.confirmed = lsn;
            client.update_applied_lsn(lsn);
            self.status.send_modify(|s| s.confirmed_lsn = Some(lsn.to_string()));
        }
        self.position = Some(*position);
    }

    /// Turns a transaction's changes into one batch against the tables' current
    /// contents, applies it, and returns how many row changes it had. A row that
    /// cannot be read is left out (an update's old row still goes) and recorded.
    async fn apply_transaction(
        &mut self,
        relations: &HashMap<RelationOid, Option<ColumnMap>>,
        changes: Vec<(Lsn, Message)>,
        applied: Position,
    ) -> anyhow::Result<u64> {
        let map = |oid: RelationOid| -> anyhow::Result<Option<&ColumnMap>> {
            match relations.get(&oid) {
                Some(map) => Ok(map.as_ref()),
                None => bail!("a change to relation {oid} before its description"),
            }
        };
        let mut transaction = Transaction::default();
        let mut refused = Vec::new();
        for (lsn, change) in &changes {
            match change {
                Message::Insert { relation, new } => {
                    if let Some(map) = map(*relation)? {
                        match map.row(new).and_then(|row| checked(&map.table, row)) {
                            Ok(row) => transaction.insert(&map.table, row),
                            Err(error) => refused.push((*lsn, map.table.clone(), Refused::of(error, new))),
                        }
                    }
                }
                Message::Update { relation, old, new } => {
                    if let Some(map) = map(*relation)? {
                        // Without an old tuple the key did not change: the new row has it.
                        let key = match old {
                            Some(old) => map.key_of_old(old),
                            None => map.key_of_old(&OldTuple::Key(new.clone())),
                        };
                        let row = map.partial_row(new).and_then(|row| checked_partial(&map.table, row));
                        match (key, row) {
                            (Ok(key), Ok(row)) => transaction.update(&map.table, key, row),
                            // The old row goes: the table never keeps what upstream no longer has.
                            (Ok(key), Err(error)) => {
                                transaction.remove_old_row(&map.table, key);
                                refused.push((*lsn, map.table.clone(), Refused::of(error, new)));
                            }
                            (Err(error), _) => {
                                refused.push((*lsn, map.table.clone(), Refused::of(error, new)));
                            }
                        }
                    }
                }
                Message::Delete { relation, old } => {
                    if let Some(map) = map(*relation)? {
                        match map.key_of_old(old) {
                            Ok(key) => transaction.delete(&map.table, key),
                            Err(error) => refused.push((*lsn, map.table.clone(), Refused::of(error, old.values()))),
                        }
                    }
                }
                Message::Truncate { relations: truncated } => {
                    for oid in truncated {
                        if let Some(Some(map)) = relations.get(oid) {
                            transaction.truncate(&map.table);
                        }
                    }
                }
                Message::Relation(_) | Message::Ignored(_) => {}
            }
        }
        self.changes += (transaction.changes + refused.len() as u64) as i64;
        for (lsn, table, why) in refused {
            self.refuse(lsn, &table, why);
        }
        let count = transaction.changes;
        self.apply(transaction.into_updates(), applied).await?;
        Ok(count)
    }
}
