//! What the CDC source is doing, for `diffmart_sources` and logs.

use diffmart_dataflows::datum::Micros;

/// The connection's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CdcState {
    /// Connecting, creating the publication or slot.
    Connecting,
    /// Copying the tables inside the slot's exported snapshot.
    Snapshotting,
    /// Streaming changes from the slot.
    Streaming,
    /// Lost the connection or failed; retrying after a backoff.
    Disconnected,
}

impl CdcState {
    pub fn as_str(self) -> &'static str {
        match self {
            CdcState::Connecting => "connecting",
            CdcState::Snapshotting => "snapshotting",
            CdcState::Streaming => "streaming",
            CdcState::Disconnected => "disconnected",
        }
    }
    pub fn is_connected(self) -> bool {
        matches!(self, CdcState::Snapshotting | CdcState::Streaming)
    }
}

/// A point-in-time view of the source; read it from `CdcHandle::status`.
#[derive(Clone, Debug)]
pub struct CdcStatus {
    /// The upstream server and database, without credentials (`host:port/db`).
    pub upstream: String,
    pub slot: String,
    pub publication: String,
    /// Mirrored tables, `schema.table`.
    pub tables: Vec<String>,
    pub state: CdcState,
    /// Commit LSN of the last transaction applied (PostgreSQL's `X/Y` form).
    pub last_applied_lsn: Option<String>,
    /// The position acknowledged to the slot (its `confirmed_flush_lsn` follows).
    pub confirmed_lsn: Option<String>,
    /// Rows loaded by the initial snapshot (and by any later re-snapshot).
    pub snapshot_rows: u64,
    pub transactions_applied: u64,
    /// Row changes applied from the stream: inserts, updates, deletes, truncated rows.
    pub rows_applied: u64,
    /// Row changes left out because diffmart cannot read them (see `diffmart_source_errors`).
    pub rows_refused: u64,
    /// Transactions received again after a reconnect and skipped (already applied).
    pub transactions_skipped: u64,
    pub reconnects: u64,
    pub last_error: Option<String>,
    /// When `last_error` happened, microseconds since the epoch.
    pub last_error_at: Option<Micros>,
}

impl CdcStatus {
    pub fn new(upstream: String, slot: String, publication: String, tables: Vec<String>) -> CdcStatus {
        CdcStatus {
            upstream,
            slot,
            publication,
            tables,
            state: CdcState::Connecting,
            last_applied_lsn: None,
            confirmed_lsn: None,
            snapshot_rows: 0,
            transactions_applied: 0,
            rows_applied: 0,
            rows_refused: 0,
            transactions_skipped: 0,
            reconnects: 0,
            last_error: None,
            last_error_at: None,
        }
    }
}
