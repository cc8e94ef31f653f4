//! What the benchmark helpers share.

use std::process::ExitCode;

/// A current-thread runtime (each helper is pinned to one core), or the
/// exit code after saying why there is none.
pub fn runtime(program: &str) -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| {
            eprintln!("{program}: cannot start the runtime: {err}");
            ExitCode::FAILURE
        })
}
