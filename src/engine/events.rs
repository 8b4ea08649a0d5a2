//! A source's events as the store keeps them: ordered by event time, then row,
//! packed into chunks of up to [`CHUNK_EVENTS`] events, every chunk but the newest
//! compressed.
//!
//! Why chunks: an event kept on its own cost an allocation (a 16-byte header plus
//! the allocator's rounding) and a 24-byte vector slot (its time and a fat pointer)
//! on top of its packed bytes, and sources hold most of the store's rows. A chunk
//! keeps its events' packed rows in one buffer, with the end offset and the event
//! time of each. The chunks sit in an `imbl::Vector`, so a snapshot is still an O(1)
//! clone: a chunk that changes is copied once per snapshot, the others stay shared.
//!
//! Why compressed: the packed rows of a source repeat themselves (the same members,
//! games, products and tags, times a few digits apart), and they were a third of
//! the store's memory after 24 hours of events (docs/benchmarks.md, #memory-for-24-hours-of-events). A full
//! chunk is sealed: its rows are one LZ4 block, its times and row lengths LEB128
//! deltas, and it keeps its newest row in the clear, which is all a search compares
//! against. Reading it (a scan of the source, a late event, a retraction) inflates
//! it; appending never does.
//!
//! Events arrive mostly in event-time order: an in-order event appends to the
//! newest chunk, which is sealed when full and followed by a new one; a late one is
//! a binary search over chunks, then inside one, and an insert that splits the
//! chunk in half when it overflows. Expiry drops whole chunks, then marks a prefix
//! of the oldest one left expired (the chunk stays as it is until all of it is).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::sync::Arc;

use diffmart_dataflows::datum::{Micros, Row};
use imbl::Vector;

use crate::engine::packed_row::{key_of, unpack};

/// Events per chunk. Small in unit tests, so that they seal, split, empty and expire chunks.
#[cfg(not(test))]
const CHUNK_EVENTS: usize = 64;
#[cfg(test)]
const CHUNK_EVENTS: usize = 4;

/// A source's events (each repeated by multiplicity), oldest first.
#[derive(Clone, Debug, Default)]
pub struct EventLog {
    /// Never an empty chunk; only the newest may be open.
    chunks: Vector<Arc<Chunk>>,
    len: usize,
}

/// Up to [`CHUNK_EVENTS`] consecutive events of a log.
#[derive(Clone, Debug)]
enum Chunk {
    /// The newest chunk, while it fills.
    Open(Events),
    /// Every other chunk.
    Sealed(Sealed),
}

/// Events laid out for reading and changing.
#[derive(Debug)]
struct Events {
    /// Each event's time, in order.
    times: Vec<Micros>,
    /// Where each event's packed row ends in `bytes`.
    ends: Vec<u32>,
    /// The events' packed rows, back to back.
    bytes: Vec<u8>,
}

/// Events compressed: what a chunk costs once it no longer fills.
#[derive(Clone, Debug)]
struct Sealed {
    /// Events held, expired ones included.
    held: u32,
    /// How many of the oldest events expired; they go when the whole chunk does.
    expired: u32,
    newest_time: Micros,
    /// The length of the events' packed rows, uncompressed.
    bytes_len: u32,
    /// Where the newest event's row starts and the compressed rows start in `data`.
    newest_at: u32,
    compressed_at: u32,
    /// Each event's time (signed LEB128, the difference from the one before) and
    /// packed length (LEB128); the newest event's packed row; all packed rows as
    /// one LZ4 block. Shared, so marking events expired copies no bytes.
    data: Arc<[u8]>,
}

impl EventLog {
    /// How many events the log holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The newest event's time.
    pub fn newest(&self) -> Option<Micros> {
        self.chunks.back().map(|chunk| chunk.newest_time())
    }

