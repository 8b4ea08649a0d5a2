//! What one client may take from the server: connections ([`connections`]), time and
//! cancel requests ([`statements`]), query memory ([`session_runtime`]) and the rows of
//! one write ([`write_rows`]).

pub mod connections;
pub mod statements;
pub mod write_rows;

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use datafusion::common::Result;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryPool, TrackConsumersPool, UnboundedMemoryPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};

/// The limits `diffmart` starts with; see the flags of the same names in `cli.rs`.
#[derive(Debug, Clone)]
pub struct SqlLimits {
    /// Postgres clients served at once; the next one is refused with 53300.
    pub max_connections: usize,
    /// A statement's longest run unless its session sets `statement_timeout`.
    pub statement_timeout: Option<Duration>,
    /// Memory DataFusion's operators may reserve for one statement, in bytes.
    pub query_memory_limit: Option<usize>,
    /// Rows one INSERT may write.
    pub max_write_rows: u64,
    /// Changes that may wait for one SUBSCRIBE before the store drops it.
    pub subscribe_max_pending_changes: usize,
}

pub const DEFAULT_MAX_CONNECTIONS: u32 = 100;
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(5 * 60);
pub const DEFAULT_QUERY_MEMORY_MIB: u64 = 1024;
pub const DEFAULT_MAX_WRITE_ROWS: u64 = 1_000_000;
pub const DEFAULT_SUBSCRIBE_MAX_PENDING_CHANGES: usize = 100_000;

impl Default for SqlLimits {
    fn default() -> SqlLimits {
        SqlLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS as usize,
            statement_timeout: Some(DEFAULT_STATEMENT_TIMEOUT),
            query_memory_limit: Some((DEFAULT_QUERY_MEMORY_MIB << 20) as usize),
            max_write_rows: DEFAULT_MAX_WRITE_ROWS,
            subscribe_max_pending_changes: DEFAULT_SUBSCRIBE_MAX_PENDING_CHANGES,
        }
    }
}

/// The runtime every session's runtime derives from: spilling to disk is off, so a
/// query past its memory limit fails (53200) instead of filling the server's disk.
pub fn server_runtime(base: &RuntimeEnv) -> Result<Arc<RuntimeEnv>> {
    RuntimeEnvBuilder::from_runtime_env(base)
        .with_disk_manager_builder(DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled))
        .build_arc()
}

/// One session's runtime, with a memory pool of its own: a session runs one statement
/// at a time, so the pool's limit is the limit of each statement (an open cursor keeps
/// what its query reserved until it is closed).
pub fn session_runtime(server: &RuntimeEnv, limit: Option<usize>) -> Result<Arc<RuntimeEnv>> {
    let pool: Arc<dyn MemoryPool> = match limit {
        // Naming the largest consumers in the error tells the client which operator ran out.
        Some(bytes) => Arc::new(TrackConsumersPool::new(GreedyMemoryPool::new(bytes), NonZeroUsize::new(3).unwrap())),
        None => Arc::new(UnboundedMemoryPool::default()),
    };
    RuntimeEnvBuilder::from_runtime_env(server).with_memory_pool(pool).build_arc()
}

/// A `statement_timeout` as PostgreSQL reads one: a number with an optional unit
/// (`us`, `ms`, `s`, `min`, `h`, `d`; none means milliseconds), quoted or not.
/// Zero turns the timeout off (`None`).
pub fn parse_timeout(text: &str) -> std::result::Result<Option<Duration>, String> {
    let trimmed = text.trim().trim_matches(|c| c == '\'' || c == '"').trim();
    let split = trimmed.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let invalid = || format!("invalid value for statement_timeout: {text:?} (e.g. 30s, 500ms, 5min, 0 for none)");
    let amount: f64 = number.parse().map_err(|_| invalid())?;
    let millis_per_unit = match unit.trim() {
        "" | "ms" => 1.0,
        "us" => 0.001,
        "s" => 1_000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return Err(invalid()),
    };
    let millis = amount * millis_per_unit;
    if !millis.is_finite() || millis < 0.0 || millis > i32::MAX as f64 {
        return Err(invalid());
    }
    Ok((millis >= 1.0).then(|| Duration::from_millis(millis as u64)).or_else(|| {
        // PostgreSQL rounds a positive value under a millisecond up to one.
        (millis > 0.0).then_some(Duration::from_millis(1))
    }))
}

#[cfg(test)]
mod tests {
    use super::parse_timeout;
    use std::time::Duration;

    #[test]
    fn timeouts_read_like_postgresql() {
        assert_eq!(parse_timeout("0"), Ok(None));
        assert_eq!(parse_timeout("1500"), Ok(Some(Duration::from_millis(1500))));
        assert_eq!(parse_timeout("'2s'"), Ok(Some(Duration::from_secs(2))));
        assert_eq!(parse_timeout("5min"), Ok(Some(Duration::from_secs(300))));
        assert_eq!(parse_timeout("250ms"), Ok(Some(Duration::from_millis(250))));
        assert_eq!(parse_timeout("1h"), Ok(Some(Duration::from_secs(3600))));
        assert!(parse_timeout("soon").is_err());
        assert!(parse_timeout("-1").is_err());
        assert!(parse_timeout("3 weeks").is_err());
    }
}
