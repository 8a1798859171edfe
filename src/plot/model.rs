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
//! - connect() enters SYN_SENT before the kernel picks the local port, so a
//!   client's `CLOSE → SYN_SENT` has local port 0 and a 4-tuple of its own.
//!   Such an event takes the 4-tuple of the next event of the same socket
//!   address (`socket`; the kernel reuses an address only after the socket
//!   closed, so the next event is the same socket's). Without addresses of
//!   sockets, it takes the 4-tuple of the next client socket to the same
//!   peer whose first event leaves SYN_SENT, oldest connect first.
//! - A 4-tuple can be reused once its sockets closed: an event for a lane
//!   that already reached CLOSE, or a socket's first transition (from CLOSE,
//!   or LISTEN → SYN_RECV for an accepted one) on a lane that has events,
//!   starts a new group.
//! - Socket addresses, when the trace has them, keep sockets with the same
//!   4-tuple apart (two network namespaces, `SO_REUSEPORT` listeners): an
//!   event joins the lane of its own socket, and never a lane whose last
//!   event came from another socket, except where a closing connection is
//!   handed to its timewait socket (`FIN_WAIT2`/`TIME_WAIT` continue under
//!   the timewait socket's address).
//! - Without addresses (the original tool's lines) sockets are told apart by
//!   continuity: an event continues the oldest open lane of its side whose
//!   state is the event's old state; a socket's first transition opens a new
//!   group, except that an accepted server socket joins the oldest group
//!   whose client is connecting and has no server yet. For one connection
//!   this gives the original script's single server lane and client lane.
//!
//! A lane whose events carry the connection id of a connection record
//! (see [`super::Ends`]) keeps how that connection ended, for its label.
//!
//! Containers: a lane's container is its socket's (the first its events
//! name). When any event of the trace names a container, groups are
//! ordered by the container they go under, keeping their order within one:
//! containers in order of their first group, then the groups in no
//! container. A group goes under its server lane's container, or when the
//! server socket is in none (or was not traced) its client lane's: a
//! connection between two containers (curl in one, nginx in the other) is
//! the server's, and one between a container and the host is the
//! container's. The lane whose container differs says so in its label.
//! Containers never split or join groups: the sockets and 4-tuples do that.

use std::collections::HashMap;
use std::net::SocketAddr;

use anyhow::{bail, Result};

use super::container::first_seen;
use super::select::{select, Selectable};
use super::{ConnEnd, ContainerTag, Ends, PlotEvent, PlotOptions, Side, Tuple};
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
    /// Some event of the trace names a container: the groups are ordered by
    /// [`Group::container`] and drawn under a heading each.
    pub by_container: bool,
}

/// One connection (or listener): the lanes drawn together.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub kind: GroupKind,
    pub lanes: Vec<Lane>,
    /// The container it is drawn under: its server lane's, else its client
    /// lane's (see the module comment).
    pub container: Option<ContainerTag>,
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
    /// How its connection ended, when a connection record says.
    pub end: Option<ConnEnd>,
    /// Its socket's container, the first its events name.
    pub container: Option<ContainerTag>,
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
        let mut times: Vec<u64> = self.lanes().flat_map(|l| l.marks.iter().map(|m| m.t_ns)).collect();
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
    build_labelled_timeline(events, &Ends::new(), opts)
}

