//! `--metrics ADDR`: Prometheus metrics about the transitions and the
//! connections traced, served over HTTP from a background thread while
//! tracing.
//!
//! The exposition is the Prometheus text format (version 0.0.4), encoded by
//! `prometheus-client`; `tiny_http` answers `GET /metrics` (and `GET /`).
//! Transitions and connection records are counted as they come; the gauges
//! and the loss counters are read from the connection table and the kernel
//! side after each batch. Nothing here keeps its own view of the connections.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};

use anyhow::{Context, Result};
use prometheus_client::encoding::{
    prometheus_text, EncodeLabel, EncodeLabelSet, EncodeLabelValue, LabelSetEncoder, LabelValueEncoder,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use super::{Sink, Status};
use crate::conn::{ConnRecord, ConnTable, EndCause, Record, Transition};
use crate::model::{Side, TcpState, Tuple};
use crate::state::{connection_states, KERNEL_TRANSITIONS};
use crate::trace::Lost;

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

/// The `end` label: how a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct EndLabel(EndCause);

impl EncodeLabelValue for EndLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(self.0.as_str())
    }
}

/// The `port` label (`--metrics-by-port`): a connection's server port
/// (the local one on the server side, the peer's on the client side) when
/// it is one of the ports asked for. Absent otherwise, and without the
/// option: the label set is then what it always was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct PortLabel(Option<u16>);

