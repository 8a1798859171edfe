//! `--metrics ADDR`: Prometheus metrics about the transitions traced, served
//! over HTTP from a background thread while tracing.
//!
//! The exposition is the Prometheus text format (version 0.0.4), encoded by
//! `prometheus-client`; `tiny_http` answers `GET /metrics` (and `GET /`).
//!
//! `tcpstate_sockets{side,state}` follows each socket through the printed
//! transitions. A socket is known by its kernel address (`skaddr`) until it
//! reaches FIN_WAIT2 or TIME_WAIT, the two states a connection can be in
//! after the kernel handed it to a timewait socket; from there on by its
//! connection (netns and both ends), because its later transitions
//! (`FIN_WAIT2 -> TIME_WAIT` of a parked FIN_WAIT2, `TIME_WAIT -> CLOSE`)
//! carry the timewait socket's address, not the full socket's.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};

use anyhow::{Context, Result};
use prometheus_client::encoding::{prometheus_text, EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::event::{ConnKey, Event, Side};
use crate::state::TcpState;
use crate::trace::Lost;

/// Most sockets `tcpstate_sockets` follows at once. Beyond it new sockets
/// are not followed, and counted in `tcpstate_sockets_untracked_total`.
pub const MAX_TRACKED: usize = 262_144;

/// The `side` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct SideLabel(Side);

impl EncodeLabelValue for SideLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(self.0.as_str())
    }
}

/// A state label: the name tcpstate prints (`UNKNOWN(<n>)` for a number
/// this build does not know).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct StateLabel(TcpState);

