//! The TIME_WAIT part of a connection's life, from the TIME_WAIT probes'
//! raw events.
//!
//! The kernel hands an actively closed connection from its full socket to a
//! timewait socket: the probes see the timewait socket born (alloc, or its
//! timer's first arm), then the full socket's `FIN_WAIT2 -> CLOSE`, then
//! timer re-arms and finally a death (free, expiry, or a cancel that no
//! re-arm follows). Users see one story per connection: `FIN_WAIT2 ->
//! TIME_WAIT` at the hand-off and `TIME_WAIT -> CLOSE` exactly once at
//! death, with the connection's id, side and owner on both.
//!
//! A timewait socket carries its full socket's cookie, which links it to
//! its connection at birth. Where the kernel gave no cookie, the hand-off
//! claims it by namespace and tuple instead.

use std::collections::VecDeque;
use std::num::NonZeroU64;

use rustc_hash::FxHashMap as HashMap;

use super::life::TwEnd;
use super::{
    decide_side, shrink_if_sparse, unindex, At, Conn, ConnId, ConnTable, Inferred, RawProbe, Record, TwSocket,
};
use crate::model::{TcpState, Tuple};
use crate::trace::{ProbeEvent, TwEvent};

/// How long a timer cancel waits for the re-arm or expiry that would make
/// it not a death. Both follow within microseconds on the same CPU; the
/// margin covers ring order lagging across CPUs.
pub const CANCEL_HOLD_NS: u64 = 5_000_000;

/// A cancel followed this soon by an arm of the same socket is one
/// mod_timer() call (a re-arm), not a death and a rebirth. Should a new
/// connection with the same tuple still fit in it, its hand-off tells.
/// (Only where the kernel gave no cookie: cookies tell the two apart.)
const REARM_WINDOW_NS: u64 = 100_000;

/// A birth not claimed by its full socket's hand-off within this time
/// belongs to a socket we do not report (filtered, or its event lost).
const CLAIM_WINDOW_NS: u64 = 100_000_000;

/// Timewait sockets live 60 s, a FIN retransmit can re-arm once more;
/// one silent this long died while an event was lost.
pub const STALE_NS: u64 = 600_000_000_000;

/// Deaths remembered to drop duplicate exits of the same socket.
const RECENT_DEATHS: usize = 1024;

/// Where the live timewait sockets are.
#[derive(Default)]
pub(super) struct Timewait {
    /// Connection of each live timewait socket, by the socket's address.
    pub(super) by_addr: HashMap<u64, ConnId>,
    /// Where the kernel gave no cookie: the connection of the live timewait
    /// socket of each namespace and tuple, by a 64-bit fingerprint of them
    /// (checked against the connection's own).
    pub(super) by_tuple: HashMap<u64, ConnId>,
    /// Recently dead (address, fingerprint), newest last.
    dead: VecDeque<(u64, u64)>,
    /// Timer cancels awaiting their verdict, (time, connection), oldest
    /// first: tick() looks at these only, not at every live socket.
    pub(super) cancels: VecDeque<(u64, ConnId)>,
    /// When tick() last looked for sockets gone silent.
    last_sweep_ns: u64,
}

impl Timewait {
    pub(super) fn len(&self) -> usize {
        self.by_addr.len()
    }

    /// Forgets where connection `id`'s timewait socket was.
    pub(super) fn unindex(&mut self, tw: &TwSocket, id: ConnId, conn: &Conn) {
        unindex(&mut self.by_addr, tw.addr(), id);
        if tw.cookie == 0 {
            unindex(&mut self.by_tuple, fingerprint(conn.netns, &conn.tuple), id);
        }
    }

    fn remember_death(&mut self, addr: u64, fingerprint: u64) {
        if self.dead.len() == RECENT_DEATHS {
            self.dead.pop_front();
        }
        self.dead.push_back((addr, fingerprint));
    }

