//! What the picture shows, before any pixel: connection groups, their lanes,
//! and in each lane the state segments and transition marks.
//!
//! Kept apart from drawing so that tests can compare pictures by content
//! (the same trace in both input formats must give the same lanes) and so
//! that the grouping rules, the subtle part, are tested without SVG.
//!
//! Grouping rules:
//! - An event with a 4-tuple belongs to the connection of its two endpoints,
//!   normalised to (server end, client end) by its side, so both sockets of a
//!   loopback connection share one group. IPv4-mapped IPv6 addresses count as
//!   IPv4 (a dual-stack server sees `::ffff:127.0.0.1` for a client that sees
//!   `127.0.0.1`).
//! - Listening sockets (peer address unspecified and peer port 0, or a
//!   transition into LISTEN or out of it to CLOSE) get their own one-lane
//!   "listener" group instead of crowding a connection.
//! - A 4-tuple can be reused once its sockets closed: an event for a lane
//!   that already reached CLOSE, or a socket's first transition (from CLOSE,
//!   or LISTEN → SYN_RECV for an accepted one) on a lane that has events,
//!   starts a new group.
//! - Without addresses (the original tool's lines) sockets are told apart by
//!   continuity: an event continues the oldest open lane of its side whose
//!   state is the event's old state; a socket's first transition opens a new
//!   group, except that an accepted server socket joins the oldest group
//!   whose client is connecting and has no server yet. For one connection
//!   this gives the original script's single server lane and client lane.

use std::collections::HashMap;
use std::net::SocketAddr;

use anyhow::{bail, Result};

use super::select::select;
use super::{Conn, PlotEvent, PlotOptions, PlotSide};
use crate::state::TcpState;

/// Everything one picture shows.
#[derive(Clone, Debug, PartialEq)]
pub struct Timeline {
    /// The absolute timestamp that is 0 on the axis: the first drawn event.
    pub t0_ns: u64,
    pub groups: Vec<Group>,
    /// Connections left out by `max_conns`.
    pub omitted_conns: usize,
    /// Listener groups left out by `max_conns`.
    pub omitted_listeners: usize,
}

/// One connection (or listener): the lanes drawn together.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub kind: GroupKind,
    pub lanes: Vec<Lane>,
}

/// What a group stands for, which decides its lanes' labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupKind {
    Connection {
        server: SocketAddr,
        client: SocketAddr,
    },
    /// A listening socket; `None` when the trace has no addresses.
    Listener(Option<SocketAddr>),
    /// Server and client sockets of a trace without addresses.
    Unaddressed,
}

/// One horizontal bar of segments.
#[derive(Clone, Debug, PartialEq)]
pub struct Lane {
    pub role: Role,
    /// In time order.
    pub marks: Vec<Mark>,
    /// One per mark: the state entered, until the next mark (or open-ended).
    pub segments: Vec<Segment>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Server,
    Client,
    Listener,
}

/// A transition, at nanoseconds since [`Timeline::t0_ns`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    pub t_ns: u64,
    pub old: TcpState,
    pub new: TcpState,
    pub inferred: bool,
}

/// Time spent in one state, in nanoseconds since [`Timeline::t0_ns`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub state: TcpState,
    pub start_ns: u64,
    /// `None` for a lane's last state: the trace ended before it did.
    pub end_ns: Option<u64>,
}

impl Timeline {
    /// Every mark time, sorted and without repeats: the axis is built on them.
    pub fn times(&self) -> Vec<u64> {
        let mut times: Vec<u64> =
            self.lanes().flat_map(|l| l.marks.iter().map(|m| m.t_ns)).collect();
        times.sort_unstable();
        times.dedup();
        times
    }

    /// The states drawn, in order of first appearance, for the legend.
    pub fn states(&self) -> Vec<TcpState> {
        let mut first: HashMap<TcpState, u64> = HashMap::new();
        for seg in self.lanes().flat_map(|l| &l.segments) {
            let t = first.entry(seg.state).or_insert(seg.start_ns);
            *t = (*t).min(seg.start_ns);
        }
        let mut states: Vec<(u64, TcpState)> = first.into_iter().map(|(s, t)| (t, s)).collect();
        states.sort_unstable();
        states.into_iter().map(|(_, s)| s).collect()
    }

    pub fn lanes(&self) -> impl Iterator<Item = &Lane> {
        self.groups.iter().flat_map(|g| &g.lanes)
    }

