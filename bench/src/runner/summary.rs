//! Per-row aggregates over rounds, and the targets tcpstate is held to.

use serde::Serialize;

use super::measure::Record;
use super::rows::Row;
use super::stats::Spread;

/// One row's runs, summed up.
#[derive(Clone, Debug, Serialize)]
pub struct RowSummary {
    pub id: String,
    pub label: String,
    /// Why the row did not run at all (e.g. bpftrace not installed).
    pub skipped: Option<String>,
    pub runs: usize,
    pub failed: usize,
    pub last_error: Option<String>,
    pub conn_per_s: Option<Spread>,
    pub ratio_to_none: Option<Spread>,
    /// Event counts summed over the successful runs.
    pub expected: Option<u64>,
    pub received: Option<u64>,
    pub dropped: Option<u64>,
    pub missed: Option<u64>,
    pub recovered: Option<u64>,
    /// Runs with received == expected.
    pub exact_runs: usize,
    /// Runs where received + dropped + missed - recovered != expected.
    pub unbalanced_runs: usize,
    pub cpu_s_per_100k: Option<Spread>,
    pub startup_cpu_s: Option<Spread>,
    pub peak_rss_mib: Option<Spread>,
    pub attach_ms: Option<Spread>,
    pub tw_probes: Option<String>,
    pub targets: Vec<Target>,
}

/// A goal from the issue, checked on one tcpstate row.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    pub name: &'static str,
    pub goal: &'static str,
    pub value: Option<f64>,
    /// None: nothing to judge (no successful run).
    pub met: Option<bool>,
}

impl RowSummary {
    pub fn skipped(row: &Row, why: String) -> Self {
        Self::new(row, &[], Some(why))
    }

    pub fn of(row: &Row, records: &[&Record]) -> Self {
        Self::new(row, records, None)
    }

    fn new(row: &Row, records: &[&Record], skipped: Option<String>) -> Self {
        let ok: Vec<&Record> = records.iter().copied().filter(|r| r.error.is_none()).collect();
        let spread = |f: &dyn Fn(&Record) -> Option<f64>| Spread::of(ok.iter().filter_map(|r| f(r)));
        let total = |f: &dyn Fn(&Record) -> Option<u64>| -> Option<u64> {
            let v: Vec<u64> = ok.iter().filter_map(|r| f(r)).collect();
            (!v.is_empty()).then(|| v.iter().sum())
        };
        let mut s = RowSummary {
            id: row.id.to_string(),
            label: row.label.to_string(),
            skipped,
            runs: records.len(),
            failed: records.len() - ok.len(),
            last_error: records.iter().rev().find_map(|r| r.error.clone()),
            conn_per_s: spread(&|r| r.conn_per_s),
            ratio_to_none: spread(&|r| r.ratio_to_none),
            expected: total(&|r| r.expected),
            received: total(&|r| r.received),
            dropped: total(&|r| r.dropped),
            missed: total(&|r| r.missed),
            recovered: total(&|r| r.recovered),
            exact_runs: ok.iter().filter(|r| r.exact() == Some(true)).count(),
            unbalanced_runs: ok.iter().filter(|r| r.balanced() == Some(false)).count(),
            cpu_s_per_100k: spread(&|r| r.cpu_s_per_100k),
            startup_cpu_s: spread(&|r| r.startup_cpu_s),
            peak_rss_mib: spread(&|r| r.peak_rss_kib.map(|k| k as f64 / 1024.0)),
            attach_ms: spread(&|r| r.attach_ms),
            tw_probes: ok.iter().rev().find_map(|r| r.tw_probes.clone()),
            targets: Vec::new(),
        };
        if row.is_tcpstate() && s.skipped.is_none() {
            s.targets = targets(&s);
        }
        s
    }
}

/// The targets. Throughput and CPU are judged on the median (they
/// are noisy); exactness on every run; attach time and memory on the worst
/// run (they should hold every time).
fn targets(s: &RowSummary) -> Vec<Target> {
    let check = |value: Option<f64>, ok: fn(f64) -> bool| (value, value.map(ok));
    let exact_share = (s.runs > 0).then(|| s.exact_runs as f64 / s.runs as f64);
    let rows = [
        ("throughput", "median conn/s >= 0.95 x none", check(s.ratio_to_none.map(|x| x.median), |v| v >= 0.95)),
        (
            "cpu",
            "median tracer CPU <= 0.05 s per 100k events",
            check(s.cpu_s_per_100k.map(|x| x.median), |v| v <= 0.05),
        ),
        ("exact", "received == expected in >= 95 % of runs", check(exact_share, |v| v >= 0.95)),
        ("attach", "start-to-attached < 150 ms (worst run)", check(s.attach_ms.map(|x| x.max), |v| v < 150.0)),
        ("rss", "peak RSS < 16 MiB (worst run)", check(s.peak_rss_mib.map(|x| x.max), |v| v < 16.0)),
    ];
    rows.into_iter().map(|(name, goal, (value, met))| Target { name, goal, value, met }).collect()
}
