//! What the connection table hands to the outputs: the user's view.

use std::num::NonZeroU64;
use std::sync::Arc;

use crate::cgroup::{Cgroup, CgroupPaths};
use crate::model::{Counters, Owner, Side, TcpState, Tuple};
use crate::trace::TwEvent;

/// tcpstate's connection id: the kernel's socket cookie, unique for the boot
/// (a timewait socket carries its full socket's). On kernels that give no
/// cookie, tcpstate numbers connections itself from [`LOCAL_IDS`] up.
pub type ConnId = u64;

/// The first id tcpstate gives itself. Kernel cookies count up from 1 and
/// never get near it within a boot.
pub const LOCAL_IDS: ConnId = 1 << 48;

/// One record for the outputs, in time order.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    Transition(Transition),
    /// With `--raw`: a timewait probe event, as the probe saw it.
    Probe(RawProbe),
    /// With `--connections`: a connection that ended (or was still open
    /// when tracing ended).
    Connection(Box<ConnRecord>),
}

impl Record {
    pub fn ts_ns(&self) -> u64 {
        match self {
            Record::Transition(t) => t.ts_ns,
            Record::Probe(p) => p.ts_ns,
            Record::Connection(c) => c.end_ns,
        }
    }

    /// Looks up the path and container of the record's cgroup id: the
    /// table deals in ids, what a person or a store reads is the path.
    pub fn find_cgroup(&mut self, paths: &mut CgroupPaths) {
        let (id, cgroup) = match self {
            Record::Transition(t) => (t.cgroup_id, &mut t.cgroup),
            Record::Probe(p) => (p.cgroup_id, &mut p.cgroup),
            Record::Connection(c) => (c.cgroup_id, &mut c.cgroup),
        };
        *cgroup = id.and_then(|id| paths.resolve(id.get()));
    }

    pub fn side(&self) -> Side {
        match self {
            Record::Transition(t) => t.side,
            Record::Probe(p) => p.side,
            Record::Connection(c) => c.side,
        }
    }
}

/// One TCP state transition of a connection.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    /// CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns), as the original printed.
    pub ts_ns: u64,
    pub conn_id: ConnId,
    pub side: Side,
    pub old: TcpState,
    pub new: TcpState,
    pub tuple: Tuple,
    pub netns: u32,
    /// The connection's cgroup v2 id, from its full socket (also on the
    /// transitions its timewait socket makes); `None` when not known.
    pub cgroup_id: Option<NonZeroU64>,
    /// Its path and container, found from the id on the way to the
    /// outputs ([`Record::find_cgroup`]); `None` until then or not found.
    pub cgroup: Option<Arc<Cgroup>>,
    /// The owning process, once it was seen acting on the socket.
    pub owner: Option<Owner>,
    /// Kernel address of the socket that made it: the timewait socket's for
    /// the transitions a timewait socket makes.
    pub skaddr: u64,
    /// Time spent in `old`; `None` when its start was not seen.
    pub time_in_old_ns: Option<u64>,
    /// Set when no probe saw the transition.
    pub inferred: Option<Inferred>,
}

/// When a transition no probe saw can have happened: between `earliest_ns`
/// (the connection was last seen in the old state) and the transition's
/// `ts_ns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inferred {
    pub earliest_ns: u64,
}

/// A timewait socket event as a TIME_WAIT probe reported it (`--raw`).
#[derive(Clone, Debug, PartialEq)]
pub struct RawProbe {
    pub ts_ns: u64,
    pub conn_id: ConnId,
    pub side: Side,
    pub what: TwEvent,
    /// The substate the probe read (TIME_WAIT or FIN_WAIT2).
    pub substate: TcpState,
    pub tuple: Tuple,
    pub netns: u32,
    /// Its connection's cgroup v2 id, where known.
    pub cgroup_id: Option<NonZeroU64>,
    /// Its path and container (see [`Transition::cgroup`]).
    pub cgroup: Option<Arc<Cgroup>>,
    /// The timewait socket's address.
    pub skaddr: u64,
}

