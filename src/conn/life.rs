//! One record per connection (`--connections`): what the table gathers over
//! a connection's life for it, and how it tells why the connection ended.
//!
//! Nothing here is a kernel map: the kernel side sends the full socket's
//! counters with its CLOSE, and a record for each reset; the table joins
//! them by connection. Why a connection ended is read from what the kernel
//! left behind, in this order: a reset it received, the error it ended with
//! (`sk_err`, set before its CLOSE), a reset it sent, how its TIME_WAIT
//! ended, and the states it passed.
//!
//! A record waits a moment after the connection's end: the reset of an
//! abort comes just after its CLOSE (close() sets CLOSE, then sends it), and
//! a TIME_WAIT cut short may turn out to have been reused by a connection
//! whose handshake completes a round trip later.

use std::collections::VecDeque;

use rustc_hash::FxHashMap as HashMap;

use super::{Conn, ConnId, ConnRecord, ConnTable, EndCause, Record, Span, Transition};
use crate::model::{Counters, TcpState, Tuple};
use crate::trace::ResetCause;

/// How long an ended connection waits for a reset sent after its CLOSE
/// (same system call, same CPU: microseconds; the margin covers ring order
/// across CPUs).
const RESET_HOLD_NS: u64 = 5_000_000;

/// How long a TIME_WAIT cut short waits for the connection that reused its
/// tuple to complete its handshake (a round trip after the cut).
const REUSE_HOLD_NS: u64 = 1_000_000_000;

/// TCP_TIMEWAIT_LEN: a TIME_WAIT that lasted this long (less a margin for
/// timer slack read back in jiffies) ran its course.
const TIME_WAIT_LEN_NS: u64 = 60_000_000_000;
const TIME_WAIT_MARGIN_NS: u64 = 100_000_000;

/// errno values the kernel leaves in sk_err.
const EPIPE: u32 = libc::EPIPE as u32;
const ECONNABORTED: u32 = libc::ECONNABORTED as u32;
const ECONNRESET: u32 = libc::ECONNRESET as u32;
const ETIMEDOUT: u32 = libc::ETIMEDOUT as u32;
const ECONNREFUSED: u32 = libc::ECONNREFUSED as u32;

/// What the table gathers for one connection's record.
#[derive(Clone, Debug, Default)]
pub(super) struct Life {
    start_ns: u64,
    spans: Vec<Span>,
    /// The states in `spans`, one bit each: what the end cause asks, after
    /// the spans went to the record.
    passed: u32,
    /// It is a listening socket: no connection, no record.
    listener: bool,
    counters: Option<Counters>,
    /// The state its full socket left for CLOSE.
    closed_from: Option<TcpState>,
    reset_received: bool,
    /// A reset it sent: the socket's state then, and who wanted it.
    reset_sent: Option<(TcpState, ResetCause)>,
    tw_end: Option<TwEnd>,
    /// A new connection took its tuple while its TIME_WAIT was ending.
    reused: bool,
}

/// How a TIME_WAIT ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TwEnd {
    Expired,
    NetnsExit,
    /// Cut short: reused, or killed (a reset, `ss -K`).
    CutShort,
}

impl TwEnd {
    /// From what the probe saw at the death: an expiry, a dying namespace,
    /// or a TIME_WAIT armed (or entered) at least TCP_TIMEWAIT_LEN ago.
    pub(super) fn of(expired: bool, netns_dying: bool, armed_ns: Option<u64>, died_ns: u64) -> TwEnd {
        if netns_dying {
            TwEnd::NetnsExit
        } else if expired
            || armed_ns.is_some_and(|a| died_ns.saturating_sub(a) + TIME_WAIT_MARGIN_NS >= TIME_WAIT_LEN_NS)
        {
            TwEnd::Expired
        } else {
            TwEnd::CutShort
        }
    }
}

