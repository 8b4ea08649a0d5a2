//! Checkpoints: the state at one logical time, so the input log before it can go.
//!
//! A checkpoint at time `T` holds every input relation's rows as the store had them
//! at `T` (tables' rows and the events retention keeps), the state of compute's
//! history-dependent operators at `T` (`diffmart_dataflows::checkpoint`), and every
//! source's position through `T`. Start-up loads the newest checkpoint into the
//! store and compute, then replays the log's records after `T` one by one, exactly as
//! a start from the whole log would. The log's segments that end at or before `T`
//! and older checkpoints are deleted once the checkpoint is on disk, so restart time
//! and disk use follow the retained state, not how long the server has run.
//!
//! # Format
//!
//! `checkpoints/ckpt-<T, 20 digits>.bin`: [`MAGIC`], then the body (bincode of
//! [`CheckpointFile`]), then the CRC-32 of the body. Written to a temporary file,
//! synced, renamed, and the directory synced: a crash leaves the previous checkpoint
//! and the log whole.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::Context;
use bincode::Options;
use diffmart_dataflows::checkpoint::{Checkpoint, STATE_FORMAT};
use diffmart_dataflows::{PipelineConfig, Time};
use serde::{Deserialize, Serialize};

use super::SourcePosition;
use super::changes::PackedChanges;
use super::log::{self, LogWriter};
use super::recovery::SourcePositions;
use super::store::{Snapshot, Store};
use super::{Catalog, data_dir};
use crate::compute::{Compute, RelationId};

/// Each checkpoint file's first bytes: the format and its version.
const MAGIC: &[u8; 8] = b"dmckpt\0\x01";

/// What a checkpoint file holds.
#[derive(Serialize, Deserialize)]
struct CheckpointFile {
    /// The operators' state format it was written with ([`STATE_FORMAT`]).
    state_format: u32,
    /// The pipelines' options it was taken with: the operators' state depends on them.
    pipelines: String,
    /// Every input relation's rows at `through`, as [`PackedChanges::encode`] writes them.
    #[serde(with = "serde_bytes")]
    inputs: Vec<u8>,
    /// Where each source had got through `through`.
    positions: SourcePositions,
    /// The history-dependent operators' state at `through`.
    compute: Checkpoint,
}

/// A checkpoint read back.
pub struct Loaded {
    pub path: PathBuf,
    pub through: Time,
    /// Every input relation's rows at `through`.
    pub inputs: PackedChanges,
    pub positions: SourcePositions,
    pub compute: Arc<Checkpoint>,
}

/// How the pipelines' options read in a checkpoint: those the operators' state depends on.
fn describe_pipelines(config: &PipelineConfig) -> String {
    config.state_options()
}

fn file_name(through: Time) -> String {
    format!("ckpt-{through:020}.bin")
}

/// The checkpoints in `dir`, oldest first, by time.
fn checkpoints(dir: &Path) -> anyhow::Result<Vec<(Time, PathBuf)>> {
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(time) = name.strip_prefix("ckpt-").and_then(|n| n.strip_suffix(".bin")) else { continue };
        let Ok(time) = time.parse::<Time>() else { continue };
        found.push((time, entry.path()));
    }
    found.sort();
    Ok(found)
}

/// Writes the checkpoint of `through` into `dir`: the input relations as `snapshot`
/// (whose upper is `through + 1`) shows them, `compute`'s operators and `positions`.
/// Returns its path and size.
pub fn write(
    dir: &Path,
    inputs: &[RelationId],
    snapshot: &Snapshot,
    compute: Checkpoint,
    positions: SourcePositions,
    pipelines: &PipelineConfig,
) -> anyhow::Result<(PathBuf, u64)> {
    let through = compute.through;
    assert_eq!(snapshot.upper, through + 1, "a checkpoint's inputs are the store's at its time");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut packed = Vec::new();
    snapshot.pack_rows(inputs.iter().copied()).encode(&mut packed);
    let file = CheckpointFile {
        state_format: STATE_FORMAT,
        pipelines: describe_pipelines(pipelines),
        inputs: packed,
        positions,
        compute,
    };
    let path = dir.join(file_name(through));
    let mut size = 0;
    // Streamed: the file is never a second copy of the state in memory.
    data_dir::write_atomically_with(&path, |out| {
        out.write_all(MAGIC)?;
        let mut body = Crc32::new(&mut *out);
        bincode::serialize_into(&mut body, &file).map_err(std::io::Error::other)?;
        let (crc, body_size) = (body.hasher.finalize(), body.bytes);
        out.write_all(&crc.to_le_bytes())?;
        size = MAGIC.len() as u64 + body_size + 4;
        Ok(())
    })?;
    Ok((path, size))
}

