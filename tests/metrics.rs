//! `--metrics`: the HTTP endpoint scraped with the real curl, as Prometheus
//! would, and checked with Prometheus's own promtool. These need no
//! privilege: the connection table and the metrics are fed probe events by
//! hand, as the run loop feeds them. The last test, root-only, has Debian's
//! Prometheus scrape the real tracer while the test causes known traffic.
#![cfg(feature = "metrics")]

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tcpstate::conn::{Config, ConnRecord, ConnTable, EndCause, Record, SideRule, Span};
use tcpstate::model::{Side, TcpState, Tuple};
use tcpstate::output::metrics::{serve, Metrics, MetricsSink};
use tcpstate::output::{Sink, Status};
use tcpstate::trace::{Lost, Probe, ProbeEvent, TwEvent};

/// The connection table and the metrics, fed as the run loop feeds them.
struct Feed {
    table: ConnTable,
    sink: MetricsSink,
    lost: Lost,
}

impl Feed {
    fn new(metrics: &Arc<Metrics>) -> Feed {
        let table = ConnTable::new(Config { server_configured: true, ..Config::default() });
        Feed { table, sink: MetricsSink::new(metrics.clone()), lost: Lost::default() }
    }

    fn push(&mut self, ev: ProbeEvent) {
        let mut out = std::collections::VecDeque::new();
        self.table.push(ev, &mut out);
        for record in &out {
            self.sink.record(record).unwrap();
        }
        self.sink.batch_done(&Status { table: &self.table, lost: &self.lost, cgroups_unresolved: 0 }).unwrap();
    }
}

/// A state change of a socket on the server's port 8080.
fn ev(side: Side, skaddr: u64, old: &str, new: &str) -> ProbeEvent {
    let old = TcpState::from_name(old).unwrap();
    let new = TcpState::from_name(new).unwrap();
    let (sport, dport) = match side {
        Side::Client => (if old == TcpState::CLOSE { 0 } else { 51514 }, 8080),
        Side::Server => (8080, if old == TcpState::CLOSE { 0 } else { 51514 }),
    };
    ProbeEvent {
        ts_ns: 1_000,
        probe: Probe::SetState { old, new },
        cookie: skaddr,
        skaddr,
        tuple: Tuple { saddr: "127.0.0.1".parse().unwrap(), sport, daddr: "127.0.0.1".parse().unwrap(), dport },
        netns: 4026531840,
        cgroup_id: None,
        server_rule: Some(side),
        actor: None,
        tw_armed_ns: None,
        counters: None,
        netns_dying: false,
    }
}

/// An event of the client's timewait socket, which carries its cookie.
fn tw(what: TwEvent) -> ProbeEvent {
    ProbeEvent {
        probe: Probe::Timewait { what, substate: TcpState::TIME_WAIT },
        skaddr: TIMEWAIT,
        ..ev(Side::Client, CLIENT, "FIN_WAIT2", "CLOSE")
    }
}

/// curl's status line, headers and body for `path`.
struct Scrape {
    code: String,
    content_type: String,
    body: String,
}

fn curl(addr: SocketAddr, path: &str) -> Scrape {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "-D", "/dev/stderr", &format!("http://{addr}{path}")])
        .output()
        .expect("running curl (install it: make deps)");
    assert!(out.status.success(), "curl {path}: {:?}", out.status);
    let headers = String::from_utf8(out.stderr).unwrap();
    let code = headers.split_whitespace().nth(1).unwrap_or_default().to_string();
    let content_type = headers
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type:").map(|v| v.trim().to_string()))
        .unwrap_or_default();
    Scrape { code, content_type, body: String::from_utf8(out.stdout).unwrap() }
}

fn scrape(addr: SocketAddr) -> String {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", &format!("http://{addr}/metrics")])
        .output()
        .expect("running curl (install it: make deps)");
    assert!(out.status.success(), "curl: {:?}", out.status);
    String::from_utf8(out.stdout).unwrap()
}

fn assert_lines(body: &str, want: &[&str]) {
    for line in want {
        assert!(body.lines().any(|l| l == *line), "missing line {line:?} in\n{body}");
    }
}

