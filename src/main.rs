use std::process::ExitCode;

// Without `--features system-allocator`, which leaves malloc to heap profilers.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The command is in the library ([`diffmart::server::main`]), compiled once there.
fn main() -> ExitCode {
    diffmart::engine::panics::exit_on_engine_thread_panic();
    // Test builds only: faults injected through the `FAILPOINTS` variable.
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    diffmart::server::main()
}
