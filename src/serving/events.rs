//! A source's events as the store keeps them: ordered by event time, then row,
//! packed into chunks of up to [`CHUNK_EVENTS`] events.
//!
//! Why chunks: an event kept on its own cost an allocation (a 16-byte header plus
//! the allocator's rounding) and a 24-byte vector slot (its time and a fat pointer)
//! on top of its packed bytes, and sources hold most of the store's rows. A chunk
//! keeps its events' packed bytes in one buffer, with a 4-byte end offset and the
//! 8-byte event time of each. The chunks sit in an `imbl::Vector`, so a snapshot is
//! still an O(1) clone: a chunk that changes is copied once per snapshot, the
//! others stay shared.
//!
//! Events arrive mostly in event-time order: an in-order event appends to the
//! newest chunk (a full one is followed by a new chunk, so chunks stay full); a
//! late one is a binary search over chunks, then inside one, and an insert that
//! splits the chunk in half when it overflows. Expiry drops whole chunks, then a
//! prefix of the oldest one left.

use std::cmp::Ordering;
use std::sync::Arc;

use diffmart_dataflows::datum::{Micros, Row};
use imbl::Vector;

use crate::serving::packed_row::{key_of, unpack};

/// Events per chunk. Small in unit tests, so that they split, empty and expire chunks.
#[cfg(not(test))]
const CHUNK_EVENTS: usize = 64;
#[cfg(test)]
const CHUNK_EVENTS: usize = 4;

/// A source's events (each repeated by multiplicity), oldest first.
#[derive(Clone, Debug, Default)]
pub struct EventLog {
    /// Never an empty chunk.
    chunks: Vector<Arc<Chunk>>,
    len: usize,
}

/// Up to [`CHUNK_EVENTS`] consecutive events of a log.
#[derive(Debug)]
struct Chunk {
    /// Each event's time, in order.
    times: Vec<Micros>,
    /// Where each event's packed row ends in `bytes`.
    ends: Vec<u32>,
    /// The events' packed rows, back to back.
    bytes: Vec<u8>,
}

impl EventLog {
    /// How many events the log holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The newest event's time.
    pub fn newest(&self) -> Option<Micros> {
        self.chunks.back().map(|chunk| chunk.times[chunk.len() - 1])
    }

    /// Every event's row, oldest first.
    pub fn rows(&self) -> impl Iterator<Item = Row> + '_ {
        self.chunks.iter().flat_map(|chunk| (0..chunk.len()).map(|i| unpack(chunk.packed(i))))
    }

    /// Adds `copies` of the event at `time` whose row is `packed`.
    pub fn insert(&mut self, time: Micros, packed: &[u8], copies: usize) {
        for _ in 0..copies {
            self.insert_one(time, packed);
        }
        self.len += copies;
    }

    fn insert_one(&mut self, time: Micros, packed: &[u8]) {
        let key = key_of(packed);
        let Some(newest) = self.chunks.back() else {
            self.chunks.push_back(Arc::new(Chunk::with_event(time, packed)));
            return;
        };
        if newest.cmp_event(newest.len() - 1, time, key) != Ordering::Greater {
            // In order: the common case, no search.
            if newest.len() < CHUNK_EVENTS {
                let newest = Arc::make_mut(self.chunks.back_mut().expect("checked"));
                newest.insert(newest.len(), time, packed);
                if newest.len() == CHUNK_EVENTS {
                    newest.shrink_to_fit();
                }
            } else {
                self.chunks.push_back(Arc::new(Chunk::with_event(time, packed)));
            }
            return;
        }
        // Late: into the first chunk whose newest event comes after it, after its equals.
        let at = self.first_chunk(|chunk| chunk.cmp_event(chunk.len() - 1, time, key) == Ordering::Greater);
        let chunk = Arc::make_mut(self.chunks.get_mut(at).expect("a chunk holds a newer event"));
        let position = partition_point(chunk.len(), |i| chunk.cmp_event(i, time, key) != Ordering::Greater);
        chunk.insert(position, time, packed);
        if chunk.len() > CHUNK_EVENTS {
            let newer = chunk.split_off(chunk.len() / 2);
            chunk.shrink_to_fit();
            self.chunks.insert(at + 1, Arc::new(newer));
        }
    }

    /// Removes one event at `time` whose row is `packed`; false if the log holds none.
    pub fn remove(&mut self, time: Micros, packed: &[u8]) -> bool {
        let key = key_of(packed);
        let at = self.first_chunk(|chunk| chunk.cmp_event(chunk.len() - 1, time, key) != Ordering::Less);
        let Some(chunk) = self.chunks.get(at) else { return false };
        let position = partition_point(chunk.len(), |i| chunk.cmp_event(i, time, key) == Ordering::Less);
        if chunk.cmp_event(position, time, key) != Ordering::Equal {
            return false;
        }
        if chunk.len() == 1 {
            self.chunks.remove(at);
        } else {
            Arc::make_mut(self.chunks.get_mut(at).expect("found")).remove(position);
        }
        self.len -= 1;
        true
    }

    /// Drops the events before `horizon`.
    pub fn expire_before(&mut self, horizon: Micros) {
        // Whole chunks whose newest event is before the horizon, then the oldest
        // events of the first chunk left.
        let expired_chunks = self.first_chunk(|chunk| chunk.times[chunk.len() - 1] >= horizon);
        if expired_chunks > 0 {
            self.len -= self.chunks.iter().take(expired_chunks).map(|chunk| chunk.len()).sum::<usize>();
            self.chunks = self.chunks.skip(expired_chunks);
        }
        if let Some(oldest) = self.chunks.front() {
            let expired = oldest.times.partition_point(|time| *time < horizon);
            if expired > 0 {
                let oldest = Arc::make_mut(self.chunks.front_mut().expect("checked"));
                *oldest = oldest.split_off(expired);
                self.len -= expired;
            }
        }
    }

    /// The index of the first chunk `after` holds for (it holds for a suffix of them);
    /// the number of chunks if none. O(log n).
    fn first_chunk(&self, after: impl Fn(&Chunk) -> bool) -> usize {
        let search =
            self.chunks.binary_search_by(|chunk| if after(chunk) { Ordering::Greater } else { Ordering::Less });
        search.expect_err("the comparison never answers Equal")
    }
}

