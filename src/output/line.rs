//! What one output line shows, whichever kind of record it came from: the
//! formats print this, so that a transition and a raw probe event (`--raw`)
//! share one path through each format.

use std::num::NonZeroU64;

use super::put::Put;
use crate::cgroup::Cgroup;
use crate::conn::{ConnId, Record};
use crate::model::{Owner, Side, TcpState, Tuple};

/// The fields of one line.
pub struct Line<'a> {
    pub ts_ns: u64,
    pub conn_id: ConnId,
    pub side: Side,
    /// The state left; for a raw probe event, the state its socket is in
    /// (a probe event is not a transition: `old` and `new` are the same).
    pub old: TcpState,
    pub new: TcpState,
    pub tuple: &'a Tuple,
    pub netns: u32,
    /// The connection's cgroup v2 id; `None` when not known.
    pub cgroup_id: Option<NonZeroU64>,
    /// Its path and container, where found.
    pub cgroup: Option<&'a Cgroup>,
    pub owner: Option<&'a Owner>,
    pub skaddr: u64,
    pub time_in_old_ns: Option<u64>,
    /// For a transition no probe saw, the earliest moment it can have happened.
    pub earliest_ns: Option<u64>,
    /// The probe's name, for a raw probe event (`tw_arm`).
    pub probe: Option<&'static str>,
}

impl Line<'_> {
    /// The line of a transition or a raw probe event; `None` for a
    /// connection record, which formats print their own way.
    pub fn of(record: &Record) -> Option<Line<'_>> {
        Some(match record {
            Record::Transition(t) => Line {
                ts_ns: t.ts_ns,
                conn_id: t.conn_id,
                side: t.side,
                old: t.old,
                new: t.new,
                tuple: &t.tuple,
                netns: t.netns,
                cgroup_id: t.cgroup_id,
                cgroup: t.cgroup.as_deref(),
                owner: t.owner.as_ref(),
                skaddr: t.skaddr,
                time_in_old_ns: t.time_in_old_ns,
                earliest_ns: t.inferred.map(|i| i.earliest_ns),
                probe: None,
            },
            Record::Probe(p) => Line {
                ts_ns: p.ts_ns,
                conn_id: p.conn_id,
                side: p.side,
                old: p.substate,
                new: p.substate,
                tuple: &p.tuple,
                netns: p.netns,
                cgroup_id: p.cgroup_id,
                cgroup: p.cgroup.as_deref(),
                owner: None,
                skaddr: p.skaddr,
                time_in_old_ns: None,
                earliest_ns: None,
                probe: Some(p.what.as_str()),
            },
            Record::Connection(_) => return None,
        })
    }

    pub fn inferred(&self) -> bool {
        self.earliest_ns.is_some()
    }

    /// The OLD column of the formats people read (the original line, the
    /// table): a raw probe event shows its probe's name there, which says
    /// more than a repeated state. JSON and CSV keep it in its own field.
    pub fn old_label(&self) -> Label {
        match self.probe {
            Some(name) => Label::Probe(name),
            None => Label::State(self.old),
        }
    }
}

/// The OLD column: a state, or a raw probe event's name (`tw_arm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Label {
    State(TcpState),
    Probe(&'static str),
}

impl Put for Label {
    fn put(&self, out: &mut Vec<u8>) {
        match self {
            Label::State(s) => s.put(out),
            Label::Probe(name) => name.put(out),
        }
    }
}
