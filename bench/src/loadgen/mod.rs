//! The load generator: N connections connect → request → close against a
//! server in the same process, on loopback only, bounded in count and time.
//!
//! It runs in its own network namespace (so TIME_WAIT sockets and ports of
//! one run never leak into the next) and reports, as JSON on stdout, the
//! exact number of `inet_sock_set_state` transitions it caused.

pub mod client;
pub mod netns;
pub mod server;
pub mod sock;
pub mod transitions;

use std::net::Ipv4Addr;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

pub use transitions::Mode;

/// The server's address; also what tcpstate is told to follow.
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
/// Clients bind to 127.0.0.1 ..= 127.0.0.SOURCE_ADDRS round-robin, so even
/// long runs with every client socket in TIME_WAIT do not run out of ports.
pub const SOURCE_ADDRS: u8 = 8;
/// Fixed sizes: each side knows exactly how much to read, so no socket is
/// ever closed with unread data (which would turn a FIN into a RST).
pub const REQUEST_LEN: usize = 64;
pub const RESPONSE_LEN: usize = 128;
/// Upper bound on connections per run.
pub const MAX_CONNECTIONS: u64 = 1_000_000;

/// What one run does.
#[derive(Clone, Debug)]
pub struct Config {
    pub mode: Mode,
    pub connections: u64,
    /// Connections open at once (1 except in `concurrent` mode).
    pub concurrency: u32,
    pub port: u16,
    /// The whole run stops here even if connections remain.
    pub deadline: Duration,
    /// Blocking socket calls give up after this long.
    pub io_timeout: Duration,
}

/// The JSON line on stdout.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub mode: String,
    pub connections: u64,
    pub concurrency: u32,
    pub port: u16,
    /// Connections that went through their whole life cycle.
    pub completed: u64,
    /// From the listener's listen() to the last server-side close.
    pub elapsed_s: f64,
    pub conn_per_s: f64,
    /// Exact only when `completed == connections`; absent otherwise.
    pub expected_transitions: Option<u64>,
    pub per_connection: u64,
    pub listener: u64,
    /// Expected count per OLD:NEW pair (complete runs only).
    pub by_pair: Vec<(String, u64)>,
    /// TIME_WAIT sockets the run created: one per client socket that
    /// closed first, less the overflow. Each later ends (a TIME_WAIT:CLOSE
    /// for a tracer that follows TIME_WAIT): reused by a new connect()
    /// under tcp_tw_reuse, or when the namespace is destroyed.
    pub time_wait_created: u64,
    /// Of those, still in TIME_WAIT when the run ended (for information:
    /// the rest were reused).
    pub time_wait_at_exit: u64,
    /// Client sockets that got no TIME_WAIT socket (tcp_max_tw_buckets).
    pub time_wait_overflow: u64,
    pub error: Option<String>,
}

/// Pins this thread (and the threads it starts) to one CPU: `last`, a CPU
/// number, or `none`.
///
/// Why one CPU: client and server hand each connection back and forth. On
/// two CPUs every hand-off wakes the other CPU, and on a virtual machine a
/// CPU woken from idle takes tens of microseconds: the storm then runs at
/// about a third of the speed it reaches on one CPU, limited by wake-up
/// latency rather than by work, and its rate swings by ±8 % from run to
/// run. On one CPU it is bound by the work the kernel does per connection,
/// which is what a tracer adds to; the tracer's reader runs on the others.
pub fn pin_to(cpu: &str) -> Result<()> {
    // SAFETY: cpu_set_t is plain data; the calls get valid pointers and sizes.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            bail!("reading the CPU affinity: {}", std::io::Error::last_os_error());
        }
        let allowed: Vec<usize> = (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect();
        let chosen = match cpu {
            "none" => return Ok(()),
            "last" => *allowed.last().context("no CPU to run on")?,
            n => {
                let n: usize =
                    n.parse().map_err(|_| anyhow::anyhow!("--cpu takes last, none or a CPU number, not {n:?}"))?;
                if !allowed.contains(&n) {
                    bail!("CPU {n} is not one this process may use ({allowed:?})");
                }
                n
            }
        };
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(chosen, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!("pinning to CPU {chosen}: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Runs the storm and reports it. The caller has already entered the
/// namespace it wants (see [`netns::enter_fresh`]).
pub fn run(cfg: &Config) -> Result<Report> {
    if cfg.connections == 0 || cfg.connections > MAX_CONNECTIONS {
        bail!("connections must be 1..={MAX_CONNECTIONS}, got {}", cfg.connections);
    }
    let listener = sock::listen(SERVER_IP, cfg.port, cfg.concurrency, cfg.io_timeout)
        .with_context(|| format!("listening on {SERVER_IP}:{}", cfg.port))?;
    let start = Instant::now();
    let deadline = start + cfg.deadline;

    let server_cfg = cfg.clone();
    let server = thread::Builder::new()
        .name("server".into())
        .spawn(move || server::serve(listener, &server_cfg, deadline))
        .context("starting the server thread")?;
    let client_result = client::run(cfg, deadline);
    let server_result = server.join().map_err(|_| anyhow::anyhow!("server thread panicked"))?;
    let elapsed = start.elapsed();

    let served = server_result.as_ref().copied().unwrap_or(0);
    let completed = client_result.as_ref().copied().unwrap_or(0).min(served);
    let error = match (&client_result, &server_result) {
        (Err(c), _) => Some(format!("client: {c:#}")),
        (_, Err(s)) => Some(format!("server: {s:#}")),
        _ if completed < cfg.connections => {
            Some(format!("only {completed} of {} connections completed", cfg.connections))
        }
        _ => None,
    };
    let time_wait_at_exit = netns::settled_time_wait(Duration::from_secs(1)).unwrap_or(0);
    let time_wait_overflow = netns::time_wait_overflow().unwrap_or(0);
    let complete = error.is_none();
    let per_connection = cfg.mode.per_connection().len() as u64;
    let listener_pairs = transitions::LISTENER.len() as u64;
    Ok(Report {
        mode: cfg.mode.name().to_string(),
        connections: cfg.connections,
        concurrency: cfg.concurrency,
        port: cfg.port,
        completed,
        elapsed_s: elapsed.as_secs_f64(),
        conn_per_s: completed as f64 / elapsed.as_secs_f64().max(1e-9),
        expected_transitions: complete.then(|| cfg.connections * per_connection + listener_pairs),
        per_connection,
        listener: listener_pairs,
        by_pair: if complete { transitions::by_pair(cfg.mode, cfg.connections) } else { Vec::new() },
        time_wait_created: if cfg.mode.resets() { 0 } else { completed.saturating_sub(time_wait_overflow) },
        time_wait_at_exit,
        time_wait_overflow,
        error,
    })
}
