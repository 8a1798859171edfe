//! Transitions no probe saw, inferred from the next one.
//!
//! A state change can still be lost (the kernel skipped both programs, or
//! the ring was full). Per socket the kernel reports transitions in order,
//! so when a socket's next transition starts from a state other than the
//! one it last entered, the missing step is known: it is reported, marked
//! `inferred`, rather than silently leaving a hole.

use rustc_hash::FxHashMap as HashMap;

use crate::event::{Event, Source};
use crate::state::TcpState;

/// Sockets remembered at most (as many as the kernel side's own table).
pub const MAX_SOCKETS: usize = 65_536;

#[derive(Default)]
pub struct Gaps {
    /// The state each live socket last entered, by socket address.
    last: HashMap<u64, TcpState>,
    /// Transitions inferred so far.
    pub inferred: u64,
}

impl Gaps {
    /// Passes `ev` on to `out`, preceded by the transition it implies was
    /// missed, if any.
    pub fn check(&mut self, ev: Event, out: &mut Vec<Event>) {
        if ev.source != Source::SetState {
            out.push(ev);
            return;
        }
        // A socket's first transition (connect, listen, accept) starts a new
        // life at a possibly reused address: nothing before it is ours.
        let born = ev.old == TcpState::CLOSE || (ev.old == TcpState::LISTEN && ev.new == TcpState::SYN_RECV);
        let last = if born { self.last.remove(&ev.skaddr) } else { self.last.get(&ev.skaddr).copied() };
        if let Some(last) = last.filter(|&s| !born && s != ev.old) {
            self.inferred += 1;
            out.push(Event { old: last, new: ev.old, prev_state_ns: None, inferred: true, ..ev.clone() });
        }
        if ev.new == TcpState::CLOSE {
            self.last.remove(&ev.skaddr);
        } else {
            if self.last.len() >= MAX_SOCKETS && !self.last.contains_key(&ev.skaddr) {
                // Sockets whose end was never seen: start afresh rather than grow.
                self.last.clear();
            }
            self.last.insert(ev.skaddr, ev.new);
        }
        out.push(ev);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::tests::sample;

    fn run(steps: &[(u8, u8)]) -> Vec<(String, bool)> {
        let mut gaps = Gaps::default();
        let mut out = Vec::new();
        for &(old, new) in steps {
            gaps.check(sample(old, new), &mut out);
        }
        out.iter().map(|e| (format!("{}:{}", e.old, e.new), e.inferred)).collect()
    }

    #[test]
    fn complete_sequences_pass_unchanged() {
        let out = run(&[(7, 2), (2, 1), (1, 4), (4, 5), (5, 7)]);
        assert!(out.iter().all(|(_, inferred)| !inferred));
        assert_eq!(out.len(), 5);
    }

    #[test]
    fn a_missing_step_is_inferred_before_the_next() {
        // FIN_WAIT1 -> FIN_WAIT2 lost.
        let out = run(&[(7, 2), (2, 1), (1, 4), (5, 7)]);
        assert_eq!(out[3], ("FIN_WAIT1:FIN_WAIT2".to_string(), true));
        assert_eq!(out[4], ("FIN_WAIT2:CLOSE".to_string(), false));
    }

    #[test]
    fn a_reused_address_starts_a_new_life() {
        let out = run(&[(7, 2), (2, 1), (7, 2), (2, 1)]);
        assert!(out.iter().all(|(_, inferred)| !inferred), "{out:?}");
    }

    #[test]
    fn sockets_seen_mid_life_are_not_gaps() {
        let out = run(&[(1, 4), (4, 5)]);
        assert!(out.iter().all(|(_, inferred)| !inferred));
    }
}
