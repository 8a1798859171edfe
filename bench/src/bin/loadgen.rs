//! loadgen: a bounded TCP connection storm on loopback, in a fresh network
//! namespace, reporting the exact transitions it caused as JSON on stdout.
//! Exit status 0 only when every connection completed.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use tcpstate_bench::loadgen::{self, netns, Mode};

#[derive(Parser, Debug)]
#[command(name = "loadgen", about = "Loopback TCP connection storm that counts the transitions it causes")]
struct Args {
    /// client-close (client TIME_WAIT), reset (SO_LINGER 0 → RST) or concurrent (client-close, C at once)
    #[arg(long, default_value = "client-close")]
    mode: Mode,
    /// Connections to make
    #[arg(short = 'n', long, default_value_t = 20_000)]
    connections: u64,
    /// Connections open at once in concurrent mode (at most 4096, the default somaxconn)
    #[arg(short = 'c', long, default_value_t = 100)]
    concurrency: u32,
    /// Server port on 127.0.0.1
    #[arg(short = 'p', long, default_value_t = 20080)]
    port: u16,
    /// Give up after this many seconds
    #[arg(long, default_value_t = 60)]
    deadline: u64,
    /// Stay in the current network namespace (TIME_WAIT sockets then outlive the run)
    #[arg(long)]
    same_netns: bool,
    /// Run client and server on one CPU: `last` (the highest-numbered CPU
    /// this process may use), a CPU number, or `none` to let the scheduler
    /// spread them
    #[arg(long, default_value = "last")]
    cpu: String,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Ok(false): the run happened but did not complete (the report says why).
fn run(args: Args) -> Result<bool> {
    if args.port == 0 {
        bail!("port 0 is not a port: use 1..=65535");
    }
    if args.mode == Mode::Concurrent && !(1..=4096).contains(&args.concurrency) {
        bail!("concurrency must be 1..=4096, got {}", args.concurrency);
    }
    if !args.same_netns {
        netns::enter_fresh()?;
    }
    // Before the server thread starts, which inherits it.
    loadgen::pin_to(&args.cpu)?;
    let cfg = loadgen::Config {
        mode: args.mode,
        connections: args.connections,
        concurrency: if args.mode == Mode::Concurrent { args.concurrency } else { 1 },
        port: args.port,
        deadline: Duration::from_secs(args.deadline.clamp(1, 3600)),
        io_timeout: Duration::from_secs(5),
    };
    let report = loadgen::run(&cfg)?;
    println!("{}", serde_json::to_string(&report).context("encoding the report")?);
    if let Some(err) = &report.error {
        eprintln!("loadgen: {err}");
    }
    Ok(report.error.is_none())
}
