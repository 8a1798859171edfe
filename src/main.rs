//! tcpstate: see README.md. Errors end the program with one line on stderr.

use std::process::ExitCode;

use clap::Parser;
use tcpstate::cli::{Cli, Command};
use tcpstate::{app, plot};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Some(Command::Plot(args)) => plot::run(args),
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