impl Life {
    /// A reported transition of its connection.
    pub(super) fn on(&mut self, t: &Transition) {
        if self.spans.is_empty() && !self.listener {
            self.start_ns = t.ts_ns;
            // Seen mid-life: the state it was in counts, its start unknown.
            // Most connections pass five or six states: one allocation.
            self.spans.reserve_exact(SPANS_USUAL);
            if t.old != TcpState::CLOSE && t.old != TcpState::LISTEN {
                self.push(Span { state: t.old, ns: t.time_in_old_ns, inferred: false });
                self.start_ns = t.ts_ns.saturating_sub(t.time_in_old_ns.unwrap_or(0));
            }
        }
        // A listener, or one seen only as it stops listening (its accepted
        // children leave LISTEN for SYN_RECV).
        if t.new == TcpState::LISTEN || (t.old == TcpState::LISTEN && t.new != TcpState::SYN_RECV) {
            self.listener = true;
        }
        if t.new == t.old {
            return;
        }
        if let Some(last) = self.spans.last_mut().filter(|s| s.state == t.old) {
            last.ns = t.time_in_old_ns;
        }
        if t.new != TcpState::CLOSE && t.new != TcpState::LISTEN {
            self.push(Span { state: t.new, ns: None, inferred: t.inferred.is_some() });
        }
    }

    fn push(&mut self, span: Span) {
        self.passed |= state_bit(span.state);
        self.spans.push(span);
    }

    /// The full socket's CLOSE: what the kernel side read then. Its
    /// bytes_acked counts our SYN once acked (an active open) and our FIN
    /// once acked: payload is what is left.
    pub(super) fn closed(&mut self, from: TcpState, counters: Option<Counters>, active_open: bool) {
        self.closed_from = Some(from);
        let Some(mut c) = counters else { return };
        let syn_acked = active_open && self.passed & !state_bit(TcpState::SYN_SENT) != 0;
        let fin_sent = self.passed(&[TcpState::FIN_WAIT1, TcpState::CLOSING, TcpState::LAST_ACK]);
        c.bytes_acked = c.bytes_acked.saturating_sub(u64::from(syn_acked) + u64::from(fin_sent && c.acked_all));
        self.counters = Some(c);
    }

    pub(super) fn reset(&mut self, sent: bool, state: TcpState, cause: ResetCause) {
        if sent {
            self.reset_sent = self.reset_sent.or(Some((state, cause)));
        } else {
            self.reset_received = true;
        }
    }

    pub(super) fn time_wait_ended(&mut self, how: TwEnd) {
        self.tw_end = Some(how);
    }

    fn passed(&self, states: &[TcpState]) -> bool {
        states.iter().any(|&s| self.passed & state_bit(s) != 0)
    }

    /// How long its record waits after its end for what may still tell
    /// why it ended: a reuse of its tuple for a TIME_WAIT cut short, a
    /// reset sent after a CLOSE that an application's close() may have made.
    /// Nothing when the cause is settled: a TIME_WAIT's end, a reset
    /// received or an error, a CLOSE from LAST_ACK or CLOSING (an ack).
    fn hold_ns(&self) -> u64 {
        match (self.tw_end, self.closed_from) {
            (Some(TwEnd::CutShort), _) if !self.reused => REUSE_HOLD_NS,
            (Some(_), _) => 0,
            _ if self.reset_received || self.counters.is_some_and(|c| c.error != 0) => 0,
            (None, Some(TcpState::LAST_ACK | TcpState::CLOSING)) => 0,
            (None, _) => RESET_HOLD_NS,
        }
    }

