//! What user space remembers of each live socket between two of its
//! transitions: the state it entered and when, its owner, how it began.
//!
//! The kernel side keeps no per-socket state, because everything it does
//! runs inline with the TCP stack on every state change: a per-socket map
//! there cost more than the rest of the program together. It names the
//! process only when a change runs in the owner's own system call
//! (connect, listen, close); this table carries that name to the socket's
//! later changes, which run in softirq on top of whatever task was current,
//! and from a listener to the connections it accepts. It also turns what it
//! remembers into the time spent in each state, the side when no server is
//! configured, the `-p` filter, and transitions inferred from gaps.
//!
//! Events must arrive in each socket's own order. They do: a socket's state
//! changes are serialised by its lock and take their ring slot inside it.

use rustc_hash::FxHashMap as HashMap;

use crate::conn::Listener;
use crate::event::{Comm, Event, Side, Source};
use crate::state::TcpState;

/// Sockets remembered at most; beyond, the table starts afresh (sockets
/// whose end was never seen must not make it grow without bound).
pub const MAX_SOCKETS: usize = 65_536;
/// Listening sockets remembered at most.
pub const MAX_LISTENERS: usize = 4_096;

/// A process, as events name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Owner {
    pid: u32,
    comm: Option<Comm>,
}

impl Owner {
    fn of(ev: &Event) -> Option<Owner> {
        ev.pid.map(|pid| Owner { pid, comm: ev.comm })
    }
}

/// One live socket.
#[derive(Clone, Copy, Debug)]
struct Memory {
    /// The state it last entered, and when.
    state: TcpState,
    since_ns: u64,
    owner: Option<Owner>,
    /// How it began (see [`origin_of`]), when that was seen.
    origin: Option<Side>,
}

/// Where a listener lives: its namespace and port.
type ListenerKey = (u32, u16);

pub struct Sockets {
    live: HashMap<u64, Memory>,
    listeners: HashMap<ListenerKey, Owner>,
    /// The side came from the original's server rule in the kernel; without
    /// a server it is decided here.
    server_configured: bool,
    /// -p: only sockets owned by this process are passed on.
    pid: Option<u32>,
    /// Transitions inferred so far.
    pub inferred: u64,
}

impl Sockets {
    pub fn new(server_configured: bool, pid: Option<u32>) -> Sockets {
        Sockets { live: HashMap::default(), listeners: HashMap::default(), server_configured, pid, inferred: 0 }
    }

    /// Listeners that predate us (from /proc), so that the connections they
    /// accept are attributed from their first transition. Events win: a
    /// listen() seen later replaces what is given here.
    pub fn seed(&mut self, listeners: &[Listener]) {
        for l in listeners.iter().take(MAX_LISTENERS) {
            let owner = Owner { pid: l.pid, comm: (!l.comm.is_empty()).then(|| Comm::from(l.comm.as_str())) };
            self.listeners.entry((l.netns, l.port)).or_insert(owner);
        }
    }

    /// Completes `ev` from what the socket's earlier transitions told and
    /// passes it on to `out`, preceded by the transition its old state
    /// implies was missed, if any; or drops it when -p wants another owner.
    /// (A callback rather than a queue: events are moved once less.)
    pub fn track(&mut self, mut ev: Event, mut out: impl FnMut(Event)) {
        if ev.source != Source::SetState {
            out(ev);
            return;
        }
        // A socket's first transition (connect, listen, accept) starts a new
        // life at a possibly reused address: nothing before it is ours.
        // (remember() below replaces or removes whatever the address held.)
        let accepted = ev.old == TcpState::LISTEN && ev.new == TcpState::SYN_RECV;
        let born = ev.old == TcpState::CLOSE || accepted;
        let known = if born { None } else { self.live.get(&ev.skaddr).copied() };

        let owner = Owner::of(&ev)
            .or(known.and_then(|m| m.owner))
            .or_else(|| accepted.then(|| self.listeners.get(&(ev.netns, ev.sport)).copied()).flatten());
        let origin = known.and_then(|m| m.origin).or_else(|| origin_of(ev.old, ev.new));
        self.remember_listener(&ev, owner);
        self.remember(&ev, owner, origin);

        if let Some(owner) = owner {
            (ev.pid, ev.comm) = (Some(owner.pid), owner.comm);
        }
        if !self.server_configured {
            ev.side = origin.unwrap_or_else(|| Side::guess_from_ports(ev.sport, ev.dport));
        }
        if self.pid.is_some_and(|pid| ev.pid != Some(pid)) {
            return;
        }
        match known {
            Some(m) if m.state != ev.old => {
                // What happened between is unknown, so is the time spent.
                self.inferred += 1;
                out(Event { old: m.state, new: ev.old, prev_state_ns: None, inferred: true, ..ev.clone() });
            }
            Some(m) => ev.prev_state_ns = Some(ev.ts_ns.saturating_sub(m.since_ns)),
            None => {}
        }
        out(ev);
    }