/// A listener, and a connection to it that the client closes first, up
/// to the client's TIME_WAIT.
fn a_listener_and_a_connection() -> [ProbeEvent; 12] {
    [
        ev(Side::Server, LISTENER, "CLOSE", "LISTEN"),
        ev(Side::Client, CLIENT, "CLOSE", "SYN_SENT"),
        ev(Side::Client, CLIENT, "SYN_SENT", "ESTABLISHED"),
        ev(Side::Server, SERVER, "LISTEN", "SYN_RECV"),
        ev(Side::Server, SERVER, "SYN_RECV", "ESTABLISHED"),
        ev(Side::Client, CLIENT, "ESTABLISHED", "FIN_WAIT1"),
        ev(Side::Server, SERVER, "ESTABLISHED", "CLOSE_WAIT"),
        ev(Side::Server, SERVER, "CLOSE_WAIT", "LAST_ACK"),
        ev(Side::Client, CLIENT, "FIN_WAIT1", "FIN_WAIT2"),
        tw(TwEvent::Born),
        ev(Side::Client, CLIENT, "FIN_WAIT2", "CLOSE"),
        ev(Side::Server, SERVER, "LAST_ACK", "CLOSE"),
    ]
}

const CLIENT: u64 = 0xffff_8880_1000_0000;
const SERVER: u64 = 0xffff_8880_2000_0000;
const LISTENER: u64 = 0xffff_8880_3000_0000;
const TIMEWAIT: u64 = 0xffff_8880_4000_0000;