    /// Why it ended, from what the kernel left behind.
    pub(super) fn end_cause(&self) -> EndCause {
        let error = self.counters.map_or(0, |c| c.error);
        let in_syn_sent = self.closed_from == Some(TcpState::SYN_SENT);
        if self.reset_received {
            return if in_syn_sent { EndCause::Refused } else { EndCause::ResetReceived };
        }
        match error {
            0 => {}
            ECONNREFUSED => return EndCause::Refused,
            ETIMEDOUT => return EndCause::TimedOut,
            ECONNRESET | EPIPE => return EndCause::ResetReceived,
            // tcp_abort(): the socket destroyed from outside (ss -K).
            ECONNABORTED => return EndCause::ResetSent,
            // Every other error that ends a connection is an ICMP one.
            _ => return EndCause::Unreachable,
        }
        if let Some((state, cause)) = self.reset_sent {
            // close() and disconnect set CLOSE before they send the reset.
            let aborted = match cause {
                ResetCause::Application => true,
                ResetCause::Untold => state == TcpState::CLOSE,
                ResetCause::Kernel => false,
            };
            return if aborted { EndCause::Aborted } else { EndCause::ResetSent };
        }
        match self.tw_end {
            Some(TwEnd::Expired) => return EndCause::TimeWaitExpired,
            Some(TwEnd::NetnsExit) => return EndCause::TimeWaitNetnsExit,
            Some(TwEnd::CutShort) if self.reused => return EndCause::TimeWaitReused,
            Some(TwEnd::CutShort) => return EndCause::TimeWaitKilled,
            None => {}
        }
        if self.passed(&[TcpState::CLOSE_WAIT, TcpState::LAST_ACK]) {
            EndCause::PassiveClose
        } else if self.passed(&[TcpState::FIN_WAIT1, TcpState::FIN_WAIT2, TcpState::CLOSING]) {
            EndCause::ActiveClose
        } else {
            // Closed before it was established, with no error: given up by
            // its application.
            EndCause::Aborted
        }
    }
}

/// Spans a connection usually has (SYN_SENT to TIME_WAIT).
const SPANS_USUAL: usize = 6;

/// A state's bit in [`Life::passed`] (states past 31 share the last).
fn state_bit(state: TcpState) -> u32 {
    1 << state.0.min(31)
}

/// Ended connections waiting out their hold, oldest first.
#[derive(Default)]
pub(super) struct Ended {
    queue: VecDeque<Ending>,
    /// TIME_WAITs that may be ending early, by namespace and tuple: cut
    /// short, or with a timer cancel pending (a reuse cancels the timer; the
    /// death is known only once no re-arm followed, after the handshake of
    /// the connection that reused it may have completed). A new connection
    /// with the same tuple that completes its handshake reused it.
    watch: HashMap<(u32, Tuple), ConnId>,
}

impl Ended {
    /// Whether any TIME_WAIT may be ending early.
    pub(super) fn awaits_reuse(&self) -> bool {
        !self.watch.is_empty()
    }

    /// Stops watching `key` for connection `id` (a newer connection with
    /// the same tuple may be watched there: it stays).
    fn unwatch(&mut self, key: (u32, Tuple), id: ConnId) {
        super::unindex(&mut self.watch, key, id);
    }
}

struct Ending {
    due_ns: u64,
    life: Box<Life>,
    record: ConnRecord,
}

impl ConnTable {
    /// Connection `id` ended at `ts_ns`: forgotten, and with `--connections`
    /// its record goes out, at once or after its hold.
    pub(super) fn end(&mut self, id: ConnId, ts_ns: u64, out: &mut VecDeque<Record>) {
        let Some(mut conn) = self.remove(id) else { return };
        let Some(mut life) = conn.life.take().filter(|l| !l.listener && !l.spans.is_empty()) else { return };
        let states = std::mem::take(&mut life.spans);
        let hold = life.hold_ns();
        let key = (conn.netns, conn.tuple);
        // Watched since a timer cancel; from now on only if cut short.
        self.ended.unwatch(key, id);
        if hold == 0 {
            let record = conn_record(&conn, &life, states, ts_ns, life.end_cause());
            out.push_back(Record::Connection(Box::new(record)));
            return;
        }
        if hold == REUSE_HOLD_NS {
            self.ended.watch.insert(key, id);
        }
        // Its cause is decided when its hold is over.
        let record = conn_record(&conn, &life, states, ts_ns, EndCause::ActiveClose);
        self.ended.queue.push_back(Ending { due_ns: ts_ns + hold, life, record });
    }

