//! The input log: every batch ingest stamps, in time order, on disk.
//!
//! A plain segmented log rather than a storage crate: the log is appended in time order,
//! read back whole and in order at start-up, and dropped only as a prefix once a
//! checkpoint covers it, which is exactly what a segmented log does. Measured against
//! fjall and redb at 400,000 changes/s, appending cost the ingest thread 0.1 ms at p99
//! against 4–10 ms (both take their writer lock to fsync), and replaying 5 M changes
//! 1.6 s against 3.7–6.8 s (docs/durability.md).
//!
//! # Format
//!
//! Segments are `seg-<first time, 20 digits>.log`, rolled at [`SEGMENT_BYTES`]. Each
//! starts with [`MAGIC`], then records `[body length u32][CRC-32 of body u32][body]`,
//! little-endian, where the body is `[time u64][payload]`. Times strictly increase
//! across the whole log.
//!
//! # Durability
//!
//! The appending thread only writes (`write(2)`); a sync thread makes what was
//! appended durable (`fdatasync` of the segments written since, and of the directory
//! after a new segment) and advances the durable time, which client acknowledgements
//! wait for ([`Durability::wait`]). Appends never wait for a sync, and one sync covers
//! every append before it (group commit). A failed write or sync is fatal: it poisons
//! the log, every waiter gets the error, and nothing is retried (after a failed fsync,
//! the kernel may have dropped the dirty pages it could not write).
//!
//! # Recovery
//!
//! [`replay`] reads every record in order. A record cut short at the end of the last
//! segment (a write the process died in) is dropped with a log line and the segment is
//! truncated before the end of it, so appends continue after valid data. Anything
//! else (a bad checksum with data after it, a bad header, a sealed segment that ends
//! mid-record, a time that does not increase) stops start-up with an error naming the
//! file and the offset.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

/// Each segment's first bytes: the format and its version.
pub const MAGIC: &[u8; 8] = b"dmlog\0\0\x01";
/// A segment is rolled once it holds this many bytes.
pub const SEGMENT_BYTES: u64 = 64 << 20;
/// Length and checksum before each record's body.
const RECORD_HEADER: usize = 8;
/// A body is at least its time.
const MIN_BODY: usize = 8;
/// Far more than any batch: a length beyond it is corruption, not a record.
const MAX_BODY: usize = 1 << 30;

/// Why the log cannot be read or written.
#[derive(Debug)]
pub enum LogError {
    Io {
        path: PathBuf,
        error: io::Error,
    },
    Corrupt {
        path: PathBuf,
        offset: u64,
        why: String,
    },
    /// A write or sync failed earlier: the log takes no more.
    Poisoned(String),
}

impl std::fmt::Display for LogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            LogError::Corrupt { path, offset, why } => {
                write!(
                    f,
                    "{} is corrupt at offset {offset}: {why}; nothing after it can be read (restore the data \
                     directory from a backup, or start on a new --data-dir)",
                    path.display()
                )
            }
            LogError::Poisoned(why) => write!(f, "the input log failed earlier and takes no more writes: {why}"),
        }
    }
}

impl std::error::Error for LogError {}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> LogError + '_ {
    move |error| LogError::Io { path: path.to_owned(), error }
}

fn segment_name(first_time: u64) -> String {
    format!("seg-{first_time:020}.log")
}

/// The segments of `dir`, oldest first.
fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, LogError> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(first) = name.strip_prefix("seg-").and_then(|n| n.strip_suffix(".log")) else { continue };
        let first = first.parse::<u64>().map_err(|_| LogError::Corrupt {
            path: entry.path(),
            offset: 0,
            why: "a segment name that is not seg-<time>.log".into(),
        })?;
        found.push((first, entry.path()));
    }
    found.sort();
    Ok(found)
}

/// What [`replay`] found: the next time to stamp, and where appends continue.
pub struct Replayed {
    /// One past the last record's time; 0 for an empty log.
    pub next_time: u64,
    /// The last segment and its valid length, if there is one.
    last_segment: Option<(u64, PathBuf, u64)>,
}

