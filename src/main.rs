//! tcpstate: see README.md. Errors end the program with one line on stderr.

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;
use tcpstate::cli::{Cli, Command};
use tcpstate::{app, docs};

fn main() -> ExitCode {
    let cli = match Cli::try_parse().and_then(Cli::checked) {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => e.exit(),
        Err(e) => {
            eprintln!("tcpstate: {} (see tcpstate --help)", one_line(&e.to_string()));
            return ExitCode::from(2);
        }
    };
    let result = match &cli.command {
        #[cfg(feature = "plot")]
        Some(Command::Plot(args)) => tcpstate::plot::run(args),
        Some(Command::Completions { shell }) => docs::completions(*shell),
        Some(Command::Man) => docs::man_page(),
        None => app::run(&cli.trace),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if app::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tcpstate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// clap's multi-line usage error folded into one line: its message, without
/// the usage block and the "try --help" footer.
fn one_line(rendered: &str) -> String {
    rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
        .collect::<Vec<_>>()
        .join(" ")
        .trim_start_matches("error: ")
        .to_string()
}