    fn remember(&mut self, ev: &Event, owner: Option<Owner>, origin: Option<Side>) {
        if ev.new == TcpState::CLOSE {
            self.live.remove(&ev.skaddr);
            return;
        }
        if self.live.len() >= MAX_SOCKETS && !self.live.contains_key(&ev.skaddr) {
            self.live.clear();
            self.live.shrink_to(MAX_SOCKETS / 16);
        }
        self.live.insert(ev.skaddr, Memory { state: ev.new, since_ns: ev.ts_ns, owner, origin });
    }

    fn remember_listener(&mut self, ev: &Event, owner: Option<Owner>) {
        let key = (ev.netns, ev.sport);
        if ev.new == TcpState::LISTEN {
            if let Some(owner) = owner {
                if self.listeners.len() >= MAX_LISTENERS && !self.listeners.contains_key(&key) {
                    self.listeners.clear();
                }
                self.listeners.insert(key, owner);
            }
        } else if ev.old == TcpState::LISTEN && ev.new == TcpState::CLOSE {
            self.listeners.remove(&key);
        }
    }

    /// Sockets remembered now.
    pub fn live(&self) -> usize {
        self.live.len()
    }
}

/// How a socket began tells its side: connect() passes SYN_SENT, a listener
/// and its accepted children pass LISTEN and SYN_RECV.
fn origin_of(old: TcpState, new: TcpState) -> Option<Side> {
    if old == TcpState::SYN_SENT || new == TcpState::SYN_SENT {
        Some(Side::Client)
    } else if old == TcpState::LISTEN || new == TcpState::LISTEN || old == TcpState::SYN_RECV {
        Some(Side::Server)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::tests::sample;

    const CLOSE: u8 = 7;
    const LISTEN: u8 = 10;

    /// A kernel event: the owner named only when `pid` is given.
    fn kernel(skaddr: u64, ts_ns: u64, old: u8, new: u8, pid: Option<u32>) -> Event {
        Event { skaddr, ts_ns, pid, comm: pid.map(|_| Comm::from("nginx")), prev_state_ns: None, ..sample(old, new) }
    }

    fn run(sockets: &mut Sockets, events: Vec<Event>) -> Vec<Event> {
        let mut out = Vec::new();
        for ev in events {
            sockets.track(ev, |e| out.push(e));
        }
        out
    }

    fn pairs(out: &[Event]) -> Vec<(String, bool)> {
        out.iter().map(|e| (format!("{}:{}", e.old, e.new), e.inferred)).collect()
    }

    fn steps(steps: &[(u8, u8)]) -> Vec<(String, bool)> {
        let events = steps.iter().map(|&(o, n)| kernel(1, 0, o, n, None)).collect();
        pairs(&run(&mut Sockets::new(true, None), events))
    }

    #[test]
    fn complete_sequences_pass_unchanged() {
        let out = steps(&[(7, 2), (2, 1), (1, 4), (4, 5), (5, 7)]);
        assert!(out.iter().all(|(_, inferred)| !inferred));
        assert_eq!(out.len(), 5);
    }

    #[test]
    fn a_missing_step_is_inferred_before_the_next() {
        // FIN_WAIT1 -> FIN_WAIT2 lost.
        let out = steps(&[(7, 2), (2, 1), (1, 4), (5, 7)]);
        assert_eq!(out[3], ("FIN_WAIT1:FIN_WAIT2".to_string(), true));
        assert_eq!(out[4], ("FIN_WAIT2:CLOSE".to_string(), false));
    }

    #[test]
    fn a_reused_address_starts_a_new_life() {
        let out = steps(&[(7, 2), (2, 1), (7, 2), (2, 1)]);
        assert!(out.iter().all(|(_, inferred)| !inferred), "{out:?}");
    }

    #[test]
    fn sockets_seen_mid_life_are_not_gaps() {
        let out = steps(&[(1, 4), (4, 5)]);
        assert!(out.iter().all(|(_, inferred)| !inferred));
    }

    #[test]
    fn time_in_state_is_measured_from_the_socket_own_previous_change() {
        let mut s = Sockets::new(true, None);
        let out = run(
            &mut s,
            vec![
                kernel(1, 100, CLOSE, 2, Some(9)),
                kernel(2, 150, 1, 4, None), // another socket, seen mid-life
                kernel(1, 400, 2, 1, None),
                kernel(1, 1_400, 1, 4, None),
            ],
        );
        let prev: Vec<_> = out.iter().map(|e| e.prev_state_ns).collect();
        assert_eq!(prev, [None, None, Some(300), Some(1_000)]);
        // An inferred step's duration is unknown, and so is the next one's.
        let out = run(&mut s, vec![kernel(1, 2_000, 5, CLOSE, None)]);
        assert_eq!(
            out.iter().map(|e| (e.inferred, e.prev_state_ns)).collect::<Vec<_>>(),
            [(true, None), (false, None)]
        );
        assert_eq!(s.live(), 1, "socket 2 is still open, socket 1 is gone");
    }

    #[test]
    fn the_owner_named_in_its_own_system_call_carries_to_later_changes() {
        let mut s = Sockets::new(true, None);
        let out =
            run(&mut s, vec![kernel(1, 0, CLOSE, 2, Some(42)), kernel(1, 1, 2, 1, None), kernel(1, 2, 1, 4, Some(43))]);
        let pids: Vec<_> = out.iter().map(|e| e.pid).collect();
        // close() by another process (a passed descriptor) makes it the owner.
        assert_eq!(pids, [Some(42), Some(42), Some(43)]);
        assert_eq!(out[1].comm.map(|c| c.to_string()).as_deref(), Some("nginx"));
    }

    #[test]
    fn accepted_connections_inherit_the_listener_owner() {
        let mut s = Sockets::new(true, None);
        let mut listen = kernel(10, 0, CLOSE, LISTEN, Some(7));
        listen.sport = 8080;
        let mut child = kernel(11, 5, LISTEN, 3, None);
        child.sport = 8080;
        let mut seeded_child = kernel(12, 6, LISTEN, 3, None);
        seeded_child.sport = 443;
        s.seed(&[Listener { netns: child.netns, port: 443, pid: 99, comm: "old-server".into() }]);
        let out = run(&mut s, vec![listen.clone(), child.clone(), seeded_child]);
        assert_eq!(out.iter().map(|e| e.pid).collect::<Vec<_>>(), [Some(7), Some(7), Some(99)]);
        assert_eq!(out[2].comm.map(|c| c.to_string()).as_deref(), Some("old-server"));
        // Once the listener closed, nobody is known to own its port.
        let mut close = kernel(10, 9, LISTEN, CLOSE, None);
        close.sport = 8080;
        let out = run(&mut s, vec![close, Event { skaddr: 13, ..child }]);
        assert_eq!(out[1].pid, None);
    }

    #[test]
    fn without_a_server_the_side_comes_from_how_the_socket_began() {
        let mut s = Sockets::new(false, None);
        let mut connect = kernel(1, 0, CLOSE, 2, Some(1));
        (connect.sport, connect.dport) = (80, 50_000); // ports alone would say server
        let later = Event { old: TcpState(2), new: TcpState(1), ..connect.clone() };
        let mut unseen = kernel(2, 0, 1, 4, None);
        (unseen.sport, unseen.dport) = (443, 50_000);
        let out = run(&mut s, vec![connect, later, unseen]);
        let sides: Vec<_> = out.iter().map(|e| e.side).collect();
        assert_eq!(sides, [Side::Client, Side::Client, Side::Server]);
    }

    #[test]
    fn a_pid_filter_keeps_only_that_owner_sockets() {
        let mut s = Sockets::new(true, Some(42));
        let out = run(
            &mut s,
            vec![
                kernel(1, 0, CLOSE, 2, Some(42)),
                kernel(2, 0, CLOSE, 2, Some(41)),
                kernel(1, 1, 2, 1, None),
                kernel(2, 1, 2, 1, None),
            ],
        );
        assert_eq!(out.iter().map(|e| e.skaddr).collect::<Vec<_>>(), [1, 1]);
        assert_eq!(out[1].prev_state_ns, Some(1));
    }

    #[test]
    fn timewait_probe_events_pass_untouched() {
        let mut s = Sockets::new(false, Some(1));
        let tw = Event { source: Source::TwArm, pid: None, ..sample(6, 6) };
        let out = run(&mut s, vec![tw.clone()]);
        assert_eq!(out, [tw]);
    }
}