    /// A second exit of a socket already reported dead (inet_twsk_put runs
    /// once per reference).
    fn recently_dead(&self, addr: u64, fingerprint: u64) -> bool {
        self.dead.iter().any(|&d| d == (addr, fingerprint))
    }
}

/// What a probe read of a dying socket: its substate, and when its timer was
/// last armed for TIME_WAIT.
#[derive(Clone, Copy, Debug)]
struct LastWord {
    substate: Option<TcpState>,
    armed: At,
    /// The death was its timer's expiry.
    expired: bool,
    /// Its network namespace was being deleted.
    netns_dying: bool,
}

impl LastWord {
    const NOTHING: LastWord = LastWord { substate: None, armed: At::NONE, expired: false, netns_dying: false };
}

impl ConnTable {
    /// A timewait socket's event.
    pub(super) fn timewait(&mut self, ev: &ProbeEvent, what: TwEvent, substate: TcpState, out: &mut VecDeque<Record>) {
        if self.cfg.raw {
            self.raw_probe(ev, what, substate, out);
            return;
        }
        if ev.skaddr == 0 {
            return;
        }
        match what {
            TwEvent::Born => self.tw_born(ev, substate, false, out),
            TwEvent::Armed => self.tw_armed(ev, substate, out),
            TwEvent::Cancelled => self.tw_cancelled(ev, substate, out),
            TwEvent::Expired | TwEvent::Freed => {
                let word = LastWord {
                    substate: Some(substate),
                    armed: At::from(ev.tw_armed_ns),
                    expired: what == TwEvent::Expired,
                    netns_dying: ev.netns_dying,
                };
                self.tw_died_or_unknown(ev, word, out);
            }
        }
    }

    /// `--raw`: the event as the probe saw it, with its connection's id and
    /// side where the connection is known.
    fn raw_probe(&mut self, ev: &ProbeEvent, what: TwEvent, substate: TcpState, out: &mut VecDeque<Record>) {
        let id = if ev.cookie == 0 { 0 } else { self.id_of_cookie(ev.cookie) };
        let conn = self.conns.get(id);
        let side = conn.map_or_else(|| decide_side(ev.server_rule, None, &ev.tuple).0, |c| c.side);
        out.push_back(Record::Probe(RawProbe {
            ts_ns: ev.ts_ns,
            conn_id: id,
            side,
            what,
            substate,
            tuple: ev.tuple,
            netns: ev.netns,
            cgroup_id: conn.and_then(|c| c.cgroup_id).or(ev.cgroup_id),
            cgroup: None,
            skaddr: ev.skaddr,
        }));
    }

    /// A timewait socket born, or first seen late (by its cancel).
    fn tw_born(&mut self, ev: &ProbeEvent, substate: TcpState, late: bool, out: &mut VecDeque<Record>) {
        if self.tw.by_addr.contains_key(&ev.skaddr) {
            // Its death was lost: the address is a new socket now.
            self.tw_died(ev.skaddr, ev.ts_ns, LastWord::NOTHING, out);
        }
        // The connection it continues: the one with its cookie, if we know
        // it, else one known only through this socket for now.
        let id = match ev.cookie {
            0 => self.local_id(),
            cookie => self.id_of_cookie(cookie),
        };
        if ev.cookie == 0 {
            if let Some(old) = self.live_by_tuple(ev.netns, &ev.tuple) {
                // A tuple has one timewait socket at a time: the previous one
                // died, at its pending cancel if it had one (tw_reuse).
                // (With cookies, its own cancel tells.)
                if let Some(tw) = self.conns.get(old).and_then(|c| c.tw) {
                    let ts = tw.cancel.get().unwrap_or(ev.ts_ns);
                    self.tw_died(tw.addr(), ts, LastWord::NOTHING, out);
                }
            }
            self.tw.by_tuple.insert(fingerprint(ev.netns, &ev.tuple), id);
        }
        let Some(addr) = NonZeroU64::new(ev.skaddr) else { return };
        let tw = TwSocket {
            addr,
            cookie: ev.cookie,
            substate,
            handed_off: false,
            born: if late { At::NONE } else { At::of(ev.ts_ns) },
            last_ns: ev.ts_ns,
            cancel: At::NONE,
            cancel_substate: substate,
            cancel_armed: At::NONE,
            cancel_netns_dying: false,
            rearm_cancel: At::NONE,
        };
        let slot = match self.conns.slot(id) {
            Some(slot) => slot,
            None => self.insert(Conn::new(id, ev, substate)),
        };
        let conn = self.conns.at(slot);
        if let Some(old) = conn.tw.replace(tw) {
            // One timewait socket per connection: only a lost death gets here.
            unindex(&mut self.tw.by_addr, old.addr(), id);
        }
        if conn.state == substate {
            conn.seen_ns = ev.ts_ns;
        }
        conn.cgroup_id = conn.cgroup_id.or(ev.cgroup_id);
        self.tw.by_addr.insert(ev.skaddr, id);
    }

