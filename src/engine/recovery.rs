//! What the input log holds, and start-up from it.
//!
//! Each logical time ingest stamps is one record: the positions the sources reached
//! with the batch (a Kafka partition's next offset, the generator's count of events),
//! then the batch's input changes as the store packs them. Positions and changes are
//! one record, so they are on disk together or not at all: a source resumes exactly
//! after what the views absorbed.
//!
//! At start-up [`replay`] takes the newest checkpoint, if there is one (the store
//! holds its input relations already; its tables' rows go to compute, whose history-dependent
//! operators restore their own state), then hands every later record's changes to
//! compute and to the store, before ingest takes anything new, and folds the positions.
//!
//! Kafka sinks that resume after the changes they delivered, up to `U`, get the store
//! at a cut: once every time before `U` is handed over and visible, and nothing after,
//! the replay subscribes to the store (a snapshot whose upper is `U`, then every change
//! after it) and goes on.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::mpsc::Sender;

use diffmart_dataflows::Time;

use super::ResumedFeed;
use super::changes::{PackedChanges, PackedInputs, take_i64, take_u32};
use super::checkpoint::Loaded;
use super::log::{self, Replayed};
use super::store::{DEFAULT_MAX_PENDING_CHANGES, Store};
use crate::compute::{Compute, InputBatch};

/// Where each source had got: its key (`generator`, `kafka/<topic>/<partition>`) →
/// its position (what the source means by it: an offset, a count).
pub type SourcePositions = BTreeMap<String, i64>;

/// How far the replay runs ahead of what is visible: past this many times or
/// changes handed over and not yet visible, it waits for the oldest. Enough to keep
/// compute busy, little enough to keep memory flat.
const REPLAY_TIMES_AHEAD: usize = 16;
const REPLAY_CHANGES_AHEAD: usize = 400_000;

