//! Full sockets' transitions: who owns the socket, which side it is, how
//! long it spent in each state, the transitions a gap implies, and the
//! hand-off of a closing connection to its timewait socket.
//!
//! The kernel side keeps no per-socket state (a per-socket map there cost
//! more than the rest of the program together) and names the process only
//! when a change runs in the owner's own system call (connect, listen,
//! close). Remembering that owner for the socket's later changes, which run
//! in softirq on top of whatever task was current, and for the connections a
//! listener accepts, is done here.

use std::collections::VecDeque;
use std::num::NonZeroU64;

use super::{decide_side, At, Conn, ConnId, ConnTable, Inferred, Record, CANCEL_HOLD_NS};
use crate::model::{Side, TcpState};
use crate::trace::ProbeEvent;

/// An accept held back for its socket's identity goes out after this much
/// wall-clock time even if no event came since (the next one normally comes
/// within microseconds).
const HELD_MAX_NS: u64 = 1_000_000_000;

impl ConnTable {
    /// A full socket's transition.
    pub(super) fn set_state(&mut self, ev: &ProbeEvent, old: TcpState, new: TcpState, out: &mut VecDeque<Record>) {
        // A socket's first transition (connect, listen, accept) starts a new
        // life: nothing before it is ours.
        let accepted = old == TcpState::LISTEN && new == TcpState::SYN_RECV;
        let born = old == TcpState::CLOSE || accepted;
        // Kernels before 6.18 (6.1 and 6.12 seen) fire the accept while the
        // new socket is still a copy of its listener: the listener's peer
        // (port 0) and cookie; it takes its own right after. Its identity
        // and peer come with its next event, which follows at once.
        let provisional = accepted && ev.tuple.dport == 0;
        let unclaimed;
        let ev = if provisional {
            unclaimed = ProbeEvent { cookie: 0, counters: ev.counters.clone(), ..*ev };
            &unclaimed
        } else {
            ev
        };
        if !born && self.provisional > 0 {
            self.settle(ev, out);
        }
        let listener = if accepted { self.listeners.get(ev.netns, ev.tuple.sport) } else { None };
        let (id, slot) = self.full_socket(ev, old, born);
        let conn = self.conns.at(slot);
        if provisional && !conn.provisional {
            conn.provisional = true;
            self.provisional += 1;
        }
        conn.owner = ev.actor.or(conn.owner).or(listener);
        conn.cgroup_id = ev.cgroup_id.or(conn.cgroup_id);
        conn.origin = conn.origin.or_else(|| origin_of(old, new));
        (conn.side, conn.side_rule) = decide_side(ev.server_rule, conn.origin, &ev.tuple);
        // connect() enters SYN_SENT before it picks the local port: its next
        // event completes the tuple.
        if old == TcpState::SYN_SENT {
            conn.tuple = ev.tuple;
        }
        self.listeners.learn(ev, old, new, conn.owner);

        if conn.state != old {
            // What happened between is unknown, and so is the time spent.
            let mut gap = conn.transition_of(ev.ts_ns, conn.state, old, ev.skaddr, ev.tuple, ev.netns);
            gap.inferred = Some(Inferred { earliest_ns: conn.seen_ns });
            (conn.state, conn.since, conn.seen_ns) = (old, At::NONE, ev.ts_ns);
            self.reports.report(conn, gap, out);
        }
        if new == TcpState::CLOSE {
            let active_open = conn.origin == Some(Side::Client);
            if let Some(life) = self.reports.life(conn) {
                life.closed(old, ev.counters.as_deref().copied(), active_open);
            }
        } else if new == TcpState::ESTABLISHED && self.ended.awaits_reuse() {
            self.established(ev.netns, &ev.tuple);
        }
        let conn = self.conns.at(slot);
        let conn = if new == TcpState::CLOSE && !self.cfg.raw {
            if self.hand_off(id, slot, ev, old, out) {
                return;
            }
            // (A claim may have moved connections in the store.)
            let Some(conn) = self.conns.get_mut(id) else { return };
            conn
        } else {
            conn
        };
        let mut t = conn.transition_of(ev.ts_ns, old, new, ev.skaddr, ev.tuple, ev.netns);
        t.time_in_old_ns = conn.time_in_state(ev.ts_ns);
        conn.enter(new, ev.ts_ns);
        if provisional {
            self.held.push_back((id, t));
            return;
        }
        self.reports.report(conn, t, out);
        if new == TcpState::CLOSE {
            self.end(id, ev.ts_ns, out);
        }
    }