impl EncodeLabelValue for StateLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        match self.0.name() {
            Cow::Borrowed(name) => encoder.write_str(name),
            Cow::Owned(name) => encoder.write_str(&name),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TransitionLabels {
    side: SideLabel,
    old: StateLabel,
    new: StateLabel,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SocketLabels {
    side: SideLabel,
    state: StateLabel,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LostLabels {
    reason: &'static str,
}

const RINGBUF_FULL: LostLabels = LostLabels { reason: "ring_buffer_full" };
const SKIPPED: LostLabels = LostLabels { reason: "skipped_by_kernel" };

/// Where a followed socket is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Place {
    side: Side,
    state: TcpState,
}

/// A connection in FIN_WAIT2 or TIME_WAIT, and since when (event clock).
#[derive(Clone, Copy, Debug)]
struct Conn {
    place: Place,
    since_ns: u64,
}

/// A TIME_WAIT this old (the kernel's lasts 60 s, a FIN retransmit may
/// extend it once more) ended without its `TIME_WAIT -> CLOSE` reported;
/// the lifecycle forgets such timewait sockets after as long.
const STALE_TIME_WAIT_NS: u64 = 600_000_000_000;

/// How often (event clock) stale TIME_WAIT entries are looked for.
const SWEEP_EVERY_NS: u64 = 10_000_000_000;

/// The sockets followed for `tcpstate_sockets`.
#[derive(Debug, Default)]
struct Tracking {
    /// Sockets before their hand-off, by kernel address.
    by_addr: HashMap<u64, Place>,
    /// Sockets in FIN_WAIT2 or TIME_WAIT, by connection.
    by_conn: HashMap<ConnKey, Conn>,
    /// When to look for stale TIME_WAIT entries next.
    next_sweep_ns: u64,
}

impl Tracking {
    fn len(&self) -> usize {
        self.by_addr.len() + self.by_conn.len()
    }
}

/// FIN_WAIT2 and TIME_WAIT: a timewait socket may hold the connection in
/// them, so its transitions out of them carry another address.
fn by_connection(state: TcpState) -> bool {
    state == TcpState::FIN_WAIT2 || state == TcpState::TIME_WAIT
}

/// A transition that creates a socket: connect() or listen() leaving
/// CLOSE, a connection request leaving its listener.
fn is_birth(ev: &Event) -> bool {
    ev.old == TcpState::CLOSE || (ev.old == TcpState::LISTEN && ev.new == TcpState::SYN_RECV)
}

/// Every metric tcpstate exports. Shared between the tracing loop, which
/// feeds it, and the HTTP thread, which renders it.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    transitions: Family<TransitionLabels, Counter>,
    sockets: Family<SocketLabels, Gauge>,
    untracked: Counter,
    time_wait_alive: Gauge,
    lost: Family<LostLabels, Counter>,
    recovered: Counter,
    inferred: Counter,
    tracking: Mutex<Tracking>,
    capacity: usize,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::with_capacity(MAX_TRACKED))
    }

    /// With room for `capacity` followed sockets (tests use a small one).
    fn with_capacity(capacity: usize) -> Metrics {
        let transitions = Family::<TransitionLabels, Counter>::default();
        let sockets = Family::<SocketLabels, Gauge>::default();
        let untracked = Counter::default();
        let time_wait_alive = Gauge::default();
        let lost = Family::<LostLabels, Counter>::default();
        let recovered = Counter::default();
        let inferred = Counter::default();
        // Both reasons exist from the start, at 0, rather than appearing
        // with the first loss.
        let _ = lost.get_or_create(&RINGBUF_FULL);
        let _ = lost.get_or_create(&SKIPPED);

        let mut registry = Registry::with_prefix("tcpstate");
        // Counter names get their `_total` from the encoder.
        registry.register(
            "transitions",
            "TCP state transitions reported, by side, state left (old) and state entered (new)",
            transitions.clone(),
        );
        registry.register(
            "sockets",
            "Sockets in each state, as followed through the transitions reported",
            sockets.clone(),
        );
        registry.register(
            "sockets_untracked",
            "Sockets born while tcpstate_sockets already followed its maximum, not counted there",
            untracked.clone(),
        );
        registry.register(
            "time_wait_sockets",
            "Timewait sockets alive (TIME_WAIT, or FIN_WAIT2 held by a timewait socket)",
            time_wait_alive.clone(),
        );
        registry.register(
            "lost_events",
            "State transitions the main probe did not report: the ring buffer was full, or the kernel \
             skipped the probe (tcpstate_recovered_events_total of those the backup probe caught)",
            lost.clone(),
        );
        registry.register(
            "recovered_events",
            "Transitions the kernel skipped the main probe for that the backup probe caught",
            recovered.clone(),
        );
        registry.register(
            "inferred_transitions",
            "Transitions no probe saw, deduced from the next one of the same socket",
            inferred.clone(),
        );
        Metrics {
            registry,
            transitions,
            sockets,
            untracked,
            time_wait_alive,
            lost,
            recovered,
            inferred,
            tracking: Mutex::new(Tracking::default()),
            capacity,
        }
    }

    /// Counts one reported transition and moves its socket between states.
    /// Raw timewait probe events (`--raw`) are not transitions: ignored.
    pub fn observe(&self, ev: &Event) {
        if ev.is_raw_tw() {
            return;
        }
        let side = SideLabel(ev.side);
        self.transitions
            .get_or_create(&TransitionLabels { side, old: StateLabel(ev.old), new: StateLabel(ev.new) })
            .inc();

        let mut tracking = self.lock();
        if ev.ts_ns >= tracking.next_sweep_ns {
            tracking.next_sweep_ns = ev.ts_ns.saturating_add(SWEEP_EVERY_NS);
            tracking.by_conn.retain(|_, c| {
                let stale =
                    c.place.state == TcpState::TIME_WAIT && c.since_ns.saturating_add(STALE_TIME_WAIT_NS) <= ev.ts_ns;
                if stale {
                    self.leave(c.place);
                }
                !stale
            });
        }
        let conn = ev.conn_key();
        // Where the socket was. A stale entry at its address (a socket
        // whose close was lost, at an address now reused) goes too.
        let mut was = tracking.by_addr.remove(&ev.skaddr);
        if let Some(place) = was {
            self.leave(place);
        }
        if by_connection(ev.old) {
            if let Some(Conn { place, .. }) = tracking.by_conn.remove(&conn) {
                self.leave(place);
                was = Some(place);
            }
        }
        if ev.new == TcpState::CLOSE {
            return;
        }
        if was.is_none() && tracking.len() >= self.capacity {
            if is_birth(ev) {
                self.untracked.inc();
            }
            return;
        }
        let place = Place { side: ev.side, state: ev.new };
        let replaced = if by_connection(ev.new) {
            tracking.by_conn.insert(conn, Conn { place, since_ns: ev.ts_ns }).map(|c| c.place)
        } else {
            tracking.by_addr.insert(ev.skaddr, place)
        };
        // A connection whose timewait death was lost, its tuple reused.
        if let Some(old) = replaced {
            self.leave(old);
        }
        self.sockets.get_or_create(&SocketLabels { side, state: StateLabel(ev.new) }).inc();
    }

    /// Takes the kernel's loss counters (absolute, and monotonic: a value
    /// lower than one seen before changes nothing).
    pub fn set_lost(&self, lost: &Lost) {
        set_counter(&self.lost.get_or_create(&RINGBUF_FULL), lost.ringbuf_full);
        set_counter(&self.lost.get_or_create(&SKIPPED), lost.skipped);
        set_counter(&self.recovered, lost.recovered);
    }

    /// Transitions inferred so far (absolute, monotonic like [`Metrics::set_lost`]).
    pub fn set_inferred(&self, n: u64) {
        set_counter(&self.inferred, n);
    }

    /// Timewait sockets alive now, from the TIME_WAIT lifecycle.
    pub fn set_time_wait_alive(&self, n: usize) {
        self.time_wait_alive.set(i64::try_from(n).unwrap_or(i64::MAX));
        // Called once per batch: a good moment to give back what a burst of
        // sockets grew the tables to.
        let mut tracking = self.lock();
        crate::lifecycle::shrink_if_sparse(&mut tracking.by_addr);
        crate::lifecycle::shrink_if_sparse(&mut tracking.by_conn);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        // Under the lock, so that a socket is never seen between two states.
        let _tracking = self.lock();
        let mut out = String::with_capacity(4096);
        prometheus_text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    fn leave(&self, place: Place) {
        self.sockets.get_or_create(&SocketLabels { side: SideLabel(place.side), state: StateLabel(place.state) }).dec();
    }

    fn lock(&self) -> MutexGuard<'_, Tracking> {
        // The bookkeeping stays consistent even if a holder panicked.
        self.tracking.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Sets a counter to an absolute value, never lowering it.
fn set_counter(counter: &Counter, value: u64) {
    counter.inner().fetch_max(value, Ordering::Relaxed);
}

/// The HTTP endpoint. Dropping it stops serving.
pub struct MetricsServer {
    server: Arc<tiny_http::Server>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl MetricsServer {
    /// The address served (with the port the kernel chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // Dropping the last reference to the server closes its listener.
    }
}

/// Binds `addr` now and serves `GET /metrics` (and `GET /`) from a
/// background thread until the returned server is dropped.
pub fn serve(metrics: Arc<Metrics>, addr: SocketAddr) -> Result<MetricsServer> {
    let context = || format!("cannot listen on {addr} for --metrics");
    let listener = TcpListener::bind(addr).map_err(plain_io_error).with_context(context)?;
    let local = listener.local_addr().map_err(plain_io_error).with_context(context)?;
    let server =
        tiny_http::Server::from_listener(listener, None).map_err(|e| anyhow::anyhow!("{e}")).with_context(context)?;
    let server = Arc::new(server);
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let server = server.clone();
        let stop = stop.clone();
        thread::Builder::new()
            .name("metrics".into())
            .spawn(move || answer_requests(&server, &metrics, &stop))
            .context("starting the --metrics thread")?
    };
    Ok(MetricsServer { server, stop, thread: Some(thread), addr: local })
}

