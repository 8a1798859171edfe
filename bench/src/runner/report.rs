//! The readable side of the results: one table of rows, one of targets,
//! and the notes a reader needs to trust (or distrust) them.

use std::fmt::Write as _;
use std::time::Duration;

use super::stats::Spread;
use super::summary::{RowSummary, Target};
use super::Options;

const CHECK: &str = "✓";
const CROSS: &str = "✗";

/// The main table: one line per row, values over the rounds.
pub fn table(rows: &[RowSummary]) -> String {
    let header = [
        "row",
        "conn/s",
        "x none min/med/max",
        "expected",
        "received",
        "dropped",
        "missed",
        "recov",
        "exact",
        "records",
        "CPU s/100k",
        "startup CPU s",
        "RSS MiB",
        "attach ms",
    ];
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for r in rows {
        if let Some(why) = &r.skipped {
            lines.push(vec![r.label.clone(), format!("skipped: {why}")]);
            continue;
        }
        if r.failed == r.runs {
            let why = r.last_error.as_deref().unwrap_or("no run");
            lines.push(vec![r.label.clone(), format!("FAILED ({} runs): {why}", r.runs)]);
            continue;
        }
        let ok_runs = r.runs - r.failed;
        let tracer = r.id != "none";
        let received = r.received.map(|n| {
            let mark = if r.unbalanced_runs > 0 { format!(" {CROSS}") } else { String::new() };
            format!("{n}{mark}")
        });
        lines.push(vec![
            r.label.clone(),
            r.conn_per_s.map_or("-".into(), |s| format!("{:.0}", s.median)),
            r.ratio_to_none.map_or("-".into(), ratio),
            if tracer { count(r.expected) } else { "-".into() },
            if tracer { received.unwrap_or_else(|| "-".into()) } else { "-".into() },
            count(r.dropped),
            count(r.missed),
            count(r.recovered),
            if tracer { format!("{}/{}", r.exact_runs, r.runs) } else { "-".into() },
            records(r),
            r.cpu_s_per_100k.map_or("-".into(), |s| format!("{:.3}", s.median)),
            r.startup_cpu_s.map_or("-".into(), |s| format!("{:.3}", s.median)),
            r.peak_rss_mib.map_or("-".into(), |s| format!("{:.1}", s.max)),
            r.attach_ms.map_or("-".into(), |s| format!("{:.0} ({:.0})", s.median, s.max)),
        ]);
        if r.failed > 0 && ok_runs > 0 {
            let why = r.last_error.as_deref().unwrap_or("");
            lines.push(vec![format!("  ({} of {} runs failed: {why})", r.failed, r.runs)]);
        }
    }
    columns(&lines)
}

/// Connection records seen/expected (`--connections` rows), with a ✗
/// when they differ.
fn records(r: &RowSummary) -> String {
    match (r.records_seen, r.records_expected) {
        (Some(seen), Some(exp)) => {
            let mark = if seen != exp { format!(" {CROSS}") } else { String::new() };
            format!("{seen}/{exp}{mark}")
        }
        _ => "-".into(),
    }
}

/// The target table's column for each target name, in table order.
const TARGET_COLUMNS: &[(&str, &str)] = &[
    ("vs_floor", "vs floor"),
    ("cpu_vs_bpftrace", "CPU vs bpftrace"),
    ("cpu", "CPU s/100k"),
    ("exact", "exact"),
    ("attach", "attach < 150 ms"),
    ("rss", "RSS < 16 MiB"),
    ("vs_json", "vs json"),
    ("cpu_vs_json", "CPU vs json"),
];

/// tcpstate rows against the targets and the yardsticks of the
/// same run: one column per target any row has, blank where a row has
/// not that target, "-" where there is nothing to judge.
pub fn targets(rows: &[RowSummary]) -> String {
    let judged: Vec<&RowSummary> = rows.iter().filter(|r| !r.targets.is_empty()).collect();
    if judged.is_empty() {
        return String::new();
    }
    let used: Vec<&(&str, &str)> = TARGET_COLUMNS
        .iter()
        .filter(|(name, _)| judged.iter().any(|r| r.targets.iter().any(|t| t.name == *name)))
        .collect();
    let mut lines = vec![std::iter::once("target").chain(used.iter().map(|(_, h)| *h)).map(String::from).collect()];
    for r in judged {
        let mut line = vec![r.label.clone()];
        for (name, _) in &used {
            line.push(r.targets.iter().find(|t| t.name == *name).map_or(String::new(), target_cell));
        }
        lines.push(line);
    }
    let mut out = columns(&lines);
    out += "vs floor: median x none minus that of the floor row with the same attachments in this run \
            (floor-timers; floor-backup without TIME_WAIT probes), in points of the baseline's conn/s. \
            CPU vs bpftrace: median tracer CPU per 100k events over bpftrace's in this run.\n";
    out += &format!(
        "Goals: exact in >= 95 % of runs, attach and RSS in the worst run; --connections and --cgroup also: \
         vs json (x none minus -o json's) >= {:.0} pt; --connections also: CPU <= {:.2} s per 100k \
         transitions, every run exact (transitions and connection records). --cgroup other names a cgroup \
         the storm is not in (expects 0 events; its CPU is per 100k of the storm's), --cgroup own the \
         storm's. Unmarked values are for information; - = the row compared with did not run.\n",
        super::summary::VS_JSON_PT,
        super::summary::CONNECTIONS_CPU_S
    );
    out
}

