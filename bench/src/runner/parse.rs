//! Reading what each tracer says about its own run: tcpstate's exit
//! summary, the floor loader's JSON, bpftrace's printed lines.

use anyhow::{bail, Context, Result};

/// Events as a tracer accounts for them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Delivered to user space (printed).
    pub received: u64,
    /// Lost because the ring or perf buffer was full.
    pub dropped: u64,
    /// Runs the kernel skipped (recursion), summed over programs.
    pub missed: u64,
    /// Skipped events a tracer caught by other means; they are part of
    /// `received` too, so `received + dropped + missed - recovered` is what
    /// the kernel produced.
    pub recovered: Option<u64>,
    /// Connection records, from tcpstate's `N connections:` clause (only
    /// with `--connections`).
    pub connections: Option<u64>,
}

impl Counts {
    /// What the kernel must have produced if the tracer's books are right.
    pub fn accounted(&self) -> u64 {
        (self.received + self.dropped + self.missed).saturating_sub(self.recovered.unwrap_or(0))
    }
}

/// tcpstate's exit line, e.g. `tcpstate: 2201 transitions (server 1100,
/// client 1101); lost 0: ring buffer full 0, skipped by the kernel in
/// inet_sock_set_state 0`, tolerant of the variants and clauses it has had
/// (`skipped by the kernel N and recovered M`, one `skipped by the kernel
/// in PROG N` per program). With `--connections` it also has `; N
/// connections: E ended (...), O still open at exit`, read into
/// `connections` (not to be confused with a later `N connections evicted`).
/// The last such line of `stderr` wins.
pub fn tcpstate_summary(stderr: &str) -> Result<Counts> {
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("tcpstate: ") && l.contains(" transitions"))
        .context("no summary line ('tcpstate: N transitions ...') on stderr")?;
    let raw: Vec<&str> = line.split_whitespace().collect();
    let words: Vec<&str> =
        raw.iter().map(|w| w.trim_matches(|c: char| matches!(c, ',' | ';' | ':' | '(' | ')'))).collect();
    let num = |i: usize| words.get(i).and_then(|w| w.parse::<u64>().ok());
    let mut counts = Counts::default();
    let mut have_received = false;
    for (i, w) in words.iter().enumerate() {
        match *w {
            "transitions" if i > 0 => {
                counts.received = num(i - 1).with_context(|| format!("no count before 'transitions' in: {line}"))?;
                have_received = true;
            }
            "full" if words.get(i.wrapping_sub(1)) == Some(&"buffer") => {
                counts.dropped += num(i + 1).with_context(|| format!("no count after 'full' in: {line}"))?;
            }
            // "skipped by the kernel in PROG N" (one per program) or
            // "skipped by the kernel N" (a total).
            "skipped" if words.get(i + 1..i + 4) == Some(&["by", "the", "kernel"][..]) => {
                let at = if words.get(i + 4) == Some(&"in") { i + 6 } else { i + 4 };
                counts.missed +=
                    num(at).with_context(|| format!("no count after 'skipped by the kernel' in: {line}"))?;
            }
            // "N connections: E ended ...", not "N connections evicted".
            "connections" if i > 0 && raw[i].ends_with(':') => {
                let n = num(i - 1).with_context(|| format!("no count before 'connections:' in: {line}"))?;
                counts.connections = Some(n);
            }
            "recovered" => {
                let n = num(i + 1).with_context(|| format!("no count after 'recovered' in: {line}"))?;
                counts.recovered = Some(counts.recovered.unwrap_or(0) + n);
            }
            _ => {}
        }
    }
    if !have_received {
        bail!("no transition count in: {line}");
    }
    Ok(counts)
}

/// The TIME_WAIT probes tcpstate -v says it runs ("timer", "off", ...),
/// None when it does not say (a build without TIME_WAIT support).
pub fn tcpstate_tw_probes(stderr: &str) -> Option<String> {
    stderr.lines().find_map(|l| l.strip_prefix("tcpstate: TIME_WAIT probes:")).map(|s| s.trim().to_string())
}

/// Whether a `TIME_WAIT probes:` description means TIME_WAIT is followed.
pub fn follows_time_wait(probes: Option<&str>) -> bool {
    probes.is_some_and(|p| {
        let first = p.split_whitespace().next().unwrap_or("");
        !matches!(first.trim_matches(|c: char| !c.is_alphanumeric()), "" | "off" | "none")
    })
}

/// Lines of tcpstate's original output (`ts:<ns>:<side>:<OLD>:<NEW>`).
pub fn seed_lines(stderr: &str) -> u64 {
    stderr.lines().filter(|l| l.starts_with("ts:")).count() as u64
}

/// The floor loader's `{"received": N, "missed": M}`.
pub fn floor_output(stdout: &str) -> Result<Counts> {
    let line = stdout.lines().rev().find(|l| l.trim_start().starts_with('{')).context("no JSON line from floor")?;
    let c: crate::floor::Counts =
        serde_json::from_str(line).with_context(|| format!("parsing floor output: {line}"))?;
    Ok(Counts { received: c.received, missed: c.missed, ..Counts::default() })
}

