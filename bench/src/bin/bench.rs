//! bench: tcpstate under a loopback connection storm, side by side with no
//! tracer, a counting floor and bpftrace. Prints tables on stdout (progress
//! on stderr) and writes bench/results.json. Run as root.

use std::process::ExitCode;

use clap::Parser;
use tcpstate_bench::runner::{self, Options};

#[derive(Parser, Debug)]
#[command(name = "bench", about = "Connection-storm benchmark of tcpstate against its peers")]
struct Cli {
    #[command(flatten)]
    opts: Options,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match runner::run(&cli.opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
