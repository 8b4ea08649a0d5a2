//! The runtime client connections run on, below ingestion's priority.

/// Client threads' nice value, unless `--client-nice` says otherwise: the lowest
/// priority. At 50,000 events/s with readers running back to back on both cores,
/// 0 tripled ingestion's p99 freshness, 10 made it ×1.7, 19 ×1.1–1.5 (docs/benchmarks.md,
/// #clients-at-a-lower-priority).
pub const DEFAULT_CLIENT_NICE: u8 = 19;

/// A runtime for the threads that serve clients, each at nice value `nice`.
///
/// A query parses, plans, converts a snapshot to Arrow and encodes its rows on
/// these threads; a full scan of a large view is tens of milliseconds of CPU. On a
/// machine whose cores ingestion keeps busy, a lower priority makes the kernel run
/// the timely workers, the store and the sources first, so clients take the CPU
/// that ingestion leaves and reads wait instead of ingestion. Linux's nice value is
/// per thread; elsewhere this only names the threads.
pub fn client_runtime(name: &str, worker_threads: Option<usize>, nice: u8) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = worker_threads {
        builder.worker_threads(threads);
    }
    builder.thread_name(name).enable_all();
    if nice > 0 {
        builder.on_thread_start(move || lower_this_threads_priority(nice));
    }
    Ok(builder.build()?)
}

#[cfg(target_os = "linux")]
fn lower_this_threads_priority(nice: u8) {
    // SAFETY: plain system calls on the calling thread; raising one's own nice
    // value needs no privilege.
    let (tid, result) = unsafe {
        let tid = libc::gettid();
        (tid, libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, libc::c_int::from(nice)))
    };
    if result != 0 {
        tracing::warn!(tid, nice, error = %std::io::Error::last_os_error(), "cannot lower a client thread's priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_this_threads_priority(_nice: u8) {}
