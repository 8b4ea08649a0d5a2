use std::process::ExitCode;

// Without `--features system-allocator`, which leaves malloc to heap profilers.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The command is in the library ([`diffmart::server::main`]), compiled once there.
fn main() -> ExitCode {
    #[cfg(not(feature = "system-allocator"))]
    return_freed_memory_at_once();
    diffmart::server::main()
}

/// mimalloc keeps memory it freed for a second (`purge_delay`, 1000 ms) before it
/// gives it back to the OS. Merging arrangements and replacing snapshots free and
/// allocate in bursts, so that second held ~60 MB more at the peak of 24 hours of
/// events (README, Benchmarks, item 26), with neither CPU per event nor freshness
/// measurably better for it. `MIMALLOC_PURGE_DELAY` still decides when set.
#[cfg(not(feature = "system-allocator"))]
fn return_freed_memory_at_once() {
    /// `mi_option_purge_delay` in mimalloc 3's `mimalloc.h`; the Rust bindings do not name it.
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets an integer option; mimalloc reads its options at every purge.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 0) };
    }
}
