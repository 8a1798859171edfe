//! The connection table: everything tcpstate knows about each connection,
//! in one place, and the only place where a socket's side, its owner and the
//! time it spent in each state are decided.
//!
//! It takes what the probes saw ([`ProbeEvent`]s, the kernel's view) in
//! each socket's own order and hands out [`Record`]s, the user's view:
//! transitions with their connection id, side, owner and time in state, and
//! with `--raw` the timewait probe events as they came.
//!
//! A connection is keyed by its socket cookie, which the kernel keeps for
//! the socket's life and copies into the timewait socket that continues it
//! (kernel addresses are reused within microseconds; a run of 685
//! connections used 24). It lives from its first transition seen to its
//! full socket's CLOSE, or, when a timewait socket takes over, to that
//! socket's death. The work is split by the socket kind it follows:
//! `sockets` (full sockets: owners, sides, time in state, inferred gaps, the
//! hand-off to a timewait socket) and `timewait` (the TIME_WAIT lifecycle
//! from the TIME_WAIT probes' raw events). `listeners` knows who owns the
//! listening sockets, including those older than tcpstate.
//!
//! The table is bounded: past its capacity the connections that were
//! quiet longest are evicted, and every eviction is counted. Nothing is
//! dropped silently: [`Stats`] says what was inferred, evicted or forgotten.

mod life;
mod listeners;
mod record;
mod sockets;
mod store;
mod timewait;

use std::collections::VecDeque;
use std::num::NonZeroU64;

use rustc_hash::FxHashMap as HashMap;

pub use self::listeners::{existing_listeners, Listener};
pub use self::record::{ConnId, ConnRecord, EndCause, Inferred, RawProbe, Record, Span, Transition, LOCAL_IDS};
use self::store::Store;
use self::timewait::Timewait;
pub use self::timewait::CANCEL_HOLD_NS;
pub use crate::model::Counters;
use crate::model::{Owner, Side, TcpState, Tuple};
use crate::trace::{Probe, ProbeEvent};

/// Connections followed at once, by default: room for the kernel's own
/// default TIME_WAIT bound (tcp_max_tw_buckets) and as many live sockets.
pub const DEFAULT_CAPACITY: usize = 262_144;

/// What the table is asked to do.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// A server is configured: the kernel applied the original's side rule.
    pub server_configured: bool,
    /// `-p`: report only connections owned by this process.
    pub pid: Option<u32>,
    /// `--raw`: report what the probes saw (the hand-off to a timewait
    /// socket as `FIN_WAIT2 -> CLOSE`, timewait events as they came)
    /// instead of one coherent story per connection.
    pub raw: bool,
    /// Connections followed at once.
    pub capacity: usize,
    /// Make a [`ConnRecord`] for each connection that ends (and for those
    /// open at the end): `--connections` prints them, `--metrics` counts
    /// them. Off, the table spends nothing on them.
    pub records: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config { server_configured: false, pid: None, raw: false, capacity: DEFAULT_CAPACITY, records: false }
    }
}

/// Why a connection has the side it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SideRule {
    /// The configured server's rule (the original tool's), applied in the
    /// kernel: bound to the server is `server`, talking to it `client`.
    Server,
    /// How the socket began: connect() is a client; a listener and every
    /// socket accepted from one are servers.
    Origin,
    /// Its beginning was not seen: the lower port is taken for the server's.
    Ports,
}

impl SideRule {
    /// The name JSON and CSV print (`side_by`).
    pub fn as_str(self) -> &'static str {
        match self {
            SideRule::Server => "server",
            SideRule::Origin => "origin",
            SideRule::Ports => "ports",
        }
    }
}