    pub fn has_inferred(&self) -> bool {
        self.lanes().flat_map(|l| &l.marks).any(|m| m.inferred)
    }
}

/// Groups, filters and orders `events` into what one picture shows.
pub fn build_timeline(events: &[PlotEvent], opts: &PlotOptions) -> Result<Timeline> {
    if events.is_empty() {
        bail!("no events to draw: nothing was traced (check the server address and port, or trace without them)");
    }
    let mut sorted = events.to_vec();
    sorted.sort_by_key(|e| e.ts_ns);
    let drafts = group(&sorted);
    let chosen = select(drafts, |d: &Draft| &d.kind, opts)?;
    let t0_ns = chosen
        .kept
        .iter()
        .flat_map(|d| d.lanes.iter().flat_map(|(_, evs)| evs.first()))
        .map(|e| e.ts_ns)
        .min()
        .unwrap_or(0);
    Ok(Timeline {
        t0_ns,
        groups: chosen.kept.into_iter().map(|d| d.finish(t0_ns)).collect(),
        omitted_conns: chosen.omitted_conns,
        omitted_listeners: chosen.omitted_listeners,
    })
}

/// Which group an event can belong to before continuity is considered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    Conn(Option<(SocketAddr, SocketAddr)>),
    Listener(Option<SocketAddr>),
}

impl Key {
    fn of(ev: &PlotEvent) -> Key {
        let into_or_out_of_listen =
            ev.new == TcpState::LISTEN || (ev.old == TcpState::LISTEN && ev.new == TcpState::CLOSE);
        match ev.conn.map(canonical) {
            Some(c) if into_or_out_of_listen || (c.daddr.is_unspecified() && c.dport == 0) => {
                Key::Listener(Some(SocketAddr::new(c.saddr, c.sport)))
            }
            Some(c) => {
                let local = SocketAddr::new(c.saddr, c.sport);
                let peer = SocketAddr::new(c.daddr, c.dport);
                Key::Conn(Some(match ev.side {
                    PlotSide::Server => (local, peer),
                    PlotSide::Client => (peer, local),
                }))
            }
            None if into_or_out_of_listen => Key::Listener(None),
            None => Key::Conn(None),
        }
    }

    fn addressed(self) -> bool {
        matches!(self, Key::Conn(Some(_)) | Key::Listener(Some(_)))
    }

    fn kind(self) -> GroupKind {
        match self {
            Key::Conn(Some((server, client))) => GroupKind::Connection { server, client },
            Key::Conn(None) => GroupKind::Unaddressed,
            Key::Listener(ep) => GroupKind::Listener(ep),
        }
    }
}

fn canonical(c: Conn) -> Conn {
    Conn { saddr: c.saddr.to_canonical(), daddr: c.daddr.to_canonical(), ..c }
}

/// A group being filled: its lanes' events, absolute times.
#[derive(Debug)]
pub(super) struct Draft {
    pub(super) kind: GroupKind,
    lanes: Vec<(Role, Vec<PlotEvent>)>,
}

impl Draft {
    fn new(key: Key) -> Draft {
        let roles: &[Role] = match key {
            Key::Listener(_) => &[Role::Listener],
            Key::Conn(_) => &[Role::Server, Role::Client],
        };
        Draft { kind: key.kind(), lanes: roles.iter().map(|&r| (r, Vec::new())).collect() }
    }

    fn lane(&self, role: Role) -> &[PlotEvent] {
        self.lanes.iter().find(|(r, _)| *r == role).map_or(&[], |(_, evs)| evs)
    }

    fn push(&mut self, role: Role, ev: PlotEvent) {
        if let Some((_, evs)) = self.lanes.iter_mut().find(|(r, _)| *r == role) {
            evs.push(ev);
        }
    }

    fn state(&self, role: Role) -> Option<TcpState> {
        self.lane(role).last().map(|e| e.new)
    }

    /// Every lane has events and reached CLOSE: nothing can join any more.
    fn finished(&self) -> bool {
        self.lanes.iter().all(|(r, _)| self.state(*r) == Some(TcpState::CLOSE))
    }

    fn finish(self, t0_ns: u64) -> Group {
        let lanes = self.lanes.into_iter().map(|(role, evs)| lane(role, &evs, t0_ns)).collect();
        Group { kind: self.kind, lanes }
    }
}

