//! `kubectl-meshtop`: meshtop under the name kubectl looks for, so that
//! `kubectl meshtop attach …` works as a kubectl plugin.

use std::process::ExitCode;

fn main() -> ExitCode {
    meshtop::cli::main()
}
