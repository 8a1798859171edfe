//! Per-row aggregates over rounds, and the targets and yardsticks
//! tcpstate is held to.

use serde::Serialize;

use super::measure::Record;
use super::rows::{Kind, Row, Tcpstate};
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
    /// Connection records expected and seen, summed over the successful
    /// runs (`--connections` rows only).
    pub records_expected: Option<u64>,
    pub records_seen: Option<u64>,
    /// Runs with received == expected (and, for `--connections`, every
    /// connection record).
    pub exact_runs: usize,
    /// Runs where received + dropped + missed - recovered != expected.
    pub unbalanced_runs: usize,
    pub cpu_s_per_100k: Option<Spread>,
    pub startup_cpu_s: Option<Spread>,
    pub peak_rss_mib: Option<Spread>,
    pub attach_ms: Option<Spread>,
    pub tw_probes: Option<String>,
    /// Set by [`judge`], on tcpstate rows only.
    pub targets: Vec<Target>,
    #[serde(skip)]
    pub kind: Kind,
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
        RowSummary {
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
            records_expected: total(&|r| r.records_expected),
            records_seen: total(&|r| r.records_seen),
            exact_runs: ok.iter().filter(|r| r.exact() == Some(true)).count(),
            unbalanced_runs: ok.iter().filter(|r| r.balanced() == Some(false)).count(),
            cpu_s_per_100k: spread(&|r| r.cpu_s_per_100k),
            startup_cpu_s: spread(&|r| r.startup_cpu_s),
            peak_rss_mib: spread(&|r| r.peak_rss_kib.map(|k| k as f64 / 1024.0)),
            attach_ms: spread(&|r| r.attach_ms),
            tw_probes: ok.iter().rev().find_map(|r| r.tw_probes.clone()),
            targets: Vec::new(),
            kind: row.kind,
        }
    }

    fn median_ratio(&self) -> Option<f64> {
        self.ratio_to_none.map(|s| s.median)
    }

    fn median_cpu(&self) -> Option<f64> {
        self.cpu_s_per_100k.map(|s| s.median)
    }
}

/// A goal from the issue, or a yardstick against another row of the same
/// bench run, on one tcpstate row.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    pub name: &'static str,
    pub goal: &'static str,
    /// The row compared with, for yardsticks against another row.
    pub reference: Option<&'static str>,
    /// None: nothing to judge (no successful run, or the reference row was
    /// not run or has no value).
    pub value: Option<f64>,
    /// None: informational, or nothing to judge.
    pub met: Option<bool>,
}

/// Most a `--connections` or `--cgroup` row may cost in throughput over
/// `-o json`, in points of the baseline's conn/s.
pub const VS_JSON_PT: f64 = -1.0;
/// Most tracer CPU a `--connections` row may use per 100k transitions.
pub const CONNECTIONS_CPU_S: f64 = 0.05;

/// Sets the targets of every tcpstate row that ran. Throughput is judged
/// against the rows of the same bench run, not against a fixed share of
/// the baseline: the attachments the kernel makes tcpstate use cost
/// several points even as empty programs (the floor rows show how much).
pub fn judge(rows: &mut [RowSummary]) {
    let targets: Vec<Vec<Target>> = rows
        .iter()
        .map(|r| match r.kind {
            Kind::Tcpstate(t) if r.skipped.is_none() => targets(r, rows, t),
            _ => Vec::new(),
        })
        .collect();
    for (r, t) in rows.iter_mut().zip(targets) {
        r.targets = t;
    }
}

/// The floor row with the attachments tcpstate had, from its `-v` line:
/// floor-timers with the timer tracepoint probes, floor-backup without
/// TIME_WAIT probes. None for fentry or kprobe probes, which no floor row
/// has.
pub fn matching_floor(tw_probes: Option<&str>) -> Option<&'static str> {
    let first = tw_probes.and_then(|p| p.split_whitespace().next()).unwrap_or("off");
    match first.trim_matches(|c: char| !c.is_alphanumeric()) {
        "timer" => Some("floor-timers"),
        "off" | "none" | "" => Some("floor-backup"),
        _ => None,
    }
}

/// `a - b` in points (hundredths of the baseline): the distance between
/// two median ratios to none.
pub fn points(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some((a? - b?) * 100.0)
}

/// `a / b`, None unless b > 0.
pub fn times(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    let b = b.filter(|b| *b > 0.0)?;
    Some(a? / b)
}