fn lane(role: Role, events: &[PlotEvent], t0_ns: u64) -> Lane {
    let marks: Vec<Mark> = events
        .iter()
        .map(|e| Mark { t_ns: e.ts_ns - t0_ns, old: e.old, new: e.new, inferred: e.inferred })
        .collect();
    let segments = marks
        .iter()
        .enumerate()
        .map(|(i, m)| Segment {
            state: m.new,
            start_ns: m.t_ns,
            end_ns: marks.get(i + 1).map(|n| n.t_ns),
        })
        .collect();
    Lane { role, marks, segments }
}

fn role(key: Key, side: PlotSide) -> Role {
    match (key, side) {
        (Key::Listener(_), _) => Role::Listener,
        (Key::Conn(_), PlotSide::Server) => Role::Server,
        (Key::Conn(_), PlotSide::Client) => Role::Client,
    }
}

/// A socket's first transition: created (from CLOSE) or accepted.
fn starts_socket(ev: &PlotEvent) -> bool {
    ev.old == TcpState::CLOSE || (ev.old == TcpState::LISTEN && ev.new != TcpState::CLOSE)
}

/// Splits time-sorted events into groups, in order of their first event.
fn group(events: &[PlotEvent]) -> Vec<Draft> {
    let mut drafts: Vec<Draft> = Vec::new();
    // Per key, the groups that may still take events, oldest first.
    let mut open: HashMap<Key, Vec<usize>> = HashMap::new();
    for ev in events {
        let key = Key::of(ev);
        let role = role(key, ev.side);
        let candidates = open.entry(key).or_default();
        let found = if key.addressed() {
            continue_addressed(&drafts, candidates, ev, role)
        } else {
            continue_unaddressed(&drafts, candidates, ev, role)
        };
        let index = found.unwrap_or_else(|| {
            drafts.push(Draft::new(key));
            candidates.push(drafts.len() - 1);
            drafts.len() - 1
        });
        drafts[index].push(role, *ev);
        if !key.addressed() && drafts[index].finished() {
            candidates.retain(|&g| g != index);
        }
    }
    drafts
}

/// With a 4-tuple only reuse splits a group: join the key's latest group
/// unless this lane closed, or this is a new socket on a lane that has one.
fn continue_addressed(
    drafts: &[Draft],
    candidates: &[usize],
    ev: &PlotEvent,
    role: Role,
) -> Option<usize> {
    let &latest = candidates.last()?;
    let joins = match drafts[latest].state(role) {
        None => true,
        Some(state) => state != TcpState::CLOSE && !starts_socket(ev),
    };
    joins.then_some(latest)
}