/// Reads every record of the log in `dir` in time order, handing each to `record`
/// (whose error, a record it cannot read, stops the replay naming file and offset).
/// Drops a torn last record (truncating the segment before it); anything else wrong
/// is an error naming the file and offset.
pub fn replay(dir: &Path, mut record: impl FnMut(u64, &[u8]) -> Result<(), String>) -> Result<Replayed, LogError> {
    let segments = segments(dir)?;
    let mut next_time = 0u64;
    let mut last_segment = None;
    for (index, (first, path)) in segments.iter().enumerate() {
        let is_last = index + 1 == segments.len();
        let mut bytes = Vec::new();
        File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(io_error(path))?;
        let corrupt = |offset: usize, why: String| LogError::Corrupt { path: path.clone(), offset: offset as u64, why };
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            if is_last && bytes.len() < MAGIC.len() && MAGIC.starts_with(&bytes) {
                // Created, and the process died before its header was written.
                tracing::warn!(file = %path.display(), "dropping a segment torn before its header");
                std::fs::remove_file(path).map_err(io_error(path))?;
                continue;
            }
            return Err(corrupt(0, "not a diffmart log segment (bad header)".into()));
        }
        let mut at = MAGIC.len();
        let mut first_in_segment = true;
        while at < bytes.len() {
            let torn = |why: &str| {
                tracing::warn!(file = %path.display(), offset = at, "dropping the log's torn last record ({why})");
            };
            let rest = &bytes[at..];
            if rest.len() < RECORD_HEADER {
                if !is_last {
                    return Err(corrupt(at, "a sealed segment ends inside a record header".into()));
                }
                torn("cut inside its header");
                truncate(path, at as u64)?;
                break;
            }
            let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
            let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
            if !(MIN_BODY..=MAX_BODY).contains(&len) {
                if is_last && rest[..RECORD_HEADER].iter().all(|b| *b == 0) && rest.iter().all(|b| *b == 0) {
                    // Zeros to the end: space the file system allocated before the crash.
                    torn("zeros to the end of the file");
                    truncate(path, at as u64)?;
                    break;
                }
                return Err(corrupt(at, format!("a record length of {len} bytes")));
            }
            let end = at + RECORD_HEADER + len;
            if end > bytes.len() {
                if !is_last {
                    return Err(corrupt(at, "a sealed segment ends inside a record".into()));
                }
                torn("it runs past the end of the file");
                truncate(path, at as u64)?;
                break;
            }
            let body = &bytes[at + RECORD_HEADER..end];
            if crc32fast::hash(body) != crc {
                if is_last && end == bytes.len() {
                    torn("its checksum does not match and nothing follows it");
                    truncate(path, at as u64)?;
                    break;
                }
                return Err(corrupt(at, "checksum mismatch".into()));
            }
            let time = u64::from_le_bytes(body[0..8].try_into().expect("8 bytes"));
            if time < next_time || (first_in_segment && time < *first) {
                return Err(corrupt(at, format!("time {time} after time {}", next_time.saturating_sub(1))));
            }
            record(time, &body[8..]).map_err(|why| corrupt(at, why))?;
            next_time = time + 1;
            first_in_segment = false;
            at = end;
        }
        last_segment = Some((*first, path.clone(), at.min(bytes.len()) as u64));
    }
    Ok(Replayed { next_time, last_segment })
}

fn truncate(path: &Path, len: u64) -> Result<(), LogError> {
    let file = OpenOptions::new().write(true).open(path).map_err(io_error(path))?;
    file.set_len(len).map_err(io_error(path))?;
    file.sync_all().map_err(io_error(path))
}

/// What the sync thread makes durable next, and how far it has got.
struct SyncState {
    /// One past the last time appended.
    appended: u64,
    /// One past the last time on disk.
    durable: u64,
    /// Files written since the last sync, the current segment last.
    to_sync: Vec<Arc<File>>,
    /// A segment was created since the last sync: its directory entry needs one too.
    directory_changed: bool,
    poisoned: Option<String>,
    closed: bool,
}

/// The log's durable time, shared by the appender, the sync thread and the waiters.
pub struct Durability {
    dir: PathBuf,
    state: Mutex<SyncState>,
    /// Wakes the sync thread (something appended) and the waiters (durable advanced).
    changed: Condvar,
    /// The durable upper and, once the log takes no more, why (failed or closed):
    /// for waiters on an async runtime.
    watch: tokio::sync::watch::Sender<(u64, Option<String>)>,
}