    /// Timer armed: a birth, or a re-arm of a live socket (whose substate
    /// may have moved from FIN_WAIT2 to TIME_WAIT).
    fn tw_armed(&mut self, ev: &ProbeEvent, substate: TcpState, out: &mut VecDeque<Record>) {
        let Some((tw, conn_key)) = self.tw_at(ev.skaddr) else {
            self.tw_born(ev, substate, false, out);
            return;
        };
        let same = if tw.cookie != 0 && ev.cookie != 0 {
            tw.cookie == ev.cookie
        } else {
            conn_key == (ev.netns, ev.tuple)
                && tw.cancel.get().is_none_or(|c| ev.ts_ns.saturating_sub(c) <= REARM_WINDOW_NS)
        };
        if same {
            self.tw_moved(ev, substate, out);
        } else {
            let ts = tw.cancel.get().unwrap_or(ev.ts_ns);
            self.tw_died(ev.skaddr, ts, LastWord::NOTHING, out);
            self.tw_born(ev, substate, false, out);
        }
    }

    /// A live socket's timer was re-armed, maybe in a new substate.
    fn tw_moved(&mut self, ev: &ProbeEvent, substate: TcpState, out: &mut VecDeque<Record>) {
        let Some(&id) = self.tw.by_addr.get(&ev.skaddr) else { return };
        let Some(conn) = self.conns.get_mut(id) else { return };
        let Some(tw) = conn.tw.as_mut() else { return };
        (tw.rearm_cancel, tw.cancel) = (tw.cancel, At::NONE);
        tw.last_ns = ev.ts_ns;
        tw.substate = substate;
        // Until its full socket hands the connection over, the hand-off
        // tells the state the connection entered.
        let in_tw = tw.handed_off || conn.sock.is_none();
        if !in_tw {
            return;
        }
        if substate == conn.state {
            conn.seen_ns = ev.ts_ns;
            return;
        }
        let mut t = conn.transition(ev.ts_ns, conn.state, substate, ev.skaddr);
        t.time_in_old_ns = conn.time_in_state(ev.ts_ns);
        conn.enter(substate, ev.ts_ns);
        self.reports.report(conn, t, out);
    }

    fn tw_cancelled(&mut self, ev: &ProbeEvent, substate: TcpState, out: &mut VecDeque<Record>) {
        let id = match self.tw.by_addr.get(&ev.skaddr) {
            Some(&id) => id,
            None if self.tw.recently_dead(ev.skaddr, fingerprint(ev.netns, &ev.tuple)) => return,
            None => {
                // Born before we started (or not ours): track it so that its
                // death is told. Too old to be claimed by a hand-off.
                self.tw_born(ev, substate, true, out);
                let Some(&id) = self.tw.by_addr.get(&ev.skaddr) else { return };
                id
            }
        };
        let Some(tw) = self.conns.get_mut(id).and_then(|c| c.tw.as_mut()) else { return };
        tw.last_ns = ev.ts_ns;
        if tw.cancel == At::NONE {
            (tw.cancel, tw.cancel_substate, tw.cancel_armed) = (At::of(ev.ts_ns), substate, At::from(ev.tw_armed_ns));
            tw.cancel_netns_dying = ev.netns_dying;
            self.tw.cancels.push_back((ev.ts_ns, id));
            if self.cfg.records && !ev.netns_dying {
                self.watch_reuse(id);
            }
        }
    }

