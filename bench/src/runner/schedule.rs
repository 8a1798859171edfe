//! In which order rows run, and what each run is compared with.

use super::measure::Record;
use super::rows::{self, Row};

/// The order of runs: each round runs every tracer row once, in an order
/// rotated by one each round, with a baseline run before the first and
/// after every tracer run. Each tracer run is so compared with the
/// baseline measured just before and just after it, which follows the
/// load drift of a shared machine far better than one baseline per round.
pub fn schedule(rows: &[Row], rounds: u32) -> Vec<(u32, Row)> {
    let baseline = rows.iter().find(|r| r.kind == rows::Kind::Baseline).copied();
    let tracers: Vec<Row> = rows.iter().filter(|r| r.kind != rows::Kind::Baseline).copied().collect();
    let mut out = Vec::new();
    for round in 0..rounds {
        if tracers.is_empty() {
            out.extend(baseline.map(|b| (round, b)));
            continue;
        }
        if round == 0 {
            out.extend(baseline.map(|b| (round, b)));
        }
        let shift = round as usize % tracers.len();
        for row in tracers[shift..].iter().chain(&tracers[..shift]) {
            out.push((round, *row));
            out.extend(baseline.map(|b| (round, b)));
        }
    }
    out
}

/// Each tracer run's conn/s over the mean of the successful baseline runs
/// nearest before and after it; baseline runs get 1.
pub fn set_ratios(records: &mut [Record]) {
    let is_base = |r: &Record| r.row == "none" && r.error.is_none() && r.conn_per_s.is_some();
    let ratios: Vec<Option<f64>> = (0..records.len())
        .map(|i| {
            let own = records[i].conn_per_s?;
            if records[i].row == "none" {
                return Some(1.0);
            }
            let before = records[..i].iter().rev().find(|r| is_base(r)).and_then(|r| r.conn_per_s);
            let after = records[i + 1..].iter().find(|r| is_base(r)).and_then(|r| r.conn_per_s);
            let base = match (before, after) {
                (Some(a), Some(b)) => (a + b) / 2.0,
                (Some(x), None) | (None, Some(x)) => x,
                (None, None) => return None,
            };
            (base > 0.0).then(|| own / base)
        })
        .collect();
    for (r, ratio) in records.iter_mut().zip(ratios) {
        r.ratio_to_none = ratio;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_divide_by_the_neighbouring_baselines() {
        let mk = |row: &str, c: f64| Record { row: row.into(), conn_per_s: Some(c), ..Record::default() };
        let mut failed = mk("none", 1.0);
        failed.error = Some("x".into());
        let mut runs = vec![mk("none", 100.0), mk("json", 90.0), mk("none", 80.0), mk("csv", 40.0), failed];
        set_ratios(&mut runs);
        assert_eq!(runs[1].ratio_to_none, Some(1.0));
        assert_eq!(runs[3].ratio_to_none, Some(0.5));
        assert_eq!(runs[0].ratio_to_none, Some(1.0));
    }

    #[test]
    fn every_tracer_run_is_bracketed_by_baselines_and_rotated() {
        let rows = rows::select("json,csv").unwrap();
        let ids: Vec<(u32, &str)> = schedule(&rows, 2).iter().map(|(r, row)| (*r, row.id)).collect();
        assert_eq!(
            ids,
            [
                (0, "none"),
                (0, "json"),
                (0, "none"),
                (0, "csv"),
                (0, "none"),
                (1, "csv"),
                (1, "none"),
                (1, "json"),
                (1, "none")
            ]
        );
        let only_base = schedule(&rows::select("none").unwrap(), 3);
        assert_eq!(only_base.len(), 3);
    }
}