/// The prefix of every event line the bench's bpftrace program prints.
pub const BPFTRACE_PREFIX: &str = "tcp ";

/// bpftrace's stdout: event lines, and "Lost N events" when its perf
/// buffer overflowed. bpftrace does not report recursion misses; the runner
/// reads them from fdinfo.
pub fn bpftrace_output(stdout: &str) -> Counts {
    let mut counts = Counts::default();
    for line in stdout.lines() {
        if line.starts_with(BPFTRACE_PREFIX) {
            counts.received += 1;
        } else if let Some(rest) = line.trim().strip_prefix("Lost ") {
            if let Some(n) = rest.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()) {
                counts.dropped += n;
            }
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn todays_summary_line() {
        let s = "tcpstate: attached tp_btf/inet_sock_set_state\n\
                 tcpstate: 2201 transitions (server 1100, client 1101); lost 3: ring buffer full 1, \
                 skipped by the kernel in inet_sock_set_state 2\n";
        let c = tcpstate_summary(s).unwrap();
        assert_eq!(c, Counts { received: 2201, dropped: 1, missed: 2, recovered: None, connections: None });
        assert_eq!(c.accounted(), 2204);
    }

    #[test]
    fn later_clauses_are_tolerated_and_summed() {
        let s = "tcpstate: 100 transitions (server 50, client 50); lost 5: ring buffer full 0, \
                 skipped by the kernel in inet_sock_set_state 12, skipped by the kernel in timer_cancel 1, \
                 recovered 8, something new 4\n";
        let c = tcpstate_summary(s).unwrap();
        assert_eq!((c.received, c.dropped, c.missed, c.recovered), (100, 0, 13, Some(8)));
        assert_eq!(c.accounted(), 105);
    }

    #[test]
    fn a_total_skip_count_with_recovery() {
        let s = "tcpstate: 24 transitions (server 12, client 12); lost 1: ring buffer full 0, \
                 skipped by the kernel 5 and recovered 4\n";
        let c = tcpstate_summary(s).unwrap();
        assert_eq!((c.received, c.dropped, c.missed, c.recovered), (24, 0, 5, Some(4)));
        assert_eq!(c.accounted(), 25);
    }

    #[test]
    fn connection_records_are_read_from_their_clause_only() {
        let s = "tcpstate: 220002 transitions (server 110001, client 110001); 40000 connections: 40000 ended \
                 (passive_close 20000, time_wait_netns_exit 20000), 0 still open at exit; lost 0: ring buffer full 0, \
                 skipped by the kernel 0 and recovered 0\n";
        let c = tcpstate_summary(s).unwrap();
        assert_eq!(c, Counts { received: 220002, dropped: 0, missed: 0, recovered: Some(0), connections: Some(40000) });
        let none_ended = "tcpstate: 1 transitions (server 0, client 1); 0 connections: 0 ended, 0 still open at exit; \
                          lost 0: ring buffer full 0, skipped by the kernel 0 and recovered 0\n";
        assert_eq!(tcpstate_summary(none_ended).unwrap().connections, Some(0));
        // Without --connections, "connections evicted" is no record count.
        let evicted = "tcpstate: 10 transitions (server 5, client 5); lost 0: ring buffer full 0, skipped by the \
                       kernel 0 and recovered 0; 4 connections evicted (table full)\n";
        assert_eq!(tcpstate_summary(evicted).unwrap().connections, None);
    }

    #[test]
    fn missing_summary_is_an_error() {
        assert!(tcpstate_summary("tcpstate: error: no BTF\n").is_err());
        assert!(tcpstate_summary("").is_err());
    }

    #[test]
    fn time_wait_probe_lines() {
        let s = "tcpstate: TIME_WAIT probes: timer (tp_btf timer_start, ...)\n";
        assert_eq!(tcpstate_tw_probes(s).as_deref(), Some("timer (tp_btf timer_start, ...)"));
        assert!(follows_time_wait(Some("timer (x)")));
        assert!(!follows_time_wait(Some("off")));
        assert!(!follows_time_wait(Some("none (refused)")));
        assert!(!follows_time_wait(None));
    }

    #[test]
    fn bpftrace_lines_and_losses() {
        let out = "Attaching 1 probe...\ntcp 1 2 7 2\ntcp 1 2 2 1\n\nLost 7 events\n";
        assert_eq!(bpftrace_output(out), Counts { received: 2, dropped: 7, ..Counts::default() });
    }

    #[test]
    fn floor_json() {
        let c = floor_output("{\"received\":10,\"missed\":2}\n").unwrap();
        assert_eq!((c.received, c.missed), (10, 2));
        assert!(floor_output("nothing").is_err());
    }

    #[test]
    fn seed_lines_are_counted() {
        assert_eq!(seed_lines("ts:1:client:CLOSE:SYN_SENT\nts:2:server:LISTEN:SYN_RECV\ntcpstate: 2 transitions\n"), 2);
    }
}