/// Everything known about one connection.
///
/// What every event touches comes first, in one cache line (`repr(C)` keeps
/// the order): a table of tens of thousands of connections is mostly out of
/// cache, and each cache line an event touches costs a miss.
#[derive(Clone, Debug)]
#[repr(C)]
pub struct Conn {
    pub id: ConnId,
    /// Since when it is in `state` (none: its entry was not seen).
    since: At,
    /// When a probe last showed it in `state`: the earliest moment a change
    /// that no probe saw can have happened.
    seen_ns: u64,
    /// Its full socket's address while that is alive.
    sock: Option<NonZeroU64>,
    pub owner: Option<Owner>,
    /// The state users see it in.
    pub state: TcpState,
    pub side: Side,
    pub side_rule: SideRule,
    /// How it began, when that was seen (the [`SideRule::Origin`] rule).
    origin: Option<Side>,
    /// Where the census counts it: its side and state as last reported.
    counted: Option<(Side, TcpState)>,
    /// Its id is tcpstate's own until the socket shows the cookie it keeps
    /// (an accept the kernel reported before the socket had its own).
    provisional: bool,
    pub tuple: Tuple,
    pub netns: u32,
    /// Its cgroup v2 id: its full socket's, which its timewait socket does
    /// not carry (`None`: not known).
    pub cgroup_id: Option<NonZeroU64>,
    /// The timewait socket that continues it, once there is one.
    tw: Option<TwSocket>,
    /// What its record needs (records wanted only).
    life: Option<Box<life::Life>>,
}

/// The timewait socket of a connection.
#[derive(Clone, Copy, Debug)]
pub struct TwSocket {
    /// Its own kernel address, which the transitions it makes carry.
    addr: NonZeroU64,
    /// The cookie it carries (0: none).
    pub cookie: u64,
    /// The substate a probe last read (or inferred).
    pub substate: TcpState,
    /// The connection is in the timewait socket now: its full socket's
    /// hand-off was seen.
    handed_off: bool,
    /// When it was born (none: first seen late, by a cancel).
    born: At,
    /// When a probe last reported it, to forget it should its death be lost.
    last_ns: u64,
    /// A timer cancel awaiting the re-arm or expiry that would make it no
    /// death (timer probes), and what the probe read with it.
    cancel: At,
    cancel_substate: TcpState,
    cancel_armed: At,
    cancel_netns_dying: bool,
    /// The cancel the last re-arm followed, in case it was a death after all.
    rearm_cancel: At,
}

impl TwSocket {
    /// Its kernel address.
    pub fn addr(&self) -> u64 {
        self.addr.get()
    }
}

/// A kernel timestamp or none, in 8 bytes rather than an `Option`'s 16:
/// a table of hundreds of thousands of connections holds several each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct At(u64);

impl At {
    const NONE: At = At(u64::MAX);

    fn of(ns: u64) -> At {
        At(ns.min(u64::MAX - 1))
    }

    fn from(ns: Option<u64>) -> At {
        ns.map_or(At::NONE, At::of)
    }

    fn get(self) -> Option<u64> {
        (self != At::NONE).then_some(self.0)
    }
}

/// Counts of what the table could not follow or had to deduce. Every one
/// is in the exit summary and in the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Transitions no probe saw, deduced and reported as inferred.
    pub inferred: u64,
    /// Connections evicted because the table was full (their later
    /// transitions are reported as from sockets seen mid-life).
    pub evicted: u64,
    /// Timewait sockets forgotten after STALE_NS without a word: their
    /// death was never seen.
    pub tw_forgotten: u64,
}

/// Connections in each state, as last reported, per side: counted on
/// every reported transition, so arrays rather than a map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Census {
    counts: Box<[[u64; 256]; 2]>,
    /// Slots ever counted: their count is shown even at 0.
    seen: Box<[[bool; 256]; 2]>,
}

impl Default for Census {
    fn default() -> Census {
        Census { counts: Box::new([[0; 256]; 2]), seen: Box::new([[false; 256]; 2]) }
    }
}

impl Census {
    /// Reported connections of `side` in `state` now.
    pub fn get(&self, side: Side, state: TcpState) -> u64 {
        self.counts[side as usize][usize::from(state.0)]
    }

    /// Every (side, state) ever counted, with its count now (0 included).
    pub fn iter(&self) -> impl Iterator<Item = (Side, TcpState, u64)> + '_ {
        [Side::Server, Side::Client].into_iter().flat_map(move |side| {
            (0..=u8::MAX)
                .filter(move |&s| self.seen[side as usize][usize::from(s)])
                .map(move |s| (side, TcpState(s), self.counts[side as usize][usize::from(s)]))
        })
    }

    fn add(&mut self, (side, state): (Side, TcpState)) {
        self.counts[side as usize][usize::from(state.0)] += 1;
        self.seen[side as usize][usize::from(state.0)] = true;
    }

    fn remove(&mut self, (side, state): (Side, TcpState)) {
        let n = &mut self.counts[side as usize][usize::from(state.0)];
        *n = n.saturating_sub(1);
    }
}