/// Passes bytes through to or from `inner`, with their CRC-32 and count.
struct Crc32<T> {
    inner: T,
    hasher: crc32fast::Hasher,
    bytes: u64,
}

impl<T> Crc32<T> {
    fn new(inner: T) -> Crc32<T> {
        Crc32 { inner, hasher: crc32fast::Hasher::new(), bytes: 0 }
    }
}

impl<W: Write> Write for Crc32<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Crc32<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.hasher.update(&buf[..read]);
        self.bytes += read as u64;
        Ok(read)
    }
}

/// Deletes the checkpoints in `dir` older than `through` (after the one of `through`
/// is on disk), and the temporary files of checkpoints a crash cut short: only the
/// checkpoint thread writes them, and it has finished the one of `through`.
pub fn delete_older(dir: &Path, through: Time) -> anyhow::Result<()> {
    for (time, path) in checkpoints(dir)? {
        if time < through {
            std::fs::remove_file(&path).with_context(|| format!("deleting {}", path.display()))?;
        }
    }
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let path = entry.with_context(|| format!("reading {}", dir.display()))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with("ckpt-") && name.ends_with(".tmp") {
            std::fs::remove_file(&path).with_context(|| format!("deleting {}", path.display()))?;
        }
    }
    Ok(())
}

/// The newest checkpoint in `dir` (of a time before `before`, if given: where Kafka
/// sinks resume), checked against the input relations of `catalog`, the pipelines'
/// options and the operators `operators` a dataflow registers. A checkpoint that
/// cannot be used is an error: the log before it may be gone.
pub fn load_newest(
    dir: &Path,
    catalog: &Catalog,
    pipelines: &PipelineConfig,
    operators: impl FnOnce() -> Vec<&'static str>,
    before: Option<Time>,
) -> anyhow::Result<Option<Loaded>> {
    let mut found = checkpoints(dir)?.into_iter().filter(|(time, _)| before.is_none_or(|before| *time < before));
    let Some((through, path)) = found.next_back() else { return Ok(None) };
    let unusable = |why: String| {
        anyhow::anyhow!(
            "{} cannot be used: {why}; the input log before it is gone, so start with the options it was \
             written with, restore the data directory from a backup, or start on a new --data-dir",
            path.display()
        )
    };
    let file = read_file(&path).map_err(|e| match e {
        Unreadable::Io(e) => anyhow::Error::new(e).context(format!("reading {}", path.display())),
        Unreadable::Invalid(why) => unusable(why),
    })?;
    if file.state_format != STATE_FORMAT {
        return Err(unusable(format!(
            "it holds operator state of format {}, this diffmart reads format {STATE_FORMAT}",
            file.state_format
        )));
    }
    let ours = describe_pipelines(pipelines);
    if file.pipelines != ours {
        return Err(unusable(format!("it was taken with pipeline options {}, this start has {ours}", file.pipelines)));
    }
    let mut saved: Vec<&str> = file.compute.states.keys().map(String::as_str).collect();
    let mut registered = operators();
    saved.sort_unstable();
    registered.sort_unstable();
    if saved != registered {
        return Err(unusable(format!("it holds the state of operators {saved:?}, this dataflow has {registered:?}")));
    }
    if file.compute.through != through {
        return Err(unusable(format!("its operators' state is of time {}", file.compute.through)));
    }
    let inputs = catalog.iter().filter(|(id, _)| catalog.is_input(*id)).count();
    let (packed, rest) = PackedChanges::decode(&file.inputs, inputs).map_err(unusable)?;
    if !rest.is_empty() {
        return Err(unusable(format!("{} bytes after its input relations", rest.len())));
    }
    Ok(Some(Loaded { path, through, inputs: packed, positions: file.positions, compute: Arc::new(file.compute) }))
}

enum Unreadable {
    Io(std::io::Error),
    /// Not a checkpoint this diffmart reads, or corrupt: why.
    Invalid(String),
}