/// As [`build_timeline`], each lane given the end in `ends` of the
/// connection id its events carry.
pub fn build_labelled_timeline(events: &[PlotEvent], ends: &Ends, opts: &PlotOptions) -> Result<Timeline> {
    if events.is_empty() {
        bail!("no events to draw: nothing was traced (check the server address and port, or trace without them)");
    }
    let mut sorted = events.to_vec();
    sorted.sort_by_key(|e| e.ts_ns);
    give_ports(&mut sorted);
    let drafts = group(&sorted);
    let chosen = select(drafts, opts)?;
    let t0_ns = chosen
        .kept
        .iter()
        .flat_map(|d| d.lanes.iter().flat_map(|(_, evs)| evs.first()))
        .map(|e| e.ts_ns)
        .min()
        .unwrap_or(0);
    let mut groups: Vec<Group> = chosen.kept.into_iter().map(|d| d.finish(t0_ns, ends)).collect();
    let by_container = events.iter().any(|e| e.container.is_some());
    if by_container {
        order_by_container(&mut groups);
    }
    Ok(Timeline {
        t0_ns,
        groups,
        omitted_conns: chosen.omitted_conns,
        omitted_listeners: chosen.omitted_listeners,
        by_container,
    })
}

/// Each container's groups together, containers in order of their first
/// group and groups in no container last; a stable sort keeps the order of
/// the groups of one container.
fn order_by_container(groups: &mut [Group]) {
    let order = first_seen(groups.iter().filter_map(|g| g.container));
    let rank = |c: Option<ContainerTag>| c.and_then(|c| order.iter().position(|&o| o == c));
    groups.sort_by_key(|g| rank(g.container).unwrap_or(order.len()));
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
                    Side::Server => (local, peer),
                    Side::Client => (peer, local),
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

fn canonical(c: Tuple) -> Tuple {
    Tuple { saddr: c.saddr.to_canonical(), daddr: c.daddr.to_canonical(), ..c }
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

    fn finish(self, t0_ns: u64, ends: &Ends) -> Group {
        let lanes: Vec<Lane> = self.lanes.into_iter().map(|(role, evs)| lane(role, &evs, t0_ns, ends)).collect();
        // Lanes are in role order: the server's (or the listener's) first.
        let container = lanes.iter().find_map(|l| l.container);
        Group { kind: self.kind, lanes, container }
    }
}

impl Selectable for Draft {
    fn kind(&self) -> &GroupKind {
        &self.kind
    }

    fn containers(&self) -> Vec<ContainerTag> {
        self.lanes.iter().filter_map(|(_, evs)| first_container(evs)).collect()
    }
}

fn first_container(events: &[PlotEvent]) -> Option<ContainerTag> {
    events.iter().find_map(|e| e.container)
}

fn lane(role: Role, events: &[PlotEvent], t0_ns: u64, ends: &Ends) -> Lane {
    let marks: Vec<Mark> =
        events.iter().map(|e| Mark { t_ns: e.ts_ns - t0_ns, old: e.old, new: e.new, inferred: e.inferred }).collect();
    let segments = marks
        .iter()
        .enumerate()
        .map(|(i, m)| Segment { state: m.new, start_ns: m.t_ns, end_ns: marks.get(i + 1).map(|n| n.t_ns) })
        .collect();
    let end = events.iter().find_map(|e| e.socket.and_then(|id| ends.get(&id))).copied();
    Lane { role, marks, segments, end, container: first_container(events) }
}

fn role(key: Key, side: Side) -> Role {
    match (key, side) {
        (Key::Listener(_), _) => Role::Listener,
        (Key::Conn(_), Side::Server) => Role::Server,
        (Key::Conn(_), Side::Client) => Role::Client,
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

/// With a 4-tuple, reuse and socket addresses split groups: join the own
/// socket's lane if its address is known, else the newest group of the key
/// whose lane in this role is empty or open, skipping lanes of other sockets
/// (see the module comment).
fn continue_addressed(drafts: &[Draft], candidates: &[usize], ev: &PlotEvent, role: Role) -> Option<usize> {
    let last = |g: usize| drafts[g].lane(role).last();
    if let Some(addr) = ev.socket {
        let own = candidates
            .iter()
            .rev()
            .copied()
            .find(|&g| last(g).is_some_and(|l| l.socket == Some(addr) && l.new != TcpState::CLOSE));
        if let Some(g) = own {
            // The same address starting over is a new socket in the old one's memory.
            return (!starts_socket(ev)).then_some(g);
        }
    }
    for &g in candidates.iter().rev() {
        match last(g) {
            None => return Some(g),
            Some(l) if other_socket(l, ev) => continue,
            Some(l) => return (l.new != TcpState::CLOSE && !starts_socket(ev)).then_some(g),
        }
    }
    None
}

/// `ev` comes from another socket than `last` did: both name their socket
/// and the names differ, and it is not a closing connection's hand-over to
/// its timewait socket, which continues in the state the full socket left.
fn other_socket(last: &PlotEvent, ev: &PlotEvent) -> bool {
    match (last.socket, ev.socket) {
        (Some(a), Some(b)) if a != b => {
            let hand_over = matches!(last.new, TcpState::FIN_WAIT2 | TcpState::TIME_WAIT) && ev.old == last.new;
            !hand_over
        }
        _ => false,
    }
}

/// connect()'s first event (`CLOSE → SYN_SENT`) has local port 0: the
/// kernel picks the port after entering SYN_SENT. Gives each such event the
/// 4-tuple of the next event of its socket (same `socket`), or without
/// `socket`, of the oldest later client socket to the same peer whose first
/// event leaves SYN_SENT. An event left without a match keeps port 0.
fn give_ports(events: &mut [PlotEvent]) {
    let unported = |e: &PlotEvent| {
        e.side == Side::Client && e.new != TcpState::CLOSE && e.conn.is_some_and(|c| c.sport == 0 && c.dport != 0)
    };
    let same_peer = |a: Tuple, b: Tuple| {
        let (a, b) = (canonical(a), canonical(b));
        a.daddr == b.daddr
            && a.dport == b.dport
            && (a.saddr == b.saddr || a.saddr.is_unspecified() || b.saddr.is_unspecified())
    };
    // By socket address: the next event of that address, seen from the end.
    let mut next_of: HashMap<u64, usize> = HashMap::new();
    let mut pending = Vec::new();
    for i in (0..events.len()).rev() {
        let ev = events[i];
        let Some(addr) = ev.socket else {
            if unported(&ev) && ev.old == TcpState::CLOSE {
                pending.push(i);
            }
            continue;
        };
        if unported(&ev) {
            let next = next_of.get(&addr).map(|&j| events[j]);
            match next.and_then(|n| n.conn.filter(|_| n.side == ev.side && !starts_socket(&n))) {
                Some(c) if c.sport != 0 && same_peer(c, ev.conn.unwrap_or(c)) => events[i].conn = Some(c),
                _ if ev.old == TcpState::CLOSE => pending.push(i),
                _ => {}
            }
        }
        next_of.insert(addr, i);
    }
    if pending.is_empty() {
        return;
    }
    // By continuity: oldest connect first.
    pending.reverse();
    let mut last_state: HashMap<(SocketAddr, SocketAddr), TcpState> = HashMap::new();
    for i in 0..events.len() {
        let ev = events[i];
        let Some(c) = ev.conn.map(canonical) else {
            continue;
        };
        if ev.side != Side::Client || c.sport == 0 {
            continue;
        }
        let tuple = (SocketAddr::new(c.saddr, c.sport), SocketAddr::new(c.daddr, c.dport));
        let first = last_state.get(&tuple).is_none_or(|&s| s == TcpState::CLOSE);
        if first && ev.old == TcpState::SYN_SENT {
            let claim = pending.iter().position(|&p| {
                let (before, p) = (p < i, &events[p]);
                before
                    && p.conn.is_some_and(|pc| same_peer(pc, c))
                    && !matches!((p.socket, ev.socket), (Some(a), Some(b)) if a != b)
            });
            if let Some(k) = claim {
                let p = pending.remove(k);
                events[p].conn = ev.conn;
            }
        }
        last_state.insert(tuple, ev.new);
    }
}

/// Without addresses, continuity decides (see the module comment).
fn continue_unaddressed(drafts: &[Draft], candidates: &[usize], ev: &PlotEvent, role: Role) -> Option<usize> {
    let fresh = starts_socket(ev);
    candidates.iter().copied().find(|&g| {
        let d = &drafts[g];
        match (d.state(role), fresh) {
            (Some(state), false) => state == ev.old && state != TcpState::CLOSE,
            (None, true) => {
                role == Role::Server
                    && matches!(d.state(Role::Client), Some(TcpState::SYN_SENT | TcpState::ESTABLISHED))
            }
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ts: u64, side: Side, old: TcpState, new: TcpState, conn: Option<Tuple>) -> PlotEvent {
        PlotEvent { ts_ns: ts, side, old, new, conn, socket: None, inferred: false, container: None }
    }

    fn conn(local: &str, peer: &str) -> Option<Tuple> {
        let l: SocketAddr = local.parse().unwrap();
        let p: SocketAddr = peer.parse().unwrap();
        Some(Tuple { saddr: l.ip(), sport: l.port(), daddr: p.ip(), dport: p.port() })
    }

    use Side::{Client, Server};
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
        assert_eq!(g.lanes[1].segments[0], Segment { state: S::SYN_SENT, start_ns: 0, end_ns: Some(20) });
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

    fn at(addr: u64, ev: PlotEvent) -> PlotEvent {
        PlotEvent { socket: Some(addr), ..ev }
    }

    /// The client lane of one curl → server connection; the first event has
    /// port 0, as connect() reports it.
    fn connect(base: u64, port: u16, addr: Option<u64>) -> Vec<PlotEvent> {
        let c = conn(&format!("127.0.0.1:{port}"), "127.0.0.1:80");
        let unported = conn("127.0.0.1:0", "127.0.0.1:80");
        let with = |e: PlotEvent| PlotEvent { socket: addr, ..e };
        vec![
            with(ev(base, Client, S::CLOSE, S::SYN_SENT, unported)),
            with(ev(base + 10, Client, S::SYN_SENT, S::ESTABLISHED, c)),
            with(ev(base + 20, Client, S::ESTABLISHED, S::FIN_WAIT1, c)),
            with(ev(base + 30, Client, S::FIN_WAIT1, S::CLOSE, c)),
        ]
    }

    fn client_states(t: &Timeline) -> Vec<(String, String)> {
        t.groups
            .iter()
            .map(|g| {
                let client = client_of(g);
                let states = g.lanes[1].marks.iter().map(|m| m.new.to_string()).collect::<Vec<_>>();
                (client, states.join(" "))
            })
            .collect()
    }

    fn client_of(g: &Group) -> String {
        match g.kind {
            GroupKind::Connection { client, .. } => client.to_string(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn connect_s_port_0_event_joins_its_socket_by_address() {
        let mut events = connect(0, 5000, Some(0xa0));
        // The same address is reused by the next connect, after the close.
        events.extend(connect(100, 5001, Some(0xa0)));
        let t = build_timeline(&events, &PlotOptions::default()).unwrap();
        let full = "SYN_SENT ESTABLISHED FIN_WAIT1 CLOSE".to_string();
        assert_eq!(
            client_states(&t),
            [("127.0.0.1:5000".to_string(), full.clone()), ("127.0.0.1:5001".to_string(), full)]
        );
    }

    #[test]
    fn connect_s_port_0_event_joins_by_continuity_without_addresses() {
        // Two connects to the same server before either has its port: the
        // oldest connect gets the first socket to leave SYN_SENT.
        let mut b = connect(5, 5001, None);
        b[0].ts_ns = 1;
        let mut events: Vec<PlotEvent> = connect(0, 5000, None).into_iter().chain(b).collect();
        // A connect that never got a port stays apart, under port 0.
        events.push(ev(200, Client, S::CLOSE, S::SYN_SENT, conn("127.0.0.1:0", "127.0.0.1:81")));
        let t = build_timeline(&events, &PlotOptions::default()).unwrap();
        let states = client_states(&t);
        assert_eq!(states.len(), 3, "{states:?}");
        assert_eq!(states[0], ("127.0.0.1:5000".into(), "SYN_SENT ESTABLISHED FIN_WAIT1 CLOSE".into()));
        assert_eq!(states[1], ("127.0.0.1:5001".into(), "SYN_SENT ESTABLISHED FIN_WAIT1 CLOSE".into()));
        assert_eq!(states[2], ("127.0.0.1:0".into(), "SYN_SENT".into()));
    }

    #[test]
    fn socket_addresses_keep_sockets_with_one_four_tuple_apart() {
        // Two network namespaces, the same 4-tuple, interleaved; and each
        // client handed to a timewait socket with an address of its own.
        let c = conn("127.0.0.1:5000", "127.0.0.1:80");
        let events = [
            at(1, ev(0, Client, S::CLOSE, S::SYN_SENT, c)),
            at(2, ev(1, Client, S::CLOSE, S::SYN_SENT, c)),
            at(1, ev(2, Client, S::SYN_SENT, S::ESTABLISHED, c)),
            at(2, ev(3, Client, S::SYN_SENT, S::CLOSE, c)),
            at(1, ev(4, Client, S::ESTABLISHED, S::FIN_WAIT1, c)),
            at(1, ev(5, Client, S::FIN_WAIT1, S::FIN_WAIT2, c)),
            at(1, ev(6, Client, S::FIN_WAIT2, S::TIME_WAIT, c)),
            at(9, ev(7, Client, S::TIME_WAIT, S::CLOSE, c)),
        ];
        let t = build_timeline(&events, &PlotOptions::default()).unwrap();
        let states: Vec<String> = client_states(&t).into_iter().map(|(_, s)| s).collect();
        assert_eq!(states, ["SYN_SENT ESTABLISHED FIN_WAIT1 FIN_WAIT2 TIME_WAIT CLOSE", "SYN_SENT CLOSE"]);
    }

    #[test]
    fn legend_states_follow_first_appearance() {
        let events = [ev(5, Client, S::SYN_SENT, S::ESTABLISHED, None), ev(1, Client, S::CLOSE, S::SYN_SENT, None)];
        let t = build_timeline(&events, &PlotOptions::default()).unwrap();
        assert_eq!(t.states(), vec![S::SYN_SENT, S::ESTABLISHED]);
        assert_eq!(t.times(), vec![0, 4]);
    }

    fn inside(container: &str, ev: PlotEvent) -> PlotEvent {
        PlotEvent { container: ContainerTag::new(container, None), ..ev }
    }

    /// One connection's server and client events, each end in its container
    /// ("" for none).
    fn exchange(ts: u64, server: (&str, &str), client: (&str, &str)) -> [PlotEvent; 2] {
        let (s, c) = (conn(server.1, client.1), conn(client.1, server.1));
        [
            inside(client.0, ev(ts, Client, S::SYN_SENT, S::ESTABLISHED, c)),
            inside(server.0, ev(ts + 1, Server, S::LISTEN, S::SYN_RECV, s)),
        ]
    }

    /// Each group's container (short id, `-` for none), then its server end.
    fn placed(t: &Timeline) -> Vec<String> {
        t.groups
            .iter()
            .map(|g| {
                let container = g.container.as_ref().map_or("-", ContainerTag::short_id);
                match g.kind {
                    GroupKind::Connection { server, .. } => format!("{container} {server}"),
                    other => format!("{container} {other:?}"),
                }
            })
            .collect()
    }

    #[test]
    fn groups_gather_by_container_in_order_of_first_appearance_host_last() {
        let events: Vec<PlotEvent> = [
            exchange(0, ("", "10.0.0.1:22"), ("", "10.0.0.9:5000")),
            exchange(10, ("b", "10.0.0.2:80"), ("b", "10.0.0.2:5001")),
            exchange(20, ("a", "10.0.0.3:80"), ("a", "10.0.0.3:5002")),
            exchange(30, ("", "10.0.0.1:23"), ("", "10.0.0.9:5003")),
            exchange(40, ("b", "10.0.0.2:81"), ("b", "10.0.0.2:5004")),
        ]
        .concat();
        let t = build_timeline(&events, &PlotOptions::default()).unwrap();
        assert!(t.by_container);
        assert_eq!(placed(&t), ["b 10.0.0.2:80", "b 10.0.0.2:81", "a 10.0.0.3:80", "- 10.0.0.1:22", "- 10.0.0.1:23"]);
        // Each lane knows its own socket's container.
        assert!(t.groups[0].lanes.iter().all(|l| l.container == ContainerTag::new("b", None)));
        assert!(t.groups[4].lanes.iter().all(|l| l.container.is_none()));
    }

    #[test]
    fn a_connection_goes_under_its_server_s_container_else_its_client_s() {
        let mut events: Vec<PlotEvent> = [
            // curl in a → nginx in b: b's.
            exchange(0, ("b", "10.0.0.2:80"), ("a", "10.0.0.3:5000")),
            // curl in a → sshd in none: a's.
            exchange(10, ("", "10.0.0.1:22"), ("a", "10.0.0.3:5001")),
            // curl in none → nginx in b: b's.
            exchange(20, ("b", "10.0.0.2:80"), ("", "10.0.0.1:5002")),
        ]
        .concat();
        // curl in a to a server whose end was not traced: a's.
        events.push(inside("a", ev(30, Client, S::CLOSE, S::SYN_SENT, conn("10.0.0.3:5003", "1.1.1.1:443"))));
        let t = build_timeline(&events, &PlotOptions::default()).unwrap();
        assert_eq!(placed(&t), ["b 10.0.0.2:80", "b 10.0.0.2:80", "a 10.0.0.1:22", "a 1.1.1.1:443"]);
        let lane_containers =
            |g: &Group| g.lanes.iter().map(|l| l.container.map(|c| c.short_id().to_string())).collect::<Vec<_>>();
        assert_eq!(lane_containers(&t.groups[0]), [Some("b".into()), Some("a".into())]);
        assert_eq!(lane_containers(&t.groups[1]), [Some("b".into()), None]);
        assert_eq!(lane_containers(&t.groups[3]), [None, Some("a".into())]);
    }

    #[test]
    fn containers_change_nothing_but_the_order_and_the_limit_keeps_the_earliest() {
        let events: Vec<PlotEvent> = (0..4u16)
            .flat_map(|i| {
                let container = if i % 2 == 0 { "" } else { "a" };
                exchange(u64::from(i) * 10, (container, "10.0.0.2:80"), (container, &format!("10.0.0.3:{}", 5000 + i)))
            })
            .collect();
        let opts = PlotOptions { max_conns: 3, ..PlotOptions::default() };
        let t = build_timeline(&events, &opts).unwrap();
        let clients: Vec<String> = t.groups.iter().map(client_of).collect();
        assert_eq!(clients, ["10.0.0.3:5001", "10.0.0.3:5000", "10.0.0.3:5002"]);
        assert_eq!(t.omitted_conns, 1);
        // The same trace without containers: the groups in time order, and
        // the same lanes.
        let bare: Vec<PlotEvent> = events.iter().map(|e| PlotEvent { container: None, ..*e }).collect();
        let plain = build_timeline(&bare, &opts).unwrap();
        assert!(!plain.by_container);
        assert_eq!(
            plain.groups.iter().map(client_of).collect::<Vec<_>>(),
            ["10.0.0.3:5000", "10.0.0.3:5001", "10.0.0.3:5002"]
        );
        assert_eq!(plain.groups[0].lanes[0].marks, t.groups[1].lanes[0].marks);
    }

    #[test]
    fn nothing_to_draw_is_an_error() {
        assert!(build_timeline(&[], &PlotOptions::default()).is_err());
    }
}