    /// Every event's row, oldest first.
    pub fn rows(&self) -> impl Iterator<Item = Row> + '_ {
        self.chunks.iter().flat_map(|chunk| {
            let events = chunk.events();
            (0..events.len()).map(move |i| unpack(events.packed(i)))
        })
    }

    /// Calls `each` with every event's time and packed row, oldest first.
    pub fn for_each_packed(&self, mut each: impl FnMut(Micros, &[u8])) {
        for chunk in self.chunks.iter() {
            let events = chunk.events();
            for i in 0..events.len() {
                each(events.times[i], events.packed(i));
            }
        }
    }

    /// Calls `each` with the time and packed row of every event before `horizon`,
    /// oldest first: what [`EventLog::expire_before`] would drop. Reads only the
    /// chunks that hold such events.
    pub fn for_each_before(&self, horizon: Micros, mut each: impl FnMut(Micros, &[u8])) {
        let whole = self.first_chunk(|chunk| chunk.newest_time() >= horizon);
        for (i, chunk) in self.chunks.iter().enumerate().take(whole + 1) {
            let events = chunk.events();
            let before = if i < whole { events.len() } else { events.times.partition_point(|t| *t < horizon) };
            for e in 0..before {
                each(events.times[e], events.packed(e));
            }
        }
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
            self.chunks.push_back(Arc::new(Chunk::Open(Events::with_event(time, packed))));
            return;
        };
        if newest.cmp_newest(time, key) != Ordering::Greater {
            // In order: the common case, no search.
            if matches!(&**newest, Chunk::Open(_)) {
                let newest = Arc::make_mut(self.chunks.back_mut().expect("checked"));
                let Chunk::Open(events) = newest else { unreachable!("checked") };
                events.insert(events.len(), time, packed);
                if events.len() == CHUNK_EVENTS {
                    *newest = Chunk::Sealed(Sealed::new(events));
                }
            } else {
                self.chunks.push_back(Arc::new(Chunk::Open(Events::with_event(time, packed))));
            }
            return;
        }
        // Late: into the first chunk whose newest event comes after it, after its equals.
        let at = self.first_chunk(|chunk| chunk.cmp_newest(time, key) == Ordering::Greater);
        let mut events = self.chunks[at].events().into_owned();
        let position = partition_point(events.len(), |i| events.cmp_event(i, time, key) != Ordering::Greater);
        events.insert(position, time, packed);
        if events.len() > CHUNK_EVENTS {
            let newer = events.split_off(events.len() / 2);
            // A place for the newer half first, so `replace` sees which half is the newest chunk.
            self.chunks.insert(at + 1, self.chunks[at].clone());
            self.replace(at, events);
            self.replace(at + 1, newer);
        } else {
            self.replace(at, events);
        }
    }

    /// Removes one event at `time` whose row is `packed`; false if the log holds none.
    pub fn remove(&mut self, time: Micros, packed: &[u8]) -> bool {
        let key = key_of(packed);
        let at = self.first_chunk(|chunk| chunk.cmp_newest(time, key) != Ordering::Less);
        let Some(chunk) = self.chunks.get(at) else { return false };
        let events = chunk.events();
        let position = partition_point(events.len(), |i| events.cmp_event(i, time, key) == Ordering::Less);
        if events.cmp_event(position, time, key) != Ordering::Equal {
            return false;
        }
        if events.len() == 1 {
            self.chunks.remove(at);
        } else {
            let mut events = events.into_owned();
            events.remove(position);
            self.replace(at, events);
        }
        self.len -= 1;
        true
    }

    /// Drops the events before `horizon`.
    pub fn expire_before(&mut self, horizon: Micros) {
        // Whole chunks whose newest event is before the horizon, then the oldest
        // events of the first chunk left.
        let expired_chunks = self.first_chunk(|chunk| chunk.newest_time() >= horizon);
        if expired_chunks > 0 {
            self.len -= self.chunks.iter().take(expired_chunks).map(|chunk| chunk.len()).sum::<usize>();
            self.chunks = self.chunks.skip(expired_chunks);
        }
        if let Some(oldest) = self.chunks.front() {
            let expired = oldest.events_before(horizon);
            if expired > 0 {
                match Arc::make_mut(self.chunks.front_mut().expect("checked")) {
                    Chunk::Open(events) => *events = events.split_off(expired),
                    Chunk::Sealed(sealed) => sealed.expired += expired as u32,
                }
                self.len -= expired;
            }
        }
    }

    /// Puts `events` (not empty) in chunk `at`'s place: open if it is the newest
    /// chunk and not full, sealed otherwise.
    fn replace(&mut self, at: usize, mut events: Events) {
        let chunk = if at + 1 == self.chunks.len() && events.len() < CHUNK_EVENTS {
            events.reserve_to_fill();
            Chunk::Open(events)
        } else {
            Chunk::Sealed(Sealed::new(&events))
        };
        self.chunks.set(at, Arc::new(chunk));
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
    /// Live events.
    fn len(&self) -> usize {
        match self {
            Chunk::Open(events) => events.len(),
            Chunk::Sealed(sealed) => (sealed.held - sealed.expired) as usize,
        }
    }

    fn newest_time(&self) -> Micros {
        match self {
            Chunk::Open(events) => events.times[events.len() - 1],
            Chunk::Sealed(sealed) => sealed.newest_time,
        }
    }

    /// The newest event against the event at `time` with row key `key`, in the log's order.
    fn cmp_newest(&self, time: Micros, key: &[u8]) -> Ordering {
        match self {
            Chunk::Open(events) => events.cmp_event(events.len() - 1, time, key),
            Chunk::Sealed(sealed) => {
                sealed.newest_time.cmp(&time).then_with(|| key_of(sealed.newest_packed()).cmp(key))
            }
        }
    }

    /// The live events, inflated if the chunk is sealed.
    fn events(&self) -> Cow<'_, Events> {
        match self {
            Chunk::Open(events) => Cow::Borrowed(events),
            Chunk::Sealed(sealed) => Cow::Owned(sealed.events()),
        }
    }

    /// How many live events are before `horizon`.
    fn events_before(&self, horizon: Micros) -> usize {
        match self {
            Chunk::Open(events) => events.times.partition_point(|time| *time < horizon),
            Chunk::Sealed(sealed) => {
                sealed.index().skip(sealed.expired as usize).take_while(|(time, _)| *time < horizon).count()
            }
        }
    }
}