/// Everything known about one connection once it ended (`--connections`):
/// its life from the first transition seen to the true end of TIME_WAIT.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnRecord {
    pub conn_id: ConnId,
    /// When its first state was entered (CLOCK_MONOTONIC ns), or, when that
    /// was not seen, when it was first seen.
    pub start_ns: u64,
    /// When it ended, or for an open connection when tracing ended.
    pub end_ns: u64,
    pub side: Side,
    /// Why it has that side.
    pub side_rule: super::SideRule,
    pub tuple: Tuple,
    pub netns: u32,
    /// Its cgroup v2 id, from its full socket; `None` when not known.
    pub cgroup_id: Option<NonZeroU64>,
    /// Its path and container (see [`Transition::cgroup`]).
    pub cgroup: Option<Arc<Cgroup>>,
    pub owner: Option<Owner>,
    /// The states it was in, in order, with the time spent in each.
    pub states: Vec<Span>,
    /// Its full socket's counters at its last moment as a full socket; none
    /// when that moment was not seen (still open, or a full socket lost).
    pub counters: Option<Counters>,
    pub end: EndCause,
}

impl ConnRecord {
    /// Time from start to end.
    pub fn duration_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }

    /// Whether it was still open (or in TIME_WAIT) when tracing ended.
    pub fn is_open(&self) -> bool {
        self.end == EndCause::Open
    }
}

/// Time in one state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub state: TcpState,
    /// Time spent in it; `None` when its start was not seen (the first
    /// state of a connection seen mid-life).
    pub ns: Option<u64>,
    /// It was entered by a transition no probe saw (see [`Inferred`]).
    pub inferred: bool,
}

/// How a connection ended, for one side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EndCause {
    /// It closed first (sent the first FIN) and left no TIME_WAIT (its
    /// FIN_WAIT2 timed out, or the kernel had no room for a timewait socket).
    ActiveClose,
    /// The peer closed first: CLOSE_WAIT, LAST_ACK, CLOSE.
    PassiveClose,
    /// It sent a reset that ended it (the kernel's own decision: a
    /// keepalive or retransmission limit, memory pressure, data after close…).
    ResetSent,
    /// The peer's reset ended it (ECONNRESET, or EPIPE in CLOSE_WAIT).
    ResetReceived,
    /// Its connect was answered by a reset (ECONNREFUSED).
    Refused,
    /// Retransmissions (of the SYN or of data) or keepalives ran out (ETIMEDOUT).
    TimedOut,
    /// An ICMP error ended it (EHOSTUNREACH, ENETUNREACH, …).
    Unreachable,
    /// The application aborted it: close() with SO_LINGER 0, close() with
    /// unread data, or a disconnect (it sends a reset).
    Aborted,
    /// Its TIME_WAIT ran the full TCP_TIMEWAIT_LEN.
    TimeWaitExpired,
    /// Its TIME_WAIT ended early: a new connection reused the tuple.
    TimeWaitReused,
    /// Its TIME_WAIT ended early: the network namespace was deleted.
    TimeWaitNetnsExit,
    /// Its TIME_WAIT ended early for another reason: a reset received
    /// (RFC 1337 off, the default), or the socket destroyed (`ss -K`).
    TimeWaitKilled,
    /// Its end was not seen: still open when tracing ended.
    Open,
}

impl EndCause {
    /// Every cause, in the order the summary and the metrics list them.
    pub const ALL: [EndCause; 13] = [
        EndCause::ActiveClose,
        EndCause::PassiveClose,
        EndCause::ResetSent,
        EndCause::ResetReceived,
        EndCause::Refused,
        EndCause::TimedOut,
        EndCause::Unreachable,
        EndCause::Aborted,
        EndCause::TimeWaitExpired,
        EndCause::TimeWaitReused,
        EndCause::TimeWaitNetnsExit,
        EndCause::TimeWaitKilled,
        EndCause::Open,
    ];

    /// The name every output prints.
    pub fn as_str(self) -> &'static str {
        match self {
            EndCause::ActiveClose => "active_close",
            EndCause::PassiveClose => "passive_close",
            EndCause::ResetSent => "reset_sent",
            EndCause::ResetReceived => "reset_received",
            EndCause::Refused => "refused",
            EndCause::TimedOut => "timed_out",
            EndCause::Unreachable => "unreachable",
            EndCause::Aborted => "aborted",
            EndCause::TimeWaitExpired => "time_wait_expired",
            EndCause::TimeWaitReused => "time_wait_reused",
            EndCause::TimeWaitNetnsExit => "time_wait_netns_exit",
            EndCause::TimeWaitKilled => "time_wait_killed",
            EndCause::Open => "open",
        }
    }

    pub fn from_name(name: &str) -> Option<EndCause> {
        EndCause::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl std::fmt::Display for EndCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}