/// Reads and checks the checkpoint file at `path`, streamed: the body is decoded as it
/// is read, and its checksum compared at the end.
fn read_file(path: &Path) -> Result<CheckpointFile, Unreadable> {
    let file = std::fs::File::open(path).map_err(Unreadable::Io)?;
    let size = file.metadata().map_err(Unreadable::Io)?.len();
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut magic = [0u8; MAGIC.len()];
    if size < (MAGIC.len() + 4) as u64 || reader.read_exact(&mut magic).is_err() || &magic != MAGIC {
        return Err(Unreadable::Invalid("it is not a diffmart checkpoint of this version".into()));
    }
    let body_size = size - MAGIC.len() as u64 - 4;
    let mut body = Crc32::new((&mut reader).take(body_size));
    // Bounded by the body's size: a corrupt length cannot ask for more memory than the file has.
    let decoded = bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes()
        .with_limit(body_size)
        .deserialize_from::<_, CheckpointFile>(&mut body);
    // A corrupt body may decode or not; either way the checksum tells.
    let left = std::io::copy(&mut body, &mut std::io::sink()).map_err(Unreadable::Io)?;
    let Crc32 { hasher, .. } = body;
    let mut crc = [0u8; 4];
    reader.read_exact(&mut crc).map_err(Unreadable::Io)?;
    if hasher.finalize().to_le_bytes() != crc {
        return Err(Unreadable::Invalid("its checksum does not match (the file is corrupt)".into()));
    }
    let file = decoded.map_err(|e| Unreadable::Invalid(format!("it does not decode: {e}")))?;
    if left > 0 {
        return Err(Unreadable::Invalid(format!("{left} bytes after its body")));
    }
    Ok(file)
}

/// The log appended since the last checkpoint that makes the next one due, at least
/// (and at least the last checkpoint's size, so writing checkpoints costs at most
/// as much again as writing the log).
pub const DEFAULT_EVERY_BYTES: u64 = 64 << 20;

/// Takes checkpoints for ingest: decides when one is due, gathers compute's and the
/// store's state at a time between two batches (the only pause), and has a thread of
/// its own write the file and delete what it covers.
pub(super) struct Checkpointer {
    every_bytes: u64,
    /// Every source's position through the last batch logged.
    positions: SourcePositions,
    /// The log's appended bytes when the last checkpoint was taken.
    log_bytes_at_last: u64,
    /// Whether the log holds records after the newest checkpoint.
    log_after_last: bool,
    at_stop: bool,
    status: Arc<Mutex<Status>>,
    jobs: Option<Sender<Job>>,
    writer: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Status {
    writing: bool,
    /// The size of the last checkpoint written.
    last_bytes: u64,
}

/// What the writer thread writes.
struct Job {
    snapshot: Arc<Snapshot>,
    compute: Checkpoint,
    positions: SourcePositions,
    /// How long ingest paused to take it.
    pause: std::time::Duration,
    /// Who waits for it (a checkpoint asked for), told its time or why it failed.
    done: Option<SyncSender<Result<Time, String>>>,
}

/// Settings of a [`Checkpointer`].
pub(super) struct CheckpointSettings {
    pub dir: PathBuf,
    pub log_dir: PathBuf,
    pub every_bytes: u64,
    /// Whether a clean stop takes a checkpoint.
    pub at_stop: bool,
    pub inputs: Vec<RelationId>,
    pub pipelines: PipelineConfig,
    /// With Kafka sinks that resume: every change before it is delivered.
    pub sinks_delivered: Option<Arc<AtomicU64>>,
}

/// After the checkpoint of `written` is on disk, the oldest checkpoint a restart may
/// need (older ones and the log it covers can go): that one, or while Kafka sinks
/// have delivered only the changes before `sinks_delivered`, the newest one before it,
/// which is where they resume (`None`: there is none, keep everything).
fn oldest_needed(dir: &Path, written: Time, sinks_delivered: Option<&AtomicU64>) -> anyhow::Result<Option<Time>> {
    let Some(delivered) = sinks_delivered.map(|d| d.load(Ordering::Acquire)) else { return Ok(Some(written)) };
    if written < delivered {
        return Ok(Some(written));
    }
    Ok(checkpoints(dir)?.into_iter().map(|(time, _)| time).rfind(|time| *time < delivered))
}

impl Checkpointer {
    /// A checkpointer whose sources had got to `positions` (as recovered);
    /// `log_after_last`: whether the log replayed records after the checkpoint.
    pub fn start(
        settings: CheckpointSettings,
        positions: SourcePositions,
        log_after_last: bool,
    ) -> anyhow::Result<Checkpointer> {
        let status = Arc::new(Mutex::new(Status::default()));
        let (jobs, received) = std::sync::mpsc::channel::<Job>();
        let (every_bytes, at_stop) = (settings.every_bytes, settings.at_stop);
        let writer = {
            let status = status.clone();
            let CheckpointSettings { dir, log_dir, inputs, pipelines, sinks_delivered, .. } = settings;
            std::thread::Builder::new()
                .name("diffmart-checkpoint".into())
                .spawn(move || {
                    for job in received {
                        let through = job.compute.through;
                        let started = std::time::Instant::now();
                        let written = write(&dir, &inputs, &job.snapshot, job.compute, job.positions, &pipelines)
                            .and_then(|(path, bytes)| {
                                let segments = match oldest_needed(&dir, through, sinks_delivered.as_deref())? {
                                    Some(kept) => {
                                        delete_older(&dir, kept)?;
                                        log::delete_through(&log_dir, kept)?
                                    }
                                    None => 0,
                                };
                                tracing::info!(
                                    through,
                                    bytes,
                                    segments_deleted = segments,
                                    ingest_paused_seconds = job.pause.as_secs_f64(),
                                    seconds = started.elapsed().as_secs_f64(),
                                    "wrote checkpoint {}",
                                    path.display()
                                );
                                Ok(bytes)
                            });
                        drop(job.snapshot);
                        let mut status = status.lock().unwrap();
                        status.writing = false;
                        let result = match written {
                            Ok(bytes) => {
                                status.last_bytes = bytes;
                                Ok(through)
                            }
                            Err(e) => {
                                // The log still holds everything: nothing is lost, the
                                // next checkpoint tries again.
                                tracing::error!(
                                    "checkpoint of time {through} failed (the log keeps everything): {e:#}"
                                );
                                Err(format!("{e:#}"))
                            }
                        };
                        if let Some(done) = job.done {
                            let _ = done.send(result);
                        }
                    }
                })
                .context("spawning the checkpoint thread")?
        };
        Ok(Checkpointer {
            every_bytes,
            positions,
            log_bytes_at_last: 0,
            log_after_last,
            at_stop,
            status,
            jobs: Some(jobs),
            writer: Some(writer),
        })
    }
}

impl Checkpointer {
    /// Folds the positions logged with a batch of `changes` changes.
    pub fn logged(&mut self, positions: &[SourcePosition], changes: usize) {
        // A record of neither (the first time of every start) is not worth a checkpoint.
        self.log_after_last |= changes > 0 || !positions.is_empty();
        self.positions.extend(positions.iter().cloned());
    }

