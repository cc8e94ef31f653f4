//! `meshtop`: the command line; the work is in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    meshtop::cli::main()
}
