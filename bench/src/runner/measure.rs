//! One run of one row: start the tracer, wait until it is attached, run the
//! storm, stop the tracer, and collect what it cost and what it saw.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::cgroups::{self, Cgroups};
use super::child::{self, Guard};
use super::parse::{self, Counts};
use super::rows::{self, Files, Kind, Row, Tcpstate, Tools};
use super::{pairs, procfs};
use crate::loadgen::{Mode, Report};

/// How long a tracer may take to detach, drain and exit after SIGINT.
const STOP_LIMIT: Duration = Duration::from_secs(20);
/// How long to wait for a tracer to act on SIGINT before sending another.
const SIGINT_REPEAT: Duration = Duration::from_secs(1);

/// Storm settings and limits shared by every run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub tools: Tools,
    pub mode: Mode,
    pub connections: u64,
    pub concurrency: u32,
    /// Time after the storm before the tracer is stopped: the storm's
    /// namespace is destroyed (its TIME_WAIT sockets with it) meanwhile.
    pub settle: Duration,
    pub attach_timeout: Duration,
    /// The loadgen's own deadline; the runner waits a little longer.
    pub storm_timeout: Duration,
    /// The loadgen's --cpu.
    pub storm_cpu: String,
    /// Where runs write their tracer output (tmpfs); emptied after each run.
    pub scratch: PathBuf,
    /// The bench's cgroups: every storm runs in `storm`. None where they
    /// could not be made: storms then run in the bench's own cgroup, and
    /// the `--cgroup` rows are skipped.
    pub cgroups: Option<Cgroups>,
}

/// Everything measured in one run. Fields are None where a run failed
/// before measuring them, or where they do not apply (no tracer).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Record {
    pub row: String,
    pub round: u32,
    pub port: u16,
    pub error: Option<String>,
    pub conn_per_s: Option<f64>,
    /// conn/s over the baseline's conn/s in the same round.
    pub ratio_to_none: Option<f64>,
    pub storm_s: Option<f64>,
    pub expected: Option<u64>,
    pub received: Option<u64>,
    pub dropped: Option<u64>,
    pub missed: Option<u64>,
    pub recovered: Option<u64>,
    /// Connection records the `--connections` row should print: two per
    /// connection of the storm (client and server side).
    pub records_expected: Option<u64>,
    /// Connection records tcpstate says it printed (`N connections:`).
    pub records_seen: Option<u64>,
    /// recursion_misses summed over the tracer's programs, from fdinfo.
    pub fdinfo_misses: Option<u64>,
    /// Event lines counted in the output file, where there is one.
    pub lines_seen: Option<u64>,
    /// Where the output lines differ from the storm, per OLD:NEW (seen -
    /// expected; rows with kept output only, when not exact).
    pub pair_diff: Option<Vec<(String, i64)>>,
    pub tw_probes: Option<String>,
    pub follows_time_wait: bool,
    /// TIME_WAIT sockets the storm created (loadgen's count).
    pub time_wait_created: Option<u64>,
    pub cpu_s: Option<f64>,
    /// CPU spent before it was attached (load, BTF, verification).
    pub startup_cpu_s: Option<f64>,
    /// cpu_s per 100 000 of the storm's transitions in the tracer's sight
    /// (its port's): `expected`, but for a `--cgroup` row that expects none
    /// of them, which is measured per transition it filtered out.
    pub cpu_s_per_100k: Option<f64>,
    /// VmHWM just before the stop signal, KiB.
    pub peak_rss_kib: Option<u64>,
    pub attach_ms: Option<f64>,
    /// SIGINTs it took to stop the tracer (more than 1: see [`stop`]).
    pub stop_signals: Option<u32>,
}

impl Record {
    /// received == expected, and for a `--connections` row also every
    /// connection record there (records_seen == records_expected).
    pub fn exact(&self) -> Option<bool> {
        let transitions = self.received? == self.expected?;
        Some(match self.records_expected {
            Some(want) => transitions && self.records_seen == Some(want),
            None => transitions,
        })
    }

    /// received + dropped + missed (- recovered) == expected: every event is
    /// either seen or admitted lost.
    pub fn balanced(&self) -> Option<bool> {
        let counts = Counts {
            received: self.received?,
            dropped: self.dropped.unwrap_or(0),
            missed: self.missed.unwrap_or(0),
            recovered: self.recovered,
            connections: None,
        };
        Some(counts.accounted() == self.expected?)
    }
}

