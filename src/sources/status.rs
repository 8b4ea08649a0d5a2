//! What sources report about themselves, written into the system relations
//! `diffmart_sources` and `diffmart_source_errors` (see `dataflows/src/system.rs`).
//!
//! Any source (Kafka, CDC) keeps a [`StatusBoard`] of the rows it wrote: setting a
//! stream's status upserts its row only when something other than the timestamp
//! changed, so an idle source writes nothing.

use std::collections::HashMap;

use anyhow::Context;
use diffmart_dataflows::datum::Record;
use diffmart_dataflows::system::{SourceError, SourceStatus};

use crate::compute::RelationId;
use crate::engine::{Catalog, Update};

/// How many bytes of a bad message's payload `diffmart_source_errors` keeps.
pub const PAYLOAD_PREVIEW_BYTES: usize = 256;

/// The ids of the two system relations.
#[derive(Clone, Copy, Debug)]
pub struct StatusRelations {
    pub sources: RelationId,
    pub errors: RelationId,
}

impl StatusRelations {
    pub fn of(catalog: &Catalog) -> anyhow::Result<StatusRelations> {
        let id = |name: &str| catalog.id(name).with_context(|| format!("the catalog has no relation {name}"));
        Ok(StatusRelations { sources: id(SourceStatus::spec().name)?, errors: id(SourceError::spec().name)? })
    }

    /// The insert that records a bad message.
    pub fn error(&self, error: &SourceError) -> Update {
        Update::insert(self.errors, error.to_row())
    }
}

/// The key of a `diffmart_sources` row.
type StreamKey = (String, String, i32);

fn key_of(status: &SourceStatus) -> StreamKey {
    (status.kind.clone(), status.name.clone(), status.partition)
}

/// The `diffmart_sources` rows one writer owns, as last written.
pub struct StatusBoard {
    relations: StatusRelations,
    written: HashMap<StreamKey, SourceStatus>,
}

impl StatusBoard {
    pub fn new(relations: StatusRelations) -> StatusBoard {
        StatusBoard { relations, written: HashMap::new() }
    }

    pub fn relations(&self) -> StatusRelations {
        self.relations
    }

    /// Replaces the stream's row by `status` when anything but `updated_at` differs;
    /// the updates to send go to `updates`.
    pub fn set(&mut self, status: SourceStatus, updates: &mut Vec<Update>) {
        let key = key_of(&status);
        if let Some(old) = self.written.get(&key) {
            let unchanged = SourceStatus { updated_at: old.updated_at, ..status.clone() } == *old;
            if unchanged {
                return;
            }
        }
        updates.push(Update::upsert(self.relations.sources, status.to_row()));
        self.written.insert(key, status);
    }

    /// Removes the stream's row, if this board wrote one.
    pub fn remove(&mut self, kind: &str, name: &str, partition: i32, updates: &mut Vec<Update>) {
        let key = (kind.to_string(), name.to_string(), partition);
        if self.written.remove(&key).is_some() {
            updates.push(Update::delete_key(self.relations.sources, vec![key.0.into(), key.1.into(), key.2.into()]));
        }
    }

    /// The row last written for a stream.
    pub fn get(&self, kind: &str, name: &str, partition: i32) -> Option<&SourceStatus> {
        self.written.get(&(kind.to_string(), name.to_string(), partition))
    }
}

/// The first bytes of a payload as text: invalid UTF-8 and NULs (which PostgreSQL
/// text cannot hold) become U+FFFD, and a cut never splits a character.
pub fn payload_preview(payload: &[u8]) -> String {
    let cut = &payload[..payload.len().min(PAYLOAD_PREVIEW_BYTES)];
    let text = String::from_utf8_lossy(cut);
    // A cut inside a multi-byte character shows as a trailing U+FFFD: drop it.
    let text = if payload.len() > PAYLOAD_PREVIEW_BYTES { text.trim_end_matches('\u{FFFD}') } else { &text };
    text.replace('\0', "\u{FFFD}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_are_short_valid_text() {
        assert_eq!(payload_preview(b"{\"a\": 1}"), "{\"a\": 1}");
        assert_eq!(payload_preview(b"a\0b\xff"), "a\u{FFFD}b\u{FFFD}");
        let long = "é".repeat(200);
        let preview = payload_preview(long.as_bytes());
        assert!(preview.len() <= PAYLOAD_PREVIEW_BYTES);
        assert!(preview.chars().all(|c| c == 'é'));
    }

    #[test]
    fn a_board_replaces_rows_only_when_they_change() {
        let relations = StatusRelations { sources: 1, errors: 2 };
        let mut board = StatusBoard::new(relations);
        let status = SourceStatus {
            kind: "kafka".into(),
            name: "t".into(),
            partition: 0,
            relation: None,
            reader: Some(0),
            status: "connected".into(),
            position: Some(1),
            high_watermark: Some(1),
            lag: Some(0),
            messages: 1,
            errors: 0,
            last_error: None,
            updated_at: 10,
        };
        let mut updates = Vec::new();
        board.set(status.clone(), &mut updates);
        assert_eq!(updates.len(), 1);
        board.set(SourceStatus { updated_at: 20, ..status.clone() }, &mut updates);
        assert_eq!(updates.len(), 1, "only the time changed");
        let changed = SourceStatus { messages: 2, updated_at: 30, ..status.clone() };
        board.set(changed.clone(), &mut updates);
        assert_eq!(updates.len(), 2);
        assert_eq!(updates[1], Update::upsert(1, changed.to_row()));
        board.remove("kafka", "t", 0, &mut updates);
        assert_eq!(updates[2], Update::delete_key(1, vec!["kafka".into(), "t".into(), 0.into()]));
        assert!(board.get("kafka", "t", 0).is_none());
    }
}