/// Appends a record's payload to `out`: the positions (count u32, then per position
/// its key's length u16, the key, the position i64), then the changes.
pub fn encode_record(positions: &[(String, i64)], changes: &PackedChanges, out: &mut Vec<u8>) {
    out.extend_from_slice(&(positions.len() as u32).to_le_bytes());
    for (key, position) in positions {
        let key = &key.as_bytes()[..key.len().min(u16::MAX as usize)];
        out.extend_from_slice(&(key.len() as u16).to_le_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(&position.to_le_bytes());
    }
    changes.encode(out);
}

/// Reads what [`encode_record`] wrote; `relations` bounds the relation ids.
pub fn decode_record(bytes: &[u8], relations: usize) -> Result<(Vec<(String, i64)>, PackedChanges), String> {
    let (count, mut rest) = take_u32(bytes)?;
    let mut positions = Vec::new();
    for _ in 0..count {
        let (len, r) = rest.split_first_chunk::<2>().ok_or("cut short")?;
        let len = u16::from_le_bytes(*len) as usize;
        if r.len() < len {
            return Err("a source position cut short".into());
        }
        let (key, r) = r.split_at(len);
        let key = std::str::from_utf8(key).map_err(|_| "a source position's key is not UTF-8")?;
        let (position, r) = take_i64(r)?;
        positions.push((key.to_string(), position));
        rest = r;
    }
    let (changes, rest) = PackedChanges::decode(rest, relations)?;
    if !rest.is_empty() {
        return Err(format!("{} bytes after the record's changes", rest.len()));
    }
    Ok((positions, changes))
}

/// What start-up found in the data directory.
pub struct Recovered {
    /// The last position of every source that logged one.
    pub positions: SourcePositions,
    /// Records and input changes replayed.
    pub records: u64,
    pub changes: u64,
    /// Where the log continues.
    pub(super) log: Replayed,
    /// The store's feed from the cut, if one was asked for.
    pub(super) subscription: Option<ResumedFeed>,
}

/// Replays `checkpoint` (compute was started restoring its operators) and the log in
/// `dir` after it into compute and the store; returns once compute has been handed
/// all of it (not necessarily computed it). `tables` says which input relations are
/// tables: a restored dataflow is fed their rows at the checkpoint's time, and no
/// source events. With `cut_at`, subscribes to the store once exactly the times before
/// it are handed over and visible (see [`subscribe_at_cut`]).
/// Where Kafka sinks resume: the time, and whether their feed carries maintained
/// changes ([`Store::subscribe_with`]).
#[derive(Clone, Copy, Debug)]
pub struct Cut {
    pub at: Time,
    pub wants_maintained: bool,
}

pub(super) fn replay(
    dir: &Path,
    checkpoint: Option<Loaded>,
    tables: &[bool],
    compute: &Compute,
    to_store: &Sender<PackedInputs>,
    store: &Store,
    cut: Option<Cut>,
) -> anyhow::Result<Recovered> {
    let relations = tables.len();
    // The last time handed over to compute.
    let mut handed: Option<Time> = None;
    let mut subscription = None;
    let mut cut_failed = None;
    let mut positions = SourcePositions::new();
    let (mut records, mut changes) = (0u64, 0u64);
    let mut after: Option<Time> = None;
    let started = std::time::Instant::now();
    let visible = store.visible_upper();
    // Logs once when the checkpoint's time is visible: how long its rows took to compute.
    let mut checkpoint_pending: Option<Time> = None;
    let note_checkpoint_visible = |checkpoint_pending: &mut Option<Time>| {
        if let Some(through) = *checkpoint_pending
            && super::store::is_past(*visible.borrow(), through)
        {
            tracing::info!(through, seconds = started.elapsed().as_secs_f64(), "the checkpoint's state is visible");
            *checkpoint_pending = None;
        }
    };
    if let Some(checkpoint) = checkpoint {
        let through = checkpoint.through;
        positions = checkpoint.positions;
        let updates =
            checkpoint.inputs.iter().filter(|c| tables[c.relation]).map(|c| (c.relation, c.row(), c.diff)).collect();
        changes += checkpoint.inputs.len() as u64;
        // The store holds the checkpoint's rows already (`Store::load_checkpoint_rows`).
        drop(checkpoint.inputs);
        compute.send(InputBatch { time: through, updates });
        after = Some(through);
        checkpoint_pending = Some(through);
        handed = Some(through);
    }
    // Times handed over and not yet known to be visible, with their sizes.
    let mut ahead: VecDeque<(Time, usize)> = VecDeque::new();
    let mut ahead_changes = 0;
    let log = log::replay(dir, |time, payload| {
        if let Some(through) = after {
            if time <= through {
                return Ok(()); // in the checkpoint: its segment outlived it by a crash
            }
            if time != through + 1 {
                return Err(format!("the log continues at time {time}, not right after the checkpoint of {through}"));
            }
            after = None;
        }
        if let Some(Cut { at, wants_maintained }) = cut
            && subscription.is_none()
        {
            let expected = handed.map_or(0, |t| t + 1);
            let checked = if time >= at {
                subscribe_at_cut(store, at, handed, wants_maintained).map(|subscribed| subscription = Some(subscribed))
            } else if time != expected {
                Err(format!("the log holds no record of time {expected} (the next is of time {time})"))
            } else {
                Ok(())
            };
            if let Err(why) = checked {
                cut_failed = Some(cut_error(at, why));
                return Err("the replay stopped at the sinks' resume point".into());
            }
        }
        handed = Some(time);
        let (logged_positions, batch) = decode_record(payload, relations)?;
        records += 1;
        changes += batch.len() as u64;
        positions.extend(logged_positions);
        while ahead.len() >= REPLAY_TIMES_AHEAD || (ahead_changes >= REPLAY_CHANGES_AHEAD && !ahead.is_empty()) {
            let (oldest, size) = ahead.pop_front().expect("non-empty");
            store.wait_visible_blocking(oldest);
            ahead_changes -= size;
            note_checkpoint_visible(&mut checkpoint_pending);
        }
        // Every record at its own time, as ingest stamped it: operators that decide by
        // arrival (lateness, arrival order, overrides) decide as they did.
        let size = batch.len();
        let updates = batch.iter().map(|c| (c.relation, c.row(), c.diff)).collect();
        let _ = to_store.send(PackedInputs { time, changes: batch });
        compute.send(InputBatch { time, updates });
        ahead.push_back((time, size));
        ahead_changes += size;
        Ok(())
    });
    if let Some(error) = cut_failed {
        return Err(error);
    }
    let mut log = log?;
    if let Some(Cut { at, wants_maintained }) = cut
        && subscription.is_none()
    {
        subscription = Some(subscribe_at_cut(store, at, handed, wants_maintained).map_err(|why| cut_error(at, why))?);
    }
    if let Some(through) = after {
        log.continue_at_least(through + 1);
    }
    Ok(Recovered { positions, records, changes, log, subscription })
}

/// Subscribes to the store at the sinks' resume point `at`, the replay having handed
/// over every time up to `handed` and nothing after: exact only if that is every time
/// before `at`, and once those are visible (no later time is, none was handed over).
fn subscribe_at_cut(
    store: &Store,
    at: Time,
    handed: Option<Time>,
    wants_maintained: bool,
) -> Result<ResumedFeed, String> {
    let reached = handed.map_or(0, |t| t + 1);
    if reached < at {
        return Err(format!("the log holds no record of time {reached}"));
    }
    if reached > at {
        return Err(format!("the oldest state left is of time {}, after it", reached - 1));
    }
    if at > 0 && !store.wait_visible_blocking(at - 1) {
        return Err("compute shut down during the replay".into());
    }
    let (snapshot, feed) = store.subscribe_with(DEFAULT_MAX_PENDING_CHANGES, wants_maintained);
    if snapshot.upper != at {
        return Err(format!("the store shows time {} at the cut, not {at}", snapshot.upper));
    }
    Ok((snapshot, feed))
}

fn cut_error(at: Time, why: String) -> anyhow::Error {
    anyhow::anyhow!(
        "the Kafka sinks delivered every change before time {at} and cannot resume there exactly: {why}. \
         The progress topic does not belong to this data \
         directory's history, or what it needs is gone; to write the sinks afresh (each relation's rows as \
         inserts, then its changes), start with a new --kafka-sink-progress-topic or \
         --kafka-sink-transactional-id, and have consumers start over on new topics"
    )
}

#[cfg(test)]
mod tests {
    use diffmart_dataflows::datum::Datum;

    use super::*;

    #[test]
    fn records_round_trip() {
        let mut changes = PackedChanges::default();
        changes.push(1, &[Datum::Int64(5)], 1, 0);
        let positions = vec![("kafka/purchases/0".to_string(), 41), ("generator".to_string(), 7)];
        let mut bytes = Vec::new();
        encode_record(&positions, &changes, &mut bytes);
        let (read, decoded) = decode_record(&bytes, 2).unwrap();
        assert_eq!(read, positions);
        assert_eq!(
            decoded.iter().map(|c| (c.relation, c.row(), c.diff)).collect::<Vec<_>>(),
            vec![(1, vec![Datum::Int64(5)], 1)]
        );
        assert!(decode_record(&bytes[..bytes.len() - 1], 2).is_err());
        bytes.push(0);
        assert!(decode_record(&bytes, 2).unwrap_err().contains("after the record"));
    }
}