    /// A reset of a connection followed now, or of one that just ended.
    pub(super) fn reset(&mut self, cookie: u64, sent: bool, state: TcpState, cause: ResetCause) {
        let id = self.id_of_cookie(cookie);
        if let Some(life) = self.conns.get_mut(id).and_then(|c| c.life.as_mut()) {
            life.reset(sent, state, cause);
        } else if let Some(ending) = self.ended.queue.iter_mut().rev().find(|e| e.record.conn_id == id) {
            ending.life.reset(sent, state, cause);
        }
    }

    /// A timer cancel of connection `id`'s timewait socket: its TIME_WAIT
    /// may be ending early.
    pub(super) fn watch_reuse(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.get(id).filter(|c| c.life.is_some()) {
            self.ended.watch.insert((conn.netns, conn.tuple), id);
        }
    }

    /// A connection completed its handshake: a TIME_WAIT with its tuple
    /// that was ending early was reused.
    pub(super) fn established(&mut self, netns: u32, tuple: &Tuple) {
        let Some(id) = self.ended.watch.remove(&(netns, *tuple)) else { return };
        if let Some(life) = self.conns.get_mut(id).and_then(|c| c.life.as_mut()) {
            life.reused = true;
        } else if let Some(ending) = self.ended.queue.iter_mut().find(|e| e.record.conn_id == id) {
            ending.life.reused = true;
            ending.due_ns = 0;
        }
    }

    /// Records whose hold is over as of kernel time `now_ns` go out (all of
    /// them when `now_ns` is `None`: tracing ended).
    pub(super) fn release_ended(&mut self, now_ns: Option<u64>, out: &mut VecDeque<Record>) {
        let due = |e: &Ending| now_ns.is_none_or(|now| e.due_ns <= now);
        // Mostly in order; a reuse found makes one due early.
        while let Some(i) = self.ended.queue.iter().position(due) {
            let Ending { life, mut record, .. } = self.ended.queue.remove(i).expect("found");
            record.end = life.end_cause();
            self.ended.unwatch((record.netns, record.tuple), record.conn_id);
            out.push_back(Record::Connection(Box::new(record)));
        }
    }

    /// Tracing ended: every connection still followed, as open.
    pub(super) fn open_records(&mut self, out: &mut VecDeque<Record>) {
        let now = self.latest_ns.max(self.ticked_ns);
        let mut open: Vec<ConnRecord> = self
            .conns
            .iter()
            .filter_map(|c| Some((c, c.life.as_deref().filter(|l| !l.listener && !l.spans.is_empty())?)))
            .map(|(c, life)| conn_record(c, life, life.spans.clone(), now, EndCause::Open))
            .collect();
        open.sort_by_key(|r| r.start_ns);
        out.extend(open.into_iter().map(|r| Record::Connection(Box::new(r))));
    }
}

/// The record of `conn` as of `end_ns`.
fn conn_record(conn: &Conn, life: &Life, mut states: Vec<Span>, end_ns: u64, end: EndCause) -> ConnRecord {
    if end == EndCause::Open {
        // The state it is still in: time so far.
        if let (Some(last), Some(since)) = (states.last_mut(), conn.since.get()) {
            last.ns = Some(end_ns.saturating_sub(since));
        }
    }
    ConnRecord {
        conn_id: conn.id,
        start_ns: life.start_ns,
        end_ns,
        side: conn.side,
        side_rule: conn.side_rule,
        tuple: conn.tuple,
        netns: conn.netns,
        cgroup_id: conn.cgroup_id,
        cgroup: None,
        owner: conn.owner,
        states,
        counters: life.counters,
        end,
    }
}