impl EncodeLabelSet for PortLabel {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> std::fmt::Result {
        match self.0 {
            Some(port) => ("port", port).encode(encoder.encode_label()),
            None => Ok(()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TransitionLabels {
    side: SideLabel,
    old: StateLabel,
    new: StateLabel,
    #[prometheus(flatten)]
    port: PortLabel,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SocketLabels {
    side: SideLabel,
    state: StateLabel,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ConnectionLabels {
    side: SideLabel,
    end: EndLabel,
    #[prometheus(flatten)]
    port: PortLabel,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LostLabels {
    reason: &'static str,
}

const RINGBUF_FULL: LostLabels = LostLabels { reason: "ring_buffer_full" };
const SKIPPED: LostLabels = LostLabels { reason: "skipped_by_kernel" };

/// Histogram buckets, in seconds, for lifetimes and times in a state: from
/// a loopback handshake (tens of µs) to past TIME_WAIT. 60 and 61 bracket
/// TIME_WAIT's fixed minute (TCP_TIMEWAIT_LEN, plus the timer's slack), so
/// that full TIME_WAITs stand apart from those cut short.
const DURATION_BUCKETS: [f64; 11] = [1e-5, 1e-4, 1e-3, 0.01, 0.1, 1.0, 10.0, 30.0, 60.0, 61.0, 120.0];

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// Histograms by label set, each with [`DURATION_BUCKETS`].
type Durations<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric tcpstate exports. Shared between the tracing loop, which
/// feeds it, and the HTTP thread, which renders it.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    transitions: Family<TransitionLabels, Counter>,
    sockets: Family<SocketLabels, Gauge>,
    time_wait_alive: Gauge,
    lost: Family<LostLabels, Counter>,
    tw_lost: Family<LostLabels, Counter>,
    recovered: Counter,
    cgroups_unresolved: Counter,
    inferred: Counter,
    evicted: Counter,
    tw_forgotten: Counter,
    connections: Family<ConnectionLabels, Counter>,
    connection_duration: Durations<ConnectionLabels>,
    state_duration: Durations<SocketLabels>,
    /// `net.ipv4.tcp_max_tw_buckets`, when it can be read.
    tw_limit: Option<Gauge>,
    /// The ports that get a `port` label, sorted.
    ports: Vec<u16>,
    /// Held while the gauges move and while rendering, so that a scrape
    /// never sees a connection between two states.
    moving: Mutex<()>,
}

impl Metrics {
    /// The metrics, without a `port` label.
    pub fn new() -> Arc<Metrics> {
        Metrics::by_port(&[])
    }

    /// The metrics, the transitions and connections of `ports` (at most
    /// 1 + 2 x MAX_PORTS: SERVER_PORT, -L and -D) labelled with their port.
    pub fn by_port(ports: &[u16]) -> Arc<Metrics> {
        let mut ports = ports.to_vec();
        ports.sort_unstable();
        ports.dedup();
        // Without ports the one label set is the unlabelled one. With them
        // only the labelled ones are made in advance: a connection none of
        // whose ports was asked for is one the filters rarely let through
        // (a socket bound to a listed port that connects out).
        let port_labels: Vec<PortLabel> = match ports.len() {
            0 => vec![PortLabel(None)],
            _ => ports.iter().map(|&p| PortLabel(Some(p))).collect(),
        };
        let transitions = Family::<TransitionLabels, Counter>::default();
        let sockets = Family::<SocketLabels, Gauge>::default();
        let time_wait_alive = Gauge::default();
        let lost = Family::<LostLabels, Counter>::default();
        let tw_lost = Family::<LostLabels, Counter>::default();
        let (recovered, inferred, evicted, tw_forgotten, cgroups_unresolved) =
            (Counter::default(), Counter::default(), Counter::default(), Counter::default(), Counter::default());
        let connections = Family::<ConnectionLabels, Counter>::default();
        let connection_duration = Durations::<ConnectionLabels>::new_with_constructor(duration_histogram);
        let state_duration = Durations::<SocketLabels>::new_with_constructor(duration_histogram);
        // Every series that can count exists from the start, at 0, rather
        // than appearing with its first count: Prometheus's increase() and
        // rate() take a series' first sample as its start, so the counts
        // that created a series would be missed (5 refused connects read as
        // 1.13), and a rate is 0 before the first event, not missing.
        for side in [Side::Server, Side::Client].map(SideLabel) {
            for &port in &port_labels {
                for (old, new) in KERNEL_TRANSITIONS {
                    let _ = transitions.get_or_create(&TransitionLabels {
                        side,
                        old: StateLabel(old),
                        new: StateLabel(new),
                        port,
                    });
                }
                for end in EndCause::ALL.map(EndLabel) {
                    let labels = ConnectionLabels { side, end, port };
                    let _ = connections.get_or_create(&labels);
                    let _ = connection_duration.get_or_create(&labels);
                }
            }
            for state in connection_states() {
                let labels = SocketLabels { side, state: StateLabel(state) };
                let _ = state_duration.get_or_create(&labels);
                let _ = sockets.get_or_create(&labels);
            }
        }
        let _ =
            sockets.get_or_create(&SocketLabels { side: SideLabel(Side::Server), state: StateLabel(TcpState::LISTEN) });
        for reason in [RINGBUF_FULL, SKIPPED] {
            let _ = lost.get_or_create(&reason);
            let _ = tw_lost.get_or_create(&reason);
        }

        let tw_limit = read_tw_limit().map(|limit| {
            let gauge = Gauge::default();
            gauge.set(limit);
            gauge
        });

        // One scheme for every name: tcpstate_, then the noun counted
        // (transitions: what tcpstate reports; events: what the kernel side
        // saw or missed; connections; sockets; timewait sockets), then what
        // happened to them when that is more than being there (inferred,
        // lost, recovered, evicted, forgotten); counters end in _total (the
        // encoder adds it), durations in _seconds, a limit in _limit.
        let mut registry = Registry::with_prefix("tcpstate");
        registry.register(
            "transitions",
            "State transitions reported, by side, state left (old) and state entered (new); every pair the kernel \
             makes is there from the start",
            transitions.clone(),
        );
        registry.register(
            "transitions_inferred",
            "Transitions of tcpstate_transitions_total that no probe saw, deduced from what came next (printed \
             with inferred set)",
            inferred.clone(),
        );
        registry.register(
            "events_lost",
            "State changes the main program did not report: reason=ring_buffer_full dropped for want of room, \
             reason=skipped_by_kernel not run by the kernel (nested in another run); of the skipped, \
             tcpstate_events_recovered_total were reported by the backup program",
            lost.clone(),
        );
        registry.register(
            "timewait_events_lost",
            "TIME_WAIT probe events (a timewait socket's birth, timer or end) lost: reason=ring_buffer_full dropped \
             for want of room, reason=skipped_by_kernel not run by the kernel (for the timer kind, timers of every \
             kind are counted); a lost end is made good by the 10-minute timeout (tcpstate_timewait_sockets_forgotten_total)",
            tw_lost.clone(),
        );
        registry.register(
            "events_recovered",
            "State changes the kernel skipped the main program for that the backup program reported",
            recovered.clone(),
        );
        registry.register(
            "sockets",
            "Sockets traced, by side and the state last reported for each: connections, and listeners in LISTEN; \
             a connection is in TIME_WAIT from its hand-off to a timewait socket to that socket's end, and a \
             FIN_WAIT2 parked in a timewait socket stays FIN_WAIT2 (-p narrows it)",
            sockets.clone(),
        );
        registry.register(
            "timewait_sockets",
            "Timewait sockets (inet_timewait_sock) of traced connections alive now, TIME_WAIT and FIN_WAIT2 \
             parked by tcp_fin_timeout alike: what tcp_max_tw_buckets limits (-p does not narrow it; 0 with --raw)",
            time_wait_alive.clone(),
        );
        if let Some(limit) = &tw_limit {
            registry.register(
                "timewait_sockets_limit",
                "net.ipv4.tcp_max_tw_buckets of tcpstate's network namespace, read at each scrape: the most \
                 timewait sockets the kernel keeps in a namespace (past it, a connection closes without TIME_WAIT)",
                limit.clone(),
            );
        }
        registry.register(
            "timewait_sockets_forgotten",
            "Timewait sockets forgotten after 10 minutes without an event: their end was never seen",
            tw_forgotten.clone(),
        );
        registry.register(
            "cgroups_unresolved",
            "Lookups of a socket's cgroup id that found no path (the cgroup was removed, or is outside the cgroup2 \
             mount tcpstate sees): those records have cgroup_id but no cgroup or container",
            cgroups_unresolved.clone(),
        );
        registry.register(
            "connections_evicted",
            "Connections the connection table evicted when full: their later transitions lack owner and time",
            evicted.clone(),
        );
        registry.register("connections", "Connections that ended, by side and how they ended", connections.clone());
        registry.register(
            "connection_duration_seconds",
            "Connection lifetimes, from the first state seen to the end (after TIME_WAIT for the side that \
             had one), by side and how they ended",
            connection_duration.clone(),
        );
        registry.register(
            "state_duration_seconds",
            "Time connections spent in each state, by side (only stays whose start was seen)",
            state_duration.clone(),
        );
        registry.register(
            "build",
            "tcpstate's version, as a label of a series that is always 1",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        Arc::new(Metrics {
            registry,
            transitions,
            sockets,
            time_wait_alive,
            lost,
            tw_lost,
            recovered,
            cgroups_unresolved,
            inferred,
            evicted,
            tw_forgotten,
            connections,
            connection_duration,
            state_duration,
            tw_limit,
            ports,
            moving: Mutex::new(()),
        })
    }

    /// Counts one reported transition.
    pub fn count(&self, t: &Transition) {
        self.transitions
            .get_or_create(&TransitionLabels {
                side: SideLabel(t.side),
                old: StateLabel(t.old),
                new: StateLabel(t.new),
                port: self.port_of(t.side, &t.tuple),
            })
            .inc();
    }

    /// The `port` label of a connection of `side` between `tuple`'s ends.
    fn port_of(&self, side: Side, tuple: &Tuple) -> PortLabel {
        let server = match side {
            Side::Server => tuple.sport,
            Side::Client => tuple.dport,
        };
        PortLabel(self.ports.binary_search(&server).is_ok().then_some(server))
    }

    /// Counts one connection record: how it ended, how long it lived, how
    /// long it stayed in each state.
    pub fn count_connection(&self, r: &ConnRecord) {
        let side = SideLabel(r.side);
        let labels = ConnectionLabels { side, end: EndLabel(r.end), port: self.port_of(r.side, &r.tuple) };
        self.connections.get_or_create(&labels).inc();
        self.connection_duration.get_or_create(&labels).observe(seconds(r.duration_ns()));
        // An open connection's last stay was cut short by the end of
        // tracing: not a time in that state.
        let stays = if r.is_open() { r.states.split_last().map_or(&[][..], |(_, done)| done) } else { &r.states };
        for span in stays {
            if let Some(ns) = span.ns {
                let labels = SocketLabels { side, state: StateLabel(span.state) };
                self.state_duration.get_or_create(&labels).observe(seconds(ns));
            }
        }
    }

    /// Takes the table's census and counts and the kernel's loss counters,
    /// all absolute (a counter never goes down).
    pub fn update(&self, table: &ConnTable, lost: &Lost, cgroups_unresolved: u64) {
        let _moving = self.lock();
        for (side, state, n) in table.census().iter() {
            let gauge = self.sockets.get_or_create(&SocketLabels { side: SideLabel(side), state: StateLabel(state) });
            gauge.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        self.time_wait_alive.set(i64::try_from(table.time_wait_alive()).unwrap_or(i64::MAX));
        let stats = table.stats();
        set_counter(&self.inferred, stats.inferred);
        set_counter(&self.evicted, stats.evicted);
        set_counter(&self.tw_forgotten, stats.tw_forgotten);
        set_counter(&self.lost.get_or_create(&RINGBUF_FULL), lost.ringbuf_full);
        set_counter(&self.lost.get_or_create(&SKIPPED), lost.skipped);
        set_counter(&self.recovered, lost.recovered);
        set_counter(&self.cgroups_unresolved, cgroups_unresolved);
        set_counter(&self.tw_lost.get_or_create(&RINGBUF_FULL), lost.tw_ringbuf_full);
        set_counter(&self.tw_lost.get_or_create(&SKIPPED), lost.tw_skipped.iter().map(|(_, n)| n).sum());
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        if let (Some(gauge), Some(limit)) = (&self.tw_limit, read_tw_limit()) {
            gauge.set(limit);
        }
        let _moving = self.lock();
        let mut out = String::with_capacity(4096);
        prometheus_text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        // Nothing to keep consistent but the moment: a poisoned lock is fine.
        self.moving.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The metrics as an output of the run: transitions as they are printed, the
/// rest after each batch.
pub struct MetricsSink {
    metrics: Arc<Metrics>,
}

impl MetricsSink {
    pub fn new(metrics: Arc<Metrics>) -> MetricsSink {
        MetricsSink { metrics }
    }
}

impl Sink for MetricsSink {
    fn record(&mut self, record: &Record) -> Result<()> {
        match record {
            Record::Transition(t) => self.metrics.count(t),
            Record::Connection(c) => self.metrics.count_connection(c),
            // Raw timewait probe events (--raw) are not transitions.
            Record::Probe(_) => {}
        }
        Ok(())
    }

    fn batch_done(&mut self, status: &Status<'_>) -> Result<()> {
        self.metrics.update(status.table, status.lost, status.cgroups_unresolved);
        Ok(())
    }
}

/// The kernel's limit on timewait sockets (per network namespace): the
/// one a TIME_WAIT count is compared with. World-readable, so still read
/// after --user.
fn read_tw_limit() -> Option<i64> {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_max_tw_buckets").ok()?.trim().parse().ok()
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
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
    metrics: Arc<Metrics>,
}

impl MetricsServer {
    /// The address served (with the port the kernel chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The metrics served, for the sink that counts into them.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
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
    let listener = TcpListener::bind(addr).map_err(|e| {
        anyhow::anyhow!("{}: {} (give --metrics a free address of this host)", context(), plain_io_error(e))
    })?;
    let local = listener.local_addr().map_err(plain_io_error).with_context(context)?;
    let server =
        tiny_http::Server::from_listener(listener, None).map_err(|e| anyhow::anyhow!("{e}")).with_context(context)?;
    let server = Arc::new(server);
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let server = server.clone();
        let stop = stop.clone();
        let metrics = metrics.clone();
        thread::Builder::new()
            .name("metrics".into())
            .spawn(move || answer_requests(&server, &metrics, &stop))
            .context("starting the --metrics thread")?
    };
    Ok(MetricsServer { server, stop, thread: Some(thread), addr: local, metrics })
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
    use crate::conn::Config;
    use crate::output::tests::{open_connection, raw_probe, refused_connection, sample, sample_connection, with};

    /// The metric lines of the exposition, without comments.
    fn samples(m: &Metrics) -> Vec<String> {
        m.render().lines().filter(|l| !l.starts_with('#')).map(str::to_string).collect()
    }

    fn value(m: &Metrics, series: &str) -> Option<String> {
        samples(m).iter().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ').map(str::to_string))
    }

    #[test]
    fn transitions_are_counted_per_side_and_pair() {
        let m = Metrics::new();
        let mut sink = MetricsSink::new(m.clone());
        for _ in 0..3 {
            sink.record(&sample(7, 2)).unwrap();
            sink.record(&sample(2, 7)).unwrap();
        }
        sink.record(&with(sample(7, 2), |t| t.side = Side::Server)).unwrap();
        let series = "tcpstate_transitions_total{side=\"client\",old=\"CLOSE\",new=\"SYN_SENT\"}";
        assert_eq!(value(&m, series).as_deref(), Some("3"));
        let series = "tcpstate_transitions_total{side=\"client\",old=\"SYN_SENT\",new=\"CLOSE\"}";
        assert_eq!(value(&m, series).as_deref(), Some("3"));
        let series = "tcpstate_transitions_total{side=\"server\",old=\"CLOSE\",new=\"SYN_SENT\"}";
        assert_eq!(value(&m, series).as_deref(), Some("1"));
    }

    /// The series of `family` whose value is not 0, sorted.
    fn counted(m: &Metrics, family: &str) -> Vec<String> {
        let mut series: Vec<String> =
            samples(m).into_iter().filter(|l| l.starts_with(&format!("{family}{{")) && !l.ends_with(" 0")).collect();
        series.sort();
        series
    }

    #[test]
    fn raw_timewait_probe_events_are_not_transitions() {
        let m = Metrics::new();
        MetricsSink::new(m.clone()).record(&raw_probe()).unwrap();
        assert_eq!(counted(&m, "tcpstate_transitions_total"), Vec::<String>::new());
    }

    #[test]
    fn every_transition_the_kernel_makes_is_a_series_from_the_start() {
        let m = Metrics::new();
        let series: Vec<String> =
            samples(&m).into_iter().filter(|l| l.starts_with("tcpstate_transitions_total{")).collect();
        assert_eq!(series.len(), 2 * KERNEL_TRANSITIONS.len());
        assert!(series.iter().all(|l| l.ends_with("} 0")), "{series:?}");
        for line in [
            r#"tcpstate_transitions_total{side="client",old="SYN_SENT",new="CLOSE"} 0"#,
            r#"tcpstate_transitions_total{side="client",old="FIN_WAIT2",new="TIME_WAIT"} 0"#,
            r#"tcpstate_transitions_total{side="server",old="CLOSING",new="TIME_WAIT"} 0"#,
            r#"tcpstate_transitions_total{side="client",old="TIME_WAIT",new="CLOSE"} 0"#,
            r#"tcpstate_transitions_total{side="client",old="FIN_WAIT1",new="FIN_WAIT1"} 0"#,
        ] {
            assert!(series.iter().any(|l| l == line), "{line} missing from {series:?}");
        }
        // A pair the kernel never makes appears when it is first counted.
        MetricsSink::new(m.clone()).record(&sample(1, 42)).unwrap();
        assert_eq!(samples(&m).iter().filter(|l| l.starts_with("tcpstate_transitions_total{")).count(), 59);
    }

    #[test]
    fn every_state_a_socket_can_be_in_is_a_gauge_from_the_start() {
        let m = Metrics::new();
        let gauges: Vec<String> = samples(&m).into_iter().filter(|l| l.starts_with("tcpstate_sockets{")).collect();
        assert_eq!(gauges.len(), 2 * connection_states().count() + 1, "{gauges:?}");
        assert!(gauges.iter().all(|l| l.ends_with("} 0")), "{gauges:?}");
        for line in [
            r#"tcpstate_sockets{side="server",state="LISTEN"} 0"#,
            r#"tcpstate_sockets{side="client",state="SYN_SENT"} 0"#,
            r#"tcpstate_sockets{side="server",state="TIME_WAIT"} 0"#,
            r#"tcpstate_sockets{side="client",state="CLOSE_WAIT"} 0"#,
        ] {
            assert!(gauges.iter().any(|l| l == line), "{line} missing from {gauges:?}");
        }
    }

    #[test]
    fn timewait_probe_losses_are_counted_apart() {
        let m = Metrics::new();
        let lost = |v: &str| value(&m, &format!("tcpstate_timewait_events_lost_total{{reason=\"{v}\"}}"));
        assert_eq!((lost("ring_buffer_full").as_deref(), lost("skipped_by_kernel").as_deref()), (Some("0"), Some("0")));
        let tw_skipped = vec![("tw_timer_start".to_string(), 2), ("tw_timer_expire".to_string(), 3)];
        m.update(&ConnTable::new(Config::default()), &Lost { tw_ringbuf_full: 4, tw_skipped, ..Lost::default() }, 3);
        assert_eq!(value(&m, "tcpstate_cgroups_unresolved_total").as_deref(), Some("3"));
        assert_eq!((lost("ring_buffer_full").as_deref(), lost("skipped_by_kernel").as_deref()), (Some("4"), Some("5")));
        assert_eq!(value(&m, "tcpstate_events_lost_total{reason=\"ring_buffer_full\"}").as_deref(), Some("0"));
    }

    #[test]
    fn unknown_states_are_labelled_as_printed() {
        let m = Metrics::new();
        MetricsSink::new(m.clone()).record(&sample(1, 42)).unwrap();
        let series = "tcpstate_transitions_total{side=\"client\",old=\"ESTABLISHED\",new=\"UNKNOWN(42)\"}";
        assert_eq!(value(&m, series).as_deref(), Some("1"));
    }

    #[test]
    fn counters_take_absolute_values_and_never_go_down() {
        let m = Metrics::new();
        let table = ConnTable::new(Config::default());
        let lost = |v: &str| value(&m, &format!("tcpstate_events_lost_total{{reason=\"{v}\"}}"));
        assert_eq!((lost("ring_buffer_full").as_deref(), lost("skipped_by_kernel").as_deref()), (Some("0"), Some("0")));
        let at = |ringbuf_full, skipped, recovered| Lost { ringbuf_full, skipped, recovered, ..Lost::default() };
        m.update(&table, &at(7, 5, 4), 0);
        m.update(&table, &at(7, 5, 4), 0);
        assert_eq!(lost("ring_buffer_full").as_deref(), Some("7"));
        assert_eq!(lost("skipped_by_kernel").as_deref(), Some("5"));
        assert_eq!(value(&m, "tcpstate_events_recovered_total").as_deref(), Some("4"));
        m.update(&table, &at(9, 1, 0), 0);
        assert_eq!(lost("ring_buffer_full").as_deref(), Some("9"));
        assert_eq!(lost("skipped_by_kernel").as_deref(), Some("5"));
        assert_eq!(value(&m, "tcpstate_timewait_sockets").as_deref(), Some("0"));
    }

    #[test]
    fn exposition_has_help_and_type_lines() {
        let m = Metrics::new();
        MetricsSink::new(m.clone()).record(&sample(7, 2)).unwrap();
        let text = m.render();
        for line in [
            "# TYPE tcpstate_transitions_total counter",
            "# TYPE tcpstate_sockets gauge",
            "# TYPE tcpstate_timewait_events_lost_total counter",
            "# TYPE tcpstate_timewait_sockets gauge",
            "# TYPE tcpstate_events_lost_total counter",
            "# TYPE tcpstate_events_recovered_total counter",
            "# TYPE tcpstate_transitions_inferred_total counter",
            "# TYPE tcpstate_connections_evicted_total counter",
            "# TYPE tcpstate_timewait_sockets_forgotten_total counter",
            "# TYPE tcpstate_connections_total counter",
            "# TYPE tcpstate_timewait_sockets_limit gauge",
            "# HELP tcpstate_events_recovered_total State changes the kernel skipped the main program for that the \
             backup program reported.",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
        assert!(!text.contains("# EOF"), "OpenMetrics trailer in the Prometheus format");
    }

    #[test]
    fn by_port_the_server_port_is_a_label_of_transitions_and_connections() {
        // The sample is a client of port 80 from port 51234.
        let m = Metrics::by_port(&[443, 80, 443]);
        let mut sink = MetricsSink::new(m.clone());
        sink.record(&sample(7, 2)).unwrap();
        sink.record(&with(sample(10, 3), |t| (t.side, t.tuple.sport, t.tuple.dport) = (Side::Server, 443, 9))).unwrap();
        sink.record(&with(sample(10, 3), |t| (t.side, t.tuple.dport) = (Side::Server, 80))).unwrap();
        sink.record(&connection(refused_connection())).unwrap();
        assert_eq!(
            counted(&m, "tcpstate_transitions_total"),
            [
                r#"tcpstate_transitions_total{side="client",old="CLOSE",new="SYN_SENT",port="80"} 1"#,
                r#"tcpstate_transitions_total{side="server",old="LISTEN",new="SYN_RECV",port="443"} 1"#,
                // A server socket on port 51234: no port asked for.
                r#"tcpstate_transitions_total{side="server",old="LISTEN",new="SYN_RECV"} 1"#,
            ]
        );
        assert_eq!(
            counted(&m, "tcpstate_connections_total"),
            [r#"tcpstate_connections_total{side="client",end="refused",port="80"} 1"#]
        );
        let count = r#"tcpstate_connection_duration_seconds_count{side="client",end="refused",port="80"}"#;
        assert_eq!(value(&m, count).as_deref(), Some("1"));
        // Every series for each port from the start, and no other; the
        // census and the times in a state have no port.
        let all = |family: &str| samples(&m).into_iter().filter(|l| l.starts_with(family)).count();
        assert_eq!(all("tcpstate_transitions_total{"), 2 * 2 * KERNEL_TRANSITIONS.len() + 1);
        assert_eq!(all("tcpstate_connections_total{"), 2 * 2 * EndCause::ALL.len());
        assert_eq!(all("tcpstate_connection_duration_seconds_count{"), 2 * 2 * EndCause::ALL.len());
        assert_eq!(all("tcpstate_state_duration_seconds_count{"), 2 * 9);
        assert!(!m.render().contains(r#"state="SYN_SENT",port"#));
    }

    #[test]
    fn the_build_and_the_timewait_limit_are_there() {
        let m = Metrics::new();
        let text = m.render();
        let version = format!(r#"tcpstate_build_info{{version="{}"}} 1"#, env!("CARGO_PKG_VERSION"));
        assert!(text.lines().any(|l| l == version), "{text}");
        assert!(text.lines().any(|l| l == "# TYPE tcpstate_build_info gauge"), "{text}");
        let limit = read_tw_limit().expect("this kernel has net.ipv4.tcp_max_tw_buckets");
        assert_eq!(value(&m, "tcpstate_timewait_sockets_limit"), Some(limit.to_string()));
    }

    #[test]
    fn metrics_are_shared_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Metrics>();
        send_sync::<MetricsServer>();
    }

    fn connection(r: ConnRecord) -> Record {
        Record::Connection(Box::new(r))
    }

    #[test]
    fn every_way_to_end_is_a_series_from_the_start() {
        let m = Metrics::new();
        let series: Vec<String> =
            samples(&m).into_iter().filter(|l| l.starts_with("tcpstate_connections_total{")).collect();
        assert_eq!(series.len(), 2 * EndCause::ALL.len());
        assert!(series.iter().all(|l| l.ends_with("} 0")), "{series:?}");
        let refused = "tcpstate_connections_total{side=\"server\",end=\"refused\"}";
        assert_eq!(value(&m, refused).as_deref(), Some("0"));
        // The histograms too, one for each way to end and each state a
        // connection can stay in, all empty.
        let counts = |family: &str| {
            let series: Vec<String> = samples(&m).into_iter().filter(|l| l.starts_with(family)).collect();
            assert!(series.iter().all(|l| l.ends_with("} 0")), "{series:?}");
            series.len()
        };
        assert_eq!(counts("tcpstate_connection_duration_seconds_count{"), 2 * EndCause::ALL.len());
        assert_eq!(counts("tcpstate_state_duration_seconds_count{"), 2 * 9);
        let time_wait = r#"tcpstate_state_duration_seconds_bucket{side="server",state="TIME_WAIT",le="+Inf"}"#;
        assert_eq!(value(&m, time_wait).as_deref(), Some("0"));
        assert_eq!(value(&m, r#"tcpstate_state_duration_seconds_count{side="server",state="LISTEN"}"#), None);
    }

    #[test]
    fn connection_records_are_counted_and_timed() {
        let m = Metrics::new();
        let mut sink = MetricsSink::new(m.clone());
        for r in [sample_connection(), refused_connection(), refused_connection(), open_connection()] {
            sink.record(&connection(r)).unwrap();
        }
        let text = m.render();
        for line in [
            "# TYPE tcpstate_connections_total counter",
            r#"tcpstate_connections_total{side="client",end="time_wait_expired"} 1"#,
            r#"tcpstate_connections_total{side="client",end="refused"} 2"#,
            r#"tcpstate_connections_total{side="server",end="open"} 1"#,
            r#"tcpstate_connections_total{side="server",end="refused"} 0"#,
            "# TYPE tcpstate_connection_duration_seconds histogram",
            r#"tcpstate_connection_duration_seconds_bucket{side="client",end="refused",le="1e-05"} 0"#,
            r#"tcpstate_connection_duration_seconds_bucket{side="client",end="refused",le="0.0001"} 2"#,
            r#"tcpstate_connection_duration_seconds_sum{side="client",end="refused"} 0.000102468"#,
            r#"tcpstate_connection_duration_seconds_count{side="client",end="refused"} 2"#,
            r#"tcpstate_connection_duration_seconds_bucket{side="client",end="time_wait_expired",le="60"} 0"#,
            r#"tcpstate_connection_duration_seconds_bucket{side="client",end="time_wait_expired",le="61"} 1"#,
            "# TYPE tcpstate_state_duration_seconds histogram",
            r#"tcpstate_state_duration_seconds_count{side="client",state="SYN_SENT"} 3"#,
            r#"tcpstate_state_duration_seconds_bucket{side="client",state="ESTABLISHED",le="0.01"} 1"#,
            r#"tcpstate_state_duration_seconds_bucket{side="client",state="TIME_WAIT",le="60"} 0"#,
            r#"tcpstate_state_duration_seconds_bucket{side="client",state="TIME_WAIT",le="61"} 1"#,
            r#"tcpstate_state_duration_seconds_bucket{side="client",state="TIME_WAIT",le="+Inf"} 1"#,
            r#"tcpstate_state_duration_seconds_sum{side="client",state="TIME_WAIT"} 60.000123456"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
        // The open connection's one stay began before tracing: no time.
        assert_eq!(
            counted(&m, "tcpstate_state_duration_seconds_count"),
            [
                r#"tcpstate_state_duration_seconds_count{side="client",state="ESTABLISHED"} 1"#,
                r#"tcpstate_state_duration_seconds_count{side="client",state="FIN_WAIT1"} 1"#,
                r#"tcpstate_state_duration_seconds_count{side="client",state="FIN_WAIT2"} 1"#,
                r#"tcpstate_state_duration_seconds_count{side="client",state="SYN_SENT"} 3"#,
                r#"tcpstate_state_duration_seconds_count{side="client",state="TIME_WAIT"} 1"#,
            ]
        );
    }

    #[test]
    fn an_open_connections_last_stay_is_not_a_time_in_state() {
        let m = Metrics::new();
        let mut r = sample_connection();
        r.states.truncate(2);
        r.end = EndCause::Open;
        MetricsSink::new(m.clone()).record(&connection(r)).unwrap();
        let count = |state: &str| {
            value(&m, &format!("tcpstate_state_duration_seconds_count{{side=\"client\",state=\"{state}\"}}"))
        };
        assert_eq!((count("SYN_SENT").as_deref(), count("ESTABLISHED").as_deref()), (Some("1"), Some("0")));
        let open = r#"tcpstate_connection_duration_seconds_count{side="client",end="open"}"#;
        assert_eq!(value(&m, open).as_deref(), Some("1"));
    }
}
