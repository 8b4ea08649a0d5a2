//! A session's SUBSCRIBE cursors: `DECLARE c CURSOR FOR SUBSCRIBE …` inside a
//! transaction, `FETCH n c [WITH (timeout = …)]`, `CLOSE c`; like PostgreSQL's
//! cursors without HOLD, they close when the transaction ends.
//!
//! `FETCH` returns the rows already waiting, up to `n`; when none wait, it waits for
//! the next ones, for at most the timeout if one is given (`'0s'`: not at all).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;

use super::{Running, api_error};
use crate::engine::SqlError;
use pgwire::error::PgWireResult;

/// The cursors of one session, kept with the connection.
#[derive(Default)]
pub struct SubscribeCursors {
    /// By name: the output schema, and the cursor (held by a FETCH while it waits).
    cursors: Mutex<HashMap<String, (SchemaRef, SharedCursor)>>,
}

type SharedCursor = Arc<tokio::sync::Mutex<Cursor>>;

/// One cursor: its subscription and the output rows it produced that no FETCH has
/// taken yet.
pub struct Cursor {
    running: Running,
    waiting: VecDeque<RecordBatch>,
}

impl SubscribeCursors {
    /// Whether `name` is one of these cursors.
    pub fn contains(&self, name: &str) -> bool {
        self.cursors.lock().unwrap().contains_key(name)
    }

    /// Opens cursor `name` on `running`.
    pub fn declare(&self, name: String, running: Running) -> Result<(), SqlError> {
        let mut cursors = self.cursors.lock().unwrap();
        if cursors.contains_key(&name) {
            return Err(SqlError::new("42P03", format!("cursor \"{name}\" already exists")));
        }
        let schema = running.schema.clone();
        cursors.insert(name, (schema, Arc::new(tokio::sync::Mutex::new(Cursor { running, waiting: VecDeque::new() }))));
        Ok(())
    }

    /// Closes cursor `name`, or all with `None`. False: there was no such cursor.
    pub fn close(&self, name: Option<&str>) -> bool {
        let mut cursors = self.cursors.lock().unwrap();
        match name {
            Some(name) => cursors.remove(name).is_some(),
            None => {
                cursors.clear();
                true
            }
        }
    }

    /// The output schema of cursor `name`.
    pub fn schema(&self, name: &str) -> Option<SchemaRef> {
        self.cursors.lock().unwrap().get(name).map(|(schema, _)| schema.clone())
    }

    /// Up to `count` rows (`None`: all waiting) of cursor `name`, waiting up to
    /// `timeout` for the first when none wait. A cursor whose subscription failed
    /// (dropped for falling behind) is closed, and the FETCH gets why.
    pub async fn fetch(
        &self,
        name: &str,
        count: Option<usize>,
        timeout: Option<Duration>,
    ) -> PgWireResult<RecordBatch> {
        let cursor = self
            .cursors
            .lock()
            .unwrap()
            .get(name)
            .map(|(_, cursor)| cursor.clone())
            .ok_or_else(|| api_error(SqlError::new("34000", format!("cursor \"{name}\" does not exist"))))?;
        let mut cursor = cursor.lock().await;
        let schema = cursor.running.schema.clone();
        if cursor.waiting.is_empty() {
            let next = match timeout {
                None => Some(cursor.running.next().await),
                Some(timeout) => tokio::time::timeout(timeout, cursor.running.next()).await.ok(),
            };
            match next {
                Some(Ok(batch)) => cursor.waiting.push_back(batch),
                Some(Err(e)) => {
                    self.close(Some(name));
                    return Err(e);
                }
                None => {}
            }
        }
        // And what else has come meanwhile, up to the count.
        let mut waiting: usize = cursor.waiting.iter().map(RecordBatch::num_rows).sum();
        while waiting < count.unwrap_or(usize::MAX) {
            match cursor.running.try_next() {
                Ok(Some(batch)) => {
                    waiting += batch.num_rows();
                    cursor.waiting.push_back(batch);
                }
                Ok(None) => break,
                Err(e) => {
                    self.close(Some(name));
                    return Err(e);
                }
            }
        }
        let mut taken = Vec::new();
        let mut left = count.unwrap_or(usize::MAX);
        while left > 0
            && let Some(batch) = cursor.waiting.pop_front()
        {
            if batch.num_rows() > left {
                taken.push(batch.slice(0, left));
                cursor.waiting.push_front(batch.slice(left, batch.num_rows() - left));
                left = 0;
            } else {
                left -= batch.num_rows();
                taken.push(batch);
            }
        }
        concat_batches(&schema, &taken).map_err(api_error)
    }
}