/// What reporting a transition touches besides its connection: the -p
/// filter, the census and the counts. Kept apart from the connections so
/// that a connection and these can be borrowed at once.
#[derive(Default)]
struct Reports {
    pid: Option<u32>,
    /// Connection records are wanted: each transition adds to its life.
    records: bool,
    census: Census,
    stats: Stats,
}

impl Reports {
    /// Reports a transition of `conn` (when its owner passes `-p`) and moves
    /// the connection to the transition's new state in the census.
    fn report(&mut self, conn: &mut Conn, t: Transition, out: &mut VecDeque<Record>) {
        if !self.wants(conn) {
            return;
        }
        if let Some(slot) = conn.counted.take() {
            self.census.remove(slot);
        }
        if t.new != TcpState::CLOSE {
            conn.counted = Some((t.side, t.new));
            self.census.add((t.side, t.new));
        }
        if t.inferred.is_some() {
            self.stats.inferred += 1;
        }
        // (Reported, so it passes -p: its life is gathered when records are.)
        if self.records {
            conn.life.get_or_insert_default().on(&t);
        }
        out.push_back(Record::Transition(t));
    }

    /// Whether `conn` is reported (its owner passes `-p`).
    fn wants(&self, conn: &Conn) -> bool {
        self.pid.is_none_or(|pid| conn.owner.map(|o| o.pid) == Some(pid))
    }

    /// Where `conn`'s record is gathered, when records are wanted and it is
    /// reported.
    fn life<'c>(&self, conn: &'c mut Conn) -> Option<&'c mut life::Life> {
        if !self.records || !self.wants(conn) {
            return None;
        }
        Some(conn.life.get_or_insert_default())
    }

    /// Reports a transition of a connection the table does not follow.
    fn report_unfollowed(&mut self, t: Transition, out: &mut VecDeque<Record>) {
        if self.pid.is_none() {
            out.push_back(Record::Transition(t));
        }
    }
}

pub struct ConnTable {
    cfg: Config,
    conns: Store,
    /// Live full sockets by address: finds a connection where the kernel
    /// gives no cookie, and tells when a new socket reuses an address whose
    /// old socket's close was lost.
    by_sock: HashMap<u64, ConnId>,
    /// Accepts held back until their socket's identity is known, oldest
    /// first (see sockets.rs).
    held: VecDeque<(ConnId, Transition)>,
    /// Cookies of connections that kept tcpstate's id: their first record
    /// went out before the kernel gave them their cookie.
    aliases: HashMap<u64, ConnId>,
    next_local_id: ConnId,
    listeners: listeners::Owners,
    tw: Timewait,
    reports: Reports,
    /// Connections whose id is still provisional.
    provisional: usize,
    /// Ended connections whose records wait out their hold.
    ended: life::Ended,
    /// The latest event time seen: the table's own clock.
    latest_ns: u64,
    /// The latest time tick() was given.
    ticked_ns: u64,
}

impl ConnTable {
    pub fn new(cfg: Config) -> ConnTable {
        ConnTable {
            cfg,
            conns: Store::default(),
            by_sock: HashMap::default(),
            held: VecDeque::new(),
            aliases: HashMap::default(),
            next_local_id: LOCAL_IDS,
            listeners: listeners::Owners::default(),
            tw: Timewait::default(),
            reports: Reports { pid: cfg.pid, records: cfg.records, ..Reports::default() },
            provisional: 0,
            ended: life::Ended::default(),
            latest_ns: 0,
            ticked_ns: 0,
        }
    }

    /// Listeners that predate tcpstate (from /proc), so that the connections
    /// they accept are attributed from their first transition. What events
    /// tell later wins.
    pub fn seed_listeners(&mut self, listeners: &[Listener]) {
        self.listeners.seed(listeners);
    }