/// An OS error without Rust's " (os error N)" suffix, to keep the message
/// as the system states it: "Address already in use".
fn plain_io_error(e: std::io::Error) -> std::io::Error {
    match e.raw_os_error() {
        Some(code) => std::io::Error::new(e.kind(), nix::errno::Errno::from_raw(code).desc()),
        None => e,
    }
}

fn answer_requests(server: &tiny_http::Server, metrics: &Metrics, stop: &AtomicBool) {
    // recv() fails once unblocked (or if the listener failed: nothing more
    // will come then either).
    while let Ok(request) = server.recv() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let response = response_to(request.method(), request.url(), metrics);
        // A client gone before the answer is its own problem.
        let _ = request.respond(response);
    }
}

fn response_to(
    method: &tiny_http::Method,
    url: &str,
    metrics: &Metrics,
) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    use tiny_http::{Method, Response};
    let path = url.split(['?', '#']).next().unwrap_or_default();
    if path != "/metrics" && path != "/" {
        return text(Response::from_string("not found: tcpstate serves /metrics\n").with_status_code(404));
    }
    if !matches!(method, Method::Get | Method::Head) {
        return text(Response::from_string("method not allowed: use GET\n").with_status_code(405))
            .with_header(header("Allow", "GET, HEAD"));
    }
    Response::from_string(metrics.render()).with_header(header("Content-Type", prometheus_text::CONTENT_TYPE))
}