    /// A death reported by a probe: of a socket we follow, or of one that
    /// predates us (told once, without what came before).
    fn tw_died_or_unknown(&mut self, ev: &ProbeEvent, word: LastWord, out: &mut VecDeque<Record>) {
        if self.tw.by_addr.contains_key(&ev.skaddr) {
            self.tw_died(ev.skaddr, ev.ts_ns, word, out);
            return;
        }
        let fingerprint = fingerprint(ev.netns, &ev.tuple);
        if self.tw.recently_dead(ev.skaddr, fingerprint) {
            return;
        }
        self.tw.remember_death(ev.skaddr, fingerprint);
        let id = match ev.cookie {
            0 => self.local_id(),
            cookie => self.id_of_cookie(cookie),
        };
        let substate = word.substate.unwrap_or(TcpState::TIME_WAIT);
        let conn = Conn::new(id, ev, substate);
        self.reports.report_unfollowed(conn.transition(ev.ts_ns, substate, TcpState::CLOSE, ev.skaddr), out);
    }

    /// The socket at `addr` died at `ts_ns`; `word` is what the probe that
    /// said so read, if any.
    fn tw_died(&mut self, addr: u64, ts_ns: u64, word: LastWord, out: &mut VecDeque<Record>) {
        if let Some(&id) = self.tw.by_addr.get(&addr) {
            self.tw_died_of(id, addr, ts_ns, word, out);
        }
    }

    /// The same, for connection `id` whose timewait socket is at `addr`.
    fn tw_died_of(&mut self, id: ConnId, addr: u64, ts_ns: u64, word: LastWord, out: &mut VecDeque<Record>) {
        let Some(conn) = self.conns.get_mut(id) else { return };
        self.tw.remember_death(addr, fingerprint(conn.netns, &conn.tuple));
        if word.substate == Some(TcpState::TIME_WAIT) && conn.state == TcpState::FIN_WAIT2 {
            // A parked FIN_WAIT2 that the peer's FIN turned into TIME_WAIT
            // with no event to show it (the timer kind: the kernel re-armed
            // the timer within its wheel bucket). The kernel's timer says
            // when it was re-armed for TIME_WAIT; without that, when it died
            // is all that is known.
            let earliest = conn.seen_ns;
            let entered = word.armed.get().filter(|&a| a >= earliest && a <= ts_ns);
            let mut t = conn.transition(entered.unwrap_or(ts_ns), TcpState::FIN_WAIT2, TcpState::TIME_WAIT, addr);
            t.inferred = Some(Inferred { earliest_ns: earliest });
            (conn.state, conn.since) = (TcpState::TIME_WAIT, At::from(entered));
            self.reports.report(conn, t, out);
        }
        let mut t = conn.transition(ts_ns, conn.state, TcpState::CLOSE, addr);
        t.time_in_old_ns = conn.time_in_state(ts_ns);
        let armed = word.armed.get().or(conn.since.get());
        if let Some(life) = self.reports.life(conn) {
            life.time_wait_ended(TwEnd::of(word.expired, word.netns_dying, armed, ts_ns));
        }
        self.reports.report(conn, t, out);
        self.end(id, ts_ns, out);
    }

