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

use super::{decide_side, Conn, ConnId, ConnTable, Inferred, Record};
use crate::model::{Side, TcpState};
use crate::trace::ProbeEvent;

impl ConnTable {
    /// A full socket's transition.
    pub(super) fn set_state(&mut self, ev: &ProbeEvent, old: TcpState, new: TcpState, out: &mut Vec<Record>) {
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
            unclaimed = ProbeEvent { cookie: 0, ..*ev };
            &unclaimed
        } else {
            ev
        };
        if !born {
            self.settle(ev, out);
        }
        let listener = if accepted { self.listeners.get(ev.netns, ev.tuple.sport) } else { None };
        let id = self.full_socket(ev, old, born);
        let Some(conn) = self.conns.get_mut(id) else { return };
        conn.provisional |= provisional;

        conn.owner = ev.actor.or(conn.owner).or(listener);
        conn.origin = conn.origin.or_else(|| origin_of(old, new));
        (conn.side, conn.side_rule) = decide_side(ev.server_rule, conn.origin, &ev.tuple);
        // connect() enters SYN_SENT before it picks the local port: later
        // events complete the tuple.
        (conn.tuple, conn.netns) = (ev.tuple, ev.netns);
        let owner = conn.owner;
        self.listeners.learn(ev, old, new, owner);

        let conn = self.conns.get_mut(id).expect("looked up above");
        if conn.state != old {
            // What happened between is unknown, and so is the time spent.
            let mut gap = conn.transition(ev.ts_ns, conn.state, old, ev.skaddr);
            gap.inferred = Some(Inferred { earliest_ns: conn.seen_ns });
            (conn.state, conn.since_ns, conn.seen_ns) = (old, None, ev.ts_ns);
            self.report(id, gap, out);
        }
        if new == TcpState::CLOSE && !self.cfg.raw && self.hand_off(id, ev, old, out) {
            return;
        }
        let Some(conn) = self.conns.get_mut(id) else { return };
        let mut t = conn.transition(ev.ts_ns, old, new, ev.skaddr);
        t.time_in_old_ns = conn.time_in_state(ev.ts_ns);
        conn.enter(new, ev.ts_ns);
        if provisional {
            self.held.push_back((id, t));
            return;
        }
        self.report(id, t, out);
        if new == TcpState::CLOSE {
            self.remove(id);
        }
    }

    /// The connection of a full socket's event: found by its cookie (or, on
    /// kernels without cookies, by its address), or new.
    fn full_socket(&mut self, ev: &ProbeEvent, old: TcpState, born: bool) -> ConnId {
        let at_addr = self.by_sock.get(&ev.skaddr).copied();
        let id = match (ev.cookie, at_addr) {
            (0, Some(id)) if !born => id,
            (0, _) => self.local_id(),
            (cookie, _) => self.id_of_cookie(cookie),
        };
        if born {
            // A new socket at this address: the one that lived here is gone
            // (its close was lost). And a socket that connects again after a
            // failed connect() keeps its cookie: a new life all the same.
            if let Some(gone) = at_addr {
                self.remove(gone);
            }
            self.remove(id);
        }
        match self.conns.get_mut(id) {
            // Known so far only through its timewait socket: its full
            // socket's history before this event was not seen.
            Some(conn) if conn.sock.is_none() => (conn.state, conn.since_ns) = (old, None),
            Some(_) => {}
            None => {
                self.insert(Conn::new(id, ev, old));
            }
        }
        let conn = self.conns.get_mut(id).expect("present");
        if conn.sock != Some(ev.skaddr) {
            conn.sock = Some(ev.skaddr);
            self.by_sock.insert(ev.skaddr, id);
        }
        id
    }

    /// The next event of an accepted socket whose identity was provisional:
    /// its connection takes the socket's cookie as its id (or keeps tcpstate's
    /// when its first record already went out: the cookie then names it
    /// too), and the accept held back for it goes out, with the socket's own
    /// peer.
    fn settle(&mut self, ev: &ProbeEvent, out: &mut Vec<Record>) {
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
        conn.tuple = ev.tuple;
        if let Some((_, mut t)) = held {
            (t.conn_id, t.tuple) = (settled, ev.tuple);
            self.report(settled, t, out);
        }
    }

    /// Gives connection `id` the id `to`.
    fn rekey(&mut self, id: ConnId, to: ConnId) {
        let Some(mut conn) = self.conns.remove(id) else { return };
        conn.id = to;
        if let Some(sock) = conn.sock {
            self.by_sock.insert(sock, to);
        }
        self.conns.insert(conn);
    }

    /// Accepts held back longer than a timer cancel is (so that output
    /// stays in time order) go out under tcpstate's id.
    pub(super) fn release_held(&mut self, now_ns: u64, out: &mut Vec<Record>) {
        while let Some((id, t)) = self.held.front() {
            if t.ts_ns + super::CANCEL_HOLD_NS > now_ns {
                break;
            }
            let id = *id;
            let (_, t) = self.held.pop_front().expect("looked at");
            if self.conns.get(id).is_some() {
                self.report(id, t, out);
            } else {
                out.push(Record::Transition(t));
            }
        }
    }

    /// The full socket's last transition (`-> CLOSE`) when a timewait socket
    /// took its connection over: reported as the state the connection
    /// entered (`FIN_WAIT2 -> TIME_WAIT`, `CLOSING -> TIME_WAIT`), or as
    /// nothing when the timewait socket holds a parked FIN_WAIT2, which the
    /// connection stays in. False when no timewait socket took over.
    fn hand_off(&mut self, id: ConnId, ev: &ProbeEvent, old: TcpState, out: &mut Vec<Record>) -> bool {
        let linked = self.conns.get(id).and_then(|c| c.tw).filter(|tw| !tw.handed_off).is_some();
        if !linked && !self.claim_by_tuple(id, ev, out) {
            return false;
        }
        let Some(conn) = self.conns.get_mut(id) else { return false };
        let Some(tw) = conn.tw.as_mut() else { return false };
        tw.handed_off = true;
        let substate = tw.substate;
        if let Some(sock) = conn.sock.take() {
            if self.by_sock.get(&sock) == Some(&id) {
                self.by_sock.remove(&sock);
            }
        }
        if substate == conn.state {
            // A FIN_WAIT2 parked in a timewait socket stays FIN_WAIT2, and
            // has been since the full socket entered it.
            conn.seen_ns = ev.ts_ns;
            return true;
        }
        // Reported on the full socket, whose last transition this is.
        let mut t = conn.transition(ev.ts_ns, old, substate, ev.skaddr);
        t.time_in_old_ns = conn.time_in_state(ev.ts_ns);
        conn.enter(substate, ev.ts_ns);
        self.report(id, t, out);
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