    /// Takes one probe event; appends what users should see to `out`.
    /// Events must come in each socket's own order (they do: a socket's
    /// changes are serialised by its lock and take their ring slot inside it).
    pub fn push(&mut self, ev: ProbeEvent, out: &mut VecDeque<Record>) {
        self.latest_ns = self.latest_ns.max(ev.ts_ns);
        match ev.probe {
            Probe::SetState { old, new } => self.set_state(&ev, old, new, out),
            Probe::Timewait { what, substate } => self.timewait(&ev, what, substate, out),
            Probe::Reset { sent, state, cause } => self.reset(ev.cookie, sent, state, cause),
        }
    }

    /// Resolves what waited long enough as of kernel time `now_ns` (timer
    /// cancels become deaths), forgets timewait sockets gone silent, and
    /// gives back memory after bursts.
    pub fn tick(&mut self, now_ns: u64, out: &mut VecDeque<Record>) {
        self.ticked_ns = self.ticked_ns.max(now_ns);
        self.release_held(Some(now_ns), out);
        self.tw_tick(now_ns, out);
        self.release_ended(Some(now_ns), out);
        self.conns.shrink_if_sparse();
        shrink_if_sparse(&mut self.by_sock);
    }

    /// Hands out everything still held back, and with records the
    /// connections still open (tracing ended).
    pub fn flush(&mut self, out: &mut VecDeque<Record>) {
        self.release_held(None, out);
        self.release_ended(None, out);
        if self.cfg.records {
            self.open_records(out);
        }
    }

    /// The oldest timestamp of a record the table still holds back: records
    /// after it must wait for it, to leave in time order.
    pub fn held_since(&self) -> Option<u64> {
        self.held.front().map(|(_, t)| t.ts_ns)
    }

    /// What is known about connection `id`.
    pub fn get(&self, id: ConnId) -> Option<&Conn> {
        self.conns.get(id)
    }

    /// Every connection followed now.
    pub fn iter(&self) -> impl Iterator<Item = &Conn> {
        self.conns.iter()
    }

    /// Connections followed now.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.len() == 0
    }

    /// Timewait sockets alive now (TIME_WAIT, or a FIN_WAIT2 parked in one).
    pub fn time_wait_alive(&self) -> usize {
        self.tw.len()
    }

    pub fn census(&self) -> &Census {
        &self.reports.census
    }

    pub fn stats(&self) -> Stats {
        self.reports.stats
    }

    /// A new connection (its id not in the table), evicting the quietest
    /// ones when the table is full; returns its slot in the store.
    fn insert(&mut self, conn: Conn) -> usize {
        if self.conns.len() >= self.cfg.capacity {
            self.evict_quietest();
        }
        self.conns.insert(conn)
    }

    /// Evicts the eighth of the table that was quiet longest (at least one):
    /// each eviction costs a scan, so it makes room for many.
    fn evict_quietest(&mut self) {
        let n = (self.conns.len() / 8).max(1);
        let mut quiet: Vec<(u64, ConnId)> = self.conns.iter().map(|c| (c.seen_ns, c.id)).collect();
        if n < quiet.len() {
            quiet.select_nth_unstable(n - 1);
        }
        for &(_, id) in &quiet[..n.min(quiet.len())] {
            self.remove(id);
            self.reports.stats.evicted += 1;
        }
    }

    /// Forgets a connection and everything that points at it.
    fn remove(&mut self, id: ConnId) -> Option<Conn> {
        let conn = self.conns.remove(id)?;
        if let Some(slot) = conn.counted {
            self.reports.census.remove(slot);
        }
        if let Some(sock) = conn.sock {
            self.unindex_sock(sock.get(), id);
        }
        if let Some(tw) = &conn.tw {
            self.tw.unindex(tw, id, &conn);
        }
        if conn.provisional {
            self.provisional -= 1;
        }
        if !self.aliases.is_empty() {
            self.aliases.retain(|_, &mut of| of != id);
        }
        Some(conn)
    }

    /// The connection a cookie names.
    fn id_of_cookie(&self, cookie: u64) -> ConnId {
        if self.aliases.is_empty() {
            return cookie;
        }
        self.aliases.get(&cookie).copied().unwrap_or(cookie)
    }

    /// An id for a connection the kernel gave no cookie.
    fn local_id(&mut self) -> ConnId {
        self.next_local_id += 1;
        self.next_local_id
    }

    /// Forgets that `sock` was connection `id`'s full socket.
    fn unindex_sock(&mut self, sock: u64, id: ConnId) {
        unindex(&mut self.by_sock, sock, id);
    }
}

