//! The exit paragraph: how many transitions, per side, and what was lost.

use std::fmt;

use crate::event::{Event, Side};
use crate::trace::Lost;

#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub server: u64,
    pub client: u64,
    pub lost: Lost,
    /// Transitions no probe saw, deduced from the next one.
    pub inferred: u64,
}

impl Summary {
    pub fn count(&mut self, ev: &Event) {
        match ev.side {
            Side::Server => self.server += 1,
            Side::Client => self.client += 1,
        }
    }

    pub fn total(&self) -> u64 {
        self.server + self.client
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lost = &self.lost;
        write!(
            f,
            "tcpstate: {} transitions (server {}, client {}); lost {}: ring buffer full {}, \
             skipped by the kernel {} and recovered {}",
            self.total(),
            self.server,
            self.client,
            lost.total(),
            lost.ringbuf_full,
            lost.skipped,
            lost.recovered
        )?;
        if self.inferred > 0 {
            write!(f, "; {} inferred from the next transition", self.inferred)?;
        }
        let tw: Vec<String> =
            lost.tw_skipped.iter().filter(|(_, n)| *n > 0).map(|(prog, n)| format!("{prog} {n}")).collect();
        if lost.tw_ringbuf_full > 0 {
            write!(f, "; TIME_WAIT probe events dropped (ring buffer full): {}", lost.tw_ringbuf_full)?;
        }
        if !tw.is_empty() {
            write!(f, "; TIME_WAIT probes skipped by the kernel: {}", tw.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::tests::sample;

    #[test]
    fn counts_per_side_and_names_every_loss() {
        let mut s = Summary::default();
        let mut server = sample(10, 3);
        server.side = Side::Server;
        s.count(&sample(2, 1));
        s.count(&server);
        s.count(&server);
        s.lost = Lost {
            ringbuf_full: 2,
            tw_ringbuf_full: 0,
            skipped: 5,
            recovered: 4,
            tw_skipped: vec![("tw_timer_start".into(), 0), ("tw_timer_cancel".into(), 7)],
        };
        assert_eq!(
            s.to_string(),
            "tcpstate: 3 transitions (server 2, client 1); lost 3: ring buffer full 2, \
             skipped by the kernel 5 and recovered 4; TIME_WAIT probes skipped by the kernel: tw_timer_cancel 7"
        );
    }
}