/// Runs `row` once against a storm on `port`. Never fails: a failure is a
/// record with `error` set (the tracer's last stderr line where it has one).
pub fn run(plan: &Plan, row: &Row, round: u32, port: u16) -> Record {
    let mut rec = Record { row: row.id.to_string(), round, port, ..Record::default() };
    let files = Files {
        stdout: plan.scratch.join(format!("{}-{round}.out", row.id)),
        stderr: plan.scratch.join(format!("{}-{round}.err", row.id)),
    };
    if let Err(e) = measure(plan, row, port, &files, &mut rec) {
        rec.error = Some(format!("{e:#}"));
    }
    for f in [&files.stdout, &files.stderr] {
        let _ = fs::remove_file(f);
    }
    rec
}

fn measure(plan: &Plan, row: &Row, port: u16, files: &Files, rec: &mut Record) -> Result<()> {
    let cmd = row.command(&plan.tools, port, files, plan.cgroups.as_ref())?;
    let mut tracer = match cmd {
        Some(mut cmd) => Some(start_tracer(&mut cmd, plan, files, rec)?),
        None => None,
    };

    let report = storm(plan, port)?;
    rec.conn_per_s = Some(report.conn_per_s);
    rec.storm_s = Some(report.elapsed_s);
    rec.time_wait_created = Some(report.time_wait_created);

    let Some(guard) = tracer.as_mut() else {
        rec.expected = report.expected_transitions;
        return Ok(());
    };
    thread::sleep(plan.settle);
    let pid = guard.pid();
    if child::has_exited(&guard.child) {
        bail!("tracer ended during the storm; {}", tracer_said(files));
    }
    rec.peak_rss_kib = procfs::peak_rss_kib(pid).ok();
    rec.fdinfo_misses = procfs::recursion_misses(pid).ok();
    rec.stop_signals = Some(stop(guard)?);
    if !child::has_exited(&guard.child) {
        let threads = procfs::thread_states(pid);
        guard.wait(Duration::ZERO)?;
        bail!(
            "tracer did not exit within {STOP_LIMIT:?} of SIGINT (killed; threads: {threads}); {}",
            tracer_said(files)
        );
    }
    let exit = guard.wait(STOP_LIMIT)?;
    if !exit.success() {
        bail!("tracer {} after SIGINT; {}", exit.describe(), tracer_said(files));
    }
    rec.cpu_s = Some(exit.cpu.as_secs_f64());

    let (counts, seen) = read_counts(row, files, rec)?;
    rec.received = Some(counts.received);
    rec.dropped = Some(counts.dropped);
    rec.missed = Some(counts.missed);
    rec.recovered = counts.recovered;
    rec.expected = row.expected(&report, rec.follows_time_wait);
    rec.records_expected = row.expected_records(&report);
    rec.records_seen = counts.connections;
    if matches!(row.kind, Kind::Tcpstate(Tcpstate { connections: true, .. })) && counts.connections.is_none() {
        bail!("tcpstate's exit summary has no 'N connections:' clause; {}", tracer_said(files));
    }
    if let Some(seen) = seen.filter(|_| rec.exact() == Some(false)) {
        rec.pair_diff = Some(pairs::diff(&seen, &pairs::expected(&report, rec.follows_time_wait)));
    }
    if let (Some(cpu), Some(seen)) = (rec.cpu_s, rows::storm_transitions(&report, rec.follows_time_wait)) {
        rec.cpu_s_per_100k = Some(cpu * 100_000.0 / seen.max(1) as f64);
    }
    Ok(())
}

/// Sends SIGINT, again every [`SIGINT_REPEAT`] while the tracer is still
/// there, until it exits or [`STOP_LIMIT`] passes; returns how many were
/// sent. bpftrace 0.17 needs the repeat: a SIGINT that lands while it is
/// still printing a backlog sets its exit flag, and it then blocks in
/// epoll_wait with no timeout until another event or signal comes.
fn stop(guard: &Guard) -> Result<u32> {
    let end = Instant::now() + STOP_LIMIT;
    let mut sent = 0;
    let mut next = Instant::now();
    while !child::has_exited(&guard.child) && Instant::now() < end {
        if Instant::now() >= next {
            child::interrupt(&guard.child)?;
            sent += 1;
            next = Instant::now() + SIGINT_REPEAT;
        }
        thread::sleep(Duration::from_millis(2));
    }
    Ok(sent)
}

/// Starts the tracer and returns once it is attached: the first BPF link
/// (or perf event with a program) appears, then no new one for 50 ms, so a
/// tracer attaching several programs has them all in place.
fn start_tracer(cmd: &mut Command, plan: &Plan, files: &Files, rec: &mut Record) -> Result<Guard> {
    let started = Instant::now();
    let guard = Guard::new(child::spawn(cmd)?);
    let pid = guard.pid();
    let mut seen = 0;
    let mut last_change = started;
    loop {
        if child::has_exited(&guard.child) {
            bail!("tracer ended before attaching; {}", tracer_said(files));
        }
        let now = procfs::attachments(pid).unwrap_or(seen);
        if now > 0 && seen == 0 {
            rec.attach_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
        }
        if now != seen {
            seen = now;
            last_change = Instant::now();
        }
        if seen > 0 && last_change.elapsed() >= Duration::from_millis(50) {
            break;
        }
        if started.elapsed() > plan.attach_timeout {
            bail!("tracer not attached after {:?}; {}", plan.attach_timeout, tracer_said(files));
        }
        thread::sleep(Duration::from_millis(1));
    }
    rec.startup_cpu_s = procfs::cpu_time(pid).ok().map(|d| d.as_secs_f64());
    Ok(guard)
}

