//! What sources report about themselves, written into the system relations
//! `diffmart_sources` and `diffmart_source_errors` (see `dataflows/src/system.rs`).
//!
//! Any source (Kafka, CDC) keeps a [`StatusBoard`] of the rows it wrote: setting a
//! stream's status upserts its row only when something other than the timestamp
//! changed, so an idle source writes nothing.

use std::collections::{HashMap, VecDeque};

use anyhow::Context;
use diffmart_dataflows::datum::Record;
use diffmart_dataflows::system::{SOURCE_ERRORS_KEPT, SourceError, SourceStatus};

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
}

/// One stream's errors: how many there were, and the `diffmart_source_errors` rows to
/// write. The table keeps each stream's newest [`SOURCE_ERRORS_KEPT`]: what an error
/// pushes out is deleted in the same batch that adds it, and of a batch's errors only
/// the newest that many are written at all, so a million bad messages cost a million
/// counts, not a million rows.
#[derive(Debug)]
pub struct StreamErrors {
    /// Errors counted so far (`diffmart_sources.errors`).
    counted: i64,
    /// `counted` when rows were last written: the table holds the newest of those.
    written: i64,
    pending: VecDeque<SourceError>,
}

impl StreamErrors {
    /// A stream that has counted `counted` errors before (all written).
    pub fn resumed(counted: i64) -> StreamErrors {
        StreamErrors { counted, written: counted, pending: VecDeque::new() }
    }

    pub fn counted(&self) -> i64 {
        self.counted
    }

    /// Counts an error; its `error_number` is set here.
    pub fn push(&mut self, mut error: SourceError) {
        self.counted += 1;
        error.error_number = self.counted;
        self.pending.push_back(error);
        if self.pending.len() as i64 > SOURCE_ERRORS_KEPT {
            self.pending.pop_front();
        }
    }

    /// The updates that bring the table up to date with the errors counted: the
    /// rows now too old to keep go, the pending ones come in.
    pub fn write(&mut self, relations: StatusRelations, updates: &mut Vec<Update>) {
        let Some(first) = self.pending.front() else { return };
        let stream = (first.kind.clone(), first.name.clone(), first.partition);
        let oldest_kept_before = (self.written - SOURCE_ERRORS_KEPT + 1).max(1);
        let newest_dropped = self.written.min(self.counted - SOURCE_ERRORS_KEPT);
        for number in oldest_kept_before..=newest_dropped {
            let key = vec![stream.0.clone().into(), stream.1.clone().into(), stream.2.into(), number.into()];
            updates.push(Update::delete_key(relations.errors, key));
        }
        updates.extend(self.pending.drain(..).map(|error| Update::upsert(relations.errors, error.to_row())));
        self.written = self.counted;
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
    fn a_stream_keeps_its_newest_errors_and_counts_them_all() {
        let relations = StatusRelations { sources: 1, errors: 2 };
        let error = |position: i64| SourceError {
            kind: "kafka".into(),
            name: "t".into(),
            partition: 3,
            error_number: 0,
            position,
            relation: None,
            error: "invalid JSON".into(),
            payload: None,
            error_time: 10,
        };
        let key = |number: i64| vec!["kafka".into(), "t".into(), 3.into(), number.into()];
        // Resumed after five errors: rows 1..=5 are in the table.
        let mut errors = StreamErrors::resumed(5);
        let mut updates = Vec::new();
        errors.write(relations, &mut updates);
        assert!(updates.is_empty(), "nothing new");
        // A batch of more than the table keeps: only its newest are written, and
        // every older row goes.
        let batch = SOURCE_ERRORS_KEPT + 7;
        for position in 0..batch {
            errors.push(error(position));
        }
        assert_eq!(errors.counted(), 5 + batch);
        errors.write(relations, &mut updates);
        let deleted: Vec<Update> =
            updates.iter().filter(|u| matches!(u.op, crate::engine::Op::DeleteKey { .. })).cloned().collect();
        assert_eq!(deleted, (1..=5).map(|n| Update::delete_key(2, key(n))).collect::<Vec<_>>());
        let written: Vec<i64> = updates
            .iter()
            .filter_map(|u| match &u.op {
                crate::engine::Op::Upsert(row) => Some(SourceError::from_row(row).unwrap().error_number),
                _ => None,
            })
            .collect();
        assert_eq!(written, (13..=5 + batch).collect::<Vec<_>>());
        // Two more: the two oldest kept rows go.
        updates.clear();
        errors.push(error(0));
        errors.push(error(1));
        errors.write(relations, &mut updates);
        assert_eq!(updates[..2], [Update::delete_key(2, key(13)), Update::delete_key(2, key(14))]);
        assert_eq!(updates.len(), 4);
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
