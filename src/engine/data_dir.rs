//! The data directory (`--data-dir`): the input log (`log/`), checkpoints
//! (`checkpoints/`), the description of the
//! input relations the log was written with (`inputs`), small state files of the
//! sources (the generator's settings), and a lock (`LOCK`) that keeps a second
//! diffmart out.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Catalog;

/// An open data directory, locked for this process until dropped.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    /// Holds the lock (released by the kernel when the process ends, however it ends).
    _lock: File,
    /// Log appended since the last checkpoint that makes the next one due (at least).
    checkpoint_every_bytes: u64,
    checkpoint_at_stop: bool,
}

impl DataDir {
    /// Opens (creating it if missing) and locks `path`, and checks that its log was
    /// written with the input relations of `catalog`.
    pub fn open(path: &Path, catalog: &Catalog) -> anyhow::Result<DataDir> {
        std::fs::create_dir_all(path).with_context(|| format!("creating the data directory {}", path.display()))?;
        let lock_path = path.join("LOCK");
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = lock.read_to_string(&mut holder);
                let holder = holder.trim();
                let holder = if holder.is_empty() { String::new() } else { format!(" (pid {holder})") };
                anyhow::bail!(
                    "the data directory {} is in use by another diffmart{holder}; stop it, or give this one another --data-dir",
                    path.display()
                );
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", lock_path.display()));
            }
        }
        lock.set_len(0).and_then(|()| writeln!(lock, "{}", std::process::id())).ok();
        let dir = DataDir {
            path: path.to_owned(),
            _lock: lock,
            checkpoint_every_bytes: super::checkpoint::DEFAULT_EVERY_BYTES,
            checkpoint_at_stop: true,
        };
        dir.check_inputs(catalog)?;
        std::fs::create_dir_all(dir.log_dir()).with_context(|| format!("creating {}", dir.log_dir().display()))?;
        Ok(dir)
    }

    /// Takes a checkpoint once `bytes` of log (at least; at least the last
    /// checkpoint's size) have been appended since the last one.
    pub fn with_checkpoints_every(mut self, bytes: u64) -> DataDir {
        self.checkpoint_every_bytes = bytes;
        self
    }

    pub fn checkpoint_every_bytes(&self) -> u64 {
        self.checkpoint_every_bytes
    }

    /// Whether a clean stop takes a checkpoint of what the log holds after the
    /// newest one (the default), so the next start replays nothing.
    pub fn with_checkpoint_at_stop(mut self, at_stop: bool) -> DataDir {
        self.checkpoint_at_stop = at_stop;
        self
    }

    pub fn checkpoint_at_stop(&self) -> bool {
        self.checkpoint_at_stop
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the input log's segments are.
    pub fn log_dir(&self) -> PathBuf {
        self.path.join("log")
    }

    /// Where the checkpoints are (see `engine::checkpoint`).
    pub fn checkpoint_dir(&self) -> PathBuf {
        self.path.join("checkpoints")
    }

    /// The log names input relations by id: it can only be read with the input
    /// relations it was written with (views may change, they are computed again).
    fn check_inputs(&self, catalog: &Catalog) -> anyhow::Result<()> {
        let described = describe_inputs(catalog);
        let path = self.path.join("inputs");
        match std::fs::read_to_string(&path) {
            Ok(found) if found == described => Ok(()),
            Ok(found) => {
                let (ours, theirs) = found
                    .lines()
                    .zip(described.lines())
                    .find(|(theirs, ours)| theirs != ours)
                    .map(|(theirs, ours)| (ours.to_string(), theirs.to_string()))
                    .unwrap_or_else(|| {
                        (format!("{} lines", described.lines().count()), format!("{} lines", found.lines().count()))
                    });
                anyhow::bail!(
                    "the data directory {} was written by a diffmart with other input relations ({} has \"{theirs}\" where this one has \"{ours}\"); \
                     start this version on a new --data-dir, or run the version that wrote it",
                    self.path.display(),
                    path.display()
                )
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => write_atomically(&path, described.as_bytes()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// The state file `name`, if it was written.
    pub fn read_state<T: DeserializeOwned>(&self, name: &str) -> anyhow::Result<Option<T>> {
        let path = self.path.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map(Some).with_context(|| format!("reading {}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Replaces the state file `name`, atomically and durably.
    pub fn write_state<T: Serialize>(&self, name: &str, state: &T) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec_pretty(state)?;
        write_atomically(&self.path.join(name), &bytes)
    }
}

/// One line per input relation: id, name, kind and columns with types.
fn describe_inputs(catalog: &Catalog) -> String {
    let mut described = String::new();
    for (id, spec) in catalog.iter().filter(|(id, _)| catalog.is_input(*id)) {
        let columns: Vec<String> = spec
            .columns
            .iter()
            .map(|c| format!("{} {:?}{}", c.name, c.ty, if c.nullable { "" } else { " not null" }))
            .collect();
        described.push_str(&format!("{id} {} {:?} ({})\n", spec.name, spec.kind, columns.join(", ")));
    }
    described
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new
/// one: a temporary file, synced, renamed over `path`, then the directory synced.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_atomically_with(path, |file| file.write_all(bytes))
}

/// [`write_atomically`] of what `write` writes, through a buffer.
pub fn write_atomically_with(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let written = File::create(&tmp).and_then(|file| {
        let mut buffered = BufWriter::with_capacity(1 << 20, file);
        write(&mut buffered)?;
        buffered.into_inner().map_err(|e| e.into_error())?.sync_all()
    });
    written.with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("syncing {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_open_of_a_locked_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::all_pipelines();
        let first = DataDir::open(dir.path(), &catalog).unwrap();
        let refused = DataDir::open(dir.path(), &catalog).unwrap_err().to_string();
        assert!(refused.contains("is in use by another diffmart"), "{refused}");
        assert!(refused.contains(&std::process::id().to_string()), "{refused}");
        drop(first);
        DataDir::open(dir.path(), &catalog).expect("the lock goes with the first");
    }

    #[test]
    fn other_input_relations_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::all_pipelines();
        drop(DataDir::open(dir.path(), &catalog).unwrap());
        let inputs = dir.path().join("inputs");
        let changed = std::fs::read_to_string(&inputs).unwrap().replacen(" web_clicks ", " web_klicks ", 1);
        std::fs::write(&inputs, changed).unwrap();
        let refused = DataDir::open(dir.path(), &catalog).unwrap_err().to_string();
        assert!(refused.contains("other input relations") && refused.contains("web_klicks"), "{refused}");
    }

    #[test]
    fn state_files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::open(dir.path(), &Catalog::all_pipelines()).unwrap();
        assert_eq!(data.read_state::<Vec<u64>>("state").unwrap(), None);
        data.write_state("state", &vec![1u64, 2]).unwrap();
        assert_eq!(data.read_state::<Vec<u64>>("state").unwrap(), Some(vec![1, 2]));
    }
}
