//! Which transitions a tracer missed (or saw twice), per OLD:NEW pair, for
//! the rows whose output is kept (original lines, bpftrace lines). A total that
//! is off by a few says little; "FIN_WAIT1:FIN_WAIT2 -3" says where to look.

use std::collections::BTreeMap;

use crate::loadgen::Report;

/// Kernel TCP state numbers (include/net/tcp_states.h) as tcpstate names them.
const STATES: [&str; 13] = [
    "?",
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "CLOSING",
    "NEW_SYN_RECV",
];

pub type Histogram = BTreeMap<String, i64>;

/// What the storm should show per pair. With TIME_WAIT followed, each
/// TIME_WAIT socket turns one FIN_WAIT2:CLOSE into FIN_WAIT2:TIME_WAIT and
/// adds a TIME_WAIT:CLOSE.
pub fn expected(report: &Report, follows_time_wait: bool) -> Histogram {
    let mut h: Histogram = report.by_pair.iter().map(|(k, v)| (k.clone(), *v as i64)).collect();
    let tw = report.time_wait_created as i64;
    if follows_time_wait && tw > 0 {
        *h.entry("FIN_WAIT2:CLOSE".into()).or_default() -= tw;
        *h.entry("FIN_WAIT2:TIME_WAIT".into()).or_default() += tw;
        *h.entry("TIME_WAIT:CLOSE".into()).or_default() += tw;
    }
    h.retain(|_, v| *v != 0);
    h
}

/// Pairs in tcpstate's original output, `ts:<ns>:<side>:<OLD>:<NEW>`.
pub fn from_seed(text: &str) -> Histogram {
    let mut h = Histogram::new();
    for line in text.lines().filter(|l| l.starts_with("ts:")) {
        let f: Vec<&str> = line.split(':').collect();
        if let (Some(old), Some(new)) = (f.get(3), f.get(4)) {
            *h.entry(format!("{old}:{new}")).or_default() += 1;
        }
    }
    h
}

/// Pairs in the bench's bpftrace lines, `tcp SPORT DPORT OLD NEW` (numbers).
pub fn from_bpftrace(text: &str, prefix: &str) -> Histogram {
    let name = |s: &str| s.parse::<usize>().ok().and_then(|n| STATES.get(n)).copied().unwrap_or("?");
    let mut h = Histogram::new();
    for line in text.lines().filter_map(|l| l.strip_prefix(prefix)) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let (Some(old), Some(new)) = (f.get(2), f.get(3)) {
            *h.entry(format!("{}:{}", name(old), name(new))).or_default() += 1;
        }
    }
    h
}

/// seen - expected, non-zero pairs only.
pub fn diff(seen: &Histogram, expected: &Histogram) -> Vec<(String, i64)> {
    let mut keys: Vec<&String> = seen.keys().chain(expected.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|k| (k.clone(), seen.get(k).copied().unwrap_or(0) - expected.get(k).copied().unwrap_or(0)))
        .filter(|(_, d)| *d != 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::transitions::{by_pair, Mode};

    fn report(n: u64, tw: u64) -> Report {
        Report {
            mode: "client-close".into(),
            connections: n,
            concurrency: 1,
            port: 1,
            completed: n,
            elapsed_s: 1.0,
            conn_per_s: n as f64,
            expected_transitions: Some(n * 10 + 2),
            per_connection: 10,
            listener: 2,
            by_pair: by_pair(Mode::ClientClose, n),
            time_wait_created: tw,
            time_wait_at_exit: tw,
            time_wait_overflow: 0,
            error: None,
        }
    }

    #[test]
    fn time_wait_reshapes_the_expected_pairs() {
        let h = expected(&report(3, 3), true);
        assert_eq!(h.get("FIN_WAIT2:CLOSE"), None);
        assert_eq!(h.get("FIN_WAIT2:TIME_WAIT"), Some(&3));
        assert_eq!(h.get("TIME_WAIT:CLOSE"), Some(&3));
        assert_eq!(h.values().sum::<i64>(), 35);
        assert_eq!(expected(&report(3, 3), false).get("FIN_WAIT2:CLOSE"), Some(&3));
    }

    #[test]
    fn a_missing_line_shows_as_its_pair() {
        let seed = "ts:1:server:CLOSE:LISTEN\nts:2:server:LISTEN:CLOSE\ntcpstate: 2 transitions\n";
        let exp: Histogram =
            [("CLOSE:LISTEN".to_string(), 1), ("LISTEN:CLOSE".to_string(), 1), ("LAST_ACK:CLOSE".to_string(), 1)]
                .into_iter()
                .collect();
        assert_eq!(diff(&from_seed(seed), &exp), vec![("LAST_ACK:CLOSE".to_string(), -1)]);
    }

    #[test]
    fn bpftrace_numbers_become_names() {
        let h = from_bpftrace("tcp 1 2 7 2\ntcp 1 2 4 5\nLost 3 events\n", "tcp ");
        assert_eq!(h.get("CLOSE:SYN_SENT"), Some(&1));
        assert_eq!(h.get("FIN_WAIT1:FIN_WAIT2"), Some(&1));
    }
}