#[test]
fn curl_scrapes_the_transitions_and_gauges() {
    let metrics = Metrics::new();
    let server = serve(metrics.clone(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = server.local_addr();
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert_ne!(addr.port(), 0);

    let mut feed = Feed::new(&metrics);
    feed.lost = Lost { ringbuf_full: 3, tw_ringbuf_full: 0, skipped: 5, recovered: 4, tw_skipped: Vec::new() };
    for e in a_listener_and_a_connection() {
        feed.push(e);
    }
    // Two server sockets seen mid-life whose CLOSE_WAIT -> LAST_ACK was lost:
    // inferred.
    for sk in [SERVER + 1, SERVER + 2] {
        feed.push(ev(Side::Server, sk, "ESTABLISHED", "CLOSE_WAIT"));
        feed.push(ev(Side::Server, sk, "LAST_ACK", "CLOSE"));
    }

    let got = curl(addr, "/metrics");
    assert_eq!(got.code, "200");
    assert_eq!(got.content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert_lines(
        &got.body,
        &[
            "# TYPE tcpstate_transitions_total counter",
            r#"tcpstate_transitions_total{side="client",old="CLOSE",new="SYN_SENT"} 1"#,
            r#"tcpstate_transitions_total{side="client",old="FIN_WAIT2",new="TIME_WAIT"} 1"#,
            r#"tcpstate_transitions_total{side="server",old="LISTEN",new="SYN_RECV"} 1"#,
            r#"tcpstate_transitions_total{side="server",old="LAST_ACK",new="CLOSE"} 3"#,
            "# TYPE tcpstate_sockets gauge",
            r#"tcpstate_sockets{side="server",state="LISTEN"} 1"#,
            r#"tcpstate_sockets{side="client",state="TIME_WAIT"} 1"#,
            r#"tcpstate_sockets{side="client",state="FIN_WAIT2"} 0"#,
            r#"tcpstate_sockets{side="server",state="LAST_ACK"} 0"#,
            "# TYPE tcpstate_connections_evicted_total counter",
            "tcpstate_connections_evicted_total 0",
            "# TYPE tcpstate_timewait_sockets_forgotten_total counter",
            "tcpstate_timewait_sockets_forgotten_total 0",
            "# TYPE tcpstate_timewait_sockets gauge",
            "tcpstate_timewait_sockets 1",
            "# TYPE tcpstate_events_lost_total counter",
            r#"tcpstate_events_lost_total{reason="ring_buffer_full"} 3"#,
            r#"tcpstate_events_lost_total{reason="skipped_by_kernel"} 5"#,
            "# TYPE tcpstate_events_recovered_total counter",
            "tcpstate_events_recovered_total 4",
            "# TYPE tcpstate_transitions_inferred_total counter",
            "tcpstate_transitions_inferred_total 2",
        ],
    );
    let counted = |prefix: &str| got.body.lines().filter(|l| l.starts_with(prefix) && !l.ends_with(" 0")).count();
    assert_eq!(counted("tcpstate_transitions_total{"), 11, "{}", got.body);

    // Live: the timewait socket's death shows at the next scrape.
    feed.push(tw(TwEvent::Freed));
    let body = scrape(addr);
    assert_lines(
        &body,
        &[
            r#"tcpstate_transitions_total{side="client",old="TIME_WAIT",new="CLOSE"} 1"#,
            r#"tcpstate_sockets{side="client",state="TIME_WAIT"} 0"#,
            r#"tcpstate_sockets{side="server",state="LISTEN"} 1"#,
            "tcpstate_timewait_sockets 0",
        ],
    );

    // `/` answers the same; anything else is not found.
    let root = curl(addr, "/");
    assert_eq!(root.code, "200");
    assert!(root.body.contains("# TYPE tcpstate_transitions_total counter"));
    assert_eq!(curl(addr, "/metrics?x=1").code, "200");
    let missing = curl(addr, "/favicon.ico");
    assert_eq!(missing.code, "404");
    assert!(!missing.body.contains("tcpstate_"));
}

/// A client connection of `states` (ns each) that ended by `end`.
fn record(end: EndCause, states: &[(&str, u64)]) -> Record {
    let states: Vec<Span> = states
        .iter()
        .map(|&(name, ns)| Span { state: TcpState::from_name(name).unwrap(), ns: Some(ns), inferred: false })
        .collect();
    let ProbeEvent { tuple, netns, .. } = ev(Side::Client, CLIENT, "SYN_SENT", "ESTABLISHED");
    Record::Connection(Box::new(ConnRecord {
        conn_id: CLIENT,
        start_ns: 1_000,
        end_ns: 1_000 + states.iter().filter_map(|s| s.ns).sum::<u64>(),
        side: Side::Client,
        side_rule: SideRule::Server,
        tuple,
        netns,
        cgroup_id: None,
        cgroup: None,
        owner: None,
        states,
        counters: None,
        end,
    }))
}

#[test]
fn curl_scrapes_the_connection_records() {
    let metrics = Metrics::new();
    let server = serve(metrics.clone(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = server.local_addr();
    // Every way to end is there before the first connection does.
    assert_lines(
        &scrape(addr),
        &[
            "# TYPE tcpstate_connections_total counter",
            r#"tcpstate_connections_total{side="client",end="refused"} 0"#,
            r#"tcpstate_connections_total{side="server",end="time_wait_expired"} 0"#,
        ],
    );

    let mut sink = MetricsSink::new(metrics.clone());
    sink.record(&record(EndCause::Refused, &[("SYN_SENT", 80_000)])).unwrap();
    let time_wait =
        [("SYN_SENT", 50_000), ("ESTABLISHED", 2_000_000), ("FIN_WAIT1", 100_000), ("TIME_WAIT", 60_004_000_000)];
    sink.record(&record(EndCause::TimeWaitExpired, &time_wait)).unwrap();
    assert_lines(
        &scrape(addr),
        &[
            r#"tcpstate_connections_total{side="client",end="refused"} 1"#,
            r#"tcpstate_connections_total{side="client",end="time_wait_expired"} 1"#,
            "# TYPE tcpstate_connection_duration_seconds histogram",
            r#"tcpstate_connection_duration_seconds_bucket{side="client",end="refused",le="0.0001"} 1"#,
            r#"tcpstate_connection_duration_seconds_count{side="client",end="time_wait_expired"} 1"#,
            "# TYPE tcpstate_state_duration_seconds histogram",
            r#"tcpstate_state_duration_seconds_count{side="client",state="SYN_SENT"} 2"#,
            r#"tcpstate_state_duration_seconds_bucket{side="client",state="TIME_WAIT",le="60"} 0"#,
            r#"tcpstate_state_duration_seconds_bucket{side="client",state="TIME_WAIT",le="61"} 1"#,
        ],
    );
}

#[test]
fn a_taken_address_is_one_clear_error() {
    let metrics = Metrics::new();
    let first = serve(metrics.clone(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = first.local_addr();
    let err = serve(metrics, addr).unwrap_err();
    assert_eq!(format!("{err:#}"), format!("cannot listen on {addr} for --metrics: Address already in use (give --metrics a free address of this host)"));
    // The first server is unharmed.
    assert!(scrape(addr).contains("tcpstate_timewait_sockets 0"));
}

#[test]
fn dropping_the_server_stops_it_promptly() {
    let metrics = Metrics::new();
    let server = serve(metrics.clone(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = server.local_addr();
    assert!(scrape(addr).contains("# TYPE tcpstate_timewait_sockets gauge"));

    let start = Instant::now();
    drop(server);
    assert!(start.elapsed() < Duration::from_secs(2), "drop took {:?}", start.elapsed());

    // The listener goes with it: curl's "couldn't connect" (7), soon.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "--max-time", "2", &format!("http://{addr}/metrics")])
            .status()
            .unwrap();
        if status.code() == Some(7) {
            break;
        }
        assert!(Instant::now() < deadline, "still answering after drop: curl {status:?}");
        thread::sleep(Duration::from_millis(50));
    }
    // And the address can be served again.
    let again = serve(Arc::clone(&metrics), addr).unwrap();
    assert!(scrape(again.local_addr()).contains("tcpstate_timewait_sockets 0"));
}

#[test]
fn scrapes_from_many_threads_while_events_arrive() {
    let metrics = Metrics::new();
    let server = serve(metrics.clone(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = server.local_addr();
    let feeder = {
        let mut feed = Feed::new(&metrics);
        thread::spawn(move || {
            for i in 0..2_000u64 {
                feed.push(ev(Side::Client, CLIENT + i, "CLOSE", "SYN_SENT"));
                feed.push(ev(Side::Client, CLIENT + i, "SYN_SENT", "CLOSE"));
            }
        })
    };
    let scrapers: Vec<_> = (0..4).map(|_| thread::spawn(move || scrape(addr))).collect();
    for s in scrapers {
        assert!(s.join().unwrap().contains("# TYPE tcpstate_transitions_inferred_total counter"));
    }
    feeder.join().unwrap();
    assert_lines(
        &scrape(addr),
        &[
            r#"tcpstate_transitions_total{side="client",old="CLOSE",new="SYN_SENT"} 2000"#,
            r#"tcpstate_transitions_total{side="client",old="SYN_SENT",new="CLOSE"} 2000"#,
            r#"tcpstate_sockets{side="client",state="SYN_SENT"} 0"#,
        ],
    );
}

/// What Prometheus's own linter, `promtool check metrics`, says of an
/// exposition: its exit status and everything it printed.
fn promtool_check(body: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running promtool (install it: make deps)");
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn promtool_finds_nothing_to_lint() {
    for metrics in [Metrics::new(), Metrics::by_port(&[8080])] {
        let server = serve(metrics.clone(), "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = server.local_addr();
        // Empty, then with every family holding counts.
        let mut bodies = vec![scrape(addr)];
        let mut feed = Feed::new(&metrics);
        feed.lost = Lost { ringbuf_full: 1, tw_ringbuf_full: 0, skipped: 2, recovered: 2, tw_skipped: Vec::new() };
        for e in a_listener_and_a_connection() {
            feed.push(e);
        }
        feed.sink.record(&record(EndCause::Refused, &[("SYN_SENT", 80_000)])).unwrap();
        bodies.push(scrape(addr));
        assert!(bodies[1].contains(r#"tcpstate_sockets{side="server",state="LISTEN"} 1"#), "{}", bodies[1]);
        for body in bodies {
            let (clean, said) = promtool_check(&body);
            assert!(clean && said.is_empty(), "promtool check metrics: {said}\n{body}");
        }
    }
}

/// The shipped rules: `promtool check rules` (syntax, lint) and `promtool
/// test rules` (their unit tests, next to them) pass, and every tcpstate
/// metric they read is one tcpstate serves.
#[test]
fn the_shipped_rules_pass_promtool_and_read_served_metrics() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus");
    for args in [["check", "rules", "tcpstate.rules.yml"], ["test", "rules", "tcpstate.rules.test.yml"]] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("running promtool (install it: make deps)");
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && said.contains("SUCCESS"), "promtool {}: {said}", args.join(" "));
    }
    let rules = std::fs::read_to_string(dir.join("tcpstate.rules.yml")).unwrap();
    let served = Metrics::new().render();
    let mut read = 0;
    for (at, _) in rules.match_indices("(tcpstate_").chain(rules.match_indices(" tcpstate_")) {
        let name: String = rules[at + 1..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        assert!(served.contains(&format!("# TYPE {name} ")), "the rules read {name}, which tcpstate does not serve");
        read += 1;
    }
    assert!(read >= 5, "{read} metrics read by the rules");
}

// Debian's Prometheus scraping the real tracer.

/// Debian's `prometheus`, with its own configuration and storage in a
/// temporary directory, scraping `target` every second and evaluating the
/// shipped rules; stopped and its directory removed on drop.
struct Prometheus {
    child: std::process::Child,
    dir: std::path::PathBuf,
    addr: SocketAddr,
}

impl Prometheus {
    fn start(target: SocketAddr) -> Prometheus {
        let dir = std::env::temp_dir().join(format!("tcpstate-prometheus-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/tcpstate.rules.yml");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: tcpstate\n    static_configs:\n      - targets: ['{target}']\n",
            rules.display()
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", common::free_port()).parse().unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("running prometheus (install it: make deps)");
        let mut prometheus = Prometheus { child, dir, addr };
        prometheus.wait("to be ready", Duration::from_secs(30), |p| p.ready());
        prometheus
    }

    fn ready(&mut self) -> bool {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("prometheus exited ({status}): {}", self.log());
        }
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2"])
            .arg(format!("http://{}/-/ready", self.addr))
            .output()
            .expect("running curl (install it: make deps)");
        out.stdout == b"200"
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// What Prometheus says of its scrape targets (health, last error), or
    /// why it could not be asked.
    fn targets(&self) -> String {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5", &format!("http://{}/api/v1/targets", self.addr)])
            .output()
            .expect("running curl (install it: make deps)");
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    }

    /// Polls `ready` until it holds, for at most `limit`.
    fn wait(&mut self, what: &str, limit: Duration, mut ready: impl FnMut(&mut Prometheus) -> bool) {
        let start = Instant::now();
        while !ready(self) {
            assert!(
                start.elapsed() < limit,
                "timed out waiting for prometheus {what}; its targets: {}\nits log:\n{}",
                self.targets(),
                self.log()
            );
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// `GET /api/v1/query` for `query` at `time` (the server's now when
    /// `None`): the result's samples.
    fn query(&self, query: &str, time: Option<&str>) -> Vec<Sample> {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "10", "-G", "--data-urlencode"]).arg(format!("query={query}"));
        if let Some(time) = time {
            cmd.args(["--data-urlencode", &format!("time={time}")]);
        }
        let out = cmd.arg(format!("http://{}/api/v1/query", self.addr)).output().unwrap();
        let answer: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{query}: {e}: {}", String::from_utf8_lossy(&out.stdout)));
        assert_eq!(answer["status"], "success", "{query}: {answer}");
        let result = &answer["data"]["result"];
        let samples = result.as_array().unwrap_or_else(|| panic!("{query}: not a vector: {answer}"));
        samples
            .iter()
            .map(|s| Sample {
                labels: s["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().into()))
                    .collect(),
                value: s["value"][1].as_str().unwrap().to_string(),
            })
            .collect()
    }

    /// The one sample `query` yields at `time`.
    fn one(&self, query: &str, time: Option<&str>) -> String {
        let samples = self.query(query, time);
        assert_eq!(samples.len(), 1, "{query} at {time:?}: {samples:?}");
        samples[0].value.clone()
    }

    /// When the latest scrape of tcpstate was, as Prometheus stamped it
    /// (seconds, to the millisecond, as the API writes them).
    fn last_scrape(&self) -> String {
        self.one("timestamp(tcpstate_build_info)", None)
    }
}

impl Drop for Prometheus {
    /// SIGTERM, and SIGKILL should it not be gone within 10 s.
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[derive(Debug)]
struct Sample {
    labels: std::collections::BTreeMap<String, String>,
    value: String,
}

impl Sample {
    fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// The samples of a family by `keys` labels joined with ':' (e.g.
/// "client:CLOSE:SYN_SENT"), each value as a number; every one labelled
/// with `port`.
fn by_labels(samples: &[Sample], keys: &[&str], port: u16) -> std::collections::BTreeMap<String, f64> {
    samples
        .iter()
        .map(|s| {
            assert_eq!(s.label("port"), port.to_string(), "{s:?}");
            let key: Vec<&str> = keys.iter().map(|k| s.label(k)).collect();
            (key.join(":"), s.value.parse().unwrap())
        })
        .collect()
}

/// `want` with every other key of `all` at 0.
fn with_zeros(
    all: &std::collections::BTreeMap<String, f64>,
    want: &[(&str, u64)],
) -> std::collections::BTreeMap<String, f64> {
    let mut full: std::collections::BTreeMap<String, f64> = all.keys().map(|k| (k.clone(), 0.0)).collect();
    for (k, n) in want {
        assert!(full.contains_key(*k), "no series {k} in {all:?}");
        full.insert(k.to_string(), *n as f64);
    }
    full
}

/// A tracer on one port, scraped by Prometheus every second: 5 connects
/// refused, then nginx on that port and N curl requests to it. Every count
/// Prometheus holds is exactly what was caused, read two ways that involve
/// no extrapolation: the counters' values after the traffic less their
/// values before it (every series is there at 0 from the first scrape), and
/// `increase()` over a window holding the whole run, evaluated at the last
/// scrape (a counter whose first sample is 0 is not extrapolated before it,
/// nor after a window that ends on its last sample).
#[test]
fn prometheus_holds_exactly_the_transitions_caused() {
    if !common::require_root() {
        return;
    }
    const REFUSED: u64 = 5;
    const N: u64 = 8;
    let port = common::free_port();
    let metrics_addr: SocketAddr = format!("127.0.0.1:{}", common::free_port()).parse().unwrap();
    let tracer = common::Tracer::start(&[
        "127.0.0.1",
        &port.to_string(),
        "-o",
        "json",
        "--metrics",
        &metrics_addr.to_string(),
        "--metrics-by-port",
    ]);
    let mut prometheus = Prometheus::start(metrics_addr);
    prometheus.wait("to scrape tcpstate twice", Duration::from_secs(30), |p| {
        p.query("count_over_time(tcpstate_build_info[1h]) >= 2", None).len() == 1
    });
    let before = prometheus.last_scrape();
    let at_start = prometheus.query("tcpstate_transitions_total", Some(&before));
    assert_eq!(at_start.len(), 2 * tcpstate::state::KERNEL_TRANSITIONS.len(), "{at_start:?}");
    assert!(at_start.iter().all(|s| s.value == "0"), "{at_start:?}");

    for _ in 0..REFUSED {
        let err = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    }
    let nginx = common::Nginx::start_on(&format!("127.0.0.1:{port}"));
    for _ in 0..N {
        assert_eq!(common::curl(&nginx.url()), 0);
    }
    let transitions: &[(&str, u64)] = &[
        ("client:CLOSE:SYN_SENT", REFUSED + N),
        ("client:SYN_SENT:CLOSE", REFUSED),
        ("client:SYN_SENT:ESTABLISHED", N),
        ("client:ESTABLISHED:FIN_WAIT1", N),
        ("client:FIN_WAIT1:FIN_WAIT2", N),
        ("client:FIN_WAIT2:TIME_WAIT", N),
        ("server:CLOSE:LISTEN", 1),
        ("server:LISTEN:SYN_RECV", N),
        ("server:SYN_RECV:ESTABLISHED", N),
        ("server:ESTABLISHED:CLOSE_WAIT", N),
        ("server:CLOSE_WAIT:LAST_ACK", N),
        ("server:LAST_ACK:CLOSE", N),
    ];
    let connections: &[(&str, u64)] = &[("client:refused", REFUSED), ("server:passive_close", N)];

    // Once tcpstate has counted it all (the server's records leave a few ms
    // after its CLOSE), one more scrape.
    let last_line = format!(r#"tcpstate_connections_total{{side="server",end="passive_close",port="{port}"}} {N}"#);
    common::wait_for(Duration::from_secs(20), "tcpstate to count every connection", || {
        scrape(metrics_addr).lines().any(|l| l == last_line)
    });
    let counted = scrape(metrics_addr);
    let (clean, said) = promtool_check(&counted);
    assert!(clean && said.is_empty(), "promtool check metrics: {said}\n{counted}");
    let mut after = prometheus.last_scrape();
    prometheus.wait("to scrape the counts", Duration::from_secs(30), |p| {
        after = p.last_scrape();
        p.query(&format!("tcpstate_connections_total{{end=\"passive_close\"}} == {N}"), Some(&after)).len() == 1
    });

    let at = |query: &str, time: &str| prometheus.query(query, Some(time));
    let series = by_labels(&at_start, &["side", "old", "new"], port);
    let want = with_zeros(&series, transitions);
    let then = by_labels(&at("tcpstate_transitions_total", &after), &["side", "old", "new"], port);
    let caused: std::collections::BTreeMap<String, f64> =
        then.iter().map(|(k, v)| (k.clone(), v - series[k])).collect();
    assert_eq!(caused, want, "values after less values before");
    let increase = at("increase(tcpstate_transitions_total[1h])", &after);
    assert_eq!(by_labels(&increase, &["side", "old", "new"], port), want, "increase() over the run");

    let ends = by_labels(&at("tcpstate_connections_total", &before), &["side", "end"], port);
    let increase = at("increase(tcpstate_connections_total[1h])", &after);
    assert_eq!(by_labels(&increase, &["side", "end"], port), with_zeros(&ends, connections));

    // The histograms: one record per connection that ended (the clients'
    // TIME_WAITs still run), each stay in a state timed once.
    let lifetimes = at("increase(tcpstate_connection_duration_seconds_count[1h])", &after);
    assert_eq!(by_labels(&lifetimes, &["side", "end"], port), with_zeros(&ends, connections));
    let refused = r#"tcpstate_connection_duration_seconds_bucket{side="client",end="refused",le="1"}"#;
    assert_eq!(prometheus.one(refused, Some(&after)), REFUSED.to_string(), "refused within a second");
    let stays = at("increase(tcpstate_state_duration_seconds_count[1h])", &after);
    let states: std::collections::BTreeMap<String, f64> =
        stays.iter().map(|s| (format!("{}:{}", s.label("side"), s.label("state")), s.value.parse().unwrap())).collect();
    let stayed: &[(&str, u64)] = &[
        ("client:SYN_SENT", REFUSED),
        ("server:SYN_RECV", N),
        ("server:ESTABLISHED", N),
        ("server:CLOSE_WAIT", N),
        ("server:LAST_ACK", N),
    ];
    assert_eq!(states, with_zeros(&states, stayed), "times in a state");
    let timed = r#"sum(tcpstate_state_duration_seconds_bucket{le="+Inf"})"#;
    assert_eq!(prometheus.one(timed, Some(&after)), (REFUSED + 4 * N).to_string());

    // The gauges: N clients in TIME_WAIT, each a timewait socket; the limit
    // the alert compares with; the build.
    let gauge = |query: &str| prometheus.one(query, Some(&after));
    assert_eq!(gauge(r#"tcpstate_sockets{side="client",state="TIME_WAIT"}"#), N.to_string());
    assert_eq!(gauge(r#"tcpstate_sockets{side="server",state="LISTEN"}"#), "1");
    assert_eq!(gauge("tcpstate_timewait_sockets"), N.to_string());
    let limit = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_max_tw_buckets").unwrap();
    assert_eq!(gauge("tcpstate_timewait_sockets_limit"), limit.trim());
    let version = format!("tcpstate_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"));
    assert_eq!(gauge(&version), "1");

    // The shipped rules evaluate on what tcpstate serves, once a second
    // (the last evaluation may predate the last scrape).
    let ratio = N as f64 / limit.trim().parse::<f64>().unwrap();
    let rules = |p: &Prometheus| {
        let value = |rule: &str| p.query(rule, None).first().map(|s| s.value.parse::<f64>().unwrap());
        (
            value("instance:tcpstate_timewait_sockets:limit_ratio"),
            value("instance:tcpstate_events_lost_for_good:increase10m"),
            value("instance:tcpstate_refused_connects:rate5m").map(|rate| rate > 0.0),
        )
    };
    let evaluated = (Some(ratio), Some(0.0), Some(true));
    let deadline = Instant::now() + Duration::from_secs(30);
    while rules(&prometheus) != evaluated && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(rules(&prometheus), evaluated, "the recording rules' values");

    // What Prometheus holds is what tcpstate printed.
    drop(prometheus);
    let out = tracer.stop();
    drop(nginx);
    let mut printed = std::collections::BTreeMap::new();
    for e in common::json_events(&out.stdout) {
        *printed.entry(format!("{}:{}", e["side"].as_str().unwrap(), common::transition(&e))).or_insert(0.0) += 1.0;
    }
    let want_printed: std::collections::BTreeMap<String, f64> = want.into_iter().filter(|(_, n)| *n > 0.0).collect();
    assert_eq!(printed, want_printed);
}
