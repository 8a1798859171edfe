//! The readable side of the results: one table of rows, one of targets,
//! and the notes a reader needs to trust (or distrust) them.

use std::fmt::Write as _;
use std::time::Duration;

use super::stats::Spread;
use super::summary::RowSummary;
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

/// tcpstate rows against the targets.
pub fn targets(rows: &[RowSummary]) -> String {
    let judged: Vec<&RowSummary> = rows.iter().filter(|r| !r.targets.is_empty()).collect();
    if judged.is_empty() {
        return String::new();
    }
    // Short forms of summary::targets' goals, in the same order.
    let mut lines = vec![vec![
        "target".into(),
        "conn/s >= 0.95 x none".into(),
        "CPU <= 0.05 s/100k".into(),
        "exact >= 95 %".into(),
        "attach < 150 ms".into(),
        "RSS < 16 MiB".into(),
    ]];
    for r in judged {
        let mut line = vec![r.label.clone()];
        for t in &r.targets {
            let value = match (t.name, t.value) {
                (_, None) => "-".to_string(),
                ("exact", Some(v)) => format!("{:.0} %", v * 100.0),
                ("throughput", Some(v)) => format!("{v:.3}"),
                ("cpu", Some(v)) => format!("{v:.3}"),
                (_, Some(v)) => format!("{v:.1}"),
            };
            let mark = match t.met {
                Some(true) => CHECK,
                Some(false) => CROSS,
                None => "?",
            };
            line.push(format!("{value} {mark}"));
        }
        lines.push(line);
    }
    columns(&lines)
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
            "Counts: totals over successful runs; exact = runs with received == expected; {CROSS} after \
             received = a run where received + dropped + missed - recovered != expected."
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