impl Durability {
    /// Blocks until every record up to `time` is on disk.
    pub fn wait(&self, time: u64) -> Result<(), LogError> {
        let mut state = self.state.lock().expect("log state");
        loop {
            if let Some(why) = &state.poisoned {
                return Err(LogError::Poisoned(why.clone()));
            }
            if state.durable > time {
                return Ok(());
            }
            if state.closed && state.durable == state.appended {
                return Err(LogError::Poisoned("the input log was closed".into()));
            }
            state = self.changed.wait(state).expect("log state");
        }
    }

    /// Waits until every record up to `time` is on disk, without blocking a thread.
    pub async fn wait_async(&self, time: u64) -> Result<(), LogError> {
        let mut watch = self.watch.subscribe();
        let reached = watch.wait_for(|(upper, end)| *upper > time || end.is_some()).await;
        match reached.as_deref() {
            Ok((upper, _)) if *upper > time => Ok(()),
            Ok((_, end)) => Err(LogError::Poisoned(end.clone().unwrap_or_default())),
            Err(_) => Err(LogError::Poisoned("the log was closed".into())),
        }
    }

    /// One past the last time on disk.
    pub fn durable_upper(&self) -> u64 {
        self.state.lock().expect("log state").durable
    }

    fn poison(&self, why: String) {
        let mut state = self.state.lock().expect("log state");
        tracing::error!("the input log failed: {why}");
        let why = state.poisoned.get_or_insert(why).clone();
        self.changed.notify_all();
        self.watch.send_modify(|(_, end)| *end = Some(why));
    }

    /// The sync thread's loop: until closed, syncs what was appended and advances `durable`.
    fn run_sync(&self) {
        loop {
            let (upper, files, directory) = {
                let mut state = self.state.lock().expect("log state");
                while state.appended == state.durable && !state.closed && state.poisoned.is_none() {
                    state = self.changed.wait(state).expect("log state");
                }
                if state.poisoned.is_some() || (state.closed && state.appended == state.durable) {
                    return;
                }
                let current = state.to_sync.last().cloned();
                let mut files = std::mem::take(&mut state.to_sync);
                // The current segment stays on the list: later appends go to it.
                state.to_sync.extend(current);
                files.dedup_by(|a, b| Arc::ptr_eq(a, b));
                (state.appended, files, std::mem::take(&mut state.directory_changed))
            };
            let synced = files
                .iter()
                .try_for_each(|file| file.sync_data())
                .and_then(|()| if directory { File::open(&self.dir).and_then(|d| d.sync_all()) } else { Ok(()) });
            if let Err(e) = synced {
                self.poison(format!("syncing {}: {e}", self.dir.display()));
                return;
            }
            let mut state = self.state.lock().expect("log state");
            state.durable = state.durable.max(upper);
            self.changed.notify_all();
            self.watch.send_modify(|(upper, _)| *upper = state.durable);
        }
    }
}

impl Replayed {
    /// Appends continue at `time` at the earliest (after a checkpoint of `time - 1`
    /// whose records were deleted).
    pub fn continue_at_least(&mut self, time: u64) {
        self.next_time = self.next_time.max(time);
    }
}

/// Deletes the segments of `dir` whose every record is at or before `through`: those
/// followed by a segment that starts at or before `through + 1`.
pub fn delete_through(dir: &Path, through: u64) -> Result<usize, LogError> {
    let segments = segments(dir)?;
    let mut deleted = 0;
    for pair in segments.windows(2) {
        let ((_, path), (next_first, _)) = (&pair[0], &pair[1]);
        if *next_first > through + 1 {
            break;
        }
        std::fs::remove_file(path).map_err(io_error(path))?;
        deleted += 1;
    }
    Ok(deleted)
}

/// Appends records; lives on the ingest thread.
pub struct LogWriter {
    dir: PathBuf,
    file: Arc<File>,
    /// Bytes in the current segment.
    written: u64,
    /// Bytes appended since this writer opened.
    appended_bytes: u64,

    next_time: u64,
    buffer: Vec<u8>,
    durability: Arc<Durability>,
    sync_thread: Option<std::thread::JoinHandle<()>>,
}