/// One target's value, as its column shows it, and its verdict.
fn target_cell(t: &Target) -> String {
    let Some(v) = t.value else { return "-".into() };
    let value = match t.name {
        "vs_floor" | "vs_json" => format!("{v:+.1} pt"),
        "cpu_vs_bpftrace" | "cpu_vs_json" => format!("{v:.2} x {}", t.reference.unwrap_or("?")),
        "exact" => format!("{:.0} %", v * 100.0),
        "cpu" => format!("{v:.3}"),
        _ => format!("{v:.1}"),
    };
    match t.met {
        Some(true) => format!("{value} {CHECK}"),
        Some(false) => format!("{value} {CROSS}"),
        None => value,
    }
}

/// What a reader needs to read the tables right.
pub fn notes(opts: &Options, rows: &[RowSummary], took: Duration) -> String {
    let mut lines = vec![
        format!(
            "{} rounds x {} connections ({}, storm on CPU {}), tracer order rotated each round, a baseline run \
             before and after every tracer run; took {:.0} s.",
            opts.rounds,
            opts.connections,
            opts.mode,
            opts.storm_cpu,
            took.as_secs_f64()
        ),
        "x none: conn/s over the mean of the baseline runs just before and after (min/median/max over rounds)."
            .to_string(),
        format!(
            "Counts: totals over successful runs; exact = runs with received == expected (and, with \
             --connections, every connection record: records = seen/expected, two per connection); {CROSS} \
             after received = a run where received + dropped + missed - recovered != expected."
        ),
        "CPU: the tracer process's utime+stime per 100k expected events (median), startup included; \
         startup CPU = its CPU when attached (BPF load, BTF). BPF programs run in the storm's own \
         context and show in conn/s instead."
            .to_string(),
        "RSS: VmHWM just before the stop signal, worst run. attach: median (worst) ms from spawn to its \
         first BPF attachment (bpf_link, or perf event with a program), polled every 1 ms."
            .to_string(),
    ];
    if let Some(tw) = rows.iter().filter(|r| r.id != "tw-off").find_map(|r| r.tw_probes.as_deref()) {
        lines.push(format!(
            "TIME_WAIT probes ({tw}): rows with them expect one more TIME_WAIT:CLOSE per TIME_WAIT socket \
             the storm created (reused by a later connect, or destroyed with the storm's namespace before \
             the tracer is stopped)."
        ));
    }
    if let Some(none) = rows.iter().find(|r| r.id == "none").and_then(|r| r.conn_per_s) {
        lines.push(format!(
            "Noise: the no-tracer row ranged {:.0}..{:.0} conn/s ({:+.0} % max over min) across rounds.",
            none.min,
            none.max,
            (none.max / none.min.max(1e-9) - 1.0) * 100.0
        ));
    }
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn ratio(s: Spread) -> String {
    format!("{:.2}/{:.2}/{:.2}", s.min, s.median, s.max)
}

fn count(n: Option<u64>) -> String {
    n.map_or("-".into(), |n| n.to_string())
}

/// Left-aligned first column, right-aligned others; a line shorter than the
/// header (a note) is printed as is.
fn columns(lines: &[Vec<String>]) -> String {
    let ncol = lines.first().map_or(0, Vec::len);
    let mut width = vec![0usize; ncol];
    for line in lines.iter().filter(|l| l.len() == ncol) {
        for (w, cell) in width.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for line in lines {
        if line.len() != ncol {
            let _ = writeln!(out, "{}", line.join("  "));
            continue;
        }
        let cells: Vec<String> = line
            .iter()
            .zip(&width)
            .enumerate()
            .map(|(i, (cell, w))| {
                let pad = w.saturating_sub(cell.chars().count());
                if i == 0 {
                    format!("{cell}{}", " ".repeat(pad))
                } else {
                    format!("{}{cell}", " ".repeat(pad))
                }
            })
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::runner::measure::Record;
    use crate::runner::rows::ALL;
    use crate::runner::summary::judge;

    #[test]
    fn target_cells() {
        let t = |name, reference, value, met| Target { name, goal: "", reference, value, met };
        assert_eq!(target_cell(&t("vs_floor", Some("floor-timers"), Some(-4.06), None)), "-4.1 pt");
        assert_eq!(target_cell(&t("vs_json", Some("json"), Some(0.3), Some(true))), "+0.3 pt ✓");
        assert_eq!(target_cell(&t("cpu_vs_bpftrace", Some("bpftrace"), Some(0.1), None)), "0.10 x bpftrace");
        assert_eq!(target_cell(&t("cpu", None, Some(0.0512), Some(false))), "0.051 ✗");
        assert_eq!(target_cell(&t("exact", None, Some(1.0), Some(true))), "100 % ✓");
        assert_eq!(target_cell(&t("vs_json", Some("json"), None, None)), "-");
    }

    #[test]
    fn the_target_table_has_a_column_per_target_and_dashes_for_rows_not_run() {
        let run = |id: &str, ratio, cpu| Record {
            row: id.into(),
            ratio_to_none: Some(ratio),
            cpu_s_per_100k: Some(cpu),
            expected: Some(10),
            received: Some(10),
            records_expected: (id == "connections").then_some(4),
            records_seen: (id == "connections").then_some(4),
            attach_ms: Some(20.0),
            peak_rss_kib: Some(10 * 1024),
            tw_probes: Some("timer (tp_btf/timer_start)".into()),
            ..Record::default()
        };
        let runs = [run("json", 0.89, 0.04), run("connections", 0.885, 0.042)];
        let mut rows = summaries(&["none", "json", "connections"], &runs);
        judge(&mut rows);
        let text = targets(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("target") && lines[0].ends_with("vs json  CPU vs json"), "{}", lines[0]);
        // No floor or bpftrace row ran: "-", not a failure.
        assert!(lines[1].starts_with("tcpstate -o json ") && lines[1].contains("  -  "), "{}", lines[1]);
        assert!(!lines[1].contains("x json") && !lines[1].contains(CROSS), "{}", lines[1]);
        assert!(lines[2].ends_with("-0.5 pt ✓  1.05 x json"), "{}", lines[2]);
        assert!(lines[2].contains("0.042 ✓"), "{}", lines[2]);
        assert!(table(&rows).contains(" 4/4 "));
    }

    /// The summaries of rows `ids` over `runs`.
    fn summaries(ids: &[&str], runs: &[Record]) -> Vec<RowSummary> {
        ids.iter()
            .map(|id| {
                let row = ALL.iter().find(|r| r.id == *id).unwrap();
                RowSummary::of(row, &runs.iter().filter(|r| r.row == *id).collect::<Vec<_>>())
            })
            .collect()
    }

    #[test]
    fn cgroup_rows_show_their_distance_to_json() {
        let run = |id: &str, ratio, cpu, received| Record {
            row: id.into(),
            ratio_to_none: Some(ratio),
            cpu_s_per_100k: Some(cpu),
            expected: Some(if id == "cgroup-other" { 0 } else { 10 }),
            received: Some(received),
            attach_ms: Some(20.0),
            peak_rss_kib: Some(10 * 1024),
            ..Record::default()
        };
        let runs =
            [run("json", 0.89, 0.04, 10), run("cgroup-other", 0.912, 0.01, 0), run("cgroup-own", 0.87, 0.05, 10)];
        let mut rows = summaries(&["none", "json", "cgroup-other", "cgroup-own"], &runs);
        judge(&mut rows);
        let text = targets(&rows);
        let line = |start: &str| text.lines().find(|l| l.starts_with(start)).unwrap().to_string();
        assert!(line("tcpstate -o json --cgroup other").ends_with("+2.2 pt ✓  0.25 x json"), "{text}");
        assert!(line("tcpstate -o json --cgroup own").ends_with("-2.0 pt ✗  1.25 x json"), "{text}");
        assert!(line("tcpstate -o json ").trim_end().ends_with("10.0 ✓"), "{text}");
        let table = table(&rows);
        let other = table.lines().find(|l| l.starts_with("tcpstate -o json --cgroup other")).unwrap();
        assert!(other.contains(" 0  ") && other.contains(" 1/1 "), "{other}");
    }

    #[test]
    fn columns_align_on_characters_not_bytes() {
        let t =
            columns(&[vec!["a".into(), "bb".into()], vec!["ccc".into(), "1 ✓".into()], vec!["note spanning".into()]]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "a     bb");
        assert_eq!(lines[1], "ccc  1 ✓");
        assert_eq!(lines[2], "note spanning");
    }
}