/// Removes `key` from an index when it still names connection `id` (a
/// newer connection may have taken the key since): one lookup when it does,
/// which is nearly always.
pub(super) fn unindex<K: std::hash::Hash + Eq + Copy>(index: &mut HashMap<K, ConnId>, key: K, id: ConnId) {
    if let Some(other) = index.remove(&key).filter(|&of| of != id) {
        index.insert(key, other);
    }
}

impl Conn {
    /// A connection first seen now, in `state`.
    fn new(id: ConnId, ev: &ProbeEvent, state: TcpState) -> Conn {
        let (side, side_rule) = decide_side(ev.server_rule, None, &ev.tuple);
        Conn {
            id,
            tuple: ev.tuple,
            netns: ev.netns,
            cgroup_id: ev.cgroup_id,
            side,
            side_rule,
            owner: None,
            state,
            since: At::NONE,
            seen_ns: ev.ts_ns,
            sock: None,
            tw: None,
            origin: None,
            counted: None,
            provisional: false,
            life: None,
        }
    }

    /// Since when it is in its state, when that was seen.
    pub fn since_ns(&self) -> Option<u64> {
        self.since.get()
    }

    /// Its timewait socket, once there is one.
    pub fn tw(&self) -> Option<&TwSocket> {
        self.tw.as_ref()
    }

    /// A transition of this connection from `old` to `new` at `ts_ns`, made
    /// by the socket at `skaddr`.
    fn transition(&self, ts_ns: u64, old: TcpState, new: TcpState, skaddr: u64) -> Transition {
        self.transition_of(ts_ns, old, new, skaddr, self.tuple, self.netns)
    }

    /// The same with the socket's tuple and namespace as its event gave them
    /// (the full socket's events: its record's tuple is not read then).
    fn transition_of(
        &self,
        ts_ns: u64,
        old: TcpState,
        new: TcpState,
        skaddr: u64,
        tuple: Tuple,
        netns: u32,
    ) -> Transition {
        Transition {
            ts_ns,
            conn_id: self.id,
            side: self.side,
            old,
            new,
            tuple,
            netns,
            cgroup_id: self.cgroup_id,
            cgroup: None,
            owner: self.owner,
            skaddr,
            time_in_old_ns: None,
            inferred: None,
        }
    }

    /// Enters `state` at `ts_ns`; the time in a state does not restart when
    /// the kernel sets it again.
    fn enter(&mut self, state: TcpState, ts_ns: u64) {
        if state != self.state {
            self.since = At::of(ts_ns);
            self.state = state;
        }
        self.seen_ns = ts_ns;
    }

    /// Time in the current state as of `ts_ns`, when its start was seen.
    fn time_in_state(&self, ts_ns: u64) -> Option<u64> {
        self.since.get().map(|since| ts_ns.saturating_sub(since))
    }
}

/// The one place a side is decided: the configured server's rule, else how
/// the socket began, else the ports.
fn decide_side(server_rule: Option<Side>, origin: Option<Side>, tuple: &Tuple) -> (Side, SideRule) {
    match (server_rule, origin) {
        (Some(side), _) => (side, SideRule::Server),
        (None, Some(side)) => (side, SideRule::Origin),
        // Servers usually sit on the lower, well-known port, clients on a
        // higher ephemeral one.
        (None, None) if tuple.sport <= tuple.dport => (Side::Server, SideRule::Ports),
        (None, None) => (Side::Client, SideRule::Ports),
    }
}

/// Tables smaller than this keep their capacity.
const SPARSE_MIN: usize = 4096;

/// Shrinks a table that holds under a quarter of its capacity. Growth and
/// deletions leave hash tables at their peak size, and a table that once
/// grew from tombstones (hashbrown doubles when deleted slots fill it) would
/// otherwise keep several times what is alive.
pub(crate) fn shrink_if_sparse<K: std::hash::Hash + Eq, V>(table: &mut HashMap<K, V>) {
    if table.capacity() > SPARSE_MIN && table.len() * 4 < table.capacity() {
        table.shrink_to(table.len() * 2);
    }
}

#[cfg(test)]
pub(crate) mod tests;