impl LogWriter {
    /// Opens the log in `dir` (created if missing) for appending after what
    /// [`replay`] found there, and starts its sync thread.
    pub fn open(dir: &Path, replayed: &Replayed) -> Result<LogWriter, LogError> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let (file, written, directory_changed) = match &replayed.last_segment {
            Some((_, path, len)) if *len < SEGMENT_BYTES => {
                let file = OpenOptions::new().append(true).open(path).map_err(io_error(path))?;
                (file, *len, false)
            }
            _ => (new_segment(dir, replayed.next_time)?, MAGIC.len() as u64, true),
        };
        let file = Arc::new(file);
        let durability = Arc::new(Durability {
            dir: dir.to_owned(),
            state: Mutex::new(SyncState {
                appended: replayed.next_time,
                durable: replayed.next_time,
                to_sync: vec![file.clone()],
                directory_changed,
                poisoned: None,
                closed: false,
            }),
            changed: Condvar::new(),
            watch: tokio::sync::watch::channel((replayed.next_time, None)).0,
        });
        let syncing = durability.clone();
        let sync_thread = std::thread::Builder::new()
            .name("diffmart-log-sync".into())
            .spawn(move || syncing.run_sync())
            .map_err(io_error(dir))?;
        Ok(LogWriter {
            dir: dir.to_owned(),
            file,
            written,
            appended_bytes: 0,
            next_time: replayed.next_time,
            buffer: Vec::with_capacity(1 << 16),
            durability,
            sync_thread: Some(sync_thread),
        })
    }

    /// What clients wait on for their writes to be on disk.
    pub fn durability(&self) -> Arc<Durability> {
        self.durability.clone()
    }

    /// Appends the record of `time`, which must be after every time appended before.
    /// Returns once it is written, not synced; see [`Durability::wait`].
    pub fn append(&mut self, time: u64, payload: &[u8]) -> Result<(), LogError> {
        assert!(time >= self.next_time, "log times increase: {time} after {}", self.next_time);
        if let Some(why) = &self.durability.state.lock().expect("log state").poisoned {
            return Err(LogError::Poisoned(why.clone()));
        }
        let len = MIN_BODY + payload.len();
        if len > MAX_BODY {
            return Err(LogError::Poisoned(format!("a record of {len} bytes is larger than the log takes")));
        }
        if self.written >= SEGMENT_BYTES {
            self.roll(time)?;
        }
        self.buffer.clear();
        self.buffer.extend_from_slice(&(len as u32).to_le_bytes());
        self.buffer.extend_from_slice(&[0; 4]);
        self.buffer.extend_from_slice(&time.to_le_bytes());
        self.buffer.extend_from_slice(payload);
        let crc = crc32fast::hash(&self.buffer[RECORD_HEADER..]);
        self.buffer[4..8].copy_from_slice(&crc.to_le_bytes());
        if let Err(e) = (&*self.file).write_all(&self.buffer) {
            let why = format!("writing to {}: {e}", self.dir.display());
            self.durability.poison(why.clone());
            return Err(LogError::Poisoned(why));
        }
        self.written += self.buffer.len() as u64;
        self.appended_bytes += self.buffer.len() as u64;
        self.next_time = time + 1;
        let mut state = self.durability.state.lock().expect("log state");
        state.appended = self.next_time;
        self.durability.changed.notify_all();
        Ok(())
    }

    /// Bytes appended since this writer opened.
    pub fn appended_bytes(&self) -> u64 {
        self.appended_bytes
    }

    /// Starts a new segment for the records to come (unless the current one has none),
    /// so that every record up to now can be deleted with its segments once a
    /// checkpoint covers them.
    pub fn start_new_segment(&mut self) -> Result<(), LogError> {
        if self.written > MAGIC.len() as u64 { self.roll(self.next_time) } else { Ok(()) }
    }

    /// Starts a new segment whose first record is `time`'s.
    fn roll(&mut self, time: u64) -> Result<(), LogError> {
        let file = Arc::new(new_segment(&self.dir, time)?);
        let mut state = self.durability.state.lock().expect("log state");
        state.to_sync.push(file.clone());
        state.directory_changed = true;
        drop(state);
        self.file = file;
        self.written = MAGIC.len() as u64;
        Ok(())
    }
}

impl Drop for LogWriter {
    /// Syncs what was appended, then stops the sync thread.
    fn drop(&mut self) {
        self.durability.state.lock().expect("log state").closed = true;
        self.durability.changed.notify_all();
        if let Some(thread) = self.sync_thread.take() {
            let _ = thread.join();
        }
        // Whoever waits for a time never appended waits no more.
        self.durability.watch.send_modify(|(_, end)| {
            end.get_or_insert_with(|| "the input log was closed".into());
        });
    }
}