impl Chunk {
    fn with_event(time: Micros, packed: &[u8]) -> Chunk {
        let mut chunk = Chunk {
            times: Vec::with_capacity(CHUNK_EVENTS),
            ends: Vec::with_capacity(CHUNK_EVENTS),
            bytes: Vec::with_capacity(CHUNK_EVENTS * packed.len()),
        };
        chunk.insert(0, time, packed);
        chunk
    }

    fn len(&self) -> usize {
        self.times.len()
    }

    fn start(&self, i: usize) -> usize {
        if i == 0 { 0 } else { self.ends[i - 1] as usize }
    }

    /// Event `i`'s packed row.
    fn packed(&self, i: usize) -> &[u8] {
        &self.bytes[self.start(i)..self.ends[i] as usize]
    }

    /// Event `i` against the event at `time` with row key `key`, in the log's order.
    fn cmp_event(&self, i: usize, time: Micros, key: &[u8]) -> Ordering {
        self.times[i].cmp(&time).then_with(|| key_of(self.packed(i)).cmp(key))
    }

    /// Makes the event at `time` whose row is `packed` event `i`.
    fn insert(&mut self, i: usize, time: Micros, packed: &[u8]) {
        let start = self.start(i);
        let length = u32::try_from(packed.len()).expect("a packed row is shorter than 4 GiB");
        self.bytes.splice(start..start, packed.iter().copied());
        self.times.insert(i, time);
        self.ends.insert(i, start as u32);
        for end in &mut self.ends[i..] {
            *end = end.checked_add(length).expect("a chunk is shorter than 4 GiB");
        }
    }

    fn remove(&mut self, i: usize) {
        let (start, end) = (self.start(i), self.ends[i] as usize);
        self.bytes.drain(start..end);
        self.times.remove(i);
        self.ends.remove(i);
        for later in &mut self.ends[i..] {
            *later -= (end - start) as u32;
        }
    }

    /// Splits off the events from `i` on.
    fn split_off(&mut self, i: usize) -> Chunk {
        let start = self.start(i);
        let mut ends = self.ends.split_off(i);
        for end in &mut ends {
            *end -= start as u32;
        }
        let mut newer = Chunk { times: self.times.split_off(i), ends, bytes: self.bytes.split_off(start) };
        newer.shrink_to_fit();
        newer
    }

    fn shrink_to_fit(&mut self) {
        self.times.shrink_to_fit();
        self.ends.shrink_to_fit();
        self.bytes.shrink_to_fit();
    }
}

/// A chunk is copied when a snapshot shares it and it changes. A full one (the
/// common case: an old chunk that takes a late event) is copied exactly; one that
/// is still filling keeps room to fill up without reallocating.
impl Clone for Chunk {
    fn clone(&self) -> Chunk {
        if self.len() >= CHUNK_EVENTS {
            return Chunk { times: self.times.clone(), ends: self.ends.clone(), bytes: self.bytes.clone() };
        }
        let mut times = Vec::with_capacity(CHUNK_EVENTS);
        times.extend_from_slice(&self.times);
        let mut ends = Vec::with_capacity(CHUNK_EVENTS);
        ends.extend_from_slice(&self.ends);
        let mut bytes = Vec::with_capacity(self.bytes.len() / self.len().max(1) * CHUNK_EVENTS);
        bytes.extend_from_slice(&self.bytes);
        Chunk { times, ends, bytes }
    }
}

/// How many of the first `n` indexes satisfy `before` (which holds for a prefix of them).
fn partition_point(n: usize, before: impl Fn(usize) -> bool) -> usize {
    let (mut low, mut high) = (0, n);
    while low < high {
        let middle = low + (high - low) / 2;
        if before(middle) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    low
}