/// The targets and yardsticks of one tcpstate row. Throughput and CPU are
/// judged on the median (they are noisy); exactness on every run; attach
/// time and memory on the worst run (they should hold every time). Rows
/// that are `-o json` with one option more (`--connections`, `--cgroup`)
/// are also held to `-o json` itself.
fn targets(s: &RowSummary, all: &[RowSummary], options: Tcpstate) -> Vec<Target> {
    let connections = options.connections;
    let find = |id: &str| all.iter().find(|r| r.id == id && r.skipped.is_none());
    let info = |name, goal, reference: Option<&'static str>, value| Target { name, goal, reference, value, met: None };
    let judged = |name, goal, value: Option<f64>, ok: &dyn Fn(f64) -> bool| Target {
        name,
        goal,
        reference: None,
        value,
        met: value.map(ok),
    };
    let floor = matching_floor(s.tw_probes.as_deref());
    let bpftrace = find("bpftrace");
    let exact_share = (s.runs > 0).then(|| s.exact_runs as f64 / s.runs as f64);
    let mut t = vec![
        info(
            "vs_floor",
            "informational: median x none minus that of the floor row with the same attachments, in points",
            floor,
            points(s.median_ratio(), floor.and_then(find).and_then(RowSummary::median_ratio)),
        ),
        info(
            "cpu_vs_bpftrace",
            "informational: median tracer CPU per 100k events over bpftrace's",
            Some("bpftrace"),
            times(s.median_cpu(), bpftrace.and_then(RowSummary::median_cpu)),
        ),
    ];
    if connections {
        t.push(judged("cpu", "median tracer CPU <= 0.05 s per 100k transitions", s.median_cpu(), &|v| {
            v <= CONNECTIONS_CPU_S
        }));
        t.push(judged("exact", "every run exact: transitions and connection records", exact_share, &|v| v >= 1.0));
    } else {
        t.push(info("cpu", "informational: median tracer CPU s per 100k events", None, s.median_cpu()));
        t.push(judged("exact", "received == expected in >= 95 % of runs", exact_share, &|v| v >= 0.95));
    }
    t.push(judged("attach", "start-to-attached < 150 ms (worst run)", s.attach_ms.map(|x| x.max), &|v| v < 150.0));
    t.push(judged("rss", "peak RSS < 16 MiB (worst run)", s.peak_rss_mib.map(|x| x.max), &|v| v < 16.0));
    if connections || options.cgroup.is_some() {
        let json = find("json");
        t.push(Target {
            reference: Some("json"),
            ..judged(
                "vs_json",
                "median x none within 1 point of -o json's (>= -1 pt)",
                points(s.median_ratio(), json.and_then(RowSummary::median_ratio)),
                &|v| v >= VS_JSON_PT,
            )
        });
        t.push(info(
            "cpu_vs_json",
            "informational: median tracer CPU per 100k events over -o json's",
            Some("json"),
            times(s.median_cpu(), json.and_then(RowSummary::median_cpu)),
        ));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::rows::ALL;

    fn row(id: &str) -> &'static Row {
        ALL.iter().find(|r| r.id == id).unwrap()
    }

    /// One successful run of `id` with these medians.
    fn run(id: &str, ratio: f64, cpu: f64) -> Record {
        Record {
            row: id.into(),
            ratio_to_none: Some(ratio),
            cpu_s_per_100k: Some(cpu),
            expected: Some(10),
            received: Some(10),
            attach_ms: Some(20.0),
            peak_rss_kib: Some(10 * 1024),
            tw_probes: matches!(row(id).kind, Kind::Tcpstate(Tcpstate { tw_off: false, .. }))
                .then(|| "timer (tp_btf/timer_start, timer_cancel, timer_expire_entry)".into()),
            ..Record::default()
        }
    }

    fn summaries(runs: &[Record]) -> Vec<RowSummary> {
        let ids: Vec<&str> = runs.iter().map(|r| r.row.as_str()).collect();
        let mut rows: Vec<RowSummary> = ALL
            .iter()
            .filter(|r| ids.contains(&r.id))
            .map(|r| RowSummary::of(r, &runs.iter().filter(|x| x.row == r.id).collect::<Vec<_>>()))
            .collect();
        judge(&mut rows);
        rows
    }

    fn target<'a>(rows: &'a [RowSummary], id: &str, name: &str) -> &'a Target {
        let r = rows.iter().find(|r| r.id == id).unwrap();
        r.targets.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("{id} has no {name} target"))
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    #[test]
    fn points_and_times() {
        assert!(close(points(Some(0.889), Some(0.930)), -4.1));
        assert_eq!(points(Some(0.9), None), None);
        assert!(close(times(Some(0.07), Some(0.7)), 0.1));
        assert_eq!(times(Some(0.07), Some(0.0)), None);
        assert_eq!(times(None, Some(1.0)), None);
    }

    #[test]
    fn each_row_is_measured_against_the_floor_with_its_attachments() {
        assert_eq!(matching_floor(Some("timer (tp_btf/timer_start, ...); HZ 250")), Some("floor-timers"));
        assert_eq!(matching_floor(Some("off; HZ 250 (measured)")), Some("floor-backup"));
        assert_eq!(matching_floor(Some("fentry (tcp_time_wait, ...)")), None);
        let rows = summaries(&[
            run("floor-backup", 0.96, 0.005),
            run("floor-timers", 0.93, 0.006),
            run("bpftrace", 0.13, 0.5),
            run("json", 0.89, 0.05),
            Record { tw_probes: Some("off; HZ 250".into()), ..run("tw-off", 0.92, 0.04) },
        ]);
        let t = target(&rows, "json", "vs_floor");
        assert_eq!((t.reference, t.met), (Some("floor-timers"), None));
        assert!(close(t.value, -4.0));
        let t = target(&rows, "tw-off", "vs_floor");
        assert_eq!(t.reference, Some("floor-backup"));
        assert!(close(t.value, -4.0));
        assert!(close(target(&rows, "json", "cpu_vs_bpftrace").value, 0.1));
        assert!(close(target(&rows, "tw-off", "cpu_vs_bpftrace").value, 0.08));
        // Informational for the transition rows; only --connections has a CPU goal.
        assert_eq!(target(&rows, "json", "cpu").met, None);
        assert_eq!(target(&rows, "json", "exact").met, Some(true));
        assert!(rows.iter().filter(|r| !matches!(r.kind, Kind::Tcpstate(_))).all(|r| r.targets.is_empty()));
        assert!(rows.iter().find(|r| r.id == "json").unwrap().targets.iter().all(|t| t.name != "vs_json"));
    }

    #[test]
    fn rows_not_run_leave_their_yardsticks_empty_not_failed() {
        let rows = summaries(&[run("connections", 0.88, 0.04)]);
        for name in ["vs_floor", "cpu_vs_bpftrace", "vs_json", "cpu_vs_json"] {
            let t = target(&rows, "connections", name);
            assert_eq!((t.value, t.met), (None, None), "{name}");
        }
        assert_eq!(target(&rows, "connections", "cpu").met, Some(true));
    }

    #[test]
    fn cgroup_rows_are_held_to_json_within_a_point_and_to_the_usual_exactness() {
        let other = |ratio| Record { expected: Some(0), received: Some(0), ..run("cgroup-other", ratio, 0.01) };
        let rows = summaries(&[run("json", 0.890, 0.040), other(0.912), run("cgroup-own", 0.884, 0.042)]);
        let t = target(&rows, "cgroup-other", "vs_json");
        assert!(close(t.value, 2.2));
        assert_eq!((t.reference, t.met), (Some("json"), Some(true)));
        assert!(close(target(&rows, "cgroup-other", "cpu_vs_json").value, 0.25));
        assert_eq!(target(&rows, "cgroup-other", "exact").met, Some(true));
        let t = target(&rows, "cgroup-own", "vs_json");
        assert!(close(t.value, -0.6));
        assert_eq!(t.met, Some(true));
        // The CPU goal is --connections' alone; the usual 95 % exact applies.
        assert_eq!(target(&rows, "cgroup-own", "cpu").met, None);
        assert_eq!(target(&rows, "cgroup-own", "exact").goal, "received == expected in >= 95 % of runs");

        let rows = summaries(&[run("json", 0.890, 0.040), other(0.879), run("cgroup-own", 0.8795, 0.05)]);
        assert_eq!(target(&rows, "cgroup-other", "vs_json").met, Some(false));
        assert_eq!(target(&rows, "cgroup-own", "vs_json").met, Some(false));
        // A run of the other row that reported the storm's events is not exact.
        let leaked = Record { received: Some(10), ..other(0.9) };
        let rows = summaries(&[run("json", 0.890, 0.040), leaked]);
        assert_eq!(target(&rows, "cgroup-other", "exact").met, Some(false));
    }

    #[test]
    fn connections_are_held_to_json_and_to_every_run_exact() {
        let conn = |ratio, cpu| run("connections", ratio, cpu);
        let rows = summaries(&[run("json", 0.890, 0.040), conn(0.885, 0.044)]);
        let t = target(&rows, "connections", "vs_json");
        assert!(close(t.value, -0.5));
        assert_eq!((t.reference, t.met), (Some("json"), Some(true)));
        assert!(close(target(&rows, "connections", "cpu_vs_json").value, 1.1));
        assert_eq!(target(&rows, "connections", "cpu").met, Some(true));

        let rows = summaries(&[run("json", 0.890, 0.040), conn(0.875, 0.051)]);
        assert_eq!(target(&rows, "connections", "vs_json").met, Some(false));
        assert_eq!(target(&rows, "connections", "cpu").met, Some(false));

        // One run of 20 short of its records: 95 % exact is enough for the
        // transition rows, not for --connections.
        let short = Record { records_expected: Some(40), records_seen: Some(38), ..conn(0.88, 0.04) };
        let mut runs: Vec<Record> = (0..19)
            .map(|_| Record { records_expected: Some(40), records_seen: Some(40), ..conn(0.88, 0.04) })
            .collect();
        runs.push(short);
        let rows = summaries(&runs);
        let r = rows.iter().find(|r| r.id == "connections").unwrap();
        assert_eq!((r.exact_runs, r.records_expected, r.records_seen), (19, Some(800), Some(798)));
        let t = target(&rows, "connections", "exact");
        assert!(close(t.value, 0.95));
        assert_eq!(t.met, Some(false));
    }
}