    /// A hand-off's claim, where the kernel gave no cookie: the timewait
    /// socket with this namespace and tuple, born just before and not yet
    /// claimed, continues connection `id`.
    pub(super) fn claim_by_tuple(&mut self, id: ConnId, ev: &ProbeEvent, out: &mut VecDeque<Record>) -> bool {
        let Some(owner_id) = self.live_by_tuple(ev.netns, &ev.tuple).filter(|&o| o != id) else { return false };
        let Some(tw) = self.conns.get(owner_id).and_then(|c| c.tw) else { return false };
        if tw.handed_off {
            // Its connection was handed over already, so this is a new
            // connection with the same tuple whose birth looked like a
            // re-arm: the old life ended at that cancel.
            let Some(cancel) = tw.rearm_cancel.get() else { return false };
            self.tw_died(tw.addr(), cancel, LastWord::NOTHING, out);
            let reborn = ProbeEvent { ts_ns: cancel, skaddr: tw.addr(), cookie: 0, counters: None, ..*ev };
            self.tw_born(&reborn, tw.substate, false, out);
            return self.claim_by_tuple(id, ev, out);
        }
        match tw.born.get() {
            // A timewait socket older than this hand-off is not its own.
            Some(born) if born + CLAIM_WINDOW_NS >= ev.ts_ns => {}
            _ => return false,
        }
        // Move it to the claiming connection.
        let Some(mut standalone) = self.remove(owner_id) else { return false };
        let tw = standalone.tw.take().expect("checked");
        self.tw.by_addr.insert(tw.addr(), id);
        self.tw.by_tuple.insert(fingerprint(ev.netns, &ev.tuple), id);
        if let Some(conn) = self.conns.get_mut(id) {
            conn.tw = Some(tw);
        }
        true
    }

    /// The connection whose live timewait socket (one without a cookie) has
    /// this namespace and tuple.
    fn live_by_tuple(&self, netns: u32, tuple: &Tuple) -> Option<ConnId> {
        let id = *self.tw.by_tuple.get(&fingerprint(netns, tuple))?;
        let conn = self.conns.get(id)?;
        (conn.netns == netns && conn.tuple == *tuple).then_some(id)
    }

    /// The timewait socket at `addr`, if live, with its connection's
    /// namespace and tuple.
    fn tw_at(&self, addr: u64) -> Option<(TwSocket, (u32, Tuple))> {
        let conn = self.conns.get(*self.tw.by_addr.get(&addr)?)?;
        Some((conn.tw?, (conn.netns, conn.tuple)))
    }

    /// Timer cancels that waited out their hold are deaths; sockets silent
    /// for STALE_NS are forgotten (and counted).
    pub(super) fn tw_tick(&mut self, now_ns: u64, out: &mut VecDeque<Record>) {
        while let Some(&(ts, id)) = self.tw.cancels.front() {
            if ts + CANCEL_HOLD_NS > now_ns {
                break;
            }
            self.tw.cancels.pop_front();
            // Still the same pending cancel: no re-arm or expiry came.
            let pending = self.conns.get(id).and_then(|c| c.tw).filter(|tw| tw.cancel == At::of(ts));
            if let Some(tw) = pending {
                let word = LastWord {
                    substate: Some(tw.cancel_substate),
                    armed: tw.cancel_armed,
                    expired: false,
                    netns_dying: tw.cancel_netns_dying,
                };
                self.tw_died_of(id, tw.addr(), ts, word, out);
            }
        }
        // Sockets whose death was lost: rare, so looked for rarely.
        if now_ns >= self.tw.last_sweep_ns + STALE_NS / 10 {
            self.tw.last_sweep_ns = now_ns;
            let stale: Vec<ConnId> = self
                .conns
                .iter()
                .filter(|c| c.tw.is_some_and(|tw| tw.last_ns + STALE_NS <= now_ns))
                .map(|c| c.id)
                .collect();
            for id in stale {
                self.remove(id);
                self.reports.stats.tw_forgotten += 1;
            }
        }
        shrink_if_sparse(&mut self.tw.by_addr);
        shrink_if_sparse(&mut self.tw.by_tuple);
        if self.tw.cancels.capacity() > super::SPARSE_MIN && self.tw.cancels.is_empty() {
            self.tw.cancels.shrink_to_fit();
        }
    }
}

fn fingerprint(netns: u32, tuple: &Tuple) -> u64 {
    use std::hash::BuildHasher;
    rustc_hash::FxBuildHasher.hash_one((netns, tuple))
}
