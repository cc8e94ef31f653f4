//! `meshtop`: parses the command line, sets up logging and runs the command.

use std::io::IsTerminal;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match meshtop::cli::parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    // The sidecar logs what it does; the interactive commands stay quiet
    // unless something is wrong, so logs never draw over the UI.
    let default_level = match cli.command {
        meshtop::cli::Command::Proxy(_) => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    meshtop::cli::run(cli)
}
