//! floor: attaches the benchmark's counting-only program for one port,
//! waits for SIGINT or SIGTERM (at most --max-secs), and prints
//! `{"received": N, "missed": M}` on stdout.

use std::mem::MaybeUninit;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use tcpstate_bench::floor::{Empty, Floor};

#[derive(Parser, Debug)]
#[command(name = "floor", about = "Count inet_sock_set_state transitions of one port, nothing else")]
struct Args {
    /// Count sockets whose local or remote port is this
    #[arg(short = 'p', long)]
    port: u16,
    /// Also attach an empty second inet_sock_set_state program
    #[arg(long)]
    backup: bool,
    /// Also attach empty timer_start, timer_cancel and timer_expire_entry programs
    #[arg(long)]
    timers: bool,
    /// Stop by itself after this many seconds
    #[arg(long, default_value_t = 600)]
    max_secs: u64,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floor: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    let signals = block_stop_signals()?;
    let mut storage = MaybeUninit::uninit();
    let empty = Empty { backup: args.backup, timers: args.timers };
    let floor = Floor::attach(args.port, empty, &mut storage)?;
    wait_for_signal(&signals, Duration::from_secs(args.max_secs));
    let counts = floor.counts()?;
    drop(floor);
    println!("{}", serde_json::to_string(&counts).context("encoding the counts")?);
    Ok(())
}

/// Blocks SIGINT and SIGTERM so they queue for [`wait_for_signal`] instead
/// of killing the process before it reports.
fn block_stop_signals() -> Result<libc::sigset_t> {
    // SAFETY: sigset operations on a local set; sigprocmask on this thread
    // (the only one).
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error()).context("blocking SIGINT/SIGTERM");
        }
        Ok(set)
    }
}

/// Returns on the first queued stop signal, or after `limit`.
fn wait_for_signal(set: &libc::sigset_t, limit: Duration) {
    let end = Instant::now() + limit;
    let tick = libc::timespec { tv_sec: 0, tv_nsec: 100_000_000 };
    while Instant::now() < end {
        // SAFETY: set and tick are valid for the call; info may be null.
        if unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &tick) } > 0 {
            return;
        }
    }
}
