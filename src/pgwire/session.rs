//! Which snapshot a statement reads.
//!
//! Every SELECT reads one snapshot, so all views and tables it touches are at the
//! same logical time. Inside BEGIN … COMMIT the first statement pins a snapshot
//! and the rest of the transaction reads it. After a write, the connection moves
//! to a snapshot that contains it: a client always reads its own writes.

use std::sync::{Arc, Mutex};

use crate::engine::{Engine, Snapshot};

tokio::task_local! {
    /// The snapshot of the statement(s) being executed on this task.
    static STATEMENT_SNAPSHOT: Arc<Mutex<Arc<Snapshot>>>;
}

/// The snapshot pinned by an open transaction, kept with the connection.
#[derive(Default)]
pub struct PinnedSnapshot(Mutex<Option<Arc<Snapshot>>>);

impl PinnedSnapshot {
    /// The snapshot for the next statement: a fresh one outside a transaction,
    /// the pinned one (pinning it now if needed) inside one.
    pub fn for_statement(&self, engine: &Engine, in_transaction: bool) -> Arc<Snapshot> {
        let mut pinned = self.0.lock().unwrap();
        if !in_transaction {
            *pinned = None;
            return engine.snapshot();
        }
        pinned.get_or_insert_with(|| engine.snapshot()).clone()
    }

    /// After the statement: a transaction keeps what it read, including its own writes.
    pub fn after_statement(&self, read: Arc<Snapshot>, in_transaction: bool) {
        *self.0.lock().unwrap() = in_transaction.then_some(read);
    }
}

/// Runs `work` with `snapshot` as the statement snapshot; returns what it read last.
pub async fn with_snapshot<F: std::future::Future>(snapshot: Arc<Snapshot>, work: F) -> (F::Output, Arc<Snapshot>) {
    let cell = Arc::new(Mutex::new(snapshot));
    let output = STATEMENT_SNAPSHOT.scope(cell.clone(), work).await;
    let last = cell.lock().unwrap().clone();
    (output, last)
}

/// The snapshot scans should read: the statement's, or the latest outside one.
pub fn current_snapshot(engine: &Engine) -> Arc<Snapshot> {
    STATEMENT_SNAPSHOT.try_with(|cell| cell.lock().unwrap().clone()).unwrap_or_else(|_| engine.snapshot())
}

/// A write was acknowledged: later statements of this task read a snapshot with it.
pub fn saw_write(engine: &Engine) {
    let _ = STATEMENT_SNAPSHOT.try_with(|cell| *cell.lock().unwrap() = engine.snapshot());
}

/// The logical time the statement being planned on this task reads at: the last time
/// its snapshot contains (`None` outside a statement).
pub fn statement_time() -> Option<diffmart_dataflows::Time> {
    STATEMENT_SNAPSHOT.try_with(|cell| cell.lock().unwrap().upper.saturating_sub(1)).ok()
}