fn text(response: tiny_http::Response<std::io::Cursor<Vec<u8>>>) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    response.with_header(header("Content-Type", "text/plain; charset=utf-8"))
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("a valid static header")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Source;

    const CLOSE: TcpState = TcpState::CLOSE;
    const SYN_SENT: TcpState = TcpState::SYN_SENT;
    const ESTABLISHED: TcpState = TcpState::ESTABLISHED;
    const FIN_WAIT1: TcpState = TcpState::FIN_WAIT1;
    const FIN_WAIT2: TcpState = TcpState::FIN_WAIT2;
    const TIME_WAIT: TcpState = TcpState::TIME_WAIT;
    const LISTEN: TcpState = TcpState::LISTEN;
    const SYN_RECV: TcpState = TcpState::SYN_RECV;
    const CLOSE_WAIT: TcpState = TcpState::CLOSE_WAIT;
    const LAST_ACK: TcpState = TcpState::LAST_ACK;

    const CLIENT_SK: u64 = 0xffff_8880_0000_1000;
    const SERVER_SK: u64 = 0xffff_8880_0000_2000;
    const LISTENER_SK: u64 = 0xffff_8880_0000_3000;
    const TW_SK: u64 = 0xffff_8880_0000_9000;

    fn ev(side: Side, skaddr: u64, old: TcpState, new: TcpState) -> Event {
        let (sport, dport) = match side {
            Side::Client => (if old == CLOSE { 0 } else { 51514 }, 8080),
            Side::Server => (8080, if old == CLOSE { 0 } else { 51514 }),
        };
        Event {
            ts_ns: 1,
            side,
            old,
            new,
            saddr: "127.0.0.1".parse().unwrap(),
            sport,
            daddr: "127.0.0.1".parse().unwrap(),
            dport,
            pid: None,
            comm: None,
            skaddr,
            netns: 4026531840,
            prev_state_ns: None,
            source: Source::SetState,
            nested: false,
            inferred: false,
            tw_substate: TcpState(0),
        }
    }

    /// The metric lines of the exposition, without comments.
    fn samples(m: &Metrics) -> Vec<String> {
        m.render().lines().filter(|l| !l.starts_with('#')).map(str::to_string).collect()
    }

    fn value(m: &Metrics, series: &str) -> Option<String> {
        samples(m).iter().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ').map(str::to_string))
    }

    fn gauge(m: &Metrics, side: &str, state: &str) -> Option<i64> {
        value(m, &format!("tcpstate_sockets{{side=\"{side}\",state=\"{state}\"}}")).map(|v| v.parse().unwrap())
    }

    fn nonzero_gauges(m: &Metrics) -> Vec<String> {
        samples(m).into_iter().filter(|l| l.starts_with("tcpstate_sockets{") && !l.ends_with(" 0")).collect()
    }

    /// The README's curl/nginx connection, the client closing first.
    fn connection(tw_close_skaddr: u64) -> Vec<Event> {
        use Side::{Client, Server};
        vec![
            ev(Server, LISTENER_SK, CLOSE, LISTEN),
            ev(Client, CLIENT_SK, CLOSE, SYN_SENT),
            ev(Client, CLIENT_SK, SYN_SENT, ESTABLISHED),
            ev(Server, SERVER_SK, LISTEN, SYN_RECV),
            ev(Server, SERVER_SK, SYN_RECV, ESTABLISHED),
            ev(Client, CLIENT_SK, ESTABLISHED, FIN_WAIT1),
            ev(Server, SERVER_SK, ESTABLISHED, CLOSE_WAIT),
            ev(Server, SERVER_SK, CLOSE_WAIT, LAST_ACK),
            ev(Client, CLIENT_SK, FIN_WAIT1, FIN_WAIT2),
            ev(Client, CLIENT_SK, FIN_WAIT2, TIME_WAIT),
            ev(Server, SERVER_SK, LAST_ACK, CLOSE),
            ev(Client, tw_close_skaddr, TIME_WAIT, CLOSE),
        ]
    }

    #[test]
    fn a_full_connection_leaves_only_the_listener() {
        let m = Metrics::new();
        let events = connection(TW_SK);
        for (i, e) in events.iter().enumerate() {
            m.observe(e);
            match i {
                // Client in FIN_WAIT2, still by its own address.
                8 => assert_eq!(gauge(&m, "client", "FIN_WAIT2"), Some(1)),
                // Handed off: TIME_WAIT, the full socket no longer counted.
                9 => {
                    assert_eq!(gauge(&m, "client", "TIME_WAIT"), Some(1));
                    assert_eq!(gauge(&m, "client", "FIN_WAIT2"), Some(0));
                }
                // The timewait socket's close, at another address, ends it.
                11 => assert_eq!(gauge(&m, "client", "TIME_WAIT"), Some(0)),
                _ => {}
            }
        }
        assert_eq!(nonzero_gauges(&m), ["tcpstate_sockets{side=\"server\",state=\"LISTEN\"} 1"]);
        m.observe(&ev(Side::Server, LISTENER_SK, LISTEN, CLOSE));
        assert_eq!(nonzero_gauges(&m), Vec::<String>::new());
        assert!(m.lock().by_addr.is_empty() && m.lock().by_conn.is_empty());

        // Every transition counted once, exactly.
        let mut counts: Vec<String> =
            samples(&m).into_iter().filter(|l| l.starts_with("tcpstate_transitions_total")).collect();
        counts.sort();
        let mut want: Vec<String> = events
            .iter()
            .chain([&ev(Side::Server, LISTENER_SK, LISTEN, CLOSE)])
            .map(|e| format!("tcpstate_transitions_total{{side=\"{}\",old=\"{}\",new=\"{}\"}} 1", e.side, e.old, e.new))
            .collect();
        want.sort();
        assert_eq!(counts, want);
    }

    #[test]
    fn transitions_are_counted_per_side_and_pair() {
        let m = Metrics::new();
        for _ in 0..3 {
            m.observe(&ev(Side::Client, CLIENT_SK, CLOSE, SYN_SENT));
            m.observe(&ev(Side::Client, CLIENT_SK, SYN_SENT, CLOSE));
        }
        m.observe(&ev(Side::Server, SERVER_SK, CLOSE, SYN_SENT));
        let series = "tcpstate_transitions_total{side=\"client\",old=\"CLOSE\",new=\"SYN_SENT\"}";
        assert_eq!(value(&m, series).as_deref(), Some("3"));
        let series = "tcpstate_transitions_total{side=\"client\",old=\"SYN_SENT\",new=\"CLOSE\"}";
        assert_eq!(value(&m, series).as_deref(), Some("3"));
        let series = "tcpstate_transitions_total{side=\"server\",old=\"CLOSE\",new=\"SYN_SENT\"}";
        assert_eq!(value(&m, series).as_deref(), Some("1"));
        assert_eq!(gauge(&m, "client", "SYN_SENT"), Some(0));
        assert_eq!(gauge(&m, "server", "SYN_SENT"), Some(1));
    }

    #[test]
    fn hand_off_reported_on_the_full_socket_or_the_timewait_socket() {
        // The TIME_WAIT -> CLOSE of the same address as the hand-off (as
        // without TIME_WAIT probes the kernel's own FIN_WAIT2 -> CLOSE is).
        let m = Metrics::new();
        connection(CLIENT_SK).iter().for_each(|e| m.observe(e));
        assert_eq!(gauge(&m, "client", "TIME_WAIT"), Some(0));

        // A FIN_WAIT2 parked in a timewait socket: the full socket's last
        // transition is hidden; the timewait socket moves on and closes.
        let m = Metrics::new();
        let mut events = connection(TW_SK);
        events[9].skaddr = TW_SK;
        events.iter().for_each(|e| m.observe(e));
        assert_eq!(nonzero_gauges(&m), ["tcpstate_sockets{side=\"server\",state=\"LISTEN\"} 1"]);

        // A parked FIN_WAIT2 that dies there.
        let m = Metrics::new();
        let mut events = connection(TW_SK);
        events.truncate(9);
        events.push(ev(Side::Client, TW_SK, FIN_WAIT2, CLOSE));
        events.iter().for_each(|e| m.observe(e));
        assert_eq!(gauge(&m, "client", "FIN_WAIT2"), Some(0));
        assert_eq!(m.lock().len(), 2, "the listener and the server's LAST_ACK");
    }

    #[test]
    fn a_lost_time_wait_close_does_not_count_twice_when_the_tuple_returns() {
        let m = Metrics::new();
        let mut events = connection(TW_SK);
        events.pop();
        events.iter().for_each(|e| m.observe(e));
        // The same tuple again, from a new socket, to TIME_WAIT.
        for (old, new) in [
            (CLOSE, SYN_SENT),
            (SYN_SENT, ESTABLISHED),
            (ESTABLISHED, FIN_WAIT1),
            (FIN_WAIT1, FIN_WAIT2),
            (FIN_WAIT2, TIME_WAIT),
        ] {
            m.observe(&ev(Side::Client, CLIENT_SK + 1, old, new));
        }
        assert_eq!(gauge(&m, "client", "TIME_WAIT"), Some(1));
        m.observe(&ev(Side::Client, TW_SK + 1, TIME_WAIT, CLOSE));
        assert_eq!(gauge(&m, "client", "TIME_WAIT"), Some(0));
    }

    #[test]
    fn a_time_wait_whose_close_never_comes_is_forgotten() {
        let m = Metrics::new();
        let mut events = connection(TW_SK);
        events.pop();
        let mut parked = ev(Side::Server, SERVER_SK + 1, FIN_WAIT1, FIN_WAIT2);
        parked.sport = 9090;
        events.push(parked);
        for e in &mut events {
            e.ts_ns = 1_000_000_000;
        }
        events.iter().for_each(|e| m.observe(e));
        assert_eq!(gauge(&m, "client", "TIME_WAIT"), Some(1));
        let mut later = ev(Side::Server, SERVER_SK + 2, CLOSE, LISTEN);
        later.ts_ns = 1_000_000_000 + STALE_TIME_WAIT_NS - 1;
        m.observe(&later);
        assert_eq!(gauge(&m, "client", "TIME_WAIT"), Some(1));
        later.ts_ns += SWEEP_EVERY_NS;
        m.observe(&later);
        assert_eq!(gauge(&m, "client", "TIME_WAIT"), Some(0));
        // A FIN_WAIT2 may last as long as its owner keeps it.
        assert_eq!(gauge(&m, "server", "FIN_WAIT2"), Some(1));
    }

    #[test]
    fn sockets_first_seen_mid_life_are_followed_and_unknown_closes_ignored() {
        let m = Metrics::new();
        m.observe(&ev(Side::Server, SERVER_SK, ESTABLISHED, CLOSE_WAIT));
        assert_eq!(gauge(&m, "server", "CLOSE_WAIT"), Some(1));
        // Timewait sockets older than tcpstate die unseen before.
        m.observe(&ev(Side::Client, TW_SK, TIME_WAIT, CLOSE));
        m.observe(&ev(Side::Client, CLIENT_SK, LAST_ACK, CLOSE));
        assert_eq!(gauge(&m, "client", "TIME_WAIT"), None);
        assert_eq!(gauge(&m, "server", "CLOSE_WAIT"), Some(1));
        assert_eq!(m.lock().len(), 1);
    }

    #[test]
    fn a_reused_address_replaces_the_socket_whose_close_was_lost() {
        let m = Metrics::new();
        m.observe(&ev(Side::Client, CLIENT_SK, CLOSE, SYN_SENT));
        m.observe(&ev(Side::Client, CLIENT_SK, SYN_SENT, ESTABLISHED));
        m.observe(&ev(Side::Client, CLIENT_SK, CLOSE, SYN_SENT));
        assert_eq!(gauge(&m, "client", "ESTABLISHED"), Some(0));
        assert_eq!(gauge(&m, "client", "SYN_SENT"), Some(1));
    }

    #[test]
    fn tracking_is_bounded_and_overflow_counted() {
        let m = Metrics::with_capacity(2);
        for i in 0..5 {
            m.observe(&ev(Side::Client, CLIENT_SK + i, CLOSE, SYN_SENT));
        }
        assert_eq!(gauge(&m, "client", "SYN_SENT"), Some(2));
        assert_eq!(value(&m, "tcpstate_sockets_untracked_total").as_deref(), Some("3"));
        // An untracked socket's later transitions are not counted again...
        m.observe(&ev(Side::Client, CLIENT_SK + 4, SYN_SENT, ESTABLISHED));
        assert_eq!(value(&m, "tcpstate_sockets_untracked_total").as_deref(), Some("3"));
        assert_eq!(gauge(&m, "client", "ESTABLISHED"), None);
        // ...tracked sockets still move, and their room is reused.
        m.observe(&ev(Side::Client, CLIENT_SK, SYN_SENT, CLOSE));
        m.observe(&ev(Side::Client, CLIENT_SK + 5, CLOSE, SYN_SENT));
        assert_eq!(gauge(&m, "client", "SYN_SENT"), Some(2));
        assert_eq!(value(&m, "tcpstate_sockets_untracked_total").as_deref(), Some("3"));
        // Every transition is still counted.
        let series = "tcpstate_transitions_total{side=\"client\",old=\"CLOSE\",new=\"SYN_SENT\"}";
        assert_eq!(value(&m, series).as_deref(), Some("6"));
    }

    #[test]
    fn time_wait_alive_is_a_settable_gauge() {
        let m = Metrics::new();
        assert_eq!(value(&m, "tcpstate_time_wait_sockets").as_deref(), Some("0"));
        m.set_time_wait_alive(3);
        assert_eq!(value(&m, "tcpstate_time_wait_sockets").as_deref(), Some("3"));
        m.set_time_wait_alive(0);
        assert_eq!(value(&m, "tcpstate_time_wait_sockets").as_deref(), Some("0"));
    }

    #[test]
    fn lost_and_inferred_counters_take_absolute_values_and_never_go_down() {
        let m = Metrics::new();
        let lost = |v: &str| value(&m, &format!("tcpstate_lost_events_total{{reason=\"{v}\"}}"));
        assert_eq!((lost("ring_buffer_full").as_deref(), lost("skipped_by_kernel").as_deref()), (Some("0"), Some("0")));
        m.set_lost(&Lost { ringbuf_full: 7, tw_ringbuf_full: 0, skipped: 5, recovered: 4, tw_skipped: Vec::new() });
        m.set_lost(&Lost { ringbuf_full: 7, tw_ringbuf_full: 0, skipped: 5, recovered: 4, tw_skipped: Vec::new() });
        assert_eq!(lost("ring_buffer_full").as_deref(), Some("7"));
        assert_eq!(lost("skipped_by_kernel").as_deref(), Some("5"));
        assert_eq!(value(&m, "tcpstate_recovered_events_total").as_deref(), Some("4"));
        m.set_lost(&Lost { ringbuf_full: 9, tw_ringbuf_full: 0, skipped: 1, recovered: 0, tw_skipped: Vec::new() });
        assert_eq!(lost("ring_buffer_full").as_deref(), Some("9"));
        assert_eq!(lost("skipped_by_kernel").as_deref(), Some("5"));
        m.set_inferred(2);
        m.set_inferred(1);
        assert_eq!(value(&m, "tcpstate_inferred_transitions_total").as_deref(), Some("2"));
    }

    #[test]
    fn raw_timewait_probe_events_are_not_transitions() {
        let m = Metrics::new();
        let mut e = ev(Side::Client, TW_SK, CLOSE, TIME_WAIT);
        e.source = Source::TwArm;
        m.observe(&e);
        assert!(!m.render().contains("tcpstate_transitions_total{"));
        assert_eq!(m.lock().len(), 0);
    }

    #[test]
    fn unknown_states_are_labelled_as_printed() {
        let m = Metrics::new();
        m.observe(&ev(Side::Server, SERVER_SK, ESTABLISHED, TcpState(42)));
        assert_eq!(gauge(&m, "server", "UNKNOWN(42)"), Some(1));
    }

    #[test]
    fn exposition_has_help_and_type_lines() {
        let m = Metrics::new();
        // A family without a series yet is left out altogether.
        assert!(!m.render().contains("tcpstate_transitions_total"));
        assert!(!m.render().contains("# TYPE tcpstate_sockets gauge"));
        m.observe(&ev(Side::Client, CLIENT_SK, CLOSE, SYN_SENT));
        let text = m.render();
        for line in [
            "# TYPE tcpstate_transitions_total counter",
            "# TYPE tcpstate_sockets gauge",
            "# TYPE tcpstate_sockets_untracked_total counter",
            "# TYPE tcpstate_time_wait_sockets gauge",
            "# TYPE tcpstate_lost_events_total counter",
            "# TYPE tcpstate_recovered_events_total counter",
            "# TYPE tcpstate_inferred_transitions_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
        assert!(!text.contains("# EOF"), "OpenMetrics trailer in the Prometheus format");
    }

    #[test]
    fn metrics_are_shared_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Metrics>();
        send_sync::<MetricsServer>();
    }
}
