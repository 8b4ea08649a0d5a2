//! A panic in an engine thread ends the process.
//!
//! The engine's threads depend on each other: when the store, ingest, a timely
//! worker, a source, the log's sync thread, the checkpoint writer or the Kafka sink
//! thread dies, the others go on with nobody to answer them, and the server keeps
//! serving its last snapshot while writes wait forever. Exiting instead lets a
//! supervisor restart the server, which recovers everything acknowledged from its
//! data directory. A panic on a thread that serves clients (one query's bug) only
//! ends that client's task.
//!
//! Threads are told apart by name: every engine thread is named `diffmart-…`
//! (timely's own are `timely:…`), the client runtime's threads `diffmart-client…`.

use std::panic::PanicHookInfo;

/// The exit code of a process stopped by an engine thread's panic (`EX_SOFTWARE`).
pub const ENGINE_PANIC_EXIT_CODE: i32 = 70;

/// Prefix of the client runtime's thread names (pgwire and HTTP connections).
const CLIENT_THREADS: &str = "diffmart-client";

/// Whether a panic on the thread named `name` must end the process.
pub fn is_engine_thread(name: &str) -> bool {
    (name.starts_with("diffmart-") && !name.starts_with(CLIENT_THREADS)) || name.starts_with("timely:")
}

/// Installs the panic hook: a panic on an engine thread logs one line (the thread,
/// the message, where) and exits with [`ENGINE_PANIC_EXIT_CODE`]; other panics are
/// reported as before. Call once, before any engine thread starts.
pub fn exit_on_engine_thread_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("");
        if !is_engine_thread(name) {
            report(info);
            return;
        }
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        tracing::error!(
            thread = name,
            at = %location,
            "engine thread {name} panicked: {}; stopping the server (exit code {ENGINE_PANIC_EXIT_CODE})",
            message(info)
        );
        let backtrace = std::backtrace::Backtrace::capture();
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            eprintln!("{backtrace}");
        }
        std::process::exit(ENGINE_PANIC_EXIT_CODE);
    }));
}

/// The panic's message, when it is text (as `panic!` and `expect` make it).
fn message(info: &PanicHookInfo<'_>) -> String {
    let payload = info.payload();
    match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
        (Some(text), _) => text.to_string(),
        (_, Some(text)) => text.clone(),
        _ => "(a panic without a message)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_threads_are_told_from_client_threads() {
        for name in [
            "diffmart-store",
            "diffmart-ingest",
            "diffmart-log-sync",
            "diffmart-checkpoint",
            "diffmart-generator",
            "diffmart-kafka-0",
            "diffmart-kafka-sink",
            "diffmart-sources",
            "timely:work-1",
            "timely:send-0",
        ] {
            assert!(is_engine_thread(name), "{name}");
        }
        for name in ["diffmart-client", "main", "tokio-runtime-worker", "bench-driver", ""] {
            assert!(!is_engine_thread(name), "{name}");
        }
    }
}