/// Without addresses, continuity decides (see the module comment).
fn continue_unaddressed(
    drafts: &[Draft],
    candidates: &[usize],
    ev: &PlotEvent,
    role: Role,
) -> Option<usize> {
    let fresh = starts_socket(ev);
    candidates.iter().copied().find(|&g| {
        let d = &drafts[g];
        match (d.state(role), fresh) {
            (Some(state), false) => state == ev.old && state != TcpState::CLOSE,
            (None, true) => {
                role == Role::Server
                    && matches!(
                        d.state(Role::Client),
                        Some(TcpState::SYN_SENT | TcpState::ESTABLISHED)
                    )
            }
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ts: u64, side: PlotSide, old: TcpState, new: TcpState, conn: Option<Conn>) -> PlotEvent {
        PlotEvent { ts_ns: ts, side, old, new, conn, inferred: false }
    }

    fn conn(local: &str, peer: &str) -> Option<Conn> {
        let l: SocketAddr = local.parse().unwrap();
        let p: SocketAddr = peer.parse().unwrap();
        Some(Conn { saddr: l.ip(), sport: l.port(), daddr: p.ip(), dport: p.port() })
    }

    use PlotSide::{Client, Server};
    use TcpState as S;

    #[test]
    fn both_ends_of_a_connection_share_a_group() {
        let c = conn("127.0.0.1:5000", "127.0.0.1:80");
        let s = conn("[::ffff:127.0.0.1]:80", "127.0.0.1:5000");
        let events = [
            ev(100, Client, S::CLOSE, S::SYN_SENT, c),
            ev(110, Server, S::LISTEN, S::SYN_RECV, s),
            ev(120, Client, S::SYN_SENT, S::ESTABLISHED, c),
        ];
        let t = build_timeline(&events, &PlotOptions::default()).unwrap();
        assert_eq!(t.t0_ns, 100);
        assert_eq!(t.groups.len(), 1);
        let g = &t.groups[0];
        assert_eq!(
            g.kind,
            GroupKind::Connection {
                server: "127.0.0.1:80".parse().unwrap(),
                client: "127.0.0.1:5000".parse().unwrap()
            }
        );
        assert_eq!(g.lanes[0].role, Role::Server);
        assert_eq!(g.lanes[0].marks[0].t_ns, 10);
        assert_eq!(
            g.lanes[1].segments[0],
            Segment { state: S::SYN_SENT, start_ns: 0, end_ns: Some(20) }
        );
        assert_eq!(g.lanes[1].segments[1].end_ns, None);
    }

    #[test]
    fn listeners_get_their_own_group() {
        let events = [
            ev(1, Server, S::CLOSE, S::LISTEN, conn("0.0.0.0:80", "0.0.0.0:0")),
            ev(2, Client, S::CLOSE, S::SYN_SENT, conn("127.0.0.1:5000", "127.0.0.1:80")),
            ev(3, Server, S::LISTEN, S::CLOSE, None),
            ev(4, Server, S::CLOSE, S::LISTEN, None),
        ];
        let t = build_timeline(&events, &PlotOptions::default()).unwrap();
        let kinds: Vec<GroupKind> = t.groups.iter().map(|g| g.kind).collect();
        assert_eq!(kinds.len(), 4, "{kinds:?}");
        assert_eq!(kinds[0], GroupKind::Listener(Some("0.0.0.0:80".parse().unwrap())));
        assert_eq!(t.groups[0].lanes.len(), 1);
        // The unaddressed listener closed at 3, so its reopening is a new group.
        assert_eq!(kinds[2], GroupKind::Listener(None));
        assert_eq!(kinds[3], GroupKind::Listener(None));
    }

    #[test]
    fn a_reused_four_tuple_starts_a_new_group() {
        let c = conn("127.0.0.1:5000", "127.0.0.1:80");
        let events = [
            ev(1, Client, S::CLOSE, S::SYN_SENT, c),
            ev(2, Client, S::SYN_SENT, S::CLOSE, c),
            ev(3, Client, S::CLOSE, S::SYN_SENT, c),
        ];
        let t = build_timeline(&events, &PlotOptions::default()).unwrap();
        assert_eq!(t.groups.len(), 2);
    }

    #[test]
    fn unaddressed_sequential_connections_are_told_apart() {
        // Two curls in a row; the first one's TIME_WAIT ends after the second.
        let mut events = Vec::new();
        for (i, base) in [0u64, 1000].into_iter().enumerate() {
            events.push(ev(base, Client, S::CLOSE, S::SYN_SENT, None));
            events.push(ev(base + 1, Server, S::LISTEN, S::SYN_RECV, None));
            events.push(ev(base + 2, Client, S::SYN_SENT, S::ESTABLISHED, None));
            events.push(ev(base + 3, Server, S::SYN_RECV, S::ESTABLISHED, None));
            events.push(ev(base + 4, Client, S::ESTABLISHED, S::TIME_WAIT, None));
            events.push(ev(base + 5, Server, S::ESTABLISHED, S::CLOSE, None));
            events.push(ev(60_000 + i as u64, Client, S::TIME_WAIT, S::CLOSE, None));
        }
        let t = build_timeline(&events, &PlotOptions::default()).unwrap();
        assert_eq!(t.groups.len(), 2);
        for (g, base) in t.groups.iter().zip([0u64, 1000]) {
            assert_eq!(g.lanes[0].marks.len(), 3);
            assert_eq!(g.lanes[1].marks.len(), 4);
            assert_eq!(g.lanes[0].marks[0].t_ns, base + 1);
            assert_eq!(g.lanes[1].marks[3].t_ns, 60_000 + base / 1000);
        }
    }

    #[test]
    fn legend_states_follow_first_appearance() {
        let events = [
            ev(5, Client, S::SYN_SENT, S::ESTABLISHED, None),
            ev(1, Client, S::CLOSE, S::SYN_SENT, None),
        ];
        let t = build_timeline(&events, &PlotOptions::default()).unwrap();
        assert_eq!(t.states(), vec![S::SYN_SENT, S::ESTABLISHED]);
        assert_eq!(t.times(), vec![0, 4]);
    }

    #[test]
    fn nothing_to_draw_is_an_error() {
        assert!(build_timeline(&[], &PlotOptions::default()).is_err());
    }
}
