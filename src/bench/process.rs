//! What the process costs, read from `/proc`: resident memory and CPU time.
//!
//! The benchmark's own threads are named `bench-…`; their CPU time is left out,
//! so per-event cost is what diffmart's threads (workers, ingest, store, pgwire) spent.

use std::path::Path;

/// Prefix of every thread the benchmark itself starts.
pub const BENCH_THREAD_PREFIX: &str = "bench-";

/// Resident set size now and at its peak, in bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    pub rss: u64,
    pub peak_rss: u64,
}

pub fn memory() -> Memory {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    Memory { rss: field("VmRSS:"), peak_rss: field("VmHWM:") }
}

/// Resets the peak RSS to the current RSS (Linux: `5` into `clear_refs`), so a
/// phase's peak is its own. Best effort: without it the peak covers the whole run.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// CPU time, in nanoseconds, that each of this process's threads other than the
/// benchmark's own has spent so far, by thread id.
pub fn engine_cpu_nanos() -> CpuTimes {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return CpuTimes::default() };
    CpuTimes(
        tasks
            .flatten()
            .map(|task| task.path())
            .filter(|path| !is_bench_thread(path))
            .map(|path| {
                (
                    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                    thread_cpu_nanos(&path),
                )
            })
            .collect(),
    )
}

/// Per-thread CPU times at one moment.
#[derive(Clone, Debug, Default)]
pub struct CpuTimes(std::collections::HashMap<String, u64>);

impl CpuTimes {
    /// CPU time spent between `earlier` and `self` by the threads alive now (threads
    /// that started in between count from zero; threads that ended are not counted).
    pub fn since(&self, earlier: &CpuTimes) -> u64 {
        self.0.iter().map(|(tid, now)| now.saturating_sub(earlier.0.get(tid).copied().unwrap_or(0))).sum()
    }
}

fn is_bench_thread(task: &Path) -> bool {
    std::fs::read_to_string(task.join("comm")).is_ok_and(|name| name.starts_with(BENCH_THREAD_PREFIX))
}

/// `schedstat`'s first field is the time on CPU in nanoseconds; `stat`'s utime and
/// stime (clock ticks, 100 per second on Linux) are the fallback.
fn thread_cpu_nanos(task: &Path) -> u64 {
    if let Some(nanos) = std::fs::read_to_string(task.join("schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
    {
        return nanos;
    }
    let stat = std::fs::read_to_string(task.join("stat")).unwrap_or_default();
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) * 10_000_000
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_its_own_memory_and_cpu() {
        let memory = super::memory();
        assert!(memory.rss > 0 && memory.peak_rss >= memory.rss, "{memory:?}");
        let before = super::engine_cpu_nanos();
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(super::engine_cpu_nanos().since(&before) > 0);
    }
}