impl Events {
    fn with_event(time: Micros, packed: &[u8]) -> Events {
        let mut events = Events {
            times: Vec::with_capacity(CHUNK_EVENTS),
            ends: Vec::with_capacity(CHUNK_EVENTS),
            bytes: Vec::with_capacity(CHUNK_EVENTS * packed.len()),
        };
        events.insert(0, time, packed);
        events
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
    fn split_off(&mut self, i: usize) -> Events {
        let start = self.start(i);
        let mut ends = self.ends.split_off(i);
        for end in &mut ends {
            *end -= start as u32;
        }
        Events { times: self.times.split_off(i), ends, bytes: self.bytes.split_off(start) }
    }

    /// Room for the chunk to fill up without reallocating: it is the newest, open one.
    fn reserve_to_fill(&mut self) {
        let missing = CHUNK_EVENTS.saturating_sub(self.len());
        self.times.reserve(missing);
        self.ends.reserve(missing);
        self.bytes.reserve(self.bytes.len() / self.len().max(1) * missing);
    }
}

/// An open chunk is copied when a snapshot shares it and an event arrives: the copy
/// keeps room to fill up without reallocating.
impl Clone for Events {
    fn clone(&self) -> Events {
        let mut events = Events { times: self.times.clone(), ends: self.ends.clone(), bytes: self.bytes.clone() };
        events.reserve_to_fill();
        events
    }
}

impl Sealed {
    fn new(events: &Events) -> Sealed {
        let count = events.len();
        let mut data = Vec::with_capacity(3 * count + events.bytes.len() / 2);
        let mut previous: Micros = 0;
        for i in 0..count {
            let time = events.times[i];
            leb128::write::signed(&mut data, time.wrapping_sub(previous)).expect("writing to a Vec cannot fail");
            leb128::write::unsigned(&mut data, (events.ends[i] as usize - events.start(i)) as u64)
                .expect("writing to a Vec cannot fail");
            previous = time;
        }
        let newest_at = data.len();
        data.extend_from_slice(events.packed(count - 1));
        let compressed_at = data.len();
        data.extend_from_slice(&lz4_flex::block::compress(&events.bytes));
        Sealed {
            held: count as u32,
            expired: 0,
            newest_time: events.times[count - 1],
            bytes_len: events.bytes.len() as u32,
            newest_at: newest_at as u32,
            compressed_at: compressed_at as u32,
            data: data.into(),
        }
    }

    fn newest_packed(&self) -> &[u8] {
        &self.data[self.newest_at as usize..self.compressed_at as usize]
    }

    /// Each event's time and packed length, expired ones included.
    fn index(&self) -> impl Iterator<Item = (Micros, usize)> + '_ {
        let mut index = &self.data[..self.newest_at as usize];
        let mut time: Micros = 0;
        (0..self.held).map(move |_| {
            let delta = leb128::read::signed(&mut index).expect("a sealed chunk's index is well formed");
            let length = leb128::read::unsigned(&mut index).expect("a sealed chunk's index is well formed");
            time = time.wrapping_add(delta);
            (time, length as usize)
        })
    }

    /// The live events, inflated.
    fn events(&self) -> Events {
        let mut bytes = vec![0; self.bytes_len as usize];
        let inflated = lz4_flex::block::decompress_into(&self.data[self.compressed_at as usize..], &mut bytes)
            .expect("a sealed chunk's rows inflate");
        debug_assert_eq!(inflated, bytes.len());
        let live = (self.held - self.expired) as usize;
        let (mut times, mut ends) = (Vec::with_capacity(live), Vec::with_capacity(live));
        let (mut skipped, mut end) = (0, 0);
        for (i, (time, length)) in self.index().enumerate() {
            if i < self.expired as usize {
                skipped += length;
            } else {
                end += length as u32;
                times.push(time);
                ends.push(end);
            }
        }
        bytes.drain(..skipped);
        Events { times, ends, bytes }
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