fn new_segment(dir: &Path, first_time: u64) -> Result<File, LogError> {
    let path = dir.join(segment_name(first_time));
    let mut file = OpenOptions::new().create_new(true).append(true).open(&path).map_err(io_error(&path))?;
    file.write_all(MAGIC).map_err(io_error(&path))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records as (time, payload).
    type Records = Vec<(u64, Vec<u8>)>;

    /// Every record, and the time after the last.
    fn read_all(dir: &Path) -> Result<(Records, u64), LogError> {
        let mut records = Vec::new();
        let replayed = replay(dir, |time, payload| {
            records.push((time, payload.to_vec()));
            Ok(())
        })?;
        Ok((records, replayed.next_time))
    }

    fn write(dir: &Path, times: std::ops::Range<u64>) {
        let replayed = replay(dir, |_, _| Ok(())).unwrap();
        let mut log = LogWriter::open(dir, &replayed).unwrap();
        for time in times {
            log.append(time, format!("batch {time}").as_bytes()).unwrap();
        }
        let durability = log.durability();
        durability.wait(log.next_time - 1).unwrap();
    }

    fn expected(times: std::ops::Range<u64>) -> Records {
        times.map(|t| (t, format!("batch {t}").into_bytes())).collect()
    }

    fn only_segment(dir: &Path) -> PathBuf {
        let segments = segments(dir).unwrap();
        assert_eq!(segments.len(), 1);
        segments[0].1.clone()
    }

    #[test]
    fn records_come_back_in_order_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 0..100);
        write(dir.path(), 100..150);
        assert_eq!(read_all(dir.path()).unwrap(), (expected(0..150), 150));
    }

    #[test]
    fn a_torn_last_record_is_dropped_and_appends_continue_after_it() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 0..10);
        let path = only_segment(dir.path());
        let len = std::fs::metadata(&path).unwrap().len();
        OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 3).unwrap();
        assert_eq!(read_all(dir.path()).unwrap(), (expected(0..9), 9));
        write(dir.path(), 9..12);
        assert_eq!(read_all(dir.path()).unwrap(), (expected(0..12), 12));
    }

    #[test]
    fn a_flipped_byte_before_the_end_stops_start_up_naming_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 0..10);
        let path = only_segment(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        // Inside the third record's payload.
        let record = RECORD_HEADER + MIN_BODY + "batch 0".len();
        let at = MAGIC.len() + 2 * record + RECORD_HEADER + MIN_BODY + 1;
        bytes[at] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let error = read_all(dir.path()).unwrap_err();
        let message = error.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains(&format!("at offset {}:", MAGIC.len() + 2 * record)), "{message}");
        assert!(message.contains("checksum mismatch"), "{message}");
        // Start-up refused, the file is left as it was.
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }

    #[test]
    fn a_bad_header_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 0..3);
        let path = only_segment(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[0] = b'x';
        std::fs::write(&path, &bytes).unwrap();
        assert!(read_all(dir.path()).unwrap_err().to_string().contains("bad header"));
    }

    #[test]
    fn segments_roll_and_replay_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let replayed = replay(dir.path(), |_, _| Ok(())).unwrap();
        let mut log = LogWriter::open(dir.path(), &replayed).unwrap();
        let payload = vec![7u8; 1 << 20];
        for time in 0..70 {
            log.append(time, &payload).unwrap();
        }
        log.durability().wait(69).unwrap();
        drop(log);
        assert_eq!(segments(dir.path()).unwrap().len(), 2);
        let mut times = Vec::new();
        let replayed = replay(dir.path(), |time, p| {
            assert_eq!(p.len(), 1 << 20);
            times.push(time);
            Ok(())
        })
        .unwrap();
        assert_eq!(times, (0..70).collect::<Vec<_>>());
        assert_eq!(replayed.next_time, 70);
    }

    #[test]
    fn durable_waits_for_the_sync() {
        let dir = tempfile::tempdir().unwrap();
        let replayed = replay(dir.path(), |_, _| Ok(())).unwrap();
        let mut log = LogWriter::open(dir.path(), &replayed).unwrap();
        let durability = log.durability();
        let waiter = std::thread::spawn(move || durability.wait(4));
        for time in 0..5 {
            log.append(time, b"x").unwrap();
        }
        waiter.join().unwrap().unwrap();
        assert!(log.durability().durable_upper() >= 5);
    }
}
