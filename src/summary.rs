//! The exit paragraph: how many transitions, per side, and what was lost.

use std::fmt;

use crate::event::{Event, Side};
use crate::tracer::Lost;

#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub server: u64,
    pub client: u64,
    pub lost: Lost,
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
        let skipped: u64 = self.lost.recursion_misses.iter().map(|(_, n)| n).sum();
        write!(
            f,
            "tcpstate: {} transitions (server {}, client {}); lost {}: ring buffer full {}, skipped by the kernel {}",
            self.total(),
            self.server,
            self.client,
            self.lost.total(),
            self.lost.ringbuf_full,
            skipped
        )?;
        let by_prog: Vec<String> = self
            .lost
            .recursion_misses
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(prog, n)| format!("{prog} {n}"))
            .collect();
        if !by_prog.is_empty() {
            write!(f, " ({})", by_prog.join(", "))?;
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
            recursion_misses: vec![("inet_sock_set_state".into(), 3), ("tw_timer_start".into(), 0)],
        };
        assert_eq!(
            s.to_string(),
            "tcpstate: 3 transitions (server 2, client 1); lost 5: ring buffer full 2, \
             skipped by the kernel 3 (inet_sock_set_state 3)"
        );
    }
}