    /// Whether a clean stop takes a checkpoint: if asked to, and the log holds
    /// records the newest checkpoint does not cover.
    pub fn due_at_stop(&self) -> bool {
        self.at_stop && self.log_after_last
    }

    /// Whether a checkpoint is due, the log having appended `appended_bytes` since it opened.
    pub fn due(&self, appended_bytes: u64) -> bool {
        let status = self.status.lock().unwrap();
        !status.writing && appended_bytes - self.log_bytes_at_last >= self.every_bytes.max(status.last_bytes)
    }

    /// Takes the checkpoint of `through`, the last time ingest sent out (and nothing
    /// after it): waits until compute has computed it and the store shows it, hands
    /// both to the writer thread, and has the log start a new segment. `done` is told
    /// when the checkpoint is on disk and the log it covers deleted.
    pub async fn take(
        &mut self,
        through: Time,
        compute: &Compute,
        store: &Store,
        log: &mut LogWriter,
        done: Option<SyncSender<Result<Time, String>>>,
    ) {
        // Blocks the ingest thread, whose pause this is.
        let paused = std::time::Instant::now();
        let taken = compute.checkpoint(through);
        let taken = match taken {
            Ok(_) if !store.wait_visible(through).await => Err(anyhow::anyhow!("compute shut down")),
            taken => taken,
        };
        let state = match taken {
            Ok(state) => state,
            Err(e) => {
                tracing::warn!("no checkpoint of time {through}: {e:#}");
                if let Some(done) = done {
                    let _ = done.send(Err(format!("{e:#}")));
                }
                return;
            }
        };
        let snapshot = store.snapshot();
        if let Err(e) = log.start_new_segment() {
            // The next append fails the same way and stops the server; this checkpoint
            // would delete nothing.
            tracing::error!("no checkpoint of time {through}: {e}");
            if let Some(done) = done {
                let _ = done.send(Err(e.to_string()));
            }
            return;
        }
        self.log_bytes_at_last = log.appended_bytes();
        self.log_after_last = false;
        self.status.lock().unwrap().writing = true;
        let job = Job { snapshot, compute: state, positions: self.positions.clone(), pause: paused.elapsed(), done };
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(job);
        }
    }
}

impl Drop for Checkpointer {
    /// Finishes the checkpoint being written.
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}