    /// The connection of a full socket's event, and its slot in the store:
    /// found by its cookie (or, on kernels without cookies, by its address),
    /// or new.
    fn full_socket(&mut self, ev: &ProbeEvent, old: TcpState, born: bool) -> (ConnId, usize) {
        let id = match ev.cookie {
            0 => match self.by_sock.get(&ev.skaddr) {
                Some(&id) if !born => id,
                _ => self.local_id(),
            },
            cookie => self.id_of_cookie(cookie),
        };
        let slot = match self.conns.slot(id) {
            // A socket that connects again after a failed connect() keeps
            // its cookie: a new life all the same.
            Some(_) if born => {
                self.remove(id);
                self.insert(Conn::new(id, ev, old))
            }
            Some(slot) => slot,
            None => self.insert(Conn::new(id, ev, old)),
        };
        let conn = self.conns.at(slot);
        let sock = NonZeroU64::new(ev.skaddr);
        if conn.sock == sock {
            return (id, slot);
        }
        if conn.sock.is_none() && conn.tw.is_some_and(|tw| !tw.handed_off) {
            // Known so far only through its timewait socket: its full
            // socket's history before this event was not seen.
            (conn.state, conn.since) = (old, At::NONE);
        }
        conn.sock = sock;
        match self.by_sock.insert(ev.skaddr, id) {
            // A new socket at this address: the one that lived here is gone
            // (its close was lost).
            Some(gone) if gone != id => {
                self.remove(gone);
                (id, self.conns.slot(id).expect("just inserted"))
            }
            _ => (id, slot),
        }
    }

    /// The next event of an accepted socket whose identity was provisional:
    /// its connection takes the socket's cookie as its id (or keeps tcpstate's
    /// when its first record already went out: the cookie then names it
    /// too), and the accept held back for it goes out, with the socket's own
    /// peer.
    fn settle(&mut self, ev: &ProbeEvent, out: &mut VecDeque<Record>) {
        let Some(&id) = self.by_sock.get(&ev.skaddr) else { return };
        if !self.conns.get(id).is_some_and(|c| c.provisional) {
            return;
        }
        let held = self.held.iter().position(|(of, _)| *of == id).and_then(|i| self.held.remove(i));
        let mut settled = id;
        if ev.cookie != 0 {
            if held.is_some() && self.conns.get(ev.cookie).is_none() {
                settled = ev.cookie;
                self.rekey(id, settled);
            } else {
                self.aliases.insert(ev.cookie, id);
            }
        }
        let Some(conn) = self.conns.get_mut(settled) else { return };
        conn.provisional = false;
        self.provisional -= 1;
        conn.tuple = ev.tuple;
        if let Some((_, mut t)) = held {
            (t.conn_id, t.tuple) = (settled, ev.tuple);
            self.reports.report(conn, t, out);
        }
    }

    /// Gives connection `id` the id `to`.
    fn rekey(&mut self, id: ConnId, to: ConnId) {
        let Some(mut conn) = self.conns.remove(id) else { return };
        conn.id = to;
        if let Some(sock) = conn.sock {
            self.by_sock.insert(sock.get(), to);
        }
        self.conns.insert(conn);
    }

    /// Accepts whose socket's next event should have come by now go out
    /// under tcpstate's id: once later events have come (the event stream
    /// moved a cancel hold past them; a reader lagging behind the ring does
    /// not count), or after a second of wall-clock time (`now_ns`) without
    /// any; all of them when `now_ns` is `None` (tracing ended).
    pub(super) fn release_held(&mut self, now_ns: Option<u64>, out: &mut VecDeque<Record>) {
        let due = |ts: u64| match now_ns {
            Some(now) => ts + CANCEL_HOLD_NS <= self.latest_ns || ts + HELD_MAX_NS <= now,
            None => true,
        };
        while self.held.front().is_some_and(|(_, t)| due(t.ts_ns)) {
            let (id, t) = self.held.pop_front().expect("looked at");
            match self.conns.get_mut(id) {
                Some(conn) => self.reports.report(conn, t, out),
                None => self.reports.report_unfollowed(t, out),
            }
        }
    }

    /// The full socket's last transition (`-> CLOSE`) when a timewait socket
    /// took its connection over: reported as the state the connection
    /// entered (`FIN_WAIT2 -> TIME_WAIT`, `CLOSING -> TIME_WAIT`), or as
    /// nothing when the timewait socket holds a parked FIN_WAIT2, which the
    /// connection stays in. False when no timewait socket took over.
    fn hand_off(
        &mut self,
        id: ConnId,
        slot: usize,
        ev: &ProbeEvent,
        old: TcpState,
        out: &mut VecDeque<Record>,
    ) -> bool {
        let linked = self.conns.at(slot).tw.is_some_and(|tw| !tw.handed_off);
        let slot = match linked {
            true => slot,
            false if self.claim_by_tuple(id, ev, out) => match self.conns.slot(id) {
                Some(slot) => slot,
                None => return false,
            },
            false => return false,
        };
        let conn = self.conns.at(slot);
        let Some(tw) = conn.tw.as_mut() else { return false };
        tw.handed_off = true;
        let substate = tw.substate;
        let sock = conn.sock.take();
        if substate == conn.state {
            // A FIN_WAIT2 parked in a timewait socket stays FIN_WAIT2, and
            // has been since the full socket entered it.
            conn.seen_ns = ev.ts_ns;
        } else {
            // Reported on the full socket, whose last transition this is.
            let mut t = conn.transition_of(ev.ts_ns, old, substate, ev.skaddr, ev.tuple, ev.netns);
            t.time_in_old_ns = conn.time_in_state(ev.ts_ns);
            conn.enter(substate, ev.ts_ns);
            self.reports.report(conn, t, out);
        }
        if let Some(sock) = sock {
            self.unindex_sock(sock.get(), id);
        }
        true
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
