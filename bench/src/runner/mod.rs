//! The bench runner: options, then every run in [`schedule`] order, then
//! the tables and results.json.

pub mod cgroups;
pub mod child;
pub mod machine;
pub mod measure;
pub mod pairs;
pub mod parse;
pub mod ports;
pub mod procfs;
pub mod report;
pub mod results;
pub mod rows;
pub mod schedule;
pub mod setup;
pub mod signals;
pub mod stats;
pub mod summary;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Args;

use crate::loadgen::Mode;
use measure::{Plan, Record};
use ports::Ports;
use rows::Row;
use schedule::{schedule, set_ratios};
use setup::{ensure_tracefs, tools, Scratch};
use summary::RowSummary;

#[derive(Args, Debug, Clone)]
pub struct Options {
    /// Connections per run
    #[arg(short = 'n', long, default_value_t = 20_000)]
    pub connections: u64,
    /// Rounds: each round runs every row once
    #[arg(short = 'r', long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub rounds: u32,
    /// Storm mode: client-close, reset or concurrent
    #[arg(long, default_value = "client-close")]
    pub mode: Mode,
    /// Connections open at once in concurrent mode
    #[arg(short = 'c', long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: u32,
    /// Rows to run, comma separated (none,floor,floor-backup,floor-timers,bpftrace,original,table,json,csv,tw-off,connections,cgroup-other,cgroup-own) or all
    #[arg(long, default_value = "all")]
    pub rows: String,
    /// Where to write the machine-readable results
    #[arg(short = 'o', long, default_value = "bench/results.json")]
    pub out: PathBuf,
    /// Wait after each storm before stopping the tracer (the storm's
    /// namespace and its TIME_WAIT sockets are destroyed meanwhile)
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub settle_ms: u64,
    /// Give up on a tracer that has not attached after this many seconds
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub attach_timeout: u64,
    /// Give up on a storm after this many seconds
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub storm_timeout: u64,
    /// The CPU the storm runs on (loadgen --cpu): last, none or a number.
    /// One CPU makes the storm bound by work rather than wake-up latency
    #[arg(long, default_value = "last")]
    pub storm_cpu: String,
    /// tcpstate binary [default: beside this program]
    #[arg(long)]
    pub tcpstate: Option<PathBuf>,
    /// bpftrace binary [default: from PATH; its row is skipped without it]
    #[arg(long)]
    pub bpftrace: Option<PathBuf>,
}

/// Runs the whole benchmark and writes the results.
pub fn run(opts: &Options) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the bench loads BPF programs and creates network namespaces: run it as root (make bench does)");
    }
    let tools = tools(opts)?;
    let rows = rows::select(&opts.rows)?;
    if rows.iter().any(|r| r.kind == rows::Kind::Bpftrace) && tools.bpftrace.is_some() {
        ensure_tracefs()?;
    }
    signals::catch()?;
    let scratch = Scratch::create()?;
    // Every storm runs in the bench's cgroup `storm`; without cgroups only
    // the --cgroup rows cannot run.
    let cgroup_guard = match cgroups::Cgroups::create() {
        Ok(guard) => Some(guard),
        Err(e) => {
            eprintln!("bench: no cgroups of its own ({e:#}): storms run in the bench's cgroup, --cgroup rows skipped");
            None
        }
    };
    let cgroup_paths = cgroup_guard.as_ref().map(|g| g.0.clone());
    let plan = Plan {
        tools: tools.clone(),
        mode: opts.mode,
        connections: opts.connections,
        concurrency: opts.concurrency,
        settle: Duration::from_millis(opts.settle_ms),
        attach_timeout: Duration::from_secs(opts.attach_timeout),
        storm_timeout: Duration::from_secs(opts.storm_timeout),
        storm_cpu: opts.storm_cpu.clone(),
        scratch: scratch.0.clone(),
        cgroups: cgroup_paths.clone(),
    };
    let mut machine = machine::Machine::describe(&tools.tcpstate, tools.bpftrace.as_deref());
    let unavailable = |row: &Row| row.unavailable(&tools, cgroup_paths.as_ref());
    let runnable: Vec<Row> = rows.iter().copied().filter(|r| unavailable(r).is_none()).collect();
    eprintln!(
        "bench: {} x {} connections ({}{}), {} rounds of {} rows; kernel {}, {}, {} CPUs, load {}",
        opts.rounds,
        opts.connections,
        opts.mode,
        if opts.mode == Mode::Concurrent { format!(" {}", opts.concurrency) } else { String::new() },
        opts.rounds,
        runnable.len(),
        machine.kernel,
        machine.cpu_model,
        machine.nproc,
        machine.loadavg_start
    );
    if let Some(c) = &cgroup_paths {
        eprintln!("bench: storms run in the cgroup {}; {} holds nothing", c.storm.display(), c.elsewhere.display());
    }

    let started = Instant::now();
    let mut ports = Ports::new();
    let mut records: Vec<Record> = Vec::new();
    for (round, row) in schedule(&runnable, opts.rounds) {
        signals::check()?;
        let rec = measure::run(&plan, &row, round, ports.take());
        eprintln!("[{}/{}] {}", round + 1, opts.rounds, progress(&row, &rec));
        records.push(rec);
    }
    set_ratios(&mut records);
    machine.loadavg_end = Some(machine::loadavg());

    let mut summaries: Vec<RowSummary> = rows
        .iter()
        .map(|row| match unavailable(row) {
            Some(why) => RowSummary::skipped(row, why),
            None => {
                let mine: Vec<&Record> = records.iter().filter(|r| r.row == row.id).collect();
                RowSummary::of(row, &mine)
            }
        })
        .collect();
    summary::judge(&mut summaries);

    println!();
    print!("{}", report::table(&summaries));
    let targets = report::targets(&summaries);
    if !targets.is_empty() {
        println!();
        print!("{targets}");
    }
    println!();
    print!("{}", report::notes(opts, &summaries, started.elapsed()));

    results::write(&opts.out, &machine, opts, &summaries, &records)?;
    println!("results: {}", opts.out.display());
    Ok(())
}

fn progress(row: &Row, r: &Record) -> String {
    if let Some(e) = &r.error {
        return format!("{:<32} FAILED: {e}", row.label);
    }
    let mut s = format!("{:<32} {:>7.0} conn/s", row.label, r.conn_per_s.unwrap_or(0.0));
    if let (Some(rx), Some(exp)) = (r.received, r.expected) {
        let mark = if r.balanced() == Some(false) { " ✗" } else { "" };
        s += &format!(
            "  {rx}/{exp} events (dropped {}, missed {}{}){mark}",
            r.dropped.unwrap_or(0),
            r.missed.unwrap_or(0),
            r.recovered.map(|n| format!(", recovered {n}")).unwrap_or_default()
        );
    }
    if let (Some(seen), Some(exp)) = (r.records_seen, r.records_expected) {
        let mark = if seen != exp { " ✗" } else { "" };
        s += &format!("  {seen}/{exp} connection records{mark}");
    }
    if let Some(ms) = r.attach_ms {
        s += &format!("  attach {ms:.0} ms");
    }
    if let Some(diff) = r.pair_diff.as_ref().filter(|d| !d.is_empty()) {
        let pairs: Vec<String> = diff.iter().map(|(p, d)| format!("{p} {d:+}")).collect();
        s += &format!("  off by pair: {}", pairs.join(", "));
    }
    s
}
