//! The exit paragraph: how many transitions, per side, with `--connections`
//! how many connections and how they ended, and everything that was lost,
//! inferred, evicted or forgotten on the way.

use std::collections::BTreeMap;

use anyhow::Result;

use super::{Mode, Sink, Status};
use crate::conn::{EndCause, Record, Stats};
use crate::model::Side;
use crate::trace::Lost;

/// Counts what was printed, and says it all when tracing ends.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub server: u64,
    pub client: u64,
    /// Connection records per end cause, in [`EndCause::ALL`]'s order.
    pub ends: BTreeMap<EndCause, u64>,
    mode: Mode,
    /// Print the paragraph on stderr at the end.
    print: bool,
}

impl Summary {
    pub fn new(print: bool, mode: Mode) -> Summary {
        Summary { print, mode, ..Summary::default() }
    }

    pub fn total(&self) -> u64 {
        self.server + self.client
    }

    /// The paragraph, one line.
    pub fn text(&self, lost: &Lost, stats: &Stats, cgroups_unresolved: u64) -> String {
        let mut s = format!("tcpstate: {} transitions (server {}, client {})", self.total(), self.server, self.client);
        if self.mode == Mode::Connections {
            s.push_str(&self.connections());
        }
        s.push_str(&format!(
            "; lost {}: ring buffer full {}, skipped by the kernel {} and recovered {}",
            lost.total(),
            lost.ringbuf_full,
            lost.skipped,
            lost.recovered
        ));
        let mut clause = |n: u64, what: &str| {
            if n > 0 {
                s.push_str(&format!("; {n} {what}"));
            }
        };
        clause(stats.inferred, "inferred (seen by no probe)");
        clause(lost.tw_ringbuf_full, "TIME_WAIT probe events dropped (ring buffer full)");
        clause(stats.evicted, "connections evicted (table full)");
        clause(stats.tw_forgotten, "TIME_WAIT sockets forgotten (no end seen in 10 minutes)");
        clause(cgroups_unresolved, "cgroup ids without a path (cgroup gone, or outside the cgroup2 mount)");
        let tw: Vec<String> =
            lost.tw_skipped.iter().filter(|(_, n)| *n > 0).map(|(prog, n)| format!("{prog} {n}")).collect();
        if !tw.is_empty() {
            s.push_str(&format!("; TIME_WAIT probes skipped by the kernel: {}", tw.join(", ")));
        }
        s
    }

    /// `; 12 connections: 10 ended (active_close 7, refused 3), 2 still
    /// open at exit`: the causes of those that ended, those seen so far.
    fn connections(&self) -> String {
        let open = self.ends.get(&EndCause::Open).copied().unwrap_or(0);
        let total: u64 = self.ends.values().sum();
        let causes: Vec<String> = self
            .ends
            .iter()
            .filter(|&(&end, &n)| end != EndCause::Open && n > 0)
            .map(|(end, n)| format!("{end} {n}"))
            .collect();
        let causes = if causes.is_empty() { String::new() } else { format!(" ({})", causes.join(", ")) };
        format!("; {total} connections: {} ended{causes}, {open} still open at exit", total - open)
    }
}

impl Sink for Summary {
    fn record(&mut self, record: &Record) -> Result<()> {
        match record {
            Record::Connection(c) => *self.ends.entry(c.end).or_default() += 1,
            _ => match record.side() {
                Side::Server => self.server += 1,
                Side::Client => self.client += 1,
            },
        }
        Ok(())
    }

    fn finish(&mut self, status: &Status<'_>) -> Result<()> {
        if self.print {
            eprintln!("{}", self.text(status.lost, &status.table.stats(), status.cgroups_unresolved));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::tests::{open_connection, refused_connection, sample, sample_connection, with};

    #[test]
    fn counts_per_side_and_names_every_loss() {
        let mut s = Summary::default();
        let server = with(sample(10, 3), |t| t.side = Side::Server);
        s.record(&sample(2, 1)).unwrap();
        s.record(&server).unwrap();
        s.record(&server).unwrap();
        let lost = Lost {
            ringbuf_full: 2,
            tw_ringbuf_full: 0,
            skipped: 5,
            recovered: 4,
            tw_skipped: vec![("tw_timer_start".into(), 0), ("tw_timer_cancel".into(), 7)],
        };
        assert_eq!(
            s.text(&lost, &Stats::default(), 0),
            "tcpstate: 3 transitions (server 2, client 1); lost 3: ring buffer full 2, \
             skipped by the kernel 5 and recovered 4; TIME_WAIT probes skipped by the kernel: tw_timer_cancel 7"
        );
    }

    #[test]
    fn nothing_the_table_deduced_or_dropped_is_silent() {
        let stats = Stats { inferred: 3, evicted: 4, tw_forgotten: 5 };
        let lost = Lost { tw_ringbuf_full: 6, ..Lost::default() };
        assert_eq!(
            Summary::default().text(&lost, &stats, 2),
            "tcpstate: 0 transitions (server 0, client 0); lost 0: ring buffer full 0, skipped by the kernel 0 \
             and recovered 0; 3 inferred (seen by no probe); 6 TIME_WAIT probe events dropped (ring buffer full); \
             4 connections evicted (table full); 5 TIME_WAIT sockets forgotten (no end seen in 10 minutes); \
             2 cgroup ids without a path (cgroup gone, or outside the cgroup2 mount)"
        );
    }

    #[test]
    fn connections_are_counted_by_how_they_ended() {
        let mut s = Summary::new(false, Mode::Connections);
        s.record(&sample(2, 1)).unwrap();
        for r in [sample_connection(), refused_connection(), refused_connection(), open_connection()] {
            s.record(&Record::Connection(Box::new(r))).unwrap();
        }
        assert_eq!(
            s.text(&Lost::default(), &Stats::default(), 0),
            "tcpstate: 1 transitions (server 0, client 1); 4 connections: 3 ended (refused 2, time_wait_expired 1), \
             1 still open at exit; lost 0: ring buffer full 0, skipped by the kernel 0 and recovered 0"
        );
        let none = Summary::new(false, Mode::Connections);
        assert!(none
            .text(&Lost::default(), &Stats::default(), 0)
            .contains("; 0 connections: 0 ended, 0 still open at exit;"));
    }

    #[test]
    fn connection_records_are_not_transitions() {
        let mut s = Summary::new(false, Mode::Transitions);
        s.record(&Record::Connection(Box::new(sample_connection()))).unwrap();
        assert_eq!(s.total(), 0);
        assert!(!s.text(&Lost::default(), &Stats::default(), 0).contains("connections"));
    }
}