/// Runs the load generator (in the storm's cgroup, where the bench has
/// one) and returns its report.
fn storm(plan: &Plan, port: u16) -> Result<Report> {
    let out = plan.scratch.join("loadgen.out");
    let err = plan.scratch.join("loadgen.err");
    let mut cmd = Command::new(&plan.tools.loadgen);
    cmd.args(["--mode", plan.mode.name()])
        .args(["--connections", &plan.connections.to_string()])
        .args(["--concurrency", &plan.concurrency.to_string()])
        .args(["--port", &port.to_string()])
        .args(["--deadline", &plan.storm_timeout.as_secs().to_string()])
        .args(["--cpu", &plan.storm_cpu])
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).with_context(|| format!("creating {}", out.display()))?)
        .stderr(fs::File::create(&err).with_context(|| format!("creating {}", err.display()))?);
    if let Some(cgroups) = &plan.cgroups {
        cgroups::spawn_in(&mut cmd, &cgroups.storm)?;
    }
    let mut guard = Guard::new(child::spawn(&mut cmd)?);
    let exit = guard.wait(plan.storm_timeout + Duration::from_secs(15))?;
    let text = fs::read_to_string(&out).unwrap_or_default();
    let report: Option<Report> = text.lines().find_map(|l| serde_json::from_str(l).ok());
    match report {
        Some(r) if exit.success() && r.error.is_none() => Ok(r),
        Some(r) => bail!("loadgen: {}", r.error.unwrap_or_else(|| exit.describe())),
        None => bail!("loadgen {}: {}", exit.describe(), last_line(&err)),
    }
}

/// The tracer's own account of the run, per kind, and the transitions per
/// pair where its output was kept.
fn read_counts(row: &Row, files: &Files, rec: &mut Record) -> Result<(Counts, Option<pairs::Histogram>)> {
    let stderr = read_lossy(&files.stderr);
    match row.kind {
        Kind::Baseline => Ok((Counts::default(), None)),
        Kind::Floor(_) => Ok((parse::floor_output(&read_lossy(&files.stdout))?, None)),
        Kind::Bpftrace => {
            let stdout = read_lossy(&files.stdout);
            let mut counts = parse::bpftrace_output(&stdout);
            counts.missed = rec.fdinfo_misses.unwrap_or(0);
            rec.lines_seen = Some(counts.received);
            Ok((counts, Some(pairs::from_bpftrace(&stdout, parse::BPFTRACE_PREFIX))))
        }
        // With --connections the summary still counts transitions, and adds
        // the connection records (read in tcpstate_summary).
        Kind::Tcpstate(Tcpstate { format, .. }) => {
            rec.tw_probes = parse::tcpstate_tw_probes(&stderr);
            rec.follows_time_wait = parse::follows_time_wait(rec.tw_probes.as_deref());
            let seen = format.is_none().then(|| {
                rec.lines_seen = Some(parse::seed_lines(&stderr));
                pairs::from_seed(&stderr)
            });
            Ok((parse::tcpstate_summary(&stderr)?, seen))
        }
    }
}

fn read_lossy(path: &Path) -> String {
    fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

fn last_line(path: &Path) -> String {
    procfs::last_line(path).unwrap_or_else(|| "(nothing on stderr)".into())
}

/// The tracer's last words, for failure messages.
fn tracer_said(files: &Files) -> String {
    format!("its stderr's last line: {}", last_line(&files.stderr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_records_count_towards_exact_but_not_balance() {
        let run = Record { expected: Some(10), received: Some(10), ..Record::default() };
        assert_eq!(run.exact(), Some(true));
        let all = Record { records_expected: Some(4), records_seen: Some(4), ..run.clone() };
        assert_eq!(all.exact(), Some(true));
        let short = Record { records_seen: Some(3), ..all.clone() };
        assert_eq!((short.exact(), short.balanced()), (Some(false), Some(true)));
        let unread = Record { records_seen: None, ..all.clone() };
        assert_eq!(unread.exact(), Some(false));
        let few = Record { received: Some(9), ..all };
        assert_eq!(few.exact(), Some(false));
        assert_eq!(Record::default().exact(), None);
    }
}
